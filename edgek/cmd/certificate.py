"""``edgek certificate``: this node's certificates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from edgek.cmd.common import fail

app = typer.Typer(help="Manage this node's certificates.", no_args_is_help=True)


@app.command("rotate")
def certificate_rotate(
    data_dir: Annotated[
        Path, typer.Option(help="The agent's state directory (its identity is in <dir>/agent).")
    ] = Path("/var/lib/edgek"),
) -> None:
    """Renew the node's client and serving certificates now (new keys, same identity)."""
    from agent.bootstrap import BootstrapError, rotate

    try:
        creds = asyncio.run(rotate(data_dir / "agent"))
    except BootstrapError as e:
        fail(str(e))
    typer.echo(f"rotated {creds.client_cert} and {creds.serving_cert}")
