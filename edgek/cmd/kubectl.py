"""``edgek kubectl ...``: the machine's kubectl, pointed at this server's admin kubeconfig
unless ``$KUBECONFIG`` says otherwise (k3s's ``k3s kubectl``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer

from edgek.cmd.common import fail
from edgek.kubeconfig import data_dir_kubeconfig

#: The data dir whose admin kubeconfig is used; ``EDGEK_DATA_DIR`` overrides it.
DEFAULT_DATA_DIR = Path("/var/lib/edgek")


def kubectl_command(args: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run kubectl with ``args``: ``$KUBECONFIG`` when set,
    else the admin kubeconfig of ``$EDGEK_DATA_DIR`` (default /var/lib/edgek). Exits 1
    with one line when kubectl is not on PATH."""
    binary = shutil.which("kubectl", path=env.get("PATH"))
    if binary is None:
        fail("kubectl is not installed (put kubectl on PATH, e.g. apt-get install kubectl)")
    if not env.get("KUBECONFIG"):
        data_dir = Path(env.get("EDGEK_DATA_DIR") or DEFAULT_DATA_DIR)
        env = {**env, "KUBECONFIG": str(data_dir_kubeconfig(data_dir))}
    return [binary, *args], env


def kubectl(ctx: typer.Context) -> None:
    """Run kubectl against this server (every argument goes to kubectl)."""
    argv, env = kubectl_command(list(ctx.args), dict(os.environ))
    os.execve(argv[0], argv, env)


KUBECTL_SETTINGS = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
}
