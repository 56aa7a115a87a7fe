"""The node authorizer (graph of what pods bound to a node use) and node restriction."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from server.auth.attributes import Attributes
from server.auth.node import (
    NodeGraph,
    admit_node_write,
    forbidden_node_labels,
    node_name,
    pod_configmap_names,
    pod_secret_names,
)
from server.storage.requestinfo import UserInfo

NODE_A = UserInfo("system:node:node-a", ("system:nodes", "system:authenticated"))
NODE_B = UserInfo("system:node:node-b", ("system:nodes", "system:authenticated"))
ALICE = UserInfo("alice", ("system:authenticated",))
NO_RELATION = "no relationship found between node 'node-a' and this object"


def pod(name: str, node: str, spec: dict[str, Any], namespace: str = "apps") -> dict[str, Any]:
    full = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}], **spec}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": full,
    }


WEB = pod(
    "web",
    "node-a",
    {
        "serviceAccountName": "web-sa",
        "imagePullSecrets": [{"name": "registry"}],
        "containers": [
            {
                "name": "app",
                "image": "nginx",
                "envFrom": [{"secretRef": {"name": "env-secret"}}],
                "env": [
                    {
                        "name": "A",
                        "valueFrom": {"secretKeyRef": {"name": "key-secret", "key": "k"}},
                    },
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                ],
            }
        ],
        "initContainers": [
            {"name": "init", "image": "busybox", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}
        ],
        "volumes": [
            {"name": "tls", "secret": {"secretName": "tls"}},
            {"name": "conf", "configMap": {"name": "conf"}},
            {
                "name": "bundle",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "projected-cm"}},
                        {"secret": {"name": "projected-secret"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]
                },
            },
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ],
    },
)
DB = pod(
    "db",
    "node-b",
    {
        "serviceAccountName": "db-sa",
        "volumes": [
            {"name": "creds", "secret": {"secretName": "db-creds"}},
            {"name": "shared", "secret": {"secretName": "tls"}},
            {"name": "store", "persistentVolumeClaim": {"claimName": "db-data"}},
        ],
    },
)
PENDING = pod("pending", "", {"volumes": [{"name": "s", "secret": {"secretName": "pending"}}]})


def pv(name: str, claim: tuple[str, str] | None, source: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"capacity": {"storage": "1Gi"}, **source}
    if claim is not None:
        spec["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "namespace": claim[0],
            "name": claim[1],
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": spec,
    }


PV_DATA = pv(
    "pv-data",
    ("apps", "data"),
    {
        "csi": {
            "driver": "x",
            "volumeHandle": "h",
            "nodePublishSecretRef": {"namespace": "storage", "name": "csi-publish"},
            "controllerPublishSecretRef": {"namespace": "storage", "name": "csi-controller"},
        }
    },
)
PV_DB = pv("pv-db", ("apps", "db-data"), {"hostPath": {"path": "/srv/db"}})
PV_RBD = pv(
    "pv-rbd",
    ("apps", "data"),
    {"rbd": {"monitors": ["m"], "image": "i", "secretRef": {"name": "ceph"}}},
)
PV_FREE = pv("pv-free", None, {"hostPath": {"path": "/srv/free"}})


@pytest.fixture
def graph() -> NodeGraph:
    g = NodeGraph()
    for obj in (WEB, DB, PENDING):
        g.update("", "pods", copy.deepcopy(obj), False)
    for obj in (PV_DATA, PV_DB, PV_RBD, PV_FREE):
        g.update("", "persistentvolumes", copy.deepcopy(obj), False)
    return g


def attrs(
    user: UserInfo,
    verb: str,
    resource: str,
    name: str = "",
    namespace: str = "",
    group: str = "",
    subresource: str = "",
) -> Attributes:
    return Attributes(
        user,
        verb,
        api_group=group,
        api_version="v1",
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )


def test_node_name() -> None:
    assert node_name(NODE_A) == "node-a"
    assert node_name(ALICE) is None
    # The name alone does not make a node, nor the group alone.
    assert node_name(UserInfo("system:node:x", ("system:authenticated",))) is None
    assert node_name(UserInfo("x", ("system:nodes",))) is None
    assert node_name(UserInfo("system:node:", ("system:nodes",))) == ""


def test_pod_references() -> None:
    assert pod_secret_names(WEB) == {
        "registry",
        "env-secret",
        "key-secret",
        "tls",
        "projected-secret",
    }
    assert pod_configmap_names(WEB) == {"env-cm", "init-cm", "conf", "projected-cm"}


@pytest.mark.parametrize(
    ("user", "resource", "namespace", "name", "allowed"),
    [
        # secrets of node A's pod, from every place a pod can reference one
        (NODE_A, "secrets", "apps", "registry", True),
        (NODE_A, "secrets", "apps", "env-secret", True),
        (NODE_A, "secrets", "apps", "key-secret", True),
        (NODE_A, "secrets", "apps", "projected-secret", True),
        (NODE_A, "secrets", "apps", "tls", True),  # used on both nodes
        (NODE_B, "secrets", "apps", "tls", True),
        (NODE_A, "secrets", "apps", "db-creds", False),  # only node B's pod
        (NODE_B, "secrets", "apps", "db-creds", True),
        (NODE_B, "secrets", "apps", "registry", False),
        (NODE_A, "secrets", "apps", "unused", False),
        (NODE_A, "secrets", "other", "tls", False),  # same name, other namespace
        (NODE_A, "secrets", "apps", "pending", False),  # pod not bound yet
        # configmaps
        (NODE_A, "configmaps", "apps", "projected-cm", True),
        (NODE_A, "configmaps", "apps", "conf", True),
        (NODE_A, "configmaps", "apps", "env-cm", True),
        (NODE_A, "configmaps", "apps", "init-cm", True),
        (NODE_B, "configmaps", "apps", "conf", False),
        # claims, including the generic ephemeral volume's <pod>-<volume> claim
        (NODE_A, "persistentvolumeclaims", "apps", "data", True),
        (NODE_A, "persistentvolumeclaims", "apps", "web-scratch", True),
        (NODE_A, "persistentvolumeclaims", "apps", "db-data", False),
        (NODE_B, "persistentvolumeclaims", "apps", "db-data", True),
        # volumes bound to those claims, and the secrets those volumes need on the node
        (NODE_A, "persistentvolumes", "", "pv-data", True),
        (NODE_A, "persistentvolumes", "", "pv-rbd", True),
        (NODE_A, "persistentvolumes", "", "pv-db", False),
        (NODE_B, "persistentvolumes", "", "pv-db", True),
        (NODE_A, "persistentvolumes", "", "pv-free", False),
        (NODE_A, "secrets", "storage", "csi-publish", True),
        (NODE_B, "secrets", "storage", "csi-publish", False),
        (NODE_A, "secrets", "storage", "csi-controller", False),  # not for kubelets
        (NODE_A, "secrets", "apps", "ceph", True),  # rbd: the claim's namespace
    ],
)
def test_get_related_objects(
    graph: NodeGraph,
    user: UserInfo,
    resource: str,
    namespace: str,
    name: str,
    allowed: bool,
) -> None:
    decision = graph.authorize(attrs(user, "get", resource, name, namespace))
    assert decision.allowed is allowed
    if not allowed:
        assert decision.no_opinion
        assert decision.reason.startswith("no relationship found between node")


def test_read_verbs(graph: NodeGraph) -> None:
    # Single-object list/watch (a metadata.name field selector sets the name) is allowed
    # for secrets and configmaps; listing all of them is not.
    for verb in ("list", "watch"):
        assert graph.authorize(attrs(NODE_A, verb, "secrets", "tls", "apps")).allowed
        assert graph.authorize(attrs(NODE_A, verb, "configmaps", "conf", "apps")).allowed
        whole = graph.authorize(attrs(NODE_A, verb, "secrets", "", "apps"))
        assert not whole.allowed and whole.reason == "No Object name found"
        # Claims and volumes: get only.
        claims = graph.authorize(attrs(NODE_A, verb, "persistentvolumeclaims", "data", "apps"))
        assert claims.reason == "can only get individual resources of this type"
    for verb in ("create", "update", "patch", "delete"):
        write = graph.authorize(attrs(NODE_A, verb, "secrets", "tls", "apps"))
        assert not write.allowed and write.no_opinion
        assert write.reason == "can only read resources of this type"
    cluster_wide = graph.authorize(attrs(NODE_A, "list", "secrets", "tls"))
    assert cluster_wide.reason == "can only read namespaced object of this type"


def test_pvc_status(graph: NodeGraph) -> None:
    own = attrs(NODE_A, "patch", "persistentvolumeclaims", "data", "apps", subresource="status")
    assert graph.authorize(own).allowed
    other = attrs(
        NODE_A, "patch", "persistentvolumeclaims", "db-data", "apps", subresource="status"
    )
    assert graph.authorize(other).reason == NO_RELATION


@pytest.mark.parametrize(
    ("user", "sa", "allowed"),
    [(NODE_A, "web-sa", True), (NODE_A, "db-sa", False), (NODE_B, "db-sa", True)],
)
def test_service_account_tokens(graph: NodeGraph, user: UserInfo, sa: str, allowed: bool) -> None:
    token = attrs(user, "create", "serviceaccounts", sa, "apps", subresource="token")
    assert graph.authorize(token).allowed is allowed
    # The service account object itself is not the node's to read.
    assert not graph.authorize(attrs(user, "get", "serviceaccounts", sa, "apps")).allowed


def test_pods(graph: NodeGraph) -> None:
    for verb in ("get", "list", "watch"):
        assert graph.authorize(attrs(NODE_A, verb, "pods", namespace="apps")).allowed
    status = attrs(NODE_A, "patch", "pods", "web", "apps", subresource="status")
    assert graph.authorize(status).allowed
    other = attrs(NODE_A, "update", "pods", "db", "apps", subresource="status")
    assert graph.authorize(other).reason == NO_RELATION
    assert graph.authorize(attrs(NODE_A, "delete", "pods", "web", "apps")).allowed
    assert not graph.authorize(attrs(NODE_A, "delete", "pods", "db", "apps")).allowed
    evict = attrs(NODE_A, "create", "pods", "web", "apps", subresource="eviction")
    assert graph.authorize(evict).allowed
    evict_other = attrs(NODE_A, "create", "pods", "db", "apps", subresource="eviction")
    assert not graph.authorize(evict_other).allowed
    # creating pods is allowed; admission lets only mirror pods through
    assert graph.authorize(attrs(NODE_A, "create", "pods", "", "apps")).allowed
    for verb, sub in [("update", ""), ("deletecollection", ""), ("get", "exec")]:
        decision = graph.authorize(attrs(NODE_A, verb, "pods", "web", "apps", subresource=sub))
        assert not decision.allowed and decision.no_opinion


def test_pod_deletion_removes_access(graph: NodeGraph) -> None:
    get_cm = attrs(NODE_A, "get", "configmaps", "projected-cm", "apps")
    get_pv = attrs(NODE_A, "get", "persistentvolumes", "pv-data")
    assert graph.authorize(get_cm).allowed and graph.authorize(get_pv).allowed
    graph.update("", "pods", copy.deepcopy(WEB), True)
    assert graph.authorize(get_cm).reason == NO_RELATION
    assert not graph.authorize(get_pv).allowed
    assert not graph.authorize(attrs(NODE_A, "get", "secrets", "tls", "apps")).allowed
    # node B's pod still uses the shared secret
    assert graph.authorize(attrs(NODE_B, "get", "secrets", "tls", "apps")).allowed
    assert graph.pod("apps", "web") is None


def test_rebinding_moves_access(graph: NodeGraph) -> None:
    get_secret = "secrets", "registry", "apps"
    moved = copy.deepcopy(WEB)
    moved["spec"]["nodeName"] = "node-b"
    graph.update("", "pods", moved, False)
    assert not graph.authorize(attrs(NODE_A, "get", *get_secret)).allowed
    assert graph.authorize(attrs(NODE_B, "get", *get_secret)).allowed
    bound = graph.pod("apps", "web")
    assert bound is not None and bound.node == "node-b"


def test_pod_binding_grants_access(graph: NodeGraph) -> None:
    get_secret = attrs(NODE_B, "get", "secrets", "pending", "apps")
    assert not graph.authorize(get_secret).allowed
    bound = copy.deepcopy(PENDING)
    bound["spec"]["nodeName"] = "node-b"
    graph.update("", "pods", bound, False)
    assert graph.authorize(get_secret).allowed


def test_volume_changes(graph: NodeGraph) -> None:
    # A volume released from its claim is no longer readable, nor are its secrets.
    released = copy.deepcopy(PV_DATA)
    del released["spec"]["claimRef"]
    graph.update("", "persistentvolumes", released, False)
    assert not graph.authorize(attrs(NODE_A, "get", "persistentvolumes", "pv-data")).allowed
    assert not graph.authorize(attrs(NODE_A, "get", "secrets", "csi-publish", "storage")).allowed
    # A volume bound to node A's claim becomes readable; deleting it takes that back.
    rebound = copy.deepcopy(PV_FREE)
    rebound["spec"]["claimRef"] = {"namespace": "apps", "name": "web-scratch"}
    graph.update("", "persistentvolumes", rebound, False)
    assert graph.authorize(attrs(NODE_A, "get", "persistentvolumes", "pv-free")).allowed
    graph.update("", "persistentvolumes", rebound, True)
    assert not graph.authorize(attrs(NODE_A, "get", "persistentvolumes", "pv-free")).allowed


def test_mirror_pod_grants_nothing() -> None:
    g = NodeGraph()
    mirror = pod("static", "node-a", {"volumes": [{"name": "s", "secret": {"secretName": "s"}}]})
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    g.update("", "pods", mirror, False)
    assert not g.authorize(attrs(NODE_A, "get", "secrets", "s", "apps")).allowed
    assert g.authorize(attrs(NODE_A, "delete", "pods", "static", "apps")).allowed


def test_resource_claims() -> None:
    g = NodeGraph()
    p = pod(
        "gpu",
        "node-a",
        {
            "resourceClaims": [
                {"name": "a", "resourceClaimName": "shared-gpu"},
                {"name": "b", "resourceClaimTemplateName": "tmpl"},
            ]
        },
    )
    p["status"] = {"resourceClaimStatuses": [{"name": "b", "resourceClaimName": "gpu-b-x1"}]}
    g.update("", "pods", p, False)
    for claim in ("shared-gpu", "gpu-b-x1"):
        get = attrs(NODE_A, "get", "resourceclaims", claim, "apps", group="resource.k8s.io")
        assert g.authorize(get).allowed
    other = attrs(NODE_A, "get", "resourceclaims", "tmpl", "apps", group="resource.k8s.io")
    assert not g.authorize(other).allowed


@pytest.mark.parametrize(
    ("verb", "subresource", "name", "allowed"),
    [
        ("get", "", "node-b", True),
        ("list", "", "", True),
        ("watch", "", "", True),
        ("create", "", "", True),  # the body's name is checked by node restriction
        ("create", "", "node-a", True),
        ("create", "", "node-b", False),
        ("update", "", "node-a", True),
        ("patch", "", "node-a", True),
        ("delete", "", "node-a", True),
        ("update", "", "node-b", False),
        ("patch", "", "node-b", False),
        ("delete", "", "node-b", False),
        ("patch", "status", "node-a", True),
        ("update", "status", "node-a", True),
        ("patch", "status", "node-b", False),
        ("deletecollection", "", "", False),
        ("get", "proxy", "node-a", False),
    ],
)
def test_nodes(verb: str, subresource: str, name: str, allowed: bool) -> None:
    decision = NodeGraph().authorize(attrs(NODE_A, verb, "nodes", name, subresource=subresource))
    assert decision.allowed is allowed
    if not allowed and name == "node-b":
        assert decision.reason == 'node "node-a" is not allowed to modify node "node-b"'


@pytest.mark.parametrize(
    ("verb", "namespace", "name", "reason"),
    [
        ("get", "kube-node-lease", "node-a", ""),
        ("create", "kube-node-lease", "", ""),
        ("update", "kube-node-lease", "node-a", ""),
        ("patch", "kube-node-lease", "node-a", ""),
        ("delete", "kube-node-lease", "node-a", ""),
        ("update", "kube-node-lease", "node-b", "can only access node lease with the same name"),
        ("get", "kube-node-lease", "node-b", "can only access node lease with the same name"),
        ("get", "default", "node-a", 'can only access leases in the "kube-node-lease"'),
        ("list", "kube-node-lease", "", "can only get, create, update, patch, or delete"),
    ],
)
def test_leases(verb: str, namespace: str, name: str, reason: str) -> None:
    lease = attrs(NODE_A, verb, "leases", name, namespace, group="coordination.k8s.io")
    decision = NodeGraph().authorize(lease)
    assert decision.allowed is (not reason)
    assert decision.reason.startswith(reason)


@pytest.mark.parametrize(
    ("verb", "group", "resource", "allowed"),
    [
        ("create", "", "events", True),
        ("patch", "events.k8s.io", "events", True),
        ("delete", "", "events", False),
        ("create", "certificates.k8s.io", "certificatesigningrequests", True),
        ("watch", "certificates.k8s.io", "certificatesigningrequests", True),
        ("delete", "certificates.k8s.io", "certificatesigningrequests", False),
        ("list", "", "services", True),
        ("watch", "", "endpoints", True),
        ("list", "discovery.k8s.io", "endpointslices", True),
        ("get", "", "namespaces", True),
        ("watch", "networking.k8s.io", "networkpolicies", True),
        ("create", "", "services", False),
        ("create", "authentication.k8s.io", "tokenreviews", True),
        ("create", "authorization.k8s.io", "subjectaccessreviews", True),
        ("get", "apps", "deployments", False),
        ("list", "rbac.authorization.k8s.io", "clusterroles", False),
    ],
)
def test_static_rules(verb: str, group: str, resource: str, allowed: bool) -> None:
    decision = NodeGraph().authorize(attrs(NODE_A, verb, resource, group=group))
    assert decision.allowed is allowed
    # Nothing here is an explicit deny: RBAC may still grant it.
    assert decision.allowed or decision.no_opinion


def test_non_nodes_get_no_opinion(graph: NodeGraph) -> None:
    for user in (ALICE, UserInfo("system:node:node-a", ("system:authenticated",))):
        for request in (
            attrs(user, "get", "secrets", "tls", "apps"),
            attrs(user, "create", "events"),
            attrs(user, "get", "nodes", "node-a"),
        ):
            decision = graph.authorize(request)
            assert not decision.allowed and decision.no_opinion and not decision.reason
    nameless = UserInfo("system:node:", ("system:nodes",))
    decision = graph.authorize(attrs(nameless, "create", "events"))
    assert not decision.allowed and decision.reason == 'unknown node for user "system:node:"'
    non_resource = Attributes(NODE_A, "get", resource_request=False, path="/healthz")
    assert graph.authorize(non_resource).no_opinion


# -- node restriction ------------------------------------------------------------------------


def node(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("label", "forbidden"),
    [
        ("kubernetes.io/hostname", False),
        ("kubernetes.io/arch", False),
        ("topology.kubernetes.io/zone", False),
        ("node.kubernetes.io/instance-type", False),
        ("node.kubernetes.io/anything", False),
        ("x.kubelet.kubernetes.io/thing", False),
        ("edgek.io/role", False),
        ("plain", False),
        ("node-restriction.kubernetes.io/dedicated", True),
        ("a.node-restriction.kubernetes.io/dedicated", True),
        ("node-role.kubernetes.io/control-plane", True),
        ("kubernetes.io/role", True),
        ("example.k8s.io/x", True),
    ],
)
def test_node_labels(label: str, forbidden: bool) -> None:
    assert (forbidden_node_labels({label: "v"}, {}) == [label]) is forbidden
    # removing and changing count too; keeping does not
    assert (forbidden_node_labels({}, {label: "v"}) == [label]) is forbidden
    assert (forbidden_node_labels({label: "w"}, {label: "v"}) == [label]) is forbidden
    assert forbidden_node_labels({label: "v"}, {label: "v"}) == []


def admit(
    verb: str,
    resource: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    user: UserInfo = NODE_A,
    group: str = "",
    subresource: str = "",
    **kw: Any,
) -> str | None:
    return admit_node_write(user, group, resource, subresource, verb, obj, old, **kw)


def test_admit_own_node() -> None:
    labels = {"kubernetes.io/hostname": "node-a", "node.kubernetes.io/instance-type": "edgek"}
    own = node("node-a", labels, taints=[{"key": "k", "effect": "NoSchedule"}])
    assert admit("create", "nodes", own) is None
    assert admit("create", "nodes", node("node-b")) == (
        'node "node-a" is not allowed to modify node "node-b"'
    )
    restricted = node(
        "node-a", {"node-restriction.kubernetes.io/x": "1", "node-role.kubernetes.io/y": ""}
    )
    assert admit("create", "nodes", restricted) == (
        'node "node-a" is not allowed to set the following labels: '
        "node-restriction.kubernetes.io/x, node-role.kubernetes.io/y"
    )
    config = node("node-a", configSource={"configMap": {"name": "c"}})
    assert "configSource" in (admit("create", "nodes", config) or "")


def test_admit_node_update() -> None:
    old = node("node-a", {"kubernetes.io/hostname": "node-a", "admin": "set"}, taints=[])
    relabel = node("node-a", {"kubernetes.io/hostname": "node-a", "admin": "changed"}, taints=[])
    assert admit("update", "nodes", relabel, old) is None
    assert admit("patch", "nodes", relabel, old, subresource="status") is None
    kept = copy.deepcopy(old)
    kept["metadata"]["labels"]["node-role.kubernetes.io/master"] = "true"
    assert admit("update", "nodes", old, kept) == (
        'node "node-a" is not allowed to modify labels: node-role.kubernetes.io/master'
    )
    assert admit("update", "nodes", kept, kept) is None  # unchanged forbidden labels stay
    tainted = node(
        "node-a", old["metadata"]["labels"], taints=[{"key": "k", "effect": "NoExecute"}]
    )
    assert admit("update", "nodes", old, tainted) == 'node "node-a" is not allowed to modify taints'
    assert admit("delete", "nodes", None, old) is None
    assert admit("delete", "nodes", None, node("node-b")) is not None
    # a URL name wins over the body's
    assert admit("update", "nodes", old, old, name="node-b") is not None


def test_admit_pod_status() -> None:
    own = pod("web", "node-a", {})
    new = copy.deepcopy(own)
    new["status"] = {"phase": "Running"}
    assert admit("update", "pods", new, own, subresource="status") is None
    other = pod("db", "node-b", {})
    assert admit("patch", "pods", other, other, subresource="status") == (
        'node "node-a" can only update pod status for pods with spec.nodeName set to itself'
    )
    relabeled = copy.deepcopy(new)
    relabeled["metadata"]["labels"] = {"x": "y"}
    assert admit("update", "pods", relabeled, own, subresource="status") == (
        'node "node-a" cannot update labels through pod status'
    )
    claims = copy.deepcopy(new)
    claims["status"]["resourceClaimStatuses"] = [{"name": "a", "resourceClaimName": "c"}]
    assert "resource claim" in (admit("update", "pods", claims, own, subresource="status") or "")
    assert admit("update", "pods", new, own, subresource="exec") is not None


def test_admit_pod_writes() -> None:
    own, other = pod("web", "node-a", {}), pod("db", "node-b", {})
    assert admit("delete", "pods", None, own) is None
    assert admit("delete", "pods", None, other) == (
        'node "node-a" can only delete pods with spec.nodeName set to itself'
    )
    assert "can only create mirror pods" in (admit("create", "pods", own) or "")
    mirror = copy.deepcopy(own)
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    mirror["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "n", "controller": True}
    ]
    assert admit("create", "pods", mirror) is None
    elsewhere = copy.deepcopy(mirror)
    elsewhere["spec"]["nodeName"] = "node-b"
    assert "spec.nodeName set to itself" in (admit("create", "pods", elsewhere) or "")
    unowned = copy.deepcopy(mirror)
    unowned["metadata"]["ownerReferences"] = []
    assert "single owner reference" in (admit("create", "pods", unowned) or "")
    secretive = copy.deepcopy(mirror)
    secretive["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "s"}}]
    assert "reference secrets" in (admit("create", "pods", secretive) or "")
    assert admit("update", "pods", own, own) is not None
    stored = {("apps", "web"): own, ("apps", "db"): other}

    def lookup(namespace: str, name: str) -> dict[str, Any] | None:
        return stored.get((namespace, name))

    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"}}

    def evict(name: str) -> str | None:
        return admit(
            "create",
            "pods",
            eviction,
            subresource="eviction",
            namespace="apps",
            name=name,
            pods=lookup,
        )

    assert evict("web") is None
    assert evict("db") == "node node-a can only evict pods with spec.nodeName set to itself"
    assert evict("gone") == 'pods "gone" not found'


def test_admit_token_requests() -> None:
    stored = {("apps", "web"): pod("web", "node-a", {}), ("apps", "db"): pod("db", "node-b", {})}

    def lookup(namespace: str, name: str) -> dict[str, Any] | None:
        return stored.get((namespace, name))

    def token(bound: dict[str, Any] | None) -> str | None:
        spec = {} if bound is None else {"boundObjectRef": bound}
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        return admit(
            "create",
            "serviceaccounts",
            request,
            subresource="token",
            namespace="apps",
            name="web-sa",
            pods=lookup,
        )

    ref = {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web"}
    assert token(ref) is None
    assert token(None) == "node requested token not bound to a pod"
    assert token({**ref, "kind": "Secret"}) == "node requested token not bound to a pod"
    assert token({**ref, "uid": ""}) == "node requested token with a pod binding without a uid"
    assert "does not match the UID in record" in (token({**ref, "uid": "old"}) or "")
    assert token({**ref, "name": "db", "uid": "uid-db"}) == (
        "node requested token bound to a pod scheduled on a different node"
    )
    assert token({**ref, "name": "gone"}) == 'pods "gone" not found'


def test_admit_leases() -> None:
    def lease(name: str, namespace: str = "kube-node-lease") -> dict[str, Any]:
        return {"kind": "Lease", "metadata": {"name": name, "namespace": namespace}}

    group = "coordination.k8s.io"
    assert admit("create", "leases", lease("node-a"), group=group) is None
    assert admit("update", "leases", lease("node-a"), lease("node-a"), group=group) is None
    assert admit("delete", "leases", None, lease("node-a"), group=group) is None
    same_name = "can only access node lease with the same name as the requesting node"
    assert admit("create", "leases", lease("node-b"), group=group) == same_name
    assert admit("delete", "leases", None, lease("node-b"), group=group) == same_name
    assert admit("create", "leases", lease("node-a", "default"), group=group) == (
        'can only access leases in the "kube-node-lease" system namespace'
    )


def test_admit_pvc_status() -> None:
    old: dict[str, Any] = {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "apps", "resourceVersion": "5"},
        "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}},
    }
    grown = copy.deepcopy(old)
    grown["metadata"]["resourceVersion"] = ""
    grown["status"]["capacity"] = {"storage": "2Gi"}
    grown["status"]["conditions"] = [{"type": "Resizing", "status": "True"}]
    assert admit("update", "persistentvolumeclaims", grown, old, subresource="status") is None
    phase = copy.deepcopy(grown)
    phase["status"]["phase"] = "Lost"
    assert "not allowed to update fields other than" in (
        admit("update", "persistentvolumeclaims", phase, old, subresource="status") or ""
    )
    assert admit("update", "persistentvolumeclaims", grown, old) == "may only update PVC status"


def test_admit_others() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "apps"}}
    # Not a node, or not a restricted resource, or not a write: nothing to say.
    assert admit("create", "nodes", node("node-b"), user=ALICE) is None
    assert admit("create", "configmaps", obj) is None
    assert admit("get", "nodes", node("node-b")) is None
    nameless = UserInfo("system:node:", ("system:nodes",))
    assert admit("create", "configmaps", obj, user=nameless) == (
        'could not determine node from user "system:node:"'
    )


@pytest.mark.parametrize(
    ("verb", "name", "subresource", "reason"),
    [
        ("get", "node-a", "", ""),
        ("create", "", "", ""),
        ("update", "node-a", "", ""),
        ("delete", "node-a", "", ""),
        ("get", "node-b", "", "can only access CSINode with the same name"),
        ("update", "node-a", "status", "cannot authorize CSINode subresources"),
        ("list", "", "", "can only get, create, update, patch, or delete a CSINode"),
    ],
)
def test_csinodes(verb: str, name: str, subresource: str, reason: str) -> None:
    request = attrs(NODE_A, verb, "csinodes", name, group="storage.k8s.io", subresource=subresource)
    decision = NodeGraph().authorize(request)
    assert decision.allowed is (not reason)
    assert decision.reason.startswith(reason)


def test_volume_attachments_follow_their_node() -> None:
    graph = NodeGraph()
    va = {"metadata": {"name": "va-1"}, "spec": {"nodeName": "node-a", "attacher": "x"}}
    graph.update("storage.k8s.io", "volumeattachments", va, False)
    get = attrs(NODE_A, "get", "volumeattachments", "va-1", group="storage.k8s.io")
    assert graph.authorize(get).allowed
    other = attrs(NODE_B, "get", "volumeattachments", "va-1", group="storage.k8s.io")
    assert graph.authorize(other).reason.startswith("no relationship found")
    listing = attrs(NODE_A, "list", "volumeattachments", group="storage.k8s.io")
    assert not graph.authorize(listing).allowed
    graph.update("storage.k8s.io", "volumeattachments", va, True)
    assert not graph.authorize(get).allowed


def test_admit_csinodes() -> None:
    def csinode(name: str) -> dict[str, Any]:
        return {"kind": "CSINode", "metadata": {"name": name}}

    group = "storage.k8s.io"
    assert admit("create", "csinodes", csinode("node-a"), group=group) is None
    assert admit("create", "csinodes", csinode("node-b"), group=group) == (
        "node may only create, update or delete its own CSINode"
    )
