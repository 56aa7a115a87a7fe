"""The agent's ObjectSource against a real server with a node's own credentials: it reads
what the node's pods reference (and nothing else), lists services, follows a ConfigMap
update, gets a bound service-account token the API server accepts, and keeps answering
from its 0600 files after the server stops, also in a fresh process state."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import bootstrap
from agent.objectsource import ObjectSource, ObjectUnavailable
from agent.podconfig.volumes import VolumeManager
from edgek.apiclient import ApiClient, ApiClientError
from tests.helpers import ServerProcess, start_server

NS = "objsrc"
NODE = "edge-objects"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of this test's own: the test stops it."""
    srv = start_server(tmp_path / "server")
    yield srv
    srv.stop()


async def eventually(fn: Any, what: str, seconds: float = 20) -> Any:
    """Await ``fn()`` until it answers something truthy without raising."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            if result := await fn():
                return result
        except ApiClientError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def create_objects(admin: ApiClient) -> dict[str, Any]:
    """The namespace, the objects a pod on NODE references, one it does not, and the pod."""
    await admin.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    base = f"/api/v1/namespaces/{NS}"
    await eventually(
        lambda: admin.request("GET", f"{base}/serviceaccounts/default"), "the default account"
    )
    for name in ("cfg", "unrelated"):
        await admin.request(
            "POST", f"{base}/configmaps", {"metadata": {"name": name}, "data": {"k": "v1"}}
        )
    await admin.request(
        "POST", f"{base}/secrets", {"metadata": {"name": "creds"}, "data": {"user": "YWRtaW4="}}
    )
    await admin.request(
        "POST",
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": "pv-objsrc"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/tmp/objsrc"},
                "storageClassName": "",
                "claimRef": {"namespace": NS, "name": "data"},
            },
        },
    )
    await admin.request(
        "POST",
        f"{base}/persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": "pv-objsrc",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    pod = {
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": NODE,
            "serviceAccountName": "default",
            "containers": [{"name": "app", "image": "busybox"}],
            "volumes": [
                {"name": "c", "configMap": {"name": "cfg"}},
                {"name": "s", "secret": {"secretName": "creds"}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
            ],
        },
    }
    return dict(await admin.request("POST", f"{base}/pods", pod))


async def whoami(server: ServerProcess, ca_pem: bytes, token: str) -> str:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    client = ApiClient(server.url, ctx, token)
    review = await client.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


async def check_api_access_volume(
    server: ServerProcess, ca_pem: bytes, source: ObjectSource, pod: dict[str, Any], pods_dir: Path
) -> None:
    """The admission's kube-api-access volume, made from what the node may read: the
    namespace, the cluster CA and a token that authenticates as the pod's service account."""
    [access] = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    volumes = VolumeManager(pods_dir, source, NODE)
    files = pods_dir / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~projected"
    files = files / access["name"]
    try:
        await volumes.setup({**pod, "spec": {**pod["spec"], "volumes": [access]}})
        assert (files / "namespace").read_text() == NS
        assert (files / "ca.crt").read_bytes().strip() == ca_pem.strip()
        assert await whoami(server, ca_pem, (files / "token").read_text()) == (
            f"system:serviceaccount:{NS}:default"
        )
    finally:
        await volumes.teardown(pod["metadata"]["uid"])


async def check_remembered(node: ApiClient, state: Path) -> None:
    """A fresh ObjectSource over the same state directory, the server gone, answers what was
    read before from its files, and only that."""
    fresh = ObjectSource(lambda: node, state)
    remembered = await fresh.get("configmaps", NS, "cfg")
    assert remembered is not None and remembered["data"] == {"k": "v2"}
    assert await fresh.get("persistentvolumes", "", "pv-objsrc") is not None
    assert [s["metadata"]["name"] for s in await fresh.list("services", "default")] == [
        "kubernetes"
    ]
    with pytest.raises(ObjectUnavailable, match="unreachable"):
        await fresh.get("secrets", NS, "never-read")


async def test_object_source_with_node_credentials_and_offline(
    own_server: ServerProcess, tmp_path: Path
) -> None:
    admin = ApiClient.from_kubeconfig(own_server.kubeconfig)
    pod = await create_objects(admin)
    token = (own_server.data_dir / "server" / "node-token").read_text().strip()
    agent_dir = tmp_path / "agent"
    creds = await bootstrap.join(
        own_server.url, token, NODE, agent_dir, node_ips=["127.0.0.1"], now=datetime.now(UTC)
    )
    async with ApiClient.from_kubeconfig(creds.kubeconfig) as node:
        state = agent_dir / "state"
        source = ObjectSource(lambda: node, state, resync_seconds=0.3)
        cm = await source.get("configmaps", NS, "cfg")
        assert cm is not None and cm["data"] == {"k": "v1"}
        secret = await source.get("secrets", NS, "creds")
        assert secret is not None and secret["data"]["user"] == "YWRtaW4="
        claim = await source.get("persistentvolumeclaims", NS, "data")
        assert claim is not None and claim["spec"]["volumeName"] == "pv-objsrc"
        pv = await source.get("persistentvolumes", "", "pv-objsrc")
        assert pv is not None and pv["spec"]["hostPath"]["path"] == "/tmp/objsrc"
        with pytest.raises(ObjectUnavailable, match=r"forbidden|no relationship"):
            await source.get("configmaps", NS, "unrelated")
        services = await source.list("services", "default")
        assert [s["metadata"]["name"] for s in services] == ["kubernetes"]
        files = list(state.rglob("*.json"))
        assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)

        sa_token, expiry = await source.service_account_token(pod, None, 3600)
        assert expiry > datetime.now(UTC)
        assert await whoami(own_server, creds.ca_pem, sa_token) == (
            f"system:serviceaccount:{NS}:default"
        )

        await check_api_access_volume(own_server, creds.ca_pem, source, pod, tmp_path / "pods")

        resync = asyncio.create_task(source.run())
        changes = source.changed()
        try:
            await admin.request(
                "PUT",
                f"/api/v1/namespaces/{NS}/configmaps/cfg",
                {**cm, "data": {"k": "v2"}},
            )
            key = await asyncio.wait_for(anext(changes), 10)
            assert key == ("configmaps", NS, "cfg")
            updated = await source.get("configmaps", NS, "cfg")
            assert updated is not None and updated["data"] == {"k": "v2"}

            own_server.stop()
            await asyncio.sleep(0.5)  # past the resync period: the next read asks the server
            offline = await source.get("configmaps", NS, "cfg")
            assert offline is not None and offline["data"] == {"k": "v2"}
        finally:
            await changes.aclose()
            resync.cancel()

        await check_remembered(node, state)
