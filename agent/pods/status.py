"""The status the agent reports for a pod, in the upstream kubelet's shape
(``generateAPIPodStatus``): phase, the PodReadyToStartContainers, Initialized,
ContainersReady and Ready conditions (PodScheduled is the scheduler's), container and init
container statuses with state, lastState, restartCount, image, imageID, containerID
(``podman://<id>``: the runtime's name, as upstream writes ``containerd://``), ready and
started, the pod and host IPs and the start time.

Pure functions over :class:`Attempt` (one container as Podman has it) and the worker's
view (:class:`ContainerView`), so they are tested without Podman.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgek.timefmt import format_time

RUNTIME = "podman"
#: The exit code and reason the kubelet reports for a container that never started.
START_ERROR_EXIT_CODE = 128
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class Attempt:
    """One started (or failed to start) container of a pod, from Podman's inspect."""

    id: str
    name: str
    attempt: int
    init: bool
    running: bool
    exit_code: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    oom_killed: bool = False
    error: str = ""
    image: str = ""
    image_id: str = ""
    message: str = ""
    #: Created and never started (a failed start leaves it so too).
    created: bool = False

    @property
    def start_failed(self) -> bool:
        """Whether the runtime could not start the container's process."""
        return not self.running and (self.started_at is None or bool(self.error))


@dataclass
class ContainerView:
    """What the worker knows of one container: its last two attempts and, when it is not
    running, why it waits."""

    name: str
    image: str
    latest: Attempt | None = None
    previous: Attempt | None = None
    waiting_reason: str = ""
    waiting_message: str = ""
    ready: bool = False
    started: bool = False

    @property
    def restart_count(self) -> int:
        """How many times the container was restarted."""
        return self.latest.attempt if self.latest is not None else 0


def container_id(attempt: Attempt) -> str:
    """The containerID of an attempt: ``podman://<id>``."""
    return f"{RUNTIME}://{attempt.id}"


def terminated(attempt: Attempt) -> dict[str, Any]:
    """The ``terminated`` state of a finished attempt (OOMKilled, Completed, Error or, for a
    process that never ran, StartError with exit code 128)."""
    if attempt.start_failed:
        code, reason = attempt.exit_code or START_ERROR_EXIT_CODE, "StartError"
    elif attempt.oom_killed:
        code, reason = attempt.exit_code, "OOMKilled"
    else:
        code, reason = attempt.exit_code, "Completed" if attempt.exit_code == 0 else "Error"
    state: dict[str, Any] = {"exitCode": code, "reason": reason}
    message = attempt.message or (attempt.error if attempt.start_failed else "")
    if message:
        state["message"] = message
    epoch = "1970-01-01T00:00:00Z"
    state["startedAt"] = format_time(attempt.started_at) if attempt.started_at else epoch
    state["finishedAt"] = format_time(attempt.finished_at) if attempt.finished_at else epoch
    state["containerID"] = container_id(attempt)
    return state


def container_status(view: ContainerView) -> dict[str, Any]:
    """One entry of ``containerStatuses`` / ``initContainerStatuses``."""
    latest = view.latest
    state: dict[str, Any] = {}
    last: dict[str, Any] = {}
    if view.waiting_reason or latest is None:
        waiting = {"reason": view.waiting_reason or "ContainerCreating"}
        if view.waiting_message:
            waiting["message"] = view.waiting_message
        state = {"waiting": waiting}
        if latest is not None and not latest.running:
            last = {"terminated": terminated(latest)}
        elif view.previous is not None:
            last = {"terminated": terminated(view.previous)}
    elif latest.running:
        started = format_time(latest.started_at) if latest.started_at else None
        state = {"running": {"startedAt": started}}
        if view.previous is not None:
            last = {"terminated": terminated(view.previous)}
    else:
        state = {"terminated": terminated(latest)}
        if view.previous is not None:
            last = {"terminated": terminated(view.previous)}
    out: dict[str, Any] = {
        "name": view.name,
        "state": state,
        "lastState": last,
        "ready": view.ready,
        "restartCount": view.restart_count,
        "image": view.image,
        "imageID": (latest.image_id if latest else "") or "",
        "started": view.started,
    }
    if latest is not None:
        out["containerID"] = container_id(latest)
    return out


def completed(attempt: Attempt | None) -> bool:
    """Whether an attempt ran and exited 0."""
    return (
        attempt is not None
        and not attempt.running
        and attempt.exit_code == 0
        and not attempt.start_failed
    )


def _init_phase(
    policy: str, init: Sequence[ContainerView], containers: Sequence[ContainerView]
) -> str:
    """Pending while init containers have not all completed (Failed for a failed one
    under restartPolicy Never), "" once they did or app containers were started."""
    for view in init:
        if completed(view.latest):
            continue
        if policy == "Never" and view.latest is not None and not view.latest.running:
            return "Failed"
        return "" if any(c.latest is not None for c in containers) else "Pending"
    return ""


def phase(
    spec: Mapping[str, Any],
    init: Sequence[ContainerView],
    containers: Sequence[ContainerView],
    *,
    terminal: bool = False,
) -> str:
    """The pod phase from its containers (upstream ``getPhase``); ``terminal``: the pod is
    being shut down, so containers that will not run again decide Succeeded or Failed."""
    policy = spec.get("restartPolicy") or "Always"
    if early := _init_phase(policy, init, containers):
        return early
    if any(view.latest is None for view in containers):
        return "Pending"
    running = sum(1 for v in containers if v.latest and v.latest.running and not v.waiting_reason)
    if running:
        return "Running"
    if not containers:
        return "Pending"
    if policy == "Always" and not terminal:
        return "Running"
    if all(completed(v.latest) for v in containers):
        return "Succeeded"
    if policy == "Never" or terminal:
        return "Failed"
    return "Running"


def pod_condition(
    kind: str,
    status: str,
    now: str,
    previous: tuple[str, str] | None = None,
    reason: str = "",
    message: str = "",
) -> dict[str, Any]:
    """One pod condition; it keeps the transition time of ``previous`` (status, time) while
    its status is the same. Shared with ``edgek sim``'s statuses."""
    moved = previous[1] if previous and previous[0] == status and previous[1] else now
    # Empty reason/message are sent as null: in a strategic merge patch that removes them.
    return {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": moved,
        "reason": reason or None,
        "message": message or None,
    }


def _condition(
    kind: str, ok: bool, now: str, current: Mapping[str, Any], reason: str = "", message: str = ""
) -> dict[str, Any]:
    old = current.get(kind) or {}
    previous = (str(old.get("status") or ""), str(old.get("lastTransitionTime") or ""))
    if ok:
        return pod_condition(kind, "True", now, previous)
    return pod_condition(kind, "False", now, previous, reason, message)


def pod_conditions(
    *,
    sandbox_ready: bool,
    init: Sequence[ContainerView],
    containers: Sequence[ContainerView],
    pod_phase: str,
    now: datetime,
    current: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The kubelet's four pod conditions; a condition keeps its lastTransitionTime from
    ``current`` while its status is unchanged."""
    stamp = format_time(now)
    previous = {c.get("type", ""): c for c in current}
    incomplete = [v.name for v in init if not completed(v.latest)]
    started_app = any(v.latest is not None for v in containers)
    initialized = not incomplete or started_app
    unready = [v.name for v in containers if not v.ready]
    done = pod_phase in TERMINAL_PHASES
    if done:
        why = ("PodCompleted", "")
    elif not initialized:
        why = (
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        )
    else:
        why = ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
    ready = not unready and not done and initialized
    init_why = (
        ("PodCompleted", "")
        if done and not initialized
        else (
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        )
    )
    return [
        _condition("PodReadyToStartContainers", sandbox_ready and not done, stamp, previous),
        _condition("Initialized", initialized, stamp, previous, *init_why),
        _condition("Ready", ready, stamp, previous, *why),
        _condition("ContainersReady", ready, stamp, previous, *why),
    ]


def pod_status(
    pod: Mapping[str, Any],
    *,
    init: Sequence[ContainerView],
    containers: Sequence[ContainerView],
    sandbox_ready: bool,
    pod_ips: Sequence[str],
    host_ips: Sequence[str],
    start_time: datetime | None,
    now: datetime,
    terminal: bool = False,
    reason: str = "",
    message: str = "",
    forced_phase: str = "",
) -> dict[str, Any]:
    """The whole status to report (see the module docstring); ``forced_phase`` with
    ``reason``/``message`` for a pod the agent ended itself (DeadlineExceeded)."""
    spec = pod.get("spec") or {}
    current = pod.get("status") or {}
    pod_phase = forced_phase or phase(spec, init, containers, terminal=terminal)
    status: dict[str, Any] = {
        "phase": pod_phase,
        "conditions": pod_conditions(
            sandbox_ready=sandbox_ready,
            init=init,
            containers=containers,
            pod_phase=pod_phase,
            now=now,
            current=current.get("conditions") or [],
        ),
        "hostIP": host_ips[0] if host_ips else None,
        "hostIPs": [{"ip": ip} for ip in host_ips] or None,
        "podIP": pod_ips[0] if pod_ips else None,
        "podIPs": [{"ip": ip} for ip in pod_ips] or None,
        "startTime": format_time(start_time) if start_time else None,
        "containerStatuses": [container_status(v) for v in containers],
        "reason": reason or None,
        "message": message or None,
    }
    if init:
        status["initContainerStatuses"] = [container_status(v) for v in init]
    return status
