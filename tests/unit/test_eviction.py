"""The eviction manager with an injected host sample and usage: which threshold is crossed,
the upstream ranking, the kubelet's message, one pod per round, pods never evicted."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.eviction import (
    INODES,
    MEMORY,
    STORAGE,
    EvictionManager,
    Usage,
    crossed,
    eviction_message,
    rank,
)
from agent.nodestatus import HostSample

Mi = 2**20
GOOD = HostSample(
    cpus=2,
    memory_bytes=4096 * Mi,
    memory_available=2048 * Mi,
    disk_bytes=1000 * Mi,
    disk_available=500 * Mi,
    inodes=1000,
    inodes_free=500,
)


def sample(**fields: int) -> HostSample:
    return HostSample(**{**GOOD.__dict__, **fields})


def pod(name: str, memory: str | None = None, priority: int = 0, **meta: Any) -> dict[str, Any]:
    resources = {"requests": {"memory": memory}} if memory else {}
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", **meta},
        "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]},
        "status": {"phase": "Running"},
    }


def test_thresholds() -> None:
    assert crossed(GOOD) is None
    low = crossed(sample(memory_available=50 * Mi))
    assert low is not None and (low.resource, low.threshold) == (MEMORY, 100 * Mi)
    disk = crossed(sample(disk_available=120 * Mi))  # below the imagefs 15 %
    assert disk is not None and (disk.resource, disk.threshold) == (STORAGE, 150 * Mi)
    inodes = crossed(sample(inodes_free=40))
    assert inodes is not None and (inodes.resource, inodes.threshold) == (INODES, 50)


def test_rank_by_requests_priority_and_usage() -> None:
    within = pod("within", memory="100Mi")
    over_small = pod("over-small", memory="10Mi")
    over_big = pod("over-big")
    important = pod("important", priority=1000)
    usage: Usage = {
        "u-within": {"c": 50 * Mi},
        "u-over-small": {"c": 20 * Mi},
        "u-over-big": {"c": 30 * Mi},
        "u-important": {"c": 500 * Mi},
    }
    order = rank([within, important, over_small, over_big], MEMORY, usage)
    assert [p["metadata"]["name"] for p in order] == [
        "over-big",  # exceeds requests by the most among the lowest priority
        "over-small",
        "important",  # exceeds, but with a higher priority
        "within",
    ]


def test_message_as_the_kubelet_writes_it() -> None:
    signal = crossed(sample(memory_available=50 * Mi))
    assert signal is not None
    message = eviction_message(signal, pod("p", memory="10Mi"), {"u-p": {"c": 20 * Mi}})
    assert message == (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        "Container c was using 20Mi, request is 10Mi, has larger consumption of memory. "
    )
    assert "Container" not in eviction_message(signal, pod("p", "30Mi"), {"u-p": {"c": Mi}})


class Worker:
    def __init__(self, p: dict[str, Any]) -> None:
        self.pod = p
        self.evicted: list[str] = []

    async def evict(self, message: str) -> None:
        self.evicted.append(message)


def test_one_pod_per_round_never_static_or_critical() -> None:
    static = Worker(pod("static", annotations={"kubernetes.io/config.source": "file"}))
    critical = Worker(pod("critical", priority=2_000_000_000))
    done = Worker({**pod("done"), "status": {"phase": "Succeeded"}})
    victim, other = Worker(pod("victim")), Worker(pod("other", memory="1Gi"))
    workers = [static, critical, done, victim, other]
    host = [sample(memory_available=50 * Mi)]

    async def usage(resource: str) -> Usage:
        assert resource == MEMORY
        return {w.pod["metadata"]["uid"]: {"c": 300 * Mi} for w in workers}

    manager = EvictionManager(lambda: host[0], lambda: workers, usage)
    assert asyncio.run(manager.check()) == "u-victim"
    assert len(victim.evicted) == 1 and not other.evicted
    assert victim.evicted[0].startswith("The node was low on resource: memory.")
    assert not static.evicted and not critical.evicted and not done.evicted
    host[0] = GOOD
    assert asyncio.run(manager.check()) is None
    workers[:] = [static, critical]
    host[0] = sample(memory_available=50 * Mi)
    assert asyncio.run(manager.check()) is None
