"""LimitRange admission (upstream plugin/pkg/admission/limitranger): container resource
defaults applied to new pods, then min / max / maxLimitRequestRatio enforced per Container
and per Pod, and PersistentVolumeClaim storage min / max.

Upstream mutates before validation; here the hook runs after the store's defaulting and
validation, so a pod changed by a default is validated again before it is admitted.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from edgek import status
from edgek.kinds import Kind
from edgek.objects import Obj
from edgek.validation import validate
from server.admission.quota import forbidden, format_qty, parse_qty, pod_totals
from server.cache import ObjectCache
from server.storage.objectstore import Undo

ANNOTATION = "kubernetes.io/limit-ranger"


def _canonical(value: Any) -> str:
    try:
        return format_qty(*parse_qty(value))
    except ValueError:
        return str(value)


def _value(raw: dict[str, Any], name: str) -> Fraction | None:
    if name not in raw:
        return None
    try:
        return parse_qty(raw[name])[0]
    except ValueError:
        return None


def item_defaults(item: Obj) -> tuple[dict[str, Any], dict[str, Any]]:
    """(default limits, default requests) of a Container item, as SetDefaults_LimitRangeItem
    fills them: the limit defaults to max, the request to the limit, then to min."""
    limits = dict(item.get("default") or {})
    for name, value in (item.get("max") or {}).items():
        limits.setdefault(name, value)
    requests = dict(item.get("defaultRequest") or {})
    for name, value in limits.items():
        requests.setdefault(name, value)
    for name, value in (item.get("min") or {}).items():
        requests.setdefault(name, value)
    return limits, requests


def _merge_container(container: Obj, limits: Obj, requests: Obj, label: str) -> list[str]:
    """Fill unset limits and requests; the annotation notes for what was set."""
    resources = container.setdefault("resources", {})
    set_requests, set_limits = [], []
    have_limits = resources.setdefault("limits", {})
    for name, value in limits.items():
        if name not in have_limits:
            have_limits[name] = copy.deepcopy(value)
            set_limits.append(name)
    have_requests = resources.setdefault("requests", {})
    for name, value in requests.items():
        if name not in have_requests:
            have_requests[name] = copy.deepcopy(value)
            set_requests.append(name)
    for field in ("limits", "requests"):
        if not resources[field]:
            del resources[field]
    notes = []
    cname = container.get("name", "")
    if set_requests:
        notes.append(f"{', '.join(sorted(set_requests))} request for {label} {cname}")
    if set_limits:
        notes.append(f"{', '.join(sorted(set_limits))} limit for {label} {cname}")
    return notes


def apply_defaults(pod: Obj, ranges: Iterable[Obj]) -> bool:
    """Default the containers' resources from each range's Container items (a later item of
    one range overrides an earlier one; an earlier range wins over a later one, as values
    already set are kept). True if anything was set."""
    spec = pod.setdefault("spec", {})
    notes: list[str] = []
    for lr in ranges:
        limits: Obj = {}
        requests: Obj = {}
        for item in (lr.get("spec") or {}).get("limits") or []:
            if item.get("type") == "Container":
                item_limits, item_requests = item_defaults(item)
                limits.update(item_limits)
                requests.update(item_requests)
        if not limits and not requests:
            continue
        for c in spec.get("containers") or []:
            notes += _merge_container(c, limits, requests, "container")
        for c in spec.get("initContainers") or []:
            notes += _merge_container(c, limits, requests, "init container")
    if not notes:
        return False
    md = pod.setdefault("metadata", {})
    md.setdefault("annotations", {})[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
    return True


def _min(kind: str, name: str, enforced: Any, requests: Obj, limits: Obj) -> str | None:
    want = parse_qty(enforced)[0]
    req, lim = _value(requests, name), _value(limits, name)
    shown = _canonical(enforced)
    if req is None:
        return f"minimum {name} usage per {kind} is {shown}.  No request is specified"
    if req < want:
        return (
            f"minimum {name} usage per {kind} is {shown}, but request is "
            f"{_canonical(requests[name])}"
        )
    if lim is not None and lim < want:
        return (
            f"minimum {name} usage per {kind} is {shown}, but limit is {_canonical(limits[name])}"
        )
    return None


def _max(kind: str, name: str, enforced: Any, requests: Obj, limits: Obj) -> str | None:
    want = parse_qty(enforced)[0]
    req, lim = _value(requests, name), _value(limits, name)
    shown = _canonical(enforced)
    if lim is None:
        return f"maximum {name} usage per {kind} is {shown}.  No limit is specified"
    if lim > want:
        return (
            f"maximum {name} usage per {kind} is {shown}, but limit is {_canonical(limits[name])}"
        )
    if req is not None and req > want:
        return (
            f"maximum {name} usage per {kind} is {shown}, but request is "
            f"{_canonical(requests[name])}"
        )
    return None


def _max_request(kind: str, name: str, enforced: Any, requests: Obj) -> str | None:
    want = parse_qty(enforced)[0]
    req = _value(requests, name)
    shown = _canonical(enforced)
    if req is None:
        return f"maximum {name} usage per {kind} is {shown}.  No request is specified"
    if req > want:
        return (
            f"maximum {name} usage per {kind} is {shown}, but request is "
            f"{_canonical(requests[name])}"
        )
    return None


def _ratio(kind: str, name: str, enforced: Any, requests: Obj, limits: Obj) -> str | None:
    want = parse_qty(enforced)[0]
    req, lim = _value(requests, name), _value(limits, name)
    shown = _canonical(enforced)
    if not req:
        return (
            f"{name} max limit to request ratio per {kind} is {shown}, but no request is "
            "specified or request is 0"
        )
    if not lim:
        return (
            f"{name} max limit to request ratio per {kind} is {shown}, but no limit is "
            "specified or limit is 0"
        )
    observed = lim / req
    if observed > want:
        return (
            f"{name} max limit to request ratio per {kind} is {shown}, but provided ratio is "
            f"{float(observed):f}"
        )
    return None


def _check(item: Obj, kind: str, requests: Obj, limits: Obj) -> list[str]:
    errs: list[str | None] = []
    for name, v in sorted((item.get("min") or {}).items()):
        errs.append(_min(kind, name, v, requests, limits))
    for name, v in sorted((item.get("max") or {}).items()):
        errs.append(_max(kind, name, v, requests, limits))
    for name, v in sorted((item.get("maxLimitRequestRatio") or {}).items()):
        errs.append(_ratio(kind, name, v, requests, limits))
    return [e for e in errs if e]


def _listed(res: dict[str, tuple[Fraction, str]]) -> Obj:
    return {k: format_qty(*v) for k, v in res.items()}


def pod_violations(pod: Obj, lr: Obj) -> list[str]:
    """PodValidateLimitFunc for one LimitRange."""
    errs: list[str] = []
    spec = pod.get("spec") or {}
    for item in (lr.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                res = c.get("resources") or {}
                errs += _check(
                    item, "Container", res.get("requests") or {}, res.get("limits") or {}
                )
        elif item.get("type") == "Pod":
            requests = _listed(pod_totals(pod, "requests"))
            limits = _listed(pod_totals(pod, "limits"))
            errs += _check(item, "Pod", requests, limits)
    return errs


def pvc_violations(pvc: Obj, lr: Obj) -> list[str]:
    """PersistentVolumeClaim items: min and max of the requested storage."""
    errs: list[str | None] = []
    requests = ((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}
    for item in (lr.get("spec") or {}).get("limits") or []:
        if item.get("type") != "PersistentVolumeClaim":
            continue
        for name, v in sorted((item.get("min") or {}).items()):
            errs.append(_min("PersistentVolumeClaim", name, v, requests, {}))
        for name, v in sorted((item.get("max") or {}).items()):
            errs.append(_max_request("PersistentVolumeClaim", name, v, requests))
    return [e for e in errs if e]


def _aggregate(errs: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error()."""
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


class LimitRangeAdmission:
    """The LimitRanger hook for ``ObjectStore.admission`` (register it before the quota
    hook, which must see the defaulted pod). ``limit_ranges`` is the shared LimitRange
    cache."""

    def __init__(self, limit_ranges: Callable[[], ObjectCache | None]) -> None:
        self.limit_ranges = limit_ranges

    @classmethod
    def over(cls, cache: Callable[[str, str], ObjectCache]) -> LimitRangeAdmission:
        """Admission over the shared caches (``Informers.cache``); the LimitRange cache is
        created now, so it starts with the others."""
        limit_ranges = cache("", "limitranges")
        return cls(lambda: limit_ranges if limit_ranges.synced.is_set() else None)

    def __call__(self, kind: Kind, obj: Obj, old: Obj | None) -> Undo | None:
        key = (kind.group, kind.resource)
        if key not in (("", "pods"), ("", "persistentvolumeclaims")):
            return None
        if key == ("", "pods") and old is not None:
            return None  # containers cannot change after create
        cache = self.limit_ranges()
        if cache is None:
            return None
        ranges = list(cache.items(obj["metadata"].get("namespace", "")))
        if not ranges:
            return None
        if key == ("", "pods"):
            if apply_defaults(obj, ranges):
                causes = validate("", "pods", "Pod", obj, None, namespaced=True)
                if causes:
                    raise status.invalid("Pod", "", obj["metadata"].get("name", ""), causes)
            check: Callable[[Obj, Obj], list[str]] = pod_violations
        else:
            check = pvc_violations
        for lr in ranges:
            errs = check(obj, lr)
            if errs:
                raise forbidden(kind, obj, _aggregate(errs))
        return None
