"""Generate edgek/kinds_data.json, the kinds registry data, from the API facts.

Run: python scripts/gen_kinds.py [FACTS]

FACTS defaults to ``scripts/k8s-api-facts.json``, the committed copy of the wire facts
extracted from the upstream Go types, so a clone regenerates the file by itself
(``tests/unit/test_kinds.py`` fails while ``edgek/kinds_data.json`` is stale).

The output keeps the facts' shape ({"kinds": [...], "types": {...}, "special": {...}})
restricted to the kinds edgek serves and every type reachable from them, so the
server never reads the shared facts at run time. It stays compact: of the type-level
markers only ``+structType=atomic`` is kept (as ``"structType": "atomic"``), field wire
kinds are left out (edgek derives them from the Go types), and ``bodies`` lists the
non-resource kinds accepted as request bodies.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FACTS = HERE / "k8s-api-facts.json"
OUTPUT = HERE.parent / "edgek" / "kinds_data.json"

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
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "volumeattachments"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("events.k8s.io", "events"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}

# Types needed beyond the served kinds: subresource and request bodies, request options.
# Each maps to the apiVersion it is sent in as a body of its own, or None.
EXTRA_TYPES: dict[str, str | None] = {
    "autoscaling/v1.Scale": "autoscaling/v1",
    "policy/v1.Eviction": "policy/v1",
    "core/v1.Binding": "v1",
    "authentication/v1.TokenRequest": "authentication.k8s.io/v1",
    "authorization/v1.SelfSubjectAccessReview": "authorization.k8s.io/v1",
    "meta/v1.DeleteOptions": None,
    "meta/v1.Status": None,
    "meta/v1.Table": None,
    "meta/v1.PartialObjectMetadata": None,
    "meta/v1.WatchEvent": None,
    "runtime.Unknown": None,
}

# Empty structs upstream that the facts leave out (they record no type without fields).
EMPTY_STRUCTS = frozenset({"apiextensions/v1.CustomResourceSubresourceStatus"})

# Field facts edgek does not use.
DROPPED_FIELD_KEYS = frozenset({"protoWire", "notInJSON"})

TYPE_REF = re.compile(
    r"[A-Za-z0-9_.-]+/v[0-9a-z]+\.[A-Za-z0-9_]+|runtime\.[A-Za-z]+|intstr\.[A-Za-z]+"
)


def referenced(type_expr: str) -> list[str]:
    """Type names referenced by a field type expression such as '[]core/v1.Container'."""
    return TYPE_REF.findall(type_expr)


def compact(entry: dict) -> dict:
    """A type entry as kept: fields without unused keys, markers reduced to structType."""
    out = {k: v for k, v in entry.items() if k not in ("fields", "markers")}
    if "fields" in entry:
        out["fields"] = [
            {k: v for k, v in f.items() if k not in DROPPED_FIELD_KEYS} for f in entry["fields"]
        ]
    if "+structType=atomic" in entry.get("markers", []):
        out["structType"] = "atomic"
    return out


def bodies(types: dict) -> list[dict[str, str]]:
    """The non-resource kinds accepted as request bodies, with their schema types."""
    return [
        {"apiVersion": api_version, "kind": name.rpartition(".")[2], "type": name}
        for name, api_version in sorted(EXTRA_TYPES.items())
        if api_version is not None and name in types
    ]


def generate(facts: dict) -> dict:
    kinds = [k for k in facts["kinds"] if (k["group"], k["resource"]) in SERVED]
    missing = SERVED - {(k["group"], k["resource"]) for k in kinds}
    if missing:
        raise SystemExit(f"facts lack served kinds: {sorted(missing)}")
    absent = [name for name in EXTRA_TYPES if name not in facts["types"]]
    if absent:
        raise SystemExit(f"facts lack extra types: {absent}")
    types: dict = {name: {"fields": []} for name in EMPTY_STRUCTS} | facts["types"]
    seen: set[str] = set()
    todo = [k["type"] for k in kinds] + list(EXTRA_TYPES)
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
    return {
        "sources": facts["sources"],
        "special": facts["special"],
        "kinds": kinds,
        "bodies": bodies(types),
        "types": {n: compact(types[n]) for n in sorted(seen)},
    }


def render(facts_path: Path = FACTS) -> str:
    """The text of ``edgek/kinds_data.json`` generated from the facts at ``facts_path``."""
    data = generate(json.loads(facts_path.read_text()))
    return json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n"


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else FACTS
    OUTPUT.write_text(render(src))
    print(f"wrote {OUTPUT} from {src}")


if __name__ == "__main__":
    main()
