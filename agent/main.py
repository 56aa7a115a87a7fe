"""The ``edgek agent`` process around the node: join the cluster, register the Node, keep
its status current and its Lease renewed, and keep the node's certificates renewed.

:class:`Agent` is an object with :meth:`Agent.start` / :meth:`Agent.stop` so that
``edgek server`` can embed it for its own node; :func:`run_cli` is the thin process
wrapper. The agent starts its own Podman service (:mod:`agent.podman.service`; or uses
``--podman-socket``), imports the airgap images, makes the node's bridge network on its
podCIDR and runs the node's pods (:mod:`agent.pods.manager`).

State lives under ``<data-dir>/agent/``: the node identity from :mod:`agent.bootstrap`
(keys 0600), ``node-id`` for ``--with-node-id``, the Podman service's storage, and
``state/`` (the pods to run and the podCIDR of the cluster, so a restart while the server is unreachable
resumes the pods at once; the node registers in the background then).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import json
import logging
import platform
import random
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent import bootstrap, eviction, host
from agent.containergc import ContainerGC
from agent.dns.node import NodeDns
from agent.events import EventRecorder
from agent.imagegc import ImageGC
from agent.images import images_dir, import_directory
from agent.nodeapi import patch_node_status, register_node, renew_lease
from agent.nodestatus import (
    KUBELET_PORT,
    LEASE_SECONDS,
    MAX_PODS,
    STATUS_REPORT_SECONDS,
    HostSample,
    allocatable,
    capacity,
    machine_arch,
    node_addresses,
    node_conditions,
    node_info,
    pressure,
    standard_labels,
    status_differs,
    transition_times,
)
from agent.objectsource import ObjectSource
from agent.podconfig.volumes import VolumeManager
from agent.podman.client import PodmanClient, PodmanError
from agent.podman.service import PodmanService
from agent.pods.backoff import Backoff
from agent.pods.manager import PodManager
from agent.pods.network import ensure_network
from agent.pods.state import PodStore
from agent.pods.static import StaticPods, manifests_dir
from agent.pods.worker import WorkerContext
from agent.probes import exec_capture
from agent.pull import ImagePuller
from agent.registries import DEFAULT_PATH as REGISTRIES_PATH
from agent.registries import Registries
from agent.registries import load as load_registries
from agent.serviceproxy import ServiceProxy
from agent.streaming.server import StreamingServer, start_streaming
from edgek import KUBERNETES_VERSION, __version__
from edgek.apiclient import ApiClient, ApiClientError
from edgek.kubeconfig import atomic_write
from edgek.names import is_dns1123_subdomain
from edgek.tasks import cancel_and_wait, run_until_signalled
from netpolicy.controller import PolicyController
from netpolicy.podnet import PodNetwork
from netpolicy.proxy import NodeFacts

log = logging.getLogger(__name__)

INSTANCE_TYPE = "edgek"
#: The kubelet's version as nodes report it: the Kubernetes version, built by edgek.
KUBELET_VERSION = f"{KUBERNETES_VERSION}+edgek{__version__}"
#: Upstream nodeStatusUpdateFrequency: how often the status is computed and compared.
STATUS_UPDATE_SECONDS = 10.0
#: Back-off of failed Lease renewals and registrations (upstream: 200 ms doubling to 7 s).
RETRY_BASE = 0.2
RETRY_MAX = 7.0
CONTAINER_RUNTIMES = ("auto", "crun", "runc")
#: The kubelet's garbage collection periods: dead containers every minute, images every 5.
CONTAINER_GC_SECONDS = 60.0
IMAGE_GC_SECONDS = 300.0

#: The container runtime's version (``podman version``); raising means it is down.
RuntimeVersion = Callable[[], Awaitable[str]]


@dataclass
class AgentConfig:
    """What ``edgek agent`` runs with (flag names with ``_``)."""

    server: str
    token: str
    data_dir: Path = Path("/var/lib/edgek")
    node_name: str = ""
    node_ip: list[str] = field(default_factory=list)
    node_external_ip: list[str] = field(default_factory=list)
    node_labels: dict[str, str] = field(default_factory=dict)
    node_taints: list[dict[str, str]] = field(default_factory=list)
    with_node_id: bool = False
    podman_socket: str = ""
    container_runtime: str = "auto"
    #: k3s-format registries.yaml (mirrors, auth, insecure registries); absent: none.
    private_registry: Path = REGISTRIES_PATH
    #: The streaming endpoint's port, published as the Node's kubelet endpoint.
    kubelet_port: int = KUBELET_PORT
    lease_seconds: int = LEASE_SECONDS
    status_update_seconds: float = STATUS_UPDATE_SECONDS
    status_report_seconds: float = STATUS_REPORT_SECONDS
    #: The cluster DNS address pods resolve with, served by this node (agent/dns/).
    cluster_dns: str = "10.43.0.10"
    cluster_domain: str = "cluster.local"
    #: The resolv.conf whose nameservers are the DNS's upstreams (loopback ones skipped).
    resolv_conf: Path = Path("/etc/resolv.conf")
    #: Node components switched off (``--disable``): ``dns``, ``network-policy``.
    disable: list[str] = field(default_factory=list)
    #: Program the service proxy's iptables rules (when the iptables tools are installed);
    #: opt-in (``--service-proxy``) while agents of other tests run in the host's namespace.
    service_proxy: bool = False

    @property
    def agent_dir(self) -> Path:
        """Where the agent keeps its state."""
        return self.data_dir / "agent"

    def check(self) -> None:
        """ValueError describing the first bad setting."""
        if not self.server:
            raise ValueError("--server (or EDGEK_URL) is required")
        if not self.token:
            raise ValueError("--token, --token-file (or EDGEK_TOKEN) is required")
        if self.container_runtime not in CONTAINER_RUNTIMES:
            raise ValueError(f"--container-runtime must be one of {', '.join(CONTAINER_RUNTIMES)}")
        if self.node_name and (problems := is_dns1123_subdomain(self.node_name)):
            raise ValueError(f"invalid --node-name {self.node_name!r}: {'; '.join(problems)}")
        for flag, ips in (
            ("--node-ip", self.node_ip),
            ("--node-external-ip", self.node_external_ip),
        ):
            for ip in ips:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    raise ValueError(f"invalid {flag} {ip!r}: not an IP address") from None
        if self.lease_seconds < 1:
            raise ValueError("the lease duration must be at least 1 second")


def node_name(config: AgentConfig) -> str:
    """The node's name: ``--node-name`` or the lower-cased hostname, with ``-<node id>``
    appended under ``--with-node-id`` (the id is made once and kept in the agent dir)."""
    name = config.node_name or socket.gethostname().lower()
    if not config.with_node_id:
        return name
    id_file = config.agent_dir / "node-id"
    try:
        node_id = id_file.read_text().strip()
    except FileNotFoundError:
        node_id = ""
    if not node_id:
        node_id = secrets.token_hex(4)
        config.agent_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(id_file, f"{node_id}\n".encode(), mode=0o600)
    return f"{name}-{node_id}"


def _transient(error: ApiClientError) -> bool:
    return error.code == 0 or error.code == 429 or error.code >= 500


class Agent:
    """One node's agent against one API server (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        runtime_version: RuntimeVersion | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sampler: Callable[[Path], HostSample] = host.sample,
    ) -> None:
        config.check()
        self.config = config
        self.runtime_version = runtime_version or self._podman_version
        self.clock = clock
        self.sampler = sampler
        self.name = ""
        self.node_ips: list[str] = []
        self.node_uid = ""
        self.client: ApiClient | None = None
        self._kubeconfig = Path()
        self._kubeconfig_version = 0
        self._reported_at: datetime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.service: PodmanService | None = None
        self.podman: PodmanClient | None = None
        self.events: EventRecorder | None = None
        self.pods: PodManager | None = None
        self.streaming: StreamingServer | None = None
        self.dns: NodeDns | None = None
        self._cluster = ""
        self.registries = Registries()
        #: Images imported from the airgap directory: image GC never removes them.
        self.airgap_images: set[str] = set()

    @property
    def _node_file(self) -> Path:
        """The node's podCIDR as last read, and the cluster it belongs to."""
        return self.config.agent_dir / "state" / "node.json"

    async def start(self) -> None:
        """Start the runtime, join (or reuse the stored identity), register the Node,
        create its Lease, start the loops and the pods. BootstrapError or ApiClientError
        when the node cannot join. With a podCIDR recorded earlier the pods start at once
        and registration goes on in the background (the server may be unreachable)."""
        cfg = self.config
        self.name = node_name(cfg)
        self.node_ips = cfg.node_ip or [await asyncio.to_thread(host.node_address, cfg.server)]
        await self._start_runtime()
        creds = await bootstrap.join(
            cfg.server,
            cfg.token,
            self.name,
            cfg.agent_dir,
            node_ips=self.node_ips,
            now=self.clock(),
        )
        self._kubeconfig = creds.kubeconfig
        await self._load_client()
        self.events = EventRecorder(lambda: self.client, self.name, self.clock)
        self.events.start()
        self._tasks = [asyncio.create_task(bootstrap.keep_renewed(cfg.agent_dir, now=self.clock))]
        if cfg.service_proxy and ServiceProxy.available():
            connect = functools.partial(
                ApiClient.from_kubeconfig, creds.kubeconfig, connection_limit=1
            )
            proxy = ServiceProxy(connect, NodeFacts(self.name))
            self._tasks.append(asyncio.create_task(proxy.run(), name="service-proxy"))
        self._cluster = hashlib.sha256(cfg.server.encode() + creds.ca_pem).hexdigest()
        known = await asyncio.to_thread(_read_json, self._node_file)
        cidr = str(known.get("podCIDR") or "") if known.get("cluster") == self._cluster else ""
        if cidr:
            await self._start_pods(cidr)
            self._tasks.append(asyncio.create_task(self._come_online()))
        else:
            await self._come_online()

    async def _start_runtime(self) -> None:
        """Start (or connect to) Podman and import the airgap images."""
        cfg = self.config
        self.registries = await asyncio.to_thread(load_registries, cfg.private_registry)
        socket_path: Path | str = cfg.podman_socket
        if not socket_path:
            self.service = PodmanService(
                cfg.agent_dir, cfg.container_runtime, registries=self.registries
            )
            await self.service.start()
            socket_path = self.service.socket
        self.podman = PodmanClient(socket_path)
        for result in await import_directory(self.podman, images_dir(cfg.agent_dir)):
            if result.error:
                log.error("agent: importing %s: %s", result.path, result.error)
            self.airgap_images.update(result.names)

    async def _podman_version(self) -> str:
        """The Podman service's version (raises when it does not answer)."""
        if self.podman is None:
            raise RuntimeError("podman is not started")
        return str((await self.podman.version())["Version"])

    async def _come_online(self) -> None:
        """Register the Node and its Lease, start the node loops, then (once the node has a
        podCIDR) the pods."""
        await self._retry("registering the node", self._register)
        await self._retry("creating the node lease", self._renew_lease)
        self._tasks += [
            asyncio.create_task(self._lease_loop()),
            asyncio.create_task(self._status_loop()),
        ]
        log.info("agent: node %s registered with %s", self.name, self.config.server)
        self._tasks.append(asyncio.create_task(self._serve_streaming()))
        if self.pods is None:
            self._tasks.append(asyncio.create_task(self._start_pods_when_cidr()))

    async def _serve_streaming(self) -> None:
        """Serve logs, exec, attach and port-forward on the kubelet port (the client CA
        comes from the server; retried while it cannot be had or the port is taken)."""
        delay = RETRY_BASE
        while True:
            try:
                assert self.client is not None and self.podman is not None
                self.streaming = await start_streaming(
                    self.client, self.config.agent_dir, self.config.kubelet_port, self.podman
                )
                return
            except (ApiClientError, OSError) as e:
                log.warning("agent: streaming on port %d: %s", self.config.kubelet_port, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX * 4)

    async def _start_pods_when_cidr(self) -> None:
        """Wait for the node's podCIDR (the server's node IPAM gives it), then run pods."""
        delay = RETRY_BASE
        while True:
            try:
                assert self.client is not None
                node = await self.client.request("GET", f"/api/v1/nodes/{self.name}")
                cidr = str((node.get("spec") or {}).get("podCIDR") or "")
            except ApiClientError as e:
                log.info("agent: reading node %s: %s", self.name, e)
                cidr = ""
            if cidr:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
        record = json.dumps({"cluster": self._cluster, "podCIDR": cidr}).encode()
        await asyncio.to_thread(atomic_write, self._node_file, record, mode=0o600)
        delay = RETRY_BASE
        while True:
            try:
                await self._start_pods(cidr)
                return
            except PodmanError as e:
                log.error("agent: cannot make the pod network on %s: %s", cidr, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _start_pods(self, cidr: str) -> None:
        assert self.podman is not None and self.events is not None
        network = await ensure_network(self.podman, self.name, self.config.agent_dir, cidr)
        self._tasks.append(
            asyncio.create_task(PodNetwork(self.name, self._list_nodes, self._annotate).run())
        )
        cfg = self.config
        objects = ObjectSource(lambda: self.client, cfg.agent_dir / "state")
        dns = None if "dns" in cfg.disable else (cfg.cluster_dns, cfg.cluster_domain)
        if dns is not None:
            state = cfg.agent_dir / "state" / "dns.json"
            self.dns = NodeDns(lambda: self.client, *dns, cidr, cfg.resolv_conf, state)
            await self.dns.start()
        sample = await asyncio.to_thread(self.sampler, cfg.agent_dir)
        volumes = VolumeManager(
            cfg.agent_dir / "pods", objects, self.name, allocatable=allocatable(sample, MAX_PODS)
        )
        ctx = WorkerContext(
            podman=self.podman,
            api=lambda: self.client,
            events=self.events,
            node=self.name,
            node_ips=self.node_ips,
            network=network,
            pods_dir=cfg.agent_dir / "pods",
            objects=objects,
            volumes=volumes,
            puller=ImagePuller(self.podman, self.registries, objects),
            exec_fn=functools.partial(exec_capture, self.podman),
            cluster_dns=dns,
            backoff=await asyncio.to_thread(Backoff.load, cfg.agent_dir / "state" / "backoff.json"),
            clock=self.clock,
        )
        pods = self.pods = PodManager(ctx, PodStore(self.config.agent_dir))
        await pods.start()
        storage = Path((await self.podman.info())["store"]["graphRoot"])
        containers = ContainerGC(self.podman, self.name, lambda: set(pods.workers))
        images = ImageGC(self.podman, storage, pinned=lambda: set(self.airgap_images))
        evictions = eviction.EvictionManager(
            functools.partial(self.sampler, cfg.agent_dir),
            lambda: list(pods.workers.values()),
            functools.partial(eviction.podman_usage, self.podman, self.name, ctx.pods_dir),
        )
        static = StaticPods(
            manifests_dir(self.config.agent_dir), pods, lambda: self.client, lambda: self.node_uid
        )
        self._tasks += [
            asyncio.create_task(objects.run(), name="objects"),
            asyncio.create_task(static.run(), name="static-pods"),
            asyncio.create_task(_every(CONTAINER_GC_SECONDS, "container GC", containers.collect)),
            asyncio.create_task(_every(IMAGE_GC_SECONDS, "image GC", images.collect)),
            asyncio.create_task(_every(eviction.INTERVAL_SECONDS, "eviction", evictions.check)),
        ]
        if "network-policy" not in self.config.disable:
            connect = functools.partial(
                ApiClient.from_kubeconfig, self._kubeconfig, connection_limit=1
            )
            policies = PolicyController(connect, self.name)
            self._tasks.append(asyncio.create_task(policies.run(), name="network-policy"))
        log.info("agent: node %s runs pods on %s", self.name, cidr)

    async def stop(self) -> None:
        """Cancel the loops, stop following pods and close the connections (the Node stays
        registered; the containers keep running, the next start adopts them)."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        if self.streaming is not None:
            await self.streaming.stop()
            self.streaming = None
        if self.pods is not None:
            await self.pods.stop()
            self.pods = None
        if self.dns is not None:
            await self.dns.stop()
            self.dns = None
        if self.events is not None:
            await self.events.stop()
            self.events = None
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.podman is not None:
            await self.podman.close()
            self.podman = None
        if self.service is not None:
            await self.service.stop()
            self.service = None

    async def _list_nodes(self) -> list[dict[str, Any]]:
        """Every Node (for the routes between the nodes' pod networks)."""
        if self.client is None:
            raise ApiClientError("not connected")
        return list((await self.client.request("GET", "/api/v1/nodes"))["items"])

    async def _annotate(self, annotations: dict[str, str]) -> None:
        """Merge ``annotations`` into the Node."""
        if self.client is None:
            raise ApiClientError("not connected")
        await self.client.patch(
            f"/api/v1/nodes/{self.name}", {"metadata": {"annotations": annotations}}
        )

    async def _load_client(self) -> None:
        """(Re)open the API client from the node's kubeconfig when it is new or was
        rewritten by a certificate renewal since it was loaded."""
        version = self._kubeconfig.stat().st_mtime_ns
        if self.client is not None and version == self._kubeconfig_version:
            return
        client = ApiClient.from_kubeconfig(self._kubeconfig, connection_limit=4)
        client.open()
        previous, self.client, self._kubeconfig_version = self.client, client, version
        if previous is not None:
            await previous.close()
            log.info("agent: node %s uses its renewed certificate", self.name)

    async def _retry(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` until it succeeds, retrying transient API errors with back-off."""
        delay = RETRY_BASE
        while True:
            try:
                await step()
                return
            except ApiClientError as e:
                if not _transient(e):
                    raise ApiClientError(f"{what}: {e}", e.code) from e
                log.warning("agent: %s failed (%s); retrying in %.1fs", what, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    # -- the Node ------------------------------------------------------------------------

    async def status(self, current: dict[str, Any]) -> dict[str, Any]:
        """The node status to report now, given the Node's ``current`` status (condition
        transition times are kept where a condition did not change)."""
        cfg, now = self.config, self.clock()
        sample = self.sampler(cfg.agent_dir)
        states = pressure(sample)
        messages = {}
        try:
            runtime = await self.runtime_version()
        except Exception as e:  # any failure of the runtime means the node is not ready
            runtime = "unknown"
            states["Ready"] = False
            messages["Ready"] = f"container runtime is down: {e}"
        since = transition_times(current.get("conditions") or [], states, now)
        arch = machine_arch()
        return {
            "capacity": capacity(sample, MAX_PODS),
            "allocatable": allocatable(sample, MAX_PODS),
            "conditions": node_conditions(states, now, since, messages),
            "addresses": node_addresses(self.name, self.node_ips, cfg.node_external_ip),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
            "nodeInfo": node_info(
                machine_id=host.machine_id(),
                system_uuid=host.system_uuid(),
                boot_id=host.boot_id(),
                kernel=platform.release(),
                os_image=host.os_image(),
                runtime=f"podman://{runtime}",
                kubelet=KUBELET_VERSION,
                arch=arch,
            ),
        }

    async def _register(self) -> None:
        assert self.client is not None
        labels = {
            **self.config.node_labels,
            **standard_labels(self.name, machine_arch(), INSTANCE_TYPE),
        }
        spec: dict[str, Any] = {}
        if self.config.node_taints:
            spec["taints"] = self.config.node_taints
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": spec,
            "status": await self.status({}),
        }
        written = await register_node(self.client, body)
        self.node_uid = str((written.get("metadata") or {}).get("uid") or "")
        self._reported_at = self.clock()

    async def _update_status(self) -> None:
        """Compare the status to report with the Node's; write it when it differs or the
        last report is :attr:`AgentConfig.status_report_seconds` old. A Node deleted
        meanwhile is registered again."""
        assert self.client is not None
        try:
            node = await self.client.request("GET", f"/api/v1/nodes/{self.name}")
        except ApiClientError as e:
            if e.code != 404:
                raise
            log.warning("agent: node %s is gone; registering it again", self.name)
            await self._register()
            return
        current = node.get("status") or {}
        wanted = await self.status(current)
        now = self.clock()
        due = (
            self._reported_at is None
            or (now - self._reported_at).total_seconds() >= self.config.status_report_seconds
        )
        if due or status_differs(current, wanted):
            await patch_node_status(self.client, self.name, wanted)
            self._reported_at = now
            log.debug("agent: node %s reported its status", self.name)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_update_seconds)
            try:
                await self._load_client()
                await self._update_status()
            except (ApiClientError, OSError, ValueError) as e:
                log.warning("agent: updating the status of node %s: %s", self.name, e)

    # -- the Lease -----------------------------------------------------------------------

    async def _renew_lease(self) -> None:
        assert self.client is not None
        await renew_lease(
            self.client, self.name, self.node_uid, self.config.lease_seconds, self.clock()
        )

    async def _lease_loop(self) -> None:
        """Renew every quarter of the lease duration (less up to 4% jitter, as upstream);
        a failed renewal is retried sooner, with back-off."""
        retry = 0.0
        while True:
            interval = self.config.lease_seconds / 4 * random.uniform(0.96, 1.0)
            await asyncio.sleep(min(retry, interval) if retry else interval)
            try:
                await self._renew_lease()
                retry = 0.0
            except ApiClientError as e:
                retry = min(retry * 2 or RETRY_BASE, RETRY_MAX)
                log.warning("agent: renewing the lease of node %s: %s", self.name, e)


async def _every(period: float, what: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step`` every ``period`` seconds (the first time after one period)."""
    while True:
        await asyncio.sleep(period)
        try:
            await step()
        except (PodmanError, OSError) as e:
            log.warning("agent: %s: %s", what, e)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


async def run_cli(config: AgentConfig, started: Callable[[], None] = lambda: None) -> None:
    """``edgek agent``: start, print one line and call ``started``, run until SIGTERM/SIGINT,
    then stop."""
    agent = Agent(config)

    def up() -> None:
        print(f"edgek agent: node {agent.name} joined {config.server}", flush=True)
        started()

    await run_until_signalled(agent.start(), agent.stop, up)
