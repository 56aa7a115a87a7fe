"""The local-path provisioner with the binder on the controller bench: the default class at
start, a WaitForFirstConsumer claim provisioned on the selected node and bound, the volume
deleted after its claim (not while a pod still mounts it), and refused claims."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from edgek.objects import Obj
from server.controllers.localpath import (
    ANN_LOCAL_SELECTED_NODE,
    CLASS_NAME,
    PROVISIONER,
    LocalPathProvisioner,
    ProvisioningError,
    default_class,
    local_volume,
)
from server.controllers.volumebinding import (
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    PersistentVolumeBinder,
)
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness

NS = "default"


def claim(name: str, *, modes: tuple[str, ...] = ("ReadWriteOnce",), **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": {
            "accessModes": list(modes),
            "resources": {"requests": {"storage": "2Gi"}},
            "storageClassName": CLASS_NAME,
            **spec,
        },
    }


def node(name: str, hostname: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": hostname}},
    }


def test_local_volume_shape() -> None:
    sc = default_class()
    pv = local_volume(
        claim("data"), sc, node("n1", "n1-host"), PurePosixPath("/var/lib/edgek/storage")
    )
    assert pv["metadata"] == {
        "name": "pvc-uid-data",
        "annotations": {ANN_PROVISIONED_BY: PROVISIONER, ANN_LOCAL_SELECTED_NODE: "n1"},
    }
    spec = pv["spec"]
    assert spec["hostPath"] == {
        "path": "/var/lib/edgek/storage/pvc-uid-data_default_data",
        "type": "DirectoryOrCreate",
    }
    assert spec["capacity"] == {"storage": "2Gi"}
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["storageClassName"] == CLASS_NAME
    assert (spec["claimRef"]["name"], spec["claimRef"]["uid"]) == ("data", "uid-data")
    # affinity to the node's hostname label, as the upstream provisioner writes it
    term = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1-host"]}


def test_local_volume_refuses_shared_and_block_claims() -> None:
    sc, n, root = default_class(), node("n1", "n1"), PurePosixPath("/s")
    with pytest.raises(ProvisioningError, match="NodePath only supports ReadWriteOnce"):
        local_volume(claim("rwx", modes=("ReadWriteMany",)), sc, n, root)
    with pytest.raises(ProvisioningError, match="does not support block volume"):
        local_volume(claim("blk", volumeMode="Block"), sc, n, root)


async def _get(h: Harness, resource: str, name: str) -> Obj | None:
    return await h.get("", resource, "" if resource == "persistentvolumes" else NS, name)


async def _events(h: Harness, reason: str) -> list[str]:
    await h.events.flush()
    return [e["message"] for e in await h.list("", "events", NS) if e["reason"] == reason]


async def _start(h: Harness) -> None:
    """Start binder and provisioner; return once the class is in the shared cache."""
    await h.start(PersistentVolumeBinder, LocalPathProvisioner)

    async def class_ready() -> bool:
        return h.ctx.cache("storage.k8s.io", "storageclasses").get("", CLASS_NAME) is not None

    await h.wait_for(class_ready, what="class cached")


async def _select_node(h: Harness, name: str, node_name: str) -> None:
    """Play the scheduler: a pod using the claim was bound to ``node_name``."""

    async def mutate(obj: Obj | None) -> Obj | None:
        assert obj is not None
        obj["metadata"].setdefault("annotations", {})[ANN_SELECTED_NODE] = node_name
        return obj

    await h.objects.modify(h.kind("", "persistentvolumeclaims"), NS, name, mutate, WriteOptions())


async def test_default_class_created_at_start_and_kept(harness: Harness) -> None:
    h = harness
    await h.start(LocalPathProvisioner)

    async def exists() -> bool:
        return await h.get("storage.k8s.io", "storageclasses", "", CLASS_NAME) is not None

    await h.wait_for(exists, what="local-path class")
    sc = await h.get("storage.k8s.io", "storageclasses", "", CLASS_NAME)
    assert sc is not None
    assert sc["provisioner"] == "rancher.io/local-path"
    assert sc["reclaimPolicy"] == "Delete"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


async def test_provisioned_on_selected_node_and_bound(harness: Harness) -> None:
    h = harness
    await h.create("", "nodes", "", node("node-a", "host-a"))
    await _start(h)
    created = await h.create("", "persistentvolumeclaims", NS, claim("data"))
    uid = created["metadata"]["uid"]
    await h.settle()
    assert await h.list("", "persistentvolumes") == []
    assert await _events(h, "WaitForFirstConsumer") == [
        "waiting for first consumer to be created before binding"
    ]
    await _select_node(h, "data", "node-a")

    async def bound() -> bool:
        got = await _get(h, "persistentvolumeclaims", "data")
        return got is not None and got["status"].get("phase") == "Bound"

    await h.wait_for(bound, what="claim bound")
    await h.settle()
    pv = await _get(h, "persistentvolumes", f"pvc-{uid}")
    assert pv is not None
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["hostPath"]["path"] == str(
        h.ctx.config.data_dir / "storage" / f"pvc-{uid}_{NS}_data"
    )
    assert pv["metadata"]["annotations"][ANN_LOCAL_SELECTED_NODE] == "node-a"
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term["values"] == ["host-a"]
    got = await _get(h, "persistentvolumeclaims", "data")
    assert got is not None
    assert got["spec"]["volumeName"] == f"pvc-{uid}"
    assert got["status"]["capacity"] == {"storage": "2Gi"}
    assert await _events(h, "ProvisioningSucceeded") == [
        f"Successfully provisioned volume pvc-{uid}"
    ]
    assert await _events(h, "Provisioning") == [
        f'External provisioner is provisioning volume for claim "{NS}/data"'
    ]
    assert len(await h.list("", "persistentvolumes")) == 1


async def test_volume_deleted_after_claim_once_pods_are_done(harness: Harness) -> None:
    h = harness
    await h.create("", "nodes", "", node("node-a", "node-a"))
    await _start(h)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user", "namespace": NS},
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "c", "image": "img"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    await h.create("", "pods", NS, pod)
    c = claim("data")
    c["metadata"]["annotations"] = {ANN_SELECTED_NODE: "node-a"}
    created = await h.create("", "persistentvolumeclaims", NS, c)
    name = f"pvc-{created['metadata']['uid']}"

    async def bound() -> bool:
        pv = await _get(h, "persistentvolumes", name)
        return pv is not None and pv["status"].get("phase") == "Bound"

    await h.wait_for(bound, what="volume bound")
    await h.objects.delete(h.kind("", "persistentvolumeclaims"), NS, "data", DeleteOptions())

    async def released() -> bool:
        pv = await _get(h, "persistentvolumes", name)
        return pv is not None and pv["status"].get("phase") == "Released"

    await h.wait_for(released, what="volume released")
    await h.settle()
    # the pod still runs on the data: the volume stays
    assert await _get(h, "persistentvolumes", name) is not None

    async def finish(obj: Obj | None) -> Obj | None:
        assert obj is not None
        obj["status"] = {"phase": "Succeeded"}
        return obj

    await h.objects.modify(
        h.kind("", "pods"), NS, "user", finish, WriteOptions(subresource="status")
    )

    async def gone() -> bool:
        return await _get(h, "persistentvolumes", name) is None

    await h.wait_for(gone, what="volume deleted")


async def test_refused_claims_get_events(harness: Harness) -> None:
    h = harness
    await h.create("", "nodes", "", node("node-a", "node-a"))
    await _start(h)
    for name, extra in (("shared", {"modes": ("ReadWriteMany",)}), ("nowhere", {})):
        c = claim(name, **extra)
        c["metadata"]["annotations"] = {
            ANN_SELECTED_NODE: "node-a" if name == "shared" else "ghost"
        }
        await h.create("", "persistentvolumeclaims", NS, c)

    async def failed() -> bool:
        return len(await _events(h, "ProvisioningFailed")) == 2

    await h.wait_for(failed, what="two failures")
    assert sorted(await _events(h, "ProvisioningFailed")) == [
        'failed to get target node: nodes "ghost" not found',
        'failed to provision volume with StorageClass "local-path": NodePath only supports '
        "ReadWriteOnce and ReadWriteOncePod (1.22+) access modes",
    ]
    assert await h.list("", "persistentvolumes") == []
