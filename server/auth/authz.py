"""The authorizer chain: system:masters, then the node authorizer, then RBAC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edgek import status
from server.auth.attributes import ALLOW, Attributes, Decision

SUPERUSER_GROUP = "system:masters"


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> Decision: ...


class AuthorizerChain:
    """Asks each authorizer in turn; the first allow or explicit deny wins."""

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = list(authorizers)

    def authorize(self, attrs: Attributes) -> Decision:
        if SUPERUSER_GROUP in attrs.user.groups:
            return ALLOW
        reasons = []
        for authorizer in self.authorizers:
            decision = authorizer.authorize(attrs)
            if decision.allowed:
                return decision
            if decision.reason:
                reasons.append(decision.reason)
            if not decision.no_opinion:
                return Decision(False, ", ".join(reasons))
        return Decision(False, ", ".join(reasons))


def forbid(attrs: Attributes, decision: Decision, message: str) -> status.ApiError:
    """The 403 Status for a denied request (``message`` is the upstream sentence)."""
    text = f"{message}: {decision.reason}" if decision.reason else message
    details: dict[str, str] = {}
    if attrs.resource_request:
        details = {"kind": attrs.resource}
        if attrs.name:
            details["name"] = attrs.name
        if attrs.api_group:
            details["group"] = attrs.api_group
    return status.ApiError(403, "Forbidden", text, details=details or None)
