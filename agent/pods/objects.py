"""The objects pods reference, read straight from the API: the stand-in the pod engine
uses until the cached, persisted :mod:`agent.objectsource` serves them (then that replaces
this)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgek.apiclient import ApiClient, ApiClientError


class ApiObjects:
    """``get(resource, namespace, name)`` over the API (None when absent or unreachable)."""

    def __init__(self, api: Callable[[], ApiClient | None]) -> None:
        self._api = api

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist or the server cannot be reached."""
        api = self._api()
        if api is None:
            return None
        try:
            found = await api.request("GET", f"/api/v1/namespaces/{namespace}/{resource}/{name}")
        except ApiClientError:
            return None
        return found if isinstance(found, dict) else None
