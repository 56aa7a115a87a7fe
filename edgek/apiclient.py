"""A small async Kubernetes API client over aiohttp, configured from a kubeconfig (client
certificate or bearer token). Used by the CLI; the agent and sim will share it."""

from __future__ import annotations

import base64
import ssl
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from edgek.kubeconfig import load_kubeconfig


class ApiClientError(Exception):
    """A failed request; str(e) is the server's Status message (or the transport error)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def _current(cfg: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in cfg.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(section[:-1]) or {})
    raise ValueError(f"kubeconfig has no {section[:-1]} named {name!r}")


class ApiClient:
    """Requests against one API server."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext, token: str = "") -> None:
        self.server = server.rstrip("/")
        self.ssl_context = ssl_context
        self.token = token
        self.ca_pem = b""

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiClient:
        """The current context's cluster and user (ValueError on a file that does not fit)."""
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
        client = cls(cluster.get("server", ""), ctx, user.get("token", ""))
        client.ca_pem = ca_pem
        return client

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; the decoded answer, or ApiClientError."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl_context)) as s,
                s.request(method, self.server + path, json=body, headers=headers) as resp,
            ):
                data = await resp.json(content_type=None)
                if resp.status >= 400:
                    message = data.get("message") if isinstance(data, dict) else str(data)
                    raise ApiClientError(message or f"HTTP {resp.status}", resp.status)
                return data
        except aiohttp.ClientError as e:
            raise ApiClientError(f"cannot reach {self.server}: {e}") from e
