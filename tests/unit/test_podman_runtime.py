"""The pure parts of the agent's runtime layer: stream frames, the registry auth header,
the generated Podman configuration, the runtime choice and the airgap import's bookkeeping."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
from pathlib import Path

import pytest

from agent import images
from agent.podman import service
from agent.podman.client import PodmanError, registry_auth_header
from agent.podman.frames import read_frames


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_frames_split_streams_and_end_on_a_boundary() -> None:
    data = struct.pack(">BxxxI", 1, 6) + b"hello\n" + struct.pack(">BxxxI", 2, 0)
    data += struct.pack(">BxxxI", 2, 4) + b"err\n"
    assert [f async for f in read_frames(_reader(data))] == [
        (1, b"hello\n"),
        (2, b""),
        (2, b"err\n"),
    ]


async def test_a_stream_cut_inside_a_frame_is_an_error() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        _ = [f async for f in read_frames(_reader(struct.pack(">BxxxI", 1, 6) + b"hel"))]


def test_registry_auth_header_is_urlsafe_base64_json() -> None:
    header = registry_auth_header("u", "p?>>", "registry.local:5000")
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "username": "u",
        "password": "p?>>",
        "serveraddress": "registry.local:5000",
    }


def test_podman_error_carries_status_and_message() -> None:
    e = PodmanError(404, "no such container")
    assert (e.status, e.message, str(e)) == (
        404,
        "no such container",
        "podman: 404: no such container",
    )


def test_container_ulimits_stay_within_the_hard_limits() -> None:
    limits = service.container_ulimits()
    for name, rlimit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(rlimit)[1]
        assert limits[name] > 0 and (hard == resource.RLIM_INFINITY or limits[name] <= hard)
    assert limits["nproc"] <= 32_768


def test_generated_configuration_keeps_everything_under_the_agent_dir(tmp_path: Path) -> None:
    import tomllib

    layout = service.Layout(tmp_path / "agent")
    conf = tomllib.loads(service.containers_conf(layout, "runc", {"nofile": 20, "nproc": 30}))
    assert conf["containers"]["default_ulimits"] == ["nofile=20:20", "nproc=30:30"]
    assert conf["engine"]["runtime"] == "runc"
    assert conf["engine"]["cgroup_manager"] == "cgroupfs"
    assert conf["engine"]["events_logger"] == "file"
    storage = tomllib.loads(service.storage_conf(layout))["storage"]
    paths = [
        conf["engine"]["events_logfile_path"],
        conf["engine"]["tmp_dir"],
        conf["engine"]["volume_path"],
        conf["network"]["network_config_dir"],
        storage["graphroot"],
        storage["runroot"],
    ]
    assert all(p.startswith(f"{tmp_path}/agent/podman/") for p in paths)
    cmd = service.PodmanService(tmp_path / "agent", command_prefix=["wrap"]).command()
    assert cmd[:2] == ["wrap", "podman"]
    assert cmd[-1] == f"unix://{tmp_path}/agent/podman.sock"
    assert all(cmd[i + 1].startswith(f"{tmp_path}/agent/podman/") for i in (2, 4, 6, 8, 10))


def _fake_runtime(directory: Path, name: str, code: int) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\nexit {code}\n")
    path.chmod(0o755)


async def test_auto_runtime_falls_back_to_runc_when_crun_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runtime(tmp_path, "crun", 1)
    _fake_runtime(tmp_path, "runc", 0)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert await service.choose_runtime("auto") == "runc"
    (tmp_path / "crun").unlink()
    _fake_runtime(tmp_path, "crun", 0)
    assert await service.choose_runtime("auto") == "crun"
    assert await service.choose_runtime("runc") == "runc"


async def test_no_working_runtime_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runtime(tmp_path, "runc", 1)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(service.PodmanServiceError, match="no working OCI runtime"):
        await service.choose_runtime("auto")
    with pytest.raises(service.PodmanServiceError, match="unknown container runtime"):
        await service.choose_runtime("kata")


class _FakeImages:
    """Stands in for PodmanClient's image calls: an in-memory store."""

    def __init__(self) -> None:
        self.store: set[str] = set()
        self.loads: list[str] = []

    async def image_load(self, path: Path) -> list[str]:
        self.loads.append(path.name)
        if path.name.startswith("bad"):
            raise PodmanError(500, "payload does not match any of the supported image formats")
        names = [f"img/{path.name.split('.')[0]}:1"]
        self.store.update(names)
        return names

    async def image_exists(self, name: str) -> bool:
        return name in self.store


async def test_import_directory_skips_what_it_loaded_until_it_changes(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(b"a")
    (tmp_path / "b.tar.gz").write_bytes(b"b")
    (tmp_path / "bad.tar").write_bytes(b"bad")
    (tmp_path / "notes.txt").write_text("not an image")
    client = _FakeImages()
    first = await images.import_directory(client, tmp_path)
    assert [(r.path.name, r.names, r.skipped, bool(r.error)) for r in first] == [
        ("a.tar", ["img/a:1"], False, False),
        ("b.tar.gz", ["img/b:1"], False, False),
        ("bad.tar", [], False, True),
    ]
    client.loads.clear()
    await images.import_directory(client, tmp_path)
    assert client.loads == ["bad.tar"]  # failures are retried, loaded files skipped

    client.loads.clear()
    client.store.discard("img/a:1")  # removed from the store: imported again
    (tmp_path / "b.tar.gz").write_bytes(b"bb")  # changed: imported again
    os.utime(tmp_path / "b.tar.gz", ns=(1, 1))
    (tmp_path / "bad.tar").unlink()
    await images.import_directory(client, tmp_path)
    assert client.loads == ["a.tar", "b.tar.gz"]
    state = json.loads((tmp_path / ".imported.json").read_text())
    assert sorted(state) == ["a.tar", "b.tar.gz"]


async def test_import_directory_of_a_missing_directory_does_nothing(tmp_path: Path) -> None:
    assert await images.import_directory(_FakeImages(), tmp_path / "none") == []
