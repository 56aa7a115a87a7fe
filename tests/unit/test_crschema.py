"""Custom resources against their CRD's structural schema: pruning, defaulting, validation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from server.storage.crschema import apply_defaults, prune, unknown_fields, validate

# The CronTab example from the Kubernetes CRD docs.
CRONTAB: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "cronSpec": {
                    "type": "string",
                    "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$",
                },
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
            },
        },
    },
}

# Nested arrays of objects, list types, formats and defaults (a Service-like spec).
ENDPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["ports"],
            "properties": {
                "ports": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 3,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port"],
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "properties": {
                            "name": {"type": "string", "maxLength": 15, "minLength": 2},
                            "port": {
                                "type": "integer",
                                "format": "int32",
                                "minimum": 1,
                                "maximum": 65535,
                            },
                            "protocol": {
                                "type": "string",
                                "enum": ["TCP", "UDP"],
                                "default": "TCP",
                            },
                        },
                    },
                },
                "tags": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
                "weights": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "x-kubernetes-list-type": "set",
                        "items": {"type": "integer", "enum": [1, 2, 3]},
                    },
                },
                "since": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "id": {"type": "string", "format": "uuid"},
                "ratio": {
                    "type": "number",
                    "minimum": 0,
                    "exclusiveMinimum": True,
                    "maximum": 1e6,
                },
                "step": {"type": "integer", "multipleOf": 5},
                "maxSurge": {"x-kubernetes-int-or-string": True},
                "maxUnavailable": {"x-kubernetes-int-or-string": True, "nullable": True},
                "owner": {"type": "object", "nullable": True, "properties": {}},
            },
        },
    },
}

# A preserve-unknown-fields subtree and an embedded resource.
WORKLOAD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "config": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "known": {"type": "object", "properties": {"a": {"type": "string"}}},
                        "list": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"b": {"type": "string"}}},
                        },
                    },
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {
                        "spec": {"type": "object", "properties": {"x": {"type": "string"}}},
                    },
                },
                "extras": {
                    "type": "array",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "items": {"type": "object", "properties": {"b": {"type": "string"}}},
                },
                "loose": {"type": "object", "additionalProperties": True},
            },
        },
    },
}


def crontab(**spec: Any) -> dict[str, Any]:
    base = {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", "replicas": 1}
    return {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "my-new-cron-object", "namespace": "default"},
        "spec": {**base, **spec},
    }


def endpoint(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Endpoint",
        "metadata": {"name": "e"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec},
    }


def cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}


# ---------------------------------------------------------------------------
# unknown_fields / prune


def test_crontab_unknown_fields_are_reported_and_pruned() -> None:
    obj = crontab(extra=1)
    obj["status"] = {"x": 1}
    obj["metadata"]["bogus"] = "root metadata is not this module's business"
    assert unknown_fields(CRONTAB, obj) == ["spec.extra", "status"]
    prune(CRONTAB, obj)
    expected = crontab()
    expected["metadata"]["bogus"] = obj["metadata"]["bogus"]
    assert obj == expected
    assert unknown_fields(CRONTAB, obj) == []


def test_unknown_fields_inside_array_items_and_maps() -> None:
    obj = endpoint(weights={"a": [1]})
    obj["spec"]["ports"].append({"port": 443, "tls": True, "extra": {"deep": 1}})
    obj["spec"]["weights"]["b"] = [2]
    assert unknown_fields(ENDPOINT, obj) == ["spec.ports[1].extra", "spec.ports[1].tls"]
    prune(ENDPOINT, obj)
    assert obj["spec"]["ports"][1] == {"port": 443}
    assert obj["spec"]["weights"] == {"a": [1], "b": [2]}


def test_preserve_unknown_fields_keeps_unknowns_but_prunes_known_subtrees() -> None:
    obj: dict[str, Any] = {
        "spec": {
            "config": {
                "anything": {"goes": [1, {"here": True}]},
                "known": {"a": "x", "b": "pruned"},
                "list": [{"b": "ok", "c": "pruned: a known property is pruned normally"}],
            },
            "extras": [{"b": "ok", "c": "kept: items of a preserving array preserve too"}],
        }
    }
    assert unknown_fields(WORKLOAD, obj) == ["spec.config.known.b", "spec.config.list[0].c"]
    prune(WORKLOAD, obj)
    config = obj["spec"]["config"]
    assert config["anything"] == {"goes": [1, {"here": True}]}
    assert config["known"] == {"a": "x"}
    assert config["list"] == [{"b": "ok"}]
    assert obj["spec"]["extras"] == [
        {"b": "ok", "c": "kept: items of a preserving array preserve too"}
    ]


def test_embedded_resource_allows_type_meta_and_checks_its_metadata() -> None:
    template = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}, "bogus": 1},
        "spec": {"x": "y", "z": 1},
        "status": {},
    }
    obj = {"spec": {"template": template}}
    assert unknown_fields(WORKLOAD, obj) == [
        "spec.template.metadata.bogus",
        "spec.template.spec.z",
        "spec.template.status",
    ]
    prune(WORKLOAD, obj)
    assert obj["spec"]["template"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}},
        "spec": {"x": "y"},
    }


def test_additional_properties_true_allows_keys_but_nothing_below_them() -> None:
    obj = {"spec": {"loose": {"scalar": 1, "nested": {"gone": 1}}}}
    assert unknown_fields(WORKLOAD, obj) == ["spec.loose.nested.gone"]
    prune(WORKLOAD, obj)
    assert obj == {"spec": {"loose": {"scalar": 1, "nested": {}}}}


def test_no_schema_allows_everything() -> None:
    obj = crontab(anything={"at": ["all"]})
    before = copy.deepcopy(obj)
    assert unknown_fields(None, obj) == []
    prune(None, obj)
    apply_defaults(None, obj)
    assert validate(None, obj) == []
    assert obj == before


# ---------------------------------------------------------------------------
# apply_defaults


def test_defaults_fill_array_items_and_are_deep_copies() -> None:
    schema = copy.deepcopy(ENDPOINT)
    schema["properties"]["spec"]["properties"]["ports"]["items"]["properties"]["meta"] = {
        "type": "object",
        "default": {"tags": ["x"]},
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    }
    obj = endpoint()
    obj["spec"]["ports"] = [{"port": 80}, {"port": 53, "protocol": "UDP"}]
    apply_defaults(schema, obj)
    ports = obj["spec"]["ports"]
    assert [p["protocol"] for p in ports] == ["TCP", "UDP"]
    assert ports[0]["meta"] == ports[1]["meta"] == {"tags": ["x"]}
    ports[0]["meta"]["tags"].append("mutated")
    assert ports[1]["meta"] == {"tags": ["x"]}
    assert schema["properties"]["spec"]["properties"]["ports"]["items"]["properties"]["meta"][
        "default"
    ] == {"tags": ["x"]}


def test_defaults_apply_top_down_into_defaulted_objects_and_maps() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "mode": {"type": "string", "default": "fast"},
                    "limits": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "default": {"max": 1},
                            "properties": {
                                "max": {"type": "integer"},
                                "unit": {"type": "string", "default": "m"},
                            },
                        },
                    },
                },
            }
        },
    }
    obj: dict[str, Any] = {}
    apply_defaults(schema, obj)
    assert obj == {"spec": {"mode": "fast"}}
    obj = {"spec": {"limits": {"cpu": None, "mem": {"max": 5}}}}
    apply_defaults(schema, obj)
    assert obj["spec"]["limits"] == {"cpu": {"max": 1, "unit": "m"}, "mem": {"max": 5, "unit": "m"}}


def test_defaulting_nullable_rules() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "default": "A"},
            "b": {"type": "string"},
            "c": {"type": "string", "nullable": True, "default": "C"},
            "d": {"type": "string", "nullable": True},
            "list": {"type": "array", "items": {"type": "string", "default": "item"}},
        },
    }
    obj: dict[str, Any] = {"a": None, "b": None, "c": None, "d": None, "list": ["x", None]}
    apply_defaults(schema, obj)
    assert obj == {"a": "A", "c": None, "d": None, "list": ["x", "item"]}


# ---------------------------------------------------------------------------
# validate: types


def test_valid_objects_have_no_causes() -> None:
    assert validate(CRONTAB, crontab()) == []
    obj = endpoint(
        tags=["a", "b"],
        weights={"w": [1, 2]},
        since="2024-02-29T12:30:00.5+01:00",
        day="2024-02-29",
        id="123e4567-e89b-12d3-a456-426614174000",
        ratio=0.5,
        step=10,
        maxSurge="25%",
        maxUnavailable=None,
        owner=None,
    )
    obj["spec"]["ports"].append({"port": 443.0})
    assert validate(ENDPOINT, obj) == []


def test_crontab_replicas_type_mismatch() -> None:
    assert validate(CRONTAB, crontab(replicas="string")) == [
        cause(
            "FieldValueTypeInvalid",
            "spec.replicas",
            'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
        )
    ]


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ({}, "object"),
        ([], "array"),
        (True, "boolean"),
        (1.5, "number"),
        ("1", "string"),
        (None, "null"),
    ],
)
def test_type_names_of_json_values(value: Any, got: str) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert validate(schema, {"n": value}) == [
        cause(
            "FieldValueTypeInvalid",
            "n",
            f'Invalid value: "{got}": n in body must be of type integer: "{got}"',
        )
    ]


def test_int_or_string_and_nullable() -> None:
    causes = validate(ENDPOINT, endpoint(maxSurge=True, owner=None, maxUnavailable=None))
    assert causes == [
        cause(
            "FieldValueTypeInvalid",
            "spec.maxSurge",
            'Invalid value: "boolean": spec.maxSurge in body must be of type integer,string: '
            '"boolean"',
        )
    ]
    causes = validate(ENDPOINT, endpoint(maxSurge=None, maxUnavailable=1.5))
    assert [c["message"] for c in causes] == [
        'Invalid value: "null": spec.maxSurge in body must be of type integer,string: "null"',
        'Invalid value: "number": spec.maxUnavailable in body must be of type integer,string: '
        '"number"',
    ]


def test_int32_format_type_errors_name_the_format() -> None:
    obj = endpoint()
    obj["spec"]["ports"] = [{"port": True}, {"port": 80.5}, {"port": "80"}]
    assert [(c["field"], c["message"]) for c in validate(ENDPOINT, obj)] == [
        (
            "spec.ports[0].port",
            'Invalid value: "": spec.ports[0].port in body must be of type int32: ""',
        ),
        (
            "spec.ports[1].port",
            'Invalid value: "float64": spec.ports[1].port in body must be of type int32: "float64"',
        ),
        (
            "spec.ports[2].port",
            'Invalid value: "string": spec.ports[2].port in body must be of type integer: "string"',
        ),
    ]


# ---------------------------------------------------------------------------
# validate: value constraints


def test_required_properties_at_every_level() -> None:
    obj = endpoint()
    obj["spec"]["ports"] = [{"port": 80}, {"name": "noport"}]
    assert validate(ENDPOINT, obj) == [
        cause("FieldValueRequired", "spec.ports[1].port", "Required value")
    ]
    assert validate(ENDPOINT, {"apiVersion": "example.com/v1", "kind": "Endpoint"}) == [
        cause("FieldValueRequired", "spec", "Required value")
    ]
    assert validate(ENDPOINT, {"spec": {}}) == [
        cause("FieldValueRequired", "spec.ports", "Required value")
    ]


def test_enum_strings_integers_and_null() -> None:
    obj = endpoint(weights={"w": [3, 4]})
    obj["spec"]["ports"][0]["protocol"] = "SCTP"
    assert validate(ENDPOINT, obj) == [
        cause(
            "FieldValueNotSupported",
            "spec.ports[0].protocol",
            'Unsupported value: "SCTP": supported values: "TCP", "UDP"',
        ),
        cause(
            "FieldValueNotSupported",
            "spec.weights.w[1]",
            'Unsupported value: 4: supported values: "1", "2", "3"',
        ),
    ]
    schema = {
        "type": "object",
        "properties": {"p": {"type": "string", "nullable": True, "enum": ["a"]}},
    }
    assert validate(schema, {"p": None}) == [
        cause("FieldValueNotSupported", "p", 'Unsupported value: null: supported values: "a"')
    ]


def test_type_mismatch_does_not_hide_enum_failure() -> None:
    obj = endpoint()
    obj["spec"]["ports"][0]["protocol"] = 6
    assert [c["message"] for c in validate(ENDPOINT, obj)] == [
        'Invalid value: "integer": spec.ports[0].protocol in body must be of type string: '
        '"integer"',
        'Unsupported value: 6: supported values: "TCP", "UDP"',
    ]


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        (0, "Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
        (11, "Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
    ],
)
def test_crontab_replicas_bounds(replicas: int, message: str) -> None:
    assert validate(CRONTAB, crontab(replicas=replicas)) == [
        cause("FieldValueInvalid", "spec.replicas", message)
    ]


def test_number_bounds_exclusive_and_multiple_of() -> None:
    causes = validate(ENDPOINT, endpoint(ratio=0.0, step=7))
    assert [c["message"] for c in causes] == [
        "Invalid value: 0: spec.ratio in body should be greater than 0",
        "Invalid value: 7: spec.step in body should be a multiple of 5",
    ]
    causes = validate(ENDPOINT, endpoint(ratio=2.5e6))
    assert [c["message"] for c in causes] == [
        "Invalid value: 2.5e+06: spec.ratio in body should be less than or equal to 1e+06"
    ]


def test_string_lengths_and_pattern() -> None:
    assert validate(CRONTAB, crontab(cronSpec="every minute")) == [
        cause(
            "FieldValueInvalid",
            "spec.cronSpec",
            'Invalid value: "every minute": spec.cronSpec in body should match '
            "'^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
        )
    ]
    obj = endpoint()
    obj["spec"]["ports"] = [{"name": "a-very-long-port-name", "port": 1}, {"name": "h", "port": 2}]
    assert validate(ENDPOINT, obj) == [
        cause("FieldValueTooLong", "spec.ports[0].name", "Too long: value is too long"),
        cause(
            "FieldValueInvalid",
            "spec.ports[1].name",
            'Invalid value: "h": spec.ports[1].name in body should be at least 2 chars long',
        ),
    ]


def test_min_and_max_items() -> None:
    assert validate(ENDPOINT, endpoint(ports=[])) == [
        cause(
            "FieldValueInvalid",
            "spec.ports",
            "Invalid value: 0: spec.ports in body should have at least 1 items",
        )
    ]
    ports = [{"port": p} for p in (1, 2, 3, 4)]
    assert validate(ENDPOINT, endpoint(ports=ports)) == [
        cause("FieldValueTooMany", "spec.ports", "Too many: 4: has too many items")
    ]


def test_unique_items() -> None:
    schema = {"type": "object", "properties": {"l": {"type": "array", "uniqueItems": True}}}
    assert validate(schema, {"l": [{"a": 1}, {"a": 1.0}, 1, True]}) == []
    assert validate(schema, {"l": [{"a": 1}, "x", {"a": 1}]}) == [
        cause(
            "FieldValueInvalid", "l", 'Invalid value: "": l in body shouldn\'t contain duplicates'
        )
    ]


@pytest.mark.parametrize(
    ("field", "value", "fmt"),
    [
        ("since", "yesterday", "date-time"),
        ("since", "2024-01-02T25:00:00Z", "date-time"),
        ("since", "2024-01-02T10:00:00", "date-time"),
        ("day", "2023-02-29", "date"),
        ("id", "not-a-uuid", "uuid"),
    ],
)
def test_string_formats(field: str, value: str, fmt: str) -> None:
    assert validate(ENDPOINT, endpoint(**{field: value})) == [
        cause(
            "FieldValueTypeInvalid",
            f"spec.{field}",
            f'Invalid value: "{value}": spec.{field} in body must be of type {fmt}: "{value}"',
        )
    ]


def test_unsupported_formats_are_ignored() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "format": "int32"}}}
    assert validate(schema, {"s": "abc"}) == []


# ---------------------------------------------------------------------------
# validate: list types and embedded resources


def test_list_type_set_and_map_duplicates() -> None:
    obj = endpoint(tags=["a", "b", "a", "a"], weights={"w": [1, 1]})
    obj["spec"]["ports"] = [{"port": 80}, {"port": 80, "name": "again"}, {"port": 81}]
    assert validate(ENDPOINT, obj) == [
        cause("FieldValueDuplicate", "spec.ports[1]", 'Duplicate value: {"port":80}'),
        cause("FieldValueDuplicate", "spec.tags[2]", 'Duplicate value: "a"'),
        cause("FieldValueDuplicate", "spec.weights[w][1]", "Duplicate value: 1"),
    ]


def test_list_type_map_items_must_be_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "l": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
                "items": {"x-kubernetes-preserve-unknown-fields": True},
            }
        },
    }
    assert validate(schema, {"l": [{}, {}]}) == [
        cause("FieldValueDuplicate", "l[1]", "Duplicate value: {}")
    ]
    assert validate(schema, {"l": [{"k": 1}, "x", 3]}) == [
        cause(
            "FieldValueInvalid",
            "l[1]",
            'Invalid value: "x": must be an object for an array of list-type map',
        )
    ]


def test_embedded_resource_type_meta() -> None:
    assert (
        validate(WORKLOAD, {"spec": {"template": {"apiVersion": "apps/v1", "kind": "Deployment"}}})
        == []
    )
    causes = validate(WORKLOAD, {"spec": {"template": {"apiVersion": "a/b/c", "kind": "Bad_Kind"}}})
    assert [c["field"] for c in causes] == ["spec.template.apiVersion", "spec.template.kind"]
    assert causes[0]["message"] == 'Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c'
    assert causes[1]["message"].startswith(
        'Invalid value: "Bad_Kind": may have mixed case, but should otherwise match: a DNS-1035 label'
    )
    assert validate(WORKLOAD, {"spec": {"template": {"kind": 5}}}) == [
        cause("FieldValueRequired", "spec.template.apiVersion", "Required value"),
        cause("FieldValueInvalid", "spec.template.kind", "Invalid value: 5: must be a string"),
    ]
