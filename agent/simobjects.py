"""The pure parts of ``edgek sim``: simulated node objects, pod IP allocation from a node's
podCIDR and the pod statuses a kubelet would report. The running simulated nodes (``SimNode``,
``Simulator``) that write these are in :mod:`agent.sim`; what any node reports about itself
(conditions, the node Lease) is in :mod:`agent.nodestatus`.

Shapes follow the upstream kubelet: the pod status it writes (``generateAPIPodStatus``: phase,
hostIP(s), podIP(s), startTime, container statuses and the PodReadyToStartContainers,
Initialized, ContainersReady, Ready and PodScheduled conditions).
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import platform
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.nodestatus import (
    HEALTHY,
    KUBELET_PORT,
    machine_arch,
    node_addresses,
    node_conditions,
    node_info,
    standard_labels,
)
from agent.pods.status import pod_condition
from edgek import KUBERNETES_VERSION
from edgek.timefmt import format_time

SIM_LABEL = "edgek.io/sim"
INSTANCE_TYPE = "sim"
#: Per-pod overrides of the simulated run time and exit code.
RUN_SECONDS_ANNOTATION = "sim.edgek.io/run-seconds"
EXIT_CODE_ANNOTATION = "sim.edgek.io/exit-code"
#: Exit code of a container the sim stops because its pod is deleted (128 + SIGTERM).
KILLED_EXIT_CODE = 143
#: Node addresses come from this test range: node i gets 10.250.<i // 254>.<i % 254 + 1>.
NODE_IP_BASE = ipaddress.IPv4Address("10.250.0.0")
MAX_NODES = 254 * 256


def node_ip(index: int) -> str:
    """The InternalIP of sim node ``index`` (ValueError beyond :data:`MAX_NODES`)."""
    if not 0 <= index < MAX_NODES:
        raise ValueError(f"sim node index {index} out of range (at most {MAX_NODES} nodes)")
    return str(NODE_IP_BASE + (index // 254) * 256 + index % 254 + 1)


@dataclass(frozen=True)
class NodeShape:
    """What every sim node reports about itself."""

    cpu: str = "4"
    memory: str = "8Gi"
    max_pods: int = 110
    ephemeral_storage: str = "50Gi"
    arch: str = field(default_factory=machine_arch)

    def resources(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.max_pods),
            "ephemeral-storage": self.ephemeral_storage,
        }


def _hex(*parts: str, length: int = 32) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def node_labels(name: str, shape: NodeShape) -> dict[str, str]:
    """The labels a sim node registers with (kubelet labels plus ``edgek.io/sim``)."""
    return {**standard_labels(name, shape.arch, INSTANCE_TYPE), SIM_LABEL: "true"}


def node_status(
    name: str, ip: str, shape: NodeShape, now: datetime, since: datetime, boot_id: str
) -> dict[str, Any]:
    """A healthy node's status: heartbeat ``now``, conditions unchanged ``since``."""
    return {
        "capacity": shape.resources(),
        "allocatable": shape.resources(),
        "conditions": node_conditions(HEALTHY, now, dict.fromkeys(HEALTHY, since)),
        "addresses": node_addresses(name, [ip]),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": node_info(
            machine_id=_hex("machine", name),
            system_uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.sim.edgek.io")),
            boot_id=boot_id,
            kernel=platform.release(),
            os_image="edgek sim",
            runtime="sim://1.0.0",
            kubelet=KUBERNETES_VERSION,
            arch=shape.arch,
        ),
    }


def node_object(
    name: str, ip: str, shape: NodeShape, now: datetime, boot_id: str
) -> dict[str, Any]:
    """The Node a sim node registers (status included, as the kubelet does)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name, shape)},
        "spec": {},
        "status": node_status(name, ip, shape, now, now, boot_id),
    }


def pod_cidrs(node: dict[str, Any]) -> list[str]:
    """A node's pod CIDRs (``spec.podCIDRs``, else ``spec.podCIDR``)."""
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


class PodIPAllocator:
    """Pod IPs from one podCIDR, next-fit. The network address, the first host address
    (the node's bridge/gateway, as flannel's cni0) and the IPv4 broadcast are never handed
    out."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self._address = type(self.network.network_address)
        self._first = int(self.network.network_address) + 2
        last = int(self.network.broadcast_address)
        self._last = last - 1 if self.network.version == 4 else last
        self._next = self._first
        self._used: set[int] = set()

    @property
    def size(self) -> int:
        """How many addresses can be handed out."""
        return max(self._last - self._first + 1, 0)

    def allocate(self) -> str | None:
        """A free address, or None when the range is exhausted."""
        if len(self._used) >= self.size:
            return None
        while True:
            candidate = self._next
            self._next = candidate + 1 if candidate < self._last else self._first
            if candidate not in self._used:
                self._used.add(candidate)
                return str(self._address(candidate))

    def reserve(self, ip: str) -> bool:
        """Mark ``ip`` used (an address a pod already has); False if it is not ours or taken."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        value = int(address)
        if address.version != self.network.version or not self._first <= value <= self._last:
            return False
        if value in self._used:
            return False
        self._used.add(value)
        return True

    def release(self, ip: str) -> None:
        """Return ``ip`` to the pool (unknown addresses are ignored)."""
        try:
            self._used.discard(int(ipaddress.ip_address(ip)))
        except ValueError:
            return


class Stage(enum.Enum):
    """Where a simulated pod is, as last computed or reported."""

    RUNNING = "running"  # containers started, not ready yet
    READY = "ready"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"  # deleted: containers stopped before the final delete


TERMINAL = frozenset({Stage.SUCCEEDED, Stage.FAILED, Stage.KILLED})


def _float_annotation(annotations: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(annotations[key])
    except (KeyError, ValueError):
        return default
    return value if value >= 0 else default


def _int_annotation(annotations: dict[str, str], key: str, default: int) -> int:
    try:
        return int(annotations[key])
    except (KeyError, ValueError):
        return default


@dataclass
class PodRun:
    """The simulation of one pod bound to a sim node."""

    namespace: str
    name: str
    uid: str
    node: str
    restart_policy: str
    containers: list[tuple[str, str]]  # (name, image)
    init_containers: list[tuple[str, str]]
    run_seconds: float | None  # None: runs until deleted (restartPolicy Always)
    exit_code: int
    host_ip: str = ""
    pod_ips: list[str] = field(default_factory=list)
    start_time: datetime | None = None  # pod startTime
    started_at: datetime | None = None  # current container instance start
    finished_at: datetime | None = None
    restart_count: int = 0
    last_exit: dict[str, Any] | None = None  # lastState.terminated after a restart
    reported: Stage | None = None
    #: resourceVersion of the pod as the last status write left it (0: none yet)
    written_version: int = 0
    deleting: bool = False
    #: type -> (status, lastTransitionTime) of the conditions last seen or written.
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_pod(cls, pod: dict[str, Any], run_seconds: float) -> PodRun:
        """A run for ``pod``; ``run_seconds`` is the default run time of pods that end."""
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        annotations = md.get("annotations") or {}
        policy = spec.get("restartPolicy") or "Always"
        run = cls(
            namespace=md.get("namespace") or "",
            name=md.get("name") or "",
            uid=md.get("uid") or "",
            node=spec.get("nodeName") or "",
            restart_policy=policy,
            containers=[(c["name"], c.get("image") or "") for c in spec.get("containers") or []],
            init_containers=[
                (c["name"], c.get("image") or "") for c in spec.get("initContainers") or []
            ],
            run_seconds=(
                None
                if policy == "Always"
                else _float_annotation(annotations, RUN_SECONDS_ANNOTATION, run_seconds)
            ),
            exit_code=_int_annotation(annotations, EXIT_CODE_ANNOTATION, 0),
        )
        observe_conditions(run, pod.get("status") or {})
        return run

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def image_id(image: str) -> str:
    """A digest reference for ``image`` (repository without tag, stable fake digest)."""
    repo = image.split("@", 1)[0]
    slash = repo.rfind("/")
    if ":" in repo[slash + 1 :]:
        repo = repo[: repo.rfind(":")]
    if "/" not in repo:
        repo = f"docker.io/library/{repo}"
    elif "." not in repo.split("/", 1)[0] and ":" not in repo.split("/", 1)[0]:
        repo = f"docker.io/{repo}"
    return f"{repo}@sha256:{_hex('image', image, length=64)}"


def container_id(run: PodRun, container: str, restart: int) -> str:
    return f"sim://{_hex(run.uid, container, str(restart), length=64)}"


def _condition(
    run: PodRun, kind: str, status: str, now: str, reason: str = "", message: str = ""
) -> dict[str, Any]:
    return pod_condition(kind, status, now, run.conditions.get(kind), reason, message)


def _terminated(run: PodRun, name: str, exit_code: int, finished: datetime) -> dict[str, Any]:
    assert run.started_at is not None
    return {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": format_time(run.started_at),
        "finishedAt": format_time(finished),
        "containerID": container_id(run, name, run.restart_count),
    }


def pod_status(run: PodRun, stage: Stage, now: datetime) -> dict[str, Any]:
    """The status a kubelet reports for ``run`` at ``stage`` (pod started: ``run.start_time``,
    ``run.started_at`` and the IPs are set). Condition transition times are kept from
    ``run.conditions`` when a condition's status is unchanged."""
    assert run.start_time is not None and run.started_at is not None
    stamp = format_time(now)
    terminal = stage in TERMINAL
    ready = stage is Stage.READY
    exit_code = KILLED_EXIT_CODE if stage is Stage.KILLED else run.exit_code
    if stage is Stage.SUCCEEDED:
        exit_code = 0
    finished = run.finished_at or now
    statuses = []
    for name, image in run.containers:
        state: dict[str, Any]
        if terminal:
            state = {"terminated": _terminated(run, name, exit_code, finished)}
        else:
            state = {"running": {"startedAt": format_time(run.started_at)}}
        last: dict[str, Any] = {}
        if run.last_exit:
            previous_id = container_id(run, name, run.restart_count - 1)
            last = {"terminated": {**run.last_exit, "containerID": previous_id}}
        statuses.append(
            {
                "name": name,
                "state": state,
                "lastState": last,
                "ready": ready,
                "restartCount": run.restart_count,
                "image": image,
                "imageID": image_id(image),
                "containerID": container_id(run, name, run.restart_count),
                "started": not terminal,
            }
        )
    init_statuses = [
        {
            "name": name,
            "state": {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": format_time(run.start_time),
                    "finishedAt": format_time(run.start_time),
                    "containerID": container_id(run, name, 0),
                }
            },
            "lastState": {},
            "ready": True,
            "restartCount": 0,
            "image": image,
            "imageID": image_id(image),
            "containerID": container_id(run, name, 0),
            "started": False,
        }
        for name, image in run.init_containers
    ]
    if terminal:
        not_ready = ("PodCompleted", "")
    else:
        names = " ".join(name for name, _ in run.containers)
        not_ready = ("ContainersNotReady", f"containers with unready status: [{names}]")
    readiness = "True" if ready else "False"
    conditions = [
        _condition(run, "PodReadyToStartContainers", "False" if terminal else "True", stamp),
        _condition(run, "Initialized", "True", stamp),
        _condition(run, "Ready", readiness, stamp, *(() if ready else not_ready)),
        _condition(run, "ContainersReady", readiness, stamp, *(() if ready else not_ready)),
    ]
    if "PodScheduled" not in run.conditions:
        conditions.append(_condition(run, "PodScheduled", "True", stamp))
    phase = {Stage.SUCCEEDED: "Succeeded", Stage.FAILED: "Failed", Stage.KILLED: "Failed"}
    status: dict[str, Any] = {
        "phase": phase.get(stage, "Running"),
        "conditions": conditions,
        "hostIP": run.host_ip,
        "hostIPs": [{"ip": run.host_ip}],
        "podIP": run.pod_ips[0] if run.pod_ips else "",
        "podIPs": [{"ip": ip} for ip in run.pod_ips],
        "startTime": format_time(run.start_time),
        "containerStatuses": statuses,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


def observe_conditions(run: PodRun, status: dict[str, Any]) -> None:
    """Record the conditions of a status read from the API (any writer's)."""
    for cond in status.get("conditions") or []:
        run.conditions[cond.get("type", "")] = (
            cond.get("status", ""),
            cond.get("lastTransitionTime") or "",
        )


def remember_conditions(run: PodRun, status: dict[str, Any]) -> None:
    """Record the conditions of a status that was written (for later transition times)."""
    for cond in status.get("conditions") or []:
        run.conditions[cond["type"]] = (cond["status"], cond["lastTransitionTime"])
