"""The node's NetworkPolicy loop: list + watch of NetworkPolicies, Pods and Namespaces (the
node may read all three), and after every change (coalesced over ``settle`` seconds) the
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


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class PolicyController:
    """Keeps the kernel's policy rules for node ``node`` in step with the API."""

    def __init__(
        self,
        api: Callable[[], ApiClient | None],
        node: str,
        *,
        apply: Callable[[Ruleset], Awaitable[None]] = kernel.apply,
        settle: float = 0.2,
    ) -> None:
        self.api = api
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
            try:
                version = await self._list(resource)
                delay = 0.5
                await self._watch(resource, version)
            except ApiClientError as e:
                if e.code != 410:
                    log.info("network policy: %s: %s; retrying in %.1fs", resource, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)

    def _client(self) -> ApiClient:
        api = self.api()
        if api is None:
            raise ApiClientError("no API client yet")
        return api

    async def _list(self, resource: str) -> str:
        listed = await self._client().request("GET", RESOURCES[resource])
        self.objects[resource] = {_key(o): o for o in listed.get("items") or []}
        self.listed.add(resource)
        self.changed.set()
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, resource: str, version: str) -> None:
        store = self.objects[resource]
        async for event in self._client().watch(RESOURCES[resource], version):
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
            await self.changed.wait()
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
