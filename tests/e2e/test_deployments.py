"""Deployments against a cluster of sim nodes, driven with the real kubectl: ``rollout
status`` to completion, a rolling ``set image`` whose maxSurge/maxUnavailable bounds hold on
every pod and ReplicaSet change a list-then-watch reports, ``rollout undo`` back to the old
ReplicaSet, ``scale``, ``rollout restart``, ``rollout pause``/``resume`` and ``rollout
history``. Pods turn Ready a while after Running so that a rollout takes several steps."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from edgek.objects import Obj
from tests.e2e.cluster import Cluster, cluster_fixture, image_of, running_and_ready, wait_for
from tests.helpers import Kubectl, kubectl_binaries
from tests.manifests import workload

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
IMAGE_1 = "registry.local/nginx:1"
IMAGE_2 = "registry.local/nginx:2"


# Ready 0.5 s after Running: a rollout of 10 replicas takes several observable steps.
cluster = cluster_fixture("deploy", sim_args=("--pod-ready-seconds", "0.5"))


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(cluster.server.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.new_namespace("deploy")


@pytest.fixture(params=sorted(kubectl_binaries().items()), ids=lambda item: item[0])
def kubectl(request: pytest.FixtureRequest, cluster: Cluster, tmp_path: Path) -> Kubectl:
    """Each available kubectl binary in turn, against the module's cluster."""
    binary = request.param[1]
    return Kubectl(binary, cluster.server.kubeconfig, tmp_path / "cache", request.param[0])


def deployment(name: str, replicas: int, image: str = IMAGE_1, **spec: Any) -> str:
    pod_spec = {"containers": [{"name": "nginx", "image": image}]}
    return json.dumps(workload("Deployment", name, pod_spec, replicas=replicas, **spec))


class RawWatch(watch.Watch):
    """A watch that hands out objects as sent (a new ReplicaSet's status is ``{}`` until
    its controller writes one, which the client's typed models reject: they require
    ``status.replicas``)."""

    def get_return_type(self, func: Callable[..., Any]) -> None:
        return None


class Recorder:
    """Every change of one namespaced resource, in order, from a list and a watch that
    resumes at the list's resourceVersion (so nothing between them is missed)."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str) -> None:
        self._list_fn = list_fn
        self._namespace = namespace
        listed = json.loads(list_fn(namespace, _preload_content=False).data)
        self.initial: list[Obj] = listed["items"]
        self._rv: str = listed["metadata"]["resourceVersion"]
        self.events: list[tuple[str, Obj]] = []
        self.errors: list[Obj] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            w = RawWatch()
            for event in w.stream(
                self._list_fn, self._namespace, resource_version=self._rv, timeout_seconds=1
            ):
                obj = event["object"]
                if event["type"] == "ERROR":
                    self.errors.append(obj)
                    self._stopped.set()
                    break
                with self._lock:
                    self.events.append((event["type"], obj))
                self._rv = obj["metadata"]["resourceVersion"]
                if self._stopped.is_set():
                    break
            w.stop()

    def stop(self) -> list[tuple[str, Obj]]:
        self._stopped.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the watch did not stop"
        assert not self.errors, self.errors
        with self._lock:
            return list(self.events)

    def states(self) -> Iterator[dict[str, Obj]]:
        """The objects (name -> object) as they were after each recorded event."""
        current = {o["metadata"]["name"]: o for o in self.initial}
        for type_, obj in self.stop():
            if type_ == "DELETED":
                current.pop(obj["metadata"]["name"], None)
            else:
                current[obj["metadata"]["name"]] = obj
            yield dict(current)


def replica_sets(cluster: Cluster, ns: str, app: str) -> list[Obj]:
    """The app's ReplicaSets, oldest revision first."""
    items = cluster.get("rs", "-n", ns, "-l", f"app={app}")["items"]
    return sorted(items, key=lambda rs: int(rs["metadata"]["annotations"][REVISION]))


def live_pods(cluster: Cluster, ns: str, app: str) -> list[Obj]:
    items = cluster.get("pods", "-n", ns, "-l", f"app={app}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def rollout_status(k: Kubectl, ns: str, name: str) -> str:
    return k("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=60s")


def all_on(cluster: Cluster, ns: str, app: str, image: str, replicas: int) -> bool:
    pods = live_pods(cluster, ns, app)
    return len(pods) == replicas and all(
        image_of(p) == image and running_and_ready(p) for p in pods
    )


def settled(cluster: Cluster, ns: str, name: str) -> Obj:
    """The Deployment once its controller observed its latest generation."""
    return wait_for(
        lambda: (
            (d := cluster.get("deployment", name, "-n", ns))["status"].get("observedGeneration")
            == d["metadata"]["generation"]
            and d
        ),
        f"deployment {name} to observe its generation",
    )


def check_rolling_update_bounds(
    rs_states: list[dict[str, Obj]], pod_states: list[dict[str, Obj]]
) -> None:
    """Every observed state of web's rollout kept within the default bounds, and the
    rollout used its surge."""
    # defaults: maxSurge 25% of 10 rounds up to 3, maxUnavailable 25% rounds down to 2
    max_total, min_available = 13, 8
    steps = 0
    for state in rs_states:
        rss = [rs for rs in state.values() if rs["metadata"]["labels"].get("app") == "web"]
        sizes = sum(rs["spec"]["replicas"] for rs in rss)
        available = sum((rs.get("status") or {}).get("availableReplicas", 0) for rs in rss)
        assert sizes <= max_total, f"replica sets sized {sizes} > {max_total}"
        assert available >= min_available, f"replica sets report {available} available"
        steps += 1
    assert steps > 5, "the rollout was not observed"
    surged = False
    for state in pod_states:
        pods = [
            p
            for p in state.values()
            if p["metadata"]["labels"].get("app") == "web"
            and not p["metadata"].get("deletionTimestamp")
        ]
        ready = [p for p in pods if running_and_ready(p)]
        assert len(pods) <= max_total, f"{len(pods)} pods > {max_total}"
        assert len(ready) >= min_available, f"only {len(ready)} pods ready"
        surged |= len(pods) > 10
    assert surged, "the rollout never used its surge"


def test_rollout_status_and_rolling_update_bounds(
    cluster: Cluster, api: client.ApiClient, ns: str
) -> None:
    k = cluster.kubectl
    k("apply", "-n", ns, "-f", "-", input=deployment("web", 10))
    out = rollout_status(k, ns, "web")
    assert 'deployment "web" successfully rolled out' in out
    d = cluster.get("deployment", "web", "-n", ns)
    # the controller records the revision with the status: no generation of its own
    assert d["metadata"]["generation"] == 1
    assert d["metadata"]["annotations"][REVISION] == "1"
    status = d["status"]
    assert status["observedGeneration"] == 1
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (
        10,
        10,
        10,
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    (first,) = replica_sets(cluster, ns, "web")
    assert len(live_pods(cluster, ns, "web")) == 10

    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    rs_watch = Recorder(apps.list_namespaced_replica_set, ns)
    pod_watch = Recorder(core.list_namespaced_pod, ns)
    try:
        k("set", "image", "deployment/web", "-n", ns, f"nginx={IMAGE_2}")
        out = rollout_status(k, ns, "web")
        assert 'deployment "web" successfully rolled out' in out
    finally:
        rs_states = list(rs_watch.states())
        pod_states = list(pod_watch.states())

    check_rolling_update_bounds(rs_states, pod_states)

    old, new = replica_sets(cluster, ns, "web")
    assert old["metadata"]["uid"] == first["metadata"]["uid"]
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 10
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert new["metadata"]["name"] == f"web-{new['metadata']['labels'][HASH_LABEL]}"
    assert all_on(cluster, ns, "web", IMAGE_2, 10)
    d = cluster.get("deployment", "web", "-n", ns)
    assert (d["metadata"]["generation"], d["status"]["observedGeneration"]) == (2, 2)
    assert d["metadata"]["annotations"][REVISION] == "2"


def test_undo_scale_and_history(kubectl: Kubectl, cluster: Cluster, ns: str) -> None:
    k = kubectl
    k("apply", "-n", ns, "-f", "-", input=deployment("app", 4))
    rollout_status(k, ns, "app")
    k("set", "image", "deployment/app", "-n", ns, f"nginx={IMAGE_2}")
    rollout_status(k, ns, "app")
    first, second = replica_sets(cluster, ns, "app")
    assert (first["spec"]["replicas"], second["spec"]["replicas"]) == (0, 4)

    history = k("rollout", "history", "deployment/app", "-n", ns)
    revisions = [line.split()[0] for line in history.splitlines()[2:] if line.strip()]
    assert revisions == ["1", "2"], history
    assert IMAGE_1 in k("rollout", "history", "deployment/app", "-n", ns, "--revision=1")

    k("rollout", "undo", "deployment/app", "-n", ns)
    rollout_status(k, ns, "app")
    wait_for(lambda: all_on(cluster, ns, "app", IMAGE_1, 4), "undo to bring back nginx:1")
    d = settled(cluster, ns, "app")
    assert image_of(d["spec"]["template"]) == IMAGE_1
    assert d["metadata"]["annotations"][REVISION] == "3"
    # the old ReplicaSet is reused under the new revision, not copied
    rss = replica_sets(cluster, ns, "app")
    assert [rs["metadata"]["uid"] for rs in rss] == [
        second["metadata"]["uid"],
        first["metadata"]["uid"],
    ]
    assert [rs["spec"]["replicas"] for rs in rss] == [0, 4]
    assert rss[1]["metadata"]["annotations"][REVISION] == "3"
    history = k("rollout", "history", "deployment/app", "-n", ns)
    revisions = [line.split()[0] for line in history.splitlines()[2:] if line.strip()]
    assert revisions == ["2", "3"], history

    k("scale", "deployment/app", "-n", ns, "--replicas=7")
    rollout_status(k, ns, "app")
    wait_for(lambda: all_on(cluster, ns, "app", IMAGE_1, 7), "scale up to 7 pods")
    k("scale", "deployment/app", "-n", ns, "--replicas=2")
    wait_for(lambda: all_on(cluster, ns, "app", IMAGE_1, 2), "scale down to 2 pods")
    d = settled(cluster, ns, "app")
    assert (d["status"]["replicas"], d["status"]["availableReplicas"]) == (2, 2)
    assert [rs["spec"]["replicas"] for rs in replica_sets(cluster, ns, "app")] == [0, 2]
    # scaling is no new revision
    assert d["metadata"]["annotations"][REVISION] == "3"


def test_restart_pause_and_resume(kubectl: Kubectl, cluster: Cluster, ns: str) -> None:
    k = kubectl
    k("apply", "-n", ns, "-f", "-", input=deployment("svc", 3))
    rollout_status(k, ns, "svc")
    (first,) = replica_sets(cluster, ns, "svc")

    k("rollout", "restart", "deployment/svc", "-n", ns)
    rollout_status(k, ns, "svc")
    old, restarted = replica_sets(cluster, ns, "svc")
    assert old["metadata"]["uid"] == first["metadata"]["uid"]
    assert RESTARTED_AT in restarted["spec"]["template"]["metadata"]["annotations"]
    assert (old["spec"]["replicas"], restarted["spec"]["replicas"]) == (0, 3)
    new_hash = restarted["metadata"]["labels"][HASH_LABEL]

    def restarted_pods() -> list[Obj] | None:
        pods = live_pods(cluster, ns, "svc")
        done = len(pods) == 3 and all(p["metadata"]["labels"][HASH_LABEL] == new_hash for p in pods)
        return pods if done else None

    pods = wait_for(restarted_pods, "every pod to come from the restarted ReplicaSet")
    assert all(RESTARTED_AT in p["metadata"]["annotations"] for p in pods)

    k("rollout", "pause", "deployment/svc", "-n", ns)
    k("set", "image", "deployment/svc", "-n", ns, f"nginx={IMAGE_2}")
    d = settled(cluster, ns, "svc")
    assert d["spec"]["paused"] is True
    progressing = {c["type"]: c for c in d["status"]["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")
    # the controller saw the new template and still rolls nothing out
    assert [rs["metadata"]["uid"] for rs in replica_sets(cluster, ns, "svc")] == [
        old["metadata"]["uid"],
        restarted["metadata"]["uid"],
    ]
    assert all_on(cluster, ns, "svc", IMAGE_1, 3)

    k("rollout", "resume", "deployment/svc", "-n", ns)
    rollout_status(k, ns, "svc")
    wait_for(lambda: all_on(cluster, ns, "svc", IMAGE_2, 3), "the resumed rollout to finish")
    rss = replica_sets(cluster, ns, "svc")
    assert len(rss) == 3
    assert [rs["spec"]["replicas"] for rs in rss] == [0, 0, 3]
    assert rss[-1]["metadata"]["annotations"][REVISION] == "3"
    d = settled(cluster, ns, "svc")
    assert "paused" not in d["spec"] or d["spec"]["paused"] is False
