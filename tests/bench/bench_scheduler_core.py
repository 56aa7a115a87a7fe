"""Scheduler core benchmark: in-process filter + score + assume cost per pod.

Run as ``python tests/bench/bench_scheduler_core.py [--nodes N] [--pods N]``. Builds the
scheduler's cluster state with N ready nodes (4 cpu, 16Gi, 110 pods, zone labels but for the
``nozone`` shape) and places pods shaped like Deployment replicas (requests, an owner; the
``anti`` and ``spread`` shapes with preferred anti-affinity or a topology spread constraint) without any datastore: what is measured is the work a worker
does before awaiting the bind.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from server.scheduler.filters import Listers, PodCycle
from server.scheduler.nodeinfo import ClusterState, PodInfo
from server.scheduler.scheduler import select_node


def node(i: int, zoned: bool) -> dict[str, Any]:
    alloc = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    name = f"sim-{i:04}"
    labels = {"kubernetes.io/hostname": name}
    if zoned:
        labels["topology.kubernetes.io/zone"] = f"z{i % 3}"
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(i: int, owner: str, kind: str) -> dict[str, Any]:
    labels = {"app": owner[:8]}
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "app",
                "image": "x",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ],
        "priority": 0,
    }
    if kind == "spread":
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": labels},
            }
        ]
    elif kind == "anti":
        spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": labels},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    return {
        "metadata": {
            "name": f"p-{i}",
            "namespace": "default",
            "uid": str(uuid.uuid4()),
            "labels": labels,
            "ownerReferences": [{"uid": owner, "controller": True, "kind": "ReplicaSet"}],
        },
        "spec": spec,
    }


def run(nodes: int, pods: int, kind: str) -> float:
    state = ClusterState()
    for i in range(nodes):
        state.set_node(node(i, zoned=kind != "nozone"))
    listers = Listers(
        namespace_labels=lambda ns: {},
        claim=lambda ns, name: None,
        volume=lambda name: None,
        volumes=list,
        storage_class=lambda name: None,
        default_class=lambda: None,
    )
    owners = [str(uuid.uuid4()) for _ in range(max(pods // 100, 1))]
    bodies = [pod(i, owners[i % len(owners)], kind) for i in range(pods)]
    start = 0
    began = time.perf_counter()
    for body in bodies:
        cycle = PodCycle(PodInfo.of(body), state, listers)
        chosen, _failures, start = select_node(cycle, start)
        assert chosen is not None
        state.add_pod(body, chosen.name, assumed=True)
    return pods / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=3000)
    args = parser.parse_args()
    print(f"scheduler core, {args.nodes} nodes, {args.pods} pods per shape")
    # nozone: plain pods on nodes without zone labels, as `edgek sim` registers them
    for kind in ("plain", "nozone", "anti", "spread"):
        rate = run(args.nodes, args.pods, kind)
        print(f"  {kind:<7} {rate:8.0f} pods/s  ({1000 / rate:.2f} ms/pod)")


if __name__ == "__main__":
    main()
