"""``edgek check-config``'s cgroup and module checks on simulated hosts."""

from __future__ import annotations

from pathlib import Path

from agent.hostcheck import PI_MEMORY_FIX, Check, Host, cgroup_checks, module_checks

V1_MEMORY = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
V1_CPU = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
UNIFIED = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
V2 = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
CGROUPS = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t9\t1\nmemory\t4\t9\t{m}\n"


def _host(tmp: Path, mountinfo: str, memory_enabled: int = 1, v2: str = "") -> Host:
    proc = tmp / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / "cgroups").write_text(CGROUPS.format(m=memory_enabled))
    (proc / "modules").write_text("overlay 163840 0 - Live 0x0\n")
    (tmp / "sys" / "module" / "bridge").mkdir(parents=True)
    cgroup2 = tmp / "sys" / "fs" / "cgroup"
    cgroup2.mkdir(parents=True, exist_ok=True)
    (cgroup2 / "cgroup.controllers").write_text(v2)
    return Host(tmp)


def test_hybrid_with_memory(tmp_path: Path) -> None:
    checks = cgroup_checks(_host(tmp_path, V1_CPU + V1_MEMORY + UNIFIED))
    assert checks == [
        Check("cgroups", "ok", "hybrid (v1 controllers, v2 unified)"),
        Check("memory cgroup", "ok", "enabled"),
    ]


def test_v2_memory_controller(tmp_path: Path) -> None:
    checks = cgroup_checks(_host(tmp_path, V2, v2="cpuset cpu io memory pids"))
    assert checks == [Check("cgroups", "ok", "v2"), Check("memory cgroup", "ok", "enabled")]


def test_missing_memory_cgroup_prints_the_pi_fix(tmp_path: Path) -> None:
    # Raspberry Pi OS: the memory controller is disabled on the kernel command line
    checks = cgroup_checks(_host(tmp_path, V1_CPU + UNIFIED, memory_enabled=0, v2="cpu pids"))
    assert checks[1] == Check("memory cgroup", "fail", f"missing: {PI_MEMORY_FIX}")
    assert "cgroup_memory=1 cgroup_enable=memory" in PI_MEMORY_FIX
    assert "/boot/firmware/cmdline.txt" in PI_MEMORY_FIX


def test_v2_without_memory_is_a_blocker(tmp_path: Path) -> None:
    checks = cgroup_checks(_host(tmp_path, V2, v2="cpu pids"))
    assert checks[1].status == "fail"


def test_modules_loaded_built_in_or_missing(tmp_path: Path) -> None:
    by_name = {c.name: c.status for c in module_checks(_host(tmp_path, V2))}
    assert by_name == {
        "module overlay": "ok",
        "module bridge": "ok",
        "module br_netfilter": "warn",
        "module veth": "warn",
    }
