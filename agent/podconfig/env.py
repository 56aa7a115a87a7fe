"""A container's environment as the kubelet makes it (upstream ``makeEnvironmentVariables``).

Sources, in upstream's order of precedence: ``envFrom`` (ConfigMaps and Secrets, with an
optional prefix; keys that are not valid variable names are skipped and reported), then
``env`` in declaration order (a literal ``value`` with ``$(VAR)`` references expanded
against the variables declared so far and the service variables, or a ``valueFrom``:
``fieldRef``, ``resourceFieldRef``, ``configMapKeyRef``, ``secretKeyRef``), then the
service environment variables (``<SVC>_SERVICE_HOST`` and the Docker link variables) of
the pod's namespace when ``enableServiceLinks`` is not false, and those of the
``default/kubernetes`` service always; a declared variable wins over a service one.

A reference that cannot be resolved raises :class:`ContainerConfigError` with upstream's
message; the pod worker reports it as ``CreateContainerConfigError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agent.objectsource import ObjectUnavailable, object_data
from edgek.names import is_env_var_name
from edgek.quantity import parse_quantity

#: The namespace and name of the API server's own service, whose variables every pod gets.
MASTER_SERVICE = ("default", "kubernetes")
REASON = "CreateContainerConfigError"


class Objects(Protocol):
    """What the environment needs of :class:`agent.objectsource.ObjectSource`."""

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""

    async def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The objects of a namespace (or of all namespaces)."""


class ContainerConfigError(Exception):
    """A container's configuration cannot be made (``reason`` is the waiting reason)."""

    reason = REASON

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- $(VAR) expansion (upstream third_party/forked/golang/expansion) --------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """``text`` with ``$(VAR)`` replaced by ``env[VAR]`` (left as is when VAR is unknown),
    ``$$`` as an escaped ``$``, and any other ``$`` kept."""
    return expand_with(text, lambda name: env.get(name, f"$({name})"))


def expand_with(text: str, mapping: Callable[[str], str]) -> str:
    """:func:`expand` with a lookup function (it returns the text to put for a name)."""
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            advance = 1
            if rest[0] == "$":
                out.append("$")
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close >= 0:
                    out.append(mapping(rest[1:close]))
                    advance = close + 1
                else:
                    out.append("$(")
            else:
                out.append("$" + rest[0])
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


# -- service environment variables (upstream pkg/kubelet/envvars) ----------------------------


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def service_variables(service: dict[str, Any]) -> list[tuple[str, str]]:
    """The variables of one service: ``<SVC>_SERVICE_HOST``/``_PORT``(``_<PORT NAME>``) and
    the Docker link ones (``<SVC>_PORT``, ``<SVC>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]``);
    nothing for a headless service or one without a cluster IP."""
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP") or ""
    if ip in ("", "None"):
        return []
    prefix = _env_name((service.get("metadata") or {}).get("name") or "")
    ports = spec.get("ports") or []
    out = [(f"{prefix}_SERVICE_HOST", ip)]
    if ports:
        out.append((f"{prefix}_SERVICE_PORT", str(ports[0].get("port"))))
    out += [
        (f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}", str(p.get("port")))
        for p in ports
        if p.get("name")
    ]
    host = f"[{ip}]" if ":" in ip else ip
    for i, port in enumerate(ports):
        proto = (port.get("protocol") or "TCP").lower()
        url = f"{proto}://{host}:{port.get('port')}"
        if i == 0:
            out.append((f"{prefix}_PORT", url))
        base = f"{prefix}_PORT_{port.get('port')}_{proto.upper()}"
        out += [
            (base, url),
            (f"{base}_PROTO", proto),
            (f"{base}_PORT", str(port.get("port"))),
            (f"{base}_ADDR", ip),
        ]
    return out


async def service_env(pod: dict[str, Any], objects: Objects) -> dict[str, str]:
    """The service variables a pod gets: its namespace's services when
    ``enableServiceLinks`` is not false, and ``default/kubernetes`` (unless the pod's
    namespace has a service of that name)."""
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    chosen: dict[str, dict[str, Any]] = {}
    try:
        if (pod.get("spec") or {}).get("enableServiceLinks", True) is not False:
            for service in await objects.list("services", namespace):
                chosen[(service.get("metadata") or {}).get("name") or ""] = service
        master = await objects.get("services", *MASTER_SERVICE)
    except ObjectUnavailable as e:
        raise ContainerConfigError(f"cannot construct envvars: {e}") from e
    if master is not None:
        chosen.setdefault(MASTER_SERVICE[1], master)
    env: dict[str, str] = {}
    for name in sorted(chosen):
        env.update(service_variables(chosen[name]))
    return env


# -- fieldRef and resourceFieldRef (upstream pkg/fieldpath, pkg/kubelet) ----------------------


def _format_map(values: Mapping[str, str]) -> str:
    """Upstream FormatMap: sorted ``key="value"`` lines."""
    return "\n".join(f"{k}={json.dumps(values[k], ensure_ascii=False)}" for k in sorted(values))


def field_value(pod: dict[str, Any], path: str, *, node_ips: list[str], pod_ips: list[str]) -> str:
    """The value of a downward API ``fieldRef`` path; ContainerConfigError when unsupported."""
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": md.get("name") or "",
        "metadata.namespace": md.get("namespace") or "",
        "metadata.uid": md.get("uid") or "",
        "spec.nodeName": spec.get("nodeName") or "",
        "spec.serviceAccountName": spec.get("serviceAccountName") or "",
        "status.hostIP": node_ips[0] if node_ips else "",
        "status.hostIPs": ",".join(node_ips),
        "status.podIP": pod_ips[0] if pod_ips else "",
        "status.podIPs": ",".join(pod_ips),
    }
    if path in simple:
        return simple[path]
    for field in ("labels", "annotations"):
        values = md.get(field) or {}
        if path == f"metadata.{field}":
            return _format_map(values)
        prefix = f"metadata.{field}['"
        if path.startswith(prefix) and path.endswith("']"):
            return str(values.get(path[len(prefix) : -2], ""))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def resource_value(
    ref: dict[str, Any], container: dict[str, Any], allocatable: Mapping[str, str]
) -> str:
    """The value of a ``resourceFieldRef`` (limits default to the node's allocatable), in
    units of its divisor, rounded up as upstream does."""
    resource = ref.get("resource") or ""
    kind, _, name = resource.partition(".")
    values = (container.get("resources") or {}).get(kind) or {}
    if kind not in ("limits", "requests") or not name:
        raise ContainerConfigError(f"unsupported container resource : {resource}")
    raw = values.get(name)
    if raw is None and kind == "limits":
        raw = allocatable.get(name)
    amount = parse_quantity(raw or 0)
    divisor = parse_quantity(ref.get("divisor") or 1) or 1
    if name == "cpu":
        milli = math.ceil(amount * 1000)
        return str(math.ceil(milli / math.ceil(divisor * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(divisor)))


# -- the environment ---------------------------------------------------------------------------


def _env_data(resource: str, obj: dict[str, Any]) -> dict[str, str]:
    """What the environment may use of a ConfigMap (its ``data``; upstream ignores
    ``binaryData`` here) or Secret (its decoded ``data``)."""
    if resource == "configmaps":
        return {k: str(v) for k, v in (obj.get("data") or {}).items()}
    return {k: v.decode("utf-8", "replace") for k, v in object_data(resource, obj).items()}


class _Refs:
    """The ConfigMaps and Secrets of one container's environment, each fetched once."""

    def __init__(self, objects: Objects, namespace: str) -> None:
        self.objects = objects
        self.namespace = namespace
        self.seen: dict[tuple[str, str], dict[str, str] | None] = {}

    async def data(self, resource: str, name: str, optional: bool) -> dict[str, str] | None:
        """The decoded data of ConfigMap or Secret ``name``; None when it is missing and
        optional, ContainerConfigError when missing and required."""
        key = (resource, name)
        if key not in self.seen:
            try:
                obj = await self.objects.get(resource, self.namespace, name)
            except ObjectUnavailable as e:
                raise ContainerConfigError(f'{resource[:-1]} "{name}": {e}') from e
            self.seen[key] = None if obj is None else _env_data(resource, obj)
        found = self.seen[key]
        if found is None and not optional:
            raise ContainerConfigError(f'{resource[:-1]} "{name}" not found')
        return found


async def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    *,
    objects: Objects,
    node_ips: list[str],
    pod_ips: list[str],
    allocatable: Mapping[str, str] | None = None,
    warn: Callable[[str, str], None] | None = None,
) -> list[tuple[str, str]]:
    """The environment of ``container`` in ``pod`` (see the module docstring), declared
    variables first in their order, then the service variables sorted by service.

    ``allocatable`` (the node's) stands in for unset limits in ``resourceFieldRef``;
    ``warn(reason, message)`` receives the event upstream records for skipped ``envFrom``
    keys (reason ``InvalidEnvironmentVariableNames``).
    """
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    services = await service_env(pod, objects)
    refs = _Refs(objects, namespace)
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        resource, ref = (
            ("configmaps", source["configMapRef"])
            if source.get("configMapRef")
            else ("secrets", source.get("secretRef") or {})
        )
        name = ref.get("name") or ""
        data = await refs.data(resource, name, bool(ref.get("optional")))
        invalid = []
        for key, value in (data or {}).items():
            key = (source.get("prefix") or "") + key
            if is_env_var_name(key):
                invalid.append(key)
            else:
                env[key] = value
        if invalid and warn is not None:
            kind = "configMap" if resource == "configmaps" else "secret"
            warn(
                "InvalidEnvironmentVariableNames",
                f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {kind} "
                f"{namespace}/{name} were skipped since they are considered invalid "
                "environment variable names.",
            )

    def lookup(name: str) -> str:
        return env[name] if name in env else services.get(name, f"$({name})")

    for var in container.get("env") or []:
        value = var.get("value") or ""
        source = var.get("valueFrom")
        if value:
            value = expand_with(value, lookup)
        elif source:
            found = await _value_from(
                source, pod, container, refs, node_ips, pod_ips, allocatable or {}
            )
            if found is None:
                continue
            value = found
        env[var["name"]] = value
    return list(env.items()) + [(k, v) for k, v in services.items() if k not in env]


async def _value_from(
    source: dict[str, Any],
    pod: dict[str, Any],
    container: dict[str, Any],
    refs: _Refs,
    node_ips: list[str],
    pod_ips: list[str],
    allocatable: Mapping[str, str],
) -> str | None:
    """One ``valueFrom``; None when an optional reference is missing."""
    if source.get("fieldRef"):
        path = source["fieldRef"].get("fieldPath") or ""
        return field_value(pod, path, node_ips=node_ips, pod_ips=pod_ips)
    if source.get("resourceFieldRef"):
        return resource_value(source["resourceFieldRef"], container, allocatable)
    resource, kind, ref = (
        ("configmaps", "ConfigMap", source["configMapKeyRef"])
        if source.get("configMapKeyRef")
        else ("secrets", "Secret", source.get("secretKeyRef") or {})
    )
    optional = bool(ref.get("optional"))
    data = await refs.data(resource, ref.get("name") or "", optional)
    if data is None:
        return None
    key = ref.get("key") or ""
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(
            f"couldn't find key {key} in {kind} {refs.namespace}/{ref.get('name') or ''}"
        )
    return data[key]
