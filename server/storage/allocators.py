"""Service address allocation: cluster IPs from ``--service-cidr`` and node ports from
30000-32767, assigned when a Service is written and released when it is deleted.

Allocation happens synchronously inside the event loop (pick + reserve with no await in
between), so concurrent creates never get the same address; a write that fails after
allocating calls the returned undo.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from edgek import status
from edgek.kinds import Kind

Undo = Callable[[], None]

NODE_PORT_RANGE = (30000, 32767)


def _is_service(kind: Kind) -> bool:
    return (kind.group, kind.resource) == ("", "services")


class ServiceAllocator:
    """Tracks the cluster IPs and node ports in use."""

    def __init__(self, service_cidr: str, node_ports: tuple[int, int] = NODE_PORT_RANGE) -> None:
        self.network = ipaddress.ip_network(service_cidr, strict=False)
        self.node_ports = node_ports
        self._ips: set[str] = set()
        self._ports: set[int] = set()
        # what each stored Service holds, by namespace/name
        self._held: dict[str, tuple[set[str], set[int]]] = {}
        self._next_ip = 2  # .1 is the kubernetes service's
        self._next_port = node_ports[0]

    @property
    def kubernetes_ip(self) -> str:
        """The first address of the range, reserved for ``default/kubernetes``."""
        return str(self.network[1])

    def load(self, services: Iterable[dict[str, Any]]) -> None:
        """Mark the addresses of existing Services as used (at startup)."""
        for svc in services:
            self._record(svc)

    def admit(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> Undo | None:
        """Assign missing cluster IPs and node ports to a Service being written."""
        if not _is_service(kind):
            return None
        spec = obj.setdefault("spec", {})
        name = obj["metadata"].get("name", "")
        taken_ips: list[str] = []
        taken_ports: list[int] = []

        def undo() -> None:
            self._ips.difference_update(taken_ips)
            self._ports.difference_update(taken_ports)

        try:
            if spec.get("type") == "ExternalName":
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            else:
                self._assign_ip(spec, old, name, taken_ips)
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                self._assign_ports(spec, old, name, taken_ports)
            else:
                for port in spec.get("ports") or []:
                    port.pop("nodePort", None)
        except status.ApiError:
            undo()
            raise
        return undo

    async def written(self, kind: Kind, obj: dict[str, Any], deleted: bool) -> None:
        """After-write hook: free what a deleted Service, or an update, let go of."""
        if not _is_service(kind):
            return
        md = obj["metadata"]
        before_ips, before_ports = self._held.pop(
            f"{md.get('namespace')}/{md['name']}", (set(), set())
        )
        now_ips, now_ports = (set(), set()) if deleted else self._record(obj)
        self._ips.difference_update(before_ips - now_ips)
        self._ports.difference_update(before_ports - now_ports)

    def _record(self, svc: dict[str, Any]) -> tuple[set[str], set[int]]:
        md = svc["metadata"]
        held = (set(_cluster_ips(svc)), set(_node_ports(svc)))
        self._held[f"{md.get('namespace')}/{md['name']}"] = held
        self._ips.update(held[0])
        self._ports.update(held[1])
        return held

    def _assign_ip(
        self, spec: dict[str, Any], old: dict[str, Any] | None, name: str, taken: list[str]
    ) -> None:
        old_ips = _cluster_ips(old) if old else []
        wanted = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        if not wanted and old_ips:
            wanted = old_ips[0]
        if wanted == "None":
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            return
        if wanted and wanted in old_ips:
            ip = wanted
        elif wanted:
            ip = self._claim_ip(wanted, name)
            taken.append(ip)
        else:
            ip = self._next_free_ip(name)
            taken.append(ip)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    def _claim_ip(self, wanted: str, name: str) -> str:
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError:
            raise _invalid(
                name, "spec.clusterIPs", f'[]string{{"{wanted}"}}', "must be a valid IP address"
            ) from None
        shown = f'[]string{{"{wanted}"}}'
        if addr not in self.network or addr in (
            self.network.network_address,
            self.network.broadcast_address,
        ):
            raise _invalid(
                name,
                "spec.clusterIPs",
                shown,
                f"failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the valid "
                f"range. The range of valid IPs is {self.network}",
            )
        if str(addr) in self._ips:
            raise _invalid(
                name,
                "spec.clusterIPs",
                shown,
                f"failed to allocate IP {wanted}: provided IP is already allocated",
            )
        self._ips.add(str(addr))
        return str(addr)

    def _next_free_ip(self, name: str) -> str:
        size = self.network.num_addresses
        for step in range(size):
            offset = 2 + (self._next_ip - 2 + step) % max(size - 3, 1)
            candidate = str(self.network[offset])
            if candidate not in self._ips:
                self._ips.add(candidate)
                self._next_ip = offset + 1
                return candidate
        raise status.ApiError(
            500,
            "InternalError",
            "Internal error occurred: failed to allocate a serviceIP: range is full",
        )

    def _assign_ports(
        self, spec: dict[str, Any], old: dict[str, Any] | None, name: str, taken: list[int]
    ) -> None:
        held = set(_node_ports(old)) if old else set()
        lo, hi = self.node_ports
        for i, port in enumerate(spec.get("ports") or []):
            wanted = port.get("nodePort")
            if wanted:
                if wanted in held:
                    continue
                if not lo <= wanted <= hi:
                    raise _invalid(
                        name,
                        f"spec.ports[{i}].nodePort",
                        str(wanted),
                        f"provided port is not in the valid range. The range of valid ports "
                        f"is {lo}-{hi}",
                    )
                if wanted in self._ports:
                    raise _invalid(
                        name,
                        f"spec.ports[{i}].nodePort",
                        str(wanted),
                        "provided port is already allocated",
                    )
                self._ports.add(wanted)
                taken.append(wanted)
                continue
            port["nodePort"] = self._next_free_port()
            taken.append(port["nodePort"])

    def _next_free_port(self) -> int:
        lo, hi = self.node_ports
        span = hi - lo + 1
        for step in range(span):
            candidate = lo + (self._next_port - lo + step) % span
            if candidate not in self._ports:
                self._ports.add(candidate)
                self._next_port = candidate + 1
                return candidate
        raise status.ApiError(
            500,
            "InternalError",
            "Internal error occurred: failed to allocate a nodePort: range is full",
        )


def _cluster_ips(svc: dict[str, Any] | None) -> list[str]:
    spec = (svc or {}).get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if ip and ip != "None"]


def _node_ports(svc: dict[str, Any] | None) -> list[int]:
    spec = (svc or {}).get("spec") or {}
    return [p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")]


def _invalid(name: str, field: str, shown: str, detail: str) -> status.ApiError:
    return status.invalid(
        "Service",
        "",
        name,
        [
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {shown}: {detail}",
                "field": field,
            }
        ],
    )
