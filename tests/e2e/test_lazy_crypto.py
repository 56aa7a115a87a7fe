"""An idle server does not load ``cryptography`` (its Rust extension costs ~8 MB of RSS):
the first start makes its certificates and keys in a forked child, a restart on an existing
data dir skips the checks; the first request that needs it loads it and works."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import ServerProcess, ssl_context, start_server


def crypto_mapped(srv: ServerProcess) -> bool:
    """Whether the server process has mapped any file of the ``cryptography`` package."""
    return "/cryptography/" in Path(f"/proc/{srv.pid}/maps").read_text()


def call(
    srv: ServerProcess,
    ctx: ssl.SSLContext,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str = "",
) -> tuple[int, dict[str, Any]]:
    """(status, decoded JSON body) of one request."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_loads_cryptography_only_when_needed(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        time.sleep(0.5)  # let start-up controllers finish their first pass
        assert not crypto_mapped(srv)  # first start: certificates and keys made in a child
        assert (srv.data_dir / "server/tls/serving-kube-apiserver.crt").is_file()
        srv.stop()
        srv.start()
        admin = ssl_context(srv.kubeconfig, tmp_path)
        # Everyday traffic over client-certificate TLS needs no cryptography.
        assert call(srv, admin, "GET", "/api/v1/namespaces")[0] == 200
        secret = {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
        assert call(srv, admin, "POST", "/api/v1/namespaces/default/secrets", secret)[0] == 201
        assert call(srv, admin, "GET", "/api/v1/namespaces/default/secrets/s")[0] == 200
        openid = call(srv, admin, "GET", "/.well-known/openid-configuration")
        assert openid[0] == 200 and openid[1]["jwks_uri"].endswith("/openid/v1/jwks")
        time.sleep(0.5)  # let start-up controllers finish their first pass
        assert not crypto_mapped(srv)

        # A TokenRequest signs a JWT: cryptography is loaded now, and the token works.
        path = "/api/v1/namespaces/default/serviceaccounts/default/token"
        deadline = time.monotonic() + 10
        while (reply := call(srv, admin, "POST", path, {"spec": {}}))[0] == 404:
            assert time.monotonic() < deadline, reply
            time.sleep(0.1)
        assert reply[0] == 201, reply
        assert crypto_mapped(srv)
        bearer = ssl.create_default_context(cafile=str(srv.data_dir / "server/tls/server-ca.crt"))
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        status, who = call(
            srv,
            bearer,
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            review,
            token=reply[1]["status"]["token"],
        )
        assert status == 201, who
        assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:default"
    finally:
        srv.stop()
