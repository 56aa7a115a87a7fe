"""The pod manager: the pods bound to this node, one :class:`PodWorker` per pod uid.

Pods come from a list + watch of ``spec.nodeName=<node>`` (re-listed when the watch
expires or the server was away) and, before the server answers, from the local record
(:mod:`agent.pods.state`), so pods keep running while the server is unreachable, also
across an agent restart. Workers are woken by the watch, by Podman's container events and
by their own resync timers. A list is the truth: a recorded pod the server no longer has
was deleted meanwhile and is shut down; Podman pods of this node no worker owns are
removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from agent import labels
from agent.podconfig.volumes import references
from agent.podman.client import PodmanError
from agent.pods.state import PodStore
from agent.pods.worker import PodWorker, WorkerContext
from edgek.apiclient import ApiClientError
from edgek.tasks import cancel_and_wait

log = logging.getLogger("edgek.agent.pods")

#: The annotation of a mirror pod (a static pod's copy in the API).
MIRROR = "kubernetes.io/config.mirror"

RETRY_MAX = 10.0
VOLUME_REFRESH_SECONDS = 60.0


class PodManager:
    """This node's pods (see the module docstring)."""

    def __init__(self, ctx: WorkerContext, store: PodStore) -> None:
        self.ctx = ctx
        self.store = store
        self.workers: dict[str, PodWorker] = {}
        #: uids of the static pods (run from files, not from the API).
        self.static: set[str] = set()
        #: Called when a mirror pod changed in the API (the static pods check theirs).
        self.mirror_changed: Callable[[], None] = lambda: None
        self._tasks: list[asyncio.Task[None]] = []
        self.listed = asyncio.Event()

    async def start(self) -> None:
        """Resume the recorded pods, then follow the API and Podman."""
        for pod in await self.store.load():
            self._upsert(pod, save=False)
        self._tasks = [
            asyncio.create_task(self._follow_api(), name="pods-watch"),
            asyncio.create_task(self._follow_podman(), name="pods-podman-events"),
            asyncio.create_task(self._follow_objects(), name="pods-objects"),
            asyncio.create_task(self._refresh_volumes(), name="pods-volumes"),
        ]

    async def stop(self) -> None:
        """Stop following and stop the workers; containers keep running."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        workers = [w.task for w in self.workers.values() if w.task is not None]
        await cancel_and_wait(*workers)
        self.workers = {}
        await self.ctx.backoff.flush()

    # -- workers --------------------------------------------------------------------------

    def add_static(self, pod: dict[str, Any]) -> None:
        """Run a static pod (see :mod:`agent.pods.static`)."""
        self.static.add(pod["metadata"]["uid"])
        self._upsert(pod, save=False)

    def remove_static(self, uid: str) -> None:
        """Stop a static pod whose manifest is gone."""
        self.static.discard(uid)
        self._removed(uid)

    def mirror_seen(self, uid: str, mirror_uid: str) -> None:
        """The mirror pod of static pod ``uid`` is ``mirror_uid``: its status goes there."""
        worker = self.workers.get(uid)
        if worker is not None and worker.mirror_uid != mirror_uid:
            worker.report_to(mirror_uid)

    def _upsert(self, pod: dict[str, Any], save: bool = True) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
        else:
            worker = PodWorker(self.ctx, pod)
            worker.static = uid in self.static
            self.workers[uid] = worker
            worker.task = asyncio.create_task(self._run(worker), name=f"pod-{uid}")
        if save:
            task = asyncio.create_task(self.store.save(pod))
            task.add_done_callback(_log_failure)

    async def _run(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            if worker.finished:
                self.workers.pop(worker.uid, None)
                await self.store.remove(worker.uid)

    def _removed(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.removed()

    # -- the API --------------------------------------------------------------------------

    async def _follow_api(self) -> None:
        delay = 0.5
        while True:
            try:
                version = await self._list()
                delay = 0.5
                await self._watch(version)
            except ApiClientError as e:
                if e.code != 410:
                    log.info("pods of node %s: %s; retrying in %.1fs", self.ctx.node, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)

    def _params(self) -> dict[str, str]:
        return {"fieldSelector": f"spec.nodeName={self.ctx.node}"}

    async def _list(self) -> str:
        api = self.ctx.api()
        if api is None:
            raise ApiClientError("no API client yet")
        listed = await api.request("GET", "/api/v1/pods", params=self._params())
        pods = [p for p in listed.get("items") or [] if not _mirror(p)]
        seen = {p["metadata"]["uid"] for p in pods} | self.static
        for uid in [u for u in self.workers if u not in seen]:
            log.info("pod %s was deleted while the agent did not watch", uid)
            self._removed(uid)
        for pod in pods:
            self._upsert(pod)
        await self._remove_orphans(seen)
        self.listed.set()
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str) -> None:
        api = self.ctx.api()
        assert api is not None
        async for event in api.watch("/api/v1/pods", version, params=self._params()):
            pod = event.get("object") or {}
            if _mirror(pod):
                self.mirror_changed()
                continue
            if event.get("type") == "DELETED":
                self._removed(pod["metadata"]["uid"])
            elif event.get("type") in ("ADDED", "MODIFIED"):
                self._upsert(pod)

    async def _remove_orphans(self, known: set[str]) -> None:
        """Remove Podman pods of this node that belong to no pod the agent knows."""
        podman = self.ctx.podman
        for item in await podman.pod_list(labels.label_filter({labels.MANAGED_BY: self.ctx.node})):
            uid = (item.get("Labels") or {}).get(labels.POD_UID, "")
            if uid in known or uid in self.workers:
                continue
            log.info("removing Podman pod %s: no such pod on this node", item.get("Name"))
            with contextlib.suppress(PodmanError):
                await podman.pod_remove(item["Id"], force=True)

    # -- volume contents ------------------------------------------------------------------

    async def _follow_objects(self) -> None:
        """Rewrite the volumes of the pods that use a ConfigMap or Secret that changed."""
        async for key in self.ctx.objects.changed():
            for worker in list(self.workers.values()):
                if references(worker.pod, *key):
                    await _refresh(worker)

    async def _refresh_volumes(self) -> None:
        """Refresh every pod's volumes once a minute (token renewal, missed changes)."""
        while True:
            await asyncio.sleep(VOLUME_REFRESH_SECONDS)
            for worker in list(self.workers.values()):
                await _refresh(worker)

    # -- Podman ---------------------------------------------------------------------------

    async def _follow_podman(self) -> None:
        """Wake the worker of a pod whose container changed state."""
        filters = {"type": ["container"], "label": [f"{labels.MANAGED_BY}={self.ctx.node}"]}
        while True:
            try:
                async for event in self.ctx.podman.events(filters):
                    attrs = (event.get("Actor") or {}).get("Attributes") or {}
                    worker = self.workers.get(attrs.get(labels.POD_UID, ""))
                    if worker is not None:
                        worker.wake()
            except (PodmanError, OSError, ValueError, aiohttp.ClientError) as e:
                log.debug("podman events broke (%s); following again", e)
            await asyncio.sleep(1)


async def _refresh(worker: PodWorker) -> None:
    if worker.volumes_ready and not worker.finished:
        await worker.ctx.volumes.refresh(worker.pod)


def _mirror(pod: dict[str, Any]) -> bool:
    """Whether ``pod`` is the mirror of a static pod (the static pod runs, not it)."""
    return MIRROR in ((pod.get("metadata") or {}).get("annotations") or {})


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("recording a pod failed: %s", task.exception())
