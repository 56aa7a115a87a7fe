"""Restart and pull back-off per container, as the kubelet's: the first retry is at once,
then a container that fails again within the current delay waits it out; the delay starts
at 10 s and doubles up to 5 min, and is forgotten once the container stayed up (no retry)
for twice the maximum (10 min)."""

from __future__ import annotations

from dataclasses import dataclass

INITIAL = 10.0
MAXIMUM = 300.0


@dataclass
class _Entry:
    delay: float
    updated: float


class Backoff:
    """Delays keyed by ``(pod uid, container)``; times are monotonic seconds."""

    def __init__(self, initial: float = INITIAL, maximum: float = MAXIMUM) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[tuple[str, str], _Entry] = {}

    def _live(self, key: tuple[str, str], now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.updated > 2 * self.maximum:
            del self._entries[key]
            return None
        return entry

    def remaining(self, key: tuple[str, str], since: float, now: float) -> float:
        """Seconds still to wait before retrying ``key``, whose last failure was at
        ``since`` (0: retry now)."""
        entry = self._live(key, now)
        if entry is None:
            return 0.0
        return max(0.0, since + entry.delay - now)

    def delay(self, key: tuple[str, str], now: float) -> float:
        """The current delay of ``key`` (for messages)."""
        entry = self._live(key, now)
        return entry.delay if entry else self.initial

    def next(self, key: tuple[str, str], now: float) -> None:
        """Record a retry of ``key``: the delay starts, or doubles."""
        entry = self._live(key, now)
        if entry is None:
            self._entries[key] = _Entry(self.initial, now)
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.updated = now

    def forget(self, uid: str) -> None:
        """Drop every entry of the pod ``uid``."""
        for key in [k for k in self._entries if k[0] == uid]:
            del self._entries[key]
