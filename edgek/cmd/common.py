"""What the commands share: one-line failures, the kubeconfig option, API calls and the
garbage-collector set-up of long-running commands."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

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


def setup_logging(level: int) -> None:
    """Log lines with time, level and logger to stderr."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


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
