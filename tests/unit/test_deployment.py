"""The Deployment controller (with the ReplicaSet controller) on the control-loop bench:
rollouts to availability, rolling updates within maxSurge/maxUnavailable at every step,
Recreate, pause/resume with proportional scaling, rollback by template, revisions and
history limits, the fields ``kubectl rollout status`` reads, and the progress deadline.
No kubelet runs: tests mark pods Running and Ready themselves."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edgek.objects import Obj
from edgek.status import ApiError
from edgek.timefmt import format_time
from server.controllers import rollout as ro
from server.controllers.deployment import DeploymentController
from server.controllers.replicaset import ReplicaSetController
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.manifests import workload
from tests.unit.controller_harness import Harness

NS = "default"


def deployment(name: str, replicas: int, image: str = "nginx:1", **spec: Any) -> Obj:
    pod_spec = {"containers": [{"name": "c", "image": image}]}
    return workload("Deployment", name, pod_spec, replicas=replicas, **spec)


async def start(h: Harness) -> DeploymentController:
    _, controller = await h.start(ReplicaSetController, DeploymentController)
    assert isinstance(controller, DeploymentController)
    return controller


async def get_deployment(h: Harness, name: str) -> Obj:
    d = await h.get("apps", "deployments", NS, name)
    assert d is not None
    return d


async def edit(h: Harness, name: str, change: Callable[[Obj], None]) -> None:
    async def mutate(current: Obj | None) -> Obj | None:
        assert current is not None
        change(current)
        return current

    await h.objects.modify(h.kind("apps", "deployments"), NS, name, mutate, WriteOptions())


def set_image(image: str) -> Callable[[Obj], None]:
    def change(d: Obj) -> None:
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return change


async def owned_rss(h: Harness, d: Obj) -> list[Obj]:
    uid = d["metadata"]["uid"]
    return sorted(
        (
            rs
            for rs in await h.list("apps", "replicasets", NS)
            if any(r.get("uid") == uid for r in rs["metadata"].get("ownerReferences") or [])
        ),
        key=ro.revision,
    )


async def active_pods(h: Harness, app: str) -> list[Obj]:
    return [
        p
        for p in await h.list("", "pods", NS)
        if (p["metadata"].get("labels") or {}).get("app") == app
        and not p["metadata"].get("deletionTimestamp")
    ]


def is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


async def make_ready(h: Harness, pods: list[Obj]) -> None:
    for pod in pods:
        if await h.get("", "pods", NS, pod["metadata"]["name"]) is not None:
            await h.set_pod_status(NS, pod["metadata"]["name"])


def rollout_done(d: Obj) -> bool:
    """What ``kubectl rollout status`` waits for."""
    status = d.get("status") or {}
    want = d["spec"]["replicas"]
    progressing = ro.get_condition(status, "Progressing")
    return (
        status.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and progressing is not None
        and progressing["reason"] == "NewReplicaSetAvailable"
    )


async def roll_to_completion(h: Harness, name: str, step: Callable[[], Awaitable[None]]) -> None:
    """Settle, run ``step``, repeat until the rollout is done (bounded)."""
    for _ in range(60):
        await h.settle()
        if rollout_done(await get_deployment(h, name)):
            return
        await step()
    raise AssertionError(f"rollout of {name} did not finish")


async def ready_everything(h: Harness, app: str) -> None:
    await make_ready(h, [p for p in await active_pods(h, app) if not is_ready(p)])


async def scaling_events(h: Harness) -> list[str]:
    await h.events.flush()
    return [
        e["message"] for e in await h.list("", "events", NS) if e["reason"] == "ScalingReplicaSet"
    ]


async def test_rollout_to_available(harness: Harness) -> None:
    h = harness
    await start(h)
    await h.create("apps", "deployments", NS, deployment("web", 10))
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    d = await get_deployment(h, "web")
    (rs,) = await owned_rss(h, d)
    pod_hash = rs["metadata"]["labels"][ro.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert 1 <= len(pod_hash) <= 10 and set(pod_hash) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", ro.HASH_LABEL: pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"][ro.HASH_LABEL] == pod_hash
    ann = rs["metadata"]["annotations"]
    assert ann[ro.REVISION] == "1"
    assert (ann[ro.DESIRED_REPLICAS], ann[ro.MAX_REPLICAS]) == ("10", "13")
    assert d["metadata"]["annotations"][ro.REVISION] == "1"
    # the revision is written with the status, as upstream: no generation bump
    assert (d["metadata"]["generation"], d["status"]["observedGeneration"]) == (1, 1)
    pods = await active_pods(h, "web")
    assert len(pods) == 10
    assert all(p["metadata"]["labels"][ro.HASH_LABEL] == pod_hash for p in pods)
    status = d["status"]
    assert status.get("readyReplicas") == 10 and "unavailableReplicas" not in status
    available = ro.get_condition(status, "Available")
    progressing = ro.get_condition(status, "Progressing")
    assert available is not None and progressing is not None
    assert (available["status"], available["reason"], available["message"]) == (
        "True",
        "MinimumReplicasAvailable",
        "Deployment has minimum availability.",
    )
    assert (progressing["status"], progressing["message"]) == (
        "True",
        f'ReplicaSet "web-{pod_hash}" has successfully progressed.',
    )
    assert await scaling_events(h) == [f"Scaled up replica set web-{pod_hash} to 10"]


async def test_rolling_update_respects_surge_and_unavailable_bounds(harness: Harness) -> None:
    h = harness
    await start(h)
    await h.create("apps", "deployments", NS, deployment("web", 10))
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    (old_rs,) = await owned_rss(h, await get_deployment(h, "web"))
    await edit(h, "web", set_image("nginx:2"))
    observed_steps = 0

    async def one_more_ready() -> None:
        nonlocal observed_steps
        d = await get_deployment(h, "web")
        rss = await owned_rss(h, d)
        pods = await active_pods(h, "web")
        # maxSurge 25% of 10 rounds up to 3, maxUnavailable 25% rounds down to 2
        assert sum(rs["spec"]["replicas"] for rs in rss) <= 13
        assert len(pods) <= 13
        assert sum(1 for p in pods if is_ready(p)) >= 8
        observed_steps += 1
        new_hash = rss[-1]["metadata"]["labels"][ro.HASH_LABEL]
        waiting = [
            p
            for p in pods
            if p["metadata"]["labels"][ro.HASH_LABEL] == new_hash and not is_ready(p)
        ]
        await make_ready(h, waiting[:1])

    await roll_to_completion(h, "web", one_more_ready)
    assert observed_steps >= 10
    d = await get_deployment(h, "web")
    old, new = await owned_rss(h, d)
    assert old["metadata"]["uid"] == old_rs["metadata"]["uid"] and old["spec"]["replicas"] == 0
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert new["metadata"]["annotations"][ro.REVISION] == "2"
    assert d["metadata"]["annotations"][ro.REVISION] == "2"
    pods = await active_pods(h, "web")
    assert len(pods) == 10 and all(
        p["metadata"]["name"].startswith(new["metadata"]["name"]) for p in pods
    )
    events = await scaling_events(h)
    assert f"Scaled up replica set {new['metadata']['name']} to 3" in events
    assert f"Scaled down replica set {old['metadata']['name']} to 8 from 10" in events


async def test_recreate_waits_for_old_pods_to_go(harness: Harness) -> None:
    """Old pods are bound to a node, so deleting them only marks them terminating; the new
    replica set must not appear until they are gone."""
    h = harness
    await start(h)
    body = deployment("db", 2, strategy={"type": "Recreate"})
    body["spec"]["template"]["spec"]["nodeName"] = "node-1"
    await h.create("apps", "deployments", NS, body)
    await roll_to_completion(h, "db", lambda: ready_everything(h, "db"))
    old_pods = await active_pods(h, "db")
    await edit(h, "db", set_image("nginx:2"))
    await h.settle()
    d = await get_deployment(h, "db")
    (old_rs,) = await owned_rss(h, d)
    assert old_rs["spec"]["replicas"] == 0
    terminating = [
        p for p in await h.list("", "pods", NS) if p["metadata"].get("deletionTimestamp")
    ]
    assert len(terminating) == 2
    for pod in old_pods:  # the kubelet would finish them
        await h.objects.delete(
            h.kind("", "pods"), NS, pod["metadata"]["name"], DeleteOptions(grace_period_seconds=0)
        )
    await roll_to_completion(h, "db", lambda: ready_everything(h, "db"))
    old, new = await owned_rss(h, await get_deployment(h, "db"))
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 2
    assert new["metadata"]["annotations"][ro.REVISION] == "2"


async def test_pause_scales_proportionally_and_resume_rolls_out(harness: Harness) -> None:
    h = harness
    await start(h)
    await h.create("apps", "deployments", NS, deployment("web", 10))
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    # a rollout stuck half way: the new pods never get ready
    await edit(h, "web", set_image("nginx:2"))
    await h.settle()
    old, new = await owned_rss(h, await get_deployment(h, "web"))
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (8, 5)

    def pause(d: Obj) -> None:
        d["spec"]["paused"] = True

    await edit(h, "web", pause)
    await edit(h, "web", set_image("nginx:3"))
    await h.settle()
    d = await get_deployment(h, "web")
    assert len(await owned_rss(h, d)) == 2  # no rollout while paused
    progressing = ro.get_condition(d["status"], "Progressing")
    assert progressing is not None
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "Unknown",
        "DeploymentPaused",
        "Deployment is paused",
    )
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]

    def scale_to_20(d: Obj) -> None:
        d["spec"]["replicas"] = 20

    await edit(h, "web", scale_to_20)
    await h.settle()
    old, new = await owned_rss(h, await get_deployment(h, "web"))
    # 13 replicas grow to 20 + 5 surge, each set in proportion (8 -> 15, 5 -> 10)
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (15, 10)
    for rs in (old, new):
        assert rs["metadata"]["annotations"][ro.DESIRED_REPLICAS] == "20"
        assert rs["metadata"]["annotations"][ro.MAX_REPLICAS] == "25"

    def resume(d: Obj) -> None:
        d["spec"]["paused"] = False

    await edit(h, "web", resume)
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    d = await get_deployment(h, "web")
    rss = await owned_rss(h, d)
    assert len(rss) == 3 and [rs["spec"]["replicas"] for rs in rss] == [0, 0, 20]
    assert rss[-1]["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:3"
    assert d["metadata"]["annotations"][ro.REVISION] == "3"


async def test_rollback_reuses_the_old_replica_set(harness: Harness) -> None:
    """``kubectl rollout undo`` writes an old set's template (hash label removed) back into
    the deployment; that set is reused under the next revision."""
    h = harness
    await start(h)
    await h.create("apps", "deployments", NS, deployment("web", 3))
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    await edit(h, "web", set_image("nginx:2"))
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    first, second = await owned_rss(h, await get_deployment(h, "web"))
    template = copy.deepcopy(first["spec"]["template"])
    del template["metadata"]["labels"][ro.HASH_LABEL]

    def undo(d: Obj) -> None:
        d["spec"]["template"] = template

    await edit(h, "web", undo)
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    d = await get_deployment(h, "web")
    rss = await owned_rss(h, d)
    assert [rs["metadata"]["uid"] for rs in rss] == [
        second["metadata"]["uid"],
        first["metadata"]["uid"],
    ]
    reused = rss[-1]
    assert reused["spec"]["replicas"] == 3 and rss[0]["spec"]["replicas"] == 0
    assert reused["metadata"]["annotations"][ro.REVISION] == "3"
    assert reused["metadata"]["annotations"][ro.REVISION_HISTORY] == "1"
    assert d["metadata"]["annotations"][ro.REVISION] == "3"
    # two template edits; the revision annotations did not count
    assert (d["metadata"]["generation"], d["status"]["observedGeneration"]) == (3, 3)


async def test_restart_and_history_limit(harness: Harness) -> None:
    """``kubectl rollout restart`` changes a template annotation: a new replica set each
    time; only revisionHistoryLimit old ones are kept, the change-cause is copied."""
    h = harness
    await start(h)
    body = deployment("web", 2, revisionHistoryLimit=1)
    body["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first"}
    await h.create("apps", "deployments", NS, body)
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    for i in range(3):

        def restart(d: Obj, i: int = i) -> None:
            tmd = d["spec"]["template"]["metadata"]
            tmd["annotations"] = {"kubectl.kubernetes.io/restartedAt": f"2026-01-01T12:0{i}:00Z"}
            d["metadata"]["annotations"]["kubernetes.io/change-cause"] = f"restart {i}"

        await edit(h, "web", restart)
        await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    await h.settle()
    d = await get_deployment(h, "web")
    rss = await owned_rss(h, d)
    assert [ro.revision(rs) for rs in rss] == [3, 4]
    assert rss[-1]["metadata"]["annotations"]["kubernetes.io/change-cause"] == "restart 2"
    assert rss[0]["metadata"]["annotations"]["kubernetes.io/change-cause"] == "restart 1"
    assert d["metadata"]["annotations"][ro.REVISION] == "4"


async def test_progress_deadline_exceeded(harness: Harness) -> None:
    h = harness
    controller = await start(h)
    await h.create("apps", "deployments", NS, deployment("stuck", 2, progressDeadlineSeconds=30))
    await h.settle()
    d = await get_deployment(h, "stuck")
    (rs,) = await owned_rss(h, d)
    progressing = ro.get_condition(d["status"], "Progressing")
    assert progressing is not None
    # pods were created after the set: that counts as progress
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "True",
        "ReplicaSetUpdated",
        f'ReplicaSet "{rs["metadata"]["name"]}" is progressing.',
    )
    assert progressing["lastUpdateTime"] == format_time(h.clock())
    available = ro.get_condition(d["status"], "Available")
    assert available is not None and available["reason"] == "MinimumReplicasUnavailable"
    assert available["message"] == "Deployment does not have minimum availability."
    assert d["status"]["unavailableReplicas"] == 2

    h.clock.advance(29)
    controller.queue.enqueue(f"{NS}/stuck")  # the real-time deadline timer stands in here
    await h.settle()
    progressing = ro.get_condition((await get_deployment(h, "stuck"))["status"], "Progressing")
    assert progressing is not None and progressing["reason"] == "ReplicaSetUpdated"

    h.clock.advance(2)
    controller.queue.enqueue(f"{NS}/stuck")
    await h.settle()
    progressing = ro.get_condition((await get_deployment(h, "stuck"))["status"], "Progressing")
    assert progressing is not None
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "False",
        "ProgressDeadlineExceeded",
        f'ReplicaSet "{rs["metadata"]["name"]}" has timed out progressing.',
    )


def test_template_hash_is_stable_and_safe() -> None:
    template = deployment("web", 1)["spec"]["template"]
    same = copy.deepcopy(template)
    same["metadata"]["annotations"] = {}  # empty and missing are the same template
    first = ro.template_hash(template)
    assert first == ro.template_hash(same)
    assert 1 <= len(first) <= 10 and set(first) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert ro.template_hash(template, 1) != first
    changed = copy.deepcopy(template)
    changed["spec"]["containers"][0]["image"] = "nginx:2"
    assert ro.template_hash(changed) != first


def test_fenceposts_round_surge_up_and_unavailable_down() -> None:
    def fence(replicas: int, surge: Any, unavailable: Any) -> tuple[int, int]:
        rolling: Obj = {"maxSurge": surge, "maxUnavailable": unavailable}
        strategy = {"type": "RollingUpdate", "rollingUpdate": rolling}
        return ro.resolve_fenceposts(deployment("x", replicas, strategy=strategy))

    assert fence(10, "25%", "25%") == (3, 2)
    assert fence(3, "25%", "25%") == (1, 0)
    assert fence(2, "0%", "1%") == (0, 1)  # both resolve to 0: one may be unavailable
    assert fence(5, 2, 1) == (2, 1)


async def test_hash_collision_bumps_collision_count(harness: Harness) -> None:
    """A foreign replica set already has the new set's name: the deployment counts a
    collision and uses the next hash."""
    h = harness
    d = await h.create("apps", "deployments", NS, deployment("web", 1))
    taken = f"web-{ro.template_hash(d['spec']['template'])}"
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": taken},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "foreign"}},
            "template": {
                "metadata": {"labels": {"app": "foreign"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    await h.create("apps", "replicasets", NS, foreign)
    await start(h)
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    d = await get_deployment(h, "web")
    assert d["status"]["collisionCount"] == 1
    (rs,) = await owned_rss(h, d)
    assert rs["metadata"]["name"] == f"web-{ro.template_hash(d['spec']['template'], 1)}"
    assert rs["metadata"]["name"] != taken


async def test_stale_replica_set_copy_does_not_resize(harness: Harness) -> None:
    """A size computed from a cached replica set that has since changed is refused with a
    conflict (the reconcile retries on fresh data) rather than undoing the newer size:
    a stale scale-down from 8 to 7 after a scale-down to 5 would be a scale-up."""
    h = harness
    controller = await start(h)
    await h.create("apps", "deployments", NS, deployment("web", 8))
    await roll_to_completion(h, "web", lambda: ready_everything(h, "web"))
    await controller.stop()
    d = await get_deployment(h, "web")
    (stale,) = await owned_rss(h, d)

    async def shrink(current: Obj | None) -> Obj | None:
        assert current is not None
        current["spec"]["replicas"] = 5
        return current

    rs_kind = h.kind("apps", "replicasets")
    await h.objects.modify(rs_kind, NS, stale["metadata"]["name"], shrink, WriteOptions())
    with pytest.raises(ApiError) as err:
        await controller._scale_rs(d, copy.deepcopy(stale), 7)
    assert err.value.code == 409
    (current,) = await owned_rss(h, d)
    assert current["spec"]["replicas"] == 5
