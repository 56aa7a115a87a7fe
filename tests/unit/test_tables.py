"""Tests for server-side Table printing, its JSONPath evaluator and time formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from edgek import timefmt
from server.apiserver import jsonpath, tables

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kwargs: float) -> str:
    """An RFC3339 timestamp the given time before NOW."""
    return timefmt.format_time(NOW - timedelta(**kwargs))


def names(table: dict[str, Any]) -> list[str]:
    return [c["name"] for c in table["columnDefinitions"]]


def wide(table: dict[str, Any]) -> list[str]:
    return [c["name"] for c in table["columnDefinitions"] if c["priority"] > 0]


def row(group: str, resource: str, obj: dict[str, Any]) -> list[Any]:
    """The cells of one object's row."""
    cells: list[Any] = tables.table(group, resource, [obj], now=NOW)["rows"][0]["cells"]
    return cells


def cell(group: str, resource: str, obj: dict[str, Any], column: str) -> Any:
    """One named cell of one object's row."""
    result = tables.table(group, resource, [obj], now=NOW)
    return result["rows"][0]["cells"][names(result).index(column)]


# --------------------------------------------------------------------------- timefmt


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-5), "<invalid>"),
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(milliseconds=-1500), "0s"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=119, milliseconds=999), "119s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=2, seconds=10), "2m10s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(minutes=179), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=4, seconds=50), "3h4m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8, minutes=30), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=5, hours=3), "5d3h"),
        (timedelta(days=7, hours=23), "7d23h"),
        (timedelta(days=8, hours=5), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=830), "2y100d"),
        (timedelta(days=365 * 8 - 1), "7y364d"),
        (timedelta(days=365 * 8), "8y"),
        (timedelta(days=365 * 20 + 100), "20y"),
    ],
)
def test_human_duration(delta: timedelta, text: str) -> None:
    assert timefmt.human_duration(delta) == text


def test_parse_time_accepts_rfc3339_variants() -> None:
    base = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert timefmt.parse_time("2024-05-06T07:08:09Z") == base
    assert timefmt.parse_time("2024-05-06t07:08:09z") == base
    assert timefmt.parse_time("2024-05-06T09:08:09+02:00") == base
    assert timefmt.parse_time("2024-05-06T07:08:09.123456789Z") == base.replace(microsecond=123456)
    assert timefmt.parse_time("2024-05-06T07:08:09.5Z").microsecond == 500000


@pytest.mark.parametrize(
    "text", ["", "2024-05-06", "2024-05-06 07:08:09Z", "2024-05-06T07:08:09", "yesterday"]
)
def test_parse_time_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="RFC3339"):
        timefmt.parse_time(text)


def test_format_time_and_micro_time_are_utc() -> None:
    when = datetime(2024, 5, 6, 9, 8, 9, 42, tzinfo=timezone(timedelta(hours=2)))
    assert timefmt.format_time(when) == "2024-05-06T07:08:09Z"
    assert timefmt.format_micro_time(when) == "2024-05-06T07:08:09.000042Z"
    assert timefmt.parse_time(timefmt.format_micro_time(when)) == when


# --------------------------------------------------------------------------- jsonpath

DOC: dict[str, Any] = {
    "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "web", "tier": "db"}},
    "spec": {"cronSpec": "* * * * */5", "replicas": 3, "items": [1, 2, 3, 4, 5]},
    "status": {
        "replicas": 2,
        "conditions": [
            {"type": "Ready", "status": "False", "count": 1},
            {"type": "Synced", "status": "True", "count": 7},
        ],
    },
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (".spec.cronSpec", ["* * * * */5"]),
        ("{.status.replicas}", [2]),
        ("$.spec.replicas", [3]),
        (".spec.missing", []),
        (".spec.cronSpec.deeper", []),
        (".spec.items[0]", [1]),
        (".spec.items[-1]", [5]),
        (".spec.items[9]", []),
        (".spec.items[0,2]", [1, 3]),
        (".spec.items[1:3]", [2, 3]),
        (".spec.items[::2]", [1, 3, 5]),
        (".spec.items[*]", [1, 2, 3, 4, 5]),
        (".status.conditions[*].type", ["Ready", "Synced"]),
        ('.status.conditions[?(@.type=="Synced")].status', ["True"]),
        (".status.conditions[?(@.type=='Ready')].count", [1]),
        (".status.conditions[?(@.count > 3)].type", ["Synced"]),
        (".status.conditions[?(@.count != 7)].type", ["Ready"]),
        (".status.conditions[?(@.count)].type", ["Ready", "Synced"]),
        (".status.conditions[?(@.nope)].type", []),
        (".metadata.labels['app.kubernetes.io/name']", ["web"]),
        (".metadata.labels.app\\.kubernetes\\.io/name", ["web"]),
        (".metadata.labels.*", ["web", "db"]),
        ("..count", [1, 7]),
        (".", [DOC]),
    ],
)
def test_jsonpath_find(expression: str, expected: list[Any]) -> None:
    assert jsonpath.find(expression, DOC) == expected


@pytest.mark.parametrize(
    "expression", [".spec[", ".spec[abc]", ".spec[1:2:0]", "spec", ".a.", "{.spec", "[?(@.a==)]"]
)
def test_jsonpath_rejects_invalid(expression: str) -> None:
    with pytest.raises(jsonpath.JSONPathError):
        jsonpath.compile_path(expression)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        (True, "true"),
        (12, "12"),
        (1.5, "1.5"),
        (3.0, "3"),
        (123456789.5, "123456789.5"),
        (1e21, "1e+21"),
        (0.00001, "1e-05"),
        (-0.25, "-0.25"),
        ({"b": [1, "<x>"], "a": None}, '{"a":null,"b":[1,"\\u003cx\\u003e"]}'),
    ],
)
def test_jsonpath_to_text(value: Any, text: str) -> None:
    assert jsonpath.to_text(value) == text


# --------------------------------------------------------------------------- table shape


def test_table_envelope_and_partial_metadata() -> None:
    meta = {"name": "cm", "namespace": "ns", "uid": "u1", "creationTimestamp": ago(hours=1)}
    result = tables.table("", "configmaps", [{"metadata": meta, "data": {"a": "1"}}], now=NOW)
    assert result["kind"] == "Table"
    assert result["apiVersion"] == "meta.k8s.io/v1"
    assert result["metadata"] == {}
    assert result["columnDefinitions"][0] == {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": result["columnDefinitions"][0]["description"],
        "priority": 0,
    }
    assert result["rows"] == [
        {
            "cells": ["cm", 1, "60m"],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            },
        }
    ]


def test_include_object_variants() -> None:
    obj = {"metadata": {"name": "a"}, "data": {}}
    full = tables.table("", "configmaps", [obj], now=NOW, include_object="Object")
    assert full["rows"][0]["object"] is obj
    bare = tables.table("", "configmaps", [obj], now=NOW, include_object="None")
    assert "object" not in bare["rows"][0]
    with pytest.raises(ValueError, match="includeObject"):
        tables.table("", "configmaps", [obj], now=NOW, include_object="Everything")


def test_empty_list_still_has_columns() -> None:
    result = tables.table("apps", "deployments", [], now=NOW)
    assert result["rows"] == []
    assert names(result)[0] == "Name"


# --------------------------------------------------------------------------- column sets


def _table_spec(text: str) -> dict[tuple[str, str], list[str]]:
    """Parse ``group/resource: Name|Other|...`` lines (core resources have no group)."""
    spec: dict[tuple[str, str], list[str]] = {}
    for line in text.strip().splitlines():
        key, _, columns = line.partition(":")
        group, _, resource = key.strip().rpartition("/")
        spec[(group, resource)] = [c for c in columns.strip().split("|") if c]
    return spec


#: Column names per resource as upstream defines them.
COLUMNS = _table_spec(
    """
    pods: Name|Ready|Status|Restarts|Age|IP|Node|Nominated Node|Readiness Gates
    namespaces: Name|Status|Age
    nodes: Name|Status|Roles|Age|Version|Internal-IP|External-IP|OS-Image|Kernel-Version|Container-Runtime
    services: Name|Type|Cluster-IP|External-IP|Port(s)|Age|Selector
    endpoints: Name|Endpoints|Age
    configmaps: Name|Data|Age
    secrets: Name|Type|Data|Age
    serviceaccounts: Name|Secrets|Age
    events: Last Seen|Type|Reason|Object|Subobject|Source|Message|First Seen|Count|Name
    persistentvolumes: Name|Capacity|Access Modes|Reclaim Policy|Status|Claim|StorageClass|VolumeAttributesClass|Reason|Age|VolumeMode
    persistentvolumeclaims: Name|Status|Volume|Capacity|Access Modes|StorageClass|VolumeAttributesClass|Age|VolumeMode
    resourcequotas: Name|Request|Limit|Age
    podtemplates: Name|Containers|Images|Pod Labels
    apps/deployments: Name|Ready|Up-to-date|Available|Age|Containers|Images|Selector
    apps/replicasets: Name|Desired|Current|Ready|Age|Containers|Images|Selector
    apps/statefulsets: Name|Ready|Age|Containers|Images
    apps/daemonsets: Name|Desired|Current|Ready|Up-to-date|Available|Node Selector|Age|Containers|Images|Selector
    apps/controllerrevisions: Name|Controller|Revision|Age
    batch/jobs: Name|Status|Completions|Duration|Age|Containers|Images|Selector
    batch/cronjobs: Name|Schedule|Timezone|Suspend|Active|Last Schedule|Age|Containers|Images|Selector
    coordination.k8s.io/leases: Name|Holder|Age
    discovery.k8s.io/endpointslices: Name|AddressType|Ports|Endpoints|Age
    networking.k8s.io/networkpolicies: Name|Pod-Selector|Age
    networking.k8s.io/ingresses: Name|Class|Hosts|Address|Ports|Age
    networking.k8s.io/ingressclasses: Name|Controller|Parameters|Age
    policy/poddisruptionbudgets: Name|Min Available|Max Unavailable|Allowed Disruptions|Age
    rbac.authorization.k8s.io/rolebindings: Name|Role|Age|Users|Groups|ServiceAccounts
    rbac.authorization.k8s.io/clusterrolebindings: Name|Role|Age|Users|Groups|ServiceAccounts
    certificates.k8s.io/certificatesigningrequests: Name|Age|SignerName|Requestor|RequestedDuration|Condition
    storage.k8s.io/storageclasses: Name|Provisioner|ReclaimPolicy|VolumeBindingMode|AllowVolumeExpansion|Age
    events.k8s.io/events: Last Seen|Type|Reason|Object|Subobject|Source|Message|First Seen|Count|Name
    """
)

#: The ``-o wide`` (priority 1) columns.
WIDE = _table_spec(
    """
    pods: IP|Node|Nominated Node|Readiness Gates
    nodes: Internal-IP|External-IP|OS-Image|Kernel-Version|Container-Runtime
    services: Selector
    events: Subobject|Source|First Seen|Count|Name
    apps/deployments: Containers|Images|Selector
    apps/statefulsets: Containers|Images
    batch/jobs: Containers|Images|Selector
    rbac.authorization.k8s.io/rolebindings: Users|Groups|ServiceAccounts
    persistentvolumes: VolumeMode
    configmaps:
    """
)


@pytest.mark.parametrize(("key", "expected"), sorted(COLUMNS.items()))
def test_column_names_match_upstream(key: tuple[str, str], expected: list[str]) -> None:
    assert tables.has_printer(*key)
    assert names(tables.table(*key, [], now=NOW)) == expected


@pytest.mark.parametrize(("key", "expected"), sorted(WIDE.items()))
def test_wide_columns_have_priority(key: tuple[str, str], expected: list[str]) -> None:
    assert wide(tables.table(*key, [], now=NOW)) == expected


@pytest.mark.parametrize(("key", "_columns"), sorted(COLUMNS.items()))
def test_every_row_matches_its_columns(key: tuple[str, str], _columns: list[str]) -> None:
    obj = {"metadata": {"name": "o", "creationTimestamp": ago(minutes=5)}}
    result = tables.table(*key, [obj], now=NOW)
    assert len(result["rows"][0]["cells"]) == len(result["columnDefinitions"])


def test_kinds_without_printer_use_name_and_created_at() -> None:
    for key in [
        ("", "limitranges"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    ]:
        assert not tables.has_printer(*key)
    crd = {"metadata": {"name": "foos.example.com", "creationTimestamp": "2024-05-06T07:08:09Z"}}
    result = tables.table("apiextensions.k8s.io", "customresourcedefinitions", [crd], now=NOW)
    assert names(result) == ["Name", "Created At"]
    assert result["columnDefinitions"][1]["type"] == "date"
    assert result["rows"][0]["cells"] == ["foos.example.com", "2024-05-06T07:08:09Z"]
    unset = tables.table("", "limitranges", [{"metadata": {"name": "l"}}], now=NOW)
    assert unset["rows"][0]["cells"] == ["l", "0001-01-01T00:00:00Z"]


# --------------------------------------------------------------------------- pods


def pod(
    statuses: list[dict[str, Any]] | None = None,
    *,
    phase: str = "Running",
    containers: int = 1,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod with ``containers`` containers; the dicts extend its spec, status, metadata."""
    containers_spec = [{"name": f"c{i}", "image": "img"} for i in range(containers)]
    return {
        "metadata": {"name": "p", "creationTimestamp": ago(minutes=30), **(metadata or {})},
        "spec": {"containers": containers_spec, **(spec or {})},
        "status": {"phase": phase, "containerStatuses": statuses or [], **(status or {})},
    }


RUNNING = {"name": "c0", "ready": True, "restartCount": 0, "state": {"running": {}}}


def test_pod_pending_without_statuses() -> None:
    cells = row("", "pods", pod(phase="Pending", containers=2))
    assert cells[:5] == ["p", "0/2", "Pending", "0", "30m"]
    assert cells[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_pod_running_ready_counts() -> None:
    not_ready = {"name": "c1", "ready": False, "restartCount": 0, "state": {"running": {}}}
    cells = row("", "pods", pod([RUNNING, not_ready], containers=2))
    assert cells[1:4] == ["1/2", "Running", "0"]


def test_pod_waiting_reason_and_restarts_ago() -> None:
    crashing = {
        "name": "c0",
        "ready": False,
        "restartCount": 5,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=5)}},
    }
    cells = row("", "pods", pod([crashing]))
    assert cells[1:4] == ["0/1", "CrashLoopBackOff", "5 (5m ago)"]


def test_pod_completed_has_row_condition() -> None:
    done = {"name": "c0", "ready": False, "state": {"terminated": {"reason": "Completed"}}}
    result = tables.table("", "pods", [pod([done], phase="Succeeded")], now=NOW)
    assert result["rows"][0]["cells"][1:3] == ["0/1", "Completed"]
    assert result["rows"][0]["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    running = tables.table("", "pods", [pod([RUNNING])], now=NOW)
    assert "conditions" not in running["rows"][0]


def test_pod_terminated_without_reason_shows_exit_code_or_signal() -> None:
    exited = {"name": "c0", "state": {"terminated": {"exitCode": 137}}}
    assert cell("", "pods", pod([exited], phase="Failed"), "Status") == "ExitCode:137"
    signaled = {"name": "c0", "state": {"terminated": {"exitCode": 0, "signal": 9}}}
    assert cell("", "pods", pod([signaled], phase="Failed"), "Status") == "Signal:9"


def test_pod_completed_container_with_running_sibling() -> None:
    done = {"name": "c1", "state": {"terminated": {"reason": "Completed"}}}
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert cell("", "pods", pod([RUNNING, done], containers=2, status=ready), "Status") == "Running"
    assert cell("", "pods", pod([RUNNING, done], containers=2), "Status") == "NotReady"


def test_pod_terminating_and_node_lost() -> None:
    deleting = {"deletionTimestamp": ago(seconds=3)}
    assert cell("", "pods", pod([RUNNING], metadata=deleting), "Status") == "Terminating"
    finished = pod([RUNNING], phase="Succeeded", metadata=deleting)
    assert cell("", "pods", finished, "Status") != "Terminating"
    lost = pod([RUNNING], status={"reason": "NodeLost"}, metadata=deleting)
    assert cell("", "pods", lost, "Status") == "Unknown"


def test_pod_init_containers() -> None:
    spec = {"initContainers": [{"name": "i0"}, {"name": "i1"}]}
    first_done = [
        {"name": "i0", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "i1", "state": {"running": {}}},
    ]
    waiting = pod(phase="Pending", spec=spec, status={"initContainerStatuses": first_done})
    assert cell("", "pods", waiting, "Status") == "Init:1/2"
    failing = [
        {
            "name": "i0",
            "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        }
    ]
    crash = pod(phase="Pending", spec=spec, status={"initContainerStatuses": failing})
    assert row("", "pods", crash)[2:4] == ["Init:CrashLoopBackOff", "2"]
    errored = [{"name": "i0", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]
    error = pod(phase="Pending", spec=spec, status={"initContainerStatuses": errored})
    assert cell("", "pods", error, "Status") == "Init:Error"


def test_pod_finished_init_restarts_are_not_counted() -> None:
    spec = {"initContainers": [{"name": "i0"}]}
    flaky_init = {
        "name": "i0",
        "restartCount": 3,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=50)}},
    }
    status = {"initContainerStatuses": [flaky_init]}
    assert row("", "pods", pod([RUNNING], spec=spec, status=status))[1:4] == ["1/1", "Running", "0"]


def test_pod_sidecar_counts_towards_ready_and_total() -> None:
    spec = {"initContainers": [{"name": "side", "restartPolicy": "Always"}]}
    sidecar = {"name": "side", "started": True, "ready": True, "restartCount": 1}
    status = {
        "initContainerStatuses": [sidecar],
        "conditions": [{"type": "Initialized", "status": "True"}],
    }
    cells = row("", "pods", pod([RUNNING], spec=spec, status=status))
    assert cells[1:4] == ["2/2", "Running", "1"]


def test_pod_scheduling_gated_and_wide_cells() -> None:
    gated = pod(
        phase="Pending",
        status={"conditions": [{"type": "PodScheduled", "reason": "SchedulingGated"}]},
    )
    assert cell("", "pods", gated, "Status") == "SchedulingGated"
    placed = pod(
        [RUNNING],
        spec={
            "nodeName": "n1",
            "readinessGates": [{"conditionType": "x/a"}, {"conditionType": "b"}],
        },
        status={
            "podIPs": [{"ip": "10.42.0.5"}],
            "nominatedNodeName": "n2",
            "conditions": [{"type": "x/a", "status": "True"}],
        },
    )
    assert row("", "pods", placed)[5:] == ["10.42.0.5", "n1", "n2", "1/2"]


# --------------------------------------------------------------------------- services, nodes


def service(kind: str, **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {
        "metadata": {"name": "svc", "creationTimestamp": ago(days=3)},
        "spec": {"type": kind, **spec},
        "status": status,
    }


def test_service_cluster_ip_row() -> None:
    svc = service(
        "ClusterIP",
        clusterIPs=["10.43.0.10"],
        ports=[{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        selector={"k8s-app": "dns", "app": "x"},
    )
    assert row("", "services", svc) == [
        "svc",
        "ClusterIP",
        "10.43.0.10",
        "<none>",
        "53/UDP,53/TCP",
        "3d",
        "app=x,k8s-app=dns",
    ]


def test_service_node_ports_and_external_ips() -> None:
    svc = service(
        "NodePort",
        ports=[
            {"port": 80, "protocol": "TCP"},
            {"port": 443, "nodePort": 30001, "protocol": "TCP"},
        ],
        externalIPs=["1.2.3.4"],
    )
    cells = row("", "services", svc)
    assert cells[2:5] == ["<none>", "1.2.3.4", "80/TCP,443:30001/TCP"]
    assert cells[6] == "<none>"


def test_service_load_balancer_external_ip() -> None:
    assert cell("", "services", service("LoadBalancer"), "External-IP") == "<pending>"
    balanced = service(
        "LoadBalancer",
        status={"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}},
    )
    assert cell("", "services", balanced, "External-IP") == "5.6.7.8,lb.example"
    both = service(
        "LoadBalancer",
        externalIPs=["9.9.9.9"],
        status={"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}},
    )
    assert cell("", "services", both, "External-IP") == "5.6.7.8,9.9.9.9"
    named = service("ExternalName", externalName="db.example.com")
    assert cell("", "services", named, "External-IP") == "db.example.com"
    assert cell("", "services", named, "Port(s)") == "<none>"


def test_node_row() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "creationTimestamp": ago(days=10),
            "labels": {
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/master": "",
                "kubernetes.io/role": "edge",
                "node-role.kubernetes.io/": "ignored",
            },
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "MemoryPressure"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1+edgek", "osImage": "Debian"},
        },
    }
    assert row("", "nodes", node) == [
        "n1",
        "Ready,SchedulingDisabled",
        "control-plane,edge,master",
        "10d",
        "v1.33.1+edgek",
        "192.168.1.5",
        "<none>",
        "Debian",
        "<unknown>",
        "<unknown>",
    ]
    down = {"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready"}]}}
    assert row("", "nodes", down)[1:3] == ["NotReady", "<none>"]
    assert row("", "nodes", {"metadata": {"name": "n3"}})[1] == "Unknown"


def test_endpoints_and_slices() -> None:
    endpoints = {
        "metadata": {"name": "e"},
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
                "ports": [{"port": 80}, {"port": 443}],
            }
        ],
    }
    assert cell("", "endpoints", endpoints, "Endpoints") == (
        "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 1 more..."
    )
    assert cell("", "endpoints", {"metadata": {"name": "e"}}, "Endpoints") == "<none>"
    ep_slice = {
        "metadata": {"name": "s"},
        "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "http"}, {}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
    }
    assert row("discovery.k8s.io", "endpointslices", ep_slice)[1:4] == [
        "IPv4",
        "80,http,*",
        "10.0.0.1,10.0.0.2",
    ]
    empty = {"metadata": {"name": "s"}, "addressType": "IPv4"}
    assert row("discovery.k8s.io", "endpointslices", empty)[2:4] == ["<unset>", "<unset>"]


# --------------------------------------------------------------------------- workloads


def test_deployment_row() -> None:
    deploy = {
        "metadata": {"name": "web", "creationTimestamp": ago(hours=3, minutes=4)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
            "template": {
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.27"},
                        {"name": "log", "image": "busybox"},
                    ]
                }
            },
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert row("apps", "deployments", deploy) == [
        "web",
        "2/3",
        3,
        2,
        "3h4m",
        "nginx,log",
        "nginx:1.27,busybox",
        "app=web,!canary,env in (dev,prod)",
    ]


def test_replica_daemon_stateful_sets() -> None:
    template = {"spec": {"containers": [{"name": "c", "image": "i"}], "nodeSelector": {"a": "b"}}}
    rs = {
        "metadata": {"name": "rs"},
        "spec": {"replicas": 2, "template": template, "selector": {"matchLabels": {"x": "y"}}},
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    assert row("apps", "replicasets", rs) == ["rs", 2, 2, 1, "<unknown>", "c", "i", "x=y"]
    ds = {
        "metadata": {"name": "ds"},
        "spec": {"template": template, "selector": {}},
        "status": {"desiredNumberScheduled": 3, "numberReady": 2, "numberAvailable": 1},
    }
    assert row("apps", "daemonsets", ds) == [
        "ds",
        3,
        0,
        2,
        0,
        1,
        "a=b",
        "<unknown>",
        "c",
        "i",
        "<none>",
    ]
    sts = {"metadata": {"name": "db"}, "spec": {"template": template}, "status": {}}
    assert row("apps", "statefulsets", sts)[1] == "0/1"


def test_controller_revision_names_its_owner() -> None:
    revision = {
        "metadata": {
            "name": "ds-5d8f",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": True}
            ],
        },
        "revision": 4,
    }
    assert row("apps", "controllerrevisions", revision)[1:3] == ["daemonset.apps/ds", 4]


@pytest.mark.parametrize(
    ("conditions", "deleting", "status"),
    [
        ([{"type": "Complete", "status": "True"}], False, "Complete"),
        ([{"type": "Failed", "status": "True"}], True, "Failed"),
        ([], True, "Terminating"),
        ([{"type": "Suspended", "status": "True"}], False, "Suspended"),
        ([{"type": "FailureTarget", "status": "True"}], False, "FailureTarget"),
        ([{"type": "Complete", "status": "False"}], False, "Running"),
    ],
)
def test_job_status(conditions: list[dict[str, str]], deleting: bool, status: str) -> None:
    job: dict[str, Any] = {"metadata": {"name": "j"}, "status": {"conditions": conditions}}
    if deleting:
        job["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert cell("batch", "jobs", job, "Status") == status


def test_job_completions_and_duration() -> None:
    job = {
        "metadata": {"name": "j", "creationTimestamp": ago(minutes=20)},
        "spec": {"completions": 3, "parallelism": 2},
        "status": {"succeeded": 1, "startTime": ago(minutes=20)},
    }
    assert row("batch", "jobs", job)[2:5] == ["1/3", "20m", "20m"]
    job["spec"] = {"parallelism": 4}
    job["status"] = {"succeeded": 0, "startTime": ago(minutes=9), "completionTime": ago(minutes=8)}
    assert row("batch", "jobs", job)[2:4] == ["0/1 of 4", "60s"]
    assert row("batch", "jobs", {"metadata": {"name": "j"}})[2:4] == ["0/1", ""]


def test_cronjob_row() -> None:
    cron = {
        "metadata": {"name": "c", "creationTimestamp": ago(days=2)},
        "spec": {
            "schedule": "*/5 * * * *",
            "suspend": False,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}},
        },
        "status": {"active": [{"name": "c-1"}], "lastScheduleTime": ago(minutes=4)},
    }
    assert row("batch", "cronjobs", cron) == [
        "c",
        "*/5 * * * *",
        "<none>",
        "False",
        1,
        "4m",
        "2d",
        "x",
        "",
        "<none>",
    ]
    bare = {"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "timeZone": "UTC"}}
    assert row("batch", "cronjobs", bare)[2:6] == ["UTC", "<unset>", 0, "<none>"]


# --------------------------------------------------------------------------- config, storage


def test_secret_and_service_account_counts() -> None:
    secret = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "", "b": ""}}
    assert row("", "secrets", secret)[:3] == ["s", "Opaque", 2]
    account = {"metadata": {"name": "default"}, "secrets": [{"name": "t"}]}
    assert row("", "serviceaccounts", account)[:2] == ["default", 1]
    binary = {"metadata": {"name": "cm"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}}
    assert row("", "configmaps", binary)[1] == 2


def test_persistent_volumes_and_claims() -> None:
    pv = {
        "metadata": {"name": "pv1", "deletionTimestamp": ago(seconds=1)},
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "ns", "name": "data"},
            "storageClassName": "local-path",
        },
        "status": {"phase": "Bound"},
    }
    assert row("", "persistentvolumes", pv)[1:9] == [
        "5Gi",
        "RWO,RWX",
        "Retain",
        "Terminating",
        "ns/data",
        "local-path",
        "<unset>",
        "",
    ]
    pending = {"metadata": {"name": "c"}, "spec": {"storageClassName": "fast"}, "status": {}}
    assert row("", "persistentvolumeclaims", pending)[1:7] == ["", "", "", "", "fast", "<unset>"]
    bound = {
        "metadata": {"name": "c", "annotations": {"volume.beta.kubernetes.io/storage-class": "b"}},
        "spec": {"volumeName": "pv1", "storageClassName": "fast", "volumeMode": "Filesystem"},
        "status": {
            "phase": "Bound",
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
        },
    }
    cells = row("", "persistentvolumeclaims", bound)
    assert cells[1:6] == ["Bound", "pv1", "1Gi", "RWO", "b"]
    assert cells[-1] == "Filesystem"


def test_storage_class_default_marker() -> None:
    sc = {
        "metadata": {
            "name": "local-path",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    assert row("storage.k8s.io", "storageclasses", sc)[:5] == [
        "local-path (default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
        False,
    ]


def test_resource_quota_splits_requests_and_limits() -> None:
    quota = {
        "metadata": {"name": "q"},
        "status": {
            "hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"},
            "used": {"pods": "3", "limits.cpu": "500m"},
        },
    }
    assert row("", "resourcequotas", quota)[1:3] == [
        "pods: 3/10, requests.memory: 0/1Gi",
        "limits.cpu: 500m/2",
    ]


# --------------------------------------------------------------------------- events


def test_core_event_row() -> None:
    event = {
        "metadata": {"name": "p.17a"},
        "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"},
        "reason": "BackOff",
        "type": "Warning",
        "message": " Back-off restarting \n",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": ago(minutes=10),
        "lastTimestamp": ago(seconds=30),
        "count": 7,
    }
    assert row("", "events", event) == [
        "30s",
        "Warning",
        "BackOff",
        "pod/p",
        "spec.containers{c}",
        "kubelet, n1",
        "Back-off restarting",
        "10m",
        7,
        "p.17a",
    ]


def test_new_style_event_uses_event_time_series_and_reporting() -> None:
    event = {
        "metadata": {"name": "e"},
        "regarding": {"kind": "Node"},
        "note": "hello",
        "type": "Normal",
        "reason": "Started",
        "eventTime": timefmt.format_micro_time(NOW - timedelta(minutes=3)),
        "reportingController": "edgek/agent",
        "reportingInstance": "",
    }
    assert row("events.k8s.io", "events", event) == [
        "3m",
        "Normal",
        "Started",
        "node",
        "",
        "edgek/agent",
        "hello",
        "3m",
        1,
        "e",
    ]
    event["series"] = {"count": 4, "lastObservedTime": ago(seconds=20)}
    assert row("events.k8s.io", "events", event)[0] == "20s"
    assert row("events.k8s.io", "events", event)[8] == 4


# --------------------------------------------------------------------------- networking, rbac, misc


def test_ingress_and_ingress_class() -> None:
    rules = [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {}]
    ingress = {
        "metadata": {"name": "i"},
        "spec": {"ingressClassName": "traefik", "rules": rules, "tls": [{"hosts": ["a"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.5"}]}},
    }
    assert row("networking.k8s.io", "ingresses", ingress)[1:5] == [
        "traefik",
        "a.example,b.example,c.example + 2 more...",
        "192.168.1.5",
        "80, 443",
    ]
    plain = {"metadata": {"name": "i"}, "spec": {"rules": [{}]}}
    assert row("networking.k8s.io", "ingresses", plain)[1:5] == ["<none>", "*", "", "80"]
    klass = {
        "metadata": {"name": "traefik"},
        "spec": {
            "controller": "traefik.io/ingress-controller",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"},
        },
    }
    assert row("networking.k8s.io", "ingressclasses", klass)[1:3] == [
        "traefik.io/ingress-controller",
        "Params.k8s.example.com/p",
    ]


def test_network_policy_pdb_lease() -> None:
    policy = {"metadata": {"name": "deny"}, "spec": {"podSelector": {}}}
    assert row("networking.k8s.io", "networkpolicies", policy)[1] == "<none>"
    pdb = {"metadata": {"name": "b"}, "spec": {"minAvailable": "50%"}, "status": {}}
    assert row("policy", "poddisruptionbudgets", pdb)[1:4] == ["50%", "N/A", 0]
    lease = {"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1"}}
    assert row("coordination.k8s.io", "leases", lease)[1] == "node-1"


def test_role_binding_subjects() -> None:
    binding = {
        "metadata": {"name": "rb"},
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "User", "name": "bob"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "sa", "namespace": "kube-system"},
        ],
    }
    cells = row("rbac.authorization.k8s.io", "clusterrolebindings", binding)
    assert cells[1] == "ClusterRole/view"
    assert cells[3:] == ["alice, bob", "devs", "kube-system/sa"]


@pytest.mark.parametrize(
    ("conditions", "certificate", "text"),
    [
        ([], "", "Pending"),
        ([{"type": "Approved"}], "LS0t", "Approved,Issued"),
        ([{"type": "Approved"}, {"type": "Denied"}], "", "Denied"),
        ([{"type": "Approved"}, {"type": "Failed"}], "", "Approved,Failed"),
    ],
)
def test_csr_condition(conditions: list[dict[str, str]], certificate: str, text: str) -> None:
    csr: dict[str, Any] = {
        "metadata": {"name": "csr"},
        "spec": {"signerName": "kubernetes.io/kubelet-serving", "username": "system:node:n1"},
        "status": {"conditions": conditions, "certificate": certificate},
    }
    cells = row("certificates.k8s.io", "certificatesigningrequests", csr)
    assert cells[2:] == ["kubernetes.io/kubelet-serving", "system:node:n1", "<none>", text]
    csr["spec"]["expirationSeconds"] = 86400 * 10
    assert cell("certificates.k8s.io", "certificatesigningrequests", csr, "RequestedDuration") == (
        "10d"
    )


# --------------------------------------------------------------------------- custom resources

CRONTAB = {
    "apiVersion": "stable.example.com/v1",
    "kind": "CronTab",
    "metadata": {"name": "my-cron", "creationTimestamp": ago(minutes=7)},
    "spec": {"cronSpec": "* * * * */5", "image": "my-image", "tags": ["a"]},
    "status": {"replicas": 2, "ratio": 0.5, "ok": True, "since": ago(hours=2)},
}


def test_crd_printer_columns() -> None:
    columns: list[dict[str, Any]] = [
        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec", "description": "cron"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Ratio", "type": "number", "jsonPath": ".status.ratio", "priority": 1},
        {"name": "OK", "type": "boolean", "jsonPath": ".status.ok"},
        {"name": "Since", "type": "date", "jsonPath": ".status.since"},
        {"name": "Tags", "type": "string", "jsonPath": ".spec.tags"},
        {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        {"name": "Mismatch", "type": "integer", "jsonPath": ".spec.image"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    result = tables.table(
        "stable.example.com", "crontabs", [CRONTAB], now=NOW, printer_columns=columns
    )
    assert names(result) == ["Name", *(c["name"] for c in columns)]
    definitions = result["columnDefinitions"]
    assert definitions[1]["description"] == "cron"
    assert definitions[2]["description"].endswith(": .status.replicas")
    assert definitions[3]["priority"] == 1
    assert result["rows"][0]["cells"] == [
        "my-cron",
        "* * * * */5",
        2,
        0.5,
        True,
        "120m",
        '["a"]',
        None,
        None,
        "7m",
    ]


def test_crd_without_columns_gets_age() -> None:
    result = tables.table("stable.example.com", "crontabs", [CRONTAB], now=NOW, printer_columns=[])
    assert names(result) == ["Name", "Age"]
    assert result["columnDefinitions"][1]["type"] == "date"
    assert result["rows"][0]["cells"] == ["my-cron", "7m"]


def test_crd_date_column_placeholders() -> None:
    columns = [{"name": "When", "type": "date", "jsonPath": ".spec.when"}]
    cells = []
    for when in ["", "not-a-date", "0001-01-01T00:00:00Z"]:
        obj = {"metadata": {"name": "x"}, "spec": {"when": when}}
        result = tables.table("g", "r", [obj], now=NOW, printer_columns=columns)
        cells.append(result["rows"][0]["cells"][1])
    assert cells == ["<unknown>", "<invalid>", "<unknown>"]
