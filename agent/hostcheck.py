"""``edgek check-config``'s checks of this host: cgroups (v1, v2 or hybrid; the memory
controller), kernel modules, Podman and an OCI runtime that works here (probed as the
agent's Podman service probes it), the iptables backend and the ports edgek listens on.

Each check is a ``Check``: ``ok``, ``warn`` (edgek runs, with a limitation) or ``fail`` (a
blocker). The file system root /proc, /sys and the cgroup mounts are read under is a
parameter, so tests can simulate a host.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.podman.service import RUNTIMES, probe_runtime

#: What a Raspberry Pi needs for the memory cgroup (Raspberry Pi OS disables it).
PI_MEMORY_FIX = (
    "add 'cgroup_memory=1 cgroup_enable=memory' to the end of the single line in "
    "/boot/firmware/cmdline.txt (/boot/cmdline.txt on older Raspberry Pi OS) and reboot"
)
#: Modules pods' networking and storage use; the service loads them (modprobe) when absent.
MODULES = ("overlay", "br_netfilter", "bridge", "veth")
#: The API server's and the agent's streaming port.
PORTS = ((6443, "API server"), (10250, "agent streaming"))


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # ok, warn or fail
    detail: str


@dataclass(frozen=True)
class Host:
    """Where the host's facts are read: ``root`` (tests point it at a fake tree)."""

    root: Path = Path("/")

    @property
    def proc(self) -> Path:
        """``/proc``."""
        return self.root / "proc"

    @property
    def sys(self) -> Path:
        """``/sys``."""
        return self.root / "sys"


def cgroup_checks(host: Host) -> list[Check]:
    """The cgroup layout and whether the memory controller is usable."""
    v1: set[str] = set()
    v2_mount: str | None = None
    for line in _read(host.proc / "self" / "mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            v2_mount = fields[4]
        elif tail[0] == "cgroup":
            v1.update(tail[2].split(","))
    mode = "hybrid (v1 controllers, v2 unified)" if v1 and v2_mount else "v1" if v1 else "v2"
    if not v1 and v2_mount is None:
        return [Check("cgroups", "fail", "no cgroup filesystem mounted")]
    v2_controllers = set()
    if v2_mount is not None:
        mount = host.root / v2_mount.lstrip("/")
        v2_controllers = set(_read(mount / "cgroup.controllers").split())
    enabled = _enabled_v1_controllers(host)
    memory = "memory" in v2_controllers or ("memory" in v1 and "memory" in enabled)
    checks = [Check("cgroups", "ok", mode)]
    if memory:
        checks.append(Check("memory cgroup", "ok", "enabled"))
    else:
        checks.append(Check("memory cgroup", "fail", f"missing: {PI_MEMORY_FIX}"))
    return checks


def _enabled_v1_controllers(host: Host) -> set[str]:
    """Controllers /proc/cgroups lists as enabled."""
    names = set()
    for line in _read(host.proc / "cgroups").splitlines():
        parts = line.split()
        if len(parts) == 4 and not line.startswith("#") and parts[3] == "1":
            names.add(parts[0])
    return names


def module_checks(host: Host) -> list[Check]:
    """Kernel modules loaded or built in; a missing one is loaded at start when it can be."""
    loaded = {line.split()[0] for line in _read(host.proc / "modules").splitlines() if line}
    checks = []
    for name in MODULES:
        if name in loaded or (host.sys / "module" / name).exists():
            checks.append(Check(f"module {name}", "ok", "loaded"))
        else:
            checks.append(Check(f"module {name}", "warn", "not loaded (modprobe it)"))
    return checks


async def runtime_checks() -> list[Check]:
    """Podman, and which OCI runtimes run a container here (crun fails on cgroup v1 and
    hybrid hosts, runc is then used); no working runtime is a blocker."""
    podman = shutil.which("podman")
    if podman is None:
        return [Check("podman", "fail", "not installed (apt-get install podman)")]
    version = _output([podman, "--version"]) or "unknown version"
    checks = [Check("podman", "ok", version)]
    if os.geteuid() != 0:
        checks.append(Check("runtime", "warn", "run as root to probe crun/runc"))
        return checks
    working = []
    for name in RUNTIMES:
        path = shutil.which(name)
        if path is None:
            checks.append(Check(f"runtime {name}", "warn", "not installed"))
        elif await probe_runtime(path):
            working.append(name)
            checks.append(Check(f"runtime {name}", "ok", f"{path} runs containers"))
        else:
            checks.append(Check(f"runtime {name}", "warn", f"{path} fails on this host"))
    if working:
        checks.append(Check("runtime", "ok", f"pods run with {working[0]}"))
    else:
        checks.append(Check("runtime", "fail", "no working OCI runtime (install crun or runc)"))
    return checks


def iptables_check() -> Check:
    """The iptables command and its backend (nf_tables or legacy)."""
    binary = shutil.which("iptables")
    if binary is None:
        return Check("iptables", "fail", "not installed (apt-get install iptables)")
    version = _output([binary, "--version"])
    backend = "nf_tables" if "nf_tables" in version else "legacy"
    return Check("iptables", "ok", f"backend {backend} ({version or 'unknown version'})")


def port_checks(ports: tuple[tuple[int, str], ...] = PORTS) -> list[Check]:
    """Whether edgek's ports are free (in use: another program, or edgek running)."""
    checks = []
    for port, what in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                checks.append(Check(f"port {port}", "warn", f"{what}: in use (edgek running?)"))
                continue
        checks.append(Check(f"port {port}", "ok", f"{what}: free"))
    return checks


def check_host(host: Host | None = None) -> list[Check]:
    """Every check, in report order."""
    host = host or Host()
    runtime = asyncio.run(runtime_checks())
    return [
        *cgroup_checks(host),
        *module_checks(host),
        *runtime,
        iptables_check(),
        *port_checks(),
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    return done.stdout.strip()
