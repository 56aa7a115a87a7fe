"""Tests for the patch engines: JSON patch, merge patch and strategic merge patch."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from edgek.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from edgek.patch.jsonpatch import json_equal

DEPLOYMENT = "apps/v1.Deployment"


def smp(doc: dict[str, Any], patch: dict[str, Any], type_name: str | None) -> dict[str, Any]:
    """Strategic merge patch, also checking that neither input is mutated."""
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    out = strategic_merge_patch(doc, patch, type_name)
    assert doc == doc_before
    assert patch == patch_before
    return out


def jp(doc: Any, ops: list[Any]) -> Any:
    """JSON patch, also checking that neither input is mutated."""
    doc_before, ops_before = copy.deepcopy(doc), copy.deepcopy(ops)
    out = json_patch(doc, ops)
    assert doc == doc_before
    assert ops == ops_before
    return out


def deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
            **spec,
        },
    }


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def no_directives(value: Any) -> bool:
    return "$" not in json.dumps(value)


# ---------------------------------------------------------------------------
# JSON patch


def test_json_patch_add_remove_replace() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    out = jp(
        doc,
        [
            {"op": "add", "path": "/a/b/1", "value": 9},
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/d", "value": {"x": None}},
            {"op": "remove", "path": "/c"},
            {"op": "replace", "path": "/a/b/0", "value": 0},
        ],
    )
    assert out == {"a": {"b": [0, 9, 2, 3]}, "d": {"x": None}}


def test_json_patch_move_copy_and_root() -> None:
    doc = {"a": {"x": 1}, "b": [1]}
    out = jp(
        doc,
        [
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "move", "from": "/a/x", "path": "/b/0"},
            {"op": "replace", "path": "/c/x", "value": 2},
        ],
    )
    assert out == {"a": {}, "b": [1, 1], "c": {"x": 2}}
    assert jp(doc, [{"op": "replace", "path": "", "value": [1]}]) == [1]
    assert jp(doc, [{"op": "add", "path": "", "value": 5}]) == 5


def test_json_patch_pointer_escapes() -> None:
    doc = {"metadata": {"annotations": {"example.com/a~b": "1"}}}
    out = jp(
        doc,
        [
            {"op": "test", "path": "/metadata/annotations/example.com~1a~0b", "value": "1"},
            {"op": "replace", "path": "/metadata/annotations/example.com~1a~0b", "value": "2"},
            {"op": "add", "path": "/metadata/annotations/~01", "value": "x"},
        ],
    )
    assert out == {"metadata": {"annotations": {"example.com/a~b": "2", "~1": "x"}}}


def test_json_patch_test_op() -> None:
    doc = {"a": [1, {"b": True}], "n": 1}
    assert jp(doc, [{"op": "test", "path": "/a", "value": [1, {"b": True}]}]) == doc
    assert jp(doc, [{"op": "test", "path": "/n", "value": 1.0}]) == doc
    with pytest.raises(PatchError, match="test operation failed"):
        jp(doc, [{"op": "test", "path": "/a/1/b", "value": 1}])
    with pytest.raises(PatchError, match="test operation failed"):
        jp(doc, [{"op": "test", "path": "/n", "value": "1"}])


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "add", "path": "/missing/x", "value": 1}],
        [{"op": "add", "path": "/l/5", "value": 1}],
        [{"op": "add", "path": "/l/01", "value": 1}],
        [{"op": "remove", "path": "/l/-"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a~2", "value": 1}],
        [{"op": "add", "path": "/x"}],
        [{"op": "frobnicate", "path": "/x"}],
        [{"op": "move", "from": "/o", "path": "/o/inner"}],
        [{"op": "copy", "from": "/nope", "path": "/x"}],
        [{"op": "remove", "path": ""}],
        ["add"],
    ],
)
def test_json_patch_errors(ops: list[Any]) -> None:
    doc = {"l": [1], "o": {}}
    with pytest.raises(PatchError):
        jp(doc, ops)


def test_json_patch_not_a_list() -> None:
    with pytest.raises(PatchError, match="list of operations"):
        json_patch({}, {"op": "add"})


def test_json_patch_result_does_not_alias_inputs() -> None:
    value = {"k": [1]}
    out = json_patch({}, [{"op": "add", "path": "/v", "value": value}])
    out["v"]["k"].append(2)
    assert value == {"k": [1]}


# ---------------------------------------------------------------------------
# Merge patch


def test_merge_patch_merges_and_deletes() -> None:
    doc = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    patch = {"a": None, "b": {"c": None, "e": {"f": None, "g": 1}}, "l": [3]}
    before = copy.deepcopy(doc)
    assert merge_patch(doc, patch) == {"b": {"d": 3, "e": {"g": 1}}, "l": [3]}
    assert doc == before


def test_merge_patch_non_object_replaces() -> None:
    assert merge_patch({"a": 1}, [1, 2]) == [1, 2]
    assert merge_patch({"a": 1}, "x") == "x"
    assert merge_patch([1], {"a": 1}) == {"a": 1}
    assert merge_patch({"a": [1]}, {"a": {"b": 1}}) == {"a": {"b": 1}}


# ---------------------------------------------------------------------------
# Strategic merge patch: maps and lists


def test_maps_merge_and_null_deletes() -> None:
    doc = deployment([{"name": "app", "image": "a:1"}])
    out = smp(
        doc,
        {"metadata": {"labels": {"app": None, "tier": "web"}}, "spec": {"replicas": 3}},
        DEPLOYMENT,
    )
    assert out["metadata"]["labels"] == {"tier": "web"}
    assert out["spec"]["replicas"] == 3
    assert pod_spec(out) == pod_spec(doc)


def test_containers_merge_by_name() -> None:
    doc = deployment(
        [
            {"name": "app", "image": "a:1", "args": ["x"]},
            {"name": "side", "image": "s:1"},
        ]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "side", "image": "s:2"}, {"name": "new", "image": "n"}]
                }
            }
        }
    }
    out = smp(doc, patch, DEPLOYMENT)
    assert pod_spec(out)["containers"] == [
        {"name": "app", "image": "a:1", "args": ["x"]},
        {"name": "side", "image": "s:2"},
        {"name": "new", "image": "n"},
    ]


def test_non_merge_list_is_replaced() -> None:
    doc = deployment([{"name": "app", "image": "a", "args": ["x", "y"]}])
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["z"]}]}}}}
    assert pod_spec(smp(doc, patch, DEPLOYMENT))["containers"][0]["args"] == ["z"]


def test_env_removal_with_delete_directive() -> None:
    doc = deployment(
        [
            {
                "name": "app",
                "image": "a",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]
                }
            }
        }
    }
    out = smp(doc, patch, DEPLOYMENT)
    assert pod_spec(out)["containers"][0]["env"] == [{"name": "B", "value": "2"}]


def test_container_ports_and_volume_mounts_merge_keys() -> None:
    doc = deployment(
        [
            {
                "name": "app",
                "ports": [{"containerPort": 80, "name": "http"}],
                "volumeMounts": [{"name": "v", "mountPath": "/a"}],
            }
        ]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "ports": [
                                {"containerPort": 80, "protocol": "TCP"},
                                {"containerPort": 443},
                            ],
                            "volumeMounts": [{"name": "w", "mountPath": "/a"}],
                        }
                    ]
                }
            }
        }
    }
    container = pod_spec(smp(doc, patch, DEPLOYMENT))["containers"][0]
    assert container["ports"] == [
        {"containerPort": 80, "name": "http", "protocol": "TCP"},
        {"containerPort": 443},
    ]
    assert container["volumeMounts"] == [{"name": "w", "mountPath": "/a"}]


def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "name": "https"}]}}
    patch = {
        "spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "$patch": "delete"}]}
    }
    out = smp(svc, patch, "core/v1.Service")
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}]


def test_conditions_and_owner_references_merge() -> None:
    pod = {
        "metadata": {"ownerReferences": [{"uid": "u1", "name": "rs"}]},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "Initialized", "status": "True"},
            ]
        },
    }
    patch = {
        "metadata": {"ownerReferences": [{"uid": "u2", "name": "other"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    out = smp(pod, patch, "core/v1.Pod")
    # As upstream: without $setElementOrder a new element lands before untouched ones.
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["u2", "u1"]
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Initialized", "status": "True"},
    ]


def test_finalizers_union_and_delete_from_primitive_list() -> None:
    doc = {"metadata": {"finalizers": ["a", "b"]}}
    out = smp(doc, {"metadata": {"finalizers": ["b", "c"]}}, "core/v1.ConfigMap")
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    out = smp(
        doc, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, "core/v1.ConfigMap"
    )
    assert out["metadata"]["finalizers"] == ["b"]
    out = smp(
        doc,
        {"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["b"]}},
        "core/v1.ConfigMap",
    )
    assert out["metadata"]["finalizers"] == ["c", "a"]
    assert no_directives(out)


def test_delete_from_missing_primitive_list_is_noop() -> None:
    out = smp(
        {"metadata": {}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
        "core/v1.Pod",
    )
    assert out == {"metadata": {}}


def test_unknown_schema_replaces_lists() -> None:
    doc = {"spec": {"containers": [{"name": "a"}], "m": {"x": 1}}}
    out = smp(doc, {"spec": {"containers": [{"name": "b"}], "m": {"y": 2}}}, None)
    assert out == {"spec": {"containers": [{"name": "b"}], "m": {"x": 1, "y": 2}}}


# ---------------------------------------------------------------------------
# Strategic merge patch: directives


def test_patch_replace_in_map() -> None:
    doc = deployment([{"name": "app", "image": "a"}])
    out = smp(doc, {"metadata": {"labels": {"$patch": "replace", "only": "me"}}}, DEPLOYMENT)
    assert out["metadata"]["labels"] == {"only": "me"}


def test_patch_replace_in_list() -> None:
    doc = deployment([{"name": "app", "image": "a"}, {"name": "b", "image": "b"}])
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "c", "image": "c"}, {"$patch": "replace"}]}
            }
        }
    }
    assert pod_spec(smp(doc, patch, DEPLOYMENT))["containers"] == [{"name": "c", "image": "c"}]


def test_patch_delete_map_and_whole_object() -> None:
    doc = deployment([{"name": "app"}])
    out = smp(doc, {"metadata": {"labels": {"$patch": "delete"}}}, DEPLOYMENT)
    assert "labels" not in out["metadata"]
    assert smp(doc, {"$patch": "delete"}, DEPLOYMENT) == {}


def test_patch_merge_directive_is_default() -> None:
    doc = deployment([{"name": "app"}])
    out = smp(doc, {"metadata": {"labels": {"$patch": "merge", "x": "y"}}}, DEPLOYMENT)
    assert out["metadata"]["labels"] == {"app": "web", "x": "y"}


def test_retain_keys_on_deployment_strategy() -> None:
    doc = deployment(
        [{"name": "app"}],
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    )
    patch = {
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}
    }
    assert smp(doc, patch, DEPLOYMENT)["spec"]["strategy"] == {"type": "Recreate"}
    # Without the null, $retainKeys alone still clears rollingUpdate.
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert smp(doc, patch, DEPLOYMENT)["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_on_volumes() -> None:
    doc = deployment([{"name": "app"}])
    pod_spec(doc)["volumes"] = [{"name": "v", "emptyDir": {}}]
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {
                            "name": "v",
                            "$retainKeys": ["configMap", "name"],
                            "configMap": {"name": "cm"},
                        }
                    ]
                }
            }
        }
    }
    assert pod_spec(smp(doc, patch, DEPLOYMENT))["volumes"] == [
        {"name": "v", "configMap": {"name": "cm"}}
    ]


def test_retain_keys_must_cover_patch_fields() -> None:
    doc = deployment([{"name": "app"}], strategy={"type": "RollingUpdate"})
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}
    with pytest.raises(PatchError, match="retainKeys"):
        smp(doc, patch, DEPLOYMENT)


def test_set_element_order_reorders_containers() -> None:
    doc = deployment([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "a", "image": "x"}],
                }
            }
        }
    }
    out = smp(doc, patch, DEPLOYMENT)
    assert [c["name"] for c in pod_spec(out)["containers"]] == ["c", "a", "b"]
    assert pod_spec(out)["containers"][1] == {"name": "a", "image": "x"}
    assert no_directives(out)


def test_set_element_order_keeps_server_only_items_in_place() -> None:
    doc = deployment([{"name": "a"}, {"name": "server"}, {"name": "b"}])
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                }
            }
        }
    }
    out = smp(doc, patch, DEPLOYMENT)
    # "server" preceded "b" on the server, so it stays ahead of the reordered run.
    assert [c["name"] for c in pod_spec(out)["containers"]] == ["server", "b", "a"]


def test_set_element_order_for_primitive_list() -> None:
    doc = {"metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}
    assert smp(doc, patch, "core/v1.Pod")["metadata"]["finalizers"] == ["c", "b", "a"]


def test_set_element_order_mismatch_is_rejected() -> None:
    doc = deployment([{"name": "a"}, {"name": "b"}])
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}],
                }
            }
        }
    }
    with pytest.raises(PatchError, match="doesn't match"):
        smp(doc, patch, DEPLOYMENT)


def test_kubectl_reapply_changes_image_and_removes_env() -> None:
    """The three-way patch kubectl sends on re-apply after editing the manifest."""
    doc = deployment(
        [
            {
                "name": "app",
                "image": "nginx:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "terminationMessagePath": "/dev/termination-log",
            }
        ]
    )
    doc["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{new}"}},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "A"}],
                            "env": [{"$patch": "delete", "name": "B"}],
                            "image": "nginx:2",
                            "name": "app",
                        }
                    ],
                }
            }
        },
    }
    out = smp(doc, patch, DEPLOYMENT)
    assert pod_spec(out)["containers"] == [
        {
            "name": "app",
            "image": "nginx:2",
            "env": [{"name": "A", "value": "1"}],
            "terminationMessagePath": "/dev/termination-log",
        }
    ]
    assert out["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": "{new}"
    }
    assert no_directives(out)


def test_added_values_have_directives_applied() -> None:
    doc: dict[str, Any] = {"spec": {"template": {"spec": {}}}}
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "a"}],
                    "containers": [
                        {"name": "a", "env": [{"name": "X", "value": None}], "ports": None}
                    ],
                }
            }
        }
    }
    out = smp(doc, patch, DEPLOYMENT)
    assert pod_spec(out) == {"containers": [{"name": "a", "env": [{"name": "X"}]}]}


def test_result_does_not_alias_patch() -> None:
    patch = {"metadata": {"labels": {"a": "b"}}}
    out = strategic_merge_patch({}, patch, DEPLOYMENT)
    out["metadata"]["labels"]["c"] = "d"
    assert patch == {"metadata": {"labels": {"a": "b"}}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"metadata": {"labels": {"$patch": "explode"}}}, "unknown patch type"),
        ({"spec": {"strategy": {"$retainKeys": "type"}}}, "retainKeys"),
        (
            {"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "a"}}}}},
            "setElementOrder",
        ),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "primitive list"),
        ({"metadata": {"$setElementOrder": []}}, "setElementOrder"),
        ({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, "merge key: name"),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "x", "$patch": "bogus"}]}}}},
            "unknown",
        ),
        ({"spec": {"template": {"spec": {"containers": ["x"]}}}}, "not identical"),
        ({"metadata": {"finalizers": [["a"]]}}, "lists of lists"),
    ],
)
def test_bad_strategic_patches(patch: dict[str, Any], message: str) -> None:
    doc = deployment([{"name": "app"}], strategy={"type": "Recreate"})
    doc["metadata"]["finalizers"] = ["f"]
    with pytest.raises(PatchError, match=message):
        smp(doc, patch, DEPLOYMENT)


def test_strategic_patch_must_be_object() -> None:
    with pytest.raises(PatchError, match="JSON object"):
        strategic_merge_patch({}, [], DEPLOYMENT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ({"x": [1, {"y": True}]}, {"x": [1, {"y": True}]}, True),
        ({"x": [1, {"y": True}]}, {"x": [1, {"y": 1}]}, False),  # a boolean is no number
        ({"x": [0]}, {"x": [False]}, False),
        ({"n": 1}, {"n": 1.0}, True),  # numbers by value
        ({"a": 1, "b": "s"}, {"b": "s", "a": 1}, True),  # key order is no difference
        ({"a": [1, 2]}, {"a": [2, 1]}, False),
        ({"a": "1"}, {"a": 1}, False),
        ({"a": None}, {}, False),
    ],
)
def test_json_equality(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


def test_json_patch_operation_count_is_capped() -> None:
    from edgek.patch.jsonpatch import MAX_OPERATIONS, TooManyOperations

    ops = [{"op": "test", "path": "/a", "value": 1}]
    assert json_patch({"a": 1}, ops * MAX_OPERATIONS) == {"a": 1}
    with pytest.raises(TooManyOperations, match="maximum operations in a JSON patch is 10000"):
        json_patch({"a": 1}, ops * (MAX_OPERATIONS + 1))


def test_json_patch_copies_are_capped() -> None:
    doc = {"a": {"x": "y" * 1000}}
    ops = [{"op": "copy", "from": "/a", "path": f"/a/c{i}"} for i in range(25)]
    with pytest.raises(
        PatchError, match=r"accumulated size increase of copy is \d+, exceeding the limit 3145728$"
    ):
        json_patch(doc, ops)
    assert json_patch(doc, ops[:3])["a"]["c2"]["c1"]["c0"] == {"x": "y" * 1000}


def test_strategic_large_lists_take_linear_time() -> None:
    """Merging, ordering and deleting in lists of 20,000 elements (quadratic: minutes)."""
    import time

    n = 20_000
    doc = {
        "metadata": {"finalizers": [f"f{i}" for i in range(n)]},
        "spec": {"containers": [{"name": f"c{i}", "image": "x"} for i in range(n)]},
    }
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": [f"f{i}" for i in range(0, n, 2)]},
        "spec": {
            "$setElementOrder/containers": [{"name": f"c{i}"} for i in reversed(range(n))],
            "containers": [{"name": f"c{i}", "image": "y"} for i in reversed(range(0, n, 2))]
            + [{"name": "c1", "$patch": "delete"}],
        },
    }
    start = time.perf_counter()
    out = strategic_merge_patch(doc, patch, "core/v1.Pod")
    assert time.perf_counter() - start < 5
    assert out["metadata"]["finalizers"][:2] == ["f1", "f3"]
    names = [c["name"] for c in out["spec"]["containers"]]
    assert names[:3] == [f"c{n - 1}", f"c{n - 2}", f"c{n - 3}"] and "c1" not in names
    assert out["spec"]["containers"][1] == {"name": f"c{n - 2}", "image": "y"}
