"""Node authorization and node restriction: what a node's own identity may read and write.

The node authorizer (upstream ``plugin/pkg/auth/authorizer/node``) lets ``system:node:<name>``
read only the secrets, configmaps, persistent volume claims, volumes, resource claims and
service-account tokens that pods bound to that node use. :class:`NodeGraph` keeps those
relationships up to date from object events (feed it the resources in
:data:`NodeGraph.RESOURCES`); every other node request is judged by static rules.

Node restriction (upstream ``plugin/pkg/admission/noderestriction``) checks what the
authorizer cannot see, the bodies of writes: a node may only register and modify its own
Node (no taint changes, only kubelet labels), only report status of its own pods, only hold
its own Lease and only request tokens bound to its own pods (:func:`admit_node_write`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edgek.objects import meta
from server.auth.attributes import ALLOW, NO_OPINION, Attributes, Decision
from server.storage.requestinfo import UserInfo

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
NODE_LEASE_NAMESPACE = "kube-node-lease"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

#: Looks an object up by (namespace, name), e.g. an object cache's ``get``.
Lookup = Callable[[str, str], dict[str, Any] | None]
Key = tuple[str, str]

_READ = frozenset({"get", "list", "watch"})
#: Pod requests a node may make for the pods bound to it: (subresource, verb).
_BOUND_POD_WRITES = frozenset(
    {("", "delete"), ("status", "update"), ("status", "patch"), ("eviction", "create")}
)
#: Requests every node may make, whatever it runs: (group, resource, subresource) -> verbs.
_STATIC_RULES: dict[tuple[str, str, str], frozenset[str]] = {
    ("", "events", ""): frozenset({"create", "update", "patch"}),
    ("events.k8s.io", "events", ""): frozenset({"create", "update", "patch"}),
    ("certificates.k8s.io", "certificatesigningrequests", ""): _READ | {"create"},
    ("", "services", ""): _READ,
    ("", "endpoints", ""): _READ,
    ("discovery.k8s.io", "endpointslices", ""): _READ,
    ("", "namespaces", ""): _READ,
    ("networking.k8s.io", "networkpolicies", ""): _READ,
    ("authentication.k8s.io", "tokenreviews", ""): frozenset({"create"}),
    ("authorization.k8s.io", "subjectaccessreviews", ""): frozenset({"create"}),
    ("authorization.k8s.io", "localsubjectaccessreviews", ""): frozenset({"create"}),
}

#: Labels a node may set on its own Node (upstream kubelet labels) ...
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
    }
)
#: ... and label namespaces (with their subdomains) it may use.
_KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
_NODE_RESTRICTION_NAMESPACE = "node-restriction.kubernetes.io"


def node_name(user: UserInfo) -> str | None:
    """The node a user is (``system:node:<name>`` in ``system:nodes``), else None.

    An empty string means a node identity without a usable name, which gets nothing.
    """
    if not user.name.startswith(NODE_USER_PREFIX) or NODES_GROUP not in user.groups:
        return None
    return user.name[len(NODE_USER_PREFIX) :]


def _no(reason: str) -> Decision:
    """Not allowed by this authorizer (a later one, RBAC, may still allow)."""
    return Decision(False, reason, no_opinion=True)


def _spec(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("spec") or {}


def _ref_name(ref: Any) -> str:
    return ref.get("name") or "" if isinstance(ref, dict) else ""


# -- what a pod or volume references ---------------------------------------------------------


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(field) or []


def pod_secret_names(pod: dict[str, Any]) -> set[str]:
    """Secrets a pod uses directly (upstream VisitPodSecretNames)."""
    spec = _spec(pod)
    names = {_ref_name(ref) for ref in spec.get("imagePullSecrets") or []}
    for container in _containers(spec):
        names.update(_ref_name(e.get("secretRef")) for e in container.get("envFrom") or [])
        names.update(
            _ref_name((e.get("valueFrom") or {}).get("secretKeyRef"))
            for e in container.get("env") or []
        )
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            names.add((volume["secret"] or {}).get("secretName") or "")
        elif "projected" in volume:
            sources = (volume["projected"] or {}).get("sources") or []
            names.update(_ref_name(source.get("secret")) for source in sources)
        elif "azureFile" in volume:
            names.add((volume["azureFile"] or {}).get("secretName") or "")
        elif "csi" in volume:
            names.add(_ref_name((volume["csi"] or {}).get("nodePublishSecretRef")))
        else:
            for source in (
                "cephfs",
                "cinder",
                "flexVolume",
                "rbd",
                "scaleIO",
                "iscsi",
                "storageos",
            ):
                if source in volume:
                    names.add(_ref_name((volume[source] or {}).get("secretRef")))
    names.discard("")
    return names


def pod_configmap_names(pod: dict[str, Any]) -> set[str]:
    """ConfigMaps a pod uses (upstream VisitPodConfigmapNames)."""
    spec = _spec(pod)
    names: set[str] = set()
    for container in _containers(spec):
        names.update(_ref_name(e.get("configMapRef")) for e in container.get("envFrom") or [])
        names.update(
            _ref_name((e.get("valueFrom") or {}).get("configMapKeyRef"))
            for e in container.get("env") or []
        )
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            names.add(_ref_name(volume["configMap"]))
        elif "projected" in volume:
            sources = (volume["projected"] or {}).get("sources") or []
            names.update(_ref_name(source.get("configMap")) for source in sources)
    names.discard("")
    return names


def pod_claim_names(pod: dict[str, Any]) -> set[str]:
    """PVCs a pod mounts; a generic ephemeral volume's claim is ``<pod>-<volume>``."""
    pod_name = meta(pod).get("name") or ""
    names: set[str] = set()
    for volume in _spec(pod).get("volumes") or []:
        if "persistentVolumeClaim" in volume:
            names.add((volume["persistentVolumeClaim"] or {}).get("claimName") or "")
        elif "ephemeral" in volume:
            names.add(f"{pod_name}-{volume.get('name') or ''}")
    names.discard("")
    return names


def pod_resource_claim_names(pod: dict[str, Any]) -> set[str]:
    """ResourceClaims a pod uses: named ones, and those generated from templates (status)."""
    names = {c.get("resourceClaimName") or "" for c in _spec(pod).get("resourceClaims") or []}
    status = pod.get("status") or {}
    names.update(
        c.get("resourceClaimName") or "" for c in status.get("resourceClaimStatuses") or []
    )
    names.add((status.get("extendedResourceClaimStatus") or {}).get("resourceClaimName") or "")
    names.discard("")
    return names


def pv_secret_keys(pv: dict[str, Any]) -> set[Key]:
    """Secrets the kubelet needs for a volume (upstream VisitPVSecretNames, kubelet-visible).

    Sources without their own secret namespace use the bound claim's namespace.
    """
    spec = _spec(pv)
    claim_ns = (spec.get("claimRef") or {}).get("namespace") or ""
    keys: set[Key] = set()
    if "azureFile" in spec:
        source = spec["azureFile"] or {}
        keys.add((source.get("secretNamespace") or claim_ns, source.get("secretName") or ""))
    elif "csi" in spec:
        source = spec["csi"] or {}
        for field in ("nodePublishSecretRef", "nodeStageSecretRef", "nodeExpandSecretRef"):
            ref = source.get(field) or {}
            keys.add((ref.get("namespace") or "", ref.get("name") or ""))
    else:
        for field in ("cephfs", "flexVolume", "rbd", "scaleIO", "iscsi", "cinder", "storageos"):
            if field in spec:
                ref = (spec[field] or {}).get("secretRef") or {}
                default_ns = claim_ns if field not in ("cinder", "storageos") else ""
                keys.add((ref.get("namespace") or default_ns, ref.get("name") or ""))
    return {key for key in keys if key[1]}


# -- the graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundPod:
    """What the graph remembers of a pod bound to a node."""

    node: str
    refs: tuple[tuple[str, str], ...]  # (vertex type, name) in the pod's namespace


@dataclass(frozen=True)
class _Volume:
    claim: Key
    secrets: frozenset[Key]


class NodeGraph:
    """Which objects each node may read, kept up to date from object events."""

    #: The (group, resource)s whose events the graph needs; others are ignored.
    RESOURCES = frozenset(
        {("", "pods"), ("", "persistentvolumes"), ("storage.k8s.io", "volumeattachments")}
    )

    def __init__(self) -> None:
        self._pods: dict[Key, BoundPod] = {}
        #: (vertex type, namespace, name) -> node -> number of that node's pods using it.
        self._users: dict[tuple[str, str, str], Counter[str]] = {}
        #: Bound volumes (only those with a claimRef matter) and, by secret, their names.
        self._volumes: dict[str, _Volume] = {}
        self._volumes_by_secret: dict[Key, set[str]] = {}
        #: VolumeAttachment name -> the node it attaches to.
        self._attachments: dict[str, str] = {}

    # -- updates ---------------------------------------------------------------------------

    def update(self, group: str, resource: str, obj: dict[str, Any], deleted: bool) -> None:
        """Apply one object event (added/modified, or ``deleted``)."""
        md = meta(obj)
        if (group, resource) == ("", "pods"):
            key = (md.get("namespace") or "", md.get("name") or "")
            self._remove_pod(key)
            if not deleted and _spec(obj).get("nodeName"):
                self._add_pod(key, obj)
        elif (group, resource) == ("", "persistentvolumes"):
            name = md.get("name") or ""
            self._remove_volume(name)
            if not deleted:
                self._add_volume(name, obj)
        elif (group, resource) == ("storage.k8s.io", "volumeattachments"):
            name = md.get("name") or ""
            self._attachments.pop(name, None)
            if not deleted and _spec(obj).get("nodeName"):
                self._attachments[name] = _spec(obj)["nodeName"]

    def _add_pod(self, key: Key, pod: dict[str, Any]) -> None:
        spec = _spec(pod)
        refs: list[tuple[str, str]] = []
        # A mirror pod is the node's own creation: it must never grant access to anything.
        if MIRROR_POD_ANNOTATION not in (meta(pod).get("annotations") or {}):
            if spec.get("serviceAccountName"):
                refs.append(("serviceaccount", spec["serviceAccountName"]))
            refs += [("secret", name) for name in sorted(pod_secret_names(pod))]
            refs += [("configmap", name) for name in sorted(pod_configmap_names(pod))]
            refs += [("pvc", name) for name in sorted(pod_claim_names(pod))]
            refs += [("resourceclaim", name) for name in sorted(pod_resource_claim_names(pod))]
        bound = BoundPod(spec["nodeName"], tuple(refs))
        self._pods[key] = bound
        for vertex, name in bound.refs:
            self._users.setdefault((vertex, key[0], name), Counter())[bound.node] += 1

    def _remove_pod(self, key: Key) -> None:
        bound = self._pods.pop(key, None)
        if bound is None:
            return
        for vertex, name in bound.refs:
            users = self._users[(vertex, key[0], name)]
            users[bound.node] -= 1
            if users[bound.node] <= 0:
                del users[bound.node]
            if not users:
                del self._users[(vertex, key[0], name)]

    def _add_volume(self, name: str, pv: dict[str, Any]) -> None:
        # The claim comes from the volume's claimRef (written by the binder or an admin),
        # never from a claim's spec.volumeName, which any namespace user could set.
        ref = _spec(pv).get("claimRef")
        if not ref:
            return
        claim = (ref.get("namespace") or "", ref.get("name") or "")
        volume = _Volume(claim, frozenset(pv_secret_keys(pv)))
        self._volumes[name] = volume
        for secret in volume.secrets:
            self._volumes_by_secret.setdefault(secret, set()).add(name)

    def _remove_volume(self, name: str) -> None:
        volume = self._volumes.pop(name, None)
        if volume is None:
            return
        for secret in volume.secrets:
            self._volumes_by_secret[secret].discard(name)
            if not self._volumes_by_secret[secret]:
                del self._volumes_by_secret[secret]

    # -- queries ---------------------------------------------------------------------------

    def pod(self, namespace: str, name: str) -> BoundPod | None:
        """The bound pod ``namespace/name``, if the graph knows it."""
        return self._pods.get((namespace, name))

    def _used_on(self, node: str, vertex: str, namespace: str, name: str) -> bool:
        return node in self._users.get((vertex, namespace, name), ())

    def _volume_on(self, node: str, name: str) -> bool:
        volume = self._volumes.get(name)
        return volume is not None and self._used_on(node, "pvc", *volume.claim)

    def related(self, node: str, vertex: str, namespace: str, name: str) -> bool:
        """Whether an object of ``vertex`` type (pod, secret, configmap, pvc, pv,
        serviceaccount, resourceclaim) is used by a pod bound to ``node``."""
        if vertex == "pod":
            bound = self._pods.get((namespace, name))
            return bound is not None and bound.node == node
        if vertex == "pv":
            return self._volume_on(node, name)
        if vertex == "volumeattachment":
            return self._attachments.get(name) == node
        if self._used_on(node, vertex, namespace, name):
            return True
        if vertex == "secret":
            volumes = self._volumes_by_secret.get((namespace, name), ())
            return any(self._volume_on(node, volume) for volume in volumes)
        return False

    # -- authorization ---------------------------------------------------------------------

    def authorize(self, attrs: Attributes) -> Decision:
        """The node authorizer: no opinion on anyone but a node; for a node, allow what its
        pods need and the static node rules, and give no opinion (with a reason) otherwise."""
        node = node_name(attrs.user)
        if node is None:
            return NO_OPINION
        if not node:
            return _no(f'unknown node for user "{attrs.user.name}"')
        if not attrs.resource_request:
            return NO_OPINION
        if attrs.api_group == "":
            return self._core(node, attrs)
        return self._grouped(node, attrs)

    def _core(self, node: str, attrs: Attributes) -> Decision:
        """The node authorizer for a core-group (``""``) resource."""
        resource = attrs.resource
        if resource == "secrets":
            return self._read_namespaced(node, "secret", attrs)
        if resource == "configmaps":
            return self._read_namespaced(node, "configmap", attrs)
        if resource == "persistentvolumeclaims":
            return self._pvc(node, attrs)
        if resource == "persistentvolumes":
            return self._get(node, "pv", attrs)
        if resource == "serviceaccounts":
            return self._create_token(node, attrs)
        if resource == "nodes":
            return _node(node, attrs)
        if resource == "pods":
            return self._pod(node, attrs)
        return _static(attrs)

    def _grouped(self, node: str, attrs: Attributes) -> Decision:
        """The node authorizer for a resource of a named API group."""
        group, resource = attrs.api_group, attrs.resource
        if group == "resource.k8s.io" and resource == "resourceclaims":
            return self._get(node, "resourceclaim", attrs)
        if group == "coordination.k8s.io" and resource == "leases":
            return _lease(node, attrs)
        if group == "storage.k8s.io" and resource == "volumeattachments":
            return self._get(node, "volumeattachment", attrs)
        if group == "storage.k8s.io" and resource == "csinodes":
            return _csinode(node, attrs)
        return _static(attrs)

    def _pvc(self, node: str, attrs: Attributes) -> Decision:
        """get a claim of the node's pods, or update/patch its status."""
        if attrs.subresource == "status":
            if attrs.verb not in ("update", "patch"):
                return _no("can only get/update/patch this type")
            return self._related(node, "pvc", attrs)
        return self._get(node, "pvc", attrs)

    def _related(self, node: str, vertex: str, attrs: Attributes) -> Decision:
        if not attrs.name:
            return _no("No Object name found")
        if self.related(node, vertex, attrs.namespace, attrs.name):
            return ALLOW
        return _no(f"no relationship found between node '{node}' and this object")

    def _get(self, node: str, vertex: str, attrs: Attributes) -> Decision:
        if attrs.verb != "get":
            return _no("can only get individual resources of this type")
        if attrs.subresource:
            return _no("cannot get subresource")
        return self._related(node, vertex, attrs)

    def _read_namespaced(self, node: str, vertex: str, attrs: Attributes) -> Decision:
        """get, and list/watch pinned to one name (``attrs.name`` from the field selector)."""
        if attrs.verb not in _READ:
            return _no("can only read resources of this type")
        if attrs.subresource:
            return _no("cannot read subresource")
        if not attrs.namespace:
            return _no("can only read namespaced object of this type")
        return self._related(node, vertex, attrs)

    def _create_token(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb != "create" or not attrs.name:
            return _no("can only create tokens for individual service accounts")
        if attrs.subresource != "token":
            return _no("can only create token subresource of serviceaccount")
        return self._related(node, "serviceaccount", attrs)

    def _pod(self, node: str, attrs: Attributes) -> Decision:
        verb, sub = attrs.verb, attrs.subresource
        if sub == "" and verb in _READ:
            return ALLOW
        if sub == "" and verb == "create":  # mirror pods only: see _admit_mirror_pod
            return ALLOW
        if (sub, verb) in _BOUND_POD_WRITES:
            return self._related(node, "pod", attrs)
        return NO_OPINION


def _static(attrs: Attributes) -> Decision:
    """The static node rules: allow what every node may do, no opinion otherwise."""
    verbs = _STATIC_RULES.get((attrs.api_group, attrs.resource, attrs.subresource))
    return ALLOW if verbs is not None and attrs.verb in verbs else NO_OPINION


def _lease(node: str, attrs: Attributes) -> Decision:
    if attrs.verb not in ("get", "create", "update", "patch", "delete"):
        return _no("can only get, create, update, patch, or delete a node lease")
    if attrs.namespace != NODE_LEASE_NAMESPACE:
        return _no(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
    # A create names no lease in its URL: node restriction checks the body's name.
    unnamed_create = attrs.verb == "create" and not attrs.name
    if not unnamed_create and attrs.name != node:
        return _no("can only access node lease with the same name as the requesting node")
    return ALLOW


def _csinode(node: str, attrs: Attributes) -> Decision:
    """A node manages the CSINode of its own name (upstream authorizeCSINode)."""
    if attrs.verb not in ("get", "create", "update", "patch", "delete"):
        return _no("can only get, create, update, patch, or delete a CSINode")
    if attrs.subresource:
        return _no("cannot authorize CSINode subresources")
    # A create names no object in its URL: the body's name is the node's own
    unnamed_create = attrs.verb == "create" and not attrs.name
    if not unnamed_create and attrs.name != node:
        return _no("can only access CSINode with the same name as the requesting node")
    return ALLOW


_NODE_WRITES = frozenset(
    {
        ("", "create"),
        ("", "update"),
        ("", "patch"),
        ("", "delete"),
        ("status", "update"),
        ("status", "patch"),
    }
)


def _node(node: str, attrs: Attributes) -> Decision:
    verb, sub = attrs.verb, attrs.subresource
    if sub == "" and verb in _READ:
        return ALLOW
    if (sub, verb) in _NODE_WRITES:
        # A create names no node in its URL: node restriction checks the body's name.
        unnamed_create = verb == "create" and not attrs.name
        if not unnamed_create and attrs.name != node:
            return _no(f'node "{node}" is not allowed to modify node "{attrs.name}"')
        return ALLOW
    return NO_OPINION


# -- node restriction --------------------------------------------------------------------


def admit_node_write(
    user: UserInfo,
    group: str,
    resource: str,
    subresource: str,
    verb: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None,
    *,
    namespace: str = "",
    name: str = "",
    pods: Lookup | None = None,
) -> str | None:
    """Node restriction admission: None to let a write through, else why it is forbidden
    (the caller answers 403 Forbidden with it).

    ``verb`` is create, update, patch or delete (other verbs pass). ``obj`` is the new object
    (a TokenRequest or Eviction for those subresources), ``old`` the stored one; ``namespace``
    and ``name`` are the request's (defaulting to the objects' metadata). ``pods`` looks up
    stored pods, needed to check token requests and evictions.
    """
    node = node_name(user)
    if node is None:
        return None
    if not node:
        return f'could not determine node from user "{user.name}"'
    operation = {"create": "create", "update": "update", "patch": "update", "delete": "delete"}
    op = operation.get(verb)
    if op is None:
        return None
    new_md, old_md = meta(obj), meta(old)
    namespace = namespace or new_md.get("namespace") or old_md.get("namespace") or ""
    name = name or new_md.get("name") or old_md.get("name") or ""
    request = _Request(node, op, subresource, obj, old, namespace, name, pods)
    admit = _ADMITTERS.get((group, resource))
    return admit(request) if admit is not None else None


@dataclass(frozen=True)
class _Request:
    node: str
    op: str
    subresource: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    namespace: str
    name: str
    pods: Lookup | None

    def pod(self, name: str) -> dict[str, Any] | None:
        return self.pods(self.namespace, name) if self.pods is not None else None


def _admit_mirror_pod(node: str, pod: dict[str, Any]) -> str | None:
    """A node creates only mirror pods of its static pods (upstream NodeRestriction): the
    mirror annotation, bound to itself, owned by its Node alone, referencing no API objects."""
    if MIRROR_POD_ANNOTATION not in (meta(pod).get("annotations") or {}):
        return (
            f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can only '
            "create mirror pods"
        )
    if _spec(pod).get("nodeName") != node:
        return f'node "{node}" can only create pods with spec.nodeName set to itself'
    owners = meta(pod).get("ownerReferences") or []
    if len(owners) != 1:
        return f'node "{node}" can only create pods with a single owner reference set to itself'
    owner = owners[0]
    if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node):
        return f'node "{node}" can only create pods with an owner reference set to itself'
    if _spec(pod).get("serviceAccountName"):
        return f'node "{node}" can not create pods that use service accounts'
    for what, names in (
        ("secrets", pod_secret_names(pod)),
        ("configmaps", pod_configmap_names(pod)),
        ("persistentvolumeclaims", pod_claim_names(pod)),
    ):
        if names:
            return f'node "{node}" can not create pods that reference {what}'
    return None


def _admit_pod(r: _Request) -> str | None:
    if r.subresource == "":
        if r.op == "delete":
            return _admit_pod_delete(r)
        if r.op == "create":
            return _admit_mirror_pod(r.node, r.obj or {})
        return f'node "{r.node}" can not {r.op} pods'
    if r.subresource == "status":
        return _admit_pod_status(r)
    if r.subresource == "eviction":
        return _admit_pod_eviction(r)
    return (
        f"unexpected pod subresource \"{r.subresource}\", only 'status' and 'eviction' are allowed"
    )


def _admit_pod_delete(r: _Request) -> str | None:
    """A node deletes only pods bound to itself."""
    pod = r.old if r.old is not None else r.pod(r.name)
    if pod is None:
        return f'pods "{r.name}" not found'
    if _spec(pod).get("nodeName") != r.node:
        return f'node "{r.node}" can only delete pods with spec.nodeName set to itself'
    return None


def _admit_pod_status(r: _Request) -> str | None:
    """A node updates the status of its own pods, but not their labels or claim statuses."""
    if r.op != "update":
        return f'unexpected operation "{r.op.upper()}"'
    if _spec(r.old).get("nodeName") != r.node:
        return (
            f'node "{r.node}" can only update pod status for pods with spec.nodeName set to itself'
        )
    if (meta(r.old).get("labels") or {}) != (meta(r.obj).get("labels") or {}):
        return f'node "{r.node}" cannot update labels through pod status'
    claims = [((r.old or {}).get("status") or {}).get("resourceClaimStatuses") or []]
    claims.append(((r.obj or {}).get("status") or {}).get("resourceClaimStatuses") or [])
    if claims[0] != claims[1]:
        return f'node "{r.node}" cannot update resource claim statuses'
    return None


def _admit_pod_eviction(r: _Request) -> str | None:
    """A node evicts only pods bound to itself."""
    if r.op != "create":
        return f'unexpected operation "{r.op.upper()}"'
    if not r.name:
        return "could not determine pod from request data"
    pod = r.pod(r.name)
    if pod is None:
        return f'pods "{r.name}" not found'
    if _spec(pod).get("nodeName") != r.node:
        return f"node {r.node} can only evict pods with spec.nodeName set to itself"
    return None


def forbidden_node_labels(new: dict[str, str], old: dict[str, str]) -> list[str]:
    """Label keys added, removed or changed between ``old`` and ``new`` that a node may not
    set on itself: node-restriction.kubernetes.io ones, and kubernetes.io / k8s.io ones other
    than the kubelet labels."""
    changed = {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}
    return sorted(key for key in changed if _forbidden_label(key))


def _label_namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def _in_namespace(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def _forbidden_label(key: str) -> bool:
    namespace = _label_namespace(key)
    if _in_namespace(namespace, _NODE_RESTRICTION_NAMESPACE):
        return True
    kubernetes = _in_namespace(namespace, "kubernetes.io") or _in_namespace(namespace, "k8s.io")
    kubelet = key in _KUBELET_LABELS or any(
        _in_namespace(namespace, allowed) for allowed in _KUBELET_LABEL_NAMESPACES
    )
    return kubernetes and not kubelet


def _admit_node(r: _Request) -> str | None:
    if r.name != r.node:
        return f'node "{r.node}" is not allowed to modify node "{r.name}"'
    spec, labels = _spec(r.obj), meta(r.obj).get("labels") or {}
    if r.op == "create":
        if spec.get("configSource") is not None:
            return f'node "{r.node}" is not allowed to create its Node with a configSource'
        if forbidden := forbidden_node_labels(labels, {}):
            return f'node "{r.node}" is not allowed to set the following labels: ' + ", ".join(
                forbidden
            )
    elif r.op == "update":
        old_spec = _spec(r.old)
        if spec.get("configSource") is not None and spec["configSource"] != old_spec.get(
            "configSource"
        ):
            return (
                f'node "{r.node}" is not allowed to update configSource to a new non-nil '
                "configSource"
            )
        if (spec.get("taints") or []) != (old_spec.get("taints") or []):
            return f'node "{r.node}" is not allowed to modify taints'
        if forbidden := forbidden_node_labels(labels, meta(r.old).get("labels") or {}):
            return f'node "{r.node}" is not allowed to modify labels: ' + ", ".join(forbidden)
    return None


_PVC_STATUS_FIELDS = ("capacity", "conditions", "allocatedResources", "allocatedResourceStatuses")


def _without_node_fields(pvc: dict[str, Any] | None) -> dict[str, Any]:
    """A claim without what a node may change (and without write bookkeeping)."""
    copy = dict(pvc or {})
    copy["metadata"] = {
        k: v for k, v in meta(pvc).items() if k not in ("resourceVersion", "managedFields")
    }
    copy["status"] = {
        k: v for k, v in (copy.get("status") or {}).items() if k not in _PVC_STATUS_FIELDS
    }
    return copy


def _admit_pvc(r: _Request) -> str | None:
    if r.subresource != "status":
        return "may only update PVC status"
    if r.op != "update":
        return f'unexpected operation "{r.op.upper()}"'
    if _without_node_fields(r.obj) != _without_node_fields(r.old):
        return (
            f'node "{r.node}" is not allowed to update fields other than status.capacity and '
            "status.conditions"
        )
    return None


def _admit_service_account(r: _Request) -> str | None:
    if r.op != "create" or r.subresource != "token":
        return None
    ref = _spec(r.obj).get("boundObjectRef") or {}
    if ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
        return "node requested token not bound to a pod"
    if not ref.get("uid"):
        return "node requested token with a pod binding without a uid"
    pod = r.pod(ref["name"])
    if pod is None:
        return f'pods "{ref["name"]}" not found'
    if ref["uid"] != meta(pod).get("uid"):
        return (
            f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
            "record. The object might have been deleted and then recreated"
        )
    if _spec(pod).get("nodeName") != r.node:
        return "node requested token bound to a pod scheduled on a different node"
    return None


def _admit_lease(r: _Request) -> str | None:
    if r.namespace != NODE_LEASE_NAMESPACE:
        return f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
    if r.name != r.node:
        return "can only access node lease with the same name as the requesting node"
    return None


def _admit_csinode(r: _Request) -> str | None:
    if r.name != r.node:
        return "node may only create, update or delete its own CSINode"
    return None


_ADMITTERS: dict[tuple[str, str], Callable[[_Request], str | None]] = {
    ("", "pods"): _admit_pod,
    ("", "nodes"): _admit_node,
    ("", "persistentvolumeclaims"): _admit_pvc,
    ("", "serviceaccounts"): _admit_service_account,
    ("coordination.k8s.io", "leases"): _admit_lease,
    ("storage.k8s.io", "csinodes"): _admit_csinode,
}
