"""``edgek certificate``: this node's certificates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from edgek.cmd.common import fail

app = typer.Typer(help="Manage this node's certificates.", no_args_is_help=True)


def expiry_report(data_dir: Path, now: datetime) -> tuple[list[str], bool]:
    """One line per certificate under ``<data-dir>/server/tls`` and ``<data-dir>/agent``:
    file, subject, expiry, days left, status; and whether any has expired. The server
    reissues its leaf certificates within ``RENEW_BEFORE`` of expiry when it starts, the
    agent renews its own past 80% of their lifetime; CAs are not renewed."""
    from cryptography.x509.oid import NameOID

    from edgek.certs import load_cert
    from server.pki.pki import RENEW_BEFORE

    lines, expired = [], False
    files = sorted((data_dir / "server" / "tls").glob("*.crt"))
    files += sorted((data_dir / "agent").glob("*.crt"))
    for path in files:
        cert = load_cert(path)
        if cert is None:
            lines.append(f"{path}  unreadable")
            continue
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject = str(names[0].value) if names else "-"
        end = cert.not_valid_after_utc
        left = end - now
        if left <= timedelta(0):
            status, expired = "EXPIRED", True
        elif left <= RENEW_BEFORE:
            status = f"expires within {RENEW_BEFORE.days} days"
        else:
            status = "ok"
        lines.append(f"{path}  {subject}  {end:%Y-%m-%d %H:%M}Z  {left.days}d  {status}")
    return lines, expired


@app.command("check")
def certificate_check(
    data_dir: Annotated[
        Path, typer.Option(help="The data dir whose server and agent certificates to check.")
    ] = Path("/var/lib/edgek"),
) -> None:
    """List this node's certificates with their expiry (exit 1 when one has expired)."""
    lines, expired = expiry_report(data_dir, datetime.now(UTC))
    if not lines:
        fail(f"no certificates under {data_dir}")
    for line in lines:
        typer.echo(line)
    if expired:
        raise typer.Exit(1)


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
