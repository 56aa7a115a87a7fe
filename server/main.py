"""``edgek server``: start the datastore, PKI, API server and built-in loops in one process."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

import datastore
from datastore import snapshot
from edgek.kinds import Registry
from edgek.kubeconfig import admin_kubeconfig, data_dir_kubeconfig, write_kubeconfig
from server.apiserver.app import ApiServerState, make_app
from server.apiserver.nodeproxy import NodeProxy
from server.apiserver.transport import listen
from server.auth.satoken import ServiceAccountKey
from server.cache import builtin_kind
from server.config import ServerConfig
from server.controllers import builtin
from server.pki import PKI, ensure_pki, split_sans
from server.storage.objectstore import ObjectStore, WriteOptions, key_prefix
from server.storage.reencrypt import SecretsEncryptionAdmin
from server.storage.snapshots import SnapshotSchedule
from server.wiring import ControlPlane, Credentials, assemble

log = logging.getLogger("edgek.server")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Server:
    """One running control plane; ``start`` then ``stop``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: datastore.Datastore | None = None
        self.plane: ControlPlane | None = None
        self.runner: web.AppRunner | None = None
        self.listener: asyncio.Server | None = None
        self.snapshots: SnapshotSchedule | None = None
        self._db_lock: int | None = None

    async def start(self) -> None:
        """Check the settings and credentials, open the datastore, build the control plane
        and seed it, start identity and the loops, then serve HTTPS and write the admin
        kubeconfig."""
        cfg = self.config
        started = time.monotonic()
        builtin.check_disable(cfg.disable)
        pki, credentials = _credentials(cfg)
        if cfg.sqlite_path is not None:
            # one server per database; ``edgek datastore restore`` refuses a held one
            self._db_lock = snapshot.lock_database(cfg.sqlite_path)
            if cfg.datastore_snapshot_schedule_cron:
                self.snapshots = SnapshotSchedule(
                    cfg.sqlite_path,
                    cfg.datastore_snapshot_schedule_cron,
                    cfg.datastore_snapshot_retention,
                )
        self.store = await _open_datastore(cfg)
        if self.snapshots is not None:
            self.snapshots.start()
        self.plane = plane = await assemble(self.store, cfg, credentials=credentials)
        await _seed(plane, cfg)
        await _start_loops(plane)
        state = await self._serve(plane, pki)
        kubeconfig = _admin_kubeconfig(cfg, pki)
        write_kubeconfig(cfg.write_kubeconfig, kubeconfig, mode=cfg.write_kubeconfig_mode)
        write_kubeconfig(data_dir_kubeconfig(cfg.data_dir), kubeconfig, mode=0o600)
        state.ready = True
        release_free_memory()
        log.info(
            "edgek server ready: url=%s kubeconfig=%s datastore=%s startup=%.3fs",
            cfg.local_url,
            cfg.write_kubeconfig,
            cfg.datastore_url.split("?", 1)[0],
            time.monotonic() - started,
        )

    async def _serve(self, plane: ControlPlane, pki: PKI) -> ApiServerState:
        """Listen for HTTPS; the state answers /readyz with failure until marked ready."""
        cfg = self.config
        assert plane.identity is not None
        address = cfg.advertise_address or "127.0.0.1"
        url = f"https://{address}:{cfg.https_listen_port}"
        state = ApiServerState(
            plane.api,
            plane.openapi,
            server_address=f"{address}:{cfg.https_listen_port}",
            ca_bundle=pki.ca_bundle_pem(),
            authn=plane.identity.authn,
            authz=plane.identity.authz,
            oidc=(
                plane.identity.service_account_key.openid_configuration(url),
                plane.identity.service_account_key.jwks,
            ),
            encryption=SecretsEncryptionAdmin(
                plane.store, plane.encryption, key_prefix(plane.ctx.kind("", "secrets"))
            ),
            node_proxy=NodeProxy(
                plane.objects,
                plane.ctx.kind("", "pods"),
                plane.ctx.kind("", "nodes"),
                pki.agent_client_ssl_context(),
            ),
            client_ca=pki.client_ca_cert.read_bytes(),
        )
        self.runner = web.AppRunner(make_app(state), handle_signals=False, shutdown_timeout=2)
        await self.runner.setup()
        self.listener = await listen(
            self.runner, cfg.bind_address, cfg.https_listen_port, pki.server_ssl_context()
        )
        return state

    async def stop(self) -> None:
        """Stop the loops, event recorder, clock and identity, the listener, the datastore
        and its snapshot schedule."""
        if self.snapshots is not None:
            await self.snapshots.stop()
        plane = self.plane
        if plane is not None:
            for manager in plane.managers:
                await manager.stop()
            await plane.events.stop()
            if plane.skewed_clock is not None:
                await plane.skewed_clock.stop()
            if plane.identity is not None:
                await plane.identity.stop()
        if self.listener is not None:
            self.listener.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()
        if self._db_lock is not None:
            os.close(self._db_lock)
            self._db_lock = None


def _credentials(cfg: ServerConfig) -> tuple[PKI, Credentials]:
    """The certificates and the service-account key, created or checked."""
    dns, ips = split_sans(([cfg.advertise_address] if cfg.advertise_address else []) + cfg.tls_san)
    # In this thread, not a worker: nothing else runs yet, and cryptography (imported when
    # certificates must be created or checked) would otherwise fill a second malloc arena.
    pki = ensure_pki(cfg.tls_dir, dns_names=dns, ip_addresses=ips)
    # Before the datastore starts its threads: a key to create or check is handled in a
    # forked child (as the certificates are), and a fork is safest with one thread.
    service_account_key = ServiceAccountKey(cfg.tls_dir / "service.key")
    service_account_key.check()
    return pki, Credentials(pki.ca_bundle_pem(), service_account_key)


async def _open_datastore(cfg: ServerConfig) -> datastore.Datastore:
    """The datastore, with its compaction and TTL tasks running."""
    store = await datastore.Datastore.open(cfg.datastore_url)
    store.start_background(
        compact_interval=cfg.datastore_compact_interval,
        keep_revisions=cfg.datastore_compact_retain,
    )
    return store


async def _seed(plane: ControlPlane, cfg: ServerConfig) -> None:
    """The objects every cluster has: system namespaces, ``default/kubernetes``."""
    await _ensure_namespaces(plane.objects, plane.registry)
    await _ensure_kubernetes_service(
        plane.objects, plane.registry, plane.allocator.kubernetes_ip, cfg
    )
    await _publish_apiserver_endpoints(plane.objects, plane.registry, cfg)


async def _start_loops(plane: ControlPlane) -> None:
    """Start the debug clock, identity and every loop group (each fills its caches first)."""
    if plane.skewed_clock is not None:
        plane.skewed_clock.start()
    if plane.identity is not None:
        await plane.identity.start()
    for manager in plane.managers:
        await manager.start()
        if plane.skewed_clock is not None:
            plane.skewed_clock.on_jump(manager.clock_changed)


def _admin_kubeconfig(cfg: ServerConfig, pki: PKI) -> dict[str, Any]:
    return admin_kubeconfig(
        cfg.local_url,
        pki.server_ca_cert.read_bytes(),
        pki.admin_cert.read_bytes(),
        pki.admin_key.read_bytes(),
    )


async def _ensure_namespaces(objs: ObjectStore, registry: Registry) -> None:
    ns_kind = builtin_kind(registry, "", "namespaces")
    for name in SYSTEM_NAMESPACES:
        if await objs.try_get(ns_kind, "", name) is None:
            await objs.create(
                ns_kind,
                "",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                WriteOptions(),
            )


async def _ensure_kubernetes_service(
    objs: ObjectStore, registry: Registry, cluster_ip: str, cfg: ServerConfig
) -> None:
    """``default/kubernetes``: the first service IP, port 443 to the API server."""
    services = builtin_kind(registry, "", "services")
    if await objs.try_get(services, "default", "kubernetes") is not None:
        return
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "ports": [
                {
                    "name": "https",
                    "port": 443,
                    "protocol": "TCP",
                    "targetPort": cfg.https_listen_port,
                }
            ],
        },
    }
    await objs.create(services, "default", svc, WriteOptions())


def _apiserver_ip(cfg: ServerConfig) -> str:
    """The address clients inside the cluster reach the API server at: the advertised
    address, else the host's primary address (a UDP "connect" sends nothing)."""
    if cfg.advertise_address:
        return cfg.advertise_address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


async def _publish_apiserver_endpoints(
    objs: ObjectStore, registry: Registry, cfg: ServerConfig
) -> None:
    """``default/kubernetes`` Endpoints and EndpointSlice: this server's address and port
    (the API server maintains them itself, as upstream's endpoint reconciler does)."""
    ip = _apiserver_ip(cfg)
    port = {"name": "https", "port": cfg.https_listen_port, "protocol": "TCP"}
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{"addresses": [{"ip": ip}], "ports": [port]}],
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv6" if ":" in ip else "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [port],
    }
    for (group, resource), body in (
        (("", "endpoints"), endpoints),
        (("discovery.k8s.io", "endpointslices"), slice_),
    ):
        kind = builtin_kind(registry, group, resource)

        async def publish(
            current: dict[str, Any] | None, body: dict[str, Any] = body
        ) -> dict[str, Any] | None:
            # an update that changes nothing is not written
            fields = {k: v for k, v in body.items() if k != "metadata"}
            return body if current is None else {**current, **fields}

        await objs.modify(kind, "default", "kubernetes", publish, WriteOptions())


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``; a no-op
    elsewhere). Start-up decodes every stored object once and leaves the freed memory
    scattered over the heap, where it would count as resident for the process's life."""
    libc = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    if trim is not None:
        trim(0)


#: Started once the server is up (the command line's embedded agent); returns what stops it,
#: or None when it did not start.
Companion = Callable[[], Coroutine[Any, Any, Callable[[], Awaitable[None]] | None]]


async def serve_forever(config: ServerConfig, companion: Companion | None = None) -> None:
    """Run the server until SIGTERM/SIGINT, with ``companion`` started beside it once it is
    up and stopped before it."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    beside: asyncio.Task[Callable[[], Awaitable[None]] | None] | None = None
    try:
        await server.start()
        if companion is not None:
            beside = asyncio.create_task(companion(), name="companion")
        await stop.wait()
    finally:
        log.info("edgek server stopping")
        if beside is not None:
            if beside.done() and beside.exception() is None and (halt := beside.result()):
                await halt()
            else:
                beside.cancel()
                await asyncio.gather(beside, return_exceptions=True)
        await server.stop()
