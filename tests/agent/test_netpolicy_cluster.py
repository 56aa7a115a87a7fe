"""NetworkPolicy enforced for real (issue 12): the one-node cluster of
:mod:`tests.agent.agentcluster` (everything inside the test's network namespace) runs busybox
httpd pods in three namespaces; real connections between them (``kubectl exec … nc``) are
blocked or let through as the policies applied with kubectl say."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentcluster import AgentCluster
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.e2e.cluster import wait_for

pytestmark = [pytest.mark.e2e, needs_podman]
PODS = {"shop": "web", "team-a": "client", "team-b": "client"}


@pytest.fixture(scope="module")
def cluster(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> Iterator[AgentCluster]:
    """One server and one agent (a node name of its own: netavark's IPAM database is
    machine-wide, per network); an httpd pod (named port ``http``) in each namespace."""
    c = AgentCluster(netns, short_dirs(), busybox_tar, node="netpol1")
    try:
        c.start_server()
        c.start_agent()
        for namespace, name in PODS.items():
            c.kubectl("create", "namespace", namespace)
            c.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "httpd",
                                "image": IMAGE,
                                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                                "ports": [{"name": "http", "containerPort": 8080}],
                            }
                        ],
                    },
                }
            )
        for namespace, name in PODS.items():
            c.wait_pod(namespace, name, lambda p: p["status"].get("podIP"), f"{name} running", 90)
        yield c
    finally:
        c.stop()


def ip(cluster: AgentCluster, namespace: str) -> str:
    pod = cluster.pod(namespace, PODS[namespace])
    assert pod is not None
    return str(pod["status"]["podIP"])


def reaches(cluster: AgentCluster, src: str, dst: str) -> bool:
    """Whether the pod of namespace ``src`` gets a page from the pod of namespace ``dst``."""
    res = cluster.kubectl.run(
        "exec",
        "-n",
        src,
        PODS[src],
        "--",
        "sh",
        "-c",
        f"printf 'GET /passwd HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip(cluster, dst)} 8080",
        check=False,
    )
    return res.returncode == 0 and "root:x:0:0:" in res.stdout


def settles(cluster: AgentCluster, expected: dict[tuple[str, str], bool]) -> None:
    """Wait until every (src, dst) connection is allowed/blocked as ``expected``."""

    def seen() -> bool:
        return all(reaches(cluster, s, d) == want for (s, d), want in expected.items())

    wait_for(seen, f"connections {expected}", 30)


def policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"podSelector": {}, **spec},
    }


def clear(cluster: AgentCluster) -> None:
    for namespace in PODS:
        cluster.kubectl("delete", "networkpolicy", "--all", "-n", namespace)


def test_without_policies_every_pod_reaches_every_other(cluster: AgentCluster) -> None:
    settles(cluster, {("team-a", "shop"): True, ("team-b", "shop"): True, ("shop", "team-a"): True})


def test_default_deny_blocks_and_the_node_still_reaches_the_pod(cluster: AgentCluster) -> None:
    cluster.apply(policy("shop", "deny", policyTypes=["Ingress"]))
    settles(
        cluster, {("team-a", "shop"): False, ("team-b", "shop"): False, ("shop", "team-a"): True}
    )
    code, body = cluster.fetch(f"http://{ip(cluster, 'shop')}:8080/passwd")
    assert code == 0 and body.startswith("root:")  # kubelet probes come from the node
    clear(cluster)


def test_allow_from_one_namespace(cluster: AgentCluster) -> None:
    cluster.apply(policy("shop", "deny", policyTypes=["Ingress"]))
    team_a = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}}
    cluster.apply(
        policy("shop", "from-a", ingress=[{"from": [team_a], "ports": [{"port": "http"}]}])
    )
    settles(cluster, {("team-a", "shop"): True, ("team-b", "shop"): False})
    clear(cluster)


def test_ip_block_except(cluster: AgentCluster) -> None:
    node = json.loads(cluster.kubectl("get", "node", cluster.node, "-o", "json"))
    block = {"cidr": node["spec"]["podCIDR"], "except": [f"{ip(cluster, 'team-b')}/32"]}
    cluster.apply(policy("shop", "block", ingress=[{"from": [{"ipBlock": block}]}]))
    settles(cluster, {("team-a", "shop"): True, ("team-b", "shop"): False})
    clear(cluster)


def test_egress_policy_blocks_a_destination(cluster: AgentCluster) -> None:
    shop = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}
    cluster.apply(policy("team-a", "out", policyTypes=["Egress"], egress=[{"to": [shop]}]))
    settles(
        cluster, {("team-a", "shop"): True, ("team-a", "team-b"): False, ("team-b", "team-a"): True}
    )
    clear(cluster)
    settles(cluster, {("team-a", "team-b"): True})
