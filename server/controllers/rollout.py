"""Deployment rollout arithmetic, as upstream's ``deployment/util`` has it: the pod-template
hash, revisions and the annotations a Deployment keeps on its ReplicaSets, maxSurge and
maxUnavailable, proportional scaling, and the status conditions ``kubectl rollout status``
reads. Pure functions over plain objects; the controller is in ``deployment.py``.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from edgek import objects
from edgek.objects import Obj
from edgek.timefmt import format_time, parse_time

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
#: Deployment annotations that are not copied to its ReplicaSets.
SKIPPED_ANNOTATIONS = frozenset(
    {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
)
#: Longest revision-history annotation kept (upstream's limit, in characters).
MAX_REVISION_HISTORY_CHARS = 2000

# Progressing condition reasons.
REASON_RS_UPDATED = "ReplicaSetUpdated"
REASON_RS_CREATE_ERROR = "ReplicaSetCreateError"
REASON_NEW_RS_CREATED = "NewReplicaSetCreated"
REASON_FOUND_NEW_RS = "FoundNewReplicaSet"
REASON_NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
REASON_TIMED_OUT = "ProgressDeadlineExceeded"
REASON_PAUSED = "DeploymentPaused"
REASON_RESUMED = "DeploymentResumed"
# Available condition reasons.
REASON_MIN_AVAILABLE = "MinimumReplicasAvailable"
REASON_MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

#: Upstream's ``math.MaxInt32`` sentinel: "no deadline" / "keep every revision".
_MAX_INT32 = 2**31 - 1
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# -- hashing and template identity ------------------------------------------------------


def _semantic(value: Any) -> Any:
    """``value`` without null/empty members, so nil and empty maps/lists compare equal (as
    apimachinery's semantic equality treats them)."""
    if isinstance(value, dict):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _without_hash(template: Obj | None) -> Any:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return _semantic(t)


def equal_ignore_hash(a: Obj | None, b: Obj | None) -> bool:
    """Whether two pod templates are equal, ignoring the ``pod-template-hash`` label."""
    return bool(_without_hash(a) == _without_hash(b))


def safe_encode(text: str) -> str:
    """apimachinery's ``rand.SafeEncodeString``: each byte mapped into an alphabet without
    vowels or look-alike characters."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def _fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a pod template: FNV-32a over its canonical JSON (plus the
    collision count, as upstream's ``ComputeHash``), rendered with the safe alphabet; at most
    10 characters."""
    data = json.dumps(_semantic(template), sort_keys=True, separators=(",", ":")).encode()
    h = _fnv32a(data)
    if collision_count is not None:
        h = _fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return safe_encode(str(h))


# -- small accessors ----------------------------------------------------------------------


def replicas(obj: Obj | None) -> int:
    """``spec.replicas`` (0 for a missing object)."""
    if obj is None:
        return 0
    return int((obj.get("spec") or {}).get("replicas") or 0)


def status_int(obj: Obj | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def revision(obj: Obj) -> int:
    """The revision annotation as a number (0 when missing or not a number)."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def _created(obj: Obj) -> str:
    return str(obj["metadata"].get("creationTimestamp") or "")


def by_creation(rs: Obj) -> tuple[str, int, str]:
    """Sort key oldest first. Timestamps have second precision, so revisions break ties
    before names (upstream breaks them by name only)."""
    return (_created(rs), revision(rs), rs["metadata"]["name"])


def by_revision(rs: Obj) -> tuple[int, str, str]:
    return (revision(rs), _created(rs), rs["metadata"]["name"])


def sorted_by_size(rss: Iterable[Obj], *, newer_first: bool) -> list[Obj]:
    """Larger first; among equal sizes newer first (scaling up) or older first (down)."""
    by_age = sorted(rss, key=by_creation, reverse=newer_first)
    return sorted(by_age, key=lambda rs: -replicas(rs))


def active(rss: Iterable[Obj | None]) -> list[Obj]:
    """Replica sets with a non-zero size."""
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def total_replicas(rss: Iterable[Obj | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def total_status(rss: Iterable[Obj | None], field: str) -> int:
    return sum(status_int(rs, field) for rs in rss if rs is not None)


# -- maxSurge / maxUnavailable ----------------------------------------------------------


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """intstr ``GetValueFromIntOrPercent``: an int, or a percentage of ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    percent = int(text[:-1])
    scaled = percent * total
    return -(-scaled // 100) if round_up else scaled // 100


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type") == "RollingUpdate"


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for the desired size: surge rounds up, unavailable down;
    when both come out 0, unavailable is 1 (upstream ``ResolveFenceposts``)."""
    rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = _int_or_percent(rolling.get("maxSurge"), desired, True)
    unavailable = _int_or_percent(rolling.get("maxUnavailable"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def new_rs_new_replicas(d: Obj, all_rss: Iterable[Obj | None], new_rs: Obj) -> int:
    """How big the new replica set may grow now (upstream ``NewRSNewReplicas``)."""
    if not is_rolling(d):
        return replicas(d)
    max_total = replicas(d) + max_surge(d)
    current = total_replicas(all_rss)
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def _round_half_away(x: float) -> int:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def _int_annotation(obj: Obj, key: str) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS)


def get_proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    """This replica set's share of ``to_add`` more (or fewer) replicas, given ``added``
    already handed out (upstream ``GetProportion``)."""
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    if replicas(d) == 0:
        fraction = -replicas(rs)
    else:
        deployment_replicas = replicas(d) + max_surge(d)
        annotated = _int_annotation(rs, MAX_REPLICAS)
        if annotated is None:
            annotated = status_int(d, "replicas")
        if annotated == 0:
            fraction = 0
        else:
            fraction = _round_half_away(replicas(rs) * deployment_replicas / annotated) - replicas(
                rs
            )
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# -- annotations --------------------------------------------------------------------------


def set_replicas_annotations(rs: Obj, desired: int, maximum: int) -> bool:
    """Record desired and max replicas on a replica set; whether anything changed."""
    ann = objects.ensure_annotations(rs)
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(maximum))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, maximum: int) -> bool:
    ann = (rs.get("metadata") or {}).get("annotations") or {}
    return bool(ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(maximum))


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Copy the deployment's annotations to its new replica set, raise the set's revision
    to ``new_revision`` (keeping earlier ones in the revision history when a set is reused,
    i.e. on rollback) and, for a set about to be created, its replica annotations. Returns
    whether anything changed."""
    changed = False
    ann = objects.ensure_annotations(rs)
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in SKIPPED_ANNOTATIONS and ann.get(k) != v:
            ann[k] = v
            changed = True
    old_text = ann.get(REVISION)
    try:
        old = int(old_text) if old_text is not None else 0
    except ValueError:
        return changed
    if old < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = [r for r in (ann.get(REVISION_HISTORY) or "").split(",") if r]
            history.append(old_text)
            while history and len(",".join(history)) > MAX_REVISION_HISTORY_CHARS:
                history.pop(0)
            ann[REVISION_HISTORY] = ",".join(history)
    if not exists:
        surge = max_surge(d)
        changed = set_replicas_annotations(rs, replicas(d), replicas(d) + surge) or changed
    return changed


# -- conditions ---------------------------------------------------------------------------


def get_condition(status: Obj, type_: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = format_time(now)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: Obj) -> None:
    """Set a condition unless one with the same status and reason is there; keep the
    transition time when only the reason changes (upstream ``SetDeploymentCondition``)."""
    current = get_condition(status, cond["type"])
    if current is not None and (current.get("status"), current.get("reason")) == (
        cond["status"],
        cond["reason"],
    ):
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: Obj, type_: str) -> None:
    kept = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if kept:
        status["conditions"] = kept
    else:
        status.pop("conditions", None)


# -- progress -----------------------------------------------------------------------------


def has_progress_deadline(d: Obj) -> bool:
    value = d["spec"].get("progressDeadlineSeconds")
    return value is not None and value != _MAX_INT32


def has_revision_history_limit(d: Obj) -> bool:
    value = d["spec"].get("revisionHistoryLimit")
    return value is not None and value != _MAX_INT32


def deployment_complete(d: Obj, status: Obj) -> bool:
    """Every desired replica updated and available, no old ones, generation observed."""
    want = replicas(d)
    return bool(
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0)
    )


def deployment_progressing(d: Obj, new: Obj) -> bool:
    """Progress since the last status: more updated, ready or available replicas, or fewer
    old ones."""
    old = d.get("status") or {}

    def get(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)

    old_old = get(old, "replicas") - get(old, "updatedReplicas")
    new_old = get(new, "replicas") - get(new, "updatedReplicas")
    return (
        get(new, "updatedReplicas") > get(old, "updatedReplicas")
        or new_old < old_old
        or get(new, "readyReplicas") > get(old, "readyReplicas")
        or get(new, "availableReplicas") > get(old, "availableReplicas")
    )


def progress_deadline(d: Obj, status: Obj) -> datetime | None:
    """When the current rollout times out (None: no deadline, or it cannot time out)."""
    if not has_progress_deadline(d):
        return None
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") in (REASON_NEW_RS_AVAILABLE, REASON_TIMED_OUT):
        return None
    stamp = cond.get("lastUpdateTime")
    if not stamp:
        return None
    return parse_time(stamp) + timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))


def deployment_timed_out(d: Obj, status: Obj, now: datetime) -> bool:
    """The Progressing condition has not moved for progressDeadlineSeconds (or already
    says so)."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == REASON_NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == REASON_TIMED_OUT:
        return True
    deadline = progress_deadline(d, status)
    return deadline is not None and deadline < now


def compact(status: Obj) -> Obj:
    """A status with zero counters left out (the API's omitempty)."""
    return {k: v for k, v in status.items() if v not in (0, None, [], {})}
