"""Pure builders of what a node reports about itself, shared by ``edgek agent`` and
``edgek sim``: standard labels, conditions, addresses, capacity and allocatable, node info,
the node Lease, and the ``--node-label`` / ``--node-taint`` flag syntax.

Facts follow the upstream kubelet: condition reasons and messages
(``pkg/kubelet/nodestatus``), the Lease in ``kube-node-lease`` (``pkg/kubelet/nodelease``:
40 s duration, renewed every quarter of it), allocatable = capacity - reserved - eviction
hard thresholds with the kubelet's default thresholds (``memory.available<100Mi``,
``nodefs.available<10%``, ``imagefs.available<15%``, ``nodefs.inodesFree<5%``), and the
node status report frequency (at once on a change, every 5 minutes otherwise).
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgek.names import is_label_value, is_qualified_name
from edgek.timefmt import format_micro_time, format_time, parse_time

NODE_LEASE_NAMESPACE = "kube-node-lease"
KUBELET_PORT = 10250
#: Upstream defaults: lease duration, and pods per node.
LEASE_SECONDS = 40
MAX_PODS = 110
#: Upstream nodeStatusReportFrequency: a status is posted at least this often.
STATUS_REPORT_SECONDS = 300.0
#: Eviction hard thresholds (kubelet defaults on Linux).
EVICTION_MEMORY_AVAILABLE = 100 * 2**20
EVICTION_NODEFS_AVAILABLE = 0.10
EVICTION_IMAGEFS_AVAILABLE = 0.15
EVICTION_NODEFS_INODES_FREE = 0.05
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

#: Condition type -> (reason, message) when it is True, and when it is False.
_CONDITIONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "MemoryPressure": (
        ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
        ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ),
    "DiskPressure": (
        ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ),
    "PIDPressure": (
        ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
        ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ),
    "Ready": (
        ("KubeletReady", "kubelet is posting ready status"),
        ("KubeletNotReady", "container runtime is down"),
    ),
}
#: The condition states of a healthy node.
HEALTHY: dict[str, bool] = {
    "MemoryPressure": False,
    "DiskPressure": False,
    "PIDPressure": False,
    "Ready": True,
}


def machine_arch() -> str:
    """This machine's architecture in Go's GOARCH spelling."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine or "amd64"
    )


def standard_labels(name: str, arch: str, instance_type: str) -> dict[str, str]:
    """The labels the kubelet registers a node with."""
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
        "node.kubernetes.io/instance-type": instance_type,
    }


def node_conditions(
    states: Mapping[str, bool],
    now: datetime,
    since: Mapping[str, datetime],
    messages: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The four node conditions in ``states`` (type -> True/False), heartbeat ``now``, each
    last changed at ``since[type]``; ``messages`` overrides the standard message of a type."""
    beat = format_time(now)
    out = []
    for kind, (when_true, when_false) in _CONDITIONS.items():
        state = states[kind]
        reason, message = when_true if state else when_false
        out.append(
            {
                "type": kind,
                "status": "True" if state else "False",
                "lastHeartbeatTime": beat,
                "lastTransitionTime": format_time(since[kind]),
                "reason": reason,
                "message": (messages or {}).get(kind, message),
            }
        )
    return out


def transition_times(
    current: Sequence[Mapping[str, Any]], states: Mapping[str, bool], now: datetime
) -> dict[str, datetime]:
    """When each condition in ``states`` last changed: kept from the node's ``current``
    conditions where its status is the same, else ``now``."""
    kept = {
        c.get("type"): str(c["lastTransitionTime"])
        for c in current
        if c.get("lastTransitionTime")
        and c.get("status") == ("True" if states.get(c.get("type", "")) else "False")
    }
    return {kind: parse_time(kept[kind]) if kind in kept else now for kind in states}


def node_addresses(
    name: str, internal_ips: Sequence[str], external_ips: Sequence[str] = ()
) -> list[dict[str, str]]:
    """``status.addresses``: InternalIPs, ExternalIPs, then the Hostname."""
    return [
        *({"type": "InternalIP", "address": ip} for ip in internal_ips),
        *({"type": "ExternalIP", "address": ip} for ip in external_ips),
        {"type": "Hostname", "address": name},
    ]


@dataclass(frozen=True)
class HostSample:
    """What the host has: CPUs, memory and the agent's filesystem (bytes and inodes)."""

    cpus: int
    memory_bytes: int
    memory_available: int
    disk_bytes: int
    disk_available: int
    inodes: int
    inodes_free: int


def format_bytes(value: int) -> str:
    """A byte count as the kubelet formats it (BinarySI: ``Ki``..``Ei`` when exact, else a
    plain number); negatives become 0."""
    value = max(value, 0)
    suffix = ""
    for unit in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"):
        if value == 0 or value % 1024:
            break
        value //= 1024
        suffix = unit
    return f"{value}{suffix}"


def capacity(sample: HostSample, max_pods: int = MAX_PODS) -> dict[str, str]:
    """``status.capacity``: the machine's CPUs, memory, pods and ephemeral storage."""
    return {
        "cpu": str(sample.cpus),
        "memory": format_bytes(sample.memory_bytes),
        "pods": str(max_pods),
        "ephemeral-storage": format_bytes(sample.disk_bytes),
    }


def allocatable(sample: HostSample, max_pods: int = MAX_PODS) -> dict[str, str]:
    """``status.allocatable``: capacity less the eviction hard thresholds (no kube or system
    reservations by default, as upstream)."""
    reserved_disk = int(sample.disk_bytes * EVICTION_NODEFS_AVAILABLE)
    return {
        **capacity(sample, max_pods),
        "memory": format_bytes(sample.memory_bytes - EVICTION_MEMORY_AVAILABLE),
        "ephemeral-storage": format_bytes(sample.disk_bytes - reserved_disk),
    }


def pressure(sample: HostSample) -> dict[str, bool]:
    """The condition states for ``sample``: memory and disk pressure by the eviction hard
    thresholds (images live on the agent's filesystem, so both the nodefs and imagefs
    thresholds apply to it); PIDPressure has no default threshold upstream, so never.
    Ready is True (the caller decides it from the runtime)."""
    disk = (
        sample.disk_available < sample.disk_bytes * EVICTION_NODEFS_AVAILABLE
        or sample.disk_available < sample.disk_bytes * EVICTION_IMAGEFS_AVAILABLE
        or sample.inodes_free < sample.inodes * EVICTION_NODEFS_INODES_FREE
    )
    return {
        "MemoryPressure": sample.memory_available < EVICTION_MEMORY_AVAILABLE,
        "DiskPressure": disk,
        "PIDPressure": False,
        "Ready": True,
    }


def node_info(
    *,
    machine_id: str,
    system_uuid: str,
    boot_id: str,
    kernel: str,
    os_image: str,
    runtime: str,
    kubelet: str,
    arch: str,
) -> dict[str, str]:
    """``status.nodeInfo``."""
    return {
        "machineID": machine_id,
        "systemUUID": system_uuid,
        "bootID": boot_id,
        "kernelVersion": kernel,
        "osImage": os_image,
        "containerRuntimeVersion": runtime,
        "kubeletVersion": kubelet,
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": arch,
    }


def _comparable(value: Any) -> Any:
    """A status field as compared for news: conditions by type without heartbeats."""
    if isinstance(value, list) and all(isinstance(c, dict) and "type" in c for c in value):
        return {c["type"]: {k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in value}
    return value


def status_differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether ``wanted`` (a status the node would write) carries news against the Node's
    ``current`` status: any field it sets differs, heartbeat times aside (the kubelet posts
    those at once, and an unchanged status only every 5 minutes)."""
    return any(_comparable(current.get(k)) != _comparable(v) for k, v in wanted.items())


def lease_object(name: str, node_uid: str, duration: int, now: datetime) -> dict[str, Any]:
    """The node's Lease in ``kube-node-lease``, owned by its Node, renewed ``now``."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration,
            "renewTime": format_micro_time(now),
        },
    }


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """``--node-label k=v`` values as a mapping; ValueError naming the first bad one."""
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        problems = is_qualified_name(key) + is_label_value(value) if sep else ["want key=value"]
        if problems:
            raise ValueError(f"invalid node label {item!r}: {'; '.join(problems)}")
        labels[key] = value
    return labels


def parse_taints(items: Iterable[str]) -> list[dict[str, str]]:
    """``--node-taint key[=value]:Effect`` values as Node taints; ValueError naming the
    first bad one."""
    taints = []
    for item in items:
        pair, sep, effect = item.rpartition(":")
        key, _, value = pair.partition("=")
        problems = is_qualified_name(key) + is_label_value(value) if sep else []
        if not sep or effect not in TAINT_EFFECTS:
            problems.append(
                f"want key[=value]:Effect with Effect one of {', '.join(TAINT_EFFECTS)}"
            )
        if problems:
            raise ValueError(f"invalid node taint {item!r}: {'; '.join(problems)}")
        taint = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        taints.append(taint)
    return taints
