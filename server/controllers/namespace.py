"""Namespace lifecycle: a deleted namespace is emptied, then released.

Level-triggered: :meth:`NamespaceFinalizer.reconcile` reads the namespace, deletes every
namespaced object in it, and clears the ``kubernetes`` spec finalizer once it is empty.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edgek.kinds import Kind, Registry
from edgek.status import ApiError
from server.registry.store import DeleteOptions, ListOptions, ObjectStore, WriteOptions

log = logging.getLogger("edgek.controllers.namespace")

FINALIZER = "kubernetes"


class NamespaceFinalizer:
    """Empties terminating namespaces."""

    def __init__(self, objects: ObjectStore, registry: Registry) -> None:
        self.objects = objects
        self.registry = registry
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def namespaces(self) -> Kind:
        kind = self.registry.by_resource("", "v1", "namespaces")
        assert kind is not None
        return kind

    async def on_write(self, kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        """After-write hook: start finalizing a namespace that was just marked deleted."""
        if kind.resource != "namespaces" or kind.group or deleted:
            return
        if obj["metadata"].get("deletionTimestamp"):
            self.enqueue(obj["metadata"]["name"])

    def enqueue(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tasks[name] = asyncio.create_task(self._run(name))

    async def resume(self) -> None:
        """Pick up namespaces left terminating by a previous run."""
        listed = await self.objects.list(self.namespaces, "", ListOptions())
        for ns in listed.items:
            if ns["metadata"].get("deletionTimestamp"):
                self.enqueue(ns["metadata"]["name"])

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, name: str) -> None:
        delay = 0.2
        while True:
            try:
                if await self.reconcile(name):
                    return
            except ApiError as e:
                log.warning("namespace %s finalize: %s", name, e.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def reconcile(self, name: str) -> bool:
        """Delete the namespace's contents; release it when empty. True when finished."""
        ns = await self.objects.try_get(self.namespaces, "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return True
        remaining = 0
        for kind in self.registry.all():
            if not kind.namespaced:
                continue
            listed = await self.objects.list(kind, name, ListOptions())
            for obj in listed.items:
                remaining += 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.objects.delete(
                        kind, name, obj["metadata"]["name"], DeleteOptions(grace_period_seconds=0)
                    )
                except ApiError as e:
                    if e.code != 404:
                        raise
        if remaining:
            return False

        async def release(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                return None
            spec = current.setdefault("spec", {})
            spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
            return current

        try:
            await self.objects.modify(
                self.namespaces, "", name, release, WriteOptions(subresource="finalize")
            )
        except ApiError as e:
            if e.code != 404:
                raise
        return True
