"""Streaming through the API server to the agent on real Podman: ``kubectl logs`` (``-f``,
``--tail``, ``--timestamps``, ``--previous``), ``exec`` (exit code, stdin, tty), ``cp`` both
ways and ``port-forward`` with the machine's kubectl and the pinned one, the Python client's
exec and logs, and the agent refusing any client but the API server. The server, the node
process (an Agent plus its streaming server) and kubectl all run inside the test's network
namespace; the Pods are created bound to the node, their containers made directly in Podman
with the labels of :mod:`agent.labels` (no pod worker)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent import labels
from agent.images import images_dir, import_directory
from agent.podman.client import PodmanClient
from agent.podman.service import PodmanService
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.helpers import REPO, free_port, kubectl_binaries

pytestmark = [pytest.mark.e2e, needs_podman, pytest.mark.asyncio(loop_scope="module")]
NODE = "stream-node"
NAMESPACE = "default"
KUBECTLS = kubectl_binaries()


@dataclass
class Cluster:
    """The server and node processes inside the namespace, and how to reach them."""

    netns: list[str]
    data: Path
    port: int
    kubelet_port: int
    client: PodmanClient

    def logs(self, tail: int = 3000) -> str:
        """The ends of the server's and the node's logs."""
        return "".join(
            f"--- {name}\n{(self.data / name).read_text()[-tail:]}\n"
            for name in ("server.log", "node.log")
        )

    def for_seconds(
        self, seconds: int, binary: str, *args: str
    ) -> subprocess.CompletedProcess[bytes]:
        """kubectl inside the namespace, stopped after ``seconds`` (for ``-f``, attach)."""
        kubeconfig = str(self.kubeconfig)
        return self.run("timeout", str(seconds), binary, "--kubeconfig", kubeconfig, *args)

    @property
    def kubeconfig(self) -> Path:
        return self.data / "kubeconfig.yaml"

    def run(
        self, *cmd: str, input: bytes | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """``cmd`` inside the namespace."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        full_env.update(env or {})
        return subprocess.run(
            [*self.netns, *cmd], input=input, capture_output=True, timeout=60, env=full_env
        )

    def kubectl(
        self, binary: str, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """kubectl inside the namespace, against the server."""
        cache = str(self.data / f"cache-{Path(binary).parent.name}")
        return self.run(
            binary,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            cache,
            *args,
            input=input,
            env=env,
        )


def _wait(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _start(cmd: list[str], log: Path, stdout: int | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=stdout or out, stderr=out, cwd=REPO)


def _readyz(kubeconfig: Path, netns: list[str]) -> bool:
    if not kubeconfig.exists():
        return False
    cmd = [*netns, "kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"]
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def processes(
    netns: list[str], service: PodmanService, short_dirs: Callable[[], Path]
) -> Iterator[tuple[Path, int, int]]:
    """The server (no agent of its own) and the node process, in the namespace."""
    data = short_dirs()
    port, kubelet_port = free_port(), free_port()
    server = _start(
        [
            *netns,
            sys.executable,
            "-m",
            "edgek",
            "server",
            "--data-dir",
            str(data / "srv"),
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
            str(port),
            "--write-kubeconfig",
            str(data / "kubeconfig.yaml"),
            "--disable-agent",
        ],
        data / "server.log",
    )
    procs = [server]
    try:
        _wait(lambda: _readyz(data / "kubeconfig.yaml", netns), "the server")
        token = (data / "srv" / "server" / "node-token").read_text().strip()
        node = _start(
            [
                *netns,
                sys.executable,
                "-m",
                "tests.agent.streaming_node",
                "--server",
                f"https://127.0.0.1:{port}",
                "--token",
                token,
                "--data-dir",
                str(data / "node"),
                "--node-name",
                NODE,
                "--podman-socket",
                str(service.socket),
                "--port",
                str(kubelet_port),
            ],
            data / "node.log",
            stdout=subprocess.PIPE,
        )
        procs.append(node)
        assert node.stdout is not None
        line = node.stdout.readline()
        assert line.strip() == b"ready", (data / "node.log").read_text()[-3000:]
        yield data, port, kubelet_port
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    netns: list[str], service: PodmanService, processes: tuple[Path, int, int]
) -> AsyncIterator[Cluster]:
    """The running cluster, with a Podman client and the busybox image imported."""
    data, port, kubelet_port = processes
    client = PodmanClient(service.socket)
    if not await client.image_exists(IMAGE):
        await import_directory(client, images_dir(service.layout.agent_dir))
    yield Cluster(netns, data, port, kubelet_port, client)
    await client.close()


async def make_pod(c: Cluster, name: str, containers: dict[str, list[list[str]]]) -> dict[str, Any]:
    """A Pod bound to the node whose containers run the given commands in Podman, one
    Podman container per attempt (the last attempt of each is left running or exited)."""
    spec = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": n, "image": IMAGE} for n in containers],
        },
    }
    out = c.kubectl("kubectl", "create", "-o", "json", "-f", "-", input=json.dumps(spec).encode())
    assert out.returncode == 0, out.stderr
    pod = json.loads(out.stdout)
    pod_id = await c.client.pod_create(
        {
            "name": labels.sandbox_name(pod),
            "labels": labels.pod_labels(pod, NODE),
            "no_infra": False,
        }
    )
    for container, attempts in containers.items():
        for attempt, command in enumerate(attempts):
            ident = await c.client.container_create(
                {
                    "name": labels.container_name(pod, container, attempt),
                    "image": IMAGE,
                    "command": command,
                    "pod": pod_id,
                    "labels": labels.container_labels(pod, NODE, container, attempt),
                }
            )
            await c.client.container_start(ident)
            if attempt < len(attempts) - 1:
                await c.client.container_wait(ident)
    running = json.dumps({"status": {"phase": "Running"}})
    out = c.kubectl("kubectl", "patch", "pod", name, "--subresource=status", "-p", running)
    assert out.returncode == 0, out.stderr
    return dict(pod)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web(cluster: Cluster) -> str:
    """A pod with one container: a log line per second, and busybox httpd on port 8080."""
    await make_pod(
        cluster,
        "web",
        {
            "app": [
                ["sh", "-c", "echo first run; exit 1"],
                [
                    "sh",
                    "-c",
                    "mkdir -p /www && echo hello from httpd > /www/index.html && "
                    "httpd -p 8080 -h /www && "
                    "i=0; while true; do echo line $i; i=$((i+1)); sleep 1; done",
                ],
            ]
        },
    )
    return "web"


@pytest.mark.parametrize("binary", sorted(KUBECTLS.values()))
async def test_logs(cluster: Cluster, web: str, binary: str) -> None:
    await asyncio.sleep(2.5)
    out = cluster.kubectl(binary, "logs", web)
    assert out.returncode == 0, (out.stderr, cluster.logs())
    assert out.stdout.startswith(b"line 0\nline 1\n")
    tail = cluster.kubectl(binary, "logs", web, "--tail", "1").stdout
    assert tail.count(b"\n") == 1 and tail.startswith(b"line ")
    stamped = cluster.kubectl(binary, "logs", web, "--timestamps", "--tail", "1").stdout
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line \d+\n", stamped), stamped
    previous = cluster.kubectl(binary, "logs", web, "--previous")
    assert previous.stdout == b"first run\n", previous.stderr
    limited = cluster.kubectl(binary, "logs", web, "--limit-bytes", "3").stdout
    assert limited == b"lin"
    recent = cluster.kubectl(binary, "logs", web, "--since", "1h")
    assert recent.stdout.startswith(b"line 0\n"), recent
    assert cluster.kubectl(binary, "logs", web, "--since", "1s").stdout.count(b"\n") <= 2
    cut = stamped.split(b" ", 1)[0].decode()
    since_time = cluster.kubectl(binary, "logs", web, "--since-time", cut, "--timestamps")
    assert since_time.stdout.startswith(stamped), (since_time, stamped)
    follow = await asyncio.to_thread(
        cluster.for_seconds, 3, binary, "logs", "-f", "--tail", "1", web
    )
    assert follow.stdout.count(b"\n") >= 2, follow


@pytest.mark.parametrize("websockets", ["true", "false"])
@pytest.mark.parametrize("binary", sorted(KUBECTLS.values()))
async def test_exec(cluster: Cluster, web: str, binary: str, websockets: str) -> None:
    """Over WebSocket (v5 channels) and, forced, the SPDY/3.1 fallback."""
    env = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": websockets}
    before = _upgrades(cluster)
    out = cluster.kubectl(
        binary, "exec", web, "--", "sh", "-c", "echo out; echo err >&2; exit 3", env=env
    )
    assert out.returncode == 3, (out, cluster.logs())
    assert out.stdout == b"out\n" and out.stderr.startswith(b"err\n")
    piped = cluster.kubectl(binary, "exec", "-i", web, "--", "cat", input=b"from stdin\n", env=env)
    assert piped.stdout == b"from stdin\n", piped
    tty = await asyncio.to_thread(
        cluster.run,
        "script",
        "-qec",
        f"{binary} --kubeconfig {cluster.kubeconfig} exec -it {web} -- sh -c 'tty; stty size'",
        "/dev/null",
        env=env,
    )
    assert b"/dev/pts/" in tty.stdout, tty
    spdy_cp = cluster.kubectl(binary, "cp", f"{web}:/www/index.html", "/dev/stdout", env=env)
    assert b"hello from httpd" in spdy_cp.stdout, spdy_cp
    # each of the four sessions reached the agent once, all over WebSocket (GET) or, forced,
    # all over SPDY (POST): no fallback
    method, other = ("POST", "GET") if websockets == "false" else ("GET", "POST")
    after = await _logged_upgrades(cluster, before, method, 4)
    assert after[method] - before[method] == 4, (before, after, cluster.logs())
    assert after[other] == before[other], (before, after, cluster.logs())


def _upgrades(cluster: Cluster) -> dict[str, int]:
    """How many exec requests reached the agent as WebSocket (GET) and SPDY (POST) upgrades."""
    log = (cluster.data / "node.log").read_text()
    return {method: log.count(f'"{method} /exec/') for method in ("GET", "POST")}


async def _logged_upgrades(
    cluster: Cluster, before: dict[str, int], method: str, count: int
) -> dict[str, int]:
    """:func:`_upgrades` once ``count`` more ``method`` upgrades are logged, or after 10 s
    (the agent logs a request when it ended, which may be after kubectl exited)."""
    deadline = time.monotonic() + 10
    while (after := _upgrades(cluster))[method] - before[method] < count:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return after


@pytest.mark.parametrize("binary", sorted(KUBECTLS.values()))
async def test_attach(cluster: Cluster, web: str, binary: str) -> None:
    attached = await asyncio.to_thread(cluster.for_seconds, 3, binary, "attach", web)
    assert attached.stdout.startswith(b"line "), attached


@pytest.mark.parametrize("binary", sorted(KUBECTLS.values()))
async def test_cp_both_ways(cluster: Cluster, web: str, binary: str, tmp_path: Path) -> None:
    local = cluster.data / f"up-{Path(binary).parent.name}.txt"
    local.write_bytes(b"x" * 100_000 + b"end\n")
    up = cluster.kubectl(binary, "cp", str(local), f"{web}:/tmp/up.txt")
    assert up.returncode == 0, up
    check = cluster.kubectl(binary, "exec", web, "--", "tail", "-c", "4", "/tmp/up.txt")
    assert check.stdout == b"end\n", check
    down = cluster.data / f"down-{Path(binary).parent.name}.txt"
    out = cluster.kubectl(binary, "cp", f"{web}:/tmp/up.txt", str(down))
    assert out.returncode == 0, out
    assert down.read_bytes() == local.read_bytes()


@pytest.mark.parametrize("websockets", ["true", "false"])
@pytest.mark.parametrize("binary", sorted(KUBECTLS.values()))
async def test_port_forward(cluster: Cluster, web: str, binary: str, websockets: str) -> None:
    """Over WebSocket (SPDY tunnelled in it) and, forced, the SPDY/3.1 fallback."""
    local = free_port()
    env = {**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets}
    forward = await asyncio.create_subprocess_exec(
        *cluster.netns,
        binary,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "port-forward",
        f"pod/{web}",
        f"{local}:8080",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert forward.stdout is not None and forward.stderr is not None
        line = await forward.stdout.readline()
        assert b"Forwarding from" in line, await forward.stderr.read()
        for _ in range(2):  # two connections over the same session
            got = await asyncio.to_thread(
                cluster.run, "curl", "-s", "--max-time", "10", f"http://127.0.0.1:{local}/"
            )
            assert got.stdout == b"hello from httpd\n", (got, cluster.logs())
    finally:
        forward.terminate()
        await forward.wait()


async def test_multi_container_pod_needs_a_container(cluster: Cluster) -> None:
    await make_pod(cluster, "two", {"a": [["sleep", "3600"]], "b": [["sleep", "3600"]]})
    out = cluster.kubectl("kubectl", "get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/two/log")
    assert b"a container name must be specified for pod two, choose one of: [a b]" in out.stderr
    bad = cluster.kubectl("kubectl", "logs", "two", "-c", "nope")
    assert b"container nope is not valid for pod two" in bad.stderr


async def test_exec_needs_create_on_pods_exec(cluster: Cluster, web: str) -> None:
    """RBAC: ``get`` on pods/exec is not enough (the WebSocket upgrade is a GET), ``create``
    is; pods/log needs ``get``."""
    k = functools.partial(cluster.kubectl, "kubectl")
    for verbs, account in (("get", "reader"), ("get,create", "runner")):
        assert k("create", "serviceaccount", account).returncode == 0
        role = k("create", "role", account, f"--verb={verbs}", "--resource=pods,pods/exec,pods/log")
        assert role.returncode == 0, role
        binding = k(
            "create",
            "rolebinding",
            account,
            f"--role={account}",
            f"--serviceaccount={NAMESPACE}:{account}",
        )
        assert binding.returncode == 0, binding
    ca = str(cluster.data / "srv" / "server" / "tls" / "server-ca.crt")

    def as_account(account: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        token = k("create", "token", account).stdout.decode().strip()
        return cluster.run(
            "kubectl",
            "--kubeconfig",
            "/dev/null",
            "--server",
            f"https://127.0.0.1:{cluster.port}",
            "--certificate-authority",
            ca,
            "--token",
            token,
            *args,
        )

    denied = as_account("reader", "exec", web, "--", "true")
    assert b'cannot create resource "pods/exec"' in denied.stderr, denied
    assert as_account("reader", "logs", web, "--tail", "1").stdout.startswith(b"line ")
    allowed = as_account("runner", "exec", web, "--", "echo", "ok")
    assert allowed.stdout == b"ok\n", allowed


PYTHON_CLIENT = """
import sys
from kubernetes import client, config
from kubernetes.stream import portforward, stream
config.load_kube_config(sys.argv[1])
api = client.CoreV1Api()
out = stream(api.connect_get_namespaced_pod_exec, "web", "default",
             command=["sh", "-c", "echo py-exec"], stderr=True, stdin=False, stdout=True,
             tty=False)
print(repr(out))
print(repr(api.read_namespaced_pod_log("web", "default", tail_lines=1)))
forward = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="8080")
sock = forward.socket(8080)
sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
answer = b""
while chunk := sock.recv(65536):
    answer += chunk
print(repr(answer.split(b"\\r\\n\\r\\n", 1)[1]))
forward.close()
"""


async def test_python_client(cluster: Cluster, web: str) -> None:
    """Exec and port-forward over v4.channel.k8s.io, and logs."""
    out = cluster.run(sys.executable, "-c", PYTHON_CLIENT, str(cluster.kubeconfig))
    assert out.returncode == 0, out.stderr
    first, second, third = out.stdout.decode().splitlines()
    assert first == repr("py-exec\n")
    assert second.startswith("'line ")
    assert third == repr(b"hello from httpd\n")


FOREIGN_CLIENT = """
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
if len(sys.argv) > 4:
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
try:
    urllib.request.urlopen(sys.argv[2], context=ctx, timeout=10)
except urllib.error.HTTPError as e:
    print(e.code)
except (ssl.SSLError, OSError) as e:
    print("tls", type(e).__name__)
"""


async def test_agent_refuses_other_clients(cluster: Cluster, web: str) -> None:
    tls = cluster.data / "srv" / "server" / "tls"
    url = f"https://127.0.0.1:{cluster.kubelet_port}/containerLogs/{NAMESPACE}/{web}/app"
    admin = cluster.run(
        sys.executable,
        "-c",
        FOREIGN_CLIENT,
        str(tls / "server-ca.crt"),
        url,
        str(tls / "client-admin.crt"),
        str(tls / "client-admin.key"),
    )
    assert admin.stdout.strip() == b"403", admin
    anonymous = cluster.run(sys.executable, "-c", FOREIGN_CLIENT, str(tls / "server-ca.crt"), url)
    assert anonymous.stdout.startswith(b"tls"), anonymous


METRICS_CLIENT = """
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
with urllib.request.urlopen(sys.argv[2], context=ctx, timeout=10) as r:
    print(r.status, r.headers["Content-Type"])
    print(r.read().decode())
"""


async def test_agent_metrics_for_any_client_certificate(cluster: Cluster) -> None:
    tls = cluster.data / "srv" / "server" / "tls"
    url = f"https://127.0.0.1:{cluster.kubelet_port}/metrics"
    ca, cert, key = (
        str(tls / n) for n in ("server-ca.crt", "client-admin.crt", "client-admin.key")
    )
    scraped = cluster.run(sys.executable, "-c", METRICS_CLIENT, ca, url, cert, key)
    assert scraped.returncode == 0, scraped.stderr
    head, _, body = scraped.stdout.decode().partition("\n")
    assert head == "200 text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE process_resident_memory_bytes gauge" in body
    assert any(line.startswith("process_cpu_seconds_total ") for line in body.splitlines())
    anonymous = cluster.run(sys.executable, "-c", FOREIGN_CLIENT, ca, url)
    assert anonymous.stdout.startswith(b"tls"), anonymous


async def test_no_request_failed_on_either_side(cluster: Cluster) -> None:
    """Run last: every session above (including clients that hung up: ``logs -f``, attach,
    port-forward) ended without an error logged by the server or the node."""
    logs = cluster.logs(tail=10**7)
    assert "Traceback" not in logs, logs
