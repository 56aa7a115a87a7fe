"""Atomically updated directories of files, as the kubelet's AtomicWriter lays them out.

The files of a ConfigMap, Secret, downward API or projected volume live in a timestamped
directory ``..<UTC time>.<random>``; ``..data`` is a symlink to it and every top-level name
of the payload is a symlink ``name -> ..data/name``. An update writes a new timestamped
directory and swaps ``..data`` with one rename, so a reader sees either the old or the new
set of files, never a mix. Writing an unchanged payload changes nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

DATA_LINK = "..data"
#: A file of a payload: its content and permission bits.
File = tuple[bytes, int]


class PayloadError(ValueError):
    """A payload path that may not be written (absolute, with ``..``, or hidden)."""


def check_path(path: str) -> None:
    """PayloadError unless ``path`` is relative, without ``..`` and not starting with ``..``."""
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or path.startswith(".."):
        raise PayloadError(f"invalid path {path!r}: must be relative, without '..'")


def current(target: Path) -> dict[str, File] | None:
    """The payload now visible in ``target`` (None when nothing was written yet)."""
    data = target / DATA_LINK
    if not data.is_symlink():
        return None
    payload: dict[str, File] = {}
    root = data.resolve()
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            payload[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return payload


def write(target: Path, payload: Mapping[str, File], *, gid: int | None = None) -> bool:
    """Make ``payload`` (relative path -> (content, mode)) the visible content of ``target``;
    False when it already was. With ``gid`` (the pod's fsGroup) the new files and
    directories belong to that group and the directories are set-group-ID. PayloadError for
    a bad path."""
    for path in payload:
        check_path(path)
    old = current(target)
    if old == dict(payload):
        return False
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    new_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    _fill(new_dir, payload, gid)
    data = target / DATA_LINK
    previous = data.resolve() if data.is_symlink() else None
    tmp_link = target / f"{DATA_LINK}_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(new_dir.name)
    tmp_link.rename(data)
    _link_tops(target, payload, old)
    if previous is not None and previous != new_dir:
        shutil.rmtree(previous, ignore_errors=True)
    return True


def _fill(new_dir: Path, payload: Mapping[str, File], gid: int | None) -> None:
    """Write ``payload`` under ``new_dir``; with ``gid`` everything belongs to that group and
    the directories are set-group-ID."""
    for path, (content, mode) in payload.items():
        file = new_dir / path
        file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        file.write_bytes(content)
        file.chmod(mode)
    dir_mode = 0o755 if gid is None else 0o2755
    for dirpath, _, files in os.walk(new_dir):
        os.chmod(dirpath, dir_mode)
        if gid is not None:
            os.chown(dirpath, -1, gid)
            for name in files:
                os.chown(os.path.join(dirpath, name), -1, gid)


def _link_tops(target: Path, payload: Mapping[str, File], old: Mapping[str, File] | None) -> None:
    """Point each top-level name of ``payload`` through the data link; drop the names only
    ``old`` had."""
    tops = {PurePosixPath(path).parts[0] for path in payload}
    for name in tops:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{name}")
    for name in {PurePosixPath(path).parts[0] for path in old or {}} - tops:
        (target / name).unlink(missing_ok=True)
