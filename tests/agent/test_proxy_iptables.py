"""The service proxy's rules in a real kernel, inside a test network namespace (no link out):
apply, ``iptables-save`` identical after a re-sync and after a restart (a new Applier), a
removed service's chains gone, the host's own chains untouched, and real TCP connections to a
ClusterIP from the node, to a NodePort on the node address, with an unready endpoint dropped
and ClientIP affinity pinning the client. The endpoints are small TCP servers in the
namespace that answer their own address."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from netpolicy.iptables import Applier, parse_save
from netpolicy.proxy import NodeFacts, build, chain_name
from tests.agent.netns import isolated_netns

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("iptables-restore", "iptables-save", "nsenter", "ip")),
    reason="needs iptables, nsenter and ip",
)

NODE = NodeFacts("n1", cluster_cidr="10.42.0.0/16")
NODE_IP = "10.99.0.1"
BACKENDS = ("10.42.0.5", "10.42.0.6")
SERVER = """
import socket, sys, threading
def serve(ip):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, 8080)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(ip.encode()); c.close()
for ip in sys.argv[1:]:
    threading.Thread(target=serve, args=(ip,), daemon=True).start()
print("up", flush=True); sys.stdin.read()
"""
CLIENT = """
import socket, sys
out = []
for _ in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    out.append(s.recv(64).decode()); s.close()
print(" ".join(out))
"""
HOST_RULES = """*nat
:HOST-KEEP - [0:0]
:EDGEK-POSTROUTING - [0:0]
-A HOST-KEEP -d 192.0.2.1/32 -j RETURN
-A EDGEK-POSTROUTING -s 10.42.0.0/16 -d 10.42.0.0/16 -j RETURN
-A PREROUTING -j HOST-KEEP
-A POSTROUTING -j EDGEK-POSTROUTING
COMMIT
*filter
:HOST-KEEP - [0:0]
:EDGEK-NETPOL - [0:0]
-A HOST-KEEP -s 192.0.2.1/32 -j DROP
-A EDGEK-NETPOL -s 192.0.2.2/32 -j DROP
-A INPUT -j HOST-KEEP
-A FORWARD -j EDGEK-NETPOL
COMMIT
"""


def service(name: str, ip: str, **spec: Any) -> dict[str, Any]:
    """A Service in default with port http 80 (node port 30080 + index when NodePort)."""
    return {
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        | spec,
    }


def eslice(name: str, ready: dict[str, bool]) -> dict[str, Any]:
    """The EndpointSlice of service ``name``: each backend with its ready condition."""
    return {
        "metadata": {
            "namespace": "default",
            "name": f"{name}-a",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "nodeName": "n1", "conditions": {"ready": ok}}
            for ip, ok in ready.items()
        ],
    }


def web(**spec: Any) -> dict[str, Any]:
    """default/web, a NodePort service on 30080."""
    return service(
        "web",
        "10.43.0.20",
        type="NodePort",
        ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        **spec,
    )


@pytest.fixture(scope="module")
def ns() -> Iterator[list[str]]:
    """The namespace: a veth pair (both ends inside) with the node address and the backends, a route for the
    service CIDR, someone else's chains, and the backend servers running."""
    with isolated_netns() as prefix:
        run = [*prefix, "ip"]
        subprocess.run(
            [*run, "link", "add", "edgek-d0", "type", "veth", "peer", "name", "edgek-d1"],
            check=True,
        )
        subprocess.run([*run, "link", "set", "edgek-d1", "up"], check=True)
        for ip in (NODE_IP, *BACKENDS):
            subprocess.run([*run, "addr", "add", f"{ip}/32", "dev", "edgek-d0"], check=True)
        subprocess.run([*run, "link", "set", "edgek-d0", "up"], check=True)
        subprocess.run([*run, "route", "add", "10.43.0.0/16", "dev", "edgek-d0"], check=True)
        restore = [*prefix, "iptables-restore", "--noflush"]
        subprocess.run(restore, input=HOST_RULES, text=True, check=True)
        server = subprocess.Popen(
            [*prefix, sys.executable, "-c", SERVER, *BACKENDS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "up"
            yield prefix
        finally:
            server.kill()
            server.wait()


def connect(prefix: list[str], ip: str, port: int, times: int = 1) -> list[str]:
    """Connect ``times`` times from the node; the backend address of each answer."""
    out = subprocess.run(
        [*prefix, sys.executable, "-c", CLIENT, ip, str(port), str(times)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.split()


def saved(prefix: list[str]) -> str:
    """``iptables-save`` of nat and filter without the timestamp comments."""
    text = asyncio.run(Applier(prefix).save())
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def host_lines(text: str) -> list[str]:
    """The lines of someone else's chains: the host's, and other edgek parts' (NetworkPolicy,
    the pod network)."""
    others = ("HOST-KEEP", "EDGEK-NETPOL", "EDGEK-POSTROUTING")
    return [line for line in text.splitlines() if any(o in line for o in others)]


def test_apply_resync_restart_and_removal(ns: list[str]) -> None:
    before = host_lines(saved(ns))
    both = dict.fromkeys(BACKENDS, True)
    other = service("api", "10.43.0.21")
    rs = build([web(), other], [eslice("web", both), eslice("api", both)], NODE)
    applier = Applier(ns)
    asyncio.run(applier.apply(rs))
    first = saved(ns)
    assert chain_name("SVC", "default/api:http", "tcp") in first
    asyncio.run(applier.apply(rs))  # incremental: nothing changed
    assert saved(ns) == first
    asyncio.run(applier.apply(rs, full=True))
    assert saved(ns) == first
    asyncio.run(Applier(ns).apply(rs))  # a restarted agent
    assert saved(ns) == first
    assert host_lines(first) == before

    # the api service goes away: its chains too, nothing else changes
    asyncio.run(applier.apply(build([web()], [eslice("web", both)], NODE)))
    after = saved(ns)
    chains, _ = parse_save(after)
    assert not any(
        c
        in {
            chain_name("SVC", "default/api:http", "tcp"),
            chain_name("SEP", "default/api:http", "tcp", "10.42.0.5:8080"),
        }
        for c in chains["nat"]
    )
    assert "default/api" not in after
    assert host_lines(after) == before


def test_incremental_writes_only_changed_chains(ns: list[str]) -> None:
    applier = Applier(ns)
    asyncio.run(applier.apply(build([web()], [eslice("web", dict.fromkeys(BACKENDS, True))], NODE)))
    one_ready = build([web()], [eslice("web", {"10.42.0.5": True, "10.42.0.6": False})], NODE)
    text = asyncio.run(applier.apply(one_ready))
    svc = chain_name("SVC", "default/web:http", "tcp")
    sep5 = chain_name("SEP", "default/web:http", "tcp", "10.42.0.5:8080")
    sep6 = chain_name("SEP", "default/web:http", "tcp", "10.42.0.6:8080")
    assert f":{svc} - [0:0]" in text
    assert f":{sep5} - [0:0]" not in text  # unchanged, left in place
    assert f"-X {sep6}" in text
    assert saved(ns) == (asyncio.run(Applier(ns).apply(one_ready)) and saved(ns))


def test_traffic_cluster_ip_node_port_unready_and_affinity(ns: list[str]) -> None:
    applier = Applier(ns)
    both = dict.fromkeys(BACKENDS, True)
    asyncio.run(applier.apply(build([web()], [eslice("web", both)], NODE)))
    assert set(connect(ns, "10.43.0.20", 80, 30)) == set(BACKENDS)  # ClusterIP from the node
    assert set(connect(ns, NODE_IP, 30080, 30)) == set(BACKENDS)  # NodePort on the node address

    asyncio.run(
        applier.apply(
            build([web()], [eslice("web", {"10.42.0.5": True, "10.42.0.6": False})], NODE)
        )
    )
    assert set(connect(ns, "10.43.0.20", 80, 20)) == {"10.42.0.5"}

    sticky = web(
        sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}
    )
    asyncio.run(applier.apply(build([sticky], [eslice("web", both)], NODE)))
    assert len(set(connect(ns, "10.43.0.20", 80, 20))) == 1

    # no endpoints: rejected at once rather than hanging
    asyncio.run(
        applier.apply(build([web()], [eslice("web", dict.fromkeys(BACKENDS, False))], NODE))
    )
    with pytest.raises(subprocess.CalledProcessError) as refused:
        connect(ns, "10.43.0.20", 80)
    assert "ConnectionRefused" in str(refused.value.stderr)


def test_remove_leaves_only_host_rules(ns: list[str]) -> None:
    applier = Applier(ns)
    asyncio.run(applier.apply(build([web()], [eslice("web", dict.fromkeys(BACKENDS, True))], NODE)))
    before = host_lines(saved(ns))
    asyncio.run(applier.remove())
    text = saved(ns)
    assert "EDGEK-" not in text.replace("EDGEK-NETPOL", "").replace("EDGEK-POSTROUTING", "")
    assert host_lines(text) == before
