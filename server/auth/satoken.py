"""Service-account tokens, the parts that need no ``cryptography``: claims and identities,
TokenRequest validation and replies, the OIDC discovery document, and
:class:`ServiceAccountKey`, which loads the ES256 :class:`~server.auth.satoken_crypto.TokenSigner`
(and with it ``cryptography``, about 8 MB of resident memory) only when a token is first issued,
verified or its key published.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgek.forked import call_in_child
from edgek.timefmt import format_time
from edgek.validation import Errors
from server.pki.checked import CheckRecord
from server.storage.requestinfo import UserInfo

if TYPE_CHECKING:
    from server.auth.satoken_crypto import TokenSigner

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
#: What the API server accepts tokens for (k3s: ``--api-audiences=<issuer>,k3s``); also the
#: audiences a TokenRequest without ``spec.audiences`` gets.
API_AUDIENCES: tuple[str, ...] = (DEFAULT_ISSUER, "edgek")
OPENID_CONFIG_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
ALGORITHM = "ES256"
#: go-jose's ``DefaultLeeway``: clock skew tolerated on exp, nbf and iat.
LEEWAY_SECONDS = 60
DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 10 * 60
MAX_EXPIRATION_SECONDS = 1 << 32

USERNAME_PREFIX = "system:serviceaccount:"
ALL_SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
AUTHENTICATED_GROUP = "system:authenticated"
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
POD_UID_KEY = "authentication.kubernetes.io/pod-uid"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
NODE_UID_KEY = "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID_KEY = "authentication.kubernetes.io/credential-id"


@dataclass(frozen=True)
class ServiceAccountClaims:
    """What a verified token asserts. ``bound_kind`` is ``"Pod"``, ``"Secret"``, ``"Node"``
    or empty; ``node_*`` is set for node-bound tokens and for pod-bound tokens that carry the
    pod's node; ``token_id`` is the ``jti``."""

    namespace: str
    name: str
    uid: str
    expires: int
    bound_kind: str = ""
    bound_name: str = ""
    bound_uid: str = ""
    node_name: str = ""
    node_uid: str = ""
    token_id: str = ""

    def user(self) -> UserInfo:
        """The identity (``ServiceAccountInfo.UserInfo`` upstream, plus
        ``system:authenticated``)."""
        extra: dict[str, tuple[str, ...]] = {}
        if self.bound_kind == "Pod" and self.bound_name and self.bound_uid:
            extra[POD_NAME_KEY] = (self.bound_name,)
            extra[POD_UID_KEY] = (self.bound_uid,)
        if self.token_id:
            extra[CREDENTIAL_ID_KEY] = (f"JTI={self.token_id}",)
        if self.node_name:
            extra[NODE_NAME_KEY] = (self.node_name,)
            if self.node_uid:
                extra[NODE_UID_KEY] = (self.node_uid,)
        return UserInfo(
            name=f"{USERNAME_PREFIX}{self.namespace}:{self.name}",
            groups=(
                ALL_SERVICE_ACCOUNTS_GROUP,
                f"system:serviceaccounts:{self.namespace}",
                AUTHENTICATED_GROUP,
            ),
            uid=self.uid,
            extra=extra,
        )


def _expiration_seconds(spec: dict[str, Any]) -> Any:
    """``spec.expirationSeconds`` with the v1 default (3600) when unset."""
    value = spec.get("expirationSeconds")
    return DEFAULT_EXPIRATION_SECONDS if value is None else value


def validate_token_request(body: dict[str, Any]) -> list[dict[str, str]]:
    """Static validation of a (decoded) TokenRequest after defaulting, as
    ``ValidateTokenRequest`` upstream: the causes of a 422 (name ``""``, kind
    ``TokenRequest.authentication.k8s.io``). JSON type errors are the decoder's business
    (see :func:`edgek.validation.validate_types`)."""
    e = Errors()
    spec = body.get("spec")
    seconds = _expiration_seconds(spec if isinstance(spec, dict) else {})
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        if seconds < MIN_EXPIRATION_SECONDS:
            e.invalid(
                "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"
            )
        if seconds > MAX_EXPIRATION_SECONDS:
            e.invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration larger than 2^32 seconds",
            )
    return e.causes


def token_request_response(
    request_body: dict[str, Any],
    token: str,
    exp: int,
    *,
    service_account: dict[str, Any] | None = None,
    api_audiences: Sequence[str] = API_AUDIENCES,
    now: int | None = None,
) -> dict[str, Any]:
    """The TokenRequest answered by ``POST serviceaccounts/{name}/token``: the request with
    its spec defaulted (``audiences`` → ``api_audiences``, ``expirationSeconds`` → 3600),
    metadata name/namespace/uid filled from ``service_account`` when the request left them
    empty, ``creationTimestamp`` = ``now`` (default: the current time), and status
    ``{token, expirationTimestamp}`` with ``exp`` as RFC3339."""
    spec_in = request_body.get("spec")
    spec = copy.deepcopy(spec_in) if isinstance(spec_in, dict) else {}
    if not spec.get("audiences"):
        spec["audiences"] = list(api_audiences)
    spec["expirationSeconds"] = _expiration_seconds(spec)
    meta_in = request_body.get("metadata")
    metadata = copy.deepcopy(meta_in) if isinstance(meta_in, dict) else {}
    sa_meta = (service_account or {}).get("metadata") or {}
    for key in ("name", "namespace", "uid"):
        if not metadata.get(key) and sa_meta.get(key):
            metadata[key] = sa_meta[key]
    created = time.time() if now is None else now
    metadata["creationTimestamp"] = format_time(datetime.fromtimestamp(created, UTC))
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": format_time(datetime.fromtimestamp(exp, UTC)),
        },
    }


def openid_configuration(issuer: str, issuer_url: str) -> dict[str, Any]:
    """The OIDC discovery document. ``issuer_url`` is the https base URL under which the
    JWKS is served (upstream defaults ``jwks_uri`` to the API server's external address plus
    :data:`JWKS_PATH`); ``issuer`` is the token issuer."""
    return {
        "issuer": issuer,
        "jwks_uri": issuer_url.rstrip("/") + JWKS_PATH,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
    }


class ServiceAccountKey:
    """The service-account signing key at ``key_path`` and its signer, loaded on first use."""

    #: Name of the key check in the directory's :class:`~server.pki.checked.CheckRecord`.
    CHECK = "service-account-key"

    def __init__(self, key_path: Path, *, issuer: str = DEFAULT_ISSUER) -> None:
        self.key_path = key_path
        self.issuer = issuer
        self._signer: TokenSigner | None = None

    def check(self) -> None:
        """Start-up check: create the key when the file is missing, else make sure it is a
        usable EC P-256 key (ValueError otherwise, as :meth:`TokenSigner.load_or_create`).
        Skipped when this very file passed it before; run in a forked child otherwise, so
        ``cryptography`` is not loaded here either way."""
        record = CheckRecord(self.key_path.parent)
        if record.get(self.CHECK, [self.key_path]) is None:
            # In a child process: cryptography stays out of the server until a token is signed.
            call_in_child(self._create_or_verify)
            record.put(self.CHECK, [self.key_path], {})

    @property
    def signer(self) -> TokenSigner:
        """The signer for the key file (loaded, or created, now if not yet)."""
        if self._signer is None:
            self._signer = self._load()
        return self._signer

    def _create_or_verify(self) -> None:
        self._load()

    def _load(self) -> TokenSigner:
        from server.auth.satoken_crypto import TokenSigner  # loads cryptography

        return TokenSigner.load_or_create(self.key_path, issuer=self.issuer)

    def openid_configuration(self, issuer_url: str) -> dict[str, Any]:
        """The OIDC discovery document (needs no key)."""
        return openid_configuration(self.issuer, issuer_url)

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set served at :data:`JWKS_PATH`."""
        return self.signer.jwks()
