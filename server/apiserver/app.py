"""The aiohttp application: routing, authentication, errors as metav1.Status."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edgek import status
from edgek.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edgek.status import ApiError
from server.apiserver import codec, discovery
from server.apiserver.metrics import INFO_KEY, Metrics
from server.apiserver.nodeproxy import VERBS as STREAMING_VERBS
from server.apiserver.nodeproxy import NodeProxy
from server.apiserver.openapi import OpenAPI
from server.apiserver.request import USER_KEY, parse_resource_path
from server.apiserver.resources import MAX_BODY_BYTES, ResourceAPI
from server.apiserver.transport import http_version_middleware, read_body
from server.auth.attributes import Attributes
from server.auth.authn import Authenticator
from server.auth.authz import AuthorizerChain, forbid
from server.auth.impersonation import impersonated
from server.auth.rbac import forbidden_message
from server.auth.satoken import JWKS_PATH, OPENID_CONFIG_PATH
from server.storage.encryption import EncryptionError
from server.storage.reencrypt import SecretsEncryptionAdmin
from server.storage.requestinfo import RequestInfo

log = logging.getLogger("edgek.apiserver")

#: Served without authentication or authorization: what a joining agent needs first (k3s
#: serves it outside the API server). Health and /version are for everyone through RBAC
#: (``system:public-info-viewer``), as upstream.
UNAUTHENTICATED_PATHS = frozenset({"/cacerts"})
#: The client CA for agents (to check the API server's client certificate): nodes get it
#: without an RBAC rule, others through RBAC; its handler decides.
CLIENT_CA_PATH = "/v1-edgek/client-ca.crt"
NODES_GROUP = "system:nodes"

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
        authn: Authenticator,
        authz: AuthorizerChain,
        oidc: tuple[dict[str, Any], Callable[[], dict[str, Any]]] = ({}, dict),
        encryption: SecretsEncryptionAdmin | None = None,
        node_proxy: NodeProxy | None = None,
        client_ca: bytes = b"",
    ) -> None:
        self.encryption = encryption
        #: proxies pods/log|exec|attach|portforward to agents (None: not served)
        self.node_proxy = node_proxy
        #: the client CA's PEM, for agents to check the API server's client certificate
        self.client_ca = client_ca
        self.authn = authn
        self.authz = authz
        #: openid-configuration of the service-account token issuer, and what makes its JWKS
        #: (on request: publishing the key loads it, and cryptography with it)
        self.oidc = oidc
        self.resources = resources
        self.registry = resources.crds.registry
        self.openapi = openapi
        self.server_address = server_address
        self.ca_bundle = ca_bundle
        self.ready = False
        self.metrics = Metrics()


STATE_KEY = web.AppKey("state", ApiServerState)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by its labels and status code, and time it."""
    started = time.perf_counter()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as e:
        code = e.status
        raise
    finally:
        metrics = _state(request).metrics
        metrics.record(metrics.labels(request), code, time.perf_counter() - started)


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
    """Authenticate every request (``system:anonymous`` without credentials, 401 for
    credentials that do not check out), apply impersonation, authorize non-resource paths
    and read their body within its timeout; /api and /apis do both after routing."""
    if request.path in UNAUTHENTICATED_PATHS:
        return await handler(request)
    state = _state(request)
    user = state.authn.authenticate(request)
    if user is None:
        raise status.unauthorized()
    user = impersonated(user, request.headers, lambda attrs: authorize(state, attrs))
    request[USER_KEY] = user
    if not _is_api_path(request.path) and request.path != CLIENT_CA_PATH:
        authorize(state, Attributes(user, request.method.lower(), False, path=request.path))
        return await read_body(request) or await handler(request)
    return await handler(request)


def _is_api_path(path: str) -> bool:
    return path in ("/api", "/apis") or path.startswith(("/api/", "/apis/"))


def authorize(state: ApiServerState, attrs: Attributes) -> None:
    """Raise 403 Forbidden unless the authorizer chain allows ``attrs``."""
    decision = state.authz.authorize(attrs)
    if not decision.allowed:
        raise forbid(attrs, decision, forbidden_message(attrs))


def resource_attributes(request: web.Request, info: RequestInfo) -> Attributes:
    """The authorizer's view of a resource request (a list or watch pinned to one name by
    ``fieldSelector=metadata.name=x`` is about that object, as upstream treats it)."""
    name = info.name
    if not name and info.verb in ("list", "watch"):
        selector = request.query.get("fieldSelector", "")
        if selector.startswith("metadata.name=") and "," not in selector:
            name = selector.split("=", 1)[1]
    return Attributes(
        request[USER_KEY],
        info.verb,
        True,
        api_group=info.kind.group,
        api_version=info.kind.version,
        resource=info.kind.resource,
        subresource=info.subresource,
        namespace=info.namespace,
        name=name,
    )


def _state(request: web.Request) -> ApiServerState:
    return request.app[STATE_KEY]


async def health(request: web.Request) -> web.Response:
    if request.path == "/readyz" and not _state(request).ready:
        return web.Response(status=500, text="[-]edgek not ready\nreadyz check failed\n")
    return web.Response(text="ok", content_type="text/plain")


async def cacerts(request: web.Request) -> web.Response:
    return web.Response(body=_state(request).ca_bundle, content_type="text/plain")


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text format (authorized as a non-resource path)."""
    text = _state(request).metrics.exposition()
    return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def version(request: web.Request) -> web.Response:
    return codec.respond(discovery.version_info())


async def client_ca(request: web.Request) -> web.Response:
    """GET the client CA (agents verify the API server's client certificate with it): for
    nodes, and for whoever RBAC lets ``get`` the path."""
    state = _state(request)
    user = request[USER_KEY]
    if NODES_GROUP not in user.groups:
        authorize(state, Attributes(user, "get", False, path=request.path))
    if not state.client_ca:
        raise _not_found()
    return web.Response(body=state.client_ca, content_type="text/plain")


ENCRYPT_STATUS_PATH = "/v1-edgek/encrypt/status"
ENCRYPT_ROTATE_PATH = "/v1-edgek/encrypt/rotate-keys"


async def encrypt_status(request: web.Request) -> web.Response:
    """GET the Secret encryption state (``edgek secrets-encrypt status``)."""
    state = _state(request)
    authorize(state, Attributes(request[USER_KEY], "get", False, path=request.path))
    if state.encryption is None:
        raise _not_found()
    return codec.respond(state.encryption.status())


async def encrypt_rotate(request: web.Request) -> web.Response:
    """POST: rotate the Secret encryption key and re-encrypt (``secrets-encrypt rotate-keys``)."""
    state = _state(request)
    authorize(state, Attributes(request[USER_KEY], "create", False, path=request.path))
    if state.encryption is None:
        raise _not_found()
    try:
        return codec.respond(await state.encryption.rotate_keys())
    except EncryptionError as e:
        raise status.bad_request(str(e)) from e


async def openapi_v3(request: web.Request) -> web.Response:
    state = _state(request)
    path = request.match_info.get("path", "")
    if not path:
        return codec.respond(state.openapi.index())
    doc = state.openapi.document(path)
    if doc is None:
        raise status.ApiError(404, "NotFound", "the server could not find the requested resource")
    return web.Response(body=doc, content_type="application/json")


async def openid_configuration(request: web.Request) -> web.Response:
    return codec.respond(_state(request).oidc[0])


async def openid_jwks(request: web.Request) -> web.Response:
    return codec.respond(_state(request).oidc[1]())


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
    if request.method == "GET" and n <= (2 if head == "api" else 3):
        authorize(state, Attributes(request[USER_KEY], "get", False, path=request.path))
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
    request[INFO_KEY] = info
    authorize(state, resource_attributes(request, info))
    return await _serve_resource(request, state, info)


async def _serve_resource(
    request: web.Request, state: ApiServerState, info: RequestInfo
) -> web.StreamResponse:
    """Serve an authorized resource request; a watch is counted in
    apiserver_registered_watchers while it lasts."""
    if info.verb != "watch":
        return await read_body(request) or await state.resources.handle(request, info)
    state.metrics.watching(info, 1)
    try:
        return await read_body(request) or await state.resources.handle(request, info)
    finally:
        state.metrics.watching(info, -1)


async def stream_dispatch(request: web.Request) -> web.StreamResponse:
    """``/api/v1/namespaces/<ns>/pods/<name>/(log|exec|attach|portforward)``: authorized
    here, then proxied to the pod's agent."""
    state = _state(request)
    if state.node_proxy is None:
        raise _not_found()
    info = request.match_info
    namespace, name, sub = info["namespace"], info["name"], info["sub"]
    attrs = Attributes(
        request[USER_KEY],
        STREAMING_VERBS[sub],
        True,
        api_version="v1",
        resource="pods",
        subresource=sub,
        namespace=namespace,
        name=name,
    )
    authorize(state, attrs)
    return await state.node_proxy.handle(request, namespace, name, sub)


def _not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


async def _close_node_proxy(app: web.Application) -> None:
    proxy = app[STATE_KEY].node_proxy
    if proxy is not None:
        await proxy.close()


def make_app(state: ApiServerState) -> web.Application:
    """The API server application (serve it over TLS only)."""
    app = web.Application(
        middlewares=[
            http_version_middleware,
            metrics_middleware,
            error_middleware,
            auth_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[STATE_KEY] = state
    app.on_cleanup.append(_close_node_proxy)
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, health)
    app.router.add_get("/cacerts", cacerts)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi/v3", openapi_v3)
    app.router.add_get("/openapi/v3/{path:.+}", openapi_v3)
    app.router.add_get("/openapi/v2", openapi_v2)
    app.router.add_get(OPENID_CONFIG_PATH, openid_configuration)
    app.router.add_get(JWKS_PATH, openid_jwks)
    app.router.add_get(CLIENT_CA_PATH, client_ca)
    app.router.add_get(ENCRYPT_STATUS_PATH, encrypt_status)
    app.router.add_post(ENCRYPT_ROTATE_PATH, encrypt_rotate)
    streaming = "|".join(STREAMING_VERBS)
    app.router.add_route(
        "*", f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/{{sub:{streaming}}}", stream_dispatch
    )
    app.router.add_route("*", "/api", api_dispatch)
    app.router.add_route("*", "/api/{tail:.*}", api_dispatch)
    app.router.add_route("*", "/apis", api_dispatch)
    app.router.add_route("*", "/apis/{tail:.*}", api_dispatch)
    return app
