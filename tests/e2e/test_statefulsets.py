"""StatefulSets against a cluster of sim nodes, driven with the real kubectl: ordinal pods
created one at a time (each after the previous is Running and Ready) with their claims,
scale-down from the highest ordinal, partitioned rolling updates, ``rollout status`` and
``rollout history``/``undo``. Ordering is checked on every pod change a ``kubectl get -w``
reports, not on samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from edgek.objects import Obj
from tests.e2e.cluster import (
    Cluster,
    image_of,
    replay,
    running_and_ready,
    start_cluster,
    start_watch,
    wait_for,
)
from tests.manifests import workload

#: Claims bind when a pod is scheduled (WaitForFirstConsumer) by a provisioner that does not
#: exist here: the scheduler only annotates the claims with the chosen node, so the pods run
#: while their claims stay Pending.
STORAGE_CLASS = "sts-wffc"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Ready 1 s after Running, so "Running but not yet Ready" is a state the watch sees.
    c = start_cluster(
        tmp_path_factory.mktemp("sts"), nodes=3, sim_args=("--pod-ready-seconds", "1")
    )
    c.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS},
                "provisioner": "example.com/absent",
                "volumeBindingMode": "WaitForFirstConsumer",
            }
        ),
    )
    yield c
    c.stop()


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.new_namespace("sts")


def statefulset(replicas: int, image: str = "registry.local/nginx:1", **spec: Any) -> str:
    pod_spec = {"containers": [{"name": "nginx", "image": image}]}
    body = workload("StatefulSet", "web", pod_spec, serviceName="web", replicas=replicas, **spec)
    return json.dumps(body)


def headless_service() -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "clusterIP": "None",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80}],
            },
        }
    )


def pods_of(cluster: Cluster, ns: str) -> dict[str, Obj]:
    items = cluster.get("pods", "-n", ns, "-l", "app=web")["items"]
    return {p["metadata"]["name"]: p for p in items}


def rollout_status(cluster: Cluster, ns: str) -> str:
    return cluster.kubectl("rollout", "status", "statefulset/web", "-n", ns, "--timeout=60s")


def check_ordered_create_and_delete(events: list[tuple[str, Obj]]) -> None:
    """web-0..2 were created in order, each after the previous one was Ready, and scaled
    down from the highest ordinal, each after the higher ones were gone."""
    created: list[str] = []
    deleting: list[str] = []
    for type_, pod, before in replay(events):
        name = pod["metadata"]["name"]
        if not name.startswith("web-"):
            continue
        ordinal = int(name.removeprefix("web-"))
        if name not in before and type_ != "DELETED":
            created.append(name)
            if ordinal > 0:
                prev = before.get(f"web-{ordinal - 1}")
                assert prev is not None, f"{name} created before web-{ordinal - 1}"
                assert running_and_ready(prev), f"{name} created before web-{ordinal - 1} Ready"
                assert not prev["metadata"].get("deletionTimestamp")
        old = before.get(name)
        if pod["metadata"].get("deletionTimestamp") and not (
            old and old["metadata"].get("deletionTimestamp")
        ):
            deleting.append(name)
            higher = [p for p in before if p.startswith("web-") and p > name]
            assert not higher, f"{name} deleted while {higher} still existed"
    assert created == ["web-0", "web-1", "web-2"]
    assert deleting == ["web-2", "web-1"]


def test_ordered_creation_claims_and_reverse_scale_down(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    watch = start_watch(cluster, ns)
    try:
        k("apply", "-n", ns, "-f", "-", input=headless_service())
        template = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        k("apply", "-n", ns, "-f", "-", input=statefulset(3, volumeClaimTemplates=[template]))
        out = rollout_status(cluster, ns)
        # defaulting gives every RollingUpdate set a partition (0), so kubectl reports the
        # partitioned form, as upstream does
        assert "partitioned roll out complete: 3 new pods have been updated" in out

        pods = pods_of(cluster, ns)
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        claims = {c["metadata"]["name"]: c for c in cluster.get("pvc", "-n", ns)["items"]}
        assert sorted(claims) == ["data-web-0", "data-web-1", "data-web-2"]
        for i in range(3):
            pod = pods[f"web-{i}"]
            assert running_and_ready(pod)
            assert pod["spec"]["hostname"] == f"web-{i}"
            assert pod["spec"]["subdomain"] == "web"
            assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"data-web-{i}"
            claim = claims[f"data-web-{i}"]
            assert claim["metadata"]["labels"] == {"app": "web"}
            assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
            # the scheduler picked the claim's node: the pod's
            annotations = claim["metadata"].get("annotations") or {}
            assert annotations.get("volume.kubernetes.io/selected-node") == pod["spec"]["nodeName"]

        k("scale", "statefulset/web", "-n", ns, "--replicas=1")
        wait_for(lambda: list(pods_of(cluster, ns)) == ["web-0"], "scale down to web-0")
        status = wait_for(
            lambda: (
                (s := cluster.get("statefulset", "web", "-n", ns)["status"])["replicas"] == 1 and s
            ),
            "status.replicas to reach 1",
        )
        assert status["currentRevision"] == status["updateRevision"]
        # claims outlive scale-down (whenScaled: Retain)
        assert len(cluster.get("pvc", "-n", ns)["items"]) == 3
    finally:
        events = watch.stop()

    check_ordered_create_and_delete(events)


def check_highest_ordinal_first(events: list[tuple[str, Obj]]) -> None:
    """web-1 then web-0 were replaced, each only once every higher ordinal ran nginx:2."""
    deleted = []
    for _, pod, before in replay(events):
        name = pod["metadata"]["name"]
        old = before.get(name)
        if not pod["metadata"].get("deletionTimestamp") or (
            old and old["metadata"].get("deletionTimestamp")
        ):
            continue
        deleted.append(name)
        # the next lower ordinal goes only once every higher one runs the new template
        for higher in range(int(name.removeprefix("web-")) + 1, 3):
            replaced = before.get(f"web-{higher}")
            assert replaced is not None and running_and_ready(replaced), (name, higher)
            assert image_of(replaced) == "registry.local/nginx:2", (name, higher)
    assert deleted == ["web-1", "web-0"]


def test_partitioned_rolling_update_history_and_undo(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    k("apply", "-n", ns, "-f", "-", input=headless_service())
    k("apply", "-n", ns, "-f", "-", input=statefulset(3))
    rollout_status(cluster, ns)
    first = cluster.get("statefulset", "web", "-n", ns)["status"]["currentRevision"]

    partition = {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}
    k("patch", "statefulset/web", "-n", ns, "--type=merge", "-p", json.dumps(partition))
    k("set", "image", "statefulset/web", "-n", ns, "nginx=registry.local/nginx:2")
    out = rollout_status(cluster, ns)
    assert "partitioned roll out complete: 1 new pods have been updated" in out
    pods = pods_of(cluster, ns)
    assert {n: image_of(p) for n, p in pods.items()} == {
        "web-0": "registry.local/nginx:1",
        "web-1": "registry.local/nginx:1",
        "web-2": "registry.local/nginx:2",
    }
    assert all(running_and_ready(p) for p in pods.values())
    status = cluster.get("statefulset", "web", "-n", ns)["status"]
    second = status["updateRevision"]
    assert status["currentRevision"] == first
    assert second != first
    assert status["updatedReplicas"] == 1 and status["currentReplicas"] == 2
    labels = {n: p["metadata"]["labels"]["controller-revision-hash"] for n, p in pods.items()}
    assert labels == {"web-0": first, "web-1": first, "web-2": status["updateRevision"]}

    # lowering the partition rolls the rest, highest ordinal first, one at a time
    watch = start_watch(cluster, ns)
    try:
        partition["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0
        k("patch", "statefulset/web", "-n", ns, "--type=merge", "-p", json.dumps(partition))
        out = rollout_status(cluster, ns)
        assert "partitioned roll out complete: 3 new pods have been updated" in out
    finally:
        events = watch.stop()
    check_highest_ordinal_first(events)
    status = cluster.get("statefulset", "web", "-n", ns)["status"]
    assert status["currentRevision"] == status["updateRevision"] == second
    assert {image_of(p) for p in pods_of(cluster, ns).values()} == {"registry.local/nginx:2"}

    revisions = cluster.get("controllerrevisions", "-n", ns)["items"]
    assert sorted(r["revision"] for r in revisions) == [1, 2]
    history = k("rollout", "history", "statefulset/web", "-n", ns)
    assert "REVISION" in history and "1 " in history and "2 " in history
    detail = k("rollout", "history", "statefulset/web", "-n", ns, "--revision=2")
    assert "registry.local/nginx:2" in detail

    k("rollout", "undo", "statefulset/web", "-n", ns)
    rollout_status(cluster, ns)
    wait_for(
        lambda: {image_of(p) for p in pods_of(cluster, ns).values()} == {"registry.local/nginx:1"},
        "undo to bring back nginx:1",
    )
    status = cluster.get("statefulset", "web", "-n", ns)["status"]
    numbers = {
        r["metadata"]["name"]: r["revision"]
        for r in cluster.get("controllerrevisions", "-n", ns)["items"]
    }
    # the revision undone to is renumbered, not copied
    assert status["updateRevision"] == first
    assert numbers == {first: 3, second: 2}
