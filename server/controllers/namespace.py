"""Namespace lifecycle (upstream's "namespace" controller): a deleted namespace is emptied,
then released.

Level-triggered: a namespace marked deleted is enqueued; :meth:`NamespaceController.reconcile`
reads it, deletes every namespaced object in it, and clears the ``kubernetes`` spec
finalizer once it is empty. While objects remain (finalizers, graceful deletion) the
namespace is checked again after a growing delay.
"""

from __future__ import annotations

from edgek.objects import Obj
from edgek.status import ApiError
from server.controllers.runtime import Controller, ControllerContext
from server.storage.objectstore import DeleteOptions, ListOptions, WriteOptions

FINALIZER = "kubernetes"
#: Re-check delays of a namespace whose contents are still going: 0.2 s doubling to 10 s.
FIRST_WAIT = 0.2
LONGEST_WAIT = 10.0


def _terminating(obj: Obj | None) -> bool:
    return obj is not None and bool(obj["metadata"].get("deletionTimestamp"))


class NamespaceController(Controller):
    """Empties terminating namespaces."""

    name = "namespace"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.namespaces_kind = ctx.kind("", "namespaces")
        self.namespaces = ctx.cache("", "namespaces")
        self.namespaces.on_event(self._namespace_event)
        self._waits: dict[str, float] = {}  # namespace -> next re-check delay

    def _namespace_event(self, old: Obj | None, new: Obj | None) -> None:
        if _terminating(new):
            assert new is not None
            self.queue.enqueue(new["metadata"]["name"])

    def start(self) -> None:
        """Pick up namespaces left terminating (by an earlier run or another leader)."""
        for ns in self.namespaces.items():
            if _terminating(ns):
                self.queue.enqueue(ns["metadata"]["name"])
        super().start()

    async def reconcile(self, key: str) -> None:
        if await self._finalize(key):
            self._waits.pop(key, None)
            return
        wait = self._waits.get(key, FIRST_WAIT)
        self._waits[key] = min(wait * 2, LONGEST_WAIT)
        self.queue.enqueue_after(key, wait)

    async def _finalize(self, name: str) -> bool:
        """Delete the namespace's contents; release it when empty. True when finished."""
        ns = await self.ctx.objects.try_get(self.namespaces_kind, "", name)
        if not _terminating(ns):
            return True
        if await self._delete_contents(name):
            return False
        await self._release(name)
        return True

    async def _delete_contents(self, name: str) -> int:
        """Delete every object in the namespace; how many were still there."""
        objects = self.ctx.objects
        remaining = 0
        for kind in self.ctx.registry.all():
            if not kind.namespaced:
                continue
            listed = await objects.list(kind, name, ListOptions())
            for obj in listed.items:
                remaining += 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await objects.delete(
                        kind, name, obj["metadata"]["name"], DeleteOptions(grace_period_seconds=0)
                    )
                except ApiError as e:
                    if e.code != 404:
                        raise
        return remaining

    async def _release(self, name: str) -> None:
        """Drop this controller's finalizer from the emptied namespace."""

        async def release(current: Obj | None) -> Obj | None:
            if current is None:
                return None
            spec = current.setdefault("spec", {})
            spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
            return current

        try:
            await self.ctx.objects.modify(
                self.namespaces_kind, "", name, release, WriteOptions(subresource="finalize")
            )
        except ApiError as e:
            if e.code != 404:
                raise
