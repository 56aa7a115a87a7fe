"""The agent's DNS server: UDP and TCP on the node, answering the cluster domain from a
watch cache of Services and EndpointSlices (:class:`WatchCache`, which keeps its last view
while the API server is unreachable) and forwarding every other name to the node's
upstream resolvers (:func:`upstream_resolvers`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from agent.dns.wire import (
    FORMERR,
    IN,
    NOTIMP,
    PTR,
    SERVFAIL,
    WireError,
    build_response,
    error_response,
    parse_query,
)
from agent.dns.zone import Zone
from edgek.apiclient import ApiClient, ApiClientError
from edgek.kubeconfig import atomic_write

log = logging.getLogger(__name__)

DNS_PORT = 53
#: How long one upstream resolver gets before the next is tried.
FORWARD_TIMEOUT = 2.0
#: Pause before listing again after the API server refused or could not be reached.
RELIST_SECONDS = 5.0
#: Linux's IP_FREEBIND (bind to an address not configured yet).
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
#: Seconds after the last change before the cache is saved.
SAVE_DELAY = 1.0
RESOURCES = {
    "services": "/api/v1/services",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
}


def upstream_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The nameservers of the host's resolv.conf, leaving out loopback ones (a local stub
    such as systemd-resolved is unreachable from pods; the kubelet does the same). When the
    file names only loopback stubs, systemd-resolved's upstream list is read instead."""
    servers: list[str] = []
    try:
        text = resolv_conf.read_text()
    except OSError:
        return servers
    loopback = False
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                is_loopback = ipaddress.ip_address(fields[1].split("%")[0]).is_loopback
            except ValueError:
                continue
            loopback |= is_loopback
            if not is_loopback:
                servers.append(fields[1])
    resolved = Path("/run/systemd/resolve/resolv.conf")
    if not servers and loopback and resolv_conf != resolved:
        return upstream_resolvers(resolved)
    return servers


class WatchCache:
    """Services and EndpointSlices of the whole cluster, by list and watch; the zone is
    rebuilt lazily after a change. While the API server is unreachable the last view is
    kept (and answered from); with a ``state_file`` it is also saved (a second after the
    last change) and loaded at start, so an agent restarted offline answers too."""

    def __init__(
        self, client: Callable[[], ApiClient | None], domain: str, state_file: Path | None = None
    ) -> None:
        self._client = client
        self.domain = domain
        self.state_file = state_file
        self._save: asyncio.TimerHandle | None = None
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            resource: {} for resource in RESOURCES
        }
        self._zone: Zone | None = None
        self.synced = asyncio.Event()
        self._listed: set[str] = set()

    @property
    def zone(self) -> Zone:
        """The zone of the current view."""
        if self._zone is None:
            self._zone = Zone(
                self.domain,
                self.objects["services"].values(),
                self.objects["endpointslices"].values(),
            )
        return self._zone

    async def run(self) -> None:
        """Load the saved view, then follow both resources until cancelled."""
        if self.state_file is not None:
            saved = await asyncio.to_thread(_load, self.state_file)
            for resource, items in saved.items():
                if resource in RESOURCES and not self.objects[resource]:
                    self.objects[resource] = {_key(obj): obj for obj in items}
            self._zone = None
        try:
            await asyncio.gather(*(self._follow(r) for r in RESOURCES))
        finally:
            if self._save is not None:
                self._save.cancel()

    def _changed(self) -> None:
        self._zone = None
        if self.state_file is None:
            return
        if self._save is not None:
            self._save.cancel()
        self._save = asyncio.get_running_loop().call_later(SAVE_DELAY, self._write)

    def _write(self) -> None:
        assert self.state_file is not None
        view = {r: list(objects.values()) for r, objects in self.objects.items()}
        try:
            atomic_write(self.state_file, json.dumps(view).encode())
        except OSError as e:
            log.warning("dns: cannot save the cache to %s: %s", self.state_file, e)

    async def _follow(self, resource: str) -> None:
        while True:
            client = self._client()
            try:
                if client is None:
                    raise ApiClientError("no API client yet", 0)
                version = await self._list(client, resource)
                async for event in client.watch(RESOURCES[resource], version):
                    self._apply(resource, event)
            except ApiClientError as e:
                if e.code != 410:
                    log.debug("dns: %s unavailable (%s); keeping the last view", resource, e)
                    await asyncio.sleep(RELIST_SECONDS)

    async def _list(self, client: ApiClient, resource: str) -> str:
        body = await client.request("GET", RESOURCES[resource])
        self.objects[resource] = {_key(obj): obj for obj in body.get("items") or []}
        self._changed()
        self._listed.add(resource)
        if self._listed == set(RESOURCES):
            self.synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _apply(self, resource: str, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        if event.get("type") == "DELETED":
            self.objects[resource].pop(_key(obj), None)
        else:
            self.objects[resource][_key(obj)] = obj
        self._changed()


def _load(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        view = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return view if isinstance(view, dict) else {}


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _bound(kind: socket.SocketKind, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.server.answer_local(data, udp=True)
        if reply is not None:
            if self.transport is not None:
                self.transport.sendto(reply, addr)
            return
        self.server.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = await self.server.forward(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    """UDP + TCP DNS on ``(host, port)`` answering from ``zone()`` and forwarding the
    rest to ``upstreams``."""

    def __init__(
        self,
        zone: Callable[[], Zone],
        upstreams: Sequence[str],
        host: str,
        port: int = DNS_PORT,
        upstream_port: int = DNS_PORT,
    ) -> None:
        self.zone = zone
        self.upstreams = list(upstreams)
        self.host, self.port = host, port
        self.upstream_port = upstream_port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on UDP and TCP (``port`` 0: the UDP port picked is used for TCP too). The
        sockets bind with IP_FREEBIND: the node's bridge address may appear only later."""
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), sock=_bound(socket.SOCK_DGRAM, self.host, self.port)
        )
        self.port = self._udp.get_extra_info("sockname")[1]
        tcp = _bound(socket.SOCK_STREAM, self.host, self.port)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)

    async def stop(self) -> None:
        """Stop listening and drop the queries in flight."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in a task the server cancels on stop."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def answer_local(self, data: bytes, *, udp: bool) -> bytes | None:
        """The response to a query the server answers itself, None for one to forward
        (a name outside the cluster domain, or a PTR of an address the cluster does not
        own). A malformed query gets FORMERR (nothing for a message without a header)."""
        try:
            query = parse_query(data)
        except WireError:
            return error_response(data, FORMERR) or b""
        zone = self.zone()
        if query.qtype == PTR and query.name.endswith(".arpa"):
            answer = zone.lookup_ptr(query.name)
            if answer is None:
                return None
        elif zone.in_zone(query.name):
            answer = zone.lookup(query.name, query.qtype)
        else:
            return None
        if query.qclass != IN:
            return build_response(query, NOTIMP, authoritative=False)
        limit = query.udp_size if udp else 65535
        return build_response(query, answer.rcode, answer.answers, answer.authority, limit=limit)

    async def forward(self, data: bytes) -> bytes | None:
        """The first upstream resolver's reply to ``data`` (over UDP), SERVFAIL when none
        answers."""
        loop = asyncio.get_running_loop()
        for upstream in self.upstreams:
            reply: asyncio.Future[bytes] = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_Reply, reply),
                    remote_addr=(upstream, self.upstream_port),
                )
            except OSError as e:
                log.debug("dns: upstream %s: %s", upstream, e)
                continue
            try:
                transport.sendto(data)
                return await asyncio.wait_for(reply, FORWARD_TIMEOUT)
            except (TimeoutError, OSError) as e:
                log.debug("dns: upstream %s: %s", upstream, e or "timeout")
            finally:
                transport.close()
        return _servfail(data)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(length)
                reply = self.answer_local(data, udp=False)
                if reply is None:
                    reply = await self.forward(data)
                if not reply:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _servfail(data: bytes) -> bytes | None:
    """SERVFAIL to a query, with its question (some resolvers drop an answer without)."""
    try:
        return build_response(parse_query(data), SERVFAIL, authoritative=False)
    except WireError:
        return error_response(data, SERVFAIL)


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
