"""Tests of the garbage collector (server.controllers.garbagecollector) on the control-loop
bench: only the garbage collector runs, owners and dependents are created directly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edgek.kinds import Kind
from server.controllers.garbagecollector import GarbageCollector
from server.storage.crd import kinds_of
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness

NS = "default"
HOLD = "example.com/hold"


def owner_ref(owner: dict[str, Any], *, block: bool = True) -> dict[str, Any]:
    md = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": md["name"],
        "uid": md["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def replicaset(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    md: dict[str, Any] = {"name": name}
    if owners:
        md["ownerReferences"] = list(owners)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": md,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        },
    }


def deployment(name: str) -> dict[str, Any]:
    body = replicaset(name)
    body["kind"] = "Deployment"
    return body


def pod(name: str, *owners: dict[str, Any], finalizers: list[str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if owners:
        md["ownerReferences"] = list(owners)
    if finalizers:
        md["finalizers"] = finalizers
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }


def dangling_ref(kind: str = "ReplicaSet", name: str = "gone") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": str(uuid.uuid4())}


async def start_gc(h: Harness) -> GarbageCollector:
    (gc,) = await h.start(GarbageCollector)
    assert isinstance(gc, GarbageCollector)
    await gc.synced.wait()
    return gc


async def delete(h: Harness, resource: str, name: str, policy: str = "", ns: str = NS) -> None:
    group = "" if resource == "pods" else "apps"
    await h.objects.delete(
        h.kind(group, resource), ns, name, DeleteOptions(propagation_policy=policy)
    )


async def release(h: Harness, name: str, ns: str = NS) -> None:
    """Remove the test finalizer from a pod (what its controller would do)."""

    async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        assert current is not None
        current["metadata"]["finalizers"] = [
            f for f in current["metadata"].get("finalizers", []) if f != HOLD
        ]
        return current

    await h.objects.modify(h.kind("", "pods"), ns, name, mutate, WriteOptions())


def gone(h: Harness, group: str, resource: str, name: str, ns: str = NS) -> Any:
    async def check() -> bool:
        return await h.get(group, resource, ns, name) is None

    return check


async def names(h: Harness, group: str, resource: str, ns: str = NS) -> list[str]:
    return sorted(o["metadata"]["name"] for o in await h.list(group, resource, ns))


# -- Background -------------------------------------------------------------------------------


async def test_background_deletion_collects_dependents(harness: Harness) -> None:
    h = harness
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    for i in range(3):
        await h.create("", "pods", NS, pod(f"web-{i}", owner_ref(rs)))
    await h.create("", "pods", NS, pod("unowned"))
    await start_gc(h)
    await h.settle()
    assert await names(h, "", "pods") == ["unowned", "web-0", "web-1", "web-2"]

    await delete(h, "replicasets", "web", "Background")
    await h.wait_for(lambda: names_are(h, ["unowned"]), what="owned pods collected")


async def names_are(h: Harness, expected: list[str]) -> bool:
    return await names(h, "", "pods") == expected


async def test_dependent_with_a_live_owner_stays(harness: Harness) -> None:
    h = harness
    await start_gc(h)
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    await h.create("", "pods", NS, pod("p", owner_ref(rs)))
    await h.settle()
    assert await h.get("", "pods", NS, "p") is not None


# -- Orphan -----------------------------------------------------------------------------------


async def test_orphan_deletion_keeps_dependents_without_the_reference(harness: Harness) -> None:
    h = harness
    await start_gc(h)
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    other = await h.create("apps", "replicasets", NS, replicaset("other"))
    await h.create("", "pods", NS, pod("p1", owner_ref(rs)))
    await h.create("", "pods", NS, pod("p2", owner_ref(rs), owner_ref(other, block=False)))
    await h.settle()

    await delete(h, "replicasets", "web", "Orphan")
    await h.wait_for(gone(h, "apps", "replicasets", "web"), what="orphaned owner removed")
    p1 = await h.get("", "pods", NS, "p1")
    p2 = await h.get("", "pods", NS, "p2")
    assert p1 is not None and p2 is not None
    assert "ownerReferences" not in p1["metadata"]
    assert [r["uid"] for r in p2["metadata"]["ownerReferences"]] == [other["metadata"]["uid"]]
    await h.settle()
    assert await names(h, "", "pods") == ["p1", "p2"]


# -- Foreground -------------------------------------------------------------------------------


async def test_foreground_owner_waits_for_its_dependents(harness: Harness) -> None:
    h = harness
    await start_gc(h)
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    await h.create("", "pods", NS, pod("held", owner_ref(rs), finalizers=[HOLD]))
    await h.create("", "pods", NS, pod("plain", owner_ref(rs)))
    await h.settle()

    await delete(h, "replicasets", "web", "Foreground")
    await h.wait_for(gone(h, "", "pods", "plain"), what="plain pod deleted")

    async def held_terminating() -> bool:
        held = await h.get("", "pods", NS, "held")
        return held is not None and "deletionTimestamp" in held["metadata"]

    await h.wait_for(held_terminating, what="held pod deleted")
    await h.settle()
    owner = await h.get("apps", "replicasets", NS, "web")
    assert owner is not None
    assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert owner["metadata"]["deletionTimestamp"]

    await release(h, "held")
    await h.wait_for(gone(h, "apps", "replicasets", "web"), what="owner released")
    assert await h.list("", "pods", NS) == []


async def test_foreground_does_not_wait_for_non_blocking_dependents(harness: Harness) -> None:
    h = harness
    await start_gc(h)
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    await h.create("", "pods", NS, pod("held", owner_ref(rs, block=False), finalizers=[HOLD]))
    await h.settle()

    await delete(h, "replicasets", "web", "Foreground")
    await h.wait_for(gone(h, "apps", "replicasets", "web"), what="owner released")
    held = await h.get("", "pods", NS, "held")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    await release(h, "held")


async def test_foreground_chain_deployment_replicaset_pod(harness: Harness) -> None:
    h = harness
    await start_gc(h)
    dep = await h.create("apps", "deployments", NS, deployment("web"))
    rs = await h.create("apps", "replicasets", NS, replicaset("web-1", owner_ref(dep)))
    await h.create("", "pods", NS, pod("web-1-a", owner_ref(rs), finalizers=[HOLD]))
    await h.settle()

    await delete(h, "deployments", "web", "Foreground")

    async def rs_foreground() -> bool:
        got = await h.get("apps", "replicasets", NS, "web-1")
        return got is not None and got["metadata"].get("finalizers") == ["foregroundDeletion"]

    # the ReplicaSet has a dependent of its own, so it is deleted in the foreground too
    await h.wait_for(rs_foreground, what="ReplicaSet deleted in the foreground")
    await h.settle()
    owner = await h.get("apps", "deployments", NS, "web")
    assert owner is not None and owner["metadata"]["finalizers"] == ["foregroundDeletion"]

    await release(h, "web-1-a")
    await h.wait_for(gone(h, "apps", "deployments", "web"), what="whole chain deleted")
    assert await h.list("apps", "replicasets", NS) == []
    assert await h.list("", "pods", NS) == []


# -- dangling and invalid references ----------------------------------------------------------


async def test_dangling_owner_at_create_time(harness: Harness) -> None:
    h = harness
    await h.create("", "pods", NS, pod("before", dangling_ref()))
    gc = await start_gc(h)
    await h.create("", "pods", NS, pod("after", dangling_ref()))
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    # same name and kind as a live owner, but another uid: that owner is gone too
    wrong_uid = dict(owner_ref(rs), uid=str(uuid.uuid4()))
    await h.create("", "pods", NS, pod("wrong-uid", wrong_uid))
    # one live owner keeps the pod; only the dangling reference is dropped
    await h.create("", "pods", NS, pod("mixed", owner_ref(rs), dangling_ref()))

    await h.wait_for(lambda: names_are(h, ["mixed"]), what="dangling dependents collected")

    async def mixed_cleaned() -> bool:
        mixed = await h.get("", "pods", NS, "mixed")
        assert mixed is not None
        return [r["uid"] for r in mixed["metadata"]["ownerReferences"]] == [rs["metadata"]["uid"]]

    await h.wait_for(mixed_cleaned, what="dangling reference removed")
    await h.settle()
    # no placeholders are left for owners that turned out to be gone
    assert all(n.observed for n in gc._nodes.values())


async def test_owner_in_another_namespace_is_absent(harness: Harness) -> None:
    h = harness
    await h.create(
        "",
        "namespaces",
        "",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
    )
    await start_gc(h)
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    await h.create("", "pods", "other", pod("stray", owner_ref(rs)))
    await h.wait_for(gone(h, "", "pods", "stray", ns="other"), what="stray pod collected")
    await h.events.flush()
    events = await h.list("", "events", "other")
    assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [
        ("OwnerRefInvalidNamespace", "stray")
    ]
    assert events[0]["message"] == (
        f"ownerRef [apps/v1/ReplicaSet, namespace: other, name: web, uid: "
        f'{rs["metadata"]["uid"]}] does not exist in namespace "other"'
    )
    assert await h.get("apps", "replicasets", NS, "web") is not None


async def test_cluster_scoped_dependent_of_namespaced_owner_is_left_alone(
    harness: Harness,
) -> None:
    h = harness
    await start_gc(h)
    cm = await h.create("", "configmaps", NS, {"metadata": {"name": "cfg"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "uid": cm["metadata"]["uid"]}
    body = {"metadata": {"name": "role", "ownerReferences": [ref]}, "rules": []}
    await h.create("rbac.authorization.k8s.io", "clusterroles", "", body)
    await h.objects.delete(h.kind("", "configmaps"), NS, "cfg", DeleteOptions())
    await h.settle()
    assert await h.get("rbac.authorization.k8s.io", "clusterroles", "", "role") is not None
    await h.events.flush()
    reasons = {e["reason"] for e in await h.list("", "events", NS)}
    assert reasons == {"OwnerRefInvalidNamespace"}


# -- custom resources -------------------------------------------------------------------------


async def register_crd(h: Harness, scope: str) -> Kind:
    """Store a CRD and serve its kind (what the server's CRD hook does)."""
    plural = "widgets" if scope == "Namespaced" else "clusterwidgets"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"plural": plural, "singular": plural[:-1], "kind": plural[:-1].title()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    stored = await h.create("apiextensions.k8s.io", "customresourcedefinitions", "", crd)
    ((kind, _),) = kinds_of(stored)
    h.registry.add(kind)
    return kind


@pytest.mark.parametrize("scope", ["Namespaced", "Cluster"])
async def test_custom_resource_owner(harness: Harness, scope: str) -> None:
    h = harness
    await start_gc(h)
    kind = await register_crd(h, scope)
    ns = NS if kind.namespaced else ""
    body = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": "w"}}
    owner = await h.objects.create(kind, ns, body, WriteOptions())
    await h.create("", "pods", NS, pod("p", owner_ref(owner)))
    # a custom resource can be a dependent too
    child = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": "child", "ownerReferences": [owner_ref(owner)]},
    }
    await h.objects.create(kind, ns, child, WriteOptions())
    await h.settle()
    assert await h.get("", "pods", NS, "p") is not None

    await h.objects.delete(kind, ns, "w", DeleteOptions(propagation_policy="Foreground"))

    async def all_gone() -> bool:
        left = [await h.objects.try_get(kind, ns, n) for n in ("w", "child")]
        return left == [None, None] and await h.get("", "pods", NS, "p") is None

    await h.wait_for(all_gone, what="custom owner and its dependents deleted")


async def test_restart_relists_and_collects_what_changed_meanwhile(harness: Harness) -> None:
    h = harness
    gc = await start_gc(h)
    rs = await h.create("apps", "replicasets", NS, replicaset("web"))
    await h.create("", "pods", NS, pod("p", owner_ref(rs)))
    await h.settle()
    await gc.stop()
    await delete(h, "replicasets", "web", "Background")
    await h.settle()
    assert await h.get("", "pods", NS, "p") is not None  # nobody collected it yet
    gc.start()
    await h.wait_for(gone(h, "", "pods", "p"), what="pod collected after the restart")
    await h.settle()
    assert all(n.observed for n in gc._nodes.values())
