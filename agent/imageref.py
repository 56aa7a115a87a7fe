"""Image references as the kubelet and the containers libraries read them: the docker
reference grammar, short names completed to ``docker.io/library/...``, ``index.docker.io``
folded into ``docker.io``, and ``:latest`` when neither a tag nor a digest is given."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_MAX_NAME = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)


class InvalidReference(ValueError):
    """The string is not an image reference (the message says why, as the docker reference
    library does)."""


@dataclass(frozen=True)
class ImageRef:
    """A fully qualified image reference."""

    domain: str  # registry host[:port]
    path: str  # repository path inside the registry
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``domain/path``, the repository (what pull credentials are matched against)."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_domain(name: str) -> tuple[str, str]:
    """Domain and path, as docker's ``splitDockerDomain``: the first component is a registry
    only when it has a ``.`` or ``:``, is ``localhost``, or has upper-case letters."""
    first, sep, rest = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


def parse(image: str) -> ImageRef:
    """Parse and normalize ``image``; :class:`InvalidReference` when it is not a reference.

    ``busybox`` → ``docker.io/library/busybox:latest``; a digest keeps no default tag."""
    if not image:
        raise InvalidReference("repository name must have at least one component")
    match = _REFERENCE.match(image)
    if match is None:
        if _REFERENCE.match(image.lower()):
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name = match["name"]
    if len(name) > _MAX_NAME:
        raise InvalidReference(f"repository name must not be more than {_MAX_NAME} characters")
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidReference("repository name must be lowercase")
    tag, digest = match["tag"] or "", match["digest"] or ""
    return ImageRef(domain, path, tag or ("" if digest else "latest"), digest)
