"""The generic registry: every API write and read of objects goes through here.

Maps kinds and names to datastore keys, injects ``resourceVersion`` on read, runs defaults,
validation and the kind's strategy on write, and turns datastore errors into metav1.Status
errors. Controllers use this same path (there is no second way to mutate objects).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import datastore
from edgek import fastjson, objects, status
from edgek.defaults import apply_defaults
from edgek.kinds import Kind
from edgek.patch.apply import record_update
from edgek.selectors import FieldSelector, LabelSelector, selectable_fields
from edgek.status import ApiError
from edgek.timefmt import format_time, parse_time
from edgek.validation import validate
from server.storage import crschema, namespacelifecycle, strategy, views
from server.storage.requestinfo import UserInfo

#: How often a read-modify-write (patch, apply) retries on a concurrent change.
_UPDATE_RETRIES = 5

Mutation = Callable[[dict[str, Any] | None], Awaitable[dict[str, Any] | None]]
Undo = Callable[[], None]


@dataclass
class WriteOptions:
    """Options shared by create, update, patch and delete requests."""

    dry_run: bool = False
    field_manager: str = ""
    subresource: str = ""
    requester: tuple[str, list[str]] | None = None  # authenticated (user, groups)
    user: UserInfo | None = None  # the authenticated user, for user-aware admission


@dataclass
class DeleteOptions:
    """metav1.DeleteOptions as the object store uses them."""

    dry_run: bool = False
    grace_period_seconds: int | None = None
    propagation_policy: str = ""  # "" (the kind's default: Background), Orphan, Foreground
    precondition_uid: str = ""
    precondition_rv: str = ""
    orphan_dependents: bool | None = None  # the legacy form of propagationPolicy


#: Metadata finalizers the garbage collector acts on (upstream metav1 names).
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
#: Accepted propagation policies (upstream metav1.DeletionPropagation values).
PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")


@dataclass
class ListResult:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str = ""


@dataclass
class ListOptions:
    label_selector: LabelSelector | None = None
    field_selector: FieldSelector | None = None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


def key_prefix(kind: Kind, namespace: str = "") -> str:
    """Datastore key prefix of a kind, or of a kind within one namespace."""
    group = views.storage_group(kind)
    base = f"/registry/{group or 'core'}/{kind.resource}/"
    return f"{base}{namespace}/" if namespace and kind.namespaced else base


def object_key(kind: Kind, namespace: str, name: str) -> str:
    return key_prefix(kind, namespace) + name


class ValueCipher(Protocol):
    """Encryption at rest of stored values (Secrets)."""

    def encrypt(self, storage_key: str, plaintext: bytes) -> bytes: ...

    def decrypt(self, storage_key: str, stored: bytes) -> bytes: ...


def _encrypted(kind: Kind) -> bool:
    return (kind.group, kind.resource) == ("", "secrets")


def decode(kind: Kind, kv: datastore.KeyValue, cipher: ValueCipher | None = None) -> dict[str, Any]:
    """A stored object, as ``kind`` shows it, with its resourceVersion."""
    raw = cipher.decrypt(kv.key, kv.value) if cipher is not None and _encrypted(kind) else kv.value
    obj: dict[str, Any] = views.from_storage(kind, fastjson.loads(raw))
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def encode(kind: Kind, obj: dict[str, Any]) -> bytes:
    """The stored form of an object written through ``kind`` (without resourceVersion)."""
    stored = views.to_storage(kind, obj)
    md = stored.get("metadata", {})
    rv = md.pop("resourceVersion", None)
    try:
        return fastjson.dumps(stored)
    finally:
        if rv is not None:
            md["resourceVersion"] = rv


def matches(kind: Kind, obj: dict[str, Any], opts: ListOptions) -> bool:
    """Whether an object passes the label and field selectors of a list or watch."""
    if opts.label_selector is not None and not opts.label_selector.matches(
        obj.get("metadata", {}).get("labels")
    ):
        return False
    return opts.field_selector is None or opts.field_selector.matches(
        selectable_fields(kind.group, kind.resource, obj)
    )


def _encode_continue(revision: int, last_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _list_expired(opts: ListOptions, revision: int, e: datastore.CompactedError) -> ApiError:
    """The 410 Expired of a list reading below the compacted revision."""
    if opts.continue_token:
        return status.expired(
            "The provided continue parameter is too old to display a consistent list "
            "result. You can start a new list without the continue parameter."
        )
    return status.expired(
        f"The resourceVersion for the provided list is too old: {revision} is older "
        f"than the compacted revision {e.compact_revision}"
    )


def _keep_identity(new_md: dict[str, Any], md: dict[str, Any]) -> None:
    """Put the stored object's identity (and resourceVersion) back into a mutated copy."""
    for identity in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
        if identity in md:
            new_md[identity] = md[identity]


def _set_gc_finalizers(obj: dict[str, Any], opts: DeleteOptions) -> None:
    """Add or drop the garbage collector's finalizers as the propagation policy asks."""
    finalizers = _gc_finalizers(obj["metadata"].get("finalizers") or [], opts)
    if finalizers is None:
        return
    if finalizers:
        obj["metadata"]["finalizers"] = finalizers
    else:
        obj["metadata"].pop("finalizers", None)


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise status.bad_request(
            "invalid continue token: continue key is not valid: " + str(e)
        ) from e


def parse_rv(value: str, what: str = "resourceVersion") -> int:
    """A resourceVersion as a revision; 400 when it is not a non-negative integer."""
    try:
        rv = int(value)
        if rv < 0:
            raise ValueError(value)
        return rv
    except ValueError as e:
        raise status.bad_request(f"invalid {what}: {value!r}") from e


class ObjectStore:
    """Kind-aware object storage over the datastore."""

    def __init__(
        self,
        datastore_: datastore.Datastore,
        *,
        clock: Callable[[], datetime] = objects.now,
        event_ttl: int = 3600,
        custom_schema: Callable[[Kind], dict[str, Any] | None] = lambda kind: None,
        cipher: ValueCipher | None = None,
        namespace_lifecycle: bool = True,
    ) -> None:
        self.datastore = datastore_
        #: Refuse creates in missing or terminating namespaces (off only in unit tests of the
        #: bare object store, as upstream's --disable-admission-plugins=NamespaceLifecycle).
        self.namespace_lifecycle = namespace_lifecycle
        self.cipher = cipher
        self.custom_schema = custom_schema
        self.clock = clock
        self.event_ttl = event_ttl
        #: Called after every committed write: (kind, object after, deleted).
        self.after_write: list[Callable[[Kind, dict[str, Any], bool], Awaitable[None]]] = []
        #: Called for writes by a user: (user, kind, verb, subresource, object, old) -> why
        #: the write is forbidden, or None (node restriction).
        self.user_admission: list[
            Callable[[UserInfo, Kind, str, str, dict[str, Any], dict[str, Any] | None], str | None]
        ] = []
        #: Called before a create or update is stored (after validation): (kind, object,
        #: old or None) -> undo for when the write does not happen, or None.
        self.admission: list[
            Callable[[Kind, dict[str, Any], dict[str, Any] | None], Undo | None]
        ] = []

    def decode(self, kind: Kind, kv: datastore.KeyValue) -> dict[str, Any]:
        """A stored value as ``kind`` shows it (decrypted where needed)."""
        return decode(kind, kv, self.cipher)

    def _encode(self, kind: Kind, key: str, obj: dict[str, Any]) -> bytes:
        raw = encode(kind, obj)
        return (
            self.cipher.encrypt(key, raw) if self.cipher is not None and _encrypted(kind) else raw
        )

    # -- reads -----------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        kv = await self.datastore.get(object_key(kind, namespace, name))
        if kv is None:
            raise status.not_found(kind.group_resource, name)
        return self.decode(kind, kv)

    async def try_get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        kv = await self.datastore.get(object_key(kind, namespace, name))
        return None if kv is None else self.decode(kind, kv)

    async def list(self, kind: Kind, namespace: str, opts: ListOptions) -> ListResult:
        """A (possibly chunked) list honouring selectors, limit, continue and resourceVersion."""
        prefix = key_prefix(kind, namespace)
        revision, start = self._list_start(opts)
        items: list[dict[str, Any]] = []
        chunk = max(opts.limit, 100) if opts.limit else 0
        try:
            while True:
                kvs, read_rev, more = await self.datastore.list(
                    prefix, start_after=start, limit=chunk, revision=revision
                )
                revision = read_rev
                for i, kv in enumerate(kvs):
                    obj = self.decode(kind, kv)
                    if not matches(kind, obj, opts):
                        continue
                    items.append(obj)
                    if opts.limit and len(items) == opts.limit:
                        rest = more or i < len(kvs) - 1
                        token = _encode_continue(revision, kv.key) if rest else ""
                        return ListResult(items, str(revision), token)
                if not more or not kvs:
                    break
                start = kvs[-1].key
        except datastore.CompactedError as e:
            raise _list_expired(opts, revision, e) from e
        return ListResult(items, str(revision))

    def _list_start(self, opts: ListOptions) -> tuple[int, str]:
        """(revision to read at, 0 for the newest; key to continue after) of a list."""
        revision, start = 0, ""
        rv, match = opts.resource_version, opts.resource_version_match
        if opts.continue_token:
            revision, start = _decode_continue(opts.continue_token)
        elif rv not in ("", "0") and (match == "Exact" or (opts.limit and not match)):
            # Exact, or the legacy paging rule: a limit with a resourceVersion reads at it.
            revision = parse_rv(rv)
        elif rv not in ("", "0"):
            self.check_not_future(parse_rv(rv))
        if revision:
            self.check_not_future(revision)
        return revision, start

    def check_not_future(self, revision: int) -> None:
        """504 Timeout (retry after a second) when ``revision`` is past the datastore's."""
        if revision > self.datastore.revision:
            raise ApiError(
                504,
                "Timeout",
                f"Too large resource version: {revision}, current: {self.datastore.revision}",
                details={"retryAfterSeconds": 1},
            )

    # -- writes ----------------------------------------------------------------

    async def create(
        self, kind: Kind, namespace: str, obj: dict[str, Any], opts: WriteOptions
    ) -> dict[str, Any]:
        """Create an object (namespace lifecycle, metadata, defaults, validation,
        managedFields)."""
        md = objects.ensure_meta(obj)
        if self.namespace_lifecycle:
            await namespacelifecycle.admit_create(self.datastore, kind, namespace, obj)
        if not md.get("name") and md.get("generateName"):
            md["name"] = objects.generate_name(md["generateName"])
        if kind.namespaced:
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        for server_owned in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(server_owned, None)
        md["uid"] = objects.new_uid()
        now = self.clock()
        md["creationTimestamp"] = format_time(now)
        strategy.prepare_for_create(kind, obj, opts.requester)
        self._default(kind, obj)
        self._validate(kind, obj, None)
        self._admit_user(opts, kind, "create", obj, None)
        if opts.field_manager:
            record_update(
                None,
                obj,
                manager=opts.field_manager,
                type_name=kind.type_name,
                api_version=kind.api_version,
                now=format_time(now),
            )
        undo = self._admit(kind, obj, None)
        try:
            if opts.dry_run:
                if await self.datastore.get(object_key(kind, namespace, md["name"])) is not None:
                    raise status.already_exists(kind.group_resource, md["name"])
                undo()
                return obj
            kv = await self.datastore.create(
                (key := object_key(kind, namespace, md["name"])),
                self._encode(kind, key, obj),
                ttl=self._ttl(kind),
            )
        except datastore.KeyExistsError as e:
            undo()
            raise status.already_exists(kind.group_resource, md["name"]) from e
        except BaseException:
            undo()
            raise
        md["resourceVersion"] = str(kv.mod_revision)
        await self._notify(kind, obj, False)
        return obj

    async def update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        opts: WriteOptions,
        *,
        allow_create: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Replace an object (PUT). Returns (object, created). A resourceVersion in the body is a
        precondition; an update that changes nothing is not written."""
        wanted_rv = objects.ensure_meta(obj).get("resourceVersion")
        for _attempt in range(_UPDATE_RETRIES):
            old = await self.try_get(kind, namespace, name)
            if old is None:
                if allow_create and not opts.subresource:
                    return await self.create(kind, namespace, obj, opts), True
                raise status.not_found(kind.group_resource, name)
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise status.conflict(kind.group_resource, name)
            try:
                return await self._write_update(
                    kind, namespace, old, objects.clone(obj), opts
                ), False
            except _Retry:
                if wanted_rv:
                    raise status.conflict(kind.group_resource, name) from None
        raise status.conflict(kind.group_resource, name)

    async def modify(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        mutate: Mutation,
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        """Read-modify-write with retries on concurrent change (patch, apply, scale).

        ``mutate`` gets a private copy of the current object (or None when it does not
        exist) and returns the desired object, or None to leave it unchanged. Returns
        (object, created)."""
        key = object_key(kind, namespace, name)
        for _attempt in range(_UPDATE_RETRIES):
            kv = await self.datastore.get(key)
            old = None if kv is None else self.decode(kind, kv)
            # A second decode is a cheaper private copy than a deep copy.
            desired = await mutate(None if kv is None else self.decode(kind, kv))
            if old is None:
                if desired is None:
                    raise status.not_found(kind.group_resource, name)
                return await self.create(kind, namespace, desired, opts), True
            if desired is None:
                return old, False
            wanted_rv = objects.ensure_meta(desired).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise status.conflict(kind.group_resource, name)
            try:
                return await self._write_update(kind, namespace, old, desired, opts), False
            except _Retry:
                continue
        raise status.conflict(kind.group_resource, name)

    async def guarded_update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        mutate: Callable[[dict[str, Any]], None],
        *,
        expected_uid: str = "",
        expected_rv: str = "",
        current: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """A system write that skips defaults, validation, strategy and admission, as
        upstream's subresource storages (``pods/binding``) call GuaranteedUpdate directly.

        Reads the object, checks the uid/resourceVersion preconditions (409 as upstream's
        storage preconditions), lets ``mutate`` edit a copy in place (it raises ApiError to
        refuse) and stores it guarded by the revision read, re-reading when another writer got
        there first. Encoding (encryption at rest included) and the after_write hooks are those
        of every write; an unchanged object is not written. ``current`` (not mutated, e.g. a
        cached copy) saves the first read; a stale copy costs a retry. Returns the object."""
        key = object_key(kind, namespace, name)
        for _attempt in range(_UPDATE_RETRIES):
            fresh = current is None
            if current is None:
                current = await self.try_get(kind, namespace, name)
                if current is None:
                    raise status.not_found(kind.group_resource, name)
            md = current["metadata"]
            why = _precondition_failure(md, expected_uid, expected_rv)
            if why:
                if not fresh:  # judge preconditions on the stored object, not a cached copy
                    current = None
                    continue
                raise status.conflict(kind.group_resource, name, why)
            new = objects.clone(current)
            mutate(new)
            new_md = objects.ensure_meta(new)
            _keep_identity(new_md, md)
            if new == current or dry_run:
                return new
            try:
                kv = await self.datastore.update(
                    key,
                    self._encode(kind, key, new),
                    expected_revision=int(md["resourceVersion"]),
                    ttl=self._ttl(kind),
                )
            except datastore.ConflictError:
                current = None
                continue
            except datastore.NotFoundError as e:
                raise status.not_found(kind.group_resource, name) from e
            new_md["resourceVersion"] = str(kv.mod_revision)
            await self._notify(kind, new, False)
            return new
        raise status.conflict(kind.group_resource, name)

    async def _write_update(
        self,
        kind: Kind,
        namespace: str,
        old: dict[str, Any],
        new: dict[str, Any],
        opts: WriteOptions,
    ) -> dict[str, Any]:
        md, old_md = objects.ensure_meta(new), old["metadata"]
        name = old_md["name"]
        if md.get("name", name) != name:
            raise status.bad_request(
                f"the name of the object ({md.get('name')}) does not match the name on the URL ({name})"
            )
        for immutable in ("name", "namespace", "uid", "creationTimestamp"):
            if immutable in old_md:
                md[immutable] = old_md[immutable]
        strategy.prepare_for_update(kind, new, old, opts.subresource)
        md = new["metadata"]
        if opts.subresource != "status":
            self._default(kind, new)
        undo = self._admit(kind, new, old)
        try:
            result, stored = await self._store_update(kind, namespace, old, new, opts)
        except BaseException:
            undo()
            raise
        if not stored:
            undo()
        return result

    async def _store_update(
        self,
        kind: Kind,
        namespace: str,
        old: dict[str, Any],
        new: dict[str, Any],
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        """Validate, record managed fields and store; (object, whether it was written)."""
        md, old_md = new["metadata"], old["metadata"]
        name = old_md["name"]
        self._validate(kind, new, old)
        self._admit_user(opts, kind, "update", new, old)
        now = self.clock()
        if opts.field_manager:
            record_update(
                old,
                new,
                manager=opts.field_manager,
                type_name=kind.type_name,
                api_version=kind.api_version,
                now=format_time(now),
                subresource=opts.subresource,
            )
        md["resourceVersion"] = old_md["resourceVersion"]
        if new == old or opts.dry_run:
            return new, False
        if (
            md.get("deletionTimestamp")
            and not blocking_finalizers(kind, new)
            and not md.get("deletionGracePeriodSeconds")
        ):
            await self._delete_now(kind, namespace, name, int(old_md["resourceVersion"]))
            return new, True
        try:
            kv = await self.datastore.update(
                (key := object_key(kind, namespace, name)),
                self._encode(kind, key, new),
                expected_revision=int(old_md["resourceVersion"]),
                ttl=self._ttl(kind),
            )
        except datastore.ConflictError as e:
            raise _Retry() from e
        except datastore.NotFoundError as e:
            raise status.not_found(kind.group_resource, name) from e
        md["resourceVersion"] = str(kv.mod_revision)
        await self._notify(kind, new, False)
        return new, True

    async def delete(
        self, kind: Kind, namespace: str, name: str, opts: DeleteOptions
    ) -> tuple[dict[str, Any], bool]:
        """Delete an object. Returns (object, deleted_now): objects with finalizers (including
        the garbage collector's ``orphan`` and ``foregroundDeletion``, which the propagation
        policy adds or removes), or pods on a node with a grace period, get a
        deletionTimestamp and stay until released."""
        validate_delete_options(opts)
        for _attempt in range(_UPDATE_RETRIES):
            obj = await self.get(kind, namespace, name)
            md = obj["metadata"]
            why = _precondition_failure(md, opts.precondition_uid, opts.precondition_rv)
            if why:
                raise status.conflict(kind.group_resource, name, why)
            new = objects.clone(obj)
            graceful = self._begin_graceful(kind, new, opts)
            if graceful is None:  # a graceful deletion is under way and stays as it is
                return obj, False
            _set_gc_finalizers(new, opts)
            if not graceful and not blocking_finalizers(kind, new):
                if opts.dry_run:
                    return obj, True
                try:
                    await self._delete_now(kind, namespace, name, int(md["resourceVersion"]))
                except _Retry:
                    continue
                return obj, True
            if not graceful:
                self._mark_deleting(kind, new)
            if new == obj or opts.dry_run:
                return new, False
            stored = await self._store_deleting(kind, namespace, new, int(md["resourceVersion"]))
            if stored is not None:
                return stored, False
        raise status.conflict(kind.group_resource, name)

    async def _store_deleting(
        self, kind: Kind, namespace: str, new: dict[str, Any], revision: int
    ) -> dict[str, Any] | None:
        """Write an object being deleted over ``revision``; None when another writer got
        there first."""
        md = new["metadata"]
        key = object_key(kind, namespace, md["name"])
        try:
            kv = await self.datastore.update(
                key, self._encode(kind, key, new), expected_revision=revision, ttl=self._ttl(kind)
            )
        except datastore.ConflictError:
            return None
        except datastore.NotFoundError as e:
            raise status.not_found(kind.group_resource, md["name"]) from e
        md["resourceVersion"] = str(kv.mod_revision)
        await self._notify(kind, new, False)
        return new

    def _begin_graceful(self, kind: Kind, obj: dict[str, Any], opts: DeleteOptions) -> bool | None:
        """Start (or shorten) a graceful deletion in ``obj``. True when the object now waits
        for its grace period, False when it may go at once (finalizers aside), None when a
        graceful deletion is already under way and this request does not shorten it."""
        md = obj["metadata"]
        now = self.clock()
        if md.get("deletionTimestamp"):
            current = int(md.get("deletionGracePeriodSeconds") or 0)
            if current <= 0:
                return False
            wanted = opts.grace_period_seconds
            if wanted is None or max(wanted, 0) >= current:
                return None
            wanted = max(wanted, 0)
            started = parse_time(md["deletionTimestamp"]) - timedelta(seconds=current)
            md["deletionTimestamp"] = format_time(started + timedelta(seconds=wanted))
            md["deletionGracePeriodSeconds"] = wanted
            return wanted > 0
        grace = _grace_period(kind, obj, opts)
        if not grace:
            return False
        md["deletionTimestamp"] = format_time(now + timedelta(seconds=grace))
        md["deletionGracePeriodSeconds"] = grace
        _bump_generation(md)
        return True

    def _mark_deleting(self, kind: Kind, obj: dict[str, Any]) -> None:
        """Mark an object without a grace period as deleting (it waits for finalizers); a
        namespace turns Terminating."""
        if (kind.group, kind.resource) == ("", "namespaces"):
            obj.setdefault("status", {})["phase"] = "Terminating"
        md = obj["metadata"]
        now = self.clock()
        existing = md.get("deletionTimestamp")
        if not existing:
            _bump_generation(md)
        if not existing or parse_time(existing) > now:
            md["deletionTimestamp"] = format_time(now)
        md["deletionGracePeriodSeconds"] = 0

    async def _delete_now(self, kind: Kind, namespace: str, name: str, revision: int) -> None:
        try:
            kv = await self.datastore.delete(
                object_key(kind, namespace, name), expected_revision=revision
            )
        except datastore.ConflictError as e:
            raise _Retry() from e
        except datastore.NotFoundError as e:
            raise status.not_found(kind.group_resource, name) from e
        gone = self.decode(kind, kv)
        await self._notify(kind, gone, True)

    def _admit_user(
        self,
        opts: WriteOptions,
        kind: Kind,
        verb: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> None:
        if opts.user is None:
            return
        for hook in self.user_admission:
            why = hook(opts.user, kind, verb, opts.subresource, obj, old)
            if why:
                name = obj["metadata"].get("name", "")
                raise status.forbidden(f'{kind.group_resource} "{name}" is forbidden: {why}')

    def _admit(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> Undo:
        """Run the admission hooks; the result undoes all of them."""
        undos: list[Undo] = []
        try:
            for hook in self.admission:
                undo = hook(kind, obj, old)
                if undo is not None:
                    undos.append(undo)
        except BaseException:
            for undo in reversed(undos):
                undo()
            raise

        def undo_all() -> None:
            for undo in reversed(undos):
                undo()

        return undo_all

    def _ttl(self, kind: Kind) -> int | None:
        """Events expire (upstream --event-ttl, 1 h by default); nothing else does."""
        return self.event_ttl if kind.resource == "events" else None

    async def _notify(self, kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        for hook in self.after_write:
            await hook(kind, obj, deleted)

    def _default(self, kind: Kind, obj: dict[str, Any]) -> None:
        if kind.custom:
            crschema.apply_defaults(self.custom_schema(kind), obj)
        else:
            apply_defaults(kind.group, kind.resource, obj)

    def _validate(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        causes = validate(
            kind.group, kind.resource, kind.kind, obj, old, namespaced=kind.namespaced
        )
        if kind.custom:
            causes += crschema.validate(self.custom_schema(kind), obj)
        if causes:
            raise status.invalid(kind.kind, kind.group, obj["metadata"].get("name", ""), causes)


def blocking_finalizers(kind: Kind, obj: dict[str, Any]) -> list[str]:
    """Finalizers that keep a deleted object around (namespaces also have spec.finalizers)."""
    pending = list(obj["metadata"].get("finalizers") or [])
    if (kind.group, kind.resource) == ("", "namespaces"):
        pending += (obj.get("spec") or {}).get("finalizers") or []
    return pending


def validate_delete_options(opts: DeleteOptions) -> None:
    """422 for options upstream rejects (ValidateDeleteOptions)."""
    causes: list[dict[str, str]] = []
    policy = opts.propagation_policy
    if opts.orphan_dependents is not None and policy:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "{policy}": orphanDependents and '
                "deletionPropagation cannot be both set",
                "field": "propagationPolicy",
            }
        )
    if policy and policy not in PROPAGATION_POLICIES:
        supported = ", ".join(f'"{p}"' for p in (*PROPAGATION_POLICIES, "nil"))
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{policy}": supported values: {supported}',
                "field": "propagationPolicy",
            }
        )
    if causes:
        raise status.invalid("DeleteOptions", "meta.k8s.io", "", causes)


def _should_orphan(finalizers: list[str], opts: DeleteOptions) -> bool:
    """Whether the ``orphan`` finalizer belongs on the object: the request decides, then the
    finalizers already there, then the kind's default (Background for every kind)."""
    if opts.orphan_dependents is not None:
        return opts.orphan_dependents
    if opts.propagation_policy:
        return opts.propagation_policy == "Orphan"
    for fin in finalizers:
        if fin in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER):
            return fin == ORPHAN_FINALIZER
    return False


def _should_foreground(finalizers: list[str], opts: DeleteOptions) -> bool:
    """Whether the ``foregroundDeletion`` finalizer belongs on the object."""
    if opts.orphan_dependents is not None:
        return False
    if opts.propagation_policy:
        return opts.propagation_policy == "Foreground"
    return FOREGROUND_FINALIZER in finalizers


def _gc_finalizers(finalizers: list[str], opts: DeleteOptions) -> list[str] | None:
    """The finalizers after a delete request, or None when they stay as they are."""
    new = [f for f in finalizers if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if _should_orphan(finalizers, opts):
        new.append(ORPHAN_FINALIZER)
    if _should_foreground(finalizers, opts):
        new.append(FOREGROUND_FINALIZER)
    return None if set(new) == set(finalizers) else new


def _precondition_failure(md: dict[str, Any], uid: str, resource_version: str) -> str:
    """Why an object fails uid/resourceVersion preconditions (upstream storage wording)."""
    if uid and uid != md.get("uid"):
        return (
            f"Precondition failed: UID in precondition: {uid}, UID in object meta: {md.get('uid')}"
        )
    if resource_version and resource_version != md.get("resourceVersion"):
        return (
            f"Precondition failed: ResourceVersion in precondition: {resource_version}, "
            f"ResourceVersion in object meta: {md.get('resourceVersion')}"
        )
    return ""


def _bump_generation(md: dict[str, Any]) -> None:
    """The first deletion request bumps a tracked generation (as upstream)."""
    generation = md.get("generation")
    if isinstance(generation, int) and generation > 0:
        md["generation"] = generation + 1


class _Retry(Exception):
    """A guarded write lost a race; the caller re-reads and tries again."""


def _grace_period(kind: Kind, obj: dict[str, Any], opts: DeleteOptions) -> int:
    """Graceful deletion applies to pods already bound to a node (the agent finishes it)."""
    if (kind.group, kind.resource) != ("", "pods"):
        return 0
    spec = obj.get("spec") or {}
    if not spec.get("nodeName") or obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    if opts.grace_period_seconds is not None:
        return max(opts.grace_period_seconds, 0)
    return int(spec.get("terminationGracePeriodSeconds", 30))
