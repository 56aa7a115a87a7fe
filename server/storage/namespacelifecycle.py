"""NamespaceLifecycle admission (upstream's plugin of that name), enforced by the object store.

Every create of a namespaced object, whether an API request or a control loop writes it, needs
its namespace to exist (404 ``namespaces "x" not found``) and not to be terminating (403 with
the ``NamespaceTerminating`` cause). The namespace is read from the datastore's in-memory index
of live keys (no database query); upstream reads an informer cache the same way.

Upstream also refuses updates in a missing namespace and deletion of the immortal namespaces;
this module covers creates, the part that stops contents from outliving a deleted namespace.
"""

from __future__ import annotations

import json
from typing import Any

import datastore
from edgek import status
from edgek.kinds import Kind

#: Datastore key prefix of namespaces (``store.key_prefix`` of core/v1 namespaces).
NAMESPACES_PREFIX = "/registry/core/namespaces/"

#: Kinds created in a namespace without admission: answering "not found" for an access review
#: would tell the caller whether a namespace exists.
_EXEMPT = frozenset({("authorization.k8s.io", "localsubjectaccessreviews")})

#: The StatusCause type upstream attaches to the 403 (core/v1 NamespaceTerminatingCause).
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


def terminating(namespace: dict[str, Any]) -> bool:
    """Whether a namespace is being deleted (phase Terminating, or a deletionTimestamp)."""
    phase = (namespace.get("status") or {}).get("phase")
    return phase == "Terminating" or bool(namespace.get("metadata", {}).get("deletionTimestamp"))


def terminating_error(kind: Kind, namespace: str, obj: dict[str, Any]) -> status.ApiError:
    """Upstream's 403 for content created in a terminating namespace."""
    md = obj.get("metadata") or {}
    name = md.get("name") or md.get("generateName") or "Unknown"
    details: dict[str, Any] = {"name": name, "kind": kind.resource}
    if kind.group:
        details["group"] = kind.group
    details["causes"] = [
        {
            "reason": NAMESPACE_TERMINATING_CAUSE,
            "message": f"namespace {namespace} is being terminated",
            "field": "metadata.namespace",
        }
    ]
    return status.ApiError(
        403,
        "Forbidden",
        f'{kind.group_resource} "{name}" is forbidden: unable to create new content in '
        f"namespace {namespace} because it is being terminated",
        details=details,
    )


async def admit_create(
    store: datastore.Datastore, kind: Kind, namespace: str, obj: dict[str, Any]
) -> None:
    """Raise the upstream error when ``obj`` may not be created in ``namespace``."""
    if not kind.namespaced or (kind.group, kind.resource) in _EXEMPT:
        return
    kv = await store.get(NAMESPACES_PREFIX + namespace)  # latest revision: an index lookup
    if kv is None:
        raise status.not_found("namespaces", namespace)
    if terminating(json.loads(kv.value)):
        raise terminating_error(kind, namespace, obj)
