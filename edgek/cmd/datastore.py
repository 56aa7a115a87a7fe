"""``edgek datastore snapshot|restore``: copies of the server's SQLite datastore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgek.cmd.common import fail

app = typer.Typer(help="Snapshot and restore the server's datastore.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option(help="The server's data dir.")]


@app.command("snapshot")
def datastore_snapshot(
    data_dir: DataDir = Path("/var/lib/edgek"),
    name: Annotated[str, typer.Option(help="The snapshot's name (before its time).")] = (
        "on-demand"
    ),
) -> None:
    """Copy the datastore (consistently, while the server runs) into
    <data-dir>/server/db/snapshots/ and print the file's path."""
    from datastore.snapshot import SnapshotError, take
    from server.config import sqlite_file
    from server.storage.snapshots import snapshot_dir

    db = sqlite_file(data_dir)
    if not name or "/" in name:
        fail(f"invalid snapshot name {name!r}")
    try:
        typer.echo(take(db, snapshot_dir(db), name))
    except (OSError, SnapshotError) as e:
        fail(str(e))


@app.command("restore")
def datastore_restore(
    file: Annotated[Path, typer.Argument(help="The snapshot file.")],
    data_dir: DataDir = Path("/var/lib/edgek"),
) -> None:
    """Make a snapshot the datastore of a stopped (or new) server's data dir."""
    from datastore.snapshot import SnapshotError, restore
    from server.config import sqlite_file

    db = sqlite_file(data_dir)
    try:
        restore(file, db)
    except (OSError, SnapshotError) as e:
        fail(str(e))
    typer.echo(f"restored {file} into {db}; start the server with --data-dir {data_dir}")
