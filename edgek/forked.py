"""Run a function in a forked child process and return its result.

For one-off work that loads large modules a long-running process never needs again (the
server imports ``cryptography`` only to create or check its keys and certificates on
start-up): the child's memory is returned to the system when it exits. Call it before any
threads start; the child runs the function on a copy of the process and leaves with
``os._exit``, running none of the parent's clean-up.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def call_in_child(fn: Callable[[], T]) -> T:
    """``fn()`` run in a forked child: its return value, or the exception it raised
    (re-raised here; both travel back pickled)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_fd)
            outcome: tuple[bool, object]
            try:
                outcome = (True, fn())
            except Exception as e:
                outcome = (False, e)
            with os.fdopen(write_fd, "wb") as out:
                pickle.dump(outcome, out)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reply:
        data = reply.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        code = os.waitstatus_to_exitcode(status)
        raise RuntimeError(f"the child process running {fn!r} died (exit status {code})")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value
