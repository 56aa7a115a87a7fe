"""The server's object graph, built in one place: the kinds registry and custom resources,
the object store with its admission chain and after-write hooks, the shared caches, the
event recorder, identity, the POST subresource actions and the loop groups (controllers,
scheduler). ``Server.start`` and the unit-test harness both build it with ``assemble``;
starting what it built is the caller's part."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import datastore
from edgek import objects
from edgek.kinds import Kind, Registry
from edgek.timefmt import format_time
from server.admission.eviction import eviction_action
from server.admission.limitrange import LimitRangeAdmission
from server.admission.quota import QuotaAdmission
from server.apiserver.openapi import OpenAPI
from server.apiserver.resources import ResourceAPI
from server.auth.identity import Identity
from server.auth.satoken import ServiceAccountKey
from server.cache import Informers, builtin_kind
from server.config import ServerConfig
from server.controllers import builtin
from server.controllers.clock import SkewedClock
from server.controllers.events import EventRecorder
from server.controllers.runtime import Controller, ControllerContext, ControllerManager
from server.controllers.volumebinding import DefaultStorageClass
from server.scheduler.priority import priority_admission
from server.storage.allocators import ServiceAllocator
from server.storage.binding import binding_action
from server.storage.crd import CRD_GROUP, CustomResources, crd_status
from server.storage.encryption import SecretsEncryption
from server.storage.eventmemo import EventMemo
from server.storage.objectstore import DeleteOptions, ListOptions, ObjectStore, Undo, WriteOptions
from server.storage.requestinfo import Action
from server.storage.serviceaccount import ServiceAccountAdmission
from server.storage.tolerations import DefaultTolerationSeconds

Admission = Callable[[Kind, dict[str, Any], dict[str, Any] | None], Undo | None]

#: The loop groups a server runs, each leading through its own Lease.
LOOP_GROUPS: tuple[tuple[str, Callable[[], list[type[Controller]]]], ...] = (
    ("kube-controller-manager", builtin.controller_loops),
    ("kube-scheduler", builtin.scheduler_loops),
)


@dataclass(frozen=True)
class Credentials:
    """What identity is built from: the CA bundle handed to clients and the
    service-account signing key."""

    ca_pem: bytes
    service_account_key: ServiceAccountKey


@dataclass
class ControlPlane:
    """Everything ``assemble`` built; nothing is started yet."""

    store: datastore.Datastore
    registry: Registry
    openapi: OpenAPI
    crds: CustomResources
    encryption: SecretsEncryption
    objects: ObjectStore
    allocator: ServiceAllocator
    informers: Informers
    events: EventRecorder
    ctx: ControllerContext
    api: ResourceAPI
    #: The loops' clock when it is a SkewedClock (``--debug-clock-file``), to start and stop.
    skewed_clock: SkewedClock | None = None
    identity: Identity | None = None
    managers: list[ControllerManager] = field(default_factory=list)


async def assemble(
    store: datastore.Datastore,
    config: ServerConfig,
    *,
    clock: Callable[[], datetime] | None = None,
    write_clock: Callable[[], datetime] = objects.now,
    host: str | None = None,
    credentials: Credentials | None = None,
    loop_groups: Sequence[tuple[str, Callable[[], list[type[Controller]]]]] = LOOP_GROUPS,
) -> ControlPlane:
    """Build the object graph over an open datastore.

    ``clock`` is the loops' clock (default: the wall clock, skewed by
    ``--debug-clock-file``), ``write_clock`` the object store's; ``host`` names the event
    source (default this host). Identity is built when ``credentials`` are given, and one
    ControllerManager per entry of ``loop_groups`` (the unit-test harness starts loops
    itself and passes none). Reads the stored Services (for the allocator) and CRDs (to
    serve their kinds)."""
    registry = Registry()
    openapi = OpenAPI(registry)
    crds = CustomResources(registry, openapi)
    encryption = SecretsEncryption.load_or_create(
        config.server_dir / "cred", enabled=config.secrets_encryption
    )
    objs = ObjectStore(store, clock=write_clock, custom_schema=crds.schema, cipher=encryption)
    allocator = await _service_allocator(objs, registry, config)
    objs.after_write.append(_crd_hook(objs, crds))
    await _serve_stored_crds(objs, registry, crds)
    skewed = SkewedClock(config.debug_clock_file) if config.debug_clock_file else None
    loops_clock = clock or skewed or objects.now
    memo = EventMemo(objs)  # shared by the informer caches and the API watches
    informers = Informers(objs, registry, memo)
    events = EventRecorder(
        objs,
        builtin_kind(registry, "", "events"),
        clock=loops_clock,
        host=host or socket.gethostname(),
    )
    ctx = ControllerContext(objs, registry, informers, events, config, loops_clock)
    identity = _identity(ctx, credentials) if credentials else None
    objs.admission.extend(admission(ctx))
    api = ResourceAPI(
        objs, crds, memo, bookmark_interval=config.watch_bookmark_interval, identity=identity
    )
    api.actions.update(actions(ctx))
    return ControlPlane(
        store=store,
        registry=registry,
        openapi=openapi,
        crds=crds,
        encryption=encryption,
        objects=objs,
        allocator=allocator,
        informers=informers,
        events=events,
        ctx=ctx,
        api=api,
        skewed_clock=skewed,
        identity=identity,
        managers=[ControllerManager(ctx, loops(), group=group) for group, loops in loop_groups],
    )


def admission(ctx: ControllerContext) -> list[Admission]:
    """Admission steps after the Service allocator, in order: defaults first (service
    account, priority, tolerations, storage class, LimitRange), then the quota that charges the defaulted
    object. Their caches are created here, so they start with the others."""
    return [
        ServiceAccountAdmission(ctx.cache("", "serviceaccounts").get),
        priority_admission(ctx.cache("scheduling.k8s.io", "priorityclasses")),
        DefaultTolerationSeconds(ctx.config),
        DefaultStorageClass(ctx.cache("storage.k8s.io", "storageclasses")),
        LimitRangeAdmission.over(ctx.cache),
        QuotaAdmission.over(ctx.cache, ctx.objects, ctx.clock),
    ]


def actions(ctx: ControllerContext) -> dict[tuple[str, str, str], Action]:
    """POST subresources served outside the generic resource handler."""
    return {
        ("", "pods", "binding"): binding_action(ctx.objects, ctx.kind("", "pods")),
        ("", "pods", "eviction"): eviction_action(ctx.objects, ctx.registry, ctx.clock),
    }


async def _service_allocator(
    objs: ObjectStore, registry: Registry, config: ServerConfig
) -> ServiceAllocator:
    """The ClusterIP allocator, loaded with the stored Services and installed as the first
    admission step (and told of every write)."""
    allocator = ServiceAllocator(config.service_cidr)
    services = builtin_kind(registry, "", "services")
    allocator.load((await objs.list(services, "", ListOptions())).items)
    objs.admission.append(allocator.admit)
    objs.after_write.append(allocator.written)
    return allocator


async def _serve_stored_crds(objs: ObjectStore, registry: Registry, crds: CustomResources) -> None:
    crd_kind = builtin_kind(registry, CRD_GROUP, "customresourcedefinitions")
    for crd in (await objs.list(crd_kind, "", ListOptions())).items:
        crds.sync(crd)


def _identity(ctx: ControllerContext, credentials: Credentials) -> Identity:
    return Identity(
        ctx.objects,
        ctx.registry,
        ctx.informers,
        server_dir=ctx.config.server_dir,
        ca_pem=credentials.ca_pem,
        service_account_key=credentials.service_account_key,
        configured_secret=ctx.config.join_secret(),
    )


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
