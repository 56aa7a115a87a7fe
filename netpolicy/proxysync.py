"""When the service proxy writes its rules: changes coalesce, syncs are rate-limited.

:class:`ProxySyncer` is told :meth:`~ProxySyncer.changed` whenever a Service or
EndpointSlice changes; its loop builds the ruleset from the current objects and applies it,
at most once per ``min_interval`` (kube-proxy's ``minSyncPeriod``; changes arriving in
between are folded into the next sync) and in full (every edgek chain rewritten, repairing
anything changed behind its back) at least every ``full_interval``. The rules of services whose objects did not change are
reused from the previous build. A failed sync is retried
after ``min_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from netpolicy.iptables import Applier, IptablesError
from netpolicy.proxy import Cache, NodeFacts, build

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0
FULL_INTERVAL = 3600.0

Objects = tuple[Iterable[Mapping[str, Any]], Iterable[Mapping[str, Any]]]


class ProxySyncer:
    """Keeps the tables in step with ``objects()`` (Services, EndpointSlices)."""

    def __init__(
        self,
        applier: Applier,
        objects: Callable[[], Objects],
        node: NodeFacts,
        *,
        min_interval: float = MIN_INTERVAL,
        full_interval: float = FULL_INTERVAL,
    ) -> None:
        self.applier = applier
        self.objects = objects
        self.node = node
        self.min_interval = min_interval
        self.full_interval = full_interval
        self.syncs = 0
        self._dirty = asyncio.Event()
        self._last_full = float("-inf")
        self._cache: Cache = {}

    def changed(self) -> None:
        """Something changed: sync soon (once, however many changes arrive meanwhile)."""
        self._dirty.set()

    async def sync(self) -> None:
        """One sync now: full when the last full one is older than ``full_interval``."""
        full = time.monotonic() - self._last_full >= self.full_interval
        services, slices = self.objects()
        rs = build(services, slices, self.node, self._cache)
        await self.applier.apply(rs, full=full)
        if full:
            self._last_full = time.monotonic()
        log.log(
            logging.INFO if full else logging.DEBUG,
            "service proxy synced (%s, %d chains)",
            "full" if full else "changed chains",
            sum(len(chains) for chains in rs.tables.values()),
        )
        self.syncs += 1

    async def run(self) -> None:
        """Sync on changes and periodically, until cancelled."""
        while True:
            try:
                async with asyncio.timeout(self.full_interval):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            started = time.monotonic()
            try:
                await self.sync()
            except (IptablesError, OSError) as e:
                log.warning("service proxy: sync failed (%s); retrying", e)
                self._dirty.set()
            await asyncio.sleep(max(0.0, self.min_interval - (time.monotonic() - started)))
