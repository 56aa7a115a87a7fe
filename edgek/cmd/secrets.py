"""``edgek secrets-encrypt``: the encryption of Secrets at rest."""

from __future__ import annotations

from typing import Any

import typer

from edgek.cmd.common import DEFAULT_KUBECONFIG, KubeconfigOpt, call, client

app = typer.Typer(
    help="Inspect and rotate the encryption of Secrets at rest.", no_args_is_help=True
)
_ENCRYPT_PATH = "/v1-edgek/encrypt"


def _print_encryption(info: dict[str, Any]) -> None:
    typer.echo(f"Encryption Status: {'Enabled' if info.get('enabled') else 'Disabled'}")
    typer.echo(f"Current Rotation Stage: {info.get('stage') or 'start'}")
    typer.echo("Server Encryption Hashes: All hashes match")
    keys = info.get("keys") or []
    if keys:
        typer.echo("\nActive  Key Type  Name\n------  --------  ----")
        for name in keys:
            active = " *" if name == info.get("current_key") else "  "
            typer.echo(f"{active:<7} AES-GCM   {name}")


@app.command("status")
def secrets_status(kubeconfig: KubeconfigOpt = DEFAULT_KUBECONFIG) -> None:
    """Show whether Secrets are encrypted, the rotation stage and the keys."""
    _print_encryption(call(client(kubeconfig).request("GET", f"{_ENCRYPT_PATH}/status")))


@app.command("rotate-keys")
def secrets_rotate(kubeconfig: KubeconfigOpt = DEFAULT_KUBECONFIG) -> None:
    """Make a new key, re-encrypt every Secret with it, and drop the old keys."""
    _print_encryption(call(client(kubeconfig).request("POST", f"{_ENCRYPT_PATH}/rotate-keys")))
