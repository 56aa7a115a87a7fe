"""The garbage collector: ownerReferences, and the Background, Foreground and Orphan
deletion propagation policies (upstream pkg/controller/garbagecollector).

One datastore watch over every key feeds a compact dependency graph (uid -> coordinates,
owner references, deletion flags, dependents); no per-kind object cache is kept. Work
keys name a uid and an action:

- ``delete:<uid>`` (upstream attemptToDelete): an object whose owners may be gone. Each
  owner reference is checked with a live read in the dependent's namespace (an owner of
  another uid counts as gone). Without a solid owner the object is deleted (in the
  foreground when an owner waits for it and it has dependents itself); with one, the
  dangling references are removed. For an owner being deleted in the foreground, the key
  releases its ``foregroundDeletion`` finalizer once no dependent blocks it.
- ``orphan:<uid>`` (attemptToOrphan): an owner deleted with the ``orphan`` finalizer loses
  its dependents' references to it, then the finalizer.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import datastore
from edgek import fastjson
from edgek.kinds import Kind
from edgek.objects import Obj
from edgek.status import ApiError
from edgek.tasks import cancel_and_wait
from server.controllers.runtime import Controller, ControllerContext
from server.storage.objectstore import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    DeleteOptions,
    Mutation,
)

log = logging.getLogger("edgek.controllers.garbagecollector")

#: Every object key lives under this prefix (server/storage/objectstore.py object_key).
_PREFIX = "/registry/"
#: Events are never owners worth tracking and are the most frequent writes (upstream's
#: garbage collector ignores them too).
_IGNORED = {("", "events")}
#: Live events the graph's watch may buffer before it must re-list.
_WATCH_BUFFER = 50_000

_DELETE = "delete:"
_ORPHAN = "orphan:"


class _Ref(NamedTuple):
    """The parts of an ownerReference the graph keeps."""

    uid: str
    api_version: str
    kind: str
    name: str
    block: bool


@dataclass(slots=True, eq=False)
class _Node:
    """An object in the graph, or (``observed`` False) a placeholder for an owner that
    dependents name but that has not been seen (or is gone)."""

    uid: str
    group: str = ""  # storage group and resource (the key's coordinates)
    resource: str = ""
    namespace: str = ""
    name: str = ""
    api_version: str = ""
    kind: str = ""
    owners: tuple[_Ref, ...] = ()
    dependents: set[str] | None = None
    observed: bool = False
    deleting: bool = False
    foreground: bool = False  # deleting, with the foregroundDeletion finalizer
    orphan: bool = False  # deleting, with the orphan finalizer
    revision: int = 0

    def observe(self, obj: Obj, coordinates: tuple[str, str], revision: int) -> None:
        """Take the fields of ``obj``, stored at ``coordinates`` as of ``revision``."""
        md = obj["metadata"]
        finalizers = md.get("finalizers") or []
        self.group, self.resource = coordinates
        self.namespace = sys.intern(str(md.get("namespace") or ""))
        self.name = str(md.get("name", ""))
        self.api_version = sys.intern(str(obj.get("apiVersion", "")))
        self.kind = sys.intern(str(obj.get("kind", "")))
        self.owners = _refs(md)
        self.deleting = bool(md.get("deletionTimestamp"))
        self.foreground = self.deleting and FOREGROUND_FINALIZER in finalizers
        self.orphan = self.deleting and ORPHAN_FINALIZER in finalizers
        self.observed = True
        self.revision = revision

    def identity(self) -> dict[str, Any]:
        """A minimal object for event recording."""
        md = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": md}


def _refs(md: dict[str, Any]) -> tuple[_Ref, ...]:
    out = []
    for ref in md.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("uid"):
            out.append(
                _Ref(
                    str(ref["uid"]),
                    sys.intern(str(ref.get("apiVersion", ""))),
                    sys.intern(str(ref.get("kind", ""))),
                    str(ref.get("name", "")),
                    ref.get("blockOwnerDeletion") is True,
                )
            )
    return tuple(out)


def _coordinates(key: str) -> tuple[str, str] | None:
    """(group, resource) of an object key, or None for keys the graph ignores."""
    parts = key.split("/", 5)
    if len(parts) < 5 or parts[1] != "registry":
        return None
    group = "" if parts[2] == "core" else parts[2]
    coords = (sys.intern(group), sys.intern(parts[3]))
    return None if coords in _IGNORED else coords


class GarbageCollector(Controller):
    """Deletes objects whose owners are gone and carries out Foreground and Orphan
    deletion of owners."""

    name: ClassVar[str] = "garbagecollector"
    workers: ClassVar[int] = 20

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self._nodes: dict[str, _Node] = {}
        self._kinds: dict[tuple[str, str], Kind] = {}
        self._listing = False
        self._task: asyncio.Task[None] | None = None
        #: Set once the graph holds every stored object (tests wait on it).
        self.synced = asyncio.Event()

    def start(self) -> None:
        super().start()
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="garbagecollector-graph")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await super().stop()

    def __len__(self) -> int:
        """How many nodes (objects and owner placeholders) the graph holds."""
        return len(self._nodes)

    # -- the graph -------------------------------------------------------------------

    async def _follow(self) -> None:
        store = self.ctx.objects.datastore
        revision = await self._relist()
        self.synced.set()
        while True:
            try:
                watcher = store.watch(_PREFIX, revision, queue_size=_WATCH_BUFFER)
                async for ev in watcher:
                    self._on_event(ev)
                    revision = ev.kv.mod_revision
                return
            except datastore.CompactedError:
                pass
            log.info("garbage collector graph fell behind a compaction; re-listing")
            revision = await self._relist()

    async def _relist(self) -> int:
        """Load every stored object; forget objects that are gone since the last list."""
        kvs, revision, _ = await self.ctx.objects.datastore.list(_PREFIX)
        self._listing = True
        seen: set[str] = set()
        try:
            for kv in kvs:
                uid = self._put(kv)
                if uid:
                    seen.add(uid)
            for node in [n for n in self._nodes.values() if n.observed and n.uid not in seen]:
                self._remove(node.uid)
        finally:
            self._listing = False
        for node in list(self._nodes.values()):
            if not node.observed:
                self._enqueue_dependents(node)
        return revision

    def _on_event(self, ev: datastore.Event) -> None:
        if ev.type == "DELETE":
            obj = self._decode(ev.kv)
            if obj is not None:
                self._remove(str(obj["metadata"].get("uid", "")))
        else:
            self._put(ev.kv)

    def _kind(self, group: str, resource: str) -> Kind | None:
        """The kind stored under (group, resource), also for custom kinds added later."""
        found = self._kinds.get((group, resource))
        if found is None:
            for kind in self.ctx.registry.all():
                current = self._kinds.get((kind.group, kind.resource))
                if current is None or (current.custom and not kind.custom):
                    self._kinds[(kind.group, kind.resource)] = kind
            found = self._kinds.get((group, resource))
        return found

    def _decode(self, kv: datastore.KeyValue) -> dict[str, Any] | None:
        coords = _coordinates(kv.key)
        if coords is None:
            return None
        kind = self._kind(*coords)
        try:
            obj = (
                self.ctx.objects.decode(kind, kv) if kind is not None else fastjson.loads(kv.value)
            )
        except (ValueError, UnicodeDecodeError):
            log.debug("garbage collector skips undecodable key %s", kv.key)
            return None
        return obj if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) else None

    def _put(self, kv: datastore.KeyValue) -> str:
        """Record an added or updated object; returns its uid ("" if skipped)."""
        obj = self._decode(kv)
        if obj is None:
            return ""
        md = obj["metadata"]
        uid = str(md.get("uid") or "")
        if not uid:
            return ""
        node = self._nodes.get(uid)
        if node is None:
            node = self._nodes[uid] = _Node(uid)
        elif node.observed and kv.mod_revision < node.revision:
            return uid
        was_observed, was_foreground, was_orphan = node.observed, node.foreground, node.orphan
        old_refs = node.owners
        node.observe(obj, _coordinates(kv.key) or ("", ""), kv.mod_revision)
        if not was_observed:
            self._check_dependents_namespace(node)
        if node.owners != old_refs:
            self._relink(node, old_refs)
        if node.orphan and not was_orphan:
            self.queue.enqueue(_ORPHAN + uid)
        elif node.foreground and not was_foreground:
            self._enqueue_dependents(node)
            self.queue.enqueue(_DELETE + uid)
        return uid

    def _check_dependents_namespace(self, owner: _Node) -> None:
        """An owner first seen: check the namespace of the dependents naming it."""
        for dep_uid in owner.dependents or ():
            dep = self._nodes.get(dep_uid)
            if dep is not None:
                self._check_namespace(dep, owner)

    def _relink(self, node: _Node, old_refs: tuple[_Ref, ...]) -> None:
        """Move ``node`` between its owners' dependents after its references changed."""
        new = {r.uid: r for r in node.owners}
        for ref in old_refs:
            if new.get(ref.uid) == ref:
                continue
            owner = self._nodes.get(ref.uid)
            if owner is None:
                continue
            if owner.foreground:  # a dependent that may have blocked it is gone or changed
                self.queue.enqueue(_DELETE + owner.uid)
            if ref.uid not in new:
                self._unlink(owner, node.uid)
        old = {r.uid for r in old_refs}
        for ref in node.owners:
            if ref.uid not in old:
                self._link(node, ref)

    def _link(self, node: _Node, ref: _Ref) -> None:
        """Add ``node`` to the dependents of the owner ``ref`` names (a placeholder until
        the owner is seen), and check it when that owner is unseen or being deleted."""
        owner = self._nodes.get(ref.uid)
        if owner is None:
            owner = _Node(
                ref.uid,
                namespace=node.namespace,
                name=ref.name,
                api_version=ref.api_version,
                kind=ref.kind,
            )
            self._nodes[ref.uid] = owner
        if owner.dependents is None:
            owner.dependents = set()
        owner.dependents.add(node.uid)
        if not owner.observed:
            if not self._listing:  # after a list, placeholders are checked at once
                self.queue.enqueue(_DELETE + node.uid)
        elif owner.foreground:
            self.queue.enqueue(_DELETE + node.uid)
        else:
            self._check_namespace(node, owner)

    def _check_namespace(self, dep: _Node, owner: _Node) -> None:
        """A namespaced owner must be in its dependent's namespace (upstream reports the
        reference with an OwnerRefInvalidNamespace event and treats it as absent)."""
        if not owner.namespace or owner.namespace == dep.namespace:
            return
        ref = next((r for r in dep.owners if r.uid == owner.uid), None)
        if ref is None:
            return
        self.queue.enqueue(_DELETE + dep.uid)
        if not dep.namespace:
            return  # a cluster-scoped dependent: reported when its references are checked
        self.ctx.events.record(
            dep.identity(),
            "Warning",
            "OwnerRefInvalidNamespace",
            f"ownerRef [{ref.api_version}/{ref.kind}, namespace: {dep.namespace}, "
            f"name: {ref.name}, uid: {ref.uid}] does not exist in namespace "
            f'"{dep.namespace}"',
            component="garbage-collector-controller",
        )

    def _unlink(self, owner: _Node, dep_uid: str) -> None:
        if owner.dependents is not None:
            owner.dependents.discard(dep_uid)
            if not owner.dependents:
                owner.dependents = None
        if not owner.observed and owner.dependents is None:
            self._nodes.pop(owner.uid, None)

    def _remove(self, uid: str) -> None:
        """An object is gone: its dependents may be garbage, its owners may be unblocked."""
        node = self._nodes.get(uid)
        if node is None or not node.observed:
            return
        for ref in node.owners:
            owner = self._nodes.get(ref.uid)
            if owner is not None:
                if owner.foreground:
                    self.queue.enqueue(_DELETE + owner.uid)
                self._unlink(owner, uid)
        node.owners = ()
        node.observed = node.deleting = node.foreground = node.orphan = False
        if node.dependents:
            self._enqueue_dependents(node)  # the node stays as a placeholder for them
        else:
            self._nodes.pop(uid, None)

    def _enqueue_dependents(self, node: _Node) -> None:
        for dep_uid in node.dependents or ():
            self.queue.enqueue(_DELETE + dep_uid)

    # -- work ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key.startswith(_ORPHAN):
            await self._orphan_dependents(key.removeprefix(_ORPHAN))
        else:
            await self._attempt_to_delete(key.removeprefix(_DELETE))

    async def _attempt_to_delete(self, uid: str) -> None:
        node = self._nodes.get(uid)
        if node is None or not node.observed or (node.deleting and not node.foreground):
            return  # a deleted object's own deletion is under way
        kind = self._kind(node.group, node.resource)
        if kind is None:
            return
        latest = await self.ctx.objects.try_get(kind, node.namespace, node.name)
        if latest is None or latest["metadata"].get("uid") != uid:
            return  # gone: the watch brings its delete event
        if node.foreground:
            await self._release_foreground(kind, node)
            return
        md = latest["metadata"]
        refs = [r for r in md.get("ownerReferences") or [] if isinstance(r, dict)]
        if not refs:
            return
        verdicts = await self._classify_all(refs, node)
        if verdicts is None:
            return  # an owner reference that can never resolve: leave the object be
        solid, dangling, waiting = verdicts["solid"], verdicts["dangling"], verdicts["waiting"]
        if solid:
            if dangling or waiting:
                await self._drop_owner_refs(kind, node, set(dangling) | set(waiting))
            return
        policy = await self._deletion_policy(kind, node, md, bool(waiting))
        await self._delete(kind, node, policy, md.get("resourceVersion", ""))

    async def _delete(self, kind: Kind, node: _Node, policy: str, resource_version: str) -> None:
        """Delete the object of ``node`` with ``policy``, if it is still that version."""
        log.debug("deleting %s %s/%s (%s)", kind.kind, node.namespace, node.name, policy)
        try:
            await self.ctx.objects.delete(
                kind,
                node.namespace,
                node.name,
                DeleteOptions(
                    propagation_policy=policy,
                    precondition_uid=node.uid,
                    precondition_rv=resource_version,
                ),
            )
        except ApiError as e:
            if e.code != 404:
                raise

    async def _classify_all(
        self, refs: list[dict[str, Any]], node: _Node
    ) -> dict[str, list[str]] | None:
        """The owner uids of ``refs`` by :meth:`_classify` verdict; None when one can never
        resolve."""
        verdicts: dict[str, list[str]] = {"solid": [], "dangling": [], "waiting": []}
        for ref in refs:
            verdict = await self._classify(ref, node)
            if verdict is None:
                return None
            verdicts[verdict].append(str(ref.get("uid")))
        return verdicts

    async def _deletion_policy(self, kind: Kind, node: _Node, md: Obj, waiting: bool) -> str:
        """How to delete an object whose owners are all gone: in the foreground when an
        owner waits for it and it has dependents, else as its finalizers ask."""
        if waiting and node.dependents:
            if any(self._is_foreground(d) for d in node.dependents):
                await self._unblock_owner_refs(kind, node)  # break a possible cycle
            return "Foreground"
        finalizers = md.get("finalizers") or []
        if ORPHAN_FINALIZER in finalizers:
            return "Orphan"
        if FOREGROUND_FINALIZER in finalizers:
            return "Foreground"
        return "Background"

    def _is_foreground(self, uid: str) -> bool:
        node = self._nodes.get(uid)
        return node is not None and node.foreground

    async def _classify(self, ref: dict[str, Any], node: _Node) -> str | None:
        """``solid``, ``dangling`` (no owner with that uid where the dependent can have
        one) or ``waiting`` (the owner waits for its dependents' deletion); None for a
        cluster-scoped dependent naming a namespaced owner."""
        api_version, kind_name = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
        owner_kind = self.ctx.registry.by_gvk(api_version, kind_name)
        if owner_kind is None:
            raise ApiError(
                500, "InternalError", f"unable to get REST mapping for {api_version}/{kind_name}."
            )
        if owner_kind.namespaced and not node.namespace:
            self.ctx.events.record(
                node.identity(),
                "Warning",
                "OwnerRefInvalidNamespace",
                f"ownerRef [{api_version}/{kind_name}, namespace: , name: "
                f"{ref.get('name', '')}, uid: {ref.get('uid', '')}] does not exist in "
                'namespace ""',
                component="garbage-collector-controller",
            )
            return None
        namespace = node.namespace if owner_kind.namespaced else ""
        owner = await self.ctx.objects.try_get(owner_kind, namespace, str(ref.get("name", "")))
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return "dangling"
        omd = owner["metadata"]
        if omd.get("deletionTimestamp") and FOREGROUND_FINALIZER in (omd.get("finalizers") or []):
            return "waiting"
        return "solid"

    async def _release_foreground(self, kind: Kind, node: _Node) -> None:
        """Remove ``foregroundDeletion`` once no dependent blocks the owner; until then
        make sure every blocking dependent is being deleted."""
        blocking = []
        for dep_uid in node.dependents or ():
            dep = self._nodes.get(dep_uid)
            if dep is not None and any(r.uid == node.uid and r.block for r in dep.owners):
                blocking.append(dep)
        if not blocking:
            await self._remove_finalizer(kind, node, FOREGROUND_FINALIZER)
            return
        for dep in blocking:
            if not dep.foreground:
                self.queue.enqueue(_DELETE + dep.uid)

    async def _orphan_dependents(self, uid: str) -> None:
        node = self._nodes.get(uid)
        if node is None or not node.observed or not node.orphan:
            return
        kind = self._kind(node.group, node.resource)
        if kind is None:
            return
        for dep_uid in list(node.dependents or ()):
            dep = self._nodes.get(dep_uid)
            dep_kind = self._kind(dep.group, dep.resource) if dep is not None else None
            if dep is not None and dep.observed and dep_kind is not None:
                await self._drop_owner_refs(dep_kind, dep, {uid})
        await self._remove_finalizer(kind, node, ORPHAN_FINALIZER)

    # -- writes ----------------------------------------------------------------------

    async def _drop_owner_refs(self, kind: Kind, node: _Node, owner_uids: set[str]) -> None:
        """Remove the owner references to ``owner_uids`` from the object ``node``."""

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current["metadata"].get("uid") != node.uid:
                return None
            md = current["metadata"]
            refs = md.get("ownerReferences") or []
            kept = [r for r in refs if not isinstance(r, dict) or r.get("uid") not in owner_uids]
            if len(kept) == len(refs):
                return None
            if kept:
                md["ownerReferences"] = kept
            else:
                md.pop("ownerReferences", None)
            return current

        await self._modify(kind, node, mutate)

    async def _unblock_owner_refs(self, kind: Kind, node: _Node) -> None:
        """Set blockOwnerDeletion false on every owner reference of ``node``."""

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current["metadata"].get("uid") != node.uid:
                return None
            changed = False
            for ref in current["metadata"].get("ownerReferences") or []:
                if isinstance(ref, dict) and ref.get("blockOwnerDeletion"):
                    ref["blockOwnerDeletion"] = False
                    changed = True
            return current if changed else None

        await self._modify(kind, node, mutate)

    async def _remove_finalizer(self, kind: Kind, node: _Node, finalizer: str) -> None:
        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current["metadata"].get("uid") != node.uid:
                return None
            md = current["metadata"]
            finalizers = md.get("finalizers") or []
            if finalizer not in finalizers:
                return None
            md["finalizers"] = [f for f in finalizers if f != finalizer]
            return current

        await self._modify(kind, node, mutate)

    async def _modify(self, kind: Kind, node: _Node, mutate: Mutation) -> None:
        try:
            await self.ctx.objects.modify(
                kind, node.namespace, node.name, mutate, self.write_options()
            )
        except ApiError as e:
            if e.code not in (404, 422):  # gone, or (as upstream) a dependent it cannot fix
                raise
