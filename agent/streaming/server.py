"""The agent's streaming HTTPS server: what the API server proxies ``pods/log``,
``pods/exec``, ``pods/attach`` and ``pods/portforward`` to.

Paths as the kubelet serves them: ``/containerLogs/<ns>/<pod>/<container>``,
``/exec/<ns>/<pod>/<container>``, ``/attach/<ns>/<pod>/<container>`` and
``/portForward/<ns>/<pod>``. TLS with the node's serving certificate (from its
kubelet-serving CSR); a client certificate from the cluster's client CA is required and
only the API server's identity (CN :data:`APISERVER_USER`) is served, except ``/metrics``
(the process's Prometheus metrics, ``edgek/metrics.py``), which any client certificate from
that CA may read (a scraper's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from agent.bootstrap import SERVING_CERT, SERVING_KEY
from agent.podman.client import ExecSession, PodmanClient, PodmanError
from agent.streaming import channels, containers, portforward, spdy, upgrade
from edgek import metrics
from edgek.apiclient import ApiClient

log = logging.getLogger(__name__)

#: The API server's client identity (the CN of its ``client-kube-apiserver.crt``).
APISERVER_USER = "system:apiserver"
#: Where the API server serves the client CA to nodes.
CLIENT_CA_PATH = "/v1-edgek/client-ca.crt"
#: How long to wait for an exec session's exit code after its output ended.
EXIT_WAIT_SECONDS = 10.0

#: How long a SPDY client has to open the streams its request asks for.
STREAM_WAIT_SECONDS = 30.0

Handler = Any


@dataclass(frozen=True)
class _Flags:
    """Which streams an exec or attach request asks for."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def spdy_streams(self, protocol: str) -> set[str]:
        """The ``streamtype`` of each stream a SPDY client opens for these flags (with a
        tty stderr is merged into stdout; resize came with v2)."""
        wanted = {
            "error": True,
            "stdin": self.stdin,
            "stdout": self.stdout,
            "stderr": self.stderr and not self.tty,
            "resize": self.tty and protocol != "channel.k8s.io",
        }
        return {name for name, on in wanted.items() if on}


@dataclass
class StreamingConfig:
    """Where the server listens and with what credentials."""

    port: int
    serving_cert: Path
    serving_key: Path
    #: PEM of the cluster's client CA: client certificates must chain to it.
    client_ca_pem: bytes
    host: str | None = None


class ServingTLS:
    """The TLS server context: the serving certificate, client certificates required.
    :meth:`refresh` reads the certificate files again when they changed (the agent's
    renewal rewrites them); connections made afterwards present the new certificate."""

    def __init__(self, config: StreamingConfig) -> None:
        self.config = config
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_verify_locations(cadata=config.client_ca_pem.decode())
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_cert_chain(config.serving_cert, config.serving_key)
        self._version = config.serving_cert.stat().st_mtime_ns

    def refresh(self) -> None:
        """Load the certificate again if its file changed (keep the old one on errors)."""
        try:
            version = self.config.serving_cert.stat().st_mtime_ns
            if version != self._version:
                self.context.load_cert_chain(self.config.serving_cert, self.config.serving_key)
                self._version = version
        except (OSError, ssl.SSLError) as e:
            log.warning("streaming: reloading the serving certificate: %s", e)


TLS_KEY = web.AppKey("tls", ServingTLS)


def _peer_common_name(request: web.Request) -> str:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                return str(value)
    return ""


@web.middleware
async def only_apiserver(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 for any client but the API server (any client certificate for ``/metrics``); a
    renewed serving certificate is picked up."""
    request.app[TLS_KEY].refresh()
    user = _peer_common_name(request)
    if user != APISERVER_USER and not (user and request.path == "/metrics"):
        log.warning("streaming: refused client %r", user)
        return web.Response(status=403, text=f"Forbidden (user={user or 'unknown'})\n")
    response: web.StreamResponse = await handler(request)
    return response


async def serve_metrics(request: web.Request) -> web.Response:
    """GET /metrics: the agent process's work queues and resources."""
    text = "".join(metrics.common_families())
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid {name}: {value!r}\n") from None


class StreamingServer:
    """The HTTPS server (see the module docstring); :meth:`start` / :meth:`stop`."""

    def __init__(self, config: StreamingConfig, client: PodmanClient) -> None:
        self.config = config
        self.client = client
        self.tls = ServingTLS(config)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[only_apiserver])
        app[TLS_KEY] = self.tls
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        for verb in ("exec", "attach"):
            path = f"/{verb}/{{namespace}}/{{pod}}/{{container}}"
            app.router.add_route("*", path, self.exec if verb == "exec" else self.attach)
        app.router.add_route("*", "/portForward/{namespace}/{pod}", self.port_forward)
        app.router.add_get("/metrics", serve_metrics)
        return app

    async def start(self) -> None:
        """Listen on ``config.host:config.port`` (all addresses when no host)."""
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=self.tls.context
        )
        await site.start()
        log.info("streaming: serving on port %d", self.config.port)

    async def stop(self) -> None:
        """Stop listening and end open sessions."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- logs -----------------------------------------------------------------------------

    async def logs(self, request: web.Request) -> web.StreamResponse:
        """The container's log, with the kubelet's query parameters."""
        ns, pod, name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            ident = await containers.find(
                self.client, ns, pod, name, previous=_flag(request, "previous")
            )
        except containers.NotFound as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from None
        since = _since(request)
        tail = _int(request, "tailLines")
        limit = _int(request, "limitBytes")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent, stamps = 0, _flag(request, "timestamps")
        with contextlib.suppress(ConnectionResetError):
            async for _stream, line in self.client.logs(
                ident,
                follow=_flag(request, "follow"),
                timestamps=stamps,
                since=since,
                tail=tail,
            ):
                if stamps:
                    line = kubelet_timestamp(line)
                if limit is not None and sent + len(line) >= limit:
                    await response.write(line[: limit - sent])
                    break
                await response.write(line)
                sent += len(line)
            await response.write_eof()
        return response

    # -- exec and attach ------------------------------------------------------------------

    async def exec(self, request: web.Request) -> web.StreamResponse:
        """Run ``command`` in the container (WebSocket channels or SPDY streams)."""
        command = request.query.getall("command", [])
        if not command:
            raise web.HTTPBadRequest(text="you must specify at least 1 command\n")
        return await self._session(request, command)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        """Attach to the container's main process (WebSocket channels or SPDY streams)."""
        return await self._session(request, None)

    async def _session(self, request: web.Request, command: list[str] | None) -> web.StreamResponse:
        ns, pod, name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        flags = _Flags(*(_flag(request, f) for f in ("stdin", "stdout", "stderr", "tty")))
        try:
            ident = await containers.running(self.client, ns, pod, name)
        except containers.NotFound as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from None
        if upgrade.wants_spdy(request):

            async def over_spdy(conn: spdy.Connection, protocol: str) -> None:
                await self._spdy_session(conn, protocol, ident, command, flags)

            return await upgrade.serve_spdy(request, channels.SPDY_PROTOCOLS, over_spdy)
        ws = web.WebSocketResponse(protocols=channels.PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="a WebSocket or SPDY/3.1 upgrade is required\n")
        await ws.prepare(request)
        protocol = ws.ws_protocol or "channel.k8s.io"

        async def send(channel: int, data: bytes) -> None:
            if not ws.closed:
                await ws.send_bytes(bytes([channel]) + data)

        async def inbound(session: ExecSession, exec_id: str) -> None:
            await self._from_ws(ws, session, exec_id, protocol)

        try:
            await self._run(ident, command, flags, protocol, send, inbound)
        finally:
            await ws.close()
        return ws

    async def _spdy_session(
        self,
        conn: spdy.Connection,
        protocol: str,
        ident: str,
        command: list[str] | None,
        flags: _Flags,
    ) -> None:
        """The session over SPDY: one client stream per channel, named by ``streamtype``."""
        expected = flags.spdy_streams(protocol)
        streams: dict[str, spdy.Stream] = {}
        async with asyncio.timeout(STREAM_WAIT_SECONDS):
            while not expected <= streams.keys():
                stream = await conn.streams.get()
                if stream is None:
                    return
                streams[stream.headers.get("streamtype", "")] = stream
        names = {channels.STDOUT: "stdout", channels.STDERR: "stderr", channels.ERROR: "error"}

        async def send(channel: int, data: bytes) -> None:
            stream = streams.get(names[channel])
            if stream is not None:
                await stream.write(data)

        async def inbound(session: ExecSession, exec_id: str) -> None:
            await self._from_spdy(streams, session, exec_id)

        try:
            await self._run(ident, command, flags, protocol, send, inbound)
        finally:
            for stream in streams.values():
                await stream.close()

    async def _from_spdy(
        self, streams: dict[str, spdy.Stream], session: ExecSession, exec_id: str
    ) -> None:
        """The stdin and resize streams to the session (stdin's FIN: EOF)."""
        tasks = []
        if "resize" in streams and exec_id:
            tasks.append(asyncio.create_task(self._resizes(streams["resize"], exec_id)))
        try:
            if "stdin" in streams:
                while (data := await streams["stdin"].read()) is not None:
                    await session.write(data)
                session.close_stdin()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _resizes(self, stream: spdy.Stream, exec_id: str) -> None:
        """Terminal sizes (back-to-back JSON objects) from the resize stream."""
        decoder, buffer = json.JSONDecoder(), ""
        while (data := await stream.read()) is not None:
            buffer += data.decode(errors="replace")
            while buffer.strip():
                try:
                    size, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                await self._resize(exec_id, size)

    async def _resize(self, exec_id: str, size: Any) -> None:
        with contextlib.suppress(ValueError, TypeError, PodmanError, KeyError):
            await self.client.exec_resize(exec_id, int(size["Height"]), int(size["Width"]))

    async def _run(
        self,
        ident: str,
        command: list[str] | None,
        flags: _Flags,
        protocol: str,
        send: Callable[[int, bytes], Awaitable[None]],
        inbound: Callable[[ExecSession, str], Awaitable[None]],
    ) -> None:
        """Start the exec (or attach) session, copy its output to ``send`` while
        ``inbound`` feeds it, then send the exit status on the error channel."""
        try:
            if command is not None:
                exec_id = await self.client.exec_create(
                    ident, command, stdin=flags.stdin, tty=flags.tty
                )
                session = await self.client.exec_start(exec_id, tty=flags.tty)
            else:
                exec_id = ""
                session = await self.client.attach(ident, stdin=flags.stdin, tty=flags.tty)
        except PodmanError as e:
            await send(channels.ERROR, channels.error_status(protocol, str(e)))
            return

        async def feed() -> None:
            await inbound(session, exec_id)

        reader = asyncio.create_task(feed())
        try:
            wanted = {channels.STDOUT: flags.stdout, channels.STDERR: flags.stderr}
            async for stream, data in session.output():
                if wanted.get(stream) and data:
                    await send(stream, data)
            code = await self._exit_code(exec_id) if command is not None else 0
            status = channels.exit_status(protocol, command or [], code)
            if status is not None:
                await send(channels.ERROR, status)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await session.close()

    async def _from_ws(
        self, ws: web.WebSocketResponse, session: ExecSession, exec_id: str, protocol: str
    ) -> None:
        """stdin, resize and (v5) close messages from the client to the session."""
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel == channels.STDIN:
                await session.write(data)
            elif channel == channels.RESIZE and exec_id:
                with contextlib.suppress(ValueError):
                    await self._resize(exec_id, json.loads(data))
            elif channel == channels.CLOSE and protocol == channels.V5 and data[:1] == b"\0":
                session.close_stdin()
        session.close_stdin()

    async def _exit_code(self, exec_id: str) -> int:
        """The exec session's exit code, once Podman saw the process end."""
        deadline = asyncio.get_running_loop().time() + EXIT_WAIT_SECONDS
        while True:
            state = await self.client.exec_inspect(exec_id)
            if not state.get("Running") or asyncio.get_running_loop().time() > deadline:
                return int(state.get("ExitCode") or 0)
            await asyncio.sleep(0.05)

    # -- port-forward ---------------------------------------------------------------------

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        """Forward connections to ports inside the pod's network namespace."""
        ns, pod = request.match_info["namespace"], request.match_info["pod"]
        try:
            pid = await containers.pod_pid(self.client, ns, pod)
        except containers.NotFound as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from None
        return await portforward.serve(request, pid)


def _since(request: web.Request) -> str | None:
    """Podman's ``since`` from ``sinceSeconds`` or ``sinceTime`` (RFC 3339)."""
    seconds = _int(request, "sinceSeconds")
    if seconds is not None:
        return _rfc3339(datetime.now(UTC) - timedelta(seconds=seconds))
    text = request.query.get("sinceTime")
    if not text:
        return None
    try:
        return _rfc3339(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid sinceTime: {text!r}\n") from None


_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ")


def kubelet_timestamp(line: bytes) -> bytes:
    """A log line with libpod's timestamp prefix (RFC 3339, any zone, fraction trimmed)
    rewritten as the kubelet writes it: UTC with exactly nine fractional digits."""
    found = _STAMP.match(line)
    if found is None:
        return line
    seconds, fraction, zone = (g.decode() if g else "" for g in found.groups())
    when = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
    stamp = f"{when:%Y-%m-%dT%H:%M:%S}.{fraction.ljust(9, '0')}Z "
    return stamp.encode() + line[found.end() :]


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def fetch_client_ca(client: ApiClient) -> bytes:
    """The cluster's client CA (PEM), from the API server, as the node's identity."""
    pem: bytes = await client.request("GET", CLIENT_CA_PATH, raw=True)
    return pem


async def start_streaming(
    client: ApiClient,
    agent_dir: Path,
    port: int,
    podman: PodmanClient,
    *,
    host: str | None = None,
) -> StreamingServer:
    """Fetch the client CA with the node's API ``client`` and serve on ``port`` with the
    node's serving certificate from ``agent_dir``; the running server."""
    config = StreamingConfig(
        port=port,
        serving_cert=agent_dir / SERVING_CERT,
        serving_key=agent_dir / SERVING_KEY,
        client_ca_pem=await fetch_client_ca(client),
        host=host,
    )
    server = StreamingServer(config, podman)
    await server.start()
    return server
