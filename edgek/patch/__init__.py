"""Patch engines: RFC 6902 JSON patch, RFC 7386 merge patch and strategic merge patch.

Server-side apply lives in :mod:`edgek.patch.apply` and is imported separately.
"""

from edgek.patch.errors import PatchError
from edgek.patch.jsonpatch import json_patch
from edgek.patch.mergepatch import merge_patch
from edgek.patch.strategic import strategic_merge_patch

__all__ = ["PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]
