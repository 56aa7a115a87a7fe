"""Server configuration: every ``edgek server`` flag, with its default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerConfig:
    data_dir: Path = Path("/var/lib/edgek")
    bind_address: str = "0.0.0.0"
    https_listen_port: int = 6443
    advertise_address: str = ""
    tls_san: list[str] = field(default_factory=list)
    write_kubeconfig: Path = Path("/etc/edgek/edgek.yaml")
    write_kubeconfig_mode: int = 0o600
    datastore_endpoint: str = ""
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    cluster_domain: str = "cluster.local"
    disable_agent: bool = False
    token: str = ""
    token_file: Path | None = None
    secrets_encryption: bool = False
    datastore_compact_interval: float = 300.0
    datastore_compact_retain: int = 1000
    watch_bookmark_interval: float = 60.0
    #: Built-in loops switched off (``--disable``), by controller name.
    disable: list[str] = field(default_factory=list)
    #: Node lifecycle: how long a node may go without a Lease renewal before it is
    #: NotReady/Unknown, and how often nodes are checked.
    node_monitor_grace_period: float = 40.0
    node_monitor_period: float = 5.0
    #: DefaultTolerationSeconds for the not-ready/unreachable NoExecute taints.
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    #: Node IPAM: the prefix length of each node's podCIDR carved from cluster_cidr.
    node_cidr_mask_size: int = 24
    #: Tests: a file holding how many seconds the control loops' clock runs ahead.
    debug_clock_file: Path | None = None

    def join_secret(self) -> str:
        """The configured join secret (--token, or the token in --token-file; a full K10
        token is reduced to its secret), or "" when none was given."""
        from edgek import jointoken

        text = self.token or (self.token_file.read_text().strip() if self.token_file else "")
        return jointoken.parse(text).password if text else ""

    @property
    def server_dir(self) -> Path:
        return self.data_dir / "server"

    @property
    def tls_dir(self) -> Path:
        return self.server_dir / "tls"

    @property
    def datastore_url(self) -> str:
        """The datastore endpoint; SQLite under ``<data-dir>/server/db/`` by default."""
        if self.datastore_endpoint:
            return self.datastore_endpoint
        return f"sqlite:///{(self.server_dir / 'db' / 'state.db').resolve()}"

    @property
    def local_url(self) -> str:
        """The URL local clients (the admin kubeconfig) use."""
        host = "127.0.0.1" if self.bind_address in ("0.0.0.0", "::", "") else self.bind_address
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.https_listen_port}"
