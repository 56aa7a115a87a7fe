"""netpolicy/apply.py with real iptables and ipset: a node namespace with a bridge and three
"pod" namespaces on it, plus a routed "outside" namespace, all created by the test with no
link out of the machine; real TCP connections cross the node's FORWARD chain."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from netpolicy.policy import build

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(shutil.which(t) for t in ("ip", "nsenter", "iptables-restore", "ipset")),
    reason="needs root, ip, nsenter, iptables-restore and ipset",
)

PODS = {"web": ("shop", "10.42.0.10"), "a": ("team-a", "10.42.0.20"), "b": ("team-b", "10.42.0.30")}
OUTSIDE, EXCEPTED = "192.168.5.5", "192.168.6.6"
PORT = 8080
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b"ok"); c.close()
"""
CLIENT = """
import socket, sys
s = socket.socket(); s.settimeout(1.5); s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3]))); print(s.recv(2).decode())
except OSError as e:
    print("blocked", e)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def _enter(ns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}"]


@pytest.fixture(scope="module")
def hosts() -> Iterator[str]:
    """Namespaces: node (bridge 10.42.0.1/24, router to 192.168.0.0/16), the pods, outside;
    a server on :8080 in each pod and outside. Yields the node namespace's name."""
    tag = f"npt{os.getpid()}"
    node = f"{tag}-node"
    names = [node, *(f"{tag}-{p}" for p in PODS), f"{tag}-out"]
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for ns in names:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", node, "link", "add", "br0", "type", "bridge")
        _ip("-n", node, "addr", "add", "10.42.0.1/24", "dev", "br0")
        _ip("-n", node, "link", "set", "br0", "up")
        for pod, (_, address) in PODS.items():
            ns = f"{tag}-{pod}"
            _ip("-n", node, "link", "add", f"v{pod}", "type", "veth", "peer", "eth0", "netns", ns)
            _ip("-n", node, "link", "set", f"v{pod}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", "10.42.0.1")
        out = f"{tag}-out"
        _ip("-n", node, "link", "add", "vout", "type", "veth", "peer", "eth0", "netns", out)
        _ip("-n", node, "addr", "add", "192.168.0.1/16", "dev", "vout")
        _ip("-n", node, "link", "set", "vout", "up")
        for address in (OUTSIDE, EXCEPTED):
            _ip("-n", out, "addr", "add", f"{address}/16", "dev", "eth0")
        _ip("-n", out, "link", "set", "eth0", "up")
        _ip("-n", out, "route", "add", "10.42.0.0/16", "via", "192.168.0.1")
        subprocess.run([*_enter(node), "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        for ns in names[1:]:
            servers.append(subprocess.Popen([*_enter(ns), sys.executable, "-c", SERVER, str(PORT)]))
        yield node
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        for ns in names:
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def connects(tag: str, src: str, dst: str) -> bool:
    """A TCP connection from ``src`` (pod name or outside address) to ``dst`` (an address)."""
    ns = f"{tag}-out" if src.startswith("192.") else f"{tag}-{src}"
    address = src if src.startswith("192.") else PODS[src][1]
    out = subprocess.run(
        [*_enter(ns), sys.executable, "-c", CLIENT, address, dst, str(PORT)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip() == "ok"


def pod(name: str) -> dict[str, Any]:
    namespace, address = PODS[name]
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": PORT}]}]},
        "status": {"podIP": address, "phase": "Running"},
    }


NAMESPACES = [
    {"metadata": {"name": n, "labels": {"kubernetes.io/metadata.name": n}}}
    for n in ("shop", "team-a", "team-b")
]


def enforce(node: str, policies: list[dict[str, Any]]) -> None:
    """Build and apply in the node namespace (setns in a child: this process stays put)."""
    ruleset = build(
        policies, [pod(p) for p in PODS], NAMESPACES, {f"{ns}/{p}" for p, (ns, _) in PODS.items()}
    )
    program = (
        "import asyncio, pickle, sys; from netpolicy.apply import apply, remove; "
        "r = pickle.loads(sys.stdin.buffer.read()); asyncio.run(apply(r) if r else remove())"
    )
    data = pickle.dumps(ruleset if policies else None)
    subprocess.run([*_enter(node), sys.executable, "-c", program], input=data, check=True)


def web_policy(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "p"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, **spec},
    }


WEB = PODS["web"][1]


def test_no_policy_everything_connects(hosts: str) -> None:
    tag = hosts.removesuffix("-node")
    assert connects(tag, "a", WEB) and connects(tag, "b", WEB) and connects(tag, OUTSIDE, WEB)


def test_default_deny_then_allow_from_one_namespace(hosts: str) -> None:
    tag = hosts.removesuffix("-node")
    enforce(hosts, [web_policy(policyTypes=["Ingress"])])
    assert not connects(tag, "a", WEB) and not connects(tag, OUTSIDE, WEB)
    assert connects(tag, "a", PODS["b"][1])  # b is not selected
    # a rule inserted above ours (as netavark does) is put below again at the next apply
    accept = ["iptables", "-I", "FORWARD", "-s", "10.42.0.0/24", "-j", "ACCEPT"]
    subprocess.run([*_enter(hosts), *accept], check=True)
    assert connects(tag, "a", WEB)
    enforce(hosts, [web_policy(policyTypes=["Ingress"])])
    assert not connects(tag, "a", WEB)
    from_a = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}}
    enforce(hosts, [web_policy(ingress=[{"from": [from_a], "ports": [{"port": "http"}]}])])
    assert connects(tag, "a", WEB) and not connects(tag, "b", WEB)


def test_ip_block_except(hosts: str) -> None:
    tag = hosts.removesuffix("-node")
    block = {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.6.0/24"]}}
    enforce(hosts, [web_policy(ingress=[{"from": [block]}])])
    assert connects(tag, OUTSIDE, WEB) and not connects(tag, EXCEPTED, WEB)
    assert not connects(tag, "a", WEB)


def test_egress_policy_blocks_a_destination(hosts: str) -> None:
    tag = hosts.removesuffix("-node")
    to_pods: dict[str, Any] = {"to": [{"namespaceSelector": {}}]}
    enforce(hosts, [web_policy(policyTypes=["Egress"], egress=[to_pods])])
    assert connects(tag, "web", PODS["a"][1]) and not connects(tag, "web", OUTSIDE)
    assert connects(tag, "a", WEB)  # ingress is not isolated; replies pass


def test_remove_restores_everything(hosts: str) -> None:
    tag = hosts.removesuffix("-node")
    enforce(hosts, [web_policy(policyTypes=["Ingress"])])
    enforce(hosts, [])
    assert connects(tag, "a", WEB)
    save = subprocess.run(
        [*_enter(hosts), "iptables-save"], capture_output=True, text=True, check=True
    ).stdout
    sets = subprocess.run(
        [*_enter(hosts), "ipset", "list", "-n"], capture_output=True, text=True, check=True
    ).stdout
    assert "EDGEK" not in save and "EDGEK" not in sets


def test_every_match_kind_is_accepted_by_the_kernel(hosts: str) -> None:
    """Ranges, UDP, SCTP, named ports both ways and ipBlocks: iptables-restore and ipset
    restore take the generated texts."""
    ports = [
        {"port": "http"},
        {"protocol": "UDP", "port": 5000, "endPort": 5010},
        {"protocol": "SCTP", "port": 9},
    ]
    peers = [
        {"podSelector": {}},
        {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.6.0/24"]}},
    ]
    enforce(
        hosts,
        [
            web_policy(
                policyTypes=["Ingress", "Egress"],
                ingress=[{"from": peers, "ports": ports}],
                egress=[{"to": peers, "ports": ports}],
            )
        ],
    )
    save = subprocess.run(
        [*_enter(hosts), "iptables-save", "-t", "filter"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--dport 5000:5010" in save and "-p sctp" in save and "dst,dst" in save
    tag = hosts.removesuffix("-node")
    assert connects(tag, OUTSIDE, WEB) and not connects(tag, EXCEPTED, WEB)
    assert not connects(tag, "a", WEB)  # podSelector peers are of the policy's namespace
    assert not connects(tag, "web", OUTSIDE)  # a named port is only ever a pod's port
