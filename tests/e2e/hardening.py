"""Shared pieces of the hardening tests (their server fixtures, ``capped``, ``hard_api`` and
``hard_ns``, are in conftest.py): the address-space cap of that server (a regression that
makes it balloon fails the test with a dead or refusing server instead of taking the machine
down), its memory and liveness, timed requests and the objects the tests send."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.test_bad_input import Api, Response
from tests.helpers import ServerProcess

#: Address-space cap of the hardening servers (an idle server maps about 270 MB).
ADDRESS_SPACE_CAP = 1536 * 1024 * 1024
#: What the hardening tests allow a single request to take.
MAX_SECONDS = 1.0


def cap_address_space(server: ServerProcess, limit: int = ADDRESS_SPACE_CAP) -> None:
    """Apply ``prlimit --as`` to the running server process."""
    assert server.proc is not None
    prlimit = shutil.which("prlimit")
    assert prlimit is not None, "the hardening tests need prlimit (util-linux)"
    subprocess.run([prlimit, "--pid", str(server.proc.pid), f"--as={limit}"], check=True)


def rss_bytes(server: ServerProcess) -> int:
    """The server's resident set size."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for the server")


def timed(api: Api, method: str, path: str, body: Any = None, **kw: Any) -> Response:
    """A request that must be answered within :data:`MAX_SECONDS`."""
    start = time.monotonic()
    resp = api.request(method, path, body, **kw)
    took = time.monotonic() - start
    assert took < MAX_SECONDS, f"{method} {path} took {took:.2f} s"
    return resp


def assert_alive(api: Api) -> None:
    """The server still answers /livez promptly."""
    resp = timed(api, "GET", "/livez")
    assert resp.status == 200, resp.body[:300]


def pod(name: str, **spec: Any) -> dict[str, Any]:
    """A minimal Pod with extra ``spec`` fields."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


def crd(group: str, plural: str, kind: str, spec_schema: dict[str, Any]) -> dict[str, Any]:
    """A namespaced CustomResourceDefinition, version v1, whose ``spec`` has ``spec_schema``."""
    schema = {"type": "object", "properties": {"spec": spec_schema}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def create_crd(api: Api, definition: dict[str, Any], namespace: str) -> str:
    """Create ``definition`` and wait until its resources are served; their path in
    ``namespace``."""
    resp = timed(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", definition)
    assert resp.status == 201, resp.body[:500]
    spec = definition["spec"]
    path = f"/apis/{spec['group']}/v1/namespaces/{namespace}/{spec['names']['plural']}"
    deadline = time.monotonic() + 10
    while api.request("GET", path).status == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
    return path
