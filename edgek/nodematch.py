"""Pure node-matching helpers shared by the scheduler and the DaemonSet and taint-eviction
controllers (so below both).

Semantics follow ``k8s.io/component-helpers/scheduling/corev1`` (``ToleratesTaint``,
``nodeaffinity.NodeSelector`` and ``GetRequiredNodeAffinity``): node selector terms are ORed,
the requirements inside a term ANDed; an empty term, an empty term list or a term with an
invalid requirement matches nothing. Matchers can be compiled once (``compile_*``) and applied
to many nodes, which is what the scheduler does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

NodeMatcher = Callable[[Mapping[str, Any]], bool]

_NOTHING: NodeMatcher = lambda node: False  # noqa: E731
_EVERYTHING: NodeMatcher = lambda node: True  # noqa: E731


def tolerates(tolerations: list[dict[str, Any]] | None, taint: Mapping[str, Any]) -> bool:
    """True when one of ``tolerations`` tolerates ``taint`` (upstream ``ToleratesTaint``)."""
    return any(toleration_matches(t, taint) for t in tolerations or ())


def toleration_matches(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """One toleration against one taint: effect, key, then operator Equal/Exists."""
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    if key and key != (taint.get("key") or ""):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taints(
    node: Mapping[str, Any],
    tolerations: list[dict[str, Any]] | None,
    effects: Collection[str],
) -> list[dict[str, Any]]:
    """Taints of ``node`` whose effect is one of ``effects`` and that no toleration tolerates."""
    taints = (node.get("spec") or {}).get("taints") or ()
    return [t for t in taints if t.get("effect") in effects and not tolerates(tolerations, t)]


def _int(text: str) -> int | None:
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        return None


def _label_requirement(req: Mapping[str, Any]) -> Callable[[Mapping[str, str]], bool] | None:
    """A compiled matchExpressions requirement; ``None`` when it is invalid."""
    key = req.get("key") or ""
    op = req.get("operator") or ""
    values = list(req.get("values") or ())
    if not key:
        return None
    if op in ("In", "NotIn"):
        if not values:
            return None
        allowed = frozenset(values)
        if op == "In":
            return lambda labels: key in labels and labels[key] in allowed
        return lambda labels: key not in labels or labels[key] not in allowed
    if op in ("Exists", "DoesNotExist"):
        if values:
            return None
        if op == "Exists":
            return lambda labels: key in labels
        return lambda labels: key not in labels
    if op in ("Gt", "Lt"):
        return _numeric_requirement(key, op == "Gt", values)
    return None


def _numeric_requirement(
    key: str, greater: bool, values: list[Any]
) -> Callable[[Mapping[str, str]], bool] | None:
    """A compiled Gt (``greater``) or Lt requirement; ``None`` unless one integer value."""
    bound = _int(values[0]) if len(values) == 1 else None
    if bound is None:
        return None

    def compare(labels: Mapping[str, str]) -> bool:
        have = _int(labels[key]) if key in labels else None
        if have is None:
            return False
        return have > bound if greater else have < bound

    return compare


def _field_requirement(req: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool] | None:
    """A compiled matchFields requirement (``metadata.name``, In/NotIn with one value)."""
    key = req.get("key") or ""
    op = req.get("operator") or ""
    values = list(req.get("values") or ())
    if op not in ("In", "NotIn") or len(values) != 1:
        return None
    want = values[0]

    def field(node: Mapping[str, Any]) -> str:
        if key == "metadata.name":
            return str((node.get("metadata") or {}).get("name") or "")
        return ""

    if op == "In":
        return lambda node: field(node) == want
    return lambda node: field(node) != want


def _compile_term(term: Mapping[str, Any]) -> NodeMatcher:
    exprs = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not exprs and not fields:
        return _NOTHING
    label_reqs = [_label_requirement(r) for r in exprs]
    field_reqs = [_field_requirement(r) for r in fields]
    if any(r is None for r in label_reqs) or any(r is None for r in field_reqs):
        return _NOTHING
    lreqs = [r for r in label_reqs if r is not None]
    freqs = [r for r in field_reqs if r is not None]

    def match(node: Mapping[str, Any]) -> bool:
        labels = (node.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in lreqs) and all(r(node) for r in freqs)

    return match


def compile_node_selector_terms(terms: list[dict[str, Any]] | None) -> NodeMatcher:
    """A matcher for NodeSelectorTerms: ORed terms of ANDed requirements."""
    compiled = [m for m in (_compile_term(t) for t in terms or ()) if m is not _NOTHING]
    if not compiled:
        return _NOTHING
    if len(compiled) == 1:
        return compiled[0]
    return lambda node: any(m(node) for m in compiled)


def matches_node_selector_terms(node: Mapping[str, Any], terms: list[dict[str, Any]]) -> bool:
    """True when ``node`` matches at least one of the NodeSelectorTerms."""
    return compile_node_selector_terms(terms)(node)


def compile_pod_node_matcher(pod: Mapping[str, Any]) -> NodeMatcher:
    """A matcher for the pod's ``spec.nodeSelector`` AND its required node affinity."""
    spec = pod.get("spec") or {}
    selector: Mapping[str, str] = spec.get("nodeSelector") or {}
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    affinity = (
        compile_node_selector_terms(required.get("nodeSelectorTerms"))
        if required is not None
        else _EVERYTHING
    )
    if not selector:
        return affinity
    wanted = tuple(selector.items())

    def match(node: Mapping[str, Any]) -> bool:
        labels = (node.get("metadata") or {}).get("labels") or {}
        return all(labels.get(k) == v for k, v in wanted) and affinity(node)

    return match


def pod_matches_node(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """True when ``node`` satisfies the pod's nodeSelector and required node affinity."""
    return compile_pod_node_matcher(pod)(node)
