"""``edgek check-config``: whether this host can run edgek, one green or red line per
check; exit 1 when something blocks it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_COLORS = {"ok": typer.colors.GREEN, "warn": typer.colors.YELLOW, "fail": typer.colors.RED}


def check_config(
    root: Annotated[
        Path, typer.Option(hidden=True, help="Tests: the root /proc and /sys are read under.")
    ] = Path("/"),
) -> None:
    """Check cgroups, kernel modules, Podman and its runtime, iptables and ports."""
    from agent.hostcheck import Host, check_host

    checks = check_host(Host(root))
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = typer.style(f"{check.status:4}", fg=_COLORS[check.status], bold=True)
        typer.echo(f"{mark} {check.name:{width}}  {check.detail}")
    blockers = [c for c in checks if c.status == "fail"]
    if blockers:
        typer.echo(f"{len(blockers)} blocker(s): edgek cannot run pods here", err=True)
        raise typer.Exit(1)
    typer.echo("edgek can run here")
