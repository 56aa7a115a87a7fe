"""Podman API client choice: podman-py (synchronous, so the agent would call it from
threads) against edgek's aiohttp client over the unix socket (agent/podman/client.py).

Per client, in a fresh interpreter: import time and RSS after import, RSS after the calls,
sequential ``container inspect`` latency (p50/p99), and inspects/s at concurrency 8 (threads
for podman-py, tasks for aiohttp). Both run on one interpreter (``--python``, which must have
podman-py installed; it is not an edgek dependency) against the agent's own Podman service.

    python tests/bench/bench_podman_client.py --python /path/to/venv-with-podman/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CALLS, CONCURRENT_CALLS, CONCURRENCY = 500, 2000, 8


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def worker_podman_py(socket: str, container: str) -> dict[str, float]:
    """podman-py: sequential calls, then a thread pool of CONCURRENCY (as asyncio.to_thread)."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    import podman

    imported = time.perf_counter() - started
    rss_import = _rss_mb()
    client = podman.PodmanClient(base_url=f"unix://{socket}")
    lat = []
    for _ in range(CALLS):
        t = time.perf_counter()
        client.containers.get(container)
        lat.append(time.perf_counter() - t)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        t = time.perf_counter()
        list(pool.map(lambda _: client.containers.get(container), range(CONCURRENT_CALLS)))
        rate = CONCURRENT_CALLS / (time.perf_counter() - t)
    return _figures(imported, rss_import, lat, rate)


def worker_aiohttp(socket: str, container: str) -> dict[str, float]:
    """edgek's client: sequential awaits, then CONCURRENCY tasks on one loop."""
    started = time.perf_counter()
    from agent.podman.client import PodmanClient

    imported = time.perf_counter() - started
    rss_import = _rss_mb()

    async def run() -> tuple[list[float], float]:
        async with PodmanClient(socket) as client:
            lat = []
            for _ in range(CALLS):
                t = time.perf_counter()
                await client.container_inspect(container)
                lat.append(time.perf_counter() - t)

            async def share(n: int) -> None:
                for _ in range(n):
                    await client.container_inspect(container)

            t = time.perf_counter()
            await asyncio.gather(
                *(share(CONCURRENT_CALLS // CONCURRENCY) for _ in range(CONCURRENCY))
            )
            return lat, CONCURRENT_CALLS / (time.perf_counter() - t)

    lat, rate = asyncio.run(run())
    return _figures(imported, rss_import, lat, rate)


def _figures(imported: float, rss_import: float, lat: list[float], rate: float) -> dict:
    return {
        "import_ms": imported * 1000,
        "rss_import_mb": rss_import,
        "rss_after_mb": _rss_mb(),
        "p50_ms": _pct(lat, 0.5) * 1000,
        "p99_ms": _pct(lat, 0.99) * 1000,
        "rate_per_s": rate,
    }


def _worker(python: str, kind: str, socket: str, container: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [python, __file__, "--worker", kind, socket, container],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    ).stdout
    return dict(json.loads(out))


async def main(python: str, rounds: int) -> None:
    """Start the agent's Podman, run one sleeping container, measure both clients."""
    from agent.podman.client import PodmanClient
    from tests.agent.busybox_image import IMAGE
    from tests.bench.podman_floor import bench_podman
    from tests.bench.procstats import interpreter_rss_mb

    async with bench_podman() as service, PodmanClient(service.socket) as client:
        pod = await client.pod_create({"name": "bench", "netns": {"nsmode": "none"}})
        ctr = await client.container_create(
            {"name": "bench-main", "pod": pod, "image": IMAGE, "command": ["sleep", "3600"]}
        )
        await client.pod_start(pod)
        print(
            f"interpreter + asyncio: {await asyncio.to_thread(interpreter_rss_mb, python):.1f} MB"
        )
        for kind in ("aiohttp", "podman-py"):
            runs = [
                await asyncio.to_thread(_worker, python, kind, str(service.socket), ctr)
                for _ in range(rounds)
            ]
            best = {k: min(r[k] for r in runs) for k in runs[0]}
            best["rate_per_s"] = max(r["rate_per_s"] for r in runs)
            print(kind, json.dumps({k: round(v, 2) for k, v in best.items()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "SOCKET", "CONTAINER"))
    args = parser.parse_args()
    if args.worker:
        kind, sock, ctr = args.worker
        fn = worker_aiohttp if kind == "aiohttp" else worker_podman_py
        print(json.dumps(fn(sock, ctr)))
    else:
        asyncio.run(main(args.python, args.rounds))
