"""Node lifecycle against a cluster of sim nodes, driven with the real kubectl: ``cordon`` and
``uncordon`` (the unschedulable taint keeps new pods off), ``drain`` honouring a
PodDisruptionBudget (evictions beyond the budget get 429 until replacements are Ready
elsewhere; a budget that allows nothing makes drain time out with the pods left alone), and a
node that stops heartbeating: Unknown, tainted unreachable, its pods evicted after their
toleration and recreated on the healthy nodes; Ready and untainted again once it recovers."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from edgek.objects import Obj
from tests.e2e.cluster import Cluster, replay, start_cluster, start_watch, wait_for
from tests.manifests import workload

NODES = ("life-0", "life-1", "life-2")
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
#: Server flags: a node is Unknown after 4 s without heartbeat, pods tolerate it for 3 s.
GRACE = 4
TOLERATION = 3


@pytest.fixture(scope="module")
def fail_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("life-fail") / "failed-nodes"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, fail_file: Path) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("life"),
        nodes=3,
        prefix="life-",
        server_args=(
            "--node-monitor-grace-period",
            str(GRACE),
            "--default-unreachable-toleration-seconds",
            str(TOLERATION),
        ),
        # leases renewed every 0.5 s, well inside the grace period
        sim_args=("--lease-seconds", "2", "--fail-file", str(fail_file)),
    )
    yield c
    c.stop()


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = cluster.new_namespace("life")
    yield name
    for node in NODES:
        cluster.kubectl("uncordon", node)
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def deployment(name: str, replicas: int, **pod_spec: Any) -> str:
    spec = {"containers": [{"name": "app", "image": "registry.local/app:1"}], **pod_spec}
    return json.dumps(workload("Deployment", name, spec, replicas=replicas))


def pdb(name: str, min_available: int) -> str:
    return json.dumps(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}},
        }
    )


def daemonset(name: str) -> str:
    pod_spec = {"containers": [{"name": "agent", "image": "registry.local/agent:1"}]}
    return json.dumps(workload("DaemonSet", name, pod_spec))


def apply(cluster: Cluster, ns: str, manifest: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)


def pods_of(cluster: Cluster, ns: str, app: str) -> list[Obj]:
    return list(cluster.get("pods", "-n", ns, "-l", f"app={app}")["items"])


def live(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(p: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p.get("status", {}).get("conditions") or []
    )


def placement(pods: list[Obj]) -> Counter[str]:
    return Counter(p["spec"].get("nodeName", "") for p in pods)


def rollout(cluster: Cluster, ns: str, name: str) -> None:
    cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=30s")


def taints(cluster: Cluster, node: str) -> set[tuple[str, str]]:
    spec = cluster.get("node", node)["spec"]
    return {(t["key"], t["effect"]) for t in spec.get("taints") or []}


def node_ready(cluster: Cluster, node: str) -> str:
    for cond in cluster.get("node", node)["status"]["conditions"]:
        if cond["type"] == "Ready":
            return str(cond["status"])
    return ""


def ready_is(cluster: Cluster, node: str, status: str) -> bool:
    return node_ready(cluster, node) == status


def unreachable_effects_are(cluster: Cluster, node: str, effects: set[str]) -> bool:
    return {effect for key, effect in taints(cluster, node) if key == UNREACHABLE} == effects


def all_on(cluster: Cluster, ns: str, name: str, replicas: int, node: str) -> None:
    """Deploy ``name`` with every replica on ``node`` (the others cordoned meanwhile)."""
    others = [n for n in NODES if n != node]
    for other in others:
        cluster.kubectl("cordon", other)
    apply(
        cluster,
        ns,
        deployment(name, replicas, volumes=[{"name": "scratch", "emptyDir": {}}]),
    )
    rollout(cluster, ns, name)
    for other in others:
        cluster.kubectl("uncordon", other)
    assert placement(pods_of(cluster, ns, name)) == {node: replicas}


def test_cordon_and_uncordon(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    k("cordon", "life-0")
    assert cluster.get("node", "life-0")["spec"]["unschedulable"] is True
    wait_for(lambda: (UNSCHEDULABLE, "NoSchedule") in taints(cluster, "life-0"), "the taint")
    assert "SchedulingDisabled" in k("get", "node", "life-0")
    apply(cluster, ns, deployment("web", 6))
    rollout(cluster, ns, "web")
    assert set(placement(pods_of(cluster, ns, "web"))) == {"life-1", "life-2"}

    k("uncordon", "life-0")
    assert not cluster.get("node", "life-0")["spec"].get("unschedulable")
    wait_for(lambda: (UNSCHEDULABLE, "NoSchedule") not in taints(cluster, "life-0"), "untaint")
    k("scale", "deployment/web", "-n", ns, "--replicas=9")
    rollout(cluster, ns, "web")
    # the empty node scores best: new pods go there
    assert placement(pods_of(cluster, ns, "web"))["life-0"] >= 1


def test_drain_evicts_within_the_disruption_budget(cluster: Cluster, ns: str) -> None:
    all_on(cluster, ns, "db", 3, "life-1")
    apply(cluster, ns, pdb("db", 2))
    wait_for(
        lambda: cluster.get("pdb", "db", "-n", ns).get("status", {}).get("disruptionsAllowed") == 1,
        "the budget to allow one disruption",
    )
    apply(cluster, ns, daemonset("agent"))
    cluster.kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=30s")
    daemon = next(
        p["metadata"]["name"]
        for p in pods_of(cluster, ns, "agent")
        if p["spec"]["nodeName"] == "life-1"
    )
    before = {p["metadata"]["name"] for p in pods_of(cluster, ns, "db")}
    watch = start_watch(cluster, ns)
    # drain refuses unmanaged pods: the watch's sentinel must not be in the way
    cluster.kubectl("delete", "pod", "sentinel", "-n", ns)
    try:
        res = cluster.kubectl.run(
            "drain",
            "life-1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
            timeout=90,
        )
    finally:
        events = watch.stop()
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "node/life-1 drained" in out
    assert f"Warning: ignoring DaemonSet-managed Pods: {ns}/{daemon}" in out
    assert "Cannot evict pod as it would violate the pod's disruption budget" in out
    for name in before:
        assert f"pod/{name} evicted" in out

    assert cluster.get("node", "life-1")["spec"]["unschedulable"] is True
    rollout(cluster, ns, "db")
    pods = live(pods_of(cluster, ns, "db"))
    assert len(pods) == 3 and all(ready(p) for p in pods)
    assert not {p["metadata"]["name"] for p in pods} & before
    assert "life-1" not in placement(pods)
    # the daemon pod stays: drain ignored it
    assert cluster.get("pod", daemon, "-n", ns)["spec"]["nodeName"] == "life-1"
    # at every pod change the watch saw, two db pods stayed Ready (the budget's minimum)
    healthy_counts = [
        sum(
            1
            for p in pods.values()
            if p["metadata"].get("labels", {}).get("app") == "db"
            and ready(p)
            and not p["metadata"].get("deletionTimestamp")
        )
        for _, _, pods in replay(events)
    ]
    assert healthy_counts and max(healthy_counts) == 3
    first_full = healthy_counts.index(3)
    assert min(healthy_counts[first_full:]) == 2, healthy_counts
    status = cluster.get("pdb", "db", "-n", ns)["status"]
    assert status["currentHealthy"] == 3 and status["desiredHealthy"] == 2


def test_drain_times_out_when_the_budget_allows_nothing(cluster: Cluster, ns: str) -> None:
    all_on(cluster, ns, "quorum", 2, "life-2")
    apply(cluster, ns, pdb("quorum", 2))
    wait_for(
        lambda: cluster.get("pdb", "quorum", "-n", ns).get("status", {}).get("currentHealthy") == 2,
        "the budget to count both pods",
    )
    assert cluster.get("pdb", "quorum", "-n", ns)["status"]["disruptionsAllowed"] == 0
    before = {p["metadata"]["name"] for p in pods_of(cluster, ns, "quorum")}

    res = cluster.kubectl.run(
        "drain",
        "life-2",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=4s",
        check=False,
        timeout=60,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Cannot evict pod as it would violate the pod's disruption budget" in out
    assert "node/life-2 drained" not in out
    assert "global timeout reached: 4s" in out
    pods = pods_of(cluster, ns, "quorum")
    assert {p["metadata"]["name"] for p in pods} == before
    assert all(not p["metadata"].get("deletionTimestamp") and ready(p) for p in pods)
    assert placement(pods) == {"life-2": 2}
    # the node stays cordoned (drain's first step) until uncordoned
    assert cluster.get("node", "life-2")["spec"]["unschedulable"] is True


def test_silent_node_is_tainted_and_its_pods_move(
    cluster: Cluster, ns: str, fail_file: Path
) -> None:
    k = cluster.kubectl
    apply(cluster, ns, deployment("spread", 6))
    rollout(cluster, ns, "spread")
    pods = pods_of(cluster, ns, "spread")
    victim = placement(pods).most_common(1)[0][0]
    stranded = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim}
    # admission gave every pod the configured unreachable toleration
    tolerations = pods[0]["spec"]["tolerations"]
    assert {
        "key": UNREACHABLE,
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": TOLERATION,
    } in tolerations

    sim = cluster.sims[0]
    fail_file.write_text(victim + "\n")
    sim.signal(signal.SIGUSR1)
    try:
        wait_for(lambda: node_ready(cluster, victim) == "Unknown", f"{victim} Unknown", 20)
        assert "NotReady" in k("get", "node", victim)
        wait_for(
            lambda: (
                {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")} <= taints(cluster, victim)
            ),
            "the unreachable taints",
        )
        for other in NODES:
            if other != victim:
                assert node_ready(cluster, other) == "True"
                assert not {key for key, _ in taints(cluster, other)} & {UNREACHABLE}

        def moved() -> list[Obj] | None:
            current = pods_of(cluster, ns, "spread")
            serving = [p for p in live(current) if ready(p)]
            gone = {p["metadata"]["name"] for p in live(current)} & stranded
            if len(serving) == 6 and not gone:
                return current
            return None

        current = wait_for(moved, "the stranded pods evicted and replaced", 30)
        assert victim not in placement(live(current))
        # nobody on the silent node confirms the deletion: evicted pods stay Terminating
        for p in current:
            if p["metadata"]["name"] in stranded:
                assert p["metadata"]["deletionTimestamp"]
        events = cluster.get("events", "-n", ns, "--field-selector", "reason=TaintManagerEviction")[
            "items"
        ]
        assert {e["involvedObject"]["name"] for e in events} >= stranded
        assert "NodeNotReady" in k("get", "events", "-n", "default")
    finally:
        fail_file.write_text("")
        sim.signal(signal.SIGUSR1)

    wait_for(lambda: node_ready(cluster, victim) == "True", f"{victim} Ready again")
    wait_for(
        lambda: not {key for key, _ in taints(cluster, victim)} & {UNREACHABLE},
        "the unreachable taints removed",
    )
    # the recovered node finishes the pending deletions
    wait_for(
        lambda: not {p["metadata"]["name"] for p in pods_of(cluster, ns, "spread")} & stranded,
        "the evicted pods gone",
    )


def test_no_execute_taint_evicts_pods_that_do_not_tolerate_it(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    toleration = {"key": "evict.test/maintenance", "operator": "Exists", "effect": "NoExecute"}
    apply(cluster, ns, deployment("plain", 6))
    apply(cluster, ns, deployment("tolerant", 3, tolerations=[toleration]))
    rollout(cluster, ns, "plain")
    rollout(cluster, ns, "tolerant")
    assert placement(live(pods_of(cluster, ns, "plain")))["life-0"] >= 1
    stayed = {
        p["metadata"]["name"]
        for p in pods_of(cluster, ns, "tolerant")
        if p["spec"]["nodeName"] == "life-0"
    }
    k("taint", "node", "life-0", "evict.test/maintenance=now:NoExecute")
    try:
        wait_for(
            lambda: "life-0" not in placement(pods_of(cluster, ns, "plain")),
            "the pods that do not tolerate the taint gone from life-0",
        )
        rollout(cluster, ns, "plain")
        tolerant = pods_of(cluster, ns, "tolerant")
        assert {
            p["metadata"]["name"] for p in tolerant if p["spec"]["nodeName"] == "life-0"
        } == stayed
        assert all(not p["metadata"].get("deletionTimestamp") for p in tolerant)
    finally:
        k("taint", "node", "life-0", "evict.test/maintenance:NoExecute-")


def test_no_eviction_when_every_node_is_silent(cluster: Cluster, ns: str, fail_file: Path) -> None:
    """Upstream's full-disruption rule: with no Ready node left the fault is most likely the
    control plane's, so nodes get the NoSchedule taint but no NoExecute one."""
    apply(cluster, ns, deployment("steady", 3))
    rollout(cluster, ns, "steady")
    before = {p["metadata"]["name"] for p in pods_of(cluster, ns, "steady")}
    sim = cluster.sims[0]
    fail_file.write_text("\n".join(NODES) + "\n")
    sim.signal(signal.SIGUSR1)
    try:
        for node in NODES:
            wait_for(partial(ready_is, cluster, node, "Unknown"), f"{node} Unknown")
            wait_for(
                partial(unreachable_effects_are, cluster, node, {"NoSchedule"}),
                f"the NoSchedule taint on {node}",
            )
        wait_for(
            lambda: not any(ready(p) for p in pods_of(cluster, ns, "steady")),
            "the pods of the silent nodes marked not ready",
        )
        # longer than the toleration: an eviction would have happened by now
        time.sleep(TOLERATION + 2)
        for node in NODES:
            assert unreachable_effects_are(cluster, node, {"NoSchedule"})
        pods = pods_of(cluster, ns, "steady")
        assert {p["metadata"]["name"] for p in pods} == before
        assert all(not p["metadata"].get("deletionTimestamp") for p in pods)
    finally:
        fail_file.write_text("")
        sim.signal(signal.SIGUSR1)
    for node in NODES:
        wait_for(partial(ready_is, cluster, node, "True"), f"{node} Ready again")
        wait_for(partial(unreachable_effects_are, cluster, node, set()), f"{node} untainted")
    # the recovered nodes report their pods Ready again
    rollout(cluster, ns, "steady")
    pods = pods_of(cluster, ns, "steady")
    assert {p["metadata"]["name"] for p in pods} == before
    assert all(ready(p) for p in pods)
