"""The node status builders shared by the agent and the sim, the agent's status, node name
and flag parsing, and when stored credentials may be reused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import host
from agent.bootstrap import AgentCredentials, _reuse_problem
from agent.main import Agent, AgentConfig, node_name
from agent.nodestatus import (
    HEALTHY,
    HostSample,
    allocatable,
    capacity,
    format_bytes,
    node_addresses,
    node_conditions,
    parse_labels,
    parse_taints,
    pressure,
    status_differs,
    transition_times,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
GI = 2**30
HOST = HostSample(
    cpus=4,
    memory_bytes=8 * GI,
    memory_available=6 * GI,
    disk_bytes=100 * GI,
    disk_available=50 * GI,
    inodes=1000,
    inodes_free=900,
)


def test_format_bytes_like_binary_si_quantities() -> None:
    assert format_bytes(8 * GI) == "8Gi"
    assert format_bytes(8 * GI + 1024) == "8388609Ki"
    assert format_bytes(1000) == "1000"
    assert format_bytes(0) == "0"
    assert format_bytes(-5) == "0"


def test_allocatable_is_capacity_less_eviction_thresholds() -> None:
    assert capacity(HOST) == {
        "cpu": "4",
        "memory": "8Gi",
        "pods": "110",
        "ephemeral-storage": "100Gi",
    }
    alloc = allocatable(HOST)
    assert alloc["memory"] == "8092Mi"  # 8Gi - 100Mi (memory.available)
    assert alloc["ephemeral-storage"] == "90Gi"  # nodefs.available<10%
    assert alloc["cpu"] == "4" and alloc["pods"] == "110"


@pytest.mark.parametrize(
    ("changes", "memory", "disk"),
    [
        ({}, False, False),
        ({"memory_available": 99 * 2**20}, True, False),
        ({"disk_available": 14 * GI}, False, True),  # imagefs.available<15% on the same fs
        ({"inodes_free": 49}, False, True),
    ],
)
def test_pressure_follows_the_eviction_hard_thresholds(
    changes: dict[str, int], memory: bool, disk: bool
) -> None:
    sample = HostSample(**{**HOST.__dict__, **changes})
    states = pressure(sample)
    assert states == {
        "MemoryPressure": memory,
        "DiskPressure": disk,
        "PIDPressure": False,
        "Ready": True,
    }


def test_conditions_reasons_and_transition_times() -> None:
    states = {**HEALTHY, "MemoryPressure": True}
    since = dict.fromkeys(HEALTHY, T0)
    conditions = {c["type"]: c for c in node_conditions(states, T0 + timedelta(seconds=5), since)}
    assert conditions["MemoryPressure"]["status"] == "True"
    assert conditions["MemoryPressure"]["reason"] == "KubeletHasInsufficientMemory"
    assert conditions["DiskPressure"]["reason"] == "KubeletHasNoDiskPressure"
    assert conditions["Ready"]["reason"] == "KubeletReady"
    assert conditions["Ready"]["lastHeartbeatTime"] == "2026-01-02T03:04:10Z"
    assert conditions["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"

    later = T0 + timedelta(minutes=1)
    moved = transition_times(list(conditions.values()), {**states, "Ready": False}, later)
    assert moved["Ready"] == later  # changed now
    assert moved["MemoryPressure"] == T0  # unchanged: kept
    assert transition_times([], HEALTHY, later) == dict.fromkeys(HEALTHY, later)


def test_status_differs_ignores_heartbeats_only() -> None:
    since = dict.fromkeys(HEALTHY, T0)
    status = {
        "conditions": node_conditions(HEALTHY, T0, since),
        "addresses": node_addresses("n", ["10.0.0.1"]),
    }
    beat = {**status, "conditions": node_conditions(HEALTHY, T0 + timedelta(seconds=10), since)}
    assert not status_differs(status, beat)
    assert not status_differs({**status, "images": []}, beat)  # fields we do not set
    sick = {**HEALTHY, "DiskPressure": True}
    assert status_differs(status, {**status, "conditions": node_conditions(sick, T0, since)})
    assert status_differs(status, {**status, "addresses": node_addresses("n", ["10.0.0.2"])})


def test_addresses_order() -> None:
    assert node_addresses("edge", ["10.0.0.5"], ["192.0.2.1"]) == [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "ExternalIP", "address": "192.0.2.1"},
        {"type": "Hostname", "address": "edge"},
    ]


def test_label_and_taint_flags() -> None:
    assert parse_labels(["a=1", "example.com/b="]) == {"a": "1", "example.com/b": ""}
    assert parse_taints(["k=v:NoSchedule", "gpu:NoExecute"]) == [
        {"key": "k", "value": "v", "effect": "NoSchedule"},
        {"key": "gpu", "effect": "NoExecute"},
    ]
    for bad in ("novalue", "bad key=1", "k=" + "x" * 64):
        with pytest.raises(ValueError, match="invalid node label"):
            parse_labels([bad])
    for bad in ("k=v", "k=v:Sometimes", ":NoSchedule"):
        with pytest.raises(ValueError, match="invalid node taint"):
            parse_taints([bad])


def test_node_name_with_a_stable_node_id(tmp_path: Path) -> None:
    config = AgentConfig(server="https://s", token="t", data_dir=tmp_path, node_name="edge")
    assert node_name(config) == "edge"
    config.with_node_id = True
    first = node_name(config)
    assert first.startswith("edge-") and len(first) == len("edge-") + 8
    assert node_name(config) == first
    assert (tmp_path / "agent" / "node-id").stat().st_mode & 0o777 == 0o600


def test_agent_status_not_ready_when_the_runtime_is_down(tmp_path: Path) -> None:
    async def broken() -> str:
        raise ConnectionError("no podman socket")

    async def version() -> str:
        return "5.4.2"

    config = AgentConfig(server="https://s", token="t", data_dir=tmp_path, node_name="edge")
    agent = Agent(config, runtime_version=broken, clock=lambda: T0, sampler=lambda _: HOST)
    agent.name, agent.node_ips = "edge", ["10.0.0.5"]
    status = asyncio.run(agent.status({}))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "KubeletNotReady"
    assert "no podman socket" in ready["message"]
    agent.runtime_version = version
    status = asyncio.run(agent.status({"conditions": status["conditions"]}))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert status["nodeInfo"]["containerRuntimeVersion"] == "podman://5.4.2"
    assert status["capacity"] == capacity(HOST) and status["allocatable"] == allocatable(HOST)


@pytest.mark.parametrize(
    ("server", "ca", "name", "ips", "problem"),
    [
        ("https://a:6443", b"CA", "edge", ["10.0.0.5", "127.0.0.1"], ""),
        ("https://a:6443", b"OTHER", "edge", ["10.0.0.5"], "another cluster CA"),
        ("https://b:6443", b"CA", "edge", ["10.0.0.5"], "https://a:6443"),
        ("https://a:6443", b"CA", "edge2", ["10.0.0.5"], "node edge"),
        ("https://a:6443", b"CA", "edge", ["10.0.0.6"], "node edge"),
    ],
)
def test_stored_credentials_are_reused_only_for_the_same_cluster(
    tmp_path: Path, server: str, ca: bytes, name: str, ips: list[str], problem: str
) -> None:
    creds = AgentCredentials.at(tmp_path, b"CA")
    stored = ("https://a:6443", creds, "edge", ["10.0.0.5"])
    fresh = "agent.bootstrap.needs_renewal"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fresh, lambda *_a, **_k: False)
        found = _reuse_problem(stored, server, ca, name, ips, T0)
    assert (problem in found) if problem else found == ""


def test_host_facts(tmp_path: Path) -> None:
    sample = host.sample(tmp_path)
    assert sample.cpus >= 1 and sample.memory_bytes >= sample.memory_available > 0
    assert sample.disk_bytes >= sample.disk_available > 0 and sample.inodes > 0
    assert host.os_image()
    assert host.address_towards("https://127.0.0.1:6443") == "127.0.0.1"
    assert host.address_towards("https://[::1]:6443") in ("::1", "127.0.0.1")


def test_node_address_prefers_the_default_route_interface_over_loopback(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\n"
        "eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\n"
        "eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\n"
    )
    addresses = {"eth0": "10.0.0.5", "eth1": "192.168.1.5"}
    assert host.default_route_interface(str(table)) == "eth0"
    assert (
        host.node_address(
            "https://127.0.0.1:6443", route_table=str(table), address_of=addresses.get
        )
        == "10.0.0.5"
    )
    # no default route: loopback stays; a server elsewhere: the address towards it
    assert host.node_address("https://127.0.0.1:6443", route_table=str(tmp_path / "none")) == (
        "127.0.0.1"
    )
    assert host.interface_ipv4("lo") == "127.0.0.1"
