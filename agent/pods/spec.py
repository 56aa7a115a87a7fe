"""The libpod specs the agent makes for a Pod: the PodSpecGenerator of its sandbox (the
Podman pod whose infra container holds the namespaces) and the SpecGenerator of each
container, from the pod, the container, its resolved environment and its mounts.

Pure functions of their inputs: the worker resolves env and volumes, this module only
translates Kubernetes fields to libpod's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from agent import labels
from agent.podconfig.volumes import Mount
from edgek.quantity import parse_quantity

#: cgroup v1 CFS period the kubelet uses (100 ms) and the shares of one CPU.
CPU_PERIOD = 100_000
SHARES_PER_CPU = 1024
MIN_SHARES = 2
#: Where a container's termination message is read from when the pod does not say.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class SpecError(Exception):
    """The pod asks for something the agent will not run (``CreateContainerConfigError``)."""


def sandbox_spec(
    pod: Mapping[str, Any],
    node: str,
    network: str,
    node_hostname: str = "",
    cluster_dns: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The PodSpecGenerator of ``pod``'s sandbox on ``network`` (or the host's network for
    ``hostNetwork``): name and labels from :mod:`agent.labels`, hostname, host aliases,
    hostPorts, the host PID/IPC namespaces when asked, and the resolver (:func:`pod_dns`)."""
    spec = pod.get("spec") or {}
    host_network = bool(spec.get("hostNetwork"))
    body: dict[str, Any] = {
        "name": labels.sandbox_name(pod),
        "labels": labels.pod_labels(pod, node),
        "hostname": (node_hostname or node) if host_network else pod_hostname(pod),
        "share": ["ipc", "net", "uts"],
    }
    if host_network:
        body["netns"] = {"nsmode": "host"}
    else:
        body["netns"] = {"nsmode": "bridge"}
        body["Networks"] = {network: {}}
        body["portmappings"] = port_mappings(pod)
    if spec.get("hostPID"):
        body["pidns"] = {"nsmode": "host"}
    if spec.get("hostIPC"):
        body["share"] = ["net", "uts"]
        body["ipcns"] = {"nsmode": "host"}
    aliases = [
        f"{name}:{alias['ip']}"
        for alias in spec.get("hostAliases") or []
        for name in alias.get("hostnames") or []
    ]
    if aliases:
        body["hostadd"] = aliases
    body.update(pod_dns(pod, cluster_dns))
    return body


def pod_dns(pod: Mapping[str, Any], cluster_dns: tuple[str, str] | None) -> dict[str, Any]:
    """The libpod resolver settings of ``pod``, as the kubelet writes its resolv.conf:
    ``ClusterFirst`` (the default; ``Default`` for a hostNetwork pod) and
    ``ClusterFirstWithHostNet`` use the cluster DNS ``(address, domain)`` with the search
    path ``<ns>.svc.<domain> svc.<domain> <domain>`` and ``ndots:5``; ``Default`` keeps the
    node's; ``dnsConfig`` is added to either, or is all there is for ``None``. No cluster
    DNS (``--disable dns``): the node's."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    servers: list[str] = []
    searches: list[str] = []
    options: dict[str, str] = {}
    if cluster_dns is not None and policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        address, domain = cluster_dns
        namespace = (pod.get("metadata") or {}).get("namespace") or "default"
        servers, searches = [address], [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
        options["ndots"] = "5"
    dns = spec.get("dnsConfig") or {}
    servers += dns.get("nameservers") or []
    searches += [s for s in dns.get("searches") or [] if s not in searches]
    options.update({o["name"]: o.get("value") or "" for o in dns.get("options") or []})
    body: dict[str, Any] = {}
    if servers:
        body["dns_server"] = servers
    if searches:
        body["dns_search"] = searches
    if options:
        body["dns_option"] = [f"{k}:{v}" if v else k for k, v in options.items()]
    return body


def pod_hostname(pod: Mapping[str, Any]) -> str:
    """The pod's hostname: ``spec.hostname`` or its name, cut to 63 characters as upstream."""
    spec, meta = pod.get("spec") or {}, pod["metadata"]
    name = str(spec.get("hostname") or meta["name"])
    return name[:63].rstrip("-.")


def port_mappings(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The hostPorts of every container of ``pod`` as libpod port mappings."""
    spec = pod.get("spec") or {}
    out = []
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            if not port.get("hostPort"):
                continue
            mapping = {
                "container_port": int(port["containerPort"]),
                "host_port": int(port["hostPort"]),
                "protocol": str(port.get("protocol") or "TCP").lower(),
            }
            if port.get("hostIP"):
                mapping["host_ip"] = port["hostIP"]
            out.append(mapping)
    return out


def _quantity(resources: Mapping[str, Any], kind: str, name: str) -> float | None:
    value = (resources.get(kind) or {}).get(name)
    if value is None:
        return None
    return float(parse_quantity(value))


def resource_limits(container: Mapping[str, Any]) -> dict[str, Any]:
    """cgroup limits as the kubelet sets them: CFS quota from the CPU limit, shares from the
    CPU request (the limit when there is no request), the memory limit in bytes."""
    resources = container.get("resources") or {}
    cpu_limit = _quantity(resources, "limits", "cpu")
    cpu_request = _quantity(resources, "requests", "cpu")
    if cpu_request is None:
        cpu_request = cpu_limit
    memory = _quantity(resources, "limits", "memory")
    out: dict[str, Any] = {}
    cpu: dict[str, int] = {}
    if cpu_request is not None:
        cpu["shares"] = max(MIN_SHARES, math.floor(cpu_request * SHARES_PER_CPU))
    if cpu_limit is not None:
        cpu["quota"] = max(1000, math.ceil(cpu_limit * CPU_PERIOD))
        cpu["period"] = CPU_PERIOD
    if cpu:
        out["cpu"] = cpu
    if memory is not None:
        out["memory"] = {"limit": int(memory), "swap": int(memory)}
    return out


def _security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The effective security context: the container's over the pod's."""
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    ctx = container.get("securityContext") or {}
    merged = {
        key: pod_ctx[key]
        for key in ("runAsUser", "runAsGroup", "runAsNonRoot", "seLinuxOptions")
        if key in pod_ctx
    }
    merged.update(ctx)
    return merged


def check_non_root(pod: Mapping[str, Any], container: Mapping[str, Any], image_user: str) -> None:
    """SpecError when ``runAsNonRoot`` is set and the container would run as root (the
    kubelet's messages)."""
    ctx = _security(pod, container)
    if not ctx.get("runAsNonRoot"):
        return
    uid = ctx.get("runAsUser")
    if uid is not None:
        if int(uid) == 0:
            raise SpecError("container's runAsUser breaks non-root policy")
        return
    user = image_user.split(":", 1)[0]
    if not user or user == "root" or user == "0":
        raise SpecError("container has runAsNonRoot and image will run as root")
    if not user.isdigit():
        raise SpecError(
            f"container has runAsNonRoot and image has non-numeric user ({user}), "
            "cannot verify user is non-root"
        )


def container_spec(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    node: str,
    attempt: int,
    init: bool,
    env: Sequence[tuple[str, str]],
    mounts: Sequence[Mount],
    command: list[str] | None,
    args: list[str] | None,
) -> dict[str, Any]:
    """The SpecGenerator of one attempt of ``container`` in ``pod``'s sandbox. ``command``
    and ``args`` are the expanded Kubernetes ones (None: the image's entrypoint / cmd)."""
    name = container["name"]
    body: dict[str, Any] = {
        "name": labels.container_name(pod, name, attempt),
        "pod": labels.sandbox_name(pod),
        "image": container["image"],
        "labels": labels.container_labels(pod, node, name, attempt, init=init),
        "env": dict(env),
        "stdin": bool(container.get("stdin")),
        "terminal": bool(container.get("tty")),
        "mounts": [_mount(m) for m in mounts],
        "resource_limits": resource_limits(container),
    }
    if command is not None:
        body["entrypoint"] = command
        body["command"] = args or []
    elif args is not None:
        body["command"] = args
    if container.get("workingDir"):
        body["work_dir"] = container["workingDir"]
    body.update(security_fields(pod, container))
    return body


def security_fields(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The SpecGenerator fields of the effective securityContext: user, groups (fsGroup,
    supplementalGroups), privileged, capabilities, read-only root, no_new_privileges,
    sysctls."""
    ctx = _security(pod, container)
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    out: dict[str, Any] = {}
    if "runAsUser" in ctx or "runAsGroup" in ctx:
        group = f":{ctx['runAsGroup']}" if "runAsGroup" in ctx else ""
        out["user"] = f"{ctx.get('runAsUser', 0)}{group}"
    groups = [str(g) for g in pod_ctx.get("supplementalGroups") or []]
    if pod_ctx.get("fsGroup") is not None:
        groups.append(str(pod_ctx["fsGroup"]))
    caps = ctx.get("capabilities") or {}
    candidates = {
        "groups": groups,
        "privileged": bool(ctx.get("privileged")),
        "cap_add": [_cap(c) for c in caps.get("add") or []],
        "cap_drop": [_cap(c) for c in caps.get("drop") or []],
        "read_only_filesystem": bool(ctx.get("readOnlyRootFilesystem")),
        "no_new_privileges": ctx.get("allowPrivilegeEscalation") is False,
        "sysctl": {s["name"]: str(s["value"]) for s in pod_ctx.get("sysctls") or []},
    }
    out.update({key: value for key, value in candidates.items() if value})
    return out


def _cap(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") or upper == "ALL" else f"CAP_{upper}"


def _mount(mount: Mount) -> dict[str, Any]:
    options = list(mount.options)
    if mount.kind == "bind" and "rbind" not in options and "bind" not in options:
        options.append("rbind")
    if mount.read_only and "ro" not in options:
        options.append("ro")
    return {
        "destination": mount.destination,
        "source": mount.source,
        "type": mount.kind,
        "options": options,
    }
