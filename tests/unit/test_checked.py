"""Recorded check results let a restart skip cryptographic checks of unchanged files:
server.pki.checked, ensure_pki's fast path and the service-account key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgek.certs import key_to_pem, new_key
from server.auth.satoken import ServiceAccountKey
from server.auth.satoken_crypto import TokenSigner
from server.pki import ensure_pki, provision
from server.pki.checked import RECORD_FILE, CheckRecord


def test_record_answers_only_for_unchanged_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    record = CheckRecord(tmp_path)
    assert record.get("c", [a, b]) is None
    record.put("c", [a, b], {"x": 1})
    assert CheckRecord(tmp_path).get("c", [a, b]) == {"x": 1}
    assert record.get("c", [a]) is None  # not the files the check read
    assert record.get("other", [a, b]) is None
    b.write_bytes(b"changed")
    assert record.get("c", [a, b]) is None
    b.unlink()
    assert record.get("c", [a, b]) is None


def test_unreadable_or_foreign_record_is_ignored(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"data")
    CheckRecord(tmp_path).put("c", [f], {})
    path = tmp_path / RECORD_FILE
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "version": 0}))
    assert CheckRecord(tmp_path).get("c", [f]) is None
    path.write_text("{not json")
    assert CheckRecord(tmp_path).get("c", [f]) is None


def test_ensure_pki_skips_the_check_while_files_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tmp_path / "tls"
    pki = ensure_pki(tls, dns_names=["edge.example"], ip_addresses=["10.1.2.3"])
    log = tmp_path / "calls"  # the check runs in a forked child: count through a file
    log.write_text("")
    real = provision.ensure

    def counting(*args: Any) -> dict[str, Any]:
        with log.open("a") as f:
            f.write("call\n")
        return real(*args)

    def calls() -> int:
        return len(log.read_text().split())

    monkeypatch.setattr(provision, "ensure", counting)
    ensure_pki(tls, dns_names=["EDGE.example"], ip_addresses=["10.1.2.3"])
    assert calls() == 0
    ensure_pki(tls, dns_names=["other.example"], ip_addresses=[])  # a SAN not covered
    assert calls() == 1
    pki.admin_key.write_bytes(key_to_pem(new_key()))  # any change to a file
    ensure_pki(tls, dns_names=[], ip_addresses=[])
    assert calls() == 2
    ensure_pki(tls, dns_names=[], ip_addresses=[])
    assert calls() == 2


def test_certificates_are_made_in_a_child_whose_error_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tmp_path / "tls"
    child_pid = tmp_path / "pid"

    def failing(*args: Any) -> dict[str, Any]:
        child_pid.write_text(str(os.getpid()))
        raise OSError("disk full")

    monkeypatch.setattr(provision, "ensure", failing)
    with pytest.raises(OSError, match="disk full"):
        ensure_pki(tls, dns_names=[], ip_addresses=[])
    assert int(child_pid.read_text()) != os.getpid()
    assert not (tls / RECORD_FILE).exists()


def test_service_account_key_is_created_then_only_loaded_on_use(tmp_path: Path) -> None:
    path = tmp_path / "service.key"
    first = ServiceAccountKey(path)
    first.check()
    assert path.is_file()
    again = ServiceAccountKey(path)
    again.check()
    assert again._signer is None  # recorded as good: not loaded at start
    assert again.jwks() == TokenSigner.load_or_create(path).jwks() == first.jwks()
    assert again._signer is not None


def test_service_account_key_is_checked_again_when_replaced(tmp_path: Path) -> None:
    path = tmp_path / "service.key"
    ServiceAccountKey(path).check()
    path.write_bytes(key_to_pem(new_key()))
    replaced = ServiceAccountKey(path)
    replaced.check()  # checked (in a child), recorded as good
    assert CheckRecord(tmp_path).get(ServiceAccountKey.CHECK, [path]) is not None
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a usable private key"):
        ServiceAccountKey(path).check()
