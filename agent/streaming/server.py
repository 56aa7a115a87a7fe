"""The agent's streaming HTTPS server: what the API server proxies ``pods/log``,
``pods/exec``, ``pods/attach`` and ``pods/portforward`` to.

Paths as the kubelet serves them: ``/containerLogs/<ns>/<pod>/<container>``,
``/exec/<ns>/<pod>/<container>``, ``/attach/<ns>/<pod>/<container>`` and
``/portForward/<ns>/<pod>``. TLS with the node's serving certificate (from its
kubelet-serving CSR); a client certificate from the cluster's client CA is required and
only the API server's identity (CN :data:`APISERVER_USER`) is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from agent.bootstrap import SERVING_CERT, SERVING_KEY
from agent.podman.client import ExecSession, PodmanClient, PodmanError
from agent.streaming import channels, containers, portforward
from edgek.apiclient import ApiClient

log = logging.getLogger(__name__)

#: The API server's client identity (the CN of its ``client-kube-apiserver.crt``).
APISERVER_USER = "system:apiserver"
#: Where the API server serves the client CA to nodes.
CLIENT_CA_PATH = "/v1-edgek/client-ca.crt"
#: How long to wait for an exec session's exit code after its output ended.
EXIT_WAIT_SECONDS = 10.0

Handler = Any


@dataclass
class StreamingConfig:
    """Where the server listens and with what credentials."""

    port: int
    serving_cert: Path
    serving_key: Path
    #: PEM of the cluster's client CA: client certificates must chain to it.
    client_ca_pem: bytes
    host: str | None = None


def ssl_context(config: StreamingConfig) -> ssl.SSLContext:
    """TLS server context: the serving certificate, client certificates required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.serving_cert, config.serving_key)
    ctx.load_verify_locations(cadata=config.client_ca_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _peer_common_name(request: web.Request) -> str:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                return str(value)
    return ""


@web.middleware
async def only_apiserver(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 for any client but the API server."""
    user = _peer_common_name(request)
    if user != APISERVER_USER:
        log.warning("streaming: refused client %r", user)
        return web.Response(status=403, text=f"Forbidden (user={user or 'unknown'})\n")
    response: web.StreamResponse = await handler(request)
    return response


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
        self._runner: web.AppRunner | None = None
        self._sessions: set[asyncio.Task[Any]] = set()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[only_apiserver])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        for verb in ("exec", "attach"):
            path = f"/{verb}/{{namespace}}/{{pod}}/{{container}}"
            app.router.add_route("*", path, self.exec if verb == "exec" else self.attach)
        app.router.add_route("*", "/portForward/{namespace}/{pod}", self.port_forward)
        return app

    async def start(self) -> None:
        """Listen on ``config.host:config.port`` (all addresses when no host)."""
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=ssl_context(self.config)
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
        sent = 0
        with contextlib.suppress(ConnectionResetError):
            async for _stream, line in self.client.logs(
                ident,
                follow=_flag(request, "follow"),
                timestamps=_flag(request, "timestamps"),
                since=since,
                tail=tail,
            ):
                if limit is not None and sent + len(line) >= limit:
                    await response.write(line[: limit - sent])
                    break
                await response.write(line)
                sent += len(line)
        await response.write_eof()
        return response

    # -- exec and attach ------------------------------------------------------------------

    async def exec(self, request: web.Request) -> web.StreamResponse:
        """Run ``command`` in the container over a channel WebSocket."""
        command = request.query.getall("command", [])
        if not command:
            raise web.HTTPBadRequest(text="you must specify at least 1 command\n")
        return await self._session(request, command)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        """Attach to the container's main process over a channel WebSocket."""
        return await self._session(request, None)

    async def _session(self, request: web.Request, command: list[str] | None) -> web.StreamResponse:
        ns, pod, name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        stdin, tty = _flag(request, "stdin"), _flag(request, "tty")
        try:
            ident = await containers.running(self.client, ns, pod, name)
        except containers.NotFound as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from None
        ws = web.WebSocketResponse(protocols=channels.PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="a WebSocket upgrade is required\n")
        await ws.prepare(request)
        protocol = ws.ws_protocol or "channel.k8s.io"
        try:
            if command is not None:
                exec_id = await self.client.exec_create(ident, command, stdin=stdin, tty=tty)
                session = await self.client.exec_start(exec_id, tty=tty)
            else:
                exec_id, session = "", await self.client.attach(ident, stdin=stdin, tty=tty)
        except PodmanError as e:
            await ws.send_bytes(bytes([channels.ERROR]) + channels.error_status(protocol, str(e)))
            await ws.close()
            return ws
        reader = asyncio.create_task(self._from_client(ws, session, exec_id, protocol))
        try:
            await _to_client(ws, session, _flag(request, "stdout"), _flag(request, "stderr"))
            if command is not None:
                code = await self._exit_code(exec_id)
                status = channels.exit_status(protocol, command, code)
            else:
                status = channels.exit_status(protocol, [], 0)
            if status is not None:
                await ws.send_bytes(bytes([channels.ERROR]) + status)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await session.close()
            await ws.close()
        return ws

    async def _from_client(
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
                with contextlib.suppress(ValueError, PodmanError, KeyError):
                    size = json.loads(data)
                    await self.client.exec_resize(exec_id, int(size["Height"]), int(size["Width"]))
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


async def _to_client(
    ws: web.WebSocketResponse, session: ExecSession, stdout: bool, stderr: bool
) -> None:
    """The session's output to the stdout/stderr channels, until it ends."""
    wanted = {channels.STDOUT: stdout, channels.STDERR: stderr}
    async for stream, data in session.output():
        if wanted.get(stream) and data and not ws.closed:
            await ws.send_bytes(bytes([stream]) + data)


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


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def fetch_client_ca(client: ApiClient) -> bytes:
    """The cluster's client CA (PEM), from the API server, as the node's identity."""
    return await client.request_bytes("GET", CLIENT_CA_PATH)


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
