"""The DaemonSet loop on the controller bench: a pod per eligible node (selectors, taints and
tolerations), nodes joining and leaving, rolling updates with maxUnavailable and maxSurge,
OnDelete, revisions and status."""

from __future__ import annotations

from typing import Any

from server.controllers.daemonset import (
    TEMPLATE_GENERATION_LABEL,
    DaemonSetController,
    node_should_run,
    target_node,
)
from server.controllers.history import REVISION_HASH_LABEL
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness

NS = "kube-system"


def _node(name: str, labels: dict[str, str] | None = None, taints: list[Any] | None = None) -> Any:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
    }
    if taints:
        body["spec"]["taints"] = taints
    return body


def _ds(
    *,
    image: str = "agent:1",
    node_selector: dict[str, str] | None = None,
    tolerations: list[Any] | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "c", "image": image}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec},
    }
    if strategy is not None:
        spec["updateStrategy"] = strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": spec,
    }


async def _pods(h: Harness) -> list[dict[str, Any]]:
    return await h.list("", "pods", NS)


async def _by_node(h: Harness) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for pod in await _pods(h):
        out.setdefault(target_node(pod), []).append(pod)
    return out


async def _ready_all(h: Harness) -> None:
    for pod in await _pods(h):
        if pod["status"].get("phase") != "Running":
            await h.set_pod_status(NS, pod["metadata"]["name"])


async def _ds_obj(h: Harness) -> dict[str, Any]:
    ds = await h.get("apps", "daemonsets", NS, "agent")
    assert ds is not None
    return ds


async def _modify_ds(h: Harness, fn: Any) -> None:
    async def mutate(cur: dict[str, Any] | None) -> dict[str, Any] | None:
        assert cur is not None
        fn(cur)
        return cur

    await h.objects.modify(h.kind("apps", "daemonsets"), NS, "agent", mutate, WriteOptions())


def _set_image(image: str) -> Any:
    def fn(ds: dict[str, Any]) -> None:
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return fn


def _image(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["containers"][0]["image"])


async def test_pod_per_eligible_node(harness: Harness) -> None:
    h = harness
    await h.create("", "nodes", "", _node("n1", {"role": "edge"}))
    await h.create("", "nodes", "", _node("n2", {"role": "edge"}))
    await h.create("", "nodes", "", _node("n3", {"role": "core"}))
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    await h.create("", "nodes", "", _node("n4", {"role": "edge"}, [taint]))
    await h.start(DaemonSetController)
    await h.create("apps", "daemonsets", NS, _ds(node_selector={"role": "edge"}))
    await h.settle()

    by_node = await _by_node(h)
    assert sorted(by_node) == ["n1", "n2"]  # n3: selector, n4: untolerated taint
    pod = by_node["n1"][0]
    assert not pod["spec"].get("nodeName")  # the scheduler binds it
    assert pod["metadata"]["name"].startswith("agent-")
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]
    }
    tolerations = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert tolerations == {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    }
    assert all("tolerationSeconds" not in t for t in pod["spec"]["tolerations"])
    labels = pod["metadata"]["labels"]
    assert labels[TEMPLATE_GENERATION_LABEL] == "1"
    [revision] = await h.list("apps", "controllerrevisions", NS)
    assert revision["metadata"]["name"] == f"agent-{labels[REVISION_HASH_LABEL]}"
    assert revision["metadata"]["labels"][REVISION_HASH_LABEL] == labels[REVISION_HASH_LABEL]

    await _ready_all(h)
    await h.settle()
    status = (await _ds_obj(h))["status"]
    assert status == {
        "currentNumberScheduled": 2,
        "desiredNumberScheduled": 2,
        "numberMisscheduled": 0,
        "numberReady": 2,
        "numberAvailable": 2,
        "updatedNumberScheduled": 2,
        "observedGeneration": 1,
    }
    await h.events.flush()
    creates = [e for e in await h.list("", "events", NS) if e["reason"] == "SuccessfulCreate"]
    assert sorted(e["message"] for e in creates) == sorted(
        f"Created pod: {p['metadata']['name']}" for p in await _pods(h)
    )

    # a toleration opens the tainted node
    def tolerate(ds: dict[str, Any]) -> None:
        ds["spec"]["template"]["spec"]["tolerations"] = [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ]

    await _modify_ds(h, tolerate)
    await h.settle()
    assert "n4" in await _by_node(h)


async def test_nodes_joining_leaving_and_changing(harness: Harness) -> None:
    h = harness
    await h.create("", "nodes", "", _node("n1"))
    await h.start(DaemonSetController)
    await h.create("apps", "daemonsets", NS, _ds())
    await h.settle()
    assert sorted(await _by_node(h)) == ["n1"]

    await h.create("", "nodes", "", _node("n2"))
    await h.settle()
    assert sorted(await _by_node(h)) == ["n1", "n2"]

    nodes = h.kind("", "nodes")
    await h.objects.delete(nodes, "", "n2", DeleteOptions())
    await h.settle()
    assert sorted(await _by_node(h)) == ["n1"]

    # a NoExecute taint the pod does not tolerate evicts it; NoSchedule would not
    async def taint(node: dict[str, Any] | None) -> dict[str, Any] | None:
        assert node is not None
        node["spec"]["taints"] = [{"key": "maintenance", "effect": "NoSchedule"}]
        return node

    await h.objects.modify(nodes, "", "n1", taint, WriteOptions())
    await h.settle()
    assert sorted(await _by_node(h)) == ["n1"]
    assert node_should_run((await h.get("", "nodes", "", "n1")) or {}, await _ds_obj(h)) == (
        False,
        True,
    )

    async def evict(node: dict[str, Any] | None) -> dict[str, Any] | None:
        assert node is not None
        node["spec"]["taints"] = [{"key": "maintenance", "effect": "NoExecute"}]
        return node

    await h.objects.modify(nodes, "", "n1", evict, WriteOptions())
    await h.settle()
    assert await _by_node(h) == {}
    status = (await _ds_obj(h))["status"]
    assert status["desiredNumberScheduled"] == 0 and status["currentNumberScheduled"] == 0


async def test_cordoned_and_not_ready_nodes_keep_daemon_pods(harness: Harness) -> None:
    h = harness
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    body = _node(
        "n1",
        taints=[unreachable, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
    )
    body["spec"]["unschedulable"] = True
    await h.create("", "nodes", "", body)
    await h.start(DaemonSetController)
    await h.create("apps", "daemonsets", NS, _ds())
    await h.settle()
    assert sorted(await _by_node(h)) == ["n1"]


async def test_rolling_update_respects_max_unavailable(harness: Harness) -> None:
    h = harness
    for n in ("n1", "n2", "n3", "n4"):
        await h.create("", "nodes", "", _node(n))
    await h.start(DaemonSetController)
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}
    await h.create("apps", "daemonsets", NS, _ds(strategy=strategy))
    await h.settle()
    await _ready_all(h)
    await h.settle()
    first_hash = (await _pods(h))[0]["metadata"]["labels"][REVISION_HASH_LABEL]

    await _modify_ds(h, _set_image("agent:2"))
    steps = 0
    while True:
        await h.settle()
        pods = await _pods(h)
        # at most 2 nodes without an available pod at any observed step
        available = {target_node(p) for p in pods if p["status"].get("phase") == "Running"}
        assert len(available) >= 2
        if len(pods) == 4 and all(
            _image(p) == "agent:2" and p["status"].get("phase") == "Running" for p in pods
        ):
            break
        await _ready_all(h)
        steps += 1
        assert steps < 10
    assert steps == 2  # two waves of two
    pods = await _pods(h)
    assert sorted(target_node(p) for p in pods) == ["n1", "n2", "n3", "n4"]
    new_hash = pods[0]["metadata"]["labels"][REVISION_HASH_LABEL]
    assert new_hash != first_hash
    assert {p["metadata"]["labels"][TEMPLATE_GENERATION_LABEL] for p in pods} == {"2"}
    await h.settle()
    status = (await _ds_obj(h))["status"]
    assert status["updatedNumberScheduled"] == 4 and status["numberAvailable"] == 4
    revisions = {
        r["metadata"]["name"]: r["revision"]
        for r in await h.list("apps", "controllerrevisions", NS)
    }
    assert revisions == {f"agent-{first_hash}": 1, f"agent-{new_hash}": 2}


async def test_rolling_update_with_surge(harness: Harness) -> None:
    h = harness
    for n in ("n1", "n2"):
        await h.create("", "nodes", "", _node(n))
    await h.start(DaemonSetController)
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    await h.create("apps", "daemonsets", NS, _ds(strategy=strategy))
    await h.settle()
    await _ready_all(h)
    await h.settle()

    await _modify_ds(h, _set_image("agent:2"))
    await h.settle()
    by_node = await _by_node(h)
    # one node surges: its old pod stays until the new one is available
    assert sorted(len(v) for v in by_node.values()) == [1, 2]
    for _ in range(10):
        await _ready_all(h)
        await h.settle()
        pods = await _pods(h)
        assert len({target_node(p) for p in pods if p["status"].get("phase") == "Running"}) == 2
        if len(pods) == 2 and {_image(p) for p in pods} == {"agent:2"}:
            break
    else:
        raise AssertionError("surge rollout did not finish")


async def test_on_delete_and_failed_pods(harness: Harness) -> None:
    h = harness
    await h.create("", "nodes", "", _node("n1"))
    await h.start(DaemonSetController)
    await h.create("apps", "daemonsets", NS, _ds(strategy={"type": "OnDelete"}))
    await h.settle()
    await _ready_all(h)
    await _modify_ds(h, _set_image("agent:2"))
    await h.settle()
    [pod] = await _pods(h)
    assert _image(pod) == "agent:1"
    assert (await _ds_obj(h))["status"].get("updatedNumberScheduled", 0) == 0

    await h.objects.delete(h.kind("", "pods"), NS, pod["metadata"]["name"], DeleteOptions())
    await h.settle()
    [pod] = await _pods(h)
    assert _image(pod) == "agent:2"

    # a failed daemon pod is replaced, with a warning
    async def fail(cur: dict[str, Any] | None) -> dict[str, Any] | None:
        assert cur is not None
        cur["status"] = {"phase": "Failed"}
        return cur

    await h.objects.modify(
        h.kind("", "pods"), NS, pod["metadata"]["name"], fail, WriteOptions(subresource="status")
    )
    await h.settle()
    [replacement] = await _pods(h)
    assert replacement["metadata"]["uid"] != pod["metadata"]["uid"]
    await h.events.flush()
    warnings = [e["message"] for e in await h.list("", "events", NS) if e["type"] == "Warning"]
    assert warnings == [
        f"Found failed daemon pod {NS}/{pod['metadata']['name']} on node n1, will try to kill it"
    ]


async def test_orphans_adopted_and_excess_pruned(harness: Harness) -> None:
    h = harness
    await h.create("", "nodes", "", _node("n1"))
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stray", "labels": {"app": "agent"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "agent:1"}]},
    }
    await h.create("", "pods", NS, orphan)
    await h.start(DaemonSetController)
    ds = await h.create("apps", "daemonsets", NS, _ds())
    await h.settle()
    [pod] = await _pods(h)  # the adopted pod serves n1; no second pod is made
    assert pod["metadata"]["name"] == "stray"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
