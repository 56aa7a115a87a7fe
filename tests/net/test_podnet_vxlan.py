"""The VXLAN backend (issue 12): two agents on two subnets joined by a router (the switch
namespace), ``--network-backend vxlan``; a pod on one node reaches a pod on the other by
IP through the ``edgek.vxlan`` devices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.net.conftest import needs_podman
from tests.net.multinode import MultiNodeCluster, running_cluster
from tests.net.test_podnet import NS, edgek_routes, fetch_ok, httpd

pytestmark = [pytest.mark.e2e, needs_podman]


@pytest.fixture(scope="module")
def cluster(busybox_tar: Path, short_dirs: Callable[[], Path]) -> Iterator[MultiNodeCluster]:
    """A server and node0 on one subnet, node1 on another, VXLAN (VNI 7, port 4789)."""
    with running_cluster(
        ["192.168.52", "192.168.53"],
        short_dirs(),
        busybox_tar,
        [0, 1],
        ["--network-backend", "vxlan", "--vxlan-vni", "7", "--vxlan-port", "4789"],
    ) as c:
        yield c


def test_vxlan_pod_reaches_pod_on_a_node_of_another_subnet(cluster: MultiNodeCluster) -> None:
    """Each node routes the other's podCIDR through edgek.vxlan (VNI 7, port 4789) and
    pods reach each other by IP both ways."""
    cluster.apply(httpd("a", "node0"))
    cluster.apply(httpd("b", "node1"))
    ip_a = cluster.wait_pod_ip(NS, "a")
    ip_b = cluster.wait_pod_ip(NS, "b")
    cluster.wait(
        lambda: all(
            any("dev edgek.vxlan" in r for r in edgek_routes(cluster, n)) for n in cluster.nodes
        ),
        "the vxlan routes",
    )
    details = cluster.nodes["node0"].run("ip", "-d", "link", "show", "edgek.vxlan")
    assert "vxlan id 7 " in details and "dstport 4789 " in details, details
    cluster.wait(lambda: fetch_ok(cluster, "a", ip_b), "pod a to reach pod b", 30)
    cluster.wait(lambda: fetch_ok(cluster, "b", ip_a), "pod b to reach pod a", 30)
