"""Container probes (liveness, readiness, startup) and lifecycle hooks (postStart, preStop).

What the kubelet's prober does, on the agent's event loop: :func:`check` runs one probe
(exec, httpGet, tcpSocket, grpc) and :class:`ProbeSet`
runs all probes of one pod, each in its own task so a slow probe never delays another,
with the timing fields and thresholds of the Probe API:

- ``initialDelaySeconds`` counts from the container's start; the first run is then, later
  runs every ``periodSeconds`` (default 10); each run is bounded by ``timeoutSeconds``
  (default 1);
- a result changes only after ``successThreshold`` (default 1) equal results in a row, or
  ``failureThreshold`` (default 3) failures in a row;
- readiness starts not ready, liveness healthy; with a startup probe, liveness and
  readiness wait until it succeeded, and then the startup probe stops;
- a liveness or startup failure puts the container on hold until it is started again
  (:meth:`ProbeSet.liveness_failed` tells the pod worker to restart it, and
  :meth:`ProbeSet.termination_grace` the probe-level ``terminationGracePeriodSeconds``);
- a probe that could not run at all (e.g. the exec call failed) is retried up to three
  times in the same run, as upstream.

Every failed run gives an ``Unhealthy`` Warning event with upstream's message (``Liveness
probe failed: HTTP probe failed with statuscode: 500``); an httpGet that ends on a redirect
to another host succeeds with a ``ProbeWarning`` event. HTTP probes accept 200-399, follow
at most 10 redirects to the same host, send ``User-Agent: kube-probe/<major.minor>`` and
``Accept: */*`` unless ``httpHeaders`` set them, and do not verify HTTPS certificates.

gRPC probes call ``grpc.health.v1.Health/Check`` through :mod:`agent.grpchealth` (HTTP/2
by the pure-Python ``h2``), with upstream's messages (``service unhealthy (responded with
"NOT_SERVING")``).

:func:`run_hook` runs a lifecycle handler (exec, httpGet, sleep) with upstream's failure
messages; the pod worker kills a container whose postStart fails (``FailedPostStartHook``)
and runs preStop within the grace period. An HTTP hook fails only when no response comes
(any status is fine), as upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from agent.podman.client import PodmanClient
from edgek import KUBERNETES_VERSION

log = logging.getLogger("edgek.agent.probes")

ExecFn = Callable[[str, list[str], float], Awaitable[tuple[int, bytes]]]
"""``(container_id, command, timeout) -> (exit code, combined output)``; raises
:class:`TimeoutError` when the command outlives ``timeout``."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Output kept of an exec probe or body of an HTTP response, as upstream (10 KiB).
MAX_OUTPUT = 10 * 1024
MAX_REDIRECTS = 10
#: Runs of a probe that errored (could not be run) before its result counts as a failure.
ERROR_RETRIES = 3
_MINOR = ".".join(KUBERNETES_VERSION.lstrip("v").split(".")[:2])
USER_AGENT = f"kube-probe/{_MINOR}"
HOOK_USER_AGENT = f"kube-lifecycle/{_MINOR}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
_FIELDS = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}


@dataclass(frozen=True)
class ProbeResult:
    """One probe run: ``message`` is what upstream puts after ``<Kind> probe failed: ``.

    ``warning``: a success that upstream reports with a ``ProbeWarning`` event; ``errored``:
    the probe could not be run at all (``<Kind> probe errored: ``)."""

    success: bool
    message: str
    warning: bool = False
    errored: bool = False


class _ProbeError(Exception):
    """A probe or hook that cannot be run as specified (e.g. an unknown named port)."""


async def exec_capture(
    client: PodmanClient, container_id: str, command: list[str], limit: float
) -> tuple[int, bytes]:
    """Run ``command`` in the container through Podman exec: its exit code and combined
    stdout + stderr (the first :data:`MAX_OUTPUT` bytes). Raises :class:`TimeoutError`
    after ``limit`` seconds (``0`` or less: no limit); the process is then left to
    finish on its own, as upstream's runtimes do."""

    async def run() -> tuple[int, bytes]:
        exec_id = await client.exec_create(container_id, command)
        session = await client.exec_start(exec_id)
        output = bytearray()
        try:
            async for _, data in session.output():
                output += data[: MAX_OUTPUT - len(output)]
        finally:
            await session.close()
        for _ in range(50):  # the exit code is recorded just after the stream ends
            state = await client.exec_inspect(exec_id)
            if not state.get("Running"):
                break
            await asyncio.sleep(0.02)
        return int(state.get("ExitCode") or 0), bytes(output)

    if limit <= 0:
        return await run()
    async with asyncio.timeout(limit):
        return await run()


def _resolve_port(port: Any, container: Mapping[str, Any] | None) -> int:
    """A probe's or hook's port: a number, a numeric string or a container port's name."""
    if isinstance(port, str) and not port.isdigit():
        for spec in (container or {}).get("ports") or []:
            if spec.get("name") == port:
                port = spec.get("containerPort")
                break
        else:
            raise _ProbeError(f"port {port} not found")
    number = int(port)
    if not 0 < number < 65536:
        raise _ProbeError(f"invalid port number: {number}")
    return number


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _http_request(
    action: Mapping[str, Any], pod_ip: str, container: Mapping[str, Any] | None, agent: str
) -> tuple[str, dict[str, str]]:
    """URL and headers of an httpGet probe or hook (host defaults to the pod IP)."""
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = action.get("host") or pod_ip
    port = _resolve_port(action.get("port", 80 if scheme == "http" else 443), container)
    path = str(action.get("path") or "")
    if not path.startswith("/"):
        path = "/" + path
    headers: dict[str, str] = {}
    for header in action.get("httpHeaders") or []:
        headers[str(header["name"]).title()] = str(header.get("value", ""))
    headers.setdefault("User-Agent", agent)
    headers.setdefault("Accept", "*/*")
    return f"{scheme}://{_host_port(host, port)}{path}", headers


def _go_error(error: BaseException) -> str:
    """An OS error's text the way Go prints it (``connect: connection refused``)."""
    if isinstance(error, OSError) and error.errno:
        text = os.strerror(error.errno)
        return f"connect: {text[0].lower()}{text[1:]}"
    return str(error) or type(error).__name__


async def _http_get(url: str, headers: dict[str, str], limit: float | None) -> tuple[int, str]:
    """GET ``url``, following redirects to the same host (a redirect elsewhere ends on its
    3xx): ``(status, body)``. Raises :class:`_ProbeError` with Go's wording when no
    response comes."""
    skip = [name for name, value in headers.items() if not value]
    sent = {name: value for name, value in headers.items() if value}
    target = URL(url)
    try:
        async with (
            asyncio.timeout(limit),
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, ssl=False),
                skip_auto_headers=skip,
            ) as session,
        ):
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(target, headers=sent, allow_redirects=False) as resp:
                    body = (await resp.content.read(MAX_OUTPUT)).decode(errors="replace")
                    location = resp.headers.get("Location")
                    if resp.status not in _REDIRECTS or not location:
                        return resp.status, body
                    following = target.join(URL(location))
                    if following.host != target.host:
                        return resp.status, body
                    target = following
            raise _ProbeError(f'Get "{target}": stopped after {MAX_REDIRECTS} redirects')
    except TimeoutError:
        raise _ProbeError(
            f'Get "{target}": context deadline exceeded '
            "(Client.Timeout exceeded while awaiting headers)"
        ) from None
    except aiohttp.ClientConnectorError as e:
        raise _ProbeError(
            f'Get "{target}": dial tcp {_host_port(e.host, e.port or 0)}: {_go_error(e.os_error)}'
        ) from None
    except aiohttp.ClientError as e:
        raise _ProbeError(f'Get "{target}": {e}') from None


async def _exec_probe(
    command: list[str], container_id: str, exec_fn: ExecFn, limit: float
) -> ProbeResult:
    try:
        async with asyncio.timeout(limit + 1):  # the exec function bounds itself first
            code, output = await exec_fn(container_id, command, limit)
    except TimeoutError:
        return ProbeResult(False, f'command "{" ".join(command)}" timed out')
    text = output[:MAX_OUTPUT].decode(errors="replace")
    return ProbeResult(code == 0, text)


async def _http_probe(
    action: Mapping[str, Any], pod_ip: str, container: Mapping[str, Any] | None, limit: float
) -> ProbeResult:
    url, headers = _http_request(action, pod_ip, container, USER_AGENT)
    try:
        status, body = await _http_get(url, headers, limit)
    except _ProbeError as e:
        return ProbeResult(False, str(e))
    if 200 <= status < 400:
        if status >= 300:
            return ProbeResult(True, f"Probe terminated redirects, Response body: {body}", True)
        return ProbeResult(True, body)
    return ProbeResult(False, f"HTTP probe failed with statuscode: {status}")


async def _tcp_probe(
    action: Mapping[str, Any], pod_ip: str, container: Mapping[str, Any] | None, limit: float
) -> ProbeResult:
    host = action.get("host") or pod_ip
    port = _resolve_port(action.get("port"), container)
    address = _host_port(host, port)
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeResult(False, f"dial tcp {address}: i/o timeout")
    except OSError as e:
        return ProbeResult(False, f"dial tcp {address}: {_go_error(e)}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, "")


async def _grpc_probe(action: Mapping[str, Any], pod_ip: str, limit: float) -> ProbeResult:
    from agent import grpchealth  # h2 is loaded only for pods with gRPC probes

    port = _resolve_port(action.get("port"), None)
    address = _host_port(pod_ip, port)
    within = f"{limit:g}s"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(pod_ip, port)
    except (OSError, TimeoutError) as e:
        cause = "context deadline exceeded" if isinstance(e, TimeoutError) else _go_error(e)
        return ProbeResult(
            False, f'timeout: failed to connect service "{address}" within {within}: {cause}'
        )
    try:
        async with asyncio.timeout_at(deadline):
            status = await grpchealth.check_health(
                reader, writer, address, str(action.get("service") or ""), USER_AGENT
            )
    except TimeoutError:
        return ProbeResult(False, f"timeout: health rpc did not complete within {within}")
    except grpchealth.GrpcError as e:
        if e.code == grpchealth.UNIMPLEMENTED:
            return ProbeResult(
                False,
                "error: this server does not implement the grpc health protocol "
                f"(grpc.health.v1.Health): {e.message}",
            )
        return ProbeResult(False, f"error: health rpc probe failed: {e}")
    finally:
        writer.close()
    if status != grpchealth.SERVING:
        name = grpchealth.SERVING_STATUS.get(status, str(status))
        return ProbeResult(False, f'service unhealthy (responded with "{name}")')
    return ProbeResult(True, "service healthy")


async def check(
    probe: Mapping[str, Any],
    *,
    pod_ip: str,
    container_id: str,
    exec_fn: ExecFn,
    container: Mapping[str, Any] | None = None,
) -> ProbeResult:
    """Run ``probe`` (a Probe object) once against a container, within its
    ``timeoutSeconds``. ``container`` (the container's spec) resolves named ports."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            command = list((probe["exec"] or {}).get("command") or [])
            return await _exec_probe(command, container_id, exec_fn, timeout)
        if "httpGet" in probe:
            return await _http_probe(probe["httpGet"], pod_ip, container, timeout)
        if "tcpSocket" in probe:
            return await _tcp_probe(probe["tcpSocket"], pod_ip, container, timeout)
        if "grpc" in probe:
            return await _grpc_probe(probe["grpc"], pod_ip, timeout)
    except _ProbeError as e:
        return ProbeResult(False, str(e), errored=True)
    except Exception as e:  # the runtime call failed: the probe did not run
        return ProbeResult(False, str(e) or type(e).__name__, errored=True)
    return ProbeResult(False, "missing probe handler", errored=True)


async def run_hook(
    handler: Mapping[str, Any],
    *,
    pod_ip: str,
    container_id: str,
    exec_fn: ExecFn,
    limit: float,
    container: Mapping[str, Any] | None = None,
    pod: Mapping[str, Any] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> str | None:
    """Run a lifecycle handler (postStart or preStop: exec, httpGet or sleep) for at most
    ``limit`` seconds (``0`` or less: no limit, as upstream's postStart): ``None`` on
    success, else upstream's message (``Exec lifecycle
    hook ([...]) for Container "c" in Pod "name_ns(uid)" failed - error: ...``), which
    goes into the FailedPostStartHook / FailedPreStopHook event. ``container`` and ``pod``
    complete the message and resolve named ports."""
    name = (container or {}).get("name", "")
    meta = (pod or {}).get("metadata") or {}
    bound = limit if limit > 0 else None
    where = f'for Container "{name}" in Pod "{meta.get("name", "")}_{meta.get("namespace", "")}({meta.get("uid", "")})"'
    if "exec" in handler:
        command = list((handler["exec"] or {}).get("command") or [])
        what = f"Exec lifecycle hook ([{' '.join(command)}]) {where}"
        try:
            async with asyncio.timeout(bound and bound + 1):  # exec_fn bounds itself first
                code, output = await exec_fn(container_id, command, limit)
        except TimeoutError:
            return f'{what} failed - error: command "{" ".join(command)}" timed out, message: ""'
        except Exception as e:
            return f'{what} failed - error: {e}, message: ""'
        if code != 0:
            text = output.decode(errors="replace")
            return (
                f"{what} failed - error: command '{' '.join(command)}' exited with {code}: "
                f"{text}, message: {json.dumps(text)}"
            )
        return None
    if "httpGet" in handler:
        action = handler["httpGet"]
        what = f"HTTP lifecycle hook ({action.get('path') or ''}) {where}"
        try:
            url, headers = _http_request(action, pod_ip, container, HOOK_USER_AGENT)
            await _http_get(url, headers, bound)
        except _ProbeError as e:
            return f"{what} failed - error: {e}"
        return None
    if "sleep" in handler:
        seconds = int((handler["sleep"] or {}).get("seconds") or 0)
        if bound is not None and seconds > bound:
            await sleep(bound)
            return (
                f"Sleep lifecycle hook ({seconds}) {where} failed - error: container "
                "terminated before sleep hook finished"
            )
        await sleep(seconds)
        return None
    return f"Cannot run handler: invalid handler: {dict(handler)}"


@dataclass
class _Worker:
    """One probe of one running container."""

    kind: str
    probe: Mapping[str, Any]
    container: Mapping[str, Any]
    container_id: str
    pod_ip: str
    started_at: float
    result: bool | None
    last: bool | None = None
    run: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ProbeSet:
    """The probes of one pod's containers; the pod worker feeds it container starts and
    stops and reads ``ready``/``started``/``liveness_failed``. ``on_change`` is called when
    one of those answers changed; ``on_event(container, type, reason, message)`` for each
    event upstream records (``Unhealthy``, ``ProbeWarning``)."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        *,
        exec_fn: ExecFn,
        on_change: Callable[[], None],
        on_event: Callable[[str, str, str, str], None] | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        spec = pod.get("spec") or {}
        self._containers = {c["name"]: c for c in spec.get("containers") or []}
        self._pod_grace = spec.get("terminationGracePeriodSeconds")
        self._exec_fn = exec_fn
        self._on_change = on_change
        self._on_event = on_event
        self._clock = clock
        self._sleep = sleep
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._terminating = False

    # -- what the pod worker feeds in ------------------------------------------------------

    def container_started(
        self, name: str, container_id: str, pod_ip: str, started_at: float
    ) -> None:
        """A (new) container of ``name`` runs since ``started_at`` (the clock's time, by
        default :func:`time.time`): its probes start over."""
        self._cancel(name)
        self._running.add(name)
        spec = self._containers.get(name, {"name": name})
        for kind, key in _FIELDS.items():
            probe = spec.get(key)
            if not probe or (self._terminating and kind != READINESS):
                continue
            initial = {READINESS: False, LIVENESS: True, STARTUP: None}[kind]
            self._workers[name, kind] = _Worker(
                kind, probe, spec, container_id, pod_ip, started_at, initial
            )
        if (name, STARTUP) in self._workers:
            self._spawn(self._workers[name, STARTUP])
        else:
            self._start_gated(name)
        self._on_change()

    def container_stopped(self, name: str) -> None:
        """The container of ``name`` is no longer running: its probes stop."""
        self._cancel(name)
        self._running.discard(name)
        self._on_change()

    def terminating(self) -> None:
        """The pod is being deleted: liveness and startup probes stop and count as
        successful (nothing is restarted any more); readiness goes on."""
        self._terminating = True
        for key in [k for k in self._workers if k[1] != READINESS]:
            task = self._workers.pop(key).task
            if task is not None:
                task.cancel()
        for name in self._running:
            self._start_gated(name)
        self._on_change()

    async def stop(self) -> None:
        """Cancel every probe task and wait for them."""
        tasks = list(self._tasks)
        self._workers.clear()
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what the pod worker reads ---------------------------------------------------------

    def started(self, name: str) -> bool:
        """The container runs and its startup probe (if any) succeeded."""
        if name not in self._running:
            return False
        startup = self._workers.get((name, STARTUP))
        return startup is None or startup.result is True

    def ready(self, name: str) -> bool:
        """The container is started and its readiness probe (if any) succeeded."""
        if not self.started(name):
            return False
        readiness = self._workers.get((name, READINESS))
        return readiness is None or readiness.result is True

    def liveness_failed(self, name: str) -> str | None:
        """Upstream's message when the container must be restarted because its liveness or
        startup probe failed (``Container c failed liveness probe, will be restarted``)."""
        for kind in (STARTUP, LIVENESS):
            worker = self._workers.get((name, kind))
            if worker is not None and worker.result is False:
                return f"Container {name} failed {kind} probe, will be restarted"
        return None

    def termination_grace(self, name: str) -> int | None:
        """The grace period to kill a container whose liveness or startup probe failed:
        the probe's ``terminationGracePeriodSeconds``, else the pod's."""
        for kind in (STARTUP, LIVENESS):
            worker = self._workers.get((name, kind))
            if worker is not None and worker.result is False:
                grace = worker.probe.get("terminationGracePeriodSeconds")
                return int(grace) if grace is not None else self._pod_grace
        return None

    # -- the probe tasks ---------------------------------------------------------------------

    def _cancel(self, name: str) -> None:
        for key in [k for k in self._workers if k[0] == name]:
            task = self._workers.pop(key).task
            if task is not None:
                task.cancel()

    def _spawn(self, worker: _Worker) -> None:
        worker.task = asyncio.get_running_loop().create_task(
            self._loop(worker), name=f"probe-{worker.kind}-{worker.container['name']}"
        )
        self._tasks.add(worker.task)
        worker.task.add_done_callback(self._tasks.discard)

    def _start_gated(self, name: str) -> None:
        """The container is started: its liveness and readiness probes begin."""
        for kind in (LIVENESS, READINESS):
            worker = self._workers.get((name, kind))
            if worker is not None and worker.task is None:
                self._spawn(worker)

    async def _loop(self, worker: _Worker) -> None:
        probe = worker.probe
        period = float(probe.get("periodSeconds") or 10)
        delay = worker.started_at + float(probe.get("initialDelaySeconds") or 0) - self._clock()
        if delay > 0:
            await self._sleep(delay)
        while not await self._probe_once(worker):
            await self._sleep(period)

    async def _probe_once(self, worker: _Worker) -> bool:
        """One run of the probe and what follows from it; True when the probing ends."""
        name = worker.container["name"]
        for _ in range(ERROR_RETRIES):
            result = await check(
                worker.probe,
                pod_ip=worker.pod_ip,
                container_id=worker.container_id,
                exec_fn=self._exec_fn,
                container=worker.container,
            )
            if not result.errored:
                break
        self._report(name, worker.kind, result)
        if result.success == worker.last:
            worker.run += 1
        else:
            worker.last, worker.run = result.success, 1
        threshold = "successThreshold" if result.success else "failureThreshold"
        if worker.run < int(worker.probe.get(threshold) or (1 if result.success else 3)):
            return False
        changed = worker.result != result.success
        worker.result = result.success
        if worker.kind == STARTUP and result.success:
            self._start_gated(name)
        if changed:
            self._on_change()
        if worker.kind == STARTUP and result.success:
            return True  # started: the startup probe is done for this container
        # a failed liveness or startup probe holds until the container is started again
        return worker.kind != READINESS and not result.success

    def _report(self, name: str, kind: str, result: ProbeResult) -> None:
        title = kind.capitalize()
        if result.errored:
            event = ("Warning", "Unhealthy", f"{title} probe errored: {result.message}")
        elif not result.success:
            event = ("Warning", "Unhealthy", f"{title} probe failed: {result.message}")
        elif result.warning:
            event = ("Warning", "ProbeWarning", f"{title} probe warning: {result.message}")
        else:
            return
        log.debug("%s: %s", name, event[2])
        if self._on_event is not None:
            self._on_event(name, *event)
