"""The pods/binding action and bind_pod over a real ObjectStore."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

import datastore
from edgek.kinds import Kind
from edgek.status import ApiError
from server.storage.binding import bind_pod, binding_action
from server.storage.objectstore import ObjectStore, WriteOptions
from server.storage.requestinfo import RequestInfo
from tests.helpers import builtin_kind

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
PODS = builtin_kind("", "v1", "pods")
NAMESPACES = builtin_kind("", "v1", "namespaces")
NAMESPACE_DEFAULT = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}


@pytest.fixture
async def objects() -> AsyncIterator[ObjectStore]:
    store = await datastore.Datastore.open("sqlite://")
    objects = ObjectStore(store, clock=lambda: T0)
    await objects.create(NAMESPACES, "", NAMESPACE_DEFAULT, WriteOptions())
    yield objects
    await store.close()


async def make_pod(objects: ObjectStore, name: str = "web", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx"}], **spec},
    }
    return await objects.create(PODS, "default", body, WriteOptions())


def info(name: str = "web") -> RequestInfo:
    return RequestInfo("create", PODS, "default", name, "binding")


def binding(node: str, name: str = "web", **md: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, **md},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


async def test_binding_sets_node_and_condition(objects: ObjectStore) -> None:
    created = await make_pod(objects)
    written: list[tuple[str, bool]] = []

    async def hook(kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        written.append((obj["spec"].get("nodeName", ""), deleted))

    objects.after_write.append(hook)
    action = binding_action(objects, PODS)
    body = binding("node-1", annotations={"example.com/why": "test"})
    reply, code = await action(info(), body, WriteOptions())
    assert code == 201
    assert reply["status"] == "Success"
    pod = await objects.get(PODS, "default", "web")
    assert pod["spec"]["nodeName"] == "node-1"
    assert pod["metadata"]["annotations"]["example.com/why"] == "test"
    assert int(pod["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled == [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}
    ]
    assert written == [("node-1", False)]


async def test_binding_replaces_unschedulable_condition(objects: ObjectStore) -> None:
    await make_pod(objects)

    async def unschedulable(pod: dict[str, Any] | None) -> dict[str, Any] | None:
        assert pod is not None
        pod["status"]["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available",
                "lastTransitionTime": "2024-04-01T00:00:00Z",
            }
        ]
        return pod

    await objects.modify(PODS, "default", "web", unschedulable, WriteOptions(subresource="status"))
    pod = await bind_pod(objects, PODS, "default", "web", "n2", opts=WriteOptions())
    assert pod["status"]["conditions"] == [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}
    ]


async def test_binding_an_assigned_pod_conflicts(objects: ObjectStore) -> None:
    await make_pod(objects)
    action = binding_action(objects, PODS)
    await action(info(), binding("node-1"), WriteOptions())
    with pytest.raises(ApiError) as err:
        await action(info(), binding("node-2"), WriteOptions())
    assert err.value.code == 409
    assert err.value.message == (
        'Operation cannot be fulfilled on pods "web": pod web is already assigned to node "node-1"'
    )
    assert (await objects.get(PODS, "default", "web"))["spec"]["nodeName"] == "node-1"


async def test_binding_missing_pod_is_not_found(objects: ObjectStore) -> None:
    with pytest.raises(ApiError) as err:
        await binding_action(objects, PODS)(info("ghost"), binding("n", "ghost"), WriteOptions())
    assert err.value.code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node"}},
            "target.name: Required value",
        ),
        (
            {"metadata": {"name": "web"}, "target": {"kind": "Pod", "name": "x"}},
            'target.kind: Unsupported value: "Pod": supported values: "Node"',
        ),
        (
            {"metadata": {"name": "other"}, "target": {"name": "n"}},
            "name in URL does not match name in Binding object",
        ),
    ],
)
async def test_binding_bad_body(objects: ObjectStore, body: dict, message: str) -> None:
    await make_pod(objects)
    with pytest.raises(ApiError) as err:
        await binding_action(objects, PODS)(info(), body, WriteOptions())
    assert (err.value.code, err.value.message) == (400, message)
    assert not (await objects.get(PODS, "default", "web"))["spec"].get("nodeName")


async def test_bind_uid_precondition_and_stale_copy(objects: ObjectStore) -> None:
    created = await make_pod(objects)
    with pytest.raises(ApiError) as err:
        await bind_pod(objects, PODS, "default", "web", "n1", uid="nope", opts=WriteOptions())
    assert err.value.code == 409

    async def relabel(pod: dict[str, Any] | None) -> dict[str, Any] | None:
        assert pod is not None
        pod["metadata"]["labels"] = {"changed": "yes"}
        return pod

    await objects.modify(PODS, "default", "web", relabel, WriteOptions())
    # the bind reads the stored pod: the newer labels survive it
    pod = await bind_pod(
        objects, PODS, "default", "web", "n1", uid=created["metadata"]["uid"], opts=WriteOptions()
    )
    assert pod["spec"]["nodeName"] == "n1"
    assert pod["metadata"]["labels"] == {"changed": "yes"}


async def test_binding_gated_pod_conflicts(objects: ObjectStore) -> None:
    await make_pod(objects, "gated", schedulingGates=[{"name": "example.com/wait"}])
    with pytest.raises(ApiError) as err:
        await bind_pod(objects, PODS, "default", "gated", "n1", opts=WriteOptions())
    assert err.value.code == 409
    assert "non-empty .spec.schedulingGates" in err.value.message


async def test_binding_dry_run_writes_nothing(objects: ObjectStore) -> None:
    await make_pod(objects)
    pod = await bind_pod(objects, PODS, "default", "web", "n1", opts=WriteOptions(dry_run=True))
    assert pod["spec"]["nodeName"] == "n1"
    assert not (await objects.get(PODS, "default", "web"))["spec"].get("nodeName")


async def test_bind_preconditions_use_upstream_storage_wording(objects: ObjectStore) -> None:
    created = await make_pod(objects)
    uid = created["metadata"]["uid"]
    with pytest.raises(ApiError) as err:
        await bind_pod(objects, PODS, "default", "web", "n1", uid="nope", opts=WriteOptions())
    assert err.value.message == (
        'Operation cannot be fulfilled on pods "web": Precondition failed: UID in precondition: '
        f"nope, UID in object meta: {uid}"
    )
    with pytest.raises(ApiError) as err:
        await bind_pod(
            objects, PODS, "default", "web", "n1", resource_version="999", opts=WriteOptions()
        )
    assert err.value.code == 409
    assert "Precondition failed: ResourceVersion in precondition: 999" in err.value.message
    rv = created["metadata"]["resourceVersion"]
    pod = await bind_pod(
        objects, PODS, "default", "web", "n1", uid=uid, resource_version=rv, opts=WriteOptions()
    )
    assert pod["spec"]["nodeName"] == "n1"
    assert await objects.get(PODS, "default", "web") == pod
