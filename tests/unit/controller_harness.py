"""A control-loop test bench: the server's object graph (``server.wiring.assemble``: a
real SQLite datastore and ObjectStore with the API server's defaults, validation and
admission chain, shared caches, an event recorder) on a fake clock. Only the loops a test
starts run."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import datastore
from edgek.kinds import Kind
from edgek.timefmt import format_time
from server.config import ServerConfig
from server.controllers.runtime import Controller
from server.storage.objectstore import ListOptions, WriteOptions
from server.wiring import ControlPlane, assemble

T = TypeVar("T")
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Harness:
    """Real storage and caches for testing loops in-process."""

    def __init__(self, plane: ControlPlane, clock: FakeClock) -> None:
        self.plane = plane
        self.store = plane.store
        self.clock = clock
        self.registry = plane.registry
        self.objects = plane.objects
        self.informers = plane.informers
        self.events = plane.events
        self.ctx = plane.ctx
        self.controllers: list[Controller] = []

    @classmethod
    async def open(cls, tmp_path: Path, config: ServerConfig | None = None) -> Harness:
        """A bench over a new datastore in ``tmp_path``, with the system namespaces."""
        store = await datastore.Datastore.open(f"sqlite:///{tmp_path / 'state.db'}")
        clock = FakeClock()
        plane = await assemble(
            store,
            config or ServerConfig(data_dir=tmp_path),
            clock=clock,
            write_clock=clock,
            host="test",
            loop_groups=(),
        )
        h = cls(plane, clock)
        namespaces = h.kind("", "namespaces")
        for ns in ("default", "kube-system", "kube-node-lease"):
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            await h.objects.create(namespaces, "", body, WriteOptions())
        return h

    def admission_step(self, step_type: type[T]) -> T:
        """The server's admission step of type ``step_type`` in this bench's chain."""
        return next(s for s in self.objects.admission if isinstance(s, step_type))

    def kind(self, group: str, resource: str) -> Kind:
        return self.ctx.kind(group, resource)

    async def start(self, *classes: type[Controller]) -> list[Controller]:
        """Build and start loops (their caches are filled first)."""
        started = [cls(self.ctx) for cls in classes]
        await self.informers.start()
        for c in started:
            c.start()
        self.controllers.extend(started)
        return started

    async def create(
        self, group: str, resource: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.objects.create(
            self.kind(group, resource), namespace, body, WriteOptions()
        )

    async def get(
        self, group: str, resource: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        return await self.objects.try_get(self.kind(group, resource), namespace, name)

    async def list(self, group: str, resource: str, namespace: str = "") -> list[dict[str, Any]]:
        listed = await self.objects.list(self.kind(group, resource), namespace, ListOptions())
        return listed.items

    async def set_pod_status(
        self,
        namespace: str,
        name: str,
        *,
        ready: bool = True,
        phase: str = "Running",
        ip: str | None = None,
    ) -> dict[str, Any]:
        """Play kubelet: give a pod ``phase`` and a Ready condition (changed now), and the
        pod IP ``ip`` if given. Returns the updated pod."""
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": format_time(self.clock()),
                }
            ],
        }
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]

        async def mutate(pod: dict[str, Any] | None) -> dict[str, Any] | None:
            assert pod is not None
            pod["status"] = status
            return pod

        updated, _ = await self.objects.modify(
            self.kind("", "pods"), namespace, name, mutate, WriteOptions(subresource="status")
        )
        return updated

    async def wait_for(
        self,
        predicate: Callable[[], Awaitable[bool] | bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "",
    ) -> None:
        """Poll ``predicate`` until it holds; AssertionError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            await asyncio.sleep(0.02)

    async def settle(self) -> None:
        """Wait until every started loop's queue is idle (pending timers aside) and the
        caches have seen the writes."""
        for _ in range(3):
            await asyncio.sleep(0.05)
            for c in self.controllers:
                await c.queue.idle(include_timers=False)

    async def close(self) -> None:
        for c in self.controllers:
            await c.stop()
        await self.events.stop()
        await self.informers.stop()
        await self.store.close()
