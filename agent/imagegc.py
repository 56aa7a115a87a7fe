"""Image garbage collection with the kubelet's defaults.

When the filesystem holding the agent's Podman storage is at least ``high_percent`` (85) full,
unused images are removed, least recently used first (then the earliest detected), until
usage is down to ``low_percent`` (80). An image is never removed while any container (running
or not) uses it, nor within ``min_age`` (2 minutes) of the agent first seeing it, nor when it
is pinned (by id or name, e.g. the airgap images). Times are the agent's own records:
``lastUsed`` is the last pass that saw the image in use, as the kubelet keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from agent.podman.client import PodmanError

log = logging.getLogger("edgek.agent.imagegc")

HIGH_THRESHOLD_PERCENT = 85
LOW_THRESHOLD_PERCENT = 80
MIN_AGE_SECONDS = 120.0


class ImageStore(Protocol):
    """The calls of :class:`agent.podman.client.PodmanClient` image GC makes."""

    async def image_list(self) -> list[dict]: ...

    async def container_list(
        self, filters: Mapping[str, list[str]] | None = None
    ) -> list[dict]: ...

    async def image_remove(self, name: str, force: bool = False) -> None: ...


class DiskUsage(NamedTuple):
    """Capacity and available bytes of a filesystem."""

    capacity: int
    available: int


def disk_usage(path: Path) -> DiskUsage:
    """The filesystem holding ``path`` (statvfs; blocks available to unprivileged users)."""
    usage = shutil.disk_usage(path)
    return DiskUsage(usage.total, usage.free)


@dataclass
class _Record:
    first_detected: float
    last_used: float = 0.0
    size: int = 0
    names: frozenset[str] = frozenset()


@dataclass
class GCResult:
    """What one pass did: bytes it had to free, bytes freed, images removed."""

    wanted: int = 0
    freed: int = 0
    removed: list[str] = field(default_factory=list)

    @property
    def short(self) -> bool:
        """Whether less than needed could be freed (the kubelet's FreeDiskSpaceFailed)."""
        return self.freed < self.wanted


class ImageGC:
    """Image garbage collection over the agent's Podman storage."""

    def __init__(
        self,
        client: ImageStore,
        storage: Path,
        *,
        high_percent: int = HIGH_THRESHOLD_PERCENT,
        low_percent: int = LOW_THRESHOLD_PERCENT,
        min_age: float = MIN_AGE_SECONDS,
        pinned: Callable[[], set[str]] = set,
        clock: Callable[[], float] = time.time,
        usage: Callable[[Path], DiskUsage] = disk_usage,
    ) -> None:
        if not 0 <= low_percent <= high_percent <= 100:
            raise ValueError("image GC thresholds need 0 <= low <= high <= 100")
        self.client = client
        self.storage = storage
        self.high_percent = high_percent
        self.low_percent = low_percent
        self.min_age = min_age
        self.pinned = pinned
        self.clock = clock
        self.usage = usage
        self._records: dict[str, _Record] = {}

    async def detect(self) -> set[str]:
        """Refresh the records of the images in the store; returns the ids in use."""
        now = self.clock()
        images = await self.client.image_list()
        in_use = {str(c.get("ImageID") or "") for c in await self.client.container_list()}
        seen = set()
        for image in images:
            image_id = str(image["Id"])
            seen.add(image_id)
            record = self._records.setdefault(image_id, _Record(first_detected=now))
            record.size = int(image.get("Size") or 0)
            record.names = frozenset(image.get("Names") or image.get("RepoTags") or ())
            if image_id in in_use:
                record.last_used = now
        for gone in set(self._records) - seen:
            del self._records[gone]
        return in_use

    async def collect(self) -> GCResult:
        """One pass: free space down to the low threshold when above the high one."""
        in_use = await self.detect()
        capacity, available = await asyncio.to_thread(self.usage, self.storage)
        result = GCResult()
        if capacity <= 0 or 100 - available * 100 / capacity < self.high_percent:
            return result
        result.wanted = capacity * (100 - self.low_percent) // 100 - available
        now, pinned = self.clock(), self.pinned()
        candidates = sorted(
            (
                (record.last_used, record.first_detected, image_id)
                for image_id, record in self._records.items()
                if image_id not in in_use and image_id not in pinned and not record.names & pinned
            ),
        )
        for _, first_detected, image_id in candidates:
            if result.freed >= result.wanted:
                break
            if now - first_detected < self.min_age:
                continue
            try:
                await self.client.image_remove(image_id)
            except PodmanError as e:  # taken into use meanwhile, or already gone
                log.info("image GC: keeping %s: %s", image_id, e.message)
                continue
            result.freed += self._records.pop(image_id).size
            result.removed.append(image_id)
        if result.short:
            log.warning(
                "image GC: attempted to free %d bytes, but only found %d bytes eligible to free",
                result.wanted,
                result.freed,
            )
        return result
