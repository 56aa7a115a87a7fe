"""The CronJob controller on the control-loop bench with a fake clock: no real waiting.
Only this loop runs, so the tests finish Jobs by writing their status."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from edgek.objects import Obj
from edgek.timefmt import format_time
from server.controllers.cronjob import SCHEDULED_TIMESTAMP, CronJobController
from server.storage.objectstore import WriteOptions
from tests.unit.controller_harness import T0, Harness


def cronjob_body(name: str, schedule: str = "*/1 * * * *", **spec: Any) -> Obj:
    template = {
        "metadata": {"labels": {"app": name}, "annotations": {"team": "batch"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            }
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "timeZone": "Etc/UTC", "jobTemplate": template, **spec},
    }


def minutes(when: datetime) -> int:
    return int(when.timestamp()) // 60


async def start(h: Harness) -> CronJobController:
    [loop] = await h.start(CronJobController)
    assert isinstance(loop, CronJobController)
    return loop


async def tick(h: Harness, loop: CronJobController, seconds: float) -> None:
    """Move the fake clock and let the loop catch up."""
    h.clock.advance(seconds)
    loop.clock_changed()
    await h.settle()


async def jobs(h: Harness) -> dict[str, Obj]:
    return {j["metadata"]["name"]: j for j in await h.list("batch", "jobs", "default")}


async def cronjob(h: Harness, name: str) -> Obj:
    found = await h.get("batch", "cronjobs", "default", name)
    assert found is not None
    return found


async def complete(h: Harness, job: Obj, type_: str = "Complete") -> None:
    """Mark a Job finished as the Job controller would."""
    now = format_time(h.clock())
    job["status"] = {
        "startTime": job["metadata"]["creationTimestamp"],
        "conditions": [
            {"type": type_, "status": "True", "lastTransitionTime": now, "lastProbeTime": now}
        ],
    }
    if type_ == "Complete":
        job["status"]["completionTime"] = now
        job["status"]["succeeded"] = 1
    else:
        job["status"]["failed"] = 1
    md = job["metadata"]
    await h.objects.update(
        h.kind("batch", "jobs"), "default", md["name"], job, WriteOptions(subresource="status")
    )


async def reasons(h: Harness, name: str) -> list[str]:
    await h.events.flush()
    return [
        e["reason"]
        for e in await h.list("", "events", "default")
        if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == "CronJob"
    ]


async def test_every_minute_creates_jobs_as_the_clock_advances(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    await h.create("batch", "cronjobs", "default", cronjob_body("every"))
    await h.settle()
    assert await jobs(h) == {}
    await tick(h, loop, 30)
    assert await jobs(h) == {}
    await tick(h, loop, 30)
    first = T0 + timedelta(minutes=1)
    found = await jobs(h)
    assert list(found) == [f"every-{minutes(first)}"]
    job = found[f"every-{minutes(first)}"]
    md = job["metadata"]
    assert md["labels"] == {"app": "every"}
    assert md["annotations"] == {"team": "batch", SCHEDULED_TIMESTAMP: "2026-01-01T12:01:00Z"}
    cj = await cronjob(h, "every")
    owner = md["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CronJob",
        "every",
        cj["metadata"]["uid"],
        True,
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    assert cj["status"]["lastScheduleTime"] == "2026-01-01T12:01:00Z"
    [ref] = cj["status"]["active"]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("Job", md["name"], md["uid"])
    await tick(h, loop, 60)
    await tick(h, loop, 60)
    assert sorted(await jobs(h)) == [f"every-{minutes(first) + i}" for i in range(3)]
    assert len((await cronjob(h, "every"))["status"]["active"]) == 3
    assert (await reasons(h, "every")).count("SuccessfulCreate") == 3


async def test_finished_job_leaves_active_and_sets_last_success(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    await h.create("batch", "cronjobs", "default", cronjob_body("done"))
    await tick(h, loop, 60)
    [job] = (await jobs(h)).values()
    await complete(h, job)
    await h.settle()
    status = (await cronjob(h, "done"))["status"]
    assert "active" not in status
    assert status["lastSuccessfulTime"] == format_time(h.clock())
    assert "SawCompletedJob" in await reasons(h, "done")


async def test_forbid_skips_while_a_job_runs(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    await h.create("batch", "cronjobs", "default", cronjob_body("solo", concurrencyPolicy="Forbid"))
    await tick(h, loop, 60)
    await tick(h, loop, 60)
    [job] = (await jobs(h)).values()
    assert "JobAlreadyActive" in await reasons(h, "solo")
    await complete(h, job)
    await h.settle()
    # the 12:02 run was held back, not dropped: it starts once the 12:01 one is done
    second = f"solo-{minutes(T0 + timedelta(minutes=2))}"
    assert sorted(await jobs(h)) == sorted([job["metadata"]["name"], second])
    await tick(h, loop, 60)
    assert len(await jobs(h)) == 2  # 12:03: the 12:02 run is still active


async def test_replace_deletes_the_running_job(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    body = cronjob_body("swap", concurrencyPolicy="Replace")
    await h.create("batch", "cronjobs", "default", body)
    await tick(h, loop, 60)
    [old] = await jobs(h)
    await tick(h, loop, 60)
    second = f"swap-{minutes(T0 + timedelta(minutes=2))}"
    assert list(await jobs(h)) == [second]
    assert old != second
    [ref] = (await cronjob(h, "swap"))["status"]["active"]
    assert ref["name"] == second
    assert "SuccessfulDelete" in await reasons(h, "swap")


async def test_suspend_stops_and_resume_runs_only_the_latest(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    await h.create("batch", "cronjobs", "default", cronjob_body("nap", suspend=True))
    await tick(h, loop, 60)
    await tick(h, loop, 60)
    await tick(h, loop, 60)
    assert await jobs(h) == {}
    cj = await cronjob(h, "nap")
    cj["spec"]["suspend"] = False
    await h.objects.update(h.kind("batch", "cronjobs"), "default", "nap", cj, WriteOptions())
    await h.settle()
    assert list(await jobs(h)) == [f"nap-{minutes(T0 + timedelta(minutes=3))}"]


async def test_history_limits_keep_the_newest_finished_jobs(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    body = cronjob_body("hist", successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1)
    await h.create("batch", "cronjobs", "default", body)
    made: list[str] = []
    for outcome in ("Complete", "Failed", "Complete", "Failed", "Complete", "Complete"):
        await tick(h, loop, 60)
        new = [n for n in await jobs(h) if n not in made]
        assert len(new) == 1
        made.extend(new)
        await complete(h, (await jobs(h))[new[0]], outcome)
        await h.settle()
    left = await jobs(h)
    # successes were made 1st, 3rd, 5th and 6th; failures 2nd and 4th
    assert sorted(left) == sorted([made[3], made[4], made[5]])
    assert (await reasons(h, "hist")).count("SuccessfulDelete") == 3


async def test_starting_deadline_skips_missed_times(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    await h.create(
        "batch", "cronjobs", "default", cronjob_body("strict", startingDeadlineSeconds=10)
    )
    h.clock.advance(90)  # 12:01 was missed while nothing ran the loop
    loop.clock_changed()
    await h.settle()
    assert await jobs(h) == {}
    await tick(h, loop, 35)  # 12:02:05: within 10 s of 12:02
    assert list(await jobs(h)) == [f"strict-{minutes(T0 + timedelta(minutes=2))}"]


async def test_too_many_missed_start_times_warns_and_runs_the_latest(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    await h.create("batch", "cronjobs", "default", cronjob_body("behind"))
    await tick(h, loop, 200 * 60)
    assert list(await jobs(h)) == [f"behind-{minutes(T0 + timedelta(minutes=200))}"]
    assert "TooManyMissedTimes" in await reasons(h, "behind")


async def test_time_zone(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    body = cronjob_body("ny", "0 9 * * *", timeZone="America/New_York")
    await h.create("batch", "cronjobs", "default", body)
    await tick(h, loop, 60 * 60)  # 08:00 in New York
    assert await jobs(h) == {}
    await tick(h, loop, 60 * 60)  # 09:00 in New York (14:00 UTC)
    [job] = (await jobs(h)).values()
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-01-01T09:00:00-05:00"
    assert job["metadata"]["name"] == f"ny-{minutes(T0 + timedelta(hours=2))}"


async def test_unknown_time_zone_is_reported(harness: Harness) -> None:
    h = harness
    loop = await start(h)
    await h.create("batch", "cronjobs", "default", cronjob_body("lost", timeZone="Mars/Olympus"))
    await tick(h, loop, 120)
    assert await jobs(h) == {}
    assert "UnknownTimeZone" in await reasons(h, "lost")


async def test_manual_job_is_reported_unexpected(harness: Harness) -> None:
    """``kubectl create job --from=cronjob/x`` makes a Job the CronJob did not schedule."""
    h = harness
    loop = await start(h)
    await h.create("batch", "cronjobs", "default", cronjob_body("src", "0 0 1 1 *"))
    cj = await cronjob(h, "src")
    manual = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "src-manual",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": "src",
                    "uid": cj["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": cj["spec"]["jobTemplate"]["spec"],
    }
    await h.create("batch", "jobs", "default", manual)
    await tick(h, loop, 1)
    assert "UnexpectedJob" in await reasons(h, "src")
    assert "active" not in (await cronjob(h, "src"))["status"]
