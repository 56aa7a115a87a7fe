"""Tests for the kinds registry's schema accessors (edgek.kinds) and its generator."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from edgek import kinds

ROOT = Path(__file__).resolve().parents[2]


def gen_kinds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_kinds", ROOT / "scripts" / "gen_kinds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Accessors


def test_field_markers() -> None:
    image = kinds.fields("core/v1.Container")["image"]
    assert (image.go, image.proto, image.optional, image.omitempty) == ("Image", 2, True, True)
    name = kinds.fields("core/v1.Container")["name"]
    assert not name.optional and not name.omitempty
    assert kinds.fields("core/v1.PodSpec")["nodeSelector"].map_type == "atomic"
    assert kinds.fields("core/v1.PersistentVolumeSpec")["claimRef"].struct_type == "granular"
    assert kinds.fields("core/v1.PodSpec")["containers"].struct_type is None


def test_struct_type() -> None:
    assert kinds.struct_type("meta/v1.LabelSelector") == "atomic"
    assert kinds.struct_type("core/v1.ObjectReference") == "atomic"
    assert kinds.struct_type("core/v1.PodSpec") == "granular"
    assert kinds.struct_type("no/v1.Such") == "granular"


def test_members_keep_embedded_structs_that_fields_flatten() -> None:
    members = kinds.members("core/v1.SecretKeySelector")
    embedded = [m for m in members if m.inline]
    assert [(m.type, m.json, m.go, m.proto) for m in embedded] == [
        ("core/v1.LocalObjectReference", "", "LocalObjectReference", 1)
    ]
    assert set(kinds.fields("core/v1.SecretKeySelector")) == {"name", "key", "optional"}
    assert "name" not in {m.json for m in members}
    # ObjectMeta has no Go name in the facts: the type's name stands in.
    assert kinds.fields("apps/v1.Deployment")["metadata"].go == "ObjectMeta"


def test_type_meta_and_custom_json() -> None:
    assert kinds.has_type_meta("apps/v1.Deployment")
    assert not kinds.has_type_meta("apps/v1.DeploymentSpec")
    assert "apiVersion" not in kinds.fields("apps/v1.Deployment")
    assert kinds.custom_json("apiextensions/v1.JSONSchemaPropsOrBool")
    assert kinds.custom_json("runtime.RawExtension")
    assert not kinds.custom_json("apps/v1.Deployment")
    assert not kinds.custom_json("apiextensions/v1.CustomResourceSubresourceStatus")


def test_empty_struct_resolves_as_struct() -> None:
    status = kinds.fields("apiextensions/v1.CustomResourceSubresources")["status"]
    assert kinds.resolve(status.type) == kinds.TypeRef(
        "struct", "apiextensions/v1.CustomResourceSubresourceStatus"
    )
    assert kinds.fields("apiextensions/v1.CustomResourceSubresourceStatus") == {}


def test_body_types() -> None:
    assert kinds.body_types() == {
        ("autoscaling/v1", "Scale"): "autoscaling/v1.Scale",
        ("policy/v1", "Eviction"): "policy/v1.Eviction",
        ("v1", "Binding"): "core/v1.Binding",
        ("authentication.k8s.io/v1", "TokenRequest"): "authentication/v1.TokenRequest",
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): (
            "authorization/v1.SelfSubjectAccessReview"
        ),
    }
    spec = kinds.fields("authorization/v1.SelfSubjectAccessReviewSpec")
    assert kinds.resolve(spec["resourceAttributes"].type).name == (
        "authorization/v1.ResourceAttributes"
    )


# ---------------------------------------------------------------------------
# Generator


EMPTY = "apiextensions/v1.CustomResourceSubresourceStatus"  # an empty struct upstream


def small_facts() -> dict[str, Any]:
    """Facts whose served kinds all use ``x/v1.Thing``; the extra types are empty structs."""
    gen = gen_kinds()
    types: dict[str, Any] = {name: {"fields": []} for name in gen.EXTRA_TYPES}
    types["x/v1.Thing"] = {
        "fields": [
            {"json": None, "go": None, "type": "meta/v1.TypeMeta", "inline": True},
            {"json": "ref", "go": "Ref", "type": "*x/v1.Ref", "proto": 1, "protoWire": "bytes"},
            {"json": "status", "go": "Status", "type": EMPTY, "proto": 2},
        ],
        "markers": ["+genclient", "+k8s:supportsSubresource=/status"],
    }
    types["x/v1.Ref"] = {
        "fields": [{"json": "name", "go": "Name", "type": "string", "protoWire": "bytes"}],
        "markers": ["+structType=atomic"],
    }
    types["x/v1.Unused"] = {"fields": []}
    return {
        "sources": {},
        "special": {},
        "kinds": [{"group": g, "resource": r, "type": "x/v1.Thing"} for g, r in gen.SERVED],
        "types": types,
    }


def test_generator_keeps_reachable_types_compactly() -> None:
    gen = gen_kinds()
    out = gen.generate(small_facts())
    types = out["types"]
    assert "x/v1.Unused" not in types
    assert types["x/v1.Ref"] == {
        "fields": [{"json": "name", "go": "Name", "type": "string"}],
        "structType": "atomic",
    }
    assert types["x/v1.Thing"]["fields"][1] == {
        "json": "ref",
        "go": "Ref",
        "type": "*x/v1.Ref",
        "proto": 1,
    }
    assert "markers" not in types["x/v1.Thing"]
    assert types[EMPTY] == {"fields": []}
    assert {(b["apiVersion"], b["kind"]) for b in out["bodies"]} == {
        (av, name.rpartition(".")[2]) for name, av in gen.EXTRA_TYPES.items() if av
    }


def test_generator_rejects_missing_extra_types() -> None:
    facts = small_facts()
    gen = gen_kinds()
    del facts["types"]["authentication/v1.TokenRequest"]
    with pytest.raises(SystemExit, match=r"authentication/v1\.TokenRequest"):
        gen.generate(facts)


def test_data_file_is_generated_from_the_committed_facts() -> None:
    """edgek/kinds_data.json is byte for byte what scripts/gen_kinds.py writes from
    scripts/k8s-api-facts.json (re-run the script after changing either)."""
    shipped = (ROOT / "edgek" / "kinds_data.json").read_text()
    assert gen_kinds().render() == shipped
