"""The server's identity plumbing, assembled at start-up: object caches for what
authentication and authorization read, the join secret and token files, the
service-account token signer, the authorizer chain (system:masters, node, RBAC) and the
default RBAC policy. These read paths work on every server; the loops that write (the
ClusterRole aggregation controller here, service accounts, CSRs) run in the
kube-controller-manager group, only on the server holding its leader Lease."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgek import jointoken, status
from edgek.kinds import Kind, Registry
from edgek.status import ApiError
from edgek.tasks import cancel_and_wait
from server.auth.attributes import Attributes
from server.auth.authn import Authenticator
from server.auth.authz import AuthorizerChain
from server.auth.bootstrap_policy import default_cluster_role_bindings, default_cluster_roles
from server.auth.bootstrap_tokens import is_expired
from server.auth.node import NodeGraph, admit_node_write
from server.auth.rbac import RBACAuthorizer
from server.auth.satoken import (
    API_AUDIENCES,
    DEFAULT_EXPIRATION_SECONDS,
    ServiceAccountKey,
    token_request_response,
    validate_token_request,
)
from server.cache import Informers, ObjectCache, builtin_kind
from server.storage.objectstore import DeleteOptions, ObjectStore, WriteOptions
from server.storage.requestinfo import UserInfo

RBAC_GROUP = "rbac.authorization.k8s.io"
BOOTSTRAP_TOKEN_TYPE = "bootstrap.kubernetes.io/token"


def join_secret(server_dir: Path, configured: str) -> str:
    """The cluster join secret: configured (--token, --token-file, EDGEK_TOKEN), else the one
    in an existing token file, else a new random one."""
    if configured:
        return configured
    env = os.environ.get("EDGEK_TOKEN", "")
    if env:
        return jointoken.parse(env).password
    token_file = server_dir / "token"
    if token_file.exists():
        with contextlib.suppress(ValueError):
            return jointoken.parse(token_file.read_text().strip()).password
    return jointoken.random_secret()


def _user_json(user: UserInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        out["uid"] = user.uid
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


def _review_attributes(user: UserInfo, spec: dict[str, Any], namespace: str) -> Attributes:
    res = spec.get("resourceAttributes")
    if isinstance(res, dict):
        return Attributes(
            user,
            str(res.get("verb", "")),
            True,
            api_group=str(res.get("group", "")),
            api_version=str(res.get("version", "")),
            resource=str(res.get("resource", "")),
            subresource=str(res.get("subresource", "")),
            namespace=namespace or str(res.get("namespace", "")),
            name=str(res.get("name", "")),
        )
    non = spec.get("nonResourceAttributes") or {}
    return Attributes(user, str(non.get("verb", "")), False, path=str(non.get("path", "")))


class _RBACCaches:
    """RBACSource over the four RBAC caches."""

    def __init__(self, caches: dict[str, ObjectCache]) -> None:
        self.caches = caches

    def cluster_roles(self) -> Any:
        return self.caches["clusterroles"].items()

    def cluster_role(self, name: str) -> dict[str, Any] | None:
        return self.caches["clusterroles"].get("", name)

    def cluster_role_bindings(self) -> Any:
        return self.caches["clusterrolebindings"].items()

    def role(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.caches["roles"].get(namespace, name)

    def role_bindings(self, namespace: str) -> Any:
        return self.caches["rolebindings"].items(namespace)


class Identity:
    """Authentication, authorization and their supporting loops for one server."""

    def __init__(
        self,
        objects: ObjectStore,
        registry: Registry,
        informers: Informers,
        *,
        server_dir: Path,
        ca_pem: bytes,
        service_account_key: ServiceAccountKey,
        configured_secret: str = "",
    ) -> None:
        self.objects = objects
        self.registry = registry
        self.secret = join_secret(server_dir, configured_secret)
        jointoken.write_token_files(server_dir, ca_pem, self.secret)
        self.service_account_key = service_account_key
        self.caches: dict[str, ObjectCache] = {}
        for group, resource in (
            ("", "namespaces"),
            ("", "secrets"),
            ("", "serviceaccounts"),
            ("", "pods"),
            ("", "persistentvolumes"),
            ("storage.k8s.io", "volumeattachments"),
            ("certificates.k8s.io", "certificatesigningrequests"),
            (RBAC_GROUP, "roles"),
            (RBAC_GROUP, "rolebindings"),
            (RBAC_GROUP, "clusterroles"),
            (RBAC_GROUP, "clusterrolebindings"),
        ):
            self.caches[resource] = informers.cache(group, resource)
        self.graph = NodeGraph()
        self.caches["pods"].on_change(self._pod_changed)
        self.caches["persistentvolumes"].on_change(self._pv_changed)
        self.caches["volumeattachments"].on_change(
            lambda obj, deleted: self.graph.update(
                "storage.k8s.io", "volumeattachments", obj, deleted
            )
        )
        self.rbac = RBACAuthorizer(_RBACCaches(self.caches))
        for resource in ("roles", "rolebindings", "clusterroles", "clusterrolebindings"):
            self.caches[resource].on_event(lambda old, new: self.rbac.invalidate())
        self.authz = AuthorizerChain([self.graph, self.rbac])
        self.authn = Authenticator(
            join_secret=self.secret,
            service_account_key=self.service_account_key,
            audiences=list(API_AUDIENCES),
            secrets=self.caches["secrets"].get,
            service_accounts=self.caches["serviceaccounts"].get,
            pods=self.caches["pods"].get,
        )
        objects.user_admission.append(self._node_restriction)
        self._cleaner: asyncio.Task[None] | None = None

    def _node_restriction(
        self,
        user: UserInfo,
        kind: Kind,
        verb: str,
        subresource: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> str | None:
        md = obj.get("metadata") or {}
        return admit_node_write(
            user,
            kind.group,
            kind.resource,
            subresource,
            verb,
            obj,
            old,
            namespace=md.get("namespace", ""),
            name=md.get("name", ""),
            pods=self.caches["pods"].get,
        )

    async def _clean_expired_tokens(self, interval: float = 30.0) -> None:
        """Delete expired bootstrap-token Secrets (upstream's token cleaner)."""
        secrets = self.caches["secrets"]
        while True:
            now = datetime.now(UTC)
            for secret in list(secrets.items("kube-system")):
                if secret.get("type") == BOOTSTRAP_TOKEN_TYPE and is_expired(secret, now):
                    with contextlib.suppress(ApiError):
                        await self.objects.delete(
                            secrets.kind, "kube-system", secret["metadata"]["name"], DeleteOptions()
                        )
            await asyncio.sleep(interval)

    def _pod_changed(self, obj: dict[str, Any], deleted: bool) -> None:
        self.graph.update("", "pods", obj, deleted)

    def _pv_changed(self, obj: dict[str, Any], deleted: bool) -> None:
        self.graph.update("", "persistentvolumes", obj, deleted)

    async def token_request(self, sa: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Answer a TokenRequest for ``sa``: validate, resolve the bound object, sign."""
        md = sa["metadata"]
        causes = validate_token_request(body)
        if causes:
            raise status.invalid("TokenRequest", "authentication.k8s.io", "", causes)
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        bound = node = None
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref.get("name"):
            ref_kind = ref.get("kind", "")
            if ref_kind not in ("Pod", "Secret"):
                raise status.bad_request(f"cannot bind token to object of kind {ref_kind!r}")
            cache = self.caches["pods" if ref_kind == "Pod" else "secrets"]
            target = cache.get(md.get("namespace", ""), ref["name"])
            if target is None or (ref.get("uid") and ref["uid"] != target["metadata"].get("uid")):
                raise status.not_found(cache.kind.group_resource, ref["name"])
            bound = {"kind": ref_kind, "name": ref["name"], "uid": target["metadata"]["uid"]}
            node_name = (target.get("spec") or {}).get("nodeName") if ref_kind == "Pod" else None
            if node_name:
                node = {"name": node_name, "uid": ""}
        seconds = spec.get("expirationSeconds") or DEFAULT_EXPIRATION_SECONDS
        now = int(time.time())
        token, exp = self.service_account_key.signer.issue(
            namespace=md.get("namespace", ""),
            name=md["name"],
            uid=md.get("uid", ""),
            audiences=list(spec.get("audiences") or API_AUDIENCES),
            expiration_seconds=int(seconds),
            now=now,
            bound=bound,
            node=node,
        )
        return token_request_response(body, token, exp, service_account=sa, now=now)

    def review(
        self, kind: Kind, namespace: str, body: dict[str, Any], requester: UserInfo
    ) -> dict[str, Any]:
        """The answered review: SelfSubject/Subject/LocalSubject access reviews,
        SelfSubjectRulesReview, TokenReview and SelfSubjectReview."""
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        out = dict(body)
        if kind.kind == "SelfSubjectReview":
            out["status"] = {"userInfo": _user_json(requester)}
        elif kind.kind == "TokenReview":
            user = self.authn.token_user(str(spec.get("token", "")))
            out["status"] = (
                {"authenticated": True, "user": _user_json(user), "audiences": list(API_AUDIENCES)}
                if user
                else {"authenticated": False, "error": "invalid bearer token"}
            )
        elif kind.kind == "SelfSubjectRulesReview":
            resource, non_resource, incomplete = self.rbac.rules_for(
                requester, str(spec.get("namespace", ""))
            )
            out["status"] = {
                "resourceRules": resource,
                "nonResourceRules": non_resource,
                "incomplete": incomplete,
            }
        else:
            user = requester
            if kind.kind != "SelfSubjectAccessReview":
                user = UserInfo(
                    str(spec.get("user", "")),
                    tuple(spec.get("groups") or ()),
                    str(spec.get("uid", "")),
                )
            attrs = _review_attributes(user, spec, namespace)
            decision = self.authz.authorize(attrs)
            result: dict[str, Any] = {"allowed": decision.allowed}
            if decision.reason:
                result["reason"] = decision.reason
            out["status"] = result
        return out

    async def start(self) -> None:
        """Create the default RBAC policy, fill the caches, start the token cleaner."""
        await self._ensure_default_policy()
        await asyncio.gather(*(cache.start() for cache in self.caches.values()))
        self._cleaner = asyncio.create_task(self._clean_expired_tokens(), name="token-cleaner")

    async def stop(self) -> None:
        await cancel_and_wait(self._cleaner)
        for cache in self.caches.values():
            await cache.stop()

    async def _ensure_default_policy(self) -> None:
        roles = builtin_kind(self.registry, RBAC_GROUP, "clusterroles")
        bindings = builtin_kind(self.registry, RBAC_GROUP, "clusterrolebindings")
        opts = WriteOptions(field_manager="edgek-rbac-bootstrap")
        for kind, objs in (
            (roles, default_cluster_roles()),
            (bindings, default_cluster_role_bindings()),
        ):
            for obj in objs:
                if await self.objects.try_get(kind, "", obj["metadata"]["name"]) is None:
                    try:
                        await self.objects.create(kind, "", obj, opts)
                    except ApiError as e:
                        if e.code != 409:
                            raise
