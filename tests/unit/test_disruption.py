"""The disruption controller: PodDisruptionBudget status from the pods it selects."""

from __future__ import annotations

import pytest

from edgek.objects import Obj
from edgek.timefmt import format_time
from server.controllers.disruption import DisruptionController, ExpectedCountError, scaled_value
from server.storage.objectstore import WriteOptions
from tests.manifests import workload
from tests.unit.controller_harness import Harness


def pod_body(name: str, labels: dict[str, str], owner: Obj | None = None) -> Obj:
    md: Obj = {"name": name, "labels": labels}
    if owner is not None:
        md["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }


async def make_pod(
    h: Harness,
    name: str,
    labels: dict[str, str],
    *,
    ready: bool = True,
    phase: str = "Running",
    owner: Obj | None = None,
    node: str = "",
) -> Obj:
    """A pod in default, with the status a kubelet would report."""
    body = pod_body(name, labels, owner)
    if node:
        body["spec"]["nodeName"] = node
    await h.create("", "pods", "default", body)
    return await h.set_pod_status("default", name, ready=ready, phase=phase)


async def make_pdb(h: Harness, name: str, spec: Obj) -> Obj:
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": spec,
    }
    return await h.create("policy", "poddisruptionbudgets", "default", body)


async def pdb_status(h: Harness, name: str) -> Obj:
    pdb = await h.get("policy", "poddisruptionbudgets", "default", name)
    assert pdb is not None
    return pdb.get("status") or {}


async def synced_status(h: Harness, name: str) -> Obj:
    """The PDB's status once the controller has observed it and the loops are idle."""

    async def synced() -> bool:
        return (await pdb_status(h, name)).get("observedGeneration") == 1

    await h.wait_for(synced, what="PDB status")
    await h.settle()
    return await pdb_status(h, name)


def condition(status: Obj) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == "DisruptionAllowed")


def test_scaled_value_rounds_percentages_up() -> None:
    assert scaled_value(3, 10) == 3
    assert scaled_value("50%", 5) == 3
    assert scaled_value("0%", 5) == 0
    with pytest.raises(ExpectedCountError, match="string is not a percentage"):
        scaled_value("5", 10)


async def test_min_available_int_counts_ready_pods(harness: Harness) -> None:
    await harness.start(DisruptionController)
    for i in range(3):
        await make_pod(harness, f"web-{i}", {"app": "web"}, ready=i < 2)
    await make_pod(harness, "other", {"app": "other"})
    await make_pdb(harness, "web", {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})
    st = await synced_status(harness, "web")
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"]) == (3, 2, 1)
    assert st["disruptionsAllowed"] == 1
    cond = condition(st)
    assert (cond["status"], cond["reason"]) == ("True", "SufficientPods")

    # a pod turning unready leaves nothing to spare
    await make_pod(harness, "web-3", {"app": "web"}, ready=False)
    pod = await harness.get("", "pods", "default", "web-1")
    assert pod is not None
    pod["status"]["conditions"][0]["status"] = "False"
    await harness.objects.update(
        harness.kind("", "pods"), "default", "web-1", pod, WriteOptions(subresource="status")
    )

    async def insufficient() -> bool:
        return (await pdb_status(harness, "web")).get("disruptionsAllowed") == 0

    await harness.wait_for(insufficient, what="no disruptions allowed")
    await harness.settle()
    st = await pdb_status(harness, "web")
    assert (st["expectedPods"], st["currentHealthy"]) == (4, 1)
    cond = condition(st)
    assert (cond["status"], cond["reason"]) == ("False", "InsufficientPods")


async def test_percentages_use_the_controllers_scale(harness: Harness) -> None:
    await harness.start(DisruptionController)
    pod_spec = {"containers": [{"name": "c", "image": "nginx"}]}
    deploy = await harness.create(
        "apps", "deployments", "default", workload("Deployment", "web", pod_spec, replicas=5)
    )
    owner_refs = pod_body("x", {}, deploy)["metadata"]["ownerReferences"]
    rs_body = workload("ReplicaSet", "web-1", pod_spec, labels={"app": "web"}, replicas=5)
    rs_body["metadata"]["ownerReferences"] = owner_refs
    rs = await harness.create("apps", "replicasets", "default", rs_body)
    for i in range(4):
        await make_pod(harness, f"web-1-{i}", {"app": "web"}, owner=rs)
    await make_pdb(
        harness, "web", {"maxUnavailable": "30%", "selector": {"matchLabels": {"app": "web"}}}
    )
    st = await synced_status(harness, "web")
    # expected 5 (the Deployment's replicas), maxUnavailable ceil(1.5) = 2 -> desired 3
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"]) == (5, 3, 4)
    assert st["disruptionsAllowed"] == 1


async def test_unknown_controller_fails_safe(harness: Harness) -> None:
    await harness.start(DisruptionController)
    ghost = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "gone", "uid": "00000000-0000-0000-0000-000000000001"},
    }
    await make_pod(harness, "orphan", {"app": "db"}, owner=ghost)
    await make_pdb(
        harness, "db", {"minAvailable": "50%", "selector": {"matchLabels": {"app": "db"}}}
    )

    async def failed() -> bool:
        st = await pdb_status(harness, "db")
        return any(c.get("reason") == "SyncFailed" for c in st.get("conditions") or [])

    await harness.wait_for(failed, what="SyncFailed condition")
    st = await pdb_status(harness, "db")
    assert st["disruptionsAllowed"] == 0
    assert condition(st)["message"] == 'found no controllers for pod "orphan"'


async def test_disrupted_pods_are_not_healthy_until_they_expire(harness: Harness) -> None:
    await harness.start(DisruptionController)
    for i in range(2):
        await make_pod(harness, f"api-{i}", {"app": "api"})
    await make_pdb(harness, "api", {"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}})

    async def allowed(n: int) -> bool:
        st = await pdb_status(harness, "api")
        return st.get("disruptionsAllowed") == n and st.get("observedGeneration") == 1

    await harness.wait_for(lambda: allowed(1), what="one disruption allowed")
    # what the Eviction API records: api-0 is about to go
    pdb = await harness.get("policy", "poddisruptionbudgets", "default", "api")
    assert pdb is not None
    pdb["status"]["disruptionsAllowed"] = 0
    pdb["status"]["disruptedPods"] = {"api-0": format_time(harness.clock())}
    await harness.objects.update(
        harness.kind("policy", "poddisruptionbudgets"),
        "default",
        "api",
        pdb,
        WriteOptions(subresource="status"),
    )
    await harness.settle()
    st = await pdb_status(harness, "api")
    assert st["currentHealthy"] == 1
    assert st["disruptionsAllowed"] == 0
    assert "api-0" in st["disruptedPods"]

    # the pod never went: after the deletion timeout it counts again
    harness.clock.advance(121)
    pod = await harness.get("", "pods", "default", "api-1")
    assert pod is not None
    pod["metadata"].setdefault("labels", {})["touch"] = "1"
    await harness.objects.update(harness.kind("", "pods"), "default", "api-1", pod, WriteOptions())
    await harness.wait_for(lambda: allowed(1), what="disruption allowed again")
    assert "disruptedPods" not in await pdb_status(harness, "api")
