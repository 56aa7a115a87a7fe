"""The Prometheus text exposition format (0.0.4), written by hand, and the metrics every
edgek process has: ``process_*`` and ``workqueue_depth``. The API server
(``server/apiserver/metrics.py``) and the agent (its streaming port) serve ``/metrics`` with
these; prometheus_client would add a dependency, a global registry and collectors for the
few families edgek has.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgek import workqueue

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: when this process started (process_start_time_seconds)
STARTED = time.time()

#: (name suffix, ``{labels}`` text, value) of one sample line
Sample = tuple[str, str, float]


def labels(names: Iterable[str], values: Iterable[str]) -> str:
    """``{name="value",...}`` with the values escaped."""
    inner = ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


def escape(value: str) -> str:
    """Backslash, double quote and newline escaped (label values; logfmt values)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def family(name: str, kind: str, help: str, samples: Iterable[Sample]) -> Iterator[str]:
    """One metric family: HELP, TYPE, then ``name<suffix>{labels} value`` lines."""
    yield f"# HELP {name} {help}\n# TYPE {name} {kind}\n"
    for suffix, text, value in samples:
        yield f"{name}{suffix}{text} {_number(value)}\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def common_families() -> Iterator[str]:
    """``workqueue_depth`` of this process's queues and its ``process_*`` metrics."""
    depths = sorted(workqueue.depths().items())
    yield from family(
        "workqueue_depth",
        "gauge",
        "Current depth of workqueue",
        (("", labels(("name",), (n,)), d) for n, d in depths),
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    yield from family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        [("", "", usage.ru_utime + usage.ru_stime)],
    )
    yield from family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        [("", "", pages * os.sysconf("SC_PAGE_SIZE"))],
    )
    yield from family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        [("", "", STARTED)],
    )
