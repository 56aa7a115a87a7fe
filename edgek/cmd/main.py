"""The ``edgek`` root command: ``--version`` and the commands and groups under it."""

from __future__ import annotations

from typing import Annotated

import typer

from edgek import KUBERNETES_VERSION, __version__
from edgek.cmd import (
    agent,
    certificate,
    checkconfig,
    datastore,
    images,
    kubectl,
    secrets,
    server,
    sim,
    token,
)

app = typer.Typer(
    name="edgek",
    help="edgek: a lightweight Kubernetes distribution for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgek version v{__version__} (kubernetes {KUBERNETES_VERSION})")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """edgek: a lightweight Kubernetes distribution for edge devices."""


app.command(name="server")(server.server)
app.add_typer(token.app, name="token")
app.command(name="sim")(sim.sim)
app.command(name="agent")(agent.agent)
app.add_typer(secrets.app, name="secrets-encrypt")
app.add_typer(certificate.app, name="certificate")
app.add_typer(images.app, name="images")
app.add_typer(datastore.app, name="datastore")
app.command(name="check-config")(checkconfig.check_config)
app.command(name="kubectl", context_settings=kubectl.KUBECTL_SETTINGS, add_help_option=False)(
    kubectl.kubectl
)


def main() -> None:
    """Console-script entry point."""
    app()
