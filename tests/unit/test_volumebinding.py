"""The PersistentVolume binder on the controller bench: matching (class, size, access modes,
volume mode, selector, smallest fit), both sides of a binding, pre-bound volumes and
claims, WaitForFirstConsumer, external provisioning, release and reclaim, lost claims, and
the DefaultStorageClass admission."""

from __future__ import annotations

from typing import Any

from edgek.objects import Obj
from server.controllers.volumebinding import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    DefaultStorageClass,
    PersistentVolumeBinder,
    find_best_match,
)
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness

NS = "default"


def pv(
    name: str,
    size: str,
    *,
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    cls: str = "",
    claim_ref: Obj | None = None,
    labels: dict[str, str] | None = None,
    policy: str = "Retain",
    volume_mode: str = "Filesystem",
    annotations: dict[str, str] | None = None,
) -> Obj:
    spec: Obj = {
        "capacity": {"storage": size},
        "accessModes": list(modes),
        "hostPath": {"path": f"/data/{name}"},
        "persistentVolumeReclaimPolicy": policy,
        "volumeMode": volume_mode,
    }
    if cls:
        spec["storageClassName"] = cls
    if claim_ref is not None:
        spec["claimRef"] = claim_ref
    md: Obj = {"name": name, "labels": labels or {}}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": md, "spec": spec}


def pvc(
    name: str,
    size: str,
    *,
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    cls: str | None = "",
    volume_name: str = "",
    selector: Obj | None = None,
    volume_mode: str = "Filesystem",
) -> Obj:
    spec: Obj = {
        "accessModes": list(modes),
        "resources": {"requests": {"storage": size}},
        "volumeMode": volume_mode,
    }
    if cls is not None:
        spec["storageClassName"] = cls
    if volume_name:
        spec["volumeName"] = volume_name
    if selector is not None:
        spec["selector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def storage_class(
    name: str, provisioner: str, mode: str = "Immediate", *, default: bool = False
) -> Obj:
    md: Obj = {"name": name}
    if default:
        md["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": md,
        "provisioner": provisioner,
        "volumeBindingMode": mode,
    }


def _available(name: str, size: str, **kw: Any) -> Obj:
    obj = pv(name, size, **kw)
    obj["status"] = {"phase": "Available"}
    obj["metadata"]["uid"] = f"uid-{name}"
    return obj


def _claim(name: str, size: str, **kw: Any) -> Obj:
    obj = pvc(name, size, **kw)
    obj["metadata"]["uid"] = f"uid-{name}"
    return obj


def _match(claim: Obj, volumes: list[Obj], delay: bool = False) -> str | None:
    got = find_best_match(claim, volumes, delay)
    return None if got is None else str(got["metadata"]["name"])


def test_find_best_match_smallest_fit_and_filters() -> None:
    volumes = [
        _available("big", "10Gi"),
        _available("small", "1Gi"),
        _available("fits", "2Gi"),
        _available("rwx-only", "2Gi", modes=("ReadWriteMany",)),
        _available("classy", "2Gi", cls="fast"),
        _available("block", "2Gi", volume_mode="Block"),
    ]
    assert _match(_claim("c", "1500Mi"), volumes) == "fits"
    # a class, a mode or a volume mode narrows the choice
    assert _match(_claim("c", "1Gi", cls="fast"), volumes) == "classy"
    assert _match(_claim("c", "1Gi", modes=("ReadWriteMany",)), volumes) == "rwx-only"
    assert _match(_claim("c", "1Gi", volume_mode="Block"), volumes) == "block"
    assert _match(_claim("c", "20Gi"), volumes) is None
    # not Available (e.g. still Pending) or being deleted: not a candidate
    pending = _available("pending", "1Gi")
    pending["status"]["phase"] = "Pending"
    going = _available("going", "1Gi")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert _match(_claim("c", "1Gi"), [pending, going]) is None
    # fewer access modes win over less capacity (upstream's access-mode index order)
    both = [
        _available("two-modes", "1Gi", modes=("ReadWriteOnce", "ReadOnlyMany")),
        _available("one-mode", "5Gi"),
    ]
    assert _match(_claim("c", "1Gi"), both) == "one-mode"
    labelled = [
        _available("a", "1Gi", labels={"tier": "a"}),
        _available("b", "5Gi", labels={"tier": "b"}),
    ]
    assert _match(_claim("c", "1Gi", selector={"matchLabels": {"tier": "b"}}), labelled) == "b"


def test_find_best_match_prebound_and_delay_binding() -> None:
    ref = {"namespace": NS, "name": "c"}
    volumes = [_available("plain", "1Gi"), _available("reserved", "5Gi", claim_ref=ref)]
    # the volume reserved for the claim wins although bigger, with or without delay binding
    assert _match(_claim("c", "1Gi"), volumes) == "reserved"
    assert _match(_claim("c", "1Gi"), volumes, delay=True) == "reserved"
    # ... but not when too small
    assert _match(_claim("c", "6Gi"), volumes) is None
    # delay binding leaves unreserved volumes to the scheduler
    assert _match(_claim("other", "1Gi"), volumes, delay=True) is None
    # another claim cannot take a reserved one; a uid in the ref must match
    assert _match(_claim("other", "2Gi"), volumes) is None
    taken = [_available("x", "1Gi", claim_ref={**ref, "uid": "someone-else"})]
    assert _match(_claim("c", "1Gi"), taken) is None


async def _pv(h: Harness, name: str) -> Obj:
    got = await h.get("", "persistentvolumes", "", name)
    assert got is not None
    return got


async def _pvc(h: Harness, name: str) -> Obj:
    got = await h.get("", "persistentvolumeclaims", NS, name)
    assert got is not None
    return got


async def _phase(h: Harness, kind: str, name: str) -> str:
    obj = await (_pv(h, name) if kind == "pv" else _pvc(h, name))
    return str((obj.get("status") or {}).get("phase"))


async def _events(h: Harness, reason: str) -> list[str]:
    await h.events.flush()
    return [e["message"] for e in await h.list("", "events", NS) if e["reason"] == reason]


async def _wait_phase(h: Harness, kind: str, name: str, phase: str) -> None:
    async def check() -> bool:
        return await _phase(h, kind, name) == phase

    await h.wait_for(check, what=f"{kind} {name} {phase}")


async def test_immediate_claim_binds_both_sides(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    for obj in (
        pv("pv-5g", "5Gi"),
        pv("pv-2g", "2Gi"),
        pv("pv-1g", "1Gi"),
        pv("pv-c", "2Gi", cls="x"),
    ):
        await h.create("", "persistentvolumes", "", obj)
    for name in ("pv-5g", "pv-2g", "pv-1g", "pv-c"):
        await _wait_phase(h, "pv", name, "Available")
    claim = await h.create("", "persistentvolumeclaims", NS, pvc("data", "1500Mi"))
    await _wait_phase(h, "pvc", "data", "Bound")
    await h.settle()
    got = await _pvc(h, "data")
    assert got["spec"]["volumeName"] == "pv-2g"
    assert got["metadata"]["annotations"][ANN_BIND_COMPLETED] == "yes"
    assert got["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    assert got["status"]["capacity"] == {"storage": "2Gi"}
    assert got["status"]["accessModes"] == ["ReadWriteOnce"]
    volume = await _pv(h, "pv-2g")
    assert volume["status"]["phase"] == "Bound"
    ref = volume["spec"]["claimRef"]
    assert (ref["kind"], ref["namespace"], ref["name"], ref["uid"]) == (
        "PersistentVolumeClaim",
        NS,
        "data",
        claim["metadata"]["uid"],
    )
    assert volume["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    for name in ("pv-5g", "pv-1g", "pv-c"):
        assert await _phase(h, "pv", name) == "Available"


async def test_claim_without_class_waits_for_a_volume(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    await h.create("", "persistentvolumeclaims", NS, pvc("late", "1Gi"))
    await h.settle()
    assert await _phase(h, "pvc", "late") == "Pending"
    assert await _events(h, "FailedBinding") == [
        "no persistent volumes available for this claim and no storage class is set"
    ]
    await h.create("", "persistentvolumes", "", pv("arrives", "1Gi"))
    await _wait_phase(h, "pvc", "late", "Bound")
    assert (await _pvc(h, "late"))["spec"]["volumeName"] == "arrives"


async def test_prebound_volume_and_claim_complete(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    ref = {"kind": "PersistentVolumeClaim", "namespace": NS, "name": "wants-reserved"}
    await h.create("", "persistentvolumes", "", pv("small", "1Gi"))
    await h.create("", "persistentvolumes", "", pv("reserved", "8Gi", claim_ref=ref))
    await h.create("", "persistentvolumes", "", pv("named", "3Gi"))
    await _wait_phase(h, "pv", "reserved", "Available")
    await _wait_phase(h, "pv", "named", "Available")
    await h.create("", "persistentvolumeclaims", NS, pvc("wants-reserved", "1Gi"))
    await h.create("", "persistentvolumeclaims", NS, pvc("wants-named", "1Gi", volume_name="named"))
    await _wait_phase(h, "pvc", "wants-reserved", "Bound")
    await _wait_phase(h, "pvc", "wants-named", "Bound")
    reserved = await _pv(h, "reserved")
    claim = await _pvc(h, "wants-reserved")
    assert claim["spec"]["volumeName"] == "reserved"
    assert reserved["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    # pre-bound by the user: the volume side is not marked as the controller's doing
    assert ANN_BOUND_BY_CONTROLLER not in (reserved["metadata"].get("annotations") or {})
    named = await _pv(h, "named")
    assert named["spec"]["claimRef"]["name"] == "wants-named"
    assert named["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    # the claim named its volume itself
    assert ANN_BOUND_BY_CONTROLLER not in (await _pvc(h, "wants-named"))["metadata"]["annotations"]
    assert await _phase(h, "pv", "small") == "Available"


async def test_named_volume_that_does_not_fit(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    await h.create("", "persistentvolumes", "", pv("tiny", "1Gi"))
    await _wait_phase(h, "pv", "tiny", "Available")
    await h.create("", "persistentvolumeclaims", NS, pvc("greedy", "5Gi", volume_name="tiny"))
    await h.settle()
    assert await _phase(h, "pvc", "greedy") == "Pending"
    assert await _events(h, "VolumeMismatch") == [
        'Cannot bind to requested volume "tiny": requested PV is too small'
    ]
    assert "claimRef" not in (await _pv(h, "tiny"))["spec"]


async def test_scheduler_reserved_volume_binds_wait_for_first_consumer(harness: Harness) -> None:
    """A static WaitForFirstConsumer claim: the scheduler sets the chosen volume's claimRef
    (with the claim's uid), the binder completes the binding."""
    h = harness
    await h.start(PersistentVolumeBinder)
    await h.create(
        "storage.k8s.io",
        "storageclasses",
        "",
        storage_class("local", "kubernetes.io/no-provisioner", "WaitForFirstConsumer"),
    )
    await h.create("", "persistentvolumes", "", pv("local-1", "1Gi", cls="local"))
    claim = await h.create("", "persistentvolumeclaims", NS, pvc("c", "1Gi", cls="local"))
    await h.settle()
    assert await _phase(h, "pvc", "c") == "Pending"
    assert await _events(h, "WaitForFirstConsumer") == [
        "waiting for first consumer to be created before binding"
    ]

    async def reserve(obj: Obj | None) -> Obj | None:
        assert obj is not None
        md = claim["metadata"]
        obj["spec"]["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": NS,
            "name": "c",
            "uid": md["uid"],
        }
        obj["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
        return obj

    await h.objects.modify(h.kind("", "persistentvolumes"), "", "local-1", reserve, WriteOptions())
    await _wait_phase(h, "pvc", "c", "Bound")
    await _wait_phase(h, "pv", "local-1", "Bound")
    assert (await _pvc(h, "c"))["spec"]["volumeName"] == "local-1"


async def test_wait_for_first_consumer_then_external_provisioning(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    await h.create(
        "storage.k8s.io",
        "storageclasses",
        "",
        storage_class("ext", "example.com/ext", "WaitForFirstConsumer"),
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user", "namespace": NS},
        "spec": {
            "containers": [{"name": "c", "image": "img"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}],
        },
    }
    await h.create("", "pods", NS, pod)
    await h.create("", "persistentvolumeclaims", NS, pvc("c", "1Gi", cls="ext"))
    await h.settle()
    assert await _events(h, "WaitForPodScheduled") == ["waiting for pod user to be scheduled"]
    assert ANN_STORAGE_PROVISIONER not in (
        (await _pvc(h, "c"))["metadata"].get("annotations") or {}
    )

    async def select(obj: Obj | None) -> Obj | None:
        assert obj is not None
        obj["metadata"].setdefault("annotations", {})[ANN_SELECTED_NODE] = "node-1"
        return obj

    kind = h.kind("", "persistentvolumeclaims")
    await h.objects.modify(kind, NS, "c", select, WriteOptions())

    async def annotated() -> bool:
        ann = (await _pvc(h, "c"))["metadata"].get("annotations") or {}
        return (
            ann.get(ANN_STORAGE_PROVISIONER)
            == "example.com/ext"
            == ann.get(ANN_BETA_STORAGE_PROVISIONER)
        )

    await h.wait_for(annotated, what="provisioner annotations")
    await h.settle()
    assert await _events(h, "ExternalProvisioning") == [
        "Waiting for a volume to be created either by the external provisioner 'example.com/ext' "
        "or manually by the system administrator. If volume creation is delayed, please verify "
        "that the provisioner is running and correctly registered."
    ]
    assert await _phase(h, "pvc", "c") == "Pending"


async def test_immediate_class_without_plugin_or_class(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    await h.create(
        "storage.k8s.io",
        "storageclasses",
        "",
        storage_class("none", "kubernetes.io/no-provisioner"),
    )
    await h.create("", "persistentvolumeclaims", NS, pvc("a", "1Gi", cls="none"))
    await h.create("", "persistentvolumeclaims", NS, pvc("b", "1Gi", cls="missing"))
    await h.settle()
    assert sorted(await _events(h, "ProvisioningFailed")) == [
        "no volume plugin matched name: kubernetes.io/no-provisioner",
        'storageclass.storage.k8s.io "missing" not found',
    ]


async def _bound_pair(h: Harness, name: str, policy: str, **kw: Any) -> None:
    await h.create("", "persistentvolumes", "", pv(f"pv-{name}", "1Gi", policy=policy, **kw))
    await h.create("", "persistentvolumeclaims", NS, pvc(name, "1Gi"))
    await _wait_phase(h, "pvc", name, "Bound")


async def test_release_retain_and_delete_without_deleter(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    await _bound_pair(h, "keep", "Retain")
    await _bound_pair(h, "drop", "Delete")
    claims = h.kind("", "persistentvolumeclaims")
    for name in ("keep", "drop"):
        await h.objects.delete(claims, NS, name, DeleteOptions())
    await _wait_phase(h, "pv", "pv-keep", "Released")
    # no deleter exists for a volume no external provisioner made: Failed, as upstream
    await _wait_phase(h, "pv", "pv-drop", "Failed")
    await h.settle()
    assert await _events(h, "VolumeFailedDelete") == [
        'error getting deleter volume plugin for volume "pv-drop": no deletable volume plugin '
        "matched"
    ]
    assert (await _pv(h, "pv-keep"))["spec"]["claimRef"]["name"] == "keep"
    # a released volume is not handed to a new claim of the same name
    await h.create("", "persistentvolumeclaims", NS, pvc("keep", "1Gi"))
    await h.settle()
    assert await _phase(h, "pvc", "keep") == "Pending"


async def test_externally_provisioned_delete_volume_is_left_to_its_provisioner(
    harness: Harness,
) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    ann = {"pv.kubernetes.io/provisioned-by": "example.com/ext"}
    await _bound_pair(h, "ext", "Delete", annotations=ann)
    await h.objects.delete(h.kind("", "persistentvolumeclaims"), NS, "ext", DeleteOptions())
    await _wait_phase(h, "pv", "pv-ext", "Released")
    await h.settle()
    assert await _phase(h, "pv", "pv-ext") == "Released"
    assert await _events(h, "VolumeFailedDelete") == []


async def test_bound_claim_loses_its_volume(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    await _bound_pair(h, "orphan", "Retain")
    await h.objects.delete(h.kind("", "persistentvolumes"), "", "pv-orphan", DeleteOptions())
    await _wait_phase(h, "pvc", "orphan", "Lost")
    assert await _events(h, "ClaimLost") == [
        "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
    ]
    assert "capacity" not in (await _pvc(h, "orphan"))["status"]


async def test_default_storage_class_admission(harness: Harness) -> None:
    h = harness
    await h.start(PersistentVolumeBinder)
    hook = h.admission_step(DefaultStorageClass)
    await h.create("", "persistentvolumeclaims", NS, pvc("before", "1Gi", cls=None))
    await h.create(
        "storage.k8s.io", "storageclasses", "", storage_class("old", "x.io/p", default=True)
    )
    h.clock.advance(5)
    await h.create(
        "storage.k8s.io", "storageclasses", "", storage_class("new", "x.io/p", default=True)
    )
    await h.create("storage.k8s.io", "storageclasses", "", storage_class("plain", "x.io/p"))

    async def cached() -> bool:
        return len(list(hook.classes.items())) == 3

    await h.wait_for(cached, what="classes cached")
    await h.create("", "persistentvolumeclaims", NS, pvc("after", "1Gi", cls=None))
    await h.create("", "persistentvolumeclaims", NS, pvc("explicit", "1Gi", cls="plain"))
    await h.create("", "persistentvolumeclaims", NS, pvc("empty", "1Gi", cls=""))
    assert "storageClassName" not in (await _pvc(h, "before"))["spec"]
    assert (await _pvc(h, "after"))["spec"]["storageClassName"] == "new"
    assert (await _pvc(h, "explicit"))["spec"]["storageClassName"] == "plain"
    assert (await _pvc(h, "empty"))["spec"].get("storageClassName") == ""
