"""A minimal gRPC health client (``grpc.health.v1.Health/Check``) for gRPC probes.

One unary call on a plaintext HTTP/2 connection, the protocol framing done by the
pure-Python ``h2`` (grpcio would bring ~10 MB of native code for this one call). The
request and response messages are tiny protobufs encoded here by hand:
``HealthCheckRequest { string service = 1; }`` and ``HealthCheckResponse { ServingStatus
status = 1; }``. Imported only when a pod has a gRPC probe (``h2`` costs ~4 MB resident).
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)

#: ``HealthCheckResponse.ServingStatus`` names by number.
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
SERVING = 1
#: gRPC status code names by number, as grpc-go prints them.
CODES = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
]
UNKNOWN, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 2, 12, 13, 14
PATH = "/grpc.health.v1.Health/Check"


class GrpcError(Exception):
    """The call ended with a non-OK gRPC status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(
            f"rpc error: code = {CODES[code] if code < len(CODES) else code} desc = {message}"
        )
        self.code = code
        self.message = message


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise GrpcError(INTERNAL, "malformed HealthCheckResponse")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def request_message(service: str) -> bytes:
    """The length-prefixed ``HealthCheckRequest`` for ``service`` ("" = the whole server)."""
    name = service.encode()
    payload = b"\x0a" + _varint(len(name)) + name if name else b""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def response_status(body: bytes) -> int:
    """The ``status`` of a length-prefixed ``HealthCheckResponse`` (0 when absent)."""
    if len(body) < 5 or body[0] != 0:
        raise GrpcError(INTERNAL, "malformed or compressed HealthCheckResponse")
    payload, at, status = body[5 : 5 + int.from_bytes(body[1:5], "big")], 0, 0
    while at < len(payload):
        key, at = _read_varint(payload, at)
        wire = key & 7
        if wire == 0:
            value, at = _read_varint(payload, at)
            if key >> 3 == 1:
                status = value
        elif wire == 2:
            size, at = _read_varint(payload, at)
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise GrpcError(INTERNAL, "malformed HealthCheckResponse")
    return status


async def check_health(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    authority: str,
    service: str,
    user_agent: str,
) -> int:
    """Make the Check call on an open connection: the response's serving status. Raises
    :class:`GrpcError` for a non-OK status or a broken exchange."""
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", PATH),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", user_agent),
        ],
    )
    conn.send_data(stream, request_message(service), end_stream=True)
    fields, body = await _exchange(conn, stream, reader, writer)
    _check_status(fields)
    return response_status(bytes(body))


async def _exchange(
    conn: H2Connection,
    stream: int,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> tuple[dict[str, str], bytearray]:
    """Send what ``conn`` has queued and read until ``stream`` ends: its header and trailer
    fields and its body."""
    fields: dict[str, str] = {}
    body = bytearray()
    ended = False
    while not ended:
        writer.write(conn.data_to_send())
        await writer.drain()
        data = await reader.read(65536)
        if not data:
            raise GrpcError(UNAVAILABLE, "connection closed before the response ended")
        for event in conn.receive_data(data):
            if isinstance(event, ResponseReceived | TrailersReceived):
                fields.update((str(k), str(v)) for k, v in event.headers or [])
            elif isinstance(event, DataReceived):
                body += event.data or b""
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, StreamReset):
                raise GrpcError(INTERNAL, f"stream reset (HTTP/2 error {event.error_code})")
            elif isinstance(event, ConnectionTerminated):
                raise GrpcError(UNAVAILABLE, "connection terminated by the server")
            elif isinstance(event, StreamEnded) and event.stream_id == stream:
                ended = True
    return fields, body


def _check_status(fields: dict[str, str]) -> None:
    """Raise :class:`GrpcError` unless the response is HTTP 200 with grpc-status 0."""
    if fields.get(":status") != "200":
        code = UNIMPLEMENTED if fields.get(":status") == "404" else UNKNOWN
        raise GrpcError(
            code, f"unexpected HTTP status code received from server: {fields.get(':status')}"
        )
    if "grpc-status" not in fields:
        raise GrpcError(INTERNAL, "server closed the stream without sending trailers")
    code = int(fields["grpc-status"])
    if code != 0:
        raise GrpcError(code, unquote(fields.get("grpc-message", "")))
