"""The cluster DNS server over real sockets, all inside a test network namespace: answers
from the zone over UDP and TCP, truncation, forwarding to a fake upstream on the
namespace's loopback, SERVFAIL when the upstream is down, and the DNAT from the cluster DNS
address programmed with iptables in the namespace."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest

from agent.dns import wire
from agent.dns.node import NodeDns
from agent.dns.server import DnsServer
from agent.dns.zone import Zone
from tests.agent.netns import isolated_netns, run_in_netns

pytestmark = pytest.mark.skipif(
    not (shutil.which("ip") and shutil.which("iptables-restore")) or not hasattr(socket, "AF_INET"),
    reason="needs ip and iptables",
)

SERVICES = [{"metadata": {"name": "web", "namespace": "shop"}, "spec": {"clusterIP": "10.43.0.20"}}]
SLICES = [
    {
        "metadata": {
            "name": "big-1",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "big"},
        },
        "endpoints": [{"addresses": [f"10.42.1.{i}"]} for i in range(1, 61)],
    }
]
ZONE = Zone(
    "cluster.local",
    [*SERVICES, {"metadata": {"name": "big", "namespace": "shop"}, "spec": {"clusterIP": "None"}}],
    SLICES,
)


@pytest.fixture(scope="module")
def netns() -> Iterator[list[str]]:
    with isolated_netns() as prefix:
        yield prefix


def in_netns(netns: list[str], main: Callable[[], Awaitable[Any]]) -> Any:
    return run_in_netns(netns, lambda: asyncio.run(asyncio.wait_for(main(), 20)))


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.reply.set_result(data)


async def udp(host: str, port: int, msg: bytes) -> wire.Response:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=(host, port))
    try:
        transport.sendto(msg)
        return wire.parse_response(await asyncio.wait_for(proto.reply, 5))
    finally:
        transport.close()


async def tcp(host: str, port: int, msg: bytes) -> wire.Response:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(msg)) + msg)
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return wire.parse_response(await reader.readexactly(length))
    finally:
        writer.close()


class _Upstream(asyncio.DatagramProtocol):
    """Answers every A query with 192.0.2.7 (a documentation address)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = wire.parse_query(data)
        record = wire.Record(query.name, wire.A, 60, bytes([192, 0, 2, 7]))
        reply = wire.build_response(query, wire.NOERROR, [record], authoritative=False)
        self.transport.sendto(reply, addr)


def test_answers_over_udp_and_tcp_and_truncates(netns: list[str]) -> None:
    async def main() -> None:
        server = DnsServer(lambda: ZONE, [], "127.0.0.1", 0)
        await server.start()
        try:
            query = wire.build_query("web.shop.svc.cluster.local", wire.A, 11)
            for ask in (udp, tcp):
                reply = await ask("127.0.0.1", server.port, query)
                assert (reply.id, reply.rcode) == (11, wire.NOERROR)
                assert [r.rdata for r in reply.answers] == [bytes([10, 43, 0, 20])]
            missing = await udp(
                "127.0.0.1", server.port, wire.build_query("x.cluster.local", wire.A)
            )
            assert missing.rcode == wire.NXDOMAIN and missing.authority[0].rtype == wire.SOA
            big = wire.build_query("big.shop.svc.cluster.local", wire.A)
            cut = await udp("127.0.0.1", server.port, big)
            assert cut.flags & wire.TC and not cut.answers
            assert len((await tcp("127.0.0.1", server.port, big)).answers) == 60
            edns = wire.build_query("big.shop.svc.cluster.local", wire.A, edns=4096)
            assert len((await udp("127.0.0.1", server.port, edns)).answers) == 60
        finally:
            await server.stop()

    in_netns(netns, main)


def test_forwards_other_names_and_fails_without_upstream(netns: list[str]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0))
        port = upstream.get_extra_info("sockname")[1]
        server = DnsServer(lambda: ZONE, ["127.0.0.1"], "127.0.0.1", 0, upstream_port=port)
        await server.start()
        try:
            query = wire.build_query("example.org", wire.A, 21)
            for ask in (udp, tcp):
                reply = await ask("127.0.0.1", server.port, query)
                assert (reply.id, reply.rcode) == (21, wire.NOERROR)
                assert [r.rdata for r in reply.answers] == [bytes([192, 0, 2, 7])]
            ptr = wire.build_query("1.1.168.192.in-addr.arpa", wire.PTR)
            assert (await udp("127.0.0.1", server.port, ptr)).answers[
                0
            ].name == "1.1.168.192.in-addr.arpa"
            upstream.close()
            failed = await udp("127.0.0.1", server.port, query)
            assert (failed.id, failed.rcode) == (21, wire.SERVFAIL)
            assert not failed.flags & wire.AA
        finally:
            await server.stop()

    in_netns(netns, main)


def test_cluster_dns_address_reaches_the_node_server(netns: list[str]) -> None:
    name = netns[1].removeprefix("--net=/run/netns/")
    for args in (
        ["link", "add", "ekdns0", "type", "veth", "peer", "name", "ekdns1"],  # both ends here
        ["addr", "add", "10.42.0.1/24", "dev", "ekdns0"],
        ["link", "set", "ekdns0", "up"],
        ["link", "set", "ekdns1", "up"],
        ["route", "add", "10.43.0.0/16", "dev", "ekdns0"],
    ):
        subprocess.run(["ip", "-n", name, *args], check=True)

    async def main() -> None:
        node = NodeDns(lambda: None, "10.43.0.10", "cluster.local", "10.42.0.0/24")
        await node.start()
        try:
            assert node.server is not None and node.listen == "10.42.0.1"
            query = wire.build_query("web.shop.svc.cluster.local", wire.A, 5)
            for ask in (udp, tcp):
                reply = await ask("10.43.0.10", 53, query)
                # no API yet: an empty zone, answered by the node's server
                assert (reply.id, reply.rcode) == (5, wire.NXDOMAIN)
                assert reply.authority[0].name == "cluster.local"
        finally:
            await node.stop()

    in_netns(netns, main)
    rules = subprocess.run(
        [*netns, "iptables-save", "-t", "nat"], check=True, capture_output=True, text=True
    ).stdout
    assert "-A PREROUTING -j EDGEK-DNS" in rules and "-A OUTPUT -j EDGEK-DNS" in rules
