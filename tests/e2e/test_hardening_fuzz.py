"""Issue 14: a property test throwing malformed and hostile bodies, patches and query strings
at a real server (under an address-space cap), for every verb and a sample of kinds.

Each request must be answered without a 500 (a 500 is always a server bug) and within a
second (a watch: within its timeout plus the watch cache's wait for a future
resourceVersion); afterwards the server must still answer ``/livez`` and its resident memory
must not have grown past a bound.

CI runs a fixed seed with a bounded number of examples. A longer run, e.g. 5,000 examples
from another seed::

    EDGEK_FUZZ_EXAMPLES=5000 EDGEK_FUZZ_SEED=7 python -m pytest -q \\
        tests/e2e/test_hardening_fuzz.py
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.e2e.hardening import MAX_SECONDS, assert_alive, pod, rss_bytes
from tests.e2e.test_bad_input import Api
from tests.helpers import ServerProcess

EXAMPLES = int(os.environ.get("EDGEK_FUZZ_EXAMPLES", "250"))
SEED = int(os.environ.get("EDGEK_FUZZ_SEED", "20261208"))
#: How much the server's resident memory may grow over the whole run.
RSS_GROWTH = 300 * 1024 * 1024
#: A watch runs for its timeoutSeconds (1 here) plus up to 3 s waiting for a future revision.
WATCH_SECONDS = 5.0
NS = "fuzz"


@dataclass(frozen=True)
class Target:
    """A kind the fuzzer aims at: its collection path and a valid object of it."""

    collection: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def _deployment() -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


TARGETS = [
    Target(
        f"/api/v1/namespaces/{NS}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}},
    ),
    Target(
        f"/api/v1/namespaces/{NS}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}},
    ),
    Target(f"/api/v1/namespaces/{NS}/pods", {**pod("p"), "apiVersion": "v1", "kind": "Pod"}),
    Target(f"/apis/apps/v1/namespaces/{NS}/deployments", _deployment()),
    Target(
        f"/api/v1/namespaces/{NS}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc"},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}},
        },
    ),
    Target(
        f"/api/v1/namespaces/{NS}/resourcequotas",
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "q"},
            "spec": {"hard": {"pods": "100", "requests.cpu": "1e6"}},
        },
    ),
    Target(
        "/api/v1/nodes",
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "fuzz-node"}},
    ),
    Target(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    ),
]

# -- values ----------------------------------------------------------------------------------

HOSTILE_NUMBERS = [2**63, -(2**63) - 1, 2**64, 10**30, 2**31, -1, 0, 1.5, 1e308]
HOSTILE_STRINGS = [
    "1e999999999",
    "1e-999999999",
    "1e99999999999999999999",
    "8Ei",
    "1.5.5",
    "Ki",
    "-",
    "9" * 5000,
    "a" * 70_000,
    "$patch",
    "${x}",
    "\u0000",
    "\ufeff",
    "(((((((((((((((((((((a*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(HOSTILE_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["$patch", "name"]), children, max_size=4
        ),
    ),
    max_leaves=12,
)
FIELD_PATHS = [
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("metadata", "finalizers"),
    ("metadata", "ownerReferences"),
    ("metadata", "resourceVersion"),
    ("apiVersion",),
    ("kind",),
    ("data",),
    ("spec",),
    ("spec", "replicas"),
    ("spec", "containers"),
    ("spec", "activeDeadlineSeconds"),
    ("spec", "selector"),
    ("spec", "hard"),
    ("spec", "template", "spec", "containers"),
    ("rules",),
    ("status",),
    ("unknownField",),
]


@st.composite
def mutated_object(draw: st.DrawFn, target: Target) -> bytes:
    """The target's valid object with a few fields set to hostile values."""
    obj = json.loads(json.dumps(target.body))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(FIELD_PATHS))
        node = obj
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = draw(json_values)
    return json.dumps(obj).encode()


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def malformed_json(draw: st.DrawFn, target: Target) -> bytes:
    """Bytes that are not quite a valid object of the kind."""
    valid = json.dumps(target.body).encode()
    choice = draw(st.integers(0, 7))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return valid[: draw(st.integers(0, len(valid)))]
    if choice == 2:
        depth = draw(st.sampled_from([150, 199, 200, 201, 1000, 1025, 20_000]))
        return _nested(depth, draw(st.sampled_from(["array", "object"])))
    if choice == 3:
        constant = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        return valid[:-1] + b',"unknownField":' + constant + b"}"
    if choice == 4:
        return b"\xef\xbb\xbf" + valid
    if choice == 5:
        escape = draw(st.sampled_from([b"\\ud800", b"\\udfff", b"\\ud83d\\ude00", b"\\u0000"]))
        return valid.replace(b'"v"', b'"' + escape + b'"', 1).replace(
            b'"cm"', b'"' + escape + b'"', 1
        )
    if choice == 6:
        number = str(draw(st.sampled_from(HOSTILE_NUMBERS))).encode()
        return valid[:-1] + b',"spec":{"activeDeadlineSeconds":' + number + b"}}"
    return valid.replace(b'"apiVersion": "', b'"apiVersion": 5, "x": "', 1)


@st.composite
def hostile_yaml(draw: st.DrawFn, target: Target) -> bytes:
    """YAML: alias bombs, self-referencing anchors, deep nesting, merge keys, values JSON
    does not have."""
    choice = draw(st.integers(0, 4))
    head = f"apiVersion: {target.body['apiVersion']}\nkind: {target.body['kind']}\n"
    head += f"metadata:\n  name: {target.name}\n"
    if choice == 0:
        levels = draw(st.integers(2, 12))
        lines = ['a0: &a0 ["l","l","l","l","l","l","l","l","l"]']
        lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
        field = draw(st.sampled_from(["data", "spec", "metadata2", "x"]))
        return (head + "\n".join(lines) + f"\n{field}: {{k: *a{levels - 1}}}\n").encode()
    if choice == 1:
        return (head + "data: &d {k: *d}\n").encode()
    if choice == 2:
        depth = draw(st.sampled_from([150, 201, 2000]))
        return head.encode() + b"data: " + _nested(depth, "array") + b"\n"
    if choice == 3:
        field = draw(st.sampled_from(["data", "metadata", "spec", "x"]))
        value = draw(
            st.sampled_from(
                [
                    "{1: a, true: b, null: c, 1.5: d}",
                    "!!set {a, b}",
                    "{k: !!binary aGVsbG8=}",
                    "{k: !!timestamp 2001-12-14}",
                    "{k: .nan}",
                    "[.inf, -.inf]",
                    "{[a]: b}",
                    "!!python/object:os.system {}",
                ]
            )
        )
        return (head + f"{field}: {value}\n").encode()
    merges = ",".join(["*m"] * draw(st.integers(1, 50)))
    return (head + f"m: &m {{a: 1, b: 2}}\nlabels: {{<<: [{merges}]}}\n").encode()


POINTERS = [
    "",
    "/",
    "/metadata",
    "/metadata/annotations",
    "/metadata/annotations/x",
    "/metadata/labels/a~1b",
    "/metadata/finalizers/-",
    "/data",
    "/data/k",
    "/spec",
    "/spec/containers/0",
    "/spec/containers/-",
    "/spec/containers/99999999999999999999",
    "/a~2",
    "x",
]


@st.composite
def json_patch(draw: st.DrawFn) -> bytes:
    """A JSON patch: random operations, or many copies of a value into itself."""
    if draw(st.booleans()):
        src = draw(st.sampled_from(["/metadata", "/metadata/annotations", "/data", "/spec"]))
        count = draw(st.sampled_from([5, 25, 10_001]))
        ops = [{"op": "copy", "from": src, "path": f"{src}/c{i}"} for i in range(count)]
        return json.dumps(ops).encode()
    op = st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"])},
        optional={
            "path": st.sampled_from(POINTERS) | json_values,
            "from": st.sampled_from(POINTERS),
            "value": json_values,
        },
    )
    return json.dumps(draw(st.lists(op, max_size=6))).encode()


DIRECTIVES = [
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$deleteFromPrimitiveList/finalizers",
    "$bogus",
]


@st.composite
def merge_patch(draw: st.DrawFn, target: Target) -> bytes:
    """A merge or strategic merge patch with directives in random places."""
    patch = json.loads(draw(mutated_object(target)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(FIELD_PATHS))[:-1]
        node = patch
        for key in path:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        directive = draw(st.sampled_from(DIRECTIVES))
        node[directive] = draw(
            st.sampled_from(["replace", "delete", "merge", "x"]) | st.lists(json_values, max_size=3)
        )
    return json.dumps(patch).encode()


SELECTOR_ALPHABET = "abc=!,() \t-_.~/*?^$[]{}|\\notin"
query_values = st.one_of(
    st.text(alphabet=SELECTOR_ALPHABET, max_size=40),
    st.sampled_from(["", "-1", "0", "1", "99999999999999999999999", "1e9", "x", " 1", "1_0"]),
    st.text(alphabet="a(", min_size=500, max_size=2000),
)
QUERY_KEYS = [
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "fieldValidation",
    "dryRun",
    "fieldManager",
    "force",
    "propagationPolicy",
    "gracePeriodSeconds",
    "orphanDependents",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "includeObject",
]


@st.composite
def query(draw: st.DrawFn) -> str:
    pairs = draw(st.dictionaries(st.sampled_from(QUERY_KEYS), query_values, max_size=4))
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in pairs.items())


@dataclass(frozen=True)
class Call:
    """One request of the fuzzer."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    watch: bool = False


@st.composite
def calls(draw: st.DrawFn) -> Call:
    target = draw(st.sampled_from(TARGETS))
    name = draw(st.sampled_from([target.name, "missing", "UPPER", "a" * 300]))
    item = f"{target.collection}/{quote(name)}"
    q = draw(query())
    verb = draw(
        st.sampled_from(
            ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
        )
    )
    if verb in ("get", "list", "watch", "deletecollection"):
        path = item if verb == "get" else target.collection
        if verb == "watch":
            q = f"watch=1&timeoutSeconds=1&{q}"
        method = "DELETE" if verb == "deletecollection" else "GET"
        return Call(method, f"{path}?{q}", None, "", watch=verb == "watch")
    if verb == "delete":
        body = draw(st.none() | malformed_json(target) | mutated_object(target))
        return Call("DELETE", f"{item}?{q}", body, "application/json")
    if verb == "patch":
        content_type = draw(
            st.sampled_from(
                [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                    "application/apply-patch+yaml",
                ]
            )
        )
        if content_type == "application/json-patch+json":
            body = draw(json_patch() | malformed_json(target))
        elif content_type == "application/apply-patch+yaml":
            body = draw(hostile_yaml(target) | mutated_object(target) | malformed_json(target))
            q = f"fieldManager=fuzz&{q}"
        else:
            body = draw(merge_patch(target) | malformed_json(target))
        return Call("PATCH", f"{item}?{q}", body, content_type)
    content_type = draw(st.sampled_from(["application/json", "application/yaml"]))
    if content_type == "application/yaml":
        body = draw(hostile_yaml(target) | mutated_object(target))
    else:
        body = draw(mutated_object(target) | malformed_json(target))
    if verb == "create":
        return Call("POST", f"{target.collection}?{q}", body, content_type)
    return Call("PUT", f"{item}?{q}", body, content_type)


# -- the test --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_ns(hard_api: Api) -> str:
    """The fuzzed namespace, holding one valid object of every target kind."""
    hard_api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    for target in TARGETS:
        hard_api.ok("POST", target.collection, target.body)
    return NS


def test_hostile_requests(hard_api: Api, capped: ServerProcess, fuzz_ns: str) -> None:
    baseline = rss_bytes(capped)

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(call=calls())
    def answer_sanely(call: Call) -> None:
        start = time.monotonic()
        resp = hard_api.request(call.method, call.path, call.body, content_type=call.content_type)
        took = time.monotonic() - start
        assert resp.status != 500, (call, resp.body[:1000])
        assert resp.status < 500 or resp.status == 504, (call, resp.status, resp.body[:500])
        limit = WATCH_SECONDS if call.watch else MAX_SECONDS
        assert took < limit, (call, f"{took:.2f} s")

    answer_sanely()
    assert_alive(hard_api)
    assert rss_bytes(capped) - baseline < RSS_GROWTH
