"""SPDY/3.1 framing, as much as Kubernetes streaming uses (the server side of a session).

Frames: a control frame is ``1 | version(15) | type(16) | flags(8) | length(24) | data``, a
data frame ``0 | stream id(31) | flags(8) | length(24) | data``. Header blocks (in SYN_STREAM,
SYN_REPLY, HEADERS) are ``count(32)`` then per pair ``len(32) name len(32) value``, zlib
compressed with one stream per direction for the whole session and SPDY/3's preset
dictionary. Flow control (WINDOW_UPDATE) is not enforced by Kubernetes' peers and is ignored.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

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
#: RST_STREAM status codes used here.
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5

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

    def rst(self, stream: int, code: int) -> bytes:
        """A RST_STREAM ending ``stream``."""
        return self._frame(RST_STREAM, 0, struct.pack(">II", stream, code))

    def ping(self, ping_id: bytes) -> bytes:
        """The answer to a PING: the same id."""
        return self._frame(PING, 0, ping_id)

    def goaway(self, last_stream: int) -> bytes:
        """GOAWAY: no new streams after ``last_stream``."""
        return self._frame(GOAWAY, 0, struct.pack(">II", last_stream, 0))
