"""Fleet benchmark: ``edgek sim`` nodes running pods created as Deployments.

Run: python tests/bench/bench_fleet.py [--nodes 1000] [--deployments 100] [--replicas 100]

Two servers are measured, each on its own data dir with its own ``edgek sim`` (same node
count, pods Ready 1 s after they start):

* **scheduler run** -- the normal server. All Deployments are applied at once; a pods watch
  records when each pod appears, is bound (``spec.nodeName`` set) and is Running and Ready.
  Scheduling throughput is the steady-state bind rate (10th to 90th percentile of the bind
  times); afterwards the server's RSS and its CPU while idle (heartbeats only) are sampled.
* **floor run** -- the same, with ``--disable scheduler``: once every pod exists (Pending),
  a client binds them round-robin through ``pods/{name}/binding`` with 64 requests in
  flight: binds with no placement work, through the API (the scheduler binds in-process).

Server CPU per bound pod is measured in both runs over the binding window (``/proc`` CPU
times of the server process). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.procstats import cpu_seconds, pct, rss_mb  # noqa: E402
from tests.helpers import ServerProcess, free_port, ssl_context  # noqa: E402

NAMESPACE = "fleet"
CLUSTER_CIDR = "10.64.0.0/12"
PY_SPY = str(Path(sys.executable).parent / "py-spy")


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app:1",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ]
                },
            },
        },
    }


@dataclass
class PodTimes:
    """When the watch first saw each pod in each state (perf_counter seconds)."""

    created: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # unbound pod -> seen order

    def observe(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        now = time.perf_counter()
        self.created.setdefault(name, now)
        if (obj.get("spec") or {}).get("nodeName"):
            self.bound.setdefault(name, now)
            self.pending.pop(name, None)
        elif name not in self.bound:
            self.pending.setdefault(name, len(self.created))
        status = obj.get("status") or {}
        if status.get("phase") == "Running":
            self.running.setdefault(name, now)
            for c in status.get("conditions") or []:
                if c.get("type") == "Ready" and c.get("status") == "True":
                    self.ready.setdefault(name, now)


class Sim:
    """An ``edgek sim`` subprocess."""

    def __init__(self, srv: ServerProcess, nodes: int, log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgek",
                "sim",
                "--server",
                srv.url,
                "--kubeconfig",
                str(srv.kubeconfig),
                "--nodes",
                str(nodes),
                "--pod-ready-seconds",
                "1",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    def wait_registered(self, timeout: float) -> float:
        """Seconds until the sim printed its summary line (all nodes registered)."""
        assert self.proc.stdout is not None
        t0 = time.perf_counter()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready or not self.proc.stdout.readline():
            raise RuntimeError("edgek sim did not register its nodes")
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Client:
    """Talks to one server: apply Deployments, watch pods, bind."""

    def __init__(self, base: str, ctx: ssl.SSLContext) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=64),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )
        self.times = PodTimes()
        self.changed = asyncio.Event()
        self.rewatches = 0

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with self.session.request(method, self.base + path, json=body) as r:
            data = await r.read()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
            return dict(json.loads(data))

    async def watch_pods(self, started: asyncio.Event) -> None:
        """Follow the pods like a reflector: re-watch from the last revision when the server
        ends the watch (it drops watchers that fall behind), re-list after a 410."""
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        rv = ""
        while True:
            if not rv:
                listed = await self.request("GET", path)
                for obj in listed["items"]:
                    self.times.observe(obj)
                rv = listed["metadata"]["resourceVersion"]
            url = f"{self.base}{path}?watch=1&resourceVersion={rv}&allowWatchBookmarks=1"
            async with self.session.get(url) as r:
                started.set()
                async for line in r.content:
                    ev = json.loads(line)
                    if ev["type"] == "ERROR":
                        rv = ""
                        break
                    rv = ev["object"]["metadata"]["resourceVersion"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.times.observe(ev["object"])
                        self.changed.set()
            self.rewatches += 1

    async def wait(self, what: str, done: Any, limit: float) -> None:
        """Until ``done()`` holds (progress on stderr every 5 s); at most ``limit`` s."""
        deadline = time.monotonic() + limit
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"timed out waiting for {what}")
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 5.0))
            except TimeoutError:
                t = self.times
                print(
                    f"waiting for {what}: created {len(t.created)} bound {len(t.bound)} "
                    f"running {len(t.running)} ready {len(t.ready)}",
                    file=sys.stderr,
                )

    async def apply(self, deployments: int, replicas: int) -> None:
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
        await asyncio.gather(
            *(
                self.request("POST", path, deployment(f"app{i:03}", replicas))
                for i in range(deployments)
            )
        )

    async def bind_all(self, nodes: list[str], concurrency: int) -> None:
        """Bind every pending pod round-robin over ``nodes`` (the no-op scheduler)."""
        names = sorted(self.times.pending, key=self.times.pending.__getitem__)
        counter = iter(range(len(names)))

        async def worker() -> None:
            for i in counter:
                name = names[i]
                body = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": nodes[i % len(nodes)]},
                }
                await self.request(
                    "POST", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/binding", body
                )

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def steady_rate(times: list[float]) -> float:
    """Events per second between the 10th and the 90th percentile event."""
    times = sorted(times)
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    return (hi - lo) / (times[hi] - times[lo]) if times[hi] > times[lo] else 0.0


def start_run_server(tmp: Path, floor: bool) -> ServerProcess:
    """The server of one run, its data under ``tmp``; the floor run has no scheduler."""
    (tmp / "data").mkdir(parents=True)
    # the default 10.42.0.0/16 holds only 256 node /24s
    extra = ["--cluster-cidr", CLUSTER_CIDR]
    if floor:
        extra += ["--disable", "scheduler"]
    srv = ServerProcess(tmp / "data", free_port(), tmp / "server.log", extra)
    srv.start()
    return srv


async def measure_ready(client: Client, total: int, t0: float, out: dict[str, Any]) -> None:
    """Wait for every pod Ready; the times from the apply and the create/bind rates."""
    times = client.times
    await client.wait("all pods Ready", lambda: len(times.ready) >= total, 1800)
    out["apply_to_all_running_s"] = max(times.running.values()) - t0
    out["apply_to_all_ready_s"] = max(times.ready.values()) - t0
    out["created_per_s"] = steady_rate(list(times.created.values()))
    out["bound_per_s"] = steady_rate(list(times.bound.values()))
    lag = [times.bound[n] - times.created[n] for n in times.bound]
    out["create_to_bind_p50_ms"] = pct(lag, 0.5) * 1000
    out["create_to_bind_p99_ms"] = pct(lag, 0.99) * 1000


async def start_profiler(pid: int, path: Path) -> asyncio.subprocess.Process:
    """py-spy recording the server's raw stacks into ``path`` (stopped with SIGINT)."""
    profiler = await asyncio.create_subprocess_exec(
        PY_SPY,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "50",
        "--nonblocking",
        "-o",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1)
    return profiler


async def stop_profiler(profiler: asyncio.subprocess.Process) -> None:
    """Stop py-spy so that it writes its profile."""
    profiler.send_signal(signal.SIGINT)
    await asyncio.wait_for(profiler.wait(), 60)


def record_binding_cpu(
    out: dict[str, Any], total: int, wall: float, server: float, sim: float, own: float
) -> None:
    """The CPU seconds of server, sim and this bench from the apply to all bound, per pod
    and as a share of the machine."""
    out["server_cpu_ms_per_pod_created_and_bound"] = server / total * 1000
    out["sim_cpu_ms_per_pod_while_binding"] = sim / total * 1000
    # server + sim + this bench over the binding window, as a share of all the CPUs
    busy = server + sim + own
    out["machine_cpu_busy_pct_while_binding"] = busy / wall / (os.cpu_count() or 1) * 100


async def measure_floor(
    args: argparse.Namespace, client: Client, pid: int, t0: float, out: dict[str, Any]
) -> None:
    """The floor run after the apply: wait for every pod, then bind them all directly."""
    times = client.times
    total = args.deployments * args.replicas
    await client.wait("all pods created", lambda: len(times.pending) >= total, 900)
    out["pods_created_s"] = time.perf_counter() - t0
    nodes = [f"sim-{i}" for i in range(args.nodes)]
    cpu0 = cpu_seconds(pid)
    tb = time.perf_counter()
    await client.bind_all(nodes, args.bind_concurrency)
    await client.wait("all pods bound", lambda: len(times.bound) >= total, 900)
    out["bind_wall_s"] = time.perf_counter() - tb
    out["server_cpu_ms_per_bind"] = (cpu_seconds(pid) - cpu0) / total * 1000
    out["binds_per_s"] = steady_rate(list(times.bound.values()))


async def measure_idle(
    args: argparse.Namespace, pid: int, sim_pid: int, out: dict[str, Any]
) -> None:
    """Once all is Ready: the server's memory after settling, and the idle CPU of server and
    sim."""
    await asyncio.sleep(args.settle)
    out["server_rss_mb"] = rss_mb(pid)
    c0, s0, w0 = cpu_seconds(pid), cpu_seconds(sim_pid), time.perf_counter()
    await asyncio.sleep(args.idle_seconds)
    wall = time.perf_counter() - w0
    out["server_idle_cpu_pct"] = (cpu_seconds(pid) - c0) / wall * 100
    out["sim_idle_cpu_pct"] = (cpu_seconds(sim_pid) - s0) / wall * 100
    out["server_rss_mb_after_idle"] = rss_mb(pid)


async def run_one(args: argparse.Namespace, tmp: Path, floor: bool) -> dict[str, Any]:
    """One server + sim; the scheduler run or the floor run."""
    total = args.deployments * args.replicas
    srv = start_run_server(tmp, floor)
    pid = srv.pid
    out: dict[str, Any] = {}
    sim = Sim(srv, args.nodes, tmp / "sim.log")
    client = Client(srv.url, ssl_context(srv.kubeconfig, tmp))
    watch: asyncio.Task[None] | None = None
    profiler: asyncio.subprocess.Process | None = None
    try:
        print(f"{'floor' if floor else 'scheduler'} run: server up, starting sim", file=sys.stderr)
        out["nodes_registered_s"] = sim.wait_registered(600)
        await client.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        started = asyncio.Event()
        watch = asyncio.create_task(client.watch_pods(started))
        await asyncio.wait_for(started.wait(), 30)
        await asyncio.sleep(2)  # let the sim's registration writes drain
        times = client.times
        if args.profile and not floor:
            profiler = await start_profiler(pid, args.profile)
        cpu0 = cpu_seconds(pid)
        sim0, own0 = cpu_seconds(sim.proc.pid), time.process_time()
        t0 = time.perf_counter()
        await client.apply(args.deployments, args.replicas)
        if floor:
            await measure_floor(args, client, pid, t0, out)
            return out
        await client.wait("all pods bound", lambda: len(times.bound) >= total, 1800)
        cpu1 = cpu_seconds(pid)
        sim1, own1, wall = cpu_seconds(sim.proc.pid), time.process_time(), time.perf_counter() - t0
        if profiler is not None:
            await stop_profiler(profiler)
            profiler = None
        out["all_bound_s"] = time.perf_counter() - t0
        record_binding_cpu(out, total, wall, cpu1 - cpu0, sim1 - sim0, own1 - own0)
        await measure_ready(client, total, t0, out)
        out["server_cpu_s_to_all_ready"] = cpu_seconds(pid) - cpu0
        out["bench_rewatches"] = client.rewatches
        await measure_idle(args, pid, sim.proc.pid, out)
        return out
    finally:
        if profiler is not None:
            profiler.kill()
            await profiler.wait()
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await client.close()
        sim.stop()
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--deployments", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--bind-concurrency", type=int, default=64)
    ap.add_argument("--settle", type=float, default=10.0, help="seconds before sampling RSS")
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument(
        "--profile", type=Path, help="py-spy the server from apply to all bound (raw stacks)"
    )
    ap.add_argument("--no-floor", action="store_true", help="skip the floor run")
    ap.add_argument("--keep", type=Path, help="keep data dirs and logs under this directory")
    args = ap.parse_args()
    result: dict[str, Any] = {
        "nodes": args.nodes,
        "pods": args.deployments * args.replicas,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = args.keep or Path(d)
        result["scheduler"] = asyncio.run(run_one(args, tmp / "scheduler", floor=False))
        if not args.no_floor:
            result["floor"] = asyncio.run(run_one(args, tmp / "floor", floor=True))
            result["bind_ratio_to_floor"] = (
                result["scheduler"]["bound_per_s"] / result["floor"]["binds_per_s"]
            )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
