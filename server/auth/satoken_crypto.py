"""Service-account tokens: ES256-signed JWTs shaped like upstream's bound tokens.

:class:`TokenSigner` holds the cluster's service-account signing key (EC P-256) and
issues/verifies tokens in JWS compact form (``header.payload.signature``, base64url without
padding, signature raw ``r || s``). Claims follow ``pkg/serviceaccount/claims.go``: ``iss``,
``sub`` (``system:serviceaccount:<ns>:<name>``), ``aud``, ``exp``, ``iat``, ``nbf``,
``jti`` and a private ``kubernetes.io`` object naming the namespace, the service account and
the pod/secret/node the token is bound to. Verification applies go-jose's one-minute leeway
to ``exp``/``nbf``/``iat`` and answers None for anything that does not check out; it never
raises on hostile input. Whether the bound objects still exist is the caller's check.

This module needs ``cryptography``; the server imports it only through
:class:`server.auth.satoken.ServiceAccountKey` when a token is first issued or verified.
The rest (claims, the TokenRequest reply and static validation for
``POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token``, the OIDC discovery document)
lives in :mod:`server.auth.satoken` and is re-exported here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from edgek.certs import key_to_pem
from edgek.kubeconfig import atomic_write
from server.auth.satoken import (
    ALGORITHM,
    API_AUDIENCES,
    DEFAULT_ISSUER,
    LEEWAY_SECONDS,
    USERNAME_PREFIX,
    ServiceAccountClaims,
    openid_configuration,
    token_request_response,
    validate_token_request,
)

__all__ = [
    "API_AUDIENCES",
    "DEFAULT_ISSUER",
    "ServiceAccountClaims",
    "TokenSigner",
    "key_id",
    "token_request_response",
    "validate_token_request",
]

_SIGNATURE_BYTES = 64  # ES256: r and s, 32 bytes each
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_BOUND_KINDS = ("Pod", "Secret", "Node")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes | None:
    """Unpadded base64url in its one canonical spelling, else None.

    Non-canonical spellings (padding, stray characters, non-zero trailing bits) are refused
    so a token has exactly one valid encoding.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if _b64url(data) == text else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The JSON object in ``raw`` (UTF-8), or None."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _numeric_date(value: Any) -> int | None:
    """A JWT NumericDate (JSON number, truncated to whole seconds), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # e.g. 1e999, which Python's JSON parser reads as inf
    return int(value)


def _audiences(value: Any) -> list[str] | None:
    """``aud`` as a list: a string or a list of strings (both are valid JWT)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return value
    return None


def _ref(value: Any) -> tuple[str, str] | None:
    """``{"name", "uid"}`` of a ``kubernetes.io`` reference (both optional strings)."""
    if not isinstance(value, dict):
        return None
    name, uid = value.get("name", ""), value.get("uid", "")
    if not isinstance(name, str) or not isinstance(uid, str):
        return None
    return name, uid


def _ref_claim(obj: dict[str, Any]) -> dict[str, str]:
    """A reference claim from ``{"name", "uid"}``, empty fields omitted (``omitempty``)."""
    return {k: str(obj[k]) for k in ("name", "uid") if obj.get(k)}


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Upstream's key id: base64url (unpadded) SHA-256 of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(der).digest())


class TokenSigner:
    """Issues and verifies service-account JWTs with one EC P-256 key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, issuer: str = DEFAULT_ISSUER) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"service-account key must be EC P-256, not {key.curve.name}")
        self.key = key
        self.public_key = key.public_key()
        self.issuer = issuer
        self.kid = key_id(self.public_key)

    @classmethod
    def load_or_create(cls, key_path: Path, *, issuer: str = DEFAULT_ISSUER) -> TokenSigner:
        """The signer whose private key (PEM) is at ``key_path``; a new key is written there
        (mode 0600) when the file does not exist. An existing file that is not an EC P-256
        private key raises ValueError rather than being replaced, since replacing it would
        invalidate every token issued so far."""
        try:
            pem = key_path.read_bytes()
        except FileNotFoundError:
            key = ec.generate_private_key(ec.SECP256R1())
            atomic_write(key_path, key_to_pem(key))
            return cls(key, issuer=issuer)
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{key_path}: not a usable private key: {exc}") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: service-account key must be EC P-256")
        return cls(loaded, issuer=issuer)

    def issue(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        audiences: list[str],
        expiration_seconds: int,
        now: int,
        bound: dict[str, Any] | None = None,
        node: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A signed token for service account ``namespace/name`` (``uid``), valid from
        ``now`` for ``expiration_seconds``; returns ``(token, exp)``.

        ``bound`` is ``{"kind": "Pod"|"Secret"|"Node", "name", "uid"}`` with the bound
        object's actual UID; ``node`` (``{"name", "uid"}``, uid may be empty) records the
        node of a pod-bound token. Secret-bound tokens carry no node.
        """
        exp = now + expiration_seconds
        k8s: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": _ref_claim({"name": name, "uid": uid}),
        }
        kind = bound.get("kind") if bound is not None else None
        if bound is not None and kind not in _BOUND_KINDS:
            raise ValueError(f"cannot bind token to object of kind {kind!r}")
        if node is not None and kind != "Pod":
            raise ValueError("node info is only recorded for pod-bound tokens")
        if bound is not None:
            k8s[str(kind).lower()] = _ref_claim(bound)
        if node is not None:
            k8s["node"] = _ref_claim(node)
        claims = {
            "aud": list(audiences),
            "exp": exp,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": f"{USERNAME_PREFIX}{namespace}:{name}",
        }
        header = {"alg": ALGORITHM, "kid": self.kid}
        signing_input = f"{_segment(header)}.{_segment(claims)}"
        der = self.key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}", exp

    def verify(self, token: str, *, audiences: list[str], now: int) -> ServiceAccountClaims | None:
        """The claims of ``token`` if it is an ES256 JWS signed by this key, from this
        issuer, within its validity window (±60 s), for one of ``audiences``, and names a
        service account; otherwise None."""
        payload = self._verified_payload(token)
        if payload is None or payload.get("iss") != self.issuer:
            return None
        if not self._in_window(payload, now):
            return None
        token_audiences = _audiences(payload.get("aud"))
        if not token_audiences or not set(token_audiences) & set(audiences):
            return None
        return _claims(payload)

    def _verified_payload(self, token: str) -> dict[str, Any] | None:
        """The payload of a well-formed compact JWS whose ES256 signature checks out."""
        if not isinstance(token, str):
            return None
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header_raw, payload_raw, signature = (_b64url_decode(p) for p in parts)
        if header_raw is None or payload_raw is None or signature is None:
            return None
        header = _json_object(header_raw)
        if header is None or header.get("alg") != ALGORITHM or "crit" in header:
            return None
        if "kid" in header and header["kid"] != self.kid:
            return None
        if len(signature) != _SIGNATURE_BYTES:
            return None
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        try:
            self.public_key.verify(
                encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            return None
        return _json_object(payload_raw)

    @staticmethod
    def _in_window(payload: dict[str, Any], now: int) -> bool:
        """go-jose ``Claims.Validate`` with the default leeway; ``exp`` is required here."""
        exp = _numeric_date(payload.get("exp"))
        if exp is None or now - LEEWAY_SECONDS > exp:
            return False
        for key in ("nbf", "iat"):
            if key in payload:
                when = _numeric_date(payload[key])
                if when is None or now + LEEWAY_SECONDS < when:
                    return False
        return True

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set served at ``/openid/v1/jwks``."""
        numbers = self.public_key.public_numbers()
        return {
            "keys": [
                {
                    "use": "sig",
                    "kty": "EC",
                    "kid": self.kid,
                    "crv": "P-256",
                    "alg": ALGORITHM,
                    "x": _b64url(numbers.x.to_bytes(32, "big")),
                    "y": _b64url(numbers.y.to_bytes(32, "big")),
                }
            ]
        }

    def openid_configuration(self, issuer_url: str) -> dict[str, Any]:
        """The OIDC discovery document (see :func:`server.auth.satoken.openid_configuration`)."""
        return openid_configuration(self.issuer, issuer_url)


def _segment(obj: dict[str, Any]) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def _claims(payload: dict[str, Any]) -> ServiceAccountClaims | None:
    """The ``kubernetes.io`` private claims (plus ``exp``/``jti``) of a verified payload."""
    k8s = payload.get("kubernetes.io")
    if not isinstance(k8s, dict):
        return None
    namespace = k8s.get("namespace")
    sa = _ref(k8s.get("serviceaccount"))
    if not isinstance(namespace, str) or not namespace or sa is None or not sa[0]:
        return None
    bound_kind, bound = "", ("", "")
    for kind in _BOUND_KINDS:
        if kind.lower() in k8s:
            ref = _ref(k8s[kind.lower()])
            if ref is None:
                return None
            if not bound_kind:
                bound_kind, bound = kind, ref
    node = ("", "")
    if "node" in k8s:
        node = _ref(k8s["node"]) or ("", "")
    jti = payload.get("jti")
    return ServiceAccountClaims(
        namespace=namespace,
        name=sa[0],
        uid=sa[1],
        expires=_numeric_date(payload["exp"]) or 0,
        bound_kind=bound_kind,
        bound_name=bound[0],
        bound_uid=bound[1],
        node_name=node[0],
        node_uid=node[1],
        token_id=jti if isinstance(jti, str) else "",
    )
