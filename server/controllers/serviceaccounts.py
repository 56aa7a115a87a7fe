"""Every active namespace has a ``default`` ServiceAccount and the ``kube-root-ca.crt``
ConfigMap (the CA bundle pods use to trust the API server).

Level-triggered: changes to namespaces, service accounts or that config map enqueue the
namespace; ``reconcile`` reads current state and creates or repairs what is missing.
"""

from __future__ import annotations

from typing import Any

from edgek.kinds import Kind
from edgek.status import ApiError
from server.controllers.runtime import Controller, ControllerContext
from server.pki import PKI
from server.storage.objectstore import ObjectStore, WriteOptions

ROOT_CA = "kube-root-ca.crt"
DEFAULT_SA = "default"
MANAGER = "edgek-serviceaccount-controller"


class ServiceAccountController(Controller):
    """Creates default service accounts and root CA config maps per namespace (upstream's
    "serviceaccount" controller and root CA publisher in one loop)."""

    name = "serviceaccount"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.namespaces = ctx.cache("", "namespaces")
        self.service_accounts = ctx.cache("", "serviceaccounts")
        self.config_maps = ctx.kind("", "configmaps")
        self._ca_pem: str | None = None  # the cluster CA bundle, read on first use
        self.namespaces.on_change(lambda obj, deleted: self.queue.enqueue(obj["metadata"]["name"]))
        self.service_accounts.on_change(self._sa_changed)
        ctx.objects.after_write.append(self._written)

    @property
    def ca_pem(self) -> str:
        """The CA bundle the config maps carry (the server CA, as ``/cacerts`` serves it)."""
        if self._ca_pem is None:
            self._ca_pem = PKI.at(self.ctx.config.tls_dir).ca_bundle_pem().decode()
        return self._ca_pem

    def _sa_changed(self, obj: dict[str, Any], deleted: bool) -> None:
        if deleted and obj["metadata"]["name"] == DEFAULT_SA:
            self.queue.enqueue(obj["metadata"].get("namespace", ""))

    async def _written(self, kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        """After-write hook: a changed or deleted root CA config map is repaired (config
        maps are not cached, so their writes are seen here instead)."""
        if kind == self.config_maps and obj["metadata"]["name"] == ROOT_CA:
            self.queue.enqueue(obj["metadata"].get("namespace", ""))

    def start(self) -> None:
        """Check every namespace (it may have changed while another server led)."""
        for ns in self.namespaces.items():
            self.queue.enqueue(ns["metadata"]["name"])
        super().start()

    async def reconcile(self, namespace: str) -> None:
        """Make sure an active namespace has its default SA and root CA config map."""
        ns = self.namespaces.get("", namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        opts = WriteOptions(field_manager=MANAGER)
        if self.service_accounts.get(namespace, DEFAULT_SA) is None:
            body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SA}}
            await _create_ignoring_exists(
                self.ctx.objects, self.service_accounts.kind, namespace, body, opts
            )
        cm = await self.ctx.objects.try_get(self.config_maps, namespace, ROOT_CA)
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
            await _create_ignoring_exists(self.ctx.objects, self.config_maps, namespace, body, opts)
        elif (cm.get("data") or {}).get("ca.crt") != self.ca_pem:
            cm["data"] = {"ca.crt": self.ca_pem}
            await self.ctx.objects.update(self.config_maps, namespace, ROOT_CA, cm, opts)


async def _create_ignoring_exists(
    objects: ObjectStore, kind: Kind, namespace: str, body: dict[str, Any], opts: WriteOptions
) -> None:
    try:
        await objects.create(kind, namespace, body, opts)
    except ApiError as e:
        if e.code != 409:
            raise
