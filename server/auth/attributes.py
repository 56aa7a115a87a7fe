"""What authorizers decide on: the requesting user and the request's attributes."""

from __future__ import annotations

from dataclasses import dataclass

from server.storage.requestinfo import UserInfo


@dataclass(frozen=True)
class Attributes:
    """A request as authorizers see it.

    Resource requests carry ``verb`` (get, list, watch, create, update, patch, delete,
    deletecollection, or a special verb such as bind/escalate/impersonate/approve),
    ``api_group``, ``api_version``, ``resource``, ``subresource``, ``namespace`` and
    ``name``. Non-resource requests carry ``path`` and the lower-case HTTP ``verb``
    (get, post, put, patch, delete, head, options).
    """

    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    """An authorizer's answer: ``allowed``, or not with a ``reason`` (may be empty);
    ``no_opinion`` lets the next authorizer in a chain decide."""

    allowed: bool
    reason: str = ""
    no_opinion: bool = False


ALLOW = Decision(True)
NO_OPINION = Decision(False, no_opinion=True)
