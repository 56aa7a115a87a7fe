"""Pod volumes from :class:`agent.podconfig.volumes.VolumeManager` seen by real containers:
a ConfigMap volume with its defaultMode, a Secret, an emptyDir shared by two containers of
a pod, and a ConfigMap update reaching the mounted file (the ``..data`` swap)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.images import images_dir, import_directory
from agent.podconfig.volumes import Mount, VolumeManager
from agent.podman.client import PodmanClient
from agent.podman.frames import STDOUT
from agent.podman.service import PodmanService
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.unit.podconfig_fakes import FakeObjects, configmap, secret

pytestmark = [pytest.mark.e2e, needs_podman, pytest.mark.asyncio(loop_scope="module")]


async def run_in(client: PodmanClient, ctr: str, script: str) -> tuple[int, str]:
    """Exit code and stdout of ``sh -c script`` in a running container."""
    exec_id = await client.exec_create(ctr, ["sh", "-c", script])
    session = await client.exec_start(exec_id)
    out = b"".join([data async for stream, data in session.output() if stream == STDOUT])
    await session.close()
    return int((await client.exec_inspect(exec_id))["ExitCode"]), out.decode()


def mount_specs(mounts: list[Mount]) -> list[dict[str, Any]]:
    """Mounts as libpod's container spec takes them."""
    return [
        {"destination": m.destination, "source": m.source, "type": m.kind, "options": m.options}
        for m in mounts
    ]


async def test_containers_see_configmap_secret_and_shared_empty_dir(
    service: PodmanService, short_dirs: Callable[[], Path]
) -> None:
    base = short_dirs()
    objects = FakeObjects(
        base / "state", [configmap("cfg", {"a.conf": "one"}), secret("creds", {"user": "admin"})]
    )
    manager = VolumeManager(base / "pods", objects, "edge")
    pod: dict[str, Any] = {
        "metadata": {"name": "vols", "namespace": "ns", "uid": "uid-vols"},
        "spec": {
            "volumes": [
                {"name": "conf", "configMap": {"name": "cfg", "defaultMode": 0o440}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "shared", "emptyDir": {}},
            ]
        },
    }
    writer = {
        "name": "writer",
        "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/conf", "readOnly": True},
            {"name": "shared", "mountPath": "/shared"},
        ],
    }
    reader = {
        "name": "reader",
        "volumeMounts": [
            {"name": "creds", "mountPath": "/creds", "readOnly": True},
            {"name": "shared", "mountPath": "/data"},
        ],
    }
    await manager.setup(pod)
    async with PodmanClient(service.socket) as client:
        if not await client.image_exists(IMAGE):
            await import_directory(client, images_dir(service.layout.agent_dir))
        pod_id = await client.pod_create({"name": "vols", "netns": {"nsmode": "none"}})
        try:
            ids = {}
            for container, script in (
                (writer, "echo from-writer > /shared/note; exec sleep 1000"),
                (reader, "exec sleep 1000"),
            ):
                ids[container["name"]] = await client.container_create(
                    {
                        "name": f"vols-{container['name']}",
                        "pod": pod_id,
                        "image": IMAGE,
                        "command": ["sh", "-c", script],
                        "mounts": mount_specs(manager.mounts(pod, container)),
                    }
                )
            await client.pod_start(pod_id)

            assert await run_in(client, ids["writer"], "cat /etc/conf/a.conf") == (0, "one")
            assert await run_in(client, ids["writer"], "stat -L -c %a /etc/conf/a.conf") == (
                0,
                "440\n",
            )
            assert await run_in(client, ids["reader"], "cat /creds/user") == (0, "admin")
            assert (await run_in(client, ids["reader"], "touch /creds/x"))[0] != 0
            for _ in range(50):
                code, note = await run_in(client, ids["reader"], "cat /data/note")
                if code == 0:
                    break
                await asyncio.sleep(0.1)
            assert note == "from-writer\n"

            objects.put(configmap("cfg", {"a.conf": "two"}))
            await manager.refresh(pod)
            assert await run_in(client, ids["writer"], "cat /etc/conf/a.conf") == (0, "two")
        finally:
            await client.pod_remove(pod_id, force=True)
            await manager.teardown("uid-vols")
    assert not (base / "pods" / "uid-vols" / "volumes").exists()
