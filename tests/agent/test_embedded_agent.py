"""``edgek server`` without ``--disable-agent`` runs the agent in-process for its own node:
one command gives a one-node cluster that runs pods (inside the test's network namespace)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent.agentcluster import AgentCluster, condition
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.e2e.cluster import wait_for

pytestmark = [pytest.mark.e2e, needs_podman]


def test_server_runs_pods_on_its_own_node(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> None:
    """The server's node registers Ready with the control-plane label; a Deployment's pod
    runs on it."""
    cluster = AgentCluster(netns, short_dirs(), busybox_tar, embedded=True)
    name = socket.gethostname().lower()
    try:
        cluster.start_server()
        wait_for(lambda: cluster.node_ready(name), "the server's node Ready", 90)
        node = json.loads(cluster.kubectl("get", "node", name, "-o", "json"))
        assert node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
        cluster.kubectl("create", "deployment", "hello", f"--image={IMAGE}", "--", "sleep", "3600")
        cluster.kubectl("rollout", "status", "deployment/hello", "--timeout=90s")
        (pod,) = cluster.pods("default", "app=hello")
        assert pod["spec"]["nodeName"] == name and condition(pod, "Ready") == "True"
    finally:
        cluster.stop()
