"""The pod network across nodes, driven by the agent: a route to every other node's podCIDR
and the masquerade of pod traffic leaving the cluster CIDR.

The backend is cluster-wide (``edgek server --network-backend``); the server's node IPAM
writes it, with the cluster CIDR, as annotations on every Node (:mod:`netpolicy.backend`),
so an agent learns it from its own Node, which it may
read. Backends:

- ``host-gw``: ``<podCIDR> via <InternalIP>`` for each other node (the nodes share a subnet);
- ``none``: no routes (another component routes the pods);
- ``vxlan``: not implemented yet (no routes are programmed; a warning is logged).

Routes are written with the routing protocol number :data:`RTPROT_EDGEK`, so the agent finds
exactly the routes it made (across restarts) and removes those of nodes that left; other
routes of the host are never touched. The pod-side plumbing (bridge, veth, IPAM) is
Podman's bridge network on the node's podCIDR (``agent/pods/network.py``); see
docs/ARCHITECTURE.md "Pod network" for why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pyroute2 import IPRoute

from netpolicy.backend import BACKEND_ANNOTATION, CLUSTER_CIDR_ANNOTATION

log = logging.getLogger("edgek.netpolicy.podnet")
# pyroute2 logs every netlink message at DEBUG (the agent's --debug)
logging.getLogger("pyroute2").setLevel(logging.INFO)

#: The routing protocol number of edgek's routes (``ip route ... proto 222``).
RTPROT_EDGEK = 222
MAIN_TABLE = 254
#: Seconds between two reads of the Nodes.
SYNC_SECONDS = 2.0


def internal_ip(node: dict[str, Any]) -> str:
    """The node's first IPv4 InternalIP ("" when it has none)."""
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            text = str(address.get("address") or "")
            if text and ipaddress.ip_address(text).version == 4:
                return text
    return ""


def host_gw_routes(nodes: Iterable[dict[str, Any]], own: str) -> dict[str, str]:
    """``{podCIDR: InternalIP}`` for every other node that has both (IPv4)."""
    routes: dict[str, str] = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        cidr = str((node.get("spec") or {}).get("podCIDR") or "")
        via = internal_ip(node)
        if meta.get("name") == own or meta.get("deletionTimestamp") or not cidr or not via:
            continue
        if ipaddress.ip_network(cidr, strict=False).version == 4:
            routes[str(ipaddress.ip_network(cidr, strict=False))] = via
    return routes


def sync_routes(wanted: dict[str, str]) -> tuple[list[str], list[str]]:
    """Make edgek's routes (protocol :data:`RTPROT_EDGEK`) exactly ``wanted``
    (``{destination: gateway}``); returns (added or changed, removed) destinations."""
    changed: list[str] = []
    removed: list[str] = []
    with IPRoute() as ipr:
        have: dict[str, str] = {}
        for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            if route["proto"] != RTPROT_EDGEK:
                continue
            dst = f"{route.get_attr('RTA_DST')}/{route['dst_len']}"
            have[dst] = str(route.get_attr("RTA_GATEWAY") or "")
        for dst in sorted(set(have) - set(wanted)):
            ipr.route("del", dst=dst, proto=RTPROT_EDGEK)
            removed.append(dst)
        for dst, via in sorted(wanted.items()):
            if have.get(dst) != via:
                ipr.route("replace", dst=dst, gateway=via, proto=RTPROT_EDGEK)
                changed.append(dst)
    return changed, removed


def masquerade_ruleset(cluster_cidr: str) -> str:
    """The ``iptables-restore --noflush`` input for edgek's own chains: pod traffic inside
    the cluster CIDR is forwarded and never NATed (it runs before Podman's own NAT chains,
    so a pod sees its peer's pod IP), traffic leaving it is masqueraded."""
    return "\n".join(
        [
            "*nat",
            ":EDGEK-POSTROUTING - [0:0]",
            f"-A EDGEK-POSTROUTING -s {cluster_cidr} -d {cluster_cidr} -j ACCEPT",
            f"-A EDGEK-POSTROUTING -s {cluster_cidr} ! -d 224.0.0.0/4 -j MASQUERADE",
            "COMMIT",
            "*filter",
            ":EDGEK-FORWARD - [0:0]",
            f"-A EDGEK-FORWARD -s {cluster_cidr} -j ACCEPT",
            f"-A EDGEK-FORWARD -d {cluster_cidr} -j ACCEPT",
            "COMMIT",
            "",
        ]
    )


def missing_jumps(saved: str) -> str:
    """The restore input that inserts the jumps to edgek's chains that ``saved`` (the
    output of ``iptables-save``) lacks, first in their built-in chains."""
    out = []
    for table, chain, ours in (
        ("nat", "POSTROUTING", "EDGEK-POSTROUTING"),
        ("filter", "FORWARD", "EDGEK-FORWARD"),
    ):
        if f"-A {chain} -j {ours}" not in saved:
            out += [f"*{table}", f"-I {chain} 1 -j {ours}", "COMMIT"]
    return "\n".join([*out, ""]) if out else ""


def apply_masquerade(cluster_cidr: str) -> None:
    """Load :func:`masquerade_ruleset` (flushing only edgek's chains) and hook its chains
    in when they are not yet."""
    subprocess.run(
        ["iptables-restore", "--noflush"],
        input=masquerade_ruleset(cluster_cidr),
        text=True,
        check=True,
        capture_output=True,
    )
    saved = subprocess.run(["iptables-save"], text=True, check=True, capture_output=True).stdout
    if jumps := missing_jumps(saved):
        subprocess.run(
            ["iptables-restore", "--noflush"],
            input=jumps,
            text=True,
            check=True,
            capture_output=True,
        )


def enable_forwarding() -> None:
    """Let the host forward IPv4 packets (between its pods and the other nodes)."""
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")


class PodNetwork:
    """Follows the Nodes (``list_nodes`` returns them all) and keeps this node's routes
    and masquerade rules as the cluster's backend wants."""

    def __init__(self, node: str, list_nodes: Callable[[], Awaitable[list[dict[str, Any]]]]):
        self.node = node
        self.list_nodes = list_nodes
        self._cidr = ""
        self._backend = ""

    async def sync(self) -> None:
        """One pass: read the Nodes, program the routes and (once) the rules."""
        nodes = await self.list_nodes()
        own = next((n for n in nodes if n["metadata"]["name"] == self.node), None)
        annotations = ((own or {}).get("metadata") or {}).get("annotations") or {}
        backend = str(annotations.get(BACKEND_ANNOTATION) or "")
        cidr = str(annotations.get(CLUSTER_CIDR_ANNOTATION) or "")
        if not backend:
            return
        if backend != self._backend:
            log.info("pod network: backend %s", backend)
            if backend == "vxlan":
                log.warning("pod network: the vxlan backend is not implemented yet")
            self._backend = backend
        if cidr and cidr != self._cidr:
            await asyncio.to_thread(enable_forwarding)
            await asyncio.to_thread(apply_masquerade, cidr)
            self._cidr = cidr
        wanted = host_gw_routes(nodes, self.node) if backend == "host-gw" else {}
        changed, removed = await asyncio.to_thread(sync_routes, wanted)
        for dst in changed:
            log.info("pod network: route %s via %s", dst, wanted[dst])
        for dst in removed:
            log.info("pod network: removed the route to %s", dst)

    async def run(self) -> None:
        """Sync every :data:`SYNC_SECONDS` until cancelled (errors are logged, retried)."""
        while True:
            try:
                await self.sync()
            except Exception as e:  # the next pass retries; the agent must keep running
                log.warning("pod network: %s", e)
            await asyncio.sleep(SYNC_SECONDS)
