"""The ``pods/binding`` subresource: assign a pod to a node.

Like upstream's ``BindingREST`` this is a guarded read-modify-write of the stored pod
(``ObjectStore.guarded_update``) that skips pod update validation (``spec.nodeName`` is
otherwise immutable) and the status strategy: it sets ``spec.nodeName``, merges the Binding's
annotations and sets the ``PodScheduled=True`` condition in one write. Authorization and node
restriction happen in the API layer before the action runs.
"""

from __future__ import annotations

from typing import Any

from edgek import status
from edgek.kinds import Kind
from edgek.timefmt import format_time
from server.storage.objectstore import ObjectStore, WriteOptions
from server.storage.requestinfo import Action, RequestInfo


def set_pod_condition(pod: dict[str, Any], condition: dict[str, Any], now: str) -> bool:
    """Upsert a pod condition (upstream ``UpdatePodCondition``): lastTransitionTime moves only
    when the status changes. Returns whether anything changed."""
    conditions: list[dict[str, Any]] = pod.setdefault("status", {}).setdefault("conditions", [])
    wanted = {k: v for k, v in condition.items() if v not in (None, "")}
    for i, old in enumerate(conditions):
        if old.get("type") != condition["type"]:
            continue
        if old.get("status") == condition.get("status") and old.get("lastTransitionTime"):
            wanted.setdefault("lastTransitionTime", old["lastTransitionTime"])
        else:
            wanted.setdefault("lastTransitionTime", now)
        if "lastProbeTime" not in wanted and "lastProbeTime" in old:
            wanted["lastProbeTime"] = old["lastProbeTime"]
        if old == wanted:
            return False
        conditions[i] = wanted
        return True
    wanted.setdefault("lastTransitionTime", now)
    conditions.append(wanted)
    return True


def _assign(pod: dict[str, Any], node_name: str, annotations: dict[str, str], now: str) -> None:
    """Mutate ``pod`` into its bound form, or raise why it cannot be bound."""
    md = pod["metadata"]
    name = md.get("name", "")
    if md.get("deletionTimestamp"):
        raise status.conflict(
            "pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host"
        )
    spec = pod.setdefault("spec", {})
    if spec.get("nodeName"):
        raise status.conflict(
            "pods", name, f'pod {name} is already assigned to node "{spec["nodeName"]}"'
        )
    if spec.get("schedulingGates"):
        raise status.conflict("pods", name, f"pod {name} has non-empty .spec.schedulingGates")
    spec["nodeName"] = node_name
    if annotations:
        md.setdefault("annotations", {}).update(annotations)
    set_pod_condition(pod, {"type": "PodScheduled", "status": "True"}, now)


async def bind_pod(
    objects: ObjectStore,
    pods_kind: Kind,
    namespace: str,
    name: str,
    node_name: str,
    *,
    uid: str = "",
    resource_version: str = "",
    annotations: dict[str, str] | None = None,
    opts: WriteOptions,
) -> dict[str, Any]:
    """Bind a pod to ``node_name`` and return the stored pod.

    Raises ApiError 404 when the pod is gone and 409 when it is
    bound already, being deleted, gated, or not the pod ``uid`` names."""
    return await objects.guarded_update(
        pods_kind,
        namespace,
        name,
        lambda pod: _assign(pod, node_name, annotations or {}, format_time(objects.clock())),
        expected_uid=uid,
        expected_rv=resource_version,
        dry_run=opts.dry_run,
    )


def _binding_errors(body: dict[str, Any], info: RequestInfo) -> None:
    """Check the request body is a Binding for this pod (upstream ValidatePodBinding)."""
    if body.get("kind") not in (None, "", "Binding"):
        raise status.bad_request(f"not a Binding object: kind {body.get('kind')!r}")
    md = body.get("metadata")
    if not isinstance(md, dict):
        md = {}
    if md.get("name", info.name) != info.name:
        raise status.bad_request("name in URL does not match name in Binding object")
    if md.get("namespace") and md["namespace"] != info.namespace:
        raise status.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    target = body.get("target")
    if not isinstance(target, dict):
        target = {}
    problems: list[str] = []
    if target.get("kind") and target["kind"] != "Node":
        problems.append(
            f'target.kind: Unsupported value: "{target["kind"]}": supported values: "Node"'
        )
    if not target.get("name"):
        problems.append("target.name: Required value")
    if problems:
        raise status.bad_request(
            problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        )


def binding_action(objects: ObjectStore, pods: Kind) -> Action:
    """The POST ``pods/{name}/binding`` handler: answers a Success Status with 201."""

    async def bind(
        info: RequestInfo, body: dict[str, Any], opts: WriteOptions
    ) -> tuple[dict[str, Any], int]:
        _binding_errors(body, info)
        md = body.get("metadata") or {}
        annotations = md.get("annotations") if isinstance(md.get("annotations"), dict) else None
        await bind_pod(
            objects,
            pods,
            info.namespace,
            info.name,
            body["target"]["name"],
            uid=str(md.get("uid") or ""),
            resource_version=str(md.get("resourceVersion") or ""),
            annotations=annotations,
            opts=opts,
        )
        reply = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return reply, 201

    return bind
