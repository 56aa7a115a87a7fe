"""``edgek token``: create, list and delete bootstrap tokens for joining agents."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from edgek.cmd.common import DEFAULT_KUBECONFIG, DataDirOpt, KubeconfigOpt, call, client, fail

app = typer.Typer(help="Manage bootstrap tokens for joining agents.", no_args_is_help=True)

_TOKENS_PATH = "/api/v1/namespaces/kube-system/secrets"


def parse_duration(text: str) -> int:
    """Seconds in a Go-style duration such as ``24h``, ``1h30m``, ``90s`` (``0`` = none)."""
    if text.strip() == "0":
        return 0
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not parts or not any(parts.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 24h, 30m, 1h30m)")
    h, m, sec = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + sec


@app.command("create")
def token_create(
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 24h; 0 = never expires.")] = "24h",
    description: Annotated[str, typer.Option(help="A note shown by 'token list'.")] = "",
    kubeconfig: KubeconfigOpt = DEFAULT_KUBECONFIG,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a bootstrap token and print the full join token."""
    from datetime import UTC, datetime

    from edgek import jointoken
    from server.auth import bootstrap_tokens

    try:
        seconds = parse_duration(ttl)
    except ValueError as e:
        fail(str(e))
    api = client(kubeconfig, data_dir)
    token = bootstrap_tokens.new_token()
    secret = bootstrap_tokens.secret_for(
        token, ttl_seconds=seconds or None, description=description, now=datetime.now(UTC)
    )
    call(api.request("POST", _TOKENS_PATH, secret))
    typer.echo(f"K10{jointoken.ca_hash(api.ca_pem)}::{token}")


@app.command("list")
def token_list(kubeconfig: KubeconfigOpt = DEFAULT_KUBECONFIG, data_dir: DataDirOpt = None) -> None:
    """List bootstrap tokens."""
    from server.auth import bootstrap_tokens

    api = client(kubeconfig, data_dir)
    listed = call(
        api.request("GET", _TOKENS_PATH + "?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken")
    )
    rows = [bootstrap_tokens.describe(s) for s in listed.get("items", [])]
    typer.echo(f"{'TOKEN':<24} {'TTL':<10} {'EXPIRES':<22} {'USAGES':<40} DESCRIPTION")
    for r in rows:
        typer.echo(
            f"{r['token']:<24} {r['ttl']:<10} {r['expires']:<22} "
            f"{','.join(r['usages']):<40} {r['description']}"
        )


@app.command("delete")
def token_delete(
    token_ids: Annotated[list[str], typer.Argument(help="Token ids (or full id.secret tokens).")],
    kubeconfig: KubeconfigOpt = DEFAULT_KUBECONFIG,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete bootstrap tokens."""
    api = client(kubeconfig, data_dir)
    for token_id in token_ids:
        ident = token_id.split(".", 1)[0]
        call(api.request("DELETE", f"{_TOKENS_PATH}/bootstrap-token-{ident}"))
        typer.echo(f"bootstrap token {ident!r} deleted")
