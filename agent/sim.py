"""``edgek sim``: many simulated nodes in one asyncio process, for tests and benchmarks.

Each sim node registers a Node (bootstrapped with a join token like a real agent, or with an
admin kubeconfig shared by all nodes), renews its Lease in ``kube-node-lease`` every quarter
of the lease duration, reports its status when something changes and every five minutes
(upstream ``nodeStatusReportFrequency``), and walks the pods bound to it: Running (IPs from
the node's podCIDR), Ready after ``pod_ready_seconds``, and for restartPolicy Never/OnFailure
Succeeded or Failed after ``pod_run_seconds`` (per-pod annotations override both run time and
exit code; OnFailure restarts a failing container). Deleted pods get their containers marked
terminated and are then deleted with grace period 0, the kubelet's final delete.

Nothing sleeps per pod: every pending step is a timer in the event loop's heap that queues
the pod's key, and a fixed number of workers run the queued keys (level-triggered: each run
looks at the pod's current state and writes what is due). A failed node
(:meth:`Simulator.fail_node`) stops all writes: no Lease renewals, no status, no pod work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent import bootstrap as agent_bootstrap
from agent.nodeapi import delete_pod, patch_node_status, register_node, renew_lease
from agent.nodestatus import STATUS_REPORT_SECONDS
from agent.simobjects import (
    MAX_NODES,
    SIM_LABEL,
    TERMINAL,
    NodeShape,
    PodIPAllocator,
    PodRun,
    Stage,
    node_ip,
    node_object,
    node_status,
    observe_conditions,
    pod_cidrs,
    pod_status,
    remember_conditions,
)
from edgek.apiclient import ApiClient, ApiClientError
from edgek.objects import meta
from edgek.tasks import run_until_signalled
from edgek.timefmt import format_time, parse_time
from edgek.workqueue import KeyQueue

log = logging.getLogger(__name__)

#: Retry back-off of a failed step (doubling per failure of the same key).
RETRY_BASE = 0.2
RETRY_MAX = 10.0
#: How often a pod is retried when its node's pod CIDR has no free address.
POOL_EXHAUSTED_RETRY = 5.0
REGISTER_ATTEMPTS = 5


def default_data_dir() -> Path:
    """Where token-mode sim nodes keep their keys and certificates."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "edgek" / "sim"


@dataclass
class SimConfig:
    """What ``edgek sim`` runs; exactly one of ``kubeconfig`` and ``token`` is set."""

    server: str
    nodes: int
    kubeconfig: Path | None = None
    token: str = ""
    name_prefix: str = "sim-"
    pod_ready_seconds: float = 1.0
    pod_run_seconds: float = 5.0
    lease_seconds: int = 40
    status_report_seconds: float = STATUS_REPORT_SECONDS
    fail_nodes: tuple[str, ...] = ()
    shape: NodeShape = field(default_factory=NodeShape)
    data_dir: Path = field(default_factory=default_data_dir)
    concurrency: int = 64
    bootstrap_concurrency: int = 16

    def check(self) -> None:
        """ValueError describing the first bad setting."""
        if (self.kubeconfig is None) == (not self.token):
            raise ValueError("give exactly one of --token and --kubeconfig")
        if not 1 <= self.nodes <= MAX_NODES:
            raise ValueError(f"--nodes must be between 1 and {MAX_NODES}")
        if self.lease_seconds < 1:
            raise ValueError("--lease-seconds must be at least 1")
        if self.pod_ready_seconds < 0 or self.pod_run_seconds < 0:
            raise ValueError("--pod-ready-seconds and --pod-run-seconds must not be negative")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        names = {f"{self.name_prefix}{i}" for i in range(self.nodes)}
        unknown = sorted(set(self.fail_nodes) - names)
        if unknown:
            raise ValueError(f"--fail-node names no sim node: {', '.join(unknown)}")


@dataclass
class SimNode:
    """One simulated node."""

    name: str
    index: int
    ip: str
    client: ApiClient
    since: datetime  # when the node's conditions last changed
    uid: str = ""
    failed: bool = False
    cidrs: list[str] = field(default_factory=list)
    allocators: list[PodIPAllocator] = field(default_factory=list)
    pods: set[str] = field(default_factory=set)


class _Queue(KeyQueue):
    """The sim's work queue: failed API calls are retried quietly."""

    def should_retry(self, key: str, error: Exception) -> bool:
        if isinstance(error, ApiClientError):
            log.debug("sim %s failed (%s); retrying", key, error)
            return True
        return super().should_retry(key, error)


#: One watched collection: (client, path, query, the node it is for or None for all nodes).
_Scope = tuple[ApiClient, str, dict[str, str], str | None]


def _pod_key(pod: dict[str, Any]) -> str:
    md = meta(pod)
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def _pod_path(run: PodRun, subresource: str = "") -> str:
    path = f"/api/v1/namespaces/{run.namespace}/pods/{run.name}"
    return f"{path}/{subresource}" if subresource else path


class Simulator:
    """Simulated nodes against one API server (see the module docstring)."""

    def __init__(
        self, config: SimConfig, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        config.check()
        self.config = config
        self.clock = clock
        self.boot_id = str(uuid.uuid4())
        self.nodes: dict[str, SimNode] = {}
        self.pods: dict[str, PodRun] = {}
        self._finished: set[str] = set()  # uids of pods the sim has ended
        self._clients: list[ApiClient] = []
        self._queue = _Queue(
            "sim",
            self._reconcile,
            workers=config.concurrency,
            base_delay=RETRY_BASE,
            max_delay=RETRY_MAX,
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def node_names(self) -> list[str]:
        return [f"{self.config.name_prefix}{i}" for i in range(self.config.nodes)]

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Join and register every node, create their Leases, list their pods and start
        the loops. Raises ApiClientError or BootstrapError when nodes cannot join."""
        clients = await self._clients_for_nodes()
        now = self.clock()
        for index, name in enumerate(self.node_names):
            self.nodes[name] = SimNode(name, index, node_ip(index), clients[name], now)
        limit = asyncio.Semaphore(self.config.concurrency)

        async def register(node: SimNode) -> None:
            async with limit:
                await self._register(node)
                try:
                    await self._renew_lease(node)
                except ApiClientError as e:
                    log.debug("creating the lease of %s: %s; retrying", node.name, e)
                    renewed.discard(node.name)

        renewed = set(self.nodes)
        await asyncio.gather(*(register(node) for node in self.nodes.values()))
        for name in self.config.fail_nodes:
            self.nodes[name].failed = True
        self._queue.start()
        for name in self.nodes:
            delay = self._lease_interval() if name in renewed else 0.0
            self._queue.enqueue_after(f"l/{name}", delay)
            self._queue.enqueue_after(f"n/{name}", self.config.status_report_seconds)
        await self._start_watches()

    async def stop(self) -> None:
        """Stop every loop and close the connections (nodes stay registered)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._queue.stop()
        for client in self._clients:
            await client.close()
        self._clients = []

    def fail_node(self, name: str) -> None:
        """Stop node ``name``: no more Lease renewals, status reports or pod work."""
        self.nodes[name].failed = True
        log.debug("sim node %s failed", name)

    def recover_node(self, name: str) -> None:
        """Resume node ``name``: renew its Lease, report Ready and catch up on its pods."""
        node = self.nodes[name]
        if not node.failed:
            return
        node.failed = False
        node.since = self.clock()
        log.debug("sim node %s recovered", name)
        self._queue.enqueue(f"l/{name}")
        self._queue.enqueue(f"n/{name}")
        for key in node.pods:
            self._queue.enqueue(f"p/{key}")

    # -- joining -------------------------------------------------------------------------

    async def _clients_for_nodes(self) -> dict[str, ApiClient]:
        cfg = self.config
        if cfg.kubeconfig is not None:
            shared = ApiClient.from_kubeconfig(cfg.kubeconfig, connection_limit=cfg.concurrency + 8)
            shared.server = cfg.server.rstrip("/") or shared.server
            shared.open()
            self._clients.append(shared)
            return dict.fromkeys(self.node_names, shared)
        limit = asyncio.Semaphore(cfg.bootstrap_concurrency)

        async def join(index: int, name: str) -> tuple[str, ApiClient]:
            async with limit:
                kubeconfig = await self._join(name, node_ip(index))
            client = ApiClient.from_kubeconfig(kubeconfig, connection_limit=4)
            client.open()
            self._clients.append(client)
            return name, client

        joined = await asyncio.gather(*(join(i, n) for i, n in enumerate(self.node_names)))
        return dict(joined)

    async def _join(self, name: str, ip: str) -> Path:
        """The node's kubeconfig: its stored credentials while they fit this cluster and are
        fresh, else a new bootstrap with the join token (reusing the node's keys)."""
        creds = await agent_bootstrap.join(
            self.config.server,
            self.config.token,
            name,
            self.config.data_dir / name,
            node_ips=[ip],
            now=self.clock(),
        )
        return creds.kubeconfig

    async def _register(self, node: SimNode) -> None:
        """Create the Node (or take over an existing one: labels and status are reconciled,
        as the kubelet does on restart); retried on transient errors."""
        for attempt in range(REGISTER_ATTEMPTS):
            try:
                await self._try_register(node)
                return
            except ApiClientError as e:
                if e.code in (400, 401, 403, 404, 422) or attempt == REGISTER_ATTEMPTS - 1:
                    raise ApiClientError(f"registering node {node.name}: {e}", e.code) from e
                log.debug("registering %s: %s; retrying", node.name, e)
                await asyncio.sleep(min(RETRY_BASE * 2**attempt, RETRY_MAX))

    async def _try_register(self, node: SimNode) -> None:
        body = node_object(node.name, node.ip, self.config.shape, self.clock(), self.boot_id)
        self._node_seen(node, await register_node(node.client, body))

    # -- watches -------------------------------------------------------------------------

    async def _start_watches(self) -> None:
        """List nodes and pods once (so start() returns with the current state), then
        watch them in background tasks."""
        if self.config.kubeconfig is not None:
            client = next(iter(self.nodes.values())).client
            scopes: list[_Scope] = [
                (client, "/api/v1/nodes", {"labelSelector": f"{SIM_LABEL}=true"}, None),
                (client, "/api/v1/pods", {"fieldSelector": "spec.nodeName!="}, None),
            ]
        else:
            scopes = []
            for node in self.nodes.values():
                name = node.name
                scopes.append(
                    (node.client, "/api/v1/nodes", {"fieldSelector": f"metadata.name={name}"}, name)
                )
                scopes.append(
                    (node.client, "/api/v1/pods", {"fieldSelector": f"spec.nodeName={name}"}, name)
                )
        limit = asyncio.Semaphore(self.config.concurrency)

        async def first_list(scope: _Scope) -> str:
            async with limit:
                return await self._list(*scope)

        versions = await asyncio.gather(*(first_list(scope) for scope in scopes))
        for scope, rv in zip(scopes, versions, strict=True):
            self._tasks.append(asyncio.create_task(self._watch(*scope, rv)))

    async def _list(
        self, client: ApiClient, path: str, params: dict[str, str], node: str | None
    ) -> str:
        """List ``path`` and apply it as the full state of its scope; the list's
        resourceVersion."""
        listed = await client.request("GET", path, params=params)
        items = listed.get("items") or []
        if path.endswith("/pods"):
            present = {_pod_key(pod) for pod in items}
            gone = [
                key
                for key, run in self.pods.items()
                if key not in present and (node is None or run.node == node)
            ]
            for key in gone:
                self._forget(key)
            for pod in items:
                self._pod_event("ADDED", pod)
        else:
            for obj in items:
                self._node_event(obj)
        return str(meta(listed).get("resourceVersion") or "")

    async def _watch(
        self, client: ApiClient, path: str, params: dict[str, str], node: str | None, rv: str
    ) -> None:
        """Apply watch events for ever; list again when the watch expires or fails."""
        while True:
            try:
                async for event in client.watch(path, rv, params=params):
                    if path.endswith("/pods"):
                        self._pod_event(event["type"], event["object"])
                    elif event["type"] != "DELETED":
                        self._node_event(event["object"])
            except ApiClientError as e:
                log.debug("watch %s %s: %s; listing again", path, params, e)
            while True:
                try:
                    rv = await self._list(client, path, params, node)
                    break
                except ApiClientError as e:
                    log.debug("list %s %s: %s; retrying", path, params, e)
                    await asyncio.sleep(1.0)

    def _node_event(self, obj: dict[str, Any]) -> None:
        node = self.nodes.get(meta(obj).get("name") or "")
        if node is None:
            return
        self._node_seen(node, obj)
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if not node.failed and (ready is None or ready.get("status") != "True"):
            # Someone else (node lifecycle) changed our Ready condition: report again.
            self._queue.enqueue(f"n/{node.name}")

    def _node_seen(self, node: SimNode, obj: dict[str, Any]) -> None:
        """Take the node's uid and pod CIDRs from a read or written Node."""
        node.uid = meta(obj).get("uid") or node.uid
        cidrs = pod_cidrs(obj)
        if cidrs and cidrs != node.cidrs:
            node.cidrs = cidrs
            node.allocators = [PodIPAllocator(cidr) for cidr in cidrs]
            for key in node.pods:
                run = self.pods[key]
                run.pod_ips = [ip for ip in run.pod_ips if self._reserve(node, ip)]
                self._queue.enqueue(f"p/{key}")

    @staticmethod
    def _reserve(node: SimNode, ip: str) -> bool:
        return any(allocator.reserve(ip) for allocator in node.allocators)

    # -- pod events ----------------------------------------------------------------------

    def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        key = _pod_key(pod)
        uid = meta(pod).get("uid") or ""
        if kind == "DELETED":
            self._finished.discard(uid)
            run = self.pods.get(key)
            if run is not None and run.uid == uid:
                self._forget(key)
            return
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        run = self.pods.get(key)
        if run is not None and run.uid != uid:
            self._forget(key)
            run = None
        if node is None or uid in self._finished:
            return
        status = pod.get("status") or {}
        if run is None:
            if status.get("phase") in ("Succeeded", "Failed"):
                return
            run = PodRun.from_pod(pod, self.config.pod_run_seconds)
            self._adopt(node, run, status)
            self.pods[key] = run
            node.pods.add(key)
        if meta(pod).get("deletionTimestamp") and not run.deleting:
            run.deleting = True
        elif _ready_overwritten(run, pod):
            # Someone else (node lifecycle marking pods of a silent node not ready) changed
            # the Ready condition after our last write: report our state again, as the
            # kubelet's status manager does.
            observe_conditions(run, status)
            run.reported = None
        self._queue.enqueue(f"p/{key}")

    def _adopt(self, node: SimNode, run: PodRun, status: dict[str, Any]) -> None:
        """Continue a pod an earlier sim run already started (its IPs, times, restarts)."""
        ips = [entry.get("ip", "") for entry in status.get("podIPs") or []]
        if status.get("phase") != "Running" or not ips or not status.get("startTime"):
            return
        running = [
            (c.get("state") or {}).get("running") for c in status.get("containerStatuses") or []
        ]
        if not running or not all(running):
            return
        run.pod_ips = [ip for ip in ips if not node.allocators or self._reserve(node, ip)]
        run.host_ip = node.ip
        run.start_time = parse_time(status["startTime"])
        run.started_at = min(parse_time(r["startedAt"]) for r in running if r)
        run.restart_count = max(
            int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []
        )
        ready = run.conditions.get("Ready", ("", ""))[0] == "True"
        run.reported = Stage.READY if ready else Stage.RUNNING

    def _forget(self, key: str) -> None:
        run = self.pods.pop(key, None)
        if run is None:
            return
        node = self.nodes[run.node]
        node.pods.discard(key)
        for ip in run.pod_ips:
            for allocator in node.allocators:
                allocator.release(ip)

    def _finish(self, run: PodRun) -> None:
        """The sim is done with ``run`` (terminal or deleted): remember its uid so late
        events do not start it again, and free its addresses."""
        self._finished.add(run.uid)
        self._forget(run.key)

    # -- reconcile -----------------------------------------------------------------------

    async def _reconcile(self, key: str) -> None:
        kind, _, name = key.partition("/")
        if kind == "p":
            await self._sync_pod(name)
            return
        node = self.nodes[name]
        if node.failed:
            return
        if kind == "l":
            await self._renew_lease(node)
            self._queue.enqueue_after(key, self._lease_interval())
        else:
            await self._report_status(node)
            self._queue.enqueue_after(key, self.config.status_report_seconds)

    def _lease_interval(self) -> float:
        """A quarter of the lease duration, less up to 4% jitter (as upstream)."""
        return self.config.lease_seconds / 4 * random.uniform(0.96, 1.0)

    async def _renew_lease(self, node: SimNode) -> None:
        await renew_lease(node.client, node.name, node.uid, self.config.lease_seconds, self.clock())
        log.debug("sim node %s renewed its lease", node.name)

    async def _report_status(self, node: SimNode) -> None:
        status = node_status(
            node.name, node.ip, self.config.shape, self.clock(), node.since, self.boot_id
        )
        self._node_seen(node, await patch_node_status(node.client, node.name, status))
        log.debug("sim node %s reported its status", node.name)

    async def _sync_pod(self, key: str) -> None:
        run = self.pods.get(key)
        if run is None:
            return
        node = self.nodes[run.node]
        if node.failed:
            return
        now = self.clock()
        if run.deleting:
            await self._finish_deleted(node, run, now)
            return
        if not run.pod_ips and not self._assign_ips(node, run):
            return
        if run.started_at is None:
            run.host_ip = node.ip
            run.start_time = run.started_at = now
        stage, wait = self._due(run, now)
        if stage is not run.reported:
            await self._write_status(node, run, stage, now)
        if stage in TERMINAL:
            self._finish(run)
        elif wait is not None:
            self._queue.enqueue_after(f"p/{key}", wait)

    def _assign_ips(self, node: SimNode, run: PodRun) -> bool:
        """Give ``run`` one address per pod CIDR; False while the node has no CIDR (the node
        watch queues the pod when it gets one) or no free address (retried later)."""
        if not node.allocators:
            return False
        ips = [allocator.allocate() for allocator in node.allocators]
        if None in ips:
            for ip in ips:
                if ip is not None:
                    self._release(node, ip)
            log.debug("sim node %s has no free pod address for %s", node.name, run.key)
            self._queue.enqueue_after(f"p/{run.key}", POOL_EXHAUSTED_RETRY)
            return False
        run.pod_ips = [ip for ip in ips if ip is not None]
        return True

    @staticmethod
    def _release(node: SimNode, ip: str) -> None:
        for allocator in node.allocators:
            allocator.release(ip)

    def _due(self, run: PodRun, now: datetime) -> tuple[Stage, float | None]:
        """The stage ``run`` is in at ``now`` and the seconds until its next step (None:
        no further step). Restarts an OnFailure pod whose container failed."""
        assert run.started_at is not None
        ready_after, run_for = self.config.pod_ready_seconds, run.run_seconds
        elapsed = (now - run.started_at).total_seconds()
        if run_for is not None and elapsed >= run_for:
            if run.exit_code == 0:
                run.finished_at = run.started_at + timedelta(seconds=run_for)
                return Stage.SUCCEEDED, None
            if run.restart_policy != "OnFailure":
                run.finished_at = run.started_at + timedelta(seconds=run_for)
                return Stage.FAILED, None
            run.last_exit = {
                "exitCode": run.exit_code,
                "reason": "Error",
                "startedAt": format_time(run.started_at),
                "finishedAt": format_time(run.started_at + timedelta(seconds=run_for)),
            }
            run.restart_count += 1
            run.started_at, elapsed = now, 0.0
            run.reported = None  # the restart itself must be reported
        steps = [s - elapsed for s in (ready_after, run_for) if s is not None and s > elapsed]
        stage = Stage.READY if elapsed >= ready_after else Stage.RUNNING
        return stage, (min(steps) if steps else None)

    async def _write_status(self, node: SimNode, run: PodRun, stage: Stage, now: datetime) -> None:
        status = pod_status(run, stage, now)
        body = {"metadata": {"uid": run.uid}, "status": status}
        try:
            written = await node.client.patch(
                _pod_path(run, "status"), body, patch_type="strategic"
            )
        except ApiClientError as e:
            if e.code != 404:
                raise
            self._finish(run)
            return
        run.reported = stage
        run.written_version = _version(written)
        remember_conditions(run, status)
        log.debug("sim pod %s on %s: %s", run.key, node.name, stage.value)

    async def _finish_deleted(self, node: SimNode, run: PodRun, now: datetime) -> None:
        """Stop the containers of a deleted pod (report them terminated), then delete it
        for good (grace period 0, only this incarnation of the pod)."""
        if run.started_at is not None and run.reported not in TERMINAL:
            run.finished_at = now
            await self._write_status(node, run, Stage.KILLED, now)
            if run.key not in self.pods:
                return
        await delete_pod(node.client, run.namespace, run.name, run.uid)
        self._finish(run)
        log.debug("sim pod %s on %s: deleted", run.key, node.name)

    def set_failed(self, names: set[str]) -> None:
        """Fail exactly the nodes in ``names`` (unknown names are ignored); recover the rest."""
        for name, node in self.nodes.items():
            if name in names and not node.failed:
                self.fail_node(name)
            elif name not in names and node.failed:
                self.recover_node(name)


def _version(obj: Any) -> int:
    """An object's resourceVersion as a number (edgek's are revision counters); 0 if none."""
    try:
        return int(meta(obj).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _ready_overwritten(run: PodRun, pod: dict[str, Any]) -> bool:
    """Whether ``pod`` (a watch event newer than our last status write) carries a Ready
    condition other than the one we wrote."""
    if run.reported is None or run.reported in TERMINAL or not run.written_version:
        return False
    if _version(pod) <= run.written_version:
        return False  # our own write, or an event from before it
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    wrote = run.conditions.get("Ready")
    return ready is not None and wrote is not None and ready.get("status") != wrote[0]


def _read_fail_file(path: Path) -> set[str]:
    try:
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    except OSError as e:
        log.warning("cannot read %s: %s", path, e)
        return set()


async def run_cli(config: SimConfig, fail_file: Path | None = None) -> None:
    """``edgek sim``: start the nodes, print one summary line, run until SIGTERM/SIGINT.
    SIGUSR1 re-reads ``fail_file``: its nodes (and ``config.fail_nodes``) fail, others
    recover."""
    sim = Simulator(config)
    if fail_file is not None:
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGUSR1,
            lambda: sim.set_failed(set(config.fail_nodes) | _read_fail_file(fail_file)),
        )

    def started() -> None:
        names = sim.node_names
        failed = f", failing {', '.join(config.fail_nodes)}" if config.fail_nodes else ""
        print(
            f"edgek sim: {len(names)} nodes registered ({names[0]}..{names[-1]}) "
            f"with {config.server}{failed}",
            flush=True,
        )

    await run_until_signalled(sim.start(), sim.stop, started)
