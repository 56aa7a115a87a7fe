"""Service cluster IP and node port allocation, through the real ObjectStore."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import datastore
from edgek.status import ApiError
from server.storage.allocators import ServiceAllocator
from server.storage.objectstore import DeleteOptions, ObjectStore, WriteOptions
from tests.helpers import builtin_kind

SERVICES = builtin_kind("", "v1", "services")
NAMESPACES = builtin_kind("", "v1", "namespaces")


@pytest.fixture
async def env() -> AsyncIterator[tuple[ObjectStore, ServiceAllocator]]:
    store = await datastore.Datastore.open("sqlite://")
    objs = ObjectStore(store)
    await objs.create(NAMESPACES, "", {"metadata": {"name": "default"}}, WriteOptions())
    alloc = ServiceAllocator("10.43.0.0/29", node_ports=(30000, 30002))
    objs.admission.append(alloc.admit)
    objs.after_write.append(alloc.written)
    yield objs, alloc
    await store.close()


def svc(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}], **spec},
    }


async def create(objs: ObjectStore, body: dict[str, Any]) -> dict[str, Any]:
    return await objs.create(SERVICES, "default", body, WriteOptions())


async def test_cluster_ips_are_unique_and_skip_the_kubernetes_ip(
    env: tuple[ObjectStore, ServiceAllocator],
) -> None:
    objs, alloc = env
    assert alloc.kubernetes_ip == "10.43.0.1"
    ips = [(await create(objs, svc(f"s{i}")))["spec"]["clusterIP"] for i in range(5)]
    assert ips == ["10.43.0.2", "10.43.0.3", "10.43.0.4", "10.43.0.5", "10.43.0.6"]
    with pytest.raises(ApiError) as err:
        await create(objs, svc("full"))
    assert err.value.code == 500
    await objs.delete(SERVICES, "default", "s1", DeleteOptions())
    again = await create(objs, svc("reuse"))
    assert again["spec"]["clusterIP"] == "10.43.0.3"
    assert again["spec"]["clusterIPs"] == ["10.43.0.3"]


async def test_requested_ip_checked(env: tuple[ObjectStore, ServiceAllocator]) -> None:
    objs, _ = env
    first = await create(objs, svc("a", clusterIP="10.43.0.4"))
    assert first["spec"]["clusterIPs"] == ["10.43.0.4"]
    with pytest.raises(ApiError) as err:
        await create(objs, svc("b", clusterIP="10.43.0.4"))
    assert err.value.code == 422
    assert "provided IP is already allocated" in err.value.message
    with pytest.raises(ApiError) as err:
        await create(objs, svc("c", clusterIP="192.168.9.9"))
    assert err.value.code == 422
    assert "is not in the valid range" in err.value.message


async def test_headless_and_external_name_get_no_ip(
    env: tuple[ObjectStore, ServiceAllocator],
) -> None:
    objs, _ = env
    headless = await create(objs, svc("h", clusterIP="None"))
    assert headless["spec"]["clusterIPs"] == ["None"]
    ext = await create(objs, svc("e", type="ExternalName", externalName="example.com"))
    assert "clusterIP" not in ext["spec"]


async def test_node_ports_allocated_and_released(
    env: tuple[ObjectStore, ServiceAllocator],
) -> None:
    objs, _ = env
    np = await create(
        objs,
        svc("np", type="NodePort", ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "b"}]),
    )
    assert [p["nodePort"] for p in np["spec"]["ports"]] == [30000, 30001]
    with pytest.raises(ApiError) as err:
        await create(objs, svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30001}]))
    assert "provided port is already allocated" in err.value.message
    # switching to ClusterIP drops and frees the node ports
    current = await objs.get(SERVICES, "default", "np")
    current["spec"]["type"] = "ClusterIP"
    for port in current["spec"]["ports"]:
        port.pop("nodePort")
    updated, _ = await objs.update(SERVICES, "default", "np", current, WriteOptions())
    assert all("nodePort" not in p for p in updated["spec"]["ports"])
    again = await create(objs, svc("np3", type="NodePort", ports=[{"port": 80, "nodePort": 30001}]))
    assert again["spec"]["ports"][0]["nodePort"] == 30001


async def test_failed_create_releases_what_it_took(
    env: tuple[ObjectStore, ServiceAllocator],
) -> None:
    objs, _ = env
    await create(objs, svc("dup"))
    with pytest.raises(ApiError):
        await create(objs, svc("dup", clusterIP="10.43.0.5"))
    ok = await create(objs, svc("other", clusterIP="10.43.0.5"))
    assert ok["spec"]["clusterIP"] == "10.43.0.5"
    dry = await objs.create(
        SERVICES, "default", svc("dry", clusterIP="10.43.0.6"), WriteOptions(dry_run=True)
    )
    assert dry["spec"]["clusterIP"] == "10.43.0.6"
    assert (await create(objs, svc("real", clusterIP="10.43.0.6")))["spec"][
        "clusterIP"
    ] == "10.43.0.6"


async def test_update_keeps_ip_when_omitted(env: tuple[ObjectStore, ServiceAllocator]) -> None:
    objs, _ = env
    created = await create(objs, svc("keep"))
    body = svc("keep")
    updated, _ = await objs.update(SERVICES, "default", "keep", body, WriteOptions())
    assert updated["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    assert updated["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
