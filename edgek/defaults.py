"""Server-side defaulting: the values upstream fills in before validation and storage.

These are the defaults users see in ``kubectl get -o yaml`` (the ``SetDefaults_*`` functions
of the upstream API groups, plus the few values the API server's admission and registry add
to every object, such as a Pod's ``priority``). Allocation (cluster IPs, node ports) and
controller-owned fields are not defaults and are left to the object store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgek.objects import Obj

_UNSET: tuple[Any, ...] = (None, "")


def _default(d: Obj, key: str, value: Any) -> None:
    """Set ``d[key]`` to ``value`` when it is absent, null or an empty string."""
    if d.get(key) in _UNSET:
        d[key] = value


def _child(d: Obj, key: str) -> Obj:
    """``d[key]`` as a dict, created (empty) when absent or null."""
    v = d.get(key)
    if not isinstance(v, dict):
        v = {}
        d[key] = v
    return v


def _items(d: Any, key: str) -> list[Obj]:
    """The dict elements of the list ``d[key]`` (nothing when absent or malformed)."""
    if not isinstance(d, dict):
        return []
    v = d.get(key)
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _at(obj: Any, *path: str) -> Obj | None:
    """The dict at ``path`` if every step exists and is a dict."""
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur if isinstance(cur, dict) else None


# ---------------------------------------------------------------------------
# Pod spec


def image_pull_policy(image: str) -> str:
    """``Always`` for an image tagged ``latest`` or with no tag and no digest, else
    ``IfNotPresent``."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else ""
    if not tag and not digest:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    _default(probe, "timeoutSeconds", 1)
    _default(probe, "periodSeconds", 10)
    _default(probe, "successThreshold", 1)
    _default(probe, "failureThreshold", 3)
    _http_get(probe.get("httpGet"))


def _http_get(action: Any) -> None:
    if isinstance(action, dict):
        _default(action, "path", "/")
        _default(action, "scheme", "HTTP")


def _field_ref(source: Any) -> None:
    ref = _at(source, "fieldRef")
    if ref is not None:
        _default(ref, "apiVersion", "v1")


def _container(c: Obj, host_network: bool) -> None:
    _default(c, "imagePullPolicy", image_pull_policy(str(c.get("image") or "")))
    _default(c, "terminationMessagePath", "/dev/termination-log")
    _default(c, "terminationMessagePolicy", "File")
    _child(c, "resources")
    for port in _items(c, "ports"):
        _default(port, "protocol", "TCP")
        if host_network and port.get("hostPort") in (None, 0):
            port["hostPort"] = port.get("containerPort")
    for env in _items(c, "env"):
        _field_ref(env.get("valueFrom"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))
    for hook in ("postStart", "preStop"):
        handler = _at(c, "lifecycle", hook)
        if handler is not None:
            _http_get(handler.get("httpGet"))


_MODE_SOURCES = ("secret", "configMap", "projected", "downwardAPI")


def _volume(v: Obj) -> None:
    if set(v) <= {"name"}:
        v["emptyDir"] = {}
        return
    for source in _MODE_SOURCES:
        src = v.get(source)
        if isinstance(src, dict):
            _default(src, "defaultMode", 0o644)
    for item in _items(v.get("downwardAPI"), "items"):
        _field_ref(item)
    for proj in _items(v.get("projected"), "sources"):
        for item in _items(proj.get("downwardAPI"), "items"):
            _field_ref(item)
        token = proj.get("serviceAccountToken")
        if isinstance(token, dict):
            _default(token, "expirationSeconds", 3600)
    host_path = v.get("hostPath")
    if isinstance(host_path, dict):
        _default(host_path, "type", "")


def pod_spec(spec: Obj) -> None:
    """Defaults shared by Pods and pod templates."""
    _default(spec, "dnsPolicy", "ClusterFirst")
    _default(spec, "restartPolicy", "Always")
    _default(spec, "terminationGracePeriodSeconds", 30)
    _default(spec, "schedulerName", "default-scheduler")
    _child(spec, "securityContext")
    host_network = bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers"):
        for c in _items(spec, key):
            _container(c, host_network)
    for v in _items(spec, "volumes"):
        _volume(v)


def _pod(obj: Obj) -> None:
    spec = _child(obj, "spec")
    pod_spec(spec)
    _default(spec, "enableServiceLinks", True)
    if not spec.get("priorityClassName"):
        _default(spec, "priority", 0)
    _default(spec, "preemptionPolicy", "PreemptLowerPriority")
    for key in ("initContainers", "containers"):
        for c in _items(spec, key):
            resources = c.get("resources")
            limits = resources.get("limits") if isinstance(resources, dict) else None
            if isinstance(resources, dict) and isinstance(limits, dict) and limits:
                requests = _child(resources, "requests")
                for name, qty in limits.items():
                    requests.setdefault(name, qty)


def _template(holder: Obj | None) -> None:
    template = _at(holder, "template")
    if template is not None:
        pod_spec(_child(template, "spec"))


# ---------------------------------------------------------------------------
# Workloads


def _deployment(obj: Obj) -> None:
    spec = _child(obj, "spec")
    _default(spec, "replicas", 1)
    strategy = _child(spec, "strategy")
    _default(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _child(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", "25%")
        _default(rolling, "maxSurge", "25%")
    _default(spec, "revisionHistoryLimit", 10)
    _default(spec, "progressDeadlineSeconds", 600)
    _template(spec)


def _replica_set(obj: Obj) -> None:
    spec = _child(obj, "spec")
    _default(spec, "replicas", 1)
    _template(spec)


def _claim(claim: Obj) -> None:
    _default(_child(claim, "spec"), "volumeMode", "Filesystem")
    _default(_child(claim, "status"), "phase", "Pending")


def _stateful_set(obj: Obj) -> None:
    spec = _child(obj, "spec")
    _default(spec, "replicas", 1)
    _default(spec, "podManagementPolicy", "OrderedReady")
    strategy = _child(spec, "updateStrategy")
    _default(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _default(_child(strategy, "rollingUpdate"), "partition", 0)
    _default(spec, "revisionHistoryLimit", 10)
    retention = _child(spec, "persistentVolumeClaimRetentionPolicy")
    _default(retention, "whenDeleted", "Retain")
    _default(retention, "whenScaled", "Retain")
    for claim in _items(spec, "volumeClaimTemplates"):
        _claim(claim)
    _template(spec)


def _daemon_set(obj: Obj) -> None:
    spec = _child(obj, "spec")
    strategy = _child(spec, "updateStrategy")
    _default(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _child(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", 1)
        _default(rolling, "maxSurge", 0)
    _default(spec, "revisionHistoryLimit", 10)
    _template(spec)


def _job(obj: Obj) -> None:
    spec = _child(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _default(spec, "parallelism", 1)
    _default(spec, "backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") else 6)
    _default(spec, "completionMode", "NonIndexed")
    _default(spec, "suspend", False)
    policy = spec.get("podFailurePolicy")
    for rule in _items(policy, "rules"):
        for pattern in _items(rule, "onPodConditions"):
            _default(pattern, "status", "True")
    _default(spec, "podReplacementPolicy", "Failed" if policy else "TerminatingOrFailed")
    template_labels = (_at(spec, "template", "metadata") or {}).get("labels")
    meta = _child(obj, "metadata")
    if template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)
    _template(spec)


def _cron_job(obj: Obj) -> None:
    spec = _child(obj, "spec")
    _default(spec, "concurrencyPolicy", "Allow")
    _default(spec, "suspend", False)
    _default(spec, "successfulJobsHistoryLimit", 3)
    _default(spec, "failedJobsHistoryLimit", 1)
    _template(_at(spec, "jobTemplate", "spec"))


def _pod_template(obj: Obj) -> None:
    _template(obj)


# ---------------------------------------------------------------------------
# Core and networking


def _service(obj: Obj) -> None:
    spec = _child(obj, "spec")
    _default(spec, "type", "ClusterIP")
    _default(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        client_ip = _child(_child(spec, "sessionAffinityConfig"), "clientIP")
        _default(client_ip, "timeoutSeconds", 10800)
    for port in _items(spec, "ports"):
        _default(port, "protocol", "TCP")
        if port.get("targetPort") in (None, "", 0):
            port["targetPort"] = port.get("port")
    kind = spec["type"]
    if kind in ("NodePort", "LoadBalancer"):
        _default(spec, "externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        _default(spec, "allocateLoadBalancerNodePorts", True)
    if kind != "ExternalName":
        _default(spec, "internalTrafficPolicy", "Cluster")
        headless_without_selector = spec.get("clusterIP") == "None" and not spec.get("selector")
        _default(
            spec,
            "ipFamilyPolicy",
            "RequireDualStack" if headless_without_selector else "SingleStack",
        )
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]


def _endpoints(obj: Obj) -> None:
    for subset in _items(obj, "subsets"):
        for port in _items(subset, "ports"):
            _default(port, "protocol", "TCP")


def _endpoint_slice(obj: Obj) -> None:
    for port in _items(obj, "ports"):
        if port.get("name") is None:
            port["name"] = ""
        _default(port, "protocol", "TCP")


def _namespace(obj: Obj) -> None:
    _default(_child(obj, "status"), "phase", "Active")


def _limit_range(obj: Obj) -> None:
    """SetDefaults_LimitRangeItem: a Container item's default limit falls back to its max, its
    default request to the default limit, then to its min (empty lists stay unset)."""
    for item in _items(_at(obj, "spec"), "limits"):
        if item.get("type") != "Container" or any(
            item.get(key) is not None and not isinstance(item[key], dict)
            for key in ("default", "defaultRequest")
        ):
            continue  # malformed lists are left for validation to report
        limits = dict(item.get("default") or {})
        for name, value in (_at(item, "max") or {}).items():
            limits.setdefault(name, value)
        requests = dict(item.get("defaultRequest") or {})
        for name, value in [*limits.items(), *(_at(item, "min") or {}).items()]:
            requests.setdefault(name, value)
        if limits:
            item["default"] = limits
        if requests:
            item["defaultRequest"] = requests


def _secret(obj: Obj) -> None:
    _default(obj, "type", "Opaque")


def _persistent_volume(obj: Obj) -> None:
    spec = _child(obj, "spec")
    _default(spec, "persistentVolumeReclaimPolicy", "Retain")
    _default(spec, "volumeMode", "Filesystem")
    _default(_child(obj, "status"), "phase", "Pending")


def _node(obj: Obj) -> None:
    status = _at(obj, "status")
    if status is not None and status.get("capacity") and not status.get("allocatable"):
        status["allocatable"] = dict(status["capacity"])


def _network_policy(obj: Obj) -> None:
    spec = _child(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in _items(spec, direction):
            for port in _items(rule, "ports"):
                _default(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _binding(obj: Obj) -> None:
    for subject in _items(obj, "subjects"):
        if subject.get("apiGroup") is None:
            kind = subject.get("kind")
            if kind == "ServiceAccount":
                subject["apiGroup"] = ""
            elif kind in ("User", "Group"):
                subject["apiGroup"] = "rbac.authorization.k8s.io"


def _storage_class(obj: Obj) -> None:
    _default(obj, "reclaimPolicy", "Delete")
    _default(obj, "volumeBindingMode", "Immediate")


def _crd(obj: Obj) -> None:
    spec = _child(obj, "spec")
    names = _child(spec, "names")
    kind = names.get("kind")
    if kind:
        _default(names, "singular", str(kind).lower())
        _default(names, "listKind", f"{kind}List")
    _default(_child(spec, "conversion"), "strategy", "None")


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "pods"): _pod,
    ("", "podtemplates"): _pod_template,
    ("", "replicationcontrollers"): _replica_set,
    ("", "services"): _service,
    ("", "endpoints"): _endpoints,
    ("", "namespaces"): _namespace,
    ("", "limitranges"): _limit_range,
    ("", "secrets"): _secret,
    ("", "persistentvolumeclaims"): _claim,
    ("", "persistentvolumes"): _persistent_volume,
    ("", "nodes"): _node,
    ("apps", "deployments"): _deployment,
    ("apps", "replicasets"): _replica_set,
    ("apps", "statefulsets"): _stateful_set,
    ("apps", "daemonsets"): _daemon_set,
    ("batch", "jobs"): _job,
    ("batch", "cronjobs"): _cron_job,
    ("discovery.k8s.io", "endpointslices"): _endpoint_slice,
    ("networking.k8s.io", "networkpolicies"): _network_policy,
    ("rbac.authorization.k8s.io", "rolebindings"): _binding,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _binding,
    ("storage.k8s.io", "storageclasses"): _storage_class,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}


def apply_defaults(group: str, resource: str, obj: dict[str, Any]) -> None:
    """Fill in upstream defaults for an object of ``group``/``resource``, in place."""
    defaulter = _DEFAULTERS.get((group, resource))
    if defaulter is not None:
        defaulter(obj)
