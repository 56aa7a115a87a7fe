"""The agent's view of the API objects its pods reference, kept so it answers offline.

:class:`ObjectSource` reads ConfigMaps, Secrets, Services, PersistentVolumeClaims,
PersistentVolumes and ServiceAccounts with the node's own credentials (the node authorizer
lets a node read only what the pods bound to it reference, and list services). Every
answer is remembered in memory and in a 0600 file under ``<data dir>/agent/state/objects/``;
while the server cannot be reached the last answer is served (also after an agent restart).

Objects read with :meth:`ObjectSource.get` are tracked: :meth:`ObjectSource.run` reads
them again every ``resync_seconds`` (the kubelet's ConfigMap/Secret managers settle within
about a minute; the default here is 20 s) and every change is published on
:meth:`ObjectSource.changed` as ``(resource, namespace, name)``, so ConfigMap and Secret
volumes can follow updates. A tracked object that nobody has read for ten resync periods is
no longer re-read. Per-object GETs are used rather than watches so that the node's small
connection pool is not held by one open watch per referenced object.

Service-account tokens are requested through the TokenRequest API, bound to the pod.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from edgek.apiclient import ApiClient, ApiClientError
from edgek.kubeconfig import atomic_write
from edgek.timefmt import parse_time

log = logging.getLogger(__name__)

RESOURCES = frozenset(
    {
        "configmaps",
        "secrets",
        "services",
        "persistentvolumeclaims",
        "persistentvolumes",
        "serviceaccounts",
    }
)
CLUSTER_SCOPED = frozenset({"persistentvolumes"})
#: Objects whose contents reach containers through volumes and are followed by resync.
FOLLOWED = frozenset({"configmaps", "secrets"})
RESYNC_SECONDS = 20.0
#: A tracked object is dropped after this many resync periods without a read.
IDLE_PERIODS = 10

Key = tuple[str, str, str]


class ObjectUnavailable(Exception):
    """The object cannot be read now (server unreachable and nothing remembered, or the
    read was refused); ``str(e)`` says why."""


def _path(resource: str, namespace: str, name: str = "") -> str:
    scope = "" if resource in CLUSTER_SCOPED else f"/namespaces/{namespace}"
    return f"/api/v1{scope}/{resource}" + (f"/{name}" if name else "")


def _unreachable(error: ApiClientError) -> bool:
    return error.code == 0 or error.code >= 500 or error.code == 429


class ObjectSource:
    """Cached, persisted reads of the objects a node's pods reference (module docstring).

    ``client`` returns the agent's current API client (it changes when the node certificate
    is renewed); ``state_dir`` is ``<data dir>/agent/state``.
    """

    def __init__(
        self,
        client: Callable[[], ApiClient | None],
        state_dir: Path,
        *,
        resync_seconds: float = RESYNC_SECONDS,
    ) -> None:
        self._client = client
        self.root = state_dir / "objects"
        self.resync_seconds = resync_seconds
        self._objects: dict[Key, dict[str, Any] | None] = {}
        self._read_at: dict[Key, float] = {}
        self._fetched_at: dict[Key, float] = {}
        self._subscribers: list[asyncio.Queue[Key]] = []

    # -- reads -------------------------------------------------------------------------------

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist; answered from memory when read less
        than a resync period ago, else from the server, else (server unreachable) from the
        last answer remembered on disk. ObjectUnavailable when there is none."""
        if resource not in RESOURCES:
            raise ValueError(f"unsupported resource {resource!r}")
        key = (resource, "" if resource in CLUSTER_SCOPED else namespace, name)
        self._read_at[key] = time.monotonic()
        fetched = self._fetched_at.get(key)
        if fetched is not None and time.monotonic() - fetched < self.resync_seconds:
            return self._objects[key]
        try:
            return await self._fetch(key)
        except ObjectUnavailable:
            if key not in self._objects:
                remembered = await asyncio.to_thread(self._load, key)
                if remembered is None:
                    raise
                self._objects[key] = remembered[0]
            # Ask the server again only after a resync period, not on every read.
            self._fetched_at[key] = time.monotonic()
            return self._objects[key]

    async def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The objects of ``resource`` in ``namespace`` (all namespaces for None), from the
        server, or the last list remembered when it cannot be reached."""
        if resource not in RESOURCES:
            raise ValueError(f"unsupported resource {resource!r}")
        key: Key = (resource, namespace or "", "")
        path = _path(resource, namespace) if namespace else f"/api/v1/{resource}"
        try:
            answer = await self._request("GET", path)
        except ObjectUnavailable:
            remembered = await asyncio.to_thread(self._load, key)
            if remembered is None or remembered[0] is None:
                raise
            return list(remembered[0].get("items") or [])
        items = list(answer.get("items") or [])
        await asyncio.to_thread(self._store, key, {"items": items})
        return items

    async def _fetch(self, key: Key) -> dict[str, Any] | None:
        """Read one object from the server and remember it; publish a change."""
        resource, namespace, name = key
        try:
            obj = await self._request("GET", _path(resource, namespace, name))
        except ApiClientError as e:  # 404 only: _request turns the rest into ObjectUnavailable
            obj = None
            log.debug("objects: %s %s/%s: %s", resource, namespace, name, e)
        self._fetched_at[key] = time.monotonic()
        before = self._objects.get(key, ...)
        self._objects[key] = obj
        if before is ... or _version(before) != _version(obj):
            await asyncio.to_thread(self._store, key, obj)
            if before is not ...:
                self._publish(key)
        return obj

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        """One request; ApiClientError for 404, ObjectUnavailable for anything else."""
        client = self._client()
        if client is None:
            raise ObjectUnavailable("the agent has no API client yet")
        try:
            return await client.request(method, path, body)
        except ApiClientError as e:
            if e.code == 404:
                raise
            prefix = "server unreachable: " if _unreachable(e) else ""
            raise ObjectUnavailable(f"{prefix}{e}") from e

    # -- service-account tokens ------------------------------------------------------------

    async def service_account_token(
        self, pod: dict[str, Any], audience: str | None, expiration_seconds: int
    ) -> tuple[str, datetime]:
        """A token for the pod's service account, bound to the pod (TokenRequest); returns
        the token and its expiry. ObjectUnavailable when the request fails."""
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        account = spec.get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": md.get("name"),
                    "uid": md.get("uid"),
                },
            },
        }
        path = _path("serviceaccounts", md.get("namespace") or "default", account) + "/token"
        try:
            answer = await self._request("POST", path, body)
        except ApiClientError as e:
            raise ObjectUnavailable(str(e)) from e
        status = answer.get("status") or {}
        try:
            return str(status["token"]), parse_time(status["expirationTimestamp"])
        except (KeyError, TypeError, ValueError) as e:
            raise ObjectUnavailable(f"malformed TokenRequest answer: {e}") from e

    # -- changes ---------------------------------------------------------------------------

    def changed(self) -> AsyncGenerator[Key, None]:
        """``(resource, namespace, name)`` of each tracked object that changed (or appeared,
        or was deleted) from now on, for as long as the caller iterates."""
        queue: asyncio.Queue[Key] = asyncio.Queue()
        self._subscribers.append(queue)
        return self._feed(queue)

    async def _feed(self, queue: asyncio.Queue[Key]) -> AsyncGenerator[Key, None]:
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    def _publish(self, key: Key) -> None:
        for queue in self._subscribers:
            queue.put_nowait(key)

    async def run(self) -> None:
        """Re-read the tracked ConfigMaps and Secrets every resync period (run as a task)."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            await self.resync()

    async def resync(self) -> None:
        """Re-read every tracked ConfigMap and Secret once; forget idle ones."""
        now = time.monotonic()
        for key in [k for k in self._read_at if k[0] in FOLLOWED]:
            if now - self._read_at[key] > IDLE_PERIODS * self.resync_seconds:
                del self._read_at[key]
                continue
            try:
                await self._fetch(key)
            except ObjectUnavailable as e:
                log.debug("objects: resync of %s/%s/%s: %s", *key, e)

    # -- persistence -----------------------------------------------------------------------

    def _file(self, key: Key) -> Path:
        resource, namespace, name = key
        return self.root / resource / (namespace or "_") / f"{name or '_list'}.json"

    def _store(self, key: Key, obj: dict[str, Any] | None) -> None:
        path = self._file(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"object": obj}).encode(), mode=0o600)

    def _load(self, key: Key) -> tuple[dict[str, Any] | None] | None:
        """The remembered answer (a 1-tuple, the object or None) or None when there is none."""
        try:
            return (json.loads(self._file(key).read_bytes())["object"],)
        except (OSError, ValueError, KeyError):
            return None


def object_data(resource: str, obj: dict[str, Any]) -> dict[str, bytes]:
    """The data of a ConfigMap (``data`` and ``binaryData``) or Secret (``secrets``), as
    bytes."""
    if resource == "secrets":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _version(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else str((obj.get("metadata") or {}).get("resourceVersion"))
