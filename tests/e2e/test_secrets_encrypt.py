"""``edgek secrets-encrypt status|rotate-keys`` against a real server: the key rotates,
every Secret is re-sealed with the new key, and nothing is lost."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, Kubectl, ServerProcess, kubectl_binaries, start_server

EDGEK = [sys.executable, "-m", "edgek"]


def _edgek(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEK, *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def _sealed_key_names(db: Path) -> set[str]:
    """The key names in the prefixes of every stored Secret value, history included."""
    names = set()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT value FROM kv WHERE name LIKE '/registry/core/secrets/%'")
        for (value,) in rows:
            if value and bytes(value).startswith(b"k8s:enc:aesgcm:v1:"):
                names.add(bytes(value).split(b":")[4].decode())
    return names


def test_rotate_keys_reencrypts_every_secret(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--secrets-encryption")
    try:
        kubectl = Kubectl(next(iter(kubectl_binaries().values())), srv.kubeconfig, tmp_path / "c")
        for i in range(3):
            kubectl("create", "secret", "generic", f"s{i}", f"--from-literal=v=value-{i}")
        before = _edgek("secrets-encrypt", "status", "--kubeconfig", str(srv.kubeconfig))
        assert before.returncode == 0, before.stderr
        assert "Encryption Status: Enabled" in before.stdout
        [old_key] = [line.split()[-1] for line in before.stdout.splitlines() if "AES-GCM" in line]

        rotated = _edgek("secrets-encrypt", "rotate-keys", "--kubeconfig", str(srv.kubeconfig))
        assert rotated.returncode == 0, rotated.stderr
        assert "Current Rotation Stage: reencrypt_finished" in rotated.stdout
        [new_key] = [line.split()[-1] for line in rotated.stdout.splitlines() if "AES-GCM" in line]
        assert new_key != old_key

        db = srv.data_dir / "server" / "db" / "state.db"
        assert _sealed_key_names(db) == {new_key}
        for i in range(3):
            got = kubectl("get", "secret", f"s{i}", "-o", "jsonpath={.data.v}")
            assert base64.b64decode(got) == f"value-{i}".encode()
    finally:
        srv.stop()
    srv.start()  # the pruned key file still opens every Secret after a restart
    try:
        got = kubectl("get", "secret", "s2", "-o", "jsonpath={.data.v}")
        assert base64.b64decode(got) == b"value-2"
    finally:
        srv.stop()


def test_rotate_without_encryption_fails_clearly(server: ServerProcess) -> None:
    server_kubeconfig = server.kubeconfig
    result = _edgek("secrets-encrypt", "rotate-keys", "--kubeconfig", str(server_kubeconfig))
    assert result.returncode != 0
    assert "disabled" in result.stderr
    status = _edgek("secrets-encrypt", "status", "--kubeconfig", str(server_kubeconfig))
    assert status.returncode == 0, status.stderr
    assert "Encryption Status: Disabled" in status.stdout
