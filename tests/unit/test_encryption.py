"""Secrets encryption at rest: value format, key rotation and the config file."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.storage.encryption import EncryptionError, SecretsEncryption

KEY = "/registry/secrets/default/db-pass"
PLAIN = b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}'


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def cred(tmp_path: Path) -> Path:
    return tmp_path / "server" / "cred"


@pytest.fixture
def enc(cred: Path) -> SecretsEncryption:
    return SecretsEncryption.load_or_create(cred, enabled=True)


def test_round_trip_and_format(enc: SecretsEncryption) -> None:
    stored = enc.encrypt(KEY, PLAIN)
    name = enc.status()["current_key"]
    prefix = f"k8s:enc:aesgcm:v1:{name}:".encode()
    assert stored.startswith(prefix)
    assert len(stored) == len(prefix) + 12 + len(PLAIN) + 16  # nonce + ciphertext + tag
    assert b"aHVudGVyMg" not in stored and b"Secret" not in stored
    assert enc.decrypt(KEY, stored) == PLAIN


def test_fresh_nonce_each_time(enc: SecretsEncryption) -> None:
    first, second = enc.encrypt(KEY, PLAIN), enc.encrypt(KEY, PLAIN)
    assert first != second
    prefix_len = len(first) - 12 - len(PLAIN) - 16
    assert first[prefix_len : prefix_len + 12] != second[prefix_len : prefix_len + 12]


def test_bound_to_storage_key(enc: SecretsEncryption) -> None:
    stored = enc.encrypt(KEY, PLAIN)
    with pytest.raises(EncryptionError):
        enc.decrypt("/registry/secrets/default/other", stored)


@pytest.mark.parametrize("position", [-1, -20, -(len(PLAIN) + 16 + 1)])  # tag, body, nonce
def test_tampering_detected(enc: SecretsEncryption, position: int) -> None:
    stored = bytearray(enc.encrypt(KEY, PLAIN))
    stored[position] ^= 0x01
    with pytest.raises(EncryptionError):
        enc.decrypt(KEY, bytes(stored))


def test_truncated_and_unknown_values(enc: SecretsEncryption) -> None:
    stored = enc.encrypt(KEY, PLAIN)
    prefix = stored[: len(stored) - 12 - len(PLAIN) - 16]
    with pytest.raises(EncryptionError, match="too short"):
        enc.decrypt(KEY, prefix + b"\0" * 27)
    with pytest.raises(EncryptionError, match="no encryption key named 'nokey'"):
        enc.decrypt(KEY, b"k8s:enc:aesgcm:v1:nokey:" + stored[len(prefix) :])
    with pytest.raises(EncryptionError, match="unsupported encryption provider"):
        enc.decrypt(KEY, b"k8s:enc:aescbc:v1:key1:" + b"\0" * 48)


def test_plaintext_passes_through(enc: SecretsEncryption) -> None:
    assert enc.decrypt(KEY, PLAIN) == PLAIN
    assert enc.needs_rewrite(PLAIN)


def test_rotate_keeps_old_keys_readable(enc: SecretsEncryption, cred: Path) -> None:
    old_name = enc.status()["current_key"]
    old = enc.encrypt(KEY, PLAIN)
    assert not enc.needs_rewrite(old)

    new_name = enc.rotate()
    assert new_name != old_name
    st = enc.status()
    assert st["current_key"] == new_name
    assert st["keys"] == [new_name, old_name]
    assert st["stage"] == "rotate"

    assert enc.decrypt(KEY, old) == PLAIN
    assert enc.needs_rewrite(old)
    new = enc.encrypt(KEY, PLAIN)
    assert new.startswith(f"k8s:enc:aesgcm:v1:{new_name}:".encode())
    assert not enc.needs_rewrite(new)

    # the rotation was persisted: a fresh load reads both values
    reloaded = SecretsEncryption.load_or_create(cred, enabled=True)
    assert reloaded.status() == st
    assert reloaded.decrypt(KEY, old) == reloaded.decrypt(KEY, new) == PLAIN


def test_rotate_twice_quickly_gives_distinct_names(enc: SecretsEncryption) -> None:
    names = {enc.rotate(), enc.rotate(), enc.rotate()}
    assert len(names) == 3
    assert all(":" not in n and n.startswith("aesgcmkey-") for n in names)


def test_prune(enc: SecretsEncryption, cred: Path) -> None:
    old = enc.encrypt(KEY, PLAIN)
    new_name = enc.rotate()
    rewritten = enc.encrypt(KEY, enc.decrypt(KEY, old))
    old_name = enc.status()["keys"][1]
    with pytest.raises(EncryptionError, match="not the current write key"):
        enc.prune(old_name)
    with pytest.raises(EncryptionError, match="no encryption key"):
        enc.prune("missing")
    enc.prune(new_name)
    st = enc.status()
    assert st["keys"] == [new_name]
    assert st["stage"] == "reencrypt_finished"
    assert enc.decrypt(KEY, rewritten) == PLAIN
    with pytest.raises(EncryptionError, match="no encryption key named"):
        enc.decrypt(KEY, old)
    reloaded = SecretsEncryption.load_or_create(cred, enabled=True)
    assert reloaded.status() == st


def test_disabled_without_file_is_identity(cred: Path) -> None:
    enc = SecretsEncryption.load_or_create(cred, enabled=False)
    assert not enc.enabled
    assert enc.encrypt(KEY, PLAIN) == PLAIN
    assert enc.decrypt(KEY, PLAIN) == PLAIN
    assert not enc.needs_rewrite(PLAIN)
    assert enc.status() == {
        "enabled": False,
        "current_key": None,
        "keys": [],
        "stage": None,
        "hash": None,
    }
    assert not cred.exists()
    with pytest.raises(EncryptionError, match="disabled"):
        enc.rotate()


def test_disabling_keeps_ciphertext_readable(enc: SecretsEncryption, cred: Path) -> None:
    stored = enc.encrypt(KEY, PLAIN)
    name = enc.status()["current_key"]

    off = SecretsEncryption.load_or_create(cred, enabled=False)
    assert not off.enabled
    assert off.encrypt(KEY, PLAIN) == PLAIN
    assert off.decrypt(KEY, stored) == PLAIN
    assert off.needs_rewrite(stored) and not off.needs_rewrite(PLAIN)
    assert off.status()["current_key"] is None and off.status()["keys"] == [name]
    # like k3s, the config records "disabled" by putting identity first
    doc = json.loads((cred / "encryption-config.json").read_bytes())
    assert list(doc["resources"][0]["providers"][0]) == ["identity"]
    assert not SecretsEncryption.load(cred).enabled

    on = SecretsEncryption.load_or_create(cred, enabled=True)
    assert on.status()["current_key"] == name
    assert on.decrypt(KEY, stored) == PLAIN


def test_config_file_shape_and_permissions(enc: SecretsEncryption, cred: Path) -> None:
    path = cred / "encryption-config.json"
    assert _mode(cred) == 0o700
    assert _mode(path) == 0o600
    doc = json.loads(path.read_bytes())
    assert doc["kind"] == "EncryptionConfiguration"
    assert doc["apiVersion"] == "apiserver.config.k8s.io/v1"
    (entry,) = doc["resources"]
    assert entry["resources"] == ["secrets"]
    aesgcm, identity = entry["providers"]
    assert identity == {"identity": {}}
    (key,) = aesgcm["aesgcm"]["keys"]
    assert key["name"] == enc.status()["current_key"]
    assert len(base64.b64decode(key["secret"])) == 32
    enc.rotate()
    assert _mode(path) == 0o600


def test_existing_cred_dir_is_tightened(cred: Path) -> None:
    cred.mkdir(parents=True, mode=0o755)
    cred.chmod(0o755)
    SecretsEncryption.load_or_create(cred, enabled=True)
    assert _mode(cred) == 0o700


def test_reload_gives_same_keys(enc: SecretsEncryption, cred: Path) -> None:
    stored = enc.encrypt(KEY, PLAIN)
    before = (cred / "encryption-config.json").read_bytes()
    again = SecretsEncryption.load_or_create(cred, enabled=True)
    assert (cred / "encryption-config.json").read_bytes() == before  # no new key on restart
    assert again.status() == enc.status()
    assert again.status()["stage"] == "start"
    assert again.decrypt(KEY, stored) == PLAIN
    assert not again.needs_rewrite(stored)


def test_independent_configs_cannot_read_each_other(tmp_path: Path) -> None:
    a = SecretsEncryption.load_or_create(tmp_path / "a", enabled=True)
    b = SecretsEncryption.load_or_create(tmp_path / "b", enabled=True)
    stored = a.encrypt(KEY, PLAIN)
    # same key name (same second) but different key material must still fail
    relabelled = stored.replace(
        str(a.status()["current_key"]).encode(), str(b.status()["current_key"]).encode(), 1
    )
    with pytest.raises(EncryptionError):
        b.decrypt(KEY, relabelled)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(kind="Other"), "not an EncryptionConfiguration"),
        (lambda d: d["resources"][0]["providers"].pop(), "exactly an aesgcm and an identity"),
        (lambda d: d["resources"][0]["providers"][0]["aesgcm"]["keys"].clear(), "at least one"),
        (lambda d: _key(d).update(secret="c2hvcnQ="), "must be 32 bytes"),
        (lambda d: _key(d).update(secret="!!"), "not valid base64"),
        (lambda d: _key(d).update(name="a:b"), "invalid key name"),
    ],
)
def test_invalid_config_rejected(
    cred: Path, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    SecretsEncryption.load_or_create(cred, enabled=True)
    path = cred / "encryption-config.json"
    doc = json.loads(path.read_bytes())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(EncryptionError, match=message):
        SecretsEncryption.load_or_create(cred, enabled=True)


def _key(doc: dict[str, Any]) -> dict[str, str]:
    key: dict[str, str] = doc["resources"][0]["providers"][0]["aesgcm"]["keys"][0]
    return key


def test_hand_written_aesgcm_key_is_usable(cred: Path) -> None:
    secret = bytes(range(32))
    cred.mkdir(parents=True)
    doc = {
        "kind": "EncryptionConfiguration",
        "apiVersion": "apiserver.config.k8s.io/v1",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {
                        "aesgcm": {
                            "keys": [{"name": "key1", "secret": base64.b64encode(secret).decode()}]
                        }
                    },
                    {"identity": {}},
                ],
            }
        ],
    }
    (cred / "encryption-config.json").write_text(json.dumps(doc))
    enc = SecretsEncryption.load_or_create(cred, enabled=True)
    assert enc.status()["current_key"] == "key1"
    stored = enc.encrypt(KEY, PLAIN)
    # independently decrypt with the documented layout: nonce, then ciphertext+tag
    prefix = b"k8s:enc:aesgcm:v1:key1:"
    body = stored[len(prefix) :]
    aad = prefix + KEY.encode()
    assert AESGCM(secret).decrypt(body[:12], body[12:], aad) == PLAIN
