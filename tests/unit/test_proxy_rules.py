"""The service proxy's ruleset generator (netpolicy/proxy.py): golden rule snippets per
feature, determinism and the restore text."""

from __future__ import annotations

from typing import Any

from netpolicy.proxy import (
    MARK_MASQ,
    NODEPORTS,
    SERVICES,
    NodeFacts,
    Ruleset,
    build,
    chain_name,
    render,
)

NODE = NodeFacts("n1", cluster_cidr="10.42.0.0/16")
KEY = "default/web:http"
SVC = chain_name("SVC", KEY, "tcp")
EXT = chain_name("EXT", KEY, "tcp")
SVL = chain_name("SVL", KEY, "tcp")


def sep(ip: str, port: int = 8080) -> str:
    """The SEP chain of one endpoint of default/web:http."""
    return chain_name("SEP", KEY, "tcp", f"{ip}:{port}")


def service(**spec: Any) -> dict[str, Any]:
    """default/web with one TCP port 80 named http and the given spec fields."""
    base: dict[str, Any] = {
        "clusterIP": "10.43.0.20",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    status = spec.pop("status", {})
    return {
        "metadata": {"namespace": "default", "name": "web"},
        "spec": base | spec,
        "status": status,
    }


def endpoint(ip: str, node: str = "n1", **cond: bool) -> dict[str, Any]:
    """One EndpointSlice endpoint (ready unless told)."""
    return {"addresses": [ip], "nodeName": node, "conditions": {"ready": True} | cond}


def eslice(*eps: dict[str, Any], name: str = "web-a") -> dict[str, Any]:
    """An EndpointSlice of default/web with port http -> 8080."""
    return {
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": list(eps),
    }


def nat(rs: Ruleset, chain: str) -> list[str]:
    """The nat rules of one chain (empty when the chain does not exist)."""
    return rs.tables["nat"].get(chain, [])


def test_cluster_ip_spreads_over_ready_endpoints() -> None:
    rs = build(
        [service()],
        [eslice(endpoint("10.42.0.5"), endpoint("10.42.1.6", "n2"), endpoint("10.42.0.7"))],
        NODE,
    )
    assert (
        f'-m comment --comment "{KEY} cluster IP" -d 10.43.0.20/32 -p tcp -m tcp --dport 80 '
        f"-j {SVC}"
    ) in nat(rs, SERVICES)
    assert nat(rs, SVC) == [
        f'-m comment --comment "{KEY} cluster IP" -d 10.43.0.20/32 -p tcp -m tcp --dport 80 '
        f"! -s 10.42.0.0/16 -j {MARK_MASQ}",
        f'-m comment --comment "{KEY} -> 10.42.0.5:8080" -m statistic --mode random '
        f"--probability 0.3333333333 -j {sep('10.42.0.5')}",
        f'-m comment --comment "{KEY} -> 10.42.0.7:8080" -m statistic --mode random '
        f"--probability 0.5000000000 -j {sep('10.42.0.7')}",
        f'-m comment --comment "{KEY} -> 10.42.1.6:8080" -j {sep("10.42.1.6")}',
    ]
    assert nat(rs, sep("10.42.0.5")) == [
        f"-s 10.42.0.5/32 -j {MARK_MASQ}",
        "-p tcp -m tcp -j DNAT --to-destination 10.42.0.5:8080",
    ]
    # the node-port jump comes last
    assert nat(rs, SERVICES)[-1].endswith(f"--dst-type LOCAL -j {NODEPORTS}")


def test_only_ready_endpoints_then_terminating_fallback() -> None:
    rs = build(
        [service()],
        [eslice(endpoint("10.42.0.5"), endpoint("10.42.0.6", ready=False))],
        NODE,
    )
    assert sep("10.42.0.6") not in rs.tables["nat"]
    fallback = build(
        [service()],
        [
            eslice(
                endpoint("10.42.0.5", ready=False, serving=True, terminating=True),
                endpoint("10.42.0.6", ready=False, serving=False, terminating=True),
            )
        ],
        NODE,
    )
    assert sep("10.42.0.5") in fallback.tables["nat"]
    assert sep("10.42.0.6") not in fallback.tables["nat"]


def test_no_endpoints_rejects() -> None:
    rs = build([service()], [eslice(endpoint("10.42.0.5", ready=False))], NODE)
    assert SVC not in rs.tables["nat"]
    assert rs.tables["filter"][SERVICES] == [
        f'-m comment --comment "{KEY} has no endpoints" -d 10.43.0.20/32 -p tcp -m tcp '
        "--dport 80 -j REJECT --reject-with icmp-port-unreachable"
    ]


def test_headless_and_external_name_get_no_rules() -> None:
    headless = build([service(clusterIP="None")], [eslice(endpoint("10.42.0.5"))], NODE)
    external = build([service(type="ExternalName", externalName="example.test")], [], NODE)
    for rs in (headless, external):
        assert len(nat(rs, SERVICES)) == 1  # the node-port jump only
        assert not any(c.startswith(("EDGEK-SVC-", "EDGEK-SEP-")) for c in rs.tables["nat"])


def test_node_port_external_ip_and_load_balancer() -> None:
    rs = build(
        [
            service(
                type="LoadBalancer",
                ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
                externalIPs=["192.0.2.9"],
                status={"loadBalancer": {"ingress": [{"ip": "10.99.0.2"}]}},
            )
        ],
        [eslice(endpoint("10.42.0.5"))],
        NODE,
    )
    assert nat(rs, NODEPORTS) == [
        f'-m comment --comment "{KEY} node port" -p tcp -m tcp --dport 30080 -j {EXT}'
    ]
    for ip in ("192.0.2.9", "10.99.0.2"):
        assert (
            f'-m comment --comment "{KEY} external IP" -d {ip}/32 -p tcp -m tcp --dport 80 -j {EXT}'
        ) in nat(rs, SERVICES)
    assert nat(rs, EXT) == [f"-j {MARK_MASQ}", f"-j {SVC}"]


def test_external_traffic_policy_local_keeps_source() -> None:
    rs = build(
        [
            service(
                type="NodePort",
                externalTrafficPolicy="Local",
                ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
            )
        ],
        [eslice(endpoint("10.42.0.5"), endpoint("10.42.1.6", "n2"))],
        NODE,
    )
    assert nat(rs, EXT) == [
        f"-s 10.42.0.0/16 -j {SVC}",
        f"-m addrtype --src-type LOCAL -j {MARK_MASQ}",
        f"-j {SVL}",
    ]
    assert nat(rs, SVL) == [f'-m comment --comment "{KEY} -> 10.42.0.5:8080" -j {sep("10.42.0.5")}']
    # on a node without a local endpoint, the node port drops
    other = build(
        [service(type="NodePort", externalTrafficPolicy="Local", ports=nat_ports())],
        [eslice(endpoint("10.42.1.6", "n2"))],
        NODE,
    )
    assert EXT not in other.tables["nat"]
    assert other.tables["filter"][SERVICES] == [
        f'-m comment --comment "{KEY} has no local endpoints" -m addrtype --dst-type LOCAL '
        "-p tcp -m tcp --dport 30080 -j DROP"
    ]


def nat_ports() -> list[dict[str, Any]]:
    """Port http 80 with node port 30080."""
    return [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]


def test_internal_traffic_policy_local() -> None:
    rs = build(
        [service(internalTrafficPolicy="Local")],
        [eslice(endpoint("10.42.0.5"), endpoint("10.42.1.6", "n2"))],
        NODE,
    )
    assert sep("10.42.1.6") not in rs.tables["nat"]
    assert (
        nat(rs, SVC)[-1] == f'-m comment --comment "{KEY} -> 10.42.0.5:8080" -j {sep("10.42.0.5")}'
    )
    none_here = build(
        [service(internalTrafficPolicy="Local")], [eslice(endpoint("10.42.1.6", "n2"))], NODE
    )
    assert none_here.tables["filter"][SERVICES][0].endswith("--dport 80 -j DROP")


def test_session_affinity_client_ip() -> None:
    rs = build(
        [
            service(
                sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
            )
        ],
        [eslice(endpoint("10.42.0.5"))],
        NODE,
    )
    s = sep("10.42.0.5")
    assert nat(rs, SVC)[1] == (
        f"-m recent --name {s} --mask 255.255.255.255 --rsource --rcheck --seconds 60 --reap -j {s}"
    )
    assert nat(rs, s)[1] == (
        f"-p tcp -m recent --name {s} --mask 255.255.255.255 --rsource --set -m tcp "
        "-j DNAT --to-destination 10.42.0.5:8080"
    )


def test_endpoints_merge_across_slices_and_ports_by_name() -> None:
    udp = service(
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]
    )
    a = eslice(endpoint("10.42.0.5"), name="web-a")
    b = eslice(endpoint("10.42.0.5"), endpoint("10.42.0.6"), name="web-b")
    rs = build([udp], [a, b], NODE)
    assert len([r for r in nat(rs, SVC) if "-> " in r]) == 2
    # no slice carries the dns port: it has no endpoints
    dns = chain_name("SVC", "default/web:dns", "udp")
    assert dns not in rs.tables["nat"]
    assert "-p udp -m udp --dport 53 -j REJECT" in rs.tables["filter"][SERVICES][0]


def test_chain_names_are_stable_and_short() -> None:
    assert chain_name("SVC", KEY, "tcp") == SVC
    assert len(SVC) <= 28
    assert chain_name("SVC", KEY, "udp") != SVC


def test_same_input_any_order_same_ruleset() -> None:
    other = service()
    other["metadata"] = {"namespace": "default", "name": "api"}
    slices = [eslice(endpoint("10.42.0.6"), endpoint("10.42.0.5"))]
    one = render(build([service(), other], slices, NODE))
    two = render(build([other, service()], list(reversed(slices)), NODE))
    assert one == two


def test_render_deletes_stale_chains_and_adds_missing_hooks_only() -> None:
    rs = build([service()], [eslice(endpoint("10.42.0.5"))], NODE)
    stale = "EDGEK-SVC-AAAAAAAAAAAAAAAA"
    text = render(
        rs,
        present={"nat": {stale, SVC, "KUBE-SERVICES"}},
        hooked={"nat": {"PREROUTING -m comment --comment edgek-services -j EDGEK-SERVICES"}},
        unchanged={"nat": {SVC}},
    )
    lines = text.splitlines()
    assert f":{stale} - [0:0]" in lines
    assert f"-X {stale}" in lines
    assert "KUBE-SERVICES" not in text  # someone else's chain is never named
    assert f":{SVC} - [0:0]" not in lines  # unchanged: left alone
    assert not any(line.startswith(f"-A {SVC} ") for line in lines)
    assert "-I PREROUTING -m comment --comment edgek-services -j EDGEK-SERVICES" not in lines
    assert "-I OUTPUT -m comment --comment edgek-services -j EDGEK-SERVICES" in lines
    assert lines.count("COMMIT") == 2


def test_cache_reuses_unchanged_services_and_follows_changes() -> None:
    svc = service()
    svc["metadata"]["resourceVersion"] = "1"
    es = eslice(endpoint("10.42.0.5"), endpoint("10.42.0.6"))
    es["metadata"]["resourceVersion"] = "1"
    cache: dict[tuple[object, ...], Ruleset] = {}
    first = build([svc], [es], NODE, cache)
    assert build([svc], [es], NODE, cache).tables == first.tables
    assert len(cache) == 1
    es["endpoints"][1]["conditions"]["ready"] = False  # the same resourceVersion: reused
    assert build([svc], [es], NODE, cache).tables == first.tables
    es["metadata"]["resourceVersion"] = "2"
    changed = build([svc], [es], NODE, cache)
    assert changed.tables == build([svc], [es], NODE).tables
    assert sep("10.42.0.6") not in changed.tables["nat"]
    assert len(cache) == 1  # the old entry is dropped
