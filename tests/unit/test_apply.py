"""Tests for server-side apply and managedFields bookkeeping (edgek.patch.apply)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from edgek.patch import fieldset
from edgek.patch.apply import LAST_APPLIED, ApplyConflict, apply, record_update
from edgek.status import ApiError

DEPLOYMENT = "apps/v1.Deployment"
T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T11:00:00Z"
T2 = "2024-05-01T12:00:00Z"


def deployment(**spec: Any) -> dict[str, Any]:
    """A small Deployment apply body; keyword arguments override spec fields."""
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }
    body["spec"].update(spec)
    return body


def do_apply(
    live: dict[str, Any] | None,
    body: dict[str, Any],
    manager: str = "mgr-a",
    *,
    force: bool = False,
    now: str = T0,
    type_name: str | None = DEPLOYMENT,
    api_version: str = "apps/v1",
) -> dict[str, Any]:
    return apply(
        live,
        body,
        manager=manager,
        force=force,
        type_name=type_name,
        api_version=api_version,
        now=now,
    )


def do_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, **kw: Any) -> None:
    kw.setdefault("type_name", DEPLOYMENT)
    kw.setdefault("api_version", "apps/v1")
    kw.setdefault("now", T1)
    record_update(old, new, manager=manager, **kw)


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def owned(obj: dict[str, Any], manager: str, operation: str = "Apply") -> set[str]:
    """The paths a manager owns, spelled like conflict paths."""
    entry = entries(obj).get((manager, operation))
    if entry is None:
        return set()
    return {fieldset.path_string(p) for p in fieldset.decode(entry["fieldsV1"])}


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


# ---------------------------------------------------------------------------
# Apply


def test_create_records_exact_fields_v1() -> None:
    body = deployment()
    obj = do_apply(None, body)
    assert obj["spec"]["replicas"] == 2
    assert body["metadata"].get("managedFields") is None  # input untouched
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "mgr-a",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"nginx"}': {
                                    ".": {},
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        }
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]


def test_reapply_same_config_changes_nothing() -> None:
    obj = do_apply(None, deployment())
    again = do_apply(obj, deployment(), now=T1)
    assert again == obj
    assert again is not obj


def test_apply_removing_a_field_removes_it() -> None:
    obj = do_apply(None, deployment(minReadySeconds=5))
    body = deployment()
    del body["metadata"]["labels"]
    obj = do_apply(obj, body, now=T1)
    assert "minReadySeconds" not in obj["spec"]
    assert "labels" not in obj["metadata"]
    assert ".spec.minReadySeconds" not in owned(obj, "mgr-a")
    assert entries(obj)[("mgr-a", "Apply")]["time"] == T1


def test_apply_keeps_fields_nobody_applied() -> None:
    live = do_apply(None, deployment())
    live["spec"]["revisionHistoryLimit"] = 10  # e.g. a default, owned by nobody
    body = deployment()
    del body["spec"]["replicas"]
    obj = do_apply(live, body, now=T1)
    assert obj["spec"]["revisionHistoryLimit"] == 10
    assert "replicas" not in obj["spec"]


def test_two_appliers_own_different_fields() -> None:
    obj = do_apply(None, deployment())
    extra = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"team": "blue"}},
        "spec": {"paused": True},
    }
    obj = do_apply(obj, extra, "mgr-b", now=T1)
    assert owned(obj, "mgr-b") == {".metadata.annotations.team", ".spec.paused"}
    assert ".spec.replicas" in owned(obj, "mgr-a")
    # mgr-a re-applies without the fields mgr-b owns: they stay.
    obj = do_apply(obj, deployment(), now=T2)
    assert obj["spec"]["paused"] is True
    assert obj["metadata"]["annotations"] == {"team": "blue"}
    # mgr-b stops applying them: they go.
    bare = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    obj = do_apply(obj, bare, "mgr-b", now=T2)
    assert "paused" not in obj["spec"]
    assert "annotations" not in obj["metadata"]
    assert ("mgr-b", "Apply") not in entries(obj)


def test_same_value_is_shared_not_a_conflict() -> None:
    obj = do_apply(None, deployment())
    obj = do_apply(obj, deployment(), "mgr-b", now=T1)
    assert ".spec.replicas" in owned(obj, "mgr-a") & owned(obj, "mgr-b")
    # mgr-a no longer applies replicas, but mgr-b still does: the value stays.
    body = deployment()
    del body["spec"]["replicas"]
    obj = do_apply(obj, body, now=T2)
    assert obj["spec"]["replicas"] == 2
    assert ".spec.replicas" not in owned(obj, "mgr-a")


def test_conflict_with_update_owned_field() -> None:
    obj = do_apply(None, deployment())
    edited = copy.deepcopy(obj)
    edited["spec"]["replicas"] = 5
    do_update(obj, edited, "kubectl-edit")
    assert owned(edited, "kubectl-edit", "Update") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(edited, "mgr-a")

    with pytest.raises(ApplyConflict) as info:
        do_apply(edited, deployment(), now=T2)
    exc = info.value
    assert exc.conflicts == [("kubectl-edit", ".spec.replicas")]
    assert exc.message("apps/v1") == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas'
    )
    err = exc.api_error("apps/v1")
    assert isinstance(err, ApiError)
    status = err.status()
    assert (status["code"], status["reason"]) == (409, "Conflict")
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-edit" using apps/v1',
            "field": ".spec.replicas",
        }
    ]


def test_conflict_message_for_several_managers() -> None:
    obj = do_apply(None, deployment())
    obj = do_apply(obj, deployment(), "other-applier", now=T1)
    edited = copy.deepcopy(obj)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    do_update(obj, edited, "ctl")
    body = deployment(replicas=3)
    containers(body)[0]["image"] = "nginx:1.27"
    with pytest.raises(ApplyConflict) as info:
        do_apply(edited, body, "third", now=T2)
    image = '.spec.template.spec.containers[name="nginx"].image'
    assert info.value.message() == (
        "Apply failed with 3 conflicts: "
        'conflicts with "ctl" using apps/v1:\n'
        f"- {image}\n"
        'conflicts with "mgr-a":\n'
        "- .spec.replicas\n"
        'conflicts with "other-applier":\n'
        "- .spec.replicas"
    )


def test_force_takes_ownership() -> None:
    obj = do_apply(None, deployment())
    edited = copy.deepcopy(obj)
    edited["spec"]["replicas"] = 5
    do_update(obj, edited, "kubectl-edit")
    obj = do_apply(edited, deployment(replicas=7), force=True, now=T2)
    assert obj["spec"]["replicas"] == 7
    assert ".spec.replicas" in owned(obj, "mgr-a")
    assert ("kubectl-edit", "Update") not in entries(obj)  # its only field is gone


def test_list_map_merges_containers_by_name() -> None:
    obj = do_apply(None, deployment())
    sidecar: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]},
            }
        },
    }
    obj = do_apply(obj, sidecar, "mgr-b", now=T1)
    assert [c["name"] for c in containers(obj)] == ["nginx", "proxy"]
    assert containers(obj)[0]["ports"] == [{"containerPort": 80}]
    assert owned(obj, "mgr-b") == {
        '.spec.template.spec.containers[name="proxy"]',
        '.spec.template.spec.containers[name="proxy"].image',
        '.spec.template.spec.containers[name="proxy"].name',
    }
    # mgr-a changes its container and keeps mgr-b's.
    body = deployment()
    containers(body)[0]["image"] = "nginx:1.26"
    obj = do_apply(obj, body, now=T2)
    assert [(c["name"], c["image"]) for c in containers(obj)] == [
        ("nginx", "nginx:1.26"),
        ("proxy", "envoy:1"),
    ]
    # mgr-b drops its container: it is removed, mgr-a's stays.
    sidecar["spec"]["template"]["spec"]["containers"] = []
    obj = do_apply(obj, sidecar, "mgr-b", now=T2)
    assert [c["name"] for c in containers(obj)] == ["nginx"]


def test_list_map_order_follows_applied_order_for_shared_items() -> None:
    body = deployment()
    containers(body)[:] = [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]
    obj = do_apply(None, body)
    containers(body).reverse()
    obj = do_apply(obj, body, now=T1)
    assert [c["name"] for c in containers(obj)] == ["b", "a"]


def test_update_changes_ownership_so_apply_conflicts() -> None:
    obj = do_apply(None, deployment())
    # What `kubectl set image` would do: a patch by another manager.
    new = copy.deepcopy(obj)
    containers(new)[0]["image"] = "nginx:1.26"
    do_update(obj, new, "kubectl-set")
    image = '.spec.template.spec.containers[name="nginx"].image'
    assert owned(new, "kubectl-set", "Update") == {image}
    assert image not in owned(new, "mgr-a")
    assert entries(new)[("kubectl-set", "Update")]["time"] == T1
    with pytest.raises(ApplyConflict) as info:
        do_apply(new, deployment(), now=T2)
    assert info.value.conflicts == [("kubectl-set", image)]
    # Applying the value the updater set is fine.
    body = deployment()
    containers(body)[0]["image"] = "nginx:1.26"
    obj = do_apply(new, body, now=T2)
    assert image in owned(obj, "mgr-a") & owned(obj, "kubectl-set", "Update")


def test_record_update_on_create_matches_upstream_shape() -> None:
    obj = deployment()
    obj["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    containers(obj)[0]["resources"] = {}
    containers(obj)[0]["ports"][0]["protocol"] = "TCP"
    do_update(None, obj, "kubectl-create", now=T0)
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["operation"] == "Update"
    assert entry["time"] == T0
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:strategy": {
                "f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                "f:type": {},
            },
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"nginx"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                                ".": {},
                                'k:{"containerPort":80,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:containerPort": {},
                                    "f:protocol": {},
                                },
                            },
                            "f:resources": {},
                        }
                    }
                },
            },
        },
    }


def test_record_update_without_changes_keeps_entries() -> None:
    obj = do_apply(None, deployment())
    new = copy.deepcopy(obj)
    del new["metadata"]["managedFields"]  # a client that does not send them
    new["metadata"]["resourceVersion"] = "42"  # stripped: never owned
    do_update(obj, new, "ctl")
    assert new["metadata"]["managedFields"] == obj["metadata"]["managedFields"]


def test_record_update_removal_and_reset() -> None:
    obj = do_apply(None, deployment())
    new = copy.deepcopy(obj)
    del new["metadata"]["labels"]
    do_update(obj, new, "ctl")
    assert ".metadata.labels.app" not in owned(new, "mgr-a")
    assert ("ctl", "Update") not in entries(new)  # it removed, but set nothing

    cleared = copy.deepcopy(obj)
    cleared["metadata"]["managedFields"] = [{}]
    cleared["spec"]["replicas"] = 9
    do_update(obj, cleared, "ctl")
    assert "managedFields" not in cleared["metadata"]


def test_record_update_subresource_entry() -> None:
    obj = do_apply(None, deployment())
    new = copy.deepcopy(obj)
    new["status"] = {"replicas": 2}
    do_update(obj, new, "controller", subresource="status")
    (entry,) = [e for e in new["metadata"]["managedFields"] if e["manager"] == "controller"]
    assert entry["subresource"] == "status"
    # status is a plain struct upstream, present (empty) before: not itself "added".
    assert entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_record_update_repeated_status_writes() -> None:
    """A manager re-writing fields it owns keeps its fields and gets a new time; another
    manager taking one over moves just that field; the untouched entries stay equal to
    a fresh encoding of what they own."""
    obj = do_apply(None, deployment())
    first = copy.deepcopy(obj)
    first["status"] = {"replicas": 2, "readyReplicas": 1}
    do_update(obj, first, "controller", subresource="status", now=T1)

    second = copy.deepcopy(first)
    second["status"]["readyReplicas"] = 2
    do_update(first, second, "controller", subresource="status", now=T2)
    status_entry = [e for e in second["metadata"]["managedFields"] if e["manager"] == "controller"]
    assert status_entry[0]["time"] == T2
    assert status_entry[0]["fieldsV1"] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
    assert entries(second)[("mgr-a", "Apply")] == entries(obj)[("mgr-a", "Apply")]

    third = copy.deepcopy(second)
    third["status"]["readyReplicas"] = 0
    del third["status"]["replicas"]
    do_update(second, third, "other", subresource="status", now=T2)
    by_manager = {e["manager"]: e for e in third["metadata"]["managedFields"]}
    assert by_manager["other"]["fieldsV1"] == {"f:status": {"f:readyReplicas": {}}}
    assert "controller" not in by_manager  # it lost readyReplicas, replicas was removed
    assert owned(third, "mgr-a") == owned(obj, "mgr-a")


# ---------------------------------------------------------------------------
# Schema-specific merging


def test_set_list_merges_as_set() -> None:
    body = deployment()
    body["metadata"]["finalizers"] = ["a/x"]
    obj = do_apply(None, body)
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": ["b/y"]},
    }
    obj = do_apply(obj, other, "mgr-b", now=T1)
    assert obj["metadata"]["finalizers"] == ["a/x", "b/y"]
    assert owned(obj, "mgr-b") == {'.metadata.finalizers[="b/y"]'}


def test_atomic_map_and_list_are_replaced() -> None:
    body = deployment()
    pod = body["spec"]["template"]["spec"]
    pod["nodeSelector"] = {"disk": "ssd"}
    containers(body)[0]["args"] = ["-a", "-b"]
    obj = do_apply(None, body)
    assert ".spec.template.spec.nodeSelector" in owned(obj, "mgr-a")
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"nodeSelector": {"zone": "a"}}}},
    }
    with pytest.raises(ApplyConflict):
        do_apply(obj, other, "mgr-b", now=T1)
    obj = do_apply(obj, other, "mgr-b", force=True, now=T1)
    assert obj["spec"]["template"]["spec"]["nodeSelector"] == {"zone": "a"}
    assert containers(obj)[0]["args"] == ["-a", "-b"]


@pytest.mark.parametrize(
    ("type_name", "body", "paths"),
    [
        # ObjectReference is +structType=atomic: owned as a whole ...
        (
            "core/v1.Event",
            {"involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started"},
            {".involvedObject", ".reason"},
        ),
        # ... unless the field says +structType=granular (PersistentVolumeSpec.claimRef).
        (
            "core/v1.PersistentVolume",
            {"spec": {"claimRef": {"name": "c", "namespace": "ns"}}},
            {".spec.claimRef.name", ".spec.claimRef.namespace"},
        ),
    ],
)
def test_struct_type_markers(type_name: str, body: dict[str, Any], paths: set[str]) -> None:
    kind = type_name.rpartition(".")[2]
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}, **body}
    applied = do_apply(None, obj, type_name=type_name, api_version="v1")
    assert owned(applied, "mgr-a") == paths


def test_custom_resource_maps_merge_lists_atomic() -> None:
    cr = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "1"}},
        "spec": {"size": 1, "tags": ["x", "y"], "nested": {"k": "v"}},
    }
    obj = do_apply(None, cr, type_name=None, api_version="example.com/v1")
    assert owned(obj, "mgr-a") == {
        ".metadata.labels.a",
        ".spec.size",
        ".spec.tags",
        ".spec.nested.k",
    }
    other: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red", "tags": ["x", "y"]},
    }
    obj = do_apply(obj, other, "mgr-b", type_name=None, api_version="example.com/v1", now=T1)
    assert obj["spec"] == {"size": 1, "tags": ["x", "y"], "nested": {"k": "v"}, "color": "red"}
    other["spec"]["tags"] = ["z"]
    with pytest.raises(ApplyConflict) as info:
        do_apply(obj, other, "mgr-b", type_name=None, api_version="example.com/v1", now=T2)
    assert info.value.conflicts == [("mgr-a", ".spec.tags")]


# ---------------------------------------------------------------------------
# Client-side apply migration and bad requests


def test_kubectl_takes_over_fields_from_client_side_apply() -> None:
    config = deployment()
    live = copy.deepcopy(config)
    live["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(config)}
    do_update(None, live, "kubectl-client-side-apply", now=T0)
    changed = deployment(replicas=4)
    with pytest.raises(ApplyConflict):
        do_apply(live, changed, "someone-else", now=T1)
    obj = do_apply(live, changed, "kubectl", now=T1)
    assert obj["spec"]["replicas"] == 4
    assert ".spec.replicas" in owned(obj, "kubectl")
    assert json.loads(obj["metadata"]["annotations"][LAST_APPLIED]) == changed
    # A field the client-side apply annotation does not describe still conflicts.
    edited = copy.deepcopy(obj)
    edited["spec"]["paused"] = True
    do_update(obj, edited, "ctl", now=T2)
    with pytest.raises(ApplyConflict):
        do_apply(edited, {**changed, "spec": {**changed["spec"], "paused": False}}, "kubectl")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**deployment(), "apiVersion": "apps/v2"}, "Incorrect version specified in apply patch"),
        (
            {**deployment(), "metadata": {"name": "web", "managedFields": []}},
            "metadata.managedFields must be nil",
        ),
        (
            deployment(template={"spec": {"containers": [{"image": "x"}]}}),
            'omits key field "name"',
        ),
        (
            deployment(template={"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}),
            "duplicate entries",
        ),
    ],
)
def test_bad_apply_bodies(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiError) as info:
        do_apply(None, body)
    assert info.value.code == 400
    assert message in info.value.message


def test_server_metadata_is_not_applied() -> None:
    live = do_apply(None, deployment())
    live["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp=T0)
    body = deployment()
    body["metadata"].update(uid="other", resourceVersion="1", creationTimestamp=None)
    obj = do_apply(live, body, now=T1)
    assert (obj["metadata"]["uid"], obj["metadata"]["resourceVersion"]) == ("u-1", "7")
    assert obj["metadata"]["creationTimestamp"] == T0


def test_fieldset_round_trip() -> None:
    paths = {
        ("f:spec", "f:replicas"),
        ("f:spec", "f:containers", 'k:{"name":"a"}'),
        ("f:spec", "f:containers", 'k:{"name":"a"}', "f:image"),
        ("f:metadata", "f:finalizers", 'v:"x"'),
    }
    encoded = fieldset.encode(paths)
    assert fieldset.decode(encoded) == paths
    assert list(encoded["f:spec"]) == ["f:containers", "f:replicas"]
    assert encoded["f:spec"]["f:containers"]['k:{"name":"a"}'] == {".": {}, "f:image": {}}
    # Decoding canonicalises key spelling.
    assert fieldset.decode({'k:{"b": 1, "a": 2}': {}}) == {('k:{"a":2,"b":1}',)}
