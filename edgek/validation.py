"""Object validation with upstream-shaped causes and messages.

:func:`validate` returns the causes of a 422 Invalid reply: ``{"reason", "message", "field"}``
where ``reason`` is the upstream cause type (``FieldValueInvalid``, ...) and ``message`` is
the error body upstream renders after ``"<field>: "`` (``Invalid value: "Foo": ...``).
:func:`unknown_fields` and :func:`validate_types` check a decoded body against the kinds
schema; their findings are decode errors (400 BadRequest upstream), not 422s.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgek import cron, kinds, names
from edgek.objects import Obj, clone
from edgek.quantity import ERR_FORMAT, parse_quantity
from edgek.selectors import SelectorError, label_selector_from_object

Cause = dict[str, str]
FIELD_IMMUTABLE = "field is immutable"
ANNOTATIONS_MAX_BYTES = 256 * 1024
MAX_SECRET_BYTES = 1024 * 1024


class GoRepr(str):
    """A value already rendered the way Go's ``%#v`` prints it."""


def _go_strings(values: Any) -> str:
    return names.go_strings(None if values is None else [str(v) for v in values])


def _go_string_map(m: Any) -> str:
    if m is None:
        return "map[string]string(nil)"
    body = ", ".join(f"{names.go_quote(str(k))}:{names.go_quote(str(m[k]))}" for k in sorted(m))
    return "map[string]string{" + body + "}"


def go_label_selector(sel: Mapping[str, Any]) -> GoRepr:
    """A metav1.LabelSelector as Go's ``%#v`` prints it."""
    exprs = sel.get("matchExpressions")
    if exprs is None:
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{names.go_quote(str(e.get('key', '')))}, "
            f"Operator:{names.go_quote(str(e.get('operator', '')))}, "
            f"Values:{_go_strings(e.get('values'))}}}"
            for e in exprs
        )
        rendered = "[]v1.LabelSelectorRequirement{" + items + "}"
    return GoRepr(
        f"v1.LabelSelector{{MatchLabels:{_go_string_map(sel.get('matchLabels'))}, "
        f"MatchExpressions:{rendered}}}"
    )


def render_value(value: Any) -> str:
    """How upstream prints a bad value in ``Invalid value: <value>``."""
    if isinstance(value, GoRepr):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return names.go_quote(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _go_strings(value)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return _go_string_map(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Errors:
    """An accumulating list of causes with upstream's constructors."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def _add(self, reason: str, path: str, body: str) -> None:
        self.causes.append({"reason": reason, "message": body, "field": path})

    def required(self, path: str, detail: str = "") -> None:
        self._add("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))

    def forbidden(self, path: str, detail: str) -> None:
        self._add("FieldValueForbidden", path, f"Forbidden: {detail}")

    def too_long(self, path: str, max_bytes: int) -> None:
        self._add("FieldValueTooLong", path, f"Too long: must have at most {max_bytes} bytes")

    def invalid(self, path: str, value: Any, detail: str = "") -> None:
        body = f"Invalid value: {render_value(value)}" + (f": {detail}" if detail else "")
        self._add("FieldValueInvalid", path, body)

    def not_supported(self, path: str, value: Any, valid: Iterable[str]) -> None:
        quoted = ", ".join(names.go_quote(v) for v in valid)
        body = f"Unsupported value: {render_value(value)}: supported values: {quoted}"
        self._add("FieldValueNotSupported", path, body)

    def duplicate(self, path: str, value: Any) -> None:
        self._add("FieldValueDuplicate", path, f"Duplicate value: {render_value(value)}")

    def not_found(self, path: str, value: Any) -> None:
        self._add("FieldValueNotFound", path, f"Not found: {render_value(value)}")

    def each(self, path: str, value: Any, messages: Iterable[str]) -> None:
        """One Invalid cause per message (how upstream reports name-rule failures)."""
        for msg in messages:
            self.invalid(path, value, msg)

    def nonnegative(self, path: str, value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")

    def immutable(self, path: str, new: Any, old: Any, shown: Any = None) -> None:
        if new != old:
            self.invalid(path, new if shown is None else shown, FIELD_IMMUTABLE)


def _d(obj: Any, *path: str) -> Obj:
    """The dict at ``path`` (an empty dict when absent or not a dict)."""
    cur = obj
    for p in path:
        cur = cur.get(p) if isinstance(cur, dict) else None
    return cur if isinstance(cur, dict) else {}


def _list(obj: Any, key: str) -> list[Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, list) else []


def _dicts(obj: Any, key: str) -> list[tuple[int, Obj]]:
    return [(i, x) for i, x in enumerate(_list(obj, key)) if isinstance(x, dict)]


# ---------------------------------------------------------------------------
# Metadata


def _validate_labels(e: Errors, labels: Any, path: str) -> None:
    if not isinstance(labels, dict):
        return
    for k in sorted(labels):
        e.each(path, k, names.is_qualified_name(k))
        v = labels[k]
        if isinstance(v, str):
            e.each(path, v, names.is_label_value(v))


def _annotations(e: Errors, annotations: Any, path: str) -> None:
    if not isinstance(annotations, dict):
        return
    for k in sorted(annotations):
        e.each(path, k, names.is_qualified_name(k.lower()))
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        e.too_long(path, ANNOTATIONS_MAX_BYTES)


def _template_meta(e: Errors, meta: Any, path: str) -> None:
    _validate_labels(e, _d(meta).get("labels"), path + ".labels")
    _annotations(e, _d(meta).get("annotations"), path + ".annotations")


def _object_meta(
    e: Errors, meta: Obj, namespaced: bool, rule: names.NameRule, path: str = "metadata"
) -> None:
    generate = meta.get("generateName") or ""
    if generate:
        e.each(path + ".generateName", generate, rule(generate, True))
    name = meta.get("name") or ""
    if not name:
        e.required(path + ".name", "name or generateName is required")
    else:
        e.each(path + ".name", name, rule(name, False))
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            e.required(path + ".namespace")
        else:
            e.each(path + ".namespace", namespace, names.name_is_dns_label(namespace, False))
    elif namespace:
        e.forbidden(path + ".namespace", "not allowed on this type")
    e.nonnegative(path + ".generation", meta.get("generation"))
    _template_meta(e, meta, path)
    _owner_references(e, meta, path)
    for fin in _list(meta, "finalizers"):
        if isinstance(fin, str):
            e.each(path + ".finalizers", fin, names.is_qualified_name(fin))


def _owner_references(e: Errors, meta: Obj, path: str) -> None:
    for ref in _list(meta, "ownerReferences"):
        ref = ref if isinstance(ref, dict) else {}
        ref_path = path + ".ownerReferences"
        api_version = str(ref.get("apiVersion") or "")
        if not api_version.rpartition("/")[2]:
            e.invalid(ref_path + ".apiVersion", api_version, "version must not be empty")
        for key, what in (("kind", "kind"), ("name", "name"), ("uid", "uid")):
            if not ref.get(key):
                e.invalid(f"{ref_path}.{key}", str(ref.get(key) or ""), f"{what} must not be empty")


def _validate_metadata_update(e: Errors, meta: Obj, old_meta: Obj) -> None:
    for key in ("name", "namespace", "uid"):
        if old_meta.get(key) and meta.get(key) != old_meta.get(key):
            e.invalid(f"metadata.{key}", meta.get(key) or "", FIELD_IMMUTABLE)


# ---------------------------------------------------------------------------
# Pods


_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")


def _enum(e: Errors, path: str, value: Any, valid: tuple[str, ...]) -> None:
    """Required when empty, NotSupported when outside ``valid``."""
    if value in (None, ""):
        e.required(path)
    elif value not in valid:
        e.not_supported(path, value, valid)


def _port_number(e: Errors, path: str, value: Any, required: bool = True) -> None:
    if value in (None, 0):
        if required:
            e.required(path)
        return
    if isinstance(value, int) and not isinstance(value, bool):
        e.each(path, value, names.is_valid_port_num(value))


def _port_num_or_name(e: Errors, path: str, value: Any) -> None:
    if isinstance(value, str):
        e.each(path, value, names.is_valid_port_name(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        e.each(path, value, names.is_valid_port_num(value))


def _container(e: Errors, c: Obj, path: str, seen: set[str], volumes: set[str]) -> None:
    name = c.get("name") or ""
    if not name:
        e.required(path + ".name")
    else:
        e.each(path + ".name", name, names.is_dns1123_label(name))
        if name in seen:
            e.duplicate(path + ".name", name)
        seen.add(name)
    image = c.get("image") or ""
    if not image:
        e.required(path + ".image")
    elif image != image.strip():
        e.invalid(path + ".image", image, "must not have leading or trailing whitespace")
    _container_ports(e, c, path)
    _container_env(e, c, path)
    _volume_mounts(e, c, path, volumes)
    if c.get("imagePullPolicy") not in (None, ""):
        _enum(e, path + ".imagePullPolicy", c.get("imagePullPolicy"), _PULL_POLICIES)
    if c.get("terminationMessagePolicy") not in (None, ""):
        policy = c.get("terminationMessagePolicy")
        _enum(e, path + ".terminationMessagePolicy", policy, _MESSAGE_POLICIES)


def _container_ports(e: Errors, c: Obj, path: str) -> None:
    port_names: set[str] = set()
    for i, port in _dicts(c, "ports"):
        p = f"{path}.ports[{i}]"
        pname = port.get("name") or ""
        if pname:
            e.each(p + ".name", pname, names.is_valid_port_name(pname))
            if pname in port_names:
                e.duplicate(p + ".name", pname)
            port_names.add(pname)
        _port_number(e, p + ".containerPort", port.get("containerPort"))
        _port_number(e, p + ".hostPort", port.get("hostPort"), required=False)
        _enum(e, p + ".protocol", port.get("protocol"), _PROTOCOLS)


def _container_env(e: Errors, c: Obj, path: str) -> None:
    for i, env in _dicts(c, "env"):
        p = f"{path}.env[{i}]"
        ename = env.get("name") or ""
        if not ename:
            e.required(p + ".name")
        else:
            e.each(p + ".name", ename, names.is_env_var_name(ename))
        if env.get("value") and env.get("valueFrom") is not None:
            e.invalid(p + ".valueFrom", "", "may not be specified when `value` is not empty")


def _volume_mounts(e: Errors, c: Obj, path: str, volumes: set[str]) -> None:
    for i, mount in _dicts(c, "volumeMounts"):
        p = f"{path}.volumeMounts[{i}]"
        mname = mount.get("name") or ""
        if not mname:
            e.required(p + ".name")
        elif mname not in volumes:
            e.not_found(p + ".name", mname)
        if not mount.get("mountPath"):
            e.required(p + ".mountPath")


def _pod_spec(e: Errors, spec: Obj, path: str) -> None:
    volumes: set[str] = set()
    for i, vol in _dicts(spec, "volumes"):
        p = f"{path}.volumes[{i}].name"
        vname = vol.get("name") or ""
        if not vname:
            e.required(p)
            continue
        e.each(p, vname, names.is_dns1123_label(vname))
        if vname in volumes:
            e.duplicate(p, vname)
        volumes.add(vname)
    seen: set[str] = set()
    if not _list(spec, "containers"):
        e.required(path + ".containers")
    for key in ("initContainers", "containers"):
        for i, c in _dicts(spec, key):
            _container(e, c, f"{path}.{key}[{i}]", seen, volumes)
    _enum(e, path + ".restartPolicy", spec.get("restartPolicy"), _RESTART_POLICIES)
    _enum(e, path + ".dnsPolicy", spec.get("dnsPolicy"), _DNS_POLICIES)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not 1 <= deadline <= 4294967295:
        e.invalid(
            path + ".activeDeadlineSeconds", deadline, names.inclusive_range_error(1, 4294967295)
        )
    for key, rule in (
        ("nodeName", names.is_dns1123_subdomain),
        ("serviceAccountName", names.is_dns1123_subdomain),
        ("hostname", names.is_dns1123_label),
        ("subdomain", names.is_dns1123_label),
    ):
        value = spec.get(key)
        if isinstance(value, str) and value:
            e.each(f"{path}.{key}", value, rule(value))
    _validate_labels(e, spec.get("nodeSelector"), path + ".nodeSelector")


_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _pod_update(e: Errors, spec: Obj, old_spec: Obj) -> None:
    """Only images, a shorter active deadline and added tolerations may change."""
    munged = clone(spec)
    _keep_old_images(munged, old_spec)
    new_deadline = spec.get("activeDeadlineSeconds")
    old_deadline = old_spec.get("activeDeadlineSeconds")
    if new_deadline is not None:
        if old_deadline is not None and new_deadline > old_deadline:
            e.invalid(
                "spec.activeDeadlineSeconds",
                new_deadline,
                "must be less than or equal to previous value",
            )
        munged["activeDeadlineSeconds"] = old_deadline
    elif old_deadline is not None:
        e.invalid(
            "spec.activeDeadlineSeconds",
            None,
            "must not update from a positive integer to nil value",
        )
    old_tolerations = _list(old_spec, "tolerations")
    if all(t in _list(spec, "tolerations") for t in old_tolerations):
        munged["tolerations"] = old_spec.get("tolerations")
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if (
        isinstance(old_grace, int)
        and old_grace < 0
        and spec.get("terminationGracePeriodSeconds") == 1
    ):
        munged["terminationGracePeriodSeconds"] = old_grace
    gates = _list(spec, "schedulingGates")
    if all(g in _list(old_spec, "schedulingGates") for g in gates):
        munged["schedulingGates"] = old_spec.get("schedulingGates")
    if _pruned(munged) != _pruned(old_spec):
        e.forbidden("spec", _POD_UPDATE_FORBIDDEN)


def _keep_old_images(spec: Obj, old_spec: Obj) -> None:
    """Put the old images back into ``spec``'s containers (images may change)."""
    for key in ("initContainers", "containers"):
        old_containers = _list(old_spec, key)
        for i, c in enumerate(_list(spec, key)):
            if isinstance(c, dict) and i < len(old_containers):
                old_c = old_containers[i]
                if isinstance(old_c, dict):
                    c["image"] = old_c.get("image")


def _pruned(value: Any) -> Any:
    """``value`` without null members, so absent and null compare equal."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _validate_pod(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    _pod_spec(e, spec, "spec")
    if old is not None:
        _pod_update(e, spec, _d(old, "spec"))


# ---------------------------------------------------------------------------
# Label selectors and workloads


def _label_selector(e: Errors, sel: Any, path: str) -> None:
    """metav1.LabelSelector field validation (ValidateLabelSelector)."""
    if not isinstance(sel, dict):
        return
    for i, expr in _dicts(sel, "matchExpressions"):
        p = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = _list(expr, "values")
        if op in ("In", "NotIn"):
            if not values:
                e.required(p + ".values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                e.forbidden(
                    p + ".values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
        else:
            e.invalid(p + ".operator", op or "", "not a valid selector operator")
        key = str(expr.get("key") or "")
        e.each(p + ".key", key, names.is_qualified_name(key))
    _validate_labels(e, sel.get("matchLabels"), path + ".matchLabels")


def _selector_matches_template(e: Errors, sel: Any, template: Obj, path: str) -> None:
    labels = _d(template, "metadata").get("labels")
    try:
        selector = label_selector_from_object(sel if isinstance(sel, dict) else None)
    except SelectorError:
        e.invalid(
            path.rsplit(".", 1)[0] + ".selector", go_label_selector(sel), "invalid label selector"
        )
        return
    if not selector.empty and not selector.matches(labels):
        e.invalid(
            path + ".metadata.labels",
            GoRepr(_go_string_map(labels)),
            "`selector` does not match template `labels`",
        )


def _controller_spec(e: Errors, spec: Obj, what: str, *, pod_spec: bool = True) -> Any:
    """Selector and template checks shared by Deployment, ReplicaSet, StatefulSet and
    DaemonSet. Returns the selector. Upstream leaves a StatefulSet's pod spec unchecked
    (``pod_spec=False``): its containers mount volumes that only its claim templates make."""
    sel = spec.get("selector")
    if not isinstance(sel, dict):
        e.required("spec.selector")
    else:
        _label_selector(e, sel, "spec.selector")
        if not sel.get("matchLabels") and not sel.get("matchExpressions"):
            e.invalid(
                "spec.selector", go_label_selector(sel), f"empty selector is invalid for {what}"
            )
    template = spec.get("template")
    if not isinstance(template, dict):
        e.required("spec.template")
        return sel
    if isinstance(sel, dict):
        _selector_matches_template(e, sel, template, "spec.template")
    _template_meta(e, template.get("metadata"), "spec.template.metadata")
    tspec = _d(template, "spec")
    if pod_spec:
        _pod_spec(e, tspec, "spec.template.spec")
    policy = tspec.get("restartPolicy")
    if policy not in (None, "", "Always"):
        e.not_supported("spec.template.spec.restartPolicy", policy, ("Always",))
    return sel


def _int_or_percent(e: Errors, path: str, value: Any) -> None:
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            e.invalid(path, GoRepr(value), "must be an integer or percentage (e.g '5%')")
        elif int(value[:-1]) > 100:
            e.invalid(path, GoRepr(value), "must not be greater than 100%")
    else:
        e.nonnegative(path, value)


def _validate_deployment(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    for key in ("replicas", "revisionHistoryLimit", "minReadySeconds"):
        e.nonnegative(f"spec.{key}", spec.get(key))
    sel = _controller_spec(e, spec, "deployment")
    if _d(spec, "template", "spec").get("activeDeadlineSeconds") is not None:
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        )
    _deployment_strategy(e, _d(spec, "strategy"))
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int):
        e.nonnegative("spec.progressDeadlineSeconds", deadline)
        if deadline <= (spec.get("minReadySeconds") or 0):
            e.invalid(
                "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
            )
    if old is not None:
        _selector_immutable(e, sel, _d(old, "spec").get("selector"))


def _deployment_strategy(e: Errors, strategy: Obj) -> None:
    stype = strategy.get("type")
    if stype == "Recreate" and strategy.get("rollingUpdate") is not None:
        e.forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )
    elif stype not in ("Recreate", "RollingUpdate"):
        e.not_supported("spec.strategy.type", stype or "", ("Recreate", "RollingUpdate"))
    rolling = _d(strategy, "rollingUpdate")
    for key in ("maxUnavailable", "maxSurge"):
        if rolling.get(key) is not None:
            _int_or_percent(e, f"spec.strategy.rollingUpdate.{key}", rolling[key])
    if rolling.get("maxUnavailable") in (0, "0%") and rolling.get("maxSurge") in (0, "0%"):
        e.invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            GoRepr(str(rolling["maxUnavailable"])),
            "may not be 0 when `maxSurge` is 0",
        )


def _selector_immutable(e: Errors, sel: Any, old_sel: Any) -> None:
    if isinstance(sel, dict) and isinstance(old_sel, dict) and _pruned(sel) != _pruned(old_sel):
        e.invalid("spec.selector", go_label_selector(sel), FIELD_IMMUTABLE)


def _validate_replica_set(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    for key in ("replicas", "minReadySeconds"):
        e.nonnegative(f"spec.{key}", spec.get(key))
    sel = _controller_spec(e, spec, "deployment")
    if _d(spec, "template", "spec").get("activeDeadlineSeconds") is not None:
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        )
    if old is not None:
        _selector_immutable(e, sel, _d(old, "spec").get("selector"))


_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def _validate_stateful_set(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    e.nonnegative("spec.replicas", spec.get("replicas"))
    e.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    _controller_spec(e, spec, "statefulset", pod_spec=False)
    if _d(spec, "template", "spec").get("activeDeadlineSeconds") is not None:
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        )
    policy = spec.get("podManagementPolicy")
    _enum(e, "spec.podManagementPolicy", policy, ("OrderedReady", "Parallel"))
    strategy = _d(spec, "updateStrategy")
    _enum(e, "spec.updateStrategy.type", strategy.get("type"), ("OnDelete", "RollingUpdate"))
    partition = _d(strategy, "rollingUpdate").get("partition")
    e.nonnegative("spec.updateStrategy.rollingUpdate.partition", partition)
    if old is not None:
        frozen = {k: v for k, v in spec.items() if k not in _STS_MUTABLE}
        old_frozen = {k: v for k, v in _d(old, "spec").items() if k not in _STS_MUTABLE}
        if _pruned(frozen) != _pruned(old_frozen):
            e.forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                "'template', 'updateStrategy', 'revisionHistoryLimit', "
                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )


def _validate_daemon_set(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    e.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    e.nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    sel = _controller_spec(e, spec, "daemonset")
    deadline = _d(spec, "template", "spec").get("activeDeadlineSeconds")
    if deadline is not None:
        e.invalid(
            "spec.template.spec.activeDeadlineSeconds",
            deadline,
            "activeDeadlineSeconds must be nil for DaemonSet",
        )
    strategy = _d(spec, "updateStrategy")
    _enum(e, "spec.updateStrategy.type", strategy.get("type"), ("OnDelete", "RollingUpdate"))
    if old is not None:
        _selector_immutable(e, sel, _d(old, "spec").get("selector"))


# ---------------------------------------------------------------------------
# Batch


def _job_spec(e: Errors, spec: Obj, path: str) -> None:
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        e.nonnegative(f"{path}.{key}", spec.get(key))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        e.not_supported(f"{path}.completionMode", mode, ("NonIndexed", "Indexed"))
    template = spec.get("template")
    if not isinstance(template, dict):
        e.required(f"{path}.template")
        return
    sel = spec.get("selector")
    if isinstance(sel, dict):
        _label_selector(e, sel, f"{path}.selector")
        _selector_matches_template(e, sel, template, f"{path}.template")
    elif spec.get("manualSelector"):
        e.required(f"{path}.selector")
    _template_meta(e, template.get("metadata"), f"{path}.template.metadata")
    tspec = _d(template, "spec")
    _pod_spec(e, tspec, f"{path}.template.spec")
    policy = tspec.get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        e.not_supported(f"{path}.template.spec.restartPolicy", policy or "", ("OnFailure", "Never"))


def _validate_job(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    _job_spec(e, spec, "spec")
    if old is None:
        return
    old_spec = _d(old, "spec")
    e.immutable("spec.completionMode", spec.get("completionMode"), old_spec.get("completionMode"))
    if isinstance(old_spec.get("selector"), dict):
        sel, old_sel = spec.get("selector"), old_spec["selector"]
        if _pruned(sel) != _pruned(old_sel):
            e.invalid("spec.selector", go_label_selector(_d(spec, "selector")), FIELD_IMMUTABLE)
    suspended = bool(spec.get("suspend")) and bool(old_spec.get("suspend"))
    if not suspended and _pruned(spec.get("template")) != _pruned(old_spec.get("template")):
        e.invalid("spec.template", GoRepr("core.PodTemplateSpec{...}"), FIELD_IMMUTABLE)


def cron_schedule_error(schedule: str) -> str | None:
    """The robfig/cron standard-parser error for ``schedule`` (None when it parses)."""
    try:
        cron.parse(schedule)
    except cron.CronError as err:
        return str(err)
    return None


def _validate_cron_job(e: Errors, obj: Obj, old: Obj | None) -> None:
    name = _d(obj, "metadata").get("name") or ""
    if len(name) > 52:
        e.invalid("metadata.name", name, "must be no more than 52 characters")
    spec = _d(obj, "spec")
    schedule = spec.get("schedule")
    if not schedule:
        e.required("spec.schedule")
    elif isinstance(schedule, str):
        if re.search(r"(^|\s)(CRON_)?TZ=", schedule):
            e.invalid(
                "spec.schedule",
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            )
        else:
            err = cron_schedule_error(schedule)
            if err:
                e.invalid("spec.schedule", schedule, err)
    policy = spec.get("concurrencyPolicy")
    _enum(e, "spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace"))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        e.nonnegative(f"spec.{key}", spec.get(key))
    _template_meta(e, _d(spec, "jobTemplate").get("metadata"), "spec.jobTemplate.metadata")
    _job_spec(e, _d(spec, "jobTemplate", "spec"), "spec.jobTemplate.spec")


# ---------------------------------------------------------------------------
# Services, config, namespaces


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _go_service_port(port: int, protocol: str) -> GoRepr:
    return GoRepr(
        f'core.ServicePort{{Name:"", Protocol:{names.go_quote(protocol)}, AppProtocol:(*string)(nil), '
        f'Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}'
    )


def _cluster_ips(spec: Obj) -> list[str]:
    ips = [ip for ip in _list(spec, "clusterIPs") if isinstance(ip, str)]
    if not ips and spec.get("clusterIP"):
        ips = [str(spec["clusterIP"])]
    return ips


def _validate_service(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    stype = spec.get("type")
    if stype not in _SERVICE_TYPES:
        e.not_supported("spec.type", stype or "", _SERVICE_TYPES)
    headless = spec.get("clusterIP") == "None"
    ports = _dicts(spec, "ports")
    if not ports and not headless and stype != "ExternalName":
        e.required("spec.ports")
    if stype == "ExternalName" and not spec.get("externalName"):
        e.required("spec.externalName")
    _service_ports(e, ports)
    affinity = spec.get("sessionAffinity")
    if affinity not in (None, "None", "ClientIP"):
        e.not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None"))
    _validate_labels(e, spec.get("selector"), "spec.selector")
    if old is None:
        return
    old_spec = _d(old, "spec")
    if "ExternalName" in (stype, old_spec.get("type")):
        return
    new_ips, old_ips = _cluster_ips(spec), _cluster_ips(old_spec)
    for i, ip in enumerate(old_ips):
        if i < len(new_ips) and new_ips[i] != ip:
            e.invalid(f"spec.clusterIPs[{i}]", new_ips, "may not change once set")


def _service_ports(e: Errors, ports: list[tuple[int, Obj]]) -> None:
    port_names: set[str] = set()
    keys: set[tuple[Any, Any]] = set()
    for i, port in ports:
        p = f"spec.ports[{i}]"
        pname = port.get("name") or ""
        if len(ports) > 1 and not pname:
            e.required(p + ".name")
        elif pname:
            e.each(p + ".name", pname, names.is_dns1123_label(pname))
            if pname in port_names:
                e.duplicate(p + ".name", pname)
            port_names.add(pname)
        number = port.get("port")
        if isinstance(number, int) and not isinstance(number, bool):
            e.each(p + ".port", number, names.is_valid_port_num(number))
        _enum(e, p + ".protocol", port.get("protocol"), _PROTOCOLS)
        _port_num_or_name(e, p + ".targetPort", port.get("targetPort"))
        key = (number, port.get("protocol"))
        if key in keys and isinstance(number, int):
            e.duplicate(p, _go_service_port(number, str(port.get("protocol") or "")))
        keys.add(key)


def _data_keys(e: Errors, data: Any, path: str) -> None:
    if isinstance(data, dict):
        for key in sorted(data):
            e.each(f"{path}[{key}]", key, names.is_config_map_key(key))


def _immutable_data(e: Errors, obj: Obj, old: Obj, fields: tuple[str, ...]) -> None:
    if not old.get("immutable"):
        return
    if not obj.get("immutable"):
        e.forbidden("immutable", "field is immutable when `immutable` is set")
    for key in fields:
        if (obj.get(key) or {}) != (old.get(key) or {}):
            e.forbidden(key, "field is immutable when `immutable` is set")


def _validate_config_map(e: Errors, obj: Obj, old: Obj | None) -> None:
    data, binary = obj.get("data"), obj.get("binaryData")
    _data_keys(e, data, "data")
    _data_keys(e, binary, "binaryData")
    if isinstance(data, dict) and isinstance(binary, dict):
        for key in sorted(set(data) & set(binary)):
            e.invalid(f"data[{key}]", key, "duplicate of key present in binaryData")
    size = sum(len(str(v).encode()) for v in (data or {}).values()) + sum(
        len(_b64_decoded(v)) for v in (binary or {}).values()
    )
    if size > MAX_SECRET_BYTES:
        e.too_long("", MAX_SECRET_BYTES)
    if old is not None:
        _immutable_data(e, obj, old, ("data", "binaryData"))


def _b64_decoded(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return b""


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _validate_secret(e: Errors, obj: Obj, old: Obj | None) -> None:
    data = dict(obj.get("data") or {})
    string_data = obj.get("stringData") or {}
    data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
    _data_keys(e, data, "data")
    if sum(len(_b64_decoded(v)) for v in data.values()) > MAX_SECRET_BYTES:
        e.too_long("data", MAX_SECRET_BYTES)
    stype = obj.get("type")
    for key in _SECRET_REQUIRED_KEYS.get(str(stype), ()):
        if not data.get(key):
            e.required(f"data[{key}]")
    if (
        stype == "kubernetes.io/basic-auth"
        and not data.get("username")
        and not data.get("password")
    ):
        e.required("data[username]")
        e.required("data[password]")
    if stype == "kubernetes.io/service-account-token":
        annotations = _d(obj, "metadata", "annotations")
        if not annotations.get("kubernetes.io/service-account.name"):
            e.required("metadata.annotations[kubernetes.io/service-account.name]")
    if old is not None:
        if stype != old.get("type"):
            e.invalid("type", stype or "", FIELD_IMMUTABLE)
        _immutable_data(e, obj, old, ("data",))


def _validate_namespace(e: Errors, obj: Obj, old: Obj | None) -> None:
    for fin in _list(_d(obj, "spec"), "finalizers"):
        if not isinstance(fin, str):
            continue
        errs = names.is_qualified_name(fin)
        if not errs and "/" not in fin and fin != "kubernetes":
            errs = ["name is neither a standard finalizer name nor is it fully qualified"]
        e.each("spec.finalizers", fin, errs)


def _validate_pvc(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    modes = _list(spec, "accessModes")
    valid = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
    if not modes:
        e.required("spec.accessModes", "at least 1 access mode is required")
    for mode in modes:
        if mode not in valid:
            e.not_supported("spec.accessModes", mode, valid)
    if not _d(spec, "resources", "requests").get("storage"):
        e.required("spec.resources[storage]")
    if old is None:
        return
    old_spec = _d(old, "spec")
    new_cmp = {k: v for k, v in spec.items() if k != "resources"}
    old_cmp = {k: v for k, v in old_spec.items() if k != "resources"}
    if not old_spec.get("volumeName"):
        new_cmp.pop("volumeName", None)
        old_cmp.pop("volumeName", None)
    new_limits = _d(spec, "resources").get("limits")
    if _pruned(new_cmp) != _pruned(old_cmp) or new_limits != _d(old_spec, "resources").get(
        "limits"
    ):
        e.forbidden(
            "spec", "spec is immutable after creation except resources.requests for bound claims"
        )


def _validate_lease(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        e.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0")
    e.nonnegative("spec.leaseTransitions", spec.get("leaseTransitions"))


def _validate_event(e: Errors, obj: Obj, old: Obj | None) -> None:
    namespace = _d(obj, "metadata").get("namespace") or ""
    involved = _d(obj, "involvedObject").get("namespace") or ""
    if (not involved and namespace not in ("", "default")) or (involved and involved != namespace):
        e.invalid("involvedObject.namespace", involved, "does not match event.namespace")


# ---------------------------------------------------------------------------
# RBAC, CRDs, storage, networking


_RBAC_GROUP = "rbac.authorization.k8s.io"


def _validate_rules(e: Errors, obj: Obj, namespaced: bool) -> None:
    for i, rule in _dicts(obj, "rules"):
        p = f"rules[{i}]"
        if not _list(rule, "verbs"):
            e.required(p + ".verbs", "verbs must contain at least one value")
        urls = _list(rule, "nonResourceURLs")
        if urls:
            if namespaced:
                e.invalid(
                    p + ".nonResourceURLs",
                    urls,
                    "namespaced rules cannot apply to non-resource URLs",
                )
            if _list(rule, "apiGroups") or _list(rule, "resources") or _list(rule, "resourceNames"):
                e.invalid(
                    p + ".nonResourceURLs",
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            continue
        if not _list(rule, "apiGroups"):
            e.required(p + ".apiGroups", "resource rules must supply at least one api group")
        if not _list(rule, "resources"):
            e.required(p + ".resources", "resource rules must supply at least one resource")


def _validate_role(e: Errors, obj: Obj, old: Obj | None) -> None:
    _validate_rules(e, obj, True)


def _validate_cluster_role(e: Errors, obj: Obj, old: Obj | None) -> None:
    _validate_rules(e, obj, False)


def _go_role_ref(ref: Obj) -> GoRepr:
    return GoRepr(
        f"rbac.RoleRef{{APIGroup:{names.go_quote(str(ref.get('apiGroup') or ''))}, "
        f"Kind:{names.go_quote(str(ref.get('kind') or ''))}, Name:{names.go_quote(str(ref.get('name') or ''))}}}"
    )


def _binding(e: Errors, obj: Obj, old: Obj | None, namespaced: bool) -> None:
    ref = _d(obj, "roleRef")
    if ref.get("apiGroup") != _RBAC_GROUP:
        e.not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (_RBAC_GROUP,))
    kinds_ok = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds_ok:
        e.not_supported("roleRef.kind", ref.get("kind") or "", kinds_ok)
    if not ref.get("name"):
        e.required("roleRef.name")
    else:
        e.each("roleRef.name", ref["name"], names.is_path_segment_name(str(ref["name"])))
    for i, subject in _dicts(obj, "subjects"):
        _subject(e, subject, f"subjects[{i}]", namespaced)
    if old is not None and _pruned(ref) != _pruned(_d(old, "roleRef")):
        e.invalid("roleRef", _go_role_ref(ref), "cannot change roleRef")


def _subject(e: Errors, subject: Obj, p: str, namespaced: bool) -> None:
    kind, name, group = subject.get("kind"), subject.get("name") or "", subject.get("apiGroup")
    if not name:
        e.required(p + ".name")
    if kind == "ServiceAccount":
        if name:
            e.each(p + ".name", name, names.is_dns1123_subdomain(name))
        if group not in (None, ""):
            e.not_supported(p + ".apiGroup", group, ("",))
        if not namespaced and not subject.get("namespace"):
            e.required(p + ".namespace")
    elif kind in ("User", "Group"):
        if group != _RBAC_GROUP:
            e.not_supported(p + ".apiGroup", group or "", (_RBAC_GROUP,))
    else:
        e.not_supported(p + ".kind", kind or "", ("ServiceAccount", "User", "Group"))


def _validate_role_binding(e: Errors, obj: Obj, old: Obj | None) -> None:
    _binding(e, obj, old, True)


def _validate_cluster_role_binding(e: Errors, obj: Obj, old: Obj | None) -> None:
    _binding(e, obj, old, False)


def _crd_name_rule(obj: Obj) -> names.NameRule:
    spec = _d(obj, "spec")
    expected = f"{_d(spec, 'names').get('plural', '')}.{spec.get('group', '')}"

    def rule(name: str, prefix: bool) -> list[str]:
        return [] if name == expected else ['must be spec.names.plural+"."+spec.group']

    return rule


def _validate_crd(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    group = spec.get("group") or ""
    if not group:
        e.required("spec.group")
    else:
        e.each("spec.group", group, names.is_dns1123_subdomain(group))
        if len(group.split(".")) < 2:
            e.invalid("spec.group", group, "should be a domain with at least one dot")
    scope = spec.get("scope")
    _enum(e, "spec.scope", scope, ("Cluster", "Namespaced"))
    _crd_names(e, _d(spec, "names"))
    _crd_versions(e, _dicts(spec, "versions"))
    if old is not None:
        e.immutable("spec.scope", scope, _d(old, "spec").get("scope"))


def _crd_names(e: Errors, crd_names: Obj) -> None:
    for key in ("plural", "singular"):
        value = crd_names.get(key) or ""
        if key == "plural" and not value:
            e.required("spec.names.plural")
        elif value and names.is_dns1035_label(value):
            e.invalid(f"spec.names.{key}", value, ",".join(names.is_dns1035_label(value)))
    for key in ("kind", "listKind"):
        value = crd_names.get(key) or ""
        if not value:
            e.required(f"spec.names.{key}")
        elif names.is_dns1035_label(value.lower()):
            e.invalid(
                f"spec.names.{key}",
                value,
                "may have mixed case, but should otherwise match: "
                + ",".join(names.is_dns1035_label(value.lower())),
            )


def _crd_versions(e: Errors, versions: list[tuple[int, Obj]]) -> None:
    shown = GoRepr("[]apiextensions.CustomResourceDefinitionVersion{...}")
    if not versions or sum(1 for _, v in versions if v.get("storage")) != 1:
        e.invalid("spec.versions", shown, "must have exactly one version marked as storage version")
    seen: set[str] = set()
    for i, version in versions:
        vname = version.get("name") or ""
        e.each(f"spec.versions[{i}].name", vname, names.is_dns1035_label(vname))
        if vname in seen:
            e.invalid("spec.versions", shown, "must contain unique version names")
        seen.add(vname)
        if not _d(version, "schema").get("openAPIV3Schema"):
            e.required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required")


def _validate_storage_class(e: Errors, obj: Obj, old: Obj | None) -> None:
    if not obj.get("provisioner"):
        e.required("provisioner")
    reclaim = obj.get("reclaimPolicy")
    if reclaim not in (None, "Delete", "Retain"):
        e.not_supported("reclaimPolicy", reclaim, ("Delete", "Retain"))
    mode = obj.get("volumeBindingMode")
    if mode not in (None, "Immediate", "WaitForFirstConsumer"):
        e.not_supported("volumeBindingMode", mode, ("Immediate", "WaitForFirstConsumer"))
    if old is not None:
        if obj.get("provisioner") != old.get("provisioner"):
            e.forbidden("provisioner", "updates to provisioner are forbidden.")
        if (obj.get("parameters") or {}) != (old.get("parameters") or {}):
            e.forbidden("parameters", "updates to parameters are forbidden.")


def _validate_network_policy(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    _label_selector(e, spec.get("podSelector"), "spec.podSelector")
    for direction in ("ingress", "egress"):
        for i, rule in _dicts(spec, direction):
            for j, port in _dicts(rule, "ports"):
                protocol = port.get("protocol")
                if protocol not in (None, *_PROTOCOLS):
                    e.not_supported(
                        f"spec.{direction}[{i}].ports[{j}].protocol", protocol, _PROTOCOLS
                    )
    for i, ptype in enumerate(_list(spec, "policyTypes")):
        if ptype not in ("Ingress", "Egress"):
            e.not_supported(f"spec.policyTypes[{i}]", ptype, ("Ingress", "Egress"))


def _validate_pdb(e: Errors, obj: Obj, old: Obj | None) -> None:
    spec = _d(obj, "spec")
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        e.invalid(
            "spec.minAvailable",
            GoRepr(str(spec["minAvailable"])),
            "minAvailable and maxUnavailable cannot be both set",
        )
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            _int_or_percent(e, f"spec.{key}", spec[key])
    _label_selector(e, spec.get("selector"), "spec.selector")


def _validate_ingress(e: Errors, obj: Obj, old: Obj | None) -> None:
    for i, rule in _dicts(_d(obj, "spec"), "rules"):
        for j, path in _dicts(_d(rule, "http"), "paths"):
            p = f"spec.rules[{i}].http.paths[{j}]"
            ptype = path.get("pathType")
            if not ptype:
                e.required(p + ".pathType", "pathType must be specified")
            elif ptype not in ("Exact", "ImplementationSpecific", "Prefix"):
                e.not_supported(
                    p + ".pathType", ptype, ("Exact", "ImplementationSpecific", "Prefix")
                )
            value = path.get("path")
            if ptype in ("Exact", "Prefix") and not str(value or "").startswith("/"):
                e.invalid(p + ".path", value or "", "must be an absolute path")


def _validate_pod_template(e: Errors, obj: Obj, old: Obj | None) -> None:
    template = _d(obj, "template")
    _template_meta(e, template.get("metadata"), "template.metadata")
    _pod_spec(e, _d(template, "spec"), "template.spec")


_Validator = Callable[[Errors, Obj, "Obj | None"], None]

_VALIDATORS: dict[tuple[str, str], _Validator] = {
    ("", "pods"): _validate_pod,
    ("", "podtemplates"): _validate_pod_template,
    ("", "services"): _validate_service,
    ("", "configmaps"): _validate_config_map,
    ("", "secrets"): _validate_secret,
    ("", "namespaces"): _validate_namespace,
    ("", "persistentvolumeclaims"): _validate_pvc,
    ("", "events"): _validate_event,
    ("apps", "deployments"): _validate_deployment,
    ("apps", "replicasets"): _validate_replica_set,
    ("apps", "statefulsets"): _validate_stateful_set,
    ("apps", "daemonsets"): _validate_daemon_set,
    ("batch", "jobs"): _validate_job,
    ("batch", "cronjobs"): _validate_cron_job,
    ("coordination.k8s.io", "leases"): _validate_lease,
    ("rbac.authorization.k8s.io", "roles"): _validate_role,
    ("rbac.authorization.k8s.io", "clusterroles"): _validate_cluster_role,
    ("rbac.authorization.k8s.io", "rolebindings"): _validate_role_binding,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _validate_cluster_role_binding,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _validate_crd,
    ("storage.k8s.io", "storageclasses"): _validate_storage_class,
    ("networking.k8s.io", "networkpolicies"): _validate_network_policy,
    ("networking.k8s.io", "ingresses"): _validate_ingress,
    ("policy", "poddisruptionbudgets"): _validate_pdb,
}

_NAME_RULES: dict[tuple[str, str], names.NameRule] = {
    ("", "namespaces"): names.name_is_dns_label,
    ("", "services"): names.name_is_dns1035_label,
    ("", "persistentvolumes"): names.name_is_path_segment,
    ("rbac.authorization.k8s.io", "roles"): names.name_is_path_segment,
    ("rbac.authorization.k8s.io", "clusterroles"): names.name_is_path_segment,
    ("rbac.authorization.k8s.io", "rolebindings"): names.name_is_path_segment,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): names.name_is_path_segment,
    ("certificates.k8s.io", "certificatesigningrequests"): names.name_any,
}


def validate(
    group: str,
    resource: str,
    kind: str,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    *,
    namespaced: bool,
) -> list[Cause]:
    """Validate a (defaulted) object; with ``old`` also the update rules. Returns causes
    (empty when valid). Unknown resources (custom resources) get metadata checks only."""
    e = Errors()
    meta = _d(obj, "metadata")
    if (group, resource) == ("apiextensions.k8s.io", "customresourcedefinitions"):
        rule = _crd_name_rule(obj)
    else:
        rule = _NAME_RULES.get((group, resource), names.name_is_dns_subdomain)
    _object_meta(e, meta, namespaced, rule)
    if old is not None:
        _validate_metadata_update(e, meta, _d(old, "metadata"))
    validator = _VALIDATORS.get((group, resource))
    if validator is not None:
        validator(e, obj, old)
    return e.causes


# ---------------------------------------------------------------------------
# Schema checks (decode-time errors)


@dataclass(frozen=True)
class _Node:
    """A position in a decoded body: the cause path (``spec.ports[0].port``) and the Go
    decoder's context (``ServicePort.spec.ports.port``: innermost struct, JSON keys)."""

    path: str = ""
    struct: str = ""
    keys: str = ""

    def field(self, struct_type: str, key: str) -> _Node:
        return _Node(
            f"{self.path}.{key}" if self.path else key,
            struct_type.rpartition(".")[2],
            f"{self.keys}.{key}" if self.keys else key,
        )

    def item(self, suffix: str) -> _Node:
        return _Node(self.path + suffix, self.struct, self.keys)


def _walk(
    ref: kinds.TypeRef, value: Any, node: _Node, visit: Callable[[kinds.TypeRef, Any, _Node], bool]
) -> None:
    """Depth-first walk of ``value`` along the schema; ``visit`` returns False to stop
    descending below a node."""
    if not visit(ref, value, node):
        return
    if ref.shape == "struct" and isinstance(value, dict):
        fields = kinds.fields(ref.name)
        for key, child in value.items():
            f = fields.get(key)
            if f is not None:
                _walk(kinds.resolve(f.type), child, node.field(ref.name, key), visit)
    elif ref.shape == "list" and isinstance(value, list) and ref.elem is not None:
        for i, child in enumerate(value):
            _walk(ref.elem, child, node.item(f"[{i}]"), visit)
    elif ref.shape == "map" and isinstance(value, dict) and ref.elem is not None:
        for key, child in value.items():
            _walk(ref.elem, child, node.item(f".{key}" if node.path else key), visit)


_TOP_LEVEL = frozenset({"apiVersion", "kind"})


def unknown_fields(type_name: str, obj: Any, *, prune: bool = False) -> list[str]:
    """Dotted paths (``spec.containers[0].foo``) of JSON fields the schema does not know;
    with ``prune`` they are also removed from ``obj`` (what Go decoding would drop).

    Upstream reports these as ``strict decoding error: unknown field "<path>"``."""
    found: list[str] = []

    def visit(ref: kinds.TypeRef, value: Any, node: _Node) -> bool:
        if ref.shape == "struct" and isinstance(value, dict):
            fields = kinds.fields(ref.name)
            for key in list(value):
                if key not in fields and not (not node.path and key in _TOP_LEVEL):
                    found.append(f"{node.path}.{key}" if node.path else key)
                    if prune:
                        del value[key]
        return True

    _walk(kinds.TypeRef("struct", type_name), obj, _Node(), visit)
    return found


#: The value range of each Go integer type (Go's decoder rejects a number outside it).
_INT_RANGES = {
    "int": (-(2**63), 2**63 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_INT_TYPES = frozenset(_INT_RANGES)


def _fits_int(name: str, value: int | float) -> bool:
    """Whether a JSON number is a whole number in the range of Go type ``name``."""
    if isinstance(value, float) and not value.is_integer():
        return False
    low, high = _INT_RANGES[name]
    return low <= value <= high


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_type(ref: kinds.TypeRef) -> str:
    if ref.shape == "struct":
        group, _, name = ref.name.partition(".")
        return f"{group.rsplit('/', 1)[-1]}.{name}"
    if ref.shape == "list" and ref.elem is not None:
        return "[]" + _go_type(ref.elem)
    if ref.shape == "map" and ref.elem is not None:
        return "map[string]" + _go_type(ref.elem)
    if ref.shape == "bytes":
        return "[]uint8"
    return ref.name


#: The JSON kind a value of each composite shape must have.
_SHAPE_KINDS = {"struct": "object", "list": "array", "map": "object", "bytes": "string"}


def _type_error(ref: kinds.TypeRef, value: Any, node: _Node) -> str | None:
    """The JSON type mismatch between ``value`` and ``ref``, or None."""
    if value is None:
        return None
    if ref.shape == "special":
        return _special_error(ref.name, value)
    kind = _json_kind(value)
    if ref.shape in _SHAPE_KINDS:
        ok = kind == _SHAPE_KINDS[ref.shape]
    elif ref.name in _INT_TYPES:
        ok = kind == "number" and _fits_int(ref.name, value)
    elif ref.name in ("float32", "float64"):
        ok = kind == "number"
    elif ref.name == "bool":
        ok = kind == "bool"
    else:
        ok = kind == "string"
    if ok:
        return None
    shown = f"number {value}" if kind == "number" and ref.name in _INT_TYPES else kind
    into = f"Go struct field {node.struct}.{node.keys}" if node.struct else "Go value"
    return f"json: cannot unmarshal {shown} into {into} of type {_go_type(ref)}"


def _special_error(name: str, value: Any) -> str | None:
    if name == "intstr.IntOrString":
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return None
        return f"json: cannot unmarshal {_json_kind(value)} into Go value of type int32"
    if name == "resource.Quantity":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return ERR_FORMAT
        try:
            parse_quantity(value)
        except ValueError as e:
            return str(e)
        return None
    if name in ("meta/v1.Time", "meta/v1.MicroTime", "meta/v1.Duration"):
        if isinstance(value, str):
            return None
        return f"json: cannot unmarshal {_json_kind(value)} into Go value of type string"
    return None


def validate_types(type_name: str, obj: Any) -> list[Cause]:
    """JSON type mismatches against the schema, as causes with the Go decoder's message.

    Upstream fails these at decode time with 400 BadRequest:
    ``<Kind> in version "<v>" cannot be handled as a <Kind>: <message of the first cause>``."""
    found: list[Cause] = []

    def visit(ref: kinds.TypeRef, value: Any, node: _Node) -> bool:
        err = _type_error(ref, value, node)
        if err is None and ref.shape == "bytes" and isinstance(value, str):
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                err = "illegal base64 data at input byte " + str(_bad_base64_offset(value))
        if err is not None:
            found.append({"reason": "FieldValueTypeInvalid", "message": err, "field": node.path})
            return False
        return True

    _walk(kinds.TypeRef("struct", type_name), obj, _Node(), visit)
    return found


_B64_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _bad_base64_offset(value: str) -> int:
    """Where Go's base64 decoder reports the first bad input byte."""
    for i, c in enumerate(value):
        if c == "=":
            return i if len(value) % 4 or i < len(value) - 2 else len(value)
        if c not in _B64_CHARS and c not in "\r\n":
            return i
    return len(value) - len(value) % 4
