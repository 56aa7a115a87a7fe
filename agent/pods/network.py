"""The agent's Podman bridge network: the node's ``spec.podCIDR`` as its subnet, the
first address as the gateway on the node's bridge, so every pod IP is reachable from the
node (until cluster networking routes between nodes)."""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from agent.podman.client import PodmanClient, PodmanError

log = logging.getLogger("edgek.agent.pods")

NETWORK = "edgek"


def bridge_name(node: str) -> str:
    """The bridge interface of a node's network: ``ek`` and a hash of the node name (unique
    when several agents share a network namespace; at most 15 characters)."""
    return "ek" + hashlib.sha256(node.encode()).hexdigest()[:10]


def subnet(cidr: str) -> dict[str, str]:
    """The libpod subnet for ``cidr``: the gateway is its first address."""
    net = ipaddress.ip_network(cidr, strict=False)
    return {"subnet": str(net), "gateway": str(net.network_address + 1)}


async def ensure_network(client: PodmanClient, node: str, cidr: str) -> str:
    """Make (or keep) the node's bridge network on ``cidr``; returns its name. A network on
    another subnet (the node got a new podCIDR) is replaced."""
    wanted = subnet(cidr)
    try:
        current = await client.network_inspect(NETWORK)
    except PodmanError as e:
        if e.status != 404:
            raise
    else:
        have = [{k: s.get(k) for k in ("subnet", "gateway")} for s in current.get("subnets") or []]
        if have == [wanted] and current.get("network_interface") == bridge_name(node):
            return NETWORK
        log.warning("pod network %s is on %s; replacing it with %s", NETWORK, have, wanted)
        await client.network_remove(NETWORK, force=True)
    await client.network_create(
        {
            "name": NETWORK,
            "driver": "bridge",
            "network_interface": bridge_name(node),
            "subnets": [wanted],
        }
    )
    return NETWORK
