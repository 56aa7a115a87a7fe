"""Tests of watch event translation (server.apiserver.watch.translate) and of the event views
shared by every watch of the same events (server.storage.eventmemo)."""

from __future__ import annotations

import asyncio
import copy
import gc
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

import datastore
from edgek.kinds import Kind
from edgek.selectors import allowed_fields, parse_field_selector, parse_label_selector
from server.apiserver import tables
from server.apiserver.codec import dumps
from server.apiserver.watch import translate
from server.storage.eventmemo import EventMemo, EventView
from server.storage.objectstore import (
    DeleteOptions,
    ListOptions,
    ObjectStore,
    WriteOptions,
    decode,
    encode,
    key_prefix,
    object_key,
)
from tests.helpers import builtin_kind

CONFIGMAPS = builtin_kind("", "v1", "configmaps")
PODS = builtin_kind("", "v1", "pods")
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
    store = await datastore.Datastore.open("sqlite://")
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


# -- shared event views -----------------------------------------------------------------------


class CountingDecoder:
    """The object store's decoder, counting calls per (key, revision)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, kind: Kind, kv: datastore.KeyValue) -> dict[str, Any]:
        self.calls.append((kv.key, kv.mod_revision))
        return decode(kind, kv)


@pytest.fixture
async def objects() -> AsyncIterator[ObjectStore]:
    store = await datastore.Datastore.open("sqlite://")
    try:
        yield ObjectStore(store, namespace_lifecycle=False)
    finally:
        await store.close()


DB = ListOptions(label_selector=parse_label_selector("app=db"))
NAME_A = ListOptions(
    field_selector=parse_field_selector("metadata.name=a", allowed_fields("", "configmaps"))
)


def test_one_view_serves_watches_with_different_selectors() -> None:
    """web -> db: leaves one selection, enters another, is modified for the rest; each
    object decoded once."""
    counting = CountingDecoder()
    before = configmap("a", "web")
    after = configmap("a", "db")
    view = EventView(CONFIGMAPS, put(after, 11, before, 10), counting)
    results = {
        "web": out(view.translate(WEB, True)),
        "db": out(view.translate(DB, True)),
        "name": out(view.translate(NAME_A, True)),
        "all": out(view.translate(ListOptions(), False)),
        "web again": out(view.translate(WEB, True)),
    }
    assert results == {
        "web": ("DELETED", "a", {"app": "web"}, "11"),
        "db": ("ADDED", "a", {"app": "db"}, "11"),
        "name": ("MODIFIED", "a", {"app": "db"}, "11"),
        "all": ("MODIFIED", "a", {"app": "db"}, "11"),
        "web again": ("DELETED", "a", {"app": "web"}, "11"),
    }
    assert sorted(counting.calls) == [(view.event.kv.key, 10), (view.event.kv.key, 11)]
    # the object leaving the selection is a copy: the previous object keeps its revision
    assert view.prev["metadata"]["resourceVersion"] == "10"
    assert view.left is not view.prev and view.left["metadata"] is not view.prev["metadata"]


@pytest.mark.parametrize(
    ("before", "after", "opts", "expected"),
    [
        (None, "web", WEB, "ADDED"),
        (None, "db", WEB, None),
        ("web", "web", WEB, "MODIFIED"),
        ("db", "web", WEB, "ADDED"),
        ("web", "db", WEB, "DELETED"),
        ("db", "db", WEB, None),
        ("web", "db", NAME_A, "MODIFIED"),
    ],
)
def test_view_translates_like_a_private_decode(
    objects: ObjectStore,
    before: str | None,
    after: str,
    opts: ListOptions,
    expected: str | None,
) -> None:
    """A memo's shared view gives each watch what translating on its own gives it."""
    new = configmap("a", after)
    ev = put(new, 11) if before is None else put(new, 11, configmap("a", before), 10)
    memo = EventMemo(objects)
    shared = memo.view(CONFIGMAPS, ev).translate(opts, True)
    assert shared == translate(CONFIGMAPS, ev, opts, True)
    assert (shared[0] if shared else None) == expected


def test_event_lines_are_encoded_once_per_type_and_object() -> None:
    view = EventView(CONFIGMAPS, put(configmap("a", "db"), 11, configmap("a", "web"), 10), decode)
    modified = view.translate(ListOptions(), False)
    left = view.translate(WEB, True)
    assert modified is not None and left is not None
    line = view.line(*modified)
    assert line == dumps({"type": "MODIFIED", "object": view.obj}) + b"\n"
    assert view.line(*modified) is line
    assert view.line(*left) == dumps({"type": "DELETED", "object": view.left}) + b"\n"
    assert view.line("DELETED", view.obj) != view.line(*left)


def test_consumers_do_not_modify_shared_objects() -> None:
    """Selectors, tables and metadata-only views read the shared objects without writing."""
    pod: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": NS, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running"},
    }
    moved = copy.deepcopy(pod)
    moved["spec"]["nodeName"] = "n2"
    moved["metadata"]["labels"] = {"app": "db"}

    def pod_kv(obj: dict[str, Any], revision: int) -> datastore.KeyValue:
        return datastore.KeyValue(object_key(PODS, NS, "p"), encode(PODS, obj), 1, revision)

    view = EventView(PODS, datastore.Event("PUT", pod_kv(moved, 3), pod_kv(pod, 2)), decode)
    fields = allowed_fields("", "pods")
    selections = [
        ListOptions(field_selector=parse_field_selector("spec.nodeName=n1", fields)),
        ListOptions(field_selector=parse_field_selector("spec.nodeName=n2", fields)),
        ListOptions(field_selector=parse_field_selector("status.phase=Running", fields)),
        WEB,
    ]
    outs = [view.translate(o, True) for o in selections]
    shown = {id(o[1]): o[1] for o in outs if o is not None}
    assert {o[0] for o in outs if o is not None} == {"DELETED", "ADDED", "MODIFIED"}
    snapshot = {k: copy.deepcopy(v) for k, v in shown.items()}
    prev = copy.deepcopy(view.prev)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for obj in shown.values():
        for include in ("Object", "Metadata", "None"):
            tables.table("", "pods", [obj], now=now, include_object=include)
        view.line("MODIFIED", obj)
        for o in selections:
            view.translate(o, True)
    assert shown == snapshot
    assert view.prev == prev


def test_memo_shares_views_by_kind_key_and_revision(objects: ObjectStore) -> None:
    """Equal events (a live one and the same one re-read from the log) share one view;
    another kind view or another revision does not; the memo stays bounded."""
    memo = EventMemo(objects, size=3)
    live = put(configmap("a", "web"), 5)
    from_log = put(configmap("a", "web"), 5)
    assert live is not from_log
    first = memo.view(CONFIGMAPS, live)
    assert memo.view(CONFIGMAPS, from_log) is first
    assert memo.view(PODS, live) is not first
    assert (
        memo.view(CONFIGMAPS, put(configmap("a", "db"), 6, configmap("a", "web"), 5)) is not first
    )
    memo.view(CONFIGMAPS, put(configmap("b", "web"), 7))
    assert len(memo) == 3
    # the oldest view was dropped: a late watch decodes again, to the same result
    again = memo.view(CONFIGMAPS, live)
    assert again is not first
    assert again.translate(WEB, True) == first.translate(WEB, True)


class XorCipher:
    """A toy encryption at rest, enough to tell a decrypted value from a stored one."""

    def encrypt(self, storage_key: str, plaintext: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, storage_key: str, stored: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in stored)


async def test_memo_decrypts_secrets_with_the_store_decoder() -> None:
    store = await datastore.Datastore.open("sqlite://")
    try:
        objects = ObjectStore(store, namespace_lifecycle=False, cipher=XorCipher())
        secrets = builtin_kind("", "v1", "secrets")
        watcher = store.watch(key_prefix(secrets, NS))
        body = {"metadata": {"name": "s", "namespace": NS}, "data": {"k": "dg=="}}
        created = await objects.create(secrets, NS, body, WriteOptions())
        ev = await asyncio.wait_for(watcher.__anext__(), 5.0)
        watcher.close()
        assert ev.kv.value != encode(secrets, created)  # stored encrypted
        memo = EventMemo(objects)
        result = memo.view(secrets, ev).translate(ListOptions(), False)
        assert result is not None and result[0] == "ADDED"
        assert result[1] == created
    finally:
        await store.close()


async def test_no_module_state_keeps_a_memo_or_its_object_store_alive() -> None:
    store = await datastore.Datastore.open("sqlite://")
    try:
        objects = ObjectStore(store, namespace_lifecycle=False)
        memo = EventMemo(objects)
        memo.view(CONFIGMAPS, put(configmap("a", "web"), 5)).translate(WEB, True)
        alive = weakref.ref(objects)
        del objects, memo
        gc.collect()
        assert alive() is None
    finally:
        await store.close()


def test_memo_takes_the_previous_object_from_the_event_that_wrote_it(
    objects: ObjectStore,
) -> None:
    web, db = configmap("a", "web"), configmap("a", "db")
    memo = EventMemo(objects, size=3)
    created = memo.view(CONFIGMAPS, put(web, 10))
    changed = memo.view(CONFIGMAPS, put(db, 11, web, 10))
    assert changed.translate(WEB, True) == ("DELETED", changed.left)
    assert changed.prev is created.obj  # not decoded again
    memo.view(CONFIGMAPS, put(configmap("b", "web"), 12))
    again = memo.view(CONFIGMAPS, put(web, 13, db, 11))  # the creation's view is dropped
    assert again.prev is changed.obj
    dropped = EventMemo(objects, size=1)
    dropped.view(CONFIGMAPS, put(web, 10))
    alone = dropped.view(CONFIGMAPS, put(db, 11, web, 10))
    assert alone.prev == created.obj and alone.prev is not created.obj  # decoded itself
