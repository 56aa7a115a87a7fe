"""RBAC authorization, ClusterRole aggregation, 403 messages and the default policy."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

import pytest

from edgek.kinds import Registry
from edgek.validation import unknown_fields, validate, validate_types
from server.auth.attributes import Attributes, Decision
from server.auth.bootstrap_policy import (
    default_cluster_role_bindings,
    default_cluster_roles,
    rule,
)
from server.auth.rbac import RBACAuthorizer, aggregate, forbidden_message, rule_allows
from server.storage.requestinfo import UserInfo

RBAC = "rbac.authorization.k8s.io"


class Source:
    """An RBACSource over plain lists of objects."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = list(objs)

    def _of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objs if o["kind"] == kind]

    def cluster_roles(self) -> Iterable[dict[str, Any]]:
        return self._of("ClusterRole")

    def cluster_role(self, name: str) -> dict[str, Any] | None:
        return next((o for o in self._of("ClusterRole") if o["metadata"]["name"] == name), None)

    def cluster_role_bindings(self) -> Iterable[dict[str, Any]]:
        return self._of("ClusterRoleBinding")

    def role(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next(
            (
                o
                for o in self._of("Role")
                if o["metadata"] == {"namespace": namespace, "name": name}
            ),
            None,
        )

    def role_bindings(self, namespace: str) -> Iterable[dict[str, Any]]:
        return [o for o in self._of("RoleBinding") if o["metadata"]["namespace"] == namespace]


def cluster_role(name: str, *rules: dict[str, Any], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "rules": list(rules),
    }


def role(namespace: str, name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"namespace": namespace, "name": name},
        "rules": list(rules),
    }


def subject(spec: str) -> dict[str, str]:
    """``User:alice``, ``Group:devs``, ``ServiceAccount:ns/name`` or ``ServiceAccount:name``."""
    kind, name = spec.split(":", 1)
    if kind == "ServiceAccount":
        ns, _, sa = name.rpartition("/")
        return {"kind": kind, "name": sa, **({"namespace": ns} if ns else {})}
    return {"kind": kind, "apiGroup": RBAC, "name": name}


def crb(name: str, role_name: str, *subjects: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role_name},
        "subjects": [subject(s) for s in subjects],
    }


def rb(ns: str, name: str, ref: str, *subjects: str) -> dict[str, Any]:
    """``ref`` is ``Role/name`` or ``ClusterRole/name``."""
    kind, role_name = ref.split("/")
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"namespace": ns, "name": name},
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role_name},
        "subjects": [subject(s) for s in subjects],
    }


def user(name: str, *groups: str) -> UserInfo:
    return UserInfo(name, tuple(groups))


def res(u: UserInfo, verb: str, resource: str, ns: str = "", **kw: str) -> Attributes:
    """A resource request; ``resource`` may be ``group/resource`` and ``res/sub`` as
    ``resource:sub``."""
    group, _, resource = resource.rpartition("/")
    resource, _, sub = resource.partition(":")
    return Attributes(u, verb, True, group, "v1", resource, sub, ns, **kw)


def url(u: UserInfo, verb: str, path: str) -> Attributes:
    return Attributes(u, verb, resource_request=False, path=path)


SA_BOB = "system:serviceaccount:team:bob"

POLICY = Source(
    cluster_role("pod-reader", rule("get list watch", "core", "pods")),
    cluster_role("secret-getter", rule("get", "core", "secrets", names="one two")),
    cluster_role("scaler", rule("update", "*", "*/scale")),
    cluster_role("logs", rule("get", "core", "pods/log")),
    cluster_role("pods-star", rule("get", "core", "pods/*")),
    cluster_role("everything", rule("*", "*", "*")),
    cluster_role("apps-all", rule("*", "apps", "deployments")),
    cluster_role("health", rule("get", urls="/healthz /healthz/* /version")),
    cluster_role("all-urls", rule("get post", urls="*")),
    cluster_role("nodes-viewer", rule("get list", "core", "nodes")),
    role("team", "cm-editor", rule("create update", "core", "configmaps")),
    role("other", "cm-editor", rule("*", "*", "*")),
    crb("readers", "pod-reader", "Group:readers"),
    crb("carol-nodes", "nodes-viewer", "User:carol"),
    crb("bob-scaler", "scaler", "ServiceAccount:team/bob"),
    crb("health", "health", "Group:system:authenticated"),
    crb("robot-urls", "all-urls", "User:robot"),
    crb("no-ns-sa", "everything", "ServiceAccount:bob"),  # no namespace: matches nobody
    rb("team", "alice-cm", "Role/cm-editor", "User:alice"),
    rb("team", "alice-secrets", "ClusterRole/secret-getter", "User:alice"),
    rb("team", "bob-logs", "ClusterRole/logs", "ServiceAccount:bob"),
    rb("team", "devs-apps", "ClusterRole/apps-all", "Group:devs"),
    rb("team", "dave-star", "ClusterRole/pods-star", "User:dave"),
    rb("other", "bob-everything", "ClusterRole/everything", "ServiceAccount:elsewhere/bob"),
)

ALICE = user("alice", "system:authenticated")
BOB = user(SA_BOB, "system:serviceaccounts", "system:serviceaccounts:team")
READER = user("rita", "readers")
DEV = user("dan", "devs")

AUTHZ_CASES: list[tuple[str, Attributes, bool]] = [
    # cluster bindings grant everywhere, by group
    ("group list pods in ns", res(READER, "list", "pods", "team"), True),
    ("group list pods all namespaces", res(READER, "list", "pods"), True),
    ("group cannot delete pods", res(READER, "delete", "pods", "team", name="p"), False),
    ("group rule is core only", res(READER, "list", "apps/pods", "team"), False),
    ("user of crb lists nodes", res(user("carol"), "list", "nodes"), True),
    ("other user does not", res(user("carl"), "list", "nodes"), False),
    # namespace bindings grant only in their namespace
    ("role in ns", res(ALICE, "create", "configmaps", "team"), True),
    ("role verbs are exact", res(ALICE, "delete", "configmaps", "team", name="x"), False),
    ("role not in other ns", res(ALICE, "create", "configmaps", "other"), False),
    ("rolebinding not cluster-wide", res(ALICE, "create", "configmaps"), False),
    # resourceNames
    ("named secret", res(ALICE, "get", "secrets", "team", name="one"), True),
    ("other named secret", res(ALICE, "get", "secrets", "team", name="three"), False),
    ("list is not named", res(ALICE, "get", "secrets", "team"), False),
    # service accounts: namespace defaults to the binding's
    ("sa subresource in binding ns", res(BOB, "get", "pods:log", "team", name="p"), True),
    ("sa binding elsewhere ns", res(BOB, "get", "pods:log", "other", name="p"), False),
    ("sa namespace mismatch", res(BOB, "delete", "pods", "other", name="p"), False),
    ("sa crb without namespace", res(BOB, "delete", "pods"), False),
    ("sa crb */scale", res(BOB, "update", "apps/deployments:scale", "x", name="d"), True),
    ("*/scale is not the resource", res(BOB, "update", "apps/deployments", "x", name="d"), False),
    ("*/scale is not status", res(BOB, "update", "apps/deployments:status", "x"), False),
    # subresources need their own rules
    ("pods/log is not pods", res(BOB, "get", "pods", "team", name="p"), False),
    ("pods/* is no wildcard", res(user("dave"), "get", "pods:log", "team"), False),
    # wildcards
    ("verb wildcard", res(DEV, "deletecollection", "apps/deployments", "team"), True),
    ("group must match", res(DEV, "get", "extensions/deployments", "team"), False),
    ("resource must match", res(DEV, "get", "apps/replicasets", "team"), False),
    ("rb group not outside ns", res(DEV, "get", "apps/deployments", "other"), False),
    # non-resource URLs
    ("exact url", url(ALICE, "get", "/version"), True),
    ("prefix url", url(ALICE, "get", "/healthz/etcd"), True),
    ("bare url", url(ALICE, "get", "/healthz"), True),
    ("prefix needs the slash", url(ALICE, "get", "/healthzz"), False),
    ("url verb", url(ALICE, "post", "/healthz"), False),
    ("unauthenticated", url(user("system:anonymous"), "get", "/version"), False),
    ("url star", url(user("robot"), "post", "/anything/at/all"), True),
    ("url rules do not grant resources", res(user("robot"), "get", "pods", "team"), False),
]


@pytest.mark.parametrize(
    ("attrs", "allowed"), [c[1:] for c in AUTHZ_CASES], ids=[c[0] for c in AUTHZ_CASES]
)
def test_authorize(attrs: Attributes, allowed: bool) -> None:
    decision = RBACAuthorizer(POLICY).authorize(attrs)
    assert decision.allowed is allowed
    assert decision.no_opinion is not allowed


def test_allowed_reasons() -> None:
    authz = RBACAuthorizer(POLICY)
    assert authz.authorize(res(READER, "get", "pods", "team")).reason == (
        'RBAC: allowed by ClusterRoleBinding "readers" of ClusterRole "pod-reader" '
        'to Group "readers"'
    )
    assert authz.authorize(res(ALICE, "update", "configmaps", "team")).reason == (
        'RBAC: allowed by RoleBinding "alice-cm/team" of Role "cm-editor" to User "alice"'
    )
    # upstream prints a ServiceAccount subject as "name/namespace"
    assert authz.authorize(res(BOB, "get", "pods:log", "team")).reason == (
        'RBAC: allowed by RoleBinding "bob-logs/team" of ClusterRole "logs" '
        'to ServiceAccount "bob/team"'
    )


def test_denial_has_no_reason_without_errors() -> None:
    assert RBACAuthorizer(POLICY).authorize(res(ALICE, "get", "nodes")) == Decision(
        False, "", no_opinion=True
    )


def test_unresolvable_roles_are_the_reason() -> None:
    source = Source(
        crb("b1", "missing", "User:eve"),
        rb("ns", "b2", "Role/gone", "User:eve"),
        rb("ns", "b3", "ClusterRole/missing", "User:eve"),
        rb("ns", "b4", "Role/gone", "User:someone-else"),
        {**crb("b5", "x", "User:eve"), "roleRef": {"apiGroup": RBAC, "kind": "Foo", "name": "x"}},
    )
    decision = RBACAuthorizer(source).authorize(res(user("eve"), "get", "pods", "ns"))
    assert decision.no_opinion and not decision.allowed
    assert decision.reason == (
        'RBAC: [clusterrole.rbac.authorization.k8s.io "missing" not found, '
        'unsupported role reference kind: "Foo", '
        'role.rbac.authorization.k8s.io "gone" not found]'
    )
    one = Source(crb("b1", "missing", "User:eve"))
    assert RBACAuthorizer(one).authorize(res(user("eve"), "get", "nodes")).reason == (
        'RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found'
    )


def test_an_error_does_not_hide_a_grant() -> None:
    source = Source(
        crb("broken", "missing", "User:eve"),
        cluster_role("ok", rule("get", "core", "pods")),
        crb("works", "ok", "User:eve"),
    )
    assert RBACAuthorizer(source).authorize(res(user("eve"), "get", "pods", "x")).allowed


def test_rule_allows_tolerates_null_fields() -> None:
    attrs = res(ALICE, "get", "pods", "x")
    assert not rule_allows(attrs, {"verbs": ["get"], "apiGroups": None, "resources": ["pods"]})
    assert rule_allows(attrs, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})


# ---------------------------------------------------------------------------
# rules_for


def test_rules_for_shapes_and_scope() -> None:
    authz = RBACAuthorizer(POLICY)
    resources, non_resources, incomplete = authz.rules_for(ALICE, "team")
    assert resources == [
        {"verbs": ["create", "update"], "apiGroups": [""], "resources": ["configmaps"]},
        {
            "verbs": ["get"],
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["one", "two"],
        },
    ]
    assert non_resources == [
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/healthz/*", "/version"]}
    ]
    assert incomplete is False
    # outside "team" only the cluster-wide grants remain
    assert authz.rules_for(ALICE, "other")[0] == []
    assert authz.rules_for(ALICE, "")[0] == []
    assert authz.rules_for(BOB, "team")[0] == [
        {"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/scale"]},
        {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]},
    ]


def test_rules_for_marks_unresolved_roles_incomplete() -> None:
    source = Source(crb("b", "missing", "User:eve"))
    assert RBACAuthorizer(source).rules_for(user("eve"), "x") == ([], [], True)


# ---------------------------------------------------------------------------
# aggregation


def test_aggregate_union_order_and_dedup() -> None:
    shared = rule("get", "core", "pods")
    roles = [
        {
            # it matches its own selector: its own (stale) rules are not included
            **cluster_role("agg", rule("delete", "core", "stale"), x="true"),
            "aggregationRule": {
                "clusterRoleSelectors": [
                    {"matchLabels": {"x": "true"}},
                    {"matchExpressions": [{"key": "y", "operator": "Exists"}]},
                ]
            },
        },
        cluster_role("b", shared, rule("list", "core", "pods"), x="true"),
        cluster_role("a", rule("watch", "core", "pods"), shared, x="true"),
        cluster_role("c", {**shared, "resourceNames": []}, y="1"),  # equal to shared
        cluster_role("d", rule("create", "core", "pods"), y="2", x="true"),
        cluster_role("z", rule("*", "*", "*")),  # unselected
    ]
    assert aggregate(roles) == {
        "agg": [
            rule("watch", "core", "pods"),
            shared,
            rule("list", "core", "pods"),
            rule("create", "core", "pods"),
        ]
    }


def test_aggregate_invalid_selector_keeps_rules() -> None:
    bad = {
        **cluster_role("agg", rule("get", "core", "pods")),
        "aggregationRule": {
            "clusterRoleSelectors": [{"matchExpressions": [{"key": "k", "operator": "Nope"}]}]
        },
    }
    assert aggregate([bad, cluster_role("x", rule("*", "*", "*"), k="v")]) == {
        "agg": [rule("get", "core", "pods")]
    }


def stripped_defaults() -> list[dict[str, Any]]:
    roles = copy.deepcopy(default_cluster_roles())
    for r in roles:
        if "aggregationRule" in r:
            r["rules"] = []
    return roles


def test_aggregate_default_chain() -> None:
    roles = {r["metadata"]["name"]: r for r in default_cluster_roles()}
    got = aggregate(stripped_defaults())
    assert set(got) == {"admin", "edit", "view"}
    assert got["view"] == roles["system:aggregate-to-view"]["rules"]
    assert got["edit"] == roles["system:aggregate-to-edit"]["rules"] + got["view"]
    assert got["admin"] == got["edit"] + roles["system:aggregate-to-admin"]["rules"]
    # default_cluster_roles ships the aggregated result
    assert all(roles[name]["rules"] == got[name] for name in got)


def test_aggregate_picks_up_a_custom_role() -> None:
    roles = [
        *stripped_defaults(),
        cluster_role(
            "crontabs-view",
            rule("get list watch", "stable.example.com", "crontabs"),
            **{"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        ),
    ]
    got = aggregate(roles)
    assert all(
        rule("get list watch", "stable.example.com", "crontabs") in got[n]
        for n in ("view", "edit", "admin")
    )


def defaults_with(*objs: dict[str, Any]) -> RBACAuthorizer:
    return RBACAuthorizer(Source(*default_cluster_roles(), *default_cluster_role_bindings(), *objs))


AGG_CASES: list[tuple[str, str, str, bool]] = [
    # (role, verb, resource, allowed) in namespace "ns"
    ("admin", "list", "apps/deployments", True),
    ("admin", "create", f"{RBAC}/rolebindings", True),
    ("admin", "get", "secrets", True),
    ("admin", "create", "authorization.k8s.io/localsubjectaccessreviews", True),
    ("admin", "update", "resourcequotas", False),
    ("edit", "update", "apps/deployments:scale", True),
    ("edit", "create", "pods:exec", True),
    ("edit", "get", "secrets", True),
    ("edit", "create", f"{RBAC}/rolebindings", False),
    ("edit", "update", "resourcequotas", False),
    ("view", "list", "apps/deployments", True),
    ("view", "get", "pods:log", True),
    ("view", "watch", "discovery.k8s.io/endpointslices", True),
    ("view", "get", "secrets", False),
    ("view", "list", "secrets", False),
    ("view", "create", "pods:exec", False),
    ("view", "delete", "pods", False),
    ("view", "list", f"{RBAC}/roles", False),
]


@pytest.mark.parametrize(("role_name", "verb", "resource", "allowed"), AGG_CASES)
def test_default_aggregated_roles(role_name: str, verb: str, resource: str, allowed: bool) -> None:
    authz = defaults_with(rb("ns", "b", f"ClusterRole/{role_name}", "User:u"))
    assert authz.authorize(res(user("u"), verb, resource, "ns")).allowed is allowed
    # a RoleBinding to a ClusterRole grants nothing in another namespace
    assert not authz.authorize(res(user("u"), verb, resource, "elsewhere")).allowed


ROOT = user("root", "system:masters")
AUTHED = user("a", "system:authenticated")
ANON = user("system:anonymous", "system:unauthenticated")
BOOT = user("system:bootstrap:abcdef", "system:bootstrappers")
NODE = user("system:node:n1", "system:nodes")
SCHED = user("system:kube-scheduler")
KCM = user("system:kube-controller-manager")
CSRS = "certificates.k8s.io/certificatesigningrequests"
LEASES = "coordination.k8s.io/leases"

DEFAULT_CASES: list[tuple[str, Attributes, bool]] = [
    ("masters do anything", res(ROOT, "delete", "nodes"), True),
    ("masters any url", url(ROOT, "put", "/x"), True),
    ("authenticated discovery", url(AUTHED, "get", "/apis/apps"), True),
    ("authenticated openapi", url(AUTHED, "get", "/openapi/v3"), True),
    ("authenticated ssar", res(AUTHED, "create", "authorization.k8s.io/selfsubjectaccessreviews"), True),
    ("authenticated whoami", res(AUTHED, "create", "authentication.k8s.io/selfsubjectreviews"), True),
    ("authenticated no pods", res(AUTHED, "list", "pods", "x"), False),
    ("anonymous version", url(ANON, "get", "/version"), True),
    ("anonymous livez", url(ANON, "get", "/livez"), True),
    ("anonymous no discovery", url(ANON, "get", "/api"), False),
    ("anonymous no ssar", res(ANON, "create", "authorization.k8s.io/selfsubjectaccessreviews"), False),
    ("monitoring metrics", url(user("m", "system:monitoring"), "get", "/metrics"), True),
    ("bootstrapper csr", res(BOOT, "create", CSRS), True),
    ("bootstrapper nodeclient", res(BOOT, "create", CSRS + ":nodeclient"), True),
    ("bootstrapper no selfnodeclient", res(BOOT, "create", CSRS + ":selfnodeclient"), False),
    ("bootstrapper no nodes", res(BOOT, "get", "nodes"), False),
    ("node selfnodeclient", res(NODE, "create", CSRS + ":selfnodeclient"), True),
    # system:node is bound to nobody: the node authorizer decides what nodes may do
    ("node status is not RBAC's", res(NODE, "patch", "nodes:status", name="n1"), False),
    ("node reads no secrets via RBAC", res(NODE, "get", "secrets", "x"), False),
    ("node cannot delete nodes", res(NODE, "delete", "nodes"), False),
    ("scheduler binds", res(SCHED, "create", "pods:binding", "x"), True),
    ("scheduler own lease", res(SCHED, "update", LEASES, "kube-system", name="kube-scheduler"), True),
    ("scheduler other lease", res(SCHED, "update", LEASES, "kube-system", name="x"), False),
    ("volume scheduler", res(SCHED, "patch", "persistentvolumes"), True),
    ("kcm watches all", res(KCM, "watch", "apps/deployments"), True),
    ("kcm cannot write all", res(KCM, "create", "apps/deployments", "x"), False),
    ("kube-dns sa", res(user("system:serviceaccount:kube-system:kube-dns"), "list", "services"), True),
    ("oidc discovery", url(user("x", "system:serviceaccounts"), "get", "/openid/v1/jwks"), True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("attrs", "allowed"), [c[1:] for c in DEFAULT_CASES], ids=[c[0] for c in DEFAULT_CASES]
)
def test_default_bindings(attrs: Attributes, allowed: bool) -> None:
    assert defaults_with().authorize(attrs).allowed is allowed


# ---------------------------------------------------------------------------
# 403 messages

ALICE_Q = 'User "alice"'
FORBIDDEN_CASES: list[tuple[Attributes, str, str]] = [
    (
        res(ALICE, "list", "pods", "default"),
        "",
        f'pods is forbidden: {ALICE_Q} cannot list resource "pods" in API group "" '
        'in the namespace "default"',
    ),
    (
        res(ALICE, "delete", "pods", "ns", name="x"),
        "",
        f'pods "x" is forbidden: {ALICE_Q} cannot delete resource "pods" in API group "" '
        'in the namespace "ns"',
    ),
    (
        res(ALICE, "list", "nodes"),
        "",
        f'nodes is forbidden: {ALICE_Q} cannot list resource "nodes" in API group "" '
        "at the cluster scope",
    ),
    (
        res(ALICE, "get", "pods:log", "ns", name="p"),
        "",
        f'pods "p" is forbidden: {ALICE_Q} cannot get resource "pods/log" in API group "" '
        'in the namespace "ns"',
    ),
    (
        res(ALICE, "create", "apps/deployments", "ns"),
        "",
        f'deployments.apps is forbidden: {ALICE_Q} cannot create resource "deployments" '
        'in API group "apps" in the namespace "ns"',
    ),
    (
        res(ALICE, "list", f"{RBAC}/clusterroles"),
        "",
        f'clusterroles.{RBAC} is forbidden: {ALICE_Q} cannot list resource "clusterroles" '
        f'in API group "{RBAC}" at the cluster scope',
    ),
    (url(ALICE, "get", "/foo"), "", f'forbidden: {ALICE_Q} cannot get path "/foo"'),
    (
        res(user(SA_BOB), "get", "secrets", "team", name="s"),
        'RBAC: role.rbac.authorization.k8s.io "r" not found',
        f'secrets "s" is forbidden: User "{SA_BOB}" cannot get resource "secrets" '
        'in API group "" in the namespace "team": '
        'RBAC: role.rbac.authorization.k8s.io "r" not found',
    ),
    (
        url(user('a"<b>&'), "post", "/x"),
        "",
        'forbidden: User "a\\"&lt;b&gt;&amp;" cannot post path "/x"',
    ),
]


@pytest.mark.parametrize(("attrs", "reason", "message"), FORBIDDEN_CASES)
def test_forbidden_message(attrs: Attributes, reason: str, message: str) -> None:
    assert forbidden_message(attrs, reason) == message


def test_forbidden_message_uses_the_authorizer_reason() -> None:
    source = Source(rb("ns", "b", "Role/r", "User:alice"))
    attrs = res(ALICE, "list", "pods", "ns")
    decision = RBACAuthorizer(source).authorize(attrs)
    assert forbidden_message(attrs, decision.reason).endswith(
        'in the namespace "ns": RBAC: role.rbac.authorization.k8s.io "r" not found'
    )


# ---------------------------------------------------------------------------
# the default policy as objects

KINDS = Registry()
REQUIRED_ROLES = {
    "cluster-admin", "admin", "edit", "view", "system:aggregate-to-admin",
    "system:aggregate-to-edit", "system:aggregate-to-view", "system:discovery",
    "system:basic-user", "system:public-info-viewer", "system:node", "system:node-bootstrapper",
    "system:kube-scheduler", "system:kube-controller-manager",
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
    "system:volume-scheduler", "system:monitoring",
}  # fmt: skip


@pytest.mark.parametrize(
    ("objs", "resource", "kind"),
    [
        (default_cluster_roles(), "clusterroles", "ClusterRole"),
        (default_cluster_role_bindings(), "clusterrolebindings", "ClusterRoleBinding"),
    ],
    ids=["roles", "bindings"],
)
def test_defaults_are_valid_objects(objs: list[dict[str, Any]], resource: str, kind: str) -> None:
    k = KINDS.by_resource(RBAC, "v1", resource)
    assert k is not None and k.type_name is not None
    names = [o["metadata"]["name"] for o in objs]
    assert names == sorted(set(names))
    for obj in objs:
        assert (obj["apiVersion"], obj["kind"]) == (f"{RBAC}/v1", kind)
        assert json.loads(json.dumps(obj)) == obj
        assert unknown_fields(k.type_name, obj) == []
        assert validate_types(k.type_name, obj) == []
        assert validate(RBAC, resource, kind, obj, None, namespaced=False) == []
        meta = obj["metadata"]
        assert meta["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert meta["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def test_default_roles_and_bindings_fit_together() -> None:
    roles = {r["metadata"]["name"]: r for r in default_cluster_roles()}
    assert set(roles) >= REQUIRED_ROLES
    for binding in default_cluster_role_bindings():
        assert binding["roleRef"]["name"] in roles
    labels = {n: r["metadata"]["labels"] for n, r in roles.items()}
    agg = "rbac.authorization.k8s.io/aggregate-to-"
    assert labels["edit"][agg + "admin"] == "true"
    assert labels["view"][agg + "edit"] == "true"
    for to in ("admin", "edit", "view"):
        assert labels[f"system:aggregate-to-{to}"][agg + to] == "true"
        assert roles[to]["aggregationRule"] == {
            "clusterRoleSelectors": [{"matchLabels": {agg + to: "true"}}]
        }
    assert roles["cluster-admin"]["rules"] == [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ]


def test_defaults_are_fresh_copies() -> None:
    first = default_cluster_roles()
    first[0]["metadata"]["labels"]["x"] = "y"
    first[0]["rules"].clear()
    assert default_cluster_roles()[0]["rules"]
    assert "x" not in default_cluster_roles()[0]["metadata"]["labels"]


def test_decisions_are_cached_until_invalidated() -> None:
    source = Source(*POLICY.objs)
    authz = RBACAuthorizer(source)
    attrs = res(ALICE, "update", "configmaps", "team")
    assert authz.authorize(attrs).allowed
    source.objs = [o for o in source.objs if o["kind"] != "RoleBinding"]
    assert authz.authorize(attrs).allowed  # cached: nothing said the policy changed
    authz.invalidate()
    assert not authz.authorize(attrs).allowed
