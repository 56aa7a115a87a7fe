"""One pod's worker: a task per pod uid that converges Podman to the pod (level-triggered:
every sync reads Podman's view of the pod, decides, acts, reports).

A sync makes the sandbox (a Podman pod whose infra container holds the network namespace),
runs the init containers one after the other, then the app containers, restarts what
exited as the restartPolicy says (with CrashLoopBackOff), ends the pod at its
activeDeadlineSeconds, and writes the status when it changed. A deleted pod is shut down
gracefully (SIGTERM, SIGKILL after its grace period) and then removed from the API (grace
period 0, uid precondition, as the kubelet does). Podman's containers are named per pod uid
and attempt (:mod:`agent.labels`), so an attempt is never started twice and a restarted
agent adopts what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from agent import labels
from agent.events import NORMAL, WARNING, EventRecorder, involved
from agent.nodeapi import delete_pod
from agent.objectsource import ObjectSource
from agent.podconfig.env import ContainerConfigError, container_env, expand
from agent.podconfig.volumes import Mount, VolumeError, VolumeManager
from agent.podman.client import PodmanClient, PodmanError
from agent.pods import hosts
from agent.pods import spec as specs
from agent.pods.backoff import Backoff
from agent.pods.status import TERMINAL_PHASES, Attempt, ContainerView, completed, pod_status
from agent.probes import ExecFn, ProbeSet, run_hook
from agent.pull import ImagePuller, ImagePullError
from edgek.apiclient import ApiClient, ApiClientError
from edgek.timefmt import parse_time

log = logging.getLogger("edgek.agent.pods")

#: How often a worker syncs without being woken (Podman's events wake it sooner).
RESYNC_SECONDS = 10.0
DEFAULT_GRACE = 30
#: How soon volumes that could not be set up are tried again.
VOLUME_RETRY_SECONDS = 2.0
#: Limits of a termination message (upstream: 4096 bytes from the file, the last 80 log
#: lines and at most 2048 bytes from the logs).
MESSAGE_BYTES = 4096
LOG_LINES = 80
LOG_BYTES = 2048
_TIME = re.compile(r"^(.*?T\d\d:\d\d:\d\d)(\.\d+)?(.*)$")


def podman_time(text: str | None) -> datetime | None:
    """A timestamp from Podman's inspect (Go's RFC3339Nano, any offset); None for Go's
    zero time."""
    if not text or text.startswith("0001-"):
        return None
    match = _TIME.match(text)
    if match is None:
        return None
    head, frac, zone = match.groups()
    return parse_time(f"{head}{(frac or '')[:7]}{zone or 'Z'}")


def attempt_of(doc: Mapping[str, Any]) -> Attempt:
    """An :class:`Attempt` from a container's inspect document."""
    cfg = doc.get("Config") or {}
    lbl = cfg.get("Labels") or {}
    state = doc.get("State") or {}
    return Attempt(
        id=doc["Id"],
        name=lbl.get(labels.CONTAINER_NAME, ""),
        attempt=int(lbl.get(labels.CONTAINER_ATTEMPT) or 0),
        init=lbl.get(labels.CONTAINER_KIND) == "init",
        running=bool(state.get("Running")) or state.get("Status") == "paused",
        created=state.get("Status") == "created",
        exit_code=int(state.get("ExitCode") or 0),
        started_at=podman_time(state.get("StartedAt")),
        finished_at=podman_time(state.get("FinishedAt"))
        or (None if state.get("Running") else podman_time(doc.get("Created"))),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        image=str(doc.get("ImageName") or ""),
        image_id=str(doc.get("Image") or ""),
    )


#: activeDeadlineSeconds passed: the failure's reason, message and grace (the pod's).
DEADLINE_EXCEEDED = (
    "DeadlineExceeded",
    "Pod was active on the node longer than the specified deadline",
    None,
)
#: The grace period of a hard eviction (the kubelet's immediate eviction).
EVICTION_GRACE_SECONDS = 1


@dataclass
class WorkerContext:
    """What every worker of one agent shares."""

    podman: PodmanClient
    api: Callable[[], ApiClient | None]
    events: EventRecorder
    node: str
    node_ips: list[str]
    network: str
    pods_dir: Path
    objects: ObjectSource
    volumes: VolumeManager
    puller: ImagePuller
    exec_fn: ExecFn
    #: The cluster DNS (address, domain) pods resolve with; None: the node's resolvers.
    cluster_dns: tuple[str, str] | None = None
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class PodWorker:
    """The worker of one pod uid (see the module docstring)."""

    def __init__(self, ctx: WorkerContext, pod: dict[str, Any]) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.gone = False
        self.finished = False
        #: For a static pod: the uid of its mirror pod in the API ("" until there is one).
        self.mirror_uid = ""
        self.static = False
        self._wake = asyncio.Event()
        self._reported: dict[str, Any] | None = None
        #: Inspected containers by (id, state): a container's details change with its state.
        self._details: dict[tuple[str, str], Attempt] = {}
        self._waiting: dict[str, tuple[str, str]] = {}
        self._start_time: datetime | None = None
        self._forced: tuple[str, str, str] | None = None
        self._eviction: tuple[str, str, int | None] | None = None
        self._killed: set[str] = set()
        self._start_errors: dict[str, str] = {}
        self._pull_failed: dict[str, float] = {}
        self._volumes_ready = False
        self._probed: dict[str, str] = {}
        self.probes = ProbeSet(
            pod, exec_fn=ctx.exec_fn, on_change=self.wake, on_event=self._probe_event
        )
        self.task: asyncio.Task[None] | None = None

    # -- driving --------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """``namespace/name`` of the pod."""
        meta = self.pod["metadata"]
        return f"{meta['namespace']}/{meta['name']}"

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod; sync soon."""
        self.pod = pod
        self.wake()

    def removed(self) -> None:
        """The pod is gone from the API: stop what runs, then end."""
        self.gone = True
        self.wake()

    @property
    def volumes_ready(self) -> bool:
        """Whether the pod's volumes were set up."""
        return self._volumes_ready

    def report_to(self, mirror_uid: str) -> None:
        """A static pod's (new) mirror pod: write the whole status there."""
        self.mirror_uid = mirror_uid
        self._reported = None
        self.wake()

    def wake(self) -> None:
        """Sync now."""
        self._wake.set()

    async def run(self) -> None:
        """Sync until the pod is shut down and removed."""
        try:
            while not self.finished:
                self._wake.clear()
                try:
                    delay = await self.sync()
                except (PodmanError, OSError, aiohttp.ClientError, ApiClientError) as e:
                    log.warning("pod %s: sync failed: %s", self.key, e)
                    delay = 1.0
                except Exception:  # a bug must not end the pod's worker: log it, go on
                    log.exception("pod %s: sync failed", self.key)
                    delay = RESYNC_SECONDS
                if self.finished:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            await self.probes.stop()

    def _probe_event(self, container: str, kind: str, reason: str, message: str) -> None:
        self._event(self._container(container, False), False, kind, reason, message)

    def _feed_probes(self, attempts: dict[str, list[Attempt]], ips: list[str]) -> None:
        """Tell the probes which app containers run (a new attempt starts them over)."""
        for container in (self.pod.get("spec") or {}).get("containers") or []:
            name = container["name"]
            latest = _latest(attempts, name)
            if latest is not None and latest.running:
                if self._probed.get(name) != latest.id:
                    self._probed[name] = latest.id
                    started = latest.started_at or self.ctx.clock()
                    ip = ips[0] if ips else ""
                    self.probes.container_started(name, latest.id, ip, started.timestamp())
            elif self._probed.pop(name, None) is not None:
                self.probes.container_stopped(name)

    # -- observing ------------------------------------------------------------------------

    async def _attempts(self) -> dict[str, list[Attempt]]:
        """The pod's containers in Podman by container name, oldest attempt first."""
        listed = await self.ctx.podman.container_list(
            labels.label_filter({labels.MANAGED_BY: self.ctx.node, labels.POD_UID: self.uid})
        )
        found: dict[str, list[Attempt]] = {}
        seen = {item["Id"] for item in listed}
        self._details = {k: v for k, v in self._details.items() if k[0] in seen}
        for item in listed:
            if item.get("IsInfra"):
                continue
            key = (item["Id"], str(item.get("State") or ""))
            attempt = self._details.get(key)
            if attempt is None:
                try:
                    attempt = attempt_of(await self.ctx.podman.container_inspect(item["Id"]))
                except PodmanError as e:
                    if e.status == 404:
                        continue
                    raise
                if not attempt.running:
                    attempt.message = await self._termination_message(attempt)
                    attempt.error = attempt.error or self._start_errors.get(attempt.id, "")
                    attempt.oom_killed = attempt.oom_killed or self._oom_killed(attempt)
                self._details[key] = attempt
            found.setdefault(attempt.name, []).append(attempt)
        for attempts in found.values():
            attempts.sort(key=lambda a: a.attempt)
        return found

    def _oom_killed(self, attempt: Attempt) -> bool:
        """Whether a SIGKILL the agent did not send ended a memory-limited container: the
        kernel's OOM killer (Podman 4.3 reports OOMKilled from cgroup v2's memory.events
        only; on cgroup v1 hosts this is how the kill is recognised)."""
        container = self._container(attempt.name, attempt.init) or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        return (
            attempt.exit_code == 137
            and "memory" in limits
            and attempt.id not in self._killed
            and not attempt.start_failed
        )

    def _message_file(self, container: str, attempt: int) -> Path:
        return self.ctx.pods_dir / self.uid / "containers" / container / str(attempt)

    async def _termination_message(self, attempt: Attempt) -> str:
        container = self._container(attempt.name, attempt.init) or {}
        path = self._message_file(attempt.name, attempt.attempt)
        try:
            data = await asyncio.to_thread(_read_head, path, MESSAGE_BYTES)
        except OSError:
            data = b""
        policy = container.get("terminationMessagePolicy") or "File"
        if not data and policy == "FallbackToLogsOnError" and attempt.exit_code != 0:
            with contextlib.suppress(PodmanError):
                lines = [d async for _, d in self.ctx.podman.logs(attempt.id, tail=LOG_LINES)]
                data = b"".join(lines)[-LOG_BYTES:]
        return data.decode(errors="replace")

    def _container(self, name: str, init: bool) -> dict[str, Any] | None:
        spec = self.pod.get("spec") or {}
        for c in spec.get("initContainers" if init else "containers") or []:
            if c["name"] == name:
                return dict(c)
        return None

    async def _sandbox(self, create: bool) -> tuple[bool, list[str]]:
        """(sandbox running, pod IPs); makes and starts the sandbox when ``create``."""
        name = labels.sandbox_name(self.pod)
        spec = self.pod.get("spec") or {}
        podman = self.ctx.podman
        try:
            info = await podman.pod_inspect(name)
        except PodmanError as e:
            if e.status != 404 or not create:
                if e.status == 404:
                    return False, []
                raise
            body = specs.sandbox_spec(
                self.pod, self.ctx.node, self.ctx.network, cluster_dns=self.ctx.cluster_dns
            )
            await podman.pod_create(body)
            info = await podman.pod_inspect(name)
        infra_id = info.get("InfraContainerID") or ""
        infra = await podman.container_inspect(infra_id)
        if not (infra.get("State") or {}).get("Running"):
            if not create:
                return False, []
            await podman.container_start(infra_id)
            infra = await podman.container_inspect(infra_id)
        if spec.get("hostNetwork"):
            return True, list(self.ctx.node_ips)
        nets = (infra.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(self.ctx.network) or {}).get("IPAddress") or ""
        return True, [ip] if ip else []

    async def _release_sandbox(self) -> None:
        """Stop a finished pod's infra container: its address goes back to the pool (the
        Podman pod stays, with the containers' logs, until the pod is deleted)."""
        try:
            info = await self.ctx.podman.pod_inspect(labels.sandbox_name(self.pod))
            infra_id = info.get("InfraContainerID") or ""
            infra = await self.ctx.podman.container_inspect(infra_id)
            if (infra.get("State") or {}).get("Running"):
                await self.ctx.podman.container_kill(infra_id)
        except PodmanError as e:
            if e.status not in (404, 409):
                raise

    # -- one sync -------------------------------------------------------------------------

    async def sync(self) -> float:
        """Converge once; returns the seconds until the next sync is due."""
        meta = self.pod["metadata"]
        if self.gone or meta.get("deletionTimestamp"):
            await self._shut_down()
            return RESYNC_SECONDS
        now = self.ctx.clock()
        current_phase = (self.pod.get("status") or {}).get("phase")
        terminal = current_phase in TERMINAL_PHASES or self._forced is not None
        attempts = await self._attempts()
        if terminal and not any(a.running for tries in attempts.values() for a in tries):
            await self._release_sandbox()
        sandbox_ok, ips = await self._sandbox(create=not terminal)
        self._waiting = {}
        due = RESYNC_SECONDS
        if self._start_time is None:
            started = (self.pod.get("status") or {}).get("startTime")
            self._start_time = parse_time(started) if started else now
        left = self._deadline_left(now)
        failure = self._eviction or (DEADLINE_EXCEEDED if left is not None and left <= 0 else None)
        if failure is not None and not terminal:
            await self._fail(attempts, *failure)
            terminal = True
            attempts = await self._attempts()
        elif left is not None and not terminal:
            due = min(due, left)
        if not terminal and sandbox_ok and not self._volumes_ready:
            try:
                await self.ctx.volumes.setup(self.pod)
                self._volumes_ready = True
            except VolumeError as e:
                self._event(None, False, WARNING, e.reason, e.message)
                due = min(due, VOLUME_RETRY_SECONDS)
        if not terminal and sandbox_ok and self._volumes_ready:
            self._feed_probes(attempts, ips)
            wait = await self._converge(attempts, ips)
            due = min(due, wait)
            attempts = await self._attempts()
        self._feed_probes(attempts, ips)
        await self._report(attempts, sandbox_ok, ips)
        return max(due, 0.05)

    async def _converge(self, attempts: dict[str, list[Attempt]], ips: list[str]) -> float:
        """Start what should run; returns the seconds until a back-off ends."""
        spec = self.pod.get("spec") or {}
        if not any(attempts.get(c["name"]) for c in spec.get("containers") or []):
            waiting = await self._converge_init(attempts, ips)
            if waiting is not None:
                return waiting
        policy = spec.get("restartPolicy") or "Always"
        due = RESYNC_SECONDS
        for container in spec.get("containers") or []:
            latest = _latest(attempts, container["name"])
            if latest is None:
                await self._start(container, 0, init=False, ips=ips)
            elif self._never_started(latest):
                await self._run_created(container, latest.id, init=False, ips=ips)
            elif latest.running:
                await self._check_liveness(container, latest)
            elif policy == "Always" or (
                policy == "OnFailure" and (latest.exit_code != 0 or latest.start_failed)
            ):
                due = min(due, await self._restart(container, latest, init=False, ips=ips))
        return due

    async def _converge_init(
        self, attempts: dict[str, list[Attempt]], ips: list[str]
    ) -> float | None:
        """Run the init containers one after the other; None once all completed, else the
        seconds until the next sync is due."""
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        for container in (self.pod.get("spec") or {}).get("initContainers") or []:
            latest = _latest(attempts, container["name"])
            if latest is None:
                await self._start(container, 0, init=True, ips=ips)
            elif self._never_started(latest):
                await self._run_created(container, latest.id, init=True, ips=ips)
            elif latest.running or (policy == "Never" and not completed(latest)):
                pass  # running, or failed for good (the phase says Failed)
            elif not completed(latest):
                return await self._restart(container, latest, init=True, ips=ips)
            else:
                continue
            return RESYNC_SECONDS
        return None

    def _never_started(self, attempt: Attempt) -> bool:
        """A container created but not started (the agent stopped in between): it is
        started now; one whose start failed is a failure (restartPolicy, back-off)."""
        return attempt.created and attempt.id not in self._start_errors

    async def _check_liveness(self, container: dict[str, Any], latest: Attempt) -> None:
        """Kill a running container whose liveness or startup probe failed (the
        restartPolicy then decides about the next attempt)."""
        message = self.probes.liveness_failed(container["name"])
        if message is None:
            return
        grace = self.probes.termination_grace(container["name"])
        self._event(container, False, NORMAL, "Killing", message)
        await self._stop(latest, self._grace() if grace is None else grace)

    async def _restart(
        self, container: dict[str, Any], latest: Attempt, *, init: bool, ips: list[str]
    ) -> float:
        """Start the next attempt of ``container`` unless it is in back-off (then it waits
        with CrashLoopBackOff); returns the seconds until the back-off ends."""
        key = (self.uid, container["name"])
        now = self.ctx.clock().timestamp()
        since = latest.finished_at.timestamp() if latest.finished_at else now
        left = self.ctx.backoff.remaining(key, since, now)
        if left > 0:
            delay = int(self.ctx.backoff.delay(key, now))
            meta = self.pod["metadata"]
            message = (
                f"back-off {_duration(delay)} restarting failed container={container['name']} "
                f"pod={meta['name']}_{meta['namespace']}({self.uid})"
            )
            self._waiting[container["name"]] = ("CrashLoopBackOff", message)
            self._event(
                container,
                init,
                WARNING,
                "BackOff",
                "Back-off restarting failed container "
                f"{container['name']} in pod {meta['name']}_{meta['namespace']}({self.uid})",
            )
            return left
        self.ctx.backoff.next(key, now)
        await self._start(container, latest.attempt + 1, init=init, ips=ips)
        return RESYNC_SECONDS

    def _event(
        self, container: Mapping[str, Any] | None, init: bool, kind: str, reason: str, message: str
    ) -> None:
        name = container["name"] if container else ""
        self.ctx.events.record(involved(self.pod, name, init), kind, reason, message)

    async def _image(self, container: dict[str, Any], init: bool) -> str:
        """The id of the container's image once it is there (pulled as its policy says),
        "" when not; repeated pull failures wait in ImagePullBackOff."""
        name, image = container["name"], container["image"]
        key = (self.uid, f"image:{name}")
        now = self.ctx.clock().timestamp()
        failed_at = self._pull_failed.get(name)
        if failed_at is not None and self.ctx.backoff.remaining(key, failed_at, now) > 0:
            message = f'Back-off pulling image "{image}"'
            self._waiting[name] = ("ImagePullBackOff", message)
            self._event(container, init, NORMAL, "BackOff", message)
            return ""

        def event(kind: str, reason: str, message: str) -> None:
            self._event(container, init, kind, reason, message)

        try:
            image_id = await self.ctx.puller.ensure(self.pod, container, event)
        except ImagePullError as e:
            self._waiting[name] = (e.reason, e.message)
            self._pull_failed[name] = now
            self.ctx.backoff.next(key, now)
            return ""
        self._pull_failed.pop(name, None)
        return image_id

    async def _start(
        self, container: dict[str, Any], attempt: int, *, init: bool, ips: list[str]
    ) -> None:
        """Create and start one attempt of ``container``; failures become the container's
        waiting reason and a Failed event."""
        name = container["name"]
        image_id = await self._image(container, init)
        if not image_id:
            return
        image = await self.ctx.podman.image_inspect(image_id)
        try:
            specs.check_non_root(
                self.pod, container, str((image.get("Config") or {}).get("User") or "")
            )
        except specs.SpecError as e:
            self._waiting[name] = ("CreateContainerConfigError", str(e))
            self._event(container, init, WARNING, "Failed", f"Error: {e}")
            return

        def warn(reason: str, message: str) -> None:
            self._event(container, init, WARNING, reason, message)

        message_file = self._message_file(name, attempt)
        try:
            env = dict(
                await container_env(
                    self.pod,
                    container,
                    objects=self.ctx.objects,
                    node_ips=self.ctx.node_ips,
                    pod_ips=ips,
                    allocatable=self.ctx.volumes.allocatable,
                    warn=warn,
                )
            )
            mounts = self.ctx.volumes.mounts(self.pod, container, env)
        except ContainerConfigError as e:
            self._waiting[name] = (e.reason, e.message)
            self._event(container, init, WARNING, "Failed", f"Error: {e.message}")
            return
        command = (
            [expand(a, env) for a in container["command"]] if container.get("command") else None
        )
        args = [expand(a, env) for a in container["args"]] if container.get("args") else None
        await asyncio.to_thread(_touch, message_file)
        path = container.get("terminationMessagePath") or specs.TERMINATION_MESSAGE_PATH
        mounts.append(Mount(path, str(message_file), read_only=False))
        if hosts.wants_hosts_file(self.pod, mounts, ips):
            mounts.append(await self._hosts_file(ips))
        body = specs.container_spec(
            self.pod,
            container,
            node=self.ctx.node,
            attempt=attempt,
            init=init,
            env=list(env.items()),
            mounts=mounts,
            command=command,
            args=args,
        )
        podman = self.ctx.podman
        try:
            cid = await podman.container_create(body)
        except PodmanError as e:
            if e.status != 409:  # 409: made by an earlier sync; start it below
                message = f"Error: {e.message}"
                self._waiting[name] = ("CreateContainerError", message)
                self._event(container, init, WARNING, "Failed", message)
                return
            cid = str((await podman.container_inspect(body["name"]))["Id"])
        self._event(container, init, NORMAL, "Created", f"Created container: {name}")
        await self._run_created(container, cid, init=init, ips=ips)

    async def _hosts_file(self, ips: list[str]) -> Mount:
        """Write the pod's managed ``/etc/hosts`` (:mod:`agent.pods.hosts`); its mount."""
        path = self.ctx.pods_dir / self.uid / "etc-hosts"
        dns = self.ctx.cluster_dns
        content = hosts.hosts_content(self.pod, ips, dns[1] if dns else hosts.CLUSTER_DOMAIN)
        await asyncio.to_thread(hosts.write_hosts, path, content)
        return Mount(hosts.HOSTS_PATH, str(path), read_only=False)

    async def _run_created(
        self, container: dict[str, Any], cid: str, *, init: bool, ips: list[str]
    ) -> None:
        """Start a created container, then run its postStart hook (a failed hook kills it)."""
        name = container["name"]
        try:
            await self.ctx.podman.container_start(cid)
        except PodmanError as e:
            self._start_errors[cid] = e.message
            self._event(container, init, WARNING, "Failed", f"Error: {e.message}")
            log.info("pod %s: container %s failed to start: %s", self.key, name, e.message)
            return
        self._event(container, init, NORMAL, "Started", f"Started container {name}")
        hook = (container.get("lifecycle") or {}).get("postStart")
        if hook:
            failure = await run_hook(
                hook,
                pod_ip=ips[0] if ips else "",
                container_id=cid,
                exec_fn=self.ctx.exec_fn,
                limit=0,
                container=container,
                pod=self.pod,
            )
            if failure is not None:  # the message stays out of the event, as upstream's
                log.info("pod %s: postStart of %s failed: %s", self.key, name, failure)
                self._event(container, init, WARNING, "FailedPostStartHook", "PostStartHook failed")
                started = attempt_of(await self.ctx.podman.container_inspect(cid))
                await self._stop(started, self._grace())

    # -- ending ---------------------------------------------------------------------------

    async def _stop(self, attempt: Attempt, grace: int, ips: list[str] | None = None) -> None:
        """Run the container's preStop hook within ``grace`` seconds, then SIGTERM it and
        SIGKILL it when the rest of the grace period is over."""
        container = self._container(attempt.name, attempt.init) or {"name": attempt.name}
        self._killed.add(attempt.id)
        began = asyncio.get_running_loop().time()
        hook = (container.get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            failure = await run_hook(
                hook,
                pod_ip=(ips or _ips(self.pod) or [""])[0],
                container_id=attempt.id,
                exec_fn=self.ctx.exec_fn,
                limit=grace,
                container=container,
                pod=self.pod,
            )
            if failure is not None:
                self._event(container, attempt.init, WARNING, "FailedPreStopHook", failure)
        left = grace - int(asyncio.get_running_loop().time() - began)
        try:
            if left <= 0:
                await self.ctx.podman.container_kill(attempt.id)
            else:
                await self.ctx.podman.container_stop(attempt.id, left)
        except PodmanError as e:
            if e.status not in (304, 404, 409):
                raise

    async def _stop_all(self, attempts: dict[str, list[Attempt]], grace: int) -> None:
        """Stop every running container (:meth:`_stop`) at the same time."""
        running = [a for tries in attempts.values() for a in tries if a.running]

        async def stop(attempt: Attempt) -> None:
            container = self._container(attempt.name, attempt.init)
            message = f"Stopping container {attempt.name}"
            self._event(container, attempt.init, NORMAL, "Killing", message)
            await self._stop(attempt, grace)

        await asyncio.gather(*(stop(a) for a in running))

    def _deadline_left(self, now: datetime) -> float | None:
        """Seconds left of ``activeDeadlineSeconds`` (None: the pod has none)."""
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is None or self._start_time is None:
            return None
        return self._start_time.timestamp() + int(deadline) - now.timestamp()

    async def evict(self, message: str) -> None:
        """Fail the pod as evicted by the node (:mod:`agent.eviction`): at the next sync
        its containers are killed with the hard eviction's grace period."""
        self._eviction = ("Evicted", message, EVICTION_GRACE_SECONDS)
        self.wake()

    async def _fail(
        self, attempts: dict[str, list[Attempt]], reason: str, message: str, grace: int | None
    ) -> None:
        """End the pod Failed with ``reason`` (an event too) and stop its containers within
        ``grace`` seconds (None: the pod's own grace period)."""
        self._forced = ("Failed", reason, message)
        self._event(None, False, WARNING, reason, message)
        await self._stop_all(attempts, self._grace() if grace is None else grace)

    def _grace(self) -> int:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE if grace is None else int(grace)

    async def _shut_down(self) -> None:
        """Stop the containers, report the final status, delete the pod object (grace 0,
        this uid only), remove the Podman pod and the pod's files; the worker ends."""
        self.probes.terminating()
        attempts = await self._attempts()
        await self._stop_all(attempts, self._grace())
        attempts = await self._attempts()
        await self.ctx.volumes.teardown(self.uid)
        if not self.gone:
            await self._report(attempts, False, [], terminal=True)
            api = self.ctx.api()
            if api is None:
                return
            meta = self.pod["metadata"]
            try:
                await delete_pod(api, meta["namespace"], meta["name"], self.uid)
            except ApiClientError as e:
                log.warning("pod %s: deleting: %s", self.key, e)
                return
        with contextlib.suppress(PodmanError):
            await self.ctx.podman.pod_remove(labels.sandbox_name(self.pod), force=True)
        for tries in attempts.values():
            for attempt in tries:
                with contextlib.suppress(PodmanError):
                    await self.ctx.podman.container_remove(attempt.id, force=True)
        await asyncio.to_thread(_remove_tree, self.ctx.pods_dir / self.uid)
        self.ctx.backoff.forget(self.uid)
        self.finished = True
        log.info("pod %s (%s) shut down", self.key, self.uid)

    # -- reporting ------------------------------------------------------------------------

    def _views(self, attempts: dict[str, list[Attempt]], init: bool) -> list[ContainerView]:
        spec = self.pod.get("spec") or {}
        views = []
        for container in spec.get("initContainers" if init else "containers") or []:
            name = container["name"]
            tries = attempts.get(name) or []
            latest = tries[-1] if tries else None
            previous = tries[-2] if len(tries) > 1 else None
            reason, message = self._waiting.get(name, ("", ""))
            running = latest is not None and latest.running and not reason
            views.append(
                ContainerView(
                    name=name,
                    image=container["image"],
                    latest=latest,
                    previous=previous,
                    waiting_reason=reason,
                    waiting_message=message,
                    ready=running and not init and self.probes.ready(name),
                    started=running and (init or self.probes.started(name)),
                )
            )
        return views

    async def _report(
        self,
        attempts: dict[str, list[Attempt]],
        sandbox_ok: bool,
        ips: list[str],
        *,
        terminal: bool = False,
    ) -> None:
        """Write the status when it differs from what was written last."""
        forced = self._forced or ("", "", "")
        status = pod_status(
            self.pod,
            init=self._views(attempts, True),
            containers=self._views(attempts, False),
            sandbox_ready=sandbox_ok,
            pod_ips=ips or _ips(self.pod),
            host_ips=self.ctx.node_ips,
            start_time=self._start_time,
            now=self.ctx.clock(),
            terminal=terminal,
            forced_phase=forced[0],
            reason=forced[1],
            message=forced[2],
        )
        if status == self._reported:
            return
        api = self.ctx.api()
        target = self.mirror_uid if self.static else self.uid
        if api is None or not target:
            return
        meta = self.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            written = await api.patch(
                path, {"metadata": {"uid": target}, "status": status}, patch_type="strategic"
            )
        except ApiClientError as e:
            if e.code == 404 and not self.static:
                self.gone = True
            log.debug("pod %s: status not written: %s", self.key, e)
            return
        self._reported = status
        if isinstance(written, dict) and written.get("metadata", {}).get("uid") == target:
            self.pod = {**self.pod, "status": written.get("status") or {}}


def _latest(attempts: Mapping[str, list[Attempt]], name: str) -> Attempt | None:
    tries = attempts.get(name)
    return tries[-1] if tries else None


def _ips(pod: Mapping[str, Any]) -> list[str]:
    return [i["ip"] for i in (pod.get("status") or {}).get("podIPs") or [] if i.get("ip")]


def _duration(seconds: int) -> str:
    """Go's time.Duration text for whole seconds (``10s``, ``5m0s``)."""
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _read_head(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        return f.read(limit)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.chmod(path, 0o666)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
