"""The node's own API writes, shared by ``edgek agent`` and ``edgek sim``: register the
Node (or take over the existing one, as the kubelet does on restart), report its status,
renew its Lease and remove the pods it finished."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.nodestatus import NODE_LEASE_NAMESPACE, lease_object
from edgek.apiclient import ApiClient, ApiClientError
from edgek.timefmt import format_micro_time

LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases"


async def register_node(client: ApiClient, node: dict[str, Any]) -> dict[str, Any]:
    """Create ``node``; when it exists already, reconcile its labels and status instead
    (taints are only set at creation: a node may not change its own). The Node written."""
    try:
        created: dict[str, Any] = await client.request("POST", "/api/v1/nodes", node)
        return created
    except ApiClientError as e:
        if e.code != 409:
            raise
    path = f"/api/v1/nodes/{node['metadata']['name']}"
    labels = {"metadata": {"labels": node["metadata"]["labels"]}}
    await client.patch(path, labels, patch_type="strategic")
    return await patch_node_status(client, node["metadata"]["name"], node["status"])


async def patch_node_status(client: ApiClient, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Write the node's status (strategic merge); the Node written."""
    written: dict[str, Any] = await client.patch(
        f"/api/v1/nodes/{name}/status", {"status": status}, patch_type="strategic"
    )
    return written


async def renew_lease(
    client: ApiClient, name: str, node_uid: str, duration: int, now: datetime
) -> None:
    """Renew the node's Lease at ``now`` (creating it, owned by the Node, when missing)."""
    body = {"spec": {"holderIdentity": name, "renewTime": format_micro_time(now)}}
    try:
        await client.patch(f"{LEASES}/{name}", body)
    except ApiClientError as e:
        if e.code != 404:
            raise
        await client.request("POST", LEASES, lease_object(name, node_uid, duration, now))


async def delete_pod(client: ApiClient, namespace: str, name: str, uid: str) -> None:
    """Remove a pod object for good (grace period 0), only the incarnation ``uid``, as the
    kubelet does once a pod's containers are gone; a pod gone already, or replaced by
    another of that name, is fine."""
    options = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }
    try:
        await client.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", options)
    except ApiClientError as e:
        if e.code not in (404, 409):
            raise
