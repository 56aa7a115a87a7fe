"""Airgap images: every tarball (docker-archive or OCI archive, optionally compressed) in
``<data-dir>/agent/images/`` is loaded into the agent's Podman at start, and
``edgek images import FILE...`` loads files by hand.

Start-up import is idempotent: a tarball whose size and mtime are those recorded at its
last import is skipped while the images it gave are still in the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.podman.client import PodmanClient, PodmanError

log = logging.getLogger("edgek.agent.images")

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz")
_STATE = ".imported.json"


class ImageStore(Protocol):
    """The image calls of :class:`PodmanClient` that importing uses."""

    async def image_load(self, path: Path) -> list[str]: ...

    async def image_exists(self, name: str) -> bool: ...


@dataclass
class ImportResult:
    """What happened to one tarball."""

    path: Path
    names: list[str]
    skipped: bool = False
    error: str = ""


def images_dir(agent_dir: Path) -> Path:
    """The airgap images directory of an agent."""
    return agent_dir / "images"


def tarballs(directory: Path) -> list[Path]:
    """The image tarballs in ``directory``, sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


async def load_files(client: ImageStore, files: Iterable[Path]) -> list[ImportResult]:
    """Load each file; a file that fails is reported, the others still load."""
    results = []
    for path in files:
        try:
            names = await client.image_load(path)
        except (PodmanError, OSError) as e:
            log.error("importing %s failed: %s", path, e)
            results.append(ImportResult(path, [], error=str(e)))
            continue
        log.info("imported %s: %s", path, ", ".join(names))
        results.append(ImportResult(path, names))
    return results


async def _still_there(client: ImageStore, names: list[str]) -> bool:
    for name in names:
        if not await client.image_exists(name):
            return False
    return bool(names)


async def import_directory(client: ImageStore, directory: Path) -> list[ImportResult]:
    """Load the tarballs of ``directory`` not loaded since they last changed; the record of
    what was loaded is ``<directory>/.imported.json``."""
    state_file = directory / _STATE
    state = await asyncio.to_thread(_read_state, state_file)
    results, todo = [], []
    found = await asyncio.to_thread(tarballs, directory)
    for path in found:
        seen = state.get(path.name)
        if seen and seen["stamp"] == _stamp(path) and await _still_there(client, seen["names"]):
            results.append(ImportResult(path, seen["names"], skipped=True))
        else:
            todo.append(path)
    for result in await load_files(client, todo):
        results.append(result)
        if not result.error:
            state[result.path.name] = {"stamp": _stamp(result.path), "names": result.names}
    present = {p.name for p in found}
    state = {name: entry for name, entry in state.items() if name in present}
    if todo:
        await asyncio.to_thread(_write_state, state_file, state)
    return results


def _read_state(state_file: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}
    return state


def _write_state(state_file: Path, state: dict[str, Any]) -> None:
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, state_file)


async def import_files(
    files: list[Path], agent_dir: Path, podman_socket: Path | None = None
) -> list[ImportResult]:
    """``edgek images import``: load ``files`` into the given Podman service, else into the
    agent's running service, else into the agent's storage through a service started for
    the purpose (and stopped after)."""
    from agent.podman.service import PodmanService

    if podman_socket is not None:
        async with PodmanClient(podman_socket) as client:
            return await load_files(client, files)
    service = PodmanService(agent_dir)
    async with PodmanClient(service.socket) as client:
        if await client.ping():
            return await load_files(client, files)
        await service.start()
        try:
            return await load_files(client, files)
        finally:
            await service.stop()
