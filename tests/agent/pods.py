"""Test pods on the agent's Podman service: one busybox container in a pod, with loopback
only or on a bridge network of the service (inside the test's network namespace), and a
busybox httpd reached from the node's side."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent.podman.client import PodmanClient, PodmanError
from tests.agent.busybox_image import IMAGE


@asynccontextmanager
async def running_pod(
    client: PodmanClient, name: str, command: list[str], network: str | None = None
) -> AsyncIterator[tuple[str, str, str]]:
    """Pod ``name`` with container ``<name>-main`` running ``command``, on ``network`` (else
    loopback only), started; yields ``(pod id, container id, pod address or "")``. Killed
    and removed at the end."""
    netns = {"nsmode": "bridge"} if network else {"nsmode": "none"}
    pod = await client.pod_create(
        {"name": name, "netns": netns, **({"Networks": {network: {}}} if network else {})}
    )
    try:
        ctr = await client.container_create(
            {"name": f"{name}-main", "pod": pod, "image": IMAGE, "command": command}
        )
        await client.pod_start(pod)
        ip = ""
        if network:
            infra_id = (await client.pod_inspect(pod))["InfraContainerID"]
            infra = await client.container_inspect(infra_id)
            ip = str(infra["NetworkSettings"]["Networks"][network]["IPAddress"])
        yield pod, ctr, ip
    finally:
        with contextlib.suppress(PodmanError):  # already stopped
            await client.pod_kill(pod)
        await client.pod_remove(pod, force=True)


@asynccontextmanager
async def httpd_pod(
    client: PodmanClient, name: str, subnet: str, gateway: str, port: int = 8080
) -> AsyncIterator[str]:
    """Network ``name`` (interface ``<name>0``) on ``subnet``, a pod ``name`` on it running
    ``httpd`` on ``port`` serving /etc; yields the pod's address. All removed at the end."""
    await client.network_create(
        {
            "name": name,
            "driver": "bridge",
            "network_interface": f"{name}0",
            "subnets": [{"subnet": subnet, "gateway": gateway}],
        }
    )
    try:
        httpd = ["httpd", "-f", "-p", str(port), "-h", "/etc"]
        async with running_pod(client, name, httpd, network=name) as (_, _, ip):
            yield ip
    finally:
        await client.network_remove(name)
