"""ObjectSource without a server: reads cached for a resync period, answers remembered while
the server is unreachable (without asking again on every read), changes published."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from agent.objectsource import ObjectSource, ObjectUnavailable
from edgek.apiclient import ApiClient, ApiClientError


class FakeClient(ApiClient):
    """Answers GETs from ``objects`` by path; ``down`` makes every request a transport
    error; ``requests`` counts what was asked."""

    def __init__(self) -> None:
        super().__init__("https://127.0.0.1:1", ssl.create_default_context())
        self.objects: dict[str, dict[str, Any]] = {}
        self.down = False
        self.requests: list[str] = []

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.requests.append(path)
        if self.down:
            raise ApiClientError("cannot reach https://127.0.0.1:1: refused")
        if path not in self.objects:
            raise ApiClientError("not found", 404)
        return self.objects[path]


PATH = "/api/v1/namespaces/ns/configmaps/cfg"


def cm(version: str) -> dict[str, Any]:
    return {"metadata": {"name": "cfg", "resourceVersion": version}, "data": {"v": version}}


async def test_cache_offline_answers_and_changes(tmp_path: Path) -> None:
    client = FakeClient()
    client.objects[PATH] = cm("1")
    source = ObjectSource(lambda: client, tmp_path, resync_seconds=0.05)
    assert (await source.get("configmaps", "ns", "cfg") or {})["data"] == {"v": "1"}
    assert await source.get("configmaps", "ns", "cfg") is not None
    assert client.requests == [PATH]  # the second read came from memory

    changes = source.changed()
    client.objects[PATH] = cm("2")
    await source.resync()
    assert await asyncio.wait_for(anext(changes), 1) == ("configmaps", "ns", "cfg")
    del client.objects[PATH]
    await source.resync()
    assert await asyncio.wait_for(anext(changes), 1) == ("configmaps", "ns", "cfg")
    assert await source.get("configmaps", "ns", "cfg") is None
    await changes.aclose()

    client.objects[PATH] = cm("3")
    await asyncio.sleep(0.06)
    assert await source.get("configmaps", "ns", "cfg") is not None
    client.down = True
    await asyncio.sleep(0.06)
    asked = len(client.requests)
    assert (await source.get("configmaps", "ns", "cfg") or {})["data"] == {"v": "3"}
    assert (await source.get("configmaps", "ns", "cfg") or {})["data"] == {"v": "3"}
    assert len(client.requests) == asked + 1  # one failed attempt per resync period

    restarted = ObjectSource(lambda: client, tmp_path)
    assert (await restarted.get("configmaps", "ns", "cfg") or {})["data"] == {"v": "3"}
    with pytest.raises(ObjectUnavailable, match="server unreachable"):
        await restarted.get("configmaps", "ns", "other")
    with pytest.raises(ValueError, match="unsupported resource"):
        await restarted.get("pods", "ns", "p")
