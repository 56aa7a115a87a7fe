"""Image and container GC on the agent's real Podman: dead containers beyond the newest per
pod container are removed (only this node's), and under disk pressure an unused image goes
while one a stopped container still uses stays."""

from __future__ import annotations

from typing import Any

import pytest

from agent import labels
from agent.containergc import ContainerGC
from agent.imagegc import DiskUsage, ImageGC
from agent.images import images_dir, import_directory
from agent.podman.client import PodmanClient
from agent.podman.service import PodmanService
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman

pytestmark = [pytest.mark.e2e, needs_podman, pytest.mark.asyncio(loop_scope="module")]
POD: dict[str, Any] = {"metadata": {"name": "gc", "namespace": "default", "uid": "gc-uid"}}


async def _dead_container(client: PodmanClient, node: str, attempt: int, image: str) -> str:
    ctr = await client.container_create(
        {
            "name": labels.container_name(POD, f"app-{node}", attempt),
            "image": image,
            "command": ["true"],
            "netns": {"nsmode": "none"},
            "labels": labels.container_labels(POD, node, "app", attempt),
        }
    )
    await client.container_start(ctr)
    assert await client.container_wait(ctr) == 0
    return ctr


async def test_container_gc_keeps_the_newest_dead_container(service: PodmanService) -> None:
    async with PodmanClient(service.socket) as client:
        if not await client.image_exists(IMAGE):
            await import_directory(client, images_dir(service.layout.agent_dir))
        mine = [await _dead_container(client, "n1", attempt, IMAGE) for attempt in range(3)]
        other = await _dead_container(client, "n2", 0, IMAGE)
        assert sorted(await ContainerGC(client, "n1", lambda: {"gc-uid"}).collect()) == sorted(
            mine[:2]
        )
        left = {c["Id"] for c in await client.container_list()}
        assert {mine[2], other} <= left and not set(mine[:2]) & left
        # the pod is gone: its last dead container goes too
        assert await ContainerGC(client, "n1", set).collect() == [mine[2]]
        await client.container_remove(other)


async def test_image_gc_removes_unused_images_under_pressure(service: PodmanService) -> None:
    async with PodmanClient(service.socket) as client:
        if not await client.image_exists(IMAGE):
            await import_directory(client, images_dir(service.layout.agent_dir))
        used_id = str((await client.image_inspect(IMAGE))["Id"])
        # a second, unused image: the same content tagged under another name is the same
        # image, so build one that differs (a committed container)
        ctr = await _dead_container(client, "n1", 9, IMAGE)
        spare = await client.call(
            "POST", "/commit", {"container": ctr, "repo": "edgek.test/spare", "tag": "1"}
        )
        spare_id = str(spare["Id"])
        clock = [1000.0]
        gc = ImageGC(
            client,
            service.layout.dir("storage"),
            clock=lambda: clock[0],
            usage=lambda _: DiskUsage(100 << 30, 10 << 30),  # 90 % used
        )
        await gc.detect()
        assert (await gc.collect()).removed == []  # everything was first seen < 2 min ago
        clock[0] += 600
        result = await gc.collect()
        assert result.removed == [spare_id] and result.short
        assert await client.image_exists(used_id)  # the stopped container still uses it
        assert not await client.image_exists("edgek.test/spare:1")
        await client.container_remove(ctr)
