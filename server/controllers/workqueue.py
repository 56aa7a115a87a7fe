"""The controllers' work queue: the shared key queue (:mod:`edgek.workqueue`) with the
server's retry policy. API errors are retried quietly; as upstream, a create refused
because its namespace is terminating is not retried."""

from __future__ import annotations

import logging

from edgek.status import ApiError
from edgek.workqueue import KeyQueue
from server.storage.namespacelifecycle import NAMESPACE_TERMINATING_CAUSE

log = logging.getLogger("edgek.controllers")


class WorkQueue(KeyQueue):
    """Runs ``reconcile`` for each queued key (see :class:`edgek.workqueue.KeyQueue`)."""

    def should_retry(self, key: str, error: Exception) -> bool:
        if not isinstance(error, ApiError):
            return super().should_retry(key, error)
        retry = not _namespace_terminating(error)
        log.info("%s %s: %s%s", self.name, key, error.message, "; retrying" * retry)
        return retry


def _namespace_terminating(error: ApiError) -> bool:
    causes = (error.details or {}).get("causes") or []
    return any(c.get("reason") == NAMESPACE_TERMINATING_CAUSE for c in causes)
