"""The Priority admission plugin: pods get ``spec.priority`` (and ``preemptionPolicy``)
from their PriorityClass, or from the global default class; only one PriorityClass may be
the global default.

Use :func:`priority_admission` with a PriorityClass cache to get the ObjectStore admission
hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgek import status
from edgek.kinds import Kind
from server.cache import ObjectCache

AdmissionHook = Callable[[Kind, dict[str, Any], dict[str, Any] | None], None]

#: Classes that exist without being stored (upstream creates them at start-up).
SYSTEM_CLASSES = {
    "system-node-critical": 2000001000,
    "system-cluster-critical": 2000000000,
}


def _default_class(classes: ObjectCache) -> dict[str, Any] | None:
    """The global default PriorityClass (the lowest value if several claim it)."""
    defaults = [pc for pc in classes.items() if pc.get("globalDefault")]
    return min(defaults, key=lambda pc: int(pc.get("value") or 0), default=None)


def _admit_pod(classes: ObjectCache, pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName") or ""
    policy = "PreemptLowerPriority"
    if name in SYSTEM_CLASSES:
        value = SYSTEM_CLASSES[name]
    elif name:
        pc = classes.get("", name)
        if pc is None:
            pod_name = pod["metadata"].get("name", "")
            raise status.forbidden(
                f'pods "{pod_name}" is forbidden: no PriorityClass with name {name} was found'
            )
        value = int(pc.get("value") or 0)
        policy = pc.get("preemptionPolicy") or policy
    else:
        default = _default_class(classes)
        if default is None:
            value = 0
        else:
            value = int(default.get("value") or 0)
            spec["priorityClassName"] = default["metadata"]["name"]
            policy = default.get("preemptionPolicy") or policy
    given = spec.get("priority")
    # without a class name the defaults have already put in priority 0
    if given is not None and given != value and (name or given != 0):
        pod_name = pod["metadata"].get("name", "")
        raise status.forbidden(
            f'pods "{pod_name}" is forbidden: the integer value of priority ({given}) must not '
            "be provided in pod spec; priority admission controller computed "
            f"{value} from the given PriorityClass name"
        )
    spec["priority"] = value
    spec["preemptionPolicy"] = policy


def _admit_class(classes: ObjectCache, pc: dict[str, Any]) -> None:
    if not pc.get("globalDefault"):
        return
    name = pc["metadata"].get("name", "")
    for other in classes.items():
        other_name = other["metadata"]["name"]
        if other.get("globalDefault") and other_name != name:
            raise status.forbidden(
                f'priorityclasses.scheduling.k8s.io "{name}" is forbidden: PriorityClass '
                f"{other_name} is already marked as default. Only one default can exist"
            )


def priority_admission(classes: ObjectCache) -> AdmissionHook:
    """The admission hook (``ObjectStore.admission``) over a PriorityClass cache: resolves
    a created pod's priority; keeps a second global default class out."""

    def admit_priority(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if (kind.group, kind.resource) == ("", "pods") and old is None:
            _admit_pod(classes, obj)
        elif (kind.group, kind.resource) == ("scheduling.k8s.io", "priorityclasses"):
            _admit_class(classes, obj)

    return admit_priority
