"""Image pull secrets as the kubelet's credential keyring reads them.

A Pod's ``imagePullSecrets`` of type ``kubernetes.io/dockerconfigjson`` (``{"auths": {...}}``
under ``.dockerconfigjson``) or the legacy ``kubernetes.io/dockercfg`` (the bare map under
``.dockercfg``) give entries keyed by a registry location: ``host[:port][/path]``, optionally
with a scheme, a ``/v1/`` or ``/v2/`` API prefix (ignored), and ``*`` globs per host label
(``*.example.com``). An image matches an entry when the host labels match, the ports are equal
and the entry's path is a prefix of the repository's; every match is tried, the most specific
(reverse-sorted) key first. Entries for ``index.docker.io`` also serve Docker Hub images.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from agent.registries import Credentials

log = logging.getLogger("edgek.agent.pullsecrets")

DOCKER_CONFIG_JSON = ("kubernetes.io/dockerconfigjson", ".dockerconfigjson")
DOCKER_CFG = ("kubernetes.io/dockercfg", ".dockercfg")
_DEFAULT_REGISTRY_KEY = "index.docker.io"


def _split(location: str) -> tuple[str, str, str]:
    """``host``, ``port`` and path of a schemeless (or https/http) location."""
    parts = urlsplit(location if "://" in location else f"https://{location}")
    host, _, port = parts.netloc.rpartition(":") if ":" in parts.netloc else (parts.netloc, "", "")
    return host, port, parts.path


def _key(location: str) -> str:
    """The keyring index key of a config entry: host[:port] plus its path without the API
    version prefix."""
    parts = urlsplit(location if "://" in location else f"https://{location}")
    path = parts.path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    return parts.netloc + path if path not in ("", "/") else parts.netloc


def matches(location: str, repository: str) -> bool:
    """Whether a pull secret's ``location`` applies to ``repository`` (``host[:port]/path``)."""
    key_host, key_port, key_path = _split(_key(location))
    host, port, path = _split(repository)
    if key_port != port:
        return False
    key_labels, labels = key_host.split("."), host.split(".")
    if len(key_labels) != len(labels):
        return False
    if not all(
        fnmatch.fnmatchcase(label, glob) for glob, label in zip(key_labels, labels, strict=True)
    ):
        return False
    return path.startswith(key_path)


def _is_docker_hub(repository: str) -> bool:
    first, sep, _ = repository.partition("/")
    if not first:
        return False
    if not sep or first in ("docker.io", "index.docker.io"):
        return True
    return not any(c in first for c in ".:")


def _entry_credentials(entry: Any) -> Credentials | None:
    """One docker config entry; ``auth`` (base64 ``user:password``) wins over the fields."""
    if not isinstance(entry, Mapping):
        return None
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"])).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, password = decoded.partition(":")
    return Credentials(username, password, str(entry.get("identitytoken") or ""))


class Keyring:
    """Registry credentials indexed by location, looked up by repository."""

    def __init__(self) -> None:
        self._creds: dict[str, list[Credentials]] = {}

    def add(self, config: Mapping[str, Any]) -> None:
        """Add a docker config map (location → entry)."""
        for location, entry in config.items():
            creds = _entry_credentials(entry)
            if creds is None:
                log.warning("pull secret entry %r is not valid; ignored", location)
                continue
            self._creds.setdefault(_key(str(location)), []).append(creds)

    def lookup(self, repository: str) -> list[Credentials]:
        """Every credential for ``repository`` (``docker.io/library/busybox``), the most
        specific location first."""
        found = [
            creds
            for key in sorted(self._creds, reverse=True)
            if matches(key, repository)
            for creds in self._creds[key]
        ]
        if not found and _DEFAULT_REGISTRY_KEY in self._creds and _is_docker_hub(repository):
            found = list(self._creds[_DEFAULT_REGISTRY_KEY])
        return found


def docker_config(secret: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The docker config map of a pull secret, None when it is not one (or unreadable)."""
    kind = secret.get("type")
    data = secret.get("data") or {}
    for secret_type, key in (DOCKER_CONFIG_JSON, DOCKER_CFG):
        if kind != secret_type or not data.get(key):
            continue
        try:
            doc = json.loads(base64.b64decode(data[key]))
        except (binascii.Error, ValueError):
            return None
        if key == DOCKER_CONFIG_JSON[1]:
            doc = doc.get("auths") if isinstance(doc, dict) else None
        return doc if isinstance(doc, dict) else None
    return None


def keyring(secrets: Iterable[Mapping[str, Any]]) -> Keyring:
    """A keyring of every docker config in ``secrets`` (other secrets are skipped)."""
    ring = Keyring()
    for secret in secrets:
        config = docker_config(secret)
        if config is not None:
            ring.add(config)
    return ring
