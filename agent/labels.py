"""How the agent names and labels the Podman objects it makes for a Pod.

Every Podman pod and container the agent creates carries the Pod's identity as labels (the
keys the kubelet's container runtime uses), so a restarted agent, the streaming endpoint and
garbage collection find them from Podman alone. Names are unique per pod uid and container
attempt, like the dockershim's ``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Set on every Podman object the agent manages (its value: the node name).
MANAGED_BY = "io.edgek.node"
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
#: How many times this container of this pod was started before this one (0, 1, ...).
CONTAINER_ATTEMPT = "io.kubernetes.container.restartCount"
#: ``init`` for init containers, ``app`` for the others.
CONTAINER_KIND = "io.edgek.container.kind"


def pod_labels(pod: Mapping[str, Any], node: str) -> dict[str, str]:
    """The labels of a Pod's Podman pod (its sandbox)."""
    meta = pod["metadata"]
    return {
        MANAGED_BY: node,
        POD_UID: meta["uid"],
        POD_NAME: meta["name"],
        POD_NAMESPACE: meta["namespace"],
    }


def container_labels(
    pod: Mapping[str, Any], node: str, container: str, attempt: int, *, init: bool = False
) -> dict[str, str]:
    """The labels of one started container of a Pod."""
    return {
        **pod_labels(pod, node),
        CONTAINER_NAME: container,
        CONTAINER_ATTEMPT: str(attempt),
        CONTAINER_KIND: "init" if init else "app",
    }


def sandbox_name(pod: Mapping[str, Any]) -> str:
    """The Podman pod's name: ``k8s_<pod>_<namespace>_<uid>``."""
    meta = pod["metadata"]
    return f"k8s_{meta['name']}_{meta['namespace']}_{meta['uid']}"


def container_name(pod: Mapping[str, Any], container: str, attempt: int) -> str:
    """A container's Podman name: ``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``."""
    meta = pod["metadata"]
    return f"k8s_{container}_{meta['name']}_{meta['namespace']}_{meta['uid']}_{attempt}"


def label_filter(labels: Mapping[str, str]) -> dict[str, list[str]]:
    """A libpod list filter matching every given label (``{"label": ["k=v", ...]}``)."""
    return {"label": [f"{key}={value}" for key, value in labels.items()]}
