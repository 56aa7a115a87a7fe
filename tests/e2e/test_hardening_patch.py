"""Issue 14, item 2: patches cannot amplify a small request into unbounded work — JSON
patch copies and operation counts are capped as upstream caps them, YAML aliases cannot
expand a document, and the server's memory stays put."""

from __future__ import annotations

import base64
from typing import Any

from tests.e2e.hardening import assert_alive, crd, create_crd, rss_bytes, timed
from tests.e2e.test_bad_input import Api, Response, assert_status
from tests.helpers import ServerProcess

JSON_PATCH = "application/json-patch+json"
COPY_LIMIT = 3 * 1024 * 1024


def _configmap(api: Api, ns: str, annotations: dict[str, str]) -> str:
    path = f"/api/v1/namespaces/{ns}/configmaps"
    body = {"metadata": {"name": "amp", "annotations": annotations}, "data": {"k": "v"}}
    api.ok("POST", path, body)
    return f"{path}/amp"


def test_copy_amplification_is_refused(hard_api: Api, hard_ns: str, capped: ServerProcess) -> None:
    """25 copies of the annotations into themselves: 2 KB of patch, 2**25 times the data."""
    path = _configmap(hard_api, hard_ns, {"a": "x" * 1000})
    ops = [
        {"op": "copy", "from": "/metadata/annotations", "path": f"/metadata/annotations/c{i}"}
        for i in range(25)
    ]
    before = rss_bytes(capped)
    resp = timed(hard_api, "PATCH", path, ops, content_type=JSON_PATCH)
    st = assert_status(resp, 422, "Invalid")
    assert st["message"].startswith(
        "Unable to complete the copy, the accumulated size increase of copy is "
    )
    assert st["message"].endswith(f", exceeding the limit {COPY_LIMIT}")
    assert rss_bytes(capped) - before < 200 * 1024 * 1024
    stored = hard_api.ok("GET", path)
    assert stored["metadata"]["annotations"] == {"a": "x" * 1000}
    assert_alive(hard_api)


def test_copies_within_the_limit_apply(hard_api: Api, hard_ns: str) -> None:
    path = _configmap(hard_api, hard_ns, {"a": "x"})
    ops = [{"op": "copy", "from": "/metadata/annotations/a", "path": "/data/copied"}]
    resp = timed(hard_api, "PATCH", path, ops, content_type=JSON_PATCH)
    assert resp.status == 200, resp.body[:500]
    assert resp.json()["data"] == {"k": "v", "copied": "x"}


def test_too_many_operations(hard_api: Api, hard_ns: str) -> None:
    path = _configmap(hard_api, hard_ns, {})
    ops = [{"op": "test", "path": "/data/k", "value": "v"}] * 10_001
    resp = timed(hard_api, "PATCH", path, ops, content_type=JSON_PATCH)
    assert_status(
        resp,
        413,
        "RequestEntityTooLarge",
        "The allowed maximum operations in a JSON patch is 10000, got 10001",
    )
    resp = timed(hard_api, "PATCH", path, ops[:10_000], content_type=JSON_PATCH)
    assert resp.status == 200, resp.body[:500]


def _laughs(levels: int) -> str:
    """A YAML "billion laughs": each level a list of nine aliases of the one below."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines)


def test_yaml_alias_bomb_in_apply(hard_api: Api, hard_ns: str, capped: ServerProcess) -> None:
    """An apply patch whose known field (a ConfigMap's data) is a billion laughs."""
    bomb = _laughs(9).replace("\n", "\n  ")
    body = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n"
        f"anchors:\n  {bomb}\ndata:\n  k: *a8\n"
    )
    before = rss_bytes(capped)
    resp = timed(
        hard_api,
        "PATCH",
        f"/api/v1/namespaces/{hard_ns}/configmaps/bomb?fieldManager=t",
        body.encode(),
        content_type="application/apply-patch+yaml",
    )
    st = assert_status(resp, 400, "BadRequest")
    assert "document contains excessive aliasing" in st["message"]
    assert rss_bytes(capped) - before < 200 * 1024 * 1024
    assert_alive(hard_api)


def _post_yaml(api: Api, ns: str, body: str) -> Response:
    path = f"/api/v1/namespaces/{ns}/configmaps"
    return timed(api, "POST", path, body.encode(), content_type="application/yaml")


def test_yaml_alias_bomb_in_create(hard_api: Api, hard_ns: str) -> None:
    body = f"{_laughs(9)}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n"
    resp = _post_yaml(hard_api, hard_ns, body)
    st = assert_status(resp, 400, "BadRequest")
    assert "document contains excessive aliasing" in st["message"]


def test_yaml_self_containing_anchor(hard_api: Api, hard_ns: str) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: loop\n  labels: &l {a: *l}\n"
    resp = _post_yaml(hard_api, hard_ns, body)
    assert_status(resp, 400, "BadRequest")


def test_yaml_aliases_within_bounds_decode(hard_api: Api, hard_ns: str) -> None:
    """Ordinary anchors still work, and every aliased place gets its own copy."""
    body = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: anchors\n"
        "  labels: &l {app: web}\n  annotations: *l\ndata: {k: v}\n"
    )
    resp = _post_yaml(hard_api, hard_ns, body)
    assert resp.status == 201, resp.body[:500]
    md = resp.json()["metadata"]
    assert md["labels"] == md["annotations"] == {"app": "web"}


def test_continue_token_cannot_recurse(hard_api: Api, hard_ns: str) -> None:
    """A continue token is base64 JSON: a deeply nested one is a 400, not a 500."""
    token = base64.urlsafe_b64encode(b"[" * 3000).decode()
    resp = timed(hard_api, "GET", f"/api/v1/namespaces/{hard_ns}/configmaps?continue={token}")
    assert_status(resp, 400, "BadRequest")


def test_crd_pattern_cannot_backtrack(hard_api: Api, hard_ns: str) -> None:
    """A schema pattern with nested quantifiers against a long near-match: RE2 (upstream's
    engine) answers in linear time where a backtracking engine takes exponential time."""
    schema = {"type": "object", "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}}}
    path = create_crd(hard_api, crd("hardening.example.com", "words", "Word", schema), hard_ns)
    word: dict[str, Any] = {
        "apiVersion": "hardening.example.com/v1",
        "kind": "Word",
        "metadata": {"name": "w"},
        "spec": {"word": "a" * 40 + "!"},
    }
    resp = timed(hard_api, "POST", path, word)
    st = assert_status(resp, 422, "Invalid")
    assert "spec.word in body should match '^(a+)+$'" in st["message"]
    word["spec"]["word"] = "a" * 100_000
    assert timed(hard_api, "POST", path, word).status == 201
    assert_alive(hard_api)
