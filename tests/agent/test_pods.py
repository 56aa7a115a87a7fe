"""Pods run for real: the agent on its own Podman runs what the server binds to its node
(issue 11's acceptance), driven through the real kubectl, everything inside a network
namespace of the test's (see :mod:`tests.agent.agentcluster`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentcluster import AgentCluster, condition, container_status
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman

pytestmark = [pytest.mark.e2e, needs_podman]
NS = "default"


@pytest.fixture(scope="module")
def cluster(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> Iterator[AgentCluster]:
    """One server and one agent for the module."""
    c = AgentCluster(netns, short_dirs(), busybox_tar)
    try:
        c.start_server()
        c.start_agent()
        yield c
    finally:
        c.stop()


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Pod manifest of busybox containers."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": list(containers), "terminationGracePeriodSeconds": 5, **spec},
    }


def box(name: str, script: str, **fields: Any) -> dict[str, Any]:
    """A busybox container running ``sh -c script``."""
    return {"name": name, "image": IMAGE, "command": ["sh", "-c", script], **fields}


def phase(p: dict[str, Any]) -> str:
    return str((p.get("status") or {}).get("phase") or "")


def test_deployment_rolls_out_and_pods_answer_from_the_node(cluster: AgentCluster) -> None:
    """A Deployment of busybox httpd becomes available; each pod IP (from the node's
    podCIDR) answers HTTP from the node."""
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "httpd",
                                "image": IMAGE,
                                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                                "ports": [{"containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        }
    )
    cluster.kubectl("rollout", "status", "deployment/web", "-n", NS, "--timeout=90s")
    pods = cluster.pods(NS, "app=web")
    assert len(pods) == 2
    node = json.loads(cluster.kubectl("get", "node", "edge1", "-o", "json"))
    prefix = node["spec"]["podCIDR"].rsplit(".", 1)[0] + "."
    for p in pods:
        status = p["status"]
        assert status["phase"] == "Running"
        assert condition(p, "Ready") == "True"
        ip = status["podIP"]
        assert ip.startswith(prefix)
        cs = container_status(p)
        assert cs["containerID"].startswith("podman://")
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        for _ in range(30):
            code, body = cluster.fetch(f"http://{ip}:8080/passwd")
            if code == 0:
                break
            time.sleep(0.2)
        assert code == 0 and body.startswith("root:x:0:0:")


def test_crash_loop_back_off(cluster: AgentCluster) -> None:
    """A container that keeps exiting 3 is restarted once at once, then waits in
    CrashLoopBackOff with the exit in lastState."""
    cluster.apply(pod("crash", box("main", "exit 3")))

    def backing_off(p: dict[str, Any]) -> bool:
        cs = container_status(p)
        waiting = (cs.get("state") or {}).get("waiting") or {}
        return waiting.get("reason") == "CrashLoopBackOff"

    p = cluster.wait_pod(NS, "crash", backing_off, "CrashLoopBackOff", 60)
    cs = container_status(p)
    assert cs["restartCount"] >= 1
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off 10s restarting failed container=main" in cs["state"]["waiting"]["message"]
    assert phase(p) == "Running"
    reasons = {e["reason"] for e in cluster.events(NS) if e["involvedObject"]["name"] == "crash"}
    assert {"Created", "Started", "BackOff"} <= reasons


def test_restart_never_exit_7_fails(cluster: AgentCluster) -> None:
    """restartPolicy Never and exit 7: phase Failed, exit code 7, no restart."""
    cluster.apply(pod("seven", box("main", "exit 7"), restartPolicy="Never"))
    p = cluster.wait_pod(NS, "seven", lambda p: phase(p) == "Failed", "phase Failed")
    cs = container_status(p)
    assert cs["state"]["terminated"]["exitCode"] == 7
    assert cs["state"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 0
