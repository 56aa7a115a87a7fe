"""Authentication: client certificates, bootstrap and join tokens, service-account JWTs.

A request without credentials is ``system:anonymous`` (group ``system:unauthenticated``),
as upstream's anonymous authenticator makes it; anything presented that does not check out
authenticates nobody (the request then gets 401); authentication never raises on malformed
input.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from server.auth import bootstrap_tokens
from server.auth.satoken import LEEWAY_SECONDS, ServiceAccountClaims, ServiceAccountKey
from server.pki import peer_identity
from server.storage.requestinfo import UserInfo

AUTHENTICATED = "system:authenticated"
ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
#: Who a request without credentials is (authorised through RBAC like everyone else).
ANONYMOUS_USER = UserInfo(ANONYMOUS, (UNAUTHENTICATED,))
#: Identity of an agent presenting the cluster join secret (the password of K10 tokens).
JOIN_USER = UserInfo(
    "system:bootstrap:edgek-join",
    ("system:bootstrappers", "system:bootstrappers:edgek:default-node-token", AUTHENTICATED),
)

_CACHE_SECONDS = 10.0
_CACHE_SIZE = 4096

Lookup = Callable[[str, str], dict[str, Any] | None]


class Authenticator:
    """Turns a request's credentials into a :class:`UserInfo`, or None."""

    def __init__(
        self,
        *,
        join_secret: str,
        service_account_key: ServiceAccountKey,
        audiences: list[str],
        secrets: Lookup,
        service_accounts: Lookup,
        pods: Lookup,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.join_secret = join_secret
        self.service_account_key = service_account_key
        self.audiences = audiences
        self.secrets = secrets
        self.service_accounts = service_accounts
        self.pods = pods
        self.clock = clock
        self._verified_cache: dict[str, tuple[ServiceAccountClaims | None, float]] = {}

    def authenticate(self, request: web.Request) -> UserInfo | None:
        """The client certificate's or bearer token's user, :data:`ANONYMOUS_USER` without
        either (a non-bearer or empty ``Authorization`` counts as none, as upstream), or
        None for a token that does not check out."""
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        identity = peer_identity(ssl_object) if ssl_object is not None else None
        if identity is not None:
            user, groups = identity
            return UserInfo(user, (*groups, AUTHENTICATED))
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ANONYMOUS_USER
        return self.token_user(token.strip())

    def _verified(self, token: str) -> ServiceAccountClaims | None:
        """Signature-checked claims, cached for a short while (as upstream caches token
        authentication): the signature check dominates a request otherwise. Expiry and the
        service account's existence are still checked on every request."""
        now = self.clock()
        hit = self._verified_cache.get(token)
        if hit is not None and hit[1] > now:
            claims: ServiceAccountClaims | None = hit[0]
        else:
            signer = self.service_account_key.signer
            claims = signer.verify(token, audiences=self.audiences, now=int(now))
            if len(self._verified_cache) >= _CACHE_SIZE:
                self._verified_cache.clear()
            self._verified_cache[token] = (claims, now + _CACHE_SECONDS)
        if claims is not None and claims.expires + LEEWAY_SECONDS < now:
            return None
        return claims

    def token_user(self, token: str) -> UserInfo | None:
        """The identity a bearer token stands for (also used by TokenReview)."""
        match = bootstrap_tokens.TOKEN_RE.match(token)
        if match:
            secret = self.secrets("kube-system", f"bootstrap-token-{match.group(1)}")
            return bootstrap_tokens.authenticate(
                token, secret, datetime.fromtimestamp(self.clock(), UTC)
            )
        if self.join_secret and hmac.compare_digest(token.encode(), self.join_secret.encode()):
            return JOIN_USER
        claims = self._verified(token)
        if claims is None:
            return None
        sa = self.service_accounts(claims.namespace, claims.name)
        if sa is None or sa["metadata"].get("uid") != claims.uid:
            return None
        if claims.bound_kind == "Pod":
            pod = self.pods(claims.namespace, claims.bound_name)
            if pod is None or pod["metadata"].get("uid") != claims.bound_uid:
                return None
            if pod["metadata"].get("deletionTimestamp"):
                return None
        elif claims.bound_kind == "Secret":
            secret = self.secrets(claims.namespace, claims.bound_name)
            if secret is None or secret["metadata"].get("uid") != claims.bound_uid:
                return None
        return claims.user()
