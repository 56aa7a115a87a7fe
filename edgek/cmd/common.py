"""What the commands share: one-line failures, the kubeconfig option, API calls and the
garbage-collector set-up of long-running commands."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from edgek.metrics import escape

KubeconfigOpt = Annotated[
    Path, typer.Option("--kubeconfig", help="Admin kubeconfig (default /etc/edgek/edgek.yaml).")
]
DEFAULT_KUBECONFIG = Path("/etc/edgek/edgek.yaml")
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Use the admin kubeconfig the server keeps in this data dir instead."),
]


def fail(message: str) -> NoReturn:
    """Print ``edgek: message`` to stderr and exit with status 1."""
    typer.echo(f"edgek: {message}", err=True)
    raise typer.Exit(1)


#: syslog priorities of the logging levels, the ``<N>`` prefix journald reads
_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class LogfmtFormatter(logging.Formatter):
    """``time=... level=info logger=edgek.server msg="..."`` lines (logfmt, as k3s logs);
    under journald (``journald``) the time is left to the journal and a ``<N>`` syslog
    priority prefix carries the level."""

    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        """One line (a traceback, if any, follows it)."""
        level = record.levelname.lower()
        line = f"level={level} logger={record.name} msg={_quoted(record.getMessage())}"
        if self.journald:
            line = f"<{_PRIORITIES.get(record.levelno, 2)}>{line}"
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            line = f"time={stamp}.{int(record.msecs):03d}Z {line}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quoted(text: str) -> str:
    if text and not any(c in text for c in ' "=\\\n'):
        return text
    return f'"{escape(text)}"'


def _on_journald() -> bool:
    """Whether stderr is systemd's journal stream (``$JOURNAL_STREAM`` names its device and
    inode)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):
        return False


def setup_logging(level: int) -> None:
    """Structured (logfmt) log lines to stderr, journald-friendly when it is the journal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(_on_journald()))
    logging.basicConfig(level=level, handlers=[handler])


def tune_gc() -> None:
    """Set the cyclic garbage collector up for a long-running process holding large caches.

    Called before the command's event loop starts: what is allocated by then (the imported
    modules) is frozen out of collections, and young objects are collected every 50,000
    allocations instead of 700: with the default, the collector re-scans the caches often
    enough to cost as much CPU as decoding the objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def client(kubeconfig: Path, data_dir: Path | None = None) -> Any:
    """An API client authenticated by ``kubeconfig``, or by the admin kubeconfig of the
    server data dir ``data_dir`` when given (exit 1 when it cannot be used)."""
    from edgek.apiclient import ApiClient
    from edgek.kubeconfig import data_dir_kubeconfig

    if data_dir is not None:
        kubeconfig = data_dir_kubeconfig(data_dir)
    try:
        return ApiClient.from_kubeconfig(kubeconfig)
    except (OSError, ValueError) as e:
        fail(f"cannot use kubeconfig {kubeconfig}: {e}")


def call(coro: Any) -> Any:
    """Run one API call; an API error exits 1 with its message."""
    from edgek.apiclient import ApiClientError

    try:
        return asyncio.run(coro)
    except ApiClientError as e:
        fail(str(e))
