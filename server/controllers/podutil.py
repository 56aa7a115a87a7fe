"""Pod helpers shared by the workload controllers: pods from templates, owner
references, and the pod states upstream controllers reason about (active, ready,
available)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from edgek.timefmt import parse_time

Obj = dict[str, Any]


def owner_reference(owner: Obj, api_version: str, kind: str, *, controller: bool = True) -> Obj:
    """An ownerReference to ``owner`` (controller, blocking foreground deletion)."""
    md = owner["metadata"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": md["name"],
        "uid": md["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference marked ``controller``, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def pod_from_template(
    template: Obj,
    owner: Obj,
    api_version: str,
    kind: str,
    *,
    name: str = "",
    generate_name: str = "",
) -> Obj:
    """A new pod from a pod template, controlled by ``owner`` (in its namespace)."""
    tmd = template.get("metadata") or {}
    md: Obj = {"namespace": owner["metadata"].get("namespace", "")}
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    for field in ("labels", "annotations", "finalizers"):
        if tmd.get(field):
            md[field] = copy.deepcopy(tmd[field])
    md["ownerReferences"] = [owner_reference(owner, api_version, kind)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


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
