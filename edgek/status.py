"""metav1.Status errors: every failure the API reports to a client is an :class:`ApiError`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error carrying a metav1.Status (code, reason, message, details)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The metav1.Status object for this error."""
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def _details(name: str, group_resource: str, **extra: Any) -> dict[str, Any]:
    resource, _, group = group_resource.partition(".")
    d: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    d.update(extra)
    return d


def not_found(group_resource: str, name: str) -> ApiError:
    """404 ``pods "x" not found``."""
    return ApiError(
        404,
        "NotFound",
        f'{group_resource} "{name}" not found',
        details=_details(name, group_resource),
    )


def already_exists(group_resource: str, name: str) -> ApiError:
    """409 ``pods "x" already exists``."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{group_resource} "{name}" already exists',
        details=_details(name, group_resource),
    )


def conflict(group_resource: str, name: str, why: str | None = None) -> ApiError:
    """409 Conflict for a stale resourceVersion (or ``why`` when given)."""
    msg = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {group_resource} "{name}": {msg}',
        details=_details(name, group_resource),
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid. ``causes`` are ``{"reason", "message", "field"}`` dicts (upstream
    cause reasons: FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...)."""
    qualified = f"{kind}.{group}" if group else kind
    summary = "; ".join(
        f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
    )
    if len(causes) > 1:
        summary = f"[{summary}]"
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )


def expired(message: str) -> ApiError:
    """410 Expired (compacted resourceVersion, stale continue token)."""
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def too_large(message: str = "Request entity too large") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
