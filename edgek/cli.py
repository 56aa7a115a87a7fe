"""The ``edgek`` command line."""

from __future__ import annotations

import asyncio
import gc
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


def _tune_gc() -> None:
    """Set the cyclic garbage collector up for a long-running process holding large caches.

    What exists after start-up is frozen out of collections, and young objects are
    collected every 50,000 allocations instead of 700: with the default, the collector
    re-scans the caches often enough to cost as much CPU as decoding the objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


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
            elif isinstance(current, Path) or attr in ("token_file", "debug_clock_file"):
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
    disable: Annotated[
        list[str] | None,
        typer.Option(
            help="Built-in loop to switch off, e.g. scheduler, nodelifecycle (repeatable, or "
            "comma-separated)."
        ),
    ] = None,
    node_monitor_grace_period: Annotated[
        float | None,
        typer.Option(help="Seconds without a heartbeat before a node is NotReady (default 40)."),
    ] = None,
    default_not_ready_toleration_seconds: Annotated[
        int | None,
        typer.Option(help="Toleration added to pods for the not-ready taint (default 300)."),
    ] = None,
    default_unreachable_toleration_seconds: Annotated[
        int | None,
        typer.Option(help="Toleration added to pods for the unreachable taint (default 300)."),
    ] = None,
    node_cidr_mask_size: Annotated[
        int | None, typer.Option(help="Prefix length of each node's pod CIDR (default 24).")
    ] = None,
    debug_clock_file: Annotated[
        Path | None,
        typer.Option(
            hidden=True, help="Tests: file with seconds the control loops' clock runs ahead."
        ),
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
        "disable": [v for item in disable or [] for v in item.split(",") if v] or None,
        "node-monitor-grace-period": node_monitor_grace_period,
        "default-not-ready-toleration-seconds": default_not_ready_toleration_seconds,
        "default-unreachable-toleration-seconds": default_unreachable_toleration_seconds,
        "node-cidr-mask-size": node_cidr_mask_size,
        "debug-clock-file": debug_clock_file,
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

    _tune_gc()
    try:
        asyncio.run(serve_forever(cfg))
    except (OSError, ValueError) as e:
        _fail(f"cannot start server: {e}")


token_app = typer.Typer(help="Manage bootstrap tokens for joining agents.", no_args_is_help=True)
app.add_typer(token_app, name="token")

KubeconfigOpt = Annotated[
    Path, typer.Option("--kubeconfig", help="Admin kubeconfig (default /etc/edgek/edgek.yaml).")
]
_TOKENS_PATH = "/api/v1/namespaces/kube-system/secrets"


def _client(kubeconfig: Path) -> Any:
    from edgek.apiclient import ApiClient

    try:
        return ApiClient.from_kubeconfig(kubeconfig)
    except (OSError, ValueError) as e:
        _fail(f"cannot use kubeconfig {kubeconfig}: {e}")


def _call(coro: Any) -> Any:
    from edgek.apiclient import ApiClientError

    try:
        return asyncio.run(coro)
    except ApiClientError as e:
        _fail(str(e))


def parse_duration(text: str) -> int:
    """Seconds in a Go-style duration such as ``24h``, ``1h30m``, ``90s`` (``0`` = none)."""
    import re

    if text.strip() == "0":
        return 0
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not parts or not any(parts.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 24h, 30m, 1h30m)")
    h, m, sec = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + sec


@token_app.command("create")
def token_create(
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 24h; 0 = never expires.")] = "24h",
    description: Annotated[str, typer.Option(help="A note shown by 'token list'.")] = "",
    kubeconfig: KubeconfigOpt = Path("/etc/edgek/edgek.yaml"),
) -> None:
    """Create a bootstrap token and print the full join token."""
    from datetime import UTC, datetime

    from edgek import jointoken
    from server.auth import bootstrap_tokens

    try:
        seconds = parse_duration(ttl)
    except ValueError as e:
        _fail(str(e))
    client = _client(kubeconfig)
    token = bootstrap_tokens.new_token()
    secret = bootstrap_tokens.secret_for(
        token, ttl_seconds=seconds or None, description=description, now=datetime.now(UTC)
    )
    _call(client.request("POST", _TOKENS_PATH, secret))
    typer.echo(f"K10{jointoken.ca_hash(client.ca_pem)}::{token}")


@token_app.command("list")
def token_list(kubeconfig: KubeconfigOpt = Path("/etc/edgek/edgek.yaml")) -> None:
    """List bootstrap tokens."""
    from server.auth import bootstrap_tokens

    client = _client(kubeconfig)
    listed = _call(
        client.request(
            "GET", _TOKENS_PATH + "?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken"
        )
    )
    rows = [bootstrap_tokens.describe(s) for s in listed.get("items", [])]
    typer.echo(f"{'TOKEN':<24} {'TTL':<10} {'EXPIRES':<22} {'USAGES':<40} DESCRIPTION")
    for r in rows:
        typer.echo(
            f"{r['token']:<24} {r['ttl']:<10} {r['expires']:<22} "
            f"{','.join(r['usages']):<40} {r['description']}"
        )


@token_app.command("delete")
def token_delete(
    token_ids: Annotated[list[str], typer.Argument(help="Token ids (or full id.secret tokens).")],
    kubeconfig: KubeconfigOpt = Path("/etc/edgek/edgek.yaml"),
) -> None:
    """Delete bootstrap tokens."""
    client = _client(kubeconfig)
    for token_id in token_ids:
        ident = token_id.split(".", 1)[0]
        _call(client.request("DELETE", f"{_TOKENS_PATH}/bootstrap-token-{ident}"))
        typer.echo(f"bootstrap token {ident!r} deleted")


@app.command()
def sim(
    server: Annotated[str, typer.Option(help="API server URL, e.g. https://127.0.0.1:6443.")],
    nodes: Annotated[int, typer.Option(min=1, help="How many nodes to simulate.")],
    token: Annotated[
        str | None, typer.Option(help="Join token: each node bootstraps its own identity.")
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Admin kubeconfig used for all nodes (instead of --token).")
    ] = None,
    name_prefix: Annotated[str, typer.Option(help="Node names are <prefix>0..N-1.")] = "sim-",
    pod_ready_seconds: Annotated[
        float, typer.Option(min=0, help="Seconds from Running to Ready.")
    ] = 1.0,
    pod_run_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds a restartPolicy Never/OnFailure pod runs before it exits "
            "(annotation sim.edgek.io/run-seconds overrides).",
        ),
    ] = 5.0,
    lease_seconds: Annotated[
        int, typer.Option(min=1, help="Node lease duration; renewed every quarter of it.")
    ] = 40,
    fail_node: Annotated[
        list[str] | None,
        typer.Option(help="Register this node, then never heartbeat (repeatable)."),
    ] = None,
    fail_file: Annotated[
        Path | None,
        typer.Option(
            help="On SIGUSR1, fail the nodes named in this file (one per line) besides "
            "--fail-node, and recover the others."
        ),
    ] = None,
    cpu: Annotated[str, typer.Option(help="CPU capacity of each node.")] = "4",
    memory: Annotated[str, typer.Option(help="Memory capacity of each node.")] = "8Gi",
    max_pods: Annotated[int, typer.Option(min=1, help="Pod capacity of each node.")] = 110,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Token mode: node keys and certificates (default ~/.local/state/edgek/sim)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent API requests.")] = 64,
    debug: Annotated[bool, typer.Option(help="Log every state change.")] = False,
) -> None:
    """Simulate nodes: register them, heartbeat, and run the pods bound to them."""
    from agent.bootstrap import BootstrapError
    from agent.sim import SimConfig, default_data_dir, run_cli
    from agent.simnode import NodeShape
    from edgek.apiclient import ApiClientError
    from edgek.quantity import parse_quantity

    for flag, value in (("--cpu", cpu), ("--memory", memory)):
        try:
            parse_quantity(value)
        except ValueError:
            _fail(f"invalid value for {flag}: {value!r}")
    config = SimConfig(
        server=server,
        nodes=nodes,
        kubeconfig=kubeconfig,
        token=token or "",
        name_prefix=name_prefix,
        pod_ready_seconds=pod_ready_seconds,
        pod_run_seconds=pod_run_seconds,
        lease_seconds=lease_seconds,
        fail_nodes=tuple(fail_node or ()),
        shape=NodeShape(cpu=cpu, memory=memory, max_pods=max_pods),
        data_dir=data_dir or default_data_dir(),
        concurrency=concurrency,
    )
    try:
        config.check()
    except ValueError as e:
        _fail(str(e))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    _tune_gc()
    try:
        asyncio.run(run_cli(config, fail_file))
    except (ApiClientError, BootstrapError, OSError, ValueError) as e:
        _fail(f"sim: {e}")


secrets_app = typer.Typer(
    help="Inspect and rotate the encryption of Secrets at rest.", no_args_is_help=True
)
app.add_typer(secrets_app, name="secrets-encrypt")
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


@secrets_app.command("status")
def secrets_status(kubeconfig: KubeconfigOpt = Path("/etc/edgek/edgek.yaml")) -> None:
    """Show whether Secrets are encrypted, the rotation stage and the keys."""
    client = _client(kubeconfig)
    _print_encryption(_call(client.request("GET", f"{_ENCRYPT_PATH}/status")))


@secrets_app.command("rotate-keys")
def secrets_rotate(kubeconfig: KubeconfigOpt = Path("/etc/edgek/edgek.yaml")) -> None:
    """Make a new key, re-encrypt every Secret with it, and drop the old keys."""
    client = _client(kubeconfig)
    _print_encryption(_call(client.request("POST", f"{_ENCRYPT_PATH}/rotate-keys")))


certificate_app = typer.Typer(help="Manage this node's certificates.", no_args_is_help=True)
app.add_typer(certificate_app, name="certificate")


@certificate_app.command("rotate")
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
        _fail(str(e))
    typer.echo(f"rotated {creds.client_cert} and {creds.serving_cert}")


def main() -> None:
    """Console-script entry point."""
    app()
