"""The PersistentVolume binder (upstream's persistentvolume-controller): binds claims to
volumes in both directions, hands dynamic provisioning to a class's provisioner, and
releases volumes whose claim is gone.

Binding follows upstream's two-step protocol: the PV's ``spec.claimRef`` (and phase Bound)
first, then the claim's ``spec.volumeName``, its ``pv.kubernetes.io/bind-completed``
annotation and status (phase Bound, capacity, access modes). A write that loses a race
raises, so the key is retried and the next sync finishes the binding from what is stored.

- Immediate claims bind to the smallest Available volume that fits (class, size, access
  modes, volume mode, selector); a volume pre-bound to the claim (``claimRef``; e.g.
  reserved by the scheduler for a WaitForFirstConsumer claim) or the volume a claim names
  (``volumeName``) completes instead.
- WaitForFirstConsumer claims wait (event ``WaitForFirstConsumer``, or
  ``WaitForPodScheduled`` while a pod using them is unscheduled) until the scheduler puts
  ``volume.kubernetes.io/selected-node`` on them.
- With no volume and a class, the claim is annotated with the class's provisioner
  (``volume.kubernetes.io/storage-provisioner`` and its beta twin) and an
  ``ExternalProvisioning`` event; the provisioner (e.g. ``server.controllers.localpath``)
  creates a volume with a ``claimRef`` to the claim, which this loop then binds.
- A volume whose claim is deleted becomes Released; Retain keeps it, Delete of a volume an
  external provisioner made is that provisioner's job (as upstream); no in-tree deleter or
  recycler exists here, so other volumes fail as upstream does without a plugin.

:class:`DefaultStorageClass` is the upstream admission plugin of that name: a claim created
without ``storageClassName`` gets the default StorageClass.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from edgek import objects
from edgek.kinds import Kind
from edgek.objects import Obj
from edgek.quantity import parse_quantity
from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object
from server.cache import ObjectCache
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"

WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"

#: Index of pods by the claims they mount ("namespace/claim").
POD_CLAIMS_INDEX = "pvc"
#: Index of volumes by their claimRef ("namespace/claim").
VOLUME_CLAIM_INDEX = "claimref"
#: Index of claims whose binding is not complete (one value).
UNBOUND_INDEX = "unbound"
_UNBOUND = "unbound"

_CLAIM = "claim:"
_VOLUME = "volume:"


def claim_class(claim: Obj) -> str:
    """The claim's class name (the beta annotation wins, as upstream); "" for none."""
    beta = objects.annotations_of(claim).get(ANN_BETA_STORAGE_CLASS)
    if beta is not None:
        return beta
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def volume_class(pv: Obj) -> str:
    """The volume's class name (the beta annotation wins); "" for none."""
    beta = objects.annotations_of(pv).get(ANN_BETA_STORAGE_CLASS)
    if beta is not None:
        return beta
    return str((pv.get("spec") or {}).get("storageClassName") or "")


def _storage(value: Any) -> Fraction:
    try:
        return parse_quantity(value)
    except (TypeError, ValueError):
        return Fraction(0)


def claim_request(claim: Obj) -> Fraction:
    requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    return _storage(requests.get("storage", 0))


def volume_capacity(pv: Obj) -> Fraction:
    return _storage(((pv.get("spec") or {}).get("capacity") or {}).get("storage", 0))


def volume_mode_mismatch(claim: Obj, pv: Obj) -> bool:
    want = (claim.get("spec") or {}).get("volumeMode") or "Filesystem"
    return want != ((pv.get("spec") or {}).get("volumeMode") or "Filesystem")


def access_modes_fit(claim: Obj, pv: Obj) -> bool:
    have = set((pv.get("spec") or {}).get("accessModes") or ())
    return all(m in have for m in (claim.get("spec") or {}).get("accessModes") or ())


def is_bound_to_claim(pv: Obj, claim: Obj) -> bool:
    """Whether the volume's claimRef names the claim (a uid, if set, must match too)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    md = claim["metadata"]
    if ref.get("name") != md["name"] or ref.get("namespace") != md.get("namespace"):
        return False
    return not ref.get("uid") or ref["uid"] == md.get("uid")


def unsatisfied(pv: Obj, claim: Obj) -> str:
    """Why a volume cannot serve a claim that names it (upstream wording), or ""."""
    if pv["metadata"].get("deletionTimestamp"):
        return f'the volume is marked for deletion "{pv["metadata"]["name"]}"'
    if volume_capacity(pv) < claim_request(claim):
        return "requested PV is too small"
    if volume_class(pv) != claim_class(claim):
        return "storageClassName does not match"
    if volume_mode_mismatch(claim, pv):
        return "incompatible volumeMode"
    if not access_modes_fit(claim, pv):
        return "incompatible accessMode"
    return ""


def _fits_unbound(
    claim: Obj, pv: Obj, selector: LabelSelector | None, class_name: str, want: Fraction
) -> bool:
    """Whether an Available, unclaimed volume can serve ``claim``: selector, class, access
    modes and size."""
    if (pv.get("status") or {}).get("phase") != "Available" or (pv.get("spec") or {}).get(
        "claimRef"
    ):
        return False
    if selector is not None and not selector.matches(pv["metadata"].get("labels")):
        return False
    return (
        volume_class(pv) == class_name
        and access_modes_fit(claim, pv)
        and volume_capacity(pv) >= want
    )


def find_best_match(claim: Obj, volumes: Iterable[Obj], delay_binding: bool) -> Obj | None:
    """The volume for an unbound claim: one pre-bound to it (if big enough), else the
    Available, unclaimed volume of its class matching selector, modes and size, with the
    fewest access modes and then the least capacity. With ``delay_binding`` only
    pre-bound volumes count (the scheduler picks the others)."""
    want = claim_request(claim)
    class_name = claim_class(claim)
    raw_selector = (claim.get("spec") or {}).get("selector")
    try:
        selector = label_selector_from_object(raw_selector) if raw_selector else None
    except SelectorError:
        return None
    best: Obj | None = None
    best_key: tuple[int, Fraction] | None = None
    for pv in volumes:
        if volume_mode_mismatch(claim, pv) or pv["metadata"].get("deletionTimestamp"):
            continue
        size = volume_capacity(pv)
        if is_bound_to_claim(pv, claim):
            if size < want:
                continue
            return pv
        if delay_binding or not _fits_unbound(claim, pv, selector, class_name, want):
            continue
        key = (len((pv.get("spec") or {}).get("accessModes") or ()), size)
        if best_key is None or key < best_key:
            best, best_key = pv, key
    return best


def default_storage_class(classes: Iterable[Obj]) -> Obj | None:
    """The default StorageClass: of those annotated as default, the newest (then by name),
    as upstream picks when several are."""
    defaults = [
        sc
        for sc in classes
        if objects.annotations_of(sc).get(
            ANN_DEFAULT_CLASS, objects.annotations_of(sc).get(ANN_BETA_DEFAULT_CLASS)
        )
        == "true"
    ]
    if not defaults:
        return None
    return max(
        defaults,
        key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]),
    )


def claim_reference(claim: Obj) -> Obj:
    """An ObjectReference to a claim, as a volume's claimRef holds it."""
    md = claim["metadata"]
    return {
        "kind": "PersistentVolumeClaim",
        "namespace": md.get("namespace", ""),
        "name": md["name"],
        "uid": md.get("uid", ""),
        "apiVersion": "v1",
        "resourceVersion": md.get("resourceVersion", ""),
    }


def index_pod_claims(pod: Obj) -> list[str]:
    """Index values: "namespace/claim" of each claim a pod mounts."""
    ns = pod["metadata"].get("namespace", "")
    out = []
    for vol in (pod.get("spec") or {}).get("volumes") or ():
        source = vol.get("persistentVolumeClaim")
        if source and source.get("claimName"):
            out.append(f"{ns}/{source['claimName']}")
    return out


def index_volume_claim(pv: Obj) -> list[str]:
    """Index values: "namespace/claim" of the volume's claimRef."""
    ref = (pv.get("spec") or {}).get("claimRef")
    return [f"{ref.get('namespace', '')}/{ref.get('name', '')}"] if ref else []


def _index_unbound(claim: Obj) -> list[str]:
    return [] if ANN_BIND_COMPLETED in objects.annotations_of(claim) else [_UNBOUND]


def pod_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class PersistentVolumeBinder(Controller):
    """Binds PersistentVolumeClaims and PersistentVolumes (upstream persistentvolume-binder)."""

    name = "persistentvolume-binder"
    component = "persistentvolume-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.claims_kind = ctx.kind("", "persistentvolumeclaims")
        self.volumes_kind = ctx.kind("", "persistentvolumes")
        self.claims = ctx.cache("", "persistentvolumeclaims")
        self.volumes = ctx.cache("", "persistentvolumes")
        self.classes = ctx.cache("storage.k8s.io", "storageclasses")
        self.pods = ctx.cache("", "pods")
        self.claims.add_index(UNBOUND_INDEX, _index_unbound)
        self.volumes.add_index(VOLUME_CLAIM_INDEX, index_volume_claim)
        self.pods.add_index(POD_CLAIMS_INDEX, index_pod_claims)
        self.claims.on_event(self._claim_event)
        self.volumes.on_event(self._volume_event)
        self.classes.on_event(lambda old, new: self._enqueue_unbound())

    # -- event handlers ----------------------------------------------------------

    def _claim_event(self, old: Obj | None, new: Obj | None) -> None:
        claim = new if new is not None else old
        assert claim is not None
        self.queue.enqueue(_CLAIM + key_of(claim))
        if new is None:
            volume = (claim.get("spec") or {}).get("volumeName")
            if volume:
                self.queue.enqueue(_VOLUME + volume)
            for pv in self.volumes.by_index(VOLUME_CLAIM_INDEX, key_of(claim)):
                self.queue.enqueue(_VOLUME + pv["metadata"]["name"])

    def _volume_event(self, old: Obj | None, new: Obj | None) -> None:
        pv = new if new is not None else old
        assert pv is not None
        if new is not None:
            self.queue.enqueue(_VOLUME + new["metadata"]["name"])
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref:
            self.queue.enqueue(f"{_CLAIM}{ref.get('namespace', '')}/{ref.get('name', '')}")
        elif new is not None and (new.get("status") or {}).get("phase") == "Available":
            self._enqueue_unbound()

    def _enqueue_unbound(self) -> None:
        for claim in self.claims.by_index(UNBOUND_INDEX, _UNBOUND):
            self.queue.enqueue(_CLAIM + key_of(claim))

    # -- reconcile ---------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key.startswith(_CLAIM):
            ns, name = split_key(key[len(_CLAIM) :])
            claim = self.claims.get(ns, name)
            if claim is None:
                return
            if ANN_BIND_COMPLETED in objects.annotations_of(claim):
                await self._sync_bound_claim(claim)
            else:
                await self._sync_unbound_claim(claim)
        elif key.startswith(_VOLUME):
            pv = self.volumes.get("", key[len(_VOLUME) :])
            if pv is not None:
                await self._sync_volume(pv)

    async def _sync_unbound_claim(self, claim: Obj) -> None:
        volume_name = (claim.get("spec") or {}).get("volumeName") or ""
        if not volume_name:
            class_name = claim_class(claim)
            sc = self.classes.get("", class_name) if class_name else None
            delay = sc is not None and sc.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER
            pv = find_best_match(claim, self.volumes.items(), delay)
            if pv is not None:
                await self._bind(pv, claim)
                return
            if delay and ANN_SELECTED_NODE not in objects.annotations_of(claim):
                self._record_waiting(claim)
            elif class_name:
                await self._provision(claim, class_name, sc)
                return
            else:
                self.record(
                    claim,
                    "Normal",
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                )
            await self._claim_status(claim, "Pending", None)
            return
        pv = self.volumes.get("", volume_name)
        if pv is None:
            await self._claim_status(claim, "Pending", None)
            return
        if not (pv.get("spec") or {}).get("claimRef"):
            why = unsatisfied(pv, claim)
            if why:
                self.record(
                    claim,
                    "Warning",
                    "VolumeMismatch",
                    f'Cannot bind to requested volume "{volume_name}": {why}',
                )
                await self._claim_status(claim, "Pending", None)
            else:
                await self._bind(pv, claim)
            return
        if is_bound_to_claim(pv, claim):
            await self._bind(pv, claim)
            return
        self.record(
            claim,
            "Warning",
            "FailedBinding",
            f'volume "{volume_name}" already bound to a different claim.',
        )
        await self._claim_status(claim, "Pending", None)

    def _record_waiting(self, claim: Obj) -> None:
        waiting = sorted(
            pod["metadata"]["name"]
            for pod in self.pods.by_index(POD_CLAIMS_INDEX, key_of(claim))
            if not pod_terminated(pod) and not (pod.get("spec") or {}).get("nodeName")
        )
        if not waiting:
            self.record(
                claim,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
        elif len(waiting) == 1:
            self.record(
                claim,
                "Normal",
                "WaitForPodScheduled",
                f"waiting for pod {waiting[0]} to be scheduled",
            )
        else:
            self.record(
                claim,
                "Normal",
                "WaitForPodScheduled",
                f"waiting for pods {','.join(waiting)} to be scheduled",
            )

    async def _provision(self, claim: Obj, class_name: str, sc: Obj | None) -> None:
        """Ask the class's (external) provisioner for a volume."""
        if sc is None:
            self.record(
                claim,
                "Warning",
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{class_name}" not found',
            )
            return
        provisioner = str(sc.get("provisioner") or "")
        if provisioner.startswith("kubernetes.io/"):
            # in-tree provisioners (kubernetes.io/no-provisioner among them) do not exist here
            self.record(
                claim,
                "Warning",
                "ProvisioningFailed",
                f"no volume plugin matched name: {provisioner}",
            )
            return
        ann = objects.annotations_of(claim)
        if (
            ann.get(ANN_STORAGE_PROVISIONER) != provisioner
            or ann.get(ANN_BETA_STORAGE_PROVISIONER) != provisioner
        ):
            body = copy.deepcopy(claim)
            body["metadata"].setdefault("annotations", {}).update(
                {ANN_BETA_STORAGE_PROVISIONER: provisioner, ANN_STORAGE_PROVISIONER: provisioner}
            )
            md = body["metadata"]
            claim, _ = await self.ctx.objects.update(
                self.claims_kind, md["namespace"], md["name"], body, self.write_options()
            )
        self.record(
            claim,
            "Normal",
            "ExternalProvisioning",
            f"Waiting for a volume to be created either by the external provisioner "
            f"'{provisioner}' or manually by the system administrator. If volume creation is "
            "delayed, please verify that the provisioner is running and correctly registered.",
        )

    async def _sync_bound_claim(self, claim: Obj) -> None:
        volume_name = (claim.get("spec") or {}).get("volumeName") or ""
        if not volume_name:
            await self._claim_lost(
                claim,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            return
        pv = self.volumes.get("", volume_name)
        if pv is None:
            await self._claim_lost(
                claim,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or ref.get("uid") == claim["metadata"].get("uid"):
            await self._bind(pv, claim)
            return
        await self._claim_lost(
            claim,
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )

    async def _claim_lost(self, claim: Obj, reason: str, message: str) -> None:
        if (claim.get("status") or {}).get("phase") == "Lost":
            return
        claim = await self._claim_status(claim, "Lost", None)
        self.record(claim, "Warning", reason, message)

    async def _sync_volume(self, pv: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or not ref.get("uid"):
            # unclaimed, or reserved for a claim that has not bound yet (its sync does it)
            await self._volume_phase(pv, "Available")
            return
        phase = (pv.get("status") or {}).get("phase")
        claim = await self._claim_of(ref, phase)
        if claim is None:
            await self._release(pv, phase)
            return
        claim_volume = (claim.get("spec") or {}).get("volumeName") or ""
        if not claim_volume:
            if volume_mode_mismatch(claim, pv):
                self._report_mode_mismatch(pv, claim)
                return
            self.queue.enqueue(_CLAIM + key_of(claim))
            return
        if claim_volume == pv["metadata"]["name"]:
            await self._volume_phase(pv, "Bound")
            return
        # the claim is bound to another volume
        spec = pv.get("spec") or {}
        if ANN_PROVISIONED_BY in objects.annotations_of(pv) and spec.get(
            "persistentVolumeReclaimPolicy"
        ) == ("Delete"):
            await self._release(pv, phase)
            return
        await self._unbind_volume(pv)

    async def _claim_of(self, ref: Obj, phase: str | None) -> Obj | None:
        """The claim a volume's ``claimRef`` names, if it exists with that uid."""
        ns, name = ref.get("namespace", ""), ref.get("name", "")
        claim = self.claims.get(ns, name)
        if (claim is None and phase not in ("Released", "Failed")) or (
            claim is not None and claim["metadata"].get("uid") != ref["uid"]
        ):
            # the cache may lag behind a claim just created; ask the store before releasing
            claim = await self.ctx.objects.try_get(self.claims_kind, ns, name)
        if claim is not None and claim["metadata"].get("uid") != ref["uid"]:
            return None
        return claim

    async def _release(self, pv: Obj, phase: str | None) -> None:
        """A volume whose claim is gone: mark it Released and carry out its reclaim policy."""
        if phase not in ("Released", "Failed"):
            pv = await self._volume_phase(pv, "Released")
        await self._reclaim(pv)

    def _report_mode_mismatch(self, pv: Obj, claim: Obj) -> None:
        self.record(
            pv,
            "Warning",
            "VolumeMismatch",
            "Cannot bind PersistentVolume to requested PersistentVolumeClaim "
            f'"{claim["metadata"]["name"]}" due to incompatible volumeMode.',
        )
        self.record(
            claim,
            "Warning",
            "VolumeMismatch",
            f'Cannot bind PersistentVolume "{pv["metadata"]["name"]}" to requested '
            "PersistentVolumeClaim due to incompatible volumeMode.",
        )

    async def _reclaim(self, pv: Obj) -> None:
        """Carry out a released volume's reclaim policy."""
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        if policy == "Retain":
            return
        if policy == "Delete":
            provisioner = objects.annotations_of(pv).get(ANN_PROVISIONED_BY, "")
            if provisioner and not provisioner.startswith("kubernetes.io/"):
                return  # the external provisioner that made it deletes it
            await self._volume_failed(
                pv,
                "VolumeFailedDelete",
                f'error getting deleter volume plugin for volume "{pv["metadata"]["name"]}": '
                "no deletable volume plugin matched",
            )
        elif policy == "Recycle":
            await self._volume_failed(
                pv, "VolumeFailedRecycle", "No recycler plugin found for the volume!"
            )
        else:
            await self._volume_failed(
                pv,
                "VolumeUnknownReclaimPolicy",
                "Volume has unrecognized PersistentVolumeReclaimPolicy",
            )

    async def _volume_failed(self, pv: Obj, reason: str, message: str) -> None:
        if (pv.get("status") or {}).get("phase") == "Failed":
            return
        pv = await self._volume_phase(pv, "Failed", message)
        self.record(pv, "Warning", reason, message)

    async def _unbind_volume(self, pv: Obj) -> None:
        """Undo a binding the claim did not complete (it bound another volume)."""
        body = copy.deepcopy(pv)
        ann = body["metadata"].get("annotations") or {}
        if ANN_BOUND_BY_CONTROLLER in ann:
            body["spec"].pop("claimRef", None)
            del ann[ANN_BOUND_BY_CONTROLLER]
        else:
            body["spec"]["claimRef"]["uid"] = ""
        pv, _ = await self.ctx.objects.update(
            self.volumes_kind, "", pv["metadata"]["name"], body, self.write_options()
        )
        await self._volume_phase(pv, "Available")

    # -- binding -----------------------------------------------------------------

    async def _bind(self, pv: Obj, claim: Obj) -> None:
        """Bind both sides: volume claimRef, volume phase, claim volumeName, claim status."""
        pv = await self._bind_volume(pv, claim)
        pv = await self._volume_phase(pv, "Bound")
        claim = await self._bind_claim(claim, pv)
        await self._claim_status(claim, "Bound", pv)

    async def _bind_volume(self, pv: Obj, claim: Obj) -> Obj:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        md = claim["metadata"]
        by_controller = not is_bound_to_claim(pv, claim)
        body = copy.deepcopy(pv)
        dirty = False
        if (ref.get("name"), ref.get("namespace"), ref.get("uid")) != (
            md["name"],
            md.get("namespace"),
            md.get("uid"),
        ):
            body["spec"]["claimRef"] = claim_reference(claim)
            dirty = True
        ann = body["metadata"].setdefault("annotations", {})
        if by_controller and ANN_BOUND_BY_CONTROLLER not in ann:
            ann[ANN_BOUND_BY_CONTROLLER] = "yes"
            dirty = True
        if not dirty:
            return pv
        updated, _ = await self.ctx.objects.update(
            self.volumes_kind, "", pv["metadata"]["name"], body, self.write_options()
        )
        return updated

    async def _bind_claim(self, claim: Obj, pv: Obj) -> Obj:
        body = copy.deepcopy(claim)
        ann = body["metadata"].setdefault("annotations", {})
        dirty = False
        pv_name = pv["metadata"]["name"]
        if (body.get("spec") or {}).get("volumeName") != pv_name:
            body.setdefault("spec", {})["volumeName"] = pv_name
            ann.setdefault(ANN_BOUND_BY_CONTROLLER, "yes")
            dirty = True
        if ANN_BIND_COMPLETED not in ann:
            ann[ANN_BIND_COMPLETED] = "yes"
            dirty = True
        if not dirty:
            return claim
        md = claim["metadata"]
        updated, _ = await self.ctx.objects.update(
            self.claims_kind, md["namespace"], md["name"], body, self.write_options()
        )
        return updated

    async def _claim_status(self, claim: Obj, phase: str, pv: Obj | None) -> Obj:
        """Set the claim's phase; capacity and access modes follow the volume (cleared
        without one; capacity only set when the claim becomes Bound)."""
        current = claim.get("status") or {}
        status = copy.deepcopy(current)
        status["phase"] = phase
        if pv is None:
            status.pop("accessModes", None)
            status.pop("capacity", None)
        else:
            spec = pv.get("spec") or {}
            status["accessModes"] = list(spec.get("accessModes") or ())
            if current.get("phase") != phase:
                capacity = spec.get("capacity") or {}
                if "storage" not in capacity:
                    raise ValueError(
                        f'PersistentVolume "{pv["metadata"]["name"]}" is without a storage capacity'
                    )
                have = (current.get("capacity") or {}).get("storage")
                if have is None or _storage(have) != _storage(capacity["storage"]):
                    status["capacity"] = dict(capacity)
        if status == current:
            return claim
        body = copy.deepcopy(claim)
        body["status"] = status
        md = claim["metadata"]
        updated, _ = await self.ctx.objects.update(
            self.claims_kind, md["namespace"], md["name"], body, self.write_options("status")
        )
        return updated

    async def _volume_phase(self, pv: Obj, phase: str, message: str = "") -> Obj:
        current = pv.get("status") or {}
        if current.get("phase") == phase:
            return pv
        body = copy.deepcopy(pv)
        status = body.setdefault("status", {})
        status["phase"] = phase
        if message:
            status["message"] = message
        else:
            status.pop("message", None)
        updated, _ = await self.ctx.objects.update(
            self.volumes_kind, "", pv["metadata"]["name"], body, self.write_options("status")
        )
        return updated


class DefaultStorageClass:
    """Admission (upstream DefaultStorageClass): a claim created without a class name gets
    the default StorageClass. Register with ``DefaultStorageClass(ctx.cache("storage.k8s.io",
    "storageclasses"))`` in the admission chain."""

    def __init__(self, classes: ObjectCache) -> None:
        self.classes = classes

    def __call__(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        if (kind.group, kind.resource) != ("", "persistentvolumeclaims") or old is not None:
            return
        spec = obj.setdefault("spec", {})
        if spec.get(
            "storageClassName"
        ) is not None or ANN_BETA_STORAGE_CLASS in objects.annotations_of(obj):
            return
        default = default_storage_class(self.classes.items())
        if default is not None:
            spec["storageClassName"] = default["metadata"]["name"]
