"""PKI material for unit tests: certificates and keys that must exist, and a PKI's CAs."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from edgek.certs import load_cert, load_key
from server.pki import PKI

#: A CA's certificate and its (EC, as edgek creates them) signing key.
CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def cert_at(path: Path) -> x509.Certificate:
    """The certificate in the PEM file at ``path``, which must hold one."""
    cert = load_cert(path)
    assert cert is not None, path
    return cert


def key_at(path: Path) -> ec.EllipticCurvePrivateKey:
    """The EC private key in the PEM file at ``path``, which must hold one."""
    key = load_key(path)
    assert key is not None, path
    return key


def signing_cas(pki: PKI) -> tuple[CA, CA]:
    """The client and the server CA of ``pki``, certificate and key, ready to sign."""
    client = (cert_at(pki.client_ca_cert), key_at(pki.client_ca_key))
    server = (cert_at(pki.server_ca_cert), key_at(pki.server_ca_key))
    return client, server
