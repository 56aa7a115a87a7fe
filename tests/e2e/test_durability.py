"""Restarts and crashes: state survives, watches resume, acknowledged writes are kept."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config, watch

from tests.helpers import Kubectl, kubectl_binaries, list_meta, object_names, start_server


def _core(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def _cm(name: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"n": name})


def test_restart_keeps_state_and_watch_resumes(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        kubectl = Kubectl(next(iter(kubectl_binaries().values())), srv.kubeconfig, tmp_path / "c")
        kubectl("create", "namespace", "keep")
        kubectl("create", "deployment", "web", "--image=nginx:1.25", "-n", "keep")
        core = _core(srv.kubeconfig)
        before = list_meta(core.list_namespaced_config_map("keep")).resource_version
        core.create_namespaced_config_map("keep", _cm("before-restart"))
        deploy = json.loads(kubectl("get", "deploy", "web", "-n", "keep", "-o", "json"))
        srv.stop()
        srv.start()
        again = json.loads(kubectl("get", "deploy", "web", "-n", "keep", "-o", "json"))
        assert again["metadata"]["uid"] == deploy["metadata"]["uid"]
        assert again["metadata"]["resourceVersion"] == deploy["metadata"]["resourceVersion"]
        names = {"default", "kube-system", "kube-public", "kube-node-lease", "keep"}
        assert names <= set(kubectl("get", "ns", "-o", "name").replace("namespace/", "").split())

        core = _core(srv.kubeconfig)
        seen: list[tuple[str, str]] = []
        w = watch.Watch()

        def consume() -> None:
            for ev in w.stream(
                core.list_namespaced_config_map, "keep", resource_version=before, timeout_seconds=15
            ):
                seen.append((ev["type"], ev["object"].metadata.name))
                if len(seen) == 2:
                    w.stop()

        t = threading.Thread(target=consume)
        t.start()
        time.sleep(0.5)
        core.create_namespaced_config_map("keep", _cm("after-restart"))
        t.join(timeout=20)
        assert seen == [("ADDED", "before-restart"), ("ADDED", "after-restart")]
    finally:
        srv.stop()


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        core = _core(srv.kubeconfig)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="burst")))

        def writer(worker: int) -> None:
            api = _core(srv.kubeconfig)
            i = 0
            while not stop.is_set():
                name = f"w{worker}-{i}"
                try:
                    api.create_namespaced_config_map("burst", _cm(name), _request_timeout=5)
                except Exception:  # the server was killed under us
                    return
                with lock:
                    acked.append(name)
                i += 1

        with ThreadPoolExecutor(8) as pool:
            for n in range(8):
                pool.submit(writer, n)
            while len(acked) < 200:
                time.sleep(0.01)
            assert srv.proc is not None
            srv.proc.send_signal(9)
            srv.proc.wait()
            srv.proc = None
            stop.set()
        acknowledged = set(acked)
        srv.start()
        stored = set(object_names(_core(srv.kubeconfig).list_namespaced_config_map("burst")))
        missing = acknowledged - stored
        assert not missing, f"{len(missing)} acknowledged writes lost: {sorted(missing)[:5]}"
        assert len(acknowledged) >= 200
    finally:
        stop.set()
        srv.stop()
