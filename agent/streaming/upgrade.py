"""The two ways a streaming request upgrades: WebSocket (chunks are binary messages) and
SPDY/3.1 (the raw connection after ``101 Switching Protocols``, negotiated with the
``X-Stream-Protocol-Version`` headers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import WSMsgType, web

from agent.streaming import spdy
from edgek import hijack

SpdyHandler = Callable[[spdy.Connection, str], Awaitable[None]]


def wants_spdy(request: web.Request) -> bool:
    """Whether the request asks for a SPDY/3.1 upgrade."""
    return request.headers.get("Upgrade", "").lower().startswith("spdy/3.1")


async def ws_chunks(ws: web.WebSocketResponse) -> AsyncIterator[bytes]:
    """The binary messages of ``ws`` until it closes."""
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            yield msg.data


async def serve_spdy(
    request: web.Request, protocols: tuple[str, ...], handler: SpdyHandler
) -> web.StreamResponse:
    """Negotiate one of ``protocols`` (most preferred first), switch to SPDY/3.1 and run
    ``handler(connection, protocol)`` until the session ends."""
    offered = [
        p.strip()
        for value in request.headers.getall("X-Stream-Protocol-Version", [])
        for p in value.split(",")
    ]
    chosen = next((p for p in protocols if p in offered), "")
    if not chosen:
        raise web.HTTPForbidden(
            text=f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
            f"server supports {list(protocols)}\n"
        )
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "SPDY/3.1",
        "X-Stream-Protocol-Version": chosen,
    }
    response, reader, writer = await hijack.switch(request, headers)

    async def chunks() -> AsyncIterator[bytes]:
        while data := await reader.read(65536):
            yield data

    async def send(frame: bytes) -> None:
        writer.write(frame)
        await writer.drain()

    try:
        await spdy.run(chunks(), send, lambda conn: handler(conn, chosen))
    finally:
        writer.close()
    return response
