"""A whole test cluster: an ``edgek server`` subprocess plus ``edgek sim`` nodes, driven
with the real kubectl. Time-driven loops can be moved ahead with ``advance_clock``."""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgek.objects import Obj
from tests.helpers import REPO, Kubectl, ServerProcess, kubectl_binaries, start_server

KUBECTL = kubectl_binaries().get("system") or kubectl_binaries()["pinned"]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (returned); AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class EdgekProcess:
    """An ``edgek <command>`` subprocess that prints one line once it is up."""

    def __init__(self, command: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgek", command, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )

    def summary(self, timeout: float = 60.0) -> str:
        """The one line the process prints once it is up (the sim: its nodes registered)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            raise AssertionError(f"edgek {self.command} printed no summary")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"edgek {self.command} exited: {self.stop()}")
        return line

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> str:
        """SIGTERM; asserts a clean exit within 10 s and returns stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=10)
        assert self.proc.returncode == 0, err
        return err


class Sim(EdgekProcess):
    """An ``edgek sim`` subprocess."""

    def __init__(self, *args: str) -> None:
        super().__init__("sim", *args)

    @classmethod
    def joining(cls, server: ServerProcess, count: int, prefix: str, *args: str) -> Sim:
        """A sim of ``count`` nodes named ``<prefix>0..`` that joins ``server`` with its
        admin kubeconfig."""
        return cls(
            "--server",
            server.url,
            "--kubeconfig",
            str(server.kubeconfig),
            "--nodes",
            str(count),
            "--name-prefix",
            prefix,
            *args,
        )


@dataclass
class Cluster:
    """A server with simulated nodes."""

    server: ServerProcess
    kubectl: Kubectl
    clock_file: Path
    sims: list[Sim]
    _namespaces: Iterator[int] = field(default_factory=itertools.count)

    def add_nodes(self, count: int, prefix: str, *sim_args: str) -> Sim:
        """Start another ``edgek sim`` with ``count`` nodes named ``<prefix>0..``."""
        sim = Sim.joining(self.server, count, prefix, *sim_args)
        sim.summary()
        self.sims.append(sim)
        return sim

    def clock_offset(self) -> float:
        """How many seconds the control loops' clock runs ahead of the wall clock."""
        return float(self.clock_file.read_text() or 0) if self.clock_file.exists() else 0.0

    def advance_clock(self, seconds: float) -> None:
        """Move the control loops' clock ahead (the server re-reads the file within 0.2 s)."""
        self.clock_file.write_text(str(self.clock_offset() + seconds))
        time.sleep(0.5)

    def new_namespace(self, prefix: str) -> str:
        """Create the namespace ``<prefix><n>`` (n counting up per cluster); its name."""
        name = f"{prefix}{next(self._namespaces)}"
        self.kubectl("create", "namespace", name)
        return name

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ... -o json``, decoded."""
        return dict(json.loads(self.kubectl("get", *args, "-o", "json")))

    def stop(self) -> None:
        for sim in self.sims:
            sim.stop()
        self.server.stop()


def start_cluster(
    tmp: Path,
    nodes: int = 3,
    *,
    server_args: tuple[str, ...] = (),
    sim_args: tuple[str, ...] = (),
    prefix: str = "node-",
) -> Cluster:
    """A server (loops' clock adjustable) with ``nodes`` sim nodes that run pods fast."""
    clock = tmp / "clock"
    srv = start_server(tmp, "--debug-clock-file", str(clock), *server_args)
    cluster = Cluster(srv, Kubectl(KUBECTL, srv.kubeconfig, tmp / "kubectl-cache"), clock, [])
    try:
        if nodes:
            cluster.add_nodes(
                nodes, prefix, "--pod-ready-seconds", "0.2", "--pod-run-seconds", "1", *sim_args
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def cluster_fixture(
    basename: str,
    nodes: int = 3,
    *,
    name: str = "cluster",
    server_args: tuple[str, ...] = (),
    sim_args: tuple[str, ...] = (),
    prefix: str = "node-",
) -> Any:
    """A module-scoped fixture ``name``: ``start_cluster`` in a fresh temporary folder named
    after ``basename``, stopped when the module is done."""

    @pytest.fixture(scope="module", name=name)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
        c = start_cluster(
            tmp_path_factory.mktemp(basename),
            nodes,
            server_args=server_args,
            sim_args=sim_args,
            prefix=prefix,
        )
        yield c
        c.stop()

    return fixture


class PodWatch:
    """``kubectl get pods -w --output-watch-events -o json`` in the background: every pod
    change in a namespace, in order, as (event type, pod)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        k = cluster.kubectl
        self.events: list[tuple[str, Obj]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [
                k.binary,
                "--kubeconfig",
                str(k.kubeconfig),
                "--cache-dir",
                str(k.cache_dir),
                "get",
                "pods",
                "-n",
                namespace,
                "-w",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        for line in self.proc.stdout:
            buf += line
            while buf.strip():
                try:
                    event, end = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                buf = buf.lstrip()[end:]
                with self._lock:
                    self.events.append((event["type"], event["object"]))

    def snapshot(self) -> list[tuple[str, Obj]]:
        with self._lock:
            return list(self.events)

    def seen(self, name: str) -> bool:
        return any(obj["metadata"]["name"] == name for _, obj in self.snapshot())

    def stop(self) -> list[tuple[str, Obj]]:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        return self.snapshot()


def start_watch(cluster: Cluster, namespace: str) -> PodWatch:
    """A pod watch that is known to be live: it has reported a sentinel pod created after
    it started (name ``sentinel``, no labels any workload here selects)."""
    watch = PodWatch(cluster, namespace)
    cluster.kubectl(
        "run", "sentinel", "-n", namespace, "--image=registry.local/pause:1", "--restart=Never"
    )
    wait_for(lambda: watch.seen("sentinel"), "the pod watch to report the sentinel pod")
    return watch


def running_and_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status.get("phase") == "Running" and conditions.get("Ready") == "True"


def image_of(pod: Obj) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def replay(events: list[tuple[str, Obj]]) -> Iterator[tuple[str, Obj, dict[str, Obj]]]:
    """Each event with the pods as they were just before it (name -> last seen pod)."""
    pods: dict[str, Obj] = {}
    for type_, obj in events:
        name = obj["metadata"]["name"]
        yield type_, obj, dict(pods)
        if type_ == "DELETED":
            pods.pop(name, None)
        else:
            pods[name] = obj
