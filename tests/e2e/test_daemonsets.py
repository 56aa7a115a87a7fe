"""DaemonSets against a cluster of sim nodes, driven with the real kubectl: one pod per
eligible node, none on a node whose NoSchedule taint the pods do not tolerate, a pod for a
node that joins later, ``rollout status`` and a rolling image update that never leaves more
than ``maxUnavailable`` nodes without a ready daemon pod (checked on every pod change a
``kubectl get -w`` reports)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from edgek.objects import Obj
from tests.e2e.cluster import (
    Cluster,
    cluster_fixture,
    image_of,
    replay,
    running_and_ready,
    start_watch,
    wait_for,
)
from tests.manifests import workload

TAINT = "dedicated=infra:NoSchedule"


cluster = cluster_fixture("ds", prefix="ds-")


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.new_namespace("ds")


def daemonset(name: str, image: str = "registry.local/agent:1", **pod_spec: Any) -> str:
    return json.dumps(
        workload(
            "DaemonSet",
            name,
            {"containers": [{"name": "agent", "image": image}], **pod_spec},
            updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        )
    )


def nodes(cluster: Cluster) -> set[str]:
    return {n["metadata"]["name"] for n in cluster.get("nodes")["items"]}


def placement(cluster: Cluster, ns: str, app: str) -> dict[str, Obj]:
    """The app's pods by the node they run on (every pod must be bound to a distinct node)."""
    pods = cluster.get("pods", "-n", ns, "-l", f"app={app}")["items"]
    by_node = {p["spec"].get("nodeName", ""): p for p in pods}
    assert len(by_node) == len(pods), f"two pods of {app} on one node, or unbound pods"
    return by_node


def rollout_status(cluster: Cluster, ns: str, name: str) -> str:
    return cluster.kubectl("rollout", "status", f"daemonset/{name}", "-n", ns, "--timeout=60s")


def test_every_eligible_node_taints_and_late_nodes(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl

    def on_node(app: str, node: str) -> bool:
        return node in placement(cluster, ns, app)

    k("taint", "node", "ds-2", TAINT)
    try:
        k("apply", "-n", ns, "-f", "-", input=daemonset("plain"))
        toleration = {"key": "dedicated", "operator": "Equal", "value": "infra"}
        k(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=daemonset("tolerant", tolerations=[{**toleration, "effect": "NoSchedule"}]),
        )
        assert 'daemon set "plain" successfully rolled out' in rollout_status(cluster, ns, "plain")
        rollout_status(cluster, ns, "tolerant")
        everywhere = nodes(cluster)
        assert {"ds-0", "ds-1", "ds-2"} <= everywhere
        plain = placement(cluster, ns, "plain")
        assert set(plain) == everywhere - {"ds-2"}
        assert set(placement(cluster, ns, "tolerant")) == everywhere
        assert all(running_and_ready(p) for p in plain.values())
        pod = next(iter(plain.values()))
        tolerated = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
        assert ("node.kubernetes.io/unschedulable", "NoSchedule") in tolerated
        status = cluster.get("daemonset", "plain", "-n", ns)["status"]
        assert status["desiredNumberScheduled"] == len(everywhere) - 1
        assert status["numberReady"] == status["currentNumberScheduled"] == len(everywhere) - 1

        cluster.add_nodes(1, "ds-late-")
        for app in ("plain", "tolerant"):
            wait_for(partial(on_node, app, "ds-late-0"), f"a {app} pod on the node that joined")
            rollout_status(cluster, ns, app)
            assert set(placement(cluster, ns, app)) == nodes(cluster) - (
                {"ds-2"} if app == "plain" else set()
            )
    finally:
        k("taint", "node", "ds-2", f"{TAINT}-")

    # the taint is gone: ds-2 is eligible again
    wait_for(partial(on_node, "plain", "ds-2"), "a plain pod on ds-2 once untainted")


def test_rolling_image_update(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    k("apply", "-n", ns, "-f", "-", input=daemonset("roll"))
    rollout_status(cluster, ns, "roll")
    everywhere = set(placement(cluster, ns, "roll"))
    assert everywhere == nodes(cluster)

    watch = start_watch(cluster, ns)
    try:
        k("set", "image", "daemonset/roll", "-n", ns, "agent=registry.local/agent:2")
        assert "successfully rolled out" in rollout_status(cluster, ns, "roll")
    finally:
        events = watch.stop()

    final = placement(cluster, ns, "roll")
    assert set(final) == everywhere
    assert {image_of(p) for p in final.values()} == {"registry.local/agent:2"}
    assert all(running_and_ready(p) for p in final.values())

    worst = 0
    started = False
    replaced = set()
    for type_, pod, before in replay(events):
        if pod["metadata"].get("labels", {}).get("app") != "roll":
            continue
        if type_ == "DELETED":
            replaced.add(pod["spec"].get("nodeName"))
        after = dict(before)
        after.pop(pod["metadata"]["name"], None)
        if type_ != "DELETED":
            after[pod["metadata"]["name"]] = pod
        serving = {
            p["spec"].get("nodeName")
            for p in after.values()
            if p["metadata"].get("labels", {}).get("app") == "roll"
            and running_and_ready(p)
            and not p["metadata"].get("deletionTimestamp")
        }
        # the watch lists the pods one by one first: count from the first full view
        started = started or serving == everywhere
        if started:
            worst = max(worst, len(everywhere - serving))
    assert replaced == everywhere
    assert worst == 1, f"up to {worst} nodes without a ready pod (maxUnavailable 1)"

    revisions = cluster.get("controllerrevisions", "-n", ns)["items"]
    assert sorted(r["revision"] for r in revisions) == [1, 2]
    history = k("rollout", "history", "daemonset/roll", "-n", ns)
    assert "REVISION" in history
    assert "registry.local/agent:2" in k(
        "rollout", "history", "daemonset/roll", "-n", ns, "--revision=2"
    )
    k("rollout", "undo", "daemonset/roll", "-n", ns)
    rollout_status(cluster, ns, "roll")
    wait_for(
        lambda: (
            {image_of(p) for p in placement(cluster, ns, "roll").values()}
            == {"registry.local/agent:1"}
        ),
        "undo to bring back agent:1 on every node",
    )
