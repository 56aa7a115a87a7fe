"""netpolicy/policy.py: the generated rules, run by a small evaluator of the iptables and
ipset semantics they use, against packets; and golden snippets of the restore texts."""

from __future__ import annotations

import asyncio
import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any

import pytest

from edgek.apiclient import ApiClient
from edgek.tasks import cancel_and_wait
from netpolicy.controller import PolicyController
from netpolicy.policy import Ruleset, build

LOCAL = {"shop/web", "shop/db", "other/client"}


def pod(
    ns: str, name: str, ip: str, labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """A running pod; ``ports`` = [(name, number, protocol)] on its one container."""
    ports = [
        {"name": n, "containerPort": number, "protocol": proto}
        for n, number, proto in extra.get("ports", [])
    ]
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
        "spec": {
            "containers": [{"name": "c", "ports": ports}],
            "hostNetwork": extra.get("host", False),
        },
        "status": {"podIP": ip, "phase": extra.get("phase", "Running")},
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    """A namespace (without the name label: the generator adds it)."""
    return {"metadata": {"name": name, "labels": labels}}


def policy(
    ns: str, name: str, selector: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A NetworkPolicy; ``policy_types`` sets spec.policyTypes."""
    if "policy_types" in spec:
        spec["policyTypes"] = spec.pop("policy_types")
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"podSelector": selector or {}, **spec},
    }


PODS = [
    pod(
        "shop",
        "web",
        "10.42.0.10",
        {"app": "web"},
        ports=[("http", 8080, "TCP"), ("dns", 53, "UDP")],
    ),
    pod("shop", "db", "10.42.0.11", {"app": "db"}, ports=[("sql", 5432, "TCP")]),
    pod("shop", "remote", "10.42.1.12", {"app": "web"}, ports=[("http", 9090, "TCP")]),
    pod("other", "client", "10.42.0.20", {"app": "client"}),
    pod("other", "remote", "10.42.1.21", {"app": "web"}),
    pod("prod", "api", "10.42.1.30", {"app": "api"}, ports=[("http", 7070, "TCP")]),
]
NAMESPACES = [
    namespace("shop", team="a"),
    namespace("other", team="b"),
    namespace("prod", team="a"),
]
WEB, DB, REMOTE_WEB, CLIENT, OTHER_REMOTE, API = (p["status"]["podIP"] for p in PODS)
OUTSIDE = "192.168.5.5"


@dataclass
class Rule:
    """One parsed ``-A`` line."""

    src: str | None = None
    dst: str | None = None
    proto: str | None = None
    dports: tuple[int, int] | None = None
    sets: tuple[tuple[str, str], ...] = ()
    states: frozenset[str] | None = None
    target: str = ""


SIMPLE = {"-s": "src", "-d": "dst", "-p": "proto"}  # options that set one Rule field
IGNORED = {("-m", m) for m in ("set", "conntrack", "comment", "tcp", "udp", "sctp")}


def parse_rule(text: str) -> Rule:
    """The options our generator uses; any other option fails the test."""
    rule = Rule()
    words = shlex.split(text)
    i = 0
    while i < len(words):
        word, arg = words[i], words[i + 1] if i + 1 < len(words) else ""
        i += 2
        if word in SIMPLE:
            setattr(rule, SIMPLE[word], arg)
        elif word == "--dport":
            low, _, high = arg.partition(":")
            rule.dports = (int(low), int(high or low))
        elif word == "--match-set":
            rule.sets += ((arg, words[i]),)
            i += 1
        elif word == "--ctstate":
            rule.states = frozenset(arg.split(","))
        elif word == "-j":
            rule.target = arg
            break
        elif (word, arg) not in IGNORED and word != "--comment":
            raise AssertionError(f"unexpected option {word} in {text!r}")
    return rule


class Evaluator:
    """Runs a packet through the restore texts' chains and sets, as the kernel would."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.chains: dict[str, list[Rule]] = {}
        for line in ruleset.iptables_restore().splitlines():
            if line.startswith(":"):
                self.chains[line[1:].split()[0]] = []
            elif line.startswith("-A "):
                _, chain, rest = line.split(" ", 2)
                self.chains[chain].append(parse_rule(rest))
        self.sets: dict[str, tuple[str, list[str]]] = {}
        for line in ruleset.ipset_restore().splitlines():
            words = line.split()
            if words[0] == "create":
                self.sets.setdefault(words[1], (words[2], []))
            elif words[0] == "add":
                self.sets[words[1]][1].append(" ".join(words[2:]))
            elif words[0] == "swap":
                self.sets[words[2]] = self.sets[words[1]]

    def in_set(self, name: str, dirs: str, p: Packet) -> bool:
        kind, entries = self.sets[name]
        ip = p.src if dirs == "src" else p.dst
        if kind == "hash:ip":
            return ip in entries
        if kind == "hash:ip,port":
            return f"{p.dst},{p.proto}:{p.dport}" in entries
        best = None  # hash:net: the most specific entry decides
        for entry in entries:
            net, _, flag = entry.partition(" ")
            network = ipaddress.ip_network(net)
            if ipaddress.ip_address(ip) in network and (
                best is None or network.prefixlen > best[0]
            ):
                best = (network.prefixlen, flag != "nomatch")
        return bool(best and best[1])

    def matches(self, rule: Rule, p: Packet) -> bool:
        return (
            (rule.src is None or ipaddress.ip_address(p.src) in ipaddress.ip_network(rule.src))
            and (rule.dst is None or ipaddress.ip_address(p.dst) in ipaddress.ip_network(rule.dst))
            and (rule.proto is None or rule.proto == p.proto)
            and (rule.dports is None or rule.dports[0] <= p.dport <= rule.dports[1])
            and (rule.states is None or p.state in rule.states)
            and all(self.in_set(name, dirs, p) for name, dirs in rule.sets)
        )

    def run(self, chain: str, p: Packet) -> str | None:
        """REJECT, or None when the chain returns."""
        for rule in self.chains[chain]:
            if not self.matches(rule, p):
                continue
            if rule.target == "RETURN":
                return None
            if rule.target == "REJECT":
                return "REJECT"
            verdict = self.run(rule.target, p)
            if verdict:
                return verdict
        return None


@dataclass
class Packet:
    src: str
    dst: str
    dport: int = 80
    proto: str = "tcp"
    state: str = "NEW"


def allowed(
    policies: list[dict[str, Any]],
    src: str,
    dst: str,
    dport: int = 80,
    proto: str = "tcp",
    **kw: Any,
) -> bool:
    """Whether a packet crossing FORWARD passes the policies."""
    ruleset = build(policies, kw.get("pods", PODS), NAMESPACES, kw.get("local", LOCAL))
    return (
        Evaluator(ruleset).run(
            "EDGEK-NETPOL", Packet(src, dst, dport, proto, kw.get("state", "NEW"))
        )
        is None
    )


DENY_INGRESS = policy("shop", "deny", {"matchLabels": {"app": "web"}}, policy_types=["Ingress"])
DENY_EGRESS = policy("shop", "deny-out", {"matchLabels": {"app": "web"}}, policy_types=["Egress"])


def test_no_policy_allows_everything() -> None:
    assert allowed([], CLIENT, WEB) and allowed([], WEB, OUTSIDE)
    assert build([], PODS, NAMESPACES, LOCAL).chains == {
        "EDGEK-NETPOL": ["-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    }


def test_default_deny_ingress_isolates_only_selected_pods() -> None:
    assert not allowed([DENY_INGRESS], CLIENT, WEB)
    assert not allowed([DENY_INGRESS], OTHER_REMOTE, WEB, 53, "udp")
    assert allowed([DENY_INGRESS], CLIENT, DB)  # not selected
    assert allowed([DENY_INGRESS], WEB, CLIENT)  # egress not isolated
    assert allowed([DENY_INGRESS], CLIENT, WEB, state="ESTABLISHED")


def test_policy_of_another_namespace_selects_nothing_here() -> None:
    other = policy("other", "deny", {"matchLabels": {"app": "web"}}, policy_types=["Ingress"])
    assert allowed([other], CLIENT, WEB)


def test_pod_selector_peer_is_the_policy_namespace() -> None:
    allow = policy(
        "shop",
        "from-db",
        {"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
    )
    assert allowed([allow], DB, WEB)
    assert not allowed([allow], CLIENT, WEB)
    web_peer = policy(
        "shop",
        "from-web",
        {"matchLabels": {"app": "db"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
    )
    assert allowed([web_peer], REMOTE_WEB, DB)  # a peer on another node
    assert not allowed([web_peer], OTHER_REMOTE, DB)  # app=web, but in another namespace


def test_namespace_selector_allows_only_that_namespace() -> None:
    allow = policy(
        "shop",
        "from-team-a",
        {},
        ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
    )
    assert allowed([allow], API, WEB) and allowed([allow], DB, WEB)
    assert not allowed([allow], CLIENT, WEB) and not allowed([allow], OUTSIDE, WEB)
    every = policy("shop", "from-all-ns", {}, ingress=[{"from": [{"namespaceSelector": {}}]}])
    assert allowed([every], CLIENT, WEB) and not allowed([every], OUTSIDE, WEB)


def test_namespaces_are_selected_by_their_name_label() -> None:
    by_name = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}
    allow = policy("shop", "by-name", {}, ingress=[{"from": [by_name]}])
    assert allowed([allow], CLIENT, WEB) and not allowed([allow], API, WEB)


def test_namespace_and_pod_selector_in_one_peer_is_an_and() -> None:
    both = {
        "namespaceSelector": {"matchLabels": {"team": "b"}},
        "podSelector": {"matchLabels": {"app": "web"}},
    }
    allow = policy("shop", "both", {"matchLabels": {"app": "db"}}, ingress=[{"from": [both]}])
    assert allowed([allow], OTHER_REMOTE, DB)
    assert not allowed([allow], CLIENT, DB)  # namespace matches, pod does not
    assert not allowed([allow], WEB, DB)  # pod matches, namespace does not
    either = policy(
        "shop",
        "either",
        {"matchLabels": {"app": "db"}},
        ingress=[
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"team": "b"}}},
                    {"podSelector": {"matchLabels": {"app": "web"}}},
                ]
            }
        ],
    )
    assert allowed([either], CLIENT, DB) and allowed([either], WEB, DB)


def test_ip_block_with_except() -> None:
    block = {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.5.0/24"]}}
    allow = policy("shop", "block", {"matchLabels": {"app": "web"}}, ingress=[{"from": [block]}])
    assert allowed([allow], "192.168.6.1", WEB)
    assert not allowed([allow], OUTSIDE, WEB) and not allowed([allow], "10.1.1.1", WEB)
    out = policy(
        "shop",
        "out",
        {"matchLabels": {"app": "web"}},
        policy_types=["Egress"],
        egress=[{"to": [block]}],
    )
    assert allowed([out], WEB, "192.168.200.1") and not allowed([out], WEB, OUTSIDE)


def test_ipv6_block_matches_no_ipv4_traffic() -> None:
    v6 = policy("shop", "v6", {}, ingress=[{"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}])
    assert not allowed([v6], CLIENT, WEB)


def test_ports_by_number_range_and_protocol() -> None:
    ports = [{"port": 80}, {"protocol": "UDP", "port": 5000, "endPort": 5010}, {"protocol": "SCTP"}]
    allow = policy("shop", "ports", {"matchLabels": {"app": "web"}}, ingress=[{"ports": ports}])
    assert allowed([allow], CLIENT, WEB, 80) and not allowed([allow], CLIENT, WEB, 81)
    assert not allowed([allow], CLIENT, WEB, 80, "udp")
    assert allowed([allow], CLIENT, WEB, 5010, "udp") and not allowed(
        [allow], CLIENT, WEB, 5011, "udp"
    )
    assert allowed([allow], CLIENT, WEB, 9, "sctp") and not allowed(
        [allow], CLIENT, WEB, 5005, "tcp"
    )


def test_named_ingress_port_resolves_on_the_selected_pod() -> None:
    allow = policy(
        "shop",
        "http",
        {},
        ingress=[{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}]}],
    )
    assert allowed([allow], CLIENT, WEB, 8080) and allowed([allow], CLIENT, WEB, 53, "udp")
    assert not allowed([allow], CLIENT, WEB, 53, "tcp")  # named for UDP only
    assert not allowed([allow], CLIENT, DB, 8080)  # db has no port "http"
    assert not allowed([allow], CLIENT, DB, 5432)


def test_named_egress_port_resolves_on_each_peer_pod() -> None:
    to = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}]
    out = policy(
        "other",
        "out",
        {},
        policy_types=["Egress"],
        egress=[{"to": to, "ports": [{"port": "http"}]}],
    )
    assert allowed([out], CLIENT, WEB, 8080) and allowed([out], CLIENT, REMOTE_WEB, 9090)
    assert not allowed([out], CLIENT, WEB, 9090) and not allowed([out], CLIENT, API, 7070)
    anywhere = policy(
        "other", "any", {}, policy_types=["Egress"], egress=[{"ports": [{"port": "http"}]}]
    )
    assert allowed([anywhere], CLIENT, API, 7070) and not allowed([anywhere], CLIENT, OUTSIDE, 7070)


def test_egress_default_deny_and_allow() -> None:
    assert not allowed([DENY_EGRESS], WEB, OUTSIDE) and not allowed([DENY_EGRESS], WEB, DB)
    assert allowed([DENY_EGRESS], DB, OUTSIDE) and allowed([DENY_EGRESS], CLIENT, WEB)
    assert allowed([DENY_EGRESS], WEB, OUTSIDE, state="RELATED")
    dns = policy(
        "shop",
        "dns",
        {},
        policy_types=["Egress"],
        egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}],
    )
    assert allowed([DENY_EGRESS, dns], WEB, OUTSIDE, 53, "udp") and not allowed(
        [DENY_EGRESS, dns], WEB, OUTSIDE, 53
    )


def test_policies_are_additive_and_both_directions_apply_between_local_pods() -> None:
    from_client = policy(
        "shop",
        "a",
        {"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}],
    )
    from_db = policy(
        "shop",
        "b",
        {"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
    )
    assert allowed([from_client, from_db], CLIENT, WEB) and allowed([from_client, from_db], DB, WEB)
    assert not allowed([from_client, from_db], API, WEB)
    client_out = policy(
        "other",
        "c",
        {},
        policy_types=["Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": "10.42.1.0/24"}}]}],
    )
    assert not allowed([from_client, client_out], CLIENT, WEB)  # ingress allows it, egress does not
    assert allowed([from_client], CLIENT, WEB)


def test_policy_types_default_from_the_rules() -> None:
    egress_only = policy(
        "shop", "e", {"matchLabels": {"app": "web"}}, egress=[{"to": [{"podSelector": {}}]}]
    )
    assert not allowed([egress_only], CLIENT, WEB)  # Ingress is implied
    assert allowed([egress_only], WEB, DB) and not allowed([egress_only], WEB, OUTSIDE)
    allow_all = policy("shop", "all", {}, ingress=[{}])
    assert allowed([allow_all], OUTSIDE, WEB)


@pytest.mark.parametrize(
    "extra", [{"host": True}, {"phase": "Succeeded"}], ids=["host-network", "finished"]
)
def test_host_network_and_finished_pods_are_neither_selected_nor_peers(
    extra: dict[str, Any],
) -> None:
    special = pod("shop", "special", "10.42.0.50", {"app": "web"}, **extra)
    pods = [*PODS, special]
    allow = policy(
        "shop",
        "from-web",
        {"matchLabels": {"app": "db"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
    )
    assert not allowed([allow], "10.42.0.50", DB, pods=pods)
    assert allowed([DENY_INGRESS], CLIENT, "10.42.0.50", pods=pods, local={*LOCAL, "shop/special"})


def test_only_local_pods_get_chains() -> None:
    ruleset = build([DENY_INGRESS], PODS, NAMESPACES, {"shop/web"})
    jumps = ruleset.chains["EDGEK-NETPOL"][1:]
    assert len(jumps) == 1 and jumps[0].startswith("-d 10.42.0.10/32 ")
    assert allowed([DENY_INGRESS], CLIENT, REMOTE_WEB)  # enforced by its own node


def test_golden_restore_texts() -> None:
    allow = policy(
        "shop",
        "web",
        {"matchLabels": {"app": "web"}},
        ingress=[
            {
                "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                "ports": [{"port": 80}],
            }
        ],
    )
    ruleset = build([allow], PODS, NAMESPACES, {"shop/web"})
    (name,) = ruleset.sets
    (chain,) = (c for c in ruleset.chains if c.startswith("EDGEK-NPI-"))
    assert len(chain) <= 28 and len(name) <= 31
    assert ruleset.iptables_restore(["EDGEK-NPE-OLD", "EDGEK-NETPOL", "KUBE-OTHER"]) == "\n".join(
        [
            "*filter",
            ":EDGEK-NETPOL - [0:0]",
            f":{chain} - [0:0]",
            ":EDGEK-NPE-OLD - [0:0]",
            "-A EDGEK-NETPOL -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            f'-A EDGEK-NETPOL -d 10.42.0.10/32 -m comment --comment "shop/web" -j {chain}',
            f'-A {chain} -m set --match-set {name} src -p tcp -m tcp --dport 80 -m comment --comment "shop/web ingress[0]" -j RETURN',
            f'-A {chain} -m comment --comment "shop/web ingress default deny" -j REJECT --reject-with icmp-port-unreachable',
            "-X EDGEK-NPE-OLD",
            "COMMIT",
            "",
        ]
    )
    tmp = "EDGEK-NPT-" + name.removeprefix("EDGEK-NP-")
    assert ruleset.ipset_restore() == "\n".join(
        [
            f"create {tmp} hash:net family inet -exist",
            f"flush {tmp}",
            f"add {tmp} 10.0.0.0/8",
            f"add {tmp} 10.1.0.0/16 nomatch",
            f"create {name} hash:net family inet -exist",
            f"swap {tmp} {name}",
            f"destroy {tmp}",
            "",
        ]
    )


def test_same_inputs_give_the_same_ruleset() -> None:
    policies = [DENY_EGRESS, policy("shop", "x", {}, ingress=[{"from": [{"podSelector": {}}]}])]
    first = build(policies, PODS, NAMESPACES, LOCAL)
    again = build(list(reversed(policies)), list(reversed(PODS)), NAMESPACES, LOCAL)
    assert first.iptables_restore() == again.iptables_restore()
    assert first.ipset_restore() == again.ipset_restore()


async def test_controller_applies_only_a_full_view_and_only_changes() -> None:
    applied: list[Ruleset] = []

    async def record(ruleset: Ruleset) -> None:
        applied.append(ruleset)

    def no_client() -> ApiClient:
        raise AssertionError("not used")

    controller = PolicyController(no_client, "node-1", apply=record, settle=0)
    controller.objects["pods"] = {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}": {
            **p,
            "spec": {
                **p["spec"],
                "nodeName": "node-1" if p["status"]["podIP"].startswith("10.42.0.") else "node-2",
            },
        }
        for p in PODS
    }
    controller.objects["networkpolicies"] = {"shop/deny": DENY_INGRESS}
    controller.listed = {"pods", "networkpolicies"}  # namespaces not listed yet
    task = asyncio.create_task(controller._sync_loop())
    try:
        controller.changed.set()
        await asyncio.sleep(0.05)
        assert applied == []
        controller.listed.add("namespaces")
        controller.changed.set()
        await asyncio.sleep(0.05)
        controller.changed.set()  # nothing changed: not applied again
        await asyncio.sleep(0.05)
    finally:
        await cancel_and_wait(task)
    assert len(applied) == 1
    jumps = applied[0].chains["EDGEK-NETPOL"][1:]
    assert [j.split()[1] for j in jumps] == [
        "10.42.0.10/32"
    ]  # shop/web is local, shop/remote is not
