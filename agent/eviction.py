"""Eviction under memory or disk pressure, as the kubelet's eviction manager with its
default hard thresholds (``memory.available<100Mi``, ``nodefs.available<10%``,
``imagefs.available<15%``, ``nodefs.inodesFree<5%``; images live on the agent's
filesystem, so the imagefs threshold is checked on it too).

Every :data:`INTERVAL_SECONDS` the host is sampled (:func:`agent.host.sample`, injectable);
when a threshold is crossed, the node's pods are ranked as upstream (pods whose usage
exceeds their requests first, then by lower priority, then by the largest usage above
requests) and the first one is evicted: the pod becomes ``Failed`` with reason
``Evicted`` and the kubelet's message, its containers are killed. One pod per round, as
upstream. Static pods and system-critical ones (priority ≥ 2000000000) are never evicted.
The node's MemoryPressure/DiskPressure conditions come from the same thresholds
(:func:`agent.nodestatus.pressure`); the control plane taints the node from them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent import labels
from agent.nodestatus import (
    EVICTION_IMAGEFS_AVAILABLE,
    EVICTION_MEMORY_AVAILABLE,
    EVICTION_NODEFS_AVAILABLE,
    EVICTION_NODEFS_INODES_FREE,
    HostSample,
    format_bytes,
)
from agent.podman.client import PodmanClient
from edgek.quantity import parse_quantity

log = logging.getLogger("edgek.agent.eviction")

#: How often the thresholds are checked (the kubelet's housekeeping interval).
INTERVAL_SECONDS = 10.0
#: Pods at or above this priority are critical: never evicted.
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
MEMORY = "memory"
STORAGE = "ephemeral-storage"
INODES = "inodes"

#: Per pod uid, per container name, the usage of one resource in bytes.
Usage = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Signal:
    """A crossed threshold: the resource to reclaim, the threshold and what is left."""

    resource: str
    threshold: int
    available: int

    def message(self) -> str:
        """The first sentences of the kubelet's eviction message."""
        if self.resource == INODES:
            threshold, available = str(self.threshold), str(self.available)
        else:
            threshold, available = format_bytes(self.threshold), format_bytes(self.available)
        return (
            f"The node was low on resource: {self.resource}. "
            f"Threshold quantity: {threshold}, available: {available}. "
        )


def crossed(sample: HostSample) -> Signal | None:
    """The first hard threshold ``sample`` crosses (memory first), None when none is."""
    if sample.memory_available < EVICTION_MEMORY_AVAILABLE:
        return Signal(MEMORY, EVICTION_MEMORY_AVAILABLE, sample.memory_available)
    for share in (EVICTION_NODEFS_AVAILABLE, EVICTION_IMAGEFS_AVAILABLE):
        threshold = int(sample.disk_bytes * share)
        if sample.disk_available < threshold:
            return Signal(STORAGE, threshold, sample.disk_available)
    inodes = int(sample.inodes * EVICTION_NODEFS_INODES_FREE)
    if sample.inodes_free < inodes:
        return Signal(INODES, inodes, sample.inodes_free)
    return None


def requests(pod: Mapping[str, Any], resource: str) -> dict[str, int]:
    """Each app container's request of ``resource`` in bytes (0 when it asks none)."""
    out = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        value = ((container.get("resources") or {}).get("requests") or {}).get(resource)
        out[container["name"]] = int(parse_quantity(value)) if value is not None else 0
    return out


def rank(pods: Iterable[Mapping[str, Any]], resource: str, usage: Usage) -> list[Mapping]:
    """``pods`` in eviction order for ``resource``: usage above requests first, then lower
    priority, then the largest usage above requests (inodes: by usage alone)."""

    def key(pod: Mapping[str, Any]) -> tuple[bool, int, int]:
        used = sum(usage.get(pod["metadata"]["uid"], {}).values())
        asked = 0 if resource == INODES else sum(requests(pod, resource).values())
        priority = int((pod.get("spec") or {}).get("priority") or 0)
        return (used <= asked, priority, asked - used)

    return sorted(pods, key=key)


def eviction_message(signal: Signal, pod: Mapping[str, Any], usage: Usage) -> str:
    """The kubelet's message: the threshold, then each container using more than it asked."""
    message = signal.message()
    if signal.resource == INODES:
        return message
    used = usage.get(pod["metadata"]["uid"], {})
    for name, asked in requests(pod, signal.resource).items():
        if used.get(name, 0) > asked:
            message += (
                f"Container {name} was using {format_bytes(used[name])}, request is "
                f"{format_bytes(asked)}, has larger consumption of {signal.resource}. "
            )
    return message


def evictable(pod: Mapping[str, Any]) -> bool:
    """Neither a static pod nor a critical one, and not finished."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    if annotations.get("kubernetes.io/config.source", "api") != "api":
        return False
    if int(spec.get("priority") or 0) >= SYSTEM_CRITICAL_PRIORITY:
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class Candidate(Protocol):
    """A pod the node runs (a pod worker): its object, and how to evict it."""

    pod: dict[str, Any]

    async def evict(self, message: str) -> None:
        """Fail the pod as Evicted with ``message`` and kill its containers."""


class EvictionManager:
    """Checks the thresholds and evicts one pod per round while one is crossed."""

    def __init__(
        self,
        sampler: Callable[[], HostSample],
        candidates: Callable[[], Iterable[Candidate]],
        usage: Callable[[str], Awaitable[Usage]],
    ) -> None:
        self.sampler = sampler
        self.candidates = candidates
        self.usage = usage

    async def check(self) -> str | None:
        """One round; the uid of the pod evicted, if any."""
        signal = crossed(await asyncio.to_thread(self.sampler))
        if signal is None:
            return None
        pods = {c.pod["metadata"]["uid"]: c for c in self.candidates() if evictable(c.pod)}
        if not pods:
            log.warning("eviction: %s is low, no pod to evict", signal.resource)
            return None
        usage = await self.usage(signal.resource)
        victim = rank([c.pod for c in pods.values()], signal.resource, usage)[0]
        uid = victim["metadata"]["uid"]
        message = eviction_message(signal, victim, usage)
        log.warning(
            "eviction: evicting pod %s/%s: %s",
            victim["metadata"].get("namespace"),
            victim["metadata"]["name"],
            message,
        )
        await pods[uid].evict(message)
        return uid


async def podman_usage(client: PodmanClient, node: str, pods_dir: Path, resource: str) -> Usage:
    """What each container of this node's pods uses of ``resource``: memory from Podman's
    stats, disk from the writable layers plus the pod's directory (its emptyDirs) counted
    for the pod (container name ``""``); inodes are counted in the pod's directory."""
    found = await client.call(
        "GET",
        "/containers/json",
        {
            "all": True,
            "size": resource != MEMORY,
            "filters": labels.label_filter({labels.MANAGED_BY: node}),
        },
    )
    owner = {
        str(c["Id"]): (
            (c.get("Labels") or {}).get(labels.POD_UID, ""),
            (c.get("Labels") or {}).get(labels.CONTAINER_NAME, ""),
        )
        for c in found or []
    }
    usage: Usage = {}
    if resource == MEMORY:
        stats = await client.call("GET", "/containers/stats", {"stream": False})
        for entry in (stats or {}).get("Stats") or []:
            uid, name = owner.get(str(entry.get("ContainerID")), ("", ""))
            if uid and name:
                usage.setdefault(uid, {})[name] = int(entry.get("MemUsage") or 0)
        return usage
    for c in found or []:
        uid, name = owner[str(c["Id"])]
        if uid and name and resource == STORAGE:
            size = int(((c.get("Size") or {}).get("RwSize")) or 0)
            usage.setdefault(uid, {})[name] = usage.get(uid, {}).get(name, 0) + size
    uids = {uid for uid, _ in owner.values() if uid}
    for uid in uids:
        used = await asyncio.to_thread(_dir_usage, pods_dir / uid, resource == INODES)
        usage.setdefault(uid, {})[""] = used
    return usage


def _dir_usage(path: Path, inodes: bool) -> int:
    """Bytes (or inodes) used under ``path``, not crossing into other filesystems."""
    total = 0
    if not path.is_dir():
        return 0
    device = path.stat().st_dev
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == device]
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += 1 if inodes else info.st_blocks * 512
        total += len(dirs) if inodes else 0
    return total
