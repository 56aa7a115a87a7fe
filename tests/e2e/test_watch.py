"""Watch protocol details against a real server run in-process (so the test can shorten
the bookmark interval and trigger compaction)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.config import ServerConfig
from server.main import Server
from tests.helpers import free_port, ssl_context


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(self.base + path, json=body) as r:
            assert r.status == 201, await r.text()
            return await r.json()

    async def events(
        self, path: str, count: int, wait: float = 10, accept: str | None = None
    ) -> list[dict[str, Any]]:
        """The first ``count`` watch events (or all until the stream ends)."""
        out: list[dict[str, Any]] = []
        headers = {"Accept": accept} if accept else None
        async with self.session.get(self.base + path, headers=headers) as r:
            assert r.status == 200, await r.text()
            async with asyncio.timeout(wait):
                async for line in r.content:
                    out.append(json.loads(line))
                    if len(out) == count:
                        break
        return out


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Client, Server]]:
    cfg = ServerConfig(
        data_dir=tmp_path / "data",
        bind_address="127.0.0.1",
        https_listen_port=free_port(),
        write_kubeconfig=tmp_path / "kubeconfig.yaml",
        watch_bookmark_interval=0.3,
        datastore_compact_interval=3600,
    )
    server = Server(cfg)
    await server.start()
    ctx = ssl_context(cfg.write_kubeconfig, tmp_path)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        # let the service-account controller finish with "default" first: its writes
        # would otherwise show up in the watches below
        async with asyncio.timeout(10):
            while True:
                async with session.get(cfg.local_url + CMS + "/kube-root-ca.crt") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
        yield Client(session, cfg.local_url), server
    await server.stop()


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


CMS = "/api/v1/namespaces/default/configmaps"


async def test_send_initial_events_then_bookmark(api: tuple[Client, Server]) -> None:
    client, _ = api
    for i in range(3):
        await client.post(CMS, cm(f"c{i}", app="initial"))
    events = await client.events(
        CMS + "?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&allowWatchBookmarks=true&labelSelector=app%3Dinitial",
        4,
    )
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"]
    assert sorted(e["object"]["metadata"]["name"] for e in events[:3]) == ["c0", "c1", "c2"]
    mark = events[3]["object"]
    assert mark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(mark["metadata"]["resourceVersion"]) >= max(
        int(e["object"]["metadata"]["resourceVersion"]) for e in events[:3]
    )


async def test_send_initial_events_without_bookmarks_is_rejected(
    api: tuple[Client, Server],
) -> None:
    client, _ = api
    async with client.session.get(client.base + CMS + "?watch=1&sendInitialEvents=true") as r:
        assert r.status == 422
        body = await r.json()
    assert body["kind"] == "Status" and body["reason"] == "Invalid"


async def test_periodic_bookmarks(api: tuple[Client, Server]) -> None:
    client, _ = api
    created = await client.post(CMS, cm("b"))
    rv = created["metadata"]["resourceVersion"]
    events = await client.events(CMS + f"?watch=1&resourceVersion={rv}&allowWatchBookmarks=true", 2)
    assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]
    assert events[0]["object"]["kind"] == "ConfigMap"
    assert events[0]["object"]["metadata"]["resourceVersion"] == rv


async def test_no_bookmarks_unless_asked(api: tuple[Client, Server]) -> None:
    client, _ = api
    created = await client.post(CMS, cm("quiet"))
    rv = created["metadata"]["resourceVersion"]
    events = await client.events(CMS + f"?watch=1&resourceVersion={rv}&timeoutSeconds=1", 10)
    assert events == []


async def test_timeout_seconds_ends_the_stream(api: tuple[Client, Server]) -> None:
    client, _ = api
    loop = asyncio.get_running_loop()
    start = loop.time()
    events = await client.events(CMS + "?watch=1&timeoutSeconds=1", 100, wait=10)
    assert loop.time() - start < 5
    assert all(e["type"] == "ADDED" for e in events)


async def test_compacted_revision_gives_410_expired(api: tuple[Client, Server]) -> None:
    client, server = api
    first = await client.post(CMS, cm("old"))
    for i in range(5):
        await client.post(CMS, cm(f"n{i}"))
    assert server.store is not None
    await server.store.compact(server.store.revision)
    old_rv = first["metadata"]["resourceVersion"]
    events = await client.events(CMS + f"?watch=1&resourceVersion={old_rv}", 1)
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    async with client.session.get(
        client.base + CMS + f"?resourceVersion={old_rv}&resourceVersionMatch=Exact"
    ) as r:
        assert r.status == 410
        assert (await r.json())["reason"] == "Expired"


async def test_selector_transitions(api: tuple[Client, Server]) -> None:
    client, _ = api
    created = await client.post(CMS, cm("mover", tier="a"))
    rv = created["metadata"]["resourceVersion"]
    watch = asyncio.create_task(
        client.events(CMS + f"?watch=1&resourceVersion={rv}&labelSelector=tier%3Db", 2)
    )
    await asyncio.sleep(0.3)
    patch = {"metadata": {"labels": {"tier": "b"}}}
    for tier in ("b", "a"):
        patch["metadata"]["labels"]["tier"] = tier
        async with client.session.patch(
            client.base + CMS + "/mover",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as r:
            assert r.status == 200
    events = await watch
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PARTIAL = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json"


async def test_watches_of_the_same_events_get_independent_results(
    api: tuple[Client, Server],
) -> None:
    """Watches with different selectors and formats share the decoded events (one live, one
    reading them back from the log) and each still gets its own, correct stream."""
    client, _ = api
    first = await client.post(CMS, cm("anchor"))
    rv = first["metadata"]["resourceVersion"]
    since = CMS + f"?watch=1&resourceVersion={rv}"
    watches = {
        "all": (since, 3, None),
        "a": (since + "&labelSelector=tier%3Da", 2, None),
        "b": (since + "&labelSelector=tier%3Db", 2, None),
        "name": (since + "&fieldSelector=metadata.name%3Dmover", 3, None),
        "table": (since + "&includeObject=Object", 3, TABLE),
        "partial": (since, 3, PARTIAL),
    }
    tasks = {
        name: asyncio.create_task(client.events(path, n, accept=accept))
        for name, (path, n, accept) in watches.items()
    }
    await asyncio.sleep(0.3)
    created = await client.post(CMS, cm("mover", tier="a"))
    async with client.session.patch(
        client.base + CMS + "/mover",
        json={"metadata": {"labels": {"tier": "b"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    ) as r:
        assert r.status == 200
        moved = await r.json()
    async with client.session.delete(client.base + CMS + "/mover") as r:
        assert r.status == 200
    got = {name: await task for name, task in tasks.items()}
    got["late"] = await client.events(since, 3)  # from the datastore log

    def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        out = []
        for e in events:
            md = e["object"]["metadata"]
            out.append((e["type"], md.get("labels", {}).get("tier", ""), md["resourceVersion"]))
        return out

    c_rv, m_rv = created["metadata"]["resourceVersion"], moved["metadata"]["resourceVersion"]
    d_rv = got["all"][2]["object"]["metadata"]["resourceVersion"]
    assert int(d_rv) > int(m_rv) > int(c_rv)
    everything = [("ADDED", "a", c_rv), ("MODIFIED", "b", m_rv), ("DELETED", "b", d_rv)]
    assert summary(got["all"]) == everything
    assert summary(got["name"]) == everything
    assert summary(got["partial"]) == everything
    assert got["late"] == got["all"]
    # tier=a sees the object leave as it last matched, at the revision of the change
    assert summary(got["a"]) == [("ADDED", "a", c_rv), ("DELETED", "a", m_rv)]
    assert summary(got["b"]) == [("ADDED", "b", m_rv), ("DELETED", "b", d_rv)]
    assert got["all"][0]["object"] == created
    assert got["all"][1]["object"] == moved
    assert {e["object"]["kind"] for e in got["all"] + got["a"] + got["b"]} == {"ConfigMap"}
    for e in got["partial"]:
        assert set(e["object"]) == {"kind", "apiVersion", "metadata"}
        assert e["object"]["kind"] == "PartialObjectMetadata"
    tables = [e["object"] for e in got["table"]]
    assert [t["kind"] for t in tables] == ["Table"] * 3
    assert tables[0]["columnDefinitions"] and not tables[1]["columnDefinitions"]
    rows = [t["rows"][0]["object"] for t in tables]
    assert [r["metadata"]["labels"]["tier"] for r in rows] == ["a", "b", "b"]
    assert rows[:2] == [created, moved]
