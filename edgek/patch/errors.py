"""The error raised by every patch engine."""

from __future__ import annotations


class PatchError(ValueError):
    """A patch that cannot be applied; ``str(e)`` is a user-facing message."""
