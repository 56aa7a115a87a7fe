"""Tests of the generic object store (server.storage.objectstore) over a throwaway SQLite datastore."""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import datastore
from edgek.kinds import Kind
from edgek.selectors import allowed_fields, parse_field_selector, parse_label_selector
from edgek.status import ApiError
from edgek.timefmt import format_time
from server.storage.namespacelifecycle import NAMESPACES_PREFIX
from server.storage.objectstore import (
    DeleteOptions,
    ListOptions,
    ObjectStore,
    WriteOptions,
    key_prefix,
)
from tests.helpers import builtin_kind
from tests.manifests import workload

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
NS = "default"


CONFIGMAPS = builtin_kind("", "v1", "configmaps")
PODS = builtin_kind("", "v1", "pods")
NAMESPACES = builtin_kind("", "v1", "namespaces")
DEPLOYMENTS = builtin_kind("apps", "v1", "deployments")


class Clock:
    """A settable clock for creation and deletion timestamps."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Harness:
    """An ObjectStore over an in-memory datastore that records its after-write hook calls."""

    def __init__(self, store: datastore.Datastore) -> None:
        self.store = store
        self.clock = Clock()
        self.objects = ObjectStore(store, clock=self.clock, namespace_lifecycle=False)
        self.writes: list[tuple[str, str, str, bool]] = []
        self.objects.after_write.append(self._record)

    async def _record(self, kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        md = obj["metadata"]
        self.writes.append((kind.resource, md["name"], md["resourceVersion"], deleted))


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    store = await datastore.Datastore.open("sqlite://")
    yield Harness(store)
    await store.close()


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": dict(data)}


def pod(name: str, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    pod_spec = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    return workload("Deployment", name, pod_spec, replicas=replicas)


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def editable(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored object to send back as an update body."""
    return copy.deepcopy(obj)


# -- create, get ---------------------------------------------------------------------------


async def test_create_sets_server_owned_metadata(h: Harness) -> None:
    body = configmap("cfg", a="1")
    body["metadata"].update(
        {
            "namespace": "ignored-by-the-store",
            "resourceVersion": "999",
            "uid": "client-uid",
            "deletionTimestamp": "2020-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 5,
        }
    )
    created = await h.objects.create(CONFIGMAPS, NS, body, WriteOptions())
    md = created["metadata"]
    assert md["namespace"] == NS
    assert md["uid"] != "client-uid"
    uuid.UUID(md["uid"])
    assert md["creationTimestamp"] == format_time(T0)
    assert md["resourceVersion"] == str(h.store.revision)
    assert "deletionTimestamp" not in md
    assert "deletionGracePeriodSeconds" not in md
    assert await h.objects.get(CONFIGMAPS, NS, "cfg") == created


async def test_create_cluster_scoped_drops_namespace(h: Harness) -> None:
    created = await h.objects.create(
        NAMESPACES, "", {"metadata": {"name": "team", "namespace": "x"}}, WriteOptions()
    )
    assert "namespace" not in created["metadata"]
    assert (await h.objects.get(NAMESPACES, "", "team"))["metadata"]["uid"] == created["metadata"][
        "uid"
    ]


async def test_create_generate_name(h: Harness) -> None:
    made = []
    for _ in range(2):
        body = {"metadata": {"generateName": "web-"}, "data": {}}
        made.append(await h.objects.create(CONFIGMAPS, NS, body, WriteOptions()))
    got = names(made)
    assert all(re.fullmatch(r"web-[a-z0-9]{5}", n) for n in got), got
    assert got[0] != got[1]
    for n in got:
        assert await h.objects.try_get(CONFIGMAPS, NS, n) is not None


async def test_create_existing_is_already_exists(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    for dry_run in (False, True):
        with pytest.raises(ApiError) as exc:
            await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions(dry_run=dry_run))
        assert (exc.value.code, exc.value.reason) == (409, "AlreadyExists")
        assert exc.value.message == 'configmaps "cfg" already exists'
    # the same name in another namespace is another object
    await h.objects.create(CONFIGMAPS, "other", configmap("cfg"), WriteOptions())


async def test_create_invalid_is_422_and_not_stored(h: Harness) -> None:
    with pytest.raises(ApiError) as exc:
        await h.objects.create(CONFIGMAPS, NS, configmap("Not_A_Name"), WriteOptions())
    assert (exc.value.code, exc.value.reason) == (422, "Invalid")
    assert h.store.revision == 0
    assert h.writes == []


async def test_get_and_try_get_missing(h: Harness) -> None:
    assert await h.objects.try_get(CONFIGMAPS, NS, "nope") is None
    with pytest.raises(ApiError) as exc:
        await h.objects.get(DEPLOYMENTS, NS, "nope")
    assert (exc.value.code, exc.value.reason) == (404, "NotFound")
    assert exc.value.message == 'deployments.apps "nope" not found'
    assert exc.value.details == {"name": "nope", "kind": "deployments", "group": "apps"}


# -- list --------------------------------------------------------------------------------


async def test_list_namespace_and_all_namespaces(h: Harness) -> None:
    for ns, name in (("a", "x"), ("b", "y"), ("a", "z")):
        await h.objects.create(CONFIGMAPS, ns, configmap(name), WriteOptions())
    in_a = await h.objects.list(CONFIGMAPS, "a", ListOptions())
    assert names(in_a.items) == ["x", "z"]
    assert in_a.resource_version == str(h.store.revision)
    assert in_a.continue_token == ""
    everywhere = await h.objects.list(CONFIGMAPS, "", ListOptions())
    assert sorted(names(everywhere.items)) == ["x", "y", "z"]
    for item in everywhere.items:
        assert int(item["metadata"]["resourceVersion"]) > 0


async def test_list_label_and_field_selectors(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("a", {"tier": "web"}), WriteOptions())
    await h.objects.create(CONFIGMAPS, NS, configmap("b", {"tier": "db"}), WriteOptions())
    await h.objects.create(CONFIGMAPS, NS, configmap("c"), WriteOptions())

    async def listed(labels: str = "", fields: str = "") -> list[str]:
        opts = ListOptions(
            label_selector=parse_label_selector(labels) if labels else None,
            field_selector=(
                parse_field_selector(fields, allowed_fields("", "configmaps")) if fields else None
            ),
        )
        return names((await h.objects.list(CONFIGMAPS, NS, opts)).items)

    assert await listed("tier=web") == ["a"]
    assert await listed("tier") == ["a", "b"]
    assert await listed("!tier") == ["c"]
    assert await listed("tier in (db,web)") == ["a", "b"]
    assert await listed(fields="metadata.name!=b") == ["a", "c"]
    assert await listed("tier", "metadata.name=b") == ["b"]
    assert await listed(fields="metadata.namespace=elsewhere") == []


async def test_list_pods_by_node_field_selector(h: Harness) -> None:
    await h.objects.create(PODS, NS, pod("on-n1", node="n1"), WriteOptions())
    await h.objects.create(PODS, NS, pod("unbound"), WriteOptions())
    sel = parse_field_selector("spec.nodeName=n1", allowed_fields("", "pods"))
    got = await h.objects.list(PODS, "", ListOptions(field_selector=sel))
    assert names(got.items) == ["on-n1"]
    sel = parse_field_selector("spec.nodeName=", allowed_fields("", "pods"))
    got = await h.objects.list(PODS, "", ListOptions(field_selector=sel))
    assert names(got.items) == ["unbound"]


async def test_list_limit_and_continue_read_one_snapshot(h: Harness) -> None:
    for i in range(12):
        await h.objects.create(CONFIGMAPS, NS, configmap(f"cm-{i:02d}"), WriteOptions())
    first = await h.objects.list(CONFIGMAPS, NS, ListOptions(limit=5))
    assert names(first.items) == [f"cm-{i:02d}" for i in range(5)]
    assert first.continue_token
    snapshot = first.resource_version

    # changes after the first page are not seen by the following pages
    await h.objects.create(CONFIGMAPS, NS, configmap("cm-99"), WriteOptions())
    await h.objects.delete(CONFIGMAPS, NS, "cm-07", DeleteOptions())

    second = await h.objects.list(
        CONFIGMAPS, NS, ListOptions(limit=5, continue_token=first.continue_token)
    )
    assert names(second.items) == [f"cm-{i:02d}" for i in range(5, 10)]
    assert second.resource_version == snapshot
    third = await h.objects.list(
        CONFIGMAPS, NS, ListOptions(limit=5, continue_token=second.continue_token)
    )
    assert names(third.items) == ["cm-10", "cm-11"]
    assert third.continue_token == ""
    assert third.resource_version == snapshot

    fresh = await h.objects.list(CONFIGMAPS, NS, ListOptions())
    assert "cm-99" in names(fresh.items) and "cm-07" not in names(fresh.items)


async def test_list_limit_exactly_at_the_end_has_no_continue(h: Harness) -> None:
    for name in ("a", "b", "c"):
        await h.objects.create(CONFIGMAPS, NS, configmap(name), WriteOptions())
    page = await h.objects.list(CONFIGMAPS, NS, ListOptions(limit=3))
    assert names(page.items) == ["a", "b", "c"]
    assert page.continue_token == ""


async def test_list_limit_with_sparse_selector_keeps_reading(h: Harness) -> None:
    """Matches are far apart (more than one datastore chunk): every page is still full."""
    total = 230
    await asyncio.gather(
        *(
            h.objects.create(
                CONFIGMAPS,
                NS,
                configmap(f"cm-{i:03d}", {"pick": "yes" if i % 50 == 0 else "no"}),
                WriteOptions(),
            )
            for i in range(total)
        )
    )
    selector = parse_label_selector("pick=yes")
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await h.objects.list(
            CONFIGMAPS, NS, ListOptions(label_selector=selector, limit=2, continue_token=token)
        )
        pages.append(names(page.items))
        token = page.continue_token
        if not token:
            break
        assert len(pages) < 10, pages
    assert pages == [["cm-000", "cm-050"], ["cm-100", "cm-150"], ["cm-200"]]


async def test_list_bad_continue_token(h: Harness) -> None:
    with pytest.raises(ApiError) as exc:
        await h.objects.list(CONFIGMAPS, NS, ListOptions(limit=1, continue_token="%%%not-a-token"))
    assert exc.value.code == 400
    assert exc.value.message.startswith("invalid continue token: continue key is not valid")


async def test_list_at_exact_resource_version(h: Harness) -> None:
    a = await h.objects.create(CONFIGMAPS, NS, configmap("a", v="old"), WriteOptions())
    rv = a["metadata"]["resourceVersion"]
    await h.objects.create(CONFIGMAPS, NS, configmap("b"), WriteOptions())
    changed = editable(a)
    changed["data"]["v"] = "new"
    await h.objects.update(CONFIGMAPS, NS, "a", changed, WriteOptions())

    past = await h.objects.list(
        CONFIGMAPS, NS, ListOptions(resource_version=rv, resource_version_match="Exact")
    )
    assert past.resource_version == rv
    assert names(past.items) == ["a"]
    assert past.items[0]["data"] == {"v": "old"}
    assert past.items[0]["metadata"]["resourceVersion"] == rv

    now = await h.objects.list(CONFIGMAPS, NS, ListOptions(resource_version=rv))
    assert names(now.items) == ["a", "b"]
    assert now.items[0]["data"] == {"v": "new"}
    assert now.resource_version == str(h.store.revision)


async def test_list_resource_version_too_large(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("a"), WriteOptions())
    with pytest.raises(ApiError) as exc:
        await h.objects.list(CONFIGMAPS, NS, ListOptions(resource_version="50"))
    assert (exc.value.code, exc.value.reason) == (504, "Timeout")
    assert exc.value.message == "Too large resource version: 50, current: 1"
    with pytest.raises(ApiError) as exc:
        await h.objects.list(CONFIGMAPS, NS, ListOptions(resource_version="abc"))
    assert exc.value.code == 400


async def test_list_exact_resource_version_in_the_future(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("a"), WriteOptions())
    with pytest.raises(ApiError) as exc:
        await h.objects.list(
            CONFIGMAPS, NS, ListOptions(resource_version="50", resource_version_match="Exact")
        )
    assert exc.value.code == 504


async def test_list_with_limit_and_resource_version_is_exact(h: Harness) -> None:
    a = await h.objects.create(CONFIGMAPS, NS, configmap("a"), WriteOptions())
    await h.objects.create(CONFIGMAPS, NS, configmap("b"), WriteOptions())
    page = await h.objects.list(
        CONFIGMAPS, NS, ListOptions(resource_version=a["metadata"]["resourceVersion"], limit=10)
    )
    assert names(page.items) == ["a"]


async def test_list_compacted_revision_is_expired(h: Harness) -> None:
    a = await h.objects.create(CONFIGMAPS, NS, configmap("a"), WriteOptions())
    await h.objects.create(CONFIGMAPS, NS, configmap("b"), WriteOptions())
    await h.objects.create(CONFIGMAPS, NS, configmap("c"), WriteOptions())
    page = await h.objects.list(CONFIGMAPS, NS, ListOptions(limit=1))
    assert page.continue_token
    await h.objects.create(CONFIGMAPS, NS, configmap("d"), WriteOptions())
    await h.store.compact(h.store.revision)

    with pytest.raises(ApiError) as exc:
        await h.objects.list(
            CONFIGMAPS,
            NS,
            ListOptions(
                resource_version=a["metadata"]["resourceVersion"], resource_version_match="Exact"
            ),
        )
    assert (exc.value.code, exc.value.reason) == (410, "Expired")
    assert "too old" in exc.value.message
    with pytest.raises(ApiError) as exc:
        await h.objects.list(CONFIGMAPS, NS, ListOptions(continue_token=page.continue_token))
    assert (exc.value.code, exc.value.reason) == (410, "Expired")
    assert exc.value.message.startswith("The provided continue parameter is too old")


# -- update, modify --------------------------------------------------------------------------


async def test_update_writes_and_bumps_resource_version(h: Harness) -> None:
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg", a="1"), WriteOptions())
    body = editable(created)
    body["data"]["a"] = "2"
    updated, was_created = await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions())
    assert not was_created
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert await h.objects.get(CONFIGMAPS, NS, "cfg") == updated


async def test_update_keeps_immutable_metadata(h: Harness) -> None:
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    body = editable(created)
    body["metadata"]["uid"] = "forged"
    body["metadata"]["creationTimestamp"] = "2001-01-01T00:00:00Z"
    del body["metadata"]["resourceVersion"]
    body["data"] = {"changed": "yes"}
    updated, _ = await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions())
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


async def test_update_with_stale_resource_version_conflicts(h: Harness) -> None:
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg", a="1"), WriteOptions())
    first = editable(created)
    first["data"]["a"] = "2"
    await h.objects.update(CONFIGMAPS, NS, "cfg", first, WriteOptions())
    stale = editable(created)
    stale["data"]["a"] = "3"
    with pytest.raises(ApiError) as exc:
        await h.objects.update(CONFIGMAPS, NS, "cfg", stale, WriteOptions())
    assert (exc.value.code, exc.value.reason) == (409, "Conflict")
    assert exc.value.message == (
        'Operation cannot be fulfilled on configmaps "cfg": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert (await h.objects.get(CONFIGMAPS, NS, "cfg"))["data"] == {"a": "2"}


async def test_update_missing_object(h: Harness) -> None:
    with pytest.raises(ApiError) as exc:
        await h.objects.update(CONFIGMAPS, NS, "cfg", configmap("cfg"), WriteOptions())
    assert exc.value.code == 404
    obj, created = await h.objects.update(
        CONFIGMAPS, NS, "cfg", configmap("cfg"), WriteOptions(), allow_create=True
    )
    assert created
    assert obj["metadata"]["uid"]
    with pytest.raises(ApiError) as exc:
        await h.objects.update(
            DEPLOYMENTS,
            NS,
            "web",
            deployment("web"),
            WriteOptions(subresource="status"),
            allow_create=True,
        )
    assert exc.value.code == 404


async def test_update_name_mismatch_is_bad_request(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    with pytest.raises(ApiError) as exc:
        await h.objects.update(CONFIGMAPS, NS, "cfg", configmap("other"), WriteOptions())
    assert exc.value.code == 400


@pytest.mark.parametrize("manager", ["", "kubectl-edit"])
async def test_noop_update_is_not_written(h: Harness, manager: str) -> None:
    created = await h.objects.create(
        CONFIGMAPS, NS, configmap("cfg", a="1"), WriteOptions(field_manager=manager)
    )
    revision = h.store.revision
    writes = len(h.writes)
    body = editable(created)
    del body["metadata"]["resourceVersion"]
    updated, _ = await h.objects.update(
        CONFIGMAPS, NS, "cfg", body, WriteOptions(field_manager=manager)
    )
    assert updated["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert h.store.revision == revision
    assert len(h.writes) == writes


async def test_modify_unchanged_and_create(h: Harness) -> None:
    async def keep(current: dict[str, Any] | None) -> dict[str, Any] | None:
        return None

    with pytest.raises(ApiError) as exc:
        await h.objects.modify(CONFIGMAPS, NS, "cfg", keep, WriteOptions())
    assert exc.value.code == 404

    async def make(current: dict[str, Any] | None) -> dict[str, Any] | None:
        assert current is None
        return configmap("cfg", made="yes")

    obj, created = await h.objects.modify(CONFIGMAPS, NS, "cfg", make, WriteOptions())
    assert created and obj["data"] == {"made": "yes"}
    revision = h.store.revision
    same, created = await h.objects.modify(CONFIGMAPS, NS, "cfg", keep, WriteOptions())
    assert not created
    assert same == obj
    assert h.store.revision == revision


async def test_modify_retries_after_a_concurrent_write(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg", base="1"), WriteOptions())
    calls = 0

    async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal calls
        calls += 1
        assert current is not None
        if calls == 1:
            rival = copy.deepcopy(current)
            rival["data"]["rival"] = "1"
            await h.objects.update(CONFIGMAPS, NS, "cfg", rival, WriteOptions())
        current["data"]["mine"] = "1"
        return current

    result, created = await h.objects.modify(CONFIGMAPS, NS, "cfg", mutate, WriteOptions())
    assert not created
    assert calls == 2
    assert result["data"] == {"base": "1", "rival": "1", "mine": "1"}
    assert (await h.objects.get(CONFIGMAPS, NS, "cfg"))["data"] == result["data"]


async def test_modify_gives_up_with_conflict(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg", n="0"), WriteOptions())
    calls = 0

    async def always_raced(current: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal calls
        calls += 1
        assert current is not None
        rival = copy.deepcopy(current)
        rival["data"]["n"] = str(calls)
        await h.objects.update(CONFIGMAPS, NS, "cfg", rival, WriteOptions())
        current["data"]["mine"] = "1"
        return current

    with pytest.raises(ApiError) as exc:
        await h.objects.modify(CONFIGMAPS, NS, "cfg", always_raced, WriteOptions())
    assert exc.value.code == 409
    assert calls == 5
    assert "mine" not in (await h.objects.get(CONFIGMAPS, NS, "cfg"))["data"]


async def test_modify_with_stale_resource_version_conflicts(h: Harness) -> None:
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    body = editable(created)
    body["data"]["x"] = "1"
    await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions())

    async def with_old_rv(current: dict[str, Any] | None) -> dict[str, Any] | None:
        assert current is not None
        current["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
        current["data"]["y"] = "1"
        return current

    with pytest.raises(ApiError) as exc:
        await h.objects.modify(CONFIGMAPS, NS, "cfg", with_old_rv, WriteOptions())
    assert exc.value.code == 409


async def _race_next_read(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make another writer change cfg right after the store's next read of it."""
    original = h.objects.try_get
    raced = False

    async def racing(kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        nonlocal raced
        current = await original(kind, namespace, name)
        if not raced and current is not None:
            raced = True
            rival = copy.deepcopy(current)
            rival["data"]["rival"] = "1"
            await h.objects.update(kind, namespace, name, rival, WriteOptions())
        return current

    monkeypatch.setattr(h.objects, "try_get", racing)


async def test_unconditional_update_survives_a_concurrent_write(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    await _race_next_read(h, monkeypatch)
    updated, _ = await h.objects.update(
        CONFIGMAPS, NS, "cfg", configmap("cfg", mine="1"), WriteOptions()
    )
    assert updated["data"] == {"mine": "1"}


async def test_conditional_update_losing_a_race_conflicts(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    await _race_next_read(h, monkeypatch)
    body = editable(created)
    body["data"]["mine"] = "1"
    with pytest.raises(ApiError) as exc:
        await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions())
    assert exc.value.code == 409


# -- strategy on write ------------------------------------------------------------------------


async def test_deployment_generation_counts_spec_changes(h: Harness) -> None:
    body = deployment("web")
    body["metadata"]["generation"] = 7
    created = await h.objects.create(DEPLOYMENTS, NS, body, WriteOptions())
    assert created["metadata"]["generation"] == 1

    scaled = editable(created)
    scaled["spec"]["replicas"] = 3
    scaled, _ = await h.objects.update(DEPLOYMENTS, NS, "web", scaled, WriteOptions())
    assert scaled["metadata"]["generation"] == 2

    labelled = editable(scaled)
    labelled["metadata"]["labels"] = {"team": "a"}
    labelled["metadata"]["generation"] = 10
    labelled, _ = await h.objects.update(DEPLOYMENTS, NS, "web", labelled, WriteOptions())
    assert labelled["metadata"]["labels"] == {"team": "a"}
    assert labelled["metadata"]["generation"] == 2


async def test_deployment_generation_counts_annotation_changes(h: Harness) -> None:
    created = await h.objects.create(DEPLOYMENTS, NS, deployment("web"), WriteOptions())
    body = editable(created)
    body["metadata"]["annotations"] = {"note": "changed"}
    updated, _ = await h.objects.update(DEPLOYMENTS, NS, "web", body, WriteOptions())
    assert updated["metadata"]["generation"] == 2


async def test_configmap_has_no_generation(h: Harness) -> None:
    body = configmap("cfg", a="1")
    body["metadata"]["generation"] = 4
    created = await h.objects.create(CONFIGMAPS, NS, body, WriteOptions())
    assert "generation" not in created["metadata"]
    changed = editable(created)
    changed["data"]["a"] = "2"
    changed["metadata"]["generation"] = 5
    updated, _ = await h.objects.update(CONFIGMAPS, NS, "cfg", changed, WriteOptions())
    assert "generation" not in updated["metadata"]


async def test_status_reset_on_create_and_kept_on_main_update(h: Harness) -> None:
    body = deployment("web")
    body["status"] = {"replicas": 9, "readyReplicas": 9}
    created = await h.objects.create(DEPLOYMENTS, NS, body, WriteOptions())
    assert created["status"] == {}

    status_body = editable(created)
    status_body["status"] = {"replicas": 1, "observedGeneration": 1}
    status_body["spec"]["replicas"] = 5
    status_body["metadata"]["labels"] = {"sneaky": "yes"}
    after_status, _ = await h.objects.update(
        DEPLOYMENTS, NS, "web", status_body, WriteOptions(subresource="status")
    )
    assert after_status["status"] == {"replicas": 1, "observedGeneration": 1}
    assert after_status["spec"]["replicas"] == 1
    assert "labels" not in after_status["metadata"]
    assert after_status["metadata"]["generation"] == 1
    assert int(after_status["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )

    main = editable(after_status)
    main["status"] = {"replicas": 42}
    main["spec"]["replicas"] = 2
    after_main, _ = await h.objects.update(DEPLOYMENTS, NS, "web", main, WriteOptions())
    assert after_main["status"] == {"replicas": 1, "observedGeneration": 1}
    assert after_main["spec"]["replicas"] == 2
    assert await h.objects.get(DEPLOYMENTS, NS, "web") == after_main


async def test_pod_gets_initial_status(h: Harness) -> None:
    body = pod("p")
    body["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    body["status"] = {"phase": "Running"}
    created = await h.objects.create(PODS, NS, body, WriteOptions())
    assert created["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}


async def test_namespace_spec_finalizer(h: Harness) -> None:
    created = await h.objects.create(NAMESPACES, "", {"metadata": {"name": "team"}}, WriteOptions())
    assert created["spec"]["finalizers"] == ["kubernetes"]
    assert created["status"] == {"phase": "Active"}

    body = editable(created)
    body["spec"]["finalizers"] = []
    body["metadata"]["labels"] = {"env": "prod"}
    updated, _ = await h.objects.update(NAMESPACES, "", "team", body, WriteOptions())
    assert updated["spec"]["finalizers"] == ["kubernetes"]
    assert updated["metadata"]["labels"] == {"env": "prod"}

    deleting, deleted_now = await h.objects.delete(NAMESPACES, "", "team", DeleteOptions())
    assert not deleted_now
    assert deleting["status"]["phase"] == "Terminating"
    assert deleting["metadata"]["deletionTimestamp"] == format_time(T0)
    assert await h.objects.try_get(NAMESPACES, "", "team") == deleting

    async def finalize(current: dict[str, Any] | None) -> dict[str, Any] | None:
        assert current is not None
        current["spec"]["finalizers"] = []
        return current

    await h.objects.modify(NAMESPACES, "", "team", finalize, WriteOptions(subresource="finalize"))
    assert await h.objects.try_get(NAMESPACES, "", "team") is None
    assert h.writes[-1][0::3] == ("namespaces", True)


# -- delete -----------------------------------------------------------------------------------


async def test_delete_without_finalizers_is_immediate(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    obj, deleted_now = await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions())
    assert deleted_now
    assert obj["metadata"]["name"] == "cfg"
    assert await h.objects.try_get(CONFIGMAPS, NS, "cfg") is None
    with pytest.raises(ApiError) as exc:
        await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions())
    assert exc.value.code == 404


async def test_delete_with_finalizers_waits_for_them(h: Harness) -> None:
    body = configmap("cfg")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await h.objects.create(CONFIGMAPS, NS, body, WriteOptions())
    h.clock.now = T0 + timedelta(minutes=1)

    marked, deleted_now = await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions())
    assert not deleted_now
    md = marked["metadata"]
    assert md["deletionTimestamp"] == format_time(h.clock.now)
    assert md["deletionGracePeriodSeconds"] == 0
    assert await h.objects.get(CONFIGMAPS, NS, "cfg") == marked

    # deleting again changes nothing
    revision = h.store.revision
    again, deleted_now = await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions())
    assert not deleted_now and again == marked
    assert h.store.revision == revision

    # an update cannot clear the deletion timestamp
    body = editable(marked)
    del body["metadata"]["deletionTimestamp"]
    del body["metadata"]["deletionGracePeriodSeconds"]
    body["data"] = {"k": "v"}
    kept, _ = await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions())
    assert kept["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]
    assert kept["metadata"]["deletionGracePeriodSeconds"] == 0

    # clearing the finalizers deletes it
    release = editable(kept)
    release["metadata"]["finalizers"] = []
    await h.objects.update(CONFIGMAPS, NS, "cfg", release, WriteOptions())
    assert await h.objects.try_get(CONFIGMAPS, NS, "cfg") is None
    assert h.writes[-1][0::3] == ("configmaps", True)


async def test_delete_bound_pod_is_graceful(h: Harness) -> None:
    await h.objects.create(PODS, NS, pod("p", node="n1"), WriteOptions())
    marked, deleted_now = await h.objects.delete(PODS, NS, "p", DeleteOptions())
    assert not deleted_now
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert marked["metadata"]["deletionTimestamp"] == format_time(T0 + timedelta(seconds=30))
    assert await h.objects.try_get(PODS, NS, "p") is not None

    # the agent (or a force delete) finishes it with a zero grace period
    _, deleted_now = await h.objects.delete(PODS, NS, "p", DeleteOptions(grace_period_seconds=0))
    assert deleted_now
    assert await h.objects.try_get(PODS, NS, "p") is None


async def test_delete_pod_grace_period_sources(h: Harness) -> None:
    body = pod("custom", node="n1")
    body["spec"]["terminationGracePeriodSeconds"] = 7
    await h.objects.create(PODS, NS, body, WriteOptions())
    marked, _ = await h.objects.delete(PODS, NS, "custom", DeleteOptions())
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 7

    await h.objects.create(PODS, NS, pod("asked", node="n1"), WriteOptions())
    marked, _ = await h.objects.delete(PODS, NS, "asked", DeleteOptions(grace_period_seconds=5))
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 5
    assert marked["metadata"]["deletionTimestamp"] == format_time(T0 + timedelta(seconds=5))

    # unbound pods and finished pods go at once
    await h.objects.create(PODS, NS, pod("unbound"), WriteOptions())
    _, deleted_now = await h.objects.delete(PODS, NS, "unbound", DeleteOptions())
    assert deleted_now
    done = await h.objects.create(PODS, NS, pod("done", node="n1"), WriteOptions())
    finished = editable(done)
    finished["status"] = {"phase": "Succeeded"}
    await h.objects.update(PODS, NS, "done", finished, WriteOptions(subresource="status"))
    _, deleted_now = await h.objects.delete(PODS, NS, "done", DeleteOptions())
    assert deleted_now


async def test_delete_preconditions(h: Harness) -> None:
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    md = created["metadata"]
    with pytest.raises(ApiError) as exc:
        await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions(precondition_uid="other"))
    assert (exc.value.code, exc.value.reason) == (409, "Conflict")
    assert exc.value.message == (
        'Operation cannot be fulfilled on configmaps "cfg": Precondition failed: '
        f"UID in precondition: other, UID in object meta: {md['uid']}"
    )
    with pytest.raises(ApiError) as exc:
        await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions(precondition_rv="1234"))
    assert exc.value.code == 409
    assert "ResourceVersion in precondition: 1234" in exc.value.message
    assert await h.objects.try_get(CONFIGMAPS, NS, "cfg") is not None

    _, deleted_now = await h.objects.delete(
        CONFIGMAPS,
        NS,
        "cfg",
        DeleteOptions(precondition_uid=md["uid"], precondition_rv=md["resourceVersion"]),
    )
    assert deleted_now


# -- dry run and hooks ------------------------------------------------------------------------


async def test_dry_run_persists_nothing(h: Harness) -> None:
    dry = await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions(dry_run=True))
    assert dry["metadata"]["uid"]
    assert h.store.revision == 0
    assert await h.objects.try_get(CONFIGMAPS, NS, "cfg") is None

    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg", a="1"), WriteOptions())
    revision = h.store.revision
    body = editable(created)
    body["data"]["a"] = "2"
    preview, _ = await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions(dry_run=True))
    assert preview["data"] == {"a": "2"}
    _, deleted_now = await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions(dry_run=True))
    assert deleted_now
    assert h.store.revision == revision
    assert await h.objects.get(CONFIGMAPS, NS, "cfg") == created
    assert [w[1] for w in h.writes] == ["cfg"]


async def test_after_write_hooks_see_each_committed_write(h: Harness) -> None:
    seen: list[tuple[str, str, bool]] = []

    async def second_hook(kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        seen.append((kind.kind, obj["metadata"]["name"], deleted))

    h.objects.after_write.append(second_hook)
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    body = editable(created)
    body["data"]["a"] = "1"
    updated, _ = await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions())
    await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions())
    assert h.writes == [
        ("configmaps", "cfg", created["metadata"]["resourceVersion"], False),
        ("configmaps", "cfg", updated["metadata"]["resourceVersion"], False),
        ("configmaps", "cfg", str(h.store.revision), True),
    ]
    assert seen == [("ConfigMap", "cfg", False)] * 2 + [("ConfigMap", "cfg", True)]


# -- delete: propagation policies (garbage-collector finalizers) ----------------------------


@pytest.mark.parametrize(
    ("opts", "finalizers"),
    [
        (DeleteOptions(propagation_policy="Foreground"), ["foregroundDeletion"]),
        (DeleteOptions(propagation_policy="Orphan"), ["orphan"]),
        (DeleteOptions(orphan_dependents=True), ["orphan"]),
    ],
)
async def test_delete_policy_adds_its_finalizer(
    h: Harness, opts: DeleteOptions, finalizers: list[str]
) -> None:
    created = await h.objects.create(DEPLOYMENTS, NS, deployment("web"), WriteOptions())
    h.clock.now = T0 + timedelta(minutes=1)
    marked, deleted_now = await h.objects.delete(DEPLOYMENTS, NS, "web", opts)
    assert not deleted_now
    md = marked["metadata"]
    assert md["finalizers"] == finalizers
    assert md["deletionTimestamp"] == format_time(h.clock.now)
    assert md["deletionGracePeriodSeconds"] == 0
    assert md["generation"] == created["metadata"]["generation"] + 1
    assert await h.objects.get(DEPLOYMENTS, NS, "web") == marked


@pytest.mark.parametrize(
    "opts",
    [
        DeleteOptions(),
        DeleteOptions(propagation_policy="Background"),
        DeleteOptions(orphan_dependents=False),
    ],
)
async def test_delete_background_is_immediate(h: Harness, opts: DeleteOptions) -> None:
    await h.objects.create(DEPLOYMENTS, NS, deployment("web"), WriteOptions())
    _, deleted_now = await h.objects.delete(DEPLOYMENTS, NS, "web", opts)
    assert deleted_now
    assert await h.objects.try_get(DEPLOYMENTS, NS, "web") is None


async def test_delete_policy_keeps_other_finalizers(h: Harness) -> None:
    body = configmap("cfg")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await h.objects.create(CONFIGMAPS, NS, body, WriteOptions())
    marked, _ = await h.objects.delete(
        CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Orphan")
    )
    assert marked["metadata"]["finalizers"] == ["example.com/hold", "orphan"]
    # a Background delete of a terminating object takes the orphan finalizer away again
    marked, deleted_now = await h.objects.delete(
        CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Background")
    )
    assert not deleted_now
    assert marked["metadata"]["finalizers"] == ["example.com/hold"]


async def test_second_delete_switches_orphan_to_foreground(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    first, _ = await h.objects.delete(
        CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Orphan")
    )
    h.clock.now = T0 + timedelta(minutes=5)
    # no policy: the finalizer already there stands, and nothing is written
    revision = h.store.revision
    again, _ = await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions())
    assert again == first and h.store.revision == revision
    switched, deleted_now = await h.objects.delete(
        CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Foreground")
    )
    assert not deleted_now
    assert switched["metadata"]["finalizers"] == ["foregroundDeletion"]
    # the first deletion's timestamp is kept
    assert switched["metadata"]["deletionTimestamp"] == first["metadata"]["deletionTimestamp"]
    # a Background delete drops the last finalizer: the object goes
    _, deleted_now = await h.objects.delete(
        CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Background")
    )
    assert deleted_now
    assert await h.objects.try_get(CONFIGMAPS, NS, "cfg") is None


async def test_removing_gc_finalizer_finishes_deletion(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    marked, _ = await h.objects.delete(
        CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Foreground")
    )
    body = editable(marked)
    body["metadata"]["finalizers"] = []
    await h.objects.update(CONFIGMAPS, NS, "cfg", body, WriteOptions())
    assert await h.objects.try_get(CONFIGMAPS, NS, "cfg") is None


async def test_foreground_delete_of_bound_pod_is_graceful_and_waits(h: Harness) -> None:
    await h.objects.create(PODS, NS, pod("p", node="n1"), WriteOptions())
    marked, _ = await h.objects.delete(
        PODS, NS, "p", DeleteOptions(propagation_policy="Foreground")
    )
    md = marked["metadata"]
    assert md["finalizers"] == ["foregroundDeletion"]
    assert md["deletionGracePeriodSeconds"] == 30
    # the agent's final delete shortens the grace period, the finalizer still holds it
    h.clock.now = T0 + timedelta(seconds=3)
    shortened, deleted_now = await h.objects.delete(
        PODS, NS, "p", DeleteOptions(grace_period_seconds=0)
    )
    assert not deleted_now
    assert shortened["metadata"]["deletionGracePeriodSeconds"] == 0
    assert shortened["metadata"]["deletionTimestamp"] == format_time(T0)
    body = editable(shortened)
    body["metadata"]["finalizers"] = []
    await h.objects.update(PODS, NS, "p", body, WriteOptions())
    assert await h.objects.try_get(PODS, NS, "p") is None


async def test_dry_run_delete_with_policy_persists_nothing(h: Harness) -> None:
    created = await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    preview, deleted_now = await h.objects.delete(
        CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Orphan", dry_run=True)
    )
    assert not deleted_now and preview["metadata"]["finalizers"] == ["orphan"]
    assert await h.objects.get(CONFIGMAPS, NS, "cfg") == created


async def test_delete_rejects_unknown_propagation_policy(h: Harness) -> None:
    await h.objects.create(CONFIGMAPS, NS, configmap("cfg"), WriteOptions())
    with pytest.raises(ApiError) as exc:
        await h.objects.delete(CONFIGMAPS, NS, "cfg", DeleteOptions(propagation_policy="Bogus"))
    assert (exc.value.code, exc.value.reason) == (422, "Invalid")
    assert exc.value.message == (
        'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
        '"Bogus": supported values: "Foreground", "Background", "Orphan", "nil"'
    )
    with pytest.raises(ApiError) as exc:
        await h.objects.delete(
            CONFIGMAPS,
            NS,
            "cfg",
            DeleteOptions(propagation_policy="Orphan", orphan_dependents=True),
        )
    assert exc.value.code == 422
    assert "orphanDependents and deletionPropagation cannot be both set" in exc.value.message
    assert await h.objects.try_get(CONFIGMAPS, NS, "cfg") is not None


# -- guarded_update: system writes without validation or strategy -----------------------------

SECRETS = builtin_kind("", "v1", "secrets")


class _Reverser:
    """A toy cipher: stored secret bytes are reversed behind a marker."""

    def encrypt(self, storage_key: str, plaintext: bytes) -> bytes:
        return b"enc:" + plaintext[::-1]

    def decrypt(self, storage_key: str, stored: bytes) -> bytes:
        assert stored.startswith(b"enc:")
        return stored[4:][::-1]


def _bind(node: str) -> Any:
    def mutate(obj: dict[str, Any]) -> None:
        obj["spec"]["nodeName"] = node
        obj["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]

    return mutate


async def test_guarded_update_skips_validation_and_strategy(h: Harness) -> None:
    created = await h.objects.create(PODS, NS, pod("web"), WriteOptions())
    # a normal update may not set the immutable spec.nodeName ...
    with pytest.raises(ApiError) as exc:
        moved = copy.deepcopy(created)
        moved["spec"]["nodeName"] = "n1"
        await h.objects.update(PODS, NS, "web", moved, WriteOptions())
    assert exc.value.code == 422
    h.writes.clear()
    # ... a guarded system write sets it and a status condition in one write
    bound = await h.objects.guarded_update(PODS, NS, "web", _bind("n1"))
    assert bound["spec"]["nodeName"] == "n1"
    assert bound["status"]["conditions"] == [{"type": "PodScheduled", "status": "True"}]
    assert int(bound["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert await h.objects.get(PODS, NS, "web") == bound
    assert h.writes == [("pods", "web", bound["metadata"]["resourceVersion"], False)]


async def test_guarded_update_keeps_generation_and_identity(h: Harness) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            },
        },
    }
    created = await h.objects.create(DEPLOYMENTS, NS, body, WriteOptions())

    def mutate(obj: dict[str, Any]) -> None:
        obj["spec"]["replicas"] = 7
        obj["metadata"]["uid"] = "forged"
        obj["metadata"]["name"] = "other"

    updated = await h.objects.guarded_update(DEPLOYMENTS, NS, "web", mutate)
    md = updated["metadata"]
    assert updated["spec"]["replicas"] == 7
    assert md["generation"] == created["metadata"]["generation"]  # no strategy ran
    assert (md["name"], md["uid"]) == ("web", created["metadata"]["uid"])


async def test_guarded_update_preconditions_and_missing_object(h: Harness) -> None:
    created = await h.objects.create(PODS, NS, pod("web"), WriteOptions())
    with pytest.raises(ApiError) as exc:
        await h.objects.guarded_update(PODS, NS, "web", _bind("n1"), expected_uid="nope")
    assert (exc.value.code, exc.value.reason) == (409, "Conflict")
    assert exc.value.message == (
        'Operation cannot be fulfilled on pods "web": Precondition failed: UID in precondition: '
        f"nope, UID in object meta: {created['metadata']['uid']}"
    )
    with pytest.raises(ApiError) as exc:
        await h.objects.guarded_update(PODS, NS, "web", _bind("n1"), expected_rv="1000")
    assert exc.value.code == 409 and "ResourceVersion in precondition: 1000" in exc.value.message
    with pytest.raises(ApiError) as exc:
        await h.objects.guarded_update(PODS, NS, "gone", _bind("n1"))
    assert (exc.value.code, exc.value.message) == (404, 'pods "gone" not found')
    assert await h.objects.get(PODS, NS, "web") == created


async def test_guarded_update_retries_after_a_concurrent_write(h: Harness) -> None:
    created = await h.objects.create(PODS, NS, pod("web"), WriteOptions())
    calls = 0

    def mutate(obj: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        obj["spec"]["nodeName"] = "n1"

    async def relabel(obj: dict[str, Any] | None) -> dict[str, Any] | None:
        assert obj is not None
        obj["metadata"]["labels"] = {"changed": "yes"}
        return obj

    await h.objects.modify(PODS, NS, "web", relabel, WriteOptions())
    # the stale copy loses the race, the re-read one wins and keeps the other writer's change
    bound = await h.objects.guarded_update(
        PODS, NS, "web", mutate, expected_uid=created["metadata"]["uid"], current=created
    )
    assert calls == 2
    assert bound["metadata"]["labels"] == {"changed": "yes"}
    assert bound["spec"]["nodeName"] == "n1"


async def test_guarded_update_refusal_unchanged_and_dry_run_write_nothing(h: Harness) -> None:
    created = await h.objects.create(PODS, NS, pod("web"), WriteOptions())
    revision = h.store.revision

    def refuse(obj: dict[str, Any]) -> None:
        obj["spec"]["nodeName"] = "n1"
        raise ApiError(409, "Conflict", "no")

    with pytest.raises(ApiError):
        await h.objects.guarded_update(PODS, NS, "web", refuse)
    assert await h.objects.guarded_update(PODS, NS, "web", lambda obj: None) == created
    preview = await h.objects.guarded_update(PODS, NS, "web", _bind("n1"), dry_run=True)
    assert preview["spec"]["nodeName"] == "n1"
    assert h.store.revision == revision
    assert await h.objects.get(PODS, NS, "web") == created


async def test_guarded_update_encrypts_like_every_write() -> None:
    store = await datastore.Datastore.open("sqlite://")
    try:
        objects = ObjectStore(store, cipher=_Reverser(), namespace_lifecycle=False)
        body = {"metadata": {"name": "s"}, "data": {"k": "YQ=="}}
        await objects.create(SECRETS, NS, body, WriteOptions())

        def rotate(obj: dict[str, Any]) -> None:
            obj["data"]["k"] = "Yg=="

        updated = await objects.guarded_update(SECRETS, NS, "s", rotate)
        kv = await store.get("/registry/core/secrets/default/s")
        assert kv is not None and kv.value.startswith(b"enc:") and b"Yg==" not in kv.value
        assert (await objects.get(SECRETS, NS, "s")) == updated
        assert updated["data"] == {"k": "Yg=="}
    finally:
        await store.close()


# -- namespace lifecycle: creates need a live namespace ---------------------------------------


@pytest.fixture
async def live() -> AsyncIterator[ObjectStore]:
    """An ObjectStore with namespace lifecycle on (the default) and a namespace "team"."""
    store = await datastore.Datastore.open("sqlite://")
    objects = ObjectStore(store, clock=lambda: T0)
    await objects.create(NAMESPACES, "", {"metadata": {"name": "team"}}, WriteOptions())
    yield objects
    await store.close()


def test_namespace_key_prefix_matches_the_store() -> None:
    assert key_prefix(NAMESPACES) == NAMESPACES_PREFIX


async def test_create_in_missing_namespace_is_not_found(live: ObjectStore) -> None:
    revision = live.datastore.revision
    for dry_run in (False, True):
        with pytest.raises(ApiError) as exc:
            await live.create(CONFIGMAPS, "nope", configmap("cfg"), WriteOptions(dry_run=dry_run))
        assert (exc.value.code, exc.value.reason) == (404, "NotFound")
        assert exc.value.message == 'namespaces "nope" not found'
        assert exc.value.details == {"name": "nope", "kind": "namespaces"}
    # create through PUT and apply (update with allow_create, modify) is refused the same way
    with pytest.raises(ApiError) as exc:
        await live.update(
            CONFIGMAPS, "nope", "cfg", configmap("cfg"), WriteOptions(), allow_create=True
        )
    assert exc.value.code == 404

    async def make(obj: dict[str, Any] | None) -> dict[str, Any] | None:
        return configmap("cfg")

    with pytest.raises(ApiError) as exc:
        await live.modify(CONFIGMAPS, "nope", "cfg", make, WriteOptions())
    assert exc.value.code == 404
    assert live.datastore.revision == revision
    # cluster-scoped kinds need no namespace; an active namespace takes content
    await live.create(NAMESPACES, "", {"metadata": {"name": "other"}}, WriteOptions())
    await live.create(CONFIGMAPS, "team", configmap("cfg"), WriteOptions())


async def test_create_in_terminating_namespace_is_forbidden(live: ObjectStore) -> None:
    await live.create(CONFIGMAPS, "team", configmap("old"), WriteOptions())
    deleting, deleted_now = await live.delete(NAMESPACES, "", "team", DeleteOptions())
    assert not deleted_now and deleting["status"]["phase"] == "Terminating"
    revision = live.datastore.revision
    with pytest.raises(ApiError) as exc:
        await live.create(
            DEPLOYMENTS, "team", {"metadata": {"generateName": "web-"}}, WriteOptions()
        )
    assert (exc.value.code, exc.value.reason) == (403, "Forbidden")
    assert exc.value.message == (
        'deployments.apps "web-" is forbidden: unable to create new content in namespace team '
        "because it is being terminated"
    )
    assert exc.value.details == {
        "name": "web-",
        "kind": "deployments",
        "group": "apps",
        "causes": [
            {
                "reason": "NamespaceTerminating",
                "message": "namespace team is being terminated",
                "field": "metadata.namespace",
            }
        ],
    }
    # events are not exempt (as upstream); existing content can still be updated and deleted
    event = {
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "ConfigMap", "name": "old", "namespace": "team"},
        "reason": "Test",
        "message": "m",
    }
    with pytest.raises(ApiError) as exc:
        await live.create(builtin_kind("", "v1", "events"), "team", event, WriteOptions())
    assert exc.value.code == 403
    assert live.datastore.revision == revision
    old = await live.get(CONFIGMAPS, "team", "old")
    old["data"] = {"k": "v"}
    await live.update(CONFIGMAPS, "team", "old", old, WriteOptions())
    await live.delete(CONFIGMAPS, "team", "old", DeleteOptions())
