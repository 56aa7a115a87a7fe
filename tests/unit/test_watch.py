"""Tests of watch event translation (server.apiserver.watch.translate)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

import datastore
from edgek.kinds import Kind, Registry
from edgek.selectors import allowed_fields, parse_field_selector, parse_label_selector
from server.apiserver.watch import translate
from server.registry.store import (
    DeleteOptions,
    ListOptions,
    ObjectStore,
    WriteOptions,
    encode,
    key_prefix,
    object_key,
)


def _kind(group: str, version: str, resource: str) -> Kind:
    found = Registry().by_resource(group, version, resource)
    assert found is not None, resource
    return found


CONFIGMAPS = _kind("", "v1", "configmaps")
PODS = _kind("", "v1", "pods")
NS = "default"
WEB = ListOptions(label_selector=parse_label_selector("app=web"))


def configmap(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "data": {},
    }


def kv(obj: dict[str, Any], created: int, modified: int) -> datastore.KeyValue:
    key = object_key(CONFIGMAPS, NS, obj["metadata"]["name"])
    return datastore.KeyValue(key, encode(CONFIGMAPS, obj), created, modified)


def put(
    obj: dict[str, Any], revision: int, prev: dict[str, Any] | None = None, prev_revision: int = 0
) -> datastore.Event:
    """A PUT event: a create when ``prev`` is None, else an update of ``prev``."""
    if prev is None:
        return datastore.Event("PUT", kv(obj, revision, revision), None)
    created = prev_revision
    return datastore.Event("PUT", kv(obj, created, revision), kv(prev, created, prev_revision))


def delete(obj: dict[str, Any], revision: int, prev_revision: int) -> datastore.Event:
    return datastore.Event(
        "DELETE", kv(obj, prev_revision, revision), kv(obj, prev_revision, prev_revision)
    )


def out(result: tuple[str, dict[str, Any]] | None) -> tuple[str, str, dict[str, str], str] | None:
    """(type, name, labels, resourceVersion) of a translated event."""
    if result is None:
        return None
    md = result[1]["metadata"]
    return result[0], md["name"], md.get("labels", {}), md["resourceVersion"]


# -- without selectors ------------------------------------------------------------------------


def test_unfiltered_events() -> None:
    web = configmap("a", "web")
    db = configmap("a", "db")
    assert out(translate(CONFIGMAPS, put(web, 5), ListOptions(), False)) == (
        "ADDED",
        "a",
        {"app": "web"},
        "5",
    )
    assert out(translate(CONFIGMAPS, put(db, 6, web, 5), ListOptions(), False)) == (
        "MODIFIED",
        "a",
        {"app": "db"},
        "6",
    )
    assert out(translate(CONFIGMAPS, delete(db, 7, 6), ListOptions(), False)) == (
        "DELETED",
        "a",
        {"app": "db"},
        "7",
    )


def test_unfiltered_ignores_the_options() -> None:
    """Only ``filtered`` turns selection on (the server passes it when a selector is set)."""
    db = configmap("a", "db")
    result = translate(CONFIGMAPS, put(db, 3), WEB, False)
    assert out(result) == ("ADDED", "a", {"app": "db"}, "3")


def test_translated_object_is_the_stored_one() -> None:
    web = configmap("a", "web")
    web["data"] = {"k": "v"}
    result = translate(CONFIGMAPS, put(web, 9), ListOptions(), False)
    assert result is not None
    expected = copy.deepcopy(web)
    expected["metadata"]["resourceVersion"] = "9"
    assert result[1] == expected


# -- with selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, "web", "ADDED"),
        (None, "db", None),
        ("web", "web", "MODIFIED"),
        ("db", "web", "ADDED"),
        ("web", "db", "DELETED"),
        ("db", "db", None),
    ],
)
def test_label_selector_puts(before: str | None, after: str, expected: str | None) -> None:
    new = configmap("a", after)
    new["data"] = {"n": "2"}
    ev = put(new, 11) if before is None else put(new, 11, configmap("a", before), 10)
    result = translate(CONFIGMAPS, ev, WEB, True)
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert result[0] == expected
        assert result[1]["metadata"]["resourceVersion"] == "11"


@pytest.mark.parametrize(("app", "expected"), [("web", "DELETED"), ("db", None)])
def test_label_selector_deletes(app: str, expected: str | None) -> None:
    result = translate(CONFIGMAPS, delete(configmap("a", app), 12, 10), WEB, True)
    if expected is None:
        assert result is None
    else:
        assert out(result) == ("DELETED", "a", {"app": app}, "12")


def test_leaving_the_selector_reports_the_previous_object() -> None:
    result = translate(
        CONFIGMAPS, put(configmap("a", "db"), 11, configmap("a", "web"), 10), WEB, True
    )
    assert out(result) == ("DELETED", "a", {"app": "web"}, "11")


def test_field_selector_on_name() -> None:
    opts = ListOptions(
        field_selector=parse_field_selector("metadata.name=a", allowed_fields("", "configmaps"))
    )
    assert out(translate(CONFIGMAPS, put(configmap("a", "x"), 2), opts, True)) == (
        "ADDED",
        "a",
        {"app": "x"},
        "2",
    )
    assert translate(CONFIGMAPS, put(configmap("b", "x"), 3), opts, True) is None
    assert translate(CONFIGMAPS, delete(configmap("b", "x"), 4, 3), opts, True) is None


def test_field_selector_on_pod_phase() -> None:
    opts = ListOptions(
        field_selector=parse_field_selector("status.phase=Running", allowed_fields("", "pods"))
    )

    def pod(phase: str) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": NS}, "status": {"phase": phase}}

    def pod_kv(phase: str, revision: int) -> datastore.KeyValue:
        return datastore.KeyValue(object_key(PODS, NS, "p"), encode(PODS, pod(phase)), 1, revision)

    started = datastore.Event("PUT", pod_kv("Running", 2), pod_kv("Pending", 1))
    finished = datastore.Event("PUT", pod_kv("Succeeded", 3), pod_kv("Running", 2))
    result = translate(PODS, started, opts, True)
    assert result is not None and result[0] == "ADDED"
    result = translate(PODS, finished, opts, True)
    assert result is not None and result[0] == "DELETED"


def test_label_and_field_selectors_together() -> None:
    opts = ListOptions(
        label_selector=parse_label_selector("app=web"),
        field_selector=parse_field_selector("metadata.name!=b", allowed_fields("", "configmaps")),
    )
    assert translate(CONFIGMAPS, put(configmap("b", "web"), 2), opts, True) is None
    result = translate(CONFIGMAPS, put(configmap("a", "web"), 3), opts, True)
    assert result is not None and result[0] == "ADDED"


# -- from a real datastore watch --------------------------------------------------------------


async def test_translate_real_datastore_events() -> None:
    store = await datastore.Store.open("sqlite://")
    try:
        objects = ObjectStore(store, namespace_lifecycle=False)
        watcher = store.watch(key_prefix(CONFIGMAPS, NS))
        a = await objects.create(CONFIGMAPS, NS, configmap("a", "web"), WriteOptions())
        b = await objects.create(CONFIGMAPS, NS, configmap("b", "db"), WriteOptions())
        b["metadata"]["labels"] = {"app": "web"}
        await objects.update(CONFIGMAPS, NS, "b", b, WriteOptions())
        a["metadata"]["labels"] = {"app": "db"}
        await objects.update(CONFIGMAPS, NS, "a", a, WriteOptions())
        await objects.delete(CONFIGMAPS, NS, "a", DeleteOptions())
        await objects.delete(CONFIGMAPS, NS, "b", DeleteOptions())

        async def take(n: int) -> list[datastore.Event]:
            events: list[datastore.Event] = []
            async for ev in watcher:
                events.append(ev)
                if len(events) == n:
                    break
            return events

        events = await asyncio.wait_for(take(6), 5.0)
        watcher.close()
        filtered = [out(translate(CONFIGMAPS, ev, WEB, True)) for ev in events]
        assert [f[:2] if f else None for f in filtered] == [
            ("ADDED", "a"),
            None,
            ("ADDED", "b"),
            ("DELETED", "a"),
            None,
            ("DELETED", "b"),
        ]
        everything = [out(translate(CONFIGMAPS, ev, ListOptions(), False)) for ev in events]
        assert [f[:2] if f else None for f in everything] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("MODIFIED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "a"),
            ("DELETED", "b"),
        ]
        revisions = [f[3] if f else None for f in everything]
        assert revisions == [str(r) for r in range(1, 7)]
    finally:
        await store.close()
