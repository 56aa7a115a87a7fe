"""A pod's volumes on the node, and the mounts each container gets.

Each pod has a directory ``<pods dir>/<uid>/volumes/<plugin>/<volume>`` per volume, named
like the kubelet's (``kubernetes.io~empty-dir``, ``~configmap``, ``~secret``,
``~downward-api``, ``~projected``):

- ``emptyDir``: a directory (mode 0777); with ``medium: Memory`` a tmpfs is mounted on it
  (``size=`` the ``sizeLimit``) so all containers of the pod share it;
- ``configMap``, ``secret``, ``downwardAPI``, ``projected``: files written with
  :mod:`agent.podconfig.atomicdir` (secret and projected ones on a tmpfs of their own;
  ``items``, ``defaultMode`` 0644, per-item ``mode``,
  ``optional``); projected ``serviceAccountToken`` sources hold a TokenRequest token bound
  to the pod, renewed by :meth:`VolumeManager.refresh` after 80 % of its lifetime or 24 h
  (upstream's token manager), and :meth:`VolumeManager.refresh` rewrites the others when
  their objects change;
- ``hostPath``: the host path itself after upstream's ``type`` checks (DirectoryOrCreate
  and FileOrCreate create it);
- ``persistentVolumeClaim``: the bound PersistentVolume's ``hostPath`` (what the server's
  local-path provisioner makes, created here with DirectoryOrCreate) or ``local`` path.
  The directory of a local-path volume with reclaim policy Delete is removed when the last
  pod on this node that uses it is torn down and its claim is gone (deleted, being deleted,
  or replaced by a claim of another uid) — the server then deletes the volume, as the
  upstream provisioner's helper pod would remove the directory. Call
  :meth:`VolumeManager.teardown` before the pod's final deletion from the API: the node may
  read the claim only while a pod bound to it references it.

With the pod's ``fsGroup`` the files of emptyDir, configMap, secret, downwardAPI and
projected volumes belong to that group (group read for the read-only kinds, read-write for
emptyDir) and their directories are set-group-ID, as upstream's SetVolumeOwnership does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from agent.objectsource import ObjectSource, ObjectUnavailable, object_data
from agent.podconfig import atomicdir
from agent.podconfig.env import ContainerConfigError, expand, field_value, resource_value
from edgek.quantity import parse_quantity

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o644
#: Upstream's token manager: renew after 80 % of the lifetime, or after 24 h at most.
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_MAX_AGE = timedelta(hours=24)
DEFAULT_TOKEN_SECONDS = 3600
_ATOMIC_PLUGINS = {
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
EMPTY_DIR = "kubernetes.io~empty-dir"
#: Volumes that hold secrets live on a tmpfs, as upstream's do, never on the node's disk.
_IN_MEMORY = frozenset({"secret", "projected"})
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
_PROPAGATION = {"HostToContainer": "rslave", "Bidirectional": "rshared"}
_HOST_PATH_TYPES: dict[str, tuple[Callable[[int], bool], str]] = {
    "Directory": (stat.S_ISDIR, "directory"),
    "DirectoryOrCreate": (stat.S_ISDIR, "directory"),
    "File": (stat.S_ISREG, "file"),
    "FileOrCreate": (stat.S_ISREG, "file"),
    "Socket": (stat.S_ISSOCK, "socket file"),
    "CharDevice": (stat.S_ISCHR, "character device"),
    "BlockDevice": (stat.S_ISBLK, "block device"),
}


class VolumeError(Exception):
    """A volume cannot be set up (``reason`` is the event reason)."""

    reason = "FailedMount"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Mount:
    """One mount of a container: a bind of a host path, or (``kind`` tmpfs) a private
    tmpfs with ``options`` such as ``size=``."""

    destination: str
    source: str
    read_only: bool
    kind: Literal["bind", "tmpfs"] = "bind"
    options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _LocalVolume:
    """A local-path volume a pod mounts: what teardown needs to decide on its directory."""

    namespace: str
    claim: str
    claim_uid: str
    volume: str
    path: Path
    policy: str


@dataclass
class _Token:
    token: str
    issued: datetime
    expiry: datetime


def _md(pod: Mapping[str, Any]) -> dict[str, Any]:
    return pod.get("metadata") or {}


def _fs_group(pod: Mapping[str, Any]) -> int | None:
    value = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return int(value) if value is not None else None


def _mode(value: Any, default: int) -> int:
    return int(value) if value is not None else default


def _jwt_times(token: str) -> tuple[datetime, datetime] | None:
    """(issued, expiry the kubelet plans with) from a token's claims: ``iat`` and the
    ``kubernetes.io.warnafter`` of an extended token, else ``exp``."""
    try:
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        expiry = (claims.get("kubernetes.io") or {}).get("warnafter") or claims["exp"]
        return (
            datetime.fromtimestamp(int(claims["iat"]), UTC),
            datetime.fromtimestamp(int(expiry), UTC),
        )
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def needs_refresh(issued: datetime, expiry: datetime, now: datetime) -> bool:
    """Whether a token must be renewed (80 % of its lifetime or 24 h have passed)."""
    return now >= min(issued + (expiry - issued) * TOKEN_REFRESH_FRACTION, issued + TOKEN_MAX_AGE)


class VolumeManager:
    """The volumes of the pods on one node (module docstring)."""

    def __init__(
        self,
        pods_dir: Path,
        objects: ObjectSource,
        node: str,
        *,
        allocatable: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pods_dir = pods_dir
        self.objects = objects
        self.node = node
        self.allocatable = dict(allocatable or {})
        self.clock = clock
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        #: The host directories of the pods' PVC volumes (by pod uid, then volume).
        self._sources: dict[str, dict[str, Path]] = {}
        #: The local-path volumes each pod mounts (by pod uid).
        self._local: dict[str, dict[str, _LocalVolume]] = {}

    def volume_dir(self, pod: Mapping[str, Any], plugin: str, name: str) -> Path:
        """``<pods dir>/<uid>/volumes/<plugin>/<name>``."""
        return self.pods_dir / _md(pod)["uid"] / "volumes" / plugin / name

    # -- set-up --------------------------------------------------------------------------

    async def setup(self, pod: dict[str, Any]) -> None:
        """Make every volume of the pod; VolumeError (FailedMount) for the first that
        cannot be made. Safe to call again: existing volumes are kept or updated."""
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            try:
                await self._setup_one(pod, volume)
            except (ObjectUnavailable, OSError, ValueError, ContainerConfigError) as e:
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{volume.get("name")}" : {e}'
                ) from e

    async def _setup_one(self, pod: dict[str, Any], volume: dict[str, Any]) -> None:
        name = volume["name"]
        if "emptyDir" in volume:
            await self._empty_dir(pod, name, volume["emptyDir"] or {})
        elif "hostPath" in volume:
            source = volume["hostPath"] or {}
            await asyncio.to_thread(_host_path, source.get("path") or "", source.get("type") or "")
        elif "persistentVolumeClaim" in volume:
            path = await self._claim(pod, name, volume["persistentVolumeClaim"] or {})
            self._sources.setdefault(_md(pod)["uid"], {})[name] = path
        else:
            await self._write_atomic(pod, volume, refresh_tokens=False)

    async def _empty_dir(self, pod: dict[str, Any], name: str, source: dict[str, Any]) -> None:
        path = self.volume_dir(pod, EMPTY_DIR, name)
        gid = _fs_group(pod)
        if not path.is_dir():
            await asyncio.to_thread(path.mkdir, 0o777, True, True)
            path.chmod(0o2777 if gid is not None else 0o777)
            if gid is not None:
                os.chown(path, -1, gid)
        if source.get("medium") == "Memory":
            options = "mode=2777" if gid is not None else "mode=0777"
            if source.get("sizeLimit"):
                options += f",size={int(parse_quantity(source['sizeLimit']))}"
            if await _mount_tmpfs(path, options) and gid is not None:
                os.chown(path, -1, gid)

    async def _claim(self, pod: dict[str, Any], name: str, source: dict[str, Any]) -> Path:
        namespace, claim_name = _md(pod).get("namespace") or "default", source.get("claimName")
        claim = await self.objects.get("persistentvolumeclaims", namespace, claim_name or "")
        if claim is None:
            raise ValueError(f'persistentvolumeclaim "{claim_name}" not found')
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name or (claim.get("status") or {}).get("phase") != "Bound":
            raise ValueError(f"PVC {namespace}/{claim_name} is not bound")
        pv = await self.objects.get("persistentvolumes", "", volume_name)
        spec = (pv or {}).get("spec") or {}
        if spec.get("hostPath"):
            host = spec["hostPath"]
            path = await asyncio.to_thread(
                _host_path, host.get("path") or "", host.get("type") or ""
            )
            annotations = _md(pv or {}).get("annotations") or {}
            if annotations.get(ANN_PROVISIONED_BY) == LOCAL_PATH_PROVISIONER:
                self._local.setdefault(_md(pod)["uid"], {})[name] = _LocalVolume(
                    namespace,
                    claim_name or "",
                    _md(claim).get("uid") or "",
                    volume_name,
                    path,
                    spec.get("persistentVolumeReclaimPolicy") or "Delete",
                )
            return path
        if spec.get("local"):
            return await asyncio.to_thread(_host_path, spec["local"].get("path") or "", "Directory")
        raise ValueError(f'persistentvolume "{volume_name}" is not a hostPath or local volume')

    # -- files of configMap, secret, downwardAPI and projected volumes ------------------

    async def _write_atomic(
        self, pod: dict[str, Any], volume: dict[str, Any], *, refresh_tokens: bool
    ) -> bool:
        """Write one file-backed volume; False for other kinds or when nothing changed."""
        kind = next((k for k in _ATOMIC_PLUGINS if k in volume), None)
        if kind is None:
            return False
        source = volume[kind] or {}
        default_mode = _mode(source.get("defaultMode"), DEFAULT_MODE)
        if kind == "projected":
            payload: dict[str, atomicdir.File] = {}
            for item in source.get("sources") or []:
                payload.update(
                    await self._projection(pod, volume["name"], item, default_mode, refresh_tokens)
                )
        else:
            payload = await self._payload(pod, kind, source, default_mode)
        gid = _fs_group(pod)
        if gid is not None:
            payload = {path: (data, mode | 0o440) for path, (data, mode) in payload.items()}
        target = self.volume_dir(pod, _ATOMIC_PLUGINS[kind], volume["name"])
        if kind in _IN_MEMORY:
            await asyncio.to_thread(target.mkdir, 0o755, True, True)
            await _mount_tmpfs(target, "mode=0755")
        return await asyncio.to_thread(atomicdir.write, target, payload, gid=gid)

    async def _payload(
        self, pod: dict[str, Any], kind: str, source: dict[str, Any], default_mode: int
    ) -> dict[str, atomicdir.File]:
        """The files of a configMap, secret or downwardAPI source."""
        if kind == "downwardAPI":
            return {
                item["path"]: (
                    self._downward_value(pod, item).encode(),
                    _mode(item.get("mode"), default_mode),
                )
                for item in source.get("items") or []
            }
        name = source.get("secretName" if kind == "secret" else "name") or ""
        resource = "secrets" if kind == "secret" else "configmaps"
        obj = await self.objects.get(resource, _md(pod).get("namespace") or "default", name)
        optional = bool(source.get("optional"))
        if obj is None:
            if optional:
                return {}
            raise ValueError(f'{kind.lower()} "{name}" not found')
        data = object_data(resource, obj)
        items = source.get("items")
        if not items:
            return {key: (value, default_mode) for key, value in data.items()}
        payload = {}
        for item in items:
            key = item.get("key") or ""
            if key not in data:
                if optional:
                    continue
                what = "config" if kind == "configMap" else "secret"
                raise ValueError(f"{kind.lower()} references non-existent {what} key: {key}")
            payload[item.get("path") or key] = (data[key], _mode(item.get("mode"), default_mode))
        return payload

    def _downward_value(self, pod: dict[str, Any], item: dict[str, Any]) -> str:
        if item.get("fieldRef"):
            return field_value(
                pod, item["fieldRef"].get("fieldPath") or "", node_ips=[], pod_ips=[]
            )
        ref = item.get("resourceFieldRef") or {}
        containers = (pod.get("spec") or {}).get("initContainers") or []
        containers = containers + ((pod.get("spec") or {}).get("containers") or [])
        container: dict[str, Any] = next(
            (c for c in containers if c.get("name") == ref.get("containerName")), {}
        )
        return resource_value(ref, container, self.allocatable)

    async def _projection(
        self,
        pod: dict[str, Any],
        volume: str,
        item: dict[str, Any],
        default_mode: int,
        refresh_tokens: bool,
    ) -> dict[str, atomicdir.File]:
        """The files of one projected source."""
        for kind in ("configMap", "secret", "downwardAPI"):
            if kind in item:
                return await self._payload(pod, kind, item[kind] or {}, default_mode)
        if "serviceAccountToken" in item:
            source = item["serviceAccountToken"] or {}
            path = source.get("path") or "token"
            token = await self._token(pod, volume, source, refresh_tokens)
            return {path: (token.encode(), _mode(source.get("mode"), default_mode))}
        return {}

    async def _token(
        self, pod: dict[str, Any], volume: str, source: dict[str, Any], refresh: bool
    ) -> str:
        """The pod's token for one projected source: the remembered one (also from the
        volume's file after an agent restart) until it needs renewing; a failed renewal
        keeps the old token while it is still valid."""
        path = source.get("path") or "token"
        key = (_md(pod)["uid"], volume, path)
        known = self._tokens.get(key)
        if known is None:
            known = await asyncio.to_thread(self._token_on_disk, pod, volume, path)
        now = self.clock()
        valid = known is not None and now < known.expiry
        if known is not None and valid:
            self._tokens[key] = known
            if not (refresh and needs_refresh(known.issued, known.expiry, now)):
                return known.token
        seconds = int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        try:
            token, expiry = await self.objects.service_account_token(
                pod, source.get("audience") or None, seconds
            )
        except ObjectUnavailable:
            if known is not None and valid:
                return known.token
            raise
        self._tokens[key] = _Token(token, expiry - timedelta(seconds=seconds), expiry)
        return token

    def _token_on_disk(self, pod: dict[str, Any], volume: str, path: str) -> _Token | None:
        file = self.volume_dir(pod, _ATOMIC_PLUGINS["projected"], volume) / path
        try:
            token = file.read_text()
        except OSError:
            return None
        times = _jwt_times(token)
        return _Token(token, *times) if times else None

    # -- refresh and teardown --------------------------------------------------------------

    async def refresh(self, pod: dict[str, Any]) -> None:
        """Rewrite the configMap, secret, downwardAPI and projected volumes whose contents
        changed and renew tokens that are due; problems are logged (the old files stay)."""
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            try:
                if await self._write_atomic(pod, volume, refresh_tokens=True):
                    log.info(
                        "volumes: updated %s of pod %s/%s",
                        volume["name"],
                        _md(pod).get("namespace"),
                        _md(pod).get("name"),
                    )
            except (ObjectUnavailable, OSError, ValueError, ContainerConfigError) as e:
                log.warning("volumes: refreshing %s: %s", volume.get("name"), e)

    async def teardown(self, pod_uid: str) -> None:
        """Unmount the pod's memory-backed emptyDirs, remove its volume directories and
        the directories of local-path volumes that are to be deleted (module docstring)."""
        for local in self._local.pop(pod_uid, {}).values():
            await self._release(local)
        self._sources.pop(pod_uid, None)
        self._tokens = {k: v for k, v in self._tokens.items() if k[0] != pod_uid}
        root = self.pods_dir / pod_uid / "volumes"
        for path in sorted(await asyncio.to_thread(_mounts_under, root), reverse=True):
            await _run("umount", path)
        await asyncio.to_thread(shutil.rmtree, root, True)

    async def _release(self, local: _LocalVolume) -> None:
        """Remove a local-path volume's directory when its claim is gone and no other pod
        here uses it; keep it when that cannot be known (server unreachable)."""
        if local.policy != "Delete" or not local.path.name.startswith(f"{local.volume}_"):
            return
        if any(v.volume == local.volume for pod in self._local.values() for v in pod.values()):
            return
        try:
            claim = await self.objects.get("persistentvolumeclaims", local.namespace, local.claim)
        except ObjectUnavailable as e:
            log.warning("volumes: keeping %s, its claim cannot be read: %s", local.path, e)
            return
        md = _md(claim or {})
        if (
            claim is not None
            and not md.get("deletionTimestamp")
            and md.get("uid") == local.claim_uid
        ):
            return
        log.info(
            "volumes: removing %s (claim %s/%s is gone)", local.path, local.namespace, local.claim
        )
        await asyncio.to_thread(shutil.rmtree, local.path, True)

    # -- mounts ----------------------------------------------------------------------------

    def source(self, pod: Mapping[str, Any], volume: Mapping[str, Any]) -> Path:
        """The host path of a volume that :meth:`setup` made."""
        name = volume["name"]
        found = self._sources.get(_md(pod)["uid"], {}).get(name)
        if found is not None:
            return found
        if "hostPath" in volume:
            return Path((volume["hostPath"] or {}).get("path") or "")
        if "emptyDir" in volume:
            return self.volume_dir(pod, EMPTY_DIR, name)
        kind = next((k for k in _ATOMIC_PLUGINS if k in volume), None)
        if kind is None:
            raise ContainerConfigError(f'volume "{name}" is not set up')
        return self.volume_dir(pod, _ATOMIC_PLUGINS[kind], name)

    def mounts(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        """The container's mounts from its ``volumeMounts`` (``subPath``, and
        ``subPathExpr`` expanded with the container's ``env``). ContainerConfigError for a
        subPath that is not inside its volume."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        out = []
        for vm in container.get("volumeMounts") or []:
            volume = volumes.get(vm.get("name") or "")
            if volume is None:
                raise ContainerConfigError(f'cannot find volume "{vm.get("name")}" to mount')
            source = self.source(pod, volume)
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = expand(vm["subPathExpr"], env or {})
            if sub:
                source = _sub_path(source, sub)
            read_only = bool(vm.get("readOnly")) or _claim_read_only(volume)
            options = ["rbind", "ro" if read_only else "rw"]
            if vm.get("mountPropagation") in _PROPAGATION:
                options.append(_PROPAGATION[vm["mountPropagation"]])
            out.append(Mount(vm["mountPath"], str(source), read_only, "bind", options))
        return out


def references(pod: Mapping[str, Any], resource: str, namespace: str, name: str) -> bool:
    """Whether one of the pod's volumes shows ConfigMap or Secret (``resource``
    configmaps/secrets) ``namespace/name``: the pods to :meth:`VolumeManager.refresh` for
    an :meth:`agent.objectsource.ObjectSource.changed` key."""
    if (_md(pod).get("namespace") or "default") != namespace:
        return False
    kind, field = ("configMap", "name") if resource == "configmaps" else ("secret", "secretName")
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if (volume.get(kind) or {}).get(field) == name:
            return True
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get(kind) or {}).get("name") == name:
                return True
    return False


def _claim_read_only(volume: Mapping[str, Any]) -> bool:
    return bool((volume.get("persistentVolumeClaim") or {}).get("readOnly"))


def _sub_path(root: Path, sub: str) -> Path:
    """``root/sub`` resolved (a directory is made when missing); ContainerConfigError when
    ``sub`` is absolute, has ``..`` or leads out of ``root`` through a symlink."""
    if PurePosixPath(sub).is_absolute() or ".." in PurePosixPath(sub).parts:
        raise ContainerConfigError(
            f"subPath {sub!r} must be a relative path without '..' (the volume is {root})"
        )
    path = root / sub
    if not path.exists() and not path.is_symlink():
        path.mkdir(mode=0o755, parents=True)
    resolved, real_root = path.resolve(), root.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise ContainerConfigError(f"subpath {str(path)!r} not within volume path {root}")
    return resolved


def _host_path(path: str, kind: str) -> Path:
    """The host path of a hostPath volume after upstream's type check (creating it for
    DirectoryOrCreate/FileOrCreate); ValueError when the check fails."""
    host = Path(path)
    if kind == "DirectoryOrCreate" and not host.exists():
        host.mkdir(mode=0o755, parents=True)
    elif kind == "FileOrCreate" and not host.exists():
        host.touch(mode=0o644)
    if kind in _HOST_PATH_TYPES:
        check, what = _HOST_PATH_TYPES[kind]
        try:
            mode = host.stat().st_mode
        except OSError:
            mode = 0
        if not check(mode):
            raise ValueError(f"hostPath type check failed: {path} is not a {what}")
    elif kind:
        raise ValueError(f"hostPath type check failed: unknown type {kind!r}")
    return host


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (from /proc/self/mountinfo)."""
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix)]


async def _mount_tmpfs(path: Path, options: str) -> bool:
    """Mount a tmpfs on ``path`` unless one is there; True when it was mounted now."""
    if await asyncio.to_thread(os.path.ismount, path):
        return False
    await _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path))
    return True


async def _run(*argv: str) -> None:
    """Run a mount command; OSError with its message when it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
