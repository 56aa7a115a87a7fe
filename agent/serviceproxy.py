"""The agent's service proxy: follows Services and EndpointSlices and keeps the node's
iptables rules (:mod:`netpolicy.proxy`) in step through a :class:`~netpolicy.proxysync.ProxySyncer`.

Each collection is listed then watched on a client of its own (``connect``; the agent's own
client has a small connection pool), listed again after an expired resourceVersion, an error
or ten minutes. Nothing is written before both have been listed once, so a starting agent never
replaces the rules left by its previous run with a partial set (the rules stay while the
agent is down, and the first sync writes the identical ruleset over them).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from typing import Any

from edgek.apiclient import ApiClient, ApiClientError
from netpolicy.iptables import Applier
from netpolicy.proxy import NodeFacts
from netpolicy.proxysync import Objects, ProxySyncer

log = logging.getLogger(__name__)

COLLECTIONS = {
    "services": "/api/v1/services",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
}
RETRY_MAX = 30.0
#: Each collection is listed again (on a new client) at least this often.
RELIST_SECONDS = 600.0


class ServiceProxy:
    """Follows the two collections with the node's client and syncs the rules."""

    def __init__(self, connect: Callable[[], ApiClient], node: NodeFacts) -> None:
        self.connect = connect
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            kind: {} for kind in COLLECTIONS
        }
        self._listed: set[str] = set()
        self.syncer = ProxySyncer(Applier(), self._current, node)

    @staticmethod
    def available() -> bool:
        """True when the iptables tools are installed."""
        return all(shutil.which(t) for t in ("iptables-save", "iptables-restore"))

    def _current(self) -> Objects:
        return list(self.objects["services"].values()), list(
            self.objects["endpointslices"].values()
        )

    async def run(self) -> None:
        """Follow both collections and sync, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for kind in COLLECTIONS:
                group.create_task(self._follow(kind))
            group.create_task(self.syncer.run())

    async def _follow(self, kind: str) -> None:
        delay = 0.5
        while True:
            client = self.connect()  # a client of its own: the agent's pool stays free
            client.open()
            try:
                version = await self._list(client, kind)
                delay = 0.5
                async with asyncio.timeout(RELIST_SECONDS):
                    await self._watch(client, kind, version)
            except TimeoutError:
                pass  # time to re-list with a fresh client (a renewed certificate)
            except ApiClientError as e:
                if e.code != 410:
                    log.info("service proxy: %s: %s; retrying in %.1fs", kind, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
            finally:
                await client.close()

    async def _list(self, client: ApiClient, kind: str) -> str:
        listed = await client.request("GET", COLLECTIONS[kind])
        self.objects[kind] = {_key(o): o for o in listed.get("items") or []}
        self._listed.add(kind)
        self._changed()
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, client: ApiClient, kind: str, version: str) -> None:
        async for event in client.watch(COLLECTIONS[kind], version):
            obj = event["object"]
            if event["type"] == "DELETED":
                self.objects[kind].pop(_key(obj), None)
            else:
                self.objects[kind][_key(obj)] = obj
            self._changed()

    def _changed(self) -> None:
        if self._listed == set(COLLECTIONS):
            self.syncer.changed()


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
