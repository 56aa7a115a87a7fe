"""Issue 14, item 9 (API level): what upstream refuses is refused — NaN and a byte-order mark
in JSON, unknown resourceVersionMatch values, ``force`` on non-apply patches, a negative
resourceVersion on a watch — and a watch from a future resourceVersion waits for it, then
answers 504 as upstream's watch cache does."""

from __future__ import annotations

import threading
import time

import pytest

from tests.e2e.hardening import timed
from tests.e2e.test_bad_input import Api, assert_status

#: Upstream's watch cache waits this long for a future resourceVersion (blockTimeout).
FRESH_WAIT = 3.0


@pytest.mark.parametrize(
    ("body", "char"),
    [
        (b'{"metadata":{"name":"n"},"unknownField":NaN}', "N"),
        (b'{"metadata":{"name":"n"},"data":{"k":"v"},"x":Infinity}', "I"),
        (b'\xef\xbb\xbf{"metadata":{"name":"n"}}', "\u00ef"),
    ],
    ids=["nan", "infinity", "bom"],
)
def test_non_json_is_refused(hard_api: Api, hard_ns: str, body: bytes, char: str) -> None:
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/configmaps", body)
    st = assert_status(resp, 400, "BadRequest")
    assert f"invalid character '{char}' looking for beginning of value" in st["message"]
    missing = hard_api.request("GET", f"/api/v1/namespaces/{hard_ns}/configmaps/n")
    assert missing.status == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "resourceVersion=1&resourceVersionMatch=Bogus",
            'resourceVersionMatch: Unsupported value: "Bogus": supported values: '
            '"Exact", "NotOlderThan", ""',
        ),
        (
            "resourceVersionMatch=NotOlderThan",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
            "resourceVersion is provided",
        ),
        (
            "resourceVersion=0&resourceVersionMatch=Exact",
            'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for '
            'resourceVersion "0"',
        ),
        (
            "sendInitialEvents=true",
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
        ),
    ],
)
def test_list_resource_version_match(hard_api: Api, hard_ns: str, query: str, message: str) -> None:
    resp = timed(hard_api, "GET", f"/api/v1/namespaces/{hard_ns}/configmaps?{query}")
    assert_status(resp, 422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {message}')


def test_watch_resource_version_match_without_initial_events(hard_api: Api, hard_ns: str) -> None:
    resp = timed(
        hard_api,
        "GET",
        f"/api/v1/namespaces/{hard_ns}/configmaps?watch=1&resourceVersionMatch=Bogus",
    )
    st = assert_status(resp, 422, "Invalid")
    fields = {c["message"] for c in st["details"]["causes"]}
    assert fields == {
        "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents "
        "is provided",
        'Unsupported value: "Bogus": supported values: "NotOlderThan"',
    }


@pytest.mark.parametrize(
    "content_type",
    [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
    ],
)
@pytest.mark.parametrize("force", ["true", "false"])
def test_force_on_non_apply_patch(
    hard_api: Api, hard_ns: str, content_type: str, force: str
) -> None:
    path = f"/api/v1/namespaces/{hard_ns}/configmaps"
    hard_api.ok("POST", path, {"metadata": {"name": "f"}, "data": {"k": "v"}})
    patch: object = (
        [{"op": "replace", "path": "/data/k", "value": "w"}]
        if content_type == "application/json-patch+json"
        else {"data": {"k": "w"}}
    )
    resp = timed(hard_api, "PATCH", f"{path}/f?force={force}", patch, content_type=content_type)
    assert_status(
        resp,
        422,
        "Invalid",
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for '
        "non-apply patch",
    )
    assert hard_api.ok("GET", f"{path}/f")["data"] == {"k": "v"}


def test_force_on_apply_is_allowed(hard_api: Api, hard_ns: str) -> None:
    resp = timed(
        hard_api,
        "PATCH",
        f"/api/v1/namespaces/{hard_ns}/configmaps/ap?fieldManager=t&force=true",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ap\ndata:\n  k: v\n",
        content_type="application/apply-patch+yaml",
    )
    assert resp.status == 201, resp.body[:500]


def test_watch_negative_resource_version_like_list(hard_api: Api, hard_ns: str) -> None:
    base = f"/api/v1/namespaces/{hard_ns}/configmaps?resourceVersion=-1"
    listed = assert_status(timed(hard_api, "GET", base), 400, "BadRequest")
    watched = assert_status(timed(hard_api, "GET", base + "&watch=1"), 400, "BadRequest")
    assert watched["message"] == listed["message"]


def _current_revision(api: Api, ns: str) -> int:
    return int(api.ok("GET", f"/api/v1/namespaces/{ns}/configmaps")["metadata"]["resourceVersion"])


def test_watch_from_future_resource_version(hard_api: Api, hard_ns: str) -> None:
    future = _current_revision(hard_api, hard_ns) + 1000
    start = time.monotonic()
    resp = hard_api.request(
        "GET", f"/api/v1/namespaces/{hard_ns}/configmaps?watch=1&resourceVersion={future}"
    )
    took = time.monotonic() - start
    st = assert_status(resp, 504, "Timeout")
    assert st["message"].startswith(f"Too large resource version: {future}, current: ")
    assert st["details"]["retryAfterSeconds"] == 1
    assert FRESH_WAIT - 0.2 <= took < FRESH_WAIT + 2


def test_watch_from_resource_version_reached_while_waiting(hard_api: Api, hard_ns: str) -> None:
    """The store reaches the revision within the wait: the watch then streams from it."""
    path = f"/api/v1/namespaces/{hard_ns}/configmaps"
    rv = _current_revision(hard_api, hard_ns)

    def write_soon() -> None:
        time.sleep(0.5)
        hard_api.ok("POST", path, {"metadata": {"name": "soon"}})
        hard_api.ok("POST", path, {"metadata": {"name": "later"}})

    writer = threading.Thread(target=write_soon)
    writer.start()
    try:
        resp = hard_api.request("GET", f"{path}?watch=1&resourceVersion={rv + 1}&timeoutSeconds=2")
    finally:
        writer.join()
    assert resp.status == 200, resp.body[:500]
    names = [line for line in resp.body.splitlines() if b'"later"' in line]
    assert names, resp.body[:1000]
