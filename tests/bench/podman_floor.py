"""The agent's Podman for benchmarks, and the pod-start floor (issue 11, Performance).

:func:`bench_podman` starts the agent's own Podman service on a scratch data dir inside a
network namespace with no link out, with the offline busybox image loaded.
:func:`pod_start_floor` is what a pod start cannot beat: per pod, ``podman pod create`` and
``podman run -d`` of the same image, through the podman command on the same storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agent.podman.client import PodmanClient, PodmanError
from agent.podman.service import PodmanService
from tests.agent.busybox_image import IMAGE, write_busybox_archive
from tests.agent.netns import isolated_netns


@asynccontextmanager
async def bench_podman() -> AsyncIterator[PodmanService]:
    """The agent's Podman service on a scratch data dir, busybox loaded; every pod and the
    data dir are removed at the end."""
    with isolated_netns() as prefix, tempfile.TemporaryDirectory(prefix="ekb") as tmp:
        service = PodmanService(Path(tmp) / "agent", command_prefix=prefix)
        await service.start()
        try:
            tarball = Path(tmp) / "busybox.tar"
            await asyncio.to_thread(write_busybox_archive, tarball)
            async with PodmanClient(service.socket) as client:
                await client.image_load(tarball)
            yield service
        finally:
            async with PodmanClient(service.socket) as client:
                for pod in await client.pod_list():
                    with contextlib.suppress(PodmanError):  # nothing left running
                        await client.pod_kill(pod["Id"])
                    await client.pod_remove(pod["Id"], force=True)
            await service.stop()
            # the storage's overlay mount outlives the service
            storage = service.layout.dir("storage")
            umount = ["umount", "-l", str(storage / "overlay")]
            await asyncio.to_thread(subprocess.run, umount, check=False)


async def _podman(service: PodmanService, *args: str) -> None:
    # not a pipe: conmon, forked by ``podman run -d``, would hold it open
    err = await asyncio.to_thread(tempfile.TemporaryFile)
    try:
        proc = await asyncio.create_subprocess_exec(
            *service.podman_command(*args),
            env=service.environment(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
        if await proc.wait():
            await asyncio.to_thread(err.seek, 0)
            message = (await asyncio.to_thread(err.read)).decode().strip()
            raise RuntimeError(f"podman {' '.join(args)}: {message}")
    finally:
        await asyncio.to_thread(err.close)


async def pod_start_floor(
    service: PodmanService, pods: int = 30, image: str = IMAGE, network: str = "none"
) -> list[float]:
    """Seconds per pod for ``podman pod create`` + ``podman run -d`` of ``image`` (a
    sleeping busybox), ``pods`` times one after the other; the pods are removed after."""
    times = []
    for i in range(pods):
        name = f"floor-{i}"
        started = time.perf_counter()
        await _podman(service, "pod", "create", "--name", name, "--network", network)
        await _podman(service, "run", "-d", "--pod", name, image, "sleep", "3600")
        times.append(time.perf_counter() - started)
    async with PodmanClient(service.socket) as client:
        for i in range(pods):
            await client.pod_kill(f"floor-{i}")
            await client.pod_remove(f"floor-{i}", force=True)
    return times


async def _main(pods: int) -> None:
    from tests.bench.procstats import pct

    async with bench_podman() as service:
        times = await pod_start_floor(service, pods)
    print(f"pod-start floor over {pods} pods: p50 {pct(times, 0.5):.3f} s, max {max(times):.3f} s")


if __name__ == "__main__":
    import sys

    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
