"""Persistent volumes against a cluster of sim nodes, driven with the real kubectl: the
default ``local-path`` StorageClass, claims provisioned on the node their pod was scheduled
to and bound (Deployment, StatefulSet ``volumeClaimTemplates``), and the volume deleted
after its claim once no pod uses it."""

from __future__ import annotations

import functools
import json

import pytest

from edgek.objects import Obj
from tests.e2e.cluster import Cluster, cluster_fixture, wait_for
from tests.manifests import workload

IMAGE = "registry.local/app:v1"


cluster = cluster_fixture("volumes")


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.new_namespace("vol")


def apply(cluster: Cluster, ns: str, *objs: Obj) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input="\n".join(json.dumps(o) for o in objs))


def claim(name: str, *, storage_class: str | None = "local-path") -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": spec,
    }


def pod_spec(claim_name: str) -> Obj:
    """A pod mounting the claim ``claim_name`` as volume ``data``."""
    return {
        "containers": [
            {
                "name": "app",
                "image": IMAGE,
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
    }


def web(*, mount: bool) -> Obj:
    """StatefulSet ``web`` (2 replicas) with claim template ``data``; its containers mount
    the template's volume when ``mount``."""
    template = {k: v for k, v in claim("data").items() if k in ("metadata", "spec")}
    container: Obj = {"name": "app", "image": IMAGE}
    if mount:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return workload(
        "StatefulSet",
        "web",
        {"containers": [container]},
        replicas=2,
        serviceName="web",
        volumeClaimTemplates=[template],
    )


def bound_claim(cluster: Cluster, ns: str, name: str) -> Obj | None:
    pvc = cluster.get("pvc", name, "-n", ns)
    return pvc if pvc.get("status", {}).get("phase") == "Bound" else None


def running_pods(cluster: Cluster, ns: str, selector: str, count: int) -> list[Obj]:
    pods = [
        p
        for p in cluster.get("pods", "-n", ns, "-l", selector)["items"]
        if p.get("status", {}).get("phase") == "Running"
    ]
    return pods if len(pods) == count else []


def volume_node(pv: Obj) -> str:
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    values = term["matchExpressions"][0]["values"]
    assert len(values) == 1
    return str(values[0])


def reasons(cluster: Cluster, ns: str, name: str) -> set[str]:
    events = cluster.get("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")
    return {e["reason"] for e in events["items"]}


def test_local_path_is_the_default_class(cluster: Cluster) -> None:
    def listed() -> str:
        out = cluster.kubectl("get", "storageclass")
        return out if "local-path" in out else ""

    out = wait_for(listed, "local-path StorageClass")
    row = next(line.split() for line in out.splitlines() if line.startswith("local-path"))
    assert row[:5] == [
        "local-path",
        "(default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
    ]


def test_deployment_claim_provisioned_on_its_node(cluster: Cluster, ns: str) -> None:
    apply(cluster, ns, claim("data"))
    wait_for(
        lambda: "WaitForFirstConsumer" in reasons(cluster, ns, "data"), "WaitForFirstConsumer event"
    )
    assert cluster.get("pvc", "data", "-n", ns)["status"]["phase"] == "Pending"
    apply(cluster, ns, workload("Deployment", "app", pod_spec("data"), replicas=1))
    pvc = wait_for(lambda: bound_claim(cluster, ns, "data"), "claim bound")
    [pod] = wait_for(lambda: running_pods(cluster, ns, "app=app", 1), "pod running")
    pv = cluster.get("pv", pvc["spec"]["volumeName"])
    assert pv["status"]["phase"] == "Bound"
    assert volume_node(pv) == pod["spec"]["nodeName"]
    assert (
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"
    )
    uid = pvc["metadata"]["uid"]
    assert pv["metadata"]["name"] == f"pvc-{uid}"
    assert pv["spec"]["hostPath"]["path"].endswith(f"/storage/pvc-{uid}_{ns}_data")
    assert pvc["status"]["capacity"] == {"storage": "1Gi"}
    assert {"ExternalProvisioning", "Provisioning", "ProvisioningSucceeded"} <= reasons(
        cluster, ns, "data"
    )
    # kubectl's own view
    row = cluster.kubectl("get", "pvc", "data", "-n", ns, "--no-headers").split()
    assert row[:3] == ["data", "Bound", f"pvc-{uid}"]


def test_statefulset_claims_bound_per_ordinal(cluster: Cluster, ns: str) -> None:
    # the controller adds the claim volumes to each pod; the containers do not mount them
    # here (see test_statefulset_mounting_its_claims)
    apply(cluster, ns, web(mount=False))
    pods = wait_for(
        lambda: running_pods(cluster, ns, "app=web", 2), "web-0 and web-1 running", timeout=60
    )
    node_of = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}
    for ordinal in (0, 1):
        name = f"data-web-{ordinal}"
        pvc = wait_for(functools.partial(bound_claim, cluster, ns, name), f"{name} bound")
        pv = cluster.get("pv", pvc["spec"]["volumeName"])
        assert volume_node(pv) == node_of[f"web-{ordinal}"]
        assert pv["spec"]["claimRef"]["name"] == f"data-web-{ordinal}"


def test_deleting_the_claim_deletes_the_volume(cluster: Cluster, ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user", "labels": {"app": "user"}},
        "spec": pod_spec("scratch"),
    }
    apply(cluster, ns, claim("scratch"), pod)
    pvc = wait_for(lambda: bound_claim(cluster, ns, "scratch"), "claim bound")
    wait_for(lambda: running_pods(cluster, ns, "app=user", 1), "pod running")
    pv_name = pvc["spec"]["volumeName"]
    # while the pod still runs on the data the volume is only released
    cluster.kubectl("delete", "pvc", "scratch", "-n", ns, "--wait=false")
    wait_for(lambda: cluster.get("pv", pv_name)["status"]["phase"] == "Released", "volume released")
    assert cluster.kubectl.run("get", "pv", pv_name, check=False).returncode == 0
    cluster.kubectl("delete", "pod", "user", "-n", ns)

    def gone() -> bool:
        result = cluster.kubectl.run("get", "pv", pv_name, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    wait_for(gone, "volume deleted")


def test_claim_without_class_gets_the_default(cluster: Cluster, ns: str) -> None:
    apply(cluster, ns, claim("plain", storage_class=None))
    assert cluster.get("pvc", "plain", "-n", ns)["spec"].get("storageClassName") == "local-path"


def test_statefulset_mounting_its_claims(cluster: Cluster, ns: str) -> None:
    apply(cluster, ns, web(mount=True))
