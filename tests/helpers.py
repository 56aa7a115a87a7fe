"""Test helpers shared by the tests and the benchmarks: real edgek servers in subprocesses,
client TLS contexts, real kubectl binaries, built-in kinds (fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from edgek.kinds import Kind, Registry

if TYPE_CHECKING:
    from kubernetes import client

REPO = Path(__file__).resolve().parent.parent


def builtin_kind(group: str, version: str, resource: str) -> Kind:
    """The built-in kind serving ``resource`` in ``group/version`` (which must exist)."""
    found = Registry().by_resource(group, version, resource)
    assert found is not None, resource
    return found


def object_names(listed: client.V1ConfigMapList) -> list[str]:
    """The names of the ConfigMaps a kubernetes-client list returned, in list order."""
    names = []
    for obj in listed.items:
        assert obj.metadata is not None and obj.metadata.name is not None
        names.append(obj.metadata.name)
    return names


def list_meta(listed: client.V1ConfigMapList) -> client.V1ListMeta:
    """The list metadata (resourceVersion, continue) of a kubernetes-client list."""
    assert listed.metadata is not None
    return listed.metadata


def client_credentials(kubeconfig: Path, tmp: Path) -> tuple[Path, Path, Path]:
    """The CA, client certificate and client key of a kubeconfig, written as files under
    ``tmp``."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    ca, cert, key = tmp / "ca.crt", tmp / "client.crt", tmp / "client.key"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    return ca, cert, key


def ssl_context(kubeconfig: Path, tmp: Path) -> ssl.SSLContext:
    """A client TLS context with the CA and client certificate of a kubeconfig (files for
    the key material are written under ``tmp``)."""
    ca, cert, key = client_credentials(kubeconfig, tmp)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """An ``edgek server`` running in a subprocess on its own data dir and port."""

    data_dir: Path
    port: int
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def pid(self) -> int:
        """The process id of the running server."""
        assert self.proc is not None, "server not running"
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        args = [
            sys.executable,
            "-m",
            "edgek",
            "server",
            "--data-dir",
            str(self.data_dir),
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
            str(self.port),
            "--write-kubeconfig",
            str(self.kubeconfig),
            "--disable-agent",
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=REPO)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def start_server(tmp: Path, *extra: str) -> ServerProcess:
    """A started server with its data dir and log under ``tmp`` (``extra``: more flags)."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    srv = ServerProcess(data, free_port(), tmp / "server.log", list(extra))
    srv.start()
    return srv


def kubectl_binaries() -> dict[str, str]:
    """The machine's kubectl ("system") and the pinned one from the test extras ("pinned")."""
    found = {}
    system = shutil.which("kubectl", path="/usr/local/bin:/usr/bin:/bin")
    if system:
        found["system"] = system
    pinned = Path(sys.executable).parent / "kubectl"
    if pinned.exists():
        found["pinned"] = str(pinned)
    return found


@dataclass
class Kubectl:
    """Runs a kubectl binary against a server with its own discovery cache."""

    binary: str
    kubeconfig: Path
    cache_dir: Path
    label: str = "kubectl"
    #: Runs kubectl through this (``nsenter --net=...`` to reach a server in a namespace).
    prefix: list[str] = field(default_factory=list)

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            *self.prefix,
            self.binary,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir),
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        res = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
            )
        return res

    def __call__(self, *args: str, input: str | None = None) -> str:
        return self.run(*args, input=input).stdout
