"""Cluster DNS end to end (issue 12): in the one-node cluster, a pod resolves a service by
its short name, ``svc.ns`` and the FQDN, a headless service and a StatefulSet pod's name;
an unknown name is NXDOMAIN; an outside name is forwarded to a fake upstream that lives in
the test's namespace (on a veth pair whose ends both stay there)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentcluster import AgentCluster, NsProcess, condition
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.e2e.cluster import wait_for

pytestmark = [pytest.mark.e2e, needs_podman]
NS = "default"
UPSTREAM = "10.99.0.1"
#: The fake upstream: every A query answered with 192.0.2.7, as a one-file script.
FAKE_UPSTREAM = f"""
import socket
from agent.dns import wire
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(({UPSTREAM!r}, 53))
while True:
    data, addr = sock.recvfrom(4096)
    query = wire.parse_query(data)
    record = wire.Record(query.name, wire.A, 60, bytes([192, 0, 2, 7]))
    answers = [record] if query.qtype == wire.A else []
    sock.sendto(wire.build_response(query, wire.NOERROR, answers, authoritative=False), addr)
"""


@pytest.fixture(scope="module")
def cluster(
    netns: list[str], busybox_tar: Path, short_dirs: Callable[[], Path]
) -> Iterator[AgentCluster]:
    """One server, one agent whose upstream resolver is the fake one, and the objects."""
    name = netns[1].removeprefix("--net=/run/netns/")
    for args in (
        ["link", "add", "ekup0", "type", "veth", "peer", "name", "ekup1"],
        ["addr", "add", f"{UPSTREAM}/24", "dev", "ekup0"],
        ["link", "set", "ekup0", "up"],
        ["link", "set", "ekup1", "up"],
    ):
        subprocess.run(["ip", "-n", name, *args], check=True)
    root = short_dirs()
    upstream = NsProcess(netns, [sys.executable, "-c", FAKE_UPSTREAM], root / "upstream.log")
    resolv = root / "resolv.conf"
    resolv.write_text(f"nameserver 127.0.0.53\nnameserver {UPSTREAM}\n")
    c = AgentCluster(netns, root, busybox_tar, node="dns1")
    try:
        upstream.start()
        c.start_server()
        c.start_agent(extra=["--resolv-conf", str(resolv)])
        for manifest in MANIFESTS:
            c.apply(manifest)
        for pod in ("client", "db-0"):
            c.wait_pod(NS, pod, lambda p: condition(p, "Ready") == "True", f"{pod} ready", 180)
        yield c
    finally:
        c.stop()
        upstream.stop()


def sleeper(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
        },
    }


MANIFESTS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": sleeper({"app": "db"}),
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": NS},
        "spec": sleeper({})["spec"],
    },
]


def lookup(cluster: AgentCluster, name: str) -> subprocess.CompletedProcess[str]:
    """``nslookup name`` inside the client pod."""
    return cluster.kubectl.run("exec", "-n", NS, "client", "--", "nslookup", name, check=False)


def resolves_to(cluster: AgentCluster, name: str, ip: str) -> None:
    """Wait until ``nslookup name`` in the client pod shows ``ip`` (the watch may lag).
    busybox's nslookup tries every search domain for a name without dots (and exits 1
    when one of them fails), so the address is looked for in its output."""
    last: list[str] = []

    def probe() -> bool:
        res = lookup(cluster, name)
        last[:] = [res.stdout + res.stderr]
        return f"Address: {ip}" in res.stdout

    try:
        wait_for(probe, f"{name} -> {ip}", 20)
    except AssertionError:
        raise AssertionError(f"{name}: {last}\n{cluster.agent.tail()}") from None


def test_pod_resolv_conf(cluster: AgentCluster) -> None:
    conf = cluster.kubectl("exec", "-n", NS, "client", "--", "cat", "/etc/resolv.conf")
    assert "nameserver 10.43.0.10" in conf
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in conf
    assert "ndots:5" in conf


def service_ip(cluster: AgentCluster) -> str:
    return cluster.kubectl("get", "svc", "-n", NS, "web", "-o", "jsonpath={.spec.clusterIP}")


def test_services_resolve_by_short_name_and_fqdn(cluster: AgentCluster) -> None:
    for name in ("web", "web.default.svc.cluster.local"):
        resolves_to(cluster, name, service_ip(cluster))


@pytest.mark.xfail(
    reason="no resolver in the test image applies the search path to a dotted name: "
    "busybox nslookup sends it as is, and the static busybox's libc resolver crashes; the "
    "server side (web.default.svc.cluster.local) is covered above",
    strict=True,
)
def test_service_resolves_as_svc_dot_namespace(cluster: AgentCluster) -> None:
    resolves_to(cluster, "web.default", service_ip(cluster))


def test_headless_service_and_statefulset_pod(cluster: AgentCluster) -> None:
    pod = cluster.pod(NS, "db-0")
    assert pod is not None
    ip = pod["status"]["podIP"]
    resolves_to(cluster, "db.default.svc.cluster.local", ip)
    resolves_to(cluster, "db-0.db.default.svc.cluster.local", ip)


def test_unknown_name_is_nxdomain(cluster: AgentCluster) -> None:
    res = lookup(cluster, "nope.default.svc.cluster.local")
    assert res.returncode != 0
    assert "NXDOMAIN" in res.stdout + res.stderr


def test_outside_names_are_forwarded(cluster: AgentCluster) -> None:
    resolves_to(cluster, "example.org", "192.0.2.7")
