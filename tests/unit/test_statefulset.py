"""The StatefulSet loop on the controller bench: ordered creation with claims, scale down in
reverse, partitioned rolling updates, Parallel and OnDelete, revisions and status."""

from __future__ import annotations

from typing import Any

from server.controllers.history import REVISION_HASH_LABEL
from server.controllers.statefulset import (
    POD_INDEX_LABEL,
    POD_NAME_LABEL,
    StatefulSetController,
    parent_and_ordinal,
)
from server.storage.binding import bind_pod
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness

NS = "default"


def _sts(
    replicas: int = 3,
    *,
    image: str = "nginx:1",
    policy: str = "OrderedReady",
    strategy: dict[str, Any] | None = None,
    claims: bool = True,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": "web",
        "podManagementPolicy": policy,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        },
    }
    if strategy is not None:
        spec["updateStrategy"] = strategy
    if claims:
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": spec,
    }


async def _pods(h: Harness) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in await h.list("", "pods", NS)}


async def _names(h: Harness) -> list[str]:
    pods = await _pods(h)
    return sorted(pods, key=lambda n: parent_and_ordinal(n)[1])


async def _ready_all(h: Harness) -> None:
    for name in await _names(h):
        pod = (await _pods(h))[name]
        if (pod.get("status") or {}).get("phase") != "Running":
            await h.set_pod_status(NS, name)


async def _roll_until(h: Harness, want: list[str], what: str) -> None:
    """Play kubelet (make every new pod ready) until the pods are ``want``, all Running."""
    seen: list[list[str]] = []
    for _ in range(40):
        await h.settle()
        names = await _names(h)
        if not seen or seen[-1] != names:
            seen.append(names)
        await _ready_all(h)
        await h.settle()
        if await _names(h) == want and all(
            p["status"].get("phase") == "Running" for p in (await _pods(h)).values()
        ):
            return
    raise AssertionError(f"{what}: stuck at {seen[-1]}")


async def _sts_obj(h: Harness) -> dict[str, Any]:
    sts = await h.get("apps", "statefulsets", NS, "web")
    assert sts is not None
    return sts


async def _set_image(h: Harness, image: str) -> None:
    async def mutate(sts: dict[str, Any] | None) -> dict[str, Any] | None:
        assert sts is not None
        sts["spec"]["template"]["spec"]["containers"][0]["image"] = image
        return sts

    await h.objects.modify(h.kind("apps", "statefulsets"), NS, "web", mutate, WriteOptions())


async def _patch_spec(h: Harness, **fields: Any) -> None:
    async def mutate(sts: dict[str, Any] | None) -> dict[str, Any] | None:
        assert sts is not None
        sts["spec"].update(fields)
        return sts

    await h.objects.modify(h.kind("apps", "statefulsets"), NS, "web", mutate, WriteOptions())


def _image(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["containers"][0]["image"])


async def test_ordered_creation_with_claims_and_identity(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    await h.create("apps", "statefulsets", NS, _sts())
    await h.settle()
    # only web-0 until it is Running and Ready
    assert await _names(h) == ["web-0"]
    claims = {c["metadata"]["name"]: c for c in await h.list("", "persistentvolumeclaims", NS)}
    assert list(claims) == ["data-web-0"]
    assert claims["data-web-0"]["metadata"]["labels"] == {"app": "web"}
    assert not claims["data-web-0"]["metadata"].get("ownerReferences")  # Retain: not owned
    pod = (await _pods(h))["web-0"]
    labels = pod["metadata"]["labels"]
    assert labels[POD_NAME_LABEL] == "web-0" and labels[POD_INDEX_LABEL] == "0"
    assert pod["spec"]["hostname"] == "web-0" and pod["spec"]["subdomain"] == "web"
    assert pod["spec"]["volumes"][0] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "data-web-0"},
    }
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("StatefulSet", "web", True)

    await h.set_pod_status(NS, "web-0")
    await h.settle()
    assert await _names(h) == ["web-0", "web-1"]
    await h.set_pod_status(NS, "web-1")
    await h.settle()
    assert await _names(h) == ["web-0", "web-1", "web-2"]
    await h.set_pod_status(NS, "web-2")
    await h.settle()
    claim_names = {c["metadata"]["name"] for c in await h.list("", "persistentvolumeclaims", NS)}
    assert claim_names == {"data-web-0", "data-web-1", "data-web-2"}

    sts = await _sts_obj(h)
    status = sts["status"]
    revision = status["updateRevision"]
    assert revision.startswith("web-") and status["currentRevision"] == revision
    assert {p["metadata"]["labels"][REVISION_HASH_LABEL] for p in (await _pods(h)).values()} == {
        revision
    }
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"]) == (3, 3, 3)
    assert (status["currentReplicas"], status["updatedReplicas"]) == (3, 3)
    assert status["observedGeneration"] == 1 and status["collisionCount"] == 0
    revisions = await h.list("apps", "controllerrevisions", NS)
    assert [r["metadata"]["name"] for r in revisions] == [revision]
    assert revisions[0]["revision"] == 1
    assert revisions[0]["data"]["spec"]["template"]["$patch"] == "replace"

    await h.events.flush()
    messages = [e["message"] for e in await h.list("", "events", NS)]
    assert "create Pod web-0 in StatefulSet web successful" in messages
    assert "create Claim data-web-0 Pod web-0 in StatefulSet web success" in messages


async def test_scale_down_in_reverse_one_at_a_time(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    await h.create("apps", "statefulsets", NS, _sts(4, claims=False))
    await _roll_until(h, ["web-0", "web-1", "web-2", "web-3"], "scale up")

    # a not-ready pod below blocks OrderedReady scale down
    async def unready(pod: dict[str, Any] | None) -> dict[str, Any] | None:
        assert pod is not None
        pod["status"]["conditions"][0]["status"] = "False"
        return pod

    await h.objects.modify(
        h.kind("", "pods"), NS, "web-0", unready, WriteOptions(subresource="status")
    )
    await _patch_spec(h, replicas=1)
    await h.settle()
    assert await _names(h) == ["web-0", "web-1", "web-2", "web-3"]
    await h.set_pod_status(NS, "web-0")
    await h.settle()
    assert await _names(h) == ["web-0"]
    await h.events.flush()
    deletes = [
        e["message"]
        for e in sorted(await h.list("", "events", NS), key=lambda e: e["metadata"]["name"])
        if e["reason"] == "SuccessfulDelete"
    ]
    assert sorted(deletes) == [
        f"delete Pod web-{i} in StatefulSet web successful" for i in (1, 2, 3)
    ]
    assert (await _sts_obj(h))["status"]["replicas"] == 1


async def test_scale_down_waits_for_terminating_pod(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    await h.create("apps", "statefulsets", NS, _sts(3, claims=False))
    await _roll_until(h, ["web-0", "web-1", "web-2"], "scale up")

    # a bound pod is deleted gracefully: it stays Terminating until the kubelet is done
    pods_kind = h.kind("", "pods")
    await bind_pod(h.objects, pods_kind, NS, "web-2", "n1", opts=WriteOptions())
    await _patch_spec(h, replicas=1)
    await h.settle()
    pods = await _pods(h)
    assert sorted(pods) == ["web-0", "web-1", "web-2"]
    assert pods["web-2"]["metadata"].get("deletionTimestamp")
    assert not pods["web-1"]["metadata"].get("deletionTimestamp")
    await h.objects.delete(pods_kind, NS, "web-2", DeleteOptions(grace_period_seconds=0))
    await h.settle()
    assert await _names(h) == ["web-0"]


async def test_partitioned_rolling_update(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    await h.create("apps", "statefulsets", NS, _sts(3, strategy=strategy, claims=False))
    await _roll_until(h, ["web-0", "web-1", "web-2"], "scale up")
    old_uids = {n: p["metadata"]["uid"] for n, p in (await _pods(h)).items()}
    first = (await _sts_obj(h))["status"]["updateRevision"]

    await _set_image(h, "nginx:2")
    await h.settle()
    # the highest ordinal goes first; the next waits for it to be Running and Ready
    pods = await _pods(h)
    assert _image(pods["web-2"]) == "nginx:2" and pods["web-2"]["status"]["phase"] == "Pending"
    assert pods["web-1"]["metadata"]["uid"] == old_uids["web-1"]
    await h.set_pod_status(NS, "web-2")
    await h.settle()
    pods = await _pods(h)
    assert _image(pods["web-1"]) == "nginx:2" and pods["web-1"]["status"]["phase"] == "Pending"
    await h.set_pod_status(NS, "web-1")
    await h.settle()
    pods = await _pods(h)
    # ordinals below the partition keep the current revision
    assert _image(pods["web-0"]) == "nginx:1"
    assert pods["web-0"]["metadata"]["uid"] == old_uids["web-0"]
    status = (await _sts_obj(h))["status"]
    assert status["currentRevision"] == first and status["updateRevision"] != first
    assert (status["currentReplicas"], status["updatedReplicas"]) == (1, 2)
    assert pods["web-0"]["metadata"]["labels"][REVISION_HASH_LABEL] == first

    # partition 0 finishes the rollout and the update revision becomes current
    await _patch_spec(
        h, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    )
    await _roll_until(h, ["web-0", "web-1", "web-2"], "finish")
    await h.settle()
    pods = await _pods(h)
    assert {_image(p) for p in pods.values()} == {"nginx:2"}
    status = (await _sts_obj(h))["status"]
    assert status["currentRevision"] == status["updateRevision"]
    assert status["currentReplicas"] == status["updatedReplicas"] == 3
    revisions = sorted(
        await h.list("apps", "controllerrevisions", NS), key=lambda r: int(r["revision"])
    )
    assert [r["revision"] for r in revisions] == [1, 2]


async def test_rollback_reuses_revision_and_history_limit(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    body = _sts(1, claims=False)
    body["spec"]["revisionHistoryLimit"] = 1
    await h.create("apps", "statefulsets", NS, body)
    await _roll_until(h, ["web-0"], "create")
    first = (await _sts_obj(h))["status"]["updateRevision"]
    await _set_image(h, "nginx:2")
    await _roll_until(h, ["web-0"], "update")
    second = (await _sts_obj(h))["status"]["updateRevision"]
    await _set_image(h, "nginx:1")
    await _roll_until(h, ["web-0"], "rollback")
    await h.settle()
    status = (await _sts_obj(h))["status"]
    assert status["updateRevision"] == status["currentRevision"] == first
    assert _image((await _pods(h))["web-0"]) == "nginx:1"
    revs = {
        r["metadata"]["name"]: r["revision"]
        for r in await h.list("apps", "controllerrevisions", NS)
    }
    assert revs == {first: 3, second: 2}

    # a third template: only one revision besides the live one is kept (the newest)
    await _set_image(h, "nginx:3")
    await _roll_until(h, ["web-0"], "third")
    await h.settle()
    third = (await _sts_obj(h))["status"]["updateRevision"]
    revs = {
        r["metadata"]["name"]: r["revision"]
        for r in await h.list("apps", "controllerrevisions", NS)
    }
    assert revs == {first: 3, third: 4}


async def test_parallel_creates_and_deletes_at_once(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    await h.create("apps", "statefulsets", NS, _sts(3, policy="Parallel"))
    await h.settle()
    assert await _names(h) == ["web-0", "web-1", "web-2"]  # none is ready yet
    claims = {c["metadata"]["name"] for c in await h.list("", "persistentvolumeclaims", NS)}
    assert claims == {"data-web-0", "data-web-1", "data-web-2"}
    await _patch_spec(h, replicas=0)
    await h.settle()
    assert await _names(h) == []
    # claims are retained by default
    assert len(await h.list("", "persistentvolumeclaims", NS)) == 3


async def test_on_delete_replaces_only_deleted_pods(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    await h.create("apps", "statefulsets", NS, _sts(2, strategy={"type": "OnDelete"}, claims=False))
    await _roll_until(h, ["web-0", "web-1"], "create")
    await _set_image(h, "nginx:2")
    await h.settle()
    pods = await _pods(h)
    assert {_image(p) for p in pods.values()} == {"nginx:1"}
    await h.objects.delete(h.kind("", "pods"), NS, "web-1", DeleteOptions())
    await _roll_until(h, ["web-0", "web-1"], "recreate")
    pods = await _pods(h)
    assert _image(pods["web-0"]) == "nginx:1" and _image(pods["web-1"]) == "nginx:2"
    status = (await _sts_obj(h))["status"]
    assert (status["currentReplicas"], status["updatedReplicas"]) == (1, 1)


async def test_retention_policy_delete_owns_claims(harness: Harness) -> None:
    h = harness
    await h.start(StatefulSetController)
    body = _sts(2)
    body["spec"]["persistentVolumeClaimRetentionPolicy"] = {
        "whenDeleted": "Delete",
        "whenScaled": "Delete",
    }
    sts = await h.create("apps", "statefulsets", NS, body)
    await _roll_until(h, ["web-0", "web-1"], "create")
    claims = {c["metadata"]["name"]: c for c in await h.list("", "persistentvolumeclaims", NS)}
    for claim in claims.values():
        [ref] = claim["metadata"]["ownerReferences"]
        assert ref["uid"] == sts["metadata"]["uid"]
    await _patch_spec(h, replicas=1)
    await h.settle()
    claims = {c["metadata"]["name"]: c for c in await h.list("", "persistentvolumeclaims", NS)}
    # the scaled-away claim was handed to its pod (the garbage collector deletes it)
    kinds = {ref["kind"] for ref in claims["data-web-1"]["metadata"]["ownerReferences"]}
    assert kinds == {"Pod"}
    assert {ref["kind"] for ref in claims["data-web-0"]["metadata"]["ownerReferences"]} == {
        "StatefulSet"
    }


async def test_orphan_pods_are_adopted(harness: Harness) -> None:
    h = harness
    await h.create(
        "",
        "pods",
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
        },
    )
    await h.set_pod_status(NS, "web-0")
    await h.start(StatefulSetController)
    sts = await h.create("apps", "statefulsets", NS, _sts(1, claims=False))
    await h.settle()
    pod = (await _pods(h))["web-0"]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
    assert pod["metadata"]["labels"][POD_NAME_LABEL] == "web-0"  # identity repaired
