"""The agent's pod start, RSS and idle CPU (issue 11, Performance), beside their floors.

Inside a network namespace with no link out (tests/agent/agentcluster.py): an ``edgek server``
(``--disable-agent``) and an ``edgek agent`` with its own Podman. Pods (busybox ``sleep``) are
created one at a time; each is timed from just before its POST to its Ready condition seen on
a pod watch. After the 10th pod is Ready the agent's RSS (``/proc`` of the agent process; its
Podman service reported separately) and its CPU over an idle window are taken. The floor, in
the same run, is ``podman pod create`` + ``podman run -d`` of the same image per pod
(tests/bench/podman_floor.py), on a fresh Podman of the same kind.

    python tests/bench/bench_pod_start.py [--pods 30] [--idle 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from tests.agent.agentcluster import URL, AgentCluster  # noqa: E402
from tests.agent.busybox_image import IMAGE, write_busybox_archive  # noqa: E402
from tests.agent.netns import isolated_netns  # noqa: E402
from tests.bench.podman_floor import bench_podman, pod_start_floor  # noqa: E402
from tests.bench.procstats import cpu_seconds, interpreter_rss_mb, pct, rss_mb  # noqa: E402
from tests.helpers import ssl_context  # noqa: E402

NAMESPACE = "default"
RSS_PODS = 10


def pod_manifest(name: str) -> dict[str, Any]:
    """A busybox pod that sleeps (the floor runs the same image and command)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pod-start"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }


def is_ready(pod: dict[str, Any]) -> bool:
    """Whether the pod's Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def podman_service_pid(agent_pid: int) -> int:
    """The agent's ``podman system service`` (a child of the agent), 0 when not found."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == agent_pid and b"service" in cmdline and b"system" in cmdline:
            return int(entry.name)
    return 0


class Measure:
    """Creates the pods one at a time against the server and watches them become Ready."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.ready: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def watch(self, started: asyncio.Event) -> None:
        """Record the first moment each pod is seen Ready."""
        path = f"{URL}/api/v1/namespaces/{NAMESPACE}/pods?watch=1"
        async with self.session.get(path) as r:
            started.set()
            async for line in r.content:
                pod = json.loads(line)["object"]
                name = pod["metadata"]["name"]
                if name not in self.ready and is_ready(pod):
                    self.ready[name] = time.perf_counter()
                    self.changed.set()

    async def start_one(self, name: str) -> float:
        """Create the pod; seconds until the watch sees it Ready (at most a minute)."""
        started = time.perf_counter()
        url = f"{URL}/api/v1/namespaces/{NAMESPACE}/pods"
        async with self.session.post(url, json=pod_manifest(name)) as r:
            if r.status >= 300:
                raise RuntimeError(f"create {name}: {r.status} {await r.text()}")
        deadline = started + 60
        while name not in self.ready:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.perf_counter()))
        return self.ready[name] - started


async def idle_figures(agent_pid: int, idle: float) -> dict[str, float]:
    """The agent's (and its Podman service's) RSS now and CPU share over ``idle`` seconds."""
    podman_pid = podman_service_pid(agent_pid)
    pids = {"agent": agent_pid, "podman": podman_pid}
    before = {k: cpu_seconds(p) for k, p in pids.items() if p}
    await asyncio.sleep(idle)
    out = {f"{k}_rss_mb": rss_mb(p) for k, p in pids.items() if p}
    out.update(
        {f"{k}_idle_cpu_pct": (cpu_seconds(pids[k]) - v) / idle * 100 for k, v in before.items()}
    )
    return out


async def measure(kubeconfig: Path, tmp: Path, pods: int, agent_pid: int, idle: float) -> dict:
    """Run inside the namespace: the pod starts and, at RSS_PODS pods, the idle figures."""
    ctx = ssl_context(kubeconfig, tmp)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    ) as session:
        m = Measure(session)
        started = asyncio.Event()
        watch = asyncio.create_task(m.watch(started))
        await started.wait()
        times, figures = [], {}
        for i in range(pods):
            times.append(await m.start_one(f"bench-{i}"))
            print(f"pod {i}: {times[-1]:.3f} s", file=sys.stderr)
            if i + 1 == RSS_PODS:
                figures = await idle_figures(agent_pid, idle)
        watch.cancel()
    return {"times": times, **figures}


def unmount_under(root: Path) -> None:
    """Lazily unmount what is still mounted under ``root`` (storage overlays, pod volumes),
    deepest first, so the scratch directory can be removed."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def run_agent(pods: int, idle: float, root: Path) -> dict[str, Any]:
    """Server + agent in a fresh namespace; the measurement runs in it as a subprocess."""
    tar = root / "busybox.tar"
    write_busybox_archive(tar)
    with isolated_netns() as prefix:
        # root is short (Podman caps the runroot path); a node name of its own keeps the
        # pod network's host-wide IPAM state apart from any other agent's
        cluster = AgentCluster(prefix, root, tar, node=f"bench{os.getpid()}")
        try:
            cluster.start_server()
            cluster.start_agent()
            assert cluster.agent.proc is not None
            args = [str(cluster.kubeconfig), str(root), str(pods), str(cluster.agent.proc.pid)]
            cmd = [*prefix, sys.executable, __file__, "--inside", *args, "--idle", str(idle)]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
            return dict(json.loads(out.stdout))
        except BaseException:
            print(cluster.agent.tail(), file=sys.stderr)
            log = cluster.agent_dir / "agent" / "podman" / "service.log"
            print(log.read_text() if log.exists() else "", file=sys.stderr)
            raise
        finally:
            # through the agent's Podman while it runs: the CLI cleanup may miss them
            with contextlib.suppress(subprocess.TimeoutExpired):
                cluster.podman("pod", "rm", "-af", "-t", "0", check=False)
            cluster.stop()
            kill_conmons_under(root)
            unmount_under(root)


async def run_floor(pods: int) -> list[float]:
    """The floor: podman pod create + podman run -d per pod, on a fresh Podman."""
    async with bench_podman() as service:
        storage = service.layout.dir("storage")
        times = await pod_start_floor(service, pods)
    # the containers ``podman run -d`` made outlive their removal through the API
    kill_conmons_under(storage)
    return times


def kill_conmons_under(path: Path) -> None:
    """SIGKILL what the conmon processes of containers stored under ``path`` supervise,
    then those conmons."""
    conmons = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if (
                entry.name.isdigit()
                and args[0].endswith(b"/conmon")
                and any(a.startswith(f"{path}/".encode()) for a in args)
            ):
                conmons.append(int(entry.name))
    for pid in conmons:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            for child in children:
                os.kill(int(child), signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)


def report(result: dict[str, Any], floor: list[float]) -> None:
    """Print the figures beside the floor."""
    times = result["times"]
    p50, fp50 = pct(times, 0.5), pct(floor, 0.5)
    print(f"pod start over {len(times)} pods: p50 {p50:.3f} s, max {max(times):.3f} s")
    print(f"floor (podman pod create + run -d): p50 {fp50:.3f} s, max {max(floor):.3f} s")
    print(f"ratio p50 {p50 / fp50:.2f} (target <= 1.5), max <= 5 s")
    for key in ("agent_rss_mb", "podman_rss_mb"):
        if key in result:
            print(f"{key} with {RSS_PODS} pods: {result[key]:.1f}")
    for key in ("agent_idle_cpu_pct", "podman_idle_cpu_pct"):
        if key in result:
            print(f"{key}: {result[key]:.2f} %")
    print(f"interpreter idle RSS floor: {interpreter_rss_mb(sys.executable):.1f} MB")


def main() -> None:
    """Parse arguments; run the agent part, then the floor, and report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--idle", type=float, default=60, help="idle CPU window, seconds")
    parser.add_argument("--inside", nargs=4, metavar=("KUBECONFIG", "TMP", "PODS", "PID"))
    args = parser.parse_args()
    if args.inside:
        kubeconfig, tmp, pods, pid = args.inside
        result = asyncio.run(measure(Path(kubeconfig), Path(tmp), int(pods), int(pid), args.idle))
        print(json.dumps(result))
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, the agent's Podman)")
    with tempfile.TemporaryDirectory(prefix="ekb") as tmp:
        result = run_agent(args.pods, args.idle, Path(tmp))
    floor = asyncio.run(run_floor(args.pods))
    report(result, floor)


if __name__ == "__main__":
    main()
