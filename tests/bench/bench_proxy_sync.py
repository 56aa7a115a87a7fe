"""Service proxy sync at size: 1,000 Services x 5 ready endpoints (NodePort, so every port
has SVC, EXT and SEP chains), inside fresh test network namespaces (nothing leaves them).

- full: build the ruleset + ``Applier.apply`` into empty tables (reads the tables, renders,
  one ``iptables-restore --noflush``), beside the floor: ``iptables-restore --noflush`` of
  the very same restore text into another empty namespace;
- incremental: one endpoint of one service turns unready (its slice gets a new
  resourceVersion), build + apply after a full sync, as the agent's syncer does it (the other
  services' rules come from the build cache, only the changed chains are written).

Best of ``--repeat`` for each.

    python tests/bench/bench_proxy_sync.py [--services 1000] [--endpoints 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from typing import Any

from netpolicy.iptables import Applier, run
from netpolicy.proxy import Cache, NodeFacts, build
from tests.agent.netns import isolated_netns

NODE = NodeFacts("n1")


def objects(services: int, endpoints: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Services and one EndpointSlice per service."""
    svcs, slices = [], []
    for i in range(services):
        name = f"svc-{i}"
        svcs.append(
            {
                "metadata": {"namespace": "bench", "name": name, "resourceVersion": "1"},
                "spec": {
                    "type": "NodePort",
                    "clusterIP": f"10.43.{i // 250}.{i % 250 + 1}",
                    "ports": [
                        {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + i}
                    ],
                },
            }
        )
        slices.append(
            {
                "metadata": {
                    "namespace": "bench",
                    "name": f"{name}-a",
                    "labels": {"kubernetes.io/service-name": name},
                    "resourceVersion": "1",
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [
                            f"10.42.{(i * endpoints + e) // 250}.{(i * endpoints + e) % 250 + 2}"
                        ],
                        "nodeName": "n1",
                        "conditions": {"ready": True},
                    }
                    for e in range(endpoints)
                ],
            }
        )
    return svcs, slices


async def one_round(services: int, endpoints: int) -> dict[str, float]:
    """One full sync, its floor and one incremental sync, in fresh namespaces."""
    svcs, slices = objects(services, endpoints)
    with isolated_netns() as prefix:
        applier = Applier(prefix)
        cache: Cache = {}
        t0 = time.perf_counter()
        text = await applier.apply(build(svcs, slices, NODE, cache))
        full = time.perf_counter() - t0
        changed = slices[services // 2]
        changed["endpoints"][0]["conditions"]["ready"] = False
        changed["metadata"]["resourceVersion"] = "2"
        t0 = time.perf_counter()
        await applier.apply(build(svcs, slices, NODE, cache))
        incremental = time.perf_counter() - t0
        rules = sum(1 for line in text.splitlines() if line.startswith("-A "))
    with isolated_netns() as prefix:
        t0 = time.perf_counter()
        await run([*prefix, "iptables-restore", "-w", "--noflush"], text)
        floor = time.perf_counter() - t0
    return {"full_s": full, "floor_s": floor, "incremental_s": incremental, "rules": rules}


def main() -> None:
    """Run the rounds and print the best figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["iptables-restore", "--version"], check=True, capture_output=True)
    rounds = [asyncio.run(one_round(args.services, args.endpoints)) for _ in range(args.repeat)]
    best = {k: min(r[k] for r in rounds) for k in ("full_s", "floor_s", "incremental_s")}
    best["ratio"] = best["full_s"] / best["floor_s"]
    best["rules"] = rounds[0]["rules"]
    print(json.dumps(best, indent=1))


if __name__ == "__main__":
    main()
