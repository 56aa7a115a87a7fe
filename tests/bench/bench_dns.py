"""Cluster DNS benchmark: the agent's DNS server (agent/dns/) answering A queries for a
zone of 1,000 services, beside a floor: an asyncio UDP server that sends back a fixed
reply with no DNS work, loaded the same way in the same run. Both run in their own
process inside a network namespace this benchmark creates (loopback only).

Run: python tests/bench/bench_dns.py [--queries 3000] [--services 1000]

Measures: p50/p99 of sequential queries (one outstanding), queries/s with 32 outstanding,
and the server's RSS after the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agent.dns import wire  # noqa: E402
from tests.agent.netns import isolated_netns  # noqa: E402
from tests.bench.procstats import pct, rss_mb  # noqa: E402


def zone_objects(count: int) -> list[dict[str, Any]]:
    """``count`` ClusterIP services in 10 namespaces."""
    return [
        {
            "metadata": {"name": f"svc{i}", "namespace": f"ns{i % 10}"},
            "spec": {"clusterIP": f"10.43.{i // 250}.{i % 250 + 1}"},
        }
        for i in range(count)
    ]


class _Floor(asyncio.DatagramProtocol):
    """Answers every datagram with a fixed reply."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data[:2] + b"\x81\x80" + data[4:], addr)


async def serve(kind: str, services: int) -> None:
    """Serve (``dns`` or ``floor``) on 127.0.0.1 and print the port."""
    loop = asyncio.get_running_loop()
    if kind == "dns":
        from agent.dns.server import DnsServer
        from agent.dns.zone import Zone

        zone = Zone("cluster.local", zone_objects(services), [])
        server = DnsServer(lambda: zone, [], "127.0.0.1", 0)
        await server.start()
        port = server.port
    else:
        transport, _ = await loop.create_datagram_endpoint(_Floor, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
    print(port, flush=True)
    await asyncio.Event().wait()


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        fut = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if fut is not None and not fut.done():
            fut.set_result(data)


async def load(port: int, queries: list[bytes], outstanding: int) -> tuple[float, list[float]]:
    """Send ``queries`` with ``outstanding`` in flight: (seconds, latencies in ms)."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _Client, remote_addr=("127.0.0.1", port)
    )
    latencies: list[float] = []
    todo = list(enumerate(queries))

    async def worker() -> None:
        while todo:
            qid, msg = todo.pop()
            fut = client.waiting[qid] = loop.create_future()
            start = time.perf_counter()
            transport.sendto(qid.to_bytes(2, "big") + msg[2:])
            await asyncio.wait_for(fut, 2)
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(outstanding)))
    elapsed = time.perf_counter() - start
    transport.close()
    return elapsed, latencies


def measure(kind: str, args: argparse.Namespace) -> dict[str, float]:
    """Start one server process and load it."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--services", str(args.services)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        rng = random.Random(1)
        names = [
            f"svc{(i := rng.randrange(args.services))}.ns{i % 10}.svc.cluster.local"
            for _ in range(args.queries)
        ]
        queries = [wire.build_query(name, wire.A) for name in names]
        asyncio.run(load(port, queries[:200], 1))  # warm-up
        _, seq = asyncio.run(load(port, queries, 1))
        elapsed, _ = asyncio.run(load(port, queries * 3, 32))
        return {
            "p50_ms": pct(seq, 0.5),
            "p99_ms": pct(seq, 0.99),
            "qps": len(queries) * 3 / elapsed,
            "rss_mb": rss_mb(proc.pid),
        }
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--serve", choices=["dns", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.services))
    elif args.inside:
        print(json.dumps({kind: measure(kind, args) for kind in ("dns", "floor")}, indent=1))
    else:
        with isolated_netns() as prefix:
            subprocess.run(
                [*prefix, sys.executable, __file__, "--inside", *sys.argv[1:]], check=True
            )


if __name__ == "__main__":
    main()
