"""Static pods: Pod manifests (YAML or JSON, one per file) in
``<data-dir>/agent/pod-manifests/`` run on this node without the API server, as the
kubelet's file source. Each becomes a pod named ``<name>-<node>`` whose uid is a hash of the
manifest and the node (a changed file is a new pod), and the agent keeps a *mirror pod* of
it in the API (annotation ``kubernetes.io/config.mirror``, owned by the Node) that carries
its status. A mirror pod that is deleted or out of date is made again; a removed file
stops the pod and deletes its mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agent.nodeapi import delete_pod
from agent.pods.manager import MIRROR, PodManager
from edgek.apiclient import ApiClient, ApiClientError

log = logging.getLogger("edgek.agent.pods")

SOURCE = "kubernetes.io/config.source"
HASH = "kubernetes.io/config.hash"
#: How often everything is checked (the kubelet's fileCheckFrequency); the directory's
#: listing is looked at every :data:`WATCH_SECONDS` (the kubelet uses inotify).
CHECK_SECONDS = 20.0
WATCH_SECONDS = 1.0
SUFFIXES = (".yaml", ".yml", ".json")


def manifests_dir(agent_dir: Path) -> Path:
    """The static pod manifests directory of an agent."""
    return agent_dir / "pod-manifests"


def read_manifests(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The Pod manifests of ``directory`` (files that are not a Pod are logged, skipped)."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIXES)):
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            log.warning("static pod %s: %s", path, e)
            continue
        if (
            not isinstance(doc, dict)
            or doc.get("kind") != "Pod"
            or not isinstance((doc.get("metadata") or {}).get("name"), str)
        ):
            log.warning("static pod %s: not a Pod manifest with a name", path)
            continue
        found.append((path, doc))
    return found


def _fingerprint(directory: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes of the directory's files: what a change shows in."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    out = []
    for path in entries:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_size, st.st_mtime_ns))
    return out


def static_pod(manifest: dict[str, Any], node: str) -> dict[str, Any]:
    """The pod a manifest runs as on ``node`` (its uid: the hash of manifest and node)."""
    meta = dict(manifest.get("metadata") or {})
    digest = hashlib.md5(
        json.dumps(manifest, sort_keys=True).encode() + node.encode(), usedforsecurity=False
    ).hexdigest()
    uid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"
    annotations = {**(meta.get("annotations") or {}), SOURCE: "file", HASH: digest}
    spec = {**(manifest.get("spec") or {}), "nodeName": node}
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **meta,
            "name": f"{meta['name']}-{node}",
            "namespace": meta.get("namespace") or "default",
            "uid": uid,
            "annotations": annotations,
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def mirror_pod(pod: dict[str, Any], node: str, node_uid: str) -> dict[str, Any]:
    """The mirror pod of a static pod: same name, labels and spec, the config hash in the
    mirror annotation, owned by the Node."""
    meta = pod["metadata"]
    annotations = {**meta["annotations"], MIRROR: meta["annotations"][HASH]}
    mirror_meta = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "labels": meta.get("labels") or {},
        "annotations": annotations,
    }
    mirror_meta["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": True}
    ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": mirror_meta, "spec": pod["spec"]}


class StaticPods:
    """Runs the manifests of one directory through the pod manager (module docstring)."""

    def __init__(
        self,
        directory: Path,
        manager: PodManager,
        api: Callable[[], ApiClient | None],
        node_uid: Callable[[], str],
    ) -> None:
        self.directory = directory
        self.manager = manager
        self.api = api
        self.node_uid = node_uid
        self.pods: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        manager.mirror_changed = self._wake.set

    async def run(self) -> None:
        """Sync every :data:`CHECK_SECONDS`, sooner when a file or a mirror pod changed or
        a mirror pod could not be made yet."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            complete = await self.sync()
            seen, since = await asyncio.to_thread(_fingerprint, self.directory), loop.time()
            while complete and loop.time() - since < CHECK_SECONDS and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), WATCH_SECONDS)
                if await asyncio.to_thread(_fingerprint, self.directory) != seen:
                    break
            if not complete:
                await asyncio.sleep(WATCH_SECONDS)

    async def sync(self) -> bool:
        """Start new manifests, stop removed ones, make the mirror pods right; False when a
        mirror pod could not be made (the server is away, the node not registered yet)."""
        complete = True
        node = self.manager.ctx.node
        found = await asyncio.to_thread(read_manifests, self.directory)
        wanted = {}
        for _, manifest in found:
            pod = static_pod(manifest, node)
            wanted[pod["metadata"]["uid"]] = pod
        for uid, pod in list(self.pods.items()):
            if uid not in wanted:
                self.manager.remove_static(uid)
                del self.pods[uid]
                await self._delete_mirror(pod)
        for uid, pod in wanted.items():
            if uid not in self.pods:
                log.info("static pod %s from %s", pod["metadata"]["name"], self.directory)
                self.pods[uid] = pod
                self.manager.add_static(pod)
            try:
                complete = await self._ensure_mirror(pod) and complete
            except ApiClientError as e:
                log.debug("mirror pod %s: %s", pod["metadata"]["name"], e)
                complete = False
        return complete

    def _path(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"

    async def _ensure_mirror(self, pod: dict[str, Any]) -> bool:
        api, node_uid = self.api(), self.node_uid()
        if api is None or not node_uid:
            return False
        digest = pod["metadata"]["annotations"][HASH]
        try:
            current = await api.request("GET", self._path(pod))
        except ApiClientError as e:
            if e.code != 404:
                raise
            current = None
        if current is not None:
            meta = current.get("metadata") or {}
            if (meta.get("annotations") or {}).get(MIRROR) == digest and not meta.get(
                "deletionTimestamp"
            ):
                self.manager.mirror_seen(pod["metadata"]["uid"], meta["uid"])
                return True
            await self._delete(api, pod, meta.get("uid", ""))
        body = mirror_pod(pod, self.manager.ctx.node, node_uid)
        ns = pod["metadata"]["namespace"]
        created = await api.request("POST", f"/api/v1/namespaces/{ns}/pods", body)
        self.manager.mirror_seen(pod["metadata"]["uid"], created["metadata"]["uid"])
        return True

    async def _delete_mirror(self, pod: dict[str, Any]) -> None:
        api = self.api()
        if api is None:
            return
        try:
            current = await api.request("GET", self._path(pod))
            meta = current.get("metadata") or {}
            if (meta.get("annotations") or {}).get(MIRROR):
                await self._delete(api, pod, meta.get("uid", ""))
        except ApiClientError as e:
            log.debug("deleting mirror pod %s: %s", pod["metadata"]["name"], e)

    async def _delete(self, api: ApiClient, pod: dict[str, Any], uid: str) -> None:
        meta = pod["metadata"]
        await delete_pod(api, meta["namespace"], meta["name"], uid)
