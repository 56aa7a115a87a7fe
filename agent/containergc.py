"""Container garbage collection with the kubelet's defaults: of the dead (not running)
containers of each pod's container, only the newest ``max_per_container`` (1) is kept, so
``kubectl logs --previous`` keeps working; every dead container of a pod the node no longer
runs is removed. Only containers this agent made (its node label, a container name label) are
considered; the newest attempt of a container is never removed while its pod is active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agent import labels
from agent.podman.client import PodmanError

log = logging.getLogger("edgek.agent.containergc")

MAX_PER_POD_CONTAINER = 1
_ALIVE = {"running", "paused", "stopping"}


class ContainerStore(Protocol):
    """The calls of :class:`agent.podman.client.PodmanClient` container GC makes."""

    async def container_list(
        self, filters: Mapping[str, list[str]] | None = None
    ) -> list[dict]: ...

    async def container_remove(self, name: str, force: bool = False) -> None: ...


def _attempt(container: dict[str, Any]) -> int:
    try:
        return int((container.get("Labels") or {}).get(labels.CONTAINER_ATTEMPT, 0))
    except ValueError:
        return 0


def evictable(
    containers: list[dict[str, Any]], active_pods: set[str], max_per_container: int
) -> list[str]:
    """The ids to remove among a libpod container list: per (pod uid, container name), the
    dead ones beyond the newest ``max_per_container`` (beyond none for inactive pods)."""
    units: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for container in containers:
        tags = container.get("Labels") or {}
        if labels.CONTAINER_NAME not in tags or container.get("State") in _ALIVE:
            continue
        key = (tags.get(labels.POD_UID, ""), tags[labels.CONTAINER_NAME])
        units.setdefault(key, []).append(container)
    doomed = []
    for (uid, _), dead in units.items():
        keep = max_per_container if uid in active_pods else 0
        dead.sort(key=_attempt, reverse=True)
        doomed += [str(c["Id"]) for c in dead[keep:]]
    return doomed


class ContainerGC:
    """Removes dead containers of one node's pods."""

    def __init__(
        self,
        client: ContainerStore,
        node: str,
        active_pods: Callable[[], set[str]],
        max_per_container: int = MAX_PER_POD_CONTAINER,
    ) -> None:
        self.client = client
        self.node = node
        self.active_pods = active_pods
        self.max_per_container = max_per_container

    async def collect(self) -> list[str]:
        """One pass; returns the ids removed."""
        containers = await self.client.container_list(
            labels.label_filter({labels.MANAGED_BY: self.node})
        )
        removed = []
        for container_id in evictable(containers, self.active_pods(), self.max_per_container):
            try:
                await self.client.container_remove(container_id)
            except PodmanError as e:  # started again meanwhile, or already gone
                log.info("container GC: keeping %s: %s", container_id, e.message)
                continue
            removed.append(container_id)
        return removed
