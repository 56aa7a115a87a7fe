"""The agent's Podman bridge network: the node's ``spec.podCIDR`` as its subnet, the
first address as the gateway on the node's bridge, so every pod IP is reachable from the
node (until cluster networking routes between nodes). The network and its bridge are named
after the node and the agent's directory: agents sharing a Podman service or a network
namespace do not collide, and since Podman 4 keeps its address allocations machine-wide
(``/run/containers/networks/ipam.db``, by network name), an agent on a new data dir never
inherits allocations an earlier one left behind."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from pathlib import Path

from agent.podman.client import PodmanClient, PodmanError

log = logging.getLogger("edgek.agent.pods")


def bridge_name(node: str, agent_dir: Path) -> str:
    """The name of a node's network and of its bridge interface: ``ek`` and a hash of the
    node name and agent directory (at most 15 characters, as interface names must be)."""
    return "ek" + hashlib.sha256(f"{node}\0{agent_dir.resolve()}".encode()).hexdigest()[:10]


def subnet(cidr: str) -> dict[str, str]:
    """The libpod subnet for ``cidr``: the gateway is its first address."""
    net = ipaddress.ip_network(cidr, strict=False)
    return {"subnet": str(net), "gateway": str(net.network_address + 1)}


async def ensure_network(client: PodmanClient, node: str, agent_dir: Path, cidr: str) -> str:
    """Make (or keep) the node's bridge network on ``cidr``; returns its name. A network on
    another subnet (the node got a new podCIDR) is replaced."""
    wanted, name = subnet(cidr), bridge_name(node, agent_dir)
    try:
        current = await client.network_inspect(name)
    except PodmanError as e:
        if e.status != 404:
            raise
    else:
        have = [{k: s.get(k) for k in ("subnet", "gateway")} for s in current.get("subnets") or []]
        if have == [wanted]:
            return name
        log.warning("pod network %s is on %s; replacing it with %s", name, have, wanted)
        await client.network_remove(name, force=True)
    await client.network_create(
        {"name": name, "driver": "bridge", "network_interface": name, "subnets": [wanted]}
    )
    return name
