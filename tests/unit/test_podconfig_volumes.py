"""Pod volumes on disk: the atomic ``..data`` layout, modes, items, optional sources,
downward API, projected tokens and their rotation, hostPath checks, PVCs, subPath."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.podconfig.env import ContainerConfigError
from agent.podconfig.volumes import VolumeError, VolumeManager, needs_refresh, references
from tests.unit.podconfig_fakes import FakeObjects, configmap, secret, token_number

UID = "uid-1"


def pod(volumes: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": UID, "labels": {"app": "web"}},
        "spec": {"volumes": volumes, "containers": [{"name": "app"}], **spec},
    }


@pytest.fixture
def objects(tmp_path: Path) -> FakeObjects:
    return FakeObjects(
        tmp_path / "state",
        [
            configmap("cfg", {"a.conf": "A", "b.conf": "B"}),
            secret("creds", {"user": "admin"}),
            configmap("kube-root-ca.crt", {"ca.crt": "CA PEM"}),
        ],
    )


def pod_uids(pods_dir: Path) -> list[str]:
    return os.listdir(pods_dir) if pods_dir.is_dir() else []


@pytest.fixture
async def manager(tmp_path: Path, objects: FakeObjects) -> AsyncIterator[VolumeManager]:
    """A volume manager; every pod it set up is torn down at the end (tmpfs unmounted)."""
    made = VolumeManager(tmp_path / "pods", objects, "edge", clock=lambda: objects.now)
    yield made
    for uid in await asyncio.to_thread(pod_uids, made.pods_dir):
        await made.teardown(uid)


def vdir(manager: VolumeManager, plugin: str, name: str) -> Path:
    return manager.pods_dir / UID / "volumes" / plugin / name


def mounted(path: Path) -> int:
    """How many times ``path`` is a mount point."""
    return Path("/proc/self/mountinfo").read_text().count(f" {path} ")


def is_dir(path: Path) -> bool:
    return path.is_dir()


def exists(path: Path) -> bool:
    return path.exists()


def text(path: str) -> str:
    return Path(path).read_text()


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


async def test_configmap_layout_modes_and_atomic_update(
    manager: VolumeManager, objects: FakeObjects
) -> None:
    p = pod([{"name": "conf", "configMap": {"name": "cfg", "defaultMode": 0o400}}])
    await manager.setup(p)
    root = vdir(manager, "kubernetes.io~configmap", "conf")
    assert sorted(os.listdir(root))[-3:] == ["..data", "a.conf", "b.conf"]
    assert os.readlink(root / "a.conf") == "..data/a.conf"
    assert (root / "a.conf").read_text() == "A" and mode(root / "a.conf") == 0o400
    first = os.readlink(root / "..data")
    await manager.refresh(p)
    assert os.readlink(root / "..data") == first  # unchanged content: no new directory
    objects.put(configmap("cfg", {"a.conf": "A2", "c.conf": "C"}))
    await manager.refresh(p)
    assert os.readlink(root / "..data") != first
    assert (root / "a.conf").read_text() == "A2" and (root / "c.conf").read_text() == "C"
    assert not (root / "b.conf").exists() and not (root / "b.conf").is_symlink()
    assert not (root / first).exists()  # the old generation is gone
    assert [
        m.source for m in manager.mounts(p, {"volumeMounts": [{"name": "conf", "mountPath": "/c"}]})
    ] == [str(root)]


async def test_items_modes_and_missing_keys(manager: VolumeManager) -> None:
    items = [{"key": "user", "path": "sub/name", "mode": 0o600}]
    await manager.setup(pod([{"name": "s", "secret": {"secretName": "creds", "items": items}}]))
    root = vdir(manager, "kubernetes.io~secret", "s")
    assert (root / "sub" / "name").read_text() == "admin" and mode(root / "sub/name") == 0o600
    assert os.listdir(root / "..data") == ["sub"]
    bad = [{"name": "s", "secret": {"secretName": "creds", "items": [{"key": "no", "path": "x"}]}}]
    with pytest.raises(VolumeError) as info:
        await manager.setup(pod(bad))
    assert info.value.message == (
        'MountVolume.SetUp failed for volume "s" : secret references non-existent secret key: no'
    )
    with pytest.raises(VolumeError, match='configmap "gone" not found'):
        await manager.setup(pod([{"name": "c", "configMap": {"name": "gone"}}]))
    await manager.setup(pod([{"name": "c", "configMap": {"name": "gone", "optional": True}}]))
    assert os.listdir(vdir(manager, "kubernetes.io~configmap", "c") / "..data") == []


async def test_fs_group_ownership(manager: VolumeManager) -> None:
    gid = 4321
    p = pod(
        [
            {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "e", "emptyDir": {}},
        ],
        securityContext={"fsGroup": gid},
    )
    await manager.setup(p)
    file = vdir(manager, "kubernetes.io~secret", "s") / "user"
    assert mode(file) == 0o440 and file.stat().st_gid == gid
    empty = vdir(manager, "kubernetes.io~empty-dir", "e")
    assert empty.stat().st_gid == gid and mode(empty) == 0o2777


async def test_downward_api_and_projected_service_account_volume(
    manager: VolumeManager, objects: FakeObjects
) -> None:
    access: dict[str, Any] = {
        "name": "kube-api-access-x",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }
    info = {
        "name": "info",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {
                    "path": "mem",
                    "resourceFieldRef": {
                        "containerName": "app",
                        "resource": "limits.memory",
                        "divisor": "1Mi",
                    },
                },
            ]
        },
    }
    p = pod([access, info])
    p["spec"]["containers"] = [{"name": "app", "resources": {"limits": {"memory": "32Mi"}}}]
    await manager.setup(p)
    root = vdir(manager, "kubernetes.io~projected", access["name"])
    assert token_number((root / "token").read_text()) == 1
    assert (root / "ca.crt").read_text() == "CA PEM" and (root / "namespace").read_text() == "ns"
    assert objects.tokens == [(None, 3607)]
    down = vdir(manager, "kubernetes.io~downward-api", "info")
    assert (down / "labels").read_text() == 'app="web"' and (down / "mem").read_text() == "32"
    mounts = manager.mounts(
        p,
        {
            "volumeMounts": [
                {
                    "name": access["name"],
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "readOnly": True,
                }
            ]
        },
    )
    assert mounts[0].read_only and mounts[0].options == ["rbind", "ro"]
    # Not yet at 80 % of 3607 s: the token stays; after it, a new one is requested.
    objects.now += timedelta(seconds=2800)
    await manager.refresh(p)
    assert token_number((root / "token").read_text()) == 1
    objects.now += timedelta(seconds=100)
    await manager.refresh(p)
    assert token_number((root / "token").read_text()) == 2
    # Offline: the still-valid token stays in place.
    objects.offline = True
    objects.now += timedelta(seconds=3000)
    await manager.refresh(p)
    assert token_number((root / "token").read_text()) == 2
    # A restarted agent takes the token (and its times) from the volume, also offline.
    restarted = VolumeManager(manager.pods_dir, objects, "edge", clock=lambda: objects.now)
    await restarted.setup(p)
    await restarted.refresh(p)
    assert token_number((root / "token").read_text()) == 2 and len(objects.tokens) == 2
    objects.offline = False
    await restarted.refresh(p)  # 80 % of its life is over: renewed once the server answers
    assert token_number((root / "token").read_text()) == 3


def test_token_refresh_points() -> None:
    from datetime import UTC, datetime

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert not needs_refresh(t0, t0 + timedelta(hours=1), t0 + timedelta(minutes=47))
    assert needs_refresh(t0, t0 + timedelta(hours=1), t0 + timedelta(minutes=48))
    year = t0 + timedelta(days=365)
    assert not needs_refresh(t0, year, t0 + timedelta(hours=23))
    assert needs_refresh(t0, year, t0 + timedelta(hours=24))


async def test_host_path_types(manager: VolumeManager, tmp_path: Path) -> None:
    made = tmp_path / "made" / "dir"
    afile = tmp_path / "afile"
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        ok = [
            {"name": "a", "hostPath": {"path": str(made), "type": "DirectoryOrCreate"}},
            {"name": "b", "hostPath": {"path": str(afile), "type": "FileOrCreate"}},
            {"name": "c", "hostPath": {"path": str(afile), "type": "File"}},
            {"name": "d", "hostPath": {"path": str(sock_path), "type": "Socket"}},
            {"name": "e", "hostPath": {"path": "/dev/null", "type": "CharDevice"}},
            {"name": "f", "hostPath": {"path": str(tmp_path / "any")}},
        ]
        p = pod(ok)
        await manager.setup(p)
        assert made.is_dir() and afile.is_file()
        mounts = manager.mounts(p, {"volumeMounts": [{"name": "a", "mountPath": "/m"}]})
        assert mounts[0].source == str(made)
        for kind, path, what in [
            ("Directory", afile, "directory"),
            ("File", made, "file"),
            ("Socket", afile, "socket file"),
            ("BlockDevice", Path("/dev/null"), "block device"),
            ("Directory", tmp_path / "missing", "directory"),
        ]:
            with pytest.raises(VolumeError) as info:
                await manager.setup(
                    pod([{"name": "x", "hostPath": {"path": str(path), "type": kind}}])
                )
            assert info.value.message.endswith(
                f"hostPath type check failed: {path} is not a {what}"
            )
    finally:
        sock.close()


def claim(uid: str = "c-1", **md: Any) -> dict[str, Any]:
    return {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "ns", "uid": uid, **md},
        "spec": {"volumeName": "pvc-1"},
        "status": {"phase": "Bound"},
    }


def local_path_volume(path: Path, policy: str = "Delete") -> dict[str, Any]:
    return {
        "kind": "PersistentVolume",
        "metadata": {
            "name": "pvc-1",
            "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"},
        },
        "spec": {
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "persistentVolumeReclaimPolicy": policy,
        },
    }


def claim_pod(uid: str, read_only: bool = False) -> dict[str, Any]:
    p = pod([{"name": "d", "persistentVolumeClaim": {"claimName": "data", "readOnly": read_only}}])
    p["metadata"]["uid"] = uid
    return p


@pytest.fixture
def storage(objects: FakeObjects, tmp_path: Path) -> Path:
    """A bound claim ``data`` on a local-path volume: the volume's directory."""
    path = tmp_path / "storage" / "pvc-1_ns_data"
    objects.put(claim())
    objects.put(local_path_volume(path))
    return path


async def test_persistent_volume_claim_uses_the_local_path_directory(
    manager: VolumeManager, storage: Path
) -> None:
    p = claim_pod(UID, read_only=True)
    await manager.setup(p)
    assert is_dir(storage)
    [m] = manager.mounts(p, {"volumeMounts": [{"name": "d", "mountPath": "/data"}]})
    assert (m.source, m.read_only) == (str(storage), True)
    with pytest.raises(VolumeError, match='persistentvolumeclaim "other" not found'):
        await manager.setup(pod([{"name": "d", "persistentVolumeClaim": {"claimName": "other"}}]))


async def test_local_path_directory_removed_once_its_claim_is_gone(
    manager: VolumeManager, objects: FakeObjects, storage: Path
) -> None:
    await manager.setup(claim_pod("a"))
    await manager.teardown("a")  # the claim stays (a StatefulSet pod comes back): data kept
    assert is_dir(storage)
    objects.put(claim(deletionTimestamp="2026-01-01T00:00:00Z"))
    await manager.setup(claim_pod("a"))
    await manager.setup(claim_pod("b"))
    await manager.teardown("a")  # pod b still uses it
    assert is_dir(storage)
    await manager.teardown("b")
    assert not exists(storage)

    objects.put(claim(uid="c-2"))
    objects.put(local_path_volume(storage, policy="Retain"))
    await manager.setup(claim_pod("c"))
    del objects.store[("persistentvolumeclaims", "ns", "data")]
    await manager.teardown("c")
    assert is_dir(storage)  # Retain: the data stays


async def test_sub_paths_and_teardown(manager: VolumeManager) -> None:
    p = pod([{"name": "e", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "cfg"}}])
    await manager.setup(p)
    empty = vdir(manager, "kubernetes.io~empty-dir", "e")
    conf = vdir(manager, "kubernetes.io~configmap", "conf")
    container = {
        "volumeMounts": [
            {"name": "e", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/logs"},
            {"name": "conf", "mountPath": "/etc/a.conf", "subPath": "a.conf"},
            {"name": "e", "mountPath": "/shared", "mountPropagation": "HostToContainer"},
        ]
    }
    logs, single, shared = manager.mounts(p, container, {"POD_NAME": "web"})
    assert logs.source == str(empty / "web" / "logs") and (empty / "web" / "logs").is_dir()
    assert text(single.source) == "A" and ".." in single.source  # the resolved file
    assert shared.options == ["rbind", "rw", "rslave"]
    for bad in ("../up", "/abs"):
        with pytest.raises(ContainerConfigError):
            manager.mounts(p, {"volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": bad}]})
    (empty / "link").symlink_to("/etc")
    with pytest.raises(ContainerConfigError, match="not within volume path"):
        manager.mounts(p, {"volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": "link"}]})
    await manager.teardown(UID)
    assert not (manager.pods_dir / UID / "volumes").exists() and conf.parent.exists() is False


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
async def test_memory_empty_dir_is_one_tmpfs_with_its_size_limit(manager: VolumeManager) -> None:
    p = pod([{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}])
    await manager.setup(p)
    path = vdir(manager, "kubernetes.io~empty-dir", "m")
    try:
        assert mounted(path) == 1
        stats = os.statvfs(path)
        assert stats.f_blocks * stats.f_frsize == 8 * 2**20
        await manager.setup(p)  # again: still one mount
        assert mounted(path) == 1
    finally:
        await manager.teardown(UID)
    assert mounted(path) == 0 and not path.exists()


def test_references_name_the_pods_to_refresh() -> None:
    p = pod(
        [
            {"name": "a", "configMap": {"name": "cfg"}},
            {"name": "b", "secret": {"secretName": "creds"}},
            {"name": "c", "projected": {"sources": [{"secret": {"name": "more"}}]}},
        ]
    )
    assert references(p, "configmaps", "ns", "cfg")
    assert references(p, "secrets", "ns", "creds") and references(p, "secrets", "ns", "more")
    assert not references(p, "secrets", "ns", "cfg")
    assert not references(p, "configmaps", "other", "cfg")
