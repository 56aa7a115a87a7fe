"""Pod helpers shared by the workload controllers: pods from templates and owner
references (finding, adopting and releasing dependents). The pod states they reason about
(active, ready, available) are in :mod:`edgek.podstate`."""

from __future__ import annotations

from collections.abc import Iterator

from edgek.kinds import Kind
from edgek.objects import Obj, clone
from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object
from edgek.status import ApiError
from server.cache import ObjectCache
from server.controllers.runtime import key_of
from server.storage.objectstore import Mutation, ObjectStore, WriteOptions


def owner_reference(owner: Obj, api_version: str, kind: str, *, controller: bool = True) -> Obj:
    """An ownerReference to ``owner`` (controller, blocking foreground deletion)."""
    md = owner["metadata"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": md["name"],
        "uid": md["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference marked ``controller``, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    """Whether ``owner`` is ``obj``'s controller (by uid)."""
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def selector_of(obj: Obj) -> LabelSelector | None:
    """A workload's ``spec.selector``; None when it is invalid."""
    try:
        return label_selector_from_object((obj.get("spec") or {}).get("selector"))
    except SelectorError:
        return None


def controller_keys(obj: Obj, kind: str, owners: ObjectCache) -> Iterator[str]:
    """The keys of the apps/v1 ``kind`` objects a dependent concerns: its controller's when
    it has one (of that kind), else every one in ``owners`` whose selector matches it (the
    candidates to adopt it)."""
    namespace = obj["metadata"].get("namespace", "")
    ref = controller_of(obj)
    if ref is not None:
        if ref.get("kind") == kind and ref.get("apiVersion", "").startswith("apps/"):
            yield f"{namespace}/{ref['name']}"
        return
    labels = obj["metadata"].get("labels") or {}
    for owner in owners.items(namespace):
        selector = selector_of(owner)
        if selector is not None and selector.matches(labels):
            yield key_of(owner)


async def adopt(
    objects: ObjectStore,
    kind: Kind,
    obj: Obj,
    owner: Obj,
    api_version: str,
    owner_kind: str,
    selector: LabelSelector,
    opts: WriteOptions,
) -> Obj | None:
    """Make ``owner`` the controller of the orphan ``obj`` if it still has no controller,
    is not being deleted and matches ``selector``. Returns the object when ``owner`` now
    controls it, else None (gone, or changed meanwhile)."""
    ref = owner_reference(owner, api_version, owner_kind)

    async def mutate(current: Obj | None) -> Obj | None:
        if current is None or controller_of(current) is not None:
            return None
        if current["metadata"].get("deletionTimestamp") or not selector.matches(
            current["metadata"].get("labels") or {}
        ):
            return None
        refs = current["metadata"].setdefault("ownerReferences", [])
        refs[:] = [r for r in refs if r.get("uid") != ref["uid"]] + [ref]
        return current

    return await modify_ownership(objects, kind, obj, owner, mutate, opts)


async def modify_ownership(
    objects: ObjectStore, kind: Kind, obj: Obj, owner: Obj, mutate: Mutation, opts: WriteOptions
) -> Obj | None:
    """Apply ``mutate`` (a change of owner references) to ``obj``. Returns the object when
    ``owner`` controls it afterwards, else None (also when it is gone)."""
    md = obj["metadata"]
    try:
        result, _ = await objects.modify(kind, md.get("namespace", ""), md["name"], mutate, opts)
    except ApiError as e:
        if e.code == 404:
            return None
        raise
    return result if is_controlled_by(result, owner) else None


async def release(
    objects: ObjectStore, kind: Kind, obj: Obj, owner_uid: str, opts: WriteOptions
) -> None:
    """Drop the owner reference with ``owner_uid`` from ``obj`` (if it is still there)."""

    async def mutate(current: Obj | None) -> Obj | None:
        if current is None:
            return None
        refs = current["metadata"].get("ownerReferences") or []
        kept = [r for r in refs if r.get("uid") != owner_uid]
        if len(kept) == len(refs):
            return None
        current["metadata"]["ownerReferences"] = kept
        return current

    md = obj["metadata"]
    try:
        await objects.modify(kind, md.get("namespace", ""), md["name"], mutate, opts)
    except ApiError as e:
        if e.code != 404:
            raise


def pod_from_template(
    template: Obj,
    owner: Obj,
    api_version: str,
    kind: str,
    *,
    name: str = "",
    generate_name: str = "",
) -> Obj:
    """A new pod from a pod template, controlled by ``owner`` (in its namespace)."""
    tmd = template.get("metadata") or {}
    md: Obj = {"namespace": owner["metadata"].get("namespace", "")}
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    for field in ("labels", "annotations", "finalizers"):
        if tmd.get(field):
            md[field] = clone(tmd[field])
    md["ownerReferences"] = [owner_reference(owner, api_version, kind)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": clone(template.get("spec") or {}),
    }
