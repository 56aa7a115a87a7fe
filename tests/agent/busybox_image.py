"""Build a busybox image offline: Debian's static busybox and its applet links, written as a
reproducible docker-archive tarball with :mod:`tarfile` (nothing is pulled from a registry)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
IMAGE = "edgek.test/busybox:1"
_EPOCH = 1_700_000_000  # a fixed mtime keeps the tarball (and the image digest) reproducible


def _entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, size, link, _EPOCH
    return info


def _layer(busybox: Path) -> bytes:
    """The rootfs as a tar layer: /bin/busybox, a link per applet, /tmp and /etc/passwd."""
    applets = subprocess.run(
        [str(busybox), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    dirs = sorted({"bin", "etc", "tmp", "root"} | {str(Path(a).parent) for a in applets})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            tar.addfile(_entry(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        body = busybox.read_bytes()
        tar.addfile(_entry("bin/busybox", tarfile.REGTYPE, 0o755, len(body)), io.BytesIO(body))
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        tar.addfile(_entry("etc/passwd", tarfile.REGTYPE, 0o644, len(passwd)), io.BytesIO(passwd))
        for applet in sorted(set(applets) - {"bin/busybox"}):
            tar.addfile(_entry(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))
    return buf.getvalue()


def write_busybox_archive(path: Path, image: str = IMAGE, busybox: Path = BUSYBOX) -> str:
    """Write a docker-archive of ``image`` to ``path``; returns the image id (config digest)."""
    layer = _layer(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [{"Config": f"{config_hex}.json", "RepoTags": [image], "Layers": ["layer.tar"]}]
    ).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            (f"{config_hex}.json", config),
            ("layer.tar", layer),
            ("manifest.json", manifest),
        ):
            tar.addfile(_entry(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return "sha256:" + config_hex
