"""The pure parts of the agent's pod engine: libpod specs, statuses, back-off, static pods,
Podman timestamps and ``$(VAR)`` expansion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from agent.events import WARNING, EventRecorder, involved
from agent.podconfig.volumes import Mount
from agent.pods import hosts
from agent.pods import spec as specs
from agent.pods.backoff import Backoff
from agent.pods.network import bridge_name, subnet
from agent.pods.static import HASH, mirror_pod, read_manifests, static_pod
from agent.pods.status import (
    Attempt,
    ContainerView,
    container_status,
    phase,
    pod_conditions,
    terminated,
)
from agent.pods.worker import attempt_of, podman_time
from edgek.apiclient import ApiClient

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "c", "image": "img"}], **spec},
    }


def test_resource_limits_as_the_kubelet_sets_them() -> None:
    limits = specs.resource_limits(
        {"resources": {"limits": {"cpu": "500m", "memory": "32Mi"}, "requests": {"cpu": "250m"}}}
    )
    assert limits == {
        "cpu": {"shares": 256, "quota": 50_000, "period": 100_000},
        "memory": {"limit": 32 * 2**20, "swap": 32 * 2**20},
    }
    # no request: the limit is the request; a tiny request gets the minimum shares
    assert specs.resource_limits({"resources": {"limits": {"cpu": "2"}}})["cpu"]["shares"] == 2048
    assert specs.resource_limits({"resources": {"requests": {"cpu": "1m"}}}) == {
        "cpu": {"shares": 2}
    }
    assert specs.resource_limits({}) == {}


def test_container_spec_security_command_and_labels() -> None:
    p = pod(
        securityContext={
            "runAsUser": 1000,
            "fsGroup": 2000,
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
        }
    )
    container = {
        "name": "c",
        "image": "img",
        "workingDir": "/w",
        "securityContext": {
            "runAsGroup": 3000,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["all"]},
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
    }
    body = specs.container_spec(
        p,
        container,
        node="n1",
        attempt=2,
        init=False,
        env=[("A", "1")],
        mounts=[Mount("/dev/termination-log", "/var/x", read_only=True)],
        command=["sh"],
        args=None,
    )
    assert body["name"] == "k8s_c_web_ns_u1_2"
    assert body["pod"] == "k8s_web_ns_u1"
    assert body["labels"]["io.kubernetes.container.restartCount"] == "2"
    assert body["entrypoint"] == ["sh"] and body["command"] == []
    assert body["env"] == {"A": "1"}
    assert body["user"] == "1000:3000" and body["groups"] == ["2000"]
    assert body["cap_add"] == ["CAP_NET_ADMIN"] and body["cap_drop"] == ["ALL"]
    assert body["read_only_filesystem"] and body["no_new_privileges"]
    assert body["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert body["work_dir"] == "/w"
    assert body["mounts"] == [
        {
            "destination": "/dev/termination-log",
            "source": "/var/x",
            "type": "bind",
            "options": ["rbind", "ro"],
        }
    ]
    # args alone replace the image's cmd and keep its entrypoint
    only_args = specs.container_spec(
        p, container, node="n1", attempt=0, init=True, env=[], mounts=[], command=None, args=["x"]
    )
    assert "entrypoint" not in only_args and only_args["command"] == ["x"]


def test_run_as_non_root_checks() -> None:
    strict = pod(securityContext={"runAsNonRoot": True})
    c: dict[str, Any] = {"name": "c"}
    with pytest.raises(specs.SpecError, match="image will run as root"):
        specs.check_non_root(strict, c, "")
    with pytest.raises(specs.SpecError, match="non-numeric user"):
        specs.check_non_root(strict, c, "nobody")
    specs.check_non_root(strict, c, "65534:65534")
    with pytest.raises(specs.SpecError, match="runAsUser breaks non-root"):
        specs.check_non_root(strict, {"name": "c", "securityContext": {"runAsUser": 0}}, "1")
    specs.check_non_root(pod(), c, "")


def test_sandbox_spec() -> None:
    p = pod(
        hostAliases=[{"ip": "10.0.0.9", "hostnames": ["db", "db.local"]}],
        hostname="h",
        containers=[{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
    )
    body = specs.sandbox_spec(p, "n1", "net0")
    assert body["name"] == "k8s_web_ns_u1" and body["hostname"] == "h"
    assert body["netns"] == {"nsmode": "bridge"} and body["Networks"] == {"net0": {}}
    assert body["hostadd"] == ["db:10.0.0.9", "db.local:10.0.0.9"]
    assert body["portmappings"] == [{"container_port": 80, "host_port": 8080, "protocol": "tcp"}]
    host = specs.sandbox_spec(pod(hostNetwork=True, hostPID=True, hostIPC=True), "n1", "net0")
    assert host["netns"] == {"nsmode": "host"} and "Networks" not in host
    assert host["hostname"] == "n1"
    assert host["pidns"] == {"nsmode": "host"} and host["ipcns"] == {"nsmode": "host"}
    assert "ipc" not in host["share"]


HOSTS_HEAD = (
    "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
)


def test_managed_hosts_file(tmp_path: Path) -> None:
    """The kubelet's hosts file: hostname (fully qualified with a subdomain), aliases; it
    is mounted unless the pod is on the host network, has no IP or mounts its own."""
    plain = hosts.hosts_content(pod(), ["10.42.0.5"])
    assert plain == HOSTS_HEAD + "10.42.0.5\tweb\n"
    named = pod(
        hostname="h1",
        subdomain="sub",
        hostAliases=[{"ip": "10.0.0.9", "hostnames": ["db", "db.local"]}],
    )
    assert hosts.hosts_content(named, ["10.42.0.5"], "example.org") == (
        HOSTS_HEAD + "10.42.0.5\th1.sub.ns.svc.example.org\th1\n"
        "\n# Entries added by HostAliases.\n10.0.0.9\tdb\tdb.local\n"
    )
    assert hosts.wants_hosts_file(pod(), [], ["10.42.0.5"])
    assert not hosts.wants_hosts_file(pod(hostNetwork=True), [], ["10.42.0.5"])
    assert not hosts.wants_hosts_file(pod(), [], [])
    own = [Mount("/etc/hosts", "/x", read_only=True)]
    assert not hosts.wants_hosts_file(pod(), own, ["10.42.0.5"])
    target = tmp_path / "pod" / "etc-hosts"
    hosts.write_hosts(target, plain)
    inode = target.stat().st_ino
    hosts.write_hosts(target, HOSTS_HEAD)
    assert target.read_text() == HOSTS_HEAD and target.stat().st_ino == inode


def _view(name: str, latest: Attempt | None, **kw: Any) -> ContainerView:
    return ContainerView(name=name, image="img", latest=latest, **kw)


def _exited(code: int, attempt: int = 0, **kw: Any) -> Attempt:
    return Attempt(
        "id", "c", attempt, False, False, exit_code=code, started_at=T0, finished_at=T0, **kw
    )


def _running(attempt: int = 0) -> Attempt:
    return Attempt("id", "c", attempt, False, True, started_at=T0)


def test_phase() -> None:
    never, always, on_failure = (
        {"restartPolicy": "Never"},
        {"restartPolicy": "Always"},
        {"restartPolicy": "OnFailure"},
    )
    assert phase(always, [], [_view("c", None)]) == "Pending"
    assert phase(always, [], [_view("c", _running())]) == "Running"
    assert phase(always, [], [_view("c", _exited(0))]) == "Running"
    assert phase(always, [], [_view("c", _exited(1))], terminal=True) == "Failed"
    assert phase(never, [], [_view("c", _exited(7))]) == "Failed"
    assert phase(never, [], [_view("c", _exited(0))]) == "Succeeded"
    assert phase(on_failure, [], [_view("c", _exited(0))]) == "Succeeded"
    assert phase(on_failure, [], [_view("c", _exited(1))]) == "Running"
    # init containers: pending until they are done; a failed one fails a Never pod
    assert phase(always, [_view("i", _running())], [_view("c", None)]) == "Pending"
    assert phase(never, [_view("i", _exited(1))], [_view("c", None)]) == "Failed"
    crash = _view("c", _exited(1), waiting_reason="CrashLoopBackOff")
    assert phase(always, [], [crash]) == "Running"


def test_container_status_shapes() -> None:
    crash = container_status(
        _view(
            "c",
            _exited(3, attempt=2),
            waiting_reason="CrashLoopBackOff",
            waiting_message="back-off 20s",
        )
    )
    assert crash["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}
    assert crash["lastState"]["terminated"]["exitCode"] == 3
    assert crash["lastState"]["terminated"]["reason"] == "Error"
    assert crash["restartCount"] == 2 and crash["containerID"] == "podman://id"
    running = container_status(_view("c", _running(1), previous=_exited(0), ready=True))
    assert running["state"] == {"running": {"startedAt": "2026-01-02T03:04:05Z"}}
    assert running["lastState"]["terminated"]["reason"] == "Completed"
    assert running["ready"]
    creating = container_status(_view("c", None))
    assert creating["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert "containerID" not in creating
    assert terminated(_exited(137, oom_killed=True))["reason"] == "OOMKilled"
    never_ran = Attempt("id", "c", 0, False, False, error="exec: no such file")
    assert terminated(never_ran)["exitCode"] == 128
    assert terminated(never_ran)["reason"] == "StartError"
    assert terminated(never_ran)["message"] == "exec: no such file"


def test_conditions_keep_transition_times() -> None:
    before = [{"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    conds = pod_conditions(
        sandbox_ready=True,
        init=[_view("i", _running())],
        containers=[_view("c", None)],
        pod_phase="Pending",
        now=T0,
        current=before,
    )
    by_type = {c["type"]: c for c in conds}
    assert by_type["Initialized"]["reason"] == "ContainersNotInitialized"
    assert by_type["Initialized"]["message"] == "containers with incomplete status: [i]"
    assert by_type["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert by_type["PodReadyToStartContainers"]["status"] == "True"
    done = pod_conditions(
        sandbox_ready=True,
        init=[],
        containers=[_view("c", _exited(0))],
        pod_phase="Succeeded",
        now=T0,
    )
    assert {c["type"]: c["reason"] for c in done}["Ready"] == "PodCompleted"


def test_backoff_doubles_caps_and_forgets() -> None:
    b, key = Backoff(), ("u", "c")
    assert b.remaining(key, since=100, now=100) == 0  # first retry at once
    b.next(key, 100)
    assert b.remaining(key, since=100, now=105) == 5
    for _ in range(10):
        b.next(key, 110)
    assert b.delay(key, 110) == 300
    assert b.remaining(key, since=110, now=110 + 601) == 0  # forgotten after 10 min
    assert b.delay(key, 110 + 601) == 10
    b.next(key, 0)
    b.forget("u")
    assert b.remaining(key, since=0, now=1) == 0


def test_backoff_survives_a_restart(tmp_path: Path) -> None:
    """Kept in a file: a new agent's back-off goes on from the saved delays."""
    path = tmp_path / "state" / "backoff.json"
    key = ("u", "c")

    async def crash_three_times() -> None:
        b = Backoff.load(path)
        for _ in range(3):
            b.next(key, 100)
        b.next(("v", "c"), 100)
        b.forget("v")
        await b.flush()

    asyncio.run(crash_three_times())
    again = Backoff.load(path)
    assert again.delay(key, 120) == 40 and again.remaining(key, since=100, now=120) == 20
    assert again.delay(("v", "c"), 120) == 10  # forgotten before the restart
    path.write_text("not json")
    assert Backoff.load(path).delay(key, 120) == 10
    assert Backoff.load(tmp_path / "missing.json").remaining(key, 0, 1) == 0


def test_static_pod_and_mirror(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: Pod\nmetadata: {name: web}\nspec: {containers: []}\n")
    (tmp_path / "b.json").write_text('{"kind": "Service", "metadata": {"name": "x"}}')
    (tmp_path / "c.txt").write_text("ignored")
    ((_, manifest),) = read_manifests(tmp_path)
    p = static_pod(manifest, "n1")
    assert p["metadata"]["name"] == "web-n1" and p["metadata"]["namespace"] == "default"
    assert p["spec"]["nodeName"] == "n1"
    assert p == static_pod(manifest, "n1")  # the uid is a hash: stable
    assert static_pod(manifest, "n2")["metadata"]["uid"] != p["metadata"]["uid"]
    mirror = mirror_pod(p, "n1", "node-uid")
    annotations = mirror["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.mirror"] == annotations[HASH]
    assert mirror["metadata"]["ownerReferences"][0]["uid"] == "node-uid"
    assert "uid" not in mirror["metadata"]


def test_podman_inspect_helpers() -> None:
    assert podman_time("0001-01-01T00:00:00Z") is None
    assert podman_time("2026-01-02T03:04:05.123456789+00:00") == T0.replace(microsecond=123456)
    doc = {
        "Id": "abc",
        "Created": "2026-01-02T03:04:00Z",
        "Image": "sha256:1",
        "ImageName": "img",
        "Config": {
            "Labels": {
                "io.kubernetes.container.name": "c",
                "io.kubernetes.container.restartCount": "4",
                "io.edgek.container.kind": "init",
            }
        },
        "State": {
            "Status": "created",
            "Running": False,
            "ExitCode": 127,
            "StartedAt": "0001-01-01T00:00:00Z",
        },
    }
    a = attempt_of(doc)
    assert (a.name, a.attempt, a.init, a.exit_code) == ("c", 4, True, 127)
    assert a.start_failed and a.created and a.finished_at == T0.replace(second=0)


def test_network_and_event_helpers() -> None:
    assert subnet("10.42.3.0/24") == {"subnet": "10.42.3.0/24", "gateway": "10.42.3.1"}
    assert len(bridge_name("a-very-long-node-name.example.com", Path("/var/lib/edgek"))) <= 15
    assert bridge_name("a", Path("/d")) != bridge_name("b", Path("/d"))
    assert bridge_name("a", Path("/d1")) != bridge_name("a", Path("/d2"))
    ref = involved(pod(), "c", init=True)
    assert ref["fieldPath"] == "spec.initContainers{c}" and ref["uid"] == "u1"
    assert "fieldPath" not in involved(pod())


class _FakeApi:
    """Records the event writes of an EventRecorder."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path, body))
        return body

    async def patch(self, path: str, body: Any, *, patch_type: str = "merge") -> Any:
        self.calls.append(("PATCH", path, body))
        return body


@pytest.mark.asyncio
async def test_events_are_aggregated() -> None:
    """The same event twice: one Event created, then its count and lastTimestamp bumped;
    another message is another Event."""
    api = _FakeApi()
    recorder = EventRecorder(lambda: cast(ApiClient, api), "n1", clock=lambda: T0)
    recorder.start()
    ref = involved(pod(), "c")
    for message in ("back-off", "back-off", "other"):
        recorder.record(ref, WARNING, "BackOff", message)
    for _ in range(100):
        if len(api.calls) == 3:
            break
        await asyncio.sleep(0.01)
    await recorder.stop()
    (m1, path1, first), (m2, path2, bump), (m3, _, other) = api.calls
    assert (m1, path1) == ("POST", "/api/v1/namespaces/ns/events")
    assert first["source"] == {"component": "kubelet", "host": "n1"}
    assert first["count"] == 1 and first["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert (m2, path2) == ("PATCH", f"/api/v1/namespaces/ns/events/{first['metadata']['name']}")
    assert bump == {"count": 2, "lastTimestamp": "2026-01-02T03:04:05Z"}
    assert m3 == "POST" and other["message"] == "other"
