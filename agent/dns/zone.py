"""The cluster domain's records, computed from Services and EndpointSlices as CoreDNS's
kubernetes plugin answers them:

- ``<svc>.<ns>.svc.<domain>``: the ClusterIPs (A/AAAA), or for a headless service the ready
  endpoint addresses; an ExternalName service is a CNAME to its external name;
- ``<hostname>.<svc>.<ns>.svc.<domain>``: an endpoint with a hostname (StatefulSet pods
  under their governing headless service), and ``<a-b-c-d>.<svc>.<ns>.svc.<domain>``;
- ``_<port>._<proto>.<svc>.<ns>.svc.<domain>``: SRV for each named port;
- ``<a-b-c-d>.<ns>.pod.<domain>``: the address spelled in the name;
- PTR for ClusterIPs and endpoint addresses.

A name in the domain with no records of the asked type answers NOERROR (it exists) or
NXDOMAIN, both with the zone's SOA for negative caching (RFC 2308).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.dns.wire import (
    CNAME,
    NOERROR,
    NXDOMAIN,
    PTR,
    SOA,
    SRV,
    Record,
    address_rdata,
    encode_name,
    soa_rdata,
    srv_rdata,
)

#: TTL of the records and of negative answers (CoreDNS's kubernetes plugin default).
TTL = 5
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass
class Answer:
    """What the zone answers: RCODE, answer and authority records."""

    rcode: int
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)


def reverse_name(ip: str) -> str:
    """The ``in-addr.arpa`` / ``ip6.arpa`` name of an address."""
    return ipaddress.ip_address(ip).reverse_pointer


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _ready(endpoint: Mapping[str, Any]) -> bool:
    return (endpoint.get("conditions") or {}).get("ready") is not False


class Zone:
    """The records of one cluster domain, built once from the objects (see module doc)."""

    def __init__(
        self,
        domain: str,
        services: Iterable[Mapping[str, Any]],
        slices: Iterable[Mapping[str, Any]],
    ) -> None:
        self.domain = domain.strip(".").lower()
        self.records: dict[str, list[Record]] = defaultdict(list)
        self.reverse: dict[str, list[Record]] = defaultdict(list)
        by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        for es in slices:
            meta = es.get("metadata") or {}
            owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            if owner:
                by_service[(meta.get("namespace") or "", owner)].append(es)
        for svc in services:
            meta = svc.get("metadata") or {}
            key = (meta.get("namespace") or "", meta.get("name") or "")
            self._service(svc, by_service.get(key, []))
        self.names = set(self.records)
        for name in list(self.records):
            labels = name.split(".")
            self.names.update(".".join(labels[i:]) for i in range(1, len(labels)))
        self.soa = Record(
            self.domain,
            SOA,
            TTL,
            soa_rdata(f"ns.dns.{self.domain}", f"hostmaster.{self.domain}", 1, TTL),
        )

    def _add(self, name: str, rtype: int, rdata: bytes) -> None:
        self.records[name].append(Record(name, rtype, TTL, rdata))

    def _address(self, name: str, ip: str, ptr: bool = True) -> None:
        self._add(name, *address_rdata(ip))
        if ptr:
            self.reverse[reverse_name(ip)].append(Record("", PTR, TTL, encode_name(name)))

    def _service(self, svc: Mapping[str, Any], slices: list[Mapping[str, Any]]) -> None:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        base = f"{meta.get('name')}.{meta.get('namespace')}.svc.{self.domain}".lower()
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                self._add(base, CNAME, encode_name(str(spec["externalName"])))
            return
        ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
        if ips and ips[0] != "None":
            for ip in ips:
                self._address(base, ip)
            for port in spec.get("ports") or []:
                self._srv(base, port, base)
            return
        for es in slices:
            for ep in es.get("endpoints") or []:
                if _ready(ep):
                    self._endpoint(base, es, ep)

    def _endpoint(self, base: str, es: Mapping[str, Any], ep: Mapping[str, Any]) -> None:
        for ip in ep.get("addresses") or []:
            host = f"{(ep.get('hostname') or _dashed(ip)).lower()}.{base}"
            self._address(base, ip, ptr=False)
            self._address(host, ip)
            for port in es.get("ports") or []:
                self._srv(base, port, host)

    def _srv(self, base: str, port: Mapping[str, Any], target: str) -> None:
        name, number = port.get("name"), port.get("port")
        if name and number:
            proto = str(port.get("protocol") or "TCP").lower()
            self._add(f"_{name}._{proto}.{base}".lower(), SRV, srv_rdata(0, 100, number, target))

    def in_zone(self, name: str) -> bool:
        """Whether ``name`` is the cluster domain or under it."""
        return name == self.domain or name.endswith("." + self.domain)

    def lookup(self, name: str, qtype: int) -> Answer:
        """The answer for ``name`` (in the zone) and ``qtype``."""
        records = self.records.get(name) or self._pod(name)
        if records:
            cname = [r for r in records if r.rtype == CNAME]
            found = cname or [r for r in records if r.rtype == qtype]
            return Answer(NOERROR, found, [] if found else [self.soa])
        if name in self.names or name == self.domain:
            if name == self.domain and qtype == SOA:
                return Answer(NOERROR, [self.soa])
            return Answer(NOERROR, [], [self.soa])
        return Answer(NXDOMAIN, [], [self.soa])

    def _pod(self, name: str) -> list[Record]:
        """``<a-b-c-d>.<ns>.pod.<domain>``: the address in the name."""
        labels = name.split(".")
        if len(labels) < 4 or ".".join(labels[2:]) != f"pod.{self.domain}":
            return []
        dashed = labels[0]
        text = dashed.replace("-", ".") if dashed.count("-") == 3 else dashed.replace("-", ":")
        try:
            rtype, rdata = address_rdata(text)
        except ValueError:
            return []
        return [Record(name, rtype, TTL, rdata)]

    def lookup_ptr(self, name: str) -> Answer | None:
        """The PTR answer for a reverse name, None when it is not a cluster address."""
        records = self.reverse.get(name)
        if not records:
            return None
        return Answer(NOERROR, [Record(name, r.rtype, r.ttl, r.rdata) for r in records])
