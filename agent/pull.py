"""Pulling a container's image as the kubelet's image manager does.

:meth:`ImagePuller.ensure` honours ``imagePullPolicy`` (``Always``; ``IfNotPresent``;
``Never``; defaulted as the API server does when missing), normalizes the name
(``busybox`` → ``docker.io/library/busybox:latest``), tries every credential of the pod's
``imagePullSecrets`` that matches the registry (most specific first, as the keyring does)
together with the ``registries.yaml`` credentials of every host (mirrors included), and
raises :class:`ImagePullError` with the kubelet's reasons and messages. Registries on a
loopback address may be plain HTTP, as Docker and containerd allow. Pulls are serialized
(the kubelet's default ``serializeImagePulls``); finding a local image never waits for them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from agent.imageref import ImageRef, InvalidReference, parse
from agent.podman.client import PodmanError, registries_auth_header
from agent.pullsecrets import keyring
from agent.registries import Credentials, Registries
from edgek.defaults import image_pull_policy

log = logging.getLogger("edgek.agent.pull")

ERR_IMAGE_PULL = "ErrImagePull"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
INVALID_IMAGE_NAME = "InvalidImageName"

#: (event type, reason, message) of an Event about the container.
EventFn = Callable[[str, str, str], None]


class ImagePullError(Exception):
    """The image is not there and could not be made so: ``reason`` is the container's
    waiting reason (``ErrImagePull``, ``ErrImageNeverPull``, ``InvalidImageName``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ImageClient(Protocol):
    """The image calls of :class:`PodmanClient` that pulling uses."""

    async def image_inspect(self, name: str) -> dict[str, Any]: ...

    async def image_pull(
        self, reference: str, auth: str | None = None, tls_verify: bool | None = None
    ) -> list[str]: ...


class SecretSource(Protocol):
    """What the puller reads pull secrets from (the agent's ObjectSource)."""

    async def get(self, resource: str, namespace: str, name: str) -> dict | None: ...


def loopback_registry(domain: str) -> bool:
    """Whether the registry ``host[:port]`` is this machine (``localhost``, 127/8, ::1)."""
    host = urlsplit(f"//{domain}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_header(credentials: dict[str, Credentials]) -> str | None:
    """The pull's ``X-Registry-Auth``: every host's credentials, None when there are none."""
    if not credentials:
        return None
    return registries_auth_header({h: c.header_entry() for h, c in sorted(credentials.items())})


def _ignore_event(kind: str, reason: str, message: str) -> None:
    """The default event sink: nothing is recorded."""


class ImagePuller:
    """Makes sure a container's image is in the agent's Podman."""

    def __init__(self, client: ImageClient, registries: Registries, objects: SecretSource) -> None:
        self.client = client
        self.registries = registries
        self.objects = objects
        self._lock = asyncio.Lock()

    async def ensure(
        self, pod: dict[str, Any], container: dict[str, Any], event: EventFn = _ignore_event
    ) -> str:
        """The Podman image id of ``container``'s image, pulling it as its policy says;
        ``event`` receives the kubelet's Events (Pulling, Pulled, Failed, ...)."""
        image = str(container.get("image") or "")
        try:
            ref = parse(image)
        except InvalidReference as e:
            message = (
                f'Failed to apply default image tag "{image}": '
                f'couldn\'t parse image name "{image}": {e}'
            )
            event("Warning", "InspectFailed", message)
            raise ImagePullError(INVALID_IMAGE_NAME, message) from None
        policy = container.get("imagePullPolicy") or image_pull_policy(image)
        if policy != "Always" and (present := await self._present(ref)):
            event("Normal", "Pulled", f'Container image "{image}" already present on machine')
            return present
        if policy == "Never":
            message = f'Container image "{image}" is not present with pull policy of Never'
            event("Warning", ERR_IMAGE_NEVER_PULL, message)
            raise ImagePullError(ERR_IMAGE_NEVER_PULL, message)
        event("Normal", "Pulling", f'Pulling image "{image}"')
        queued = time.monotonic()
        async with self._lock:  # one pull at a time; lookups of local images do not wait
            started = time.monotonic()
            try:
                image_id = await self._pull(pod, ref, image, event)
            except ImagePullError as e:
                event("Warning", "Failed", e.message)
                raise
        done = time.monotonic()
        event(
            "Normal",
            "Pulled",
            f'Successfully pulled image "{image}" in {done - started:.3f}s '
            f"({done - queued:.3f}s including waiting)",
        )
        return image_id

    async def _present(self, ref: ImageRef) -> str:
        """The id of the local image ``ref`` names, "" when there is none."""
        try:
            return str((await self.client.image_inspect(str(ref)))["Id"])
        except PodmanError as e:
            if e.status == 404:
                return ""
            raise ImagePullError(ERR_IMAGE_PULL, f"inspecting {ref}: {e.message}") from None

    async def _pull_secrets(self, pod: dict[str, Any], event: EventFn) -> list[dict]:
        namespace = pod["metadata"].get("namespace") or "default"
        secrets, missing = [], []
        for item in pod.get("spec", {}).get("imagePullSecrets") or []:
            name = str(item.get("name") or "")
            secret = await self.objects.get("secrets", namespace, name) if name else None
            if secret is None:
                missing.append(f"{namespace}/{name}")
            else:
                secrets.append(secret)
        if missing:
            event(
                "Warning",
                "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                "attempting to pull the image may not succeed.",
            )
        return secrets

    async def _pull(self, pod: dict[str, Any], ref: ImageRef, image: str, event: EventFn) -> str:
        """Pull with each matching pull-secret credential in turn (anonymously when none
        matches); the first success wins, else every failure is reported."""
        tries: list[Credentials | None] = list(
            keyring(await self._pull_secrets(pod, event)).lookup(ref.name)
        ) or [None]
        # None: as registries.conf says (mirrors keep their own setting either way)
        insecure = loopback_registry(ref.domain) or self.registries.insecure(ref.domain)
        tls_verify = False if insecure else None
        errors = []
        for creds in tries:
            hosts = dict(self.registries.auths)
            if creds is not None:
                hosts[ref.domain] = creds
            try:
                ids = await self.client.image_pull(str(ref), auth_header(hosts), tls_verify)
            except (PodmanError, aiohttp.ClientError) as e:
                errors.append(e.message if isinstance(e, PodmanError) else str(e))
                continue
            if ids:
                log.info("pulled %s: %s", ref, ids[-1])
                return ids[-1]
            errors.append("the pull reported no image")
        raise ImagePullError(
            ERR_IMAGE_PULL, f'Failed to pull image "{image}": {"; ".join(dict.fromkeys(errors))}'
        )
