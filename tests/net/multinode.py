"""A multi-node cluster on one machine for the networking tests: network namespaces as hosts,
each joined by a veth pair to a bridge inside a "switch" namespace (one bridge per subnet;
the switch namespace routes between its subnets, so nodes on two subnets reach each other
through it). The server runs (without an agent) in a host of its own, each agent in another
with its own data dir and Podman storage; kubectl runs in the server's host via ``nsenter``.
No namespace has a link out of the machine; only addresses inside them are targeted."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.agent.agentcluster import (
    PORT,
    NsProcess,
    ready_with_cidr,
    remove_pods,
    server_command,
    wait_server_ready,
)
from tests.e2e.cluster import KUBECTL, wait_for
from tests.helpers import Kubectl


def ip(*args: str) -> None:
    """Run ``ip`` (raises when it fails)."""
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Host:
    """A network namespace with ``eth0`` on one of the switch's subnets."""

    def __init__(self, netns: str, address: str, gateway: str) -> None:
        self.netns = netns
        self.address = address
        self.gateway = gateway
        self.prefix = ["nsenter", f"--net=/run/netns/{netns}"]

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """Run a command inside the host; returns its stdout."""
        res = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0 or not check, f"{args}: {res.stderr}"
        return res.stdout

    def routes(self) -> list[str]:
        """The host's IPv4 routes (``ip route`` lines)."""
        return self.run("ip", "-4", "route").splitlines()


class Network:
    """The switch namespace and its hosts; ``subnets`` are /24 prefixes such as
    ``"192.168.50"`` (the switch holds ``.1`` on each, the default gateway of its hosts)."""

    def __init__(self, subnets: list[str]) -> None:
        tag = f"ek{os.getpid() % 100000}"
        self.tag = tag
        self.switch = f"{tag}-sw"
        self.subnets = subnets
        self.hosts: list[Host] = []
        self._next = dict.fromkeys(subnets, 10)
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "set", "lo", "up")
        subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{self.switch}",
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
            check=True,
        )
        for i, net in enumerate(subnets):
            ip("-n", self.switch, "link", "add", f"br{i}", "type", "bridge")
            ip("-n", self.switch, "addr", "add", f"{net}.1/24", "dev", f"br{i}")
            ip("-n", self.switch, "link", "set", f"br{i}", "up")

    def add_host(self, subnet: int = 0) -> Host:
        """A new host on subnet number ``subnet``."""
        net = self.subnets[subnet]
        number = self._next[net]
        self._next[net] += 1
        name = f"{self.tag}-h{len(self.hosts)}"
        address = f"{net}.{number}"
        ip("netns", "add", name)
        port = f"{name}-p"
        ip("link", "add", port, "netns", self.switch, "type", "veth", "peer", "eth0", "netns", name)
        ip("-n", self.switch, "link", "set", port, "master", f"br{subnet}", "up")
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "route", "add", "default", "via", f"{net}.1")
        host = Host(name, address, f"{net}.1")
        self.hosts.append(host)
        return host

    def delete(self) -> None:
        """Delete every namespace (their links go with them)."""
        for name in [h.netns for h in self.hosts] + [self.switch]:
            subprocess.run(["ip", "netns", "delete", name], check=False)


class MultiNodeCluster:
    """A server host and agent hosts on ``network`` (see the module docstring).
    ``server_args`` are extra server flags (e.g. ``--network-backend vxlan``)."""

    def __init__(
        self,
        network: Network,
        root: Path,
        busybox_tar: Path,
        agent_subnets: list[int],
        server_args: list[str] | None = None,
    ) -> None:
        self.network = network
        self.root = root
        self.busybox_tar = busybox_tar
        self.server_host = network.add_host(0)
        self.url = f"https://{self.server_host.address}:{PORT}"
        self.server_dir = root / "server"
        self.kubeconfig = self.server_dir / "kubeconfig.yaml"
        self.server = NsProcess(
            self.server_host.prefix,
            server_command(
                self.server_dir,
                self.server_host.address,
                "--tls-san",
                self.server_host.address,
                "--advertise-address",
                self.server_host.address,
                "--disable-agent",
                *(server_args or []),
            ),
            root / "server.log",
        )
        self.kubectl = Kubectl(
            KUBECTL, self.kubeconfig, root / "kcache", prefix=self.server_host.prefix
        )
        self.nodes: dict[str, Host] = {}
        self.agents: dict[str, NsProcess] = {}
        for i, subnet in enumerate(agent_subnets):
            name = f"node{i}"
            self.nodes[name] = network.add_host(subnet)
            self.agents[name] = NsProcess(self.nodes[name].prefix, [], root / f"{name}.log")

    def agent_dir(self, node: str) -> Path:
        """The data dir of ``node``'s agent."""
        return self.root / node

    def start(self) -> None:
        """Start the server, then every agent; wait until every node is Ready."""
        self.server.start()
        wait_server_ready(self.server, self.kubeconfig, self.kubectl)
        for node in self.nodes:
            images = self.agent_dir(node) / "agent" / "images"
            images.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.busybox_tar, images / self.busybox_tar.name)
            self.start_agent(node)
        for node in self.nodes:
            wait_for(functools.partial(self.node_ready, node), f"node {node} to be Ready", 90)

    def start_agent(self, node: str) -> None:
        """Start ``node``'s agent (not waiting)."""
        token = (self.server_dir / "server" / "node-token").read_text().strip()
        agent = self.agents[node]
        agent.args = [
            *self.nodes[node].prefix,
            sys.executable,
            "-m",
            "edgek",
            "agent",
            "--server",
            self.url,
            "--token",
            token,
            "--data-dir",
            str(self.agent_dir(node)),
            "--node-name",
            node,
            "--debug",
        ]
        agent.start()

    def node(self, name: str) -> dict[str, Any] | None:
        """The Node object, or None."""
        res = self.kubectl.run("get", "node", name, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def node_ready(self, name: str) -> bool:
        """Whether the node is registered, Ready, with a podCIDR."""
        agent = self.agents[name]
        if agent.proc is not None and not agent.running():
            raise AssertionError(f"agent {name} exited: {agent.tail()}")
        node = self.node(name)
        return node is not None and ready_with_cidr(node)

    def apply(self, manifest: dict[str, Any]) -> None:
        """``kubectl apply`` one object."""
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod, or None when it does not exist."""
        res = self.kubectl.run("get", "pod", "-n", namespace, name, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def wait_pod_ip(self, namespace: str, name: str, timeout: float = 90) -> str:
        """Wait until the pod runs and has an IP; returns it."""
        found: dict[str, str] = {}

        def running() -> bool:
            pod = self.pod(namespace, name) or {}
            status = pod.get("status") or {}
            found["ip"] = str(status.get("podIP") or "")
            return status.get("phase") == "Running" and bool(found["ip"])

        wait_for(running, f"pod {namespace}/{name} to run", timeout)
        return found["ip"]

    def exec(
        self, namespace: str, pod: str, *command: str, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl exec`` a command in the pod."""
        return self.kubectl.run("exec", "-n", namespace, pod, "--", *command, check=check)

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Wait until ``check()`` holds (the agents' logs on failure)."""
        try:
            wait_for(check, what, timeout)
        except AssertionError:
            tails = "\n".join(f"--- {n}\n{a.tail()}" for n, a in self.agents.items())
            raise AssertionError(f"{what}\n{tails}") from None

    def stop(self) -> None:
        """Stop the agents and the server, then remove every agent's containers."""
        for agent in self.agents.values():
            agent.stop()
        self.server.stop()
        for node, host in self.nodes.items():
            remove_pods(host.prefix, self.agent_dir(node))


@contextmanager
def running_cluster(
    subnets: list[str],
    root: Path,
    busybox_tar: Path,
    agent_subnets: list[int],
    server_args: list[str] | None = None,
) -> Iterator[MultiNodeCluster]:
    """A started :class:`MultiNodeCluster` on a new :class:`Network` of ``subnets``; all
    stopped and deleted at the end."""
    network = Network(subnets)
    try:
        cluster = MultiNodeCluster(network, root, busybox_tar, agent_subnets, server_args)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
    finally:
        network.delete()
