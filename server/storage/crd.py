"""CustomResourceDefinitions: serving custom kinds as soon as their CRD is stored.

Keeps the kinds registry and the OpenAPI documents in step with the stored CRDs, computes
the CRD status conditions (NamesAccepted, Established), and knows each custom kind's
printer columns and scale paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from edgek.kinds import Kind, Registry

CRD_GROUP = "apiextensions.k8s.io"


class SchemaSink(Protocol):
    """Where custom schemas go (the OpenAPI documents)."""

    def set_custom_schema(self, kind: Kind, schema: dict[str, Any] | None) -> None: ...

    def remove_custom(self, kind: Kind) -> None: ...


@dataclass(frozen=True)
class ScalePaths:
    """Where a scalable kind keeps its replica counts and selector."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    selector: str = ".spec.selector"
    selector_is_string: bool = False


def crd_status(crd: dict[str, Any], now: str) -> dict[str, Any]:
    """The status a freshly stored CRD gets: names accepted, established, stored versions."""
    spec = crd.get("spec") or {}
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]

    def condition(ctype: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": ctype,
            "status": "True",
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }

    return {
        "acceptedNames": dict(spec.get("names") or {}),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition(
                "Established", "InitialNamesAccepted", "the initial names have been accepted"
            ),
        ],
        "storedVersions": storage,
    }


def kinds_of(crd: dict[str, Any]) -> list[tuple[Kind, dict[str, Any]]]:
    """The served kinds of a CRD, each with its version entry."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subs = version.get("subresources") or {}
        out.append(
            (
                Kind(
                    group=spec.get("group", ""),
                    version=version["name"],
                    kind=names.get("kind", ""),
                    resource=names.get("plural", ""),
                    singular=names.get("singular") or names.get("kind", "").lower(),
                    namespaced=spec.get("scope") == "Namespaced",
                    short_names=tuple(names.get("shortNames") or ()),
                    categories=tuple(names.get("categories") or ()),
                    subresources=tuple(s for s in ("status", "scale") if s in subs),
                    custom=True,
                ),
                version,
            )
        )
    return out


class CustomResources:
    """The live set of custom kinds."""

    def __init__(self, registry: Registry, schemas: SchemaSink) -> None:
        self.registry = registry
        self.schemas = schemas
        self._versions: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._by_crd: dict[str, list[Kind]] = {}

    def sync(self, crd: dict[str, Any]) -> None:
        """Serve the CRD's current versions (idempotent)."""
        self.remove(crd)
        name = crd["metadata"]["name"]
        served = []
        for kind, version in kinds_of(crd):
            if not kind.resource or not kind.kind:
                continue
            self.registry.add(kind)
            self._versions[(kind.group, kind.version, kind.resource)] = version
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self.schemas.set_custom_schema(kind, schema)
            served.append(kind)
        self._by_crd[name] = served

    def remove(self, crd: dict[str, Any]) -> list[Kind]:
        """Stop serving the CRD's kinds; returns the kinds that were served."""
        removed = self._by_crd.pop(crd["metadata"]["name"], [])
        for kind in removed:
            self.registry.remove(kind)
            self._versions.pop((kind.group, kind.version, kind.resource), None)
            self.schemas.remove_custom(kind)
        return removed

    def schema(self, kind: Kind) -> dict[str, Any] | None:
        """The served version's openAPIV3Schema of a custom kind (None: anything goes)."""
        version = self._versions.get((kind.group, kind.version, kind.resource)) or {}
        schema: dict[str, Any] | None = (version.get("schema") or {}).get("openAPIV3Schema")
        return schema

    def printer_columns(self, kind: Kind) -> list[dict[str, Any]] | None:
        """The CRD version's additionalPrinterColumns (None for built-in kinds)."""
        if not kind.custom:
            return None
        version = self._versions.get((kind.group, kind.version, kind.resource)) or {}
        return list(version.get("additionalPrinterColumns") or [])

    def scale_paths(self, kind: Kind) -> ScalePaths:
        if not kind.custom:
            return ScalePaths()
        version = self._versions.get((kind.group, kind.version, kind.resource)) or {}
        scale = (version.get("subresources") or {}).get("scale") or {}
        return ScalePaths(
            spec_replicas=scale.get("specReplicasPath", ".spec.replicas"),
            status_replicas=scale.get("statusReplicasPath", ".status.replicas"),
            selector=scale.get("labelSelectorPath", ".status.selector"),
            selector_is_string=True,
        )
