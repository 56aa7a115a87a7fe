"""Measurements the benchmarks share: a process's RSS and CPU time from /proc, percentiles."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pct(values: list[float], p: float) -> float:
    """The ``p`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def interpreter_rss_mb(python: str) -> float:
    """RSS of a bare ``python`` that imported asyncio, MB (the floor of a process's RSS)."""
    code = "import asyncio; print(open('/proc/self/status').read())"
    status = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    lines = status.stdout.splitlines()
    return next(int(v.split()[1]) for v in lines if v.startswith("VmRSS")) / 1024
