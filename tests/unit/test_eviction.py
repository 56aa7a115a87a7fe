"""The Eviction API against PodDisruptionBudgets kept by the disruption controller."""

from __future__ import annotations

from typing import Any

import pytest

from edgek.objects import Obj
from edgek.status import ApiError
from server.admission.eviction import Eviction, eviction_action
from server.controllers.disruption import DisruptionController
from server.storage.objectstore import WriteOptions
from server.storage.requestinfo import RequestInfo
from tests.unit.controller_harness import Harness
from tests.unit.test_disruption import make_pdb, make_pod, pdb_status


def evict_body(name: str, api_version: str = "policy/v1", **delete_options: Any) -> Obj:
    body: Obj = {
        "apiVersion": api_version,
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"},
    }
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


async def evict(h: Harness, name: str, body: Obj | None = None) -> tuple[Obj, int]:
    action = eviction_action(h.objects, h.registry, h.clock)
    info = RequestInfo("create", h.kind("", "pods"), "default", name, "eviction")
    return await action(info, body or evict_body(name), WriteOptions())


async def budget(h: Harness, allowed: int) -> None:
    async def ready() -> bool:
        st = await pdb_status(h, "web")
        return st.get("observedGeneration") == 1 and st.get("disruptionsAllowed") == allowed

    await h.wait_for(ready, what=f"{allowed} disruptions allowed")


async def test_eviction_spends_the_budget_then_refuses(harness: Harness) -> None:
    await harness.start(DisruptionController)
    for i in range(3):
        await make_pod(harness, f"web-{i}", {"app": "web"})
    await make_pdb(harness, "web", {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})
    await budget(harness, 1)

    result, code = await evict(harness, "web-0")
    assert code == 201
    assert result["status"] == "Success"
    assert await harness.get("", "pods", "default", "web-0") is None
    st = await pdb_status(harness, "web")
    assert st["disruptionsAllowed"] == 0

    with pytest.raises(ApiError) as err:
        await evict(harness, "web-1", evict_body("web-1", "policy/v1beta1"))
    e = err.value
    assert (e.code, e.reason) == (429, "TooManyRequests")
    assert e.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert e.status()["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
        }
    ]
    assert await harness.get("", "pods", "default", "web-1") is not None


async def test_the_condition_and_disrupted_pods_are_recorded(harness: Harness) -> None:
    await harness.start(DisruptionController)
    for i in range(3):
        await make_pod(harness, f"web-{i}", {"app": "web"}, node="node-a")
    await make_pdb(harness, "web", {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})
    await harness.wait_for(lambda: _status_has(harness, "web", expectedPods=3), what="PDB status")
    await harness.settle()

    await evict(harness, "web-2")
    gone = await harness.get("", "pods", "default", "web-2")
    assert gone is not None and gone["metadata"]["deletionTimestamp"]
    cond = next(c for c in gone["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (cond["reason"], cond["message"]) == ("EvictionByEvictionAPI", "Eviction API: evicting")


async def _status_has(h: Harness, name: str, **fields: Any) -> bool:
    st = await pdb_status(h, name)
    return all(st.get(k) == v for k, v in fields.items())


async def test_disrupted_pods_entry_written_by_eviction(harness: Harness) -> None:
    """Without the controller running, the eviction's own status write is visible."""
    await harness.start()
    for i in range(2):
        await make_pod(harness, f"web-{i}", {"app": "web"})
    pdb = await make_pdb(
        harness, "web", {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}
    )
    pdb["status"] = {
        "observedGeneration": 1,
        "currentHealthy": 2,
        "desiredHealthy": 1,
        "expectedPods": 2,
        "disruptionsAllowed": 1,
    }
    await harness.objects.update(
        harness.kind("policy", "poddisruptionbudgets"),
        "default",
        "web",
        pdb,
        WriteOptions(subresource="status"),
    )
    await evict(harness, "web-1")
    st = await pdb_status(harness, "web")
    assert list(st["disruptedPods"]) == ["web-1"]
    assert st["disruptionsAllowed"] == 0
    cond = next(c for c in st["conditions"] if c["type"] == "DisruptionAllowed")
    assert cond["reason"] == "InsufficientPods"


async def test_pdb_not_yet_observed_is_still_being_processed(harness: Harness) -> None:
    await harness.start()
    await make_pod(harness, "web-0", {"app": "web"})
    await make_pdb(harness, "web", {"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}})
    with pytest.raises(ApiError) as err:
        await evict(harness, "web-0")
    assert err.value.code == 429
    assert err.value.status()["details"]["causes"][0]["message"] == (
        "The disruption budget web is still being processed by the server."
    )
    assert err.value.status()["details"]["retryAfterSeconds"] == 10


async def test_pending_pods_and_unguarded_pods_go_at_once(harness: Harness) -> None:
    await harness.start(DisruptionController)
    await make_pod(harness, "web-0", {"app": "web"})
    await make_pod(harness, "web-1", {"app": "web"}, phase="Pending", ready=False)
    await make_pod(harness, "lonely", {"app": "lonely"})
    await make_pdb(harness, "web", {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})
    await budget(harness, 0)
    assert (await evict(harness, "web-1"))[1] == 201
    assert (await evict(harness, "lonely"))[1] == 201
    assert await harness.get("", "pods", "default", "web-1") is None
    assert await harness.get("", "pods", "default", "lonely") is None
    with pytest.raises(ApiError) as err:
        await evict(harness, "web-0")
    assert err.value.code == 429


async def test_unhealthy_pods_with_always_allow(harness: Harness) -> None:
    await harness.start(DisruptionController)
    await make_pod(harness, "web-0", {"app": "web"})
    await make_pod(harness, "web-1", {"app": "web"}, ready=False)
    await make_pdb(
        harness,
        "web",
        {
            "minAvailable": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )
    await budget(harness, 0)
    assert (await evict(harness, "web-1"))[1] == 201
    with pytest.raises(ApiError):
        await evict(harness, "web-0")


async def test_two_budgets_and_bad_bodies(harness: Harness) -> None:
    await harness.start()
    await make_pod(harness, "web-0", {"app": "web", "tier": "front"})
    await make_pdb(harness, "a", {"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}})
    await make_pdb(
        harness, "b", {"minAvailable": 0, "selector": {"matchLabels": {"tier": "front"}}}
    )
    result, code = await evict(harness, "web-0")
    assert code == 500
    assert result["status"] == "Failure"
    assert "more than one PodDisruptionBudget" in result["message"]

    with pytest.raises(ApiError) as err:
        await evict(harness, "web-0", evict_body("other"))
    assert (err.value.code, err.value.message) == (
        400,
        "name in URL does not match name in Eviction object",
    )
    with pytest.raises(ApiError) as err:
        await evict(harness, "missing", evict_body("missing"))
    assert err.value.code == 404


async def test_dry_run_changes_nothing(harness: Harness) -> None:
    await harness.start(DisruptionController)
    for i in range(2):
        await make_pod(harness, f"web-{i}", {"app": "web"})
    await make_pdb(harness, "web", {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})
    await budget(harness, 1)
    _, code = await evict(harness, "web-0", evict_body("web-0", dryRun=["All"]))
    assert code == 201
    assert await harness.get("", "pods", "default", "web-0") is not None
    assert (await pdb_status(harness, "web"))["disruptionsAllowed"] == 1
    assert isinstance(eviction_action(harness.objects, harness.registry), Eviction)
