"""Discovery documents: /api, /apis, /apis/<group>, per group-version resource lists, /version."""

from __future__ import annotations

import platform
import sys
from typing import Any

from edgek import KUBERNETES_VERSION, __version__
from edgek.kinds import Kind, Registry

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "finalize": ["update"],
    "token": ["create"],
    "binding": ["create"],
    "eviction": ["create"],
    "approval": ["get", "patch", "update"],
}


def _group_order(group: str) -> tuple[int, str]:
    return (0 if group == "" else 1, group)


def version_info() -> dict[str, Any]:
    """The /version document; gitVersion carries the edgek build."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"{KUBERNETES_VERSION}+edgek{__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": "cpython",
        "platform": f"linux/{arch}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": gvs,
        "preferredVersion": gvs[0],
    }


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = registry.group_versions()
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [api_group(g, groups[g]) for g in sorted(groups, key=_group_order) if g != ""],
    }


def _resource_entries(kind: Kind) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {
        "name": kind.resource,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    out = [entry]
    for sub in kind.subresources:
        e: dict[str, Any] = {
            "name": f"{kind.resource}/{sub}",
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": _SUBRESOURCE_VERBS[sub],
        }
        if sub == "scale":
            e.update(group="autoscaling", version="v1", kind="Scale")
        elif sub == "token":
            e.update(group="authentication.k8s.io", version="v1", kind="TokenRequest")
        elif sub == "eviction":
            e.update(group="policy", version="v1", kind="Eviction")
        elif sub == "binding":
            e["kind"] = "Binding"
        out.append(e)
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of one group-version, or None when it is not served."""
    kinds = [k for k in registry.all() if k.group == group and k.version == version]
    if not kinds:
        return None
    resources: list[dict[str, Any]] = []
    for kind in sorted(kinds, key=lambda k: k.resource):
        resources.extend(_resource_entries(kind))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
