"""Node matching helpers: tolerations, node selector terms, nodeSelector + required affinity."""

from __future__ import annotations

from typing import Any

import pytest

from edgek.nodematch import (
    matches_node_selector_terms,
    pod_matches_node,
    tolerates,
    untolerated_taints,
)


def node(name: str = "n1", labels: dict[str, str] | None = None, taints: Any = None) -> dict:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints} if taints else {},
    }


def expr(key: str, op: str, *values: str) -> dict:
    out: dict[str, Any] = {"key": key, "operator": op}
    if values:
        out["values"] = list(values)
    return out


NO_SCHEDULE = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "gpu"}, True),
        ({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "value": "cpu"}, False),
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"key": "other", "operator": "Exists"}, False),
        ({"operator": "Exists"}, True),
        ({"operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "operator": "Bogus", "value": "gpu"}, False),
    ],
)
def test_tolerates(toleration: dict, expected: bool) -> None:
    assert tolerates([toleration], NO_SCHEDULE) is expected


def test_tolerates_none_and_any_of_many() -> None:
    assert not tolerates(None, NO_SCHEDULE)
    assert not tolerates([], NO_SCHEDULE)
    assert tolerates([{"key": "x", "operator": "Exists"}, {"operator": "Exists"}], NO_SCHEDULE)


def test_untolerated_taints_filters_by_effect_and_toleration() -> None:
    prefer = {"key": "soft", "effect": "PreferNoSchedule"}
    execute = {"key": "gone", "effect": "NoExecute"}
    n = node(taints=[NO_SCHEDULE, prefer, execute])
    both = ("NoSchedule", "NoExecute")
    assert untolerated_taints(n, None, both) == [NO_SCHEDULE, execute]
    assert untolerated_taints(n, [{"key": "gone", "operator": "Exists"}], both) == [NO_SCHEDULE]
    assert untolerated_taints(n, None, ("PreferNoSchedule",)) == [prefer]
    assert untolerated_taints(node(), None, both) == []


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (expr("zone", "In", "a", "b"), True),
        (expr("zone", "In", "b"), False),
        (expr("zone", "NotIn", "b"), True),
        (expr("zone", "NotIn", "a"), False),
        (expr("missing", "NotIn", "a"), True),
        (expr("zone", "Exists"), True),
        (expr("missing", "Exists"), False),
        (expr("missing", "DoesNotExist"), True),
        (expr("zone", "DoesNotExist"), False),
        (expr("cores", "Gt", "4"), True),
        (expr("cores", "Gt", "8"), False),
        (expr("cores", "Lt", "9"), True),
        (expr("cores", "Lt", "8"), False),
        (expr("zone", "Gt", "1"), False),  # label value not an integer
        (expr("missing", "Lt", "1"), False),
        # invalid requirements make the term match nothing
        (expr("zone", "In"), False),
        (expr("zone", "Exists", "a"), False),
        (expr("cores", "Gt", "x"), False),
        (expr("cores", "Gt", "1", "2"), False),
        (expr("zone", "Like", "a"), False),
    ],
)
def test_match_expressions(requirement: dict, expected: bool) -> None:
    n = node(labels={"zone": "a", "cores": "8"})
    assert matches_node_selector_terms(n, [{"matchExpressions": [requirement]}]) is expected


def test_match_fields_on_name() -> None:
    n = node("worker-1")
    assert matches_node_selector_terms(
        n, [{"matchFields": [expr("metadata.name", "In", "worker-1")]}]
    )
    assert not matches_node_selector_terms(
        n, [{"matchFields": [expr("metadata.name", "In", "worker-2")]}]
    )
    assert matches_node_selector_terms(
        n, [{"matchFields": [expr("metadata.name", "NotIn", "worker-2")]}]
    )
    # matchFields takes exactly one value
    assert not matches_node_selector_terms(
        n, [{"matchFields": [expr("metadata.name", "In", "worker-1", "worker-2")]}]
    )


def test_terms_are_ored_and_requirements_anded() -> None:
    n = node("n1", {"zone": "a", "disk": "ssd"})
    both = {"matchExpressions": [expr("zone", "In", "a"), expr("disk", "In", "hdd")]}
    assert not matches_node_selector_terms(n, [both])
    other = {"matchExpressions": [expr("disk", "In", "ssd")]}
    assert matches_node_selector_terms(n, [both, other])
    mixed = {
        "matchExpressions": [expr("zone", "In", "a")],
        "matchFields": [expr("metadata.name", "In", "n2")],
    }
    assert not matches_node_selector_terms(n, [mixed])


def test_empty_terms_match_nothing() -> None:
    n = node(labels={"zone": "a"})
    assert not matches_node_selector_terms(n, [])
    assert not matches_node_selector_terms(n, [{}])
    assert not matches_node_selector_terms(n, [{"matchExpressions": []}])
    # an empty term does not prevent another term from matching
    assert matches_node_selector_terms(n, [{}, {"matchExpressions": [expr("zone", "Exists")]}])


def pod(selector: dict | None = None, terms: list | None = None) -> dict:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}]}
    if selector is not None:
        spec["nodeSelector"] = selector
    if terms is not None:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }
        }
    return {"metadata": {"name": "p"}, "spec": spec}


def test_pod_matches_node() -> None:
    n = node(labels={"zone": "a", "disk": "ssd"})
    assert pod_matches_node(pod(), n)
    assert pod_matches_node(pod({"zone": "a"}), n)
    assert not pod_matches_node(pod({"zone": "b"}), n)
    assert not pod_matches_node(pod({"gpu": ""}), n)
    in_a = [{"matchExpressions": [expr("zone", "In", "a")]}]
    in_b = [{"matchExpressions": [expr("zone", "In", "b")]}]
    assert pod_matches_node(pod(terms=in_a), n)
    assert not pod_matches_node(pod(terms=in_b), n)
    # nodeSelector AND affinity
    assert not pod_matches_node(pod({"disk": "hdd"}, in_a), n)
    assert pod_matches_node(pod({"disk": "ssd"}, in_a), n)
    # a required affinity with no terms matches nothing
    assert not pod_matches_node(pod(terms=[]), n)
