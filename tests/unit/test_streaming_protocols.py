"""SPDY/3.1 framing and the channel protocols' exit Status, without a network."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from agent.streaming import channels, spdy


def _syn_stream(stream: int, headers: dict[str, str], deflate: zlib._Compress) -> bytes:
    block = struct.pack(">I", len(headers)) + b"".join(
        struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        for k, v in headers.items()
    )
    body = struct.pack(">IIH", stream, 0, 0) + deflate.compress(block)
    body += deflate.flush(zlib.Z_SYNC_FLUSH)
    return struct.pack(">IB", 0x80030001, 0) + len(body).to_bytes(3, "big") + body


def test_syn_streams_and_data_split_anywhere() -> None:
    deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
    wire = _syn_stream(1, {"streamType": "error", "port": "80"}, deflate)
    wire += _syn_stream(3, {"streamtype": "data", "port": "80"}, deflate)
    wire += struct.pack(">IB", 3, spdy.FLAG_FIN) + (5).to_bytes(3, "big") + b"hello"
    session = spdy.Session()
    frames = [f for i in range(len(wire)) for f in session.feed(wire[i : i + 1])]
    assert [(f.kind, f.stream) for f in frames] == [
        (spdy.SYN_STREAM, 1),
        (spdy.SYN_STREAM, 3),
        (0, 3),
    ]
    assert frames[0].headers == {"streamtype": "error", "port": "80"}  # names lower-cased
    assert frames[2].data == b"hello" and frames[2].flags & spdy.FLAG_FIN


def test_replies_decode_with_the_peer_state() -> None:
    server, client = spdy.Session(), spdy.Session()
    frames = client.feed(server.syn_reply(5, {"a": "b"}) + server.syn_reply(7, {"c": "d"}))
    assert [(f.kind, f.stream, f.headers) for f in frames] == [
        (spdy.SYN_REPLY, 5, {"a": "b"}),
        (spdy.SYN_REPLY, 7, {"c": "d"}),
    ]
    ping = client.feed(server.ping(b"\0\0\0\x01"))[0]
    assert (ping.kind, ping.data) == (spdy.PING, b"\0\0\0\x01")


def test_other_versions_are_refused() -> None:
    frame = struct.pack(">IB", 0x80020001, 0) + (10).to_bytes(3, "big") + bytes(10)
    with pytest.raises(spdy.ProtocolError, match="version 2"):
        spdy.Session().feed(frame)


def test_exit_status_by_protocol() -> None:
    failure = json.loads(channels.exit_status(channels.V5, ["sh", "-c", "exit 3"], 3) or b"")
    assert failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert json.loads(channels.exit_status(channels.V4, ["true"], 0) or b"") == {
        "metadata": {},
        "status": "Success",
    }
    assert channels.exit_status("v3.channel.k8s.io", ["true"], 0) is None
    assert b"exit code 2" in (channels.exit_status("channel.k8s.io", ["false"], 2) or b"")
