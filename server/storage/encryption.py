"""Encryption at rest of stored Secrets (``--secrets-encryption``, as in k3s).

The keys live in ``<data-dir>/server/cred/encryption-config.json``, an upstream-shaped
``EncryptionConfiguration`` with one ``aesgcm`` provider (AES-256-GCM) and one ``identity``
provider. As in k3s, the provider order says whether encryption is on: ``aesgcm`` first
encrypts new writes with its first key, ``identity`` first writes plaintext while the keys
stay in the file so existing ciphertext remains readable. Every key can decrypt.

A stored value is ``k8s:enc:aesgcm:v1:<keyname>:`` + 12-byte random nonce + ciphertext and
tag. The associated data is that prefix followed by the storage key, so a value copied under
another key (or relabelled with another key name) fails to decrypt. Values without a
``k8s:enc:`` prefix are plaintext and are passed through.

The rotation stage (``start``, ``rotate``, ``reencrypt_finished``) is kept next to the config
in ``encryption-hash`` as ``<stage>-<sha256 of the config file>``, like k3s does.

AES-GCM comes from ``cryptography``, imported when a value is first sealed or opened: a server
without encryption (and without encrypted values) never loads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgek.kubeconfig import atomic_write

CONFIG_FILE = "encryption-config.json"
HASH_FILE = "encryption-hash"

STAGE_START = "start"
STAGE_ROTATE = "rotate"
STAGE_REENCRYPT_FINISHED = "reencrypt_finished"
_STAGES = (STAGE_START, STAGE_ROTATE, STAGE_REENCRYPT_FINISHED)

_ENCRYPTED_PREFIX = b"k8s:enc:"
_AESGCM_PREFIX = b"k8s:enc:aesgcm:v1:"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16


class EncryptionError(Exception):
    """A value or the encryption config cannot be used (bad key, tampering, bad file)."""


@dataclass(frozen=True)
class _Key:
    name: str
    secret: bytes

    @property
    def prefix(self) -> bytes:
        return _AESGCM_PREFIX + self.name.encode() + b":"

    def seal(self, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
        """AES-GCM ciphertext and tag of ``plaintext``."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # loads cryptography

        return AESGCM(self.secret).encrypt(nonce, plaintext, associated)

    def open(self, nonce: bytes, sealed: bytes, associated: bytes) -> bytes | None:
        """The plaintext of AES-GCM ``sealed``; None when it fails authentication."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self.secret).decrypt(nonce, sealed, associated)
        except InvalidTag:
            return None


def _new_key(taken: set[str]) -> _Key:
    """A fresh random key named after the current UTC time (unique among ``taken``)."""
    base = "aesgcmkey-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return _Key(name, secrets.token_bytes(_KEY_BYTES))


def _parse_keys(raw: Any) -> list[_Key]:
    if not isinstance(raw, list) or not raw:
        raise EncryptionError("aesgcm provider must list at least one key")
    keys: list[_Key] = []
    for entry in raw:
        name = entry.get("name") if isinstance(entry, dict) else None
        secret = entry.get("secret") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or ":" in name:
            raise EncryptionError(f"invalid key name {name!r}: must be non-empty without ':'")
        if any(k.name == name for k in keys):
            raise EncryptionError(f"duplicate key name {name!r}")
        try:
            material = base64.b64decode(secret if isinstance(secret, str) else "", validate=True)
        except binascii.Error as e:
            raise EncryptionError(f"key {name!r}: secret is not valid base64") from e
        if len(material) != _KEY_BYTES:
            raise EncryptionError(f"key {name!r}: secret must be {_KEY_BYTES} bytes")
        keys.append(_Key(name, material))
    return keys


def _parse_config(data: bytes) -> tuple[list[_Key], bool]:
    """The keys of an encryption config file and whether ``aesgcm`` comes first."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise EncryptionError(f"encryption config is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != "EncryptionConfiguration":
        raise EncryptionError("encryption config is not an EncryptionConfiguration")
    resources = doc.get("resources")
    entry = resources[0] if isinstance(resources, list) and len(resources) == 1 else None
    if not isinstance(entry, dict) or entry.get("resources") != ["secrets"]:
        raise EncryptionError("encryption config must have exactly one entry for secrets")
    providers = entry.get("providers")
    if not isinstance(providers, list) or any(not isinstance(p, dict) for p in providers):
        raise EncryptionError("encryption config providers must be a list of objects")
    names = [next(iter(p), "") if len(p) == 1 else "" for p in providers]
    if sorted(names) != ["aesgcm", "identity"]:
        raise EncryptionError(
            "encryption config must have exactly an aesgcm and an identity provider"
        )
    aesgcm = providers[names.index("aesgcm")]["aesgcm"]
    keys = _parse_keys(aesgcm.get("keys") if isinstance(aesgcm, dict) else None)
    return keys, names[0] == "aesgcm"


def _render_config(keys: list[_Key], enabled: bool) -> bytes:
    aesgcm = {
        "aesgcm": {
            "keys": [
                {"name": k.name, "secret": base64.b64encode(k.secret).decode("ascii")} for k in keys
            ]
        }
    }
    identity: dict[str, Any] = {"identity": {}}
    doc = {
        "kind": "EncryptionConfiguration",
        "apiVersion": "apiserver.config.k8s.io/v1",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [aesgcm, identity] if enabled else [identity, aesgcm],
            }
        ],
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


class SecretsEncryption:
    """The value transformer for Secrets plus management of its key file."""

    def __init__(
        self,
        cred_dir: Path,
        keys: list[_Key],
        *,
        enabled: bool,
        stage: str | None,
        digest: str | None,
    ) -> None:
        self._cred_dir = cred_dir
        self._keys = keys
        self._enabled = enabled
        self._stage = stage
        self._digest = digest  # sha256 of the config file as last read or written

    @property
    def config_path(self) -> Path:
        return self._cred_dir / CONFIG_FILE

    @classmethod
    def load(cls, cred_dir: Path) -> SecretsEncryption:
        """Read the existing config as it is (enabled per provider order); no file → off."""
        path = cred_dir / CONFIG_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(cred_dir, [], enabled=False, stage=None, digest=None)
        keys, enabled = _parse_config(data)
        return cls(
            cred_dir,
            keys,
            enabled=enabled,
            stage=cls._read_stage(cred_dir),
            digest=hashlib.sha256(data).hexdigest(),
        )

    @classmethod
    def load_or_create(cls, cred_dir: Path, *, enabled: bool) -> SecretsEncryption:
        """Load the config, creating a first key when enabling, and record ``enabled`` in it.

        With ``enabled=False`` and no config nothing is written and values stay plaintext;
        with a config, its keys are kept (identity is moved first) so ciphertext stays
        readable.
        """
        current = cls.load(cred_dir)
        if enabled and not current._keys:
            current._keys = [_new_key(set())]
        elif current._enabled == enabled:
            return current
        current._enabled = enabled
        current._stage = STAGE_START
        current._save()
        return current

    @staticmethod
    def _read_stage(cred_dir: Path) -> str:
        try:
            recorded = (cred_dir / HASH_FILE).read_text().strip()
        except FileNotFoundError:
            return STAGE_START
        stage = recorded.rsplit("-", 1)[0]
        return stage if stage in _STAGES else STAGE_START

    def _save(self) -> None:
        os.makedirs(self._cred_dir, mode=0o700, exist_ok=True)
        os.chmod(self._cred_dir, 0o700)
        data = _render_config(self._keys, self._enabled)
        atomic_write(self.config_path, data)
        self._digest = hashlib.sha256(data).hexdigest()
        atomic_write(self._cred_dir / HASH_FILE, f"{self._stage}-{self._digest}".encode())

    # -- value transformation --------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    def encrypt(self, storage_key: str, plaintext: bytes) -> bytes:
        """The stored form of ``plaintext`` under ``storage_key`` (itself when disabled)."""
        if not self._enabled:
            return plaintext
        key = self._keys[0]
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = key.seal(nonce, plaintext, key.prefix + storage_key.encode())
        return key.prefix + nonce + sealed

    def decrypt(self, storage_key: str, stored: bytes) -> bytes:
        """The plaintext of a stored value; plaintext values are returned unchanged."""
        if not stored.startswith(_ENCRYPTED_PREFIX):
            return stored
        key = self._key_of(stored)
        body = stored[len(key.prefix) :]
        if len(body) < _NONCE_BYTES + _TAG_BYTES:
            raise EncryptionError(f"value of {storage_key} is too short to be aesgcm data")
        nonce, sealed = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
        plaintext = key.open(nonce, sealed, key.prefix + storage_key.encode())
        if plaintext is None:
            raise EncryptionError(
                f"value of {storage_key} failed authentication with key {key.name!r}"
            )
        return plaintext

    def _key_of(self, stored: bytes) -> _Key:
        """The key an encrypted value names in its prefix."""
        if not stored.startswith(_AESGCM_PREFIX):
            provider = stored[len(_ENCRYPTED_PREFIX) :].split(b":", 1)[0]
            raise EncryptionError(f"unsupported encryption provider {provider!r}")
        name, sep, _ = stored[len(_AESGCM_PREFIX) :].partition(b":")
        if not sep:
            raise EncryptionError("aesgcm value has no key name")
        for key in self._keys:
            if key.name.encode() == name:
                return key
        raise EncryptionError(f"no encryption key named {name.decode(errors='replace')!r}")

    def needs_rewrite(self, stored: bytes) -> bool:
        """Whether writing the value again would store it differently (other key or mode)."""
        if not stored.startswith(_ENCRYPTED_PREFIX):
            return self._enabled
        return not (self._enabled and stored.startswith(self._keys[0].prefix))

    # -- key management ----------------------------------------------------------

    def rotate(self) -> str:
        """Add a new write key (older keys stay for reading), persist, return its name."""
        if not self._enabled:
            raise EncryptionError("secrets encryption is disabled; cannot rotate keys")
        key = _new_key({k.name for k in self._keys})
        self._keys = [key, *self._keys]
        self._stage = STAGE_ROTATE
        self._save()
        return key.name

    def prune(self, keep: str) -> None:
        """Drop every key but ``keep``; call once all Secrets were rewritten."""
        kept = [k for k in self._keys if k.name == keep]
        if not kept:
            raise EncryptionError(f"no encryption key named {keep!r}")
        if self._enabled and kept[0] is not self._keys[0]:
            raise EncryptionError(f"{keep!r} is not the current write key {self._keys[0].name!r}")
        self._keys = kept
        self._stage = STAGE_REENCRYPT_FINISHED
        self._save()

    def status(self) -> dict[str, Any]:
        """What ``edgek secrets-encrypt status`` reports."""
        return {
            "enabled": self._enabled,
            "current_key": self._keys[0].name if self._enabled else None,
            "keys": [k.name for k in self._keys],
            "stage": self._stage,
            "hash": self._digest,
        }
