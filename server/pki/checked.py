"""Results of cryptographic checks on key and certificate files, kept across restarts.

Checking that a certificate matches its key, was signed by its CA and names the right hosts
needs ``cryptography``, whose Rust extension costs about 8 MB of resident memory for the
life of the process. Once such a check has passed, its result (the "facts" a later start
still needs, such as expiry dates) is recorded in ``checked.json`` next to the files,
together with the sha256 of every file it read. A later start whose files hash the same can
rely on the recorded facts instead of repeating the check; any change to a file (renewal,
rotation, corruption, replacement, removal) changes its hash and forces the full check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgek.kubeconfig import atomic_write

RECORD_FILE = "checked.json"
#: Bumped when the meaning of recorded facts changes, so older records are ignored.
VERSION = 1


def _digests(files: Sequence[Path]) -> dict[str, str]:
    """sha256 hex of each file by name ("" for a file that cannot be read)."""
    out: dict[str, str] = {}
    for path in files:
        try:
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            out[path.name] = ""
    return out


class CheckRecord:
    """The check results recorded in one directory, by check name."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RECORD_FILE

    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            return {}
        checks = doc.get("checks")
        return checks if isinstance(checks, dict) else {}

    def get(self, name: str, files: Sequence[Path]) -> dict[str, Any] | None:
        """The facts recorded for check ``name`` if ``files`` are exactly the files it read
        and none has changed since; otherwise None (the check must run again)."""
        entry = self._load().get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("facts"), dict):
            return None
        digests = _digests(files)
        if "" in digests.values() or entry.get("files") != digests:
            return None
        return entry["facts"]

    def put(self, name: str, files: Sequence[Path], facts: dict[str, Any]) -> None:
        """Record that check ``name`` passed on ``files`` as they are now, with ``facts``."""
        checks = self._load()
        checks[name] = {"files": _digests(files), "facts": facts}
        doc = {"version": VERSION, "checks": checks}
        atomic_write(self.path, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
