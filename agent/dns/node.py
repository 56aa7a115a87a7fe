"""The cluster DNS of one node, as the agent runs it: a :class:`WatchCache` of the
cluster's Services and EndpointSlices, a :class:`DnsServer` on the node's bridge gateway
(the first address of its podCIDR) and the DNAT that makes the cluster DNS address reach it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path

from agent.dns.rules import apply_rules
from agent.dns.server import DNS_PORT, DnsServer, WatchCache, upstream_resolvers
from edgek.apiclient import ApiClient
from edgek.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class NodeDns:
    """Start/stop the node's DNS (module docstring)."""

    def __init__(
        self,
        client: Callable[[], ApiClient | None],
        cluster_dns: str,
        domain: str,
        pod_cidr: str,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        state_file: Path | None = None,
    ) -> None:
        self.cluster_dns, self.domain = cluster_dns, domain
        self.listen = str(ipaddress.ip_network(pod_cidr, strict=False).network_address + 1)
        self.cache = WatchCache(client, domain, state_file)
        self.resolv_conf = resolv_conf
        self.server: DnsServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the API, listen, and program the DNAT. Failures are logged, not raised:
        the node runs pods without cluster DNS (no port 53), or pods reach it only at the
        gateway address (no DNAT)."""
        self._task = asyncio.create_task(self.cache.run(), name="dns-cache")
        upstreams = await asyncio.to_thread(upstream_resolvers, self.resolv_conf)
        server = DnsServer(lambda: self.cache.zone, upstreams, self.listen, DNS_PORT)
        try:
            await server.start()
        except OSError as e:
            log.error("dns: cannot listen on %s:%d: %s", self.listen, DNS_PORT, e)
            return
        self.server = server
        try:
            await apply_rules(self.cluster_dns, self.listen, DNS_PORT)
        except OSError as e:
            log.warning("dns: cannot program the DNAT for %s: %s", self.cluster_dns, e)
        log.info("dns: serving %s on %s (upstream %s)", self.domain, self.listen, upstreams)

    async def stop(self) -> None:
        """Stop serving (the DNAT stays, as the service rules do)."""
        if self.server is not None:
            await self.server.stop()
        await cancel_and_wait(self._task)
