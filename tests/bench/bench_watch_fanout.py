"""Watch fan-out benchmark: many node-scoped pod watches, as the kubelets of a fleet hold.

Run: python tests/bench/bench_watch_fanout.py [--watchers 300] [--pods 2000]

A server (``--disable-agent``) is started; a child process opens W watches on
``/api/v1/pods?watch=1&fieldSelector=spec.nodeName=node-<i>`` over one aiohttp session, then
this process creates P pods spread over the W node names and merge-patches each once. Reported:
server CPU seconds (utime + stime from /proc) per written event, the p50/p99 delay from the
start of a write to its delivery at the one watcher whose node it names, and written events/s.
Every watcher must receive exactly its own pods' ADDED and MODIFIED events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.procstats import cpu_seconds, pct  # noqa: E402
from tests.helpers import ServerProcess, free_port, ssl_context  # noqa: E402

NS = "fanout"


def node_of(i: int, watchers: int) -> str:
    return f"node-{i % watchers}"


def pod(i: int, watchers: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{i}", "labels": {"app": "fanout"}},
        "spec": {
            "nodeName": node_of(i, watchers),
            "containers": [{"name": "c", "image": "registry.local/app:1"}],
        },
    }


# ------------------------------------------------------------------ watch child process


async def watch_all(
    base: str, ctx: Any, watchers: int, pods: int, rv: str
) -> dict[str, list[tuple[str, str, float]]]:
    """Hold the watches: {node: [(type, pod name, monotonic time of arrival), ...]}."""
    expected = [0] * watchers
    for i in range(pods):
        expected[i % watchers] += 2
    received: dict[str, list[tuple[str, str, float]]] = {}
    opened = [0]
    conn = aiohttp.TCPConnector(ssl=ctx, limit=watchers + 16)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def one(i: int) -> None:
            node = f"node-{i}"
            got = received.setdefault(node, [])
            url = (
                f"{base}/api/v1/pods?watch=1&resourceVersion={rv}&timeoutSeconds=900"
                f"&fieldSelector=spec.nodeName={node}"
            )
            async with session.get(url) as r:
                assert r.status == 200, await r.text()
                opened[0] += 1
                if opened[0] == watchers:
                    print("ready", flush=True)
                while len(got) < expected[i]:
                    line = await r.content.readline()
                    if not line:
                        break
                    now = time.monotonic()
                    ev = json.loads(line)
                    got.append((ev["type"], ev["object"]["metadata"]["name"], now))

        await asyncio.gather(*(one(i) for i in range(watchers)))
    return received


# ------------------------------------------------------------------ writer (main process)


async def write_all(
    base: str, ctx: Any, watchers: int, pods: int, concurrency: int
) -> dict[tuple[str, str], float]:
    """Create then patch every pod; the monotonic start time of each write."""
    started: dict[tuple[str, str], float] = {}
    conn = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    url = f"{base}/api/v1/namespaces/{NS}/pods"
    async with aiohttp.ClientSession(connector=conn) as session:

        async def run(jobs: list[int], patch: bool) -> None:
            while jobs:
                i = jobs.pop()
                name = f"p{i}"
                if patch:
                    started[("MODIFIED", name)] = time.monotonic()
                    async with session.patch(
                        f"{url}/{name}",
                        data=json.dumps({"metadata": {"labels": {"patched": "1"}}}),
                        headers={"Content-Type": "application/merge-patch+json"},
                    ) as r:
                        await r.read()
                        assert r.status == 200, r.status
                else:
                    started[("ADDED", name)] = time.monotonic()
                    async with session.post(url, json=pod(i, watchers)) as r:
                        await r.read()
                        assert r.status == 201, r.status

        for patch in (False, True):
            jobs = list(reversed(range(pods)))
            await asyncio.gather(*(run(jobs, patch) for _ in range(concurrency)))
    return started


async def setup(base: str, ctx: Any) -> str:
    """Create the namespace; the pod list's resourceVersion to watch from."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.post(f"{base}/api/v1/namespaces", json={"metadata": {"name": NS}}) as r:
            await r.read()
        async with s.get(f"{base}/api/v1/pods?limit=1") as r:
            return str((await r.json())["metadata"]["resourceVersion"])


def measure(args: argparse.Namespace, srv: ServerProcess, tmp: Path) -> dict[str, float]:
    ctx = ssl_context(srv.kubeconfig, tmp)
    rv = asyncio.run(setup(srv.url, ctx))
    received_file = tmp / "received.json"
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            srv.url,
            str(srv.kubeconfig),
            rv,
            str(received_file),
            "--watchers",
            str(args.watchers),
            "--pods",
            str(args.pods),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("watch child failed")
        time.sleep(1.0)
        pid = srv.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        started = asyncio.run(write_all(srv.url, ctx, args.watchers, args.pods, args.concurrency))
        written = time.monotonic() - t0
        child.wait(timeout=600)
        cpu = cpu_seconds(pid) - cpu0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    received: dict[str, list[list[Any]]] = json.loads(received_file.read_text())
    delays: list[float] = []
    for node, events in received.items():
        for kind, name, at in events:
            i = int(name[1:])
            if node_of(i, args.watchers) != node:
                raise AssertionError(f"{node} received {name} of {node_of(i, args.watchers)}")
            delays.append(at - started[(kind, name)])
    events = 2 * args.pods
    if len(delays) != events:
        raise AssertionError(f"{len(delays)} events delivered, {events} expected")
    return {
        "watchers": args.watchers,
        "events_written": events,
        "write_events_per_s": events / written,
        "server_cpu_s": cpu,
        "server_cpu_ms_per_event": cpu / events * 1000,
        "delivery_p50_ms": pct(delays, 0.50) * 1000,
        "delivery_p99_ms": pct(delays, 0.99) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--watchers", type=int, default=300)
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--child", nargs=4, metavar=("URL", "KUBECONFIG", "RV", "OUT"))
    args = ap.parse_args()
    if args.child:
        url, kubeconfig, rv, out = args.child
        with tempfile.TemporaryDirectory() as d:
            ctx = ssl_context(Path(kubeconfig), Path(d))
            received = asyncio.run(watch_all(url, ctx, args.watchers, args.pods, rv))
        Path(out).write_text(json.dumps(received))
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "data").mkdir()
        srv = ServerProcess(tmp / "data", args.port or free_port(), tmp / "server.log")
        srv.start()
        try:
            results = measure(args, srv, tmp)
        finally:
            srv.stop()
    for k, v in results.items():
        print(f"{k:28s} {v:10.3f}" if isinstance(v, float) else f"{k:28s} {v}")


if __name__ == "__main__":
    main()
