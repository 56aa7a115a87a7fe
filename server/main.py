"""``edgek server``: start the datastore, PKI, API server and built-in loops in one process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

import datastore
from edgek import objects
from edgek.kinds import Kind, Registry
from edgek.kubeconfig import admin_kubeconfig, write_kubeconfig
from edgek.timefmt import format_time
from server.apiserver.app import ApiServerState, make_app
from server.apiserver.openapi import OpenAPI
from server.apiserver.resources import ResourceAPI
from server.auth.identity import Identity
from server.auth.satoken import ServiceAccountKey
from server.config import ServerConfig
from server.controllers import builtin
from server.controllers.clock import SkewedClock
from server.controllers.events import EventRecorder
from server.controllers.runtime import ControllerContext, ControllerManager, Informers
from server.pki import ensure_pki, split_sans
from server.registry.allocators import ServiceAllocator
from server.registry.crd import CRD_GROUP, CustomResources, crd_status
from server.registry.encryption import SecretsEncryption
from server.registry.reencrypt import SecretsEncryptionAdmin
from server.registry.store import (
    DeleteOptions,
    ListOptions,
    ObjectStore,
    WriteOptions,
    key_prefix,
)

log = logging.getLogger("edgek.server")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Server:
    """One running control plane; ``start`` then ``stop``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: datastore.Store | None = None
        self.runner: web.AppRunner | None = None
        self.identity: Identity | None = None
        self.events: EventRecorder | None = None
        self.loops: list[ControllerManager] = []
        self.clock: SkewedClock | None = None

    async def start(self) -> None:
        cfg = self.config
        started = time.monotonic()
        known = {loop.name for loop in builtin.controller_loops() + builtin.scheduler_loops()}
        unknown = sorted(set(cfg.disable) - known)
        if unknown:
            raise ValueError(
                f"unknown --disable value(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        dns, ips = split_sans(
            ([cfg.advertise_address] if cfg.advertise_address else []) + cfg.tls_san
        )
        # In this thread, not a worker: nothing else runs yet, and cryptography (imported when
        # certificates must be created or checked) would otherwise fill a second malloc arena.
        pki = ensure_pki(cfg.tls_dir, dns_names=dns, ip_addresses=ips)
        # Before the datastore starts its threads: a key to create or check is handled in a
        # forked child (as the certificates are), and a fork is safest with one thread.
        service_account_key = ServiceAccountKey(cfg.tls_dir / "service.key")
        service_account_key.check()
        self.store = store = await datastore.Store.open(cfg.datastore_url)
        store.start_background(
            compact_interval=cfg.datastore_compact_interval,
            keep_revisions=cfg.datastore_compact_retain,
        )
        registry = Registry()
        openapi = OpenAPI(registry)
        crds = CustomResources(registry, openapi)
        encryption = SecretsEncryption.load_or_create(
            cfg.server_dir / "cred", enabled=cfg.secrets_encryption
        )
        objs = ObjectStore(store, custom_schema=crds.schema, cipher=encryption)
        allocator = ServiceAllocator(cfg.service_cidr)
        services = registry.by_resource("", "v1", "services")
        assert services is not None
        allocator.load((await objs.list(services, "", ListOptions())).items)
        objs.admission.append(allocator.admit)
        objs.after_write.append(allocator.written)
        objs.after_write.append(_crd_hook(objs, crds))
        crd_kind = registry.by_resource(CRD_GROUP, "v1", "customresourcedefinitions")
        assert crd_kind is not None
        for crd in (await objs.list(crd_kind, "", ListOptions())).items:
            crds.sync(crd)
        await _ensure_namespaces(objs, registry)
        await _ensure_kubernetes_service(objs, services, allocator.kubernetes_ip, cfg)
        await _publish_apiserver_endpoints(objs, registry, cfg)
        informers = Informers(objs, registry)
        events_kind = registry.by_resource("", "v1", "events")
        assert events_kind is not None
        clock: Callable[[], datetime] = objects.now
        if cfg.debug_clock_file is not None:
            self.clock = SkewedClock(cfg.debug_clock_file)
            self.clock.start()
            clock = self.clock
        self.events = EventRecorder(objs, events_kind, clock=clock, host=socket.gethostname())
        ctx = ControllerContext(objs, registry, informers, self.events, cfg, clock)
        self.identity = identity = Identity(
            objs,
            registry,
            informers,
            server_dir=cfg.server_dir,
            ca_pem=pki.ca_bundle_pem(),
            service_account_key=service_account_key,
            configured_secret=cfg.join_secret(),
        )
        objs.admission.extend(builtin.admission(ctx))
        await identity.start()
        self.loops = [
            ControllerManager(ctx, builtin.controller_loops(), group="kube-controller-manager"),
            ControllerManager(ctx, builtin.scheduler_loops(), group="kube-scheduler"),
        ]
        for manager in self.loops:
            await manager.start()
            if self.clock is not None:
                self.clock.on_jump(manager.clock_changed)
        address = cfg.advertise_address or "127.0.0.1"
        api = ResourceAPI(
            objs, crds, bookmark_interval=cfg.watch_bookmark_interval, tokens=identity
        )
        api.actions.update(builtin.actions(ctx))
        state = ApiServerState(
            api,
            openapi,
            server_address=f"{address}:{cfg.https_listen_port}",
            ca_bundle=pki.ca_bundle_pem(),
            authn=identity.authn,
            authz=identity.authz,
            oidc=(
                identity.service_account_key.openid_configuration(
                    f"https://{address}:{cfg.https_listen_port}"
                ),
                identity.service_account_key.jwks,
            ),
            encryption=SecretsEncryptionAdmin(
                store, encryption, key_prefix(ctx.kind("", "secrets"))
            ),
        )
        self.runner = web.AppRunner(
            make_app(state), access_log=None, handle_signals=False, shutdown_timeout=2
        )
        await self.runner.setup()
        site = web.TCPSite(
            self.runner,
            cfg.bind_address,
            cfg.https_listen_port,
            ssl_context=pki.server_ssl_context(),
            reuse_address=True,
        )
        await site.start()
        kubeconfig = admin_kubeconfig(
            cfg.local_url,
            pki.server_ca_cert.read_bytes(),
            pki.admin_cert.read_bytes(),
            pki.admin_key.read_bytes(),
        )
        write_kubeconfig(cfg.write_kubeconfig, kubeconfig, mode=cfg.write_kubeconfig_mode)
        state.ready = True
        release_free_memory()
        log.info(
            "edgek server ready: url=%s kubeconfig=%s datastore=%s startup=%.3fs",
            cfg.local_url,
            cfg.write_kubeconfig,
            cfg.datastore_url.split("?", 1)[0],
            time.monotonic() - started,
        )

    async def stop(self) -> None:
        for manager in self.loops:
            await manager.stop()
        if self.events is not None:
            await self.events.stop()
        if self.clock is not None:
            await self.clock.stop()
        if self.identity is not None:
            await self.identity.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()


def _crd_hook(objs: ObjectStore, crds: CustomResources) -> Any:
    """Serve custom kinds as CRDs change; establish new CRDs; remove instances on delete."""

    async def hook(kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        if kind.group != CRD_GROUP or kind.resource != "customresourcedefinitions":
            return
        if deleted:
            served = crds.remove(obj)
            # every version of a custom kind shares one storage prefix: one list covers all
            for custom in served[:1]:
                listed = await objs.list(custom, "", ListOptions())
                for item in listed.items:
                    md = item["metadata"]
                    with contextlib.suppress(Exception):
                        await objs.delete(
                            custom, md.get("namespace", ""), md["name"], DeleteOptions()
                        )
            return
        crds.sync(obj)
        conditions = (obj.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" for c in conditions):
            return

        async def establish(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                return None
            current["status"] = crd_status(current, format_time(objects.now()))
            return current

        await objs.modify(
            kind, "", obj["metadata"]["name"], establish, WriteOptions(subresource="status")
        )

    return hook


async def _ensure_namespaces(objs: ObjectStore, registry: Registry) -> None:
    ns_kind = registry.by_resource("", "v1", "namespaces")
    assert ns_kind is not None
    for name in SYSTEM_NAMESPACES:
        if await objs.try_get(ns_kind, "", name) is None:
            await objs.create(
                ns_kind,
                "",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                WriteOptions(),
            )


async def _ensure_kubernetes_service(
    objs: ObjectStore, services: Kind, cluster_ip: str, cfg: ServerConfig
) -> None:
    """``default/kubernetes``: the first service IP, port 443 to the API server."""
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
        kind = registry.by_resource(group, "v1", resource)
        assert kind is not None

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


async def serve_forever(config: ServerConfig) -> None:
    """Run the server until SIGTERM/SIGINT."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await stop.wait()
    finally:
        log.info("edgek server stopping")
        await server.stop()
