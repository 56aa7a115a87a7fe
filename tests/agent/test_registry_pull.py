"""Image pulls from a real private registry: Debian's ``docker-registry`` with htpasswd auth,
listening on 127.0.0.1 inside the test's network namespace (nothing leaves the machine). The
offline busybox image is pushed to it with the agent's Podman; then a pull without
credentials fails with ErrImagePull, a pull secret makes it work, and a registries.yaml
mirror (also with a rewrite of Docker Hub names) with auth works without any secret, and a
TLS mirror is verified with the registries.yaml ``ca_file``."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.images import images_dir, import_directory
from agent.podman.client import PodmanClient
from agent.podman.service import PodmanService
from agent.pull import ImagePuller, ImagePullError
from agent.registries import Registries, parse
from edgek import certs
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman

_tools = [t for t in ("docker-registry", "htpasswd") if not shutil.which(t)]
pytestmark = [
    pytest.mark.e2e,
    needs_podman,
    pytest.mark.skipif(bool(_tools), reason=f"needs {', '.join(_tools)} (apt)"),
    pytest.mark.asyncio(loop_scope="module"),
]
REGISTRY = "127.0.0.1:5000"
TLS_REGISTRY = "127.0.0.1:5443"
PRIVATE = f"{REGISTRY}/private/busybox:1"
USER, PASSWORD = "puller", "s3cret-pw"


@contextmanager
def _serve(netns: list[str], root: Path, addr: str, **settings: Any) -> Iterator[None]:
    """Run docker-registry on ``addr`` inside the namespace with storage under ``root``
    (shared by every registry of the module) and extra ``http``/``auth`` settings."""
    http = {"addr": addr, **settings.pop("http", {})}
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": http,
        **settings,
    }
    name = addr.replace(":", "_")
    (root / f"{name}.yml").write_text(yaml.safe_dump(config))
    with (root / f"{name}.log").open("wb") as out:
        proc = subprocess.Popen(
            [*netns, "docker-registry", "serve", str(root / f"{name}.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    host, port = addr.rsplit(":", 1)
    probe = f"import socket; socket.create_connection(({host!r}, {port}), 1)"
    try:
        for _ in range(100):
            connect = subprocess.run([*netns, sys.executable, "-c", probe], capture_output=True)
            if connect.returncode == 0:
                break
            assert proc.poll() is None, (root / f"{name}.log").read_text()
            time.sleep(0.1)
        else:
            pytest.fail(f"docker-registry did not start listening on {addr}")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Storage and configuration of the module's registries."""
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def registry(netns: list[str], registry_root: Path) -> Iterator[str]:
    """docker-registry with htpasswd auth, plain HTTP on 127.0.0.1:5000."""
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    (registry_root / "htpasswd").write_text(htpasswd)
    auth = {"htpasswd": {"realm": "edgek-test", "path": str(registry_root / "htpasswd")}}
    with _serve(netns, registry_root, REGISTRY, auth=auth):
        yield REGISTRY


@pytest.fixture(scope="module")
def tls_registry(netns: list[str], registry_root: Path) -> Iterator[Path]:
    """The same storage served over TLS (no auth) on 127.0.0.1:5443 with a certificate of a
    test CA (valid for 127.0.0.1 and localhost); yields the CA file."""
    now = datetime.now(UTC)
    ca_key, key = certs.new_key(), certs.new_key()
    ca = certs.create_ca("edgek-test-registry-ca", ca_key, now=now, days=1)
    leaf = certs.Leaf(
        "registry",
        ExtendedKeyUsageOID.SERVER_AUTH,
        dns_names=["localhost"],
        ip_addresses=[ipaddress.ip_address("127.0.0.1")],
    )
    cert = certs.sign_leaf(ca, ca_key, leaf, key.public_key(), now=now, days=1)
    (registry_root / "ca.crt").write_bytes(certs.cert_to_pem(ca))
    (registry_root / "tls.crt").write_bytes(certs.cert_to_pem(cert))
    (registry_root / "tls.key").write_bytes(certs.key_to_pem(key))
    tls = {"certificate": str(registry_root / "tls.crt"), "key": str(registry_root / "tls.key")}
    with _serve(netns, registry_root, TLS_REGISTRY, http={"tls": tls}):
        yield registry_root / "ca.crt"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pushed(service: PodmanService, registry: str) -> str:
    """The busybox image pushed to the registry as ``private/busybox:1`` (then removed from
    the local store, so every test really pulls); returns its image id."""
    async with PodmanClient(service.socket) as client:
        if not await client.image_exists(IMAGE):
            await import_directory(client, images_dir(service.layout.agent_dir))
        image_id = str((await client.image_inspect(IMAGE))["Id"])
    proc = await asyncio.create_subprocess_exec(
        *service.podman_command(
            "push",
            "--tls-verify=false",
            "--creds",
            f"{USER}:{PASSWORD}",
            IMAGE,
            f"docker://{PRIVATE}",
        ),
        env=service.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    async with PodmanClient(service.socket) as client:
        await client.image_remove(IMAGE, force=True)
    return image_id


class Secrets:
    """An ObjectSource with only Secrets."""

    def __init__(self, **secrets: dict[str, Any]) -> None:
        self.secrets = secrets

    async def get(self, resource: str, namespace: str, name: str) -> dict | None:
        return self.secrets.get(name) if resource == "secrets" else None


def _pull_secret(server: str, username: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    doc = {"auths": {server: {"auth": auth}}}
    return {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(doc).encode()).decode()},
    }


def _pod(*secrets: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": "p", "uid": "u1"},
        "spec": {"imagePullSecrets": [{"name": s} for s in secrets]},
    }


async def _forget(client: PodmanClient, *names: str) -> None:
    for name in names:
        if await client.image_exists(name):
            await client.image_remove(name, force=True)


async def test_pull_without_credentials_fails(service: PodmanService, pushed: str) -> None:
    async with PodmanClient(service.socket) as client:
        puller = ImagePuller(client, Registries(), Secrets())
        with pytest.raises(ImagePullError) as failed:
            await puller.ensure(_pod(), {"name": "c", "image": PRIVATE})
        assert failed.value.reason == "ErrImagePull"
        assert failed.value.message.startswith(f'Failed to pull image "{PRIVATE}": ')
        assert "unauthorized" in failed.value.message.lower()
        wrong = Secrets(creds=_pull_secret(REGISTRY, USER, "wrong"))
        with pytest.raises(ImagePullError, match=r"(?i)unauthorized"):
            await ImagePuller(client, Registries(), wrong).ensure(
                _pod("creds"), {"name": "c", "image": PRIVATE}
            )
        assert not await client.image_exists(PRIVATE)


async def test_pull_with_a_pull_secret(service: PodmanService, pushed: str) -> None:
    events: list[tuple[str, str, str]] = []
    async with PodmanClient(service.socket) as client:
        await _forget(client, PRIVATE)
        objects = Secrets(creds=_pull_secret(f"http://{REGISTRY}/v2/", USER, PASSWORD))
        puller = ImagePuller(client, Registries(), objects)
        container = {"name": "c", "image": PRIVATE}
        image_id = await puller.ensure(_pod("creds"), container, lambda *e: events.append(e))
        assert image_id == pushed
        assert [e[1] for e in events] == ["Pulling", "Pulled"]
        assert events[1][2].startswith(f'Successfully pulled image "{PRIVATE}" in ')
        # IfNotPresent (a tag that is not latest): now served from the store
        events.clear()
        assert await puller.ensure(_pod(), container, lambda *e: events.append(e)) == pushed
        assert events == [
            ("Normal", "Pulled", f'Container image "{PRIVATE}" already present on machine')
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mirrored(
    netns: list[str], short_dirs: Callable[[], Path], pushed: str, tls_registry: Path
) -> AsyncIterator[tuple[PodmanService, Registries]]:
    """A second agent Podman whose registries.yaml mirrors ``registry.edgek.test`` and Docker
    Hub (``library/x`` → ``private/x``) to the local registry, with its credentials, and
    ``secure.edgek.test`` to the TLS registry with its CA (``nocert.edgek.test`` too, as
    ``localhost:5443``, for which no CA is given)."""
    registries = parse(
        {
            "mirrors": {
                "registry.edgek.test": {"endpoint": [f"http://{REGISTRY}"]},
                "docker.io": {
                    "endpoint": [f"http://{REGISTRY}"],
                    "rewrite": {"^library/(.*)": "private/$1"},
                },
                "secure.edgek.test": {"endpoint": [f"https://{TLS_REGISTRY}"]},
                "nocert.edgek.test": {"endpoint": ["https://localhost:5443"]},
            },
            "configs": {
                REGISTRY: {"auth": {"username": USER, "password": PASSWORD}},
                TLS_REGISTRY: {"tls": {"ca_file": str(tls_registry)}},
            },
        }
    )
    svc = PodmanService(short_dirs() / "agent", command_prefix=netns, registries=registries)
    await svc.start()
    try:
        yield svc, registries
    finally:
        await svc.stop()


async def test_pull_through_registries_yaml_mirrors(
    mirrored: tuple[PodmanService, Registries], pushed: str
) -> None:
    """Mirrors with auth (and a rewrite), and a TLS mirror verified with its ``ca_file``."""
    svc, registries = mirrored
    async with PodmanClient(svc.socket) as client:
        puller = ImagePuller(client, registries, Secrets())
        for image, stored in (
            ("registry.edgek.test/private/busybox:1", "registry.edgek.test/private/busybox:1"),
            ("busybox:1", "docker.io/library/busybox:1"),  # rewritten to private/busybox
            ("secure.edgek.test/private/busybox:1", "secure.edgek.test/private/busybox:1"),
        ):
            assert await puller.ensure(_pod(), {"name": "c", "image": image}) == pushed
            assert stored in (await client.image_inspect(pushed))["RepoTags"]
        # the same TLS registry as localhost:5443, for which no CA is given
        with pytest.raises(ImagePullError, match="certificate signed by unknown authority"):
            await puller.ensure(
                _pod(), {"name": "c", "image": "nocert.edgek.test/private/busybox:1"}
            )
        # without the registries.yaml credentials the mirror refuses
        await _forget(client, "busybox:1", "registry.edgek.test/private/busybox:1")
        with pytest.raises(ImagePullError, match=r"(?i)unauthorized"):
            await ImagePuller(client, Registries(), Secrets()).ensure(
                _pod(), {"name": "c", "image": "registry.edgek.test/private/busybox:1"}
            )
