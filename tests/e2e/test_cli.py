"""The edgek command line: version, bad input, config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, ServerProcess, free_port

EDGEK = [sys.executable, "-m", "edgek"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEK, *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_version() -> None:
    res = run("--version")
    assert res.returncode == 0
    assert res.stdout.startswith("edgek version v")


def test_bad_config_is_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("no-such-flag: 1\n")
    res = run("server", "--config", str(cfg))
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == ["edgek: unknown config key(s): no-such-flag"]


def test_bad_flag_value(tmp_path: Path) -> None:
    res = run("server", "--data-dir", str(tmp_path), "--write-kubeconfig-mode", "9z")
    assert res.returncode != 0
    assert "invalid value for --write-kubeconfig-mode" in res.stderr


def test_port_in_use_fails_cleanly(tmp_path: Path, server: ServerProcess) -> None:
    res = subprocess.run(
        [
            *EDGEK,
            "server",
            "--data-dir",
            str(tmp_path),
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
            str(server.port),
            "--write-kubeconfig",
            str(tmp_path / "k.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode != 0
    assert "cannot start server" in res.stderr


def test_config_file_sets_flags(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"data-dir: {data}\nbind-address: 127.0.0.1\nhttps-listen-port: {port}\n"
        f"write-kubeconfig: {data / 'kubeconfig.yaml'}\ntls-san: [edge.example]\n"
        "disable-agent: true\n"
    )
    srv = ServerProcess(data, port, tmp_path / "log")
    log = srv.log_path.open("ab")
    srv.proc = subprocess.Popen(
        [*EDGEK, "server", "--config", str(cfg)], stdout=log, stderr=log, cwd=REPO
    )
    srv.wait_ready(30)
    try:
        assert (data / "server" / "db" / "state.db").exists()
        assert (data / "kubeconfig.yaml").stat().st_mode & 0o777 == 0o600
        pem = (data / "server" / "tls" / "serving-kube-apiserver.crt").read_bytes()
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "edge.example" in sans.get_values_for_type(x509.DNSName)
    finally:
        srv.stop()
