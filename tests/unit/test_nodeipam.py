"""Node IPAM: pod CIDRs from the cluster CIDR, rebuilt at start, released, exhausted."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from netpolicy.backend import BACKEND_ANNOTATION, CLUSTER_CIDR_ANNOTATION
from server.config import ServerConfig
from server.controllers.nodeipam import CidrSet, NodeIpamController, parse_cluster_cidrs
from server.storage.objectstore import DeleteOptions
from tests.unit.controller_harness import Harness


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Harness]:
    """Room for exactly two /24 node subnets."""
    h = await Harness.open(tmp_path, ServerConfig(data_dir=tmp_path, cluster_cidr="10.42.0.0/23"))
    yield h
    await h.close()


async def add_node(h: Harness, name: str, cidr: str | None = None) -> None:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    if cidr:
        body["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    await h.create("", "nodes", "", body)


async def cidrs(h: Harness, name: str) -> tuple[str | None, list[str] | None]:
    node = await h.get("", "nodes", "", name)
    assert node is not None
    spec = node.get("spec") or {}
    return spec.get("podCIDR"), spec.get("podCIDRs")


async def test_allocation_respects_existing_then_exhausts_and_releases(small: Harness) -> None:
    h = small
    await add_node(h, "old", "10.42.0.0/24")  # allocated by an earlier run
    await h.start(NodeIpamController)
    await add_node(h, "n1")
    await h.settle()
    assert await cidrs(h, "n1") == ("10.42.1.0/24", ["10.42.1.0/24"])

    await add_node(h, "n2")
    await h.settle()
    assert await cidrs(h, "n2") == (None, None)
    await h.events.flush()
    events = await h.list("", "events", "default")
    assert any(
        e["reason"] == "CIDRNotAvailable"
        and e["involvedObject"]["name"] == "n2"
        and e["message"] == "Node n2 status is now: CIDRNotAvailable"
        for e in events
    )

    await h.objects.delete(h.kind("", "nodes"), "", "old", DeleteOptions())
    await h.wait_for(lambda: _has_cidr(h, "n2"), what="n2 to get the released subnet")
    assert await cidrs(h, "n2") == ("10.42.0.0/24", ["10.42.0.0/24"])


async def _has_cidr(h: Harness, name: str) -> bool:
    return (await cidrs(h, name))[0] is not None


async def test_dual_stack(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path, cluster_cidr="10.42.0.0/16,fd00:42::/56")
    h = await Harness.open(tmp_path, config)
    try:
        await h.start(NodeIpamController)
        await add_node(h, "a")
        await add_node(h, "b")
        await h.settle()
        got = {name: await cidrs(h, name) for name in ("a", "b")}
        pairs = sorted(tuple(v[1] or []) for v in got.values())
        assert pairs == [("10.42.0.0/24", "fd00:42::/64"), ("10.42.1.0/24", "fd00:42:0:1::/64")]
        for single, both in got.values():
            assert both is not None and single == both[0]
    finally:
        await h.close()


def test_cidr_set_skips_the_service_range_and_wraps() -> None:
    cluster = ipaddress.ip_network("10.0.0.0/22")
    cidrs = CidrSet(cluster, 24)
    cidrs.occupy(ipaddress.ip_network("10.0.1.128/25"))  # overlaps subnet 1
    got = [cidrs.allocate() for _ in range(4)]
    assert [str(n) for n in got] == ["10.0.0.0/24", "10.0.2.0/24", "10.0.3.0/24", "None"]
    cidrs.release(ipaddress.ip_network("10.0.0.0/24"))
    assert str(cidrs.allocate()) == "10.0.0.0/24"
    with pytest.raises(ValueError):
        CidrSet(cluster, 20)


def test_parse_cluster_cidrs() -> None:
    assert [str(n) for n in parse_cluster_cidrs("10.42.0.0/16")] == ["10.42.0.0/16"]
    with pytest.raises(ValueError):
        parse_cluster_cidrs("10.42.0.0/16,10.43.0.0/16")


async def test_nodes_carry_the_cluster_network_settings(tmp_path: Path) -> None:
    """A new node gets the backend and cluster CIDR with its podCIDR; a node that had its
    podCIDR from an earlier run (before the flag) gets them added."""
    cfg = ServerConfig(data_dir=tmp_path, network_backend="vxlan")
    h = await Harness.open(tmp_path, cfg)
    try:
        await add_node(h, "old", "10.42.0.0/24")
        await h.start(NodeIpamController)
        await add_node(h, "new")
        await h.settle()
        for name in ("old", "new"):
            node = await h.get("", "nodes", "", name)
            assert node is not None
            annotations = node["metadata"]["annotations"]
            assert annotations[BACKEND_ANNOTATION] == "vxlan"
            assert annotations[CLUSTER_CIDR_ANNOTATION] == "10.42.0.0/16"
        assert await cidrs(h, "old") == ("10.42.0.0/24", ["10.42.0.0/24"])
    finally:
        await h.close()
