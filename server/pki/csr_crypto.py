"""CertificateSigningRequests: parse, auto-approve and sign (pure functions).

The lead's CSR controller wraps these. For each pending ``certificates.k8s.io/v1``
CertificateSigningRequest it asks :func:`auto_approval` (None means "no opinion": the CSR
stays pending until a human runs ``kubectl certificate approve``/``deny``), then signs
approved ones with :func:`sign` and stores the PEM in ``status.certificate``.

Signers (as kube-controller-manager's csrsigning controllers):

- ``kubernetes.io/kube-apiserver-client-kubelet`` and ``kubernetes.io/kube-apiserver-client``
  are signed by the client CA (the API server authenticates the result);
- ``kubernetes.io/kubelet-serving`` by the server CA (what clients of the API already trust,
  so the API server and ``kubectl logs``/``exec`` paths can verify an agent's endpoint).

Auto-approval (upstream's csrapproving controller, decided here by group membership instead
of a SubjectAccessReview):

- a kubelet client CSR (subject ``O=system:nodes``, ``CN=system:node:<node>``, no SANs,
  usages {digital signature, client auth} with optional key encipherment) is approved when
  the requester is in ``system:bootstrappers`` (first join) or is ``system:node:<node>`` itself
  in ``system:nodes`` (rotation);
- a kubelet serving CSR (same subject, DNS/IP SANs only, usages {digital signature, server
  auth} with optional key encipherment) is approved when requested by that same node, and its
  DNS names are only the node name and ``localhost``. IP SANs are not checked against the
  Node's addresses (these functions see only the CSR); a stricter policy would need the Node.

Node identity guard (edgek's equivalent of k3s node passwords): the first approved join of
node ``x`` is recorded in the kube-system Secret ``x.node-identity.edgek`` (type
``edgek.io/node-identity``) holding the sha256 of the CSR's public key. A later *bootstrap*
CSR for ``x`` with a different key is denied, so a token holder cannot take over an existing
node's name; self-renewal by the node's own certificate may change the key. The controller
should write :func:`identity_secret` after approving any kubelet client CSR (create on first
join, replace on rotation) so the Secret always holds the node's current key.

What needs no X.509 parsing (conditions, signer and Secret names) lives in
:mod:`server.pki.csr_state` and is re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgek.certs import BACKDATE
from edgek.names import is_dns1123_subdomain
from server.pki.csr_state import (
    CLIENT_KUBELET_SIGNER,
    CLIENT_SIGNER,
    IDENTITY_KEY,
    IDENTITY_NAMESPACE,
    IDENTITY_SECRET_TYPE,
    SERVING_SIGNER,
    SIGNERS,
    identity_secret_name,
    is_approved,
    is_denied_or_failed,
    true_conditions,
)

__all__ = [
    "CA",
    "CLIENT_KUBELET_SIGNER",
    "CLIENT_SIGNER",
    "IDENTITY_NAMESPACE",
    "SERVING_SIGNER",
    "SIGNERS",
    "CSRError",
    "auto_approval",
    "identity_secret",
    "identity_secret_name",
    "is_approved",
    "is_denied_or_failed",
    "load_ca",
    "parse_request",
    "public_key_sha256",
    "requested_node",
    "sign",
]

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
APPROVED_REASON = "AutoApproved"

#: Shortest certificate a CSR may ask for (twice the backdate, as upstream).
MIN_DURATION = timedelta(minutes=10)
#: Certificates shorter than this are not backdated at the end (upstream's "Short").
SHORT_DURATION = timedelta(hours=8)

CAKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
CA = tuple[x509.Certificate, CAKey]

#: The extended key usages the signer rules allow (all signers limit usages to these plus
#: digital signature and key encipherment).
_EXT_KEY_USAGES = {
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
}
_FORWARDED_SANS = (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)
_KUBELET_CLIENT_USAGES = (
    frozenset({"digital signature", "key encipherment", "client auth"}),
    frozenset({"digital signature", "client auth"}),
)
_KUBELET_SERVING_USAGES = (
    frozenset({"digital signature", "key encipherment", "server auth"}),
    frozenset({"digital signature", "server auth"}),
)


def load_ca(cert_path: Path, key_path: Path) -> CA:
    """The CA certificate and private key stored (as PEM) at the paths."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, CAKey):
        raise ValueError(f"{key_path}: CA key must be an EC or RSA private key")
    return cert, key


class CSRError(ValueError):
    """A CSR that cannot be parsed, or that this signer may not sign."""


def parse_request(csr_obj: dict[str, Any]) -> x509.CertificateSigningRequest:
    """The X.509 request in ``spec.request`` (base64 of a PEM "CERTIFICATE REQUEST"), with its
    self-signature checked; CSRError when missing, malformed or badly signed."""
    raw = (csr_obj.get("spec") or {}).get("request")
    if not isinstance(raw, str) or not raw:
        raise CSRError("spec.request is missing")
    try:
        pem = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CSRError(f"spec.request is not base64: {e}") from None
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise CSRError("PEM block type must be CERTIFICATE REQUEST")
    try:
        req = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise CSRError(f"cannot parse certificate request: {e}") from None
    if not req.is_signature_valid:
        raise CSRError("unable to verify certificate request signature")
    return req


def requested_node(csr_obj: dict[str, Any]) -> str | None:
    """The node a kubelet client CSR is for (its ``CN=system:node:<node>``), so the controller
    can look up that node's identity Secret; None for other signers or unparsable requests."""
    if (csr_obj.get("spec") or {}).get("signerName") != CLIENT_KUBELET_SIGNER:
        return None
    try:
        return _node_name(parse_request(csr_obj))
    except CSRError:
        return None


def public_key_sha256(req: x509.CertificateSigningRequest) -> str:
    """Hex sha256 of the request's public key (DER SubjectPublicKeyInfo)."""
    der = req.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def identity_secret(node: str, csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    """The Secret recording that ``node`` joined with ``csr``'s public key."""
    digest = public_key_sha256(csr).encode("ascii")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": identity_secret_name(node), "namespace": IDENTITY_NAMESPACE},
        "type": IDENTITY_SECRET_TYPE,
        "data": {IDENTITY_KEY: base64.b64encode(digest).decode("ascii")},
    }


def _stored_key_hash(secret: dict[str, Any]) -> str:
    """The public key hash recorded in an identity Secret ("" when unreadable)."""
    value = (secret.get("data") or {}).get(IDENTITY_KEY)
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("ascii").strip()
    except (binascii.Error, ValueError):
        return ""


def auto_approval(
    csr_obj: dict[str, Any], identity_secret: dict[str, Any] | None
) -> tuple[bool, str] | None:
    """Decide a pending CSR: (True, "AutoApproved"), (False, message) or None (no opinion).

    ``identity_secret`` is the stored ``<node>.node-identity.edgek`` Secret of the node the
    CSR names (see :func:`requested_node`), None when the node has not joined yet. CSRs that
    are already decided or signed, unparsable, for other signers or that do not have the
    kubelet shape get no opinion, as upstream's approver ignores what it does not recognize.
    """
    spec = csr_obj.get("spec") or {}
    decided = true_conditions(csr_obj) & {"Approved", "Denied", "Failed"}
    if decided or (csr_obj.get("status") or {}).get("certificate"):
        return None
    signer = spec.get("signerName")
    if signer not in (CLIENT_KUBELET_SIGNER, SERVING_SIGNER):
        return None
    try:
        req = parse_request(csr_obj)
        _check_signer_rules(signer, req, _usages(spec))
    except CSRError:
        return None
    node = _node_name(req)
    if node is None:
        return None
    username = spec.get("username") or ""
    groups = spec.get("groups") or []
    is_self = username == NODE_USER_PREFIX + node and NODES_GROUP in groups
    if signer == SERVING_SIGNER:
        dns = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(dns.get_values_for_type(x509.DNSName))
        return (True, APPROVED_REASON) if is_self and names <= {node, "localhost"} else None
    if is_self:
        return True, APPROVED_REASON
    if BOOTSTRAPPERS_GROUP not in groups:
        return None
    if identity_secret is not None and not hmac.compare_digest(
        _stored_key_hash(identity_secret), public_key_sha256(req)
    ):
        return False, (
            f'node "{node}" already joined with a different key; delete secret '
            f"{IDENTITY_NAMESPACE}/{identity_secret_name(node)} to let a new device take "
            "the name"
        )
    return True, APPROVED_REASON


def _node_name(req: x509.CertificateSigningRequest) -> str | None:
    """``<node>`` of a ``CN=system:node:<node>`` subject when it is a valid node name."""
    cn = _attrs(req.subject, NameOID.COMMON_NAME)
    if len(cn) != 1 or not cn[0].startswith(NODE_USER_PREFIX):
        return None
    node = cn[0][len(NODE_USER_PREFIX) :]
    # The identity Secret's name (node + 22 characters) must be a valid name too.
    if is_dns1123_subdomain(node) or is_dns1123_subdomain(identity_secret_name(node)):
        return None
    return node


def _attrs(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def _usages(spec: dict[str, Any]) -> list[str]:
    usages = spec.get("usages") or []
    return [str(u) for u in usages]


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _check_signer_rules(
    signer: str, req: x509.CertificateSigningRequest, usages: list[str]
) -> None:
    """CSRError (worded as upstream) when the request does not fit the signer's rules."""
    if signer == CLIENT_SIGNER:
        _check_client_usages(usages)
        return
    if _attrs(req.subject, NameOID.ORGANIZATION_NAME) != [NODES_GROUP]:
        raise CSRError("subject organization is not system:nodes")
    sans = _sans(req)
    names = _SanValues(
        sans.get_values_for_type(x509.DNSName) if sans else [],
        sans.get_values_for_type(x509.IPAddress) if sans else [],
        sans.get_values_for_type(x509.RFC822Name) if sans else [],
        sans.get_values_for_type(x509.UniformResourceIdentifier) if sans else [],
    )
    cn = _attrs(req.subject, NameOID.COMMON_NAME)
    if signer == SERVING_SIGNER:
        _check_kubelet_serving(names, cn, usages)
    else:
        _check_kubelet_client(names, cn, usages)


class _SanValues(NamedTuple):
    """A request's subjectAltNames by type."""

    dns: list[str]
    ips: list[Any]
    emails: list[str]
    uris: list[str]


def _check_client_usages(usages: list[str]) -> None:
    """The kubernetes.io/kube-apiserver-client signer's usage rules."""
    for usage in usages:
        if usage not in ("digital signature", "key encipherment", "client auth"):
            raise CSRError(f"invalid usage for client certificate: {usage}")
    if "client auth" not in usages:
        raise CSRError("missing required usage for client certificate: client auth")


def _check_kubelet_serving(names: _SanValues, cn: list[str], usages: list[str]) -> None:
    """The kubernetes.io/kubelet-serving signer's rules."""
    if not names.dns and not names.ips:
        raise CSRError("DNS or IP subjectAltName is required")
    if names.emails:
        raise CSRError("Email subjectAltNames are not allowed")
    if names.uris:
        raise CSRError("URI subjectAltNames are not allowed")
    if frozenset(usages) not in _KUBELET_SERVING_USAGES:
        raise CSRError("usages did not match [digital signature key encipherment server auth]")
    _check_node_cn(cn)


def _check_node_cn(cn: list[str]) -> None:
    """A kubelet certificate's common name must be a node user's."""
    if not cn or not cn[-1].startswith(NODE_USER_PREFIX):
        raise CSRError("subject common name does not begin with system:node:")


def _check_kubelet_client(names: _SanValues, cn: list[str], usages: list[str]) -> None:
    """The kubernetes.io/kube-apiserver-client-kubelet signer's rules."""
    if names.dns:
        raise CSRError("DNS subjectAltNames are not allowed")
    if names.emails:
        raise CSRError("Email subjectAltNames are not allowed")
    if names.ips:
        raise CSRError("IP subjectAltNames are not allowed")
    if names.uris:
        raise CSRError("URI subjectAltNames are not allowed")
    _check_node_cn(cn)
    if frozenset(usages) not in _KUBELET_CLIENT_USAGES:
        raise CSRError("usages did not match [client auth digital signature key encipherment]")


def _duration(spec: dict[str, Any], default_days: int) -> timedelta:
    """Requested lifetime: ``spec.expirationSeconds`` clamped to [10 min, default]."""
    default = timedelta(days=default_days)
    seconds = spec.get("expirationSeconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return default
    return max(MIN_DURATION, min(default, timedelta(seconds=seconds)))


def _key_usage(usages: list[str]) -> tuple[x509.KeyUsage | None, list[x509.ObjectIdentifier]]:
    """The key usage extension (None when no bit is set) and the extended key usages, for
    usages the signer rules allow."""
    ekus = [oid for name, oid in _EXT_KEY_USAGES.items() if name in usages]
    signature, encipherment = "digital signature" in usages, "key encipherment" in usages
    if not signature and not encipherment:
        return None, ekus
    key_usage = x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return key_usage, ekus


def sign(
    csr_obj: dict[str, Any],
    *,
    client_ca: CA,
    server_ca: CA,
    now: datetime,
    default_days: int = 365,
) -> bytes:
    """The PEM certificate for an approved CSR of a signer edgek owns.

    Subject and SANs come from the request; key usage and extended key usage from
    ``spec.usages``; the lifetime is ``spec.expirationSeconds`` (at least 10 minutes, at most
    ``default_days``) or ``default_days``, starting 5 minutes before ``now`` (the end is
    backdated too unless the lifetime is under 8 hours) and never past the CA's own expiry.
    CSRError when the CSR is not approved (or denied/failed), its signer is not one of ours
    (such CSRs stay pending, as upstream leaves signers it does not own alone), or the
    request does not fit the signer's rules.
    """
    if not is_approved(csr_obj) or is_denied_or_failed(csr_obj):
        raise CSRError("certificate signing request is not approved")
    spec = csr_obj.get("spec") or {}
    signer = spec.get("signerName")
    if signer in (CLIENT_KUBELET_SIGNER, CLIENT_SIGNER):
        ca_cert, ca_key = client_ca
    elif signer == SERVING_SIGNER:
        ca_cert, ca_key = server_ca
    else:
        raise CSRError(f"unrecognized signerName: {signer!r}")
    req = parse_request(csr_obj)
    usages = _usages(spec)
    _check_signer_rules(signer, req, usages)
    key_usage, ekus = _key_usage(usages)
    ca_end = ca_cert.not_valid_after_utc
    if now >= ca_end:
        raise CSRError(f"refusing to sign a certificate that expired in the past: {ca_end}")
    ttl = _duration(spec, default_days)
    not_after = now + ttl if ttl < SHORT_DURATION else now + ttl - BACKDATE
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca_cert.subject)
        .public_key(req.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(not_after, ca_end))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    sans = _sans(req)
    # Forward the SAN types a Go template carries (DNS, IP, email, URI), as upstream does.
    names = [n for n in sans or [] if isinstance(n, _FORWARDED_SANS)]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)
