"""The local-path dynamic provisioner (k3s's ``local-storage``: rancher/local-path-provisioner
behind the ``local-path`` StorageClass), as API objects only.

At start the default StorageClass ``local-path`` is created when missing (provisioner
``rancher.io/local-path``, reclaimPolicy Delete, WaitForFirstConsumer, the default-class
annotation), as k3s's local-storage manifest does.

A claim the binder handed to ``rancher.io/local-path`` (its storage-provisioner annotation)
gets, once the scheduler has chosen a node (``volume.kubernetes.io/selected-node``), a
PersistentVolume ``pvc-<claim uid>``: a ``hostPath`` (DirectoryOrCreate) at
``<data dir>/storage/pvc-<uid>_<namespace>_<name>`` (``/var/lib/edgek/storage/...`` by
default, as k3s uses ``<data dir>/storage``), the claim's size and access modes, a
``claimRef`` to the claim, required node affinity to that node's ``kubernetes.io/hostname``
and the class's reclaim policy; the binder then binds the two.

A Released volume of this provisioner with reclaimPolicy Delete is deleted once no running
pod still mounts its claim. Nothing here touches a filesystem: the node's agent creates the
directory when a pod mounts the volume and removes it after the volume is gone. What it
needs for that is recorded in the volume: the node (``local.path.provisioner/selected-node``
and the node affinity) and the directory (``spec.hostPath.path``; the directory name starts
with the volume's name, so a directory under the storage root whose volume no longer exists
is one to remove).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from edgek import objects
from edgek.objects import Obj
from edgek.status import ApiError
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.controllers.volumebinding import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_DEFAULT_CLASS,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    POD_CLAIMS_INDEX,
    VOLUME_CLAIM_INDEX,
    WAIT_FOR_FIRST_CONSUMER,
    claim_class,
    claim_reference,
    index_pod_claims,
    index_volume_claim,
    pod_terminated,
)
from server.storage.objectstore import DeleteOptions

PROVISIONER = "rancher.io/local-path"
CLASS_NAME = "local-path"
#: The node a volume's directory lives on (the upstream provisioner's annotation).
ANN_LOCAL_SELECTED_NODE = "local.path.provisioner/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: Access modes a node-local directory can serve.
SUPPORTED_MODES = ("ReadWriteOnce", "ReadWriteOncePod")
#: How soon a claim whose selected node is unknown is tried again.
NODE_RETRY_SECONDS = 10.0

_CLASS = "class"
_CLAIM = "claim:"
_VOLUME = "volume:"


class ProvisioningError(Exception):
    """Why a volume cannot be provisioned for a claim (the event message)."""


def default_class() -> Obj:
    """The ``local-path`` StorageClass as k3s ships it."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS_NAME, "annotations": {ANN_DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": WAIT_FOR_FIRST_CONSUMER,
    }


def volume_name(claim: Obj) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def volume_path(root: PurePosixPath, claim: Obj) -> str:
    """``<root>/pvc-<uid>_<namespace>_<name>``, the upstream provisioner's folder name."""
    md = claim["metadata"]
    return str(root / f"{volume_name(claim)}_{md['namespace']}_{md['name']}")


def local_volume(claim: Obj, sc: Obj, node: Obj, root: PurePosixPath) -> Obj:
    """The PersistentVolume for ``claim`` on ``node`` (raises ProvisioningError)."""
    spec = claim.get("spec") or {}
    if spec.get("volumeMode") == "Block":
        raise ProvisioningError(f"{PROVISIONER} does not support block volume provisioning")
    class_name = sc["metadata"]["name"]
    for mode in spec.get("accessModes") or ():
        if mode not in SUPPORTED_MODES:
            raise ProvisioningError(
                f'failed to provision volume with StorageClass "{class_name}": NodePath only '
                "supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"
            )
    node_name = node["metadata"]["name"]
    hostname = (node["metadata"].get("labels") or {}).get(HOSTNAME_LABEL) or node_name
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    pv_spec: Obj = {
        "capacity": {"storage": storage},
        "accessModes": list(spec.get("accessModes") or ()),
        "hostPath": {"path": volume_path(root, claim), "type": "DirectoryOrCreate"},
        "claimRef": claim_reference(claim),
        "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
        "storageClassName": class_name,
        "volumeMode": "Filesystem",
        "nodeAffinity": {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}
                        ]
                    }
                ]
            }
        },
    }
    if sc.get("mountOptions"):
        pv_spec["mountOptions"] = list(sc["mountOptions"])
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {
                ANN_PROVISIONED_BY: PROVISIONER,
                ANN_LOCAL_SELECTED_NODE: node_name,
            },
        },
        "spec": pv_spec,
    }


def _ours(pv: Obj) -> bool:
    return objects.annotations_of(pv).get(ANN_PROVISIONED_BY) == PROVISIONER


class LocalPathProvisioner(Controller):
    """Provisions and deletes ``rancher.io/local-path`` volumes (k3s ``local-storage``)."""

    name = "local-storage"
    manager = "local-path-provisioner"
    component = f"{PROVISIONER}_local-path-provisioner"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.classes_kind = ctx.kind("storage.k8s.io", "storageclasses")
        self.volumes_kind = ctx.kind("", "persistentvolumes")
        self.claims = ctx.cache("", "persistentvolumeclaims")
        self.volumes = ctx.cache("", "persistentvolumes")
        self.classes = ctx.cache("storage.k8s.io", "storageclasses")
        self.nodes = ctx.cache("", "nodes")
        self.pods = ctx.cache("", "pods")
        self.root = PurePosixPath(str(ctx.config.data_dir)) / "storage"
        self.volumes.add_index(VOLUME_CLAIM_INDEX, index_volume_claim)
        self.pods.add_index(POD_CLAIMS_INDEX, index_pod_claims)
        self.claims.on_event(self._claim_event)
        self.volumes.on_event(self._volume_event)
        self.pods.on_event(self._pod_event)

    def start(self) -> None:
        super().start()
        self.queue.enqueue(_CLASS)

    # -- event handlers ----------------------------------------------------------

    def _claim_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is None or (new.get("spec") or {}).get("volumeName"):
            return
        ann = objects.annotations_of(new)
        if PROVISIONER in (ann.get(ANN_STORAGE_PROVISIONER), ann.get(ANN_BETA_STORAGE_PROVISIONER)):
            self.queue.enqueue(_CLAIM + key_of(new))

    def _volume_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and _ours(new) and (new.get("status") or {}).get("phase") == "Released":
            self.queue.enqueue(_VOLUME + new["metadata"]["name"])

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and not pod_terminated(new):
            return
        pod = new if new is not None else old
        assert pod is not None
        for claim in index_pod_claims(pod):
            for pv in self.volumes.by_index(VOLUME_CLAIM_INDEX, claim):
                self._volume_event(None, pv)

    # -- reconcile ---------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key == _CLASS:
            await self._ensure_class()
        elif key.startswith(_CLAIM):
            ns, name = split_key(key[len(_CLAIM) :])
            claim = self.claims.get(ns, name)
            if claim is not None:
                await self._provision(claim)
        elif key.startswith(_VOLUME):
            pv = self.volumes.get("", key[len(_VOLUME) :])
            if pv is not None:
                await self._delete(pv)

    async def _ensure_class(self) -> None:
        if self.classes.get("", CLASS_NAME) is not None:
            return
        try:
            await self.ctx.objects.create(
                self.classes_kind, "", default_class(), self.write_options()
            )
        except ApiError as e:
            if e.code != 409:
                raise

    def _class_to_provision(self, claim: Obj) -> Obj | None:
        """The StorageClass of an unbound claim this provisioner should serve, if any and
        its volume does not exist yet."""
        if (claim.get("spec") or {}).get("volumeName"):
            return None
        ann = objects.annotations_of(claim)
        if PROVISIONER not in (
            ann.get(ANN_STORAGE_PROVISIONER),
            ann.get(ANN_BETA_STORAGE_PROVISIONER),
        ):
            return None
        sc = self.classes.get("", claim_class(claim))
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return None
        if self.volumes.get("", volume_name(claim)) is not None:
            return None
        return sc

    async def _provision(self, claim: Obj) -> None:
        sc = self._class_to_provision(claim)
        if sc is None:
            return
        ann = objects.annotations_of(claim)
        node_name = ann.get(ANN_SELECTED_NODE, "")
        if not node_name and sc.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER:
            return  # the scheduler has not chosen a node yet
        md = claim["metadata"]
        self.record(
            claim,
            "Normal",
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{md["namespace"]}/{md["name"]}"',
        )
        node = self.nodes.get("", node_name) if node_name else None
        if node_name and node is None:
            self.record(
                claim,
                "Warning",
                "ProvisioningFailed",
                f'failed to get target node: nodes "{node_name}" not found',
            )
            self.queue.enqueue_after(_CLAIM + key_of(claim), NODE_RETRY_SECONDS)
            return
        try:
            if node is None:
                raise ProvisioningError(
                    f'failed to provision volume with StorageClass "{sc["metadata"]["name"]}": '
                    "configuration error, no node was specified"
                )
            pv = local_volume(claim, sc, node, self.root)
        except ProvisioningError as e:
            self.record(claim, "Warning", "ProvisioningFailed", str(e))
            return
        try:
            await self.ctx.objects.create(self.volumes_kind, "", pv, self.write_options())
        except ApiError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                return
            raise
        self.record(
            claim,
            "Normal",
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {pv['metadata']['name']}",
        )

    async def _delete(self, pv: Obj) -> None:
        """Delete a Released volume with reclaimPolicy Delete once nothing mounts it."""
        if not _ours(pv) or pv["metadata"].get("deletionTimestamp"):
            return
        if (pv.get("status") or {}).get("phase") != "Released":
            return
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Delete":
            return
        for claim in index_volume_claim(pv):
            if any(not pod_terminated(p) for p in self.pods.by_index(POD_CLAIMS_INDEX, claim)):
                return  # a pod still runs on the data; its end re-enqueues the volume
        try:
            await self.ctx.objects.delete(
                self.volumes_kind,
                "",
                pv["metadata"]["name"],
                DeleteOptions(precondition_uid=pv["metadata"].get("uid", "")),
            )
        except ApiError as e:
            if e.code not in (404, 409):
                raise
