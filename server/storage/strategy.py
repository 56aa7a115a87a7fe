"""Per-kind write strategy: what a create or update may change, and what the server sets.

Mirrors upstream registry strategies: status is reset on create and preserved on main
resource updates for kinds with a status subresource, status writes change only status
(and an apps/v1 workload's annotations), and ``metadata.generation`` counts spec changes.
"""

from __future__ import annotations

import base64
from fractions import Fraction
from functools import cache
from typing import Any

from edgek import kinds
from edgek.kinds import Kind
from edgek.objects import clone
from edgek.patch.jsonpatch import json_equal
from edgek.quantity import parse_quantity

#: Kinds whose status the client may set on create (agents register nodes with status).
_KEEP_STATUS_ON_CREATE = frozenset(
    {("", "nodes"), ("certificates.k8s.io", "certificatesigningrequests")}
)

#: Built-in kinds whose spec changes bump ``metadata.generation`` (as upstream strategies do).
_GENERATION_KINDS = frozenset(
    {
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    }
)

#: apps/v1 workloads whose status writes also set annotations (their controllers record
#: revisions there without bumping the generation).
_STATUS_WRITES_ANNOTATIONS = frozenset(
    {
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
    }
)

#: The spec finalizer every namespace gets; only the finalize subresource removes it.
NAMESPACE_FINALIZER = "kubernetes"

#: apps/v1's form of the internal DaemonSet spec.templateGeneration (server-owned).
DAEMONSET_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def tracks_generation(kind: Kind) -> bool:
    """Whether spec changes bump ``metadata.generation`` for this kind."""
    return kind.custom or (kind.group, kind.resource) in _GENERATION_KINDS


def spec_of(kind: Kind, obj: dict[str, Any]) -> Any:
    """The part of an object whose change bumps the generation (Deployments also count
    annotation changes, as upstream's strategy does)."""
    if kind.custom:
        return {
            k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")
        }
    if (kind.group, kind.resource) == ("apps", "deployments"):
        return (obj.get("spec"), obj.get("metadata", {}).get("annotations"))
    return obj.get("spec")


def prepare_for_create(
    kind: Kind, obj: dict[str, Any], requester: tuple[str, list[str]] | None = None
) -> None:
    """Server-owned state on create: generation 1, a fresh status where the kind has one,
    a Job's generated selector, a CSR's requester (``requester`` = (user, groups))."""
    md = obj["metadata"]
    if tracks_generation(kind):
        md["generation"] = 1
    else:
        md.pop("generation", None)
    if kind.has_status and (kind.group, kind.resource) not in _KEEP_STATUS_ON_CREATE:
        obj.pop("status", None)
        initial = _initial_status(kind, obj)
        if initial is not None:
            obj["status"] = initial
    _prepare_kind_on_create(kind, obj, requester)


def _prepare_kind_on_create(
    kind: Kind, obj: dict[str, Any], requester: tuple[str, list[str]] | None
) -> None:
    """The kind-specific part of :func:`prepare_for_create`."""
    key = (kind.group, kind.resource)
    if key == ("", "secrets"):
        fold_string_data(obj)
    elif key == ("", "namespaces"):
        spec = obj.setdefault("spec", {})
        finalizers = spec.setdefault("finalizers", [])
        if NAMESPACE_FINALIZER not in finalizers:
            finalizers.append(NAMESPACE_FINALIZER)
    elif key == ("apps", "daemonsets"):
        if template_generation(obj) < 1:
            _set_template_generation(obj, 1)
    elif key == ("batch", "jobs"):
        _generate_job_selector(obj)
    elif key == ("certificates.k8s.io", "certificatesigningrequests"):
        spec = obj.setdefault("spec", {})
        user, groups = requester or ("", [])
        spec["username"] = user
        spec["groups"] = [*groups, "system:authenticated"] if user else list(groups)
        spec.pop("uid", None)
        spec.pop("extra", None)


def fold_string_data(secret: dict[str, Any]) -> None:
    """A Secret's write-only ``stringData`` merged into ``data`` (base64; it wins over a
    ``data`` key of the same name) and removed, as upstream's conversion does."""
    string_data = secret.pop("stringData", None)
    if string_data:
        data = secret.get("data") or {}
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
        secret["data"] = data


def _generate_job_selector(job: dict[str, Any]) -> None:
    """Upstream's generated Job selector: the template carries controller-uid and job-name
    labels (new and legacy spellings) and the selector matches the controller uid."""
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    md = job["metadata"]
    uid, name = md.get("uid", ""), md.get("name", "")
    template_md = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_md.setdefault("labels", {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
    )
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def _restore(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Make ``new`` equal to ``old`` again without sharing anything with it (``new`` is the
    write's private copy): top-level fields it holds unchanged (for a status write,
    usually all but ``status``) are kept rather than copied from ``old``."""
    for name in [name for name in new if name not in old]:
        del new[name]
    for name, value in old.items():
        if name not in new or not json_equal(new[name], value):
            new[name] = clone(value)


def prepare_for_update(
    kind: Kind, new: dict[str, Any], old: dict[str, Any], subresource: str
) -> None:
    """Keep what this write may not change and bump the generation on spec changes."""
    if subresource == "approval":
        # only the approval conditions change (kubectl certificate approve|deny)
        conditions = (new.get("status") or {}).get("conditions")
        _restore(new, old)
        new.setdefault("status", {})["conditions"] = conditions or []
        return
    if subresource == "status":
        _prepare_status_update(kind, new, old)
        return
    if kind.has_status:
        if "status" in old:
            new["status"] = clone(old["status"])
        else:
            new.pop("status", None)
    if (kind.group, kind.resource) == ("", "secrets"):
        fold_string_data(new)
    if (kind.group, kind.resource) == ("apps", "daemonsets"):
        generation = template_generation(old)
        if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            generation += 1
        _set_template_generation(new, generation)
    if (kind.group, kind.resource) == ("", "namespaces") and subresource != "finalize":
        new.setdefault("spec", {})["finalizers"] = list(
            (old.get("spec") or {}).get("finalizers") or []
        )
    _update_generation(kind, new, old)
    _keep_deletion(new["metadata"], old["metadata"])


def _keep_deletion(md: dict[str, Any], old_md: dict[str, Any]) -> None:
    """An update neither sets nor clears the deletion timestamp and grace period."""
    if old_md.get("deletionTimestamp"):
        md["deletionTimestamp"] = old_md["deletionTimestamp"]
        if "deletionGracePeriodSeconds" in old_md:
            md["deletionGracePeriodSeconds"] = old_md["deletionGracePeriodSeconds"]
    else:
        md.pop("deletionTimestamp", None)
        md.pop("deletionGracePeriodSeconds", None)


def _prepare_status_update(kind: Kind, new: dict[str, Any], old: dict[str, Any]) -> None:
    """A status write changes the status (and a workload's annotations) only."""
    status = new.get("status")
    annotations = (new.get("metadata") or {}).get("annotations")
    _restore(new, old)
    if status is None:
        new.pop("status", None)
    else:
        new["status"] = status
    if (kind.group, kind.resource) in _STATUS_WRITES_ANNOTATIONS:
        _keep_request_annotations(kind, new, annotations, old)


def _update_generation(kind: Kind, new: dict[str, Any], old: dict[str, Any]) -> None:
    """``metadata.generation`` goes up when the spec changes (kinds that track it)."""
    md = new["metadata"]
    if not tracks_generation(kind):
        md.pop("generation", None)
        return
    generation = old["metadata"].get("generation", 1)
    if spec_of(kind, new) != spec_of(kind, old):
        generation += 1
    md["generation"] = generation


def _keep_request_annotations(
    kind: Kind, new: dict[str, Any], annotations: Any, old: dict[str, Any]
) -> None:
    """A status write of an apps/v1 workload sets its annotations as the request has them
    (upstream's status strategies reset only spec, and a Deployment's labels); a
    DaemonSet's template generation stays server-owned."""
    md = new["metadata"]
    if isinstance(annotations, dict) and annotations:
        md["annotations"] = clone(annotations)
    else:
        md.pop("annotations", None)
    if (kind.group, kind.resource) == ("apps", "daemonsets"):
        md.get("annotations", {}).pop(DAEMONSET_TEMPLATE_GENERATION, None)
        if template_generation(old) >= 1:
            _set_template_generation(new, template_generation(old))


def template_generation(daemonset: dict[str, Any]) -> int:
    """A DaemonSet's template generation (upstream's ``deprecated.daemonset.template.generation``
    annotation: 1 on create, +1 whenever spec.template changes; 0 when absent or malformed).
    The DaemonSet controller labels its pods ``pod-template-generation`` with it."""
    raw = ((daemonset.get("metadata") or {}).get("annotations") or {}).get(
        DAEMONSET_TEMPLATE_GENERATION
    )
    try:
        return int(raw) if isinstance(raw, str) else 0
    except ValueError:
        return 0


def _set_template_generation(daemonset: dict[str, Any], generation: int) -> None:
    annotations = daemonset["metadata"].get("annotations")
    if not isinstance(annotations, dict):
        annotations = daemonset["metadata"]["annotations"] = {}
    annotations[DAEMONSET_TEMPLATE_GENERATION] = str(generation)


def _initial_status(kind: Kind, obj: dict[str, Any]) -> dict[str, Any] | None:
    key = (kind.group, kind.resource)
    if key == ("", "pods"):
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    if key in (("", "persistentvolumeclaims"), ("", "persistentvolumes")):
        return {"phase": "Pending"}
    if key == ("", "services"):
        return {"loadBalancer": {}}
    if kind.custom:
        return None
    return dict(_status_zeros(kind.type_name))


#: JSON zero values of the scalar kinds Go always serialises when not ``omitempty``.
_SCALAR_ZEROS = {"int32": 0, "int64": 0, "bool": False, "string": ""}


@cache
def _status_zeros(type_name: str) -> dict[str, Any]:
    """A new object's status as Go would serialise an empty one: scalar fields without
    ``omitempty`` (e.g. a ReplicaSet's ``replicas``) appear with their zero value, which
    typed clients (the official Python client) require. Computed once per kind; callers
    copy it."""
    status_field = kinds.fields(type_name).get("status")
    if status_field is None:
        return {}
    ref = kinds.resolve(status_field.type)
    if ref.shape != "struct":
        return {}
    out: dict[str, Any] = {}
    for name, field in kinds.fields(ref.name).items():
        zero = _SCALAR_ZEROS.get(field.type)
        if zero is not None and not field.omitempty and not field.type.startswith("*"):
            out[name] = zero
    return out


def qos_class(spec: dict[str, Any]) -> str:
    """The pod QoS class from its containers' cpu and memory requests and limits (zero
    quantities count as unset; a missing request defaults to the limit)."""
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req = _nonzero(res.get("requests"))
        lim = _nonzero(res.get("limits"))
        any_set |= bool(req) or bool(lim)
        for name in ("cpu", "memory"):
            if name not in lim or req.get(name, lim[name]) != lim[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _nonzero(resources: Any) -> dict[str, Fraction]:
    """cpu and memory quantities that are set and non-zero (unparseable ones are skipped:
    validation reports them)."""
    out: dict[str, Fraction] = {}
    for name in ("cpu", "memory"):
        raw = (resources or {}).get(name)
        if raw is None:
            continue
        try:
            value = parse_quantity(raw)
        except (ValueError, TypeError):
            continue
        if value:
            out[name] = value
    return out
