"""The ``__main__`` of the edgek zipapp: extract the bundled code once, run ``edgek``.

The archive holds ``lib/`` (edgek and the pure-Python dependencies), ``native/abi3/`` and
``native/cp3XY/`` (the compiled dependencies, per Python version) and ``edgek-build.json``.
On the first start of a build with a given Python, ``lib/``, ``native/abi3/`` and that
Python's ``native/cp3XY/`` are extracted into one directory,
``<data-dir>/zipapp/<version>-<build>/cp3XY``: written under a temporary name beside it and
renamed into place, so concurrent first starts race harmlessly (one rename wins, the others
discard theirs). Later starts import from there directly (warm start: no extraction).

Standard library only: this runs before any dependency is importable.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import zipfile

DEFAULT_DATA_DIR = "/var/lib/edgek"


def data_dir(argv: list[str]) -> str:
    """The ``--data-dir`` given on the command line, else ``$EDGEK_DATA_DIR``, else the
    default."""
    for i, arg in enumerate(argv):
        if arg == "--data-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--data-dir="):
            return arg.split("=", 1)[1]
    return os.environ.get("EDGEK_DATA_DIR") or DEFAULT_DATA_DIR


def cache_root(argv: list[str]) -> str:
    """``<data-dir>/zipapp`` when it can be written (root, or a user's own data dir); else a
    private directory of this user under the temporary directory (``edgek --version`` as a
    user)."""
    root = os.path.join(data_dir(argv), "zipapp")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    root = os.path.join(tempfile.gettempdir(), f"edgek-{os.getuid()}", "zipapp")
    os.makedirs(root, mode=0o700, exist_ok=True)
    if os.stat(os.path.dirname(root)).st_uid != os.getuid():
        sys.exit(f"edgek: {os.path.dirname(root)} belongs to another user; pass --data-dir")
    return root


def extract(archive: zipfile.ZipFile, target: str, tag: str) -> None:
    """Extract the code for Python ``tag`` into ``target`` unless it is there already."""
    if os.path.isdir(target):
        return
    prefixes = ("lib/", "native/abi3/", f"native/{tag}/")
    parent = os.path.dirname(target)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".extract-", dir=parent)
    for info in archive.infolist():
        prefix = next((p for p in prefixes if info.filename.startswith(p)), None)
        if prefix is None or info.is_dir():
            continue
        dest = os.path.join(scratch, info.filename[len(prefix) :])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with archive.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    try:
        os.rename(scratch, target)
    except OSError:  # another start renamed its copy first
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    """Make the bundled code importable for this Python and run the ``edgek`` command."""
    archive_path = os.path.dirname(os.path.abspath(__file__))
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    with zipfile.ZipFile(archive_path) as archive:
        build = json.loads(archive.read("edgek-build.json"))
        if tag not in build["python"]:
            sys.exit(
                f"edgek: this file carries native code for {', '.join(build['python'])}; "
                f"this Python is {tag} ({sys.executable})"
            )
        target = os.path.join(cache_root(sys.argv[1:]), f"{build['version']}-{build['build']}", tag)
        extract(archive, target, tag)
    sys.path.insert(0, target)
    from edgek.cmd.main import main as edgek_main

    sys.argv[0] = "edgek"
    edgek_main()


main()
