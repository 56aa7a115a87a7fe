"""What the agent reads about its host (nothing here changes the host): CPUs, memory and
the agent filesystem's usage, OS image, machine and boot ids, and the node's address."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shlex
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from agent.nodestatus import HostSample


def _read(path: str) -> str:
    """A small system file's stripped text; empty when it is missing or unreadable."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return out


def sample(path: Path) -> HostSample:
    """CPUs, memory, and the size and free space of the filesystem holding ``path``."""
    mem = _meminfo()
    fs = os.statvfs(path)
    return HostSample(
        cpus=os.cpu_count() or 1,  # the machine's CPUs, as cAdvisor counts them
        memory_bytes=mem.get("MemTotal", 0),
        memory_available=mem.get("MemAvailable", mem.get("MemFree", 0)),
        disk_bytes=fs.f_blocks * fs.f_frsize,
        disk_available=fs.f_bavail * fs.f_frsize,
        inodes=fs.f_files,
        inodes_free=fs.f_favail,
    )


def os_image() -> str:
    """The distribution's PRETTY_NAME from os-release (as the kubelet reports it)."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        for line in _read(path).splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return " ".join(shlex.split(value))
    return "Linux"


def machine_id() -> str:
    """The systemd/dbus machine id, empty when the host has none."""
    return _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")


def system_uuid() -> str:
    """The DMI product UUID (readable by root only on most hosts), else empty."""
    return _read("/sys/class/dmi/id/product_uuid").lower()


def boot_id() -> str:
    """The kernel's id of this boot."""
    return _read("/proc/sys/kernel/random/boot_id")


def address_towards(server_url: str) -> str:
    """The local address the host uses to reach the server (a connected UDP socket: the
    kernel picks the route, no packet is sent); 127.0.0.1 when it cannot tell."""
    host = urlsplit(server_url).hostname or "127.0.0.1"
    with contextlib.suppress(OSError, ValueError):
        info = socket.getaddrinfo(host, 443, type=socket.SOCK_DGRAM)[0]
        with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
            sock.connect(info[4])
            address = str(sock.getsockname()[0])
        if not ipaddress.ip_address(address).is_unspecified:
            return address
    return "127.0.0.1"


#: ioctl that reads an interface's IPv4 address (linux/sockios.h).
_SIOCGIFADDR = 0x8915


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of interface ``name``; None when it has none."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("256s", name.encode()[:15])
        return socket.inet_ntoa(fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)[20:24])
    return None


def default_route_interface(route_table: str = "/proc/net/route") -> str | None:
    """The interface of the IPv4 default route (the lowest metric); None without one."""
    best: tuple[int, str] | None = None
    for line in _read(route_table).splitlines()[1:]:
        fields = line.split()
        if len(fields) > 6 and fields[1] == "00000000" and fields[7] == "00000000":
            metric = int(fields[6])
            if best is None or metric < best[0]:
                best = (metric, fields[0])
    return best[1] if best else None


def node_address(
    server_url: str,
    *,
    route_table: str = "/proc/net/route",
    address_of: Callable[[str], str | None] = interface_ipv4,
) -> str:
    """The address the node reports as its InternalIP: the one it uses towards the server,
    unless that is loopback (a server on this machine, e.g. the agent ``edgek server``
    embeds), then the address of the default route's interface, as k3s chooses it;
    loopback only when the host has no default route."""
    address = address_towards(server_url)
    if not ipaddress.ip_address(address).is_loopback:
        return address
    interface = default_route_interface(route_table)
    chosen = address_of(interface) if interface else None
    return chosen or address
