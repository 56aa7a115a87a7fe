"""ControllerRevision history shared by the StatefulSet and DaemonSet loops.

A revision snapshots a workload's pod template as the strategic merge patch
``{"spec": {"template": {..., "$patch": "replace"}}}`` (what ``kubectl rollout undo`` applies)
and is named ``<owner>-<hash>``. Hashes follow upstream: 32-bit FNV of the data (plus the
collision count as a probe) encoded with the safe alphabet of generated names.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from typing import Any

from edgek.kinds import Kind
from edgek.objects import Obj
from edgek.selectors import LabelSelector
from edgek.status import ApiError
from server.cache import ObjectCache
from server.controllers.podutil import (
    controller_of,
    is_controlled_by,
    modify_ownership,
    owner_reference,
)
from server.storage.objectstore import DeleteOptions, ObjectStore, WriteOptions

#: Label on pods (and DaemonSet revisions) naming the revision they were made from.
REVISION_HASH_LABEL = "controller-revision-hash"
#: Label upstream's history package puts on every revision it creates.
HISTORY_HASH_LABEL = "controller.kubernetes.io/hash"

#: Characters of upstream's ``rand.SafeEncodeString`` (no vowels, no confusables).
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF
#: Upstream truncates the owner name so revision names stay within 253 characters.
_MAX_PREFIX = 223


def fnv32(data: bytes) -> int:
    """FNV-1 32-bit (Go's ``fnv.New32``)."""
    h = _FNV_OFFSET
    for b in data:
        h = (h * _FNV_PRIME) & _MASK32
        h ^= b
    return h


def fnv32a(data: bytes) -> int:
    """FNV-1a 32-bit (Go's ``fnv.New32a``)."""
    h = _FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * _FNV_PRIME) & _MASK32
    return h


def safe_encode(text: str) -> str:
    """Map each character onto the safe alphabet (upstream ``rand.SafeEncodeString``)."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def canonical_json(value: Any) -> bytes:
    """Compact JSON with sorted keys: the bytes that are hashed and compared."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _probe(collision_count: int | None) -> bytes:
    return b"" if collision_count is None else str(collision_count).encode()


def hash_data(data: Any, collision_count: int | None = None) -> str:
    """The hash of a revision's data (upstream ``HashControllerRevision``)."""
    return safe_encode(str(fnv32(canonical_json(data) + _probe(collision_count))))


def hash_template(template: Obj, collision_count: int | None = None) -> str:
    """The hash of a pod template (upstream ``controller.ComputeHash``)."""
    return safe_encode(str(fnv32a(canonical_json(template) + _probe(collision_count))))


def revision_name(prefix: str, hash_: str) -> str:
    """``<prefix>-<hash>`` with the prefix cut to 223 characters."""
    return f"{prefix[:_MAX_PREFIX]}-{hash_}"


def template_patch(owner: Obj) -> Obj:
    """The revision data of a workload: a patch replacing ``spec.template``."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def revision_template(revision: Obj) -> Obj:
    """The pod template a revision records."""
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def revision_body(
    owner: Obj,
    api_version: str,
    kind: str,
    name: str,
    labels: dict[str, str],
    data: Obj,
    revision: int,
) -> Obj:
    """A ControllerRevision named ``name`` controlled by ``owner`` (which also lends it its
    annotations)."""
    md = owner["metadata"]
    meta: Obj = {
        "name": name,
        "namespace": md.get("namespace", ""),
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner, api_version, kind)],
    }
    if md.get("annotations"):
        meta["annotations"] = dict(md["annotations"])
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": meta,
        "data": copy.deepcopy(data),
        "revision": revision,
    }


def new_revision(
    owner: Obj,
    api_version: str,
    kind: str,
    data: Obj,
    revision: int,
    *,
    labels: dict[str, str] | None = None,
    collision_count: int | None = None,
) -> Obj:
    """An (uncreated) ControllerRevision of ``owner`` holding ``data``, named by the data's
    hash (upstream ``history.NewControllerRevision``)."""
    hash_ = hash_data(data, collision_count)
    rev_labels = {**(labels or {}), HISTORY_HASH_LABEL: hash_}
    name = revision_name(owner["metadata"]["name"], hash_)
    return revision_body(owner, api_version, kind, name, rev_labels, data, revision)


def equal_revision(a: Obj, b: Obj) -> bool:
    """Whether two revisions record the same data."""
    return canonical_json(a.get("data")) == canonical_json(b.get("data"))


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """Revisions oldest first: by revision number, then creation time, then name."""
    return sorted(
        revisions,
        key=lambda r: (
            int(r.get("revision") or 0),
            r["metadata"].get("creationTimestamp") or "",
            r["metadata"]["name"],
        ),
    )


def next_revision(revisions: Iterable[Obj]) -> int:
    """One more than the highest revision number (1 for an empty history)."""
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


def owned_revisions(cache: ObjectCache, owner: Obj) -> list[Obj]:
    """The revisions in the cache whose controller is ``owner``."""
    return [
        rev
        for rev in cache.by_index("owner", owner["metadata"]["uid"])
        if is_controlled_by(rev, owner)
    ]


def orphan_revisions(cache: ObjectCache, owner: Obj, selector: LabelSelector) -> list[Obj]:
    """Revisions in the owner's namespace without a controller that match ``selector``."""
    namespace = owner["metadata"].get("namespace", "")
    return [
        rev
        for rev in cache.items(namespace)
        if controller_of(rev) is None
        and not rev["metadata"].get("deletionTimestamp")
        and selector.matches(rev["metadata"].get("labels") or {})
    ]


async def set_controller(
    objects: ObjectStore,
    kind: Kind,
    obj: Obj,
    owner: Obj,
    api_version: str,
    owner_kind: str,
    opts: WriteOptions,
    *,
    adopt: bool,
) -> Obj | None:
    """Adopt ``obj`` (make ``owner`` its controller, if it has none) or release it (drop
    ``owner``'s reference). Returns the object when ``owner`` now controls it, else None
    (released, vanished, replaced or claimed by another controller meanwhile)."""
    uid = owner["metadata"]["uid"]
    md = obj["metadata"]

    async def mutate(current: Obj | None) -> Obj | None:
        if current is None or current["metadata"].get("uid") != md.get("uid"):
            return None
        if adopt and controller_of(current) is not None:
            return None
        refs = [r for r in current["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if adopt:
            refs.append(owner_reference(owner, api_version, owner_kind))
        current["metadata"]["ownerReferences"] = refs
        return current

    return await modify_ownership(objects, kind, obj, owner, mutate, opts)


async def claim(
    objects: ObjectStore,
    kind: Kind,
    candidates: Iterable[Obj],
    owner: Obj,
    api_version: str,
    owner_kind: str,
    opts: WriteOptions,
    matches: Callable[[Obj], bool],
) -> list[Obj]:
    """The ``candidates`` ``owner`` controls, after adopting orphans that ``matches`` and are
    not being deleted, and releasing owned ones that stopped matching (upstream
    ``ClaimObject``). While ``owner`` is being deleted it keeps what it has, and adopts and
    releases nothing."""
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    owned: list[Obj] = []
    for obj in list(candidates):
        ref = controller_of(obj)
        match = matches(obj)
        if ref is not None:
            if ref.get("uid") != owner["metadata"]["uid"]:
                continue
            if match or deleting:
                owned.append(obj)
            else:
                await set_controller(
                    objects, kind, obj, owner, api_version, owner_kind, opts, adopt=False
                )
        elif match and not deleting and not obj["metadata"].get("deletionTimestamp"):
            adopted = await set_controller(
                objects, kind, obj, owner, api_version, owner_kind, opts, adopt=True
            )
            if adopted is not None:
                owned.append(adopted)
    return owned


async def claim_revisions(
    objects: ObjectStore,
    kind: Kind,
    cache: ObjectCache,
    owner: Obj,
    api_version: str,
    owner_kind: str,
    opts: WriteOptions,
    selector: LabelSelector,
) -> list[Obj]:
    """The revisions ``owner`` controls, after adopting orphans that match ``selector``
    (none while ``owner`` is being deleted)."""
    revisions = owned_revisions(cache, owner)
    if owner["metadata"].get("deletionTimestamp"):
        return revisions
    for orphan in orphan_revisions(cache, owner, selector):
        adopted = await set_controller(
            objects, kind, orphan, owner, api_version, owner_kind, opts, adopt=True
        )
        if adopted is not None:
            revisions.append(adopted)
    return revisions


async def create_revision(
    objects: ObjectStore, kind: Kind, revision: Obj, collision_count: int, opts: WriteOptions
) -> tuple[Obj, int]:
    """Create ``revision``, renaming it with a bumped collision count while its name is taken
    by a revision with other data. Returns (the created or equal existing revision, the
    collision count used)."""
    body = copy.deepcopy(revision)
    md = body["metadata"]
    namespace = md.get("namespace", "")
    owner_ref = controller_of(body)
    owner_name = owner_ref["name"] if owner_ref is not None else md["name"].rsplit("-", 1)[0]
    while True:
        hash_ = hash_data(body["data"], collision_count)
        md["name"] = revision_name(owner_name, hash_)
        md.setdefault("labels", {})[HISTORY_HASH_LABEL] = hash_
        try:
            created = await objects.create(kind, namespace, copy.deepcopy(body), opts)
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await objects.try_get(kind, namespace, md["name"])
            if existing is not None and equal_revision(existing, body):
                return existing, collision_count
            collision_count += 1
            continue
        return created, collision_count


async def set_revision_number(
    objects: ObjectStore, kind: Kind, revision: Obj, number: int, opts: WriteOptions
) -> Obj:
    """Give an existing revision a new revision number (a rollback to it)."""

    async def mutate(current: Obj | None) -> Obj | None:
        if current is None or current.get("revision") == number:
            return None
        current["revision"] = number
        return current

    md = revision["metadata"]
    updated, _ = await objects.modify(kind, md.get("namespace", ""), md["name"], mutate, opts)
    return updated


async def truncate_history(
    objects: ObjectStore, kind: Kind, revisions: list[Obj], live: set[str], limit: int
) -> None:
    """Delete the oldest revisions not named in ``live`` until at most ``limit`` such
    revisions remain (``revisions`` sorted oldest first; a negative limit keeps all)."""
    history = [r for r in revisions if r["metadata"]["name"] not in live]
    if limit < 0 or len(history) <= limit:
        return
    for rev in history[: len(history) - limit]:
        await delete_revision(objects, kind, rev)


async def delete_revision(objects: ObjectStore, kind: Kind, revision: Obj) -> None:
    """Delete a revision (one already gone is fine)."""
    md = revision["metadata"]
    try:
        await objects.delete(kind, md.get("namespace", ""), md["name"], DeleteOptions())
    except ApiError as e:
        if e.code != 404:
            raise
