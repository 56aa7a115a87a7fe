"""The node's NetworkPolicy loop: list + watch of NetworkPolicies, Pods and Namespaces (the
node may read all three; each on a client of its own from ``connect``, so that the agent's
small connection pool is not held by the watches, made anew at every re-list, at least every
``RELIST_SECONDS``, so that a renewed node certificate is picked up), and after every change (coalesced over ``settle`` seconds) the
ruleset for this node's pods is built (:func:`netpolicy.policy.build`) and applied
(:func:`netpolicy.apply.apply`) when it differs from the last one applied. A failed apply is
retried; the kernel's rules stay in place while the agent is down or offline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from edgek.apiclient import ApiClient, ApiClientError
from netpolicy import apply as kernel
from netpolicy.policy import Ruleset, build

log = logging.getLogger(__name__)

RESOURCES = {
    "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies",
    "pods": "/api/v1/pods",
    "namespaces": "/api/v1/namespaces",
}
RETRY_MAX = 30.0
RELIST_SECONDS = 600.0
#: Rules are re-applied this often even without a change (the FORWARD jump must stay first).
RESYNC_SECONDS = 30.0


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class PolicyController:
    """Keeps the kernel's policy rules for node ``node`` in step with the API."""

    def __init__(
        self,
        connect: Callable[[], ApiClient],
        node: str,
        *,
        apply: Callable[[Ruleset], Awaitable[None]] = kernel.apply,
        settle: float = 0.2,
    ) -> None:
        self.connect = connect
        self.node = node
        self.apply = apply
        self.settle = settle
        self.objects: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self.listed: set[str] = set()
        self.changed = asyncio.Event()
        self.applied: tuple[str, str] | None = None

    async def run(self) -> None:
        """Follow the three resources and apply rulesets until cancelled."""
        async with asyncio.TaskGroup() as group:
            for resource in RESOURCES:
                group.create_task(self._follow(resource), name=f"netpol-{resource}")
            group.create_task(self._sync_loop(), name="netpol-sync")

    async def _follow(self, resource: str) -> None:
        delay = 0.5
        while True:
            client = self.connect()
            client.open()
            try:
                version = await self._list(client, resource)
                delay = 0.5
                async with asyncio.timeout(RELIST_SECONDS):
                    await self._watch(client, resource, version)
            except TimeoutError:
                pass  # time to re-list with a fresh client
            except ApiClientError as e:
                if e.code != 410:
                    log.info("network policy: %s: %s; retrying in %.1fs", resource, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
            finally:
                await client.close()

    async def _list(self, client: ApiClient, resource: str) -> str:
        listed = await client.request("GET", RESOURCES[resource])
        self.objects[resource] = {_key(o): o for o in listed.get("items") or []}
        self.listed.add(resource)
        self.changed.set()
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, client: ApiClient, resource: str, version: str) -> None:
        store = self.objects[resource]
        async for event in client.watch(RESOURCES[resource], version):
            obj = event.get("object") or {}
            if event.get("type") == "DELETED":
                store.pop(_key(obj), None)
            elif event.get("type") in ("ADDED", "MODIFIED"):
                store[_key(obj)] = obj
            self.changed.set()

    def ruleset(self) -> Ruleset:
        """The ruleset the objects seen so far call for."""
        pods = list(self.objects["pods"].values())
        local = {_key(p) for p in pods if (p.get("spec") or {}).get("nodeName") == self.node}
        return build(
            self.objects["networkpolicies"].values(),
            pods,
            self.objects["namespaces"].values(),
            local,
        )

    async def _sync_loop(self) -> None:
        delay = 1.0
        while True:
            try:
                async with asyncio.timeout(RESYNC_SECONDS):
                    await self.changed.wait()
            except TimeoutError:
                self.applied = None
            await asyncio.sleep(self.settle)
            self.changed.clear()
            if len(self.listed) < len(RESOURCES):
                continue  # never apply a partial view (it could open or close too much)
            ruleset = self.ruleset()
            texts = (ruleset.ipset_restore(), ruleset.iptables_restore())
            if texts == self.applied:
                continue
            try:
                await self.apply(ruleset)
            except (kernel.ApplyError, OSError) as e:
                log.warning("network policy: applying the rules failed: %s", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                self.changed.set()
                continue
            delay = 1.0
            self.applied = texts
