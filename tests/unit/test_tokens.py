"""Tests for service-account JWTs, bootstrap tokens and k3s join tokens.

Token internals are checked independently of the code under test: segments are decoded with
the standard library and signatures verified with a key rebuilt from the published JWKS.
Forged tokens for the claim checks are signed with the real key by a helper here, so each
tamper case fails on the check it targets rather than on the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from edgek import jointoken, status
from server.auth import bootstrap_tokens
from server.auth.satoken_crypto import (
    API_AUDIENCES,
    DEFAULT_ISSUER,
    ServiceAccountClaims,
    TokenSigner,
    token_request_response,
    validate_token_request,
)
from server.pki import ensure_pki
from server.storage.requestinfo import UserInfo

NOW = 1_700_000_000
AUD = [DEFAULT_ISSUER]
SA_UID = "6f1d3a0e-0000-4000-8000-000000000001"
POD_UID = "6f1d3a0e-0000-4000-8000-000000000002"
NODE_UID = "6f1d3a0e-0000-4000-8000-000000000003"


# --- helpers -------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(obj: Any) -> str:
    return b64url(json.dumps(obj).encode())


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    header, payload, sig = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), unb64url(sig)


def es256(key: ec.EllipticCurvePrivateKey, header: str, payload: str) -> str:
    """A compact JWS over the given (already encoded) segments, signed with ``key``."""
    der = key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{header}.{payload}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def jwks_public_key(jwks: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    (jwk,) = jwks["keys"]
    x = int.from_bytes(unb64url(jwk["x"]), "big")
    y = int.from_bytes(unb64url(jwk["y"]), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> TokenSigner:
    return TokenSigner.load_or_create(tmp_path_factory.mktemp("sa") / "service.key")


def good_claims(signer: TokenSigner, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": AUD,
        "exp": NOW + 3600,
        "iat": NOW,
        "iss": signer.issuer,
        "jti": "jti-1",
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {"name": "builder", "uid": SA_UID},
        },
        "nbf": NOW,
        "sub": "system:serviceaccount:default:builder",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def forge(signer: TokenSigner, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A token signed with the signer's real key, with chosen header and claims."""
    head = header if header is not None else {"alg": "ES256", "kid": signer.kid}
    return es256(signer.key, segment(head), segment(good_claims(signer, **claims)))


# --- service-account signer: key handling --------------------------------------------------


def test_load_or_create_writes_private_key_and_reloads_it(tmp_path: Path) -> None:
    path = tmp_path / "server" / "tls" / "service.key"
    first = TokenSigner.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert isinstance(loaded.curve, ec.SECP256R1)
    again = TokenSigner.load_or_create(path)
    assert again.kid == first.kid
    token, _ = first.issue(
        namespace="default", name="a", uid="u", audiences=AUD, expiration_seconds=600, now=NOW
    )
    assert again.verify(token, audiences=AUD, now=NOW) is not None


def test_key_id_is_base64url_sha256_of_der_public_key(signer: TokenSigner) -> None:
    der = signer.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signer.kid == b64url(hashlib.sha256(der).digest())
    assert "=" not in signer.kid and len(signer.kid) == 43


@pytest.mark.parametrize("kind", ["garbage", "rsa"])
def test_load_or_create_refuses_unusable_existing_key(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "service.key"
    if kind == "garbage":
        content = b"not a key\n"
    else:
        content = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    path.write_bytes(content)
    with pytest.raises(ValueError):
        TokenSigner.load_or_create(path)
    assert path.read_bytes() == content


# --- issuing -------------------------------------------------------------------------------


def test_issue_produces_upstream_shaped_es256_jwt(signer: TokenSigner) -> None:
    token, exp = signer.issue(
        namespace="default",
        name="builder",
        uid=SA_UID,
        audiences=["https://kubernetes.default.svc.cluster.local", "edgek"],
        expiration_seconds=3600,
        now=NOW,
    )
    assert exp == NOW + 3600
    header, payload, sig = decode(token)
    assert header == {"alg": "ES256", "kid": signer.kid}
    jti = payload.pop("jti")
    assert str(uuid.UUID(jti)) == jti
    assert payload == {
        "aud": ["https://kubernetes.default.svc.cluster.local", "edgek"],
        "exp": NOW + 3600,
        "iat": NOW,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {"name": "builder", "uid": SA_UID},
        },
        "nbf": NOW,
        "sub": "system:serviceaccount:default:builder",
    }
    # The signature verifies with the key published in the JWKS (raw r||s, 64 bytes).
    assert len(sig) == 64
    public = jwks_public_key(signer.jwks())
    signed = token.rsplit(".", 1)[0].encode()
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(encode_dss_signature(r, s), signed + b"x", ec.ECDSA(hashes.SHA256()))


def test_each_token_gets_its_own_jti(signer: TokenSigner) -> None:
    args: dict[str, Any] = {
        "namespace": "default",
        "name": "a",
        "uid": "u",
        "audiences": AUD,
        "expiration_seconds": 600,
        "now": NOW,
    }
    first, second = signer.issue(**args)[0], signer.issue(**args)[0]
    assert decode(first)[1]["jti"] != decode(second)[1]["jti"]


def test_pod_bound_token_with_node_round_trips(signer: TokenSigner) -> None:
    token, exp = signer.issue(
        namespace="ci",
        name="runner",
        uid=SA_UID,
        audiences=["vault"],
        expiration_seconds=7200,
        now=NOW,
        bound={"kind": "Pod", "apiVersion": "v1", "name": "job-1", "uid": POD_UID},
        node={"name": "pi-1", "uid": NODE_UID},
    )
    payload = decode(token)[1]
    assert payload["kubernetes.io"] == {
        "namespace": "ci",
        "serviceaccount": {"name": "runner", "uid": SA_UID},
        "pod": {"name": "job-1", "uid": POD_UID},
        "node": {"name": "pi-1", "uid": NODE_UID},
    }
    claims = signer.verify(token, audiences=["vault"], now=NOW + 10)
    assert claims == ServiceAccountClaims(
        namespace="ci",
        name="runner",
        uid=SA_UID,
        expires=exp,
        bound_kind="Pod",
        bound_name="job-1",
        bound_uid=POD_UID,
        node_name="pi-1",
        node_uid=NODE_UID,
        token_id=payload["jti"],
    )
    assert claims.user() == UserInfo(
        name="system:serviceaccount:ci:runner",
        groups=("system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"),
        uid=SA_UID,
        extra={
            "authentication.kubernetes.io/pod-name": ("job-1",),
            "authentication.kubernetes.io/pod-uid": (POD_UID,),
            "authentication.kubernetes.io/credential-id": (f"JTI={payload['jti']}",),
            "authentication.kubernetes.io/node-name": ("pi-1",),
            "authentication.kubernetes.io/node-uid": (NODE_UID,),
        },
    )


def test_pod_node_without_uid_is_recorded_by_name_only(signer: TokenSigner) -> None:
    token, _ = signer.issue(
        namespace="ci",
        name="runner",
        uid=SA_UID,
        audiences=AUD,
        expiration_seconds=600,
        now=NOW,
        bound={"kind": "Pod", "name": "job-1", "uid": POD_UID},
        node={"name": "pi-1", "uid": ""},
    )
    assert decode(token)[1]["kubernetes.io"]["node"] == {"name": "pi-1"}
    claims = signer.verify(token, audiences=AUD, now=NOW)
    assert claims is not None
    extra = claims.user().extra
    assert extra["authentication.kubernetes.io/node-name"] == ("pi-1",)
    assert "authentication.kubernetes.io/node-uid" not in extra


def test_secret_bound_token(signer: TokenSigner) -> None:
    token, _ = signer.issue(
        namespace="default",
        name="builder",
        uid=SA_UID,
        audiences=AUD,
        expiration_seconds=600,
        now=NOW,
        bound={"kind": "Secret", "name": "builder-token", "uid": "sec-uid"},
    )
    assert decode(token)[1]["kubernetes.io"]["secret"] == {
        "name": "builder-token",
        "uid": "sec-uid",
    }
    claims = signer.verify(token, audiences=AUD, now=NOW)
    assert claims is not None
    assert (claims.bound_kind, claims.bound_name, claims.bound_uid) == (
        "Secret",
        "builder-token",
        "sec-uid",
    )
    assert set(claims.user().extra) == {"authentication.kubernetes.io/credential-id"}


def test_node_bound_token_reports_node_in_extra(signer: TokenSigner) -> None:
    token, _ = signer.issue(
        namespace="kube-system",
        name="node-agent",
        uid=SA_UID,
        audiences=AUD,
        expiration_seconds=600,
        now=NOW,
        bound={"kind": "Node", "name": "pi-2", "uid": NODE_UID},
    )
    assert decode(token)[1]["kubernetes.io"]["node"] == {"name": "pi-2", "uid": NODE_UID}
    claims = signer.verify(token, audiences=AUD, now=NOW)
    assert claims is not None
    assert (claims.bound_kind, claims.node_name, claims.node_uid) == ("Node", "pi-2", NODE_UID)
    extra = claims.user().extra
    assert extra["authentication.kubernetes.io/node-name"] == ("pi-2",)
    assert "authentication.kubernetes.io/pod-name" not in extra


@pytest.mark.parametrize(
    ("bound", "node"),
    [
        ({"kind": "ConfigMap", "name": "x", "uid": "u"}, None),
        ({"kind": "Secret", "name": "x", "uid": "u"}, {"name": "n", "uid": "v"}),
        ({"kind": "Node", "name": "x", "uid": "u"}, {"name": "n", "uid": "v"}),
        (None, {"name": "n", "uid": "v"}),
    ],
)
def test_issue_rejects_impossible_bindings(
    signer: TokenSigner, bound: dict[str, str] | None, node: dict[str, str] | None
) -> None:
    with pytest.raises(ValueError):
        signer.issue(
            namespace="default",
            name="a",
            uid="u",
            audiences=AUD,
            expiration_seconds=600,
            now=NOW,
            bound=bound,
            node=node,
        )


def test_plain_token_user(signer: TokenSigner) -> None:
    claims = signer.verify(forge(signer), audiences=AUD, now=NOW)
    assert claims == ServiceAccountClaims(
        namespace="default", name="builder", uid=SA_UID, expires=NOW + 3600, token_id="jti-1"
    )
    assert claims.user() == UserInfo(
        name="system:serviceaccount:default:builder",
        groups=(
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated",
        ),
        uid=SA_UID,
        extra={"authentication.kubernetes.io/credential-id": ("JTI=jti-1",)},
    )


# --- verification: what passes -------------------------------------------------------------


def test_expiry_has_sixty_seconds_leeway(signer: TokenSigner) -> None:
    token = forge(signer)
    assert signer.verify(token, audiences=AUD, now=NOW + 3600 + 60) is not None
    assert signer.verify(token, audiences=AUD, now=NOW + 3600 + 61) is None


def test_not_before_and_issued_at_have_sixty_seconds_leeway(signer: TokenSigner) -> None:
    for claim in ("nbf", "iat"):
        within: dict[str, Any] = {claim: NOW + 60}
        beyond: dict[str, Any] = {claim: NOW + 61}
        token = forge(signer, **within)
        assert signer.verify(token, audiences=AUD, now=NOW) is not None, claim
        token = forge(signer, **beyond)
        assert signer.verify(token, audiences=AUD, now=NOW) is None, claim


def test_audience_needs_one_in_common(signer: TokenSigner) -> None:
    token = forge(signer, aud=["vault", "edgek"])
    assert signer.verify(token, audiences=["edgek", "other"], now=NOW) is not None
    assert signer.verify(token, audiences=["other"], now=NOW) is None
    assert signer.verify(token, audiences=[], now=NOW) is None
    # A single audience may be a plain string (RFC 7519).
    assert signer.verify(forge(signer, aud="vault"), audiences=["vault"], now=NOW) is not None


def test_token_without_kid_is_checked_against_the_key(signer: TokenSigner) -> None:
    assert signer.verify(forge(signer, header={"alg": "ES256"}), audiences=AUD, now=NOW)
    other = ec.generate_private_key(ec.SECP256R1())
    forged = es256(other, segment({"alg": "ES256"}), segment(good_claims(signer)))
    assert signer.verify(forged, audiences=AUD, now=NOW) is None


def test_float_numeric_dates_are_accepted(signer: TokenSigner) -> None:
    claims = signer.verify(forge(signer, exp=NOW + 3600.9), audiences=AUD, now=NOW)
    assert claims is not None and claims.expires == NOW + 3600


# --- verification: tampering never raises, always None -------------------------------------


def flip_signature_byte(signer: TokenSigner) -> str:
    head, payload, sig = forge(signer).split(".")
    raw = bytearray(unb64url(sig))
    raw[10] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


def change_claim_keep_signature(signer: TokenSigner) -> str:
    head, _, sig = forge(signer).split(".")
    return f"{head}.{segment(good_claims(signer, exp=NOW + 10**8))}.{sig}"


def swap_key(signer: TokenSigner) -> str:
    other = ec.generate_private_key(ec.SECP256R1())
    head = segment({"alg": "ES256", "kid": signer.kid})
    return es256(other, head, segment(good_claims(signer)))


def alg_none(signer: TokenSigner) -> str:
    return f"{segment({'alg': 'none'})}.{segment(good_claims(signer))}."


def alg_hs256_with_public_key(signer: TokenSigner) -> str:
    head, payload = segment({"alg": "HS256", "kid": signer.kid}), segment(good_claims(signer))
    public_pem = signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mac = hmac.new(public_pem, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64url(mac)}"


def resign_with_header(header: dict[str, Any]) -> Callable[[TokenSigner], str]:
    return lambda signer: forge(signer, header=header)


def resign_with(**claims: Any) -> Callable[[TokenSigner], str]:
    return lambda signer: forge(signer, **claims)


def resign_raw_payload(payload: bytes) -> Callable[[TokenSigner], str]:
    def make(signer: TokenSigner) -> str:
        return es256(signer.key, segment({"alg": "ES256", "kid": signer.kid}), b64url(payload))

    return make


def fixed(token: str) -> Callable[[TokenSigner], str]:
    return lambda signer: token


def edit(change: Callable[[str], str]) -> Callable[[TokenSigner], str]:
    return lambda signer: change(forge(signer))


def non_canonical_signature(token: str) -> str:
    """Same signature bytes, but the unused low bits of the last base64 character set."""
    head, payload, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(sig[-1]) | 0b0011]
    assert unb64url(sig[:-1] + last) == unb64url(sig)
    return f"{head}.{payload}.{sig[:-1]}{last}"


TAMPERED: dict[str, Callable[[TokenSigner], str]] = {
    "flipped signature byte": flip_signature_byte,
    "claims changed after signing": change_claim_keep_signature,
    "signed by another key": swap_key,
    "alg none": alg_none,
    "alg HS256 keyed with the public key": alg_hs256_with_public_key,
    "alg ES384": resign_with_header({"alg": "ES384"}),
    "alg missing": resign_with_header({"kid": "x"}),
    "unknown kid": resign_with_header({"alg": "ES256", "kid": "someone-else"}),
    "crit header": resign_with_header({"alg": "ES256", "crit": ["exp"]}),
    "expired": resign_with(exp=NOW - 61),
    "not yet valid": resign_with(nbf=NOW + 3000),
    "issued in the future": resign_with(iat=NOW + 3000),
    "wrong issuer": resign_with(iss="https://evil.example"),
    "no issuer": resign_with(iss=None),
    "wrong audience": resign_with(aud=["https://evil.example"]),
    "no audience": resign_with(aud=None),
    "audience not strings": resign_with(aud=[1, 2]),
    "no exp": resign_with(exp=None),
    "exp is a string": resign_with(exp=str(NOW + 3600)),
    "exp is a bool": resign_with(exp=True),
    "nbf is a string": resign_with(nbf="soon"),
    "no kubernetes.io": resign_with(**{"kubernetes.io": None}),
    "kubernetes.io not an object": resign_with(**{"kubernetes.io": "default"}),
    "empty namespace": resign_with(
        **{"kubernetes.io": {"namespace": "", "serviceaccount": {"name": "a", "uid": "u"}}}
    ),
    "no service account name": resign_with(
        **{"kubernetes.io": {"namespace": "default", "serviceaccount": {"uid": "u"}}}
    ),
    "pod ref not an object": resign_with(
        **{
            "kubernetes.io": {
                "namespace": "default",
                "serviceaccount": {"name": "a", "uid": "u"},
                "pod": ["x"],
            }
        }
    ),
    "exp overflows to infinity": resign_raw_payload(
        b'{"aud":["'
        + DEFAULT_ISSUER.encode()
        + b'"],"exp":1e999,"iss":"'
        + DEFAULT_ISSUER.encode()
        + b'","kubernetes.io":{"namespace":"d","serviceaccount":{"name":"a"}}}'
    ),
    "NaN constant": resign_raw_payload(b'{"exp":NaN}'),
    "payload is an array": resign_raw_payload(b"[1, 2]"),
    "payload not JSON": resign_raw_payload(b"{not json"),
    "payload not UTF-8": resign_raw_payload(b'{"iss":"\xff\xfe"}'),
    "deeply nested payload": resign_raw_payload(b"[" * 200_000 + b"]" * 200_000),
    "empty string": fixed(""),
    "one segment": fixed("abc"),
    "two segments": edit(lambda t: t.rsplit(".", 1)[0]),
    "four segments": edit(lambda t: t + ".abc"),
    "truncated signature": edit(lambda t: t[:-2]),
    "truncated in the middle": edit(lambda t: t[: len(t) // 2]),
    "signature with padding": edit(lambda t: t + "=="),
    "non-canonical base64": edit(non_canonical_signature),
    "garbage base64": fixed("!!!.@@@.###"),
    "standard base64 alphabet": edit(lambda t: t.replace("-", "+").replace("_", "/") + "+/"),
    "non-ASCII characters": edit(lambda t: t + "é"),
    "lone surrogate": edit(lambda t: t[:-1] + "\udcff"),
    "header not JSON": lambda signer: es256(
        signer.key, b64url(b"{alg"), segment(good_claims(signer))
    ),
    "header is a string": lambda signer: es256(
        signer.key, segment("ES256"), segment(good_claims(signer))
    ),
    "signature too long": edit(lambda t: t + "AAAA"),
    "signature all zero": edit(lambda t: t.rsplit(".", 1)[0] + "." + b64url(bytes(64))),
    "JSON in place of a JWT": lambda signer: json.dumps(good_claims(signer)),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampered_tokens_are_rejected(signer: TokenSigner, name: str) -> None:
    token = TAMPERED[name](signer)
    assert signer.verify(token, audiences=AUD, now=NOW) is None


def test_other_issuer_with_same_key_is_rejected(signer: TokenSigner) -> None:
    other = TokenSigner(signer.key, issuer="https://other.example")
    token, _ = other.issue(
        namespace="default", name="a", uid="u", audiences=AUD, expiration_seconds=600, now=NOW
    )
    assert other.verify(token, audiences=AUD, now=NOW) is not None
    assert signer.verify(token, audiences=AUD, now=NOW) is None


# --- discovery documents -------------------------------------------------------------------


def test_jwks_publishes_the_signing_key(signer: TokenSigner) -> None:
    jwks = signer.jwks()
    (jwk,) = jwks["keys"]
    assert {k: jwk[k] for k in ("use", "kty", "kid", "crv", "alg")} == {
        "use": "sig",
        "kty": "EC",
        "kid": signer.kid,
        "crv": "P-256",
        "alg": "ES256",
    }
    assert len(unb64url(jwk["x"])) == 32 and len(unb64url(jwk["y"])) == 32
    assert jwks_public_key(jwks).public_numbers() == signer.key.public_key().public_numbers()
    json.dumps(jwks)  # serialisable as is


def test_openid_configuration(signer: TokenSigner) -> None:
    assert signer.openid_configuration("https://pi.local:6443/") == {
        "issuer": "https://kubernetes.default.svc.cluster.local",
        "jwks_uri": "https://pi.local:6443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }


# --- TokenRequest --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (599, "may not specify a duration less than 10 minutes"),
        (-1, "may not specify a duration less than 10 minutes"),
        (2**32 + 1, "may not specify a duration larger than 2^32 seconds"),
    ],
)
def test_validate_token_request_rejects_bad_durations(seconds: int, message: str) -> None:
    causes = validate_token_request({"spec": {"expirationSeconds": seconds}})
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {seconds}: {message}",
            "field": "spec.expirationSeconds",
        }
    ]


def test_validate_token_request_message_as_upstream() -> None:
    causes = validate_token_request({"spec": {"expirationSeconds": 599}})
    err = status.invalid("TokenRequest", "authentication.k8s.io", "", causes)
    assert err.message == (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
        "Invalid value: 599: may not specify a duration less than 10 minutes"
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"spec": {}},
        {"spec": {"expirationSeconds": None}},
        {"spec": {"expirationSeconds": 600}},
        {"spec": {"expirationSeconds": 2**32}},
        {"spec": {"audiences": ["vault"], "expirationSeconds": 86400}},
    ],
)
def test_validate_token_request_accepts(body: dict[str, Any]) -> None:
    assert validate_token_request(body) == []


def test_token_request_response_defaults_and_echoes() -> None:
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"creationTimestamp": None},
        "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}},
    }
    original = json.loads(json.dumps(request))
    sa = {"metadata": {"name": "builder", "namespace": "ci", "uid": SA_UID}}
    reply = token_request_response(request, "tok.en.x", NOW + 3600, service_account=sa, now=NOW)
    assert reply == {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": "builder",
            "namespace": "ci",
            "uid": SA_UID,
            "creationTimestamp": "2023-11-14T22:13:20Z",
        },
        "spec": {
            "audiences": list(API_AUDIENCES),
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"},
        },
        "status": {"token": "tok.en.x", "expirationTimestamp": "2023-11-14T23:13:20Z"},
    }
    assert request == original


def test_token_request_response_keeps_requested_values() -> None:
    request = {
        "metadata": {"name": "builder"},
        "spec": {"audiences": ["vault"], "expirationSeconds": 7200},
    }
    reply = token_request_response(request, "t", NOW + 7200, api_audiences=["ignored"], now=NOW)
    assert reply["metadata"] == {"name": "builder", "creationTimestamp": "2023-11-14T22:13:20Z"}
    assert reply["spec"] == {"audiences": ["vault"], "expirationSeconds": 7200}
    assert reply["status"]["expirationTimestamp"] == "2023-11-15T00:13:20Z"


def test_issue_verify_and_respond_end_to_end(signer: TokenSigner) -> None:
    body: dict[str, Any] = {"spec": {"expirationSeconds": 1200}}
    assert validate_token_request(body) == []
    seconds = body["spec"]["expirationSeconds"]
    token, exp = signer.issue(
        namespace="ci",
        name="builder",
        uid=SA_UID,
        audiences=list(API_AUDIENCES),
        expiration_seconds=seconds,
        now=NOW,
    )
    reply = token_request_response(body, token, exp, now=NOW)
    claims = signer.verify(reply["status"]["token"], audiences=["edgek"], now=NOW + 1199)
    assert claims is not None and claims.name == "builder"
    assert reply["status"]["expirationTimestamp"] == "2023-11-14T22:33:20Z"


# --- bootstrap tokens ----------------------------------------------------------------------

# The example from the Kubernetes bootstrap-token documentation, as kubeadm stores it.
DOC_TOKEN = "07401b.f395accd246ae52d"
WHEN = datetime(2017, 3, 10, 3, 22, 11, tzinfo=UTC)


def enc(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def doc_secret(**changes: str | None) -> dict[str, Any]:
    data: dict[str, str | None] = {
        "description": "The default bootstrap token generated by 'kubeadm init'.",
        "token-id": "07401b",
        "token-secret": "f395accd246ae52d",
        "expiration": "2017-03-10T03:22:11Z",
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:worker,system:bootstrappers:ingress",
    }
    data.update(changes)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bootstrap-token-07401b", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": {k: enc(v) for k, v in data.items() if v is not None},
    }


BEFORE = WHEN - timedelta(seconds=1)


def test_documented_bootstrap_secret_authenticates() -> None:
    user = bootstrap_tokens.authenticate(DOC_TOKEN, doc_secret(), BEFORE)
    assert user == UserInfo(
        "system:bootstrap:07401b",
        (
            "system:bootstrappers",
            "system:bootstrappers:ingress",
            "system:bootstrappers:worker",
            "system:authenticated",
        ),
    )


def test_new_token_format_and_randomness() -> None:
    tokens = {bootstrap_tokens.new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(bootstrap_tokens.TOKEN_RE.match(t) for t in tokens)


@pytest.mark.parametrize(
    "token",
    [
        "07401b.f395accd246ae52d\n",
        "07401B.f395accd246ae52d",
        "07401b.f395accd246ae52",
        "07401bf395accd246ae52d",
        " 07401b.f395accd246ae52d",
    ],
)
def test_token_regex_is_anchored(token: str) -> None:
    assert bootstrap_tokens.TOKEN_RE.match(token) is None


def test_secret_for_matches_kubeadm_layout() -> None:
    secret = bootstrap_tokens.secret_for(
        DOC_TOKEN, ttl_seconds=86400, description="join pi-3", now=WHEN
    )
    data = {k: base64.b64decode(v).decode() for k, v in secret.pop("data").items()}
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bootstrap-token-07401b", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
    }
    assert data == {
        "token-id": "07401b",
        "token-secret": "f395accd246ae52d",
        "description": "join pi-3",
        "expiration": "2017-03-11T03:22:11Z",
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:edgek:default-node-token",
    }


@pytest.mark.parametrize("ttl", [None, 0])
def test_secret_for_without_ttl_never_expires(ttl: int | None) -> None:
    secret = bootstrap_tokens.secret_for(
        DOC_TOKEN, ttl_seconds=ttl, description="", now=WHEN, groups=[]
    )
    assert set(secret["data"]) == {
        "token-id",
        "token-secret",
        "usage-bootstrap-authentication",
        "usage-bootstrap-signing",
    }
    far_future = WHEN + timedelta(days=10_000)
    assert not bootstrap_tokens.is_expired(secret, far_future)
    user = bootstrap_tokens.authenticate(DOC_TOKEN, secret, far_future)
    assert user is not None
    assert user.groups == ("system:bootstrappers", "system:authenticated")


@pytest.mark.parametrize(
    ("token", "kwargs"),
    [
        ("07401b.F395ACCD246AE52D", {}),
        (DOC_TOKEN, {"ttl_seconds": -5}),
        (DOC_TOKEN, {"groups": ["system:masters"]}),
        (DOC_TOKEN, {"groups": ["system:bootstrappers:"]}),
        (DOC_TOKEN, {"groups": ["system:bootstrappers:Upper"]}),
    ],
)
def test_secret_for_rejects_bad_input(token: str, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"ttl_seconds": 60, "description": "", "now": WHEN}
    args.update(kwargs)
    with pytest.raises(ValueError):
        bootstrap_tokens.secret_for(token, **args)


def test_secret_for_output_authenticates_until_expiry() -> None:
    token = bootstrap_tokens.new_token()
    secret = bootstrap_tokens.secret_for(token, ttl_seconds=600, description="x", now=WHEN)
    token_id = token.split(".")[0]
    user = bootstrap_tokens.authenticate(token, secret, WHEN + timedelta(seconds=599))
    assert user is not None and user.name == f"system:bootstrap:{token_id}"
    assert "system:bootstrappers:edgek:default-node-token" in user.groups
    assert bootstrap_tokens.authenticate(token, secret, WHEN + timedelta(seconds=600)) is None


def with_meta(**meta: Any) -> dict[str, Any]:
    secret = doc_secret()
    secret["metadata"].update(meta)
    return secret


REJECTED_SECRETS: dict[str, tuple[str, dict[str, Any] | None, datetime]] = {
    "no secret": (DOC_TOKEN, None, BEFORE),
    "wrong token secret": ("07401b.f395accd246ae52e", doc_secret(), BEFORE),
    "token-id mismatch": (DOC_TOKEN, doc_secret(**{"token-id": "07401c"}), BEFORE),
    "token-secret missing": (DOC_TOKEN, doc_secret(**{"token-secret": None}), BEFORE),
    "expired at the instant": (DOC_TOKEN, doc_secret(), WHEN),
    "expired later": (DOC_TOKEN, doc_secret(), WHEN + timedelta(days=1)),
    "unparsable expiration": (DOC_TOKEN, doc_secret(expiration="tomorrow"), BEFORE),
    "usage missing": (
        DOC_TOKEN,
        doc_secret(**{"usage-bootstrap-authentication": None}),
        BEFORE,
    ),
    "usage not true": (
        DOC_TOKEN,
        doc_secret(**{"usage-bootstrap-authentication": "yes"}),
        BEFORE,
    ),
    "group outside bootstrappers": (
        DOC_TOKEN,
        doc_secret(**{"auth-extra-groups": "system:bootstrappers:ok,system:masters"}),
        BEFORE,
    ),
    "empty group in list": (
        DOC_TOKEN,
        doc_secret(**{"auth-extra-groups": "system:bootstrappers:ok,"}),
        BEFORE,
    ),
    "wrong type": (DOC_TOKEN, {**doc_secret(), "type": "Opaque"}, BEFORE),
    "no data": (DOC_TOKEN, {**doc_secret(), "data": None}, BEFORE),
    "being deleted": (DOC_TOKEN, with_meta(deletionTimestamp="2017-03-01T00:00:00Z"), BEFORE),
    "other secret name": (DOC_TOKEN, with_meta(name="bootstrap-token-aaaaaa"), BEFORE),
    "other namespace": (DOC_TOKEN, with_meta(namespace="default"), BEFORE),
    "data not base64": (
        DOC_TOKEN,
        {**doc_secret(), "data": {**doc_secret()["data"], "token-secret": "%%%"}},
        BEFORE,
    ),
    "malformed token": ("07401b.f395accd246ae52d\n", doc_secret(), BEFORE),
    "uppercase token": ("07401B.F395ACCD246AE52D", doc_secret(), BEFORE),
}


@pytest.mark.parametrize("name", list(REJECTED_SECRETS))
def test_bootstrap_authentication_rejections(name: str) -> None:
    token, secret, now = REJECTED_SECRETS[name]
    assert bootstrap_tokens.authenticate(token, secret, now) is None


def test_bootstrap_secret_with_string_data_authenticates() -> None:
    secret = doc_secret()
    del secret["data"]["token-secret"]
    secret["stringData"] = {"token-secret": "f395accd246ae52d"}
    assert bootstrap_tokens.authenticate(DOC_TOKEN, secret, BEFORE) is not None


def test_is_expired() -> None:
    assert not bootstrap_tokens.is_expired(doc_secret(), BEFORE)
    assert bootstrap_tokens.is_expired(doc_secret(), WHEN)
    assert bootstrap_tokens.is_expired(doc_secret(expiration="garbage"), BEFORE)
    assert not bootstrap_tokens.is_expired(doc_secret(expiration=None), WHEN)
    offset = doc_secret(expiration="2017-03-10T05:22:11+02:00")  # the same instant as WHEN
    assert not bootstrap_tokens.is_expired(offset, BEFORE)
    assert bootstrap_tokens.is_expired(offset, WHEN)


@pytest.mark.parametrize(
    ("now", "ttl"),
    [
        (WHEN - timedelta(seconds=30), "30s"),
        (WHEN - timedelta(minutes=59, seconds=59), "59m"),
        (WHEN - timedelta(hours=23, minutes=59), "23h"),
        (WHEN - timedelta(days=2, hours=5), "2d"),
        (WHEN - timedelta(days=800), "2y"),
        (WHEN + timedelta(seconds=1), "0s"),
        (WHEN + timedelta(seconds=5), "<invalid>"),
    ],
)
def test_describe_ttl(now: datetime, ttl: str) -> None:
    row = bootstrap_tokens.describe(doc_secret(), now=now)
    assert row["ttl"] == ttl
    assert row["expired"] == (now >= WHEN)


def test_describe_row() -> None:
    row = bootstrap_tokens.describe(doc_secret(), now=BEFORE)
    assert row == {
        "token": DOC_TOKEN,
        "id": "07401b",
        "ttl": "1s",
        "expires": "2017-03-10T03:22:11Z",
        "usages": ["authentication", "signing"],
        "description": "The default bootstrap token generated by 'kubeadm init'.",
        "extra_groups": ["system:bootstrappers:worker", "system:bootstrappers:ingress"],
        "expired": False,
    }
    bare = doc_secret(
        expiration=None,
        description=None,
        **{"auth-extra-groups": None, "usage-bootstrap-signing": "false"},
    )
    row = bootstrap_tokens.describe(bare, now=BEFORE)
    assert (row["ttl"], row["expires"], row["description"]) == ("<forever>", "<never>", "<none>")
    assert (row["usages"], row["extra_groups"], row["expired"]) == (["authentication"], [], False)
    broken = bootstrap_tokens.describe(doc_secret(expiration="soon"), now=BEFORE)
    assert (broken["ttl"], broken["expires"], broken["expired"]) == ("<invalid>", "soon", True)


# --- k3s join tokens -----------------------------------------------------------------------

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_ca_hash_is_sha256_hex_of_bundle_bytes() -> None:
    assert jointoken.ca_hash(b"abc") == ABC_SHA256


def test_format_and_parse_round_trip() -> None:
    text = jointoken.format_token(b"abc", "s3cret")
    assert text == f"K10{ABC_SHA256}::server:s3cret"
    assert jointoken.parse(text) == jointoken.JoinToken(ABC_SHA256, "server", "s3cret")
    node = jointoken.format_token(b"abc", "pw:with:colons", username="node")
    assert jointoken.parse(node) == jointoken.JoinToken(ABC_SHA256, "node", "pw:with:colons")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"K10{ABC_SHA256}::server:abc\n", (ABC_SHA256, "server", "abc")),
        (f"K10{ABC_SHA256.upper()}::server:abc", (ABC_SHA256, "server", "abc")),
        (f"K10{ABC_SHA256}::node:p::w", (ABC_SHA256, "node", "p::w")),
        (f"K10{ABC_SHA256}:::abc", (ABC_SHA256, "", "abc")),
        ("K10::server:abc", ("", "server", "abc")),
        ("K10server:abc", ("", "server", "abc")),
        (f"K10{ABC_SHA256}::{DOC_TOKEN}", (ABC_SHA256, "", DOC_TOKEN)),
        (DOC_TOKEN, ("", "", DOC_TOKEN)),
        ("5e3c1f6b9a0d4e27\n", ("", "", "5e3c1f6b9a0d4e27")),
        ("user:pass", ("", "", "user:pass")),
    ],
)
def test_parse_k3s_token_forms(text: str, expected: tuple[str, str, str]) -> None:
    assert jointoken.parse(text) == jointoken.JoinToken(*expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  \n",
        "K10abc::server:hunter2",
        f"K10{'z' * 64}::server:hunter2",
        f"K10{ABC_SHA256}::server:",
        f"K10{ABC_SHA256}::hunter2",
        f"K10{ABC_SHA256}::",
        "K10",
    ],
)
def test_parse_errors_are_one_line_and_do_not_echo_secrets(text: str) -> None:
    with pytest.raises(ValueError) as info:
        jointoken.parse(text)
    message = str(info.value)
    assert message and "\n" not in message
    assert "hunter2" not in message


def test_verify_ca() -> None:
    full = jointoken.parse(jointoken.format_token(b"abc", "pw"))
    assert jointoken.verify_ca(full, b"abc")
    assert not jointoken.verify_ca(full, b"abd")
    assert jointoken.verify_ca(jointoken.parse("pw"), b"anything")


@pytest.mark.parametrize(
    ("password", "username"), [("", "server"), ("a b", "server"), ("pw\n", "server"), ("pw", "a:b")]
)
def test_format_token_rejects_unparsable_credentials(password: str, username: str) -> None:
    with pytest.raises(ValueError):
        jointoken.format_token(b"abc", password, username=username)


def test_password_stays_out_of_repr() -> None:
    token = jointoken.parse(f"K10{ABC_SHA256}::server:hunter2")
    assert "hunter2" not in repr(token)


def test_random_secret() -> None:
    secrets = {jointoken.random_secret() for _ in range(10)}
    assert len(secrets) == 10
    assert all(len(s) == 32 and int(s, 16) >= 0 for s in secrets)


def test_token_files_pin_the_real_server_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "tls", dns_names=[], ip_addresses=[])
    bundle = pki.ca_bundle_pem()
    secret = jointoken.random_secret()
    server_dir = tmp_path / "server"
    jointoken.write_token_files(server_dir, bundle, secret)
    contents = []
    for name in ("token", "node-token"):
        path = server_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        contents.append(path.read_text())
    assert contents[0] == contents[1]
    assert contents[0] == f"K10{hashlib.sha256(bundle).hexdigest()}::server:{secret}\n"
    token = jointoken.parse(contents[0])
    assert (token.username, token.password) == ("server", secret)
    assert jointoken.verify_ca(token, bundle)
    other = ensure_pki(tmp_path / "other-tls", dns_names=[], ip_addresses=[])
    assert not jointoken.verify_ca(token, other.ca_bundle_pem())
