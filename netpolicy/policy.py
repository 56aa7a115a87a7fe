"""NetworkPolicy → an iptables-restore ruleset and ipsets, as a pure function.

:func:`build` takes the cluster's NetworkPolicies, Pods and Namespaces and the names of this
node's own pods, and returns a :class:`Ruleset`: the ipsets (one per policy peer, plus one
per named egress port) and the ``filter`` table chains that enforce the policies on this
node's pods, with the semantics of ``networking.k8s.io/v1``:

- a pod selected by any policy whose ``policyTypes`` include Ingress (Egress) is isolated for
  that direction; everything its policies' rules allow (their union) is let through, the
  rest is rejected; a pod no policy selects is not filtered;
- a peer is a ``podSelector`` (pods of the policy's namespace), a ``namespaceSelector`` (all
  pods of those namespaces), both (those pods of those namespaces) or an ``ipBlock`` (a CIDR
  minus its ``except`` CIDRs); a rule without peers matches every address;
- ports by number, by range (``endPort``) or by name (resolved on the destination pod's
  container ports: the selected pod for ingress, each peer pod for egress), protocol TCP
  (default), UDP or SCTP; a rule without ports matches every port and protocol;
- replies (conntrack ESTABLISHED/RELATED) are never filtered; traffic the node itself sends
  to its pods (kubelet probes) does not cross ``FORWARD`` and so is never filtered either,
  as with upstream CNIs.

Chain layout: ``EDGEK-NETPOL`` (jumped to from ``FORWARD``) sends a local pod's outgoing
packets to its egress chain ``EDGEK-NPE-…`` and packets to it to its ingress chain
``EDGEK-NPI-…``. A pod chain RETURNs what is allowed (so a packet between two local pods
passes the sender's egress chain, then the receiver's ingress chain) and rejects the rest.
Allowed traffic is returned, not accepted, so the host's own rules still apply after ours.
Policies are applied only to pods with an IP that are not on the host network and not
finished (Succeeded/Failed), and only such pods are peers.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object

TOP_CHAIN = "EDGEK-NETPOL"
INGRESS_PREFIX = "EDGEK-NPI-"
EGRESS_PREFIX = "EDGEK-NPE-"
SET_PREFIX = "EDGEK-NP-"
TMP_SET_PREFIX = "EDGEK-NPT-"
PROTOCOLS = ("TCP", "UDP", "SCTP")
NAME_LABEL = "kubernetes.io/metadata.name"
REJECT = "-j REJECT --reject-with icmp-port-unreachable"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class IPSet:
    """One ipset: ``kind`` is ``hash:ip``, ``hash:net`` or ``hash:ip,port``; ``entries`` are
    ipset entry texts (``10.0.0.0/8 nomatch`` is a hash:net exception)."""

    name: str
    kind: str
    entries: tuple[str, ...]
    comment: str


@dataclass
class Ruleset:
    """The ipsets and the filter-table chains (name → rules) that enforce the policies."""

    sets: dict[str, IPSet] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)

    def iptables_restore(self, existing_chains: Iterable[str] = ()) -> str:
        """``iptables-restore --noflush`` input: every chain of ours is rewritten and those of
        ``existing_chains`` (the EDGEK-NP chains now in the kernel) that are gone are removed."""
        stale = sorted(c for c in set(existing_chains) - set(self.chains) if is_policy_chain(c))
        lines = ["*filter"]
        lines += [f":{chain} - [0:0]" for chain in [*self.chains, *stale]]
        for chain, rules in self.chains.items():
            lines += [f"-A {chain} {rule}" for rule in rules]
        lines += [f"-X {chain}" for chain in stale]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def ipset_restore(self) -> str:
        """``ipset restore`` input that replaces every set atomically (filled under a
        temporary name, then swapped in)."""
        lines = []
        for s in self.sets.values():
            tmp = TMP_SET_PREFIX + s.name.removeprefix(SET_PREFIX)
            create = f"{s.kind} family inet -exist"
            lines += [f"create {tmp} {create}", f"flush {tmp}"]
            lines += [f"add {tmp} {entry}" for entry in s.entries]
            lines += [f"create {s.name} {create}", f"swap {tmp} {s.name}", f"destroy {tmp}"]
        return "".join(line + "\n" for line in lines)


def is_policy_chain(name: str) -> bool:
    """True for the chains this module owns."""
    return name == TOP_CHAIN or name.startswith((INGRESS_PREFIX, EGRESS_PREFIX))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16].upper()


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _key(obj: Obj) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _selector(sel: Obj | None) -> LabelSelector:
    """A policy's selector; an invalid one matches nothing (the API server rejects them)."""
    try:
        return label_selector_from_object(sel)
    except SelectorError:
        return LabelSelector(nothing=True)


def policy_types(policy: Obj) -> tuple[str, ...]:
    """The policy's types, defaulted as the API server does: Ingress, plus Egress when the
    policy has egress rules."""
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return tuple(types)
    return ("Ingress", "Egress") if spec.get("egress") else ("Ingress",)


def live_pod(pod: Obj) -> bool:
    """A pod that policies select and peers match: it has an IP, is not on the host
    network and has not finished."""
    return bool(
        (pod.get("status") or {}).get("podIP")
        and not (pod.get("spec") or {}).get("hostNetwork")
        and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )


def namespace_labels(namespace: Obj) -> dict[str, str]:
    """A namespace's labels with ``kubernetes.io/metadata.name``, which upstream API servers
    always set to the name (selectors that pick namespaces by name rely on it)."""
    name = str(_meta(namespace).get("name", ""))
    return {**(_meta(namespace).get("labels") or {}), NAME_LABEL: name}


def _pod_ip(pod: Obj) -> str:
    return str(pod["status"]["podIP"])


@dataclass(frozen=True)
class Cluster:
    """The objects policies are evaluated over."""

    pods: tuple[Obj, ...]
    namespace_labels: Mapping[str, Mapping[str, str]]

    def pods_in(self, namespace: str, selector: LabelSelector) -> list[Obj]:
        """Live pods of one namespace that a pod selector matches."""
        return [
            p
            for p in self.pods
            if _meta(p).get("namespace") == namespace and selector.matches(_meta(p).get("labels"))
        ]

    def peer_pods(self, namespace: str, peer: Obj) -> list[Obj]:
        """The pods a podSelector/namespaceSelector peer of a policy in ``namespace`` means."""
        pod_sel = _selector(peer.get("podSelector") or {})
        if "namespaceSelector" not in peer:
            return self.pods_in(namespace, pod_sel)
        ns_sel = _selector(peer.get("namespaceSelector") or {})
        return [
            p
            for p in self.pods
            if ns_sel.matches(self.namespace_labels.get(_meta(p).get("namespace", ""), {}))
            and pod_sel.matches(_meta(p).get("labels"))
        ]


def named_ports(pod: Obj, name: str, protocol: str) -> list[int]:
    """The container ports of a pod with that name and protocol."""
    return [
        int(port["containerPort"])
        for container in (pod.get("spec") or {}).get("containers") or []
        for port in container.get("ports") or []
        if port.get("name") == name and (port.get("protocol") or "TCP") == protocol
    ]


def _port_match(protocol: str, port: int | None = None, end: int | None = None) -> str:
    proto = protocol.lower()
    if port is None:
        return f"-p {proto}"
    ports = f"{port}:{end}" if end is not None and end != port else str(port)
    return f"-p {proto} -m {proto} --dport {ports}"


class _Builder:
    """Accumulates the sets and chains of one :func:`build` call."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.ruleset = Ruleset()

    def add_set(self, kind: str, entries: Iterable[str], comment: str, *key: str) -> str:
        name = SET_PREFIX + _digest(kind, *key)
        self.ruleset.sets[name] = IPSet(name, kind, tuple(sorted(set(entries))), comment)
        return name

    def peer_match(self, policy: Obj, where: str, peer: Obj, direction: str) -> str | None:
        """The iptables match of one peer (``src`` for ingress, ``dst`` for egress); None for
        an IPv6 ipBlock, which no (IPv4) pod traffic matches."""
        namespace = str(_meta(policy).get("namespace", ""))
        block = peer.get("ipBlock")
        if block is not None:
            cidr = ipaddress.ip_network(block["cidr"], strict=False)
            if cidr.version != 4:
                return None
            entries = [str(cidr)]
            entries += [
                f"{ipaddress.ip_network(e, strict=False)} nomatch"
                for e in block.get("except") or []
            ]
            name = self.add_set("hash:net", entries, f"{where} ipBlock", where)
        else:
            ips = [_pod_ip(p) for p in self.cluster.peer_pods(namespace, peer)]
            name = self.add_set("hash:ip", ips, f"{where} pods", where)
        return f"-m set --match-set {name} {'src' if direction == 'ingress' else 'dst'}"

    def port_matches(self, rule: Obj, target: Obj | None, where: str) -> list[str]:
        """The port/protocol matches of one rule (``[""]`` for any port). Named ports are
        resolved on ``target`` (ingress: the selected pod) or, for egress (``target`` None),
        on every pod a peer matches, through a hash:ip,port set."""
        ports = rule.get("ports") or []
        if not ports:
            return [""]
        out = []
        for index, port in enumerate(ports):
            protocol = port.get("protocol") or "TCP"
            number = port.get("port")
            if not isinstance(number, str):
                out.append(_port_match(protocol, number, port.get("endPort")))
            elif target is not None:
                out += [_port_match(protocol, n) for n in named_ports(target, number, protocol)]
            else:
                entries = [
                    f"{_pod_ip(p)},{protocol.lower()}:{n}"
                    for p in self.cluster.pods
                    for n in named_ports(p, number, protocol)
                ]
                name = self.add_set(
                    "hash:ip,port", entries, f"{where} port {number}", where, str(index)
                )
                out.append(f"-p {protocol.lower()} -m set --match-set {name} dst,dst")
        return out

    def rule_lines(
        self, policy: Obj, direction: str, index: int, rule: Obj, target: Obj
    ) -> list[str]:
        """The RETURN rules of one ingress/egress rule of a policy for one selected pod."""
        where = f"{_key(policy)} {direction}[{index}]"
        peer_field = "from" if direction == "ingress" else "to"
        given = rule.get(peer_field) or []
        matches = [
            self.peer_match(policy, f"{where}.{peer_field}[{i}]", peer, direction)
            for i, peer in enumerate(given)
        ]
        peers = [m for m in matches if m is not None] if given else [""]
        ports = self.port_matches(rule, target if direction == "ingress" else None, where)
        comment = f'-m comment --comment "{where}"'
        return [
            " ".join(part for part in (peer, port, comment, "-j RETURN") if part)
            for peer in peers
            for port in ports
        ]


def build(
    policies: Iterable[Obj],
    pods: Iterable[Obj],
    namespaces: Iterable[Obj],
    local_pods: Collection[str],
) -> Ruleset:
    """The ruleset enforcing ``policies`` on the pods named (``namespace/name``) in
    ``local_pods``; ``pods`` and ``namespaces`` are the whole cluster's."""
    live = tuple(p for p in pods if live_pod(p))
    cluster = Cluster(live, {str(_meta(ns).get("name")): namespace_labels(ns) for ns in namespaces})
    builder = _Builder(cluster)
    top = ["-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    chains: dict[str, list[str]] = {}
    ordered = sorted(policies, key=_key)
    for pod in sorted((p for p in live if _key(p) in local_pods), key=_key):
        for direction, prefix, flag in (
            ("egress", EGRESS_PREFIX, "-s"),
            ("ingress", INGRESS_PREFIX, "-d"),
        ):
            rules = _pod_rules(builder, ordered, pod, direction)
            if rules is None:
                continue
            chain = prefix + _digest(_key(pod))
            chains[chain] = [
                *rules,
                f'-m comment --comment "{_key(pod)} {direction} default deny" {REJECT}',
            ]
            top.append(f'{flag} {_pod_ip(pod)}/32 -m comment --comment "{_key(pod)}" -j {chain}')
    builder.ruleset.chains = {TOP_CHAIN: top, **chains}
    return builder.ruleset


def _pod_rules(
    builder: _Builder, policies: list[Obj], pod: Obj, direction: str
) -> list[str] | None:
    """The allow rules of one pod for one direction, or None when no policy isolates it."""
    kind = direction.capitalize()
    isolated = False
    rules: list[str] = []
    for policy in policies:
        meta = _meta(policy)
        if meta.get("namespace") != _meta(pod).get("namespace") or kind not in policy_types(policy):
            continue
        if not _selector((policy.get("spec") or {}).get("podSelector") or {}).matches(
            _meta(pod).get("labels")
        ):
            continue
        isolated = True
        for index, rule in enumerate((policy.get("spec") or {}).get(direction) or []):
            rules += builder.rule_lines(policy, direction, index, rule or {}, pod)
    return rules if isolated else None
