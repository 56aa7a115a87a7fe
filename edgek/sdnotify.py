"""systemd's notify protocol without libsystemd: ``READY=1`` once a service is up and
``WATCHDOG=1`` pings while its event loop runs (``Type=notify`` units, ``WatchdogSec=``).

The messages are datagrams to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace); without that variable every call does nothing, so a
process run by hand behaves the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("edgek.sdnotify")


def notify(message: str) -> bool:
    """Send one state line (``READY=1``, ``STATUS=...``) to ``$NOTIFY_SOCKET``; False when
    there is none or it cannot be reached (logged: the service runs on)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as e:
        log.warning("systemd notify %r failed: %s", message, e)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC`` (systemd's advice),
    when it is set for this process (``$WATCHDOG_PID`` absent or ours); else None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def ready() -> None:
    """Tell systemd the service is up and, with a watchdog configured, ping it from the
    running event loop from now on (a loop stuck for the whole interval misses the ping and
    systemd restarts the service). Call from inside the loop."""
    notify("READY=1")
    interval = watchdog_interval()
    if interval is None:
        return
    loop = asyncio.get_running_loop()

    def ping() -> None:
        notify("WATCHDOG=1")
        loop.call_later(interval, ping)

    ping()
