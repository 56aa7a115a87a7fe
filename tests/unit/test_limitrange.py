"""LimitRange admission: container defaults and min/max/ratio refusals."""

from __future__ import annotations

import pytest

from edgek.objects import Obj
from edgek.status import ApiError
from tests.manifests import resource_pod
from tests.unit.controller_harness import Harness


async def bench(h: Harness, *items: Obj) -> None:
    await h.start()
    body = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "limits"},
        "spec": {"limits": list(items)},
    }
    await h.create("", "limitranges", "default", body)
    cache = h.informers.cache("", "limitranges")
    await h.wait_for(lambda: cache.get("default", "limits") is not None, what="cached")


async def test_defaults_are_applied_and_annotated(harness: Harness) -> None:
    await bench(
        harness,
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m"},
        },
    )
    created = await harness.create("", "pods", "default", resource_pod("a"))
    res = created["spec"]["containers"][0]["resources"]
    assert res["limits"] == {"cpu": "500m", "memory": "256Mi"}
    # memory's request defaults to its default limit (SetDefaults_LimitRangeItem)
    assert res["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert created["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; "
        "cpu, memory limit for container app"
    )
    # what the pod states itself is kept
    own = await harness.create(
        "", "pods", "default", resource_pod("b", {"cpu": "200m"}, {"cpu": "1"})
    )
    res = own["spec"]["containers"][0]["resources"]
    assert (res["requests"]["cpu"], res["limits"]["cpu"]) == ("200m", "1")


async def test_container_min_max_and_ratio(harness: Harness) -> None:
    await bench(
        harness,
        {
            "type": "Container",
            "min": {"cpu": "100m"},
            "max": {"memory": "1Gi"},
            "maxLimitRequestRatio": {"memory": "2"},
        },
    )
    with pytest.raises(ApiError) as err:
        await harness.create("", "pods", "default", resource_pod("low", {"cpu": "0.05"}))
    assert err.value.code == 403
    assert err.value.message == (
        'pods "low" is forbidden: minimum cpu usage per Container is 100m, but request is 50m'
    )
    with pytest.raises(ApiError) as err:
        await harness.create(
            "",
            "pods",
            "default",
            resource_pod("big", {"cpu": "200m", "memory": "1Gi"}, {"memory": "2Gi"}),
        )
    assert err.value.message == (
        'pods "big" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi'
    )
    with pytest.raises(ApiError) as err:
        await harness.create(
            "",
            "pods",
            "default",
            resource_pod("skewed", {"cpu": "200m", "memory": "128Mi"}, {"memory": "512Mi"}),
        )
    assert err.value.message == (
        'pods "skewed" is forbidden: memory max limit to request ratio per Container is 2, '
        "but provided ratio is 4.000000"
    )
    # defaults from min/max make a bare pod acceptable
    created = await harness.create("", "pods", "default", resource_pod("bare"))
    res = created["spec"]["containers"][0]["resources"]
    assert res["limits"] == {"memory": "1Gi"}
    assert res["requests"] == {"cpu": "100m", "memory": "1Gi"}


async def test_pod_max_sums_containers(harness: Harness) -> None:
    await bench(harness, {"type": "Pod", "max": {"cpu": "1"}})
    two = resource_pod("two", {"cpu": "600m"}, {"cpu": "600m"})
    two["spec"]["containers"].append(
        {
            "name": "side",
            "image": "nginx",
            "resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}},
        }
    )
    with pytest.raises(ApiError) as err:
        await harness.create("", "pods", "default", two)
    assert err.value.message == (
        'pods "two" is forbidden: maximum cpu usage per Pod is 1, but limit is 1200m'
    )
    await harness.create(
        "", "pods", "default", resource_pod("one", {"cpu": "600m"}, {"cpu": "600m"})
    )


async def test_pvc_storage_bounds(harness: Harness) -> None:
    await bench(
        harness,
        {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}},
    )

    def pvc(name: str, size: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            },
        }

    with pytest.raises(ApiError) as err:
        await harness.create("", "persistentvolumeclaims", "default", pvc("small", "500Mi"))
    assert err.value.message == (
        'persistentvolumeclaims "small" is forbidden: minimum storage usage per '
        "PersistentVolumeClaim is 1Gi, but request is 500Mi"
    )
    with pytest.raises(ApiError) as err:
        await harness.create("", "persistentvolumeclaims", "default", pvc("huge", "10Gi"))
    assert "maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi" in (
        err.value.message
    )
    await harness.create("", "persistentvolumeclaims", "default", pvc("fine", "2Gi"))


async def test_quota_sees_the_defaulted_pod(harness: Harness) -> None:
    """LimitRange admission runs before quota admission, which then finds the requests."""
    await bench(harness, {"type": "Container", "default": {"cpu": "300m"}})
    body = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "q"},
        "spec": {"hard": {"requests.cpu": "500m"}},
    }
    await harness.create("", "resourcequotas", "default", body)
    quotas = harness.informers.cache("", "resourcequotas")
    await harness.wait_for(lambda: quotas.get("default", "q") is not None, what="quota cached")
    await harness.create("", "pods", "default", resource_pod("a"))
    with pytest.raises(ApiError) as err:
        await harness.create("", "pods", "default", resource_pod("b"))
    assert "requested: requests.cpu=300m, used: requests.cpu=300m" in err.value.message
