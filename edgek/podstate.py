"""The pod states upstream controllers and the Eviction API reason about: phase, active,
terminating, ready and available (``k8s.io/kubernetes/pkg/api/v1/pod`` and the controller
utilities). Pure functions of a pod object, below everything that uses them."""

from __future__ import annotations

from datetime import datetime, timedelta

from edgek.objects import Obj
from edgek.timefmt import parse_time


def pod_phase(pod: Obj) -> str:
    """The pod's phase ("" while it has none)."""
    return str((pod.get("status") or {}).get("phase") or "")


def is_pod_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_pod_active(pod: Obj) -> bool:
    """Not finished and not being deleted (upstream IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_pod_terminating(pod)


def _ready_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def is_pod_ready(pod: Obj) -> bool:
    """The pod's Ready condition is True."""
    cond = _ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def pod_ready_since(pod: Obj) -> datetime | None:
    """When the pod last became Ready (None while not ready)."""
    cond = _ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return None
    when = cond.get("lastTransitionTime")
    return parse_time(when) if when else None


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least ``min_ready_seconds`` (upstream IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_since(pod)
    return since is not None and since + timedelta(seconds=min_ready_seconds) <= now
