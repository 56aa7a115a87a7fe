"""RFC 7386 JSON merge patch."""

from __future__ import annotations

from typing import Any

from edgek.objects import clone


def merge_patch(doc: Any, patch: Any) -> Any:
    """Apply a JSON merge patch to ``doc`` and return the result; inputs are not mutated.

    An object patch merges key by key (``null`` deletes a key); any other patch value
    replaces the target wholesale.
    """
    if not isinstance(patch, dict):
        return clone(patch)
    target = clone(doc) if isinstance(doc, dict) else {}
    return _merge_into(target, patch)


def _merge_into(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into ``target`` (owned by the caller) in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            target[key] = _merge_into(current if isinstance(current, dict) else {}, value)
        else:
            target[key] = clone(value)
    return target
