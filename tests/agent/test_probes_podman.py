"""Probes and hooks against real containers: exec probes through Podman exec
(:func:`agent.probes.exec_capture`), httpGet and tcpSocket probes against busybox httpd in a
Podman pod on a bridge network inside the test's network namespace (the probes run in a
process entered into that namespace, where the pod's address is reachable)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent.images import images_dir, import_directory
from agent.podman.client import PodmanClient
from agent.podman.service import PodmanService
from agent.probes import ProbeResult, ProbeSet, check, exec_capture
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.agent.pods import httpd_pod, running_pod

pytestmark = [pytest.mark.e2e, needs_podman, pytest.mark.asyncio(loop_scope="module")]
ROOT = Path(__file__).resolve().parents[2]

# Runs inside the namespace: each (probe, container) of argv[2] checked against argv[1].
_IN_NETNS = """
import asyncio, json, sys
from agent.probes import check, run_hook

async def no_exec(container_id, command, limit):
    raise RuntimeError("no exec here")

async def main():
    out = []
    for probe, container in json.loads(sys.argv[2]):
        if "hook" in probe:
            out.append(await run_hook(probe["hook"], pod_ip=sys.argv[1], container_id="",
                                      exec_fn=no_exec, limit=5, container=container))
            continue
        r = await check(probe, pod_ip=sys.argv[1], container_id="", exec_fn=no_exec,
                        container=container)
        out.append([r.success, r.message, r.warning, r.errored])
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(service: PodmanService) -> AsyncIterator[PodmanClient]:
    """A client of the module's Podman service, the busybox image imported."""
    async with PodmanClient(service.socket) as podman:
        if not await podman.image_exists(IMAGE):
            await import_directory(podman, images_dir(service.layout.agent_dir))
        yield podman


async def _in_netns(netns: list[str], pod_ip: str, checks: list[Any]) -> list[Any]:
    proc = await asyncio.create_subprocess_exec(
        *netns,
        sys.executable,
        "-c",
        _IN_NETNS,
        pod_ip,
        json.dumps(checks),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: list[Any] = json.loads(out)
    return result


async def test_exec_probe_in_a_container(client: PodmanClient) -> None:
    """exec probes: success, failure with the command's output, timeout; a ProbeSet with
    exec_capture reports the liveness failure."""
    script = "touch /tmp/healthy; while :; do sleep 1; done"
    async with running_pod(client, "execprobe", ["sh", "-c", script]) as (_, ctr, _):
        await _exec_probes(client, ctr)


async def _exec_probes(client: PodmanClient, ctr: str) -> None:
    exec_fn = functools.partial(exec_capture, client)
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}}
    assert await check(probe, pod_ip="", container_id=ctr, exec_fn=exec_fn) == ProbeResult(True, "")
    code, output = await exec_capture(
        client, ctr, ["sh", "-c", "echo out; echo err >&2; exit 4"], 5
    )
    assert (code, sorted(output.split())) == (4, [b"err", b"out"])

    events: list[tuple[str, ...]] = []
    probes = ProbeSet(
        {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "livenessProbe": {**probe, "periodSeconds": 1, "failureThreshold": 1},
                    }
                ]
            }
        },
        exec_fn=exec_fn,
        on_change=lambda: None,
        on_event=lambda *e: events.append(e),
    )
    probes.container_started("app", ctr, "", time.time())
    await asyncio.sleep(0.5)
    assert probes.liveness_failed("app") is None
    await exec_capture(client, ctr, ["rm", "/tmp/healthy"], 5)
    for _ in range(40):
        if probes.liveness_failed("app"):
            break
        await asyncio.sleep(0.1)
    assert probes.liveness_failed("app") == "Container app failed liveness probe, will be restarted"
    await probes.stop()
    assert events == [
        (
            "app",
            "Warning",
            "Unhealthy",
            "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n",
        )
    ]

    started = time.monotonic()
    slow = {"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1}
    result = await check(slow, pod_ip="", container_id=ctr, exec_fn=exec_fn)
    assert result == ProbeResult(False, 'command "sleep 5" timed out')
    assert time.monotonic() - started < 3


async def test_http_and_tcp_probes_against_httpd(client: PodmanClient, netns: list[str]) -> None:
    """httpGet (numbered and named port, 404, connection refused) and tcpSocket probes and
    an httpGet hook, from the node's side of the pod's bridge network."""
    async with httpd_pod(client, "edgekp", "10.77.4.0/24", "10.77.4.1") as ip:
        container = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
        tcp = [{"tcpSocket": {"port": "http"}, "timeoutSeconds": 2}, container]
        for _ in range(20):  # httpd binds just after the start
            if (await _in_netns(netns, ip, [tcp]))[0][0]:
                break
            await asyncio.sleep(0.1)
        checks = [
            [{"httpGet": {"path": "/passwd", "port": 8080}}, container],
            [{"httpGet": {"path": "/passwd", "port": "http"}}, container],
            [{"httpGet": {"path": "/missing", "port": "http"}}, container],
            [{"httpGet": {"path": "/", "port": 8081}}, container],
            tcp,
            [{"tcpSocket": {"port": 8081}}, container],
            [{"hook": {"httpGet": {"path": "/missing", "port": "http"}}}, container],
        ]
        results = await _in_netns(netns, ip, checks)
    assert results[0][0] and results[0][1].startswith("root:x:0:0:")
    assert results[1][0]
    assert results[2] == [False, "HTTP probe failed with statuscode: 404", False, False]
    refused = f"dial tcp {ip}:8081: connect: connection refused"
    assert results[3] == [False, f'Get "http://{ip}:8081/": {refused}', False, False]
    assert results[4] == [True, "", False, False]
    assert results[5] == [False, refused, False, False]
    assert results[6] is None  # a hook takes any HTTP response
