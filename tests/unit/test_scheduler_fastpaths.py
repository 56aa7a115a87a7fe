"""The scheduler's fast paths for plain pods (inline filter checks, two-pass scoring) decide
exactly as the general filter and scoring do, on randomly varied clusters."""

from __future__ import annotations

import random
from typing import Any

import pytest

from server.scheduler import scoring
from server.scheduler.filters import Listers, PodCycle
from server.scheduler.nodeinfo import ClusterState, PodInfo
from server.scheduler.scheduler import select_node

LISTERS = Listers(
    namespace_labels=lambda ns: {},
    claim=lambda ns, name: None,
    volume=lambda name: None,
    volumes=list,
    storage_class=lambda name: None,
    default_class=lambda: None,
)
OWNERS = ["rs-a", "rs-b", ""]


def _node(rng: random.Random, i: int, zoned: bool, preferring: bool) -> dict[str, Any]:
    name = f"n{i}"
    labels = {"kubernetes.io/hostname": name} if rng.random() > 0.1 else {}
    if zoned and rng.random() < 0.2:
        labels["topology.kubernetes.io/zone"] = "z1"
    spec: dict[str, Any] = {}
    taint = rng.random()
    if taint < 0.05:
        spec["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    elif preferring and taint < 0.2:
        spec["taints"] = [{"key": "k", "effect": "PreferNoSchedule"}]
    if rng.random() < 0.05:
        spec["unschedulable"] = True
    alloc = {"cpu": rng.choice(["1", "2", "500m"]), "memory": rng.choice(["1Gi", "4Gi"])}
    alloc["pods"] = rng.choice(["3", "10"])
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _pod(rng: random.Random, i: int) -> dict[str, Any]:
    owner = rng.choice(OWNERS)
    requests = {"cpu": rng.choice(["100m", "300m", "0"]), "memory": rng.choice(["64Mi", "1Gi"])}
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"requests": requests}}]}
    if rng.random() < 0.2:
        spec["tolerations"] = [{"operator": "Exists"}]
    md: dict[str, Any] = {"name": f"p{i}", "namespace": "default", "uid": f"u{i}"}
    if owner:
        md["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet"}]
    return {"metadata": md, "spec": spec}


@pytest.mark.parametrize("seed", range(8))
def test_fast_paths_choose_as_the_general_ones(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    state = ClusterState()
    zoned, preferring = bool(seed & 1), bool(seed & 2)  # what makes the common path bail
    for i in range(rng.choice([5, 40, 150])):
        state.set_node(_node(rng, i, zoned, preferring))
    start = 0
    plain_seen = common_seen = 0
    for i in range(200):
        body = _pod(rng, i)
        cycle = PodCycle(PodInfo.of(body), state, LISTERS)
        plain_seen += cycle.plain
        fast_nodes = [n for n in state.order if not cycle.filter(n)][:30]
        if len(fast_nodes) > 1:
            fast_scores = scoring.score_nodes(cycle, fast_nodes)
            common_seen += scoring._common_scores(cycle, fast_nodes) is not None
            with monkeypatch.context() as m:
                m.setattr(scoring, "_common_scores", lambda cycle, nodes: None)
                assert scoring.score_nodes(cycle, fast_nodes) == fast_scores
        state_seed = rng.random()
        random.seed(state_seed)
        fast = select_node(cycle, start)
        cycle.plain = False
        random.seed(state_seed)
        general = select_node(cycle, start)
        assert (fast[0] and fast[0].name, fast[1], fast[2]) == (
            general[0] and general[0].name,
            general[1],
            general[2],
        )
        chosen, _, start = fast
        if chosen is not None:
            state.add_pod(body, chosen.name)
    assert plain_seen  # the inline filter checks were exercised
    assert common_seen or zoned or preferring  # so was the two-pass scoring
