"""Node lifecycle: silent nodes go Unknown after the grace period, conditions become taints,
pods on a not-ready node are marked not Ready."""

from __future__ import annotations

from typing import Any

from edgek.timefmt import format_micro_time, format_time
from server.controllers.nodelifecycle import NodeLifecycleController
from server.controllers.runtime import Controller
from server.storage.objectstore import WriteOptions
from tests.unit.controller_harness import Harness

STATUS = WriteOptions(subresource="status")


def conditions(ready: str, when: str) -> list[dict[str, Any]]:
    base = [("Ready", ready)] + [
        (t, "False") for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    return [
        {
            "type": t,
            "status": s,
            "reason": "Kubelet",
            "message": "",
            "lastHeartbeatTime": when,
            "lastTransitionTime": when,
        }
        for t, s in base
    ]


async def add_node(h: Harness, name: str, ready: str = "True") -> None:
    await h.create(
        "",
        "nodes",
        "",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {"conditions": conditions(ready, format_time(h.clock()))},
        },
    )
    await h.create(
        "coordination.k8s.io",
        "leases",
        "kube-node-lease",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": {"holderIdentity": name, "renewTime": format_micro_time(h.clock())},
        },
    )


async def renew(h: Harness, name: str) -> None:
    async def mutate(lease: dict[str, Any] | None) -> dict[str, Any] | None:
        assert lease is not None
        lease["spec"]["renewTime"] = format_micro_time(h.clock())
        return lease

    kind = h.kind("coordination.k8s.io", "leases")
    await h.objects.modify(kind, "kube-node-lease", name, mutate, WriteOptions())


async def post_status(h: Harness, name: str, ready: str) -> None:
    """What a kubelet does: fresh conditions with a new heartbeat."""

    async def mutate(node: dict[str, Any] | None) -> dict[str, Any] | None:
        assert node is not None
        node["status"]["conditions"] = conditions(ready, format_time(h.clock()))
        return node

    await h.objects.modify(h.kind("", "nodes"), "", name, mutate, STATUS)


async def node(h: Harness, name: str) -> dict[str, Any]:
    found = await h.get("", "nodes", "", name)
    assert found is not None
    return found


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def taints(obj: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in obj.get("spec", {}).get("taints") or []}


async def check(h: Harness, ctrl: Controller, *names: str) -> None:
    for name in names:
        ctrl.queue.enqueue(name)
    await h.settle()


async def test_silent_node_goes_unknown_and_is_tainted(harness: Harness) -> None:
    h = harness
    await add_node(h, "n1")
    await add_node(h, "n2")
    (ctrl,) = await h.start(NodeLifecycleController)
    await h.settle()
    assert taints(await node(h, "n1")) == set()

    h.clock.advance(30)
    await renew(h, "n2")
    await check(h, ctrl, "n1", "n2")
    assert cond(await node(h, "n1"), "Ready")["status"] == "True"  # still within grace

    h.clock.advance(15)  # n1: 45 s silent; n2 renewed 15 s ago
    await renew(h, "n2")
    await check(h, ctrl, "n1", "n2")
    n1 = await node(h, "n1")
    ready = cond(n1, "Ready")
    assert ready["status"] == "Unknown"
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert ready["lastTransitionTime"] == format_time(h.clock())
    for other in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert cond(n1, other)["status"] == "Unknown"
    assert taints(n1) == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    assert all(t["timeAdded"] == format_time(h.clock()) for t in n1["spec"]["taints"])
    assert cond(await node(h, "n2"), "Ready")["status"] == "True"
    assert taints(await node(h, "n2")) == set()

    await h.events.flush()
    events = await h.list("", "events", "default")
    assert any(
        e["reason"] == "NodeNotReady" and e["message"] == "Node n1 status is now: NodeNotReady"
        for e in events
    )


async def test_node_recovers_when_the_kubelet_posts_again(harness: Harness) -> None:
    h = harness
    await add_node(h, "n1")
    await add_node(h, "n2")
    (ctrl,) = await h.start(NodeLifecycleController)
    await h.settle()  # first seen now: a fresh grace period, as after a restart
    h.clock.advance(41)
    await renew(h, "n2")
    await check(h, ctrl, "n1", "n2")
    assert ("node.kubernetes.io/unreachable", "NoExecute") in taints(await node(h, "n1"))

    h.clock.advance(5)
    await post_status(h, "n1", "True")
    await renew(h, "n1")
    await h.settle()
    n1 = await node(h, "n1")
    assert cond(n1, "Ready")["status"] == "True"
    assert taints(n1) == set()


async def test_not_ready_node_and_its_pods(harness: Harness) -> None:
    h = harness
    await add_node(h, "n1")
    await add_node(h, "n2")
    pod = await h.create(
        "",
        "pods",
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        },
    )
    await h.set_pod_status("default", "p")
    await h.start(NodeLifecycleController)
    await h.settle()

    h.clock.advance(3)
    await post_status(h, "n1", "False")  # the kubelet itself reports NotReady
    await h.settle()
    n1 = await node(h, "n1")
    assert taints(n1) == {
        ("node.kubernetes.io/not-ready", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
    }
    got = await h.get("", "pods", "default", "p")
    assert got is not None and got["metadata"]["uid"] == pod["metadata"]["uid"]
    ready = cond(got, "Ready")
    assert ready["status"] == "False"
    assert ready["lastTransitionTime"] == format_time(h.clock())
    await h.events.flush()
    events = await h.list("", "events", "default")
    assert any(
        e["reason"] == "NodeNotReady"
        and e["type"] == "Warning"
        and e["involvedObject"]["name"] == "p"
        and e["message"] == "Node is not ready"
        for e in events
    )


async def test_cordon_taints_unschedulable(harness: Harness) -> None:
    h = harness
    await add_node(h, "n1")
    await h.start(NodeLifecycleController)
    await h.settle()

    async def cordon(value: bool) -> None:
        async def mutate(obj: dict[str, Any] | None) -> dict[str, Any] | None:
            assert obj is not None
            obj.setdefault("spec", {})["unschedulable"] = value
            return obj

        await h.objects.modify(h.kind("", "nodes"), "", "n1", mutate, WriteOptions())
        await h.settle()

    await cordon(True)
    assert taints(await node(h, "n1")) == {("node.kubernetes.io/unschedulable", "NoSchedule")}
    await cordon(False)
    assert taints(await node(h, "n1")) == set()


async def test_no_eviction_taints_when_every_node_is_down(harness: Harness) -> None:
    """Upstream's full-disruption mode: nobody Ready means the fault is likely ours."""
    h = harness
    await add_node(h, "n1")
    (ctrl,) = await h.start(NodeLifecycleController)
    await h.settle()  # first seen now: a fresh grace period, as after a restart
    h.clock.advance(41)
    await check(h, ctrl, "n1")
    n1 = await node(h, "n1")
    assert cond(n1, "Ready")["status"] == "Unknown"
    assert taints(n1) == {("node.kubernetes.io/unreachable", "NoSchedule")}


async def test_lease_renewals_alone_keep_a_node_alive(harness: Harness) -> None:
    h = harness
    await add_node(h, "n1")
    (ctrl,) = await h.start(NodeLifecycleController)
    await h.settle()
    for _ in range(4):
        h.clock.advance(20)
        await renew(h, "n1")
        await check(h, ctrl, "n1")
    assert cond(await node(h, "n1"), "Ready")["status"] == "True"


async def test_node_that_never_reported_gets_unknown_conditions(harness: Harness) -> None:
    h = harness
    await add_node(h, "n2")
    await h.create(
        "", "nodes", "", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    )
    (ctrl,) = await h.start(NodeLifecycleController)
    await h.settle()  # first seen now: a fresh grace period, as after a restart
    h.clock.advance(41)
    await renew(h, "n2")
    await check(h, ctrl, "n1", "n2")
    n1 = await node(h, "n1")
    ready = cond(n1, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown",
        "NodeStatusNeverUpdated",
        "Kubelet never posted node status.",
    )
    assert ready["lastHeartbeatTime"] == n1["metadata"]["creationTimestamp"]
    assert ("node.kubernetes.io/unreachable", "NoExecute") in taints(n1)
