"""Kubernetes' WebSocket channel protocols for exec and attach (``channel.k8s.io`` up to
``v5.channel.k8s.io``) and the exit Status the error channel carries.

Every binary message is one channel byte then data: 0 stdin, 1 stdout, 2 stderr, 3 error,
4 resize (v3+: ``{"Width": w, "Height": h}``). v4+ put a metav1.Status on the error channel
(``Success``, or ``Failure`` with reason ``NonZeroExitCode``); earlier versions a plain
message only on failure. v5 adds ``[255, channel]``: the peer closed that channel (stdin
EOF, used by ``kubectl cp``).
"""

from __future__ import annotations

import json
from typing import Any

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: What the agent speaks for exec and attach over WebSocket, most preferred first.
PROTOCOLS = (V5, V4, "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
#: ... and over SPDY/3.1 (one stream per channel; v5 is WebSocket only).
SPDY_PROTOCOLS = PROTOCOLS[1:]
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
#: v5: the first byte of a close-channel message.
CLOSE = 255


def exit_status(protocol: str, command: list[str], code: int) -> bytes | None:
    """What the error channel carries when the process ended with ``code`` (None: nothing)."""
    if protocol in (V5, V4):
        return json.dumps(_status(command, code)).encode()
    if code == 0:
        return None
    return _failure_message(command, code).encode()


def error_status(protocol: str, message: str) -> bytes:
    """What the error channel carries when the session could not run."""
    if protocol in (V5, V4):
        body = {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}
        return json.dumps(body).encode()
    return message.encode()


def _failure_message(command: list[str], code: int) -> str:
    return (
        f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}"
    )


def _status(command: list[str], code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": _failure_message(command, code),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }
