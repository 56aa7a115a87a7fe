"""Bootstrap tokens (kubeadm-style, ``k8s.io/cluster-bootstrap``).

A token ``<id>.<secret>`` (6 + 16 characters of ``[a-z0-9]``) lives in the Secret
``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token``. Presented as
a bearer token it authenticates as ``system:bootstrap:<id>`` in ``system:bootstrappers``
plus the secret's ``auth-extra-groups`` -- if the secret matches, has not expired and is
marked ``usage-bootstrap-authentication: "true"``. Anything else authenticates nobody.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from edgek.timefmt import format_time, parse_time
from server.storage.requestinfo import UserInfo

TOKEN_RE = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")
GROUP_RE = re.compile(r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\Z")
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
USER_PREFIX = "system:bootstrap:"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
DEFAULT_GROUP = "system:bootstrappers:edgek:default-node-token"
AUTHENTICATED_GROUP = "system:authenticated"
USAGE_PREFIX = "usage-bootstrap-"
USAGE_AUTHENTICATION = "usage-bootstrap-authentication"
USAGE_SIGNING = "usage-bootstrap-signing"

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_token() -> str:
    """A fresh random token ``<6 chars>.<16 chars>``."""
    return f"{_random(6)}.{_random(16)}"


def _check_group(group: str) -> None:
    if not GROUP_RE.match(group):
        raise ValueError(f'bootstrap group "{group}" is invalid (must match {GROUP_RE.pattern})')


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def secret_for(
    token: str,
    *,
    ttl_seconds: int | None,
    description: str,
    now: datetime,
    groups: Sequence[str] = (DEFAULT_GROUP,),
) -> dict[str, Any]:
    """The Secret that makes ``token`` valid, as kubeadm writes it: both usages, the
    expiration ``now + ttl_seconds`` (none when ``ttl_seconds`` is None or 0), the
    description and extra groups when given. ValueError for a malformed token, a negative
    TTL or a group outside ``system:bootstrappers:``."""
    match = TOKEN_RE.match(token)
    if match is None:
        raise ValueError(f"token is not of the form {TOKEN_RE.pattern}")
    if ttl_seconds is not None and ttl_seconds < 0:
        raise ValueError("ttl_seconds must not be negative")
    for group in groups:
        _check_group(group)
    token_id, token_secret = match.groups()
    data = {"token-id": token_id, "token-secret": token_secret}
    if description:
        data["description"] = description
    if ttl_seconds:
        data["expiration"] = format_time(now + timedelta(seconds=ttl_seconds))
    data[USAGE_AUTHENTICATION] = "true"
    data[USAGE_SIGNING] = "true"
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_PREFIX + token_id, "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": {key: _b64(value) for key, value in data.items()},
    }


def _values(secret: dict[str, Any]) -> dict[str, str]:
    """The secret's data as text: ``data`` (base64) overlaid with any ``stringData``.
    Values that are not valid base64 or UTF-8 read as empty."""
    out: dict[str, str] = {}
    data = secret.get("data")
    for key, value in (data if isinstance(data, dict) else {}).items():
        try:
            out[key] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            out[key] = ""
    string_data = secret.get("stringData")
    for key, value in (string_data if isinstance(string_data, dict) else {}).items():
        out[key] = str(value)
    return out


def _expiration(values: dict[str, str]) -> datetime | None:
    """The parsed ``expiration``; None when absent. ValueError when unparsable."""
    text = values.get("expiration", "")
    return parse_time(text) if text else None


def is_expired(secret: dict[str, Any], now: datetime) -> bool:
    """True once ``now`` has reached the expiration; an unparsable expiration counts as
    expired, a missing one never expires (``GetExpiration`` upstream)."""
    try:
        expires = _expiration(_values(secret))
    except ValueError:
        return True
    return expires is not None and expires <= now


def _extra_groups(values: dict[str, str]) -> list[str] | None:
    """``auth-extra-groups`` split on commas; None if any group is invalid."""
    text = values.get("auth-extra-groups", "")
    if not text:
        return []
    groups = text.split(",")
    return groups if all(GROUP_RE.match(g) for g in groups) else None


def authenticate(token: str, secret: dict[str, Any] | None, now: datetime) -> UserInfo | None:
    """The user ``token`` authenticates as given its Secret (looked up by the caller as
    ``kube-system/bootstrap-token-<id>``), or None when anything does not match."""
    match = TOKEN_RE.match(token) if isinstance(token, str) else None
    if match is None or not isinstance(secret, dict):
        return None
    token_id, token_secret = match.groups()
    meta = secret.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("deletionTimestamp") or meta.get("name") != SECRET_PREFIX + token_id:
        return None
    if meta.get("namespace", NAMESPACE) != NAMESPACE or secret.get("type") != SECRET_TYPE:
        return None
    values = _values(secret)
    stored = values.get("token-secret", "").encode("utf-8")
    if not hmac.compare_digest(stored, token_secret.encode("ascii")):
        return None
    if values.get("token-id") != token_id or is_expired(secret, now):
        return None
    if values.get(USAGE_AUTHENTICATION) != "true":
        return None
    extra = _extra_groups(values)
    if extra is None:
        return None
    groups = sorted({BOOTSTRAPPERS_GROUP, *extra})
    return UserInfo(USER_PREFIX + token_id, (*groups, AUTHENTICATED_GROUP))


def _short_duration(delta: timedelta) -> str:
    """apimachinery's ``ShortHumanDuration`` (what ``kubeadm token list`` shows as TTL)."""
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    hours = seconds // 3600
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


def describe(secret: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """One row of ``edgek token list``, as ``kubeadm token list`` shows it: ``token``
    (``id.secret``), ``id``, ``ttl`` (``<forever>`` without expiration, ``<invalid>`` once
    expired), ``expires`` (RFC3339 or ``<never>``), ``usages`` and ``extra_groups`` (lists),
    ``description`` (``<none>`` when empty) and ``expired``."""
    values = _values(secret)
    current = now if now is not None else datetime.now(UTC)
    token_id, token_secret = values.get("token-id", ""), values.get("token-secret", "")
    try:
        expires = _expiration(values)
        ttl = "<forever>" if expires is None else _short_duration(expires - current)
        expires_text = "<never>" if expires is None else format_time(expires)
    except ValueError:
        ttl, expires_text = "<invalid>", values["expiration"]
    usages = sorted(
        key.removeprefix(USAGE_PREFIX)
        for key, value in values.items()
        if key.startswith(USAGE_PREFIX) and value == "true"
    )
    groups = values.get("auth-extra-groups", "")
    return {
        "token": f"{token_id}.{token_secret}",
        "id": token_id,
        "ttl": ttl,
        "expires": expires_text,
        "usages": usages,
        "description": values.get("description") or "<none>",
        "extra_groups": groups.split(",") if groups else [],
        "expired": is_expired(secret, current),
    }
