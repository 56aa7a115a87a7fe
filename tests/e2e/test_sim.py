"""``edgek sim`` against a real server: nodes register Ready, renew their Leases, walk bound
pods through Running/Ready to Succeeded and finish deletions; a failed node stops renewing;
token mode bootstraps real node identities. The sim nodes get a server of their own, so no
other test's pods can land on them."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sim import SimConfig, Simulator
from tests.e2e.cluster import KUBECTL, Sim, wait_for
from tests.helpers import REPO, Kubectl, ServerProcess, start_server


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("sim-server"))
    yield srv
    srv.stop()


@pytest.fixture
def k(sim_server: ServerProcess, tmp_path: Path) -> Kubectl:
    return Kubectl(KUBECTL, sim_server.kubeconfig, tmp_path / "cache")


def get(k: Kubectl, *args: str) -> dict[str, Any]:
    return dict(json.loads(k("get", *args, "-o", "json")))


def renew_time(k: Kubectl, node: str) -> str:
    return str(get(k, "lease", node, "-n", "kube-node-lease")["spec"]["renewTime"])


def ready(node: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in node["status"].get("conditions") or []}
    return conds.get("Ready") == "True"


def ensure_pod_cidr(k: Kubectl, node: str, cidr: str) -> str:
    """The node's podCIDR, set to ``cidr`` unless the IPAM controller gave it one."""
    current = get(k, "node", node)["spec"].get("podCIDR")
    if not current:
        patch = json.dumps({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        k.run("patch", "node", node, "--type", "merge", "-p", patch, check=False)
        current = get(k, "node", node)["spec"]["podCIDR"]
    return str(current)


def bound_pod(name: str, node: str, policy: str = "Always", **annotations: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {
                "nodeName": node,
                "restartPolicy": policy,
                "containers": [{"name": "main", "image": "registry.local/app:v1"}],
            },
        }
    )


def test_kubeconfig_mode_nodes_leases_and_pods(sim_server: ServerProcess, k: Kubectl) -> None:
    sim = Sim.joining(
        sim_server,
        3,
        "kc-",
        "--lease-seconds",
        "4",
        "--pod-ready-seconds",
        "1",
        "--fail-node",
        "kc-2",
    )
    try:
        assert "3 nodes registered (kc-0..kc-2)" in sim.summary()
        nodes = {
            n["metadata"]["name"]: n for n in get(k, "nodes", "-l", "edgek.io/sim=true")["items"]
        }
        assert {"kc-0", "kc-1", "kc-2"} <= nodes.keys()
        assert all(ready(nodes[f"kc-{i}"]) for i in range(3))
        assert nodes["kc-1"]["status"]["capacity"]["pods"] == "110"
        table = k("get", "nodes", "-o", "wide")
        assert "kc-0" in table and "10.250.0.1" in table

        # leases renew every lease-seconds/4 = 1 s; the failed node's never does
        first = {n: renew_time(k, n) for n in ("kc-0", "kc-2")}
        wait_for(lambda: renew_time(k, "kc-0") > first["kc-0"], "kc-0 to renew its lease")
        time.sleep(1.5)
        assert renew_time(k, "kc-2") == first["kc-2"]

        cidr = ensure_pod_cidr(k, "kc-0", "10.42.200.0/24")
        k("create", "-f", "-", input=bound_pod("kc-web", "kc-0"))
        k(
            "create",
            "-f",
            "-",
            input=bound_pod("kc-job", "kc-0", "Never", **{"sim.edgek.io/run-seconds": "1"}),
        )
        k("wait", "pod/kc-web", "-n", "default", "--for=condition=Ready", "--timeout=20s")
        web = get(k, "pod", "kc-web", "-n", "default")
        assert web["status"]["phase"] == "Running"
        assert ipaddress.ip_address(web["status"]["podIP"]) in ipaddress.ip_network(cidr)
        assert web["status"]["hostIP"] == "10.250.0.1"
        status = web["status"]["containerStatuses"][0]
        assert status["ready"] and status["containerID"].startswith("sim://")
        k(
            "wait",
            "pod/kc-job",
            "-n",
            "default",
            "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=20s",
        )
        job = get(k, "pod", "kc-job", "-n", "default")
        assert job["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        assert job["status"]["podIP"] != web["status"]["podIP"]

        # a deleted pod is finished by its node: terminated, then deleted for good
        k("delete", "pod", "kc-web", "-n", "default", "--timeout=20s")
        assert k.run("get", "pod", "kc-web", "-n", "default", check=False).returncode != 0
    finally:
        sim.stop()


def test_pod_waits_for_a_pod_cidr(sim_server: ServerProcess, k: Kubectl) -> None:
    sim = Sim.joining(sim_server, 1, "cidr-")
    try:
        sim.summary()
        if get(k, "node", "cidr-0")["spec"].get("podCIDR"):
            pytest.skip("the IPAM controller assigned a podCIDR already")
        k("create", "-f", "-", input=bound_pod("cidr-web", "cidr-0"))
        time.sleep(1.5)
        assert get(k, "pod", "cidr-web", "-n", "default")["status"]["phase"] == "Pending"
        cidr = ensure_pod_cidr(k, "cidr-0", "10.42.201.0/24")
        k("wait", "pod/cidr-web", "-n", "default", "--for=condition=Ready", "--timeout=20s")
        ip = get(k, "pod", "cidr-web", "-n", "default")["status"]["podIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    finally:
        sim.stop()


def test_token_mode_bootstraps_node_identities(
    sim_server: ServerProcess, k: Kubectl, tmp_path: Path
) -> None:
    token = (sim_server.data_dir / "server" / "node-token").read_text().strip()
    args = ["--server", sim_server.url, "--token", token, "--nodes", "2", "--name-prefix", "tok-"]
    sim = Sim(*args, "--data-dir", str(tmp_path / "sim"))
    try:
        assert "2 nodes registered" in sim.summary(timeout=60)
        for name in ("tok-0", "tok-1"):
            assert ready(get(k, "node", name))
            assert renew_time(k, name)
            assert (tmp_path / "sim" / name / "kubelet.kubeconfig").exists()
        csrs = get(k, "csr")["items"]
        users = {c["spec"]["username"] for c in csrs if c["status"].get("certificate")}
        assert {"system:node:tok-0", "system:node:tok-1"} <= users
        cidr = ensure_pod_cidr(k, "tok-1", "10.42.202.0/24")
        k("create", "-f", "-", input=bound_pod("tok-web", "tok-1"))
        k("wait", "pod/tok-web", "-n", "default", "--for=condition=Ready", "--timeout=20s")
        ip = get(k, "pod", "tok-web", "-n", "default")["status"]["podIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
        k("delete", "pod", "tok-web", "-n", "default", "--timeout=20s")
    finally:
        sim.stop()
    # a restart reuses the stored identity instead of bootstrapping again
    again = Sim(*args, "--data-dir", str(tmp_path / "sim"))
    try:
        assert "2 nodes registered" in again.summary()
    finally:
        again.stop()


def test_simulator_fail_and_recover(sim_server: ServerProcess, k: Kubectl) -> None:
    async def scenario() -> None:
        config = SimConfig(
            server=sim_server.url,
            nodes=1,
            kubeconfig=sim_server.kubeconfig,
            name_prefix="api-",
            lease_seconds=4,
        )
        simulator = Simulator(config)
        await simulator.start()
        try:
            before = await asyncio.to_thread(renew_time, k, "api-0")
            simulator.fail_node("api-0")
            await asyncio.sleep(2.0)
            stopped = await asyncio.to_thread(renew_time, k, "api-0")
            await asyncio.sleep(1.5)
            assert await asyncio.to_thread(renew_time, k, "api-0") == stopped
            simulator.recover_node("api-0")
            await asyncio.sleep(1.0)
            assert await asyncio.to_thread(renew_time, k, "api-0") > max(before, stopped)
        finally:
            await simulator.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "https://127.0.0.1:1", "--nodes", "1"], "exactly one of --token"),
        (["--server", "https://127.0.0.1:1", "--nodes", "0", "--token", "t"], "--nodes"),
        (
            ["--server", "https://127.0.0.1:1", "--nodes", "1", "--token", "t", "--memory", "lots"],
            "--memory",
        ),
        (
            ["--server", "https://127.0.0.1:1", "--nodes", "2", "--token", "t", "--fail-node", "x"],
            "x",
        ),
    ],
)
def test_bad_flags(args: list[str], message: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "edgek", "sim", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode != 0
    assert message in res.stderr


def test_unreachable_server_is_one_line_error(tmp_path: Path, sim_server: ServerProcess) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgek",
            "sim",
            "--server",
            "https://127.0.0.1:1",
            "--nodes",
            "1",
            "--kubeconfig",
            str(sim_server.kubeconfig),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert res.stderr.startswith("edgek: sim:") and res.stderr.count("\n") == 1
