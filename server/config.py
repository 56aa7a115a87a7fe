"""Server configuration: every ``edgek server`` setting, with its default.

A field whose metadata comes from ``flag(...)`` is an ``edgek server`` option (and a config
file key) named after the field with ``-`` for ``_``; the command line is generated from
these fields (``edgek/cmd/server.py``). Fields without it are internal settings.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from netpolicy.backend import BACKENDS


def flag(
    help: str, *, hidden: bool = False, parse: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """Field metadata making the field an ``edgek server`` option: its help text, whether
    ``--help`` hides it, and ``parse`` when the option is text read into another type."""
    return {"help": help, "hidden": hidden, "parse": parse}


def _octal(text: str) -> int:
    return int(str(text), 8)


def _backend(text: str) -> str:
    if text not in BACKENDS:
        raise ValueError(f"network backend {text!r}: one of {', '.join(BACKENDS)}")
    return text


#: ``--disable`` values that switch off a part of the embedded agent rather than a loop.
AGENT_COMPONENTS = frozenset({"dns", "network-policy"})


@dataclass
class ServerConfig:
    """The server's settings (the command line, a config file, or tests build one)."""

    data_dir: Path = field(
        default=Path("/var/lib/edgek"),
        metadata=flag("State directory (default /var/lib/edgek)."),
    )
    bind_address: str = field(
        default="0.0.0.0", metadata=flag("Address to listen on (default 0.0.0.0).")
    )
    https_listen_port: int = field(default=6443, metadata=flag("HTTPS port (default 6443)."))
    advertise_address: str = field(
        default="", metadata=flag("Address advertised to clients and agents.")
    )
    tls_san: list[str] = field(
        default_factory=list, metadata=flag("Extra serving-certificate SAN (repeatable).")
    )
    write_kubeconfig: Path = field(
        default=Path("/etc/edgek/edgek.yaml"),
        metadata=flag("Where to write the admin kubeconfig (default /etc/edgek/edgek.yaml)."),
    )
    write_kubeconfig_mode: int = field(
        default=0o600,
        metadata=flag("Octal mode of the kubeconfig (default 0600).", parse=_octal),
    )
    datastore_endpoint: str = field(
        default="", metadata=flag("Datastore URL (default SQLite under <data-dir>/server/db/).")
    )
    datastore_snapshot_schedule_cron: str = field(
        default="0 */12 * * *",
        metadata=flag(
            "Cron schedule of datastore snapshots into <data-dir>/server/db/snapshots/ "
            "(SQLite; default every 12 hours; empty: none)."
        ),
    )
    datastore_snapshot_retention: int = field(
        default=5, metadata=flag("Scheduled datastore snapshots kept (default 5).")
    )
    cluster_cidr: str = field(
        default="10.42.0.0/16", metadata=flag("Pod network (default 10.42.0.0/16).")
    )
    service_cidr: str = field(
        default="10.43.0.0/16", metadata=flag("Service network (default 10.43.0.0/16).")
    )
    #: The pod network between nodes, cluster-wide: written on every Node by node IPAM.
    network_backend: str = field(
        default="host-gw",
        metadata=flag(
            "Pod network between nodes: host-gw, vxlan or none (default host-gw).",
            parse=_backend,
        ),
    )
    vxlan_vni: int = field(default=1, metadata=flag("VXLAN network identifier (default 1)."))
    vxlan_port: int = field(default=8472, metadata=flag("VXLAN UDP port (default 8472)."))
    #: The cluster DNS the agents serve node-locally (agent/dns/).
    cluster_domain: str = field(
        default="cluster.local", metadata=flag("Cluster DNS domain (default cluster.local).")
    )
    cluster_dns: str = field(
        default="10.43.0.10", metadata=flag("Cluster DNS address pods use (default 10.43.0.10).")
    )
    datastore_compact_interval: float = field(
        default=300.0, metadata=flag("Seconds between datastore compactions (default 300).")
    )
    datastore_compact_retain: int = field(
        default=1000,
        metadata=flag("Revisions the datastore keeps when compacting (default 1000)."),
    )
    token: str = field(
        default="", metadata=flag("Cluster join secret (or a full K10 token); env EDGEK_TOKEN.")
    )
    token_file: Path | None = field(
        default=None, metadata=flag("File holding the cluster join secret or token.")
    )
    secrets_encryption: bool = field(
        default=False, metadata=flag("Encrypt Secret values at rest (AES-GCM).")
    )
    #: The server runs an agent for its own node unless set (edgek/cmd/server.py).
    disable_agent: bool = field(
        default=False,
        metadata=flag("Run the control plane without the embedded agent (no pods run here)."),
    )
    #: The embedded agent's own settings, as ``edgek agent`` takes them (edgek/cmd/server.py).
    node_name: str = field(
        default="", metadata=flag("Embedded agent: node name (default: hostname).")
    )
    node_ip: list[str] = field(
        default_factory=list,
        metadata=flag("Embedded agent: node InternalIP (repeatable; default: detected)."),
    )
    node_external_ip: list[str] = field(
        default_factory=list, metadata=flag("Embedded agent: node ExternalIP (repeatable).")
    )
    node_label: list[str] = field(
        default_factory=list,
        metadata=flag("Embedded agent: label k=v to register with (repeatable)."),
    )
    node_taint: list[str] = field(
        default_factory=list,
        metadata=flag("Embedded agent: taint key=value:Effect to register with (repeatable)."),
    )
    with_node_id: bool = field(
        default=False,
        metadata=flag("Embedded agent: append a stable random id to the node name."),
    )
    podman_socket: str = field(
        default="",
        metadata=flag("Embedded agent: use this Podman service socket instead of its own."),
    )
    container_runtime: str = field(
        default="auto",
        metadata=flag("Embedded agent: OCI runtime auto, crun or runc (default auto)."),
    )
    kubelet_port: int = field(
        default=10250,
        metadata=flag("Embedded agent: port of its logs/exec/port-forward server (default 10250)."),
    )
    private_registry: Path = field(
        default=Path("/etc/edgek/registries.yaml"),
        metadata=flag(
            "Embedded agent: private registry configuration, k3s registries.yaml format "
            "(default /etc/edgek/registries.yaml)."
        ),
    )
    service_proxy: bool = field(
        default=False,
        metadata=flag("Embedded agent: program the node's iptables for Services."),
    )
    #: Built-in loops switched off (``--disable``), by controller name.
    disable: list[str] = field(
        default_factory=list,
        metadata=flag(
            "Built-in loop or agent part to switch off, e.g. scheduler, nodelifecycle, "
            "network-policy (repeatable, or comma-separated)."
        ),
    )
    #: Node lifecycle: how long a node may go without a Lease renewal before it is
    #: NotReady/Unknown.
    node_monitor_grace_period: float = field(
        default=40.0,
        metadata=flag("Seconds without a heartbeat before a node is NotReady (default 40)."),
    )
    #: DefaultTolerationSeconds for the not-ready/unreachable NoExecute taints.
    default_not_ready_toleration_seconds: int = field(
        default=300,
        metadata=flag("Toleration added to pods for the not-ready taint (default 300)."),
    )
    default_unreachable_toleration_seconds: int = field(
        default=300,
        metadata=flag("Toleration added to pods for the unreachable taint (default 300)."),
    )
    #: Node IPAM: the prefix length of each node's podCIDR carved from cluster_cidr.
    node_cidr_mask_size: int = field(
        default=24, metadata=flag("Prefix length of each node's pod CIDR (default 24).")
    )
    #: Tests: a file holding how many seconds the control loops' clock runs ahead.
    debug_clock_file: Path | None = field(
        default=None,
        metadata=flag("Tests: file with seconds the control loops' clock runs ahead.", hidden=True),
    )
    watch_bookmark_interval: float = 60.0
    #: Node lifecycle: how often nodes are checked.
    node_monitor_period: float = 5.0

    @classmethod
    def from_settings(cls, values: dict[str, Any]) -> ServerConfig:
        """A config from flag-named settings (``data-dir``: value), each value read into
        its field's type: text as from a config file, or the command line's typed value.
        ValueError names the flag when a value cannot be read."""
        cfg = cls()
        options = {o.name: o for o in server_options()}
        for name, value in values.items():
            option = options[name]
            try:
                setattr(cfg, option.attr, option.read(value))
            except ValueError:
                raise ValueError(f"invalid value for --{name}: {value!r}") from None
        return cfg

    def join_secret(self) -> str:
        """The configured join secret (--token, or the token in --token-file; a full K10
        token is reduced to its secret), or "" when none was given."""
        from edgek import jointoken

        text = self.token or (self.token_file.read_text().strip() if self.token_file else "")
        return jointoken.parse(text).password if text else ""

    @property
    def server_dir(self) -> Path:
        """``<data-dir>/server``: the server's state."""
        return self.data_dir / "server"

    @property
    def tls_dir(self) -> Path:
        """The certificates and keys."""
        return self.server_dir / "tls"

    @property
    def datastore_url(self) -> str:
        """The datastore endpoint; SQLite under ``<data-dir>/server/db/`` by default."""
        path = self.sqlite_path
        return self.datastore_endpoint if path is None else f"sqlite:///{path.resolve()}"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file of the default datastore; None with an endpoint."""
        return None if self.datastore_endpoint else sqlite_file(self.data_dir)

    @property
    def local_url(self) -> str:
        """The URL local clients (the admin kubeconfig) use."""
        host = "127.0.0.1" if self.bind_address in ("0.0.0.0", "::", "") else self.bind_address
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.https_listen_port}"


def sqlite_file(data_dir: Path) -> Path:
    """The default datastore's SQLite file in a data dir."""
    return data_dir / "server" / "db" / "state.db"


@dataclass(frozen=True)
class ServerOption:
    """One ``edgek server`` option, described by a ``ServerConfig`` field."""

    attr: str
    #: The field's type without ``None``: bool, int, float, str, Path or list[str].
    type: Any
    help: str
    hidden: bool
    parse: Callable[[str], Any] | None

    @property
    def name(self) -> str:
        """The long flag name without dashes in front, also the config file key."""
        return self.attr.replace("_", "-")

    def read(self, value: Any) -> Any:
        """``value`` (config file text or a command-line value) as the field's type."""
        if self.parse is not None:
            return self.parse(value)
        if self.type is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if self.type == list[str]:
            return [str(v) for v in (value if isinstance(value, list) else [value])]
        return self.type(value)


def server_options() -> list[ServerOption]:
    """The ``edgek server`` options, in ``ServerConfig`` field order."""
    hints = typing.get_type_hints(ServerConfig)
    return [
        ServerOption(
            attr=f.name,
            type=_without_none(hints[f.name]),
            help=f.metadata["help"],
            hidden=f.metadata["hidden"],
            parse=f.metadata["parse"],
        )
        for f in fields(ServerConfig)
        if "help" in f.metadata
    ]


def _without_none(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint
