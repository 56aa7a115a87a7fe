"""``edgek secrets-encrypt``: report the encryption state and rotate the Secret key.

Rotation (k3s ``rotate-keys``) adds a new write key, rewrites every stored Secret so it
is sealed with that key, compacts the datastore history (which still holds the old
ciphertext), then drops the older keys. A Secret written concurrently is
simply re-read and rewritten; values that already use the new key are left alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import datastore
from server.storage.encryption import EncryptionError, SecretsEncryption

log = logging.getLogger("edgek.encryption")


class SecretsEncryptionAdmin:
    """Status and key rotation for one server's Secret encryption."""

    def __init__(
        self, store: datastore.Datastore, encryption: SecretsEncryption, secrets_prefix: str
    ) -> None:
        self.datastore = store
        self.encryption = encryption
        self.prefix = secrets_prefix
        self._lock = asyncio.Lock()

    def status(self) -> dict[str, Any]:
        """The encryption state: enabled, stage, the keys and which one writes."""
        return self.encryption.status()

    async def rotate_keys(self) -> dict[str, Any]:
        """Add a key, re-encrypt every Secret with it, drop the old keys; the new status."""
        async with self._lock:
            if not self.encryption.enabled:
                raise EncryptionError("secrets encryption is disabled; cannot rotate keys")
            new_key = self.encryption.rotate()
            rewritten = await self.rewrite_all()
            # history still holds values sealed with the old keys: drop it before the keys
            await self.datastore.compact(self.datastore.revision)
            self.encryption.prune(new_key)
            log.info(
                "rotated secrets encryption key to %s; %d secrets rewritten", new_key, rewritten
            )
            return self.status()

    async def rewrite_all(self) -> int:
        """Store every Secret again under the current write key; how many were rewritten."""
        rewritten = 0
        start_after = ""
        while True:
            items, _, more = await self.datastore.list(
                self.prefix, start_after=start_after, limit=500
            )
            for kv in items:
                rewritten += await self._rewrite(kv)
            if not more or not items:
                return rewritten
            start_after = items[-1].key

    async def _rewrite(self, kv: datastore.KeyValue) -> int:
        while self.encryption.needs_rewrite(kv.value):
            plain = self.encryption.decrypt(kv.key, kv.value)
            sealed = self.encryption.encrypt(kv.key, plain)
            try:
                await self.datastore.update(kv.key, sealed, expected_revision=kv.mod_revision)
                return 1
            except datastore.ConflictError:
                current = await self.datastore.get(kv.key)
                if current is None:
                    return 0
                kv = current
            except datastore.NotFoundError:
                return 0
        return 0
