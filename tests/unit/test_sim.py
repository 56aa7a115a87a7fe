"""The pure parts of ``edgek sim``: addresses, pod IP allocation, node and pod statuses, and
the pod step timing of the simulator."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.nodestatus import lease_object
from agent.sim import SimConfig, SimNode, Simulator, _ready_overwritten
from agent.simobjects import (
    NodeShape,
    PodIPAllocator,
    PodRun,
    Stage,
    image_id,
    node_ip,
    node_object,
    pod_cidrs,
    pod_status,
    remember_conditions,
)
from edgek.apiclient import ApiClient

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pod(**annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "p", "uid": "u-1", "annotations": annotations},
        "spec": {
            "nodeName": "sim-0",
            "restartPolicy": annotations.pop("policy", "Always"),
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "a", "image": "nginx:1.25"},
                {"name": "b", "image": "ghcr.io/x/y:v1"},
            ],
        },
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    }


def started(run: PodRun, at: datetime = T0) -> PodRun:
    run.host_ip, run.pod_ips = "10.250.0.1", ["10.42.0.2"]
    run.start_time = run.started_at = at
    return run


def test_node_ips_are_distinct_and_in_the_test_range() -> None:
    ips = [node_ip(i) for i in range(1000)]
    assert len(set(ips)) == 1000
    assert ips[0] == "10.250.0.1" and ips[253] == "10.250.0.254" and ips[254] == "10.250.1.1"
    net = ipaddress.ip_network("10.250.0.0/16")
    assert all(ipaddress.ip_address(ip) in net for ip in ips)
    assert not any(ip.endswith((".0", ".255")) for ip in ips)
    with pytest.raises(ValueError):
        node_ip(254 * 256)


def test_allocator_skips_network_gateway_and_broadcast_and_reuses_freed() -> None:
    alloc = PodIPAllocator("10.42.3.0/29")  # .0 network, .1 gateway, .7 broadcast
    assert alloc.size == 5
    got = [alloc.allocate() for _ in range(5)]
    assert got == [f"10.42.3.{i}" for i in range(2, 7)]
    assert alloc.allocate() is None
    alloc.release("10.42.3.4")
    assert alloc.allocate() == "10.42.3.4"
    assert alloc.allocate() is None


def test_allocator_reserve_only_accepts_free_addresses_of_its_range() -> None:
    alloc = PodIPAllocator("10.42.3.0/24")
    assert alloc.reserve("10.42.3.2")
    assert not alloc.reserve("10.42.3.2")
    assert not alloc.reserve("10.42.4.2") and not alloc.reserve("10.42.3.1")
    assert not alloc.reserve("fd00::2") and not alloc.reserve("junk")
    assert alloc.allocate() == "10.42.3.3"


def test_ipv6_allocator() -> None:
    alloc = PodIPAllocator("fd00:42::/120")
    assert alloc.allocate() == "fd00:42::2"
    assert alloc.size == 254


def test_pod_cidrs_prefers_the_list() -> None:
    assert pod_cidrs({"spec": {"podCIDR": "10.0.0.0/24"}}) == ["10.0.0.0/24"]
    both = {"spec": {"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}
    assert pod_cidrs(both) == ["10.0.0.0/24", "fd00::/64"]
    assert pod_cidrs({"spec": {}}) == []


def test_node_object_reports_capacity_addresses_and_healthy_conditions() -> None:
    shape = NodeShape(cpu="8", memory="16Gi", max_pods=50, arch="arm64")
    node = node_object("sim-3", "10.250.0.4", shape, T0, "boot")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "sim-3"
    assert labels["kubernetes.io/arch"] == "arm64" and labels["edgek.io/sim"] == "true"
    assert labels["node.kubernetes.io/instance-type"] == "sim"
    status = node["status"]
    assert status["capacity"] == {
        "cpu": "8",
        "memory": "16Gi",
        "pods": "50",
        "ephemeral-storage": "50Gi",
    }
    assert status["allocatable"] == status["capacity"]
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "10.250.0.4"},
        {"type": "Hostname", "address": "sim-3"},
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "KubeletReady"
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions[kind]["status"] == "False"
    assert all(c["lastHeartbeatTime"] == "2026-01-02T03:04:05Z" for c in conditions.values())
    assert status["nodeInfo"]["architecture"] == "arm64"
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250


def test_lease_is_owned_by_its_node() -> None:
    lease = lease_object("sim-0", "uid-0", 40, T0)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-0"
    assert lease["spec"] == {
        "holderIdentity": "sim-0",
        "leaseDurationSeconds": 40,
        "renewTime": "2026-01-02T03:04:05.000000Z",
    }


def test_image_ids() -> None:
    assert image_id("nginx:1.25").startswith("docker.io/library/nginx@sha256:")
    assert image_id("x/y").startswith("docker.io/x/y@sha256:")
    assert image_id("localhost:5000/y:v2").startswith("localhost:5000/y@sha256:")
    assert image_id("nginx:1.25") != image_id("nginx:1.26")


def test_run_settings_from_annotations() -> None:
    always = PodRun.from_pod(pod(), run_seconds=5)
    assert always.run_seconds is None and always.exit_code == 0
    never = PodRun.from_pod(
        pod(policy="Never", **{"sim.edgek.io/run-seconds": "2.5", "sim.edgek.io/exit-code": "3"}),
        run_seconds=5,
    )
    assert never.run_seconds == 2.5 and never.exit_code == 3
    bad = PodRun.from_pod(pod(policy="OnFailure", **{"sim.edgek.io/run-seconds": "x"}), 7)
    assert bad.run_seconds == 7


def test_running_then_ready_status() -> None:
    run = started(PodRun.from_pod(pod(), 5))
    status = pod_status(run, Stage.RUNNING, T0)
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.42.0.2" and status["podIPs"] == [{"ip": "10.42.0.2"}]
    assert status["hostIP"] == "10.250.0.1" and status["startTime"] == "2026-01-02T03:04:05Z"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["message"] == "containers with unready status: [a b]"
    assert conds["Initialized"]["status"] == "True"
    assert "PodScheduled" not in conds  # the scheduler's condition is left alone
    a, b = status["containerStatuses"]
    assert a["state"] == {"running": {"startedAt": "2026-01-02T03:04:05Z"}}
    assert not a["ready"] and a["started"] and a["containerID"].startswith("sim://")
    assert a["containerID"] != b["containerID"] and b["image"] == "ghcr.io/x/y:v1"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    remember_conditions(run, status)

    later = T0 + timedelta(seconds=1)
    ready = pod_status(run, Stage.READY, later)
    conds = {c["type"]: c for c in ready["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["reason"] is None and conds["Ready"]["message"] is None
    assert conds["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:06Z"
    assert conds["Initialized"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert all(c["ready"] for c in ready["containerStatuses"])


def test_ready_overwritten_by_another_writer() -> None:
    """A later write of Ready=False by someone else (node lifecycle) is noticed; our own
    writes and stale events from before our last write are not."""
    run = started(PodRun.from_pod(pod(), 5))
    status = pod_status(run, Stage.READY, T0)
    remember_conditions(run, status)
    run.reported, run.written_version = Stage.READY, 10

    def event(version: int, ready: str) -> dict[str, Any]:
        seen = pod()
        seen["metadata"]["resourceVersion"] = str(version)
        seen["status"] = {"conditions": [{"type": "Ready", "status": ready}]}
        return seen

    assert _ready_overwritten(run, event(11, "False"))
    assert not _ready_overwritten(run, event(10, "True"))  # our own write
    assert not _ready_overwritten(run, event(9, "False"))  # the Running write before it
    assert not _ready_overwritten(run, event(12, "True"))  # e.g. a label change
    run.reported = Stage.SUCCEEDED
    assert not _ready_overwritten(run, event(11, "False"))  # done with the pod


def test_pod_scheduled_is_added_when_missing() -> None:
    raw = pod()
    raw["status"] = {}
    status = pod_status(started(PodRun.from_pod(raw, 5)), Stage.RUNNING, T0)
    assert {"type": "PodScheduled", "status": "True"}.items() <= status["conditions"][-1].items()


@pytest.mark.parametrize(
    ("stage", "phase", "exit_code", "reason"),
    [
        (Stage.SUCCEEDED, "Succeeded", 0, "Completed"),
        (Stage.FAILED, "Failed", 3, "Error"),
        (Stage.KILLED, "Failed", 143, "Error"),
    ],
)
def test_terminal_statuses(stage: Stage, phase: str, exit_code: int, reason: str) -> None:
    run = started(PodRun.from_pod(pod(policy="Never", **{"sim.edgek.io/exit-code": "3"}), 5))
    run.finished_at = T0 + timedelta(seconds=5)
    status = pod_status(run, stage, T0 + timedelta(seconds=6))
    assert status["phase"] == phase
    for container in status["containerStatuses"]:
        term = container["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (exit_code, reason)
        assert term["finishedAt"] == "2026-01-02T03:04:10Z"
        assert not container["ready"] and not container["started"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["reason"] == "PodCompleted"
    assert conds["PodReadyToStartContainers"]["status"] == "False"


def sim(tmp_path: Path, **options: Any) -> Simulator:
    config = SimConfig(
        server="https://127.0.0.1:1", nodes=1, token="t", data_dir=tmp_path, **options
    )
    return Simulator(config, clock=lambda: T0)


def test_steps_of_a_never_pod(tmp_path: Path) -> None:
    simulator = sim(tmp_path, pod_ready_seconds=1, pod_run_seconds=5)
    run = started(PodRun.from_pod(pod(policy="Never"), 5))
    assert simulator._due(run, T0) == (Stage.RUNNING, 1)
    assert simulator._due(run, T0 + timedelta(seconds=2)) == (Stage.READY, 3)
    assert simulator._due(run, T0 + timedelta(seconds=9)) == (Stage.SUCCEEDED, None)
    assert run.finished_at == T0 + timedelta(seconds=5)
    always = started(PodRun.from_pod(pod(), 5))
    assert simulator._due(always, T0 + timedelta(days=1)) == (Stage.READY, None)


def test_on_failure_pod_restarts(tmp_path: Path) -> None:
    simulator = sim(tmp_path, pod_ready_seconds=1, pod_run_seconds=5)
    run = started(PodRun.from_pod(pod(policy="OnFailure", **{"sim.edgek.io/exit-code": "2"}), 5))
    run.reported = Stage.READY
    restart_at = T0 + timedelta(seconds=6)
    assert simulator._due(run, restart_at) == (Stage.RUNNING, 1)
    assert run.restart_count == 1 and run.started_at == restart_at and run.reported is None
    assert run.last_exit is not None and run.last_exit["exitCode"] == 2
    status = pod_status(run, Stage.RUNNING, restart_at)
    last = status["containerStatuses"][0]["lastState"]["terminated"]
    assert last["finishedAt"] == "2026-01-02T03:04:10Z"
    assert last["containerID"] != status["containerStatuses"][0]["containerID"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token": ""}, "exactly one"),
        ({"kubeconfig": Path("k")}, "exactly one"),
        ({"nodes": 0}, "--nodes"),
        ({"fail_nodes": ("other-1",)}, "other-1"),
        ({"pod_run_seconds": -1}, "negative"),
    ],
)
def test_bad_config(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"server": "https://x", "nodes": 2, "token": "t", **options}
    with pytest.raises(ValueError, match=message):
        SimConfig(data_dir=tmp_path, **values).check()


async def test_pods_wait_for_the_node_pod_cidr(tmp_path: Path) -> None:
    simulator = sim(tmp_path)
    client = ApiClient("https://127.0.0.1:1", ssl.create_default_context())
    node = SimNode("sim-0", 0, node_ip(0), client, T0)
    simulator.nodes["sim-0"] = node
    simulator._pod_event("ADDED", pod())
    run = simulator.pods["ns/p"]
    assert not simulator._assign_ips(node, run) and run.pod_ips == []
    simulator._node_seen(node, {"metadata": {"uid": "n-1"}, "spec": {"podCIDR": "10.42.5.0/24"}})
    assert node.uid == "n-1" and node.cidrs == ["10.42.5.0/24"]
    assert simulator._assign_ips(node, run) and run.pod_ips == ["10.42.5.2"]
    simulator._pod_event("DELETED", pod())
    assert "ns/p" not in simulator.pods and node.pods == set()
    assert node.allocators[0].allocate() == "10.42.5.3"
    assert node.allocators[0].reserve("10.42.5.2")  # released when the pod went away
