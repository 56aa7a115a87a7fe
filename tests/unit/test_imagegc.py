"""Image GC (thresholds, minimum age, in-use and pinned images, least recently used first) and
container GC (the newest dead container per pod container kept, none for gone pods) against
a fake libpod."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent import labels
from agent.containergc import ContainerGC, evictable
from agent.imagegc import DiskUsage, ImageGC
from agent.podman.client import PodmanError

GB = 1 << 30


class FakePodman:
    """Images and containers in memory; removing an image frees its size on the fake disk."""

    def __init__(self, images: dict[str, int], containers: list[dict[str, Any]]) -> None:
        self.images = images
        self.containers = containers
        self.used = 0
        self.removed: list[str] = []

    async def image_list(self) -> list[dict]:
        return [{"Id": i, "Size": size, "Names": [f"{i}:1"]} for i, size in self.images.items()]

    async def container_list(self, filters: Mapping[str, list[str]] | None = None) -> list[dict]:
        wanted = dict(f.split("=", 1) for f in (filters or {}).get("label", []))
        return [
            c
            for c in self.containers
            if all((c.get("Labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    async def image_remove(self, name: str, force: bool = False) -> None:
        if name == "busy":
            raise PodmanError(409, "image is in use by a container")
        self.used -= self.images.pop(name)
        self.removed.append(name)

    async def container_remove(self, name: str, force: bool = False) -> None:
        self.containers = [c for c in self.containers if c["Id"] != name]
        self.removed.append(name)


def _gc(podman: FakePodman, clock: list[float], **kw: Any) -> ImageGC:
    podman.used = sum(podman.images.values()) + kw.pop("other", 0)
    return ImageGC(
        podman,
        Path("/storage"),
        clock=lambda: clock[0],
        usage=lambda _: DiskUsage(100 * GB, 100 * GB - podman.used),
        **kw,
    )


async def test_no_gc_below_the_high_threshold() -> None:
    podman = FakePodman({"a": 10 * GB}, [])
    clock = [1000.0]
    gc = _gc(podman, clock, other=74 * GB)  # 84 % used
    await gc.collect()
    clock[0] += 1000
    result = await gc.collect()
    assert (result.wanted, result.removed) == (0, [])


async def test_gc_frees_down_to_the_low_threshold_oldest_unused_first() -> None:
    images = {"in-use": 5 * GB, "old": 4 * GB, "older": 3 * GB, "pinned": 9 * GB}
    podman = FakePodman(images, [{"Id": "c1", "ImageID": "in-use", "State": "exited"}])
    clock = [1000.0]
    gc = _gc(podman, clock, other=68 * GB, pinned=lambda: {"pinned:1"})
    await gc.detect()  # all seen at t=1000
    podman.containers.append({"Id": "c2", "ImageID": "old", "State": "running"})
    podman.images["new"] = 2 * GB
    podman.used += 2 * GB  # now 91 % used
    clock[0] += 100
    await gc.detect()  # "old" used and "new" first seen at t=1100
    podman.containers.pop()
    clock[0] += 100
    result = await gc.collect()  # at t=1200: "new" was first seen < 2 min ago
    # 91 % used, 80 % wanted: 11 GB to free; never-used "older" first, then "old"
    assert result.wanted == 11 * GB
    assert result.removed == ["older", "old"]
    assert result.freed == 7 * GB and result.short
    assert set(podman.images) == {"in-use", "new", "pinned"}


async def test_an_image_taken_into_use_meanwhile_is_kept() -> None:
    podman = FakePodman({"busy": 10 * GB, "idle": 10 * GB}, [])
    clock = [0.0]
    gc = _gc(podman, clock, other=70 * GB)
    await gc.detect()
    clock[0] = 500
    result = await gc.collect()
    assert result.removed == ["idle"] and not result.short


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        _gc(FakePodman({}, []), [0.0], high_percent=70, low_percent=80)


def _ctr(cid: str, uid: str, name: str, attempt: int, state: str = "exited") -> dict[str, Any]:
    return {
        "Id": cid,
        "State": state,
        "Labels": {
            labels.MANAGED_BY: "n1",
            labels.POD_UID: uid,
            labels.CONTAINER_NAME: name,
            labels.CONTAINER_ATTEMPT: str(attempt),
        },
    }


def test_dead_containers_beyond_one_per_container_are_evictable() -> None:
    containers = [
        _ctr("a0", "u1", "app", 0),
        _ctr("a2", "u1", "app", 2, "running"),
        _ctr("a1", "u1", "app", 1),
        _ctr("s0", "u1", "side", 0),
        _ctr("g0", "gone", "app", 0),
        _ctr("g1", "gone", "app", 1),
        {"Id": "infra", "State": "exited", "Labels": {labels.POD_UID: "gone"}},
    ]
    assert sorted(evictable(containers, {"u1"}, 1)) == ["a0", "g0", "g1"]


async def test_container_gc_removes_only_this_nodes_containers() -> None:
    other = _ctr("x0", "u1", "app", 0)
    other["Labels"][labels.MANAGED_BY] = "n2"
    podman = FakePodman({}, [_ctr("a0", "u1", "app", 0), _ctr("a1", "u1", "app", 1), other])
    gc = ContainerGC(podman, "n1", active_pods=lambda: {"u1"})
    assert await gc.collect() == ["a0"]
    assert [c["Id"] for c in podman.containers] == ["a1", "x0"]
