"""ServiceAccount admission (upstream ``plugin/pkg/admission/serviceaccount``) for pod creates.

A new pod (not a mirror pod) runs as ``default`` unless it names a service account
(``serviceAccountName``, or the deprecated ``serviceAccount``, which is set to match). Unless
``automountServiceAccountToken`` is false (on the pod, else on its service account) it gets
the projected volume ``kube-api-access-<5 random characters>`` — a bound token (``token``,
3607 s, which the node renews), the cluster CA from the ``kube-root-ca.crt`` ConfigMap
(``ca.crt``) and the pod's ``namespace`` — mounted read-only at
``/var/run/secrets/kubernetes.io/serviceaccount`` in every init and app container that
mounts nothing there. A pod without ``imagePullSecrets`` takes its service account's.

Unlike upstream, a service account that does not exist (yet) does not refuse the pod: the
namespace's ``default`` account is made by a controller just after the namespace, and a
pod created in between would otherwise fail; the node's token requests succeed once it
exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgek.kinds import Kind
from edgek.objects import generate_name
from server.storage.objectstore import Undo

DEFAULT_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
#: Upstream's token lifetime for the default volume (3607 s marks it as the legacy one).
TOKEN_SECONDS = 3607
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

#: Looks a service account up by (namespace, name), e.g. an object cache's ``get``.
Lookup = Callable[[str, str], dict[str, Any] | None]


def api_access_volume(name: str) -> dict[str, Any]:
    """The projected volume upstream's admission adds (token, ca.crt, namespace)."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
                {
                    "configMap": {
                        "name": ROOT_CA_CONFIGMAP,
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


class ServiceAccountAdmission:
    """The admission hook ``(kind, obj, old) -> None`` for pod creates."""

    def __init__(self, accounts: Lookup) -> None:
        self.accounts = accounts

    def __call__(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> Undo | None:
        if old is not None or (kind.group, kind.resource) != ("", "pods"):
            return None
        md = obj.get("metadata") or {}
        if MIRROR_POD_ANNOTATION in (md.get("annotations") or {}):
            return None
        spec = obj.setdefault("spec", {})
        # The deprecated ``serviceAccount`` spelling mirrors the name, as v1 conversion does.
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_ACCOUNT
        spec["serviceAccountName"] = spec["serviceAccount"] = name
        account = self.accounts(md.get("namespace") or "", name) or {}
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = account.get("automountServiceAccountToken")
        if automount is not False:
            _mount_token(spec)
        if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [
                {"name": s.get("name")} for s in account["imagePullSecrets"] if s.get("name")
            ]
        return None


def _mount_token(spec: dict[str, Any]) -> None:
    """Add the kube-api-access volume (unless the pod has one) and mount it."""
    volumes: list[dict[str, Any]] = spec.get("volumes") or []
    existing = next(
        (v["name"] for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)), None
    )
    name = existing or generate_name(VOLUME_PREFIX)
    if existing is None:
        spec["volumes"] = [*volumes, api_access_volume(name)]
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            mounts = container.get("volumeMounts") or []
            if not any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                container["volumeMounts"] = [
                    *mounts,
                    {"name": name, "readOnly": True, "mountPath": MOUNT_PATH},
                ]
