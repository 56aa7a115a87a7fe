"""Tests for agent.bootstrap against a tiny in-test HTTPS server.

The fake cluster serves ``/cacerts``, a CertificateSigningRequest API (create, get, watch)
whose CSRs are decided by ``server.pki.csr_crypto.auto_approval`` and signed by
``server.pki.csr_crypto.sign`` with a real PKI, and ``/whoami`` (the authenticated identity), and it
records every request it sees.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent import bootstrap as agent_bootstrap
from agent.bootstrap import (
    AgentCredentials,
    BootstrapError,
    bootstrap,
    fetch_ca,
    needs_renewal,
    renew,
)
from edgek.certs import load_cert, new_key
from edgek.jointoken import format_token
from server.pki import PKI, ensure_pki, peer_identity
from server.pki import csr_crypto as csrs
from tests.unit.pki_helpers import cert_at, key_at, signing_cas

KUBECTL = "/usr/bin/kubectl"
PASSWORD = "0123456789abcdef0123456789abcdef"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


class FakeCluster:
    """A minimal API server for the join flow; see the module docstring."""

    def __init__(self, pki: PKI, *, serve_ca: bytes | None = None) -> None:
        self.pki = pki
        self.ca_body = serve_ca if serve_ca is not None else pki.ca_bundle_pem()
        self.requests: list[tuple[str, str, str | None]] = []
        self.csrs: dict[str, dict[str, Any]] = {}
        self.identities: dict[str, dict[str, Any]] = {}
        self.approve = True
        self.allow_watch = True
        #: Issue this instead of the signed certificate (a broken or malicious server).
        self.replacement: bytes | None = None
        self.delete_pending = False
        self.forbid_create = False
        self.rv = 0
        self.changed = asyncio.Condition()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ---
    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/cacerts", self._cacerts)
        app.router.add_get("/whoami", self._whoami)
        app.router.add_post(CSR_PATH, self._create)
        app.router.add_get(CSR_PATH, self._watch)
        app.router.add_get(CSR_PATH + "/{name}", self._get)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.pki.server_ssl_context())
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- helpers ---
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            (request.method, request.path_qs, request.headers.get("Authorization"))
        )
        response: web.StreamResponse = await handler(request)
        return response

    def posts(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "POST"]

    def _identity(self, request: web.Request) -> tuple[str, list[str]] | None:
        auth = request.headers.get("Authorization", "")
        if auth:
            if auth == f"Bearer {PASSWORD}":
                return "system:bootstrap:edgek", ["system:bootstrappers"]
            return None
        transport = request.transport
        return peer_identity(transport.get_extra_info("ssl_object") if transport else None)

    def _authenticate(self, request: web.Request) -> tuple[str, list[str]]:
        identity = self._identity(request)
        if identity is None:
            raise web.HTTPUnauthorized(
                text=json.dumps({"kind": "Status", "message": "Unauthorized"}),
                content_type="application/json",
            )
        return identity

    def _cas(self) -> tuple[csrs.CA, csrs.CA]:
        return signing_cas(self.pki)

    async def _bump(self, obj: dict[str, Any]) -> None:
        async with self.changed:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.changed.notify_all()

    async def _decide(self, name: str) -> None:
        """Approve (or deny) and sign as the lead's controller would, a moment after create."""
        await asyncio.sleep(0.05)
        obj = self.csrs[name]
        if self.delete_pending:
            del self.csrs[name]
            obj["deleted"] = True
            await self._bump(obj)
        if not self.approve or self.delete_pending:
            return
        node = csrs.requested_node(obj)
        decision = csrs.auto_approval(obj, self.identities.get(node or ""))
        if decision is None:
            return
        ok, text = decision
        condition = {"type": "Approved" if ok else "Denied", "status": "True"}
        condition.update({"reason": text} if ok else {"reason": "NodeIdentity", "message": text})
        obj.setdefault("status", {})["conditions"] = [condition]
        if ok:
            client, server = self._cas()
            pem = csrs.sign(obj, client_ca=client, server_ca=server, now=datetime.now(UTC))
            pem = self.replacement or pem
            obj["status"]["certificate"] = base64.b64encode(pem).decode()
            if node is not None:
                self.identities[node] = csrs.identity_secret(node, csrs.parse_request(obj))
        await self._bump(obj)

    # --- handlers ---
    async def _cacerts(self, request: web.Request) -> web.Response:
        return web.Response(body=self.ca_body, content_type="text/plain")

    async def _whoami(self, request: web.Request) -> web.Response:
        user, groups = self._authenticate(request)
        return web.json_response({"user": user, "groups": groups})

    async def _create(self, request: web.Request) -> web.Response:
        user, groups = self._authenticate(request)
        if self.forbid_create:
            raise web.HTTPForbidden(
                text=json.dumps({"kind": "Status", "message": f'User "{user}" cannot create'}),
                content_type="application/json",
            )
        obj = await request.json()
        name = obj["metadata"]["generateName"] + f"{len(self.csrs):05d}"
        obj["metadata"] = {"name": name}
        obj["spec"].update(username=user, groups=[*groups, "system:authenticated"])
        self.csrs[name] = obj
        await self._bump(obj)
        task = asyncio.create_task(self._decide(name))
        self._tasks.add(task)
        return web.json_response(obj, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        obj = self.csrs.get(request.match_info["name"])
        if obj is None:
            raise web.HTTPNotFound()
        return web.json_response(obj)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        """One event for the named CSR once it changes after resourceVersion, then the end of
        the stream (a server may end a watch at any time)."""
        self._authenticate(request)
        if request.query.get("watch") != "1" or not self.allow_watch:
            raise web.HTTPForbidden(text='{"message": "watch refused"}')
        name = request.query["fieldSelector"].removeprefix("metadata.name=")
        since = int(request.query["resourceVersion"])
        obj = self.csrs[name]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        async with self.changed:
            await self.changed.wait_for(lambda: int(obj["metadata"]["resourceVersion"]) > since)
        event = "DELETED" if obj.pop("deleted", False) else "MODIFIED"
        await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")
        return response


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return ensure_pki(tmp_path_factory.mktemp("tls"), dns_names=[], ip_addresses=[])


@pytest.fixture
async def cluster(pki: PKI) -> AsyncIterator[FakeCluster]:
    fake = FakeCluster(pki)
    await fake.start()
    yield fake
    await fake.stop()


def token_for(pki: PKI) -> str:
    return format_token(pki.ca_bundle_pem(), PASSWORD, "node")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def run_kubectl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


# --- the join ---------------------------------------------------------------------------


async def test_bootstrap_happy_path(cluster: FakeCluster, pki: PKI, tmp_path: Path) -> None:
    agent_dir = tmp_path / "agent"
    creds = await bootstrap(
        cluster.url, token_for(pki), "n1", agent_dir, node_ips=["10.0.0.5"], timeout=10
    )
    assert creds == AgentCredentials.at(agent_dir, pki.ca_bundle_pem())
    for key in (creds.client_key, creds.serving_key, creds.kubeconfig):
        assert mode(key) == 0o600
    assert (agent_dir / "server-ca.crt").read_bytes() == pki.ca_bundle_pem()

    client = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    client.verify_directly_issued_by(cert_at(pki.client_ca_cert))
    assert client.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert client.public_key() == key_at(creds.client_key).public_key()
    serving = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    serving.verify_directly_issued_by(cert_at(pki.server_ca_cert))
    eku = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    assert serving.public_key() == key_at(creds.serving_key).public_key()

    # /cacerts first and without credentials; the client CSR with the token; the serving
    # CSR with the new client certificate only.
    assert cluster.requests[0] == ("GET", "/cacerts", None)
    posts = cluster.posts()
    assert [p[2] for p in posts] == [f"Bearer {PASSWORD}", None]
    specs = [obj["spec"] for obj in cluster.csrs.values()]
    assert [(s["signerName"], s["username"]) for s in specs] == [
        ("kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:edgek"),
        ("kubernetes.io/kubelet-serving", "system:node:n1"),
    ]
    assert specs[0]["usages"] == ["digital signature", "client auth"]
    assert specs[1]["usages"] == ["digital signature", "key encipherment", "server auth"]
    assert all(obj["metadata"]["name"].startswith("node-csr-") for obj in cluster.csrs.values())
    assert any("watch=1" in path for _, path, _ in cluster.requests)

    # The kubeconfig is one kubectl reads and can use against the cluster as the node.
    config = yaml.safe_load(creds.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == cluster.url
    rc, out, err = await run_kubectl("config", "view", "--kubeconfig", str(creds.kubeconfig))
    assert rc == 0, err
    assert cluster.url in out
    rc, out, err = await run_kubectl(
        "--kubeconfig", str(creds.kubeconfig), "get", "--raw", "/whoami"
    )
    assert rc == 0, err
    assert json.loads(out) == {"user": "system:node:n1", "groups": ["system:nodes"]}


async def test_wrong_ca_hash_sends_nothing(cluster: FakeCluster, tmp_path: Path) -> None:
    other = ensure_pki(tmp_path / "other-tls", dns_names=[], ip_addresses=[])
    agent_dir = tmp_path / "agent"
    with pytest.raises(BootstrapError, match="the server's CA does not match the token's CA hash"):
        await bootstrap(cluster.url, token_for(other), "n1", agent_dir, node_ips=[], timeout=5)
    assert cluster.requests == [("GET", "/cacerts", None)]
    assert not agent_dir.exists()


async def test_server_not_signed_by_the_pinned_ca(pki: PKI, tmp_path: Path) -> None:
    """An impostor that serves the real CA bundle but holds no certificate from it fails the
    TLS handshake, so the token never reaches it."""
    impostor = FakeCluster(
        ensure_pki(tmp_path / "impostor", dns_names=[], ip_addresses=[]),
        serve_ca=pki.ca_bundle_pem(),
    )
    await impostor.start()
    try:
        with pytest.raises(BootstrapError, match=r"talking to .*CERTIFICATE_VERIFY_FAILED"):
            await bootstrap(
                impostor.url, token_for(pki), "n1", tmp_path / "agent", node_ips=[], timeout=5
            )
    finally:
        await impostor.stop()
    assert impostor.requests == [("GET", "/cacerts", None)]


async def test_short_token_warns_and_joins(
    cluster: FakeCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.bootstrap"):
        creds = await bootstrap(
            cluster.url, PASSWORD, "n1", tmp_path / "a", node_ips=[], timeout=10
        )
    assert creds.client_cert.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no CA hash" in warnings[0]


async def test_pinned_token_does_not_warn(
    cluster: FakeCluster, pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.bootstrap"):
        await bootstrap(cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=10)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_rejoin_reuses_the_key_and_a_new_device_is_denied(
    cluster: FakeCluster, pki: PKI, tmp_path: Path
) -> None:
    first = await bootstrap(
        cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=10
    )
    key_pem = first.client_key.read_bytes()
    again = await bootstrap(
        cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=10
    )
    assert again.client_key.read_bytes() == key_pem
    with pytest.raises(BootstrapError) as excinfo:
        await bootstrap(cluster.url, token_for(pki), "n1", tmp_path / "b", node_ips=[], timeout=10)
    message = str(excinfo.value)
    assert message.startswith("CertificateSigningRequest node-csr-")
    assert 'was denied: node "n1" already joined with a different key' in message
    assert not (tmp_path / "b" / "client-kubelet.crt").exists()


async def test_bad_password_is_reported(cluster: FakeCluster, pki: PKI, tmp_path: Path) -> None:
    token = format_token(pki.ca_bundle_pem(), "wrong-password", "node")
    with pytest.raises(BootstrapError, match="rejected the credentials"):
        await bootstrap(cluster.url, token, "n1", tmp_path / "a", node_ips=[], timeout=5)


async def test_pending_csr_times_out(cluster: FakeCluster, pki: PKI, tmp_path: Path) -> None:
    cluster.approve = False
    with pytest.raises(
        BootstrapError, match=r"timed out waiting for CertificateSigningRequest node-csr-00000"
    ):
        await bootstrap(cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=1)


async def test_polls_when_watch_is_refused(
    cluster: FakeCluster, pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_bootstrap, "POLL_SECONDS", 0.05)
    cluster.allow_watch = False
    creds = await bootstrap(
        cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=10
    )
    assert creds.serving_cert.exists()
    gets = [p for m, p, _ in cluster.requests if m == "GET" and p.startswith(CSR_PATH + "/")]
    assert len(gets) >= 4  # each CSR read again after a refused watch


async def test_forbidden_create_is_reported(cluster: FakeCluster, pki: PKI, tmp_path: Path) -> None:
    cluster.forbid_create = True
    with pytest.raises(
        BootstrapError,
        match='creating a CertificateSigningRequest: HTTP 403: User "system:bootstrap:edgek"',
    ):
        await bootstrap(cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=5)


async def test_deleted_csr_is_reported(cluster: FakeCluster, pki: PKI, tmp_path: Path) -> None:
    cluster.delete_pending = True
    # Seen on the watch, or (on a slow machine) as a 404 when first read.
    with pytest.raises(
        BootstrapError,
        match=r"CertificateSigningRequest node-csr-00000 was deleted|"
        r"reading CertificateSigningRequest node-csr-00000: HTTP 404",
    ):
        await bootstrap(cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=5)


@pytest.mark.parametrize("replacement", ["other-key", "junk"])
async def test_issued_certificate_is_checked(
    cluster: FakeCluster, pki: PKI, tmp_path: Path, replacement: str
) -> None:
    if replacement == "junk":
        cluster.replacement, message = b"junk", "certificate is not PEM"
    else:
        other = pki.issue_client_cert("system:node:n1", ["system:nodes"], new_key().public_key())
        cluster.replacement, message = other, "certificate is for another key"
    with pytest.raises(
        BootstrapError, match=f"CertificateSigningRequest node-csr-00000: {message}"
    ):
        await bootstrap(cluster.url, token_for(pki), "n1", tmp_path / "a", node_ips=[], timeout=5)
    assert not (tmp_path / "a" / "client-kubelet.crt").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token": "K10abc::node:pw"}, "invalid join token"),
        ({"node_name": "Not_A_Node"}, "invalid node name 'Not_A_Node'"),
        ({"node_ips": ["10.0.0.300"]}, "invalid node IP '10.0.0.300'"),
        ({"server_url": "http://127.0.0.1:1"}, "the server URL must be https"),
    ],
)
async def test_invalid_arguments_fail_before_any_request(
    cluster: FakeCluster, pki: PKI, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {
        "server_url": cluster.url,
        "token": token_for(pki),
        "node_name": "n1",
        "node_ips": [],
    }
    args.update(kwargs)
    with pytest.raises(BootstrapError, match=message):
        await bootstrap(agent_dir=tmp_path / "a", timeout=5, **args)
    assert cluster.requests == []


async def test_fetch_ca(cluster: FakeCluster, pki: PKI) -> None:
    assert await fetch_ca(cluster.url + "/") == pki.ca_bundle_pem()
    cluster.ca_body = b"not a certificate"
    with pytest.raises(BootstrapError, match="did not return a PEM CA bundle"):
        await fetch_ca(cluster.url)
    with pytest.raises(BootstrapError, match="cannot fetch the cluster CA"):
        await fetch_ca("https://127.0.0.1:1", timeout=2)


# --- renewal ----------------------------------------------------------------------------


def test_needs_renewal(pki: PKI, tmp_path: Path) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    issuer = PKI.at(pki.tls_dir, clock=lambda: start)
    cert_path = tmp_path / "c.crt"
    cert_path.write_bytes(issuer.issue_client_cert("x", [], new_key().public_key(), days=10))
    cert = load_cert(cert_path)
    assert cert is not None
    begin, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    at_80 = begin + (end - begin) * 0.8
    assert not needs_renewal(cert_path, start)
    assert not needs_renewal(cert_path, at_80 - timedelta(seconds=1))
    assert needs_renewal(cert_path, at_80)
    assert needs_renewal(cert_path, end + timedelta(days=1))
    assert not needs_renewal(cert_path, at_80, fraction=0.9)
    assert needs_renewal(cert_path, begin + (end - begin) * 0.5, fraction=0.5)
    assert needs_renewal(tmp_path / "missing.crt", start)


async def test_renew_rotates_keys_with_the_client_certificate(
    cluster: FakeCluster, pki: PKI, tmp_path: Path
) -> None:
    agent_dir = tmp_path / "a"
    creds = await bootstrap(
        cluster.url, token_for(pki), "n1", agent_dir, node_ips=["10.0.0.5"], timeout=10
    )
    before = {
        p: p.read_bytes()
        for p in (
            creds.client_key,
            creds.client_cert,
            creds.serving_key,
            creds.serving_cert,
            creds.kubeconfig,
        )
    }
    cluster.requests.clear()

    renewed = await renew(cluster.url, creds, "n1", ["10.0.0.6"], timeout=10)
    assert renewed == creds
    for path, old in before.items():
        assert path.read_bytes() != old, path
    for key in (creds.client_key, creds.serving_key, creds.kubeconfig):
        assert mode(key) == 0o600
    # Both CSRs were authenticated by the current client certificate, not the token.
    assert [p[2] for p in cluster.posts()] == [None, None]
    assert all(auth is None for _, _, auth in cluster.requests)
    usernames = [obj["spec"]["username"] for obj in list(cluster.csrs.values())[-2:]]
    assert usernames == ["system:node:n1", "system:node:n1"]
    client = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    assert client.public_key() == key_at(creds.client_key).public_key()
    serving = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.0.0.6") in san.get_values_for_type(x509.IPAddress)
    rc, out, err = await run_kubectl(
        "--kubeconfig", str(creds.kubeconfig), "get", "--raw", "/whoami"
    )
    assert rc == 0, err
    assert json.loads(out)["user"] == "system:node:n1"

    # The identity record follows the rotated key: rejoining from this device still works.
    await bootstrap(cluster.url, token_for(pki), "n1", agent_dir, node_ips=[], timeout=10)


async def test_renew_fails_without_a_usable_client_certificate(
    cluster: FakeCluster, pki: PKI, tmp_path: Path
) -> None:
    creds = AgentCredentials.at(tmp_path / "empty", pki.ca_bundle_pem())
    with pytest.raises(BootstrapError, match="cannot load the current client certificate"):
        await renew(cluster.url, creds, "n1", [], timeout=5)
    assert cluster.requests == []
