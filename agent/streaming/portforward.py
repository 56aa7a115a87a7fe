"""Port-forward into a pod's network namespace, in three forms:

- ``SPDY/3.1+portforward.k8s.io`` (kubectl 1.31+): the WebSocket's binary messages carry a
  SPDY/3.1 session; a plain SPDY/3.1 upgrade negotiating ``portforward.k8s.io`` (kubectl's
  fallback) carries the same session on the raw connection. Each forwarded connection is a pair of client streams, ``error`` and
  ``data``, whose headers name the ``port`` and a shared ``requestid``; the data stream is
  spliced to a new connection to that port, errors go back as text on the error stream.
- ``v4.channel.k8s.io`` (the Python client, ``?ports=a,b``): one connection per port;
  port i's data travels on channel 2i and its errors on 2i+1, and each channel's first
  message is the port number (uint16, little-endian).

Connections are made to 127.0.0.1:<port> inside the pod's network namespace: a worker
thread enters it (setns) just long enough to connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import struct

from aiohttp import WSMsgType, web

from agent.streaming import spdy, upgrade

log = logging.getLogger(__name__)

SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
#: The port-forward protocol negotiated on a plain SPDY upgrade.
SPDY_PROTOCOL = "portforward.k8s.io"
V4 = "v4.channel.k8s.io"
CLONE_NEWNET = 0x40000000
CHUNK = 32 * 1024
CONNECT_SECONDS = 10.0


def _connect_in_netns(pid: int, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` made inside ``pid``'s network namespace (the
    calling thread goes back to its own namespace before returning)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the pod's network namespace")
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECONDS)
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # never leave a worker thread there
                    os.abort()
        finally:
            os.close(target)
    finally:
        os.close(own)


async def dial(pid: int, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams of a new connection to ``port`` in the pod of ``pid``."""
    sock = await asyncio.to_thread(_connect_in_netns, pid, port)
    sock.settimeout(None)
    return await asyncio.open_connection(sock=sock)


async def serve(request: web.Request, pid: int) -> web.StreamResponse:
    """Upgrade ``request`` and forward until the client goes away."""
    if upgrade.wants_spdy(request):
        return await upgrade.serve_spdy(
            request, (SPDY_PROTOCOL,), lambda conn, _protocol: forward_streams(conn, pid)
        )
    ws = web.WebSocketResponse(protocols=(SPDY_TUNNEL, V4), max_msg_size=0, autoping=True)
    ready = ws.can_prepare(request)
    if not ready.ok:
        raise web.HTTPBadRequest(text="a WebSocket or SPDY/3.1 upgrade is required\n")
    ports = _ports(request) if ready.protocol == V4 else []
    await ws.prepare(request)
    if ready.protocol == V4:
        await _channels(ws, pid, ports)
    else:
        await spdy.run(upgrade.ws_chunks(ws), ws.send_bytes, lambda c: forward_streams(c, pid))
    return ws


def _ports(request: web.Request) -> list[int]:
    values = [p for v in request.query.getall("ports", []) for p in v.split(",") if p]
    try:
        ports = [int(p) for p in values]
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid port in {values}\n") from None
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise web.HTTPBadRequest(text="ports must be given, each in 1..65535\n")
    return ports


async def _channels(ws: web.WebSocketResponse, pid: int, ports: list[int]) -> None:
    """The v4 channel protocol: one connection per port."""
    writers: dict[int, asyncio.StreamWriter] = {}
    pumps = []
    for i, port in enumerate(ports):
        for channel in (2 * i, 2 * i + 1):
            await ws.send_bytes(bytes([channel]) + struct.pack("<H", port))
        try:
            reader, writers[2 * i] = await dial(pid, port)
        except OSError as e:
            message = f"error forwarding port {port} to pod: {e}"
            await ws.send_bytes(bytes([2 * i + 1]) + message.encode())
            continue
        pumps.append(asyncio.create_task(_pump_channel(ws, reader, 2 * i)))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and msg.data and msg.data[0] in writers:
                writer = writers[msg.data[0]]
                writer.write(msg.data[1:])
                await writer.drain()
    finally:
        for task in pumps:
            task.cancel()
        for writer in writers.values():
            writer.close()


async def _pump_channel(ws: web.WebSocketResponse, reader: asyncio.StreamReader, ch: int) -> None:
    while data := await reader.read(CHUNK):
        await ws.send_bytes(bytes([ch]) + data)
    await ws.close()


async def forward_streams(conn: spdy.Connection, pid: int) -> None:
    """The port-forward protocol on a SPDY session: pair each request's ``error`` and
    ``data`` streams, then splice the data stream to a new connection to the port."""
    pending: dict[str, dict[str, spdy.Stream]] = {}
    tasks: list[asyncio.Task[None]] = []
    try:
        while (stream := await conn.streams.get()) is not None:
            kind = stream.headers.get("streamtype", "")
            pair = pending.setdefault(stream.headers.get("requestid", ""), {})
            pair[kind] = stream
            if "error" in pair and "data" in pair:
                del pending[stream.headers.get("requestid", "")]
                tasks.append(asyncio.create_task(_forward(pair["data"], pair["error"], pid)))
    finally:
        for task in tasks:
            task.cancel()


async def _forward(data: spdy.Stream, error: spdy.Stream, pid: int) -> None:
    try:
        port = int(data.headers.get("port", ""))
        reader, writer = await dial(pid, port)
    except (OSError, ValueError) as e:
        message = f"error forwarding port {data.headers.get('port')} to pod: {e}"
        await error.write(message.encode())
        await error.close()
        await data.close()
        return
    upload = asyncio.create_task(_upload(data, writer))
    try:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK):
                await data.write(chunk)
        await data.close()
        await error.close()
        await upload
    finally:
        upload.cancel()
        writer.close()


async def _upload(data: spdy.Stream, writer: asyncio.StreamWriter) -> None:
    """What the client sends on the data stream, to the connection (EOF after its FIN)."""
    with contextlib.suppress(ConnectionError):
        while (chunk := await data.read()) is not None:
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
