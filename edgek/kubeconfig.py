"""kubeconfig files: build the admin kubeconfig, write it atomically, read it back.

Also home of :func:`atomic_write`, the crash-safe file writer shared by everything that
persists keys, certificates or credentials (PKI, kubeconfigs, tokens).
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SERVER_URL = "https://127.0.0.1:6443"


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new content.

    The bytes go to a temporary file in the same directory (created with ``mode`` from the
    start, so secrets are never briefly world-readable), are fsynced, and the file is then
    renamed over ``path``; the directory is fsynced so the rename survives a crash. Parent
    directories are created (mode 0755) when missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), mode)
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def admin_kubeconfig(
    server_url: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *, name: str = "default"
) -> dict[str, Any]:
    """A kubeconfig (as a dict) with one cluster, user and context, all called ``name``.

    Credentials are embedded (``*-data`` fields, base64 of the PEM bytes), so the file is
    self-contained, and ``current-context`` selects the single context.
    """
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server_url, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": _b64(cert_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }


def data_dir_kubeconfig(data_dir: Path) -> Path:
    """Where a server keeps the admin kubeconfig in its data dir (as k3s does), for
    commands given ``--data-dir`` instead of ``--kubeconfig``."""
    return data_dir / "server" / "cred" / "admin.kubeconfig"


def write_kubeconfig(path: Path, config: dict[str, Any], *, mode: int = 0o600) -> None:
    """Write ``config`` as YAML to ``path`` atomically with file mode ``mode``."""
    text = yaml.safe_dump(config, default_flow_style=False, sort_keys=False)
    atomic_write(path, text.encode("utf-8"), mode=mode)


def load_kubeconfig(path: Path) -> dict[str, Any]:
    """Read a kubeconfig file; ValueError when it is not a YAML mapping."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: kubeconfig is not a mapping")
    return loaded
