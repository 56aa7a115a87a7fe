"""The request-handling floor: the same aiohttp HTTPS stack (same TLS setup, client
certificates verified) answering a no-op handler that parses and echoes the JSON body.

Run: python tests/bench/floor_server.py <tls-dir> <port>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiohttp import web

from server.pki import ensure_pki


async def echo(request: web.Request) -> web.Response:
    body = json.loads(await request.read()) if request.can_read_body else {}
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


def main() -> None:
    tls_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    pki = ensure_pki(tls_dir, dns_names=[], ip_addresses=[])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        ssl_context=pki.server_ssl_context(),
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
