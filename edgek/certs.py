"""X.509 building blocks: EC P-256 keys, self-signed CAs, CA-signed leaf certificates.

Pure functions over ``cryptography`` objects plus tolerant loaders (a missing or corrupt file
loads as ``None`` so the caller can regenerate it). Nothing here decides *when* to create or
renew; that policy lives in the server's :mod:`server.pki.pki`. Shared by the server and the
agent (which must not import the server), so it sits in the bottom package; importing it loads
``cryptography``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Certificates start this long before "now" so peers with a slightly slow clock accept them.
BACKDATE = timedelta(minutes=5)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Any public key a certificate may carry (CSRs may hold RSA keys, ours are EC).
PublicKey = CertificatePublicKeyTypes

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PEM ("EC PRIVATE KEY", as k3s and kubeadm write it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    """The EC private key stored at ``path``; None if missing, unreadable or not an EC key."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def load_cert(path: Path) -> x509.Certificate | None:
    """The first certificate in the PEM file at ``path``; None if missing or unparsable."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _public_der(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    """True when ``key`` is the private half of the certificate's public key."""
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    return _public_der(public) == _public_der(key)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``cert`` names ``ca`` as issuer and carries a valid signature by it."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    *,
    ca: bool,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    """A certificate valid ``days`` days from ``now`` (backdated by :data:`BACKDATE`), with
    critical basic constraints and key usage: signing, plus certificate and CRL signing for a
    CA."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def create_ca(
    common_name: str, key: ec.EllipticCurvePrivateKey, *, now: datetime, days: int
) -> x509.Certificate:
    """A self-signed CA certificate for ``key``, valid ``days`` days from ``now``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    return (
        _builder(name, name, public, ca=True, now=now, days=days)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class Leaf:
    """What a leaf (non-CA) certificate says: its subject (one RDN per organization, then the
    common name), its single extended key usage (server or client auth) and its SANs."""

    common_name: str
    usage: x509.ObjectIdentifier
    organizations: Sequence[str] = ()
    dns_names: Sequence[str] = ()
    ip_addresses: Sequence[IPAddress] = ()


def sign_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    leaf: Leaf,
    public_key: PublicKey,
    *,
    now: datetime,
    days: int,
) -> x509.Certificate:
    """A certificate for ``public_key`` as ``leaf`` describes it, signed by the CA; SANs are
    added when given."""
    if not leaf.common_name:
        raise ValueError("certificate common name must not be empty")
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in leaf.organizations]
        + [x509.NameAttribute(NameOID.COMMON_NAME, leaf.common_name)]
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(subject, ca_cert.subject, public_key, ca=False, now=now, days=days)
        .add_extension(x509.ExtendedKeyUsage([leaf.usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    if leaf.dns_names or leaf.ip_addresses:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in leaf.dns_names]
        names += [x509.IPAddress(ip) for ip in leaf.ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def has_usage(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    """True when the certificate's extended key usage includes ``usage``."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return usage in eku


def sans_cover(cert: x509.Certificate, dns_names: Sequence[str], ips: Sequence[IPAddress]) -> bool:
    """True when every DNS name (case-insensitively) and IP is among the cert's SANs.

    Trivially true when nothing is requested.
    """
    if not dns_names and not ips:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return all(d.lower() in have_dns for d in dns_names) and all(ip in have_ips for ip in ips)
