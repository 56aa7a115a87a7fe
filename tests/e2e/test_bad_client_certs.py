"""Malformed, foreign, expired or misused client certificates never authenticate: the
TLS handshake is refused, the request gets 401, or (a verified certificate without a CN, as
upstream) it is served as ``system:anonymous``; never another answer (and never 500)."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgek import certs
from server.pki.pki import PKI
from tests.helpers import ServerProcess

PATH = "/api/v1/namespaces/default/secrets"

SslFiles = tuple[Path, Path]


def _write_pair(tmp: Path, cert_pem: bytes, key: ec.EllipticCurvePrivateKey) -> SslFiles:
    cert, key_path = tmp / "c.crt", tmp / "c.key"
    cert.write_bytes(cert_pem)
    key_path.write_bytes(certs.key_to_pem(key))
    return cert, key_path


def _self_signed(tmp: Path, pki: PKI) -> SslFiles:
    """CN=system:admin, O=system:masters, signed by its own key."""
    key = certs.new_key()
    ca = certs.create_ca("system:admin", key, now=datetime.now(UTC), days=1)
    return _write_pair(tmp, certs.cert_to_pem(ca), key)


def _wrong_ca(tmp: Path, pki: PKI) -> SslFiles:
    """A clientAuth leaf signed by the server CA (trusted for serving, not for clients)."""
    key = certs.new_key()
    ca_cert, ca_key = certs.load_cert(pki.server_ca_cert), certs.load_key(pki.server_ca_key)
    assert ca_cert is not None and ca_key is not None
    leaf = certs.Leaf("system:admin", certs.CLIENT_AUTH, organizations=["system:masters"])
    cert = certs.sign_leaf(ca_cert, ca_key, leaf, key.public_key(), now=datetime.now(UTC), days=1)
    return _write_pair(tmp, certs.cert_to_pem(cert), key)


def _expired(tmp: Path, pki: PKI) -> SslFiles:
    """Signed by the client CA, but valid only two days last month."""
    key = certs.new_key()
    old = PKI.at(pki.tls_dir, clock=lambda: datetime.now(UTC) - timedelta(days=30))
    pem = old.issue_client_cert("system:admin", ["system:masters"], key.public_key(), days=2)
    return _write_pair(tmp, pem, key)


def _server_usage(tmp: Path, pki: PKI) -> SslFiles:
    """Signed by the client CA, but for serverAuth only."""
    key = certs.new_key()
    ca_cert, ca_key = certs.load_cert(pki.client_ca_cert), certs.load_key(pki.client_ca_key)
    assert ca_cert is not None and ca_key is not None
    leaf = certs.Leaf("system:admin", certs.SERVER_AUTH, organizations=["system:masters"])
    cert = certs.sign_leaf(ca_cert, ca_key, leaf, key.public_key(), now=datetime.now(UTC), days=1)
    return _write_pair(tmp, certs.cert_to_pem(cert), key)


def _no_common_name(tmp: Path, pki: PKI) -> SslFiles:
    """Signed by the client CA with groups but no CN (upstream refuses such certificates)."""
    key = certs.new_key()
    ca_cert, ca_key = certs.load_cert(pki.client_ca_cert), certs.load_key(pki.client_ca_key)
    assert ca_cert is not None and ca_key is not None
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([certs.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _write_pair(tmp, certs.cert_to_pem(cert), key)


CASES: dict[str, Callable[[Path, PKI], SslFiles]] = {
    "self-signed": _self_signed,
    "signed-by-server-ca": _wrong_ca,
    "expired": _expired,
    "server-auth-only": _server_usage,
    "no-common-name": _no_common_name,
}


@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_bad_client_certificate_never_authenticates(
    server: ServerProcess, tmp_path: Path, make: Callable[[Path, PKI], SslFiles]
) -> None:
    pki = PKI.at(server.data_dir / "server" / "tls")
    cert, key = make(tmp_path, pki)
    ctx = ssl.create_default_context(cafile=str(pki.server_ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    try:
        conn.request("GET", PATH)
        response = conn.getresponse()
        body = response.read()
    except (ssl.SSLError, ConnectionError):
        return  # refused during the handshake: nothing was served
    finally:
        conn.close()
    if response.status == 403:
        assert b'User \\"system:anonymous\\" cannot list' in body
    else:
        assert response.status == 401, body[:500]
