"""``edgek server``: start the datastore, PKI, API server and built-in loops in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
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
from server.config import ServerConfig
from server.controllers.namespace import NamespaceFinalizer
from server.pki import ensure_pki, split_sans
from server.registry.allocators import ServiceAllocator
from server.registry.crd import CRD_GROUP, CustomResources, crd_status
from server.registry.encryption import SecretsEncryption
from server.registry.store import DeleteOptions, ListOptions, ObjectStore, WriteOptions

log = logging.getLogger("edgek.server")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Server:
    """One running control plane; ``start`` then ``stop``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: datastore.Store | None = None
        self.runner: web.AppRunner | None = None
        self._namespaces: NamespaceFinalizer | None = None
        self.identity: Identity | None = None

    async def start(self) -> None:
        cfg = self.config
        started = time.monotonic()
        dns, ips = split_sans(
            ([cfg.advertise_address] if cfg.advertise_address else []) + cfg.tls_san
        )
        pki = await asyncio.to_thread(ensure_pki, cfg.tls_dir, dns_names=dns, ip_addresses=ips)
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
        self._namespaces = NamespaceFinalizer(objs, registry)
        objs.after_write.append(self._namespaces.on_write)
        objs.after_write.append(_crd_hook(objs, crds))
        crd_kind = registry.by_resource(CRD_GROUP, "v1", "customresourcedefinitions")
        assert crd_kind is not None
        for crd in (await objs.list(crd_kind, "", ListOptions())).items:
            crds.sync(crd)
        await _ensure_namespaces(objs, registry)
        await _ensure_kubernetes_service(objs, services, allocator.kubernetes_ip, cfg)
        await self._namespaces.resume()
        self.identity = identity = Identity(
            objs,
            registry,
            server_dir=cfg.server_dir,
            ca_pem=pki.ca_bundle_pem(),
            pki=pki,
            configured_secret=cfg.join_secret(),
        )
        await identity.start()
        address = cfg.advertise_address or "127.0.0.1"
        state = ApiServerState(
            ResourceAPI(objs, crds, bookmark_interval=cfg.watch_bookmark_interval, tokens=identity),
            openapi,
            server_address=f"{address}:{cfg.https_listen_port}",
            ca_bundle=pki.ca_bundle_pem(),
            authn=identity.authn,
            authz=identity.authz,
            oidc=(
                identity.signer.openid_configuration(f"https://{address}:{cfg.https_listen_port}"),
                identity.signer.jwks(),
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
        log.info(
            "edgek server ready: url=%s kubeconfig=%s datastore=%s startup=%.3fs",
            cfg.local_url,
            cfg.write_kubeconfig,
            cfg.datastore_url.split("?", 1)[0],
            time.monotonic() - started,
        )

    async def stop(self) -> None:
        if self._namespaces is not None:
            await self._namespaces.stop()
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


async def serve_forever(config: ServerConfig) -> None:
    """Run the server until SIGTERM/SIGINT."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        log.info("edgek server stopping")
        await server.stop()
