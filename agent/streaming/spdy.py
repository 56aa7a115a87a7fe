"""SPDY/3.1 framing, as much as Kubernetes streaming uses (the server side of a session).

Frames: a control frame is ``1 | version(15) | type(16) | flags(8) | length(24) | data``, a
data frame ``0 | stream id(31) | flags(8) | length(24) | data``. Header blocks (in SYN_STREAM,
SYN_REPLY, HEADERS) are ``count(32)`` then per pair ``len(32) name len(32) value``, zlib
compressed with one stream per direction for the whole session and SPDY/3's preset
dictionary. Flow control (WINDOW_UPDATE) is not enforced by Kubernetes' peers and is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)
FLAG_FIN = 0x01

_HEADER_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status"
)
_WORDS = [
    *_HEADER_NAMES.split(),
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
#: SPDY/3's zlib dictionary: length-prefixed header words, then common value text.
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()

_HEAD = struct.Struct(">IB3s")


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3."""


@dataclass
class Frame:
    """One frame: ``kind`` is a control type, or 0 for data (then ``stream`` is set)."""

    kind: int
    flags: int
    stream: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""


class Session:
    """The framing state of one session: parse what arrives, encode what leaves."""

    def __init__(self) -> None:
        self._buffer = b""
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data``."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            first, flags, size = _HEAD.unpack_from(self._buffer)
            length = int.from_bytes(size, "big")
            if len(self._buffer) < 8 + length:
                break
            body, self._buffer = self._buffer[8 : 8 + length], self._buffer[8 + length :]
            if first & 0x80000000:
                if (first >> 16) & 0x7FFF != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {(first >> 16) & 0x7FFF}")
                frames.append(self._control(first & 0xFFFF, flags, body))
            else:
                frames.append(Frame(0, flags, first, data=body))
        return frames

    def _control(self, kind: int, flags: int, body: bytes) -> Frame:
        if kind in (SYN_STREAM, SYN_REPLY, HEADERS, RST_STREAM, WINDOW_UPDATE) and len(body) < 4:
            raise ProtocolError(f"short control frame of type {kind}")
        stream = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF if len(body) >= 4 else 0
        if kind == SYN_STREAM:
            return Frame(kind, flags, stream, self._headers(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            return Frame(kind, flags, stream, self._headers(body[4:]))
        return Frame(kind, flags, stream, data=body)

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from e
        try:
            (count,), offset, out = struct.unpack_from(">I", raw), 4, {}
            for _ in range(count):
                values = []
                for _part in range(2):
                    (size,) = struct.unpack_from(">I", raw, offset)
                    values.append(raw[offset + 4 : offset + 4 + size].decode())
                    offset += 4 + size
                out[values[0].lower()] = values[1]
        except (struct.error, UnicodeDecodeError) as e:
            raise ProtocolError(f"header block: {e}") from e
        return out

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
            for k, v in headers.items()
        )
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _frame(kind: int, flags: int, body: bytes) -> bytes:
        head = 0x80000000 | VERSION << 16 | kind
        return _HEAD.pack(head, flags, len(body).to_bytes(3, "big")) + body

    def syn_reply(self, stream: int, headers: dict[str, str], *, fin: bool = False) -> bytes:
        """A SYN_REPLY accepting ``stream``."""
        body = struct.pack(">I", stream) + self._block(headers)
        return self._frame(SYN_REPLY, FLAG_FIN if fin else 0, body)

    def data(self, stream: int, payload: bytes, *, fin: bool = False) -> bytes:
        """A data frame (``fin``: the last from this side)."""
        flags = FLAG_FIN if fin else 0
        return _HEAD.pack(stream & 0x7FFFFFFF, flags, len(payload).to_bytes(3, "big")) + payload

    def ping(self, ping_id: bytes) -> bytes:
        """The answer to a PING: the same id."""
        return self._frame(PING, 0, ping_id)


Send = Callable[[bytes], Awaitable[None]]


class Stream:
    """One client-initiated stream: its headers, what arrives on it, and writing back."""

    def __init__(self, conn: Connection, stream_id: int, headers: dict[str, str]) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def read(self) -> bytes | None:
        """The next data the client sent; None once it half-closed or reset the stream."""
        return await self._incoming.get()

    async def write(self, data: bytes) -> None:
        """Send data on the stream (in frames of at most 64 KiB)."""
        for start in range(0, len(data), 65536):
            await self.conn.send(self.conn.session.data(self.id, data[start : start + 65536]))

    async def close(self) -> None:
        """Half-close the stream from this side (FIN)."""
        if not self.closed:
            self.closed = True
            await self.conn.send(self.conn.session.data(self.id, b"", fin=True))


class Connection:
    """The server side of a SPDY session over any byte transport: :meth:`feed` what
    arrives; new streams (already accepted with SYN_REPLY) come out of :attr:`streams`."""

    def __init__(self, send: Send) -> None:
        self.session = Session()
        self._send = send
        self._lock = asyncio.Lock()
        self._streams: dict[int, Stream] = {}
        #: accepted client streams, in arrival order; None when the session ended
        self.streams: asyncio.Queue[Stream | None] = asyncio.Queue()

    async def send(self, frame: bytes) -> None:
        """Send one frame (frames are never interleaved)."""
        async with self._lock:
            await self._send(frame)

    async def feed(self, data: bytes) -> None:
        """Handle the frames completed by ``data`` (raises ProtocolError)."""
        for frame in self.session.feed(data):
            if frame.kind == SYN_STREAM:
                stream = self._streams[frame.stream] = Stream(self, frame.stream, frame.headers)
                await self.send(self.session.syn_reply(frame.stream, {}))
                await self.streams.put(stream)
                if frame.flags & FLAG_FIN:
                    stream._incoming.put_nowait(None)
            elif frame.kind == 0 and frame.stream in self._streams:
                stream = self._streams[frame.stream]
                if frame.data:
                    stream._incoming.put_nowait(frame.data)
                if frame.flags & FLAG_FIN:
                    stream._incoming.put_nowait(None)
            elif frame.kind == RST_STREAM and frame.stream in self._streams:
                stream = self._streams.pop(frame.stream)
                stream.closed = True
                stream._incoming.put_nowait(None)
            elif frame.kind == PING:
                await self.send(self.session.ping(frame.data))

    def end(self) -> None:
        """The transport ended: every stream reads None."""
        for stream in self._streams.values():
            stream._incoming.put_nowait(None)
        self.streams.put_nowait(None)


async def run(
    chunks: AsyncIterator[bytes], send: Send, handler: Callable[[Connection], Awaitable[None]]
) -> None:
    """Serve one session: feed ``chunks`` of the client's bytes to a :class:`Connection`
    whose streams ``handler`` works with; ends when either the client or ``handler`` is
    done (the other is cancelled)."""
    conn = Connection(send)

    async def pump() -> None:
        async for data in chunks:
            await conn.feed(data)

    async def serve() -> None:
        await handler(conn)

    tasks = [asyncio.create_task(pump()), asyncio.create_task(serve())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        conn.end()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except ProtocolError as e:
                log.warning("spdy: %s", e)
            except ConnectionError as e:  # the usual end: the client hung up
                log.debug("spdy: %s", e)
