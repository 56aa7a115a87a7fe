"""The resource quota controller: keeps each ResourceQuota's ``status.hard`` (= ``spec.hard``)
and ``status.used`` current from the shared caches, counting as admission does
(``server/admission/quota.py``). Any change to a counted kind in a namespace wakes that
namespace's quotas; a full recount runs every ``RESYNC`` seconds, as upstream's 5-minute
resync, so time-dependent usage (pods past their deletion grace) is dropped.
"""

from __future__ import annotations

import copy
from typing import Any

from edgek.objects import Obj
from edgek.status import ApiError
from server.admission.quota import (
    Resources,
    format_qty,
    kind_of_resource_name,
    namespace_usage,
)
from server.cache import ObjectCache
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key

RESYNC = 300.0
#: Kinds watched from the start; others (``count/<resource>.<group>``) once a quota names them.
_COUNTED = (
    ("", "pods"),
    ("", "services"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "persistentvolumeclaims"),
)


class ResourceQuotaController(Controller):
    """ResourceQuota status from the objects in its namespace."""

    name = "resourcequota"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.quota_kind = ctx.kind("", "resourcequotas")
        self.quotas = ctx.cache("", "resourcequotas")
        self.quotas.on_event(lambda old, new: self.queue.enqueue(key_of(new or old or {})))
        self._watched: dict[tuple[str, str], ObjectCache] = {}
        for group, resource in _COUNTED:
            self._watch(group, resource)

    def _watch(self, group: str, resource: str) -> ObjectCache | None:
        """The cache of a counted kind, wired to wake its namespace's quotas."""
        found = self._watched.get((group, resource))
        if found is not None:
            return found
        try:
            cache = self.ctx.cache(group, resource)
        except KeyError:
            return None
        cache.on_event(self._object_event)
        self._watched[(group, resource)] = cache
        return cache

    def _object_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        for quota in self.quotas.items(obj["metadata"].get("namespace", "")):
            self.queue.enqueue(key_of(quota))

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        quota = self.quotas.get(namespace, name)
        if quota is None:
            return
        hard: dict[str, Any] = dict((quota.get("spec") or {}).get("hard") or {})
        used = await self.usage(quota, list(hard))
        status = quota.get("status") or {}
        new_used = {k: format_qty(*v) for k, v in used.items()}
        if status.get("hard") != hard or status.get("used") != new_used:
            new = copy.deepcopy(quota)
            new["status"] = {"hard": hard, "used": new_used}
            try:
                await self.ctx.objects.update(
                    self.quota_kind, namespace, name, new, self.write_options("status")
                )
            except ApiError as e:
                if e.code != 404:
                    raise
                return
        self.queue.enqueue_after(key, RESYNC)

    async def usage(self, quota: Obj, names: list[str]) -> Resources:
        """The quota's usage of ``names`` (resource names no kind counts are left out)."""
        by_kind: dict[tuple[str, str], list[str]] = {}
        for name in names:
            kind = kind_of_resource_name(name)
            if kind is not None:
                by_kind.setdefault(kind, []).append(name)
        used: Resources = {}
        now = self.ctx.clock()
        ns = quota["metadata"].get("namespace", "")
        for (group, resource), wanted in by_kind.items():
            cache = self._watch(group, resource)
            if cache is None:
                continue
            if not cache.synced.is_set():
                await cache.start()
            used.update(namespace_usage(quota, group, resource, cache.items(ns), wanted, now))
        return used
