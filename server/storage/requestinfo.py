"""Who asks and for what, as the object store and its POST-subresource actions see a request:
the authenticated user, the resource request (kind, namespace, name, subresource, verb) and the
action type. The API server fills them in; they live here, below it, because admission and the
actions (``pods/binding``, ``pods/eviction``) read them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from edgek.kinds import Kind

if TYPE_CHECKING:  # objectstore imports UserInfo from here
    from server.storage.objectstore import WriteOptions


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity (user.Info upstream)."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestInfo:
    """A resource request: ``verb`` is one of get, list, watch, create, update, patch,
    delete, deletecollection (the RBAC verbs)."""

    verb: str
    kind: Kind
    namespace: str = ""
    name: str = ""
    subresource: str = ""


#: A POST subresource handler: (request facts, decoded body, write options) -> (response
#: object, HTTP status code).
Action: TypeAlias = (
    "Callable[[RequestInfo, dict[str, Any], WriteOptions], Awaitable[tuple[dict[str, Any], int]]]"
)
