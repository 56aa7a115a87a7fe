"""The service proxy's sync loop (netpolicy/proxysync.py): changes coalesce into one sync,
syncs are rate-limited, the first and the periodic syncs are full, failures retry."""

from __future__ import annotations

import asyncio

from netpolicy.iptables import Applier, IptablesError
from netpolicy.proxy import NodeFacts, Ruleset
from netpolicy.proxysync import ProxySyncer


class FakeApplier(Applier):
    """Records each apply (and its ``full``) instead of running iptables."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.applied: list[bool] = []
        self.fail = fail

    async def apply(self, rs: Ruleset, full: bool = False) -> str:
        """Record, or fail the first ``fail`` times."""
        if self.fail:
            self.fail -= 1
            raise IptablesError("iptables-restore: busy")
        self.applied.append(full)
        return ""


def syncer(applier: FakeApplier, **kw: float) -> ProxySyncer:
    """A syncer over no objects."""
    return ProxySyncer(applier, lambda: ([], []), NodeFacts("n1"), **kw)


async def test_changes_coalesce_and_rate_limit() -> None:
    applier = FakeApplier()
    s = syncer(applier, min_interval=0.3, full_interval=60)
    task = asyncio.create_task(s.run())
    try:
        s.changed()
        await asyncio.sleep(0.05)
        assert applier.applied == [True]  # the first sync is full
        for _ in range(20):  # a burst during the rate-limit pause
            s.changed()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        assert len(applier.applied) == 1
        await asyncio.sleep(0.35)
        assert applier.applied == [True, False]  # one incremental sync for the whole burst
    finally:
        task.cancel()


async def test_periodic_full_sync_and_retry() -> None:
    applier = FakeApplier(fail=1)
    s = syncer(applier, min_interval=0.01, full_interval=0.2)
    task = asyncio.create_task(s.run())
    try:
        s.changed()
        await asyncio.sleep(0.1)
        assert applier.applied == [True]  # failed once, retried
        await asyncio.sleep(0.3)
        assert applier.applied[1:2] == [True]  # nothing changed: the periodic full sync
    finally:
        task.cancel()
