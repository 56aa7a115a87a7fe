"""Jobs and CronJobs against a cluster of sim nodes, driven with the real kubectl: a Job
with completions and parallelism completes without ever running more pods than allowed, a
failing Job backs off exponentially (on the control loops' clock) and stops at its
backoffLimit, and a CronJob fires once per minute of the control loops' clock, which the
tests move ahead instead of waiting; ``kubectl create job --from=cronjob/...`` runs."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

import pytest

from edgek.objects import Obj
from tests.e2e.cluster import Cluster, cluster_fixture, replay, start_watch, wait_for

#: Moving the clock ahead must not make the nodes look dead.
SERVER_ARGS = ("--node-monitor-grace-period", "3600")


cluster = cluster_fixture("jobs", 2, server_args=SERVER_ARGS)
#: A cluster of its own, so that CronJobs are created while no other test has moved the
#: clock (a CronJob created after a jump catches up on the schedule it "missed").
cron_cluster = cluster_fixture(
    "cron", 1, name="cron_cluster", server_args=SERVER_ARGS, prefix="cron-"
)


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.new_namespace("jobs")


def pod_template(**annotations: str) -> Obj:
    return {
        "metadata": {"annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "work", "image": "registry.local/work:1"}],
        },
    }


def job(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": pod_template(), **spec},
    }
    return json.dumps(body)


def conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def job_pods(cluster: Cluster, ns: str, name: str) -> list[Obj]:
    items = cluster.get("pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={name}")["items"]
    return sorted(items, key=lambda p: p["metadata"]["creationTimestamp"])


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def active(pod: Obj) -> bool:
    """Counted against parallelism: neither finished nor being deleted."""
    return phase(pod) not in ("Succeeded", "Failed") and not pod["metadata"].get(
        "deletionTimestamp"
    )


def test_completions_with_parallelism(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    watch = start_watch(cluster, ns)
    peak_status = 0
    try:
        k("apply", "-n", ns, "-f", "-", input=job("five", completions=5, parallelism=2))

        def complete() -> bool:
            nonlocal peak_status
            status = cluster.get("job", "five", "-n", ns).get("status") or {}
            peak_status = max(peak_status, int(status.get("active") or 0))
            return "Complete" in conditions({"status": status})

        wait_for(complete, "job five to complete", timeout=60)
        k("wait", "job/five", "-n", ns, "--for=condition=complete", "--timeout=10s")
    finally:
        events = watch.stop()

    final = cluster.get("job", "five", "-n", ns)
    assert final["status"]["succeeded"] == 5
    assert not final["status"].get("failed")
    assert not final["status"].get("active")
    assert final["status"].get("completionTime")
    assert conditions(final)["Complete"]["status"] == "True"
    pods = job_pods(cluster, ns, "five")
    assert len(pods) == 5 and all(phase(p) == "Succeeded" for p in pods)
    assert 1 <= peak_status <= 2

    peak = 0
    for type_, pod, before in replay(events):
        now = {n: p for n, p in before.items() if n != pod["metadata"]["name"]}
        if type_ != "DELETED":
            now[pod["metadata"]["name"]] = pod
        running = [
            p
            for p in now.values()
            if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == "five"
            and active(p)
        ]
        peak = max(peak, len(running))
    assert peak == 2, f"{peak} pods active at once (parallelism 2)"


def test_failing_job_backs_off_and_stops_at_backoff_limit(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    body = json.loads(job("fail", backoffLimit=2))
    body["spec"]["template"] = pod_template(**{"sim.edgek.io/exit-code": "1"})
    k("apply", "-n", ns, "-f", "-", input=json.dumps(body))

    def failed_pods(count: int) -> bool:
        pods = job_pods(cluster, ns, "fail")
        return len(pods) == count and all(phase(p) == "Failed" for p in pods)

    wait_for(lambda: failed_pods(1), "the first pod to fail")
    # back-off: 10 s after the first failure, 20 s after the second (control-loop clock)
    for delay, count in ((10, 2), (20, 3)):
        time.sleep(2)
        assert len(job_pods(cluster, ns, "fail")) == count - 1, "replaced before the back-off"
        cluster.advance_clock(delay)
        wait_for(partial(failed_pods, count), f"pod {count} to be created and fail")

    k("wait", "job/fail", "-n", ns, "--for=condition=failed", "--timeout=20s")
    final = cluster.get("job", "fail", "-n", ns)
    failed = conditions(final)["Failed"]
    assert failed["status"] == "True"
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert final["status"]["failed"] == 3
    assert not final["status"].get("active")
    assert not final["status"].get("succeeded")
    assert len(job_pods(cluster, ns, "fail")) == 3
    reasons = {e["reason"] for e in cluster.get("events", "-n", ns)["items"]}
    assert "BackoffLimitExceeded" in reasons


def cronjob(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": pod_template()}},
            **spec,
        },
    }
    return json.dumps(body)


def owned_jobs(cluster: Cluster, ns: str, owner: str) -> list[Obj]:
    items = cluster.get("jobs", "-n", ns)["items"]
    return [
        j
        for j in items
        if any(r.get("name") == owner for r in j["metadata"].get("ownerReferences") or [])
    ]


def test_cronjob_fires_once_per_minute_of_the_clock(cron_cluster: Cluster) -> None:
    cluster = cron_cluster
    ns = cluster.new_namespace("jobs")
    k = cluster.kubectl
    # start early in a minute of the loops' clock, so no real minute boundary (which would
    # fire a run of its own) passes while the test moves the clock
    wait_for(
        lambda: 1 <= (time.time() + cluster.clock_offset()) % 60 < 25,
        "the start of a minute",
        timeout=60,
    )
    k("apply", "-n", ns, "-f", "-", input=cronjob("tick"))
    time.sleep(1)
    assert owned_jobs(cluster, ns, "tick") == [], "fired before its first scheduled minute"

    def at_least(count: int) -> list[Obj]:
        jobs = owned_jobs(cluster, ns, "tick")
        return jobs if len(jobs) >= count else []

    seen: list[str] = []
    for minute in (1, 2):
        cluster.advance_clock(60)
        jobs = wait_for(partial(at_least, minute), f"job {minute} of cronjob tick")
        assert len(jobs) == minute, [j["metadata"]["name"] for j in jobs]
        new = [j for j in jobs if j["metadata"]["name"] not in seen]
        assert len(new) == 1
        name = new[0]["metadata"]["name"]
        seen.append(name)
        # upstream names a scheduled Job after its scheduled time in minutes since the epoch
        assert name.removeprefix("tick-").isdigit(), name
        k("wait", f"job/{name}", "-n", ns, "--for=condition=complete", "--timeout=30s")
    assert int(seen[1].removeprefix("tick-")) > int(seen[0].removeprefix("tick-"))

    status = wait_for(
        lambda: (
            (s := cluster.get("cronjob", "tick", "-n", ns).get("status") or {}).get(
                "lastSuccessfulTime"
            )
            and s
        ),
        "cronjob tick to record a success",
    )
    assert status.get("lastScheduleTime")
    assert not status.get("active")


def test_create_job_from_cronjob(cron_cluster: Cluster) -> None:
    cluster = cron_cluster
    ns = cluster.new_namespace("jobs")
    k = cluster.kubectl
    k("apply", "-n", ns, "-f", "-", input=cronjob("nightly", schedule="0 3 * * *", suspend=True))
    k("create", "job", "manual", "-n", ns, "--from=cronjob/nightly")
    k("wait", "job/manual", "-n", ns, "--for=condition=complete", "--timeout=30s")
    manual = cluster.get("job", "manual", "-n", ns)
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    refs = manual["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"]) for r in refs] == [("CronJob", "nightly")]
    assert manual["status"]["succeeded"] == 1
    # a suspended CronJob schedules nothing itself
    assert [j["metadata"]["name"] for j in owned_jobs(cluster, ns, "nightly")] == ["manual"]
