"""The Priority admission hook over a real ObjectStore and PriorityClass cache."""

from __future__ import annotations

from typing import Any

import pytest

from edgek.status import ApiError
from tests.unit.controller_harness import Harness


@pytest.fixture
async def h(harness: Harness) -> Harness:
    await harness.informers.start()
    return harness


async def add_class(h: Harness, name: str, value: int, **extra: Any) -> None:
    body = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        **extra,
    }
    await h.create("scheduling.k8s.io", "priorityclasses", "", body)
    cache = h.ctx.cache("scheduling.k8s.io", "priorityclasses")
    await h.wait_for(lambda: cache.get("", name) is not None, what=f"class {name} cached")


async def add_pod(h: Harness, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx"}], **spec},
    }
    return await h.create("", "pods", "default", body)


async def test_class_name_resolves_priority_and_policy(h: Harness) -> None:
    await add_class(h, "batch", 500, preemptionPolicy="Never")
    pod = await add_pod(h, "job", priorityClassName="batch")
    assert (pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == (500, "Never")


async def test_system_classes_exist_implicitly(h: Harness) -> None:
    node = await add_pod(h, "a", priorityClassName="system-node-critical")
    cluster = await add_pod(h, "b", priorityClassName="system-cluster-critical")
    assert node["spec"]["priority"] == 2000001000
    assert cluster["spec"]["priority"] == 2000000000


async def test_unknown_class_is_forbidden(h: Harness) -> None:
    with pytest.raises(ApiError) as err:
        await add_pod(h, "p", priorityClassName="gold")
    assert err.value.code == 403
    assert "no PriorityClass with name gold was found" in err.value.message
    assert await h.get("", "pods", "default", "p") is None


async def test_global_default_applies_without_a_name(h: Harness) -> None:
    plain = await add_pod(h, "before")
    assert plain["spec"]["priority"] == 0
    await add_class(h, "normal", 100, globalDefault=True)
    pod = await add_pod(h, "after")
    assert (pod["spec"]["priority"], pod["spec"]["priorityClassName"]) == (100, "normal")


async def test_only_one_global_default(h: Harness) -> None:
    await add_class(h, "normal", 100, globalDefault=True)
    with pytest.raises(ApiError) as err:
        await add_class(h, "other", 50, globalDefault=True)
    assert err.value.code == 403
    assert "PriorityClass normal is already marked as default" in err.value.message


async def test_conflicting_explicit_priority_is_forbidden(h: Harness) -> None:
    await add_class(h, "batch", 500)
    with pytest.raises(ApiError) as err:
        await add_pod(h, "p", priorityClassName="batch", priority=7)
    assert err.value.code == 403
    assert "the integer value of priority (7) must not be provided" in err.value.message
