"""The service proxy's ruleset, as a pure function of Services, EndpointSlices and node facts.

kube-proxy's iptables mode, with edgek's own chain names (every chain starts with
``EDGEK-``) so that a kube-proxy or any other tool on the host is never touched:

- nat ``EDGEK-SERVICES`` (jumped to from PREROUTING and OUTPUT, so pods and the node itself
  reach Services): one rule per ClusterIP port, externalIP and LoadBalancer ingress IP, and
  last the jump to ``EDGEK-NODEPORTS`` for traffic addressed to one of the node's own
  addresses (NodePorts answer on all of them).
- ``EDGEK-SVC-<hash>`` per service port: load-balances over its endpoints with the
  ``statistic`` module (probability 1/(n-i) for the i-th of n), pinned first by the
  ``recent`` module when ``sessionAffinity: ClientIP`` (with its timeout);
  ``EDGEK-SVL-<hash>`` is the same over the node-local endpoints only (``Local`` traffic
  policies); ``EDGEK-EXT-<hash>`` is the entry for traffic from outside (NodePort,
  externalIPs, LoadBalancer): masquerade and the SVC chain for ``externalTrafficPolicy:
  Cluster``, the local endpoints with the client's source kept for ``Local``.
- ``EDGEK-SEP-<hash>`` per endpoint: DNAT to it (and mark hairpin traffic for masquerade).
- ``EDGEK-MARK-MASQ`` sets the mark bit, ``EDGEK-PROXY-POSTROUTING`` (from POSTROUTING)
  masquerades marked packets.
- filter ``EDGEK-SERVICES`` (from OUTPUT and FORWARD, new connections) rejects traffic to a
  service port without endpoints (drops it where a ``Local`` policy leaves none here);
  ``EDGEK-PROXY-FORWARD`` accepts the marked traffic when the host's FORWARD policy drops.

Only ready endpoints receive traffic; when a service port has none, its serving terminating
endpoints do (upstream's fallback). Headless and ExternalName services get no rules. Chain
names are hashes of the service port (and endpoint), so a restarted agent writes the identical
ruleset; :func:`render` turns a :class:`Ruleset` into ``iptables-restore --noflush`` text that
also deletes edgek's chains which no longer apply (see :mod:`netpolicy.iptables`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "EDGEK-"
SERVICES = "EDGEK-SERVICES"
NODEPORTS = "EDGEK-NODEPORTS"
POSTROUTING = "EDGEK-PROXY-POSTROUTING"
MARK_MASQ = "EDGEK-MARK-MASQ"
FORWARD = "EDGEK-PROXY-FORWARD"
MASQ_MARK = "0x4000"
#: The per-service chain kinds (``EDGEK-<kind>-<hash>``).
KINDS = ("SVC", "SEP", "EXT", "SVL")
#: Upstream's default ClientIP affinity timeout (seconds).
DEFAULT_AFFINITY_TIMEOUT = 10800

#: The top-level chains and the built-in chain each is jumped to from, per table.
HOOKS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "nat": (
        ("PREROUTING", SERVICES, "-m comment --comment edgek-services"),
        ("OUTPUT", SERVICES, "-m comment --comment edgek-services"),
        ("POSTROUTING", POSTROUTING, "-m comment --comment edgek-proxy-postrouting"),
    ),
    "filter": (
        ("OUTPUT", SERVICES, "-m conntrack --ctstate NEW -m comment --comment edgek-services"),
        ("FORWARD", SERVICES, "-m conntrack --ctstate NEW -m comment --comment edgek-services"),
        ("FORWARD", FORWARD, "-m comment --comment edgek-proxy-forward"),
    ),
}

#: table -> chain -> rules (each rule the text after ``-A CHAIN``), in order.
Tables = dict[str, dict[str, list[str]]]


@dataclass(frozen=True)
class NodeFacts:
    """What the proxy needs to know about the node it runs on."""

    name: str
    cluster_cidr: str = "10.42.0.0/16"


@dataclass
class Ruleset:
    """The chains edgek owns, per table (``nat``, ``filter``), each with its rules."""

    tables: Tables = field(default_factory=dict)

    def chain(self, table: str, name: str) -> list[str]:
        """The rules of one chain, created empty when new."""
        return self.tables.setdefault(table, {}).setdefault(name, [])


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a service port."""

    ip: str
    port: int
    node: str | None
    ready: bool
    serving: bool
    terminating: bool


@dataclass
class _Port:
    """One service port with what the rules need."""

    key: str  # namespace/name:portname
    protocol: str
    cluster_ips: list[str]
    port: int
    node_port: int | None
    external_ips: list[str]
    affinity: int | None  # ClientIP timeout seconds, None without affinity
    ext_local: bool
    int_local: bool
    endpoints: list[Endpoint]


def owns(chain: str) -> bool:
    """Whether ``chain`` is one of the service proxy's (other edgek parts, NetworkPolicy and
    the DNS, have ``EDGEK-`` chains of their own, which the proxy never touches)."""
    return chain in (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ, FORWARD) or chain.startswith(
        tuple(f"{PREFIX}{kind}-" for kind in KINDS)
    )


@functools.lru_cache(maxsize=1 << 16)
def chain_name(kind: str, *parts: str) -> str:
    """``EDGEK-<kind>-`` and 16 characters of a hash of the parts (as upstream names its
    chains: base32 of a SHA-256), so names are stable across restarts and ≤ 28 characters."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return f"{PREFIX}{kind}-{base64.b32encode(digest[:10]).decode()}"


def usable(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints that get traffic: the ready ones, else the serving terminating ones."""
    eps = list(endpoints)
    ready = [ep for ep in eps if ep.ready]
    return ready or [ep for ep in eps if ep.serving and ep.terminating]


def slice_endpoints(slices: Iterable[Mapping[str, Any]]) -> dict[str, list[Endpoint]]:
    """Endpoints per port name (``""`` for an unnamed port) from a service's IPv4
    EndpointSlices, each address once, sorted."""
    found: dict[str, dict[tuple[str, int], Endpoint]] = {}
    for es in slices:
        if es.get("addressType", "IPv4") != "IPv4":
            continue
        for port in es.get("ports") or []:
            number = port.get("port")
            if not isinstance(number, int):
                continue
            bucket = found.setdefault(port.get("name") or "", {})
            for ep in es.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                ready = cond.get("ready") is not False
                for ip in ep.get("addresses") or []:
                    bucket.setdefault(
                        (ip, number),
                        Endpoint(
                            ip=ip,
                            port=number,
                            node=ep.get("nodeName"),
                            ready=ready,
                            serving=cond.get("serving", ready) is not False,
                            terminating=cond.get("terminating") is True,
                        ),
                    )
    return {
        name: [bucket[k] for k in sorted(bucket, key=_ep_sort)] for name, bucket in found.items()
    }


def _ep_sort(key: tuple[str, int]) -> tuple[bytes, str, int]:
    try:
        return socket.inet_pton(socket.AF_INET, key[0]), "", key[1]
    except OSError:
        return b"", key[0], key[1]


def service_ports(svc: Mapping[str, Any], slices: Iterable[Mapping[str, Any]]) -> list[_Port]:
    """The ports of one Service that get rules (none for headless and ExternalName)."""
    spec = svc.get("spec") or {}
    meta = svc.get("metadata") or {}
    if spec.get("type") == "ExternalName":
        return []
    ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if _ipv4(ip)]
    if not ips:
        return []
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    lb_ips = [
        ing["ip"]
        for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if _ipv4(ing.get("ip"))
    ]
    eps = slice_endpoints(slices)
    ports = []
    for p in spec.get("ports") or []:
        name = p.get("name") or ""
        ports.append(
            _Port(
                key=f"{meta.get('namespace', '')}/{meta.get('name', '')}:{name}",
                protocol=(p.get("protocol") or "TCP").lower(),
                cluster_ips=ips,
                port=int(p["port"]),
                node_port=p.get("nodePort"),
                external_ips=[ip for ip in spec.get("externalIPs") or [] if _ipv4(ip)] + lb_ips,
                affinity=affinity,
                ext_local=spec.get("externalTrafficPolicy") == "Local",
                int_local=spec.get("internalTrafficPolicy") == "Local",
                endpoints=eps.get(name, []),
            )
        )
    return ports


def _ipv4(ip: object) -> bool:
    if not isinstance(ip, str):
        return False
    try:
        socket.inet_pton(socket.AF_INET, ip)
    except OSError:
        return False
    return True


#: Per-service rule fragments of the last build, by :func:`_fragment_key`.
Cache = dict[tuple[Any, ...], Ruleset]


def build(
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    node: NodeFacts,
    cache: Cache | None = None,
) -> Ruleset:
    """The whole ruleset for these Services and EndpointSlices on this node. With a
    ``cache`` (kept by the caller between builds), the rules of a service whose object and
    slices have the same resourceVersions as last time are reused rather than rebuilt."""
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for es in slices:
        meta = es.get("metadata") or {}
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            by_service.setdefault((meta.get("namespace", ""), owner), []).append(es)
    rs = _base()
    keyed = sorted(
        services,
        key=lambda s: ((s.get("metadata") or {}).get("namespace", ""), s["metadata"]["name"]),
    )
    used: Cache = {}
    for svc in keyed:
        meta = svc["metadata"]
        own = by_service.get((meta.get("namespace", ""), meta["name"]), [])
        key = _fragment_key(svc, own, node)
        fragment = cache.get(key) if cache is not None and key else None
        if fragment is None:
            fragment = Ruleset()
            for port in service_ports(svc, own):
                _add_port(fragment, port, node)
        if key:
            used[key] = fragment
        for table, chains in fragment.tables.items():
            for chain, rules in chains.items():
                rs.chain(table, chain).extend(rules)
    if cache is not None:
        cache.clear()
        cache.update(used)
    rs.chain("nat", SERVICES).append(
        "-m comment --comment edgek-nodeports -m addrtype --dst-type LOCAL -j " + NODEPORTS
    )
    return rs


def _fragment_key(
    svc: Mapping[str, Any], slices: list[Mapping[str, Any]], node: NodeFacts
) -> tuple[Any, ...]:
    """What a service's rules depend on, as resourceVersions; empty when one is missing."""
    versions = [str((o.get("metadata") or {}).get("resourceVersion") or "") for o in [svc, *slices]]
    if not all(versions):
        return ()
    meta = svc["metadata"]
    return (node, meta.get("namespace", ""), meta["name"], versions[0], *sorted(versions[1:]))


def _base() -> Ruleset:
    """The top-level chains with their fixed rules."""
    rs = Ruleset()
    for table, hooks in HOOKS.items():
        for _, chain, _ in hooks:
            rs.chain(table, chain)
    rs.chain("nat", NODEPORTS)
    rs.chain("nat", MARK_MASQ).append(f"-j MARK --or-mark {MASQ_MARK}")
    rs.chain("nat", POSTROUTING).extend(
        [
            f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
            f"-j MARK --xor-mark {MASQ_MARK}",
            "-m comment --comment edgek-masquerade -j MASQUERADE",
        ]
    )
    rs.chain("filter", FORWARD).append(
        f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -m comment --comment edgek-proxy-forward -j ACCEPT"
    )
    return rs


def _match(port: _Port, dst: str, dport: int) -> str:
    p = port.protocol
    return f"-d {dst}/32 -p {p} -m {p} --dport {dport}"


def _comment(port: _Port, what: str) -> str:
    return f'-m comment --comment "{port.key} {what}"'


def _add_port(rs: Ruleset, port: _Port, node: NodeFacts) -> None:
    """The rules of one service port."""
    eps = usable(port.endpoints)
    local = [ep for ep in eps if ep.node == node.name]
    cluster_eps = local if port.int_local else eps
    _add_cluster(rs, port, node, cluster_eps, bool(eps))
    if port.external_ips or port.node_port:
        _add_external(rs, port, node, cluster_eps, local if port.ext_local else eps)


def _add_cluster(
    rs: Ruleset, port: _Port, node: NodeFacts, cluster_eps: list[Endpoint], any_eps: bool
) -> None:
    """ClusterIP: the SVC chain and its entries, or the reject (drop when only a Local
    policy leaves no endpoint here)."""
    svc = chain_name("SVC", port.key, port.protocol)
    for ip in port.cluster_ips:
        if cluster_eps:
            rs.chain("nat", SERVICES).append(
                f"{_comment(port, 'cluster IP')} {_match(port, ip, port.port)} -j {svc}"
            )
        else:
            verdict = "DROP" if any_eps else "REJECT --reject-with icmp-port-unreachable"
            rs.chain("filter", SERVICES).append(
                f"{_comment(port, 'has no endpoints')} {_match(port, ip, port.port)} -j {verdict}"
            )
    if cluster_eps:
        chain = rs.chain("nat", svc)
        for ip in port.cluster_ips:
            chain.append(
                f"{_comment(port, 'cluster IP')} {_match(port, ip, port.port)} "
                f"! -s {node.cluster_cidr} -j {MARK_MASQ}"
            )
        _balance(rs, chain, port, cluster_eps)


def _add_external(
    rs: Ruleset, port: _Port, node: NodeFacts, cluster_eps: list[Endpoint], ext_eps: list[Endpoint]
) -> None:
    """NodePort, externalIPs and LoadBalancer IPs: the EXT chain and its entries."""
    if not ext_eps:
        drop = rs.chain("filter", SERVICES)
        for ip in port.external_ips:
            drop.append(
                f"{_comment(port, 'has no local endpoints')} {_match(port, ip, port.port)} -j DROP"
            )
        if port.node_port:
            drop.append(
                f"{_comment(port, 'has no local endpoints')} -m addrtype --dst-type LOCAL "
                f"-p {port.protocol} -m {port.protocol} --dport {port.node_port} -j DROP"
            )
        return
    svc = chain_name("SVC", port.key, port.protocol)
    ext = chain_name("EXT", port.key, port.protocol)
    for ip in port.external_ips:
        rs.chain("nat", SERVICES).append(
            f"{_comment(port, 'external IP')} {_match(port, ip, port.port)} -j {ext}"
        )
    if port.node_port:
        rs.chain("nat", NODEPORTS).append(
            f"{_comment(port, 'node port')} -p {port.protocol} -m {port.protocol} "
            f"--dport {port.node_port} -j {ext}"
        )
    chain = rs.chain("nat", ext)
    if not port.ext_local:
        chain.append(f"-j {MARK_MASQ}")
        if cluster_eps:
            chain.append(f"-j {svc}")
        else:  # internal policy Local left the SVC chain out: balance here
            _balance(rs, chain, port, ext_eps)
        return
    # Local: pods and the node itself may still go anywhere; outside clients keep their IP
    if cluster_eps:
        chain.append(f"-s {node.cluster_cidr} -j {svc}")
    chain.append(f"-m addrtype --src-type LOCAL -j {MARK_MASQ}")
    svl = chain_name("SVL", port.key, port.protocol)
    chain.append(f"-j {svl}")
    _balance(rs, rs.chain("nat", svl), port, ext_eps)


def _balance(rs: Ruleset, chain: list[str], port: _Port, eps: list[Endpoint]) -> None:
    """Affinity checks, then the random spread over ``eps``, each to its SEP chain."""
    seps = [chain_name("SEP", port.key, port.protocol, f"{ep.ip}:{ep.port}") for ep in eps]
    if port.affinity is not None:
        for sep in seps:
            chain.append(
                f"-m recent --name {sep} --mask 255.255.255.255 --rsource "
                f"--rcheck --seconds {port.affinity} --reap -j {sep}"
            )
    n = len(seps)
    for i, (ep, sep) in enumerate(zip(eps, seps, strict=True)):
        spread = (
            "" if i == n - 1 else f"-m statistic --mode random --probability {1 / (n - i):.10f} "
        )
        chain.append(f'-m comment --comment "{port.key} -> {ep.ip}:{ep.port}" {spread}-j {sep}')
        rules = rs.chain("nat", sep)
        if rules:
            continue  # already written by another entry chain of this port
        sticky = (
            f"-m recent --name {sep} --mask 255.255.255.255 --rsource --set "
            if port.affinity is not None
            else ""
        )
        rules.extend(
            [
                f"-s {ep.ip}/32 -j {MARK_MASQ}",
                f"-p {port.protocol} {sticky}-m {port.protocol} -j DNAT --to-destination {ep.ip}:{ep.port}",
            ]
        )


def render(
    rs: Ruleset,
    present: Mapping[str, set[str]] | None = None,
    hooked: Mapping[str, set[str]] | None = None,
    unchanged: Mapping[str, set[str]] | None = None,
) -> str:
    """``iptables-restore --noflush`` input: every chain of ``rs`` declared (which empties
    it) and filled, except those in ``unchanged`` (left as they are); the proxy's chains in
    ``present`` (per table) that ``rs`` no longer has emptied and deleted; the jump from a
    built-in chain added for each hook not in ``hooked`` (rule texts as
    :func:`hook_rule` writes them)."""
    present = present or {}
    hooked = hooked or {}
    unchanged = unchanged or {}
    out: list[str] = []
    for table in sorted(set(rs.tables) | set(present)):
        chains = rs.tables.get(table, {})
        keep = unchanged.get(table, set())
        stale = sorted(c for c in present.get(table, set()) if owns(c) and c not in chains)
        out.append(f"*{table}")
        out.extend(f":{c} - [0:0]" for c in chains if c not in keep)
        out.extend(f":{c} - [0:0]" for c in stale)
        for builtin, target, extra in HOOKS.get(table, ()):
            rule = hook_rule(builtin, target, extra)
            if rule not in hooked.get(table, set()):
                out.append(f"-I {rule}")
        for c, rules in chains.items():
            if c not in keep:
                out.extend(f"-A {c} {r}" for r in rules)
        out.extend(f"-X {c}" for c in stale)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def hook_rule(builtin: str, target: str, extra: str) -> str:
    """The jump from a built-in chain to an edgek chain, as ``iptables-save`` prints it
    (without the leading ``-A``)."""
    return f"{builtin} {extra} -j {target}"
