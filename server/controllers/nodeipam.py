"""Node IPAM: every node gets ``spec.podCIDR``/``spec.podCIDRs`` carved from
``--cluster-cidr`` (upstream's range allocator).

Each cluster CIDR (one, or an IPv4 and an IPv6 one for dual-stack) is split into subnets of
``--node-cidr-mask-size`` (IPv4, /24 by default) or /64 (IPv6). The map of used subnets is
rebuilt from the nodes at start, subnets overlapping ``--service-cidr`` are never handed
out, a deleted node's subnets are released, and an exhausted range leaves the node without
one and records ``CIDRNotAvailable``.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from edgek.status import ApiError
from netpolicy.backend import (
    BACKEND_ANNOTATION,
    CLUSTER_CIDR_ANNOTATION,
    VXLAN_PORT_ANNOTATION,
    VXLAN_VNI_ANNOTATION,
)
from server.controllers.runtime import Controller, ControllerContext

log = logging.getLogger("edgek.controllers.nodeipam")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: upstream's default --node-cidr-mask-size-ipv6
IPV6_MASK_SIZE = 64


class CidrSet:
    """The subnets of one cluster CIDR, handed out round-robin like upstream's cidrset."""

    def __init__(self, cluster: Network, mask_size: int) -> None:
        if mask_size < cluster.prefixlen or mask_size > cluster.max_prefixlen:
            raise ValueError(f"node CIDR mask size /{mask_size} does not fit in {cluster}")
        self.cluster = cluster
        self.mask_size = mask_size
        self.size = 1 << (mask_size - cluster.prefixlen)
        self._step = 1 << (cluster.max_prefixlen - mask_size)
        self._used: set[int] = set()
        self._next = 0

    def _subnet(self, index: int) -> Network:
        base = int(self.cluster.network_address) + index * self._step
        return ipaddress.ip_network((base, self.mask_size))

    def _index(self, subnet: Network) -> int | None:
        if subnet.version != self.cluster.version or subnet.prefixlen != self.mask_size:
            return None
        if not subnet.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        return (int(subnet.network_address) - int(self.cluster.network_address)) // self._step

    def contains(self, subnet: Network) -> bool:
        return self._index(subnet) is not None

    def occupy(self, subnet: Network) -> None:
        """Mark ``subnet`` (or every node subnet overlapping it) as used."""
        if subnet.version != self.cluster.version or not subnet.overlaps(self.cluster):
            return
        first = max(int(subnet.network_address), int(self.cluster.network_address))
        last = min(int(subnet.broadcast_address), int(self.cluster.broadcast_address))
        base = int(self.cluster.network_address)
        for index in range((first - base) // self._step, (last - base) // self._step + 1):
            self._used.add(index)

    def release(self, subnet: Network) -> None:
        index = self._index(subnet)
        if index is not None:
            self._used.discard(index)

    def allocate(self) -> Network | None:
        """The next free subnet after the last one handed out, or None when full."""
        if len(self._used) >= self.size:
            return None
        for offset in range(self.size):
            index = (self._next + offset) % self.size
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.size
                return self._subnet(index)
        return None

    @property
    def free(self) -> int:
        return self.size - len(self._used)


def parse_cluster_cidrs(text: str) -> list[Network]:
    """``--cluster-cidr``: one CIDR, or two of different families (dual-stack)."""
    nets = [ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()]
    if not nets or len(nets) > 2 or (len(nets) == 2 and nets[0].version == nets[1].version):
        raise ValueError(f"invalid cluster CIDR {text!r}: want one CIDR or one per IP family")
    return nets


class NodeIpamController(Controller):
    """Assigns pod CIDRs to nodes."""

    name = "nodeipam"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        self.sets = [
            CidrSet(net, config.node_cidr_mask_size if net.version == 4 else IPV6_MASK_SIZE)
            for net in parse_cluster_cidrs(config.cluster_cidr)
        ]
        for part in config.service_cidr.split(","):
            if part.strip():
                service = ipaddress.ip_network(part.strip(), strict=False)
                for cidrs in self.sets:
                    cidrs.occupy(service)
        self.nodes = ctx.cache("", "nodes")
        self.kind = ctx.kind("", "nodes")
        #: The cluster-wide pod network settings every Node carries for its agent.
        self.annotations = {
            BACKEND_ANNOTATION: config.network_backend,
            CLUSTER_CIDR_ANNOTATION: config.cluster_cidr,
            VXLAN_VNI_ANNOTATION: str(config.vxlan_vni),
            VXLAN_PORT_ANNOTATION: str(config.vxlan_port),
        }
        # what each node holds, by name, as this controller has accounted it
        self._held: dict[str, list[Network]] = {}
        self.nodes.on_event(self._node_event)

    def _node_event(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is None:
            if old is not None and old["metadata"]["name"] in self._held:
                self._release(old["metadata"]["name"])
                for waiting in self.nodes.items():  # a subnet came free
                    if not _pod_cidrs(waiting):
                        self.queue.enqueue(waiting["metadata"]["name"])
            return
        name = new["metadata"]["name"]
        if name not in self._held:
            self._account(name, _pod_cidrs(new))
        if not _pod_cidrs(new) or not self._annotated(new):
            self.queue.enqueue(name)

    def _annotated(self, node: dict[str, Any]) -> bool:
        """Whether the node carries the cluster's network settings (for its agent)."""
        have = node["metadata"].get("annotations") or {}
        return all(have.get(k) == v for k, v in self.annotations.items())

    def _account(self, name: str, cidrs: list[str]) -> None:
        """Record the subnets a node already has (at start, or set by someone else)."""
        held: list[Network] = []
        for text in cidrs:
            try:
                subnet = ipaddress.ip_network(text, strict=False)
            except ValueError:
                continue
            for cidrs_set in self.sets:
                if cidrs_set.contains(subnet):
                    cidrs_set.occupy(subnet)
                    held.append(subnet)
        if held:
            self._held[name] = held

    def _release(self, name: str) -> None:
        for subnet in self._held.pop(name, []):
            for cidrs in self.sets:
                cidrs.release(subnet)

    def _allocate(self, node: dict[str, Any]) -> list[Network] | None:
        """One subnet per family for ``node``, held for it; None (after an event) when a
        family has none left."""
        name = node["metadata"]["name"]
        allocated = [cidrs.allocate() for cidrs in self.sets]
        if any(a is None for a in allocated):
            for cidrs, subnet in zip(self.sets, allocated, strict=True):
                if subnet is not None:
                    cidrs.release(subnet)
            self.record(node, "Normal", "CIDRNotAvailable", _status_change(name))
            log.warning("no pod CIDR left in %s for node %s", self.ctx.config.cluster_cidr, name)
            return None
        wanted = [a for a in allocated if a is not None]
        self._held[name] = wanted
        return wanted

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get("", key)
        if node is None or node["metadata"].get("deletionTimestamp"):
            return
        if _pod_cidrs(node):
            if not self._annotated(node):
                await self._annotate(key)
            return
        await self._assign(key, node)

    async def _assign(self, key: str, node: dict[str, Any]) -> None:
        """Give the node its podCIDRs (and the cluster's network settings)."""
        wanted = self._held.get(key)  # allocated before; the cache has not caught up yet
        if wanted is None:
            wanted = self._allocate(node)
            if wanted is None:
                return
        texts = [str(s) for s in wanted]

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or _pod_cidrs(current):
                return None
            spec = current.setdefault("spec", {})
            current["metadata"].setdefault("annotations", {}).update(self.annotations)
            spec["podCIDR"] = texts[0]
            spec["podCIDRs"] = texts
            return current

        try:
            result, _ = await self.ctx.objects.modify(
                self.kind, "", key, mutate, self.write_options()
            )
        except ApiError as e:
            if e.code == 404:
                self._release(key)
                return
            self.record(
                node,
                "Normal",
                "CIDRAssignmentFailed",
                _status_change(key, "CIDRAssignmentFailed"),
            )
            raise
        if _pod_cidrs(result) != texts:  # someone else set different ones meanwhile
            self._release(key)
            self._account(key, _pod_cidrs(result))

    async def _annotate(self, key: str) -> None:
        """Write the cluster's network settings on a node that has its podCIDR."""

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or self._annotated(current):
                return None
            current["metadata"].setdefault("annotations", {}).update(self.annotations)
            return current

        try:
            await self.ctx.objects.modify(self.kind, "", key, mutate, self.write_options())
        except ApiError as e:
            if e.code != 404:
                raise


def _pod_cidrs(node: dict[str, Any]) -> list[str]:
    spec = node.get("spec") or {}
    cidrs: list[str] = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return cidrs


def _status_change(name: str, status: str = "CIDRNotAvailable") -> str:
    return f"Node {name} status is now: {status}"
