"""Create, check and renew the server PKI files (needs ``cryptography``).

:func:`server.pki.pki.ensure_pki` imports this module only when the recorded result of an
earlier check does not cover the current files (see :mod:`server.pki.checked`), so a
restart with unchanged, still valid certificates never loads ``cryptography``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from edgek import certs
from edgek.certs import IPAddress
from edgek.kubeconfig import atomic_write
from server.pki.pki import (
    ADMIN_GROUP,
    ADMIN_USER,
    APISERVER_USER,
    CA_DAYS,
    LEAF_DAYS,
    PKI,
    RENEW_BEFORE,
)

log = logging.getLogger("server.pki.pki")  # the logger these messages always came from

CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _load_pair(
    cert_path: Path, key_path: Path, issuer: x509.Certificate | None
) -> tuple[x509.Certificate | None, ec.EllipticCurvePrivateKey | None]:
    """The certificate and key stored at the paths, each None when missing or unreadable; the
    certificate is None too unless ``key`` is its private key and ``issuer`` signed it (the
    certificate itself when None: a self-signed CA)."""
    cert = certs.load_cert(cert_path)
    key = certs.load_key(key_path)
    if cert is None or key is None or not certs.key_matches(cert, key):
        return None, key
    return (cert if certs.issued_by(cert, issuer or cert) else None), key


def _ensure_ca(cert_path: Path, key_path: Path, prefix: str, now: datetime) -> CA:
    """Load the CA (cert, key), or create it when missing, corrupt, mismatched or expired."""
    cert, key = _load_pair(cert_path, key_path, None)
    if cert is not None and key is not None and now < cert.not_valid_after_utc:
        return cert, key
    if cert_path.exists() or key_path.exists():
        log.warning("pki: CA %s unusable, generating a new one", cert_path.name)
    key = certs.new_key()
    cert = certs.create_ca(f"{prefix}@{int(now.timestamp())}", key, now=now, days=CA_DAYS)
    atomic_write(key_path, certs.key_to_pem(key), mode=0o600)
    atomic_write(cert_path, certs.cert_to_pem(cert), mode=0o644)
    log.info("pki: generated CA %s", cert_path.name)
    return cert, key


def _ensure_leaf(
    cert_path: Path, key_path: Path, ca: CA, leaf: certs.Leaf, now: datetime
) -> x509.Certificate:
    """Keep the leaf certificate if still good for this CA and request, else reissue it;
    returns the certificate in place afterwards.

    "Good" means: cert and key load and match, the CA signed it, its EKU is the leaf's usage,
    it covers the leaf's SANs, and it is valid for more than :data:`RENEW_BEFORE`. A loadable
    key is kept on reissue (the key is written before the cert, so a crash between the two
    leaves a key that simply gets a new cert next time).
    """
    ca_cert, ca_key = ca
    cert, key = _load_pair(cert_path, key_path, ca_cert)
    if (
        cert is not None
        and certs.has_usage(cert, leaf.usage)
        and certs.sans_cover(cert, leaf.dns_names, leaf.ip_addresses)
        and cert.not_valid_after_utc - now > RENEW_BEFORE
    ):
        return cert
    if key is None:
        key = certs.new_key()
        atomic_write(key_path, certs.key_to_pem(key), mode=0o600)
    cert = certs.sign_leaf(ca_cert, ca_key, leaf, key.public_key(), now=now, days=LEAF_DAYS)
    atomic_write(cert_path, certs.cert_to_pem(cert), mode=0o644)
    log.info("pki: issued %s", cert_path.name)
    return cert


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The certificate's DNS names (lower-cased) and IP addresses, as strings."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = sorted({d.lower() for d in san.get_values_for_type(x509.DNSName)})
    ips = sorted({str(ip) for ip in san.get_values_for_type(x509.IPAddress)})
    return dns, ips


def ensure(
    pki: PKI, dns_names: Sequence[str], ip_addresses: Sequence[IPAddress], now: datetime
) -> dict[str, Any]:
    """Create what is missing in ``pki.tls_dir`` and replace what is unusable, as
    :func:`server.pki.pki.ensure_pki` documents; ``dns_names``/``ip_addresses`` are the
    serving certificate's full SAN list. Returns the facts a later start needs to decide
    whether the same files are still good without this check: every certificate's expiry
    and the serving certificate's SANs."""
    server_ca = _ensure_ca(pki.server_ca_cert, pki.server_ca_key, "edgek-server-ca", now)
    client_ca = _ensure_ca(pki.client_ca_cert, pki.client_ca_key, "edgek-client-ca", now)
    serving_leaf = certs.Leaf(
        "kube-apiserver", certs.SERVER_AUTH, dns_names=dns_names, ip_addresses=ip_addresses
    )
    serving = _ensure_leaf(pki.serving_cert, pki.serving_key, server_ca, serving_leaf, now)
    admin_leaf = certs.Leaf(ADMIN_USER, certs.CLIENT_AUTH, organizations=[ADMIN_GROUP])
    admin = _ensure_leaf(pki.admin_cert, pki.admin_key, client_ca, admin_leaf, now)
    apiserver_leaf = certs.Leaf(APISERVER_USER, certs.CLIENT_AUTH, organizations=[ADMIN_GROUP])
    apiserver = _ensure_leaf(
        pki.apiserver_client_cert, pki.apiserver_client_key, client_ca, apiserver_leaf, now
    )
    serving_dns, serving_ips = _sans(serving)
    return {
        "ca_not_after": [
            server_ca[0].not_valid_after_utc.isoformat(),
            client_ca[0].not_valid_after_utc.isoformat(),
        ],
        "leaf_not_after": [
            serving.not_valid_after_utc.isoformat(),
            admin.not_valid_after_utc.isoformat(),
            apiserver.not_valid_after_utc.isoformat(),
        ],
        "serving_dns": serving_dns,
        "serving_ips": serving_ips,
    }
