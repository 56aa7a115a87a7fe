"""Port-forward into a pod's network namespace, over a WebSocket in two protocols:

- ``SPDY/3.1+portforward.k8s.io`` (kubectl 1.31+): the WebSocket's binary messages carry a
  SPDY/3.1 session. Each forwarded connection is a pair of client streams, ``error`` and
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
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from agent.streaming import spdy

log = logging.getLogger(__name__)

SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
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
    ws = web.WebSocketResponse(protocols=(SPDY_TUNNEL, V4), max_msg_size=0, autoping=True)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="a WebSocket upgrade is required\n")
    if ws.can_prepare(request).protocol == V4:
        ports = _ports(request)
        await ws.prepare(request)
        await _channels(ws, pid, ports)
    else:
        await ws.prepare(request)
        await _SpdyTunnel(ws, pid).run()
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


async def _flush(fwd: _Forward) -> None:
    """Write what the client sent to the connection (EOF after the client's FIN)."""
    assert fwd.writer is not None
    pending, fwd.pending = fwd.pending, []
    for data in pending:
        if data is None:
            if fwd.writer.can_write_eof():
                fwd.writer.write_eof()
        else:
            fwd.writer.write(data)
    await fwd.writer.drain()


@dataclass
class _Forward:
    """One forwarded connection: its SPDY streams and, once connected, the socket."""

    port: int
    error_stream: int = 0
    data_stream: int = 0
    writer: asyncio.StreamWriter | None = None
    #: what the client sent before the connection was made (``None``: its FIN)
    pending: list[bytes | None] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class _SpdyTunnel:
    """The server side of a port-forward SPDY session carried in WebSocket messages."""

    def __init__(self, ws: web.WebSocketResponse, pid: int) -> None:
        self.ws = ws
        self.pid = pid
        self.session = spdy.Session()
        self.forwards: dict[str, _Forward] = {}
        self.by_stream: dict[int, _Forward] = {}
        self._send_lock = asyncio.Lock()

    async def send(self, frame: bytes) -> None:
        """Send one frame (frames are never interleaved)."""
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_bytes(frame)

    async def run(self) -> None:
        """Read frames until the client closes the WebSocket or the session breaks."""
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                for frame in self.session.feed(msg.data):
                    await self._handle(frame)
        except spdy.ProtocolError as e:
            log.warning("port-forward: %s", e)
        finally:
            for fwd in self.forwards.values():
                self._close(fwd)

    async def _handle(self, frame: spdy.Frame) -> None:
        if frame.kind == spdy.SYN_STREAM:
            await self._new_stream(frame)
        elif frame.kind == 0:
            fwd = self.by_stream.get(frame.stream)
            if fwd is not None and frame.stream == fwd.data_stream:
                if frame.data:
                    fwd.pending.append(frame.data)
                if frame.flags & spdy.FLAG_FIN:
                    fwd.pending.append(None)
                if fwd.writer is not None:
                    await _flush(fwd)
        elif frame.kind == spdy.RST_STREAM:
            fwd = self.by_stream.get(frame.stream)
            if fwd is not None:
                self._close(fwd)
        elif frame.kind == spdy.PING:
            await self.send(self.session.ping(frame.data))
        elif frame.kind == spdy.GOAWAY:
            await self.ws.close()

    async def _new_stream(self, frame: spdy.Frame) -> None:
        headers = frame.headers
        kind, request = headers.get("streamtype", ""), headers.get("requestid", "")
        try:
            port = int(headers.get("port", ""))
        except ValueError:
            await self.send(self.session.rst(frame.stream, spdy.RST_PROTOCOL_ERROR))
            return
        if kind not in ("error", "data"):
            await self.send(self.session.rst(frame.stream, spdy.RST_PROTOCOL_ERROR))
            return
        await self.send(self.session.syn_reply(frame.stream, {}))
        fwd = self.forwards.setdefault(request, _Forward(port))
        self.by_stream[frame.stream] = fwd
        if kind == "error":
            fwd.error_stream = frame.stream
        else:
            fwd.data_stream = frame.stream
        if fwd.error_stream and fwd.data_stream:
            fwd.tasks.append(asyncio.create_task(self._connect(fwd)))

    async def _connect(self, fwd: _Forward) -> None:
        try:
            reader, fwd.writer = await dial(self.pid, fwd.port)
        except OSError as e:
            message = f"error forwarding port {fwd.port} to pod: {e}"
            await self.send(self.session.data(fwd.error_stream, message.encode(), fin=True))
            await self.send(self.session.data(fwd.data_stream, b"", fin=True))
            return
        await _flush(fwd)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(CHUNK):
                await self.send(self.session.data(fwd.data_stream, data))
        await self.send(self.session.data(fwd.data_stream, b"", fin=True))
        await self.send(self.session.data(fwd.error_stream, b"", fin=True))

    def _close(self, fwd: _Forward) -> None:
        for task in fwd.tasks:
            task.cancel()
        if fwd.writer is not None:
            fwd.writer.close()
