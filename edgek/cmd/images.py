"""``edgek images``: manage the node's container images (airgap import)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Manage the node's container images.", no_args_is_help=True)


@app.command("import")
def images_import(
    files: Annotated[list[Path], typer.Argument(help="docker-archive or OCI archive tarballs.")],
    data_dir: Annotated[
        Path, typer.Option(help="The agent's state directory (its Podman is in <dir>/agent).")
    ] = Path("/var/lib/edgek"),
    podman_socket: Annotated[
        Path | None, typer.Option(help="Load into this Podman service instead of the agent's.")
    ] = None,
) -> None:
    """Load image tarballs into the agent's Podman, as the airgap images directory does."""
    from agent.images import import_files

    results = asyncio.run(import_files(files, data_dir / "agent", podman_socket))
    for result in results:
        if result.error:
            typer.echo(f"edgek: {result.path}: {result.error}", err=True)
        else:
            typer.echo(f"{result.path}: {', '.join(result.names)}")
    if any(r.error for r in results):
        raise typer.Exit(1)
