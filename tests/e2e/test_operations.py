"""Operations on a running server: datastore snapshot and restore, ``edgek kubectl``,
``/metrics``, the one-line error of a missing optional part."""

from __future__ import annotations

import importlib.util
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.helpers import (
    REPO,
    Kubectl,
    ServerProcess,
    free_port,
    kubectl_binaries,
    object_names,
    start_server,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module."""
    server = start_server(tmp_path_factory.mktemp("ops"))
    yield server
    server.stop()


def edgek(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``edgek args`` from this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "edgek", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def _core(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def _cm(name: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"n": name})


def test_snapshot_under_writes_restores_every_acknowledged_object(
    srv: ServerProcess, tmp_path: Path
) -> None:
    core = _core(srv.kubeconfig)
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            core.create_namespaced_config_map("default", _cm(f"w-{n}"))
            acknowledged.append(f"w-{n}")
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(acknowledged) < 20:
            stop.wait(0.05)
        before = list(acknowledged)
        taken = edgek("datastore", "snapshot", "--data-dir", str(srv.data_dir), "--name", "t")
        after_count = len(acknowledged)
    finally:
        stop.set()
        writer.join()
    assert taken.returncode == 0, taken.stderr
    snapshot = Path(taken.stdout.strip())
    assert snapshot.parent == srv.data_dir / "server" / "db" / "snapshots"
    assert snapshot.name.startswith("t-") and snapshot.is_file()
    assert after_count > len(before), "writes kept running during the snapshot"

    refused = edgek("datastore", "restore", str(snapshot), "--data-dir", str(srv.data_dir))
    assert refused.returncode == 1 and "running server" in refused.stderr

    fresh = tmp_path / "fresh"
    restored = edgek("datastore", "restore", str(snapshot), "--data-dir", str(fresh))
    assert restored.returncode == 0, restored.stderr
    second = ServerProcess(fresh, free_port(), tmp_path / "restored.log")
    second.start()
    try:
        listed = _core(second.kubeconfig).list_namespaced_config_map("default")
        names = set(object_names(listed))
    finally:
        second.stop()
    assert set(before) <= names
    assert names <= set(acknowledged) | {"kube-root-ca.crt"}


def test_edgek_kubectl_uses_the_data_dirs_admin_kubeconfig(srv: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["EDGEK_DATA_DIR"] = str(srv.data_dir)
    res = edgek("kubectl", "get", "ns", "-o", "name", env=env)
    assert res.returncode == 0, res.stderr
    assert "namespace/kube-system" in res.stdout.split()
    missing = edgek("kubectl", "get", "ns", env={**env, "PATH": "/nonexistent"})
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "edgek: kubectl is not installed (put kubectl on PATH, e.g. apt-get install kubectl)"
    ]


@pytest.mark.skipif(importlib.util.find_spec("asyncpg") is not None, reason="asyncpg installed")
def test_postgres_without_asyncpg_is_a_one_line_error(tmp_path: Path) -> None:
    res = edgek(
        "server",
        "--data-dir",
        str(tmp_path),
        "--write-kubeconfig",
        str(tmp_path / "k.yaml"),
        "--https-listen-port",
        str(free_port()),
        "--disable-agent",
        "--datastore-endpoint",
        "postgres://edgek@127.0.0.1:1/edgek",
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "edgek: cannot start server: the postgres datastore needs asyncpg, which is not "
        "installed: pip install 'edgek[postgres]'"
    )


def test_metrics_for_authorized_clients_only(srv: ServerProcess, tmp_path: Path) -> None:
    kubectl = Kubectl(next(iter(kubectl_binaries().values())), srv.kubeconfig, tmp_path / "c")
    kubectl("get", "configmaps", "-A")
    text = kubectl("get", "--raw", "/metrics")
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert any(
        line.startswith("apiserver_request_total{")
        and 'verb="LIST"' in line
        and 'resource="configmaps"' in line
        and 'code="200"' in line
        for line in samples
    )
    assert "# TYPE apiserver_request_duration_seconds histogram" in text
    assert any(line.startswith("apiserver_request_duration_seconds_bucket{") for line in samples)
    assert any(line.startswith("workqueue_depth{") for line in samples)
    assert any(line.startswith("process_resident_memory_bytes ") for line in samples)
    anonymous = urllib.request.Request(f"{srv.url}/metrics")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, context=ctx, timeout=10)
    assert refused.value.code in (401, 403)


@pytest.mark.skipif(os.geteuid() != 0, reason="probing the OCI runtimes needs root")
def test_check_config_on_this_host_and_a_host_without_memory_cgroup(tmp_path: Path) -> None:
    res = edgek("check-config")
    lines = res.stdout.splitlines()
    assert res.returncode == 0, res.stdout + res.stderr
    assert any(line.split()[:2] == ["ok", "cgroups"] for line in lines)
    assert any(line.split()[:3] == ["ok", "memory", "cgroup"] for line in lines)
    runtimes = [line.split() for line in lines if line.split()[1:2] == ["runtime"]]
    assert {r[2] for r in runtimes if len(r) > 2} >= {"crun", "runc"}  # each one reported
    assert ["ok", "runtime"] in [r[:2] for r in runtimes]
    # a host whose kernel has the memory controller disabled (Raspberry Pi OS's default)
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
    )
    (proc / "cgroups").write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\n")
    (proc / "modules").write_text("")
    (tmp_path / "sys" / "fs" / "cgroup").mkdir(parents=True)
    (tmp_path / "sys" / "fs" / "cgroup" / "cgroup.controllers").write_text("cpu io pids\n")
    pi = edgek("check-config", "--root", str(tmp_path))
    assert pi.returncode == 1
    assert "cgroup_memory=1 cgroup_enable=memory" in pi.stdout
    assert "/boot/firmware/cmdline.txt" in pi.stdout
    assert "blocker" in pi.stderr


def test_a_second_server_on_the_same_data_dir_is_refused(srv: ServerProcess) -> None:
    res = edgek(
        "server",
        "--data-dir",
        str(srv.data_dir),
        "--write-kubeconfig",
        str(srv.data_dir / "second.yaml"),
        "--https-listen-port",
        str(free_port()),
        "--disable-agent",
    )
    assert res.returncode == 1
    assert "is in use by a running server" in res.stderr.strip().splitlines()[-1]
