"""The pod network across nodes (issue 12): two agents on one subnet with the host-gw
backend; a pod on one node reaches a pod on the other by IP, a restarted agent leaves the
routes as they were, and deleting a node removes its route everywhere. Built with
:mod:`tests.net.multinode` (network namespaces as hosts, no link out of the machine)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.busybox_image import IMAGE
from tests.net.conftest import needs_podman
from tests.net.multinode import MultiNodeCluster, running_cluster

pytestmark = [pytest.mark.e2e, needs_podman]
NS = "default"


@pytest.fixture(scope="module")
def cluster(busybox_tar: Path, short_dirs: Callable[[], Path]) -> Iterator[MultiNodeCluster]:
    """A server and two agents (node0, node1) on one subnet, host-gw."""
    with running_cluster(["192.168.50"], short_dirs(), busybox_tar, [0, 0]) as c:
        yield c


def httpd(name: str, node: str) -> dict[str, Any]:
    """A busybox httpd pod (port 8080, serving /etc) bound to ``node``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "httpd",
                    "image": IMAGE,
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                }
            ],
        },
    }


def edgek_routes(cluster: MultiNodeCluster, node: str) -> list[str]:
    """The routes the agent made on ``node`` (protocol 222)."""
    out = cluster.nodes[node].run("ip", "-4", "route", "show", "proto", "222")
    return sorted(line.strip() for line in out.splitlines())


def fetch_ok(cluster: MultiNodeCluster, pod: str, ip: str) -> bool:
    """Whether ``pod`` gets /passwd from the httpd at ``ip``:8080 (busybox nc: the static
    busybox's wget crashes in these pods)."""
    request = f"printf 'GET /passwd HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080"
    res = cluster.exec(NS, pod, "sh", "-c", request)
    return res.returncode == 0 and "root:" in res.stdout


def test_host_gw_pod_reaches_pod_on_other_node(cluster: MultiNodeCluster) -> None:
    """Each node routes the other's podCIDR via its InternalIP; pods reach each other by IP
    both ways, and the peer sees the client's pod IP (no NAT inside the cluster CIDR)."""
    cluster.apply(httpd("a", "node0"))
    cluster.apply(httpd("b", "node1"))
    ip_a = cluster.wait_pod_ip(NS, "a")
    ip_b = cluster.wait_pod_ip(NS, "b")
    cidr = {n: (cluster.node(n) or {})["spec"]["podCIDR"] for n in cluster.nodes}
    host = {n: h.address for n, h in cluster.nodes.items()}
    cluster.wait(
        lambda: (
            edgek_routes(cluster, "node0") == [f"{cidr['node1']} via {host['node1']} dev eth0"]
            and edgek_routes(cluster, "node1") == [f"{cidr['node0']} via {host['node0']} dev eth0"]
        ),
        "the host-gw routes",
    )
    cluster.wait(lambda: fetch_ok(cluster, "a", ip_b), "pod a to reach pod b", 30)
    cluster.wait(lambda: fetch_ok(cluster, "b", ip_a), "pod b to reach pod a", 30)


def test_restarted_agent_leaves_routes_as_they_were(cluster: MultiNodeCluster) -> None:
    """Stopping and starting an agent changes no route (its own or the peers')."""
    before = {n: edgek_routes(cluster, n) for n in cluster.nodes}
    assert all(before.values())
    log = cluster.agents["node0"].log
    syncs = log.read_text().count("pod network: backend")
    cluster.agents["node0"].stop()
    assert {n: edgek_routes(cluster, n) for n in cluster.nodes} == before
    cluster.start_agent("node0")
    cluster.wait(lambda: cluster.node_ready("node0"), "node0 to be Ready again", 90)
    cluster.wait(
        lambda: log.read_text().count("pod network: backend") > syncs,
        "the restarted agent to sync its pod network",
    )
    time.sleep(3)  # a further pass (SYNC_SECONDS) would have changed a route by now
    assert {n: edgek_routes(cluster, n) for n in cluster.nodes} == before


def test_deleting_a_node_removes_its_routes_everywhere(cluster: MultiNodeCluster) -> None:
    """Deleting node1 (its agent stopped) removes the route to its podCIDR from node0."""
    assert edgek_routes(cluster, "node0")
    cluster.agents["node1"].stop()
    cluster.kubectl("delete", "node", "node1")
    cluster.wait(lambda: edgek_routes(cluster, "node0") == [], "node0 to drop node1's route")
