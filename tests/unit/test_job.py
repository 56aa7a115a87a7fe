"""The Job and TTL-after-finished controllers on the control-loop bench: only these loops
run, so the tests play kubelet by writing pod phases and container exit codes."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from edgek.objects import Obj
from edgek.timefmt import format_time
from server.controllers.job import (
    COMPLETION_INDEX,
    TRACKING_FINALIZER,
    BackoffRecord,
    JobController,
    format_indexes,
    match_pod_failure_policy,
    parse_indexes,
)
from server.controllers.ttlafterfinished import TTLAfterFinishedController
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import T0, Harness


class FastJobController(JobController):
    """No back-off before replacing failed pods."""

    backoff_base = 0.0


def job_body(name: str, **spec: Any) -> Obj:
    template = {
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}],
        }
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": template, **spec},
    }


async def get_job(h: Harness, name: str) -> Obj:
    job = await h.get("batch", "jobs", "default", name)
    assert job is not None
    return job


async def pods_of(h: Harness, job_name: str) -> list[Obj]:
    return [
        p
        for p in await h.list("", "pods", "default")
        if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == job_name
    ]


async def active_pods(h: Harness, job_name: str) -> list[Obj]:
    return [
        p
        for p in await pods_of(h, job_name)
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        and not p["metadata"].get("deletionTimestamp")
    ]


async def finish(
    h: Harness, pod: Obj, phase: str, exit_code: int = 0, conditions: list[Obj] | None = None
) -> None:
    """Play kubelet: the pod's only container exited."""
    now = format_time(h.clock())
    pod = copy.deepcopy(pod)
    pod["status"] = {
        "phase": phase,
        "conditions": conditions or [],
        "containerStatuses": [
            {
                "name": "main",
                "image": "busybox",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                        "finishedAt": now,
                    }
                },
            }
        ],
    }
    md = pod["metadata"]
    await h.objects.update(
        h.kind("", "pods"), md["namespace"], md["name"], pod, WriteOptions(subresource="status")
    )


def condition(job: Obj, type_: str) -> Obj | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return None


async def wait_condition(h: Harness, name: str, type_: str) -> Obj:
    async def done() -> bool:
        cond = condition(await get_job(h, name), type_)
        return cond is not None and cond["status"] == "True"

    await h.wait_for(done, what=f"job {name} {type_}")
    return await get_job(h, name)


async def wait_active(h: Harness, name: str, count: int) -> list[Obj]:
    async def enough() -> bool:
        return len(await active_pods(h, name)) == count

    await h.wait_for(enough, what=f"{count} active pods of {name}")
    return await active_pods(h, name)


async def event_reasons(h: Harness, name: str) -> list[str]:
    await h.events.flush()
    return [
        e["reason"]
        for e in await h.list("", "events", "default")
        if e["involvedObject"].get("name") == name
    ]


# -- pure helpers ---------------------------------------------------------------


def test_completed_indexes_round_trip() -> None:
    assert format_indexes([1, 3, 4, 5, 7, 8]) == "1,3-5,7,8"
    assert format_indexes([]) == ""
    assert parse_indexes("1,3-5,7,8", 10) == {1, 3, 4, 5, 7, 8}
    assert parse_indexes("0-9", 4) == {0, 1, 2, 3}


def test_backoff_doubles_and_is_capped() -> None:
    assert BackoffRecord(1, T0).remaining(T0, 10, 360) == 10
    assert BackoffRecord(3, T0).remaining(T0 + timedelta(seconds=15), 10, 360) == 25
    assert BackoffRecord(20, T0).remaining(T0, 10, 360) == 360
    assert BackoffRecord().remaining(T0, 10, 360) == 0


def test_pod_failure_policy_matching() -> None:
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]
    }

    def pod(code: int, conditions: list[Obj] | None = None) -> Obj:
        return {
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {
                "phase": "Failed",
                "conditions": conditions or [],
                "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": code}}}],
            },
        }

    disrupted = pod(1, [{"type": "DisruptionTarget", "status": "True"}])
    assert match_pod_failure_policy(policy, disrupted) == (None, False, "Ignore")
    assert match_pod_failure_policy(policy, pod(42)) == (
        "Container c for pod ns/p failed with exit code 42 matching FailJob rule at index 1",
        True,
        "FailJob",
    )
    assert match_pod_failure_policy(policy, pod(3)) == (None, True, "Count")
    assert match_pod_failure_policy(policy, pod(1)) == (None, True, None)
    assert match_pod_failure_policy(None, pod(1)) == (None, True, None)


# -- the controller ---------------------------------------------------------------


async def test_completions_with_parallelism_never_exceed_parallelism(harness: Harness) -> None:
    h = harness
    await h.start(JobController)
    await h.create("batch", "jobs", "default", job_body("work", completions=5, parallelism=2))
    finished = 0
    while finished < 5:
        await h.settle()
        running = await active_pods(h, "work")
        assert 1 <= len(running) <= 2
        assert len(running) == min(2, 5 - finished)
        pod = running[0]
        assert TRACKING_FINALIZER in pod["metadata"]["finalizers"]
        labels = pod["metadata"]["labels"]
        job = await get_job(h, "work")
        assert labels["batch.kubernetes.io/controller-uid"] == job["metadata"]["uid"]
        assert labels["controller-uid"] == job["metadata"]["uid"]
        assert labels["job-name"] == "work"
        ref = pod["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("Job", "work", True)
        await finish(h, pod, "Succeeded")
        finished += 1
    job = await wait_condition(h, "work", "Complete")
    status = job["status"]
    assert status["succeeded"] == 5
    assert "failed" not in status and "active" not in status
    assert status["ready"] == 0 and status["terminating"] == 0
    assert status["completionTime"] and status["startTime"]
    assert status["uncountedTerminatedPods"] == {}
    met = condition(job, "SuccessCriteriaMet")
    assert met is not None and met["reason"] == "CompletionsReached"
    complete = condition(job, "Complete")
    assert complete is not None
    assert complete["message"] == "Reached expected number of succeeded pods"
    await h.settle()
    pods = await pods_of(h, "work")
    assert len(pods) == 5
    assert all(TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []) for p in pods)
    reasons = await event_reasons(h, "work")
    assert reasons.count("SuccessfulCreate") == 5 and "Completed" in reasons


async def test_counts_survive_pod_deletion(harness: Harness) -> None:
    h = harness
    await h.start(JobController)
    await h.create("batch", "jobs", "default", job_body("keep", completions=2, parallelism=1))
    [first] = await wait_active(h, "keep", 1)
    await finish(h, first, "Succeeded")
    await h.settle()

    async def counted() -> bool:
        return (await get_job(h, "keep")).get("status", {}).get("succeeded") == 1

    await h.wait_for(counted, what="one success counted")
    await h.objects.delete(
        h.kind("", "pods"), "default", first["metadata"]["name"], DeleteOptions()
    )
    await h.settle()
    assert (await get_job(h, "keep"))["status"]["succeeded"] == 1
    [second] = await wait_active(h, "keep", 1)
    assert second["metadata"]["name"] != first["metadata"]["name"]
    await finish(h, second, "Succeeded")
    job = await wait_condition(h, "keep", "Complete")
    assert job["status"]["succeeded"] == 2


async def test_failing_job_stops_at_backoff_limit(harness: Harness) -> None:
    h = harness
    await h.start(FastJobController)
    await h.create("batch", "jobs", "default", job_body("fails", backoffLimit=2))
    for _ in range(3):
        [pod] = await wait_active(h, "fails", 1)
        await finish(h, pod, "Failed", exit_code=1)
    job = await wait_condition(h, "fails", "Failed")
    assert job["status"]["failed"] == 3
    assert "succeeded" not in job["status"]
    for type_ in ("FailureTarget", "Failed"):
        cond = condition(job, type_)
        assert cond is not None
        assert cond["reason"] == "BackoffLimitExceeded"
        assert cond["message"] == "Job has reached the specified backoff limit"
    await h.settle()
    assert len(await pods_of(h, "fails")) == 3
    assert await active_pods(h, "fails") == []
    assert "BackoffLimitExceeded" in await event_reasons(h, "fails")


async def test_failed_pods_are_replaced_after_exponential_backoff(harness: Harness) -> None:
    h = harness
    [loop] = await h.start(JobController)
    assert isinstance(loop, JobController)
    await h.create("batch", "jobs", "default", job_body("slow"))
    [pod] = await wait_active(h, "slow", 1)
    await finish(h, pod, "Failed", exit_code=1)
    await h.settle()
    assert await active_pods(h, "slow") == []  # 10 s back-off
    h.clock.advance(10)
    loop.clock_changed()
    [pod] = await wait_active(h, "slow", 1)
    await finish(h, pod, "Failed", exit_code=1)
    h.clock.advance(15)
    loop.clock_changed()
    await h.settle()
    assert await active_pods(h, "slow") == []  # second failure: 20 s
    h.clock.advance(5)
    loop.clock_changed()
    await wait_active(h, "slow", 1)
    assert (await get_job(h, "slow"))["status"]["failed"] == 2


async def test_indexed_job(harness: Harness) -> None:
    h = harness
    await h.start(FastJobController)
    body = job_body("idx", completions=3, parallelism=3, completionMode="Indexed")
    await h.create("batch", "jobs", "default", body)
    pods = await wait_active(h, "idx", 3)
    by_index = {p["metadata"]["annotations"][COMPLETION_INDEX]: p for p in pods}
    assert sorted(by_index) == ["0", "1", "2"]
    for ix, pod in by_index.items():
        assert pod["metadata"]["labels"][COMPLETION_INDEX] == ix
        assert pod["metadata"]["name"].startswith(f"idx-{ix}-")
        assert pod["spec"]["hostname"] == f"idx-{ix}"
        [env] = pod["spec"]["containers"][0]["env"]
        assert env["name"] == "JOB_COMPLETION_INDEX"
        path = env["valueFrom"]["fieldRef"]["fieldPath"]
        assert path == f"metadata.annotations['{COMPLETION_INDEX}']"
    await finish(h, by_index["0"], "Succeeded")
    await finish(h, by_index["2"], "Succeeded")
    await finish(h, by_index["1"], "Failed", exit_code=3)

    async def replaced() -> bool:
        running = await active_pods(h, "idx")
        return [p["metadata"]["annotations"][COMPLETION_INDEX] for p in running] == ["1"]

    await h.wait_for(replaced, what="index 1 recreated")
    job = await get_job(h, "idx")
    assert job["status"]["completedIndexes"] == "0,2"
    assert job["status"]["succeeded"] == 2 and job["status"]["failed"] == 1
    [again] = await active_pods(h, "idx")
    await finish(h, again, "Succeeded")
    job = await wait_condition(h, "idx", "Complete")
    assert job["status"]["completedIndexes"] == "0-2"
    assert job["status"]["succeeded"] == 3


async def test_active_deadline_fails_the_job(harness: Harness) -> None:
    h = harness
    [loop] = await h.start(JobController)
    assert isinstance(loop, JobController)
    body = job_body("late", parallelism=2, completions=4, activeDeadlineSeconds=30)
    await h.create("batch", "jobs", "default", body)
    await wait_active(h, "late", 2)
    h.clock.advance(29)
    loop.clock_changed()
    await h.settle()
    assert condition(await get_job(h, "late"), "Failed") is None
    h.clock.advance(1)
    loop.clock_changed()
    job = await wait_condition(h, "late", "Failed")
    cond = condition(job, "Failed")
    assert cond is not None and cond["reason"] == "DeadlineExceeded"
    assert cond["message"] == "Job was active longer than specified deadline"
    assert job["status"]["failed"] == 2
    assert "active" not in job["status"]
    await h.settle()
    assert await pods_of(h, "late") == []  # unbound pods go once their finalizer is gone
    assert "DeadlineExceeded" in await event_reasons(h, "late")


async def test_pod_failure_policy_fail_job_and_ignore(harness: Harness) -> None:
    h = harness
    await h.start(FastJobController)
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    body = job_body("pfp", backoffLimit=0, podFailurePolicy=policy)
    await h.create("batch", "jobs", "default", body)
    [pod] = await wait_active(h, "pfp", 1)
    disrupted = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]
    await finish(h, pod, "Failed", exit_code=137, conditions=disrupted)
    [second] = await wait_active(h, "pfp", 1)  # ignored: not counted against backoffLimit 0
    assert second["metadata"]["name"] != pod["metadata"]["name"]
    assert "failed" not in (await get_job(h, "pfp"))["status"]
    await finish(h, second, "Failed", exit_code=42)
    job = await wait_condition(h, "pfp", "Failed")
    cond = condition(job, "Failed")
    assert cond is not None and cond["reason"] == "PodFailurePolicy"
    assert cond["message"] == (
        f"Container main for pod default/{second['metadata']['name']} failed with exit code 42 "
        "matching FailJob rule at index 0"
    )
    assert job["status"]["failed"] == 1


async def test_suspend_and_resume(harness: Harness) -> None:
    h = harness
    await h.start(JobController)
    await h.create(
        "batch", "jobs", "default", job_body("sus", parallelism=2, completions=2, suspend=True)
    )
    await wait_condition(h, "sus", "Suspended")
    await h.settle()
    assert await pods_of(h, "sus") == []
    job = await get_job(h, "sus")
    assert "startTime" not in job["status"]
    job["spec"]["suspend"] = False
    await h.objects.update(h.kind("batch", "jobs"), "default", "sus", job, WriteOptions())
    await wait_active(h, "sus", 2)

    async def resumed() -> bool:
        cond = condition(await get_job(h, "sus"), "Suspended")
        return cond is not None and cond["status"] == "False" and cond["reason"] == "JobResumed"

    await h.wait_for(resumed, what="Suspended=False")
    job = await get_job(h, "sus")
    job["spec"]["suspend"] = True
    await h.objects.update(h.kind("batch", "jobs"), "default", "sus", job, WriteOptions())
    await wait_active(h, "sus", 0)
    job = await wait_condition(h, "sus", "Suspended")
    assert "failed" not in job["status"]  # pods removed by suspension do not count
    assert {"Suspended", "Resumed"} <= set(await event_reasons(h, "sus"))


async def test_work_queue_job_completes_on_first_success(harness: Harness) -> None:
    h = harness
    await h.start(JobController)
    await h.create("batch", "jobs", "default", job_body("queue", parallelism=3))
    pods = await wait_active(h, "queue", 3)
    await finish(h, pods[0], "Succeeded")
    await h.settle()
    assert len(await active_pods(h, "queue")) == 2  # the others keep running
    for pod in pods[1:]:
        await finish(h, pod, "Succeeded")
    job = await wait_condition(h, "queue", "Complete")
    assert job["status"]["succeeded"] == 3


async def test_pods_of_a_deleted_job_lose_the_finalizer(harness: Harness) -> None:
    h = harness
    await h.start(JobController)
    await h.create("batch", "jobs", "default", job_body("gone"))
    [pod] = await wait_active(h, "gone", 1)
    await h.objects.delete(h.kind("batch", "jobs"), "default", "gone", DeleteOptions())

    async def released() -> bool:
        left = await h.get("", "pods", "default", pod["metadata"]["name"])
        return left is not None and not left["metadata"].get("finalizers")

    await h.wait_for(released, what="finalizer removed from the orphan")


async def test_ttl_after_finished_deletes_the_job(harness: Harness) -> None:
    h = harness
    _, ttl = await h.start(JobController, TTLAfterFinishedController)
    assert isinstance(ttl, TTLAfterFinishedController)
    await h.create("batch", "jobs", "default", job_body("short", ttlSecondsAfterFinished=60))
    [pod] = await wait_active(h, "short", 1)
    await finish(h, pod, "Succeeded")
    await wait_condition(h, "short", "Complete")
    h.clock.advance(59)
    ttl.clock_changed()
    await h.settle()
    assert await h.get("batch", "jobs", "default", "short") is not None
    h.clock.advance(1)
    ttl.clock_changed()

    async def deleted() -> bool:
        return await h.get("batch", "jobs", "default", "short") is None

    await h.wait_for(deleted, what="job deleted after its TTL")


async def test_job_made_from_a_cronjob_runs(harness: Harness) -> None:
    """What ``kubectl create job --from=cronjob/x`` sends: an owner reference and the
    ``cronjob.kubernetes.io/instantiate: manual`` annotation."""
    h = harness
    await h.start(JobController)
    body = job_body("manual")
    body["metadata"]["annotations"] = {"cronjob.kubernetes.io/instantiate": "manual"}
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": "nightly",
            "uid": "00000000-0000-0000-0000-000000000001",
            "controller": True,
        }
    ]
    await h.create("batch", "jobs", "default", body)
    [pod] = await wait_active(h, "manual", 1)
    await finish(h, pod, "Succeeded")
    await wait_condition(h, "manual", "Complete")


@pytest.mark.parametrize("limit", [0, 1])
async def test_backoff_limit_boundary(harness: Harness, limit: int) -> None:
    h = harness
    await h.start(FastJobController)
    await h.create("batch", "jobs", "default", job_body(f"edge{limit}", backoffLimit=limit))
    for _ in range(limit + 1):
        [pod] = await wait_active(h, f"edge{limit}", 1)
        await finish(h, pod, "Failed", exit_code=1)
    job = await wait_condition(h, f"edge{limit}", "Failed")
    assert job["status"]["failed"] == limit + 1
