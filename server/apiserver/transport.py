"""HTTP transport limits: header size and read timeouts, request-body timeout, versions.

The values are the ones kube-apiserver's Go ``http.Server`` runs with (``MaxHeaderBytes``
1 MiB, ``ReadHeaderTimeout`` 32 s, ``IdleTimeout`` 90 s) and its request timeout (60 s)
for reading a body; docs/LIMITS.md lists them. aiohttp has no total header limit and no
header read timeout, so :class:`ApiProtocol` adds both on top of its request handler
(written against aiohttp 3.14's ``RequestHandler``: it reads the handler's ``_waiter`` and
``_messages`` to know whether a request head is being read).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_writer import HttpVersion10, HttpVersion11

from edgek.status import ApiError
from server.apiserver import codec

log = logging.getLogger("edgek.apiserver")

#: Request line plus headers, as Go's ``http.Server.MaxHeaderBytes`` set by the apiserver.
MAX_HEADER_BYTES = 1 << 20
#: From the first byte of a request head (or a new connection) to its end.
HEADER_TIMEOUT = 32.0
#: A kept-alive connection waiting for its next request.
IDLE_TIMEOUT = 90.0
#: Reading a request body (upstream's default request timeout).
BODY_TIMEOUT = 60.0

_TOO_LARGE = b"431 Request Header Fields Too Large"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _go_error(status_text: bytes) -> bytes:
    """The bare response Go's server writes when a request head cannot be served."""
    return (
        b"HTTP/1.1 " + status_text + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\n" + status_text
    )


class ApiProtocol(web.RequestHandler):
    """aiohttp's request handler with a header read timeout and a total header size cap.

    A head still incomplete :data:`HEADER_TIMEOUT` after its first byte (or after the
    connection opened) closes the connection, as Go's server does; more than
    :data:`MAX_HEADER_BYTES` before the head ends answers 431 and closes (the cap is checked
    per read, so it may be passed by one read's worth before the answer).
    """

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(
            manager,
            keepalive_timeout=IDLE_TIMEOUT,
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
            max_headers=MAX_HEADER_BYTES,
            **kwargs,
        )
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def _reading_head(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(HEADER_TIMEOUT, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_bytes = 0

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._reading_head():
            log.debug("closing a connection whose request head took over %ss", HEADER_TIMEOUT)
            self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the connection's first header timeout."""
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Drop the header timer with the connection."""
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse as aiohttp does, timing and counting the bytes of a request head."""
        reading_head = self._reading_head()
        if reading_head:
            self._start_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)
        if self._messages:
            self._stop_head_timer()
        elif reading_head and self._head_bytes > MAX_HEADER_BYTES and self.transport:
            self.transport.write(_go_error(_TOO_LARGE))
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request head that does not parse is the client's mistake: answered (431 for a
        line over the header limit, as Go's server) and logged at debug level, without the
        traceback aiohttp logs for it."""
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        log.debug("malformed request head: %s", exc.message)
        if isinstance(exc, LineTooLong):
            status, message = 431, _TOO_LARGE.decode()
        response = web.Response(status=status, text=message)
        response.force_close()
        return response


async def listen(
    runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext
) -> asyncio.Server:
    """Serve ``runner``'s application on ``host:port`` over TLS with these limits (close the
    returned server before cleaning the runner up)."""
    manager = runner.server
    if manager is None:
        raise RuntimeError("the runner is not set up")
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: ApiProtocol(manager, loop=loop, access_log=None),
        host,
        port,
        ssl=ssl_context,
        reuse_address=True,
        ssl_handshake_timeout=HEADER_TIMEOUT,
    )


@web.middleware
async def http_version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve HTTP/1.0 and 1.1 only: an HTTP/0.9 request line is malformed (400) and other
    versions are not supported (505), the answers of Go's server."""
    if request.version in (HttpVersion10, HttpVersion11):
        return await handler(request)
    if request.version < HttpVersion10:
        response = web.Response(status=400, text="400 Bad Request")
    else:
        response = web.Response(
            status=505, text="505 HTTP Version Not Supported: unsupported protocol version"
        )
    response.force_close()
    return response


async def read_body(request: web.Request) -> web.StreamResponse | None:
    """Read the request body within :data:`BODY_TIMEOUT` (handlers then get it from aiohttp's
    cache); past it, the 504 Status upstream's timeout filter answers, closing the
    connection."""
    if not request.body_exists:
        return None
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            await request.read()
    except TimeoutError:
        response = codec.error_response(
            ApiError(
                504,
                "Timeout",
                "Timeout: request did not complete within requested timeout - "
                "context deadline exceeded",
            )
        )
        response.force_close()
        return response
    return None
