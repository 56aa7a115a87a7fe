"""Generate edgek/kinds_data.json, the kinds registry data, from the shared API facts.

Run: python scripts/gen_kinds.py ../shared/k8s-api-facts.json

The output keeps the facts' shape ({"kinds": [...], "types": {...}, "special": {...}})
restricted to the kinds edgek serves and every type reachable from them, so the
server never reads the shared facts at run time.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# (group, resource) pairs served by the API server.
SERVED: set[tuple[str, str]] = {
    ("", r)
    for r in [
        "namespaces",
        "pods",
        "services",
        "endpoints",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "nodes",
        "events",
        "persistentvolumes",
        "persistentvolumeclaims",
        "resourcequotas",
        "limitranges",
        "podtemplates",
    ]
} | {
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "controllerrevisions"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("coordination.k8s.io", "leases"),
    ("discovery.k8s.io", "endpointslices"),
    ("networking.k8s.io", "networkpolicies"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"),
    ("policy", "poddisruptionbudgets"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("storage.k8s.io", "storageclasses"),
    ("events.k8s.io", "events"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}

# Types needed beyond the served kinds: subresource bodies and request options.
EXTRA_TYPES = [
    "autoscaling/v1.Scale",
    "policy/v1.Eviction",
    "meta/v1.DeleteOptions",
    "meta/v1.Status",
    "meta/v1.Table",
    "meta/v1.PartialObjectMetadata",
    "meta/v1.WatchEvent",
    "runtime.Unknown",
]

TYPE_REF = re.compile(
    r"[A-Za-z0-9_.-]+/v[0-9a-z]+\.[A-Za-z0-9_]+|runtime\.[A-Za-z]+|intstr\.[A-Za-z]+"
)


def referenced(type_expr: str) -> list[str]:
    """Type names referenced by a field type expression such as '[]core/v1.Container'."""
    return TYPE_REF.findall(type_expr)


def generate(facts: dict) -> dict:
    kinds = [k for k in facts["kinds"] if (k["group"], k["resource"]) in SERVED]
    missing = SERVED - {(k["group"], k["resource"]) for k in kinds}
    if missing:
        raise SystemExit(f"facts lack served kinds: {sorted(missing)}")
    types: dict = facts["types"]
    seen: set[str] = set()
    todo = [k["type"] for k in kinds] + EXTRA_TYPES
    while todo:
        name = todo.pop()
        if name in seen or name not in types:
            continue
        seen.add(name)
        entry = types[name]
        for field in entry.get("fields", []):
            todo.extend(referenced(field["type"]))
        if "alias" in entry:
            todo.extend(referenced(entry["alias"]))
    out_types = {n: {k: v for k, v in types[n].items() if k != "markers"} for n in sorted(seen)}
    return {
        "sources": facts["sources"],
        "special": facts["special"],
        "kinds": kinds,
        "types": out_types,
    }


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/k8s-api-facts.json")
    dest = Path(__file__).resolve().parent.parent / "edgek" / "kinds_data.json"
    data = generate(json.loads(src.read_text()))
    dest.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {dest}: {len(data['kinds'])} kinds, {len(data['types'])} types")


if __name__ == "__main__":
    main()
