"""Issue 14, item 1: quantities are parsed as upstream's resource.Quantity does, in time that
does not grow with the exponent, in every field that holds one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.hardening import assert_alive, pod, rss_bytes, timed
from tests.e2e.test_bad_input import Api, assert_status
from tests.helpers import ServerProcess

HUGE = "1e999999999"
#: An exponent beyond int64: upstream's suffix parser rejects it.
BAD_EXPONENT = "1e99999999999999999999"


def _limits(value: str) -> dict[str, Any]:
    return {"resources": {"limits": {"cpu": value, "memory": value}}}


def _with_resources(value: str) -> dict[str, Any]:
    body = pod("p")
    body["spec"]["containers"][0].update(_limits(value))
    return body


def test_huge_exponent_in_pod_limits_is_answered_at_once(hard_api: Api, hard_ns: str) -> None:
    body = _with_resources(HUGE)
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/pods", body)
    assert resp.status == 201, resp.body[:500]
    stored = resp.json()["spec"]["containers"][0]["resources"]
    assert stored["limits"]["cpu"] == HUGE
    # requests default to the limits, as upstream's defaulting does
    assert stored["requests"]["cpu"] == HUGE
    assert_alive(hard_api)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (BAD_EXPONENT, "unable to parse quantity's suffix"),
        ("1ee5", "unable to parse quantity's suffix"),
        ("Ei", "unable to parse numeric part of quantity"),
        (
            "1.5.5",
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
    ],
)
def test_quantities_upstream_rejects(hard_api: Api, hard_ns: str, value: str, message: str) -> None:
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/pods", _with_resources(value))
    assert_status(
        resp, 400, "BadRequest", f'Pod in version "v1" cannot be handled as a Pod: {message}'
    )


def test_every_quantity_field(hard_api: Api, hard_ns: str) -> None:
    """Quota, limit range, claims, volumes and the quota admission of a pod all parse the
    huge quantity without stalling."""
    base = f"/api/v1/namespaces/{hard_ns}"
    quota = {
        "metadata": {"name": "q"},
        "spec": {"hard": {"requests.cpu": HUGE, "limits.memory": HUGE, "pods": "1e18"}},
    }
    limits = {
        "metadata": {"name": "lr"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": HUGE}, "default": {"cpu": HUGE}}]},
    }
    claim = {
        "metadata": {"name": "c"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": HUGE}}},
    }
    for path, body in (
        ("resourcequotas", quota),
        ("limitranges", limits),
        ("persistentvolumeclaims", claim),
    ):
        resp = timed(hard_api, "POST", f"{base}/{path}", body)
        assert resp.status == 201, (path, resp.body[:500])
    volume = pod("v", volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": HUGE}}])
    volume["spec"]["containers"][0].update(_limits(HUGE))
    resp = timed(hard_api, "POST", f"{base}/pods", volume)
    assert resp.status == 201, resp.body[:500]
    node = {"metadata": {"name": f"{hard_ns}-node"}, "status": {"capacity": {"cpu": HUGE}}}
    resp = timed(hard_api, "POST", "/api/v1/nodes", node)
    assert resp.status == 201, resp.body[:500]
    assert_alive(hard_api)


def test_server_memory_stays_bounded(hard_api: Api, capped: ServerProcess, hard_ns: str) -> None:
    before = rss_bytes(capped)
    for i in range(5):
        body = _with_resources(f"{i + 1}e{10**9 - i}")
        body["metadata"]["name"] = f"p{i}"
        assert timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/pods", body).status == 201
    assert rss_bytes(capped) - before < 100 * 1024 * 1024
    assert_alive(hard_api)
