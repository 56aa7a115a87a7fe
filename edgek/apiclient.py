"""A small async Kubernetes API client over aiohttp, configured from a kubeconfig (client
certificate or bearer token). Used by the CLI and ``edgek sim``; the agent will share it.

Without :meth:`ApiClient.open` (or ``async with client``) every request uses its own
short-lived connection, which suits one-shot CLI calls. Once opened, requests share one
session whose connector holds at most ``connection_limit`` connections (watches included),
until :meth:`ApiClient.close`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiohttp

from edgek import fastjson
from edgek.kubeconfig import load_kubeconfig

log = logging.getLogger(__name__)

PatchType = Literal["merge", "strategic", "json"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
#: How long the server may keep one watch request open (it ends it, and we resume).
WATCH_TIMEOUT_SECONDS = 300
#: Longest pause between attempts to re-open a watch after a transport error.
WATCH_MAX_BACKOFF = 30.0


class ApiClientError(Exception):
    """A failed request; str(e) is the server's Status message (or the transport error).
    ``code`` is the HTTP status (0 for a transport error, 410 for an expired watch)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def _current(cfg: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in cfg.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(section[:-1]) or {})
    raise ValueError(f"kubeconfig has no {section[:-1]} named {name!r}")


def _error_message(data: Any, status: int) -> str:
    message = data.get("message") if isinstance(data, dict) else str(data or "")
    return str(message or f"HTTP {status}")


async def _response_error(resp: aiohttp.ClientResponse) -> ApiClientError:
    """The ApiClientError for a failed response (its Status message when it has one)."""
    text = (await resp.read()).decode("utf-8", "replace")
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = text.strip()
    return ApiClientError(_error_message(data, resp.status), resp.status)


class ApiClient:
    """Requests against one API server."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext,
        token: str = "",
        *,
        connection_limit: int = 100,
        timeout: float = 30.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.ssl_context = ssl_context
        self.token = token
        self.ca_pem = b""
        self.connection_limit = connection_limit
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path, **options: Any) -> ApiClient:
        """The current context's cluster and user (ValueError on a file that does not fit).
        ``options`` are passed to the constructor (``connection_limit``, ``timeout``)."""
        cfg = load_kubeconfig(path)
        ctx_name = cfg.get("current-context", "")
        context = _current(cfg, "contexts", ctx_name)
        cluster = _current(cfg, "clusters", context.get("cluster", ""))
        user = _current(cfg, "users", context.get("user", ""))
        ca_pem = base64.b64decode(cluster.get("certificate-authority-data", ""))
        ctx = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
        if user.get("client-certificate-data"):
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp, "c.crt"), Path(tmp, "c.key")
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                ctx.load_cert_chain(str(cert), str(key))
        client = cls(cluster.get("server", ""), ctx, user.get("token", ""), **options)
        client.ca_pem = ca_pem
        return client

    # -- session -------------------------------------------------------------------------

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context, limit=limit),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
        )

    def open(self) -> None:
        """Start the persistent session (call from a running event loop); idempotent."""
        if self._session is None or self._session.closed:
            self._session = self._new_session(self.connection_limit)

    async def close(self) -> None:
        """Close the persistent session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ApiClient:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        """One request with a JSON body (if any); the decoded JSON answer (``raw``: its
        bytes), or ApiClientError."""
        one_shot = self._session is None
        session = self._session or self._new_session(1)
        data = None if body is None else fastjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with asyncio.timeout(self.timeout):
                async with session.request(
                    method, self.server + path, data=data, params=params, headers=headers
                ) as resp:
                    if resp.status >= 400:
                        raise await _response_error(resp)
                    answer = await resp.read()
                    if raw:
                        return answer
                    return fastjson.loads(answer) if answer.strip() else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ApiClientError(f"cannot reach {self.server}: {e or 'timed out'}") from e
        finally:
            if one_shot:
                await session.close()

    async def patch(self, path: str, body: Any, *, patch_type: PatchType = "merge") -> Any:
        """PATCH ``path`` with a JSON merge, strategic merge or JSON patch."""
        return await self.request("PATCH", path, body, content_type=PATCH_CONTENT_TYPES[patch_type])

    async def watch(
        self,
        path: str,
        resource_version: str = "",
        *,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) of the collection at ``path``, from
        ``resource_version``, for as long as the caller iterates.

        Bookmarks are requested and consumed (they only advance the resume point). A watch
        the server ends, or that breaks on a transport error, is re-opened from the last
        seen resourceVersion (after a growing pause for errors). An expired resourceVersion
        raises ApiClientError with code 410 (the caller lists again); a refused watch raises
        ApiClientError with the HTTP status. Needs :meth:`open`.
        """
        if self._session is None:
            raise RuntimeError("ApiClient.watch needs an open client (call open())")
        rv = resource_version
        backoff = 0.0
        while True:
            query = {
                **(params or {}),
                "watch": "true",
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
            }
            if rv:
                query["resourceVersion"] = rv
            try:
                async with self._session.get(self.server + path, params=query) as resp:
                    if resp.status != 200:
                        raise await _response_error(resp)
                    backoff = 0.0
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = fastjson.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise ApiClientError(
                                _error_message(obj, int(obj.get("code") or 500)),
                                int(obj.get("code") or 500),
                            )
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                        if event.get("type") != "BOOKMARK":
                            yield event
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                backoff = min(max(backoff * 2, 0.5), WATCH_MAX_BACKOFF)
                log.debug("watch %s broke (%s); resuming in %.1fs", path, e, backoff)
                await asyncio.sleep(backoff)
