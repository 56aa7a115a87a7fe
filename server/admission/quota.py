"""ResourceQuota: usage evaluation (upstream pkg/quota/v1/evaluator/core) and the admission
check (plugin/pkg/admission/resourcequota).

Usage is computed from the shared caches, so admission and the quota controller
(``server/controllers/resourcequota.py``) count the same way. Admission runs synchronously in
the write path and cannot write the quota first as upstream does; instead it reserves the
admitted usage in memory until the object's cache has seen the write (or the write fails and
the store calls the returned undo), so concurrent creates cannot overrun a quota.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from edgek import objects as objutil
from edgek.kinds import Kind
from edgek.objects import Obj
from edgek.quantity import parse_quantity
from edgek.status import ApiError
from edgek.timefmt import parse_time
from server.cache import ObjectCache
from server.storage.objectstore import ObjectStore, Undo

#: A resource list: name -> (value, format), format one of BinarySI, DecimalSI, DecimalExponent.
Resources = dict[str, tuple[Fraction, str]]
CacheFor = Callable[[str, str], "ObjectCache | None"]

_ZERO: tuple[Fraction, str] = (Fraction(0), "DecimalSI")
_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P"}
_BINARY_SUFFIXES = ((60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki"))

#: How long an admitted usage is held if its object's cache never reports the write.
RESERVATION_TTL = 30.0


# -- quantities ----------------------------------------------------------------------------


def parse_qty(value: str | int | float) -> tuple[Fraction, str]:
    """A quantity and its format (as resource.Quantity keeps it)."""
    text = str(value).strip()
    number = parse_quantity(value)
    if re.search(r"[KMGTPE]i$", text):
        return number, "BinarySI"
    if re.search(r"\d[eE][+-]?\d+$", text):
        return number, "DecimalExponent"
    return number, "DecimalSI"


def format_qty(value: Fraction, fmt: str = "DecimalSI") -> str:
    """The canonical text of a quantity (rounded up to nano units, as upstream)."""
    value = Fraction(math.ceil(value * 10**9), 10**9)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if fmt == "BinarySI" and value >= 1024 and value.denominator == 1:
        n = value.numerator
        for shift, suffix in _BINARY_SUFFIXES:
            if n % (1 << shift) == 0:
                return f"{sign}{n >> shift}{suffix}"
        return f"{sign}{n}"
    exponent = -9
    while exponent < 18 and (value / Fraction(10) ** (exponent + 3)).denominator == 1:
        exponent += 3
    mantissa = value / Fraction(10) ** exponent
    if fmt == "DecimalExponent":
        return f"{sign}{mantissa.numerator}" + (f"e{exponent}" if exponent else "")
    if exponent > 15:
        mantissa *= Fraction(10) ** (exponent - 15)
        exponent = 15
    return f"{sign}{mantissa.numerator}{_DECIMAL_SUFFIXES[exponent]}"


def add(a: Resources, b: Resources) -> Resources:
    """quota.Add: the sum; a zero summand takes the other's format."""
    out = dict(a)
    for name, (value, fmt) in b.items():
        have, have_fmt = out.get(name, _ZERO)
        out[name] = (have + value, fmt if have == 0 else have_fmt)
    return out


def pretty(res: Resources) -> str:
    """prettyPrint: ``name=value`` sorted by name, comma-separated."""
    return ",".join(f"{k}={format_qty(*res[k])}" for k in sorted(res))


def _resource_list(raw: Any) -> Resources:
    out: Resources = {}
    for name, value in (raw or {}).items():
        try:
            out[name] = parse_qty(value)
        except ValueError:
            continue
    return out


# -- pod usage -----------------------------------------------------------------------------

#: Compute resource names a pod is charged for (podResources upstream).
POD_RESOURCES = frozenset(
    {
        "count/pods",
        "pods",
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
    }
)
#: Quotas on these require every container to state the resource (upstream validationSet).
_VALIDATION_SET = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)
_NATIVE_PREFIXES = ("kubernetes.io/", "requests.", "limits.")


def _is_extended(name: str) -> bool:
    """A fully qualified resource name outside kubernetes.io (an extended resource)."""
    return "/" in name and not name.startswith(_NATIVE_PREFIXES) and "kubernetes.io/" not in name


def _max(a: Resources, b: Resources) -> Resources:
    out = dict(a)
    for name, q in b.items():
        if name not in out or q[0] > out[name][0]:
            out[name] = q
    return out


def pod_totals(pod: Obj, field: str) -> Resources:
    """resourcehelper.PodRequests/PodLimits: containers and sidecars summed, each other init
    container as a floor, plus overhead."""
    spec = pod.get("spec") or {}
    total: Resources = {}
    for c in spec.get("containers") or []:
        total = add(total, _resource_list((c.get("resources") or {}).get(field)))
    sidecars: Resources = {}
    floor: Resources = {}
    for c in spec.get("initContainers") or []:
        own = _resource_list((c.get("resources") or {}).get(field))
        if c.get("restartPolicy") == "Always":
            sidecars = add(sidecars, own)
            floor = _max(floor, sidecars)
        else:
            floor = _max(floor, add(own, sidecars))
    total = _max(add(total, sidecars), floor)
    return add(total, _resource_list(spec.get("overhead")))


def _compute_usage(requests: Resources, limits: Resources) -> Resources:
    """podComputeUsageHelper."""
    out: Resources = {"pods": (Fraction(1), "DecimalSI")}
    for res in ("cpu", "memory", "ephemeral-storage"):
        if res in requests:
            out[res] = requests[res]
            out[f"requests.{res}"] = requests[res]
        if res in limits:
            out[f"limits.{res}"] = limits[res]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            out[name] = q
            out[f"requests.{name}"] = q
        elif _is_extended(name):
            out[f"requests.{name}"] = q
    return out


def pod_counts_for_quota(pod: Obj, now: datetime) -> bool:
    """QuotaV1Pod: finished pods, and pods past their deletion grace, are not charged."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    md = pod["metadata"]
    deleted, grace = md.get("deletionTimestamp"), md.get("deletionGracePeriodSeconds")
    if deleted and grace is not None:
        return now <= parse_time(deleted) + timedelta(seconds=int(grace))
    return True


def pod_usage(pod: Obj, now: datetime) -> Resources:
    out: Resources = {"count/pods": (Fraction(1), "DecimalSI")}
    if not pod_counts_for_quota(pod, now):
        return out
    return add(out, _compute_usage(pod_totals(pod, "requests"), pod_totals(pod, "limits")))


def is_best_effort(pod: Obj) -> bool:
    """QoS BestEffort: no container asks for or limits cpu or memory."""
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        for field in ("requests", "limits"):
            if any(k in ("cpu", "memory") for k in res.get(field) or {}):
                return False
    return True


def _cross_namespace_affinity(pod: Obj) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        section = affinity.get(kind) or {}
        terms = list(section.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [
            t.get("podAffinityTerm") or {}
            for t in section.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        ]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def _pod_matches_scope(selector: Obj, pod: Obj) -> bool:
    """podMatchesScopeFunc."""
    scope, spec = selector.get("scopeName"), pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] >= 0
    if scope == "NotTerminating":
        return not (
            spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] >= 0
        )
    if scope == "BestEffort":
        return is_best_effort(pod)
    if scope == "NotBestEffort":
        return not is_best_effort(pod)
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(pod)
    if scope == "PriorityClass":
        return _priority_class_matches(selector, spec.get("priorityClassName") or "")
    return False


def _priority_class_matches(selector: Obj, value: str) -> bool:
    """A PriorityClass scope selector against a pod's priorityClassName ("" when unset)."""
    op, values = selector.get("operator"), selector.get("values") or []
    if op == "Exists":
        return bool(value)
    if op == "DoesNotExist":
        return not value
    if op == "In":
        return bool(value) and value in values
    if op == "NotIn":
        return not value or value not in values
    return False


def _check_pod_requests(kind: Kind, pod: Obj, quotas: list[Obj]) -> None:
    """A pod must request every compute resource a quota on it limits."""
    for q in quotas:
        why = missing_requests(pod, ((q.get("spec") or {}).get("hard") or {}).keys())
        if why:
            raise forbidden(kind, pod, f"failed quota: {q['metadata']['name']}: {why}")


def _usage_delta(group: str, resource: str, obj: Obj, old: Obj | None, now: datetime) -> Resources:
    """The usage ``obj`` adds: all of it when created, its increases when updated."""
    delta = {k: v for k, v in object_usage(group, resource, obj, now).items() if v[0] != 0}
    if old is None or not old["metadata"].get("resourceVersion"):
        return delta
    before = object_usage(group, resource, old, now)
    return {
        k: (v[0] - before.get(k, _ZERO)[0], v[1])
        for k, v in delta.items()
        if v[0] - before.get(k, _ZERO)[0] > 0
    }


# -- other kinds ---------------------------------------------------------------------------

#: Kinds also counted under a legacy name (``pods`` is a compute resource, set above).
_LEGACY_COUNTS = {
    ("", "services"): "services",
    ("", "configmaps"): "configmaps",
    ("", "secrets"): "secrets",
    ("", "persistentvolumeclaims"): "persistentvolumeclaims",
    ("", "replicationcontrollers"): "replicationcontrollers",
    ("", "resourcequotas"): "resourcequotas",
}
_STORAGE_CLASS = ".storageclass.storage.k8s.io/"
#: Kinds whose updates can change usage (a Service's type, a PVC's size); other kinds are
#: charged on create only (pods' resources do not change in place here).
_UPDATES_CHARGED = frozenset({("", "services"), ("", "persistentvolumeclaims")})


def count_name(group: str, resource: str) -> str:
    """The object-count resource name of a kind (``count/pods``, ``count/deployments.apps``)."""
    return f"count/{resource}.{group}" if group else f"count/{resource}"


def _one() -> tuple[Fraction, str]:
    return Fraction(1), "DecimalSI"


def service_usage(svc: Obj) -> Resources:
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    out: Resources = {"services": _one(), "count/services": _one()}
    if spec.get("type") == "NodePort":
        out["services.nodeports"] = (Fraction(len(ports)), "DecimalSI")
    elif spec.get("type") == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is False:
            n = sum(1 for p in ports if p.get("nodePort"))
        else:
            n = len(ports)
        out["services.nodeports"] = (Fraction(n), "DecimalSI")
        out["services.loadbalancers"] = _one()
    return out


def pvc_usage(pvc: Obj) -> Resources:
    out: Resources = {"persistentvolumeclaims": _one(), "count/persistentvolumeclaims": _one()}
    spec = pvc.get("spec") or {}
    storage = _resource_list((spec.get("resources") or {}).get("requests")).get("storage")
    allocated = _resource_list((pvc.get("status") or {}).get("allocatedResources")).get("storage")
    if allocated is not None and (storage is None or allocated[0] > storage[0]):
        storage = allocated
    sc = spec.get("storageClassName") or ""
    if sc:
        out[f"{sc}{_STORAGE_CLASS}persistentvolumeclaims"] = _one()
    if storage is not None:
        out["requests.storage"] = storage
        if sc:
            out[f"{sc}{_STORAGE_CLASS}requests.storage"] = storage
    return out


def object_usage(group: str, resource: str, obj: Obj, now: datetime) -> Resources:
    """What one object is charged (Usage of its evaluator)."""
    if (group, resource) == ("", "pods"):
        return pod_usage(obj, now)
    if (group, resource) == ("", "services"):
        return service_usage(obj)
    if (group, resource) == ("", "persistentvolumeclaims"):
        return pvc_usage(obj)
    out: Resources = {count_name(group, resource): _one()}
    legacy = _LEGACY_COUNTS.get((group, resource))
    if legacy:
        out[legacy] = _one()
    return out


def tracks(group: str, resource: str, name: str) -> bool:
    """Whether a quota resource name counts objects of this kind (MatchingResources)."""
    if name == count_name(group, resource) or name == _LEGACY_COUNTS.get((group, resource)):
        return True
    if (group, resource) == ("", "pods"):
        return (
            name in POD_RESOURCES
            or name.startswith(("hugepages-", "requests.hugepages-"))
            or (name.startswith("requests.") and _is_extended(name[len("requests.") :]))
        )
    if (group, resource) == ("", "services"):
        return name in ("services.nodeports", "services.loadbalancers")
    if (group, resource) == ("", "persistentvolumeclaims"):
        return name == "requests.storage" or _STORAGE_CLASS in name
    return False


def kind_of_resource_name(name: str) -> tuple[str, str] | None:
    """The (group, resource) a quota resource name counts, when it names one kind."""
    if name.startswith("count/"):
        resource, _, group = name[len("count/") :].partition(".")
        return group, resource
    for key, legacy in _LEGACY_COUNTS.items():
        if name == legacy:
            return key
    for key in (("", "pods"), ("", "services"), ("", "persistentvolumeclaims")):
        if tracks(*key, name):
            return key
    return None


def scope_selectors(quota: Obj) -> list[Obj]:
    """getScopeSelectorsFromQuota: ``spec.scopes`` as Exists requirements plus the selector."""
    spec = quota.get("spec") or {}
    out = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or []]
    out += list((spec.get("scopeSelector") or {}).get("matchExpressions") or [])
    return out


def quota_matches(quota: Obj, group: str, resource: str, obj: Obj) -> bool:
    """Whether the quota tracks this kind and its scopes select the object."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    if not any(tracks(group, resource, name) for name in hard):
        return False
    is_pod = (group, resource) == ("", "pods")
    return all(is_pod and _pod_matches_scope(sel, obj) for sel in scope_selectors(quota))


def missing_requests(pod: Obj, required: Iterable[str]) -> str | None:
    """podEvaluator.Constraints: containers that do not state a resource the quota limits."""
    needed = set(required) & _VALIDATION_SET
    if not needed:
        return None
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        have = _compute_usage(
            _resource_list(res.get("requests")), _resource_list(res.get("limits"))
        )
        for name in needed - set(have):
            missing.setdefault(name, set()).add(c.get("name", ""))
    if not missing:
        return None
    parts = [f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing)]
    return "must specify " + "; ".join(parts)


def namespace_usage(
    quota: Obj, group: str, resource: str, items: Iterable[Obj], names: Iterable[str], now: datetime
) -> Resources:
    """Usage of the quota's ``names`` by the objects (of one kind) its scopes select."""
    wanted = [n for n in names if tracks(group, resource, n)]
    used: Resources = {n: _ZERO for n in wanted}
    for obj in items:
        if not quota_matches(quota, group, resource, obj):
            continue
        usage = object_usage(group, resource, obj, now)
        used = add(used, {n: usage[n] for n in wanted if n in usage})
    return used


def forbidden(kind: Kind, obj: Obj, why: str) -> ApiError:
    """admission.NewForbidden for the object being written."""
    md = obj.get("metadata") or {}
    name = md.get("name") or md.get("generateName") or "Unknown"
    details: Obj = {"name": name, "kind": kind.resource}
    if kind.group:
        details["group"] = kind.group
    return ApiError(
        403, "Forbidden", f'{kind.group_resource} "{name}" is forbidden: {why}', details=details
    )


def optional_cache(cache: Callable[[str, str], ObjectCache]) -> CacheFor:
    """``cache`` with None for kinds that are not served."""

    def cache_for(group: str, resource: str) -> ObjectCache | None:
        try:
            return cache(group, resource)
        except KeyError:
            return None

    return cache_for


# -- admission -----------------------------------------------------------------------------


@dataclass
class _Reservation:
    quota: str
    group: str
    resource: str
    name: str
    after_revision: int
    usage: Resources
    expires: float


class QuotaAdmission:
    """The ResourceQuota admission hook for ``ObjectStore.admission``.

    ``cache_for(group, resource)`` gives the shared cache of a kind (None if there is none);
    quotas are read from ``cache_for("", "resourcequotas")``. ``revision()`` is the datastore's
    current revision: a write admitted now commits after it."""

    def __init__(
        self,
        cache_for: CacheFor,
        revision: Callable[[], int],
        clock: Callable[[], datetime] = objutil.now,
    ) -> None:
        self.cache_for = cache_for
        self.revision = revision
        self.clock = clock
        self._pending: dict[str, list[_Reservation]] = {}  # by namespace
        self._watched: set[tuple[str, str]] = set()

    @classmethod
    def over(
        cls,
        cache: Callable[[str, str], ObjectCache],
        objects: ObjectStore,
        clock: Callable[[], datetime] = objutil.now,
    ) -> QuotaAdmission:
        """Admission over the shared caches (``Informers.cache``) of an object store; the quota
        and pod caches are created now, so they start with the others."""
        cache_for = optional_cache(cache)
        cache_for("", "resourcequotas")
        cache_for("", "pods")
        return cls(cache_for, lambda: objects.datastore.revision, clock)

    def __call__(self, kind: Kind, obj: Obj, old: Obj | None) -> Undo | None:
        if not kind.namespaced or kind.custom:
            return None
        if old is not None and (kind.group, kind.resource) not in _UPDATES_CHARGED:
            return None
        quotas_cache = self.cache_for("", "resourcequotas")
        if quotas_cache is None:
            return None
        ns = obj["metadata"].get("namespace", "")
        quotas = list(quotas_cache.items(ns))
        if not quotas:
            return None
        group, resource = kind.group, kind.resource
        now = self.clock()
        relevant = [q for q in quotas if quota_matches(q, group, resource, obj)]
        if not relevant:
            return None
        if (group, resource) == ("", "pods"):
            _check_pod_requests(kind, obj, relevant)
        delta = _usage_delta(group, resource, obj, old, now)
        if not delta:
            return None
        self._expire(ns)
        charges = self._charges(kind, obj, relevant, delta, now)
        if not charges:
            return None
        return self._reserve(ns, group, resource, obj["metadata"]["name"], charges)

    def _charges(
        self, kind: Kind, obj: Obj, quotas: list[Obj], delta: Resources, now: datetime
    ) -> list[tuple[str, Resources]]:
        """What each quota limiting a resource of ``delta`` is charged, by quota name;
        raises Forbidden when one would be exceeded."""
        group, resource = kind.group, kind.resource
        cache = self._cache(group, resource)
        charges: list[tuple[str, Resources]] = []
        for q in quotas:
            hard = _resource_list((q.get("spec") or {}).get("hard"))
            requested = {k: v for k, v in delta.items() if k in hard}
            if not requested:
                continue
            used = self._used(q, group, resource, cache, requested.keys(), now)
            exceeded = sorted(k for k, v in requested.items() if used[k][0] + v[0] > hard[k][0])
            if exceeded:
                raise forbidden(
                    kind,
                    obj,
                    f"exceeded quota: {q['metadata']['name']}, "
                    f"requested: {pretty({k: requested[k] for k in exceeded})}, "
                    f"used: {pretty({k: used[k] for k in exceeded})}, "
                    f"limited: {pretty({k: hard[k] for k in exceeded})}",
                )
            charges.append((q["metadata"]["name"], requested))
        return charges

    def _cache(self, group: str, resource: str) -> ObjectCache | None:
        """The kind's cache once synced (started in the background the first time)."""
        cache = self.cache_for(group, resource)
        if cache is None:
            return None
        if (group, resource) not in self._watched:
            self._watched.add((group, resource))
            cache.on_event(lambda o, n: self._observed(group, resource, n or o))
            if not cache.synced.is_set():
                asyncio.get_running_loop().create_task(cache.start())
        return cache if cache.synced.is_set() else None

    def _used(
        self,
        quota: Obj,
        group: str,
        resource: str,
        cache: ObjectCache | None,
        names: Iterable[str],
        now: datetime,
    ) -> Resources:
        """Current usage (the cache, or the quota status without one) plus what admission
        has let through that the cache has not seen yet."""
        names = list(names)
        ns, qname = quota["metadata"].get("namespace", ""), quota["metadata"]["name"]
        if cache is not None:
            used = namespace_usage(quota, group, resource, cache.items(ns), names, now)
        else:
            status_used = _resource_list((quota.get("status") or {}).get("used"))
            used = {n: status_used.get(n, _ZERO) for n in names}
        for r in self._pending.get(ns, []):
            if r.quota == qname:
                used = add(used, {k: v for k, v in r.usage.items() if k in used})
        return used

    def _reserve(
        self, ns: str, group: str, resource: str, name: str, charges: list[tuple[str, Resources]]
    ) -> Undo:
        after = self.revision()
        expires = time.monotonic() + RESERVATION_TTL
        made = [
            _Reservation(qname, group, resource, name, after, usage, expires)
            for qname, usage in charges
        ]
        self._pending.setdefault(ns, []).extend(made)

        def undo() -> None:
            pending = self._pending.get(ns, [])
            self._pending[ns] = [r for r in pending if not any(r is m for m in made)]

        return undo

    def _observed(self, group: str, resource: str, obj: Obj | None) -> None:
        """The cache saw a write of this object: reservations made before it are counted."""
        if obj is None:
            return
        md = obj["metadata"]
        ns = md.get("namespace", "")
        pending = self._pending.get(ns)
        if not pending:
            return
        rv = int(md.get("resourceVersion") or 0)
        self._pending[ns] = [
            r
            for r in pending
            if not (
                r.group == group
                and r.resource == resource
                and r.name == md["name"]
                and rv > r.after_revision
            )
        ]

    def _expire(self, ns: str) -> None:
        now = time.monotonic()
        pending = self._pending.get(ns)
        if pending:
            self._pending[ns] = [r for r in pending if r.expires > now]

    def pending(self, namespace: str) -> int:
        """How many reservations wait for their cache (tests)."""
        return len(self._pending.get(namespace, []))
