"""Take over an aiohttp server connection after answering ``101 Switching Protocols`` for
an upgrade aiohttp itself does not speak (SPDY/3.1, as Kubernetes' streaming clients ask).

aiohttp only hands raw bytes to handlers for WebSocket (and ``tcp``) upgrades; for any other
``Upgrade`` it would parse what follows as HTTP. :func:`switch` writes the 101 response,
then gives the transport a new protocol so the bytes that follow reach the returned
reader; the connection is closed when the handler returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web


async def switch(
    request: web.Request, headers: Mapping[str, str]
) -> tuple[web.StreamResponse, asyncio.StreamReader, asyncio.StreamWriter]:
    """Answer 101 with ``headers`` (``Connection``/``Upgrade`` included) and take over the
    connection: the prepared response (return it from the handler once done) and the
    stream pair of the connection."""
    response = web.StreamResponse(status=101, headers=headers)
    response.force_close()
    await response.prepare(request)
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away during the upgrade")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    transport.resume_reading()
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return response, reader, writer
