"""The service proxy with real pods: server + agent + kubectl inside one test network
namespace (:mod:`tests.agent.agentcluster`), the agent programming the namespace's iptables.
A ClusterIP answers from the node and from a pod, a NodePort answers on a node address, a
pod that turns unready stops receiving traffic, a deleted service's chains go away, and the
rules stay in place (and come back identical) across an agent restart.

The node's address (``NODE_IP``, its InternalIP) sits on a veth pair whose ends both stay
in the namespace, and the namespace's default route points there, as on a real host."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netpolicy.proxy import chain_name
from tests.agent.agentcluster import AgentCluster
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.e2e.cluster import wait_for

pytestmark = [pytest.mark.e2e, needs_podman]
NS = "default"
NODE_IP = "10.99.0.1"
NODE_PORT = 30080
SERVE = "hostname > /tmp/index.html; touch /tmp/ready; exec httpd -f -p 8080 -h /tmp"


@pytest.fixture(scope="module")
def cluster(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> Iterator[AgentCluster]:
    """One server and one agent; a node address and a route for the service CIDR."""
    ip = [*netns, "ip"]
    subprocess.run(
        [*ip, "link", "add", "edgek-n0", "type", "veth", "peer", "name", "edgek-n1"], check=True
    )
    subprocess.run([*ip, "addr", "add", f"{NODE_IP}/24", "dev", "edgek-n0"], check=True)
    for link in ("edgek-n0", "edgek-n1"):
        subprocess.run([*ip, "link", "set", link, "up"], check=True)
    subprocess.run([*ip, "route", "add", "default", "dev", "edgek-n0"], check=True)
    # a node name of its own: the host's netavark keeps one IP pool per network name
    c = AgentCluster(
        netns,
        short_dirs(),
        busybox_tar,
        node=f"svcproxy{os.getpid()}",
        agent_args=("--service-proxy",),
    )
    try:
        c.start_server()
        c.start_agent()
        yield c
    finally:
        c.stop()


def deployment(name: str, replicas: int) -> dict[str, Any]:
    """busybox httpd on 8080 answering its pod name, ready while /tmp/ready exists."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "httpd",
                            "image": IMAGE,
                            "command": ["sh", "-c", SERVE],
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {
                                "exec": {"command": ["test", "-f", "/tmp/ready"]},
                                "periodSeconds": 1,
                                "timeoutSeconds": 10,
                                "failureThreshold": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    """A NodePort Service for the deployment ``name``: port 80 -> 8080."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "type": "NodePort",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": NODE_PORT}],
        },
    }


def answers(cluster: AgentCluster, url: str, times: int) -> set[str]:
    """The pod names that answered ``times`` GETs of ``url`` from the node."""
    got = set()
    for _ in range(times):
        code, body = cluster.fetch(url, timeout=3)
        assert code == 0, f"GET {url} failed\n{cluster.agent.tail()}"
        got.add(body.strip())
    return got


def saved(cluster: AgentCluster) -> str:
    """The namespace's nat and filter tables, edgek's chains only, without comments."""
    out = []
    for table in ("nat", "filter"):
        text = subprocess.run(
            [*cluster.prefix, "iptables-save", "-t", table],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out += [line for line in text.splitlines() if "EDGEK-" in line]
    return "\n".join(out)


def rollout(cluster: AgentCluster, name: str) -> None:
    """Wait for the deployment's pods to be available (the pods and the agent's log in the
    failure)."""
    res = cluster.kubectl.run(
        "rollout", "status", f"deployment/{name}", "-n", NS, "--timeout=50s", check=False
    )
    if res.returncode:
        pods = json.dumps([p.get("status") for p in cluster.pods(NS, f"app={name}")])
        raise AssertionError(f"{name} not rolled out: {pods[:3000]}\n{cluster.agent.tail()}")


@pytest.fixture(scope="module")
def web(cluster: AgentCluster) -> tuple[str, list[str]]:
    """The web deployment (2 ready pods) and its service: (cluster IP, pod names)."""
    cluster.apply(deployment("web", 2))
    cluster.apply(service("web"))
    rollout(cluster, "web")
    svc = json.loads(cluster.kubectl("get", "service", "-n", NS, "web", "-o", "json"))
    names = [p["metadata"]["name"] for p in cluster.pods(NS, "app=web")]
    ip = svc["spec"]["clusterIP"]
    wait_for(lambda: cluster.fetch(f"http://{ip}/", timeout=2)[0] == 0, "the ClusterIP", 30)
    return ip, names


def test_cluster_ip_and_node_port_from_the_node(
    cluster: AgentCluster, web: tuple[str, list[str]]
) -> None:
    ip, names = web
    assert answers(cluster, f"http://{ip}/", 30) == set(names)
    assert answers(cluster, f"http://{NODE_IP}:{NODE_PORT}/", 30) == set(names)


def test_cluster_ip_from_a_pod(cluster: AgentCluster, web: tuple[str, list[str]]) -> None:
    ip, names = web
    cluster.apply(deployment("client", 1))
    rollout(cluster, "client")
    client = cluster.pods(NS, "app=client")[0]["metadata"]["name"]
    got = set()
    for _ in range(20):
        got.add(
            cluster.kubectl("exec", "-n", NS, client, "--", "wget", "-qO-", f"http://{ip}/").strip()
        )
    assert got == set(names)


def test_unready_pod_stops_receiving_traffic(
    cluster: AgentCluster, web: tuple[str, list[str]]
) -> None:
    ip, names = web
    gone, kept = names
    cluster.kubectl("exec", "-n", NS, gone, "--", "rm", "/tmp/ready")
    wait_for(
        lambda: answers(cluster, f"http://{ip}/", 10) == {kept}, "traffic to the ready pod only", 30
    )
    assert answers(cluster, f"http://{ip}/", 20) == {kept}
    cluster.kubectl("exec", "-n", NS, gone, "--", "touch", "/tmp/ready")
    wait_for(lambda: answers(cluster, f"http://{ip}/", 20) == set(names), "both pods again", 30)


def test_load_balancer_gets_the_node_address_and_answers_there(
    cluster: AgentCluster, web: tuple[str, list[str]]
) -> None:
    _, names = web
    lb = service("web")
    lb["metadata"]["name"] = "web-lb"
    lb["spec"] |= {
        "type": "LoadBalancer",
        "ports": [{"name": "http", "port": 8088, "targetPort": 8080}],
    }
    cluster.apply(lb)

    def ingress() -> list[dict[str, Any]]:
        svc = json.loads(cluster.kubectl("get", "service", "-n", NS, "web-lb", "-o", "json"))
        return list(((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])

    wait_for(lambda: ingress() == [{"ip": NODE_IP}], "the node address as ingress", 30)
    wait_for(lambda: cluster.fetch(f"http://{NODE_IP}:8088/", timeout=2)[0] == 0, "the LB port", 30)
    assert answers(cluster, f"http://{NODE_IP}:8088/", 30) == set(names)


@pytest.mark.xfail(
    reason="after an agent restart (pods started at once from the recorded podCIDR) no full "
    "proxy sync is logged within 60 s; passed before the last rebases onto the pod network, "
    "DNS and policy work, not diagnosed yet",
    strict=False,
)
def test_rules_survive_an_agent_restart_identically(
    cluster: AgentCluster, web: tuple[str, list[str]]
) -> None:
    ip, names = web
    before = saved(cluster)
    synced = cluster.agent.log.read_text(errors="replace").count(" service proxy synced (full")
    cluster.agent.stop()
    assert saved(cluster) == before  # the rules stay while the agent is down
    assert answers(cluster, f"http://{ip}/", 10) <= set(names)
    cluster.start_agent(wait_ready=False)
    wait_for(
        lambda: (
            cluster.agent.log.read_text(errors="replace").count(" service proxy synced (full")
            > synced
        ),
        "the first sync",
        60,
    )
    assert saved(cluster) == before


def test_deleted_service_loses_its_chains(
    cluster: AgentCluster, web: tuple[str, list[str]]
) -> None:
    chain = chain_name("SVC", "default/web:http", "tcp")
    assert chain in saved(cluster)
    cluster.kubectl("delete", "service", "-n", NS, "web", "web-lb")
    wait_for(lambda: "default/web:http" not in saved(cluster), "the service's rules to go", 30)
    assert chain not in saved(cluster)
