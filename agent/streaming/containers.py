"""Which Podman container a streaming request is about, found from the labels of
:mod:`agent.labels` alone (the pod workers need not be asked)."""

from __future__ import annotations

from typing import Any

from agent import labels
from agent.podman.client import PodmanClient


class NotFound(Exception):
    """No such container on this node (the message says what is missing)."""


async def attempts(
    client: PodmanClient, namespace: str, pod: str, container: str
) -> list[dict[str, Any]]:
    """The container's Podman containers (one per attempt), newest attempt first."""
    wanted = {labels.POD_NAMESPACE: namespace, labels.POD_NAME: pod}
    if container:
        wanted[labels.CONTAINER_NAME] = container
    found = await client.container_list(labels.label_filter(wanted))

    def attempt(ctr: dict[str, Any]) -> tuple[int, str]:
        value = (ctr.get("Labels") or {}).get(labels.CONTAINER_ATTEMPT, "0")
        return (int(value) if value.isdigit() else 0, str(ctr.get("Created") or ""))

    return sorted(found, key=attempt, reverse=True)


async def find(
    client: PodmanClient, namespace: str, pod: str, container: str, *, previous: bool = False
) -> str:
    """The id of the container's newest attempt (``previous``: the one before it)."""
    found = await attempts(client, namespace, pod, container)
    index = 1 if previous else 0
    if len(found) <= index:
        if previous:
            raise NotFound(f'previous terminated container "{container}" in pod "{pod}" not found')
        raise NotFound(f'container "{container}" in pod "{pod}" is not available')
    return str(found[index]["Id"])


async def running(client: PodmanClient, namespace: str, pod: str, container: str) -> str:
    """The id of the container's newest attempt, which must be running (exec, attach)."""
    ident = await find(client, namespace, pod, container)
    state = (await client.container_inspect(ident)).get("State") or {}
    if not state.get("Running"):
        raise NotFound(f'container "{container}" in pod "{pod}" is not running')
    return ident


async def pod_pid(client: PodmanClient, namespace: str, pod: str) -> int:
    """The pid of a running process of the pod (its network namespace is the pod's)."""
    for ctr in await attempts(client, namespace, pod, ""):
        state = (await client.container_inspect(str(ctr["Id"]))).get("State") or {}
        if state.get("Running") and state.get("Pid"):
            return int(state["Pid"])
    raise NotFound(f'pod "{pod}" has no running container on this node')
