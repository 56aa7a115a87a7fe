"""Acceptance of issue 13's shipping half: the zipapps (``packaging/build.py``), the
installer (``packaging/install.sh``) and the systemd units (``systemd/``).

The zipapps are built once per session into a temporary dist (wheels cached under
``build/wheels/``, so only the first run anywhere downloads); the x86_64 file runs under the
bare system Python, outside the venv."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port

pytestmark = pytest.mark.e2e

SYSTEM_PYTHON = "/usr/bin/python3"
ARCHES = {"x86_64": 62, "aarch64": 183}  # ELF e_machine
BUDGET = 15 * 1024 * 1024
BARE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def build(dist: Path) -> dict[str, Path]:
    """Run the build into ``dist`` with the system Python; the files by architecture."""
    subprocess.run(
        [SYSTEM_PYTHON, "packaging/build.py", "--dist", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return {arch: next(dist.glob(f"edgek-*-linux-{arch}.pyz")) for arch in ARCHES}


@pytest.fixture(scope="session")
def zipapps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both zipapps, built once."""
    return build(tmp_path_factory.mktemp("dist"))


def test_sizes_in_budget(zipapps: dict[str, Path]) -> None:
    for path in zipapps.values():
        assert path.stat().st_size <= BUDGET, path
        assert path.read_bytes().startswith(b"#!/usr/bin/env python3\n")
        assert os.access(path, os.X_OK)


def test_rebuild_is_byte_identical(zipapps: dict[str, Path], tmp_path: Path) -> None:
    again = build(tmp_path)
    for arch, path in zipapps.items():
        assert again[arch].read_bytes() == path.read_bytes(), arch


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_only_own_native_code(zipapps: dict[str, Path], arch: str) -> None:
    """Every shared object inside is an ELF file for the zipapp's own machine."""
    with zipfile.ZipFile(zipapps[arch]) as archive:
        objects = [n for n in archive.namelist() if n.endswith(".so") or ".so." in n]
        assert any("cryptography" in n for n in objects)
        for name in objects:
            head = archive.read(name)[:20]
            assert head[:4] == b"\x7fELF", name
            assert int.from_bytes(head[18:20], "little") == ARCHES[arch], name


def run_bare(zipapp: Path, *args: str, data: Path) -> subprocess.CompletedProcess[str]:
    """The zipapp under the system Python with a minimal environment."""
    return subprocess.run(
        [SYSTEM_PYTHON, str(zipapp), *args],
        env={**BARE_ENV, "EDGEK_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="no system Python")
def test_version_from_system_python(zipapps: dict[str, Path], tmp_path: Path) -> None:
    res = run_bare(zipapps["x86_64"], "--version", data=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("edgek version v")
    # extracted once into a versioned cache under the data dir, reused after
    (cache,) = (tmp_path / "zipapp").iterdir()
    assert (cache / f"cp{sys.version_info[0]}{sys.version_info[1]}" / "edgek").is_dir()
    assert run_bare(zipapps["x86_64"], "--version", data=tmp_path).returncode == 0


def test_concurrent_first_starts(zipapps: dict[str, Path], tmp_path: Path) -> None:
    """Four first starts at once: all succeed, one extracted copy, no leftovers."""
    procs = [
        subprocess.Popen(
            [SYSTEM_PYTHON, str(zipapps["x86_64"]), "--version"],
            env={**BARE_ENV, "EDGEK_DATA_DIR": str(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    assert all(p.wait(120) == 0 for p in procs)
    (cache,) = (tmp_path / "zipapp").iterdir()
    assert [p.name for p in cache.iterdir()] == [f"cp{sys.version_info[0]}{sys.version_info[1]}"]


def test_server_sends_ready(zipapps: dict[str, Path], tmp_path: Path) -> None:
    """``edgek server`` from the zipapp tells a NOTIFY_SOCKET READY=1 once it serves."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(120)
    data = tmp_path / "data"
    args = ["server", "--disable-agent", "--data-dir", str(data), "--bind-address", "127.0.0.1"]
    env = {**BARE_ENV, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    with (tmp_path / "log").open("wb") as log:
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(zipapps["x86_64"]), *args, "--https-listen-port", str(free_port())],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        message = listener.recv(4096)
        assert message == b"READY=1", (tmp_path / "log").read_text()
        assert (data / "server" / "cred" / "admin.kubeconfig").exists()
    finally:
        proc.terminate()
        proc.wait(30)
        listener.close()


# --- install.sh and the units ------------------------------------------------------------

INSTALL = REPO / "packaging" / "install.sh"
SERVER_FILES = {
    "usr/local/bin/edgek": 0o755,
    "usr/local/bin/edgek-killall.sh": 0o755,
    "usr/local/bin/edgek-uninstall.sh": 0o755,
    "etc/systemd/system/edgek.service": 0o644,
    "etc/systemd/system/edgek.service.env": 0o600,
    "etc/edgek/config.yaml": 0o644,
}
AGENT_FILES = {
    k.replace("edgek.service", "edgek-agent.service").replace(
        "edgek-uninstall", "edgek-agent-uninstall"
    ): v
    for k, v in SERVER_FILES.items()
}


def install(root: Path, zipapp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """install.sh against a scratch root."""
    return subprocess.run(
        ["sh", str(INSTALL)],
        env={
            **BARE_ENV,
            "INSTALL_EDGEK_ROOT": str(root),
            "INSTALL_EDGEK_ZIPAPP": str(zipapp),
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its mode."""
    return {
        str(p.relative_to(root)): p.stat().st_mode & 0o7777 for p in root.rglob("*") if p.is_file()
    }


def scratch_root(tmp_path: Path) -> Path:
    """A root with the standard directories and a file that is not edgek's."""
    root = tmp_path / "root"
    for d in ("usr/local/bin", "etc/systemd/system"):
        (root / d).mkdir(parents=True)
    (root / "etc/hostname").write_text("pi\n")
    return root


@pytest.mark.parametrize(
    ("env", "files", "unit"),
    [
        ({}, SERVER_FILES, "edgek.service"),
        (
            {"EDGEK_URL": "https://10.0.0.1:6443", "EDGEK_TOKEN": "K10abc::node:secret"},
            AGENT_FILES,
            "edgek-agent.service",
        ),
    ],
)
def test_install_layout_and_uninstall(
    tmp_path: Path, env: dict[str, str], files: dict[str, int], unit: str
) -> None:
    zipapp = tmp_path / "edgek.pyz"
    zipapp.write_bytes(b"#!/usr/bin/env python3\n")
    root = scratch_root(tmp_path)
    before = tree(root)
    out = install(root, zipapp, **env).stdout
    assert "nothing started" in out
    assert tree(root) == {**before, **files}
    assert (root / "etc/systemd/system" / unit).read_text() == (REPO / "systemd" / unit).read_text()
    env_text = (root / f"etc/systemd/system/{unit}.env").read_text()
    for key in ("EDGEK_URL", "EDGEK_TOKEN"):
        assert (f"{key}={env.get(key)}\n" in env_text) == (key in env)
    # a re-run changes nothing
    snapshot = {p: (root / p).read_bytes() for p in files}
    install(root, zipapp, **env)
    assert {p: (root / p).read_bytes() for p in files} == snapshot
    uninstall = next(p for p in files if p.endswith("uninstall.sh"))
    subprocess.run(["sh", str(root / uninstall)], env=BARE_ENV, check=True)
    assert tree(root) == before
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()) == [
        "etc", "etc/systemd", "etc/systemd/system", "usr", "usr/local", "usr/local/bin"
    ]  # fmt: skip


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The units as installed, with ExecStart pointing at an edgek outside the scratch root
    (verify checks that the binary exists on this machine)."""
    zipapp = tmp_path / "bin" / "edgek"
    zipapp.parent.mkdir()
    zipapp.write_bytes(b"#!/usr/bin/env python3\n")
    zipapp.chmod(0o755)
    root = scratch_root(tmp_path)
    bin_dir = str(zipapp.parent)
    install(root, zipapp, INSTALL_EDGEK_BIN_DIR=bin_dir)
    install(
        root, zipapp, INSTALL_EDGEK_BIN_DIR=bin_dir, EDGEK_URL="https://h:6443", EDGEK_TOKEN="t"
    )
    units = [str(root / "etc/systemd/system" / u) for u in ("edgek.service", "edgek-agent.service")]
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="needs shellcheck")
def test_install_sh_is_shellcheck_clean(tmp_path: Path) -> None:
    """install.sh and the killall and uninstall scripts it writes."""
    zipapp = tmp_path / "edgek.pyz"
    zipapp.write_bytes(b"#!/usr/bin/env python3\n")
    root = scratch_root(tmp_path)
    install(root, zipapp)
    scripts = [INSTALL, *(root / "usr/local/bin").glob("*.sh")]
    assert len(scripts) == 3
    res = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


@pytest.mark.xfail(reason="not written yet: killall inside a test netns with a running agent")
def test_killall_leaves_nothing_behind() -> None:
    raise NotImplementedError
