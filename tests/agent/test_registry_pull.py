"""Image pulls from a real private registry: Debian's ``docker-registry`` with htpasswd auth,
listening on 127.0.0.1 inside the test's network namespace (nothing leaves the machine). The
offline busybox image is pushed to it with the agent's Podman; then a pull without
credentials fails with ErrImagePull, a pull secret makes it work, and a registries.yaml
mirror (also with a rewrite of Docker Hub names) with auth works without any secret."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from agent.images import images_dir, import_directory
from agent.podman.client import PodmanClient
from agent.podman.service import PodmanService
from agent.pull import ImagePuller, ImagePullError
from agent.registries import Registries, parse
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
PRIVATE = f"{REGISTRY}/private/busybox:1"
USER, PASSWORD = "puller", "s3cret-pw"


@pytest.fixture(scope="module")
def registry(netns: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docker-registry with htpasswd auth on 127.0.0.1:5000 inside the namespace."""
    root = tmp_path_factory.mktemp("registry")
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    (root / "htpasswd").write_text(htpasswd)
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": REGISTRY},
        "auth": {"htpasswd": {"realm": "edgek-test", "path": str(root / "htpasswd")}},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    with (root / "registry.log").open("wb") as out:
        proc = subprocess.Popen(
            [*netns, "docker-registry", "serve", str(root / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        probe = "import socket; socket.create_connection(('127.0.0.1', 5000), 1)"
        for _ in range(100):
            if (
                subprocess.run(
                    [*netns, sys.executable, "-c", probe], capture_output=True
                ).returncode
                == 0
            ):
                break
            assert proc.poll() is None, (root / "registry.log").read_text()
            subprocess.run(["sleep", "0.1"], check=True)
        else:
            pytest.fail("docker-registry did not start listening")
        yield REGISTRY
    finally:
        proc.terminate()
        proc.wait(10)


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
    netns: list[str], short_dirs: Callable[[], Path], pushed: str
) -> AsyncIterator[tuple[PodmanService, Registries]]:
    """A second agent Podman whose registries.yaml mirrors ``registry.edgek.test`` and Docker
    Hub (``library/x`` → ``private/x``) to the local registry, with its credentials."""
    registries = parse(
        {
            "mirrors": {
                "registry.edgek.test": {"endpoint": [f"http://{REGISTRY}"]},
                "docker.io": {
                    "endpoint": [f"http://{REGISTRY}"],
                    "rewrite": {"^library/(.*)": "private/$1"},
                },
            },
            "configs": {REGISTRY: {"auth": {"username": USER, "password": PASSWORD}}},
        }
    )
    svc = PodmanService(
        short_dirs() / "agent", command_prefix=netns, registries_conf=registries.registries_conf()
    )
    await svc.start()
    try:
        yield svc, registries
    finally:
        await svc.stop()


async def test_pull_through_registries_yaml_mirror_with_auth(
    mirrored: tuple[PodmanService, Registries], pushed: str
) -> None:
    svc, registries = mirrored
    async with PodmanClient(svc.socket) as client:
        puller = ImagePuller(client, registries, Secrets())
        for image, stored in (
            ("registry.edgek.test/private/busybox:1", "registry.edgek.test/private/busybox:1"),
            ("busybox:1", "docker.io/library/busybox:1"),  # rewritten to private/busybox
        ):
            assert await puller.ensure(_pod(), {"name": "c", "image": image}) == pushed
            assert stored in (await client.image_inspect(pushed))["RepoTags"]
        # without the registries.yaml credentials the mirror refuses
        await _forget(client, "busybox:1", "registry.edgek.test/private/busybox:1")
        with pytest.raises(ImagePullError, match=r"(?i)unauthorized"):
            await ImagePuller(client, Registries(), Secrets()).ensure(
                _pod(), {"name": "c", "image": "registry.edgek.test/private/busybox:1"}
            )
