"""The ClusterRoles and ClusterRoleBindings a fresh cluster has.

The roles follow upstream's bootstrap policy (``plugin/pkg/auth/authorizer/rbac/
bootstrappolicy``, feature-gated additions left out); the bindings are upstream's plus the
ones k3s and kubeadm add for node TLS bootstrap. Every object carries the label
``kubernetes.io/bootstrapping: rbac-defaults`` and the annotation
``rbac.authorization.kubernetes.io/autoupdate: "true"``.

edgek's scheduler and controllers run inside the server process and use the store directly,
so ``system:kube-scheduler`` and ``system:kube-controller-manager`` are upstream's roles as
they are, for clients that authenticate as those users.
"""

from __future__ import annotations

from typing import Any

from server.auth.rbac import aggregate

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_API_VERSION = f"{RBAC_GROUP}/v1"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE_ANNOTATION = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"

READ = "get list watch"
WRITE = "create update patch delete deletecollection"
READ_WRITE = f"{READ} {WRITE}"
EVENTS = ("create update patch", "core events.k8s.io", "events")

Rule = dict[str, Any]
RuleSpec = tuple[str, ...]


def rule(
    verbs: str, groups: str = "", resources: str = "", names: str = "", urls: str = ""
) -> Rule:
    """A PolicyRule from space-separated lists (``core`` is the legacy group ""), with sorted
    lists and empty fields left out, as upstream's rule builder makes them."""
    built: Rule = {"verbs": sorted(verbs.split())}
    for key, text in (
        ("apiGroups", groups),
        ("resources", resources),
        ("resourceNames", names),
        ("nonResourceURLs", urls),
    ):
        if values := sorted("" if v == "core" else v for v in text.split()):
            built[key] = values
    return built


def _rules(*specs: RuleSpec) -> list[Rule]:
    return [rule(*spec) for spec in specs]


def _url_rule(verbs: str, urls: str) -> RuleSpec:
    return (verbs, "", "", "", urls)


_ROLES: dict[str, tuple[RuleSpec, ...]] = {
    "cluster-admin": (("*", "*", "*"), _url_rule("*", "*")),
    "system:discovery": (
        _url_rule(
            "get",
            "/healthz /livez /readyz /version /version/ /openapi /openapi/* /api /api/* "
            "/apis /apis/*",
        ),
    ),
    "system:monitoring": (
        _url_rule(
            "get", "/metrics /metrics/slis /livez /readyz /healthz /livez/* /readyz/* /healthz/*"
        ),
    ),
    "system:basic-user": (
        ("create", "authorization.k8s.io", "selfsubjectaccessreviews selfsubjectrulesreviews"),
        ("create", "authentication.k8s.io", "selfsubjectreviews"),
    ),
    "system:public-info-viewer": (_url_rule("get", "/healthz /livez /readyz /version /version/"),),
    "system:aggregate-to-admin": (
        ("create", "authorization.k8s.io", "localsubjectaccessreviews"),
        (READ_WRITE, "rbac.authorization.k8s.io", "roles rolebindings"),
    ),
    "system:aggregate-to-edit": (
        (READ, "core", "pods/attach pods/proxy pods/exec pods/portforward secrets services/proxy"),
        ("impersonate", "core", "serviceaccounts"),
        (WRITE, "core", "pods pods/attach pods/proxy pods/exec pods/portforward"),
        ("create", "core", "pods/eviction"),
        (
            WRITE,
            "core",
            "replicationcontrollers replicationcontrollers/scale serviceaccounts services "
            "services/proxy persistentvolumeclaims configmaps secrets events",
        ),
        ("create", "core", "serviceaccounts/token"),
        (
            WRITE,
            "apps",
            "statefulsets statefulsets/scale daemonsets deployments deployments/scale "
            "deployments/rollback replicasets replicasets/scale",
        ),
        (WRITE, "autoscaling", "horizontalpodautoscalers"),
        (WRITE, "batch", "jobs cronjobs"),
        (
            WRITE,
            "extensions",
            "daemonsets deployments deployments/scale deployments/rollback ingresses replicasets "
            "replicasets/scale replicationcontrollers/scale networkpolicies",
        ),
        (WRITE, "policy", "poddisruptionbudgets"),
        (WRITE, "networking.k8s.io", "networkpolicies ingresses"),
        (READ_WRITE, "coordination.k8s.io", "leases"),
    ),
    "system:aggregate-to-view": (
        (
            READ,
            "core",
            "pods replicationcontrollers replicationcontrollers/scale serviceaccounts services "
            "services/status endpoints persistentvolumeclaims persistentvolumeclaims/status "
            "configmaps",
        ),
        (
            READ,
            "core",
            "limitranges resourcequotas bindings events pods/status resourcequotas/status "
            "namespaces/status replicationcontrollers/status pods/log",
        ),
        # Read access to namespaces at the namespace scope means reading *this* namespace.
        (READ, "core", "namespaces"),
        (READ, "discovery.k8s.io", "endpointslices"),
        (
            READ,
            "apps",
            "controllerrevisions statefulsets statefulsets/status statefulsets/scale daemonsets "
            "daemonsets/status deployments deployments/status deployments/scale replicasets "
            "replicasets/status replicasets/scale",
        ),
        (READ, "autoscaling", "horizontalpodautoscalers horizontalpodautoscalers/status"),
        (READ, "batch", "jobs cronjobs cronjobs/status jobs/status"),
        (
            READ,
            "extensions",
            "daemonsets daemonsets/status deployments deployments/scale deployments/status "
            "ingresses ingresses/status replicasets replicasets/scale replicasets/status "
            "replicationcontrollers/scale networkpolicies",
        ),
        (READ, "policy", "poddisruptionbudgets poddisruptionbudgets/status"),
        (READ, "networking.k8s.io", "ingresses ingresses/status networkpolicies"),
    ),
    "system:heapster": (
        (READ, "core", "events pods nodes namespaces"),
        (READ, "extensions", "deployments"),
    ),
    "system:node": (
        ("create", "authentication.k8s.io", "tokenreviews"),
        ("create", "authorization.k8s.io", "subjectaccessreviews localsubjectaccessreviews"),
        (READ, "core", "services"),
        ("create get list watch", "core", "nodes"),
        ("update patch", "core", "nodes/status"),
        ("update patch", "core", "nodes"),
        ("create update patch", "core", "events"),
        (READ, "core", "pods"),
        ("create delete", "core", "pods"),
        ("update patch", "core", "pods/status"),
        ("create", "core", "pods/eviction"),
        (READ, "core", "secrets configmaps"),
        ("get", "core", "persistentvolumeclaims persistentvolumes"),
        ("get", "core", "endpoints"),
        ("create get list watch", "certificates.k8s.io", "certificatesigningrequests"),
        ("delete create get update patch", "coordination.k8s.io", "leases"),
        ("get", "storage.k8s.io", "volumeattachments"),
        ("create", "core", "serviceaccounts/token"),
        ("get update patch", "core", "persistentvolumeclaims/status"),
        (READ, "storage.k8s.io", "csidrivers"),
        ("get create update patch delete", "storage.k8s.io", "csinodes"),
        (READ, "node.k8s.io", "runtimeclasses"),
    ),
    "system:node-problem-detector": (
        ("get", "core", "nodes"),
        ("patch", "core", "nodes/status"),
        EVENTS,
    ),
    "system:kubelet-api-admin": (
        (READ, "core", "nodes"),
        ("proxy", "core", "nodes"),
        ("*", "core", "nodes/proxy nodes/metrics nodes/stats nodes/log"),
    ),
    "system:node-bootstrapper": (
        ("create get list watch", "certificates.k8s.io", "certificatesigningrequests"),
    ),
    "system:auth-delegator": (
        ("create", "authentication.k8s.io", "tokenreviews"),
        ("create", "authorization.k8s.io", "subjectaccessreviews"),
    ),
    "system:kube-aggregator": ((READ, "core", "services endpoints"),),
    "system:kube-controller-manager": (
        EVENTS,
        ("create", "coordination.k8s.io", "leases"),
        ("get update", "coordination.k8s.io", "leases", "kube-controller-manager"),
        ("create", "core", "secrets serviceaccounts"),
        ("delete", "core", "secrets"),
        ("get", "core", "namespaces secrets serviceaccounts configmaps"),
        ("update", "core", "secrets serviceaccounts"),
        ("create", "authentication.k8s.io", "tokenreviews"),
        ("create", "authorization.k8s.io", "subjectaccessreviews"),
        ("list watch", "*", "*"),
        ("create", "core", "serviceaccounts/token"),
    ),
    "system:kube-dns": (("list watch", "core", "endpoints services"),),
    "system:persistent-volume-provisioner": (
        ("get list watch create delete", "core", "persistentvolumes"),
        ("get list watch update", "core", "persistentvolumeclaims"),
        (READ, "storage.k8s.io", "storageclasses"),
        ("watch", "core", "events"),
        EVENTS,
    ),
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": (
        ("create", "certificates.k8s.io", "certificatesigningrequests/nodeclient"),
    ),
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": (
        ("create", "certificates.k8s.io", "certificatesigningrequests/selfnodeclient"),
    ),
    "system:volume-scheduler": (
        (f"{READ} update patch", "core", "persistentvolumes"),
        (READ, "storage.k8s.io", "storageclasses"),
        (f"{READ} update patch", "core", "persistentvolumeclaims"),
    ),
    "system:certificates.k8s.io:legacy-unknown-approver": (
        ("approve", "certificates.k8s.io", "signers", "kubernetes.io/legacy-unknown"),
    ),
    "system:certificates.k8s.io:kubelet-serving-approver": (
        ("approve", "certificates.k8s.io", "signers", "kubernetes.io/kubelet-serving"),
    ),
    "system:certificates.k8s.io:kube-apiserver-client-approver": (
        ("approve", "certificates.k8s.io", "signers", "kubernetes.io/kube-apiserver-client"),
    ),
    "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver": (
        (
            "approve",
            "certificates.k8s.io",
            "signers",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
    ),
    "system:service-account-issuer-discovery": (
        _url_rule("get", "/.well-known/openid-configuration /openid/v1/jwks"),
    ),
    "system:node-proxier": (
        ("list watch", "core", "services endpoints"),
        (READ, "core", "nodes"),
        EVENTS,
        ("list watch", "discovery.k8s.io", "endpointslices"),
    ),
    "system:kube-scheduler": (
        EVENTS,
        ("create", "coordination.k8s.io", "leases"),
        ("get update", "coordination.k8s.io", "leases", "kube-scheduler"),
        (READ, "core", "nodes"),
        (f"{READ} delete", "core", "pods"),
        ("create", "core", "pods/binding bindings"),
        ("patch update", "core", "pods/status"),
        (READ, "core", "replicationcontrollers services"),
        (READ, "apps extensions", "replicasets"),
        (READ, "apps", "statefulsets"),
        (READ, "policy", "poddisruptionbudgets"),
        (READ, "core", "persistentvolumeclaims persistentvolumes"),
        ("create", "authentication.k8s.io", "tokenreviews"),
        ("create", "authorization.k8s.io", "subjectaccessreviews"),
        (READ, "storage.k8s.io", "csinodes"),
        (READ, "core", "namespaces"),
        (READ, "storage.k8s.io", "csidrivers"),
        (READ, "storage.k8s.io", "csistoragecapacities"),
    ),
}

# Role name → (labels beyond the bootstrapping one, the aggregate-to label it selects).
_AGGREGATION = {
    "admin": ({}, "admin"),
    "edit": ({AGGREGATE_TO + "admin": "true"}, "edit"),
    "view": ({AGGREGATE_TO + "edit": "true"}, "view"),
}
_EXTRA_LABELS = {
    "system:aggregate-to-admin": {AGGREGATE_TO + "admin": "true"},
    "system:aggregate-to-edit": {AGGREGATE_TO + "edit": "true"},
    "system:aggregate-to-view": {AGGREGATE_TO + "view": "true"},
}


def _bootstrap_metadata(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "labels": dict(sorted({**(labels or {}), **BOOTSTRAP_LABEL}.items())),
        "annotations": dict(AUTOUPDATE_ANNOTATION),
    }


def default_cluster_roles() -> list[dict[str, Any]]:
    """The default ClusterRoles, sorted by name.

    ``admin``, ``edit`` and ``view`` carry their aggregation rules and already hold the
    aggregated rules (what the aggregation controller writes moments after start-up)."""
    roles: list[dict[str, Any]] = [
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "ClusterRole",
            "metadata": _bootstrap_metadata(name, _EXTRA_LABELS.get(name)),
            "rules": _rules(*specs),
        }
        for name, specs in _ROLES.items()
    ]
    for name, (labels, to) in _AGGREGATION.items():
        roles.append(
            {
                "apiVersion": RBAC_API_VERSION,
                "kind": "ClusterRole",
                "metadata": _bootstrap_metadata(name, labels),
                "rules": [],
                "aggregationRule": {
                    "clusterRoleSelectors": [{"matchLabels": {AGGREGATE_TO + to: "true"}}]
                },
            }
        )
    aggregated = aggregate(roles)
    for role in roles:
        role["rules"] = aggregated.get(role["metadata"]["name"], role["rules"])
    return sorted(roles, key=lambda r: r["metadata"]["name"])


def _subject(kind: str, name: str, namespace: str = "") -> dict[str, str]:
    if kind == "ServiceAccount":
        return {"kind": kind, "name": name, "namespace": namespace}
    return {"kind": kind, "apiGroup": RBAC_GROUP, "name": name}


def _binding(name: str, role: str, *subjects: dict[str, str]) -> dict[str, Any]:
    binding: dict[str, Any] = {
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": _bootstrap_metadata(name),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
    }
    if subjects:
        binding["subjects"] = list(subjects)
    return binding


def default_cluster_role_bindings() -> list[dict[str, Any]]:
    """The default ClusterRoleBindings, sorted by name.

    Upstream's (``system:node`` has no subjects: the Node authorizer grants nodes exactly
    what their pods need; binding the role to ``system:nodes`` would let every node read
    every Secret), plus the node TLS bootstrap
    bindings kubeadm and k3s create: ``system:bootstrappers`` may create CSRs and have node
    client CSRs approved, ``system:nodes`` may have their renewal CSRs approved."""

    def group(name: str) -> dict[str, str]:
        return _subject("Group", name)

    def user(name: str) -> dict[str, str]:
        return _subject("User", name)

    csr = "system:certificates.k8s.io:certificatesigningrequests:"
    bindings = [
        _binding("cluster-admin", "cluster-admin", group("system:masters")),
        _binding("system:monitoring", "system:monitoring", group("system:monitoring")),
        _binding("system:discovery", "system:discovery", group("system:authenticated")),
        _binding("system:basic-user", "system:basic-user", group("system:authenticated")),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            group("system:authenticated"),
            group("system:unauthenticated"),
        ),
        _binding("system:node-proxier", "system:node-proxier", user("system:kube-proxy")),
        _binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            user("system:kube-controller-manager"),
        ),
        _binding(
            "system:kube-dns",
            "system:kube-dns",
            _subject("ServiceAccount", "kube-dns", "kube-system"),
        ),
        _binding("system:kube-scheduler", "system:kube-scheduler", user("system:kube-scheduler")),
        _binding(
            "system:volume-scheduler", "system:volume-scheduler", user("system:kube-scheduler")
        ),
        _binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            group("system:serviceaccounts"),
        ),
        _binding("system:node", "system:node"),
        _binding(
            "edgek:kubelet-bootstrap", "system:node-bootstrapper", group("system:bootstrappers")
        ),
        _binding(
            "edgek:node-autoapprove-bootstrap", csr + "nodeclient", group("system:bootstrappers")
        ),
        _binding(
            "edgek:node-autoapprove-certificate-rotation",
            csr + "selfnodeclient",
            group("system:nodes"),
        ),
    ]
    return sorted(bindings, key=lambda b: b["metadata"]["name"])
