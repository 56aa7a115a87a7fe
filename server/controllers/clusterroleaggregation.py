"""Upstream's clusterrole-aggregation controller: a ClusterRole with an ``aggregationRule``
gets the rules of every ClusterRole its selectors match."""

from __future__ import annotations

import contextlib
from typing import Any

from edgek.status import ApiError
from server.auth.bootstrap_policy import RBAC_GROUP
from server.auth.rbac import aggregate
from server.controllers.runtime import Controller, ControllerContext


class ClusterRoleAggregationController(Controller):
    """Upstream's clusterrole-aggregation controller: a ClusterRole with an aggregationRule
    gets the rules of every ClusterRole its selectors match. Any ClusterRole change
    enqueues every aggregated role; ``reconcile`` writes one role's rules."""

    name = "clusterrole-aggregation"
    manager = "clusterrole-aggregation-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.roles = ctx.cache(RBAC_GROUP, "clusterroles")
        self.roles.on_event(lambda old, new: self._enqueue_aggregated())

    def _enqueue_aggregated(self) -> None:
        for role in self.roles.items():
            if role.get("aggregationRule") is not None:
                self.queue.enqueue(role["metadata"]["name"])

    def start(self) -> None:
        self._enqueue_aggregated()
        super().start()

    async def reconcile(self, key: str) -> None:
        rules = aggregate(self.roles.items()).get(key)
        current = self.roles.get("", key)
        if rules is None or current is None or (current.get("rules") or []) == rules:
            return

        async def set_rules(obj: dict[str, Any] | None) -> dict[str, Any] | None:
            if obj is None:
                return None
            obj["rules"] = rules
            return obj

        with contextlib.suppress(ApiError):
            await self.ctx.objects.modify(self.roles.kind, "", key, set_rules, self.write_options())
