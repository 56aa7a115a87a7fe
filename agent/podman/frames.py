"""libpod's multiplexed stream framing (logs, exec and attach without a tty).

Each frame is an 8-byte header — stream id (0 stdin, 1 stdout, 2 stderr, 3 the runtime's
own errors), three zero bytes, the payload size as a big-endian uint32 — then the payload.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Protocol

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxI")


class ExactReader(Protocol):
    """Anything with ``readexactly`` (asyncio's and aiohttp's stream readers)."""

    async def readexactly(self, n: int) -> bytes: ...


async def read_frames(reader: ExactReader) -> AsyncIterator[tuple[int, bytes]]:
    """Yield ``(stream, payload)`` until the stream ends on a frame boundary.

    A stream that ends inside a frame raises :class:`asyncio.IncompleteReadError`."""
    while True:
        try:
            header = await reader.readexactly(_HEADER.size)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise
            return
        stream, size = _HEADER.unpack(header)
        yield stream, await reader.readexactly(size) if size else b""
