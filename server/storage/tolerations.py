"""DefaultTolerationSeconds admission: every new pod tolerates the node lifecycle's
``not-ready`` and ``unreachable`` NoExecute taints for a bounded time (300 s by default),
so its pods are evicted from a failed node after that long instead of at once.

Like upstream's plugin, a pod that already tolerates a taint (by key, or by an empty key
with operator Exists; with effect NoExecute or no effect) gets no extra toleration for it.
"""

from __future__ import annotations

from typing import Any

from edgek.kinds import Kind
from server.config import ServerConfig
from server.storage.objectstore import Undo

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"


class DefaultTolerationSeconds:
    """The admission hook ``(kind, obj, old) -> None`` for pod creates."""

    def __init__(self, config: ServerConfig) -> None:
        self.defaults = (
            (TAINT_NOT_READY, config.default_not_ready_toleration_seconds),
            (TAINT_UNREACHABLE, config.default_unreachable_toleration_seconds),
        )

    def __call__(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> Undo | None:
        if old is not None or (kind.group, kind.resource) != ("", "pods"):
            return None
        spec = obj.setdefault("spec", {})
        tolerations: list[dict[str, Any]] = spec.get("tolerations") or []
        added = [
            {
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }
            for key, seconds in self.defaults
            if not any(_covers(t, key) for t in tolerations)
        ]
        if added:
            spec["tolerations"] = tolerations + added
        return None


def _covers(toleration: dict[str, Any], key: str) -> bool:
    """Whether ``toleration`` already speaks for the NoExecute taint ``key``."""
    return toleration.get("key", "") in (key, "") and toleration.get("effect", "") in (
        "NoExecute",
        "",
    )
