"""The ``edgek`` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from edgek import KUBERNETES_VERSION, __version__
from edgek.config import ConfigError, load_config, merge

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


def _fail(message: str) -> None:
    typer.echo(f"edgek: {message}", err=True)
    raise typer.Exit(1)


def _server_config(values: dict[str, Any]) -> Any:
    from server.config import ServerConfig

    cfg = ServerConfig()
    for name, value in values.items():
        attr = name.replace("-", "_")
        current = getattr(cfg, attr)
        try:
            if isinstance(current, bool):
                value = (
                    value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                )
            elif isinstance(current, Path) or attr == "token_file":
                value = Path(value)
            elif isinstance(current, list):
                value = [str(v) for v in (value if isinstance(value, list) else [value])]
            elif attr == "write_kubeconfig_mode":
                value = int(str(value), 8)
            elif isinstance(current, int):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            else:
                value = str(value)
        except ValueError:
            _fail(f"invalid value for --{name}: {value!r}")
        setattr(cfg, attr, value)
    return cfg


@app.command()
def server(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (YAML, keys = flag names); default /etc/edgek/config.yaml.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="State directory (default /var/lib/edgek).")
    ] = None,
    bind_address: Annotated[
        str | None, typer.Option(help="Address to listen on (default 0.0.0.0).")
    ] = None,
    https_listen_port: Annotated[
        int | None, typer.Option(help="HTTPS port (default 6443).")
    ] = None,
    advertise_address: Annotated[
        str | None, typer.Option(help="Address advertised to clients and agents.")
    ] = None,
    tls_san: Annotated[
        list[str] | None, typer.Option(help="Extra serving-certificate SAN (repeatable).")
    ] = None,
    write_kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Where to write the admin kubeconfig (default /etc/edgek/edgek.yaml)."),
    ] = None,
    write_kubeconfig_mode: Annotated[
        str | None, typer.Option(help="Octal mode of the kubeconfig (default 0600).")
    ] = None,
    datastore_endpoint: Annotated[
        str | None, typer.Option(help="Datastore URL (default SQLite under <data-dir>/server/db/).")
    ] = None,
    cluster_cidr: Annotated[
        str | None, typer.Option(help="Pod network (default 10.42.0.0/16).")
    ] = None,
    service_cidr: Annotated[
        str | None, typer.Option(help="Service network (default 10.43.0.0/16).")
    ] = None,
    cluster_domain: Annotated[
        str | None, typer.Option(help="Cluster DNS domain (default cluster.local).")
    ] = None,
    datastore_compact_interval: Annotated[
        float | None, typer.Option(help="Seconds between datastore compactions (default 300).")
    ] = None,
    datastore_compact_retain: Annotated[
        int | None,
        typer.Option(help="Revisions the datastore keeps when compacting (default 1000)."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Cluster join secret (or a full K10 token); env EDGEK_TOKEN.")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the cluster join secret or token.")
    ] = None,
    secrets_encryption: Annotated[
        bool | None,
        typer.Option("--secrets-encryption", help="Encrypt Secret values at rest (AES-GCM)."),
    ] = None,
    disable_agent: Annotated[
        bool | None,
        typer.Option("--disable-agent", help="Run the control plane without the embedded agent."),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Verbose logging.")] = False,
) -> None:
    """Run the control plane: datastore, API server and controllers."""
    flags = {
        "data-dir": data_dir,
        "bind-address": bind_address,
        "https-listen-port": https_listen_port,
        "advertise-address": advertise_address,
        "tls-san": tls_san,
        "write-kubeconfig": write_kubeconfig,
        "write-kubeconfig-mode": write_kubeconfig_mode,
        "datastore-endpoint": datastore_endpoint,
        "cluster-cidr": cluster_cidr,
        "service-cidr": service_cidr,
        "cluster-domain": cluster_domain,
        "datastore-compact-interval": datastore_compact_interval,
        "datastore-compact-retain": datastore_compact_retain,
        "token": token,
        "token-file": token_file,
        "secrets-encryption": secrets_encryption,
        "disable-agent": disable_agent,
    }
    try:
        values = merge(flags, load_config(config), set(flags))
    except ConfigError as e:
        _fail(str(e))
    cfg = _server_config(values)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    from server.main import serve_forever

    try:
        asyncio.run(serve_forever(cfg))
    except (OSError, ValueError) as e:
        _fail(f"cannot start server: {e}")


def main() -> None:
    """Console-script entry point."""
    app()
