"""Server-side printing: ``meta.k8s.io/v1`` Tables, the columns ``kubectl get`` shows.

kubectl asks for a Table and prints its cells verbatim, so the columns and the text of
each cell follow upstream's printers (``pkg/printers/internalversion``) for the kinds we
serve. Like the upstream apiserver, rows always carry the ``-o wide`` cells too; columns
with ``priority`` > 0 are the ones kubectl shows only with ``-o wide``.

Custom resources use their CRD version's ``additionalPrinterColumns`` (JSONPath cells);
kinds without a printer get the generic ``Name`` / ``Created At`` table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edgek import timefmt
from edgek.objects import Obj, meta
from server.apiserver import jsonpath

Cells = list[Any]

#: What ``includeObject`` may ask for in each row.
INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_ROLE_LABEL = "kubernetes.io/role"
_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
_ACCESS_MODES = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)
_LIST_MAX = 3  # endpoints/hosts columns show at most this many entries


# --------------------------------------------------------------------------- columns


def _column(
    name: str, description: str, type_: str = "string", *, priority: int = 0, fmt: str = ""
) -> dict[str, Any]:
    """One ``TableColumnDefinition`` (every field is always present on the wire)."""
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


_NAME = _column("Name", "The object's name, unique within its namespace.", fmt="name")
_AGE = _column("Age", "Time elapsed since the object was created.")
_CREATED_AT = _column("Created At", "When the object was created.", "date")
_CONTAINERS = _column("Containers", "Names of the containers in the template.", priority=1)
_IMAGES = _column("Images", "Images used by the containers in the template.", priority=1)
_SELECTOR = _column("Selector", "Label selector for the pods managed.", priority=1)
_VOLUME_MODE = _column("VolumeMode", "Filesystem or Block.", priority=1)


@dataclass(frozen=True)
class _Printer:
    """Columns of one resource plus the function computing a row's cells."""

    columns: tuple[dict[str, Any], ...]
    cells: Callable[[Obj, datetime], Cells]
    conditions: Callable[[Obj], list[dict[str, str]]] | None = None


# --------------------------------------------------------------------------- helpers


def _dig(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...`` or None when any step is missing or null."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _items(obj: Any, *path: str) -> list[Any]:
    """A list field (missing or null reads as empty)."""
    value = _dig(obj, *path)
    return value if isinstance(value, list) else []


def _mapping(obj: Any, *path: str) -> dict[str, Any]:
    """A map field (missing or null reads as empty)."""
    value = _dig(obj, *path)
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _time(text: Any) -> datetime | None:
    """A timestamp field as a datetime; None when unset, zero or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = timefmt.parse_time(text)
    except ValueError:
        return None
    return None if when == _ZERO_TIME else when


def _since(text: Any, now: datetime) -> str:
    """``translateTimestampSince``: the human age of a timestamp, ``<unknown>`` if unset."""
    when = _time(text)
    return "<unknown>" if when is None else timefmt.human_duration(now - when)


def _age(obj: Obj, now: datetime) -> str:
    return _since(meta(obj).get("creationTimestamp"), now)


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate > current else current


def _format_labels(labels: Any) -> str:
    """``k=v`` pairs sorted by key, ``<none>`` when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_text(selector: Any) -> str | None:
    """A ``LabelSelector`` in selector syntax; None when it is invalid.

    A missing or empty selector prints as an empty string.
    """
    if not isinstance(selector, dict):
        return ""
    requirements: list[tuple[str, str]] = [
        (k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key", "")
        op = expression.get("operator")
        values = sorted(expression.get("values") or [])
        if op in ("In", "NotIn"):
            if not values:
                return None
            word = "in" if op == "In" else "notin"
            requirements.append((key, f"{key} {word} ({','.join(values)})"))
        elif op == "Exists" and not values:
            requirements.append((key, key))
        elif op == "DoesNotExist" and not values:
            requirements.append((key, f"!{key}"))
        else:
            return None
    requirements.sort(key=lambda item: item[0])
    return ",".join(text for _, text in requirements)


def _format_selector(selector: Any) -> str:
    """``FormatLabelSelector``: ``<none>`` when empty, ``<error>`` when invalid."""
    text = _selector_text(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def _container_cells(pod_spec: Any) -> Cells:
    """The CONTAINERS and IMAGES cells of a pod template."""
    containers = _items(pod_spec, "containers")
    names = ",".join(c.get("name", "") for c in containers)
    images = ",".join(c.get("image", "") for c in containers)
    return [names, images]


def _condition_true(conditions: list[Any], kind: str) -> bool:
    """Whether the first condition of type ``kind`` has status True."""
    for condition in conditions:
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


def _access_modes(modes: list[Any]) -> str:
    return ",".join(short for mode, short in _ACCESS_MODES if mode in modes)


def _load_balancer(status: Any) -> str:
    """Sorted, de-duplicated ingress IPs (or hostnames) of a load balancer status."""
    found = {
        entry.get("ip") or entry.get("hostname")
        for entry in _items(status, "ingress")
        if entry.get("ip") or entry.get("hostname")
    }
    return ",".join(sorted(found))


def _more(shown: list[str], total: int, empty: str) -> str:
    """Join up to three entries, adding `` + N more...`` for the rest."""
    text = ",".join(shown)
    if total > len(shown):
        return f"{text} + {total - len(shown)} more..."
    return text or empty


# --------------------------------------------------------------------------- core/v1


def _restartable(container: Any) -> bool:
    """A sidecar: an init container with ``restartPolicy: Always``."""
    return isinstance(container, dict) and container.get("restartPolicy") == "Always"


def _termination_reason(terminated: Obj, prefix: str) -> str:
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if _int(terminated.get("signal")):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{_int(terminated.get('exitCode'))}"


def _scheduling_gated(conditions: list[Obj]) -> bool:
    """Whether the pod's scheduling is held by a scheduling gate."""
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions
    )


def _app_containers(
    status: Obj, conditions: list[Obj], reason: str, restarts: int, last_restart: datetime | None
) -> tuple[int, int, datetime | None, str]:
    """Fold the app containers' statuses into the pod's row: the ready running ones, the
    restarts and last restart (counting on from the given), and the reason shown."""
    ready = 0
    has_running = False
    for container in reversed(_items(status, "containerStatuses")):
        restarts += _int(container.get("restartCount"))
        last_restart = _later(
            last_restart, _time(_dig(container, "lastState", "terminated", "finishedAt"))
        )
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if waiting is not None and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None:
            reason = _termination_reason(terminated, "")
        elif container.get("ready") and state.get("running") is not None:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        ready_condition = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
        )
        reason = "Running" if ready_condition else "NotReady"
    return ready, restarts, last_restart, reason


def _deleting_reason(status: Obj, phase: str, reason: str) -> str:
    """The reason shown for a pod being deleted."""
    if status.get("reason") == "NodeLost":
        return "Unknown"
    if phase not in ("Succeeded", "Failed"):
        return "Terminating"
    return reason


def _restarts_text(restarts: int, last_restart: datetime | None, now: datetime) -> str:
    """The RESTARTS cell: the count, and how long ago the last one was."""
    if restarts and last_restart is not None:
        return f"{restarts} ({timefmt.human_duration(now - last_restart)} ago)"
    return str(restarts)


def _gates_text(gates: list[Obj], conditions: list[Obj]) -> str:
    """The READINESS GATES cell: how many of the gates' conditions are True."""
    if not gates:
        return "<none>"
    passed = 0
    for gate in gates:
        match = next((c for c in conditions if c.get("type") == gate.get("conditionType")), None)
        passed += match is not None and match.get("status") == "True"
    return f"{passed}/{len(gates)}"


def _pod_cells(pod: Obj, now: datetime) -> Cells:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    conditions = _items(status, "conditions")
    init_specs = {c.get("name"): c for c in _items(spec, "initContainers")}
    total = len(_items(spec, "containers")) + sum(map(_restartable, init_specs.values()))
    ready = 0
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    if _scheduling_gated(conditions):
        reason = "SchedulingGated"

    restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    initializing = False
    init_statuses = _items(status, "initContainerStatuses")
    for index, container in enumerate(init_statuses):
        finished = _time(_dig(container, "lastState", "terminated", "finishedAt"))
        restarts += _int(container.get("restartCount"))
        last_restart = _later(last_restart, finished)
        sidecar = _restartable(init_specs.get(container.get("name")))
        if sidecar:
            sidecar_restarts += _int(container.get("restartCount"))
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and _int(terminated.get("exitCode")) == 0:
            continue
        if sidecar and container.get("started"):
            ready += bool(container.get("ready"))
            continue
        initializing = True
        if terminated is not None:
            reason = _termination_reason(terminated, "Init:")
        elif waiting is not None and waiting.get("reason") not in (None, "", "PodInitializing"):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        running, restarts, last_restart, reason = _app_containers(
            status, conditions, reason, sidecar_restarts, last_sidecar_restart
        )
        ready += running

    if meta(pod).get("deletionTimestamp"):
        reason = _deleting_reason(status, phase, reason)

    pod_ips = _items(status, "podIPs")
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    return [
        meta(pod).get("name", ""),
        f"{ready}/{total}",
        reason,
        _restarts_text(restarts, last_restart, now),
        _age(pod, now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        _gates_text(_items(spec, "readinessGates"), conditions),
    ]


def _pod_conditions(pod: Obj) -> list[dict[str, str]]:
    """Row conditions: finished pods are marked Completed (kubectl may hide them)."""
    phase = _dig(pod, "status", "phase")
    messages = {"Succeeded": "The pod has completed successfully.", "Failed": "The pod failed."}
    if phase not in messages:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": messages[phase]}]


def _pod_template_cells(obj: Obj, now: datetime) -> Cells:
    template = obj.get("template") or {}
    return [
        meta(obj).get("name", ""),
        *_container_cells(template.get("spec")),
        _format_labels(_dig(template, "metadata", "labels")),
    ]


def _namespace_cells(obj: Obj, now: datetime) -> Cells:
    return [meta(obj).get("name", ""), _dig(obj, "status", "phase") or "", _age(obj, now)]


def _node_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = [c for c in _items(status, "conditions") if c.get("type") == "Ready"]
    states = []
    if ready:
        states.append("Ready" if ready[-1].get("status") == "True" else "NotReady")
    else:
        states.append("Unknown")
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in _mapping(obj, "metadata", "labels").items():
        if key.startswith(_NODE_ROLE_PREFIX) and key[len(_NODE_ROLE_PREFIX) :]:
            roles.add(key[len(_NODE_ROLE_PREFIX) :])
        elif key == _NODE_ROLE_LABEL and value:
            roles.add(value)
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        found = [a for a in _items(status, "addresses") if a.get("type") == kind]
        return str(found[0].get("address", "")) if found else "<none>"

    return [
        meta(obj).get("name", ""),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        _age(obj, now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _external_ip(spec: Obj, status: Obj) -> str:
    """The EXTERNAL-IP cell of a Service."""
    external = [str(ip) for ip in _items(spec, "externalIPs")]
    kind = spec.get("type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        balancer = _load_balancer(status.get("loadBalancer"))
        if external:
            return ",".join([*(balancer.split(",") if balancer else []), *external])
        return balancer or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_ports(ports: list[Any]) -> str:
    pieces = []
    for port in ports:
        protocol = port.get("protocol", "TCP")
        node_port = _int(port.get("nodePort"))
        middle = f":{node_port}" if node_port > 0 else ""
        pieces.append(f"{_int(port.get('port'))}{middle}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    cluster_ips = _items(spec, "clusterIPs")
    cluster_ip = cluster_ips[0] if cluster_ips else spec.get("clusterIP") or "<none>"
    return [
        meta(obj).get("name", ""),
        spec.get("type", ""),
        cluster_ip,
        _external_ip(spec, status),
        _service_ports(_items(spec, "ports")),
        _age(obj, now),
        _format_labels(spec.get("selector")),
    ]


def _host_port(host: str, port: int) -> str:
    """``net.JoinHostPort``: IPv6 literals get brackets."""
    try:
        bracket = isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        bracket = ":" in host
    return f"[{host}]:{port}" if bracket else f"{host}:{port}"


def _endpoints_cells(obj: Obj, now: datetime) -> Cells:
    subsets = _items(obj, "subsets")
    shown: list[str] = []
    total = 0
    for subset in subsets:
        ips = [str(a.get("ip", "")) for a in _items(subset, "addresses")]
        ports = _items(subset, "ports")
        if not ports:
            total += len(ips)
            shown += ips[: _LIST_MAX - len(shown)]
            continue
        for port in ports:
            total += len(ips)
            number = _int(port.get("port"))
            shown += [_host_port(ip, number) for ip in ips[: _LIST_MAX - len(shown)]]
    text = _more(shown, total, "") if subsets else "<none>"
    return [meta(obj).get("name", ""), text, _age(obj, now)]


def _configmap_cells(obj: Obj, now: datetime) -> Cells:
    count = len(_mapping(obj, "data")) + len(_mapping(obj, "binaryData"))
    return [meta(obj).get("name", ""), count, _age(obj, now)]


def _secret_cells(obj: Obj, now: datetime) -> Cells:
    return [
        meta(obj).get("name", ""),
        obj.get("type", ""),
        len(_mapping(obj, "data")),
        _age(obj, now),
    ]


def _service_account_cells(obj: Obj, now: datetime) -> Cells:
    return [meta(obj).get("name", ""), len(_items(obj, "secrets")), _age(obj, now)]


def _storage_class_of(obj: Obj) -> str:
    """The beta storage-class annotation wins over ``spec.storageClassName``."""
    annotations = _mapping(obj, "metadata", "annotations")
    if _BETA_STORAGE_CLASS in annotations:
        return str(annotations[_BETA_STORAGE_CLASS])
    return str(_dig(obj, "spec", "storageClassName") or "")


def _phase(obj: Obj) -> str:
    if meta(obj).get("deletionTimestamp"):
        return "Terminating"
    return str(_dig(obj, "status", "phase") or "")


def _pv_cells(obj: Obj, now: datetime) -> Cells:
    spec = obj.get("spec") or {}
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else ""
    return [
        meta(obj).get("name", ""),
        str(_mapping(spec, "capacity").get("storage", "0")),
        _access_modes(_items(spec, "accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        _phase(obj),
        claim_text,
        _storage_class_of(obj),
        spec.get("volumeAttributesClassName") or "<unset>",
        _dig(obj, "status", "reason") or "",
        _age(obj, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _pvc_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    volume = spec.get("volumeName") or ""
    capacity = str(_mapping(status, "capacity").get("storage", "0")) if volume else ""
    modes = _access_modes(_items(status, "accessModes")) if volume else ""
    return [
        meta(obj).get("name", ""),
        _phase(obj),
        volume,
        capacity,
        modes,
        _storage_class_of(obj),
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(obj, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _core_event(obj: Obj) -> Obj:
    """An ``events.k8s.io/v1`` Event in ``core/v1`` field names (same printer)."""
    renames = {
        "regarding": "involvedObject",
        "note": "message",
        "deprecatedSource": "source",
        "deprecatedFirstTimestamp": "firstTimestamp",
        "deprecatedLastTimestamp": "lastTimestamp",
        "deprecatedCount": "count",
    }
    return {renames.get(key, key): value for key, value in obj.items()}


def _event_cells(obj: Obj, now: datetime) -> Cells:
    first = _since(obj.get("firstTimestamp"), now)
    if _time(obj.get("firstTimestamp")) is None:
        first = _since(obj.get("eventTime"), now)
    last = first if _time(obj.get("lastTimestamp")) is None else _since(obj["lastTimestamp"], now)
    count = _int(obj.get("count"))
    series = obj.get("series")
    if series is not None:
        last = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    return [
        last,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {instance}" if instance else component,
        str(obj.get("message", "")).strip(),
        first,
        count,
        meta(obj).get("name", ""),
    ]


def _events_k8s_io_cells(obj: Obj, now: datetime) -> Cells:
    return _event_cells(_core_event(obj), now)


def _resource_quota_cells(obj: Obj, now: datetime) -> Cells:
    hard = _mapping(obj, "status", "hard")
    used = _mapping(obj, "status", "used")
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        target = limits if name.startswith("limits.") else requests
        target.append(f"{name}: {used.get(name, '0')}/{hard[name]}")
    return [meta(obj).get("name", ""), ", ".join(requests), ", ".join(limits), _age(obj, now)]


# --------------------------------------------------------------------------- workloads


def _replicas(spec: Obj) -> int:
    """``spec.replicas``, whose API default is 1."""
    value = spec.get("replicas")
    return 1 if value is None else _int(value)


def _deployment_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    selector = _selector_text(spec.get("selector"))
    return [
        meta(obj).get("name", ""),
        f"{_int(status.get('readyReplicas'))}/{_replicas(spec)}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _age(obj, now),
        *_container_cells(_dig(spec, "template", "spec")),
        "<invalid>" if selector is None else selector,
    ]


def _replica_set_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        meta(obj).get("name", ""),
        _replicas(spec),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _age(obj, now),
        *_container_cells(_dig(spec, "template", "spec")),
        _format_selector(spec.get("selector")),
    ]


def _stateful_set_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        meta(obj).get("name", ""),
        f"{_int(status.get('readyReplicas'))}/{_replicas(spec)}",
        _age(obj, now),
        *_container_cells(_dig(spec, "template", "spec")),
    ]


def _daemon_set_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    counts = (
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
        "numberAvailable",
    )
    return [
        meta(obj).get("name", ""),
        *(_int(status.get(key)) for key in counts),
        _format_labels(_dig(spec, "template", "spec", "nodeSelector")),
        _age(obj, now),
        *_container_cells(_dig(spec, "template", "spec")),
        _format_selector(spec.get("selector")),
    ]


def _controller_revision_cells(obj: Obj, now: datetime) -> Cells:
    owner = next(
        (o for o in _items(obj, "metadata", "ownerReferences") if o.get("controller")), None
    )
    controller = "<none>"
    if owner is not None:
        api_version = str(owner.get("apiVersion", ""))
        group = api_version.rpartition("/")[0]
        kind = str(owner.get("kind", ""))
        name = owner.get("name", "")
        qualified = f"{kind}.{group}" if group else kind
        controller = f"{qualified.lower()}/{name}" if qualified else name
    return [meta(obj).get("name", ""), controller, _int(obj.get("revision")), _age(obj, now)]


def _job_status(obj: Obj) -> str:
    conditions = _items(obj, "status", "conditions")
    if _condition_true(conditions, "Complete"):
        return "Complete"
    if _condition_true(conditions, "Failed"):
        return "Failed"
    if meta(obj).get("deletionTimestamp"):
        return "Terminating"
    if _condition_true(conditions, "Suspended"):
        return "Suspended"
    if _condition_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec['completions'])}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(spec['parallelism'])}"
    else:
        completions = f"{succeeded}/1"
    started = _time(status.get("startTime"))
    finished = _time(status.get("completionTime"))
    duration = ""
    if started is not None:
        duration = timefmt.human_duration((finished or now) - started)
    return [
        meta(obj).get("name", ""),
        _job_status(obj),
        completions,
        duration,
        _age(obj, now),
        *_container_cells(_dig(spec, "template", "spec")),
        _format_selector(spec.get("selector")),
    ]


def _cron_job_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    job_spec = _dig(spec, "jobTemplate", "spec")
    return [
        meta(obj).get("name", ""),
        spec.get("schedule", ""),
        spec.get("timeZone") if spec.get("timeZone") is not None else "<none>",
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(_items(status, "active")),
        "<none>" if last is None else _since(last, now),
        _age(obj, now),
        *_container_cells(_dig(job_spec, "template", "spec")),
        _format_selector(_dig(job_spec, "selector")),
    ]


# --------------------------------------------------------------------------- other groups


def _lease_cells(obj: Obj, now: datetime) -> Cells:
    holder = _dig(obj, "spec", "holderIdentity") or ""
    return [meta(obj).get("name", ""), holder, _age(obj, now)]


def _endpoint_slice_cells(obj: Obj, now: datetime) -> Cells:
    ports = []
    for port in _items(obj, "ports"):
        if port.get("port") is not None:
            ports.append(str(port["port"]))
        elif port.get("name") is not None:
            ports.append(str(port["name"]))
        else:
            ports.append("*")
    addresses = [str(a) for e in _items(obj, "endpoints") for a in _items(e, "addresses")]
    return [
        meta(obj).get("name", ""),
        obj.get("addressType", ""),
        _more(ports[:_LIST_MAX], len(ports), "<unset>"),
        _more(addresses[:_LIST_MAX], len(addresses), "<unset>"),
        _age(obj, now),
    ]


def _network_policy_cells(obj: Obj, now: datetime) -> Cells:
    selector = _dig(obj, "spec", "podSelector") or {}
    return [meta(obj).get("name", ""), _format_selector(selector), _age(obj, now)]


def _ingress_hosts(rules: list[Any]) -> str:
    """The first three rule hosts (``*`` when none names one), then `` + N more...``.

    As upstream, N counts every rule beyond three, named or not, once three are shown.
    """
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == _LIST_MAX:
            more = True
            break
        if rule.get("host"):
            hosts.append(str(rule["host"]))
    if not hosts:
        return "*"
    if more:
        return f"{','.join(hosts)} + {len(rules) - _LIST_MAX} more..."
    return ",".join(hosts)


def _ingress_cells(obj: Obj, now: datetime) -> Cells:
    spec = obj.get("spec") or {}
    class_name = spec.get("ingressClassName")
    return [
        meta(obj).get("name", ""),
        "<none>" if class_name is None else class_name,
        _ingress_hosts(_items(spec, "rules")),
        _load_balancer(_dig(obj, "status", "loadBalancer")),
        "80, 443" if _items(spec, "tls") else "80",
        _age(obj, now),
    ]


def _ingress_class_cells(obj: Obj, now: datetime) -> Cells:
    spec = obj.get("spec") or {}
    parameters = spec.get("parameters")
    text = "<none>"
    if parameters:
        text = str(parameters.get("kind", ""))
        if parameters.get("apiGroup") is not None:
            text += f".{parameters['apiGroup']}"
        text += f"/{parameters.get('name', '')}"
    return [meta(obj).get("name", ""), spec.get("controller", ""), text, _age(obj, now)]


def _pdb_cells(obj: Obj, now: datetime) -> Cells:
    spec = obj.get("spec") or {}
    minimum, maximum = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [
        meta(obj).get("name", ""),
        "N/A" if minimum is None else str(minimum),
        "N/A" if maximum is None else str(maximum),
        _int(_dig(obj, "status", "disruptionsAllowed")),
        _age(obj, now),
    ]


def _binding_cells(obj: Obj, now: datetime) -> Cells:
    role = obj.get("roleRef") or {}
    users, groups, accounts = [], [], []
    for subject in _items(obj, "subjects"):
        kind, name = subject.get("kind"), subject.get("name", "")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            accounts.append(f"{subject.get('namespace', '')}/{name}")
    return [
        meta(obj).get("name", ""),
        f"{role.get('kind', '')}/{role.get('name', '')}",
        _age(obj, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(accounts),
    ]


def _csr_condition(obj: Obj) -> str:
    kinds = {c.get("type") for c in _items(obj, "status", "conditions")}
    text = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        text += ",Failed"
    if _dig(obj, "status", "certificate"):
        text += ",Issued"
    return text


def _csr_cells(obj: Obj, now: datetime) -> Cells:
    spec = obj.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    requested = "<none>"
    if seconds is not None:
        requested = timefmt.human_duration(timedelta(seconds=_int(seconds)))
    return [
        meta(obj).get("name", ""),
        _age(obj, now),
        spec.get("signerName") or "<none>",
        spec.get("username", ""),
        requested,
        _csr_condition(obj),
    ]


def _storage_class_cells(obj: Obj, now: datetime) -> Cells:
    annotations = _mapping(obj, "metadata", "annotations")
    name = meta(obj).get("name", "")
    if any(annotations.get(key) == "true" for key in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    return [
        name,
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion")),
        _age(obj, now),
    ]


# --------------------------------------------------------------------------- registry


def _printer(
    cells: Callable[[Obj, datetime], Cells],
    *columns: dict[str, Any],
    conditions: Callable[[Obj], list[dict[str, str]]] | None = None,
) -> _Printer:
    return _Printer(columns=columns, cells=cells, conditions=conditions)


_EVENT_COLUMNS = (
    _column("Last Seen", "Time since the event last occurred."),
    _column("Type", "Type of the event (Normal, Warning)."),
    _column("Reason", "Short machine-readable reason for the event."),
    _column("Object", "The object the event is about."),
    _column("Subobject", "Part of the object the event is about.", priority=1),
    _column("Source", "Component reporting the event.", priority=1),
    _column("Message", "Human-readable description of the event."),
    _column("First Seen", "Time since the event first occurred.", priority=1),
    _column("Count", "How many times the event occurred.", priority=1),
    _column("Name", "The event's name.", priority=1, fmt="name"),
)

_BINDING_COLUMNS = (
    _NAME,
    _column("Role", "The role the binding grants."),
    _AGE,
    _column("Users", "Users bound.", priority=1),
    _column("Groups", "Groups bound.", priority=1),
    _column("ServiceAccounts", "Service accounts bound.", priority=1),
)

_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "pods"): _printer(
        _pod_cells,
        _NAME,
        _column("Ready", "Ready containers out of all containers."),
        _column("Status", "Summary of the pod's and its containers' state."),
        _column("Restarts", "Container restarts, and how long ago the last one was."),
        _AGE,
        _column("IP", "The pod's IP address.", priority=1),
        _column("Node", "Node the pod is bound to.", priority=1),
        _column("Nominated Node", "Node nominated by preemption.", priority=1),
        _column("Readiness Gates", "Readiness gates that pass.", priority=1),
        conditions=_pod_conditions,
    ),
    ("", "podtemplates"): _printer(
        _pod_template_cells,
        _NAME,
        _column("Containers", "Names of the containers in the template."),
        _column("Images", "Images used by the containers in the template."),
        _column("Pod Labels", "Labels of the pod template."),
    ),
    ("", "namespaces"): _printer(
        _namespace_cells, _NAME, _column("Status", "The namespace's phase."), _AGE
    ),
    ("", "nodes"): _printer(
        _node_cells,
        _NAME,
        _column("Status", "Readiness and schedulability of the node."),
        _column("Roles", "Roles from node-role labels."),
        _AGE,
        _column("Version", "Kubelet version."),
        _column("Internal-IP", "First internal address.", priority=1),
        _column("External-IP", "First external address.", priority=1),
        _column("OS-Image", "Operating system image.", priority=1),
        _column("Kernel-Version", "Kernel version.", priority=1),
        _column("Container-Runtime", "Container runtime and version.", priority=1),
    ),
    ("", "services"): _printer(
        _service_cells,
        _NAME,
        _column("Type", "How the service is exposed."),
        _column("Cluster-IP", "The service's cluster IP."),
        _column("External-IP", "External addresses of the service."),
        _column("Port(s)", "Ports the service exposes."),
        _AGE,
        _column("Selector", "Labels of the pods the service routes to.", priority=1),
    ),
    ("", "endpoints"): _printer(
        _endpoints_cells, _NAME, _column("Endpoints", "Ready addresses and ports."), _AGE
    ),
    ("", "configmaps"): _printer(
        _configmap_cells, _NAME, _column("Data", "Number of data entries."), _AGE
    ),
    ("", "secrets"): _printer(
        _secret_cells,
        _NAME,
        _column("Type", "Kind of secret."),
        _column("Data", "Number of data entries."),
        _AGE,
    ),
    ("", "serviceaccounts"): _printer(
        _service_account_cells, _NAME, _column("Secrets", "Number of secrets listed."), _AGE
    ),
    ("", "events"): _printer(_event_cells, *_EVENT_COLUMNS),
    ("events.k8s.io", "events"): _printer(_events_k8s_io_cells, *_EVENT_COLUMNS),
    ("", "persistentvolumes"): _printer(
        _pv_cells,
        _NAME,
        _column("Capacity", "Storage capacity."),
        _column("Access Modes", "Supported access modes."),
        _column("Reclaim Policy", "What happens when released."),
        _column("Status", "The volume's phase."),
        _column("Claim", "The bound claim."),
        _column("StorageClass", "Storage class of the volume."),
        _column("VolumeAttributesClass", "Volume attributes class of the volume."),
        _column("Reason", "Reason for a failed phase."),
        _AGE,
        _VOLUME_MODE,
    ),
    ("", "persistentvolumeclaims"): _printer(
        _pvc_cells,
        _NAME,
        _column("Status", "The claim's phase."),
        _column("Volume", "The bound volume."),
        _column("Capacity", "Capacity of the bound volume."),
        _column("Access Modes", "Access modes of the bound volume."),
        _column("StorageClass", "Storage class of the claim."),
        _column("VolumeAttributesClass", "Volume attributes class of the claim."),
        _AGE,
        _VOLUME_MODE,
    ),
    ("", "resourcequotas"): _printer(
        _resource_quota_cells,
        _NAME,
        _column("Request", "Used and hard request quotas."),
        _column("Limit", "Used and hard limit quotas."),
        _AGE,
    ),
    ("apps", "deployments"): _printer(
        _deployment_cells,
        _NAME,
        _column("Ready", "Ready replicas out of desired."),
        _column("Up-to-date", "Replicas running the latest template."),
        _column("Available", "Replicas available to users."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _SELECTOR,
    ),
    ("apps", "replicasets"): _printer(
        _replica_set_cells,
        _NAME,
        _column("Desired", "Desired replicas.", "integer"),
        _column("Current", "Observed replicas.", "integer"),
        _column("Ready", "Ready replicas.", "integer"),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _SELECTOR,
    ),
    ("apps", "statefulsets"): _printer(
        _stateful_set_cells,
        _NAME,
        _column("Ready", "Ready replicas out of desired."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
    ),
    ("apps", "daemonsets"): _printer(
        _daemon_set_cells,
        _NAME,
        _column("Desired", "Nodes that should run the pod.", "integer"),
        _column("Current", "Nodes running the pod.", "integer"),
        _column("Ready", "Nodes with a ready pod.", "integer"),
        _column("Up-to-date", "Nodes running the latest template.", "integer"),
        _column("Available", "Nodes with an available pod.", "integer"),
        _column("Node Selector", "Node selector of the pod template."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _SELECTOR,
    ),
    ("apps", "controllerrevisions"): _printer(
        _controller_revision_cells,
        _NAME,
        _column("Controller", "The object owning this revision."),
        _column("Revision", "Revision number."),
        _AGE,
    ),
    ("batch", "jobs"): _printer(
        _job_cells,
        _NAME,
        _column("Status", "Summary of the job's state."),
        _column("Completions", "Succeeded pods out of required completions."),
        _column("Duration", "How long the job ran or has been running."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _SELECTOR,
    ),
    ("batch", "cronjobs"): _printer(
        _cron_job_cells,
        _NAME,
        _column("Schedule", "Cron schedule."),
        _column("Timezone", "Time zone of the schedule."),
        _column("Suspend", "Whether scheduling is suspended.", "boolean"),
        _column("Active", "Number of running jobs.", "integer"),
        _column("Last Schedule", "Time since the last scheduled run."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _SELECTOR,
    ),
    ("coordination.k8s.io", "leases"): _printer(
        _lease_cells, _NAME, _column("Holder", "Current holder of the lease."), _AGE
    ),
    ("discovery.k8s.io", "endpointslices"): _printer(
        _endpoint_slice_cells,
        _NAME,
        _column("AddressType", "Address family of the endpoints."),
        _column("Ports", "Ports of the slice."),
        _column("Endpoints", "Addresses of the endpoints."),
        _AGE,
    ),
    ("networking.k8s.io", "networkpolicies"): _printer(
        _network_policy_cells,
        _NAME,
        _column("Pod-Selector", "Pods the policy applies to."),
        _AGE,
    ),
    ("networking.k8s.io", "ingresses"): _printer(
        _ingress_cells,
        _NAME,
        _column("Class", "Ingress class handling this ingress."),
        _column("Hosts", "Hosts the rules match."),
        _column("Address", "Addresses of the load balancer."),
        _column("Ports", "Ports served."),
        _AGE,
    ),
    ("networking.k8s.io", "ingressclasses"): _printer(
        _ingress_class_cells,
        _NAME,
        _column("Controller", "Controller implementing the class."),
        _column("Parameters", "Reference to extra parameters."),
        _AGE,
    ),
    ("policy", "poddisruptionbudgets"): _printer(
        _pdb_cells,
        _NAME,
        _column("Min Available", "Pods that must stay available."),
        _column("Max Unavailable", "Pods that may be unavailable."),
        _column("Allowed Disruptions", "Pods that may be disrupted now.", "integer"),
        _AGE,
    ),
    ("rbac.authorization.k8s.io", "rolebindings"): _printer(_binding_cells, *_BINDING_COLUMNS),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _printer(
        _binding_cells, *_BINDING_COLUMNS
    ),
    ("certificates.k8s.io", "certificatesigningrequests"): _printer(
        _csr_cells,
        _NAME,
        _AGE,
        _column("SignerName", "Signer asked to sign."),
        _column("Requestor", "User who made the request."),
        _column("RequestedDuration", "Requested certificate lifetime."),
        _column("Condition", "Approval and issuance state."),
    ),
    ("storage.k8s.io", "storageclasses"): _printer(
        _storage_class_cells,
        _NAME,
        _column("Provisioner", "Volume plugin provisioning volumes."),
        _column("ReclaimPolicy", "Reclaim policy of provisioned volumes."),
        _column("VolumeBindingMode", "When volumes are bound."),
        _column("AllowVolumeExpansion", "Whether volumes may grow."),
        _AGE,
    ),
}


# --------------------------------------------------------------------------- custom resources


def _custom_columns(printer_columns: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
    """Column definitions paired with compiled paths; an empty list means just Age.

    As upstream, a column whose JSONPath does not parse ends the list.
    """
    specs = printer_columns or [
        {
            "name": "Age",
            "type": "date",
            "description": _CREATED_AT["description"],
            "jsonPath": ".metadata.creationTimestamp",
        }
    ]
    result = []
    for spec in specs:
        path_text = str(spec.get("jsonPath", ""))
        try:
            path = jsonpath.compile_path(path_text)
        except jsonpath.JSONPathError:
            break
        description = spec.get("description") or (
            f"Custom resource definition column (in JSONPath format): {path_text}"
        )
        column = _column(
            str(spec.get("name", "")),
            description,
            str(spec.get("type", "string")),
            priority=_int(spec.get("priority")),
            fmt=str(spec.get("format") or ""),
        )
        result.append((column, path))
    return result


def _custom_cell(type_: str, value: Any, now: datetime) -> Any:
    """A JSON value shown in a column of the given OpenAPI type (None if it does not fit)."""
    if value is None:
        return None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if type_ == "string":
        return jsonpath.to_text(value)
    if type_ == "integer" and is_number:
        return int(value)
    if type_ == "number" and is_number:
        return float(value)
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if type_ == "date" and isinstance(value, str):
        if not value:
            return "<unknown>"
        try:
            when = timefmt.parse_time(value)
        except ValueError:
            return "<invalid>"
        return "<unknown>" if when == _ZERO_TIME else timefmt.human_duration(now - when)
    return None


# --------------------------------------------------------------------------- public API


def has_printer(group: str, resource: str) -> bool:
    """Whether the built-in resource has kind-specific columns (else Name / Created At)."""
    return (group, resource) in _PRINTERS


def table(
    group: str,
    resource: str,
    objects: list[dict[str, Any]],
    *,
    now: datetime,
    include_object: str = "Metadata",
    printer_columns: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` as ``kubectl get`` displays them.

    ``include_object`` is the request's ``includeObject``: ``Metadata`` puts a
    PartialObjectMetadata in each row, ``Object`` the whole object, ``None`` nothing;
    other values raise ``ValueError``. ``printer_columns`` (a CRD version's
    ``additionalPrinterColumns``, possibly empty) selects custom-resource printing:
    Name plus those columns, or Name plus Age when empty. Built-in kinds without a
    printer get Name and Created At. ``now`` (timezone-aware) is the reference for AGE
    cells. ``metadata`` is left empty for the caller to fill (``resourceVersion``,
    ``continue``).
    """
    if include_object not in INCLUDE_OBJECT_VALUES:
        raise ValueError(f"invalid includeObject {include_object!r}")
    columns: list[dict[str, Any]]
    rows: list[dict[str, Any]] = []
    if printer_columns is not None:
        custom = _custom_columns(printer_columns)
        columns = [_NAME, *(column for column, _ in custom)]
        for obj in objects:
            cells: Cells = [meta(obj).get("name", "")]
            for column, path in custom:
                found = path.find(obj)
                cells.append(_custom_cell(column["type"], found[0], now) if found else None)
            rows.append({"cells": cells})
    elif (group, resource) in _PRINTERS:
        printer = _PRINTERS[(group, resource)]
        columns = list(printer.columns)
        for obj in objects:
            row: dict[str, Any] = {"cells": printer.cells(obj, now)}
            conditions = printer.conditions(obj) if printer.conditions else []
            if conditions:
                row["conditions"] = conditions
            rows.append(row)
    else:
        columns = [_NAME, _CREATED_AT]
        for obj in objects:
            created = _time(meta(obj).get("creationTimestamp"))
            stamp = timefmt.format_time(created) if created else "0001-01-01T00:00:00Z"
            rows.append({"cells": [meta(obj).get("name", ""), stamp]})
    _attach_objects(rows, objects, include_object)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    }


def _attach_objects(
    rows: list[dict[str, Any]], objects: list[dict[str, Any]], include_object: str
) -> None:
    """Put each row's object in it as ``includeObject`` asks (whole, metadata only, none)."""
    for row, obj in zip(rows, objects, strict=True):
        if include_object == "Object":
            row["object"] = obj
        elif include_object == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta(obj),
            }
