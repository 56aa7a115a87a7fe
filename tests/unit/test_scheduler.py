"""The scheduler loop over the controller harness: each filter decides placement, failures
are reported the upstream way, pending pods bind when the cluster changes, preemption."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from server.scheduler.scheduler import Scheduler, feasible_nodes_to_find
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness

NS = "default"


def node_body(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    ready: str = "True",
    unschedulable: bool = False,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
        },
        "spec": spec,
        "status": {
            "capacity": allocatable,
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}],
        },
    }


def pod_body(
    name: str,
    *,
    cpu: str = "",
    memory: str = "",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: dict[str, Any] = {"name": "app", "image": "nginx"}
    if requests:
        container["resources"] = {"requests": requests}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container], **spec},
    }


async def add_node(h: Harness, name: str, **kw: Any) -> dict[str, Any]:
    return await h.create("", "nodes", "", node_body(name, **kw))


async def add_pod(h: Harness, name: str, **kw: Any) -> dict[str, Any]:
    """Create a pod; a non-zero ``priority`` (and ``preemptionPolicy``) is given as a client
    must, through a PriorityClass (priority admission refuses a bare one)."""
    if kw.get("priority"):
        priority = kw.pop("priority")
        policy = kw.pop("preemptionPolicy", "PreemptLowerPriority")
        kw["priorityClassName"] = await priority_class(h, priority, policy)
    return await h.create("", "pods", NS, pod_body(name, **kw))


async def priority_class(h: Harness, value: int, policy: str) -> str:
    """The name of a PriorityClass of ``value`` and ``policy``, created and cached."""
    name = f"p{value}-{policy.lower()}"
    cache = h.ctx.cache("scheduling.k8s.io", "priorityclasses")
    await cache.start()  # only this cache: a loop not started yet must see the others fill
    body = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        "preemptionPolicy": policy,
    }
    await h.create("scheduling.k8s.io", "priorityclasses", "", body)
    await h.wait_for(lambda: cache.get("", name) is not None, what=f"class {name} cached")
    return name


async def node_of(h: Harness, name: str) -> str:
    pod = await h.get("", "pods", NS, name)
    assert pod is not None
    return str(pod["spec"].get("nodeName") or "")


async def wait_bound(h: Harness, *names: str) -> dict[str, str]:
    async def all_bound() -> bool:
        return all([await node_of(h, n) for n in names])

    await h.wait_for(all_bound, what=f"pods {names} bound")
    return {n: await node_of(h, n) for n in names}


async def condition(h: Harness, name: str) -> dict[str, Any] | None:
    pod = await h.get("", "pods", NS, name)
    assert pod is not None
    return next(
        (c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"), None
    )


async def wait_unschedulable(h: Harness, name: str) -> str:
    async def failed() -> bool:
        c = await condition(h, name)
        return c is not None and c["status"] == "False"

    await h.wait_for(failed, what=f"{name} unschedulable")
    c = await condition(h, name)
    assert c is not None and c["reason"] == "Unschedulable"
    return str(c["message"])


async def events_of(h: Harness, name: str, reason: str) -> list[dict[str, Any]]:
    await h.events.flush()
    return [
        e
        for e in await h.list("", "events", NS)
        if e["involvedObject"].get("name") == name and e["reason"] == reason
    ]


@pytest.fixture
async def h(harness: Harness) -> Harness:
    await harness.start(Scheduler)
    return harness


def test_feasible_nodes_to_find_follows_upstream() -> None:
    assert feasible_nodes_to_find(50) == 50
    assert feasible_nodes_to_find(100) == 100
    assert feasible_nodes_to_find(1000) == 420
    assert feasible_nodes_to_find(5000) == 500
    assert feasible_nodes_to_find(200) == 100


async def test_binds_and_records_scheduled(h: Harness) -> None:
    await add_node(h, "n1")
    await add_pod(h, "web")
    assert await wait_bound(h, "web") == {"web": "n1"}
    c = await condition(h, "web")
    assert c is not None and c["status"] == "True"
    scheduled = await events_of(h, "web", "Scheduled")
    assert [e["message"] for e in scheduled] == ["Successfully assigned default/web to n1"]
    assert scheduled[0]["source"]["component"] == "default-scheduler"


async def test_other_schedulers_pods_are_left_alone(h: Harness) -> None:
    await add_node(h, "n1")
    await add_pod(h, "mine", schedulerName="my-scheduler")
    await add_pod(h, "ours")
    await wait_bound(h, "ours")
    await h.settle()
    assert await node_of(h, "mine") == ""


async def test_node_selector_decides(h: Harness) -> None:
    await add_node(h, "a", labels={"disk": "hdd"})
    await add_node(h, "b", labels={"disk": "ssd"})
    await add_pod(h, "p", nodeSelector={"disk": "ssd"})
    assert await wait_bound(h, "p") == {"p": "b"}


async def test_required_node_affinity_decides(h: Harness) -> None:
    for name, zone in (("a", "z1"), ("b", "z2"), ("c", "z3")):
        await add_node(h, name, labels={"zone": zone})
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z3"]}]}
                ]
            }
        }
    }
    for i in range(3):
        await add_pod(h, f"p{i}", affinity=affinity)
    assert set((await wait_bound(h, "p0", "p1", "p2")).values()) == {"c"}


async def test_preferred_node_affinity_scores(h: Harness) -> None:
    await add_node(h, "a")
    await add_node(h, "b", labels={"fast": "yes"})
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {"matchExpressions": [{"key": "fast", "operator": "Exists"}]},
                }
            ]
        }
    }
    await add_pod(h, "p", affinity=affinity)
    assert await wait_bound(h, "p") == {"p": "b"}


async def test_taints_and_tolerations_decide(h: Harness) -> None:
    gpu = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    await add_node(h, "tainted", taints=gpu, cpu="64", memory="256Gi")
    await add_node(h, "plain", cpu="1", memory="1Gi")
    await add_pod(h, "normal")
    tolerate = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    await add_pod(
        h, "gpu-job", tolerations=tolerate, nodeSelector={"kubernetes.io/hostname": "tainted"}
    )
    assert await wait_bound(h, "normal", "gpu-job") == {"normal": "plain", "gpu-job": "tainted"}


async def test_prefer_no_schedule_taint_scores_lower(h: Harness) -> None:
    await add_node(h, "soft", taints=[{"key": "spot", "effect": "PreferNoSchedule"}])
    await add_node(h, "clean")
    await add_pod(h, "p")
    assert await wait_bound(h, "p") == {"p": "clean"}


async def test_not_ready_and_cordoned_nodes_are_skipped(h: Harness) -> None:
    await add_node(h, "down", ready="False", cpu="64")
    await add_node(h, "cordoned", unschedulable=True, cpu="64")
    await add_node(h, "ok", cpu="1")
    for i in range(3):
        await add_pod(h, f"p{i}")
    assert set((await wait_bound(h, "p0", "p1", "p2")).values()) == {"ok"}


async def test_resource_fit_decides(h: Harness) -> None:
    await add_node(h, "small", cpu="1", memory="1Gi")
    await add_node(h, "big", cpu="4", memory="8Gi")
    await add_pod(h, "wide", cpu="2", memory="512Mi")
    await add_pod(h, "fat", cpu="100m", memory="4Gi")
    assert await wait_bound(h, "wide", "fat") == {"wide": "big", "fat": "big"}
    await add_pod(h, "too-big", cpu="3", memory="2Gi")
    message = await wait_unschedulable(h, "too-big")
    assert message.startswith("0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.")


async def test_concurrent_binds_never_overcommit(harness: Harness) -> None:
    h = harness
    await add_node(h, "small", cpu="1")
    await add_node(h, "big", cpu="2")
    names = [f"p{i}" for i in range(6)]
    for name in names:  # all pending before the scheduler starts: placed back to back
        await add_pod(h, name, cpu="1")
    await h.start(Scheduler)
    for name in names:
        await h.wait_for(partial(_decided, h, name), what=f"{name} bound or unschedulable")
    placed = [await node_of(h, n) for n in names]
    assert sorted(p for p in placed if p) == ["big", "big", "small"]


async def _decided(h: Harness, name: str) -> bool:
    if await node_of(h, name):
        return True
    c = await condition(h, name)
    return c is not None and c["status"] == "False"


async def test_pod_limit_and_extended_resources(h: Harness) -> None:
    await add_node(h, "one-pod", pods="1")
    await add_node(h, "gpu", extra={"example.com/gpu": "2"})
    await add_pod(h, "first", nodeSelector={"kubernetes.io/hostname": "one-pod"})
    await wait_bound(h, "first")
    body = pod_body("trainer")
    body["spec"]["containers"][0]["resources"] = {
        "requests": {"example.com/gpu": "2"},
        "limits": {"example.com/gpu": "2"},
    }
    await h.create("", "pods", NS, body)
    assert await wait_bound(h, "trainer") == {"trainer": "gpu"}
    await add_pod(h, "crowd", nodeSelector={"kubernetes.io/hostname": "one-pod"})
    message = await wait_unschedulable(h, "crowd")
    assert message.startswith(
        "0/2 nodes are available: 1 Too many pods, "
        "1 node(s) didn't match Pod's node affinity/selector."
    )


async def test_host_port_conflict_decides(h: Harness) -> None:
    await add_node(h, "a")
    await add_node(h, "b")
    port = [{"containerPort": 80, "hostPort": 8080}]
    await add_pod(h, "p1", ports=port)
    first = (await wait_bound(h, "p1"))["p1"]
    await add_pod(h, "p2", ports=port)
    second = (await wait_bound(h, "p2"))["p2"]
    assert {first, second} == {"a", "b"}
    await add_pod(h, "p3", ports=port)
    message = await wait_unschedulable(h, "p3")
    assert message.startswith(
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    )


def _anti(labels: dict[str, str], key: str = "kubernetes.io/hostname") -> dict[str, Any]:
    return {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": labels}, "topologyKey": key}
            ]
        }
    }


async def test_pod_anti_affinity_decides(h: Harness) -> None:
    for name in ("a", "b"):
        await add_node(h, name)
    app = {"app": "db"}
    await add_pod(h, "db-0", labels=app, affinity=_anti(app))
    await add_pod(h, "db-1", labels=app, affinity=_anti(app))
    placed = await wait_bound(h, "db-0", "db-1")
    assert set(placed.values()) == {"a", "b"}
    await add_pod(h, "db-2", labels=app, affinity=_anti(app))
    message = await wait_unschedulable(h, "db-2")
    assert "2 node(s) didn't match pod anti-affinity rules" in message
    # a pod without anti-affinity of its own is kept away by the existing pods' rules
    await add_pod(h, "intruder", labels=app)
    message = await wait_unschedulable(h, "intruder")
    assert "2 node(s) didn't satisfy existing pods anti-affinity rules" in message


async def test_pod_affinity_decides(h: Harness) -> None:
    await add_node(h, "a", labels={"zone": "z1"})
    await add_node(h, "b", labels={"zone": "z2"})
    await add_node(h, "c", labels={"zone": "z2"})
    await add_pod(h, "cache", labels={"app": "cache"}, nodeSelector={"kubernetes.io/hostname": "a"})
    await wait_bound(h, "cache")
    affinity = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}
            ]
        }
    }
    for i in range(3):
        await add_pod(h, f"web{i}", affinity=affinity)
    placed = await wait_bound(h, "web0", "web1", "web2")
    assert set(placed.values()) == {"a"}
    lonely = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "nothing"}}, "topologyKey": "zone"}
            ]
        }
    }
    await add_pod(h, "lonely", affinity=lonely)
    message = await wait_unschedulable(h, "lonely")
    assert message.startswith("0/3 nodes are available: 3 node(s) didn't match pod affinity rules.")


async def test_topology_spread_decides(h: Harness) -> None:
    await add_node(h, "a", labels={"zone": "z1"}, cpu="64", memory="64Gi")
    await add_node(h, "b", labels={"zone": "z2"}, cpu="1", memory="1Gi")
    await add_node(h, "c")  # no zone label: not a domain
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ]
    names = [f"web{i}" for i in range(4)]
    for name in names:
        await add_pod(h, name, labels={"app": "web"}, topologySpreadConstraints=spread)
    placed = await wait_bound(h, *names)
    # least-allocated alone would put them all on the big node "a"
    assert sorted(placed.values()) == ["a", "a", "b", "b"]
    taint_b = [{"key": "full", "effect": "NoSchedule"}]

    async def taint(node: dict[str, Any] | None) -> dict[str, Any] | None:
        assert node is not None
        node["spec"]["taints"] = taint_b
        return node

    await h.objects.modify(h.kind("", "nodes"), "", "b", taint, WriteOptions())
    await add_pod(h, "web4", labels={"app": "web"}, topologySpreadConstraints=spread)
    await add_pod(h, "web5", labels={"app": "web"}, topologySpreadConstraints=spread)
    message = await wait_unschedulable(h, "web5")
    assert "1 node(s) didn't match pod topology spread constraints (missing required label)" in (
        message
    )


async def test_replicas_spread_over_nodes(h: Harness) -> None:
    for name in ("a", "b", "c"):
        await add_node(h, name)
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-abc",
        "uid": "1b6f9a5e-0000-4000-8000-000000000001",
        "controller": True,
    }
    names = [f"web-{i}" for i in range(6)]
    for name in names:
        body = pod_body(name, cpu="100m")
        body["metadata"]["ownerReferences"] = [owner]
        await h.create("", "pods", NS, body)
    placed = await wait_bound(h, *names)
    counts = sorted(list(placed.values()).count(n) for n in ("a", "b", "c"))
    assert counts == [2, 2, 2]


async def test_node_preference_outweighs_default_spreading(h: Harness) -> None:
    """Upstream's system-default spreading (hostname maxSkew 3, log-weighted counts) costs
    less than a preferred node term: three replicas all go to the preferred node."""
    await add_node(h, "a")
    await add_node(h, "b", labels={"disk": "ssd"})
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "fast-abc",
        "uid": "1b6f9a5e-0000-4000-8000-000000000002",
        "controller": True,
    }
    term = {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]
        }
    }
    for i in range(3):
        body = pod_body(f"fast-{i}", affinity=affinity)
        body["metadata"]["ownerReferences"] = [owner]
        await h.create("", "pods", NS, body)
        assert await wait_bound(h, f"fast-{i}") == {f"fast-{i}": "b"}


async def test_failed_scheduling_message_and_bind_when_node_joins(h: Harness) -> None:
    await add_node(h, "n1", labels={"role": "edge"}, cpu="1")
    await add_node(h, "n2", cpu="1")
    await add_node(h, "n3", cpu="1")
    await add_pod(h, "big", cpu="2", nodeSelector={"role": "edge"})
    message = await wait_unschedulable(h, "big")
    expected = (
        "0/3 nodes are available: 1 Insufficient cpu, "
        "2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
        "2 Preemption is not helpful for scheduling."
    )
    assert message == expected
    failed = await events_of(h, "big", "FailedScheduling")
    assert [(e["type"], e["message"]) for e in failed] == [("Warning", expected)]
    assert failed[0]["source"]["component"] == "default-scheduler"
    await add_node(h, "n4", labels={"role": "edge"}, cpu="4")
    assert await wait_bound(h, "big") == {"big": "n4"}
    c = await condition(h, "big")
    assert c is not None and (c["status"], c.get("reason")) == ("True", None)


async def test_no_nodes_message(h: Harness) -> None:
    await add_pod(h, "p")
    assert await wait_unschedulable(h, "p") == "no nodes available to schedule pods"
    await add_node(h, "n1")
    await wait_bound(h, "p")


async def test_bound_pod_deletion_frees_room(h: Harness) -> None:
    await add_node(h, "n1", cpu="1")
    await add_pod(h, "first", cpu="1")
    await wait_bound(h, "first")
    await add_pod(h, "second", cpu="1")
    await wait_unschedulable(h, "second")
    # a kubelet would finish the graceful deletion; do it directly
    await h.objects.delete(h.kind("", "pods"), NS, "first", DeleteOptions(grace_period_seconds=0))
    assert await wait_bound(h, "second") == {"second": "n1"}


async def test_preemption_evicts_lower_priority(h: Harness) -> None:
    await add_node(h, "n1", cpu="2")
    await add_pod(h, "low-1", cpu="1", priority=0)
    await add_pod(h, "low-2", cpu="1", priority=0)
    await wait_bound(h, "low-1", "low-2")
    pods = h.kind("", "pods")
    await add_pod(h, "vip", cpu="1", priority=1000)

    async def nominated() -> bool:
        pod = await h.get("", "pods", NS, "vip")
        return pod is not None and pod["status"].get("nominatedNodeName") == "n1"

    await h.wait_for(nominated, what="vip nominated")
    victims = [
        p["metadata"]["name"]
        for p in await h.list("", "pods", NS)
        if p["metadata"].get("deletionTimestamp")
    ]
    assert len(victims) == 1 and victims[0].startswith("low-")
    preempted = await events_of(h, victims[0], "Preempted")
    vip = await h.get("", "pods", NS, "vip")
    assert vip is not None
    assert [e["message"] for e in preempted] == [
        f"Preempted by pod {vip['metadata']['uid']} on node n1"
    ]
    # the kubelet finishes the victim's graceful deletion
    await h.objects.delete(pods, NS, victims[0], DeleteOptions(grace_period_seconds=0))
    assert await wait_bound(h, "vip") == {"vip": "n1"}


async def test_preemption_never_policy(h: Harness) -> None:
    await add_node(h, "n1", cpu="1")
    await add_pod(h, "low", cpu="1", priority=0)
    await wait_bound(h, "low")
    await add_pod(h, "polite", cpu="1", priority=100, preemptionPolicy="Never")
    message = await wait_unschedulable(h, "polite")
    assert message == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: not eligible due to preemptionPolicy=Never."
    )
    low = await h.get("", "pods", NS, "low")
    assert low is not None and low["metadata"].get("deletionTimestamp") is None


async def test_higher_priority_pods_schedule_first(harness: Harness) -> None:
    h = harness
    await add_node(h, "n1", cpu="1")
    # queued before the scheduler starts: the important pod must win the only slot
    await add_pod(h, "ordinary", cpu="1", priority=0)
    await add_pod(h, "important", cpu="1", priority=10, preemptionPolicy="Never")
    await h.start(Scheduler)
    assert await wait_bound(h, "important") == {"important": "n1"}
    await wait_unschedulable(h, "ordinary")


async def test_volume_node_affinity_and_selected_node(h: Harness) -> None:
    await add_node(h, "a")
    await add_node(h, "b")
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "local-b"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "local": {"path": "/data"},
            "storageClassName": "manual",
            "claimRef": {"namespace": NS, "name": "bound"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": ["b"],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
    await h.create("", "persistentvolumes", "", pv)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "bound"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "manual",
            "volumeName": "local-b",
        },
    }
    await h.create("", "persistentvolumeclaims", NS, claim)
    await h.create(
        "storage.k8s.io",
        "storageclasses",
        "",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "local-path"},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
    )
    wffc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "later"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "local-path",
        },
    }
    await h.create("", "persistentvolumeclaims", NS, wffc)
    await h.settle()
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "bound"}},
        {"name": "scratch", "persistentVolumeClaim": {"claimName": "later"}},
    ]
    await add_pod(h, "db", volumes=volumes)
    assert await wait_bound(h, "db") == {"db": "b"}
    later = await h.get("", "persistentvolumeclaims", NS, "later")
    assert later is not None
    assert later["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "b"
    await add_pod(
        h, "orphan", volumes=[{"name": "x", "persistentVolumeClaim": {"claimName": "nope"}}]
    )
    message = await wait_unschedulable(h, "orphan")
    assert message == (
        '0/2 nodes are available: persistentvolumeclaim "nope" not found. '
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )
