"""The agent's local record of the pods it runs: one JSON file per pod uid under
``<data-dir>/agent/state/pods/`` (mode 0600), written whenever the API shows a new version.
With the server unreachable, even across an agent restart, these are the pods the agent
keeps running."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from edgek.kubeconfig import atomic_write

log = logging.getLogger("edgek.agent.pods")


class PodStore:
    """The desired pods of this node, as last seen from the API."""

    def __init__(self, agent_dir: Path) -> None:
        self.dir = agent_dir / "state" / "pods"

    def _path(self, uid: str) -> Path:
        return self.dir / f"{uid}.json"

    async def save(self, pod: dict[str, Any]) -> None:
        """Record ``pod`` (its managedFields left out)."""
        meta = {k: v for k, v in pod["metadata"].items() if k != "managedFields"}
        body = json.dumps({**pod, "metadata": meta}, sort_keys=True).encode()
        await asyncio.to_thread(self._write, pod["metadata"]["uid"], body)

    def _write(self, uid: str, body: bytes) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self._path(uid), body, mode=0o600)

    async def remove(self, uid: str) -> None:
        """Forget the pod ``uid``."""
        await asyncio.to_thread(self._path(uid).unlink, missing_ok=True)

    async def load(self) -> list[dict[str, Any]]:
        """Every recorded pod (unreadable files are skipped with a warning)."""
        return await asyncio.to_thread(self._load)

    def _load(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        pods = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                pods.append(json.loads(path.read_text()))
            except (OSError, ValueError) as e:
                log.warning("ignoring %s: %s", path, e)
        return pods
