"""An in-memory ObjectSource for the env and volume tests."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.objectsource import ObjectSource, ObjectUnavailable


class FakeObjects(ObjectSource):
    """Objects from a dict; tokens are JWT-shaped (``iat`` = ``now``, ``exp``), numbered by
    their ``jti`` claim (see :func:`token_number`)."""

    def __init__(self, state_dir: Path, objects: list[dict[str, Any]] | None = None) -> None:
        super().__init__(lambda: None, state_dir)
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.tokens: list[tuple[str | None, int]] = []
        self.offline = False
        for obj in objects or []:
            self.put(obj)

    def put(self, obj: dict[str, Any]) -> None:
        """Add or replace an object (its kind decides the resource)."""
        resource = {"ConfigMap": "configmaps", "Secret": "secrets", "Service": "services"}.get(
            obj["kind"], obj["kind"].lower() + "s"
        )
        md = obj["metadata"]
        self.store[(resource, md.get("namespace", ""), md["name"])] = obj

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get((resource, namespace, name))

    async def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for (r, ns, _), o in self.store.items() if r == resource and ns == namespace]

    async def service_account_token(
        self, pod: dict[str, Any], audience: str | None, expiration_seconds: int
    ) -> tuple[str, datetime]:
        if self.offline:
            raise ObjectUnavailable("server unreachable")
        self.tokens.append((audience, expiration_seconds))
        expiry = self.now + timedelta(seconds=expiration_seconds)
        claims = {"iat": int(self.now.timestamp()), "exp": int(expiry.timestamp())}
        claims["jti"] = len(self.tokens)
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"e30.{body}.sig", expiry


def token_number(token: str) -> int:
    """Which of the fake's tokens ``token`` is (1, 2, ...)."""
    body = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["jti"])


def configmap(name: str, data: dict[str, str], namespace: str = "ns") -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def secret(name: str, data: dict[str, str], namespace: str = "ns") -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded}
