"""asyncio task helpers shared by the server's and the agent's background loops."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and wait until each has finished;
    their cancellation is absorbed, any other exception they end with is raised."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_until_signalled(
    start: Coroutine[Any, Any, None],
    stop: Callable[[], Awaitable[None]],
    started: Callable[[], None],
) -> None:
    """A process's life: run ``start`` (SIGTERM/SIGINT during it cancel it), call
    ``started``, wait for SIGTERM or SIGINT, then ``stop`` (also when starting failed or was
    interrupted; the start's error is raised)."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    starting = asyncio.create_task(start)
    stopping = asyncio.create_task(stopped.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            started()
            await stopping
    finally:
        starting.cancel()
        stopping.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        await stop()
