"""Issue 14, items 6, 8 and 9 (request lines) against a real server: header size limits
and read timeouts as upstream's Go server, HTTP/1.0 and 1.1 only."""

from __future__ import annotations

import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers import Kubectl, ServerProcess, ssl_context


def _connect(server: ServerProcess, ctx: ssl.SSLContext | None = None) -> ssl.SSLSocket:
    """A TLS connection, anonymous unless ``ctx`` carries a client certificate."""
    if ctx is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port)))


def _read_all(sock: ssl.SSLSocket, timeout: float) -> bytes:
    """Everything the server sends until it closes (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except TimeoutError:
        out += b"<still open>"
    except ConnectionResetError:
        pass
    return out


def _exchange(server: ServerProcess, data: bytes, timeout: float = 10) -> bytes:
    with _connect(server) as sock:
        sock.sendall(data)
        return _read_all(sock, timeout)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _get(path: bytes, *headers: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (
        path,
        b"".join(h + b"\r\n" for h in headers),
    )


def test_single_large_headers_are_accepted(server: ServerProcess) -> None:
    # a 16 KB bearer token is read (and refused as a token, not as a header)
    response = _exchange(server, _get(b"/version", b"Authorization: Bearer " + b"a" * 16_000))
    assert _status(response) == 401
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["reason"] == "Unauthorized"
    # 900 KB of headers in all, 60 KB each
    many = [b"X-Pad-%d: %s" % (i, b"v" * 60_000) for i in range(15)]
    assert _status(_exchange(server, _get(b"/version", *many))) == 200


def test_long_label_selector_works(kubectl: Kubectl, namespace: str) -> None:
    selector = ",".join(f"key{i}!=value-{i:04d}" for i in range(700))
    assert len(selector) > 12_000
    res = kubectl.run("get", "configmaps", "-n", namespace, "-l", selector, "-o", "name")
    assert res.stdout.strip() == "configmap/kube-root-ca.crt"


def test_headers_over_a_megabyte_answer_431(server: ServerProcess) -> None:
    many = [b"X-Pad-%d: %s" % (i, b"v" * 60_000) for i in range(40)]
    response = _exchange(server, _get(b"/version", *many))
    assert _status(response) == 431
    assert response.endswith(b"431 Request Header Fields Too Large")
    one = _exchange(server, _get(b"/version", b"X-Pad: " + b"v" * 1_500_000))
    assert _status(one) == 431


def test_only_http_1_request_lines_are_served(server: ServerProcess) -> None:
    assert _status(_exchange(server, b"GET /version\r\n\r\n")) == 400
    response = _exchange(server, b"GET /version HTTP/2.0\r\nHost: x\r\n\r\n")
    assert _status(response) == 505
    assert response.endswith(b"505 HTTP Version Not Supported: unsupported protocol version")
    assert _status(_exchange(server, b"GET /version HTTP/1.0\r\n\r\n")) == 200


def _slow_header(server: ServerProcess) -> tuple[float, bytes]:
    with _connect(server) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")
        out = _read_all(sock, 120)
        return time.monotonic() - start, out


def _truncated_body(server: ServerProcess, ctx: ssl.SSLContext) -> tuple[float, bytes]:
    with _connect(server, ctx) as sock:
        start = time.monotonic()
        sock.sendall(
            b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"kind":'
        )
        out = _read_all(sock, 120)
        return time.monotonic() - start, out


def test_slow_headers_and_truncated_bodies_are_closed(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Go's server closes a head still unread after 32 s; a body unread after the 60 s request
    timeout answers 504. Many such connections at once are all closed, so they cannot
    exhaust descriptors."""
    admin = ssl_context(server.kubeconfig, tmp_path)
    admin.check_hostname = False
    with ThreadPoolExecutor(60) as pool:
        slow = [pool.submit(_slow_header, server) for _ in range(50)]
        truncated = [pool.submit(_truncated_body, server, admin) for _ in range(5)]
        for future in slow:
            took, out = future.result()
            assert out == b"" and 30 < took < 40
        for future in truncated:
            took, out = future.result()
            assert _status(out) == 504 and 58 < took < 80
            body = json.loads(out.split(b"\r\n\r\n", 1)[1])
            assert (body["reason"], body["code"]) == ("Timeout", 504)
    assert _status(_exchange(server, _get(b"/livez"))) == 200
