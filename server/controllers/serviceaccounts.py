"""Every active namespace has a ``default`` ServiceAccount and the ``kube-root-ca.crt``
ConfigMap (the CA bundle pods use to trust the API server).

Level-triggered: changes to namespaces, service accounts or that config map enqueue the
namespace; ``reconcile`` reads current state and creates or repairs what is missing.
"""

from __future__ import annotations

from typing import Any

from edgek.kinds import Kind
from edgek.status import ApiError
from server.cache import ObjectCache
from server.controllers.workqueue import WorkQueue
from server.registry.store import ObjectStore, WriteOptions

ROOT_CA = "kube-root-ca.crt"
DEFAULT_SA = "default"
MANAGER = "edgek-serviceaccount-controller"


class ServiceAccountController:
    """Creates default service accounts and root CA config maps per namespace."""

    def __init__(
        self,
        objects: ObjectStore,
        namespaces: ObjectCache,
        service_accounts: ObjectCache,
        config_maps: Kind,
        ca_pem: str,
    ) -> None:
        self.objects = objects
        self.namespaces = namespaces
        self.service_accounts = service_accounts
        self.config_maps = config_maps
        self.ca_pem = ca_pem
        self.queue = WorkQueue("serviceaccount-controller", self.reconcile)
        namespaces.on_change(lambda obj, deleted: self.enqueue(obj["metadata"]["name"]))
        service_accounts.on_change(self._sa_changed)

    def _sa_changed(self, obj: dict[str, Any], deleted: bool) -> None:
        if deleted and obj["metadata"]["name"] == DEFAULT_SA:
            self.enqueue(obj["metadata"].get("namespace", ""))

    async def on_write(self, kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        """After-write hook: a changed or deleted root CA config map is repaired."""
        if kind == self.config_maps and obj["metadata"]["name"] == ROOT_CA:
            self.enqueue(obj["metadata"].get("namespace", ""))

    def enqueue(self, key: str) -> None:
        self.queue.enqueue(key)

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    async def reconcile(self, namespace: str) -> None:
        """Make sure an active namespace has its default SA and root CA config map."""
        ns = self.namespaces.get("", namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        opts = WriteOptions(field_manager=MANAGER)
        if self.service_accounts.get(namespace, DEFAULT_SA) is None:
            body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SA}}
            await _create_ignoring_exists(
                self.objects, self.service_accounts.kind, namespace, body, opts
            )
        cm = await self.objects.try_get(self.config_maps, namespace, ROOT_CA)
        if cm is None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": ROOT_CA,
                    "annotations": {
                        "kubernetes.io/description": "Contains a CA bundle that can be used "
                        "to verify the kube-apiserver when using internal endpoints such as "
                        "the internal service IP or kubernetes.default.svc. No other usage "
                        "is guaranteed across distributions of Kubernetes clusters."
                    },
                },
                "data": {"ca.crt": self.ca_pem},
            }
            await _create_ignoring_exists(self.objects, self.config_maps, namespace, body, opts)
        elif (cm.get("data") or {}).get("ca.crt") != self.ca_pem:
            cm["data"] = {"ca.crt": self.ca_pem}
            await self.objects.update(self.config_maps, namespace, ROOT_CA, cm, opts)


async def _create_ignoring_exists(
    objects: ObjectStore, kind: Kind, namespace: str, body: dict[str, Any], opts: WriteOptions
) -> None:
    try:
        await objects.create(kind, namespace, body, opts)
    except ApiError as e:
        if e.code != 409:
            raise
