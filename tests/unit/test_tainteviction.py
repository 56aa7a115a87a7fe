"""Taint-based eviction and the DefaultTolerationSeconds admission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgek.timefmt import format_time
from server.config import ServerConfig
from server.controllers.tainteviction import TaintEvictionController
from server.storage.objectstore import WriteOptions
from tests.unit.controller_harness import Harness


async def add_node(h: Harness, taints: list[dict[str, Any]] | None = None) -> None:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    if taints:
        body["spec"] = {"taints": taints}
    await h.create("", "nodes", "", body)


async def set_taints(h: Harness, taints: list[dict[str, Any]]) -> None:
    async def mutate(node: dict[str, Any] | None) -> dict[str, Any] | None:
        assert node is not None
        node.setdefault("spec", {})["taints"] = taints
        if not taints:
            del node["spec"]["taints"]
        return node

    await h.objects.modify(h.kind("", "nodes"), "", "n1", mutate, WriteOptions())


async def add_pod(h: Harness, name: str, tolerations: list[dict[str, Any]] | None = None) -> None:
    spec: dict[str, Any] = {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}
    if tolerations:
        spec["tolerations"] = tolerations
    await h.create(
        "",
        "pods",
        "default",
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
    )


async def evicted(h: Harness, name: str) -> bool:
    pod = await h.get("", "pods", "default", name)
    return pod is None or bool(pod["metadata"].get("deletionTimestamp"))


def taint(key: str, added: str | None = None) -> dict[str, Any]:
    out = {"key": key, "value": "x", "effect": "NoExecute"}
    if added:
        out["timeAdded"] = added
    return out


async def events(h: Harness) -> list[tuple[str, str]]:
    await h.events.flush()
    return [(e["reason"], e["message"]) for e in await h.list("", "events", "default")]


async def test_untolerated_no_execute_taint_evicts_at_once(harness: Harness) -> None:
    h = harness
    await add_node(h)
    await add_pod(h, "victim")
    await add_pod(
        h, "tolerant", [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]
    )
    await h.start(TaintEvictionController)
    await h.settle()
    assert not await evicted(h, "victim")  # no taint yet

    await set_taints(h, [taint("dedicated", format_time(h.clock()))])
    await h.settle()
    pod = await h.get("", "pods", "default", "victim")
    assert pod is not None  # bound pods are deleted gracefully
    assert pod["metadata"].get("deletionTimestamp")
    target = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (target["status"], target["reason"], target["message"]) == (
        "True",
        "DeletionByTaintManager",
        "Taint manager: deleting due to NoExecute taint",
    )
    assert not await evicted(h, "tolerant")
    assert ("TaintManagerEviction", "Marking for deletion Pod default/victim") in await events(h)
    event = next(
        e for e in await h.list("", "events", "default") if e["reason"] == "TaintManagerEviction"
    )
    assert event["source"]["component"] == "taint-eviction-controller"


async def test_toleration_seconds_count_from_time_added(harness: Harness) -> None:
    h = harness
    await add_node(h, [taint("node.kubernetes.io/unreachable", format_time(h.clock()))])
    h.clock.advance(20)
    toleration = {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 60,
    }
    await add_pod(h, "p", [toleration])
    forever = {k: v for k, v in toleration.items() if k != "tolerationSeconds"}
    await add_pod(h, "forever", [forever])
    (ctrl,) = await h.start(TaintEvictionController)
    await h.settle()
    assert not await evicted(h, "p")

    h.clock.advance(39)  # 59 s after the taint
    ctrl.queue.enqueue("default/p")
    await h.settle()
    assert not await evicted(h, "p")

    h.clock.advance(2)  # 61 s
    ctrl.queue.enqueue("default/p")
    ctrl.queue.enqueue("default/forever")
    await h.settle()
    assert await evicted(h, "p")
    assert not await evicted(h, "forever")


async def test_removing_the_taint_cancels_a_scheduled_eviction(harness: Harness) -> None:
    h = harness
    await add_node(h, [taint("node.kubernetes.io/not-ready", format_time(h.clock()))])
    await add_pod(
        h,
        "p",
        [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}],
    )
    (ctrl,) = await h.start(TaintEvictionController)
    await h.settle()
    await set_taints(h, [])
    await h.settle()
    h.clock.advance(301)
    ctrl.queue.enqueue("default/p")
    await h.settle()
    assert not await evicted(h, "p")
    assert ("TaintManagerEviction", "Cancelling deletion of Pod default/p") in await events(h)


async def test_default_toleration_seconds(tmp_path: Path) -> None:
    config = ServerConfig(
        data_dir=tmp_path,
        default_not_ready_toleration_seconds=120,
        default_unreachable_toleration_seconds=60,
    )
    h = await Harness.open(tmp_path, config)
    try:

        async def create(name: str, tolerations: list[dict[str, Any]] | None) -> list[Any]:
            spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
            if tolerations:
                spec["tolerations"] = tolerations
            pod = await h.create(
                "",
                "pods",
                "default",
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
            )
            return list(pod["spec"]["tolerations"])

        assert await create("plain", None) == [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 120,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 60,
            },
        ]
        own = {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}
        got = await create("own", [own])
        assert got[0] == own
        assert [t["key"] for t in got] == [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ]
        everything = {"operator": "Exists"}
        assert await create("all", [everything]) == [everything]

        # updates are left alone
        async def relabel(pod: dict[str, Any] | None) -> dict[str, Any] | None:
            assert pod is not None
            pod["metadata"]["labels"] = {"a": "b"}
            return pod

        updated, _ = await h.objects.modify(
            h.kind("", "pods"), "default", "all", relabel, WriteOptions()
        )
        assert updated["spec"]["tolerations"] == [everything]
    finally:
        await h.close()
