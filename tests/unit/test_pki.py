"""Tests for server.pki (CAs, serving/admin certs, TLS, peer identity) and edgek.kubeconfig."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import shutil
import socket
import ssl
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgek.certs import key_to_pem, new_key
from edgek.kubeconfig import admin_kubeconfig, atomic_write, load_kubeconfig, write_kubeconfig
from server.pki import PKI, ensure_pki, peer_identity, split_sans

KUBECTL = "/usr/bin/kubectl"
ALL_FILES = (
    "server_ca_cert",
    "server_ca_key",
    "client_ca_cert",
    "client_ca_key",
    "serving_cert",
    "serving_key",
    "admin_cert",
    "admin_key",
    "apiserver_client_cert",
    "apiserver_client_key",
)
KEY_FILES = ("server_ca_key", "client_ca_key", "serving_key", "admin_key", "apiserver_client_key")


def snapshot(pki: PKI) -> dict[str, bytes]:
    return {name: getattr(pki, name).read_bytes() for name in ALL_FILES}


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def clock_at(offset: timedelta) -> Callable[[], datetime]:
    fixed = datetime.now(UTC) + offset
    return lambda: fixed


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return ensure_pki(tmp_path / "tls", dns_names=["edge.example"], ip_addresses=["10.1.2.3"])


def changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {name for name in ALL_FILES if before[name] != after[name]}


# --- ensure_pki: creation, reuse, renewal ---------------------------------------------------


def test_fresh_dir_creates_all_files_with_private_modes(pki: PKI) -> None:
    assert stat.S_IMODE(pki.tls_dir.stat().st_mode) == 0o700
    for name in ALL_FILES:
        assert getattr(pki, name).is_file(), name
    for name in KEY_FILES:
        assert stat.S_IMODE(getattr(pki, name).stat().st_mode) == 0o600, name
    assert not [p for p in pki.tls_dir.iterdir() if p.name.startswith(".")]


def test_existing_dir_is_tightened_to_0700(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir(mode=0o755)
    ensure_pki(tls, dns_names=[], ip_addresses=[])
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700


def test_second_call_reuses_identical_files(pki: PKI) -> None:
    before = snapshot(pki)
    again = ensure_pki(pki.tls_dir, dns_names=["edge.example"], ip_addresses=["10.1.2.3"])
    assert snapshot(again) == before


def test_subset_of_sans_reuses_serving_cert(pki: PKI) -> None:
    before = snapshot(pki)
    ensure_pki(pki.tls_dir, dns_names=["EDGE.example"], ip_addresses=[])
    assert snapshot(pki) == before


def test_new_san_regenerates_only_serving_cert(pki: PKI) -> None:
    before = snapshot(pki)
    ensure_pki(pki.tls_dir, dns_names=["edge.example", "new.example"], ip_addresses=["10.9.9.9"])
    after = snapshot(pki)
    assert changed(before, after) == {"serving_cert"}
    sans = load(pki.serving_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "new.example" in sans.value.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.9.9.9") in sans.value.get_values_for_type(x509.IPAddress)


def test_serving_cert_verifies_against_server_ca_and_has_sans(pki: PKI) -> None:
    cert = load(pki.serving_cert)
    cert.verify_directly_issued_by(load(pki.server_ca_cert))
    with pytest.raises(ValueError):
        cert.verify_directly_issued_by(load(pki.client_ca_cert))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    assert {
        socket.gethostname().lower(),
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "edge.example",
    } <= dns
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "10.1.2.3"} <= ips
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)


def test_admin_cert_subject_and_issuer(pki: PKI) -> None:
    cert = load(pki.admin_cert)
    cert.verify_directly_issued_by(load(pki.client_ca_cert))
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [
        "system:admin"
    ]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_validity_periods(tmp_path: Path) -> None:
    clock = clock_at(timedelta(0))
    pki = ensure_pki(tmp_path / "tls", dns_names=[], ip_addresses=[], clock=clock)
    now = clock()
    ca = load(pki.server_ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert abs(ca.not_valid_after_utc - (now + timedelta(days=3650))) < timedelta(seconds=1)
    for leaf in (pki.serving_cert, pki.admin_cert, pki.apiserver_client_cert):
        cert = load(leaf)
        assert abs(cert.not_valid_after_utc - (now + timedelta(days=365))) < timedelta(seconds=1)
        assert cert.not_valid_before_utc <= now


def test_renewal_only_near_expiry(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    pki = ensure_pki(tls, dns_names=[], ip_addresses=[], clock=clock_at(timedelta(0)))
    before = snapshot(pki)
    ensure_pki(tls, dns_names=[], ip_addresses=[], clock=clock_at(timedelta(days=270)))
    assert snapshot(pki) == before
    ensure_pki(tls, dns_names=[], ip_addresses=[], clock=clock_at(timedelta(days=280)))
    after = snapshot(pki)
    # Leaf certs are reissued with their existing keys; the CAs stay.
    assert changed(before, after) == {"serving_cert", "admin_cert", "apiserver_client_cert"}
    assert load(pki.admin_cert).not_valid_after_utc > datetime.now(UTC) + timedelta(days=600)


def test_corrupt_serving_cert_is_reissued(pki: PKI) -> None:
    before = snapshot(pki)
    pki.serving_cert.write_bytes(b"garbage")
    ensure_pki(pki.tls_dir, dns_names=[], ip_addresses=[])
    assert changed(before, snapshot(pki)) == {"serving_cert"}
    load(pki.serving_cert).verify_directly_issued_by(load(pki.server_ca_cert))


def test_key_cert_mismatch_gets_new_cert_for_existing_key(pki: PKI) -> None:
    # As after a crash between writing a new key and its certificate.
    pki.admin_key.write_bytes(key_to_pem(new_key()))
    key_before = pki.admin_key.read_bytes()
    ensure_pki(pki.tls_dir, dns_names=[], ip_addresses=[])
    assert pki.admin_key.read_bytes() == key_before
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(pki.admin_cert, pki.admin_key)  # raises if they do not match


def test_lost_ca_regenerates_ca_and_its_leaves(pki: PKI) -> None:
    before = snapshot(pki)
    pki.client_ca_key.unlink()
    ensure_pki(pki.tls_dir, dns_names=["edge.example"], ip_addresses=["10.1.2.3"])
    after = snapshot(pki)
    assert changed(before, after) == {
        "client_ca_cert",
        "client_ca_key",
        "admin_cert",
        "apiserver_client_cert",
    }
    load(pki.admin_cert).verify_directly_issued_by(load(pki.client_ca_cert))
    load(pki.apiserver_client_cert).verify_directly_issued_by(load(pki.client_ca_cert))


def test_ca_bundle_is_server_ca_file(pki: PKI) -> None:
    bundle = pki.ca_bundle_pem()
    assert bundle == pki.server_ca_cert.read_bytes()
    assert len(x509.load_pem_x509_certificates(bundle)) == 1


def test_split_sans() -> None:
    values = [" 10.0.0.1", "Edge.Example", "", "fe80::0:1", "edge.example", "10.0.0.1"]
    assert split_sans(values) == (["edge.example"], ["10.0.0.1", "fe80::1"])


def test_issue_client_cert(pki: PKI) -> None:
    key = new_key()
    pem = pki.issue_client_cert("system:node:n1", ["system:nodes"], key.public_key(), days=30)
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(load(pki.client_ca_cert))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)
    with pytest.raises(ValueError):
        pki.issue_client_cert("", [], key.public_key())


def test_issue_client_cert_for_rsa_key(pki: PKI) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = pki.issue_client_cert("alice", [], rsa_key.public_key())
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(load(pki.client_ca_cert))
    assert cert.public_key() == rsa_key.public_key()


def test_issue_serving_cert(pki: PKI) -> None:
    key = new_key()
    pem = pki.issue_serving_cert(
        "n1", key.public_key(), dns_names=["n1"], ip_addresses=["192.168.1.5"]
    )
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(load(pki.server_ca_cert))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.1.5")]


# --- TLS: handshake, client certificates, peer identity -------------------------------------


def client_context(pki: PKI, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.server_ca_cert))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


Seen = list[tuple[tuple[str, list[str]] | None, str | None]]


async def handshake(pki: PKI, ctx: ssl.SSLContext, host: str = "localhost") -> tuple[Seen, bytes]:
    """Connect to a TLS server on 127.0.0.1; return ((identity, ALPN) per accept, bytes read)."""
    seen: Seen = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        seen.append((peer_identity(ssl_object), ssl_object.selected_alpn_protocol()))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=pki.server_ssl_context())
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=host
        )
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except (ssl.SSLError, ConnectionResetError):
            data = b""
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return seen, data


async def test_tls_admin_cert_yields_identity(pki: PKI) -> None:
    seen, data = await handshake(pki, client_context(pki, pki.admin_cert, pki.admin_key))
    assert data == b"ok"
    assert seen == [(("system:admin", ["system:masters"]), "http/1.1")]


@pytest.mark.parametrize("host", ["localhost", "kubernetes.default.svc", "127.0.0.1"])
async def test_tls_without_client_cert_is_anonymous(pki: PKI, host: str) -> None:
    seen, data = await handshake(pki, client_context(pki), host)
    assert data == b"ok"
    assert seen == [(None, "http/1.1")]


async def test_tls_issued_client_cert_yields_identity(pki: PKI, tmp_path: Path) -> None:
    key = new_key()
    (tmp_path / "n.key").write_bytes(key_to_pem(key))
    (tmp_path / "n.crt").write_bytes(
        pki.issue_client_cert("system:node:n1", ["system:nodes", "extra"], key.public_key())
    )
    ctx = client_context(pki, tmp_path / "n.crt", tmp_path / "n.key")
    seen, _ = await handshake(pki, ctx)
    assert seen == [(("system:node:n1", ["system:nodes", "extra"]), "http/1.1")]


async def test_tls_rejects_cert_from_foreign_ca(pki: PKI, tmp_path: Path) -> None:
    other = ensure_pki(tmp_path / "other", dns_names=[], ip_addresses=[])
    seen, data = await handshake(pki, client_context(pki, other.admin_cert, other.admin_key))
    assert seen == []
    assert data == b""


async def test_tls_rejects_serving_cert_used_as_client_cert(pki: PKI) -> None:
    # Signed by the server CA, not the client CA, and lacks clientAuth.
    seen, data = await handshake(pki, client_context(pki, pki.serving_cert, pki.serving_key))
    assert seen == []
    assert data == b""


def test_peer_identity_none() -> None:
    assert peer_identity(None) is None


# --- kubeconfig -----------------------------------------------------------------------------


def test_admin_kubeconfig_shape(pki: PKI) -> None:
    config = admin_kubeconfig(
        "https://127.0.0.1:6443",
        pki.ca_bundle_pem(),
        pki.admin_cert.read_bytes(),
        pki.admin_key.read_bytes(),
    )
    assert config["current-context"] == "default"
    assert config["contexts"] == [
        {"name": "default", "context": {"cluster": "default", "user": "default"}}
    ]
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == pki.ca_bundle_pem()
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == pki.admin_key.read_bytes()


def test_kubeconfig_round_trip_and_mode(tmp_path: Path) -> None:
    config = admin_kubeconfig("https://pi:6443", b"ca", b"cert", b"key", name="edge")
    path = tmp_path / "etc" / "edgek" / "edgek.yaml"
    write_kubeconfig(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kubeconfig(path) == config
    write_kubeconfig(path, config, mode=0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["edgek.yaml"]


def test_load_kubeconfig_rejects_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ValueError):
        load_kubeconfig(path)


def test_atomic_write_replaces_content(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one", mode=0o640)
    atomic_write(path, b"two", mode=0o600)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f"]


needs_kubectl = pytest.mark.skipif(shutil.which(KUBECTL) is None, reason="kubectl not installed")


async def run_kubectl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@needs_kubectl
async def test_kubectl_parses_kubeconfig(pki: PKI, tmp_path: Path) -> None:
    path = tmp_path / "edgek.yaml"
    cert = pki.admin_cert.read_bytes()
    write_kubeconfig(
        path,
        admin_kubeconfig(
            "https://127.0.0.1:6443", pki.ca_bundle_pem(), cert, pki.admin_key.read_bytes()
        ),
    )
    rc, out, err = await run_kubectl(
        "config", "view", "--kubeconfig", str(path), "--raw", "-o", "json"
    )
    assert rc == 0, err
    view = json.loads(out)
    assert view["current-context"] == "default"
    assert view["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(view["users"][0]["user"]["client-certificate-data"]) == cert


@needs_kubectl
async def test_kubectl_talks_mtls_to_server_context(pki: PKI, tmp_path: Path) -> None:
    """Go's TLS stack (kubectl) accepts our serving cert and presents the admin cert."""

    async def whoami(request: web.Request) -> web.Response:
        assert request.transport is not None
        identity = peer_identity(request.transport.get_extra_info("ssl_object"))
        return web.json_response({"identity": identity})

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_ssl_context())
    await site.start()
    try:
        port = runner.addresses[0][1]
        path = tmp_path / "edgek.yaml"
        write_kubeconfig(
            path,
            admin_kubeconfig(
                f"https://127.0.0.1:{port}",
                pki.ca_bundle_pem(),
                pki.admin_cert.read_bytes(),
                pki.admin_key.read_bytes(),
            ),
        )
        rc, out, err = await run_kubectl("--kubeconfig", str(path), "get", "--raw", "/whoami")
    finally:
        await runner.cleanup()
    assert rc == 0, err
    assert json.loads(out) == {"identity": ["system:admin", ["system:masters"]]}
