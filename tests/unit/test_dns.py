"""The cluster DNS's pure parts: the wire codec, the zone computed from Services and
EndpointSlices, the resolver settings of pods, the upstream list and the DNAT rules."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.dns import wire
from agent.dns.rules import dnat_rules
from agent.dns.server import WatchCache, upstream_resolvers
from agent.dns.zone import Zone
from agent.pods.spec import pod_dns, sandbox_spec
from edgek.apiclient import ApiClientError

D = "cluster.local"


def service(name: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint_slice(
    svc: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{svc}-abc",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": svc},
        },
        "endpoints": endpoints,
        "ports": ports or [],
    }


WEB_PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]
SERVICES = [
    service("web", clusterIP="10.43.0.20", clusterIPs=["10.43.0.20", "fd00::20"], ports=WEB_PORTS),
    service("db", clusterIP="None"),
    service("ext", type="ExternalName", externalName="example.org"),
]
SLICES = [
    endpoint_slice(
        "db",
        [
            {"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": True}},
            {"addresses": ["10.42.0.8"], "conditions": {"ready": True}},
            {"addresses": ["10.42.0.9"], "hostname": "db-2", "conditions": {"ready": False}},
        ],
        [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    ),
    endpoint_slice("web", [{"addresses": ["10.42.0.3"], "conditions": {"ready": True}}]),
]


@pytest.fixture
def zone() -> Zone:
    return Zone(D, SERVICES, SLICES)


def ips(records: list[wire.Record]) -> list[str]:
    return [str(ipaddress.ip_address(r.rdata)) for r in records]


def name_of(rdata: bytes, offset: int = 0) -> str:
    return wire.decode_name(rdata, offset)[0]


def test_query_round_trip_and_edns() -> None:
    query = wire.parse_query(wire.build_query("Web.Shop.svc.cluster.local.", wire.A, 7))
    assert (query.id, query.name, query.qtype, query.qclass) == (
        7,
        "web.shop.svc.cluster.local",
        wire.A,
        wire.IN,
    )
    assert (query.edns, query.udp_size) == (False, 512)
    edns = wire.parse_query(wire.build_query("x.", wire.A, edns=1232))
    assert (edns.edns, edns.udp_size) == (True, 1232)


def test_compressed_names_and_malformed_messages() -> None:
    msg = b"\0" * 12 + b"\3abc\0" + b"\3xyz\xc0\x0c"
    assert wire.decode_name(msg, 17) == ("xyz.abc", 23)
    with pytest.raises(wire.WireError):
        wire.decode_name(b"\xc0\x00", 0)  # a pointer to itself
    with pytest.raises(wire.WireError):
        wire.parse_query(b"\0\1\0")
    with pytest.raises(wire.WireError):
        wire.encode_name("a" * 64 + ".b")
    bad = struct.pack("!HHHHHH", 9, wire.RD, 2, 0, 0, 0)
    reply = wire.parse_response(wire.error_response(bad, wire.FORMERR) or b"")
    assert (reply.id, reply.rcode) == (9, wire.FORMERR)
    assert wire.error_response(b"\0", wire.FORMERR) is None


def test_response_truncates_past_the_limit() -> None:
    query = wire.parse_query(wire.build_query("a.b", wire.A, 3))
    answers = [wire.Record("a.b", wire.A, 5, bytes([10, 0, 0, i])) for i in range(40)]
    full = wire.parse_response(wire.build_response(query, wire.NOERROR, answers))
    assert len(full.answers) == 40 and not full.flags & wire.TC
    cut = wire.parse_response(wire.build_response(query, wire.NOERROR, answers, limit=512))
    assert cut.answers == [] and cut.flags & wire.TC and cut.flags & wire.AA


def test_cluster_ip_service_a_aaaa_and_srv(zone: Zone) -> None:
    base = "web.shop.svc.cluster.local"
    assert ips(zone.lookup(base, wire.A).answers) == ["10.43.0.20"]
    assert ips(zone.lookup(base, wire.AAAA).answers) == ["fd00::20"]
    srv = zone.lookup(f"_http._tcp.{base}", wire.SRV).answers
    assert [struct.unpack_from("!HHH", r.rdata)[2] for r in srv] == [80]
    assert name_of(srv[0].rdata, 6) == base
    assert zone.lookup(f"_http._udp.{base}", wire.SRV).rcode == wire.NXDOMAIN


def test_headless_service_statefulset_names_and_srv(zone: Zone) -> None:
    base = "db.shop.svc.cluster.local"
    assert sorted(ips(zone.lookup(base, wire.A).answers)) == ["10.42.0.7", "10.42.0.8"]
    assert ips(zone.lookup(f"db-0.{base}", wire.A).answers) == ["10.42.0.7"]
    assert ips(zone.lookup(f"10-42-0-8.{base}", wire.A).answers) == ["10.42.0.8"]
    assert zone.lookup(f"db-2.{base}", wire.A).rcode == wire.NXDOMAIN  # not ready
    targets = sorted(name_of(r.rdata, 6) for r in zone.lookup(f"_pg._tcp.{base}", wire.SRV).answers)
    assert targets == [f"10-42-0-8.{base}", f"db-0.{base}"]


def test_external_name_is_a_cname(zone: Zone) -> None:
    answer = zone.lookup("ext.shop.svc.cluster.local", wire.A)
    assert [r.rtype for r in answer.answers] == [wire.CNAME]
    assert name_of(answer.answers[0].rdata) == "example.org"


def test_ptr_for_cluster_ips_and_endpoints(zone: Zone) -> None:
    ptr = zone.lookup_ptr("20.0.43.10.in-addr.arpa")
    assert ptr is not None and name_of(ptr.answers[0].rdata) == "web.shop.svc.cluster.local"
    ptr6 = zone.lookup_ptr(ipaddress.ip_address("fd00::20").reverse_pointer)
    assert ptr6 is not None and name_of(ptr6.answers[0].rdata) == "web.shop.svc.cluster.local"
    pod = zone.lookup_ptr("7.0.42.10.in-addr.arpa")
    assert pod is not None and name_of(pod.answers[0].rdata) == "db-0.db.shop.svc.cluster.local"
    assert zone.lookup_ptr("1.1.168.192.in-addr.arpa") is None  # forwarded


def test_pod_names(zone: Zone) -> None:
    assert ips(zone.lookup("10-42-0-5.shop.pod.cluster.local", wire.A).answers) == ["10.42.0.5"]
    assert zone.lookup("nonsense.shop.pod.cluster.local", wire.A).rcode == wire.NXDOMAIN


def test_negative_answers_carry_the_soa(zone: Zone) -> None:
    missing = zone.lookup("nope.shop.svc.cluster.local", wire.A)
    assert missing.rcode == wire.NXDOMAIN and [r.rtype for r in missing.authority] == [wire.SOA]
    soa = missing.authority[0]
    mname, offset = wire.decode_name(soa.rdata, 0)
    rname, offset = wire.decode_name(soa.rdata, offset)
    assert (mname, rname) == ("ns.dns.cluster.local", "hostmaster.cluster.local")
    assert struct.unpack_from("!IIIII", soa.rdata, offset)[4] == soa.ttl == 5
    # names that exist without records of the type: NOERROR/NODATA with the SOA
    for name, qtype in [
        ("db.shop.svc.cluster.local", wire.AAAA),
        ("shop.svc.cluster.local", wire.A),
        ("svc.cluster.local", wire.A),
    ]:
        nodata = zone.lookup(name, qtype)
        assert (nodata.rcode, nodata.answers) == (wire.NOERROR, []), name
        assert [r.rtype for r in nodata.authority] == [wire.SOA]
    assert zone.lookup("cluster.local", wire.SOA).answers == [soa]
    assert zone.in_zone("cluster.local") and not zone.in_zone("xcluster.local")


POD = {"metadata": {"name": "p", "namespace": "shop", "uid": "u1"}, "spec": {}}
CLUSTER = ("10.43.0.10", D)


def test_cluster_first_pods_resolve_with_the_cluster_dns() -> None:
    body = sandbox_spec(POD, "n", "net", cluster_dns=CLUSTER)
    assert {k: body[k] for k in ("dns_server", "dns_search", "dns_option")} == {
        "dns_server": ["10.43.0.10"],
        "dns_search": ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        "dns_option": ["ndots:5"],
    }
    host = {**POD, "spec": {"hostNetwork": True}}
    assert pod_dns(host, CLUSTER) == {}  # ClusterFirst on the host network: the node's
    with_host = {**POD, "spec": {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}}
    assert pod_dns(with_host, CLUSTER)["dns_server"] == ["10.43.0.10"]
    assert pod_dns({**POD, "spec": {"dnsPolicy": "Default"}}, CLUSTER) == {}
    assert pod_dns(POD, None) == {}  # --disable dns


def test_dns_config_adds_to_the_policy() -> None:
    config = {
        "nameservers": ["1.2.3.4"],
        "searches": ["corp.example", "svc.cluster.local"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    merged = pod_dns({**POD, "spec": {"dnsConfig": config}}, CLUSTER)
    assert merged == {
        "dns_server": ["10.43.0.10", "1.2.3.4"],
        "dns_search": [
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
        ],
        "dns_option": ["ndots:2", "edns0"],
    }
    alone = pod_dns({**POD, "spec": {"dnsPolicy": "None", "dnsConfig": config}}, CLUSTER)
    assert alone["dns_server"] == ["1.2.3.4"]
    assert alone["dns_search"] == ["corp.example", "svc.cluster.local"]


def test_upstream_resolvers_skip_loopback_stubs(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nsearch a\n")
    assert upstream_resolvers(conf) == ["192.0.2.1"]
    conf.write_text("nameserver 10.0.0.2\nnameserver fe80::1%eth0\n")
    assert upstream_resolvers(conf) == ["10.0.0.2", "fe80::1%eth0"]
    assert upstream_resolvers(tmp_path / "missing") == []


def test_dnat_rules_target_the_listener() -> None:
    rules = dnat_rules("10.43.0.10", "10.42.0.1")
    assert rules.startswith("*nat\n:EDGEK-DNS - [0:0]\n") and rules.endswith("COMMIT\n")
    for proto in ("udp", "tcp"):
        assert (
            f"-A EDGEK-DNS -d 10.43.0.10/32 -p {proto} -m {proto} --dport 53 "
            '-m comment --comment "edgek cluster DNS" -j DNAT --to-destination 10.42.0.1:53'
        ) in rules


class FakeApi:
    """Lists and watches of services and endpointslices; then the server goes away."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def request(self, method: str, path: str) -> dict[str, Any]:
        items = SERVICES if path.endswith("/services") else SLICES
        return {"metadata": {"resourceVersion": "5"}, "items": items}

    async def watch(self, path: str, version: str) -> AsyncIterator[dict[str, Any]]:
        assert version == "5"
        if path.endswith("/services"):
            while (event := await self.events.get()) is not None:
                yield event
        raise ApiClientError("connection refused", 0)


async def test_watch_cache_follows_and_keeps_its_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.dns.server.SAVE_DELAY", 0.01)
    state = tmp_path / "dns.json"
    api = FakeApi()
    cache = WatchCache(lambda: api, D, state)  # type: ignore[arg-type,return-value]
    task = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(cache.synced.wait(), 5)
        assert ips(cache.zone.lookup("web.shop.svc.cluster.local", wire.A).answers)
        new = service("api", clusterIP="10.43.0.30")
        await api.events.put({"type": "ADDED", "object": new})
        await api.events.put({"type": "DELETED", "object": SERVICES[0]})
        await api.events.put(None)  # the API server goes away
        for _ in range(100):
            if cache.zone.lookup("api.shop.svc.cluster.local", wire.A).answers:
                break
            await asyncio.sleep(0.01)
        assert ips(cache.zone.lookup("api.shop.svc.cluster.local", wire.A).answers) == [
            "10.43.0.30"
        ]
        assert cache.zone.lookup("web.shop.svc.cluster.local", wire.A).rcode == wire.NXDOMAIN
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # an agent restarted while the API server is unreachable answers from the saved view
    for _ in range(100):
        if state.exists() and "10.43.0.30" in state.read_text():
            break
        await asyncio.sleep(0.01)
    offline = WatchCache(lambda: None, D, state)
    task = asyncio.create_task(offline.run())
    try:
        for _ in range(100):
            if offline.zone.lookup("api.shop.svc.cluster.local", wire.A).answers:
                break
            await asyncio.sleep(0.01)
        assert ips(offline.zone.lookup("api.shop.svc.cluster.local", wire.A).answers) == [
            "10.43.0.30"
        ]
        assert not offline.synced.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
