"""RBAC authorization (upstream ``plugin/pkg/auth/authorizer/rbac`` semantics), ClusterRole
aggregation, and the 403 message the API server sends when a request is denied."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from edgek import names
from edgek.objects import Obj
from edgek.selectors import SelectorError, label_selector_from_object
from server.auth.attributes import NO_OPINION, Attributes, Decision
from server.storage.requestinfo import UserInfo


class RBACSource(Protocol):
    """Where RBAC objects come from (the server implements it over an in-memory cache)."""

    def cluster_roles(self) -> Iterable[dict[str, Any]]: ...

    def cluster_role(self, name: str) -> dict[str, Any] | None: ...

    def cluster_role_bindings(self) -> Iterable[dict[str, Any]]: ...

    def role(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def role_bindings(self, namespace: str) -> Iterable[dict[str, Any]]: ...


def _strings(rule: Obj, key: str) -> list[str]:
    return list(rule.get(key) or [])


def rule_allows(attrs: Attributes, rule: Obj) -> bool:
    """Whether one PolicyRule allows the request (upstream ``RuleAllows``)."""
    verbs = _strings(rule, "verbs")
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return any(
            url == "*"
            or url == attrs.path
            or (url.endswith("*") and attrs.path.startswith(url.rstrip("*")))
            for url in _strings(rule, "nonResourceURLs")
        )
    groups = _strings(rule, "apiGroups")
    if "*" not in groups and attrs.api_group not in groups:
        return False
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not any(
        r in ("*", combined) or (attrs.subresource and r == "*/" + attrs.subresource)
        for r in _strings(rule, "resources")
    ):
        return False
    resource_names = _strings(rule, "resourceNames")
    return not resource_names or attrs.name in resource_names


def service_account_username(namespace: str, name: str) -> str:
    """The user name a ServiceAccount's tokens authenticate as."""
    return f"system:serviceaccount:{namespace}:{name}"


def _applies(user: UserInfo, subject: Obj, namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.name == service_account_username(sa_namespace, name)
    return False


def _describe_subject(subject: Obj, namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        # Upstream prints "name/namespace" here.
        name = f"{name}/{subject.get('namespace') or namespace}"
    return f"{kind} {names.go_quote(name)}"


def _aggregate_message(errors: list[str]) -> str:
    """apimachinery's aggregate error text: one message as is, several (deduplicated) in []."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


@dataclass(frozen=True)
class _Grant:
    source: str
    rule: Obj


#: How many distinct request decisions are cached before the cache starts over.
_DECISIONS_KEPT = 10_000


class RBACAuthorizer:
    """Allows what some Role or ClusterRole bound to the user allows; otherwise no opinion."""

    def __init__(self, source: RBACSource) -> None:
        self.source = source
        # decisions by request attributes, dropped whenever any RBAC object changes
        self._decisions: dict[tuple[Any, ...], Decision] = {}

    def invalidate(self) -> None:
        """Forget cached decisions (a Role, ClusterRole or binding changed)."""
        self._decisions.clear()

    def _role_rules(self, ref: Obj, namespace: str) -> list[Obj] | str:
        """The rules a roleRef points at, or the resolution error message."""
        kind, name = ref.get("kind", ""), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.source.cluster_role(name)
            what = "clusterrole"
        elif kind == "Role":
            role = self.source.role(namespace, name)
            what = "role"
        else:
            return f"unsupported role reference kind: {names.go_quote(kind)}"
        if role is None:
            return f"{what}.rbac.authorization.k8s.io {names.go_quote(name)} not found"
        return list(role.get("rules") or [])

    def _visit(self, user: UserInfo, namespace: str, errors: list[str]) -> Iterator[_Grant]:
        """Every rule granted to ``user`` in ``namespace`` (cluster bindings first), with the
        binding that grants it; resolution errors are appended to ``errors``."""
        bindings: list[tuple[str, str, Obj]] = [
            ("ClusterRoleBinding", "", b) for b in self.source.cluster_role_bindings()
        ]
        if namespace:
            bindings += [
                ("RoleBinding", namespace, b) for b in self.source.role_bindings(namespace)
            ]
        for what, binding_ns, binding in bindings:
            subject = next(
                (s for s in binding.get("subjects") or [] if _applies(user, s, binding_ns)), None
            )
            if subject is None:
                continue
            ref = binding.get("roleRef") or {}
            rules = self._role_rules(ref, binding_ns)
            if isinstance(rules, str):
                errors.append(rules)
                continue
            name = binding.get("metadata", {}).get("name", "")
            if binding_ns:
                name = f"{name}/{binding.get('metadata', {}).get('namespace') or binding_ns}"
            source = (
                f"{what} {names.go_quote(name)} of {ref.get('kind', '')} "
                f"{names.go_quote(ref.get('name', ''))} to {_describe_subject(subject, binding_ns)}"
            )
            for rule in rules:
                yield _Grant(source, rule)

    def authorize(self, attrs: Attributes) -> Decision:
        """The decision for ``attrs``; evaluated once per distinct request until the RBAC
        objects change (evaluation walks every binding, which dominates a request)."""
        user = attrs.user
        key = (
            user.name,
            user.groups,
            attrs.verb,
            attrs.resource_request,
            attrs.api_group,
            attrs.resource,
            attrs.subresource,
            attrs.namespace,
            attrs.name,
            attrs.path,
        )
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= _DECISIONS_KEPT:
                self._decisions.clear()
            decision = self._decisions[key] = self._evaluate(attrs)
        return decision

    def _evaluate(self, attrs: Attributes) -> Decision:
        errors: list[str] = []
        for grant in self._visit(attrs.user, attrs.namespace, errors):
            if rule_allows(attrs, grant.rule):
                return Decision(True, f"RBAC: allowed by {grant.source}")
        if errors:
            return Decision(False, "RBAC: " + _aggregate_message(errors), no_opinion=True)
        return NO_OPINION

    def rules_for(
        self, user: UserInfo, namespace: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """``(resourceRules, nonResourceRules, incomplete)`` as SelfSubjectRulesReview's status
        shows them, in binding order and not deduplicated (as upstream). ``incomplete`` is set
        when some binding's role could not be resolved (upstream reports that only as the
        status's evaluationError; this signature has no other way to tell)."""
        errors: list[str] = []
        resource_rules: list[dict[str, Any]] = []
        non_resource_rules: list[dict[str, Any]] = []
        for grant in self._visit(user, namespace, errors):
            rule = grant.rule
            if rule.get("resources"):
                shown: dict[str, Any] = {"verbs": _strings(rule, "verbs")}
                for key in ("apiGroups", "resources", "resourceNames"):
                    if rule.get(key):
                        shown[key] = _strings(rule, key)
                resource_rules.append(shown)
            if rule.get("nonResourceURLs"):
                non_resource_rules.append(
                    {
                        "verbs": _strings(rule, "verbs"),
                        "nonResourceURLs": _strings(rule, "nonResourceURLs"),
                    }
                )
        return resource_rules, non_resource_rules, bool(errors)


def _normal_rule(rule: Obj) -> dict[str, Any]:
    """A rule with empty fields dropped, so nil and empty lists compare equal (as upstream's
    semantic equality does)."""
    out: dict[str, Any] = {"verbs": _strings(rule, "verbs")}
    for key in ("apiGroups", "resources", "resourceNames", "nonResourceURLs"):
        if rule.get(key):
            out[key] = _strings(rule, key)
    return out


def aggregate(cluster_roles: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """For every ClusterRole with an aggregationRule, the rules it should have: the rules of
    the ClusterRoles any of its clusterRoleSelectors match (selector by selector, matches by
    name, itself excluded), without duplicates — what the clusterrole-aggregation controller
    writes. Aggregated roles that select other aggregated roles (``view`` → ``edit`` →
    ``admin``) are resolved to the fixed point the controller converges to. A role with an
    invalid selector keeps its current rules."""
    roles = sorted(cluster_roles, key=lambda r: r.get("metadata", {}).get("name", ""))
    current = {
        r.get("metadata", {}).get("name", ""): [_normal_rule(x) for x in r.get("rules") or []]
        for r in roles
    }
    targets = _aggregation_targets(roles)
    # Each pass is one controller sync of every aggregated role; chains need one pass a link.
    for _ in range(len(targets) + 1):
        changed = False
        for name, selectors in targets.items():
            rules = _selected_rules(name, selectors, roles, current)
            if rules != current[name]:
                current[name] = rules
                changed = True
        if not changed:
            break
    return {
        r["metadata"]["name"]: current[r["metadata"]["name"]]
        for r in roles
        if r.get("aggregationRule") is not None
    }


def _aggregation_targets(roles: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The parsed clusterRoleSelectors of each role with a valid aggregationRule, by name."""
    targets: dict[str, list[Any]] = {}
    for role in roles:
        rule = role.get("aggregationRule")
        if rule is None:
            continue
        try:
            targets[role["metadata"]["name"]] = [
                label_selector_from_object(s) for s in rule.get("clusterRoleSelectors") or []
            ]
        except SelectorError:
            continue
    return targets


def _selected_rules(
    name: str,
    selectors: list[Any],
    roles: list[dict[str, Any]],
    current: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The current rules of the roles other than ``name`` that ``selectors`` match, selector
    by selector, without duplicates."""
    rules: list[dict[str, Any]] = []
    for selector in selectors:
        for other in roles:
            other_name = other.get("metadata", {}).get("name", "")
            if other_name == name or not selector.matches(other.get("metadata", {}).get("labels")):
                continue
            for r in current[other_name]:
                if r not in rules:
                    rules.append(r)
    return rules


_SANITIZE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """Upstream's 403 message for a denied request, with ``: <reason>`` appended when the
    authorizer gave a reason (responsewriters.Forbidden + apierrors.NewForbidden)."""
    user = names.go_quote(attrs.user.name)
    if not attrs.resource_request:
        msg = f"User {user} cannot {attrs.verb} path {names.go_quote(attrs.path)}"
    else:
        resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        where = (
            f"in the namespace {names.go_quote(attrs.namespace)}"
            if attrs.namespace
            else "at the cluster scope"
        )
        msg = (
            f"User {user} cannot {attrs.verb} resource {names.go_quote(resource)} "
            f"in API group {names.go_quote(attrs.api_group)} {where}"
        )
    msg = msg.translate(_SANITIZE)
    if reason:
        msg = f"{msg}: {reason}"
    if not attrs.api_group and not attrs.resource:
        return f"forbidden: {msg}"
    qualified = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
    if attrs.name:
        return f"{qualified} {names.go_quote(attrs.name)} is forbidden: {msg}"
    return f"{qualified} is forbidden: {msg}"
