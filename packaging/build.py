"""Build the edgek zipapps: ``python3 packaging/build.py`` writes
``dist/edgek-<version>-linux-x86_64.pyz`` and ``dist/edgek-<version>-linux-aarch64.pyz``.

Each is one executable file (``#!/usr/bin/env python3``) carrying edgek, every pure-Python
dependency once and the compiled dependencies of its architecture for each supported Python
(``native/cp3XY/``; ``native/abi3/`` for stable-ABI wheels such as cryptography's).
``packaging/bootstrap.py`` is its ``__main__`` (extraction into the data dir). Why our own
builder rather than pex or shiv: docs/PACKAGING.md.

Wheels come from PyPI through ``pip download --only-binary=:all: --platform ...`` and are
cached under ``build/wheels/`` keyed by the requirements, so a rebuild needs no network.
The archive is reproducible: entries sorted, fixed timestamps and modes, fixed compression.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgek", "server", "agent", "datastore", "netpolicy")
#: manylinux tags up to glibc 2.34 (Debian 12 / Raspberry Pi OS bookworm have 2.36)
PLATFORMS = {
    arch: [
        f"--platform={tag}_{arch}" for tag in ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
    ]
    for arch in ("x86_64", "aarch64")
}
#: Debian 12 / Raspberry Pi OS bookworm (3.11). Each further version's compiled modules
#: (with asyncpg for the postgres extra) cost ~5 MB, past the size budget
PYTHONS = ("3.11",)
BUDGET = 15 * 1024 * 1024
EPOCH = (1980, 1, 1, 0, 0, 0)
#: optional compiled speed-ups left out for the size budget (each package falls back to its
#: own pure-Python code): SQLAlchemy's Cython modules (2.5 MB per Python; edgek uses Core
#: only) and PyYAML's libyaml binding (config files only)
OPTIONAL_NATIVE = re.compile(r"^(sqlalchemy/.*|yaml/_yaml[^/]*)\.so$")
#: read by zipimport before the bootstrap runs, so stored with zip's standard deflate
BOOTSTRAP = {"__main__.py", "edgek-build.json"}
SHEBANG = b"#!/usr/bin/env python3\n"


def requirements() -> list[str]:
    """The runtime requirements: pyproject's dependencies and the extras the zipapp carries
    (every optional group except ``test``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return sorted(
        {*project["dependencies"], *(r for k, v in extras.items() if k != "test" for r in v)}
    )


def version() -> str:
    """edgek's version, from ``edgek/__init__.py``."""
    text = (ROOT / "edgek" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    assert match, "edgek/__init__.py has no __version__"
    return match.group(1)


def wheels(arch: str, python: str, reqs: list[str], cache: Path) -> list[Path]:
    """The wheels of ``reqs`` for one architecture and Python, downloaded once into a cache
    directory named after the requirements."""
    key = hashlib.sha256("\n".join([arch, python, *reqs]).encode()).hexdigest()[:16]
    folder = cache / f"{arch}-cp{python.replace('.', '')}-{key}"
    done = folder / ".complete"
    if not done.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", *PLATFORMS[arch], "--python-version", python,
             "--implementation", "cp", f"--abi=cp{python.replace('.', '')}", "--abi=abi3",
             "--abi=none", "--dest", str(folder), *reqs],
            check=True,
        )  # fmt: skip
        done.touch()
    return sorted(folder.glob("*.whl"))


def native_tag(wheel: Path) -> str | None:
    """Where a wheel's files go under ``native/``: its ABI tag (``cp311``, ``abi3``), or None
    for a pure-Python wheel (``py3-none-any``)."""
    _python, abi, platform = wheel.stem.split("-")[-3:]
    if platform == "any":
        return None
    return "abi3" if abi == "abi3" else abi.removesuffix("t")


def wheel_files(wheel: Path) -> Iterator[tuple[str, bytes]]:
    """The importable files of a wheel (its ``.data`` scripts and headers left out)."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            top = name.split("/", 1)[0]
            skip = top.endswith(".data") or "__pycache__" in name or OPTIONAL_NATIVE.match(name)
            if name.endswith("/") or skip:
                continue
            yield name, archive.read(name)


def source_files() -> Iterator[tuple[str, bytes]]:
    """edgek's own packages: their modules and data files."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if (
                path.is_file()
                and path.suffix in {".py", ".json"}
                and "__pycache__" not in path.parts
            ):
                yield str(path.relative_to(ROOT)), path.read_bytes()


def payload(arch: str, cache: Path) -> dict[str, bytes]:
    """Every file of one architecture's zipapp, by archive name (``edgek-build.json`` last,
    naming a hash of the rest as the build id the extraction cache is keyed by)."""
    reqs = requirements()
    files = {f"lib/{name}": data for name, data in source_files()}
    per_python: dict[str, dict[str, bytes]] = {}
    for python in PYTHONS:
        own = per_python.setdefault(f"cp{python.replace('.', '')}", {})
        for wheel in wheels(arch, python, reqs, cache):
            tag = native_tag(wheel)
            target = own if tag not in (None, "abi3") else files
            prefix = {None: "lib/", "abi3": "native/abi3/"}.get(tag, "")
            target.update({f"{prefix}{n}": d for n, d in wheel_files(wheel)})
    # the Python code of a compiled wheel is the same for every Python: stored once
    shared = set.intersection(*(set(own.items()) for own in per_python.values()))
    files.update({f"lib/{name}": data for name, data in shared})
    for tag, own in per_python.items():
        files.update({f"native/{tag}/{n}": d for n, d in own.items() if (n, d) not in shared})
    tags = per_python.keys()
    files["__main__.py"] = (ROOT / "packaging" / "bootstrap.py").read_bytes()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    build = {"version": version(), "build": digest.hexdigest()[:12], "python": sorted(tags)}
    files["edgek-build.json"] = json.dumps(build, sort_keys=True).encode()
    return files


def archive(files: dict[str, bytes]) -> bytes:
    """The zipapp's bytes: the shebang, then a zip of ``files`` with sorted entries, fixed
    timestamps, modes and compression (LZMA, 25% smaller than deflate on the native code):
    the same files give the same bytes."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as out:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, EPOCH)
            info.external_attr = 0o644 << 16
            # everything else is read by the bootstrap's zipfile, which has LZMA
            info.compress_type = zipfile.ZIP_DEFLATED if name in BOOTSTRAP else zipfile.ZIP_LZMA
            out.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def build(arch: str, dist: Path, cache: Path) -> Path:
    """Write one architecture's zipapp into ``dist`` (mode 0755) and return its path."""
    data = archive(payload(arch, cache))
    if len(data) > BUDGET:
        sys.exit(f"{arch}: {len(data)} bytes is over the {BUDGET}-byte budget")
    target = dist / f"edgek-{version()}-linux-{arch}.pyz"
    dist.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".tmp")
    scratch.write_bytes(data)
    scratch.chmod(0o755)
    scratch.replace(target)
    return target


def main() -> None:
    """Build the requested architectures (default: both) and print each file's size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", choices=sorted(PLATFORMS))
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "wheels")
    args = parser.parse_args()
    for arch in args.arch or sorted(PLATFORMS):
        path = build(arch, args.dist, args.cache)
        print(f"{path} {path.stat().st_size / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
