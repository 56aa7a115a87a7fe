"""``edgek agent`` as a process against real servers, on a Podman service of the test's
inside a network namespace (``--podman-socket``; pods are tests/agent/test_pods.py's): it joins with the node token, registers a Ready Node with its labels, taints,
addresses, node info and capacity, renews its Lease, reuses its identity on restart and
bootstraps again for a new cluster CA; token-mode sim nodes do the same. Flags come from
the command line, environment variables, a token file and a config file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.podman.service import PodmanService
from tests.agent.conftest import needs_podman
from tests.agent.netns import inside_isolated_netns, isolated_netns
from tests.e2e.cluster import KUBECTL, EdgekProcess, Sim, wait_for
from tests.helpers import REPO, Kubectl, ServerProcess, free_port, start_server


@pytest.fixture
def podman_socket() -> Iterator[str]:
    """A Podman service inside an isolated network namespace for a test's agents (one per
    test: the nodes of different clusters get the same podCIDRs; a short data dir: unix
    socket paths are limited to 108 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="eka"))
    with isolated_netns() as prefix:
        service = PodmanService(root / "agent", command_prefix=prefix)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(service.start())
        try:
            yield str(service.socket)
        finally:
            loop.run_until_complete(service.stop())
            loop.close()
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def agent_process(socket: str, *args: str, env: dict[str, str] | None = None) -> EdgekProcess:
    """An ``edgek agent`` subprocess on the Podman service at ``socket`` with a free
    streaming port; its one line says the node joined."""
    port = str(free_port())  # the streaming port: no fixed port on the test machine
    return EdgekProcess("agent", "--podman-socket", socket, "--kubelet-port", port, *args, env=env)


@pytest.fixture(scope="module", autouse=True)
def netns() -> Iterator[None]:
    """The whole module runs in a network namespace of its own (the servers, the agents and
    kubectl inherit it), so nothing an agent programs reaches the host."""
    with inside_isolated_netns():
        yield


@pytest.fixture(scope="module")
def servers(netns: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two servers of their own (two cluster CAs), so no other test's pods land here."""
    first = start_server(tmp_path_factory.mktemp("agent-a"))
    second = start_server(tmp_path_factory.mktemp("agent-b"))
    yield [first, second]
    first.stop()
    second.stop()


def token_of(server: ServerProcess) -> str:
    return (server.data_dir / "server" / "node-token").read_text().strip()


def kubectl(server: ServerProcess, tmp_path: Path) -> Kubectl:
    return Kubectl(KUBECTL, server.kubeconfig, tmp_path / f"cache-{server.port}")


def node(k: Kubectl, name: str) -> dict[str, Any]:
    return dict(json.loads(k("get", "node", name, "-o", "json")))


def renew_time(k: Kubectl, name: str) -> str:
    lease = json.loads(k("get", "lease", name, "-n", "kube-node-lease", "-o", "json"))
    return str(lease["spec"]["renewTime"])


def csr_count(k: Kubectl) -> int:
    return len(json.loads(k("get", "csr", "-o", "json"))["items"])


def check_registered_node(obj: dict[str, Any]) -> None:
    """The Node edge-a registered with the flags of the test below: labels, taint,
    addresses, conditions, node info, capacity and allocatable."""
    labels = obj["metadata"]["labels"]
    assert labels["team"] == "edge"
    assert labels["kubernetes.io/hostname"] == "edge-a"
    assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"]
    assert labels["node.kubernetes.io/instance-type"] == "edgek"
    assert obj["spec"]["taints"] == [{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]
    status = obj["status"]
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "127.0.0.1"},
        {"type": "ExternalIP", "address": "192.0.2.10"},
        {"type": "Hostname", "address": "edge-a"},
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert kind in conditions
    info = status["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("podman://")
    assert "edgek" in info["kubeletVersion"] and info["kernelVersion"] == os.uname().release
    assert info["osImage"] and info["architecture"] == labels["kubernetes.io/arch"]
    assert status["capacity"]["pods"] == "110"
    assert status["capacity"]["cpu"] == str(os.cpu_count())
    assert status["allocatable"]["memory"] != status["capacity"]["memory"]
    for resource in ("cpu", "memory", "pods", "ephemeral-storage"):
        assert status["allocatable"][resource]


@needs_podman
def test_agent_registers_a_ready_node_and_renews_its_lease(
    servers: list[ServerProcess], tmp_path: Path, podman_socket: str
) -> None:
    server = servers[0]
    k = kubectl(server, tmp_path)
    args = [
        "--server",
        server.url,
        "--token",
        token_of(server),
        "--data-dir",
        str(tmp_path / "data"),
        "--node-name",
        "edge-a",
        "--node-ip",
        "127.0.0.1",
        "--node-external-ip",
        "192.0.2.10",
        "--node-label",
        "team=edge",
        "--node-taint",
        "dedicated=edge:NoSchedule",
        "--container-runtime",
        "runc",
    ]
    agent = agent_process(podman_socket, *args)
    try:
        assert "node edge-a joined" in agent.summary()
        wide = k("get", "nodes", "-o", "wide")
        row = next(line for line in wide.splitlines() if line.startswith("edge-a "))
        assert " Ready " in row and "192.0.2.10" in row
        check_registered_node(node(k, "edge-a"))
        first = renew_time(k, "edge-a")
        wait_for(lambda: renew_time(k, "edge-a") > first, "a lease renewal", timeout=20)
        key = tmp_path / "data" / "agent" / "client-kubelet.key"
        assert key.stat().st_mode & 0o777 == 0o600

        # someone else's status change is reported over at the next status update (10 s),
        # as a new transition of Ready
        def ready_since() -> str:
            conditions = node(k, "edge-a")["status"]["conditions"]
            ready = next(c for c in conditions if c["type"] == "Ready")
            return str(ready["lastTransitionTime"]) if ready["status"] == "True" else ""

        registered = ready_since()
        unknown = {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
        patch = json.dumps({"status": {"conditions": [unknown]}})
        k("patch", "node", "edge-a", "--subresource=status", "--type=strategic", "-p", patch)
        # renewed certificates are picked up at the next status update too
        rotate = [sys.executable, "-m", "edgek", "certificate", "rotate"]
        done = subprocess.run(
            [*rotate, "--data-dir", str(tmp_path / "data")], capture_output=True, cwd=REPO
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: ready_since() not in ("", registered), "Ready reported again", timeout=20)
        time.sleep(11)
    finally:
        log = agent.stop()  # asserts a clean exit
    assert "node edge-a uses its renewed certificate" in log

    # a restart reuses the stored identity: no new CSR, same node
    csrs = csr_count(k)
    again = agent_process(podman_socket, *args)
    try:
        assert "node edge-a joined" in again.summary()
        assert csr_count(k) == csrs
    finally:
        again.stop()


@needs_podman
def test_new_cluster_ca_makes_agent_and_sim_bootstrap_again(
    servers: list[ServerProcess], tmp_path: Path, podman_socket: str
) -> None:
    data = tmp_path / "data"
    for server in servers:
        agent = agent_process(
            podman_socket,
            "--server",
            server.url,
            "--token",
            token_of(server),
            "--data-dir",
            str(data),
            "--node-name",
            "edge-moved",
            "--node-ip",
            "127.0.0.1",
        )
        try:
            assert "node edge-moved joined" in agent.summary()
            assert node(kubectl(server, tmp_path), "edge-moved")["metadata"]["uid"]
        finally:
            agent.stop()
    # token-mode sim nodes with credentials from the older cluster
    for server in servers:
        sim = Sim(
            "--server",
            server.url,
            "--token",
            token_of(server),
            "--nodes",
            "1",
            "--name-prefix",
            "stale-",
            "--data-dir",
            str(tmp_path / "sim"),
        )
        try:
            assert "1 nodes registered" in sim.summary()
            assert node(kubectl(server, tmp_path), "stale-0")["metadata"]["uid"]
        finally:
            sim.stop()


@needs_podman
def test_flags_from_env_token_file_and_config_file(
    servers: list[ServerProcess], tmp_path: Path, podman_socket: str
) -> None:
    server = servers[0]
    k = kubectl(server, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(token_of(server) + "\n")
    from_env = agent_process(
        podman_socket,
        "--token-file",
        str(token_file),
        "--data-dir",
        str(tmp_path / "env"),
        "--node-name",
        "edge-env",
        env={"EDGEK_URL": server.url},
    )
    try:
        assert "node edge-env joined" in from_env.summary()
    finally:
        from_env.stop()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server: {server.url}\n"
        f"data-dir: {tmp_path / 'conf'}\n"
        "node-name: edge-conf\n"
        "node-label: [site=north, tier=gateway]\n"
        "with-node-id: true\n"
    )
    from_config = agent_process(
        podman_socket, "--config", str(config), env={"EDGEK_TOKEN": token_of(server)}
    )
    try:
        line = from_config.summary()
        name = line.split("node ", 1)[1].split()[0]
        node_id = (tmp_path / "conf" / "agent" / "node-id").read_text().strip()
        assert name == f"edge-conf-{node_id}"
        labels = node(k, name)["metadata"]["labels"]
        assert labels["site"] == "north" and labels["tier"] == "gateway"
    finally:
        from_config.stop()


def test_token_commands_take_a_data_dir(servers: list[ServerProcess]) -> None:
    data = str(servers[0].data_dir)

    def edgek(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgek", "token", *args, "--data-dir", data],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )

    made = edgek("create", "--description", "via data dir")
    assert made.returncode == 0, made.stderr
    token_id = made.stdout.strip().split("::", 1)[1].split(".", 1)[0]
    listed = edgek("list")
    assert listed.returncode == 0 and token_id in listed.stdout
    assert edgek("delete", token_id).returncode == 0
    assert token_id not in edgek("list").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node-taint", "dedicated=edge"], "invalid node taint"),
        (["--node-label", "no value"], "invalid node label"),
        (["--container-runtime", "kata"], "--container-runtime"),
        (["--node-external-ip", "example.com"], "invalid --node-external-ip"),
    ],
)
def test_bad_flags_are_one_line_errors(args: list[str], message: str) -> None:
    base = ["--server", "https://127.0.0.1:1", "--token", "t"]
    done = subprocess.run(
        [sys.executable, "-m", "edgek", "agent", *base, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 1 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
