"""Request routing facts: which kind, namespace, name, subresource and verb a URL means."""

from __future__ import annotations

from aiohttp import web

from edgek import status
from edgek.kinds import Kind, Registry
from server.storage.requestinfo import RequestInfo, UserInfo

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
#: Subresources that are only ever created (POST to a named object).
_CREATE_SUBRESOURCES = frozenset({"token", "binding", "eviction"})

#: The authenticated requester of a request.
USER_KEY = web.RequestKey("user", UserInfo)


def _truthy(value: str | None) -> bool:
    return value in ("true", "1", "True")


def parse_resource_path(
    method: str, segments: list[str], query: dict[str, str], registry: Registry
) -> RequestInfo:
    """Parse ``/api/v1/...`` or ``/apis/<group>/<version>/...`` (already split) into a
    :class:`RequestInfo`; unknown paths raise 404 NotFound."""
    if segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    else:
        group, version, rest = segments[1], segments[2], segments[3:]
    watch = _truthy(query.get("watch"))
    if rest and rest[0] == "watch":
        watch, rest = True, rest[1:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise _not_found()
    kind = registry.by_resource(group, version, rest[0])
    if kind is None:
        raise _not_found()
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    _check_target(method, kind, namespace, name, sub)
    if sub in _CREATE_SUBRESOURCES:
        if method != "POST":
            raise status.method_not_allowed(f"{method} is not supported on {kind.resource}/{sub}")
        return RequestInfo("create", kind, namespace, name, sub)
    verb = _verb(method, bool(name), watch)
    return RequestInfo(verb, kind, namespace, name, sub)


def _check_target(method: str, kind: Kind, namespace: str, name: str, sub: str) -> None:
    """Raise 404 or 405 when ``method`` cannot address that kind, namespace, name and
    subresource."""
    if namespace and not kind.namespaced:
        raise _not_found()
    if kind.namespaced and not namespace:
        # across all namespaces a namespaced kind can only be listed or watched
        if name:
            raise _not_found()
        if method not in ("GET", "POST"):
            raise status.method_not_allowed(
                f"{method} is not supported on {kind.resource} across all namespaces"
            )
    if sub and sub not in kind.subresources:
        raise _not_found()
    if name == "" and method in ("PUT", "PATCH"):
        raise status.method_not_allowed(f"{method} is not supported on collections")


def _verb(method: str, has_name: bool, watch: bool) -> str:
    if method == "GET":
        if watch:
            return "watch"
        return "get" if has_name else "list"
    if method == "POST":
        if has_name:
            raise status.method_not_allowed("POST is not supported on a named resource")
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    raise status.method_not_allowed(f"the server does not allow this method: {method}")


def _not_found() -> status.ApiError:
    return status.ApiError(404, "NotFound", "the server could not find the requested resource")
