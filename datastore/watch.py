"""Watchers: async iterators of events for a key prefix, history first, then live events.

A watcher is registered with the datastore's broadcaster at creation, in the same loop step that
fixes ``history_end`` (the datastore's revision then), so live events are exactly those after
``history_end`` and history (read lazily from the table, page by page) covers the rest: no gap,
no duplicate. Live events wait in a bounded buffer. A watcher whose buffer is full when an event
arrives discards the buffer and reads those events (and the new one) from the table instead, like
history: writers never wait on a slow watcher, its memory stays bounded, and it catches up without
its consumer having to re-list. Only a compaction past its position ends it (CompactedError).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from datastore.types import CompactedError, Event

HistoryReader = Callable[[str, int, int, int], Awaitable[list[Event]]]
"""read_history(prefix, after, upto, limit): events with after < revision <= upto, in order."""

_HISTORY_PAGE = 500


class Watcher:
    """Async iterator of the events of keys under a prefix, in revision order."""

    def __init__(
        self,
        prefix: str,
        after: int,
        history_end: int,
        queue_size: int,
        read_history: HistoryReader,
        on_close: Callable[[Watcher], None],
    ) -> None:
        self._prefix = prefix
        self._after = after
        self._cursor = after
        self._history_end = history_end
        self._queue_size = queue_size
        self._read_history = read_history
        self._on_close = on_close
        self._history: deque[Event] = deque()
        self._live: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    def deliver(self, event: Event) -> None:
        """Offer a live event (called by the datastore's broadcaster, never blocks)."""
        revision = event.kv.mod_revision
        if (
            self._closed
            or revision <= self._after
            or revision <= self._history_end
            or not event.kv.key.startswith(self._prefix)
        ):
            return
        if len(self._live) >= self._queue_size:
            # Too far behind: read the buffered events and this one from the table later.
            self._live.clear()
            self._history_end = revision
        else:
            self._live.append(event)
        self._wakeup.set()

    def close(self) -> None:
        """Stop the watcher: iteration ends and buffered events are discarded."""
        if self._closed:
            return
        self._closed = True
        self._history.clear()
        self._live.clear()
        self._wakeup.set()
        self._on_close(self)

    def ready(self) -> bool:
        """Whether the next event is already here (the next ``__anext__`` will not wait)."""
        return bool(self._history or (self._live and self._cursor >= self._history_end))

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Event:
        while not self._closed:
            if self._history:
                return self._history.popleft()
            if self._cursor < self._history_end:
                await self._load_history()
                continue
            if self._live:
                event = self._live.popleft()
                self._cursor = event.kv.mod_revision
                return event
            self._wakeup.clear()
            await self._wakeup.wait()
        raise StopAsyncIteration

    async def _load_history(self) -> None:
        upto = self._history_end  # may grow while the read is awaited
        try:
            page = await self._read_history(self._prefix, self._cursor, upto, _HISTORY_PAGE)
        except CompactedError:
            self.close()
            raise
        if len(page) < _HISTORY_PAGE:
            self._cursor = upto
        else:
            self._cursor = page[-1].kv.mod_revision
        if not self._closed:
            self._history.extend(page)
