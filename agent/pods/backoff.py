"""Restart and pull back-off per container, as the kubelet's: the first retry is at once,
then a container that fails again within the current delay waits it out; the delay starts
at 10 s and doubles up to 5 min, and is forgotten once the container stayed up (no retry)
for twice the maximum (10 min).

With a ``path`` (the agent's state directory), the delays are kept in a file, written in
the background after each change and read again at start, so an agent restart does not
reset a crash-looping container's delay."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edgek.kubeconfig import atomic_write

log = logging.getLogger("edgek.agent.pods")

INITIAL = 10.0
MAXIMUM = 300.0


@dataclass
class _Entry:
    delay: float
    updated: float


class Backoff:
    """Delays keyed by ``(pod uid, container)``; times are wall-clock seconds."""

    def __init__(
        self, initial: float = INITIAL, maximum: float = MAXIMUM, path: Path | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.path = path
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None

    @classmethod
    def load(cls, path: Path) -> Backoff:
        """The back-off kept in ``path`` (empty when missing or unreadable); it saves its
        changes there."""
        backoff = cls(path=path)
        try:
            rows = json.loads(path.read_text())
            for uid, name, delay, updated in rows:
                backoff._entries[(str(uid), str(name))] = _Entry(float(delay), float(updated))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as e:
            log.warning("ignoring %s: %s", path, e)
        return backoff

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
        self._changed()

    def forget(self, uid: str) -> None:
        """Drop every entry of the pod ``uid``."""
        for key in [k for k in self._entries if k[0] == uid]:
            del self._entries[key]
        self._changed()

    def _changed(self) -> None:
        """Save in the background (one write at a time, the latest state last)."""
        if self.path is None:
            return
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.get_running_loop().create_task(self._save(self.path))

    async def _save(self, path: Path) -> None:
        while self._dirty:
            self._dirty = False
            rows = [[k[0], k[1], e.delay, e.updated] for k, e in self._entries.items()]
            try:
                await asyncio.to_thread(_write, path, json.dumps(rows).encode())
            except OSError as e:
                log.warning("saving %s: %s", path, e)

    async def flush(self) -> None:
        """Wait for the pending save, if any."""
        if self._saver is not None:
            await self._saver


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, data, mode=0o600)
