"""``edgek agent``: run a node agent (flags, ``EDGEK_URL``/``EDGEK_TOKEN``, token file and
config file make its :class:`agent.main.AgentConfig`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgek.cmd.common import fail, setup_logging
from edgek.config import ConfigError, load_config, merge

if TYPE_CHECKING:
    from agent.main import AgentConfig


def _as_list(value: Any) -> list[str]:
    """A flag value given once, repeated, or as a config file list, as strings."""
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _token(values: dict[str, Any]) -> str:
    """The join token: ``token``, else the content of ``token-file``."""
    if values.get("token"):
        return str(values["token"]).strip()
    if values.get("token-file"):
        try:
            return Path(values["token-file"]).read_text().strip()
        except OSError as e:
            fail(f"cannot read --token-file: {e}")
    return ""


def agent_config(values: dict[str, Any]) -> AgentConfig:
    """The AgentConfig of flag/config-file ``values`` (by flag name); a one-line error and
    exit 1 for a bad one."""
    from agent.main import AgentConfig
    from agent.nodestatus import KUBELET_PORT, parse_labels, parse_taints
    from agent.registries import DEFAULT_PATH as REGISTRIES_PATH

    try:
        config = AgentConfig(
            server=str(values.get("server") or ""),
            token=_token(values),
            data_dir=Path(values.get("data-dir") or "/var/lib/edgek"),
            node_name=str(values.get("node-name") or ""),
            node_ip=_as_list(values.get("node-ip")),
            node_external_ip=_as_list(values.get("node-external-ip")),
            node_labels=parse_labels(_as_list(values.get("node-label"))),
            node_taints=parse_taints(_as_list(values.get("node-taint"))),
            with_node_id=str(values.get("with-node-id", False)).lower() in ("1", "true", "yes"),
            podman_socket=str(values.get("podman-socket") or ""),
            container_runtime=str(values.get("container-runtime") or "auto"),
            kubelet_port=int(values.get("kubelet-port") or KUBELET_PORT),
            private_registry=Path(values.get("private-registry") or REGISTRIES_PATH),
            cluster_dns=str(values.get("cluster-dns") or "10.43.0.10"),
            cluster_domain=str(values.get("cluster-domain") or "cluster.local"),
            resolv_conf=Path(values.get("resolv-conf") or "/etc/resolv.conf"),
            disable=[v for item in _as_list(values.get("disable")) for v in item.split(",") if v],
            service_proxy=str(values.get("service-proxy", False)).lower() in ("1", "true", "yes"),
        )
        config.check()
    except ValueError as e:
        fail(str(e))
    return config


def agent(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (YAML, keys = flag names); default /etc/edgek/config.yaml.",
        ),
    ] = None,
    server: Annotated[
        str | None, typer.Option(envvar="EDGEK_URL", help="Server URL, e.g. https://pi:6443.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="EDGEK_TOKEN", help="Join token (K10...).")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding the join token.")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="State directory (default /var/lib/edgek; agent state in <dir>/agent)."),
    ] = None,
    node_name: Annotated[str | None, typer.Option(help="Node name (default: hostname).")] = None,
    node_ip: Annotated[
        list[str] | None, typer.Option(help="Node InternalIP (repeatable; default: detected).")
    ] = None,
    node_external_ip: Annotated[
        list[str] | None, typer.Option(help="Node ExternalIP (repeatable).")
    ] = None,
    node_label: Annotated[
        list[str] | None, typer.Option(help="Label k=v to register with (repeatable).")
    ] = None,
    node_taint: Annotated[
        list[str] | None,
        typer.Option(help="Taint key=value:Effect to register with (repeatable)."),
    ] = None,
    with_node_id: Annotated[
        bool | None,
        typer.Option("--with-node-id", help="Append a stable random id to the node name."),
    ] = None,
    podman_socket: Annotated[
        str | None, typer.Option(help="Use this Podman service socket instead of our own.")
    ] = None,
    container_runtime: Annotated[
        str | None, typer.Option(help="OCI runtime: auto, crun or runc (default auto).")
    ] = None,
    kubelet_port: Annotated[
        int | None,
        typer.Option(help="Port of the agent's logs/exec/port-forward server (default 10250)."),
    ] = None,
    private_registry: Annotated[
        Path | None,
        typer.Option(
            help="Private registry configuration, k3s registries.yaml format "
            "(default /etc/edgek/registries.yaml)."
        ),
    ] = None,
    cluster_dns: Annotated[
        str | None, typer.Option(help="Cluster DNS address pods use (default 10.43.0.10).")
    ] = None,
    cluster_domain: Annotated[
        str | None, typer.Option(help="Cluster DNS domain (default cluster.local).")
    ] = None,
    resolv_conf: Annotated[
        Path | None,
        typer.Option(help="resolv.conf naming the cluster DNS's upstream resolvers."),
    ] = None,
    disable: Annotated[
        list[str] | None,
        typer.Option(help="Node component to switch off: dns, network-policy (repeatable)."),
    ] = None,
    service_proxy: Annotated[
        bool | None,
        typer.Option(
            "--service-proxy",
            help="Program the node's iptables for Services (ClusterIP, NodePort, LoadBalancer).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Verbose logging.")] = False,
) -> None:
    """Run a node agent: join the cluster and register this device as a node."""
    flags = {
        "server": server,
        "token": token,
        "token-file": token_file,
        "data-dir": data_dir,
        "node-name": node_name,
        "node-ip": node_ip,
        "node-external-ip": node_external_ip,
        "node-label": node_label,
        "node-taint": node_taint,
        "with-node-id": with_node_id,
        "podman-socket": podman_socket,
        "container-runtime": container_runtime,
        "kubelet-port": kubelet_port,
        "private-registry": private_registry,
        "cluster-dns": cluster_dns,
        "cluster-domain": cluster_domain,
        "resolv-conf": resolv_conf,
        "disable": disable,
        "service-proxy": service_proxy,
    }
    try:
        values = merge(flags, load_config(config), set(flags))
    except ConfigError as e:
        fail(str(e))
    cfg = agent_config(values)
    setup_logging(logging.DEBUG if debug else logging.INFO)
    from agent.bootstrap import BootstrapError
    from agent.main import run_cli
    from agent.registries import RegistriesError
    from edgek import sdnotify
    from edgek.apiclient import ApiClientError

    try:
        asyncio.run(run_cli(cfg, sdnotify.ready))
    except (ApiClientError, BootstrapError, OSError, RegistriesError) as e:
        fail(f"agent: {e}")
