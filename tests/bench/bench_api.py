"""API server benchmark: each figure beside its floor, measured in the same run.

Run: python tests/bench/bench_api.py [--creates 5000]

Floors: request handling = the same aiohttp HTTPS stack with a no-op echo handler
(tests/bench/floor_server.py); start-up and RSS = the bare interpreter (`python -c pass`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.procstats import pct, rss_mb  # noqa: E402
from tests.helpers import ServerProcess, free_port, ssl_context  # noqa: E402


async def post_many(
    session: aiohttp.ClientSession, url: str, bodies: list[dict], concurrency: int
) -> tuple[float, list[float]]:
    queue = list(reversed(bodies))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            async with session.post(url, json=body) as r:
                await r.read()
                if r.status >= 300:
                    raise RuntimeError(f"POST {url}: {r.status}")
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(bodies) / (time.perf_counter() - t0), latencies


async def get_many(
    session: aiohttp.ClientSession, url: str, n: int, concurrency: int, headers: dict | None = None
) -> list[float]:
    latencies: list[float] = []
    remaining = [n]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            t0 = time.perf_counter()
            async with session.get(url, headers=headers) as r:
                await r.read()
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def cm(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"k": "v" * 64},
    }


async def watch_latency(
    session: aiohttp.ClientSession, base: str, watchers: int, creates: int, ctx: ssl.SSLContext
) -> list[float]:
    """Create ConfigMaps while `watchers` watches run; delivery latency per event per watcher."""
    watch_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0))
    ns_url = f"{base}/api/v1/namespaces/wbench/configmaps"
    created_at: dict[str, float] = {}
    delays: list[float] = []
    listed = await (await session.get(ns_url)).json()
    rv = listed["metadata"]["resourceVersion"]
    ready = asyncio.Event()
    started = [0]

    async def watcher() -> None:
        async with watch_session.get(
            f"{ns_url}?watch=1&resourceVersion={rv}&timeoutSeconds=120"
        ) as r:
            started[0] += 1
            if started[0] == watchers:
                ready.set()
            seen = 0
            async for line in r.content:
                ev = json.loads(line)
                name = ev["object"]["metadata"]["name"]
                delays.append(time.perf_counter() - created_at[name])
                seen += 1
                if seen == creates:
                    return

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.sleep(0.5)
    for i in range(creates):
        name = f"w{i}"
        created_at[name] = time.perf_counter()
        async with session.post(ns_url, json=cm(name)) as r:
            await r.read()
        await asyncio.sleep(0.005)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    await watch_session.close()
    return delays


async def run(
    args: argparse.Namespace, srv: ServerProcess, floor_url: str, ctx: ssl.SSLContext
) -> dict:
    out: dict = {}
    conn = aiohttp.TCPConnector(ssl=ctx, limit=64)
    async with aiohttp.ClientSession(connector=conn) as s:
        base = srv.url
        for ns in ("bench", "wbench", "lbench"):
            async with s.post(f"{base}/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
                await r.read()
        # warm-up both
        await post_many(s, f"{floor_url}/echo", [cm(f"x{i}") for i in range(300)], 16)
        await post_many(
            s,
            f"{base}/api/v1/namespaces/bench/configmaps",
            [cm(f"warm{i}") for i in range(300)],
            16,
        )
        floor_rate, floor_lat = await post_many(
            s, f"{floor_url}/echo", [cm(f"f{i}") for i in range(args.creates)], 16
        )
        rate, lat = await post_many(
            s,
            f"{base}/api/v1/namespaces/bench/configmaps",
            [cm(f"c{i}") for i in range(args.creates)],
            16,
        )
        out["create_per_s"] = rate
        out["floor_post_per_s"] = floor_rate
        out["create_ratio"] = rate / floor_rate
        out["create_p99_ms"] = pct(lat, 0.99) * 1000
        out["floor_post_p99_ms"] = pct(floor_lat, 0.99) * 1000
        floor_get = await get_many(s, f"{floor_url}/get", 3000, 16)
        get = await get_many(s, f"{base}/api/v1/namespaces/bench/configmaps/c1", 3000, 16)
        out["get_p99_ms"] = pct(get, 0.99) * 1000
        out["floor_get_p99_ms"] = pct(floor_get, 0.99) * 1000
        out["get_p99_ratio"] = out["get_p99_ms"] / out["floor_get_p99_ms"]
        await post_many(
            s, f"{base}/api/v1/namespaces/lbench/configmaps", [cm(f"l{i}") for i in range(1000)], 16
        )
        lurl = f"{base}/api/v1/namespaces/lbench/configmaps"
        lj = await get_many(s, lurl, 20, 1)
        table_accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
        lt = await get_many(s, lurl, 20, 1, headers=table_accept)
        out["list1000_json_ms"] = statistics.median(lj) * 1000
        out["list1000_table_ms"] = statistics.median(lt) * 1000
        delays = await watch_latency(s, base, args.watchers, args.watch_events, ctx)
        out["watch_p99_ms"] = pct(delays, 0.99) * 1000
        out["watch_p50_ms"] = pct(delays, 0.50) * 1000
        out["watch_events_delivered"] = len(delays)
    return out


def interpreter_floor() -> tuple[float, float]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    start = time.perf_counter() - t0
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    time.sleep(1)
    rss = rss_mb(p.pid)
    p.wait()
    return start, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=5000)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--watch-events", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "data").mkdir()
        srv = ServerProcess(tmp / "data", free_port(), tmp / "server.log")
        srv.start()
        time.sleep(3)
        idle_rss = rss_mb(srv.pid)
        # the usual idle state: restarted on its (still nearly empty) data dir
        srv.stop()
        srv.start()
        time.sleep(3)
        idle_rss_restart = rss_mb(srv.pid)
        floor_port = free_port()
        floor = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests/bench/floor_server.py"),
                str(tmp / "data" / "server" / "tls"),
                str(floor_port),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        time.sleep(2)
        ctx = ssl_context(srv.kubeconfig, tmp)
        try:
            results = asyncio.run(run(args, srv, f"https://127.0.0.1:{floor_port}", ctx))
        finally:
            floor.terminate()
            srv.stop()
        # start-up on an existing data dir (now holding the benchmark's objects)
        t0 = time.perf_counter()
        srv.start()
        results["start_to_readyz_s"] = time.perf_counter() - t0
        srv.stop()
    py_start, py_rss = interpreter_floor()
    results["idle_rss_first_start_mb"] = idle_rss
    results["idle_rss_restart_mb"] = idle_rss_restart
    results["python_pass_start_s"] = py_start
    results["python_idle_rss_mb"] = py_rss
    for k, v in results.items():
        print(f"{k:28s} {v:10.3f}" if isinstance(v, float) else f"{k:28s} {v}")


if __name__ == "__main__":
    main()
