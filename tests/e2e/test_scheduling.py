"""The scheduler against a cluster of sim nodes, driven with the real kubectl: nodeSelector,
required node affinity, pod anti-affinity, taints and tolerations, resource fit and
topologySpreadConstraints each decide where pods go; a pod that fits nowhere stays Pending
with the upstream ``FailedScheduling`` message and binds once a fitting node joins.

Every test labels the nodes it uses with a key of its own, so tests do not see each other's
pods or the node that the last test adds."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from edgek.objects import Obj
from tests.e2e.cluster import Cluster, cluster_fixture, wait_for
from tests.manifests import workload

NODES = ("sched-0", "sched-1", "sched-2")


cluster = cluster_fixture("sched", prefix="sched-")


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = cluster.new_namespace("sched")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def container(cpu: str | None = None) -> Obj:
    c: Obj = {"name": "app", "image": "registry.local/app:1"}
    if cpu is not None:
        c["resources"] = {"requests": {"cpu": cpu}}
    return c


def deployment(name: str, replicas: int, cpu: str | None = None, **pod_spec: Any) -> str:
    spec = {"containers": [container(cpu)], **pod_spec}
    return json.dumps(workload("Deployment", name, spec, replicas=replicas))


def pod(name: str, cpu: str | None = None, **pod_spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [container(cpu)], **pod_spec},
        }
    )


def apply(cluster: Cluster, ns: str, manifest: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)


def pods_of(cluster: Cluster, ns: str, app: str) -> list[Obj]:
    return [
        p
        for p in cluster.get("pods", "-n", ns, "-l", f"app={app}")["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]


def bound(cluster: Cluster, ns: str, app: str, count: int) -> list[Obj] | None:
    """The app's pods once exactly ``count`` exist and all are bound."""
    pods = pods_of(cluster, ns, app)
    if len(pods) == count and all(p["spec"].get("nodeName") for p in pods):
        return pods
    return None


def wait_bound(cluster: Cluster, ns: str, app: str, count: int) -> list[Obj]:
    pods: list[Obj] = wait_for(
        lambda: bound(cluster, ns, app, count), f"{count} bound pods of {app}"
    )
    return pods


def node_count(pods: list[Obj]) -> Counter[str]:
    return Counter(p["spec"]["nodeName"] for p in pods)


def label(cluster: Cluster, node: str, *labels: str) -> None:
    cluster.kubectl("label", "node", node, "--overwrite", *labels)


def scheduled_condition(p: Obj) -> Obj | None:
    for cond in p.get("status", {}).get("conditions") or []:
        if cond["type"] == "PodScheduled":
            return dict(cond)
    return None


def unschedulable(cluster: Cluster, ns: str, name: str) -> str:
    """Wait until the pod is marked unschedulable; its PodScheduled message."""

    def check() -> str | None:
        p = cluster.get("pod", name, "-n", ns)
        cond = scheduled_condition(p)
        if cond and cond["status"] == "False" and cond.get("reason") == "Unschedulable":
            assert not p["spec"].get("nodeName")
            assert p["status"]["phase"] == "Pending"
            return str(cond["message"])
        return None

    message: str = wait_for(check, f"{name} marked Unschedulable")
    return message


def failed_scheduling(cluster: Cluster, ns: str, name: str) -> list[str]:
    """Messages of the pod's FailedScheduling events, as ``kubectl get events`` lists them."""
    events = cluster.get(
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.name={name},reason=FailedScheduling",
    )["items"]
    for e in events:
        assert e["type"] == "Warning"
        assert e["source"]["component"] == "default-scheduler"
    return [e["message"] for e in events]


def pending_pod(cluster: Cluster, ns: str, app: str) -> Obj:
    pending = [p for p in pods_of(cluster, ns, app) if not p["spec"].get("nodeName")]
    assert len(pending) == 1, pending
    return pending[0]


def test_node_selector(cluster: Cluster, ns: str) -> None:
    label(cluster, "sched-1", "sel.test/disk=ssd")
    label(cluster, "sched-2", "sel.test/disk=hdd")
    apply(cluster, ns, deployment("ssd", 4, nodeSelector={"sel.test/disk": "ssd"}))
    pods = wait_bound(cluster, ns, "ssd", 4)
    assert node_count(pods) == {"sched-1": 4}
    cluster.kubectl("rollout", "status", "deployment/ssd", "-n", ns, "--timeout=30s")


def test_required_node_affinity(cluster: Cluster, ns: str) -> None:
    for node, tier in zip(NODES, ("gold", "silver", "bronze"), strict=True):
        label(cluster, node, f"aff.test/tier={tier}")
    terms = [
        {
            "matchExpressions": [
                {"key": "aff.test/tier", "operator": "In", "values": ["gold", "silver"]},
                {"key": "aff.test/tier", "operator": "NotIn", "values": ["silver"]},
            ]
        },
        {"matchExpressions": [{"key": "aff.test/tier", "operator": "In", "values": ["bronze"]}]},
    ]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }
    apply(cluster, ns, deployment("tiered", 6, affinity=affinity))
    pods = wait_bound(cluster, ns, "tiered", 6)
    # terms are ORed, expressions ANDed: gold or bronze, never silver
    placed = node_count(pods)
    assert set(placed) <= {"sched-0", "sched-2"}, placed
    assert "sched-1" not in placed


def test_preferred_node_affinity(cluster: Cluster, ns: str) -> None:
    label(cluster, "sched-0", "pref.test/in=yes", "pref.test/disk=hdd")
    label(cluster, "sched-1", "pref.test/in=yes", "pref.test/disk=ssd")
    preference = {
        "weight": 100,
        "preference": {
            "matchExpressions": [{"key": "pref.test/disk", "operator": "In", "values": ["ssd"]}]
        },
    }
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [preference]}}
    apply(
        cluster, ns, deployment("fast", 3, nodeSelector={"pref.test/in": "yes"}, affinity=affinity)
    )
    # the preference (score weight 2) outweighs spreading three replicas over two nodes
    assert node_count(wait_bound(cluster, ns, "fast", 3)) == {"sched-1": 3}


def test_pod_anti_affinity_on_hostname(cluster: Cluster, ns: str) -> None:
    label(cluster, "sched-0", "anti.test/pool=x")
    label(cluster, "sched-2", "anti.test/pool=x")
    affinity = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "solo"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    apply(
        cluster,
        ns,
        deployment("solo", 3, nodeSelector={"anti.test/pool": "x"}, affinity=affinity),
    )

    def two_bound_one_pending() -> list[Obj] | None:
        pods = pods_of(cluster, ns, "solo")
        placed = [p for p in pods if p["spec"].get("nodeName")]
        return placed if len(pods) == 3 and len(placed) == 2 else None

    placed = wait_for(two_bound_one_pending, "two solo pods bound, one left")
    assert node_count(placed) == {"sched-0": 1, "sched-2": 1}
    left = pending_pod(cluster, ns, "solo")["metadata"]["name"]
    message = unschedulable(cluster, ns, left)
    total = len(cluster.get("nodes")["items"])
    assert message == (
        f"0/{total} nodes are available: {total - 2} node(s) didn't match Pod's node "
        "affinity/selector, 2 node(s) didn't match pod anti-affinity rules. preemption: "
        f"0/{total} nodes are available: {total - 2} Preemption is not helpful for "
        "scheduling, 2 No preemption victims found for incoming pod."
    )
    # still pending after a retry: nothing changed that could make it fit
    assert not cluster.get("pod", left, "-n", ns)["spec"].get("nodeName")
    # freeing a node lets it in
    label(cluster, "sched-1", "anti.test/pool=x")
    pods = wait_bound(cluster, ns, "solo", 3)
    assert node_count(pods) == {"sched-0": 1, "sched-1": 1, "sched-2": 1}


def test_taints_and_tolerations(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    for node in NODES:
        label(cluster, node, "taint.test/in=yes")
    label(cluster, "sched-2", "taint.test/infra=yes")
    k("taint", "node", "sched-2", "taint.test/dedicated=infra:NoSchedule")
    try:
        apply(cluster, ns, deployment("plain", 6, nodeSelector={"taint.test/in": "yes"}))
        plain = node_count(wait_bound(cluster, ns, "plain", 6))
        assert set(plain) == {"sched-0", "sched-1"}, plain

        # only sched-2 is labelled infra: without a toleration such a pod fits nowhere
        apply(cluster, ns, pod("intolerant", nodeSelector={"taint.test/infra": "yes"}))
        message = unschedulable(cluster, ns, "intolerant")
        assert "1 node(s) had untolerated taint {taint.test/dedicated: infra}" in message

        toleration = {
            "key": "taint.test/dedicated",
            "operator": "Equal",
            "value": "infra",
            "effect": "NoSchedule",
        }
        apply(
            cluster,
            ns,
            deployment(
                "tolerant", 2, nodeSelector={"taint.test/infra": "yes"}, tolerations=[toleration]
            ),
        )
        assert node_count(wait_bound(cluster, ns, "tolerant", 2)) == {"sched-2": 2}
        assert not cluster.get("pod", "intolerant", "-n", ns)["spec"].get("nodeName")
    finally:
        k("taint", "node", "sched-2", "taint.test/dedicated:NoSchedule-")
    # the taint is gone: the waiting pod binds
    wait_for(
        lambda: cluster.get("pod", "intolerant", "-n", ns)["spec"].get("nodeName") == "sched-2",
        "the intolerant pod bound once the taint was removed",
    )


def test_resource_fit(cluster: Cluster, ns: str) -> None:
    label(cluster, "sched-0", "fit.test/only=yes")
    only = {"fit.test/only": "yes"}
    allocatable = cluster.get("node", "sched-0")["status"]["allocatable"]
    assert allocatable["cpu"] == "4"
    apply(cluster, ns, pod("big", "3", nodeSelector=only))
    wait_bound(cluster, ns, "big", 1)
    # 1 cpu is free on sched-0: 2 does not fit, 1 does
    apply(cluster, ns, pod("wide", "2", nodeSelector=only))
    apply(cluster, ns, pod("narrow", "1", nodeSelector=only))
    assert node_count(wait_bound(cluster, ns, "narrow", 1)) == {"sched-0": 1}
    message = unschedulable(cluster, ns, "wide")
    total = len(cluster.get("nodes")["items"])
    assert re.fullmatch(
        rf"0/{total} nodes are available: 1 Insufficient cpu, {total - 1} node\(s\) didn't "
        r"match Pod's node affinity/selector\. preemption: .*",
        message,
    ), message
    described = cluster.kubectl("describe", "pod", "wide", "-n", ns)
    assert "FailedScheduling" in described
    assert "1 Insufficient cpu" in described
    assert any("1 Insufficient cpu" in m for m in failed_scheduling(cluster, ns, "wide"))

    cluster.kubectl("delete", "pod", "big", "-n", ns, "--wait=false")
    assert node_count(wait_bound(cluster, ns, "wide", 1)) == {"sched-0": 1}


def test_topology_spread_over_zones(cluster: Cluster, ns: str) -> None:
    # zone a has one node, zone b two: spreading over nodes would put 2 of 6 pods in a
    label(cluster, "sched-0", "spread.test/zone=a")
    label(cluster, "sched-1", "spread.test/zone=b")
    label(cluster, "sched-2", "spread.test/zone=b")
    constraint = {
        "maxSkew": 1,
        "topologyKey": "spread.test/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "zoned"}},
    }
    apply(cluster, ns, deployment("zoned", 6, topologySpreadConstraints=[constraint]))
    pods = wait_bound(cluster, ns, "zoned", 6)
    placed = node_count(pods)
    zones = Counter({"a": placed["sched-0"], "b": placed["sched-1"] + placed["sched-2"]})
    assert sum(zones.values()) == 6, placed  # nodes without the zone label get none
    assert zones == {"a": 3, "b": 3}, placed

    # a seventh may go to either zone (skew 1), an eighth must then go to the other
    cluster.kubectl("scale", "deployment/zoned", "-n", ns, "--replicas=8")
    placed = node_count(wait_bound(cluster, ns, "zoned", 8))
    assert placed["sched-0"] == 4, placed


def test_unschedulable_pod_binds_when_a_fitting_node_joins(cluster: Cluster, ns: str) -> None:
    total = len(cluster.get("nodes")["items"])
    apply(cluster, ns, pod("huge", "6"))
    message = unschedulable(cluster, ns, "huge")
    assert message == (
        f"0/{total} nodes are available: {total} Insufficient cpu. preemption: 0/{total} "
        f"nodes are available: {total} No preemption victims found for incoming pod."
    )
    events = wait_for(lambda: failed_scheduling(cluster, ns, "huge"), "a FailedScheduling event")
    assert events[0] == message
    listed = cluster.kubectl("get", "events", "-n", ns)
    assert "FailedScheduling" in listed
    assert f"0/{total} nodes are available" in listed

    cluster.add_nodes(1, "sched-big-", "--cpu", "8", "--pod-ready-seconds", "0.2")
    wait_for(
        lambda: cluster.get("pod", "huge", "-n", ns)["spec"].get("nodeName") == "sched-big-0",
        "the huge pod bound to the node that joined",
    )
    scheduled = wait_for(
        lambda: (
            (scheduled_condition(cluster.get("pod", "huge", "-n", ns)) or {}).get("status")
            == "True"
        ),
        "PodScheduled=True",
    )
    assert scheduled
    cluster.kubectl("wait", "pod/huge", "-n", ns, "--for=condition=Ready", "--timeout=30s")
