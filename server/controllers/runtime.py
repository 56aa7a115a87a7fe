"""The runtime the control loops share: a context (store, kinds, shared caches, events,
clock, config), the ``Controller`` base class, and the manager that starts every enabled
loop once the caches are in sync and this server holds the loop group's leader Lease.

Controllers read shared caches and write through the same ``ObjectStore`` path as API
requests (defaulting, validation, admission), so what they do is what a client could do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from edgek.kinds import Kind, Registry
from edgek.objects import clone, now
from edgek.status import ApiError
from edgek.tasks import cancel_and_wait
from edgek.timefmt import format_micro_time, parse_time
from server.cache import Informers, ObjectCache, builtin_kind
from server.config import ServerConfig
from server.controllers.events import EventRecorder
from server.controllers.workqueue import WorkQueue
from server.storage.objectstore import Mutation, ObjectStore, WriteOptions

log = logging.getLogger("edgek.controllers")


def key_of(obj: dict[str, Any]) -> str:
    """The work-queue key of an object: ``namespace/name``, or ``name`` if cluster-scoped."""
    md = obj["metadata"]
    ns = md.get("namespace")
    return f"{ns}/{md['name']}" if ns else md["name"]


def split_key(key: str) -> tuple[str, str]:
    """``(namespace, name)`` of a work-queue key (namespace "" for cluster-scoped)."""
    ns, _, name = key.rpartition("/")
    return ns, name


@dataclass
class ControllerContext:
    """Everything a loop needs; one per server."""

    objects: ObjectStore
    registry: Registry
    informers: Informers
    events: EventRecorder
    config: ServerConfig
    clock: Callable[[], datetime] = now

    def kind(self, group: str, resource: str) -> Kind:
        """A built-in kind by group and resource."""
        return builtin_kind(self.registry, group, resource)

    def cache(self, group: str, resource: str) -> ObjectCache:
        """The shared cache of a built-in kind."""
        return self.informers.cache(group, resource)


class Controller:
    """Base of every loop: a work queue whose keys ``reconcile`` brings up to date."""

    name: ClassVar[str] = ""
    manager: ClassVar[str] = "kube-controller-manager"
    #: The source of this loop's events (upstream names them per controller, e.g.
    #: "deployment-controller"); the manager's name when empty.
    component: ClassVar[str] = ""
    workers: ClassVar[int] = 1

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.queue = WorkQueue(self.name, self.reconcile, workers=self.workers)

    async def reconcile(self, key: str) -> None:
        """Bring the object named by ``key`` (and what it owns) to its desired state."""
        raise NotImplementedError

    def clock_changed(self) -> None:
        """The loops' clock jumped (tests): loops with time-driven work re-check it."""

    def write_options(self, subresource: str = "") -> WriteOptions:
        """Write options naming this loop as the field manager."""
        return WriteOptions(field_manager=self.manager, subresource=subresource)

    async def write_status(self, kind: Kind, obj: dict[str, Any], mutate: Mutation) -> None:
        """Apply ``mutate`` to ``obj`` through its status subresource as this loop (an
        object that is gone meanwhile is left alone)."""
        md = obj["metadata"]
        try:
            await self.ctx.objects.modify(
                kind, md.get("namespace", ""), md["name"], mutate, self.write_options("status")
            )
        except ApiError as e:
            if e.code != 404:
                raise

    async def replace_status(self, kind: Kind, obj: dict[str, Any], status: dict[str, Any]) -> None:
        """Set ``obj``'s status to ``status``, unless it already is that or ``obj`` was
        deleted or replaced meanwhile."""
        if (obj.get("status") or {}) == status:
            return
        uid = obj["metadata"]["uid"]

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current["metadata"].get("uid") != uid:
                return None
            if current.get("status") == status:
                return None
            current["status"] = clone(status)
            return current

        await self.write_status(kind, obj, mutate)

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` from this loop."""
        self.ctx.events.record(
            obj, type_, reason, message, component=self.component or self.manager
        )

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()


class LeaderLease:
    """Leader election over a coordination Lease in ``kube-system``, so several servers
    can share one datastore: only the holder runs the loop group."""

    duration = 15.0
    renew_every = 2.0

    def __init__(self, ctx: ControllerContext, name: str, identity: str) -> None:
        self.ctx = ctx
        self.name = name
        self.identity = identity
        self.leases = ctx.kind("coordination.k8s.io", "leases")

    async def try_acquire(self) -> bool:
        """Take or renew the Lease; False while another live holder has it."""
        now = self.ctx.clock()
        won = False

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            nonlocal won
            spec = dict((current or {}).get("spec") or {})
            holder = spec.get("holderIdentity", "")
            if current is not None and holder and holder != self.identity:
                renewed = spec.get("renewTime")
                seconds = float(spec.get("leaseDurationSeconds") or self.duration)
                if renewed and parse_time(renewed) + timedelta(seconds=seconds) > now:
                    won = False
                    return None
            if holder != self.identity:
                spec["acquireTime"] = format_micro_time(now)
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                    1 if holder else 0
                )
            spec.update(
                holderIdentity=self.identity,
                leaseDurationSeconds=int(self.duration),
                renewTime=format_micro_time(now),
            )
            won = True
            body = current or {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-system"},
            }
            body["spec"] = spec
            return body

        await self.ctx.objects.modify(
            self.leases, "kube-system", self.name, mutate, WriteOptions(field_manager=self.name)
        )
        return won


class ControllerManager:
    """Builds every enabled loop, starts the shared caches, and runs the loops while this
    server leads the group."""

    def __init__(
        self,
        ctx: ControllerContext,
        classes: list[type[Controller]],
        *,
        group: str = "kube-controller-manager",
    ) -> None:
        self.ctx = ctx
        disabled = set(ctx.config.disable)
        self.controllers = [cls(ctx) for cls in classes if cls.name not in disabled]
        self.lease = LeaderLease(ctx, group, _identity(ctx.config))
        self.running = False
        self._task: asyncio.Task[None] | None = None

    def clock_changed(self) -> None:
        """Tell the running loops the clock jumped."""
        if self.running:
            for c in self.controllers:
                c.clock_changed()

    def get(self, name: str) -> Controller | None:
        """The running loop named ``name``, if enabled."""
        return next((c for c in self.controllers if c.name == name), None)

    async def start(self) -> None:
        """Fill the caches, then lead (at once on a datastore nobody else leads)."""
        await self.ctx.informers.start()
        if await self._acquire():
            self._run_loops()
        self._task = asyncio.create_task(self._lead(), name=f"leader-{self.lease.name}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self._stop_loops()

    async def _acquire(self) -> bool:
        try:
            return await self.lease.try_acquire()
        except ApiError as e:
            log.warning("leader lease %s: %s", self.lease.name, e.message)
            return False

    def _run_loops(self) -> None:
        log.info("leading %s: starting %d loops", self.lease.name, len(self.controllers))
        for c in self.controllers:
            c.start()
        self.running = True

    async def _stop_loops(self) -> None:
        if self.running:
            for c in self.controllers:
                await c.stop()
            self.running = False

    async def _lead(self) -> None:
        while True:
            await asyncio.sleep(self.lease.renew_every)
            leading = await self._acquire()
            if leading and not self.running:
                self._run_loops()
            elif not leading and self.running:
                log.warning("lost leader lease %s; stopping loops", self.lease.name)
                await self._stop_loops()


def _identity(config: ServerConfig) -> str:
    """A holder identity stable across restarts of this server (so a restart takes its own
    Lease back at once) and distinct between servers sharing a datastore."""
    digest = hashlib.sha256(str(config.data_dir.resolve()).encode()).hexdigest()[:10]
    return f"{socket.gethostname()}_{digest}"
