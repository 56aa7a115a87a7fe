"""Eviction end to end: an agent whose host sample the test controls
(:mod:`tests.agent.pressure_agent`) reports MemoryPressure once memory is short, the
control plane taints the node, and the agent evicts the pod using more than it requested:
Failed, reason Evicted, the kubelet's message, its containers gone; the pod within its
requests keeps running while the pressure is relieved."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentcluster import NODE, AgentCluster, started
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.agent.pressure_agent import PRESSURE_FILE
from tests.e2e.cluster import wait_for

pytestmark = [pytest.mark.e2e, needs_podman]
NS = "default"


@pytest.fixture(scope="module")
def cluster(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> Iterator[AgentCluster]:
    """One server and one pressure-controlled agent for the module."""
    with started(netns, short_dirs(), busybox_tar, "tests.agent.pressure_agent") as c:
        yield c


def pod(name: str, requests: dict[str, str]) -> dict[str, Any]:
    """A busybox pod holding 8Mi of memory, with ``requests``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "command": ["sh", "-c", "head -c 8388608 /dev/zero > /dev/shm/x; sleep 3600"],
                    "resources": {"requests": requests},
                }
            ],
        },
    }


def node(cluster: AgentCluster) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", "node", NODE, "-o", "json")))


def node_condition(cluster: AgentCluster, kind: str) -> str:
    found = [c for c in node(cluster)["status"]["conditions"] if c["type"] == kind]
    return str(found[0]["status"]) if found else ""


def running(p: dict[str, Any]) -> bool:
    return p["status"].get("phase") == "Running"


def test_memory_pressure_evicts_the_pod_over_its_requests(cluster: AgentCluster) -> None:
    cluster.apply(pod("hog", {}))
    cluster.apply(pod("modest", {"memory": "1Gi"}))
    for name in ("hog", "modest"):
        cluster.wait_pod(NS, name, running, "phase Running")
    pressure = cluster.agent_dir / "agent" / PRESSURE_FILE
    pressure.touch()
    try:
        wait_for(lambda: node_condition(cluster, "MemoryPressure") == "True", "pressure", 30)
        taints = node(cluster)["spec"].get("taints") or []
        evicted = cluster.wait_pod(
            NS, "hog", lambda p: p["status"].get("phase") == "Failed", "phase Failed", 60
        )
    finally:
        pressure.unlink()  # before the next round would evict "modest" too
    assert "node.kubernetes.io/memory-pressure" in [t["key"] for t in taints], taints
    assert evicted["status"]["reason"] == "Evicted"
    message = evicted["status"]["message"]
    assert message.startswith(
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        "Container main was using "
    ), message
    assert message.endswith(", request is 0, has larger consumption of memory. "), message
    events = [e for e in cluster.events(NS) if e["involvedObject"]["name"] == "hog"]
    assert any(e["reason"] == "Evicted" for e in events), events
    wait_for(
        lambda: not cluster.podman("ps", "-q", "--filter", "label=io.kubernetes.pod.name=hog"),
        "the evicted pod's containers to stop",
        30,
    )
    wait_for(lambda: node_condition(cluster, "MemoryPressure") == "False", "no pressure", 30)
    modest = cluster.pod(NS, "modest")
    assert modest is not None and running(modest)
