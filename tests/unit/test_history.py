"""ControllerRevision helpers: hashing, naming, ordering, creation with name collisions and
history truncation."""

from __future__ import annotations

from typing import Any

import pytest

from edgek.selectors import label_selector_from_object
from server.controllers import history
from server.storage.objectstore import WriteOptions
from tests.unit.controller_harness import Harness

NS = "default"
OWNER: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "web", "namespace": NS, "uid": "uid-1", "annotations": {"a": "b"}},
    "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
}


@pytest.mark.parametrize(
    ("data", "fnv1", "fnv1a"),
    [
        (b"", 0x811C9DC5, 0x811C9DC5),
        (b"a", 0x050C5D7E, 0xE40C292C),
        (b"foobar", 0x31F0B262, 0xBF9CF968),
    ],
)
def test_fnv_reference_vectors(data: bytes, fnv1: int, fnv1a: int) -> None:
    assert history.fnv32(data) == fnv1
    assert history.fnv32a(data) == fnv1a


def test_safe_encode_and_names() -> None:
    # digits map onto the safe alphabet by code point ('0' is 48 -> index 21)
    assert history.safe_encode("0123") == "4567"
    hash_ = history.hash_data({"x": 1})
    assert set(hash_) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert history.hash_data({"x": 1}, 1) != hash_
    assert history.hash_data({"x": 1}, None) == hash_
    assert history.revision_name("a" * 300, "h") == "a" * 223 + "-h"


def test_template_patch_round_trip() -> None:
    data = history.template_patch(OWNER)
    assert data["spec"]["template"]["$patch"] == "replace"
    assert "$patch" not in OWNER["spec"]["template"]
    assert history.revision_template({"data": data}) == OWNER["spec"]["template"]
    rev = history.new_revision(OWNER, "apps/v1", "StatefulSet", data, 4, labels={"app": "web"})
    md = rev["metadata"]
    assert md["name"] == "web-" + md["labels"][history.HISTORY_HASH_LABEL]
    assert md["labels"]["app"] == "web" and md["annotations"] == {"a": "b"}
    assert md["ownerReferences"][0]["uid"] == "uid-1" and rev["revision"] == 4


def test_sort_and_next_revision() -> None:
    def rev(name: str, number: int, created: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "creationTimestamp": created}, "revision": number}

    revs = [rev("c", 2, "t1"), rev("b", 1, "t2"), rev("a", 1, "t2"), rev("d", 1, "t0")]
    assert [r["metadata"]["name"] for r in history.sort_revisions(revs)] == ["d", "a", "b", "c"]
    assert history.next_revision(revs) == 3
    assert history.next_revision([]) == 1


async def test_create_revision_handles_collisions(harness: Harness) -> None:
    h = harness
    kind = h.kind("apps", "controllerrevisions")
    opts = WriteOptions()
    data = history.template_patch(OWNER)
    wanted = history.new_revision(OWNER, "apps/v1", "StatefulSet", data, 1, collision_count=0)
    # someone else's revision already has that name, with other data
    squatter = dict(wanted, data={"spec": {"template": {"$patch": "replace"}}})
    squatter["metadata"] = {"name": wanted["metadata"]["name"]}
    await h.objects.create(kind, NS, squatter, opts)

    created, collisions = await history.create_revision(h.objects, kind, wanted, 0, opts)
    assert collisions == 1
    assert created["metadata"]["name"] == "web-" + history.hash_data(data, 1)
    assert history.equal_revision(created, wanted)

    # creating an equal revision again returns the existing one
    again, collisions = await history.create_revision(h.objects, kind, wanted, 1, opts)
    assert collisions == 1 and again["metadata"]["uid"] == created["metadata"]["uid"]

    renumbered = await history.set_revision_number(h.objects, kind, again, 7, opts)
    assert renumbered["revision"] == 7


async def test_truncate_history_keeps_live_and_newest(harness: Harness) -> None:
    h = harness
    kind = h.kind("apps", "controllerrevisions")
    opts = WriteOptions()
    revs = []
    for i in range(1, 6):
        body = history.new_revision(OWNER, "apps/v1", "StatefulSet", {"n": i}, i)
        revs.append(await h.objects.create(kind, NS, body, opts))
    names = [r["metadata"]["name"] for r in revs]
    # revision 1 is live (a pod still runs it); keep 2 of the others
    await history.truncate_history(h.objects, kind, revs, {names[0], names[4]}, 2)
    left = {r["metadata"]["name"] for r in await h.list("apps", "controllerrevisions", NS)}
    assert left == {names[0], names[2], names[3], names[4]}
    await history.truncate_history(h.objects, kind, revs, set(), -1)  # negative: keep all
    assert len(await h.list("apps", "controllerrevisions", NS)) == 4


async def test_owned_orphans_and_adoption(harness: Harness) -> None:
    h = harness
    kind = h.kind("apps", "controllerrevisions")
    opts = WriteOptions()
    owned = history.new_revision(
        OWNER, "apps/v1", "StatefulSet", {"n": 1}, 1, labels={"app": "web"}
    )
    await h.objects.create(kind, NS, owned, opts)
    orphan = history.new_revision(
        OWNER, "apps/v1", "StatefulSet", {"n": 2}, 2, labels={"app": "web"}
    )
    orphan["metadata"].pop("ownerReferences")
    await h.objects.create(kind, NS, orphan, opts)
    other = history.new_revision(OWNER, "apps/v1", "StatefulSet", {"n": 3}, 3, labels={"app": "x"})
    other["metadata"].pop("ownerReferences")
    await h.objects.create(kind, NS, other, opts)

    cache = h.ctx.cache("apps", "controllerrevisions")
    cache.add_index(
        "owner", lambda o: [r["uid"] for r in o["metadata"].get("ownerReferences") or []]
    )
    await h.informers.start()
    await h.wait_for(lambda: len(cache) == 3, what="cache")
    assert [r["metadata"]["name"] for r in history.owned_revisions(cache, OWNER)] == [
        owned["metadata"]["name"]
    ]
    selector = label_selector_from_object({"matchLabels": {"app": "web"}})
    [found] = history.orphan_revisions(cache, OWNER, selector)
    assert found["metadata"]["name"] == orphan["metadata"]["name"]
    adopted = await history.set_controller(
        h.objects, kind, found, OWNER, "apps/v1", "StatefulSet", opts, adopt=True
    )
    assert adopted is not None and adopted["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    released = await history.set_controller(
        h.objects, kind, adopted, OWNER, "apps/v1", "StatefulSet", opts, adopt=False
    )
    assert released is None
    stored = await h.get("apps", "controllerrevisions", NS, orphan["metadata"]["name"])
    assert stored is not None and not stored["metadata"].get("ownerReferences")
