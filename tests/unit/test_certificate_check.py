"""``edgek certificate check``: the expiry report of a data dir's certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgek.cmd.certificate import expiry_report
from server.pki import ensure_pki


def test_report_marks_near_and_past_expiry(tmp_path: Path) -> None:
    ensure_pki(tmp_path / "server" / "tls", dns_names=[], ip_addresses=[])
    now = datetime.now(UTC)
    lines, expired = expiry_report(tmp_path, now)
    by_file = {line.split()[0].rsplit("/", 1)[1]: line for line in lines}
    assert set(by_file) >= {"server-ca.crt", "client-ca.crt", "serving-kube-apiserver.crt"}
    assert all(line.endswith(" ok") for line in lines) and not expired
    lines, expired = expiry_report(tmp_path, now + timedelta(days=300))
    assert any(
        "serving-kube-apiserver.crt" in line and line.endswith("expires within 90 days")
        for line in lines
    )
    lines, expired = expiry_report(tmp_path, now + timedelta(days=400))
    assert expired
    assert any("client-admin.crt" in line and line.endswith("EXPIRED") for line in lines)
