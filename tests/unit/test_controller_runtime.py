"""The loop runtime: work queue semantics, cache indexes, event aggregation, leader
election and the controller manager, over a real SQLite store."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

from server.cache import index_owner_uid
from server.config import ServerConfig
from server.controllers.runtime import (
    Controller,
    ControllerContext,
    ControllerManager,
    LeaderLease,
    key_of,
    split_key,
)
from server.controllers.workqueue import WorkQueue
from server.storage.objectstore import WriteOptions
from tests.unit.controller_harness import Harness


async def test_queue_dedups_and_never_runs_a_key_twice_at_once() -> None:
    running: set[str] = set()
    calls: list[str] = []
    overlap = False
    gate = asyncio.Event()

    async def reconcile(key: str) -> None:
        nonlocal overlap
        overlap = overlap or key in running
        running.add(key)
        calls.append(key)
        await gate.wait()
        running.discard(key)

    q = WorkQueue("t", reconcile, workers=4)
    q.start()
    for _ in range(5):
        q.enqueue("a")
    await asyncio.sleep(0.01)
    q.enqueue("a")  # while "a" runs: it runs once more afterwards
    q.enqueue("a")
    gate.set()
    await q.idle()
    await q.stop()
    assert calls == ["a", "a"]
    assert not overlap


async def test_failed_reconcile_backs_off_exponentially_then_resets() -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def reconcile(key: str) -> None:
        times.append(loop.time())
        if len(times) <= 3:
            raise RuntimeError("not yet")

    q = WorkQueue("t", reconcile, base_delay=0.02)
    q.start()
    q.enqueue("k")
    await q.idle()
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08
    assert "k" not in q._failures
    await q.stop()


async def test_enqueue_after_keeps_the_earliest_timer() -> None:
    seen: list[str] = []

    async def reconcile(key: str) -> None:
        seen.append(key)

    q = WorkQueue("t", reconcile)
    q.start()
    q.enqueue_after("k", 5)
    q.enqueue_after("k", 0.02)
    await asyncio.wait_for(q.idle(), 1)
    assert seen == ["k"]
    await q.stop()


def test_keys() -> None:
    assert key_of({"metadata": {"name": "a", "namespace": "ns"}}) == "ns/a"
    assert key_of({"metadata": {"name": "n1"}}) == "n1"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("n1") == ("", "n1")


class Recorder(Controller):
    name = "recorder"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.seen: list[tuple[str, bool]] = []
        self.configmaps = ctx.cache("", "configmaps")
        self.configmaps.on_event(lambda old, new: self.queue.enqueue(key_of(new or old or {})))

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        obj = self.configmaps.get(ns, name)
        self.seen.append((key, obj is not None))
        if obj is not None:
            self.record(obj, "Normal", "Seen", f"saw {name}")


def _cm(name: str, owner_uid: str = "") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if owner_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": owner_uid}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md}


async def test_controller_sees_changes_and_events_aggregate(harness: Harness) -> None:
    [c] = await harness.start(Recorder)
    assert isinstance(c, Recorder)
    await harness.create("", "configmaps", "default", _cm("a"))
    await harness.wait_for(lambda: ("default/a", True) in c.seen, what="reconcile of a")
    obj = c.configmaps.get("default", "a")
    assert obj is not None
    c.record(obj, "Normal", "Seen", "saw a")
    c.record(obj, "Normal", "Seen", "saw a")
    await harness.settle()
    await harness.events.flush()
    events = [e for e in await harness.list("", "events", "default") if e["reason"] == "Seen"]
    assert len(events) == 1
    assert events[0]["count"] == 3
    assert events[0]["involvedObject"]["name"] == "a"
    assert events[0]["source"]["component"] == "kube-controller-manager"


async def test_cache_indexes_follow_changes(harness: Harness) -> None:
    cache = harness.ctx.cache("", "configmaps")
    await harness.informers.start()
    cache.add_index("owner", index_owner_uid)
    await harness.create("", "configmaps", "default", _cm("a", "u1"))
    await harness.create("", "configmaps", "kube-system", _cm("b", "u1"))
    await harness.wait_for(lambda: len(cache.by_index("owner", "u1")) == 2)
    assert [o["metadata"]["name"] for o in cache.items("kube-system")] == ["b"]
    obj = await harness.get("", "configmaps", "default", "a")
    assert obj is not None
    obj["metadata"]["ownerReferences"][0]["uid"] = "u2"
    await harness.objects.update(
        cache.kind, "default", "a", obj, Recorder(harness.ctx).write_options()
    )
    await harness.wait_for(lambda: len(cache.by_index("owner", "u2")) == 1)
    assert [o["metadata"]["name"] for o in cache.by_index("owner", "u1")] == ["b"]


async def test_only_one_leader_per_lease(harness: Harness) -> None:
    first = LeaderLease(harness.ctx, "group", "server-a")
    second = LeaderLease(harness.ctx, "group", "server-b")
    assert await first.try_acquire()
    assert not await second.try_acquire()
    harness.clock.advance(first.duration + 1)  # server-a stopped renewing
    assert await second.try_acquire()
    assert not await first.try_acquire()
    lease = await harness.get("coordination.k8s.io", "leases", "kube-system", "group")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "server-b"
    assert lease["spec"]["leaseTransitions"] == 1


async def test_manager_skips_disabled_loops_and_leads(harness: Harness, tmp_path: Any) -> None:
    harness.ctx.config = ServerConfig(data_dir=tmp_path, disable=["recorder"])
    off = ControllerManager(harness.ctx, [Recorder], group="g1")
    assert off.controllers == []
    harness.ctx.config = ServerConfig(data_dir=tmp_path)
    on = ControllerManager(harness.ctx, [Recorder], group="g2")
    await on.start()
    assert on.running
    assert on.get("recorder") is not None
    await on.stop()
    await off.stop()


async def test_terminating_namespace_refusals_are_not_retried() -> None:
    from edgek.status import ApiError
    from server.storage.namespacelifecycle import NAMESPACE_TERMINATING_CAUSE

    calls: list[str] = []

    async def reconcile(key: str) -> None:
        calls.append(key)
        details = {"causes": [{"reason": NAMESPACE_TERMINATING_CAUSE, "field": "x"}]}
        raise ApiError(403, "Forbidden", "being terminated", details=details)

    q = WorkQueue("t", reconcile, base_delay=0.001)
    q.start()
    q.enqueue("gone/k")
    await asyncio.wait_for(q.idle(), 2)
    await asyncio.sleep(0.02)
    assert calls == ["gone/k"]
    await q.stop()


async def test_cached_objects_carry_no_managed_fields(harness: Harness) -> None:
    cache = harness.ctx.cache("", "configmaps")
    await harness.informers.start()
    created = await harness.objects.create(
        cache.kind,
        "default",
        {**_cm("mf"), "data": {"a": "1"}},
        Recorder(harness.ctx).write_options(),
    )
    assert created["metadata"]["managedFields"]
    await harness.wait_for(lambda: cache.get("default", "mf") is not None)
    cached = cache.get("default", "mf")
    assert cached is not None and "managedFields" not in cached["metadata"]
    # writing a copy of the cached object back keeps the stored managed fields
    edited = copy.deepcopy(cached)
    edited["data"] = {"a": "1", "k": "v"}
    stored, _ = await harness.objects.update(
        cache.kind, "default", "mf", edited, WriteOptions(field_manager="other")
    )
    assert {m["manager"] for m in stored["metadata"]["managedFields"]} == {
        "kube-controller-manager",
        "other",
    }
