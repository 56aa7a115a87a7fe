"""Tests of the per-kind write strategy (server.storage.strategy)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edgek.kinds import Kind
from server.storage.strategy import (
    prepare_for_create,
    prepare_for_update,
    qos_class,
    template_generation,
)
from tests.helpers import builtin_kind

PODS = builtin_kind("", "v1", "pods")
SERVICES = builtin_kind("", "v1", "services")
PVCS = builtin_kind("", "v1", "persistentvolumeclaims")
NODES = builtin_kind("", "v1", "nodes")
NAMESPACES = builtin_kind("", "v1", "namespaces")
CONFIGMAPS = builtin_kind("", "v1", "configmaps")
DEPLOYMENTS = builtin_kind("apps", "v1", "deployments")
JOBS = builtin_kind("batch", "v1", "jobs")
WIDGETS = Kind(
    group="example.com",
    version="v1",
    kind="Widget",
    resource="widgets",
    singular="widget",
    namespaced=True,
    subresources=("status",),
    custom=True,
)


def container(
    requests: dict[str, str] | None = None, limits: dict[str, str] | None = None
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "c", "image": "busybox", "resources": resources}


FULL = {"cpu": "500m", "memory": "128Mi"}


# -- qos_class ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": [{"name": "c", "image": "busybox"}]}, "BestEffort"),
        ({"containers": [container()]}, "BestEffort"),
        ({"containers": [container(requests={}, limits={})]}, "BestEffort"),
        ({}, "BestEffort"),
        ({"containers": [container(requests={"cpu": "100m"})]}, "Burstable"),
        ({"containers": [container(limits={"memory": "1Gi"})]}, "Burstable"),
        ({"containers": [container(limits=FULL)]}, "Guaranteed"),
        ({"containers": [container(requests=FULL, limits=FULL)]}, "Guaranteed"),
        # only some requests given: the others default to the limits
        ({"containers": [container(requests={"cpu": "500m"}, limits=FULL)]}, "Guaranteed"),
        (
            {"containers": [container(requests={"cpu": "100m", "memory": "128Mi"}, limits=FULL)]},
            "Burstable",
        ),
        # every container must be guaranteed, init containers included
        ({"containers": [container(limits=FULL), container()]}, "Burstable"),
        (
            {"initContainers": [container()], "containers": [container(limits=FULL)]},
            "Burstable",
        ),
        (
            {"initContainers": [container(limits=FULL)], "containers": [container(limits=FULL)]},
            "Guaranteed",
        ),
        ({"initContainers": [container(requests={"cpu": "1"})]}, "Burstable"),
    ],
)
def test_qos_class(spec: dict[str, Any], expected: str) -> None:
    assert qos_class(spec) == expected


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"ephemeral-storage": "1Gi"}},
        {"limits": {"example.com/gpu": "1"}},
    ],
)
def test_qos_class_ignores_non_compute_resources(resources: dict[str, Any]) -> None:
    spec = {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}
    assert qos_class(spec) == "BestEffort"


def test_qos_class_ignores_zero_quantities() -> None:
    assert qos_class({"containers": [container(requests={"cpu": "0", "memory": "0"})]}) == (
        "BestEffort"
    )


def test_qos_class_compares_quantities_by_value() -> None:
    spec = {
        "containers": [
            container(
                requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "1000m", "memory": "1024Mi"}
            )
        ]
    }
    assert qos_class(spec) == "Guaranteed"


# -- prepare_for_create --------------------------------------------------------------------


def test_create_generation_only_for_generation_kinds() -> None:
    for kind in (DEPLOYMENTS, JOBS, WIDGETS):
        obj: dict[str, Any] = {"metadata": {"name": "x", "generation": 9}}
        prepare_for_create(kind, obj)
        assert obj["metadata"]["generation"] == 1, kind.resource
    for kind in (CONFIGMAPS, PODS, SERVICES):
        obj = {"metadata": {"name": "x", "generation": 9}}
        prepare_for_create(kind, obj)
        assert "generation" not in obj["metadata"], kind.resource


@pytest.mark.parametrize(
    ("kind", "initial"),
    [
        (DEPLOYMENTS, {}),
        (SERVICES, {"loadBalancer": {}}),
        (PVCS, {"phase": "Pending"}),
        (PODS, {"phase": "Pending", "qosClass": "BestEffort"}),
        # Go always serialises status fields without omitempty; typed clients need them
        (builtin_kind("apps", "v1", "replicasets"), {"replicas": 0}),
        (
            builtin_kind("apps", "v1", "daemonsets"),
            {
                "currentNumberScheduled": 0,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": 0,
                "numberReady": 0,
            },
        ),
    ],
)
def test_create_resets_status(kind: Kind, initial: dict[str, Any]) -> None:
    obj: dict[str, Any] = {"metadata": {"name": "x"}, "spec": {}, "status": {"phase": "Bound"}}
    prepare_for_create(kind, obj)
    assert obj["status"] == initial


def test_create_pod_status_has_its_qos_class() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"containers": [container(FULL)]}}
    prepare_for_create(PODS, obj)
    assert obj["status"] == {"phase": "Pending", "qosClass": "Burstable"}


def test_create_keeps_node_status_and_drops_custom_status() -> None:
    node: dict[str, Any] = {"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4"}}}
    prepare_for_create(NODES, node)
    assert node["status"] == {"capacity": {"cpu": "4"}}

    widget: dict[str, Any] = {"metadata": {"name": "w"}, "spec": {}, "status": {"ok": True}}
    prepare_for_create(WIDGETS, widget)
    assert "status" not in widget


def test_create_namespace_gets_the_kubernetes_finalizer_once() -> None:
    bare: dict[str, Any] = {"metadata": {"name": "a"}}
    prepare_for_create(NAMESPACES, bare)
    assert bare["spec"]["finalizers"] == ["kubernetes"]

    given: dict[str, Any] = {
        "metadata": {"name": "b"},
        "spec": {"finalizers": ["example.com/x", "kubernetes"]},
    }
    prepare_for_create(NAMESPACES, given)
    assert given["spec"]["finalizers"] == ["example.com/x", "kubernetes"]


# -- prepare_for_update --------------------------------------------------------------------


def _deployment(replicas: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "web", "generation": 3, "labels": {"a": "1"}},
        "spec": {"replicas": replicas},
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_update_bumps_generation_on_spec_change_only() -> None:
    old = _deployment(1, {"replicas": 1})
    same_spec = _deployment(1)
    same_spec["metadata"]["generation"] = 99
    prepare_for_update(DEPLOYMENTS, same_spec, old, "")
    assert same_spec["metadata"]["generation"] == 3

    new_spec = _deployment(4)
    prepare_for_update(DEPLOYMENTS, new_spec, old, "")
    assert new_spec["metadata"]["generation"] == 4

    cm_old: dict[str, Any] = {"metadata": {"name": "c"}, "data": {"a": "1"}}
    cm_new: dict[str, Any] = {"metadata": {"name": "c", "generation": 2}, "data": {"a": "2"}}
    prepare_for_update(CONFIGMAPS, cm_new, cm_old, "")
    assert "generation" not in cm_new["metadata"]


def test_update_custom_resource_generation_counts_top_level_fields() -> None:
    old: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "generation": 1},
        "spec": {"size": 1},
        "status": {"ok": True},
    }
    status_only = copy.deepcopy(old)
    status_only["status"] = {"ok": False}
    status_only["metadata"]["labels"] = {"x": "y"}
    prepare_for_update(WIDGETS, status_only, old, "")
    assert status_only["metadata"]["generation"] == 1
    assert status_only["status"] == {"ok": True}

    extra = copy.deepcopy(old)
    extra["data"] = {"outside": "spec"}
    prepare_for_update(WIDGETS, extra, old, "")
    assert extra["metadata"]["generation"] == 2


def test_update_main_resource_keeps_old_status() -> None:
    old = _deployment(1, {"replicas": 1})
    new = _deployment(2, {"replicas": 50})
    prepare_for_update(DEPLOYMENTS, new, old, "")
    assert new["status"] == {"replicas": 1}
    assert new["spec"] == {"replicas": 2}

    no_status_before = _deployment(1)
    tries_status = _deployment(1, {"replicas": 7})
    prepare_for_update(DEPLOYMENTS, tries_status, no_status_before, "")
    assert "status" not in tries_status


def test_update_status_subresource_changes_status_only() -> None:
    old = _deployment(1, {"replicas": 1})
    new = _deployment(9, {"replicas": 2})
    new["metadata"]["labels"] = {"changed": "yes"}
    prepare_for_update(DEPLOYMENTS, new, old, "status")
    expected = copy.deepcopy(old)
    expected["status"] = {"replicas": 2}
    assert new == expected

    cleared = _deployment(1)
    prepare_for_update(DEPLOYMENTS, cleared, old, "status")
    assert "status" not in cleared
    assert cleared["spec"] == old["spec"]


def test_update_namespace_spec_finalizers_only_through_finalize() -> None:
    old: dict[str, Any] = {
        "metadata": {"name": "a"},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
    main: dict[str, Any] = {"metadata": {"name": "a"}, "spec": {"finalizers": []}}
    prepare_for_update(NAMESPACES, main, old, "")
    assert main["spec"]["finalizers"] == ["kubernetes"]
    assert main["status"] == {"phase": "Active"}

    finalize: dict[str, Any] = {"metadata": {"name": "a"}, "spec": {"finalizers": []}}
    prepare_for_update(NAMESPACES, finalize, old, "finalize")
    assert finalize["spec"]["finalizers"] == []


def test_update_deletion_timestamp_comes_from_the_old_object() -> None:
    deleting: dict[str, Any] = {
        "metadata": {
            "name": "c",
            "deletionTimestamp": "2024-05-01T10:00:00Z",
            "deletionGracePeriodSeconds": 0,
        },
        "data": {},
    }
    new: dict[str, Any] = {"metadata": {"name": "c"}, "data": {"a": "1"}}
    prepare_for_update(CONFIGMAPS, new, deleting, "")
    assert new["metadata"]["deletionTimestamp"] == "2024-05-01T10:00:00Z"
    assert new["metadata"]["deletionGracePeriodSeconds"] == 0

    live: dict[str, Any] = {"metadata": {"name": "c"}, "data": {}}
    forged: dict[str, Any] = {
        "metadata": {
            "name": "c",
            "deletionTimestamp": "2024-05-01T10:00:00Z",
            "deletionGracePeriodSeconds": 5,
        }
    }
    prepare_for_update(CONFIGMAPS, forged, live, "")
    assert "deletionTimestamp" not in forged["metadata"]
    assert "deletionGracePeriodSeconds" not in forged["metadata"]


def test_job_gets_generated_selector_and_labels() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {}}},
    }
    prepare_for_create(JOBS, job)
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "app": "pi",
        "batch.kubernetes.io/controller-uid": "u-1",
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "u-1",
        "job-name": "pi",
    }
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}


def test_manual_job_selector_is_kept() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"manualSelector": True, "selector": {"matchLabels": {"a": "b"}}, "template": {}},
    }
    prepare_for_create(JOBS, job)
    assert job["spec"]["selector"] == {"matchLabels": {"a": "b"}}


def test_csr_records_the_requester() -> None:
    csrs = builtin_kind("certificates.k8s.io", "v1", "certificatesigningrequests")
    csr: dict[str, Any] = {
        "metadata": {"name": "c"},
        "spec": {"username": "forged", "groups": ["system:masters"]},
    }
    prepare_for_create(csrs, csr, ("alice", ["dev"]))
    assert csr["spec"]["username"] == "alice"
    assert csr["spec"]["groups"] == ["dev", "system:authenticated"]


# -- DaemonSet template generation ---------------------------------------------------------

DAEMONSETS = builtin_kind("apps", "v1", "daemonsets")
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def daemonset(image: str = "nginx:1", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "agent"}
    if annotations is not None:
        md["annotations"] = annotations
    return {
        "metadata": md,
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [(None, "1"), ({}, "1"), ({TEMPLATE_GENERATION: "0"}, "1"), ({TEMPLATE_GENERATION: "x"}, "1")],
)
def test_daemonset_create_starts_template_generation_at_one(
    annotations: dict[str, str] | None, expected: str
) -> None:
    ds = daemonset(annotations=annotations)
    prepare_for_create(DAEMONSETS, ds)
    assert ds["metadata"]["annotations"][TEMPLATE_GENERATION] == expected
    assert template_generation(ds) == int(expected)


def test_daemonset_template_generation_moves_with_the_template_only() -> None:
    old = daemonset()
    prepare_for_create(DAEMONSETS, old)
    # another spec field changes: generation moves, template generation does not
    new = copy.deepcopy(old)
    new["spec"]["minReadySeconds"] = 5
    prepare_for_update(DAEMONSETS, new, old, "")
    assert (new["metadata"]["generation"], template_generation(new)) == (2, 1)
    # a template change moves both; a client cannot set the annotation itself
    newer = copy.deepcopy(new)
    newer["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    newer["metadata"]["annotations"][TEMPLATE_GENERATION] = "40"
    prepare_for_update(DAEMONSETS, newer, new, "")
    assert (newer["metadata"]["generation"], template_generation(newer)) == (3, 2)
    # dropping the annotation in an update keeps it
    dropped = copy.deepcopy(newer)
    del dropped["metadata"]["annotations"]
    prepare_for_update(DAEMONSETS, dropped, newer, "")
    assert dropped["metadata"]["annotations"] == {TEMPLATE_GENERATION: "2"}
    # a status write keeps it too
    status = copy.deepcopy(newer)
    status["status"] = {"numberReady": 1}
    prepare_for_update(DAEMONSETS, status, newer, "status")
    assert template_generation(status) == 2


def test_template_generation_of_other_objects_is_zero() -> None:
    assert template_generation(daemonset()) == 0
    assert template_generation({"metadata": {"annotations": {TEMPLATE_GENERATION: 3}}}) == 0


def test_secret_string_data_is_folded_into_data_on_create_and_update() -> None:
    secrets = builtin_kind("", "v1", "secrets")
    obj: dict[str, Any] = {
        "metadata": {"name": "s"},
        "data": {"a": "b2xk", "keep": "eA=="},
        "stringData": {"a": "new", "b": "two"},
    }
    prepare_for_create(secrets, obj)
    assert obj["data"] == {"a": "bmV3", "keep": "eA==", "b": "dHdv"} and "stringData" not in obj
    new = {**copy.deepcopy(obj), "stringData": {"c": "3"}}
    prepare_for_update(secrets, new, obj, "")
    assert new["data"]["c"] == "Mw==" and "stringData" not in new
