"""The aiohttp application: routing, authentication, errors as metav1.Status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from edgek import status
from edgek.status import ApiError
from server.apiserver import codec, discovery
from server.apiserver.openapi import OpenAPI
from server.apiserver.request import USER_KEY, parse_resource_path
from server.apiserver.resources import MAX_BODY_BYTES, ResourceAPI
from server.pki import peer_identity

log = logging.getLogger("edgek.apiserver")

#: Paths served to anonymous clients (health, and what a joining agent needs first).
ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/cacerts"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiServerState:
    """Everything request handlers need, shared by the routes."""

    def __init__(
        self,
        resources: ResourceAPI,
        openapi: OpenAPI,
        *,
        server_address: str,
        ca_bundle: bytes,
    ) -> None:
        self.resources = resources
        self.registry = resources.crds.registry
        self.openapi = openapi
        self.server_address = server_address
        self.ca_bundle = ca_bundle
        self.ready = False


STATE_KEY = web.AppKey("state", ApiServerState)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a metav1.Status."""
    try:
        return await handler(request)
    except ApiError as e:
        return codec.error_response(e)
    except web.HTTPRequestEntityTooLarge:
        return codec.error_response(
            status.too_large(f"Request entity too large: limit is {MAX_BODY_BYTES}")
        )
    except web.HTTPException:
        raise
    except Exception as e:
        log.exception("request failed: %s %s", request.method, request.path)
        return codec.error_response(status.internal(str(e)))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Client-certificate authentication; only system:masters is authorized for now."""
    if request.path in ANONYMOUS_PATHS:
        return await handler(request)
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    identity = peer_identity(ssl_object) if ssl_object is not None else None
    if identity is None:
        raise status.unauthorized()
    user, groups = identity
    if "system:masters" not in groups:
        raise status.forbidden(
            f'User "{user}" cannot {request.method.lower()} path "{request.path}"'
        )
    request[USER_KEY] = (user, groups)
    return await handler(request)


def _state(request: web.Request) -> ApiServerState:
    return request.app[STATE_KEY]


async def health(request: web.Request) -> web.Response:
    if request.path == "/readyz" and not _state(request).ready:
        return web.Response(status=500, text="[-]edgek not ready\nreadyz check failed\n")
    return web.Response(text="ok", content_type="text/plain")


async def cacerts(request: web.Request) -> web.Response:
    return web.Response(body=_state(request).ca_bundle, content_type="text/plain")


async def version(request: web.Request) -> web.Response:
    return codec.respond(discovery.version_info())


async def openapi_v3(request: web.Request) -> web.Response:
    state = _state(request)
    path = request.match_info.get("path", "")
    if not path:
        return codec.respond(state.openapi.index())
    doc = state.openapi.document(path)
    if doc is None:
        raise status.ApiError(404, "NotFound", "the server could not find the requested resource")
    return web.Response(body=doc, content_type="application/json")


async def openapi_v2(request: web.Request) -> web.Response:
    accept = request.headers.get("Accept", "")
    if "protobuf" in accept and "json" not in accept:
        raise status.ApiError(406, "NotAcceptable", "openapi v2 is served as JSON only")
    return web.Response(body=_state(request).openapi.v2(), content_type="application/json")


async def api_dispatch(request: web.Request) -> web.StreamResponse:
    """/api..., /apis...: discovery documents or resource requests."""
    state = _state(request)
    segments = [s for s in request.path.split("/") if s]
    head = segments[0]
    n = len(segments)
    if request.method == "GET":
        if head == "api" and n == 1:
            return codec.respond(discovery.api_versions(state.server_address))
        if head == "apis" and n == 1:
            return codec.respond(discovery.api_group_list(state.registry))
        if head == "apis" and n == 2:
            versions = state.registry.group_versions().get(segments[1])
            if not versions:
                raise _not_found()
            return codec.respond(discovery.api_group(segments[1], versions))
        gv_len = 2 if head == "api" else 3
        if n == gv_len:
            group = "" if head == "api" else segments[1]
            doc = discovery.api_resource_list(state.registry, group, segments[gv_len - 1])
            if doc is None:
                raise _not_found()
            return codec.respond(doc)
    if (head == "api" and n < 3) or (head == "apis" and n < 4):
        raise _not_found()
    info = parse_resource_path(request.method, segments, dict(request.query), state.registry)
    return await state.resources.handle(request, info)


def _not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def make_app(state: ApiServerState) -> web.Application:
    """The API server application (serve it over TLS only)."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES
    )
    app[STATE_KEY] = state
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, health)
    app.router.add_get("/cacerts", cacerts)
    app.router.add_get("/version", version)
    app.router.add_get("/openapi/v3", openapi_v3)
    app.router.add_get("/openapi/v3/{path:.+}", openapi_v3)
    app.router.add_get("/openapi/v2", openapi_v2)
    app.router.add_route("*", "/api", api_dispatch)
    app.router.add_route("*", "/api/{tail:.*}", api_dispatch)
    app.router.add_route("*", "/apis", api_dispatch)
    app.router.add_route("*", "/apis/{tail:.*}", api_dispatch)
    return app
