"""A small DNS wire codec (RFC 1035, 2782, 3596, 6891): parse the question of a query,
build answers. Names are written uncompressed; the parser follows compression pointers.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

A, NS, CNAME, SOA, PTR, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 28, 33, 41, 255
IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
#: Header flags.
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
#: The UDP payload a client takes without EDNS.
CLASSIC_UDP = 512
_HEADER = struct.Struct("!HHHHHH")


class WireError(ValueError):
    """A message that cannot be parsed."""


@dataclass(frozen=True)
class Record:
    """One resource record: owner name (lower case, no trailing dot), type, TTL, RDATA."""

    name: str
    rtype: int
    ttl: int
    rdata: bytes


@dataclass
class Query:
    """The parts of a query the server answers from."""

    id: int
    flags: int
    name: str
    qtype: int
    qclass: int
    #: The UDP payload size the client takes (EDNS), or 512.
    udp_size: int = CLASSIC_UDP
    edns: bool = False
    raw_question: bytes = field(default=b"", repr=False)


def encode_name(name: str) -> bytes:
    """``name`` (dots between labels, optional trailing dot) in wire form."""
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise WireError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\0")


def decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` (lower case, no trailing dot) and the offset after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounds pointer loops
        if offset >= len(msg):
            raise WireError("name runs past the message")
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(msg):
                raise WireError("truncated pointer")
            end = offset + 2 if end < 0 else end
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            continue
        if length == 0:
            return ".".join(labels).lower(), (offset + 1 if end < 0 else end)
        labels.append(msg[offset + 1 : offset + 1 + length].decode("latin-1"))
        offset += 1 + length
    raise WireError("name too long")


def parse_query(msg: bytes) -> Query:
    """The question (and EDNS payload size) of a query; WireError when malformed."""
    if len(msg) < _HEADER.size:
        raise WireError("short message")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(msg)
    if flags & QR or qd != 1:
        raise WireError("not a single-question query")
    name, offset = decode_name(msg, _HEADER.size)
    if offset + 4 > len(msg):
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", msg, offset)
    query = Query(qid, flags, name, qtype, qclass, raw_question=msg[_HEADER.size : offset + 4])
    offset += 4
    for _ in range(an + ns + ar):
        _, offset = decode_name(msg, offset)
        if offset + 10 > len(msg):
            raise WireError("truncated record")
        rtype, rclass, _ttl, length = struct.unpack_from("!HHIH", msg, offset)
        if rtype == OPT:
            query.edns = True
            query.udp_size = max(CLASSIC_UDP, rclass)
        offset += 10 + length
    return query


def _record(rec: Record) -> bytes:
    return (
        encode_name(rec.name)
        + struct.pack("!HHIH", rec.rtype, IN, rec.ttl, len(rec.rdata))
        + rec.rdata
    )


def build_response(
    query: Query,
    rcode: int,
    answers: Sequence[Record] = (),
    authority: Sequence[Record] = (),
    *,
    authoritative: bool = True,
    limit: int = 65535,
) -> bytes:
    """The response to ``query``; when it exceeds ``limit`` bytes the records are left out
    and TC is set (the client retries over TCP)."""
    flags = QR | (query.flags & RD) | RA | rcode | (AA if authoritative else 0)
    opt = struct.pack("!BHHIH", 0, OPT, 4096, 0, 0) if query.edns else b""
    body = b"".join(map(_record, answers)) + b"".join(map(_record, authority))
    head = _HEADER.pack(query.id, flags, 1, len(answers), len(authority), 1 if opt else 0)
    msg = head + query.raw_question + body + opt
    if len(msg) <= limit:
        return msg
    head = _HEADER.pack(query.id, flags | TC, 1, 0, 0, 1 if opt else 0)
    return head + query.raw_question + opt


def error_response(msg: bytes, rcode: int) -> bytes | None:
    """A bare error response to an unparseable message, None when even the header is
    missing (or it is itself a response)."""
    if len(msg) < _HEADER.size:
        return None
    qid, flags = struct.unpack_from("!HH", msg)
    if flags & QR:
        return None
    return _HEADER.pack(qid, QR | (flags & RD) | RA | rcode, 0, 0, 0, 0)


def address_rdata(ip: str) -> tuple[int, bytes]:
    """(A or AAAA, RDATA) of an address."""
    addr = ipaddress.ip_address(ip)
    return (A if addr.version == 4 else AAAA), addr.packed


def srv_rdata(priority: int, weight: int, port: int, target: str) -> bytes:
    """RDATA of an SRV record."""
    return struct.pack("!HHH", priority, weight, port) + encode_name(target)


def soa_rdata(mname: str, rname: str, serial: int, minimum: int) -> bytes:
    """RDATA of an SOA record (refresh/retry/expire as CoreDNS's kubernetes plugin)."""
    return (
        encode_name(mname)
        + encode_name(rname)
        + struct.pack("!IIIII", serial, 7200, 1800, 86400, minimum)
    )


def build_query(name: str, qtype: int, qid: int = 0, *, edns: int = 0) -> bytes:
    """A recursive query for ``name``/``qtype`` (with an OPT record for a UDP payload of
    ``edns`` bytes when given)."""
    opt = struct.pack("!BHHIH", 0, OPT, edns, 0, 0) if edns else b""
    head = _HEADER.pack(qid, RD, 1, 0, 0, 1 if opt else 0)
    return head + encode_name(name) + struct.pack("!HH", qtype, IN) + opt


@dataclass
class Response:
    """A parsed response: header flags, RCODE and the records of each section (OPT left
    out)."""

    id: int
    flags: int
    rcode: int
    answers: list[Record]
    authority: list[Record]


def parse_response(msg: bytes) -> Response:
    """The sections of a response; WireError when malformed."""
    if len(msg) < _HEADER.size:
        raise WireError("short message")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(msg)
    offset = _HEADER.size
    for _ in range(qd):
        _, offset = decode_name(msg, offset)
        offset += 4
    sections: list[list[Record]] = [[], [], []]
    for index, count in enumerate((an, ns, ar)):
        for _ in range(count):
            name, offset = decode_name(msg, offset)
            if offset + 10 > len(msg):
                raise WireError("truncated record")
            rtype, _cls, ttl, length = struct.unpack_from("!HHIH", msg, offset)
            offset += 10
            sections[index].append(Record(name, rtype, ttl, msg[offset : offset + length]))
            offset += length
    return Response(qid, flags, flags & 0xF, sections[0], sections[1])
