"""``edgek server``: its options are generated from the ``ServerConfig`` fields (flag
name, type and help), so a setting is declared once; ``--config`` and ``--debug`` are the
command's own."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgek import sdnotify
from edgek.cmd.common import fail, setup_logging, tune_gc
from edgek.config import ConfigError, load_config, merge
from server.config import AGENT_COMPONENTS, ServerConfig, ServerOption, server_options

if TYPE_CHECKING:
    from agent.main import AgentConfig

log = logging.getLogger("edgek.server")
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def server(**given: Any) -> None:
    """Run the control plane: datastore, API server and controllers."""
    settings = {option.name: _flag_value(option, given[option.attr]) for option in server_options()}
    try:
        values = merge(settings, load_config(given["config"]), set(settings))
        cfg = ServerConfig.from_settings(values)
    except (ConfigError, ValueError) as e:
        fail(str(e))
    setup_logging(logging.DEBUG if given["debug"] else logging.INFO)
    from datastore.snapshot import SnapshotError
    from server.main import serve_forever

    tune_gc()
    agent_cfg = None if cfg.disable_agent else _embedded_agent_config(cfg)
    companion = functools.partial(_up, cfg, agent_cfg)
    try:
        asyncio.run(serve_forever(cfg, companion))
    except (OSError, ValueError, SnapshotError) as e:
        fail(f"cannot start server: {e}")


#: The ``edgek agent`` options the server takes for its embedded agent (same names).
EMBEDDED_AGENT_OPTIONS = (
    "node-name",
    "node-ip",
    "node-external-ip",
    "node-label",
    "node-taint",
    "with-node-id",
    "podman-socket",
    "container-runtime",
    "kubelet-port",
    "private-registry",
    "cluster-dns",
    "cluster-domain",
    "service-proxy",
)


def _embedded_agent_config(cfg: ServerConfig) -> AgentConfig:
    """The embedded agent's settings, checked before anything starts (a bad one is the
    one-line error of ``edgek agent``); its token is the node token, read once it exists."""
    from edgek.cmd.agent import agent_config

    values = {name: getattr(cfg, name.replace("-", "_")) for name in EMBEDDED_AGENT_OPTIONS}
    return agent_config(
        {
            **values,
            "server": cfg.local_url,
            "token": "<node-token>",
            "data-dir": cfg.data_dir,
            "disable": [d for d in cfg.disable if d in AGENT_COMPONENTS],
        }
    )


async def _up(
    cfg: ServerConfig, agent_cfg: AgentConfig | None
) -> Callable[[], Awaitable[None]] | None:
    """Once the server serves: start the embedded agent (unless ``--disable-agent``), then
    tell systemd the service is ready. Returns the agent's ``stop``."""
    halt = None if agent_cfg is None else await _start_agent(cfg, agent_cfg)
    sdnotify.ready()
    return halt


async def _start_agent(
    cfg: ServerConfig, agent_cfg: AgentConfig
) -> Callable[[], Awaitable[None]] | None:
    """The agent the server runs for its own node (unless ``--disable-agent``), as k3s
    does: the same ``Agent`` as ``edgek agent``, joining with the node token over the local
    URL, state under the same data dir. The server labels the node
    ``node-role.kubernetes.io/control-plane`` (a node may not set node-role labels on
    itself). Returns its ``stop``; None (logged) when it cannot start, e.g. without Podman:
    the control plane runs on."""
    from agent.bootstrap import BootstrapError
    from agent.main import Agent
    from agent.podman.service import PodmanServiceError
    from edgek.apiclient import ApiClient, ApiClientError
    from edgek.kubeconfig import data_dir_kubeconfig

    token_file = cfg.data_dir / "server" / "node-token"
    token = (await asyncio.to_thread(token_file.read_text)).strip()
    agent = Agent(dataclasses.replace(agent_cfg, token=token))
    try:
        await agent.start()
        admin = ApiClient.from_kubeconfig(data_dir_kubeconfig(cfg.data_dir))
        labels = {"metadata": {"labels": {CONTROL_PLANE_LABEL: "true"}}}
        await admin.patch(f"/api/v1/nodes/{agent.name}", labels, patch_type="strategic")
    except (ApiClientError, BootstrapError, PodmanServiceError, OSError) as e:
        log.error("the embedded agent did not start: %s (--disable-agent runs none)", e)
        await agent.stop()
        return None
    log.info("embedded agent: node %s runs pods", agent.name)
    return agent.stop


def _flag_value(option: ServerOption, value: Any) -> Any:
    """A command-line value as ``merge`` takes it (``--disable a,b`` is two values)."""
    if option.attr == "disable" and value:
        return [v for item in value for v in item.split(",") if v] or None
    return value


def _parameter(option: ServerOption) -> inspect.Parameter:
    """The typer parameter of one option: optional, so a config file value shows through
    when the flag is not given; booleans are plain ``--flag`` switches."""
    cli_type = str if option.parse is not None else option.type
    decls = (f"--{option.name}",) if option.type is bool else ()
    info = typer.Option(*decls, help=option.help, hidden=option.hidden)
    return inspect.Parameter(
        option.attr,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[cli_type | None, info],
    )


def _signature() -> inspect.Signature:
    config = inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config",
                "-c",
                help="Config file (YAML, keys = flag names); default /etc/edgek/config.yaml.",
            ),
        ],
    )
    debug = inspect.Parameter(
        "debug",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, typer.Option(help="Verbose logging.")],
    )
    options = [_parameter(o) for o in server_options()]
    return inspect.Signature([config, *options, debug])


# typer reads a command's parameters from its signature
server.__dict__["__signature__"] = _signature()
