"""A one-node cluster for the agent's end-to-end tests: inside a network namespace of its
own (loopback only), an ``edgek server`` (no agent of its own), an ``edgek agent`` with its
own Podman, and the real kubectl, all entered with ``nsenter``; the offline busybox image
reaches the agent through ``<data-dir>/agent/images/``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.e2e.cluster import KUBECTL, wait_for
from tests.helpers import REPO, Kubectl

PORT = 6443
URL = f"https://127.0.0.1:{PORT}"
NODE = "edge1"


class NsProcess:
    """A process started inside the namespace (``prefix``), its output in ``log``."""

    def __init__(self, prefix: list[str], args: list[str], log: Path) -> None:
        self.args = [*prefix, *args]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (its output appended to the log)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=out, cwd=REPO, start_new_session=True
            )

    def running(self) -> bool:
        """Whether it is running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal it and wait (SIGKILL after ``timeout``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self) -> str:
        """The end of its log ("" before it ran)."""
        if not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-4000:]


class AgentCluster:
    """The server, the agent and kubectl in one namespace (see the module docstring)."""

    def __init__(
        self,
        prefix: list[str],
        root: Path,
        busybox_tar: Path,
        embedded: bool = False,
        node: str = NODE,
        agent_args: tuple[str, ...] = (),
        edgek: list[str] | None = None,
    ) -> None:
        """``embedded``: the server runs the agent itself (no ``--disable-agent``);
        ``node``: the agent's node name (its Podman network, and so its share of the
        machine-wide IPAM database, is named after it); ``agent_args``: more ``edgek agent``
        flags, on every start; ``edgek``: the command that runs edgek (default: this Python,
        this checkout)."""
        self.edgek = edgek or [sys.executable, "-m", "edgek"]
        self.prefix = prefix
        self.node = node
        self.agent_args = agent_args
        self.root = root
        self.server_dir = root / "server"
        self.agent_dir = self.server_dir if embedded else root / "agent-data"
        images = self.agent_dir / "agent" / "images"
        images.mkdir(parents=True)
        shutil.copy(busybox_tar, images / busybox_tar.name)
        self.kubeconfig = self.server_dir / "kubeconfig.yaml"
        self.server = NsProcess(
            prefix,
            [
                *self.edgek,
                *server_command(
                    self.server_dir, "127.0.0.1", *([] if embedded else ["--disable-agent"])
                )[3:],
            ],
            root / "server.log",
        )
        self.agent = NsProcess(prefix, [], root / "agent.log")
        self.kubectl = Kubectl(KUBECTL, self.kubeconfig, root / "kcache", prefix=prefix)

    def start_server(self) -> None:
        """Start the server and wait until it answers."""
        self.server.start()
        wait_server_ready(self.server, self.kubeconfig, self.kubectl)

    def start_agent(self, wait_ready: bool = True, extra: Sequence[str] = ()) -> None:
        """Start the agent (with ``extra`` flags) and wait for its Podman; with
        ``wait_ready`` also for its Node to be Ready (a restarted agent's Node may still be
        Ready from before)."""
        token = (self.server_dir / "server" / "node-token").read_text().strip()
        self.agent.args = [
            *self.prefix,
            *self.edgek,
            "agent",
            "--server",
            URL,
            "--token",
            token,
            "--data-dir",
            str(self.agent_dir),
            "--node-name",
            self.node,
            "--debug",
            *self.agent_args,
            *extra,
        ]
        self.agent.start()
        self.wait_runtime()
        if wait_ready:
            wait_for(self.node_ready, "the node to be Ready", 90)

    def pod_starts(self) -> int:
        """How many times an agent of this cluster started running pods (its log says)."""
        if not self.agent.log.exists():
            return 0
        return self.agent.log.read_text(errors="replace").count(" runs pods on ")

    def node_ready(self, name: str = "") -> bool:
        """Whether the node (default: the agent's) is registered, Ready, with a podCIDR."""
        name = name or self.node
        if self.agent.proc is not None and not self.agent.running():
            raise AssertionError(f"agent exited: {self.agent.tail()}")
        res = self.kubectl.run("get", "node", name, "-o", "json", check=False)
        if res.returncode != 0:
            return False
        return ready_with_cidr(json.loads(res.stdout))

    def apply(self, manifest: dict[str, Any]) -> None:
        """``kubectl apply`` one object."""
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod, or None when it does not exist."""
        res = self.kubectl.run("get", "pod", "-n", namespace, name, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        """The pods of ``namespace`` (matching ``selector``)."""
        args = ["get", "pods", "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return list(json.loads(self.kubectl(*args))["items"])

    def wait_pod(
        self,
        namespace: str,
        name: str,
        check: Callable[[dict[str, Any]], Any],
        what: str,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Wait until ``check(pod)`` holds; returns the pod."""
        found: dict[str, Any] = {}

        def probe() -> bool:
            pod = self.pod(namespace, name)
            if pod is None:
                return False
            found.update(pod)
            return bool(check(pod))

        try:
            wait_for(probe, what, timeout)
        except AssertionError:
            raise AssertionError(
                f"{what}: last seen {json.dumps(found.get('status'))[:3000]}\n{self.agent.tail()}"
            ) from None
        return found

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """The events of ``namespace``."""
        return list(
            json.loads(self.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
        )

    def fetch(self, url: str, timeout: float = 5) -> tuple[int, str]:
        """GET ``url`` from the node's side (inside the namespace): (exit code, body)."""
        code = (
            "import sys, urllib.request as u; "
            f"sys.stdout.write(u.urlopen({url!r}, timeout={timeout}).read().decode())"
        )
        res = subprocess.run(
            [*self.prefix, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
        return res.returncode, res.stdout

    def podman(self, *args: str, check: bool = True) -> str:
        """A podman command on the agent's own storage (its service must run)."""
        sock = self.agent_dir / "agent" / "podman.sock"
        res = subprocess.run(
            [*self.prefix, "podman", "--url", f"unix://{sock}", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0 or not check, res.stderr
        return res.stdout if res.returncode == 0 else ""

    def wait_runtime(self) -> None:
        """Wait until the agent's Podman service answers."""
        wait_for(lambda: self.podman("version", check=False), "the agent's Podman", 60)

    def stop(self) -> None:
        """Stop the agent and the server, then remove every container of the agent."""
        self.agent.stop()
        self.server.stop()
        remove_pods(self.prefix, self.agent_dir)


def server_command(data_dir: Path, address: str, *flags: str) -> list[str]:
    """``edgek server`` on ``address``:PORT with its data dir, kubeconfig
    ``<data_dir>/kubeconfig.yaml`` and ``flags``."""
    return [
        sys.executable,
        "-m",
        "edgek",
        "server",
        "--data-dir",
        str(data_dir),
        "--bind-address",
        address,
        "--https-listen-port",
        str(PORT),
        "--write-kubeconfig",
        str(data_dir / "kubeconfig.yaml"),
        *flags,
    ]


def wait_server_ready(server: NsProcess, kubeconfig: Path, kubectl: Kubectl) -> None:
    """Wait until the started server answers /readyz (its log when it exits)."""

    def ready() -> bool:
        if not server.running():
            raise AssertionError(f"server exited: {server.tail()}")
        if not kubeconfig.exists():
            return False
        return kubectl.run("get", "--raw", "/readyz", check=False).returncode == 0

    wait_for(ready, "the server to be ready", 60)


def ready_with_cidr(node: dict[str, Any]) -> bool:
    """Whether the Node is Ready and has its podCIDR."""
    ready = [c for c in node["status"].get("conditions") or [] if c["type"] == "Ready"]
    return bool(ready and ready[0]["status"] == "True" and node["spec"].get("podCIDR"))


def remove_pods(prefix: list[str], agent_dir: Path) -> None:
    """Remove every pod of the agent's Podman storage (its service stopped), in the
    namespace ``prefix`` enters."""
    podman = agent_dir / "agent" / "podman"
    cleanup = [
        "podman",
        "--root",
        str(podman / "storage"),
        "--runroot",
        str(podman / "run"),
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]
    subprocess.run(
        [*prefix, *cleanup, "pod", "rm", "-af", "-t", "0"],
        capture_output=True,
        check=False,
        timeout=120,
        env={**os.environ, "CONTAINERS_CONF": str(podman / "containers.conf")},
    )


@contextlib.contextmanager
def started(
    prefix: list[str], root: Path, busybox_tar: Path, agent_module: str = "edgek"
) -> Iterator[AgentCluster]:
    """A cluster with its server and agent (both run as ``python -m agent_module``)
    started, stopped at the end."""
    c = AgentCluster(prefix, root, busybox_tar, edgek=[sys.executable, "-m", agent_module])
    try:
        c.start_server()
        c.start_agent()
        yield c
    finally:
        c.stop()


def condition(pod: dict[str, Any], kind: str) -> str:
    """The status of one of the pod's conditions ("" when absent)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return ""


def container_status(pod: dict[str, Any], name: str = "", init: bool = False) -> dict[str, Any]:
    """One container's status (the first when ``name`` is empty)."""
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in (pod.get("status") or {}).get(key) or []:
        if not name or status["name"] == name:
            return dict(status)
    return {}


def elapsed(start: float) -> float:
    """Seconds since ``start`` (monotonic)."""
    return time.monotonic() - start
