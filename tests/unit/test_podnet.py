"""The pod network's pure parts: the host-gw routes from the Nodes, edgek's iptables
ruleset and the jumps to it (netpolicy/podnet.py; the routes for real in tests/net/)."""

from __future__ import annotations

from typing import Any

from netpolicy.backend import VTEP_MAC_ANNOTATION
from netpolicy.podnet import host_gw_routes, masquerade_ruleset, missing_jumps, vxlan_peers


def node(name: str, cidr: str = "", ip: str = "", **meta: Any) -> dict[str, Any]:
    """A Node with a podCIDR and an InternalIP (when given)."""
    addresses = [{"type": "Hostname", "address": name}]
    if ip:
        addresses.insert(0, {"type": "InternalIP", "address": ip})
    return {
        "metadata": {"name": name, **meta},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {"addresses": addresses},
    }


def test_host_gw_routes_every_other_complete_ipv4_node() -> None:
    nodes = [
        node("me", "10.42.0.0/24", "192.168.1.10"),
        node("peer", "10.42.1.0/24", "192.168.1.11"),
        node("nocidr", "", "192.168.1.12"),
        node("noip", "10.42.3.0/24"),
        node("v6", "fd00:42::/64", "fd00::5"),
        node("leaving", "10.42.4.0/24", "192.168.1.14", deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    assert host_gw_routes(nodes, "me") == {"10.42.1.0/24": "192.168.1.11"}


def test_host_gw_uses_the_first_ipv4_internal_ip() -> None:
    peer = node("peer", "10.42.1.0/24", "fd00::7")
    peer["status"]["addresses"].append({"type": "InternalIP", "address": "192.168.1.11"})
    assert host_gw_routes([peer], "me") == {"10.42.1.0/24": "192.168.1.11"}


def test_ruleset_keeps_cluster_traffic_unnatted_and_masquerades_the_rest() -> None:
    rules = masquerade_ruleset("10.42.0.0/16").splitlines()
    nat = rules[rules.index("*nat") : rules.index("COMMIT") + 1]
    assert nat == [
        "*nat",
        ":EDGEK-POSTROUTING - [0:0]",
        "-A EDGEK-POSTROUTING -s 10.42.0.0/16 -d 10.42.0.0/16 -j ACCEPT",
        "-A EDGEK-POSTROUTING -s 10.42.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE",
        "COMMIT",
    ]
    assert all(r.startswith(("*", ":EDGEK-", "-A EDGEK-", "COMMIT")) for r in rules if r)


def test_jumps_are_inserted_only_when_missing() -> None:
    saved = "*nat\n-A POSTROUTING -j EDGEK-POSTROUTING\nCOMMIT\n*filter\nCOMMIT\n"
    assert missing_jumps(saved) == "*filter\n-A FORWARD -j EDGEK-FORWARD\nCOMMIT\n"
    both = saved.replace("*filter\n", "*filter\n-A FORWARD -j EDGEK-FORWARD\n")
    assert missing_jumps(both) == ""


def test_vxlan_peers_are_the_other_nodes_that_published_their_vtep() -> None:
    with_mac = node("peer", "10.42.1.0/24", "192.168.2.11")
    with_mac["metadata"]["annotations"] = {VTEP_MAC_ANNOTATION: "aa:bb:cc:dd:ee:01"}
    nodes = [node("me", "10.42.0.0/24", "192.168.1.10"), with_mac]
    nodes.append(node("nomac", "10.42.2.0/24", "192.168.2.12"))
    assert vxlan_peers(nodes, "me") == {"10.42.1.0/24": ("192.168.2.11", "aa:bb:cc:dd:ee:01")}
