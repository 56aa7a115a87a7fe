"""Pod writes a controller made that its cache has not shown yet, and slow-start batches.

``Expectations`` is upstream's ``UIDTrackingControllerExpectations`` for the loops that
create and delete pods (ReplicaSet, DaemonSet, Job): per owner key, the creations (a count
when the server picks the names, else the names), the deletions (pod uids) and the
finalizer removals (pod uids) still to be seen. A reconcile that finds its owner
unsatisfied leaves the pods alone, so a stale cache never makes it act twice on one write.
Creations and deletions are given up on after a timeout (a lost event); finalizer removals
are kept until seen or forgotten.

``slow_start_batch`` makes many calls in growing batches (1, 2, 4, ...) and stops after
the first batch with a failure, so a failing template costs a few calls, not hundreds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from edgek.objects import Obj, meta

#: Expectations older than this are given up on (upstream ``ExpectationsTimeout``).
EXPECTATIONS_TIMEOUT = 300.0
#: First slow-start batch (upstream ``SlowStartInitialBatchSize``).
SLOW_START_INITIAL_BATCH = 1


@dataclass
class Expectation:
    """The unseen pod writes of one owner."""

    adds: int = 0  # creations whose pod names the server picks
    created: set[str] = field(default_factory=set)  # names of created pods
    deleted: set[str] = field(default_factory=set)  # uids of deleted pods
    finalizers: set[str] = field(default_factory=set)  # uids of pods losing a finalizer
    since: float = field(default_factory=time.monotonic)

    @property
    def pending(self) -> bool:
        """Whether creations or deletions are still to be seen."""
        return self.adds > 0 or bool(self.created) or bool(self.deleted)

    def touch(self) -> None:
        """Restart the timeout: a write was just made."""
        self.since = time.monotonic()


class Expectations:
    """Unseen pod writes per owner key. ``finalizer`` names the finalizer whose removal
    :meth:`observe` watches for (unset: finalizers are not tracked)."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT, finalizer: str = "") -> None:
        self.timeout = timeout
        self.finalizer = finalizer
        self._items: dict[str, Expectation] = {}

    def get(self, key: str) -> Expectation | None:
        """The owner's expectation, if it has one."""
        return self._items.get(key)

    def entry(self, key: str) -> Expectation:
        """The owner's expectation, created empty when missing."""
        exp = self._items.get(key)
        if exp is None:
            exp = self._items[key] = Expectation()
        return exp

    def satisfied(self, key: str) -> bool:
        """Whether the cache has shown every creation and deletion (or they expired);
        then they are dropped."""
        exp = self._items.get(key)
        if exp is None:
            return True
        if exp.pending and time.monotonic() - exp.since <= self.timeout:
            return False
        if exp.finalizers:
            exp.adds = 0
            exp.created.clear()
            exp.deleted.clear()
        else:
            del self._items[key]
        return True

    def expect_creations(self, key: str, count: int) -> None:
        """``count`` pods with server-picked names are about to be created (replaces what
        was expected before)."""
        self._items[key] = Expectation(adds=count)

    def expect_deletions(self, key: str, uids: list[str]) -> None:
        """These pods are about to be deleted (replaces what was expected before)."""
        self._items[key] = Expectation(deleted=set(uids))

    def creation_observed(self, key: str, count: int = 1) -> None:
        """``count`` expected creations were seen (or will never happen)."""
        exp = self._items.get(key)
        if exp is not None:
            exp.adds -= count

    def deletion_observed(self, key: str, uid: str) -> None:
        """The deletion of pod ``uid`` was seen (or will never happen)."""
        exp = self._items.get(key)
        if exp is not None:
            exp.deleted.discard(uid)

    def observe(self, key: str, old: Obj | None, new: Obj | None) -> None:
        """A pod event of the owner: settles the creation, deletion and finalizer removal
        it shows."""
        exp = self._items.get(key)
        pod = new if new is not None else old
        if exp is None or pod is None:
            return
        md = meta(pod)
        gone = new is None or bool(md.get("deletionTimestamp"))
        if old is None or gone:
            exp.created.discard(md.get("name", ""))
        if gone:
            exp.deleted.discard(md.get("uid", ""))
        if new is None or self.finalizer not in (md.get("finalizers") or []):
            exp.finalizers.discard(md.get("uid", ""))

    def forget(self, key: str) -> None:
        """Drop the owner's expectation (the owner is gone)."""
        self._items.pop(key, None)


class SlowStartError(Exception):
    """A slow-start batch failed: how many calls succeeded, and the first error."""

    def __init__(self, successes: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.successes = successes
        self.error = error


async def slow_start_batch(count: int, initial: int, fn: Callable[[], Awaitable[None]]) -> int:
    """Call ``fn`` ``count`` times in concurrent batches of growing size (1, 2, 4, ...),
    stopping after the first batch with a failure (upstream ``slowStartBatch``). Returns the
    number of calls made; raises ``SlowStartError`` (successes so far, first error) on failure."""
    successes, remaining, batch = 0, count, min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        if errors:
            raise SlowStartError(successes, errors[0])
        remaining -= batch
        batch = min(remaining, 2 * batch)
    return successes
