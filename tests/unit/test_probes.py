"""Probes and lifecycle hooks without Podman: a local aiohttp server for httpGet, a local
socket for tcpSocket, fake exec functions, and virtual time for the probe schedule."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from agent.probes import ProbeResult, ProbeSet, check, run_hook


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


class VirtualTime:
    """A clock and a sleep the test moves forward by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        until = self.now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= until:
            self.now, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
            await _settle()
        self.now = until


class FakeExec:
    """An exec function whose answer the test sets; records (time, container, command)."""

    def __init__(self, time: VirtualTime) -> None:
        self.time = time
        self.calls: list[tuple[float, str, list[str]]] = []
        self.answer: dict[str, Any] = {}  # container id -> (code, output) or an exception

    async def __call__(
        self, container_id: str, command: list[str], limit: float
    ) -> tuple[int, bytes]:
        self.calls.append((self.time.now - 1000.0, container_id, command))
        answer = self.answer.get(container_id, (0, b""))
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.Event().wait()
        return answer

    def times(self, container_id: str) -> list[float]:
        return [t for t, cid, _ in self.calls if cid == container_id]


def _pod(*containers: dict[str, Any], grace: int = 30) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"containers": list(containers), "terminationGracePeriodSeconds": grace},
    }


def _exec_probe(**timing: Any) -> dict[str, Any]:
    return {"exec": {"command": ["cat", "/tmp/healthy"]}, **timing}


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[str]:
    """A local HTTP server: ``http://127.0.0.1:<port>``."""
    app = web.Application()

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="body")

    async def headers(request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    app.router.add_get("/status/{code}", status)
    app.router.add_get("/headers", headers)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def _http(url: str, path: str, **extra: Any) -> ProbeResult:
    probe = {"httpGet": {"path": path, "port": _port(url), **extra}, "timeoutSeconds": 1}
    return await check(probe, pod_ip="127.0.0.1", container_id="c", exec_fn=FakeExec(VirtualTime()))


# -- check: one probe run ----------------------------------------------------------------


async def test_http_success_range_and_failure_message(server: str) -> None:
    assert (await _http(server, "/status/200")) == ProbeResult(True, "body")
    assert (await _http(server, "/status/399")).success
    result = await _http(server, "/status/500")
    assert result == ProbeResult(False, "HTTP probe failed with statuscode: 500")
    assert not (await _http(server, "/status/404")).success
    assert not (await _http(server, "/status/199")).success


async def test_http_headers_user_agent_and_host(server: str) -> None:
    """kube-probe/<major.minor> and Accept */* unless httpHeaders set them; Host too."""
    result = await _http(server, "/headers")
    sent = json.loads(result.message)
    assert sent["User-Agent"] == "kube-probe/1.33"
    assert sent["Accept"] == "*/*"
    result = await _http(
        server,
        "headers",  # no leading slash: one is added
        httpHeaders=[
            {"name": "user-agent", "value": "mine"},
            {"name": "X-Custom", "value": "v"},
            {"name": "Host", "value": "example.test"},
        ],
    )
    sent = json.loads(result.message)
    assert (sent["User-Agent"], sent["X-Custom"], sent["Host"]) == ("mine", "v", "example.test")


async def test_http_named_port_and_host(server: str) -> None:
    container = {"name": "c", "ports": [{"name": "web", "containerPort": _port(server)}]}
    probe = {"httpGet": {"path": "/status/204", "port": "web", "host": "127.0.0.1"}}
    result = await check(
        probe,
        pod_ip="192.0.2.1",
        container_id="c",
        exec_fn=FakeExec(VirtualTime()),
        container=container,
    )
    assert result.success
    missing = await check(
        {"httpGet": {"port": "nope"}},
        pod_ip="127.0.0.1",
        container_id="c",
        exec_fn=FakeExec(VirtualTime()),
        container=container,
    )
    assert missing == ProbeResult(False, "port nope not found", errored=True)


async def test_http_redirects(server: str) -> None:
    """Same host: followed (at most 10 times); another host: its 3xx is a success with a
    warning, as upstream."""
    same = await _http(server, "/redirect?to=/status/200")
    assert same == ProbeResult(True, "body")
    other_url = server.replace("127.0.0.1", "localhost") + "/status/500"
    other = await _http(server, f"/redirect?to={other_url}")
    assert other.success and other.warning
    assert other.message.startswith("Probe terminated redirects, Response body: ")
    two_hops = await _http(server, "/redirect?to=/redirect%3Fto%3D/status/200")
    assert two_hops == ProbeResult(True, "body")


async def test_http_stops_after_ten_redirects() -> None:
    app = web.Application()

    async def again(request: web.Request) -> web.Response:
        raise web.HTTPFound("/again")

    app.router.add_get("/again", again)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        result = await _http(url, "/again")
    finally:
        await runner.cleanup()
    assert result == ProbeResult(False, f'Get "{url}/again": stopped after 10 redirects')


async def test_http_refused_and_timeout(server: str) -> None:
    port = _closed_port()
    refused = await _http(f"http://127.0.0.1:{port}", "/x")
    assert refused == ProbeResult(
        False,
        f'Get "http://127.0.0.1:{port}/x": dial tcp 127.0.0.1:{port}: connect: connection refused',
    )
    late = await _http(server, "/slow")
    assert not late.success
    assert late.message == (
        f'Get "{server}/slow": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )


async def test_tcp_socket(server: str) -> None:
    fake = FakeExec(VirtualTime())
    ok = await check(
        {"tcpSocket": {"port": _port(server)}}, pod_ip="127.0.0.1", container_id="c", exec_fn=fake
    )
    assert ok.success
    port = _closed_port()
    refused = await check(
        {"tcpSocket": {"port": port}}, pod_ip="127.0.0.1", container_id="c", exec_fn=fake
    )
    assert refused == ProbeResult(False, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


async def test_exec_outcomes() -> None:
    fake = FakeExec(VirtualTime())
    probe = _exec_probe()
    fake.answer["c"] = (0, b"fine")
    assert await check(probe, pod_ip="", container_id="c", exec_fn=fake) == ProbeResult(
        True, "fine"
    )
    fake.answer["c"] = (1, b"cat: can't open '/tmp/healthy': No such file or directory\n")
    failed = await check(probe, pod_ip="", container_id="c", exec_fn=fake)
    assert failed == ProbeResult(
        False, "cat: can't open '/tmp/healthy': No such file or directory\n"
    )
    fake.answer["c"] = TimeoutError()
    timed_out = await check(probe, pod_ip="", container_id="c", exec_fn=fake)
    assert timed_out == ProbeResult(False, 'command "cat /tmp/healthy" timed out')
    fake.answer["c"] = RuntimeError("container is not running")
    errored = await check(probe, pod_ip="", container_id="c", exec_fn=fake)
    assert errored == ProbeResult(False, "container is not running", errored=True)
    assert fake.calls[0][2] == ["cat", "/tmp/healthy"]


@pytest_asyncio.fixture
async def grpc_server() -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """A gRPC health server on h2 answering by service name: "" serving, "down" not
    serving, "nope" Unimplemented (trailers only), "slow" after 3 s. Yields its port and the
    request headers it saw."""
    pytest.importorskip("h2")
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, RequestReceived, StreamEnded

    seen: list[dict[str, str]] = []

    async def respond(
        conn: H2Connection, writer: asyncio.StreamWriter, sid: int, body: bytes
    ) -> None:
        service = body[7:].decode()  # 5-byte prefix, tag, length (names < 128 bytes)
        if service == "slow":
            await asyncio.sleep(3)
        if service == "nope":
            conn.send_headers(
                sid,
                [
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-status", "12"),
                    ("grpc-message", "unknown%20service"),
                ],
                end_stream=True,
            )
        else:
            status = 2 if service == "down" else 1
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            conn.send_data(sid, b"\x00\x00\x00\x00\x02\x08" + bytes([status]))
            conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        bodies: dict[int, bytes] = {}
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, RequestReceived):
                    seen.append({str(k): str(v) for k, v in event.headers or []})
                    bodies[event.stream_id] = b""
                elif isinstance(event, DataReceived):
                    bodies[event.stream_id] += event.data or b""
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    await respond(conn, writer, event.stream_id, bodies[event.stream_id])
            writer.write(conn.data_to_send())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()


async def _grpc(port: int, service: str | None = None) -> ProbeResult:
    action: dict[str, Any] = {"port": port}
    if service is not None:
        action["service"] = service
    return await check(
        {"grpc": action, "timeoutSeconds": 1},
        pod_ip="127.0.0.1",
        container_id="c",
        exec_fn=FakeExec(VirtualTime()),
    )


async def test_grpc_health(grpc_server: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = grpc_server
    assert await _grpc(port) == ProbeResult(True, "service healthy")
    assert seen[0][":path"] == "/grpc.health.v1.Health/Check"
    assert seen[0]["user-agent"] == "kube-probe/1.33"
    assert seen[0]["content-type"] == "application/grpc"
    assert await _grpc(port, "down") == ProbeResult(
        False, 'service unhealthy (responded with "NOT_SERVING")'
    )
    assert await _grpc(port, "nope") == ProbeResult(
        False,
        "error: this server does not implement the grpc health protocol "
        "(grpc.health.v1.Health): unknown service",
    )
    assert await _grpc(port, "slow") == ProbeResult(
        False, "timeout: health rpc did not complete within 1s"
    )
    closed = _closed_port()
    assert await _grpc(closed) == ProbeResult(
        False,
        f'timeout: failed to connect service "127.0.0.1:{closed}" within 1s: '
        "connect: connection refused",
    )


# -- ProbeSet: schedule, thresholds, gating ------------------------------------------------


def _probe_set(
    vt: VirtualTime, pod: dict[str, Any], fake: FakeExec
) -> tuple[ProbeSet, list[tuple[str, str, str, str]], list[int]]:
    events: list[tuple[str, str, str, str]] = []
    changes: list[int] = []
    probes = ProbeSet(
        pod,
        exec_fn=fake,
        on_change=lambda: changes.append(1),
        on_event=lambda *e: events.append(e),
        clock=vt.clock,
        sleep=vt.sleep,
    )
    return probes, events, changes


async def test_readiness_timing_and_success_threshold(vt: VirtualTime) -> None:
    container = {
        "name": "app",
        "readinessProbe": _exec_probe(initialDelaySeconds=5, periodSeconds=10, successThreshold=2),
    }
    fake = FakeExec(vt)
    probes, _, _ = _probe_set(vt, _pod(container), fake)
    probes.container_started("app", "c1", "10.0.0.2", vt.now)
    assert probes.started("app") and not probes.ready("app")
    await vt.advance(4.9)
    assert fake.times("c1") == []
    await vt.advance(0.1)
    assert fake.times("c1") == [5.0]
    assert not probes.ready("app")  # one success of two
    await vt.advance(10)
    assert fake.times("c1") == [5.0, 15.0]
    assert probes.ready("app")
    fake.answer["c1"] = (1, b"no")
    await vt.advance(20)
    assert probes.ready("app")  # failureThreshold defaults to 3
    await vt.advance(10)
    assert not probes.ready("app")
    await probes.stop()


async def test_readiness_failure_threshold_and_recovery(vt: VirtualTime) -> None:
    container = {"name": "app", "readinessProbe": _exec_probe(periodSeconds=1, failureThreshold=2)}
    fake = FakeExec(vt)
    probes, events, changes = _probe_set(vt, _pod(container), fake)
    probes.container_started("app", "c1", "10.0.0.2", vt.now)
    await vt.advance(0)
    assert probes.ready("app")
    fake.answer["c1"] = (1, b"not yet\n")
    await vt.advance(1)
    assert probes.ready("app")  # one failure of two
    await vt.advance(1)
    assert not probes.ready("app")
    assert events == [("app", "Warning", "Unhealthy", "Readiness probe failed: not yet\n")] * 2
    fake.answer["c1"] = (0, b"")
    await vt.advance(1)
    assert probes.ready("app")  # readiness keeps probing after failures
    assert len(changes) == 4  # started, ready, unready, ready
    await probes.stop()


async def test_liveness_failure_holds_until_restarted(vt: VirtualTime) -> None:
    container = {
        "name": "app",
        "livenessProbe": _exec_probe(periodSeconds=10, terminationGracePeriodSeconds=3),
    }
    fake = FakeExec(vt)
    probes, events, _ = _probe_set(vt, _pod(container), fake)
    probes.container_started("app", "c1", "10.0.0.2", vt.now)
    await vt.advance(15)
    assert probes.liveness_failed("app") is None
    fake.answer["c1"] = (1, b"dead\n")
    await vt.advance(20)  # failures at 20 and 30
    assert probes.liveness_failed("app") is None
    assert probes.ready("app")  # no readiness probe: ready once started
    await vt.advance(10)  # third failure at 40
    assert probes.liveness_failed("app") == "Container app failed liveness probe, will be restarted"
    assert probes.termination_grace("app") == 3
    assert [e[3] for e in events] == ["Liveness probe failed: dead\n"] * 3
    await vt.advance(100)
    assert fake.times("c1") == [0, 10, 20, 30, 40]  # on hold
    probes.container_started("app", "c2", "10.0.0.2", vt.now)
    assert probes.liveness_failed("app") is None
    await vt.advance(0)
    assert fake.times("c2") == [145.0]
    await probes.stop()


async def test_startup_gates_liveness_and_readiness(vt: VirtualTime) -> None:
    container = {
        "name": "app",
        "startupProbe": _exec_probe(periodSeconds=1, failureThreshold=30),
        "livenessProbe": {"exec": {"command": ["live"]}, "periodSeconds": 10},
        "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 10},
    }
    fake = FakeExec(vt)
    probes, _, _ = _probe_set(vt, _pod(container), fake)
    fake.answer["c1"] = (1, b"starting")
    probes.container_started("app", "c1", "10.0.0.2", vt.now)
    await vt.advance(3.5)
    assert not probes.started("app") and not probes.ready("app")
    assert {tuple(c[2]) for c in fake.calls} == {("cat", "/tmp/healthy")}
    fake.answer["c1"] = (0, b"")
    await vt.advance(1)  # startup succeeds at 4: liveness and readiness run at once
    assert probes.started("app") and probes.ready("app")
    assert [(t, c[0]) for t, _, c in fake.calls if t >= 4] == [
        (4.0, "cat"),
        (4.0, "live"),
        (4.0, "ready"),
    ]
    await vt.advance(10)
    assert [c[0] for t, _, c in fake.calls if t > 4] == ["live", "ready"]  # startup is done
    await probes.stop()


async def test_startup_failure_restarts_with_pod_grace(vt: VirtualTime) -> None:
    container = {"name": "app", "startupProbe": _exec_probe(periodSeconds=2, failureThreshold=2)}
    fake = FakeExec(vt)
    probes, events, _ = _probe_set(vt, _pod(container, grace=12), fake)
    fake.answer["c1"] = (1, b"")
    probes.container_started("app", "c1", "10.0.0.2", vt.now)
    await vt.advance(2)
    assert probes.liveness_failed("app") == "Container app failed startup probe, will be restarted"
    assert probes.termination_grace("app") == 12
    assert events[0][3] == "Startup probe failed: "
    await probes.stop()


async def test_errored_probe_is_retried_then_fails(vt: VirtualTime) -> None:
    container = {"name": "app", "livenessProbe": _exec_probe(failureThreshold=1)}
    fake = FakeExec(vt)
    probes, events, _ = _probe_set(vt, _pod(container), fake)
    fake.answer["c1"] = RuntimeError("no such container")
    probes.container_started("app", "c1", "10.0.0.2", vt.now)
    await vt.advance(0)
    assert len(fake.calls) == 3
    assert events == [("app", "Warning", "Unhealthy", "Liveness probe errored: no such container")]
    assert probes.liveness_failed("app")
    await probes.stop()


async def test_slow_probe_does_not_delay_others(vt: VirtualTime) -> None:
    slow = {"name": "slow", "livenessProbe": _exec_probe(periodSeconds=1, timeoutSeconds=30)}
    fast = {"name": "fast", "readinessProbe": _exec_probe(periodSeconds=1)}
    fake = FakeExec(vt)
    probes, _, _ = _probe_set(vt, _pod(slow, fast), fake)
    fake.answer["s1"] = "hang"
    probes.container_started("slow", "s1", "10.0.0.2", vt.now)
    probes.container_started("fast", "f1", "10.0.0.2", vt.now)
    await vt.advance(5)
    assert fake.times("s1") == [0]
    assert fake.times("f1") == [0, 1, 2, 3, 4, 5]
    await probes.stop()


async def test_stopped_container_and_terminating_pod(vt: VirtualTime) -> None:
    app = {
        "name": "app",
        "livenessProbe": _exec_probe(periodSeconds=1),
        "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 1},
    }
    fake = FakeExec(vt)
    probes, _, _ = _probe_set(vt, _pod(app), fake)
    probes.container_started("app", "c1", "10.0.0.2", vt.now)
    await vt.advance(1)
    probes.terminating()
    fake.answer["c1"] = (1, b"")
    await vt.advance(5)
    assert [c[0] for t, _, c in fake.calls if t > 1] == ["ready"] * 5  # no more liveness
    assert probes.liveness_failed("app") is None and not probes.ready("app")
    probes.container_stopped("app")
    assert not probes.started("app")
    calls = len(fake.calls)
    await vt.advance(5)
    assert len(fake.calls) == calls
    await probes.stop()


# -- lifecycle hooks ---------------------------------------------------------------------


async def _hook(handler: dict[str, Any], fake: FakeExec, limit: float = 30) -> str | None:
    pod = _pod({"name": "app"})
    return await run_hook(
        handler,
        pod_ip="127.0.0.1",
        container_id="c1",
        exec_fn=fake,
        limit=limit,
        container={"name": "app"},
        pod=pod,
        sleep=fake.time.sleep,
    )


async def test_exec_hook(vt: VirtualTime) -> None:
    fake = FakeExec(vt)
    handler = {"exec": {"command": ["sh", "-c", "exit 2"]}}
    assert await _hook(handler, fake) is None
    fake.answer["c1"] = (2, b"bad\n")
    assert await _hook(handler, fake) == (
        'Exec lifecycle hook ([sh -c exit 2]) for Container "app" in Pod "web_default(u1)" '
        "failed - error: command 'sh -c exit 2' exited with 2: bad\n, message: \"bad\\n\""
    )


async def test_http_hook(server: str, vt: VirtualTime) -> None:
    """Any response is a success; no response is a failure."""
    fake = FakeExec(vt)
    assert await _hook({"httpGet": {"path": "/status/500", "port": _port(server)}}, fake) is None
    port = _closed_port()
    message = await _hook({"httpGet": {"path": "/stop", "port": port}}, fake)
    assert message == (
        'HTTP lifecycle hook (/stop) for Container "app" in Pod "web_default(u1)" failed - '
        f'error: Get "http://127.0.0.1:{port}/stop": dial tcp 127.0.0.1:{port}: '
        "connect: connection refused"
    )
    sent = await _hook({"httpGet": {"path": "/headers", "port": _port(server)}}, fake)
    assert sent is None


async def test_sleep_hook(vt: VirtualTime) -> None:
    fake = FakeExec(vt)
    task = asyncio.ensure_future(_hook({"sleep": {"seconds": 5}}, fake))
    await vt.advance(4.9)
    assert not task.done()
    await vt.advance(0.1)
    assert task.done() and task.result() is None
    task = asyncio.ensure_future(_hook({"sleep": {"seconds": 50}}, fake, limit=10))
    await vt.advance(10)
    assert task.result() == (
        'Sleep lifecycle hook (50) for Container "app" in Pod "web_default(u1)" failed - '
        "error: container terminated before sleep hook finished"
    )
    task = asyncio.ensure_future(_hook({"sleep": {"seconds": 50}}, fake, limit=0))
    await vt.advance(49)
    assert not task.done()  # no limit
    await vt.advance(1)
    assert task.result() is None
