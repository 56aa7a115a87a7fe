"""The ReplicaSet controller on the control-loop bench: creating, deleting and adopting
pods, expectations, status (ready/available with minReadySeconds) and failure reporting.
No kubelet runs: tests write pod status themselves."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from edgek.objects import Obj
from edgek.status import ApiError
from edgek.timefmt import format_time
from server.controllers.expectations import SlowStartError, slow_start_batch
from server.controllers.replicaset import (
    ReplicaSetController,
    deletion_order,
)
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.manifests import workload
from tests.unit.controller_harness import T0, Harness

NS = "default"


def replica_set(name: str, replicas: int, *, labels: dict[str, str] | None = None) -> Obj:
    pod_spec = {"containers": [{"name": "c", "image": "nginx:1"}]}
    return workload("ReplicaSet", name, pod_spec, labels=labels, replicas=replicas)


def orphan_pod(name: str, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }


async def pods_of(h: Harness, rs: Obj) -> list[Obj]:
    uid = rs["metadata"]["uid"]
    return [
        p
        for p in await h.list("", "pods", NS)
        if any(
            r.get("uid") == uid and r.get("controller")
            for r in p["metadata"].get("ownerReferences") or []
        )
    ]


async def scale(h: Harness, name: str, replicas: int) -> None:
    rs = await h.get("apps", "replicasets", NS, name)
    assert rs is not None
    rs["spec"]["replicas"] = replicas
    await h.objects.update(h.kind("apps", "replicasets"), NS, name, rs, WriteOptions())


async def event_messages(h: Harness, reason: str) -> list[str]:
    await h.events.flush()
    return [e["message"] for e in await h.list("", "events", NS) if e["reason"] == reason]


async def test_creates_pods_with_owner_and_reports_status(harness: Harness) -> None:
    h = harness
    await h.start(ReplicaSetController)
    rs = await h.create("apps", "replicasets", NS, replica_set("web", 3))
    await h.settle()
    pods = await pods_of(h, rs)
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith("web-")
        assert pod["metadata"]["generateName"] == "web-"
        assert pod["metadata"]["labels"] == {"app": "web"}
        (ref,) = pod["metadata"]["ownerReferences"]
        assert ref["kind"] == "ReplicaSet" and ref["apiVersion"] == "apps/v1"
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
    stored = await h.get("apps", "replicasets", NS, "web")
    assert stored is not None
    assert stored["status"] == {"replicas": 3, "fullyLabeledReplicas": 3, "observedGeneration": 1}
    created = await event_messages(h, "SuccessfulCreate")
    assert sorted(created) == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)

    await h.set_pod_status(NS, pods[0]["metadata"]["name"], ready=True)
    await h.set_pod_status(NS, pods[1]["metadata"]["name"], ready=False)
    await h.settle()
    stored = await h.get("apps", "replicasets", NS, "web")
    assert stored is not None
    assert stored["status"]["readyReplicas"] == 1
    assert stored["status"]["availableReplicas"] == 1


async def test_many_replicas_are_created_exactly_once(harness: Harness) -> None:
    """Expectations keep reconciles triggered by the controller's own creations from
    creating more pods before the cache has seen them."""
    h = harness
    [controller] = await h.start(ReplicaSetController)
    rs = await h.create("apps", "replicasets", NS, replica_set("many", 40))
    for _ in range(5):  # extra triggers while the first batch is in flight
        controller.queue.enqueue(f"{NS}/many")
        await asyncio.sleep(0)
    await h.settle()
    assert len(await pods_of(h, rs)) == 40


async def test_replaces_deleted_pods(harness: Harness) -> None:
    h = harness
    await h.start(ReplicaSetController)
    rs = await h.create("apps", "replicasets", NS, replica_set("web", 2))
    await h.settle()
    victim = (await pods_of(h, rs))[0]
    await h.objects.delete(h.kind("", "pods"), NS, victim["metadata"]["name"], DeleteOptions())
    await h.settle()
    names = {p["metadata"]["name"] for p in await pods_of(h, rs)}
    assert len(names) == 2 and victim["metadata"]["name"] not in names


async def test_scale_down_deletes_least_valuable_pods(harness: Harness) -> None:
    h = harness
    await h.start(ReplicaSetController)
    rs = await h.create("apps", "replicasets", NS, replica_set("web", 4))
    await h.settle()
    pods = await pods_of(h, rs)
    keep = {pods[0]["metadata"]["name"], pods[1]["metadata"]["name"]}
    await h.set_pod_status(NS, pods[0]["metadata"]["name"], ready=True)
    await h.set_pod_status(NS, pods[1]["metadata"]["name"], ready=True)
    # running, not ready; pods[3] stays pending
    await h.set_pod_status(NS, pods[2]["metadata"]["name"], ready=False)
    await h.settle()
    await scale(h, "web", 2)
    await h.settle()
    left = {p["metadata"]["name"] for p in await pods_of(h, rs)}
    assert left == keep
    deleted = await event_messages(h, "SuccessfulDelete")
    assert sorted(deleted) == sorted(f"Deleted pod: {p['metadata']['name']}" for p in pods[2:])


async def test_adopts_orphans_and_releases_non_matching_pods(harness: Harness) -> None:
    h = harness
    for i in range(2):
        await h.create("", "pods", NS, orphan_pod(f"stray-{i}", {"app": "web"}))
    await h.create("", "pods", NS, orphan_pod("other", {"app": "other"}))
    await h.start(ReplicaSetController)
    rs = await h.create("apps", "replicasets", NS, replica_set("web", 3))
    await h.settle()
    names = {p["metadata"]["name"] for p in await pods_of(h, rs)}
    assert {"stray-0", "stray-1"} <= names and len(names) == 3
    assert "other" not in names

    pod = await h.get("", "pods", NS, "stray-0")
    assert pod is not None
    pod["metadata"]["labels"] = {"app": "elsewhere"}
    await h.objects.update(h.kind("", "pods"), NS, "stray-0", pod, WriteOptions())
    await h.settle()
    released = await h.get("", "pods", NS, "stray-0")
    assert released is not None and not released["metadata"].get("ownerReferences")
    names = {p["metadata"]["name"] for p in await pods_of(h, rs)}
    assert len(names) == 3 and "stray-0" not in names


async def test_available_waits_for_min_ready_seconds(harness: Harness) -> None:
    h = harness
    [controller] = await h.start(ReplicaSetController)
    body = replica_set("slow", 1)
    body["spec"]["minReadySeconds"] = 10
    rs = await h.create("apps", "replicasets", NS, body)
    await h.settle()
    (pod,) = await pods_of(h, rs)
    await h.set_pod_status(NS, pod["metadata"]["name"], ready=True)
    await h.settle()
    stored = await h.get("apps", "replicasets", NS, "slow")
    assert stored is not None
    assert stored["status"].get("readyReplicas") == 1
    assert stored["status"].get("availableReplicas") is None
    h.clock.advance(10)
    controller.queue.enqueue(f"{NS}/slow")  # the real-time requeue timer stands in here
    await h.settle()
    stored = await h.get("apps", "replicasets", NS, "slow")
    assert stored is not None and stored["status"].get("availableReplicas") == 1


async def test_create_failure_sets_replica_failure_condition(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused pod creations surface as FailedCreate events and a ReplicaFailure condition,
    which goes away once pods can be created again."""
    h = harness
    real_create = h.objects.create
    refused = 'pods "web-x" is forbidden: exceeded quota: q'

    async def refusing_create(kind: Any, namespace: str, obj: Obj, opts: WriteOptions) -> Obj:
        if kind.resource == "pods":
            raise ApiError(403, "Forbidden", refused)
        return await real_create(kind, namespace, obj, opts)

    monkeypatch.setattr(h.objects, "create", refusing_create)
    await h.start(ReplicaSetController)
    await real_create(h.kind("apps", "replicasets"), NS, replica_set("web", 2), WriteOptions())

    async def condition() -> Obj | None:
        rs = await h.get("apps", "replicasets", NS, "web")
        assert rs is not None
        conditions = (rs.get("status") or {}).get("conditions") or []
        return conditions[0] if conditions else None

    async def has_condition() -> bool:
        return await condition() is not None

    await h.wait_for(has_condition, what="ReplicaFailure condition")
    cond = await condition()
    assert cond is not None
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "ReplicaFailure",
        "True",
        "FailedCreate",
        refused,
    )
    messages = await event_messages(h, "FailedCreate")
    assert messages == [f"Error creating: {refused}"]

    monkeypatch.setattr(h.objects, "create", real_create)
    await h.wait_for(lambda: condition_cleared(h), timeout=10, what="condition cleared")
    assert len(await h.list("", "pods", NS)) == 2


async def condition_cleared(h: Harness) -> bool:
    rs = await h.get("apps", "replicasets", NS, "web")
    return rs is not None and not (rs.get("status") or {}).get("conditions")


async def test_slow_start_batches_double_and_stop_on_failure() -> None:
    calls: list[int] = []
    in_flight = 0

    async def ok() -> None:
        nonlocal in_flight
        in_flight += 1
        calls.append(in_flight)
        await asyncio.sleep(0)
        in_flight -= 1

    assert await slow_start_batch(10, 1, ok) == 10
    assert max(calls) == 4  # batches 1, 2, 4, 3

    attempts = 0

    async def fail_from_fourth() -> None:
        nonlocal attempts
        attempts += 1
        if attempts >= 4:
            raise RuntimeError("boom")

    with pytest.raises(SlowStartError) as info:
        await slow_start_batch(20, 1, fail_from_fourth)
    assert attempts == 7  # batches 1, 2, then 4 with failures; no further batch
    assert info.value.successes == 3


def _pod(name: str, *, node: str = "", phase: str = "", ready_at: int | None = None) -> Obj:
    status: Obj = {"phase": phase} if phase else {}
    if ready_at is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": format_time(T0 + timedelta(seconds=ready_at)),
            }
        ]
    return {
        "metadata": {"name": name, "uid": name, "creationTimestamp": format_time(T0)},
        "spec": {"nodeName": node} if node else {},
        "status": status,
    }


def test_deletion_order_prefers_unhealthy_and_newer_pods() -> None:
    now = T0 + timedelta(seconds=10_000)
    pods = [
        _pod("ready-old", node="n1", phase="Running", ready_at=0),
        _pod("ready-new", node="n2", phase="Running", ready_at=9_990),
        _pod("running", node="n1", phase="Running"),
        _pod("pending", node="n1", phase="Pending"),
        _pod("unscheduled", phase="Pending"),
    ]
    order = [p["metadata"]["name"] for p in deletion_order(pods, [], now)]
    assert order == ["unscheduled", "pending", "running", "ready-new", "ready-old"]
    doubled = [
        _pod("alone", node="n1", phase="Running", ready_at=0),
        _pod("crowded", node="n2", phase="Running", ready_at=0),
    ]
    related = [*doubled, _pod("sibling", node="n2", phase="Running")]
    assert deletion_order(doubled, related, now)[0]["metadata"]["name"] == "crowded"
