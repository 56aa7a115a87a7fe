"""Fixtures for the agent's real-Podman tests: a network namespace with no link out, the
offline busybox image, and the agent's own Podman services started inside that namespace."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from agent.podman.client import PodmanClient, PodmanError
from agent.podman.service import PodmanService
from tests.agent.busybox_image import BUSYBOX, write_busybox_archive
from tests.agent.netns import isolated_netns

_missing = [tool for tool in ("podman", "runc", "nsenter", "ip") if not shutil.which(tool)]
needs_podman = pytest.mark.skipif(
    bool(_missing) or not BUSYBOX.exists() or os.geteuid() != 0,
    reason=f"real-Podman tests need root, podman, runc, nsenter, ip and busybox-static "
    f"(missing: {', '.join(_missing) or ('busybox' if not BUSYBOX.exists() else 'root')})",
)


@pytest.fixture(scope="module")
def netns() -> Iterator[list[str]]:
    """A fresh network namespace with only loopback: the nsenter prefix that enters it."""
    with isolated_netns() as prefix:
        yield prefix


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline busybox image as a docker-archive."""
    path = tmp_path_factory.mktemp("images") / "busybox.tar"
    write_busybox_archive(path)
    return path


@pytest.fixture(scope="module")
def short_dirs() -> Iterator[Callable[[], Path]]:
    """Makes data dirs with short paths (unix socket paths are limited to 108 bytes); all
    removed at the end."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="ek")))
        return made[-1]

    yield make
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for path in made:
        for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> AsyncIterator[PodmanService]:
    """The agent's own Podman service for one data dir, the busybox tarball in its airgap
    images directory (imported by the tests)."""
    agent_dir = short_dirs() / "agent"
    (agent_dir / "images").mkdir(parents=True)
    shutil.copy(busybox_tar, agent_dir / "images" / busybox_tar.name)
    svc = PodmanService(agent_dir, command_prefix=netns)
    await svc.start()
    yield svc
    async with PodmanClient(svc.socket) as client:
        for pod in await client.pod_list():
            with contextlib.suppress(PodmanError):  # nothing left running
                await client.pod_kill(pod["Id"])
            await client.pod_remove(pod["Id"], force=True)
        for ctr in await client.container_list():
            await client.container_remove(ctr["Id"], force=True)
    await svc.stop()
