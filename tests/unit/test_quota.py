"""ResourceQuota admission and the quota controller."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import pytest

from edgek.objects import Obj
from edgek.status import ApiError
from server.admission.quota import QuotaAdmission, format_qty, parse_qty
from server.controllers.resourcequota import ResourceQuotaController
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.manifests import resource_pod
from tests.unit.controller_harness import Harness


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("100m", "100m"),
        ("0.5", "500m"),
        ("1500", "1500"),
        ("2000", "2k"),
        ("128Mi", "128Mi"),
        ("1536Mi", "1536Mi"),
        ("2048Mi", "2Gi"),
        ("512Ki", "512Ki"),
        ("1e3", "1e3"),
        ("0", "0"),
    ],
)
def test_quantities_print_canonically(given: str, canonical: str) -> None:
    assert format_qty(*parse_qty(given)) == canonical


def test_small_binary_values_print_decimal() -> None:
    assert format_qty(Fraction(512), "BinarySI") == "512"


async def bench(h: Harness, hard: Obj, **spec: Any) -> QuotaAdmission:
    admission = h.admission_step(QuotaAdmission)
    await h.start(ResourceQuotaController)
    body = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "q"},
        "spec": {"hard": hard, **spec},
    }
    await h.create("", "resourcequotas", "default", body)
    quotas = h.informers.cache("", "resourcequotas")
    await h.wait_for(lambda: quotas.get("default", "q") is not None, what="quota cached")
    return admission


async def used(h: Harness) -> Obj:
    q = await h.get("", "resourcequotas", "default", "q")
    assert q is not None
    return dict((q.get("status") or {}).get("used") or {})


async def test_pod_count_quota(harness: Harness) -> None:
    admission = await bench(harness, {"pods": "2", "count/configmaps": "5"})
    await harness.create("", "pods", "default", resource_pod("a"))
    await harness.create("", "pods", "default", resource_pod("b"))
    with pytest.raises(ApiError) as err:
        await harness.create("", "pods", "default", resource_pod("c"))
    assert err.value.code == 403
    assert err.value.message == (
        'pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'
    )

    async def counted() -> bool:
        return await used(harness) == {"pods": "2", "count/configmaps": "0"}

    await harness.wait_for(counted, what="status.used")
    q = await harness.get("", "resourcequotas", "default", "q")
    assert q is not None and q["status"]["hard"] == {"pods": "2", "count/configmaps": "5"}
    await harness.wait_for(lambda: admission.pending("default") == 0, what="reservations seen")

    # a finished pod no longer counts against "pods"
    done = await harness.get("", "pods", "default", "a")
    assert done is not None
    done["status"] = {"phase": "Succeeded"}
    await harness.objects.update(
        harness.kind("", "pods"), "default", "a", done, WriteOptions(subresource="status")
    )
    await harness.wait_for(lambda: _used_is(harness, "pods", "1"), what="pods=1")
    await harness.create("", "pods", "default", resource_pod("c"))


async def _used_is(h: Harness, name: str, value: str) -> bool:
    return (await used(h)).get(name) == value


async def test_compute_quota_needs_requests_and_sums_them(harness: Harness) -> None:
    await bench(harness, {"requests.cpu": "1", "limits.memory": "1Gi"})
    with pytest.raises(ApiError) as err:
        await harness.create("", "pods", "default", resource_pod("bare"))
    assert err.value.message == (
        'pods "bare" is forbidden: failed quota: q: must specify limits.memory for: app; '
        "requests.cpu for: app"
    )
    await harness.create(
        "", "pods", "default", resource_pod("a", {"cpu": "600m"}, {"cpu": "1", "memory": "512Mi"})
    )
    with pytest.raises(ApiError) as err:
        await harness.create(
            "",
            "pods",
            "default",
            resource_pod("b", {"cpu": "500m"}, {"cpu": "1", "memory": "256Mi"}),
        )
    assert err.value.message == (
        'pods "b" is forbidden: exceeded quota: q, requested: requests.cpu=500m, '
        "used: requests.cpu=600m, limited: requests.cpu=1"
    )
    await harness.create(
        "", "pods", "default", resource_pod("c", {"cpu": "400m"}, {"cpu": "1", "memory": "512Mi"})
    )

    async def counted() -> bool:
        return await used(harness) == {"requests.cpu": "1", "limits.memory": "1Gi"}

    await harness.wait_for(counted, what="status.used")


async def test_concurrent_creates_cannot_overrun(harness: Harness) -> None:
    admission = await bench(harness, {"count/configmaps": "3"})

    async def make(i: int) -> bool:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}}
        try:
            await harness.create("", "configmaps", "default", body)
        except ApiError as e:
            assert e.code == 403
            return False
        return True

    results = await asyncio.gather(*(make(i) for i in range(8)))
    assert sum(results) == 3
    assert len(await harness.list("", "configmaps", "default")) == 3

    # a write that fails releases what admission reserved
    await harness.wait_for(lambda: admission.pending("default") == 0, what="reservations seen")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-0"}}
    with pytest.raises(ApiError) as err:
        await harness.create("", "configmaps", "default", body)
    assert err.value.code == 403  # over quota before it could collide
    await harness.objects.delete(
        harness.kind("", "configmaps"),
        "default",
        next(c["metadata"]["name"] for c in await harness.list("", "configmaps", "default")),
        DeleteOptions(),
    )
    await harness.wait_for(lambda: _used_is(harness, "count/configmaps", "2"), what="2 left")
    existing = (await harness.list("", "configmaps", "default"))[0]["metadata"]["name"]
    with pytest.raises(ApiError) as err:
        await harness.create(
            "",
            "configmaps",
            "default",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": existing}},
        )
    assert err.value.code == 409
    assert admission.pending("default") == 0


async def test_service_quota(harness: Harness) -> None:
    await bench(harness, {"services.nodeports": "2", "services.loadbalancers": "0"})

    def svc(name: str, type_: str, ports: int) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "type": type_,
                "selector": {"app": "x"},
                "ports": [{"name": f"p{i}", "port": 80 + i} for i in range(ports)],
            },
        }

    await harness.create("", "services", "default", svc("plain", "ClusterIP", 3))
    with pytest.raises(ApiError) as err:
        await harness.create("", "services", "default", svc("np", "NodePort", 3))
    assert "requested: services.nodeports=3, used: services.nodeports=0" in err.value.message
    with pytest.raises(ApiError) as err:
        await harness.create("", "services", "default", svc("lb", "LoadBalancer", 1))
    assert "services.loadbalancers=1" in err.value.message


async def test_scopes_select_pods(harness: Harness) -> None:
    await bench(harness, {"pods": "1"}, scopes=["BestEffort"])
    await harness.create("", "pods", "default", resource_pod("be-1"))
    with pytest.raises(ApiError):
        await harness.create("", "pods", "default", resource_pod("be-2"))
    # pods with requests are outside the scope
    await harness.create("", "pods", "default", resource_pod("burst", {"cpu": "100m"}))
    await harness.wait_for(lambda: _used_is(harness, "pods", "1"), what="scoped usage")
