"""REST handlers for resources: get, list, watch, create, update, patch, delete,
deletecollection, and the status and scale subresources."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from edgek import objects, status
from edgek.kinds import Kind
from edgek.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from edgek.patch.apply import ApplyConflict, apply
from edgek.patch.jsonpatch import TooManyOperations
from edgek.selectors import (
    SelectorError,
    allowed_fields,
    label_selector_to_string,
    parse_field_selector,
    parse_label_selector,
)
from edgek.status import ApiError
from edgek.timefmt import format_time
from edgek.validation import unknown_fields, validate_types
from server.apiserver import codec, tables, watch
from server.apiserver.codec import Accept
from server.apiserver.request import USER_KEY
from server.storage import crschema
from server.storage.crd import CustomResources
from server.storage.eventmemo import EventMemo
from server.storage.objectstore import (
    DeleteOptions,
    ListOptions,
    ObjectStore,
    WriteOptions,
    validate_delete_options,
)
from server.storage.requestinfo import Action, RequestInfo, UserInfo


class IdentityService(Protocol):
    """Service-account tokens (TokenRequest) and the review kinds (access, rules, token and
    self-subject reviews), which are answered, never stored."""

    async def token_request(self, sa: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]: ...

    def review(
        self, kind: Kind, namespace: str, body: dict[str, Any], requester: UserInfo
    ) -> dict[str, Any]: ...


#: API groups whose kinds are reviews (create-only, answered from the request).
REVIEW_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})


#: Largest request body accepted (upstream: 3 MiB).
MAX_BODY_BYTES = 3 * 1024 * 1024
#: Where upstream's scheme of built-in types is declared (it names itself in decode errors).
_LEGACY_SCHEME = "k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30"
#: The options kind whose fieldValidation a write method validates.
_OPTIONS_KINDS = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}
#: Go package of the internal type, where it is not the group's first label.
_INTERNAL_PACKAGES = {
    "": "core",
    "events.k8s.io": "core",
    "internal.apiserver.k8s.io": "apiserverinternal",
}


def _int_param(query: Any, name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise status.bad_request(f"invalid value for {name}: {raw!r}") from e


def _bool_param(query: Any, name: str) -> bool:
    return query.get(name, "") in ("true", "1", "True")


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise status.bad_request(f'unsupported dry run option "{v}", only "All" is supported')
    return bool(values)


def _requester(request: web.Request) -> tuple[str, list[str]] | None:
    user = request.get(USER_KEY)
    if user is None:
        return None
    return user.name, [g for g in user.groups if g != "system:authenticated"]


def _field_manager(request: web.Request) -> str:
    manager = request.query.get("fieldManager", "")
    if not manager:
        agent = request.headers.get("User-Agent", "unknown")
        manager = agent.split("/", 1)[0]
    return manager[:128]


class ResourceAPI:
    """Serves resource requests against the object store."""

    def __init__(
        self,
        objects_: ObjectStore,
        crds: CustomResources,
        memo: EventMemo,
        *,
        clock: Callable[[], datetime] = objects.now,
        bookmark_interval: float = 60.0,
        identity: IdentityService | None = None,
    ) -> None:
        self.identity = identity
        self.objects = objects_
        self.memo = memo
        self.crds = crds
        self.clock = clock
        self.bookmark_interval = bookmark_interval
        #: POST subresources served by other modules (pods/binding, pods/eviction), by
        #: (group, resource, subresource).
        self.actions: dict[tuple[str, str, str], Action] = {}

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        verb = info.verb
        if verb == "get":
            return await self._get(request, info)
        if verb == "list":
            return await self._list(request, info)
        if verb == "watch":
            return await self._watch(request, info)
        if verb == "create":
            return await self._dispatch_create(request, info)
        if verb == "update":
            return await self._update(request, info)
        if verb == "patch":
            return await self._patch(request, info)
        if verb == "delete":
            return await self._delete(request, info)
        return await self._delete_collection(request, info)

    async def _dispatch_create(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        """A POST: a token request, a subresource action, a review or a plain create."""
        if info.subresource == "token":
            return await self._token(request, info)
        action = self.actions.get((info.kind.group, info.kind.resource, info.subresource))
        if action is not None:
            return await self._action(request, info, action)
        if info.kind.group in REVIEW_GROUPS:
            return await self._review(request, info)
        return await self._create(request, info)

    # -- reads -------------------------------------------------------------------

    def _render_one(self, kind: Kind, obj: dict[str, Any], accept: Accept, query: Any) -> Any:
        if accept.table:
            t = self._table(kind, [obj], query)
            t["metadata"] = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return t
        if accept.partial:
            return _partial(obj)
        return obj

    def _table(self, kind: Kind, items: list[dict[str, Any]], query: Any) -> dict[str, Any]:
        return tables.table(
            kind.group,
            kind.resource,
            items,
            now=self.clock(),
            include_object=query.get("includeObject", "Metadata"),
            printer_columns=self.crds.printer_columns(kind),
        )

    async def _get(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        accept = codec.negotiate(request.headers.get("Accept"))
        obj = await self.objects.get(info.kind, info.namespace, info.name)
        if info.subresource == "scale":
            return codec.respond(self._scale_of(info.kind, obj), accept=accept)
        return codec.respond(self._render_one(info.kind, obj, accept, request.query), accept=accept)

    def _list_options(self, query: Any, kind: Kind, *, watch: bool = False) -> ListOptions:
        _validate_list_options(query, watch)
        try:
            label = query.get("labelSelector", "")
            field = query.get("fieldSelector", "")
            opts = ListOptions(
                label_selector=parse_label_selector(label) if label else None,
                field_selector=(
                    parse_field_selector(field, allowed_fields(kind.group, kind.resource))
                    if field
                    else None
                ),
            )
        except SelectorError as e:
            raise status.bad_request(str(e)) from e
        opts.limit = max(_int_param(query, "limit") or 0, 0)
        opts.continue_token = query.get("continue", "")
        opts.resource_version = query.get("resourceVersion", "")
        opts.resource_version_match = query.get("resourceVersionMatch", "")
        return opts

    async def _list(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        accept = codec.negotiate(request.headers.get("Accept"))
        kind = info.kind
        result = await self.objects.list(
            kind, info.namespace, self._list_options(request.query, kind)
        )
        list_meta: dict[str, Any] = {"resourceVersion": result.resource_version}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
        body: dict[str, Any]
        if accept.table:
            body = self._table(kind, result.items, request.query)
            body["metadata"] = list_meta
        elif accept.partial:
            body = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta,
                "items": [_partial(o) for o in result.items],
            }
        else:
            body = {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": list_meta,
                "items": result.items,
            }
        return codec.respond(body, accept=accept)

    async def _watch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        q = request.query
        accept = codec.negotiate(request.headers.get("Accept"))
        kind = info.kind
        opts = self._list_options(q, kind, watch=True)
        if info.name:
            opts.field_selector = parse_field_selector(
                f"metadata.name={info.name}", allowed_fields(kind.group, kind.resource)
            )
        send_initial = _bool_param(q, "sendInitialEvents")
        bookmarks = _bool_param(q, "allowWatchBookmarks")
        if send_initial and (q.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
            raise status.invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                [
                    {
                        "reason": "FieldValueForbidden",
                        "message": "sendInitialEvents requires setting resourceVersionMatch "
                        "to NotOlderThan and allowWatchBookmarks",
                        "field": "sendInitialEvents",
                    }
                ],
            )
        timeout = _int_param(q, "timeoutSeconds")

        def plain(obj: dict[str, Any], first: bool) -> dict[str, Any]:
            return obj

        transform: watch.Transform = plain
        if accept.table:

            def as_table(obj: dict[str, Any], first: bool) -> dict[str, Any]:
                t = self._table(kind, [obj], q)
                t["metadata"] = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                if not first:
                    t["columnDefinitions"] = []
                return t

            transform = watch.first_only(as_table)
        elif accept.partial:
            transform = lambda obj, first: _partial(obj)  # noqa: E731
        wr = watch.WatchRequest(
            kind,
            info.namespace,
            opts,
            resource_version=q.get("resourceVersion", ""),
            bookmarks=bookmarks,
            timeout=float(timeout) if timeout else None,
            send_initial_events=send_initial,
        )
        return await watch.serve(
            request,
            self.objects,
            self.memo,
            wr,
            transform,
            bookmark_interval=self.bookmark_interval,
        )

    # -- writes ------------------------------------------------------------------

    async def _body(self, request: web.Request, kind: Kind, into: str) -> Any:
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise status.too_large(f"Request entity too large: limit is {MAX_BODY_BYTES}")
        accepted = codec.CUSTOM_BODY_TYPES if kind.custom else codec.BODY_TYPES
        return codec.decode_body(
            raw, request.headers.get("Content-Type"), into=into, accepted=accepted
        )

    def _check_object(
        self, kind: Kind, info: RequestInfo, obj: Any, *, expect_kind: str | None = None
    ) -> dict[str, Any]:
        """Shape checks shared by create and update: a JSON object of the URL's kind and
        namespace; missing apiVersion/kind are filled in from the URL."""
        if not isinstance(obj, dict):
            raise status.bad_request("the body of the request must be a JSON object")
        type_meta = codec.type_meta_error(obj)
        if type_meta is not None:
            raise status.bad_request(type_meta)
        want_kind = expect_kind or kind.kind
        api_version = obj["apiVersion"] = obj.get("apiVersion") or kind.api_version
        obj_kind = obj["kind"] = obj.get("kind") or want_kind
        if expect_kind is None and not kind.custom:
            self._check_builtin_kind(kind, api_version, obj_kind)
        elif obj_kind != want_kind:
            raise status.bad_request(
                f"the kind in the data ({obj_kind}) does not match the expected kind ({want_kind})"
            )
        if expect_kind is None and api_version != kind.api_version:
            raise status.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({kind.api_version})"
            )
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        if not isinstance(md, dict):
            raise status.bad_request("metadata must be an object")
        ns = md.get("namespace")
        if kind.namespaced and ns and info.namespace and ns != info.namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        return obj

    def _check_builtin_kind(self, kind: Kind, api_version: str, obj_kind: str) -> None:
        """Upstream decodes a built-in body by its own apiVersion/kind, then converts it to the
        URL's type: an unregistered kind, or another kind, fails that way (400)."""
        if obj_kind == kind.kind and api_version == kind.api_version:
            return
        version = api_version.rpartition("/")[2]
        prefix = f'{obj_kind} in version "{version}" cannot be handled as a {kind.kind}: '
        data_kind = self.crds.registry.by_gvk(api_version, obj_kind)
        if data_kind is None or data_kind.custom:
            raise status.bad_request(
                f'{prefix}no kind "{obj_kind}" is registered for version "{api_version}" in '
                f'scheme "{_LEGACY_SCHEME}"'
            )
        if obj_kind != kind.kind:
            internal = _INTERNAL_PACKAGES.get(kind.group, kind.group.split(".", 1)[0])
            raise status.bad_request(
                f"{prefix}converting ({version}.{obj_kind}) to ({internal}.{kind.kind}): "
                "unknown conversion"
            )

    def _field_validation(
        self, request: web.Request, kind: Kind, obj: dict[str, Any], warnings: list[str]
    ) -> None:
        """Apply the fieldValidation directive (Strict, Warn — the default — or Ignore) and
        drop unknown fields."""
        mode = request.query.get("fieldValidation") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            options = _OPTIONS_KINDS.get(request.method, "CreateOptions")
            raise status.invalid(
                options,
                "meta.k8s.io",
                "",
                [
                    {
                        "reason": "FieldValueNotSupported",
                        "message": f'Unsupported value: "{mode}": supported values: '
                        '"", "Ignore", "Strict", "Warn"',
                        "field": "fieldValidation",
                    }
                ],
            )
        if kind.type_name is None:
            schema = self.crds.schema(kind)
            unknown = crschema.unknown_fields(schema, obj)
            if mode != "Strict":
                crschema.prune(schema, obj)
        else:
            type_errors = validate_types(kind.type_name, obj)
            if type_errors:
                raise status.bad_request(
                    f'{kind.kind} in version "{kind.version}" cannot be handled as a '
                    f"{kind.kind}: {type_errors[0]['message']}"
                )
            unknown = unknown_fields(kind.type_name, obj, prune=mode != "Strict")
        messages = [f'unknown field "{p}"' for p in unknown]
        if mode == "Strict" and messages:
            error = "strict decoding error: " + ", ".join(messages)
            if request.method in ("POST", "PUT"):
                # create and update fail while decoding the body, so upstream words it as such
                error = (
                    f'{kind.kind} in version "{kind.version}" cannot be handled as a '
                    f"{kind.kind}: {error}"
                )
            raise status.bad_request(error)
        if mode == "Warn":
            warnings.extend(messages)

    def _write_options(self, request: web.Request, info: RequestInfo) -> WriteOptions:
        return WriteOptions(
            dry_run=_dry_run(request.query),
            field_manager=_field_manager(request),
            subresource=info.subresource,
            requester=_requester(request),
            user=request.get(USER_KEY),
        )

    async def _token(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        """POST serviceaccounts/{name}/token: a bound, expiring service-account token."""
        if self.identity is None:
            raise status.method_not_allowed("token requests are not served")
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise status.too_large(f"Request entity too large: limit is {MAX_BODY_BYTES}")
        body = codec.decode_body(raw, request.headers.get("Content-Type")) if raw.strip() else {}
        if not isinstance(body, dict):
            raise status.bad_request("the body of the request must be a TokenRequest object")
        sa = await self.objects.get(info.kind, info.namespace, info.name)
        return codec.respond(await self.identity.token_request(sa, body), 201)

    async def _action(
        self, request: web.Request, info: RequestInfo, action: Action
    ) -> web.StreamResponse:
        """POST to a subresource served by another module: its body goes to ``action``."""
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise status.too_large(f"Request entity too large: limit is {MAX_BODY_BYTES}")
        body = codec.decode_body(raw, request.headers.get("Content-Type")) if raw.strip() else {}
        if not isinstance(body, dict):
            raise status.bad_request("the body of the request must be an object")
        result, code = await action(info, body, self._write_options(request, info))
        return codec.respond(result, code)

    async def _review(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        """Answer an access/rules/token/self-subject review (nothing is stored)."""
        if self.identity is None:
            raise status.method_not_allowed("reviews are not served")
        body = self._check_object(
            info.kind, info, await self._body(request, info.kind, info.kind.kind)
        )
        return codec.respond(
            self.identity.review(info.kind, info.namespace, body, request[USER_KEY]), 201
        )

    async def _create(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        kind = info.kind
        if info.kind.namespaced and not info.namespace:
            raise status.method_not_allowed(
                f"the namespace must be given to create {kind.resource}"
            )
        obj = self._check_object(kind, info, await self._body(request, kind, kind.kind))
        warnings: list[str] = []
        self._field_validation(request, kind, obj, warnings)
        md = obj["metadata"]
        if not md.get("name") and not md.get("generateName"):
            raise status.invalid(
                kind.kind,
                kind.group,
                "",
                [
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value: name or generateName is required",
                        "field": "metadata.name",
                    }
                ],
            )
        created = await self.objects.create(
            kind, info.namespace, obj, self._write_options(request, info)
        )
        return codec.respond(created, 201, headers=_warning_headers(warnings))

    async def _update(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        kind = info.kind
        is_scale = info.subresource == "scale"
        body = await self._body(request, kind, "Scale" if is_scale else kind.kind)
        opts = self._write_options(request, info)
        if is_scale:
            scale = self._check_object(kind, info, body, expect_kind="Scale")
            obj = await self._set_scale(info, scale, opts)
            return codec.respond(self._scale_of(kind, obj))
        obj = self._check_object(kind, info, body)
        warnings: list[str] = []
        self._field_validation(request, kind, obj, warnings)
        md = obj["metadata"]
        if md.get("name") and md["name"] != info.name:
            raise status.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL "
                f"({info.name})"
            )
        md["name"] = info.name
        result, created = await self.objects.update(
            kind, info.namespace, info.name, obj, opts, allow_create=kind.custom is False
        )
        return codec.respond(result, 201 if created else 200, headers=_warning_headers(warnings))

    async def _patch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        kind = info.kind
        accepted = codec.CUSTOM_PATCH_TYPES if kind.custom else codec.BUILTIN_PATCH_TYPES
        mt = codec.media_type(request.headers.get("Content-Type"))
        if mt not in accepted:
            raise codec.unsupported_media_type(accepted)
        ptype = codec.PATCH_TYPES[mt]
        if ptype != "apply" and "force" in request.query:
            raise _forbidden_option(
                "PatchOptions", "force", "may not be specified for non-apply patch"
            )
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise status.too_large(f"Request entity too large: limit is {MAX_BODY_BYTES}")
        patch = codec.decode_body(
            raw, "application/yaml" if ptype == "apply" else "application/json"
        )
        opts = self._write_options(request, info)
        warnings: list[str] = []
        if ptype == "apply":
            return await self._apply(request, info, patch, opts, warnings)

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                raise status.not_found(kind.group_resource, info.name)
            doc = self._scale_of(kind, current) if info.subresource == "scale" else current
            patched = _apply_patch(ptype, doc, patch, kind, info.subresource)
            if info.subresource == "scale":
                return self._scaled(kind, current, patched)
            self._check_object(kind, info, patched)
            scope = _patched_fields(ptype, patch, patched)
            named = set(scope)
            self._field_validation(request, kind, scope, warnings)
            for name in named - set(scope):
                patched.pop(name, None)  # pruned as unknown
            return patched

        result, _ = await self.objects.modify(kind, info.namespace, info.name, mutate, opts)
        if info.subresource == "scale":
            return codec.respond(self._scale_of(kind, result))
        return codec.respond(result, headers=_warning_headers(warnings))

    async def _apply(
        self,
        request: web.Request,
        info: RequestInfo,
        patch: Any,
        opts: WriteOptions,
        warnings: list[str],
    ) -> web.StreamResponse:
        kind = info.kind
        manager = request.query.get("fieldManager", "")
        if not manager:
            raise status.bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager parameter"
            )
        applied = self._check_object(kind, info, patch)
        applied_name = applied["metadata"].get("name")
        if applied_name and applied_name != info.name:
            raise status.bad_request(
                f"the name of the object ({applied_name}) does not match the name on the URL "
                f"({info.name})"
            )
        applied["metadata"]["name"] = info.name
        self._field_validation(request, kind, applied, warnings)
        force = _bool_param(request.query, "force")
        apply_opts = WriteOptions(dry_run=opts.dry_run, subresource=opts.subresource)

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            try:
                return apply(
                    current,
                    objects.clone(applied),
                    manager=manager,
                    force=force,
                    type_name=kind.type_name,
                    api_version=kind.api_version,
                    now=format_time(self.clock()),
                )
            except ApplyConflict as e:
                err = e.api_error(kind.api_version)
                assert err.details is not None
                err.details.update(name=info.name, kind=kind.resource)
                if kind.group:
                    err.details["group"] = kind.group
                raise err from e

        result, created = await self.objects.modify(
            kind, info.namespace, info.name, mutate, apply_opts
        )
        return codec.respond(result, 201 if created else 200, headers=_warning_headers(warnings))

    async def _delete(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        kind = info.kind
        opts = await self._delete_options(request)
        obj, gone = await self.objects.delete(kind, info.namespace, info.name, opts)
        if gone and (kind.group, kind.resource) != ("", "pods"):
            return codec.respond(_success(kind, obj))
        return codec.respond(obj)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        q = request.query
        body: Any = None
        raw = await request.read()
        if raw.strip():
            body = codec.decode_body(raw, request.headers.get("Content-Type"))
            if not isinstance(body, dict):
                raise status.bad_request("DeleteOptions must be a JSON object")
        body = body or {}
        policy = body.get("propagationPolicy") or q.get("propagationPolicy", "")
        orphan = body.get("orphanDependents")
        if orphan is None and q.get("orphanDependents"):
            orphan = _bool_param(q, "orphanDependents")
        grace = body.get("gracePeriodSeconds")
        if grace is None:
            grace = _int_param(q, "gracePeriodSeconds")
        pre = body.get("preconditions") or {}
        dry = bool(body.get("dryRun")) or _dry_run(q)
        opts = DeleteOptions(
            dry_run=dry,
            grace_period_seconds=grace,
            propagation_policy=str(policy),
            orphan_dependents=orphan if isinstance(orphan, bool) else None,
            precondition_uid=pre.get("uid") or "",
            precondition_rv=pre.get("resourceVersion") or "",
        )
        validate_delete_options(opts)
        return opts

    async def _delete_collection(
        self, request: web.Request, info: RequestInfo
    ) -> web.StreamResponse:
        kind = info.kind
        opts = await self._delete_options(request)
        listed = await self.objects.list(
            kind, info.namespace, self._list_options(request.query, kind)
        )
        deleted = []
        for obj in listed.items:
            md = obj["metadata"]
            try:
                out, _ = await self.objects.delete(kind, md.get("namespace", ""), md["name"], opts)
            except ApiError as e:
                if e.code == 404:
                    continue
                raise
            deleted.append(out)
        return codec.respond(
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": str(self.objects.datastore.revision)},
                "items": deleted,
            }
        )

    # -- scale -------------------------------------------------------------------

    def _scale_of(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        """The autoscaling/v1 Scale view of a scalable object."""
        paths = self.crds.scale_paths(kind)
        spec_replicas = _get_path(obj, paths.spec_replicas) or 0
        status_replicas = _get_path(obj, paths.status_replicas) or 0
        selector = ""
        if paths.selector_is_string:
            selector = _get_path(obj, paths.selector) or ""
        else:
            sel = _get_path(obj, paths.selector)
            if isinstance(sel, dict):
                selector = label_selector_to_string(sel)
        md = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: md[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in md
            },
            "spec": {"replicas": spec_replicas},
            "status": {"replicas": status_replicas, "selector": selector},
        }

    def _scaled(self, kind: Kind, obj: dict[str, Any], scale: Any) -> dict[str, Any]:
        if not isinstance(scale, dict):
            raise status.bad_request("the body of the request must be a Scale object")
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise status.invalid(
                "Scale",
                "autoscaling",
                obj["metadata"]["name"],
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f"Invalid value: {replicas}: must be greater than or equal to 0",
                        "field": "spec.replicas",
                    }
                ],
            )
        _set_path(obj, self.crds.scale_paths(kind).spec_replicas, replicas)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            obj["metadata"]["resourceVersion"] = rv
        return obj

    async def _set_scale(
        self, info: RequestInfo, scale: dict[str, Any], opts: WriteOptions
    ) -> dict[str, Any]:
        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                raise status.not_found(info.kind.group_resource, info.name)
            return self._scaled(info.kind, current, scale)

        main = WriteOptions(dry_run=opts.dry_run, field_manager=opts.field_manager)
        result, _ = await self.objects.modify(info.kind, info.namespace, info.name, mutate, main)
        return result


def _forbidden_option(options: str, field: str, message: str) -> ApiError:
    """422 for a query option upstream's options validation forbids."""
    cause = {"reason": "FieldValueForbidden", "message": f"Forbidden: {message}", "field": field}
    return status.invalid(options, "meta.k8s.io", "", [cause])


def _validate_list_options(query: Any, watch: bool) -> None:
    """Upstream's ValidateListOptions on resourceVersionMatch and sendInitialEvents (422
    ListOptions)."""
    match = query.get("resourceVersionMatch", "")
    causes: list[dict[str, str]] = []

    def forbid(message: str, field: str = "resourceVersionMatch") -> None:
        causes.append(
            {"reason": "FieldValueForbidden", "message": f"Forbidden: {message}", "field": field}
        )

    if match:
        supported = ("NotOlderThan",) if watch else ("Exact", "NotOlderThan", "")
        if watch and "sendInitialEvents" not in query:
            forbid(
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
            )
        if not watch and not query.get("resourceVersion"):
            forbid("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if query.get("continue"):
            forbid("resourceVersionMatch is forbidden when continue is provided")
        if match not in supported:
            shown = ", ".join(f'"{v}"' for v in supported)
            causes.append(
                {
                    "reason": "FieldValueNotSupported",
                    "message": f'Unsupported value: "{match}": supported values: {shown}',
                    "field": "resourceVersionMatch",
                }
            )
        if not watch and match == "Exact" and query.get("resourceVersion") == "0":
            forbid('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
    if not watch and "sendInitialEvents" in query:
        forbid("sendInitialEvents is forbidden for list", "sendInitialEvents")
    if causes:
        raise status.invalid("ListOptions", "meta.k8s.io", "", causes)


def _patched_fields(ptype: str, patch: Any, patched: dict[str, Any]) -> dict[str, Any]:
    """The part of a patched object a merge or strategic patch can have changed: the
    top-level fields the patch names (sharing their values). Field validation looks
    only there; everything else is the stored object, validated when it was written.
    A JSON patch, or a directive at the top, may change anything: the whole object."""
    if ptype not in ("merge", "strategic") or not isinstance(patch, dict):
        return patched
    names = {"apiVersion", "kind"}
    for key in patch:
        if key.startswith(("$setElementOrder/", "$deleteFromPrimitiveList/")):
            names.add(key.split("/", 1)[1])
        elif key.startswith("$"):
            return patched
        else:
            names.add(key)
    return {k: v for k, v in patched.items() if k in names}


def _apply_patch(ptype: str, doc: dict[str, Any], patch: Any, kind: Kind, sub: str) -> Any:
    try:
        if ptype == "json":
            return json_patch(doc, patch)
        if ptype == "merge":
            return merge_patch(doc, patch)
        if not isinstance(patch, dict):
            raise PatchError("strategic merge patch must be a JSON object")
        type_name = "autoscaling/v1.Scale" if sub == "scale" else kind.type_name
        # The object store hands the patch a private copy of the object.
        return strategic_merge_patch(doc, patch, type_name, owned=True)
    except TooManyOperations as e:
        raise status.too_large(str(e)) from e
    except PatchError as e:
        if ptype == "json":
            raise ApiError(422, "Invalid", str(e)) from e
        raise status.bad_request(str(e)) from e


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def _success(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    md = obj["metadata"]
    details: dict[str, Any] = {"name": md.get("name", ""), "kind": kind.resource}
    if kind.group:
        details["group"] = kind.group
    if md.get("uid"):
        details["uid"] = md["uid"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


#: Upstream's warning recorder: past this many characters of warnings in all, no further
#: warning is added and each one is cut to :data:`_WARNING_ITEM_RUNES`.
_WARNING_TOTAL_RUNES = 4 * 1024
_WARNING_ITEM_RUNES = 256
#: Characters a header value cannot carry (Go's server writes line breaks as spaces).
_HEADER_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def _warning_headers(warnings: list[str]) -> dict[str, str] | None:
    """The Warning header of ``warnings`` (each once, control characters as spaces as Go's
    server writes line breaks, truncated as upstream's recorder truncates them)."""
    if not warnings:
        return None
    kept: list[str] = []
    total = 0
    for warning in dict.fromkeys(warnings):
        kept.append(warning)
        total += len(warning)
        if total > _WARNING_TOTAL_RUNES:
            kept = [w[:_WARNING_ITEM_RUNES] for w in kept]
            break
    escaped = [_HEADER_CONTROL.sub(" ", w.replace("\\", "\\\\").replace('"', '\\"')) for w in kept]
    return {"Warning": ", ".join(f'299 - "{w}"' for w in escaped)}


def _get_path(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
