"""Pods run for real: the agent on its own Podman runs what the server binds to its node
(issue 11's acceptance), driven through the real kubectl, everything inside a network
namespace of the test's (see :mod:`tests.agent.agentcluster`)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentcluster import AgentCluster, condition, container_status, started
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.e2e.cluster import wait_for

pytestmark = [pytest.mark.e2e, needs_podman]
NS = "default"


@pytest.fixture(scope="module")
def cluster(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> Iterator[AgentCluster]:
    """One server and one agent for the module."""
    with started(netns, short_dirs(), busybox_tar) as c:
        yield c


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Pod manifest of busybox containers."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": list(containers), "terminationGracePeriodSeconds": 5, **spec},
    }


def box(name: str, script: str, **fields: Any) -> dict[str, Any]:
    """A busybox container running ``sh -c script``."""
    return {"name": name, "image": IMAGE, "command": ["sh", "-c", script], **fields}


def phase(p: dict[str, Any]) -> str:
    return str((p.get("status") or {}).get("phase") or "")


def test_deployment_rolls_out_and_pods_answer_from_the_node(cluster: AgentCluster) -> None:
    """A Deployment of busybox httpd becomes available; each pod IP (from the node's
    podCIDR) answers HTTP from the node."""
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "httpd",
                                "image": IMAGE,
                                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                                "ports": [{"containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        }
    )
    cluster.kubectl("rollout", "status", "deployment/web", "-n", NS, "--timeout=90s")
    pods = cluster.pods(NS, "app=web")
    assert len(pods) == 2
    node = json.loads(cluster.kubectl("get", "node", "edge1", "-o", "json"))
    prefix = node["spec"]["podCIDR"].rsplit(".", 1)[0] + "."
    for p in pods:
        status = p["status"]
        assert status["phase"] == "Running"
        assert condition(p, "Ready") == "True"
        ip = status["podIP"]
        assert ip.startswith(prefix)
        cs = container_status(p)
        assert cs["containerID"].startswith("podman://")
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        for _ in range(30):
            code, body = cluster.fetch(f"http://{ip}:8080/passwd")
            if code == 0:
                break
            time.sleep(0.2)
        assert code == 0 and body.startswith("root:x:0:0:")


def test_crash_loop_back_off(cluster: AgentCluster) -> None:
    """A container that keeps exiting 3 is restarted once at once, then waits in
    CrashLoopBackOff with the exit in lastState."""
    cluster.apply(pod("crash", box("main", "exit 3")))

    def backing_off(p: dict[str, Any]) -> bool:
        cs = container_status(p)
        waiting = (cs.get("state") or {}).get("waiting") or {}
        return waiting.get("reason") == "CrashLoopBackOff"

    p = cluster.wait_pod(NS, "crash", backing_off, "CrashLoopBackOff", 60)
    cs = container_status(p)
    assert cs["restartCount"] >= 1
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off 10s restarting failed container=main" in cs["state"]["waiting"]["message"]
    assert phase(p) == "Running"
    reasons = {e["reason"] for e in cluster.events(NS) if e["involvedObject"]["name"] == "crash"}
    assert {"Created", "Started", "BackOff"} <= reasons


def test_restart_never_exit_7_fails(cluster: AgentCluster) -> None:
    """restartPolicy Never and exit 7: phase Failed, exit code 7, no restart."""
    cluster.apply(pod("seven", box("main", "exit 7"), restartPolicy="Never"))
    p = cluster.wait_pod(NS, "seven", lambda p: phase(p) == "Failed", "phase Failed")
    cs = container_status(p)
    assert cs["state"]["terminated"]["exitCode"] == 7
    assert cs["state"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 0


def test_memory_limit_ends_as_oom_killed(cluster: AgentCluster) -> None:
    """A 32Mi memory limit ends a 200 MB allocation: terminated OOMKilled."""
    limited = box(
        "hog",
        "dd if=/dev/zero of=/dev/null bs=200M count=1",
        resources={"limits": {"memory": "32Mi"}},
    )
    cluster.apply(pod("oom", limited, restartPolicy="Never"))
    p = cluster.wait_pod(NS, "oom", lambda p: phase(p) == "Failed", "phase Failed")
    terminated = container_status(p)["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", terminated
    assert terminated["exitCode"] == 137


def test_init_container_runs_before_the_main_one(cluster: AgentCluster) -> None:
    """The init container finishes before the main container starts; Initialized is True."""
    init = box("setup", "sleep 1; echo ready > /dev/termination-log")
    cluster.apply(pod("inits", box("main", "sleep 3600"), initContainers=[init]))
    p = cluster.wait_pod(NS, "inits", lambda p: phase(p) == "Running", "phase Running")
    first = container_status(p, "setup", init=True)["state"]["terminated"]
    assert first["exitCode"] == 0 and first["reason"] == "Completed"
    assert first["message"] == "ready\n"
    main = container_status(p, "main")["state"]["running"]
    assert first["finishedAt"] <= main["startedAt"]
    assert condition(p, "Initialized") == "True"


def test_job_completes(cluster: AgentCluster) -> None:
    """A Job's pod exits 0: the pod Succeeded and the Job completes."""
    cluster.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once", "namespace": NS},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [box("work", "echo done")],
                    }
                }
            },
        }
    )
    cluster.kubectl("wait", "--for=condition=complete", "job/once", "-n", NS, "--timeout=60s")
    (p,) = cluster.pods(NS, "job-name=once")
    assert phase(p) == "Succeeded"
    assert container_status(p)["state"]["terminated"]["reason"] == "Completed"
    # the finished pod's sandbox is stopped: its address is free again
    sandbox = f"k8s_{p['metadata']['name']}_{NS}_{p['metadata']['uid']}"

    def released() -> bool:
        infra = cluster.podman("pod", "inspect", sandbox, "--format", "{{.InfraContainerID}}")
        state = cluster.podman("inspect", infra.strip(), "--format", "{{.State.Running}}")
        return state.strip() == "false"

    wait_for(released, "the sandbox stopped", 30)


def test_missing_binary_is_a_start_error_and_the_agent_keeps_serving(
    cluster: AgentCluster,
) -> None:
    """A command that does not exist: a Failed event, the container terminated with
    StartError (exit 128) as lastState while it backs off; other pods still start."""
    cluster.apply(pod("nobin", {"name": "main", "image": IMAGE, "command": ["/no/such"]}))

    def failed_once(p: dict[str, Any]) -> bool:
        cs = container_status(p)
        last = (cs.get("lastState") or {}).get("terminated") or {}
        return last.get("reason") == "StartError"

    p = cluster.wait_pod(NS, "nobin", failed_once, "a StartError", 60)
    last = container_status(p)["lastState"]["terminated"]
    assert last["exitCode"] == 128
    assert "/no/such" in last["message"]
    failed = [
        e
        for e in cluster.events(NS)
        if e["involvedObject"]["name"] == "nobin" and e["reason"] == "Failed"
    ]
    assert failed and failed[0]["type"] == "Warning"
    assert failed[0]["source"] == {"component": "kubelet", "host": "edge1"}
    cluster.apply(pod("after-nobin", box("main", "sleep 3600")))
    cluster.wait_pod(NS, "after-nobin", lambda p: phase(p) == "Running", "phase Running")


def test_delete_runs_prestop_then_sigterm_then_removes_the_pod(cluster: AgentCluster) -> None:
    """Deleting a pod: the preStop hook runs, then the container gets SIGTERM (both write
    to the termination log, the trap's exit code is in the final status), then the agent
    removes the pod object."""
    log = "/dev/termination-log"
    script = f"trap 'echo term >> {log}; exit 42' TERM; while :; do sleep 0.1; done"
    prestop = {"exec": {"command": ["sh", "-c", f"echo prestop >> {log}"]}}
    cluster.apply(pod("term", box("main", script, lifecycle={"preStop": prestop})))
    cluster.wait_pod(NS, "term", lambda p: phase(p) == "Running", "phase Running")
    watched = cluster.root / "term-watch.json"
    watch = subprocess.Popen(
        [
            *cluster.kubectl.prefix,
            cluster.kubectl.binary,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "get",
            "pod",
            "term",
            "-n",
            NS,
            "-w",
            "-o",
            "json",
            "--output-watch-events",
        ],
        stdout=watched.open("w"),
    )
    try:
        # the watch prints the pod once it listed it: it is watching then (a fixed sleep
        # was too short for kubectl to start on a loaded machine)
        wait_for(lambda: watched.stat().st_size > 0, "the watch to list the pod", 30)
        started = time.monotonic()
        cluster.kubectl("delete", "pod", "term", "-n", NS, "--wait=true", "--timeout=60s")
        assert time.monotonic() - started < 5  # SIGTERM ended it, no grace period spent
        # kubectl delete --wait saw the deletion on its own watch; ours may be behind
        wait_for(lambda: '"DELETED"' in watched.read_text(), "the watch's DELETED event", 10)
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    out = watched.read_text()
    decoder, seen, at = json.JSONDecoder(), [], 0
    while at < len(out.strip()):
        event, at = decoder.raw_decode(out, at)
        seen.append(event)
        while at < len(out) and out[at].isspace():
            at += 1
    ends = [
        cs["state"]["terminated"]
        for e in seen
        for cs in (e["object"].get("status") or {}).get("containerStatuses") or []
        if "terminated" in cs["state"]
    ]
    assert ends and ends[-1]["exitCode"] == 42
    assert ends[-1]["message"] == "prestop\nterm\n"
    assert seen[-1]["type"] == "DELETED"
    killing = [e for e in cluster.events(NS) if e["involvedObject"]["name"] == "term"]
    assert "Killing" in {e["reason"] for e in killing}


def attempts(cluster: AgentCluster, name: str) -> list[int]:
    """The attempts of a pod's containers in the agent's Podman (their name's suffix)."""
    out = cluster.podman(
        "ps", "-a", "--filter", f"label=io.kubernetes.pod.name={name}", "--format", "{{.Names}}"
    )
    return sorted(int(n.rsplit("_", 1)[1]) for n in out.split() if n.startswith("k8s_main_"))


def test_agent_restart_adopts_running_pods(cluster: AgentCluster) -> None:
    """A restarted agent keeps the running containers: same container IDs, same
    restartCount, no new attempt."""
    cluster.apply(pod("steady", box("main", "sleep 3600")))
    before = cluster.wait_pod(NS, "steady", lambda p: phase(p) == "Running", "phase Running")
    started = container_status(before)
    runs = cluster.pod_starts()
    cluster.agent.stop()
    cluster.start_agent()
    wait_for(lambda: cluster.pod_starts() > runs, "the new agent running pods", 60)
    time.sleep(3)  # a few syncs of the new agent
    after = cluster.pod(NS, "steady")
    assert after is not None and phase(after) == "Running"
    now = container_status(after)
    assert now["containerID"] == started["containerID"]
    assert now["restartCount"] == started["restartCount"] == 0
    assert now["state"] == started["state"]
    assert attempts(cluster, "steady") == [0]


def test_autonomy_while_the_server_is_away(cluster: AgentCluster) -> None:
    """Server stopped: a failing container is restarted by the agent, also after the agent
    itself restarted while the server is still down; server back: the status catches up.
    A pod force-deleted while the agent was down is removed from the node when it returns.
    Attempts are numbered per start, so the count proves no attempt started twice."""
    cluster.apply(pod("edge", box("main", "sleep 2; exit 1")))
    cluster.apply(pod("doomed", box("main", "sleep 3600")))
    cluster.wait_pod(NS, "doomed", lambda p: phase(p) == "Running", "phase Running")
    cluster.wait_pod(NS, "edge", lambda p: container_status(p).get("restartCount"), "a restart")
    cluster.server.stop()
    seen = attempts(cluster, "edge")
    wait_for(lambda: attempts(cluster, "edge")[-1] > seen[-1], "a restart while offline", 40)
    cluster.agent.stop()
    cluster.start_agent(wait_ready=False)
    seen = attempts(cluster, "edge")
    wait_for(
        lambda: attempts(cluster, "edge")[-1] > seen[-1], "a restart by the restarted agent", 60
    )
    starts = cluster.podman(
        "events",
        "--stream=false",
        "--since",
        "10m",
        "--filter",
        "event=start",
        "--filter",
        "label=io.kubernetes.pod.name=edge",
        "--format",
        "{{.Name}}",
    ).split()
    started = [name for name in starts if name.startswith("k8s_main_")]
    assert len(started) == len(set(started)) >= 3  # every attempt was started once
    cluster.start_server()

    def caught_up(p: dict[str, Any]) -> bool:
        return (
            int(container_status(p).get("restartCount") or 0) >= attempts(cluster, "edge")[-1] - 1
        )

    cluster.wait_pod(NS, "edge", caught_up, "the status to catch up", 60)
    cluster.agent.stop()
    cluster.kubectl("delete", "pod", "doomed", "-n", NS, "--grace-period=0", "--force")
    cluster.start_agent()
    wait_for(lambda: not attempts(cluster, "doomed"), "the deleted pod removed from the node", 60)


def test_liveness_failure_restarts_the_container(cluster: AgentCluster) -> None:
    """A failing liveness probe: Unhealthy and Killing events, the container restarted."""
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
    cluster.apply(pod("unwell", box("main", "sleep 3600", livenessProbe=probe)))
    p = cluster.wait_pod(
        NS, "unwell", lambda p: container_status(p).get("restartCount"), "a restart", 60
    )
    assert container_status(p)["lastState"]["terminated"]["exitCode"] in (137, 143)
    reasons = {e["reason"] for e in cluster.events(NS) if e["involvedObject"]["name"] == "unwell"}
    assert {"Unhealthy", "Killing"} <= reasons


def test_readiness_gates_ready_and_endpoints(cluster: AgentCluster) -> None:
    """Not Ready (and not in the Service's ready addresses) until the readiness probe
    passes."""
    probe = {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 1}
    script = "sleep 4; touch /tmp/ready; sleep 3600"
    manifest = pod("gated", box("main", script, readinessProbe=probe))
    manifest["metadata"]["labels"] = {"app": "gated"}
    cluster.apply(manifest)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gated", "namespace": NS},
            "spec": {"selector": {"app": "gated"}, "ports": [{"port": 80}]},
        }
    )
    p = cluster.wait_pod(NS, "gated", lambda p: phase(p) == "Running", "phase Running")
    assert condition(p, "Ready") == "False"
    assert container_status(p)["started"] and not container_status(p)["ready"]
    p = cluster.wait_pod(NS, "gated", lambda p: condition(p, "Ready") == "True", "Ready", 30)

    def ready_address() -> bool:
        endpoints = json.loads(cluster.kubectl("get", "endpoints", "gated", "-n", NS, "-o", "json"))
        ips = [a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []]
        return p["status"]["podIP"] in ips

    wait_for(ready_address, "the pod among the ready endpoints", 30)


def test_garbage_image_backs_off(cluster: AgentCluster) -> None:
    """An image that cannot be pulled: ErrImagePull, then ImagePullBackOff, with a Failed
    event; the pod stays Pending."""
    cluster.apply(pod("garbage", {"name": "main", "image": "registry.invalid/nope:1"}))

    def backing_off(p: dict[str, Any]) -> bool:
        waiting = (container_status(p).get("state") or {}).get("waiting") or {}
        return waiting.get("reason") == "ImagePullBackOff"

    p = cluster.wait_pod(NS, "garbage", backing_off, "ImagePullBackOff", 60)
    assert phase(p) == "Pending"
    failed = [
        e
        for e in cluster.events(NS)
        if e["involvedObject"]["name"] == "garbage" and e["reason"] == "Failed"
    ]
    assert failed and 'Failed to pull image "registry.invalid/nope:1"' in failed[0]["message"]
    # kubectl logs answers as the kubelet's (the status may be back at ErrImagePull by now)
    logs = cluster.kubectl.run("logs", "garbage", "-n", NS, check=False)
    assert logs.returncode != 0
    assert re.search(
        r'Error from server \(BadRequest\): container "main" in pod "garbage" is waiting to '
        r"start: (trying and failing to pull image|image can't be pulled)$",
        logs.stderr.strip(),
    ), logs.stderr


def test_static_pod_and_its_mirror(cluster: AgentCluster) -> None:
    """A manifest in pod-manifests/ runs without the API; its mirror pod <name>-<node>
    (annotated, owned by the Node) shows its status, is made again when deleted (the
    container keeps running), and goes with the file."""
    manifests = cluster.agent_dir / "agent" / "pod-manifests"
    manifests.mkdir(exist_ok=True)
    manifest = pod("static-web", box("main", "sleep 3600"))
    (manifests / "web.yaml").write_text(json.dumps(manifest))
    name = "static-web-edge1"
    p = cluster.wait_pod(NS, name, lambda p: phase(p) == "Running", "the mirror Running")
    meta = p["metadata"]
    assert meta["annotations"]["kubernetes.io/config.mirror"]
    assert meta["annotations"]["kubernetes.io/config.source"] == "file"
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Node", "edge1")
    running = container_status(p)["containerID"]
    cluster.kubectl("delete", "pod", name, "-n", NS, "--wait=false")

    def mirrored_again(p: dict[str, Any]) -> bool:
        return p["metadata"]["uid"] != meta["uid"] and phase(p) == "Running"

    p = cluster.wait_pod(NS, name, mirrored_again, "a new mirror pod", 60)
    assert container_status(p)["containerID"] == running
    assert container_status(p)["restartCount"] == 0
    (manifests / "web.yaml").unlink()
    wait_for(lambda: cluster.pod(NS, name) is None, "the mirror pod deleted", 60)
    wait_for(lambda: not attempts(cluster, name), "the static pod stopped", 60)


def test_config_env_volumes_and_token(cluster: AgentCluster) -> None:
    """env from a ConfigMap, a Secret, fieldRefs and envFrom with a prefix, $(VAR)
    expansion, a ConfigMap volume with defaultMode, an emptyDir shared between an init
    container and the main one, and the projected token, which the API server accepts."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": NS},
            "data": {"color": "blue", "size": "L"},
        }
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sec", "namespace": NS},
            "stringData": {"pw": "hunter2"},
        }
    )
    env = [
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "BOTH", "value": "$(COLOR)-$(ME)"},
    ]
    script = (
        "cat /shared/hello; echo $COLOR $PW $ME $BOTH $CFG_size; "
        '[ -n "$IP" ] && echo ip; stat -c %a /cfg/..data/color; '
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/termination-log"
    )
    main = box(
        "main",
        f"({script}) > /shared/out; cat /shared/out",
        env=env,
        envFrom=[{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}],
        volumeMounts=[
            {"name": "shared", "mountPath": "/shared"},
            {"name": "cfg", "mountPath": "/cfg"},
        ],
    )
    init = box(
        "init",
        "echo from-init > /shared/hello",
        volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    manifest = pod(
        "configured",
        main,
        restartPolicy="Never",
        initContainers=[init],
        volumes=[
            {"name": "shared", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600}},
        ],
    )
    cluster.apply(manifest)
    p = cluster.wait_pod(NS, "configured", lambda p: phase(p) in ("Succeeded", "Failed"), "done")
    terminated = container_status(p)["state"]["terminated"]
    assert phase(p) == "Succeeded", terminated
    token = terminated["message"]
    whoami = cluster.kubectl.run(
        "--token",
        token,
        "--kubeconfig",
        "/dev/null",
        "--server",
        "https://127.0.0.1:6443",
        "--insecure-skip-tls-verify",
        "auth",
        "whoami",
        "-o",
        "json",
        check=False,
    )
    assert "system:serviceaccount:default:default" in whoami.stdout, whoami.stderr
    logs = cluster.podman("logs", f"k8s_main_configured_{NS}_{p['metadata']['uid']}_0").split("\n")
    assert logs[0] == "from-init"
    assert logs[1] == "blue hunter2 configured blue-configured L"
    assert logs[2] == "ip"
    assert logs[3] == "600"


def test_missing_config_map_key_is_a_config_error(cluster: AgentCluster) -> None:
    """A reference to a key a ConfigMap lacks: CreateContainerConfigError with an event."""
    ref = {"configMapKeyRef": {"name": "cfg-missing", "key": "nope"}}
    cluster.apply(pod("badref", box("main", "sleep 3600", env=[{"name": "X", "valueFrom": ref}])))

    def config_error(p: dict[str, Any]) -> bool:
        waiting = (container_status(p).get("state") or {}).get("waiting") or {}
        return waiting.get("reason") == "CreateContainerConfigError"

    cluster.wait_pod(NS, "badref", config_error, "CreateContainerConfigError", 60)
    failed = [
        e
        for e in cluster.events(NS)
        if e["involvedObject"]["name"] == "badref" and e["reason"] == "Failed"
    ]
    assert failed and failed[0]["message"].startswith("Error: ")


def test_active_deadline_fails_the_pod(cluster: AgentCluster) -> None:
    """activeDeadlineSeconds: the pod is stopped and Failed with DeadlineExceeded."""
    cluster.apply(pod("late", box("main", "sleep 3600"), activeDeadlineSeconds=2))
    p = cluster.wait_pod(NS, "late", lambda p: phase(p) == "Failed", "phase Failed", 60)
    assert p["status"]["reason"] == "DeadlineExceeded"
    assert "terminated" in container_status(p)["state"]


def test_config_map_update_reaches_the_volume(cluster: AgentCluster) -> None:
    """A ConfigMap change is written to the running pod's volume (within a resync)."""
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "live", "namespace": NS},
        "data": {"v": "one"},
    }
    cluster.apply(cm)
    reader = box(
        "main",
        "while :; do cat /cfg/v > /dev/termination-log; sleep 0.5; done",
        volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}],
    )
    manifest = pod("reader", reader, volumes=[{"name": "cfg", "configMap": {"name": "live"}}])
    cluster.apply(manifest)
    p = cluster.wait_pod(NS, "reader", lambda p: phase(p) == "Running", "phase Running")
    cluster.apply({**cm, "data": {"v": "two"}})
    path = cluster.agent_dir / "agent" / "pods" / p["metadata"]["uid"] / "containers" / "main" / "0"
    wait_for(lambda: path.read_text() == "two", "the new value in the volume", 90)


def test_host_network_pod_uses_the_node_address(cluster: AgentCluster) -> None:
    """hostNetwork: the pod's IP is the node's, its httpd answers on the node's address."""
    httpd = {
        "name": "main",
        "image": IMAGE,
        "command": ["httpd", "-f", "-p", "18080", "-h", "/etc"],
    }
    cluster.apply(pod("hostnet", httpd, hostNetwork=True))
    p = cluster.wait_pod(NS, "hostnet", lambda p: phase(p) == "Running", "phase Running")
    assert p["status"]["podIP"] == p["status"]["hostIP"]
    wait_for(
        lambda: cluster.fetch(f"http://{p['status']['podIP']}:18080/passwd")[0] == 0,
        "httpd on the node's address",
        15,
    )


def test_failed_post_start_hook_kills_the_container(cluster: AgentCluster) -> None:
    """A postStart hook that fails: a FailedPostStartHook event, the container killed and
    started again."""
    hook = {"postStart": {"exec": {"command": ["false"]}}}
    cluster.apply(pod("hooked", box("main", "sleep 3600", lifecycle=hook)))
    cluster.wait_pod(
        NS, "hooked", lambda p: container_status(p).get("restartCount"), "a restart", 60
    )
    events = [e for e in cluster.events(NS) if e["involvedObject"]["name"] == "hooked"]
    hooks = [e for e in events if e["reason"] == "FailedPostStartHook"]
    assert hooks and hooks[0]["message"] == "PostStartHook failed"
    assert any(
        e["reason"] == "Created" and e["message"] == "Created container: main" for e in events
    )


def test_delete_kills_after_the_grace_period(cluster: AgentCluster) -> None:
    """A container that ignores SIGTERM is killed when the pod's grace period is over."""
    stubborn = box("main", "trap '' TERM; while :; do sleep 0.1; done")
    cluster.apply(pod("stubborn", stubborn, terminationGracePeriodSeconds=2))
    cluster.wait_pod(NS, "stubborn", lambda p: phase(p) == "Running", "phase Running")
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "stubborn", "-n", NS, "--wait=true", "--timeout=60s")
    assert 1.5 < time.monotonic() - started < 15


def test_hosts_file_names_the_pod_and_its_aliases(cluster: AgentCluster) -> None:
    """The containers' /etc/hosts is the kubelet's: the pod IP with
    ``<hostname>.<subdomain>.<ns>.svc.cluster.local <hostname>``, then the hostAliases."""
    aliases = [{"ip": "10.9.9.9", "hostnames": ["db", "db.local"]}]
    manifest = pod(
        "named", box("main", "sleep 3600"), hostname="h1", subdomain="sub", hostAliases=aliases
    )
    cluster.apply(manifest)
    p = cluster.wait_pod(NS, "named", lambda p: phase(p) == "Running", "phase Running")
    ip = p["status"]["podIP"]
    text = cluster.kubectl("exec", "named", "-n", NS, "--", "cat", "/etc/hosts")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), text
    assert text.endswith(
        f"{ip}\th1.sub.{NS}.svc.cluster.local\th1\n"
        "\n# Entries added by HostAliases.\n10.9.9.9\tdb\tdb.local\n"
    ), text
    assert cluster.kubectl("exec", "named", "-n", NS, "--", "hostname").strip() == "h1"


def test_logs_and_exec_through_the_agent(cluster: AgentCluster) -> None:
    """The agent serves streaming for the pods it runs: kubectl logs and exec (its exit
    code reaches kubectl)."""
    cluster.apply(pod("talker", box("main", "echo hello from talker; sleep 3600")))
    cluster.wait_pod(NS, "talker", lambda p: phase(p) == "Running", "phase Running")
    wait_for(
        lambda: "hello from talker" in cluster.kubectl.run("logs", "talker", check=False).stdout,
        "the pod's log",
        30,
    )
    done = cluster.kubectl.run("exec", "talker", "--", "sh", "-c", "echo in; exit 3", check=False)
    assert done.returncode == 3 and done.stdout == "in\n", done.stderr
