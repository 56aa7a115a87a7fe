"""Object builders shared by the unit and end-to-end tests."""

from __future__ import annotations

from typing import Any

from edgek.objects import Obj


def workload(
    kind: str, name: str, pod_spec: Obj, *, labels: dict[str, str] | None = None, **spec: Any
) -> Obj:
    """An apps/v1 ``kind`` named ``name`` whose pods (spec ``pod_spec``) carry and are
    selected by ``labels`` (default ``app=<name>``); ``spec`` adds fields to its spec
    (replicas, strategy, ...)."""
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            **spec,
        },
    }


def resource_pod(name: str, requests: Obj | None = None, limits: Obj | None = None) -> Obj:
    """A one-container pod with the given resource requests and limits."""
    resources: Obj = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": resources}]},
    }
