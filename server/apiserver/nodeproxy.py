"""``pods/log``, ``pods/exec``, ``pods/attach`` and ``pods/portforward``: checked here, then
proxied to the streaming endpoint of the agent running the pod.

The API server dials the agent (no reverse tunnel): the Node's InternalIP and
``status.daemonEndpoints.kubeletEndpoint.Port``, TLS verified with the server CA (the
agent's kubelet-serving certificate), presenting the API server's client certificate.
Logs are a plain streamed GET. Exec, attach and port-forward are WebSocket upgrades: the
agent is asked first with the client's subprotocols, then the client's WebSocket is
accepted with the one the agent chose and messages are relayed both ways unchanged, so
every channel protocol the agent speaks (v5/v4 channels, SPDY tunnelled in WebSocket)
passes through. A SPDY/3.1 upgrade (kubectl's fallback, older clients) is replayed to the
agent on a connection of its own and, once both sides switched, bytes are copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from aiohttp import WSMsgType, web

from edgek import hijack, status
from edgek.kinds import Kind

#: Streaming subresources of pods, with the RBAC verb each needs. Exec, attach and
#: port-forward need ``create`` whatever the method (their WebSocket upgrade is a GET: as
#: upstream with AuthorizePodWebsocketUpgradeCreatePermission, GET does not suffice).
VERBS = {"log": "get", "exec": "create", "attach": "create", "portforward": "create"}
_AGENT_PATHS = {"exec": "exec", "attach": "attach", "portforward": "portForward"}
CONNECT_SECONDS = 10.0
#: Request headers never passed on to the agent.
_HOP_HEADERS = (
    "authorization",
    "connection",
    "upgrade",
    "host",
    "sec-websocket-key",
    "content-length",
    "transfer-encoding",
)


class NodeProxy:
    """Resolves a pod's agent endpoint and proxies a streaming request to it."""

    def __init__(self, objects: Any, pods: Kind, nodes: Kind, tls: ssl.SSLContext) -> None:
        self.objects = objects
        self.pods = pods
        self.nodes = nodes
        self.tls = tls
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # a fresh connection per request: a kept-alive one the agent has since
                # closed would fail an upgrade, and make kubectl fall back to SPDY
                connector=aiohttp.TCPConnector(ssl=self.tls, force_close=True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def handle(
        self, request: web.Request, namespace: str, name: str, sub: str
    ) -> web.StreamResponse:
        """Serve an authorized streaming request for pod ``namespace/name``."""
        pod = await self.objects.get(self.pods, namespace, name)
        query = dict(request.query)
        base = await self._endpoint(pod)
        if sub == "portforward":
            url = f"{base}/portForward/{quote(namespace)}/{quote(name)}"
            return await self._upgrade(request, url, request.query_string)
        container = _container(pod, query.pop("container", ""))
        if sub == "log":
            if query.get("previous", "").lower() not in ("1", "true"):
                _check_started(pod, container)
            url = f"{base}/containerLogs/{quote(namespace)}/{quote(name)}/{quote(container)}"
            return await self._logs(request, url, urlencode(query))
        url = f"{base}/{_AGENT_PATHS[sub]}/{quote(namespace)}/{quote(name)}/{quote(container)}"
        pairs = [(k, v) for k, v in request.query.items() if k != "container"]
        return await self._upgrade(request, url, urlencode(pairs))

    async def _endpoint(self, pod: dict[str, Any]) -> str:
        """``https://<node InternalIP>:<kubelet port>`` of the pod's node."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node_name = spec.get("nodeName") or ""
        if not node_name:
            raise status.bad_request(f"pod {meta['name']} does not have a host assigned")
        node = await self.objects.get(self.nodes, "", node_name)
        node_status = node.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in node_status.get("addresses") or []}
        address = addresses.get("InternalIP") or addresses.get("ExternalIP")
        port = ((node_status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        if not address or not port:
            raise status.bad_request(f"node {node_name} has no streaming endpoint")
        host = f"[{address}]" if ":" in address else address
        return f"https://{host}:{port}"

    async def _logs(self, request: web.Request, url: str, query: str) -> web.StreamResponse:
        try:
            async with self._http().get(f"{url}?{query}") as upstream:
                if upstream.status != 200:
                    raise _agent_error(upstream.status, await upstream.text())
                response = web.StreamResponse(headers={"Content-Type": "text/plain"})
                await response.prepare(request)
                try:
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                except (ConnectionResetError, aiohttp.ClientError):
                    pass  # the client (ends ``logs -f``) or the agent went away mid-stream
        except aiohttp.ClientError as e:
            raise _unreachable(e) from e
        return response

    async def _upgrade(self, request: web.Request, url: str, query: str) -> web.StreamResponse:
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        ready = web.WebSocketResponse(protocols=protocols).can_prepare(request)
        if not ready.ok:
            if request.headers.get("Upgrade", "").lower().startswith("spdy/"):
                return await self._splice(request, url, query)
            raise status.bad_request("a WebSocket or SPDY/3.1 upgrade is required")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("sec-websocket")}
        try:
            agent_ws = await self._http().ws_connect(
                f"{url}?{query}", protocols=protocols, headers=headers, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as e:
            raise _agent_error(e.status, e.message) from e
        except aiohttp.ClientError as e:
            raise _unreachable(e) from e
        async with agent_ws:
            client_ws = web.WebSocketResponse(
                protocols=[agent_ws.protocol] if agent_ws.protocol else (), max_msg_size=0
            )
            await client_ws.prepare(request)
            back = asyncio.create_task(_relay(agent_ws, client_ws))
            try:
                await _relay(client_ws, agent_ws)
            finally:
                await back if back.done() else await _cancelled(back)
                await client_ws.close()
        return client_ws

    async def _splice(self, request: web.Request, url: str, query: str) -> web.StreamResponse:
        """A SPDY upgrade: replay the request to the agent over its own TLS connection and,
        once it switched protocols, copy bytes both ways."""
        parts = urlsplit(url)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    parts.hostname, parts.port, ssl=self.tls, server_hostname=parts.hostname
                ),
                CONNECT_SECONDS,
            )
        except (OSError, TimeoutError) as e:
            raise _unreachable(e) from e
        try:
            head = [f"POST {parts.path}?{query} HTTP/1.1", f"Host: {parts.netloc}"]
            head += [
                f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS
            ]
            head += ["Connection: Upgrade", f"Upgrade: {request.headers['Upgrade']}"]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            code, headers = await _read_head(reader)
            if code != 101:
                size = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(size) if size else b""
                raise _agent_error(code, body.decode(errors="replace"))
            switched = {
                "Connection": "Upgrade",
                "Upgrade": headers.get("upgrade", "SPDY/3.1"),
            }
            if "x-stream-protocol-version" in headers:
                switched["X-Stream-Protocol-Version"] = headers["x-stream-protocol-version"]
            response, client_reader, client_writer = await hijack.switch(request, switched)
            await _pipe_both(reader, writer, client_reader, client_writer)
            return response
        finally:
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status code and (lower-cased) headers of an HTTP/1.1 response."""
    try:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
        raise status.internal("the agent's answer to an upgrade is not HTTP") from None
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return code, headers


async def _pipe_both(
    reader_a: asyncio.StreamReader,
    writer_a: asyncio.StreamWriter,
    reader_b: asyncio.StreamReader,
    writer_b: asyncio.StreamWriter,
) -> None:
    """Copy a to b and b to a until either side ends."""
    tasks = [
        asyncio.create_task(_pipe(reader_a, writer_b)),
        asyncio.create_task(_pipe(reader_b, writer_a)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            await _cancelled(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _relay(source: Any, sink: Any) -> None:
    """Copy WebSocket messages from ``source`` to ``sink`` until ``source`` closes, then
    close ``sink`` (with its code); a ``sink`` gone meanwhile ends the copy."""
    with contextlib.suppress(ConnectionResetError):
        async for msg in source:
            if sink.closed:
                break
            if msg.type == WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await sink.send_str(msg.data)
        await sink.close(code=_sendable(source.close_code))


def _sendable(code: int | None) -> int:
    """A close code that may go on the wire (1005, 1006 and 1015 only describe what
    happened locally): the peer's, else 1000."""
    if code is not None and (1000 <= code <= 1003 or 1007 <= code <= 1014 or code >= 3000):
        return code
    return 1000


def _container(pod: dict[str, Any], name: str) -> str:
    """The container a request is about: ``name``, or the only container of the pod."""
    spec = pod.get("spec") or {}
    pod_name = pod["metadata"]["name"]
    app = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    ephemeral = [c["name"] for c in spec.get("ephemeralContainers") or []]
    if not name:
        if len(app) == 1:
            return app[0]
        message = (
            f"a container name must be specified for pod {pod_name}, "
            f"choose one of: [{' '.join(app)}]"
        )
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        raise status.bad_request(message)
    if name not in app + init + ephemeral:
        raise status.bad_request(f"container {name} is not valid for pod {pod_name}")
    return name


#: What the kubelet says about a container waiting for these reasons (else the reason).
_WAITING_FOR = {
    "ErrImagePull": "image can't be pulled",
    "ImagePullBackOff": "trying and failing to pull image",
}


def _check_started(pod: dict[str, Any], name: str) -> None:
    """400 as the kubelet answers a log request for a container that has never run
    (waiting, with no terminated attempt to show): ``container "x" in pod "y" is waiting
    to start: <reason>``. A container the status does not list yet is left to the agent."""
    pod_status = pod.get("status") or {}
    statuses = [
        *(pod_status.get("containerStatuses") or []),
        *(pod_status.get("initContainerStatuses") or []),
        *(pod_status.get("ephemeralContainerStatuses") or []),
    ]
    found = next((s for s in statuses if s.get("name") == name), None)
    if found is None:
        return
    state, last = found.get("state") or {}, found.get("lastState") or {}
    if state.get("running") or state.get("terminated") or last.get("terminated"):
        return
    reason = str((state.get("waiting") or {}).get("reason") or "")
    what = _WAITING_FOR.get(reason, reason)
    pod_name = pod["metadata"]["name"]
    if what:
        raise status.bad_request(
            f'container "{name}" in pod "{pod_name}" is waiting to start: {what}'
        )
    raise status.bad_request(
        f'container "{name}" in pod "{pod_name}" is waiting to start - no logs yet'
    )


def _agent_error(code: int, text: str) -> status.ApiError:
    message = text.strip() or f"the agent answered {code}"
    if code == 400:
        return status.bad_request(message)
    if code == 403:
        return status.forbidden(message)
    if code == 404:
        return status.ApiError(404, "NotFound", message)
    return status.internal(message)


def _unreachable(error: Exception) -> status.ApiError:
    return status.internal(f"cannot reach the node's agent: {error}")
