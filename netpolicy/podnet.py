"""The pod network across nodes, driven by the agent: a route to every other node's podCIDR
and the masquerade of pod traffic leaving the cluster CIDR.

The backend is cluster-wide (``edgek server --network-backend``); the server's node IPAM
writes it, with the cluster CIDR, as annotations on every Node (:mod:`netpolicy.backend`),
so an agent learns it from its own Node, which it may
read. Backends:

- ``host-gw``: ``<podCIDR> via <InternalIP>`` for each other node (the nodes share a subnet);
- ``none``: no routes (another component routes the pods);
- ``vxlan`` (flannel-style; works across subnets): a device :data:`VXLAN_DEVICE` (the
  cluster's VNI and UDP port, local address the node's InternalIP, no learning) holding the
  network address of the node's podCIDR; the agent writes the device's MAC on its Node, and
  for each other node programs ``<podCIDR> via <its network address> dev edgek.vxlan
  onlink``, a permanent neighbour entry (that address → the peer's VTEP MAC) and an FDB
  entry (that MAC → the peer's InternalIP). Stale neighbour and FDB entries are removed.

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

from netpolicy.backend import (
    BACKEND_ANNOTATION,
    CLUSTER_CIDR_ANNOTATION,
    VTEP_MAC_ANNOTATION,
    VXLAN_PORT_ANNOTATION,
    VXLAN_VNI_ANNOTATION,
)

log = logging.getLogger("edgek.netpolicy.podnet")
# pyroute2 logs every netlink message at DEBUG (the agent's --debug)
logging.getLogger("pyroute2").setLevel(logging.INFO)

#: The routing protocol number of edgek's routes (``ip route ... proto 222``).
RTPROT_EDGEK = 222
MAIN_TABLE = 254
VXLAN_DEVICE = "edgek.vxlan"
#: VXLAN's encapsulation overhead (IPv4 underlay).
VXLAN_OVERHEAD = 50
_ONLINK = 4
_NUD_PERMANENT = 128
_NTF_SELF = 2
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


def vxlan_peers(nodes: Iterable[dict[str, Any]], own: str) -> dict[str, tuple[str, str]]:
    """``{podCIDR: (InternalIP, VTEP MAC)}`` for every other node that published its MAC."""
    peers: dict[str, tuple[str, str]] = {}
    by_name = {n["metadata"]["name"]: n for n in nodes}
    for cidr, via in host_gw_routes(by_name.values(), own).items():
        node = next(n for n in by_name.values() if _cidr(n) == cidr)
        mac = str((node["metadata"].get("annotations") or {}).get(VTEP_MAC_ANNOTATION) or "")
        if mac:
            peers[cidr] = (via, mac)
    return peers


def _cidr(node: dict[str, Any]) -> str:
    text = str((node.get("spec") or {}).get("podCIDR") or "")
    return str(ipaddress.ip_network(text, strict=False)) if text else ""


def _network_address(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False).network_address)


def ensure_vxlan(vni: int, port: int, local: str, pod_cidr: str) -> str:
    """Make (or keep) :data:`VXLAN_DEVICE` with the podCIDR's network address, up; a
    device with another VNI, port or local address is replaced. Returns its MAC."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=VXLAN_DEVICE)
        if found:
            info = ipr.get_links(found[0])[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
            have = (
                info.get_attr("IFLA_VXLAN_ID"),
                info.get_attr("IFLA_VXLAN_PORT"),
                info.get_attr("IFLA_VXLAN_LOCAL"),
            )
            if have != (vni, port, local):
                ipr.link("del", index=found[0])
                found = []
        if not found:
            ipr.link(
                "add",
                ifname=VXLAN_DEVICE,
                kind="vxlan",
                vxlan_id=vni,
                vxlan_port=port,
                vxlan_local=local,
                vxlan_learning=0,
            )
            found = ipr.link_lookup(ifname=VXLAN_DEVICE)
        index = found[0]
        uplink = _uplink_mtu(ipr, local)
        if uplink:
            ipr.link("set", index=index, mtu=uplink - VXLAN_OVERHEAD)
        ipr.addr("replace", index=index, address=_network_address(pod_cidr), prefixlen=32)
        ipr.link("set", index=index, state="up")
        return str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def _uplink_mtu(ipr: IPRoute, local: str) -> int:
    """The MTU of the link holding ``local`` (0 when not found)."""
    for addr in ipr.get_addr(family=socket.AF_INET, address=local):
        return int(ipr.get_links(addr["index"])[0].get_attr("IFLA_MTU") or 0)
    return 0


def sync_vxlan_peers(peers: dict[str, tuple[str, str]]) -> None:
    """Make the neighbour and FDB entries of :data:`VXLAN_DEVICE` exactly those of
    ``peers`` (``{podCIDR: (InternalIP, MAC)}``)."""
    neighbours = {_network_address(cidr): mac for cidr, (_, mac) in peers.items()}
    fdb = {(mac, ip) for ip, mac in peers.values()}
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=VXLAN_DEVICE)[0]
        for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=index):
            dst, mac = n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")
            if neighbours.get(dst) != mac:
                ipr.neigh("del", dst=dst, lladdr=mac, ifindex=index)
        for dst, mac in neighbours.items():
            ipr.neigh("replace", dst=dst, lladdr=mac, ifindex=index, state=_NUD_PERMANENT)
        have = set()
        for entry in ipr.fdb("dump", ifindex=index):
            key = (entry.get_attr("NDA_LLADDR"), entry.get_attr("NDA_DST"))
            if key in fdb:
                have.add(key)
            elif key[1]:
                ipr.fdb("del", ifindex=index, lladdr=key[0], dst=key[1])
        for mac, ip in fdb - have:
            ipr.fdb(
                "append", ifindex=index, lladdr=mac, dst=ip, state=_NUD_PERMANENT, flags=_NTF_SELF
            )


def sync_routes(wanted: dict[str, str], device: str = "") -> tuple[list[str], list[str]]:
    """Make edgek's routes (protocol :data:`RTPROT_EDGEK`) exactly ``wanted``
    (``{destination: gateway}``; through ``device``, on-link, when given); returns (added
    or changed, removed) destinations."""
    changed: list[str] = []
    removed: list[str] = []
    with IPRoute() as ipr:
        via = {"oif": ipr.link_lookup(ifname=device)[0], "flags": _ONLINK} if device else {}
        have: dict[str, str] = {}
        for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            if route["proto"] != RTPROT_EDGEK:
                continue
            dst = f"{route.get_attr('RTA_DST')}/{route['dst_len']}"
            have[dst] = str(route.get_attr("RTA_GATEWAY") or "")
        for dst in sorted(set(have) - set(wanted)):
            ipr.route("del", dst=dst, proto=RTPROT_EDGEK)
            removed.append(dst)
        for dst, gateway in sorted(wanted.items()):
            if have.get(dst) != gateway:
                ipr.route("replace", dst=dst, gateway=gateway, proto=RTPROT_EDGEK, **via)
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
    """The restore input that adds the jumps to edgek's chains that ``saved`` (the output
    of ``iptables-save``) lacks: first in nat POSTROUTING (ahead of Podman's masquerade),
    last in FORWARD (after the NetworkPolicy chain, which must see the traffic first)."""
    out = []
    for table, chain, ours, rule in (
        ("nat", "POSTROUTING", "EDGEK-POSTROUTING", "-I POSTROUTING 1"),
        ("filter", "FORWARD", "EDGEK-FORWARD", "-A FORWARD"),
    ):
        if f"-A {chain} -j {ours}" not in saved:
            out += [f"*{table}", f"{rule} -j {ours}", "COMMIT"]
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
    and masquerade rules as the cluster's backend wants; ``annotate`` merges annotations
    into this node's Node (its VTEP MAC)."""

    def __init__(
        self,
        node: str,
        list_nodes: Callable[[], Awaitable[list[dict[str, Any]]]],
        annotate: Callable[[dict[str, str]], Awaitable[None]],
    ) -> None:
        self.node = node
        self.list_nodes = list_nodes
        self.annotate = annotate
        self._cidr = ""
        self._backend = ""

    async def sync(self) -> None:
        """One pass: read the Nodes, program the routes and (once) the rules."""
        nodes = await self.list_nodes()
        own = next((n for n in nodes if n["metadata"]["name"] == self.node), None)
        annotations = ((own or {}).get("metadata") or {}).get("annotations") or {}
        backend = str(annotations.get(BACKEND_ANNOTATION) or "")
        cidr = str(annotations.get(CLUSTER_CIDR_ANNOTATION) or "")
        if own is None or not backend or not _cidr(own):
            return
        if backend != self._backend:
            log.info("pod network: backend %s", backend)
            self._backend = backend
        if cidr and cidr != self._cidr:
            await asyncio.to_thread(enable_forwarding)
            await asyncio.to_thread(apply_masquerade, cidr)
            self._cidr = cidr
        wanted: dict[str, str] = {}
        device = ""
        if backend == "host-gw":
            wanted = host_gw_routes(nodes, self.node)
        elif backend == "vxlan":
            wanted, device = await self._vxlan(own, nodes), VXLAN_DEVICE
        changed, removed = await asyncio.to_thread(sync_routes, wanted, device)
        for dst in changed:
            log.info("pod network: route %s via %s", dst, wanted[dst])
        for dst in removed:
            log.info("pod network: removed the route to %s", dst)

    async def _vxlan(self, own: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, str]:
        """Make the VXLAN device, publish its MAC, program the peers' neighbour and FDB
        entries; returns the routes (``{podCIDR: its network address}``)."""
        annotations = own["metadata"].get("annotations") or {}
        mac = await asyncio.to_thread(
            ensure_vxlan,
            int(annotations.get(VXLAN_VNI_ANNOTATION) or 1),
            int(annotations.get(VXLAN_PORT_ANNOTATION) or 8472),
            internal_ip(own),
            _cidr(own),
        )
        if annotations.get(VTEP_MAC_ANNOTATION) != mac:
            await self.annotate({VTEP_MAC_ANNOTATION: mac})
        peers = vxlan_peers(nodes, self.node)
        await asyncio.to_thread(sync_vxlan_peers, peers)
        return {cidr: _network_address(cidr) for cidr in peers}

    async def run(self) -> None:
        """Sync every :data:`SYNC_SECONDS` until cancelled (errors are logged, retried)."""
        while True:
            try:
                await self.sync()
            except Exception as e:  # the next pass retries; the agent must keep running
                log.warning("pod network: %s", e)
            await asyncio.sleep(SYNC_SECONDS)
