"""What the agent reads about its host (nothing here changes the host): CPUs, memory and
the agent filesystem's usage, OS image, machine and boot ids, and the address the host
uses towards the server."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import socket
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
