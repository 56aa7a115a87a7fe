"""k3s-format cluster join tokens (``pkg/clientaccess/token.go``).

The full ("secure") form is ``K10<ca-hash>::<username>:<password>``, where ``<ca-hash>``
is the SHA-256 hex digest of the CA bundle the server serves at ``/cacerts``: an agent
fetches that bundle without verification, checks it against the hash and from then on
trusts only that CA. The short form is the bare password, which carries no CA pin.
In place of ``<username>:<password>`` a token may carry a bootstrap token
``<id>.<secret>``; it is kept whole as the password (with an empty username), which is
also what gets presented as the bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from edgek.kubeconfig import atomic_write

PREFIX = "K10"
_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
_BOOTSTRAP_RE = re.compile(r"\A[a-z0-9]{6}\.[a-z0-9]{16}\Z")


@dataclass(frozen=True)
class JoinToken:
    """A parsed join token; ``ca_hash`` is empty for a short token. The password is kept
    out of ``repr`` so tokens do not leak into logs."""

    ca_hash: str
    username: str
    password: str = field(repr=False)


def parse(text: str) -> JoinToken:
    """Parse a join token (surrounding whitespace, e.g. a token file's newline, ignored).

    ValueError with a one-line message that never echoes the token when it is empty, its CA
    hash is not 64 hex digits, or the credentials are neither ``<user>:<password>`` with a
    non-empty password nor a bootstrap token."""
    token = text.strip()
    if not token:
        raise ValueError("token must not be empty")
    ca = ""
    creds = token
    if token.startswith(PREFIX):
        ca, sep, creds = token[len(PREFIX) :].partition("::")
        if not sep:
            ca, creds = "", ca
        if ca and not _HASH_RE.fullmatch(ca):
            raise ValueError("invalid token CA hash: want 64 hex digits after K10")
    elif not _BOOTSTRAP_RE.match(token):
        # A bare password: k3s reads it as "K10:::<password>", i.e. no username.
        return JoinToken("", "", token)
    if _BOOTSTRAP_RE.match(creds):
        return JoinToken(ca.lower(), "", creds)
    username, sep, password = creds.partition(":")
    if not sep or not password:
        raise ValueError("invalid token format: want K10<ca-hash>::<user>:<password>")
    return JoinToken(ca.lower(), username, password)


def ca_hash(ca_bundle_pem: bytes) -> str:
    """SHA-256 hex digest of the CA bundle bytes (k3s' hash for a single-certificate
    bundle, which is what the server serves)."""
    return hashlib.sha256(ca_bundle_pem).hexdigest()


def format_token(ca_bundle_pem: bytes, password: str, username: str = "server") -> str:
    """The full token ``K10<ca-hash>::<username>:<password>``. ValueError for an empty
    password, one containing whitespace, or a username containing ``:``."""
    if not password or any(c.isspace() for c in password):
        raise ValueError("join password must be non-empty and contain no whitespace")
    if ":" in username or any(c.isspace() for c in username):
        raise ValueError("join username must not contain ':' or whitespace")
    return f"{PREFIX}{ca_hash(ca_bundle_pem)}::{username}:{password}"


def verify_ca(token: JoinToken, ca_bundle_pem: bytes) -> bool:
    """Whether the CA bundle matches the token's pin (constant time). A short token pins
    nothing and verifies as True; the caller should warn that the CA is unverified."""
    if not token.ca_hash:
        return True
    return hmac.compare_digest(token.ca_hash, ca_hash(ca_bundle_pem))


def write_token_files(server_dir: Path, ca_bundle_pem: bytes, secret: str) -> None:
    """Write ``<server_dir>/token`` and ``<server_dir>/node-token`` (mode 0600), both
    holding the full server token plus a newline, as k3s does."""
    content = (format_token(ca_bundle_pem, secret) + "\n").encode("utf-8")
    for name in ("token", "node-token"):
        atomic_write(server_dir / name, content)


def random_secret() -> str:
    """A fresh join secret: 16 random bytes as 32 hex digits (k3s ``util.Random(16)``)."""
    return secrets.token_hex(16)
