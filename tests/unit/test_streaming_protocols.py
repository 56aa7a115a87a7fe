"""SPDY/3.1 framing, the channel protocols' exit Status and the streaming server's TLS
context, without a network."""

from __future__ import annotations

import contextlib
import json
import ssl
import struct
import time
import zlib
from pathlib import Path

import pytest

from agent.streaming import channels, spdy
from agent.streaming.server import ServingTLS, StreamingConfig, kubelet_timestamp
from server.pki import PKI, ensure_pki


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


def _handshake(server_ctx: ssl.SSLContext, pki: PKI) -> bytes:
    """The certificate (DER) the API server's client sees in a handshake with ``server_ctx``
    (over memory buffers)."""
    client_ctx = ssl.create_default_context(cafile=str(pki.server_ca_cert))
    client_ctx.check_hostname = False
    client_ctx.load_cert_chain(pki.apiserver_client_cert, pki.apiserver_client_key)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = [False, False]
    for _ in range(10):
        for i, side in enumerate((client, server)):
            if not done[i]:
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
                    done[i] = True
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert all(done)
    peer = client.getpeercert(binary_form=True)
    assert peer is not None
    return peer


def test_serving_certificate_is_reloaded_after_renewal(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "tls", dns_names=[], ip_addresses=[])
    config = StreamingConfig(0, pki.serving_cert, pki.serving_key, pki.client_ca_cert.read_bytes())
    tls = ServingTLS(config)
    first = _handshake(tls.context, pki)
    tls.refresh()
    assert _handshake(tls.context, pki) == first
    time.sleep(0.01)
    pki.serving_cert.unlink()  # reissued with the same key on the next ensure
    ensure_pki(tmp_path / "tls", dns_names=[], ip_addresses=[])
    assert _handshake(tls.context, pki) == first  # until refreshed
    tls.refresh()
    assert _handshake(tls.context, pki) != first


def test_log_timestamps_as_the_kubelet_writes_them() -> None:
    assert kubelet_timestamp(b"2026-12-08T05:06:02Z line 3\n") == (
        b"2026-12-08T05:06:02.000000000Z line 3\n"
    )
    assert kubelet_timestamp(b"2026-12-08T06:06:02.12345+01:00 x") == (
        b"2026-12-08T05:06:02.123450000Z x"
    )
    assert kubelet_timestamp(b"no stamp here\n") == b"no stamp here\n"
