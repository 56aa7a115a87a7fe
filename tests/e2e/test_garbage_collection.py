"""Garbage collection and namespace lifecycle against a cluster of sim nodes, driven with
the real kubectl: a deleted namespace is emptied (Deployment, ReplicaSet, pods, Service,
ConfigMap) and then goes away; ``kubectl delete --cascade=background|orphan|foreground``
on a Deployment. Finalizers placed by the test hold single objects so the in-between
states (Terminating namespace, owner waiting in the foreground) can be observed."""

from __future__ import annotations

import json

import pytest

from edgek.objects import Obj
from tests.e2e.cluster import Cluster, cluster_fixture, running_and_ready, wait_for
from tests.manifests import workload

HOLD = "example.com/hold"
FOREGROUND = "foregroundDeletion"


cluster = cluster_fixture("gc", prefix="gc-")


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.new_namespace("gc")


def deployment(name: str, replicas: int) -> str:
    pod_spec = {"containers": [{"name": "c", "image": "registry.local/nginx:1"}]}
    return json.dumps(workload("Deployment", name, pod_spec, replicas=replicas))


def roll_out(cluster: Cluster, ns: str, name: str, replicas: int) -> tuple[Obj, Obj, list[Obj]]:
    """Apply a Deployment and wait for it: (deployment, its ReplicaSet, its pods)."""
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment(name, replicas))
    cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=60s")
    d = cluster.get("deployment", name, "-n", ns)
    (rs,) = cluster.get("rs", "-n", ns, "-l", f"app={name}")["items"]
    pods = cluster.get("pods", "-n", ns, "-l", f"app={name}")["items"]
    assert len(pods) == replicas and all(running_and_ready(p) for p in pods)
    return d, rs, pods


def try_get(cluster: Cluster, *args: str) -> Obj | None:
    """``kubectl get -o json``, or None when it is NotFound."""
    res = cluster.kubectl.run("get", *args, "-o", "json", check=False)
    if res.returncode != 0:
        assert "NotFound" in res.stderr, res.stderr
        return None
    return dict(json.loads(res.stdout))


def names(cluster: Cluster, resource: str, ns: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cluster.get(resource, "-n", ns)["items"])


def release(cluster: Cluster, resource: str, name: str, ns: str) -> None:
    """Remove the test's finalizer again."""
    patch = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])
    cluster.kubectl("patch", resource, name, "-n", ns, "--type=json", "-p", patch)


def test_deleting_a_namespace_deletes_everything_in_it(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    roll_out(cluster, ns, "web", 3)
    k("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:80")
    k("create", "configmap", "settings", "-n", ns, "--from-literal=a=1")
    # a finalizer holds one object, so the namespace is observably Terminating meanwhile
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": [HOLD]},
    }
    k("apply", "-n", ns, "-f", "-", input=json.dumps(held))

    k("delete", "namespace", ns, "--wait=false")
    namespace = cluster.get("namespace", ns)
    assert namespace["metadata"].get("deletionTimestamp")
    assert namespace["status"]["phase"] == "Terminating"

    def emptied() -> bool:
        return all(
            not names(cluster, resource, ns)
            for resource in ("deployments", "replicasets", "pods", "services")
        ) and names(cluster, "configmaps", ns) == ["held"]

    wait_for(emptied, f"namespace {ns} to be emptied but for the held ConfigMap")
    # the held object is being deleted and keeps the namespace
    cm = cluster.get("configmap", "held", "-n", ns)
    assert cm["metadata"].get("deletionTimestamp")
    assert cluster.get("namespace", ns)["status"]["phase"] == "Terminating"

    release(cluster, "configmap", "held", ns)
    wait_for(lambda: try_get(cluster, "namespace", ns) is None, f"namespace {ns} to go away")
    assert ns not in {n["metadata"]["name"] for n in cluster.get("namespaces")["items"]}


def test_background_deletion_removes_dependents(cluster: Cluster, ns: str) -> None:
    roll_out(cluster, ns, "web", 2)
    cluster.kubectl("delete", "deployment", "web", "-n", ns)
    wait_for(
        lambda: not names(cluster, "replicasets", ns) and not names(cluster, "pods", ns),
        "the ReplicaSet and its pods to be collected",
    )


def test_orphan_deletion_keeps_the_replica_set_and_pods(cluster: Cluster, ns: str) -> None:
    d, rs, pods = roll_out(cluster, ns, "web", 3)
    cluster.kubectl("delete", "deployment", "web", "-n", ns, "--cascade=orphan")
    wait_for(
        lambda: try_get(cluster, "deployment", "web", "-n", ns) is None,
        "the deployment to go away",
    )

    def orphaned() -> Obj | None:
        current = try_get(cluster, "rs", rs["metadata"]["name"], "-n", ns)
        assert current is not None, "the ReplicaSet was deleted"
        return None if current["metadata"].get("ownerReferences") else current

    current = wait_for(orphaned, "the ReplicaSet to lose its owner reference")
    assert current["metadata"]["uid"] == rs["metadata"]["uid"]
    assert current["spec"]["replicas"] == 3
    # its pods are untouched: the same ones, still owned by it
    after = cluster.get("pods", "-n", ns, "-l", "app=web")["items"]
    assert sorted(p["metadata"]["uid"] for p in after) == sorted(p["metadata"]["uid"] for p in pods)
    for pod in after:
        assert running_and_ready(pod) and not pod["metadata"].get("deletionTimestamp")
        (ref,) = pod["metadata"]["ownerReferences"]
        assert ref["uid"] == rs["metadata"]["uid"]
    assert d["metadata"]["uid"] not in json.dumps(after)


def test_foreground_deletion_waits_for_dependents(cluster: Cluster, ns: str) -> None:
    d, rs, pods = roll_out(cluster, ns, "web", 2)
    held = pods[0]["metadata"]["name"]
    patch = json.dumps({"metadata": {"finalizers": [HOLD]}})
    cluster.kubectl("patch", "pod", held, "-n", ns, "--type=merge", "-p", patch)

    cluster.kubectl("delete", "deployment", "web", "-n", ns, "--cascade=foreground", "--wait=false")
    owner = cluster.get("deployment", "web", "-n", ns)
    assert owner["metadata"].get("deletionTimestamp")
    assert FOREGROUND in owner["metadata"]["finalizers"]

    def pods_going() -> bool:
        remaining = cluster.get("pods", "-n", ns, "-l", "app=web")["items"]
        return [p["metadata"]["name"] for p in remaining] == [held] and bool(
            remaining[0]["metadata"].get("deletionTimestamp")
        )

    wait_for(pods_going, "every pod but the held one to be deleted")
    # the ReplicaSet is itself deleted in the foreground (it has a dependent left) and the
    # Deployment waits for it
    replica_set = cluster.get("rs", rs["metadata"]["name"], "-n", ns)
    assert replica_set["metadata"].get("deletionTimestamp")
    assert FOREGROUND in replica_set["metadata"]["finalizers"]
    owner = cluster.get("deployment", "web", "-n", ns)
    assert owner["metadata"]["uid"] == d["metadata"]["uid"]
    assert FOREGROUND in owner["metadata"]["finalizers"]

    release(cluster, "pod", held, ns)
    wait_for(
        lambda: try_get(cluster, "deployment", "web", "-n", ns) is None,
        "the deployment to go once its dependents are gone",
    )
    assert not names(cluster, "replicasets", ns)
    assert not names(cluster, "pods", ns)
