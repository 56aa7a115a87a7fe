"""Prometheus metrics of the API server at ``/metrics`` (authorized through RBAC like any
non-resource path: upstream's ``system:monitoring`` role), under upstream's names:

- ``apiserver_request_total`` {verb, dry_run, group, version, resource, subresource, scope,
  component, code}, ``apiserver_request_duration_seconds`` (histogram, not for WATCH or
  CONNECT, which last as long as the client wants);
- ``apiserver_registered_watchers`` {group, version, kind}: watches being served;
- ``workqueue_depth`` {name}: keys waiting in each control loop's queue;
- ``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
  ``process_start_time_seconds``.

The text exposition format (0.0.4) is written here: a few dozen lines for these families,
where prometheus_client would add a dependency, its global registry and collectors we do not
need. Recording a request is two dict updates and a bisect on the request path.
"""

from __future__ import annotations

import bisect
import os
import resource
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from aiohttp import web

from edgek import workqueue
from server.storage.requestinfo import RequestInfo

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: upstream's buckets for apiserver_request_duration_seconds
DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15,
    20, 30, 45, 60,
)  # fmt: skip
#: the RBAC verb as upstream reports it (apiserver_request_total's ``verb``)
REPORTED_VERBS = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}
LONG_RUNNING = ("WATCH", "CONNECT")
#: request key for the resource request being served (set once the path is parsed)
INFO_KEY = web.RequestKey("metrics_info", RequestInfo)

# (verb, dry_run, group, version, resource, subresource, scope, component)
Labels = tuple[str, str, str, str, str, str, str, str]
REQUEST_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope")


class Metrics:
    """The API server's counters, filled by ``record`` and read by ``exposition``."""

    def __init__(self) -> None:
        self.requests: dict[tuple[Labels, int], int] = {}
        #: per label set: bucket counts (the last one is +Inf), sum of seconds
        self.durations: dict[Labels, tuple[list[int], list[float]]] = {}
        self.watchers: dict[tuple[str, str, str], int] = {}
        self.started = time.time()

    def labels(self, request: web.Request) -> Labels:
        """The request's label values (a non-resource request has only its verb)."""
        info = request.get(INFO_KEY)
        dry_run = "All" if "dryRun" in request.query else ""
        if info is None:
            # streaming (pods/log, exec, ...) is routed before a RequestInfo is made
            verb = "CONNECT" if "sub" in request.match_info else request.method
            return (verb, dry_run, "", "", "", "", "", "apiserver")
        verb = REPORTED_VERBS[info.verb]
        if verb == "PATCH" and "apply-patch" in request.content_type:
            verb = "APPLY"
        kind = info.kind
        scope = "resource" if info.name else "namespace" if info.namespace else "cluster"
        return (
            verb,
            dry_run,
            kind.group,
            kind.version,
            kind.resource,
            info.subresource,
            scope,
            "apiserver",
        )

    def record(self, labels: Labels, code: int, seconds: float) -> None:
        """Count one finished request."""
        key = (labels, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        if labels[0] in LONG_RUNNING:
            return
        entry = self.durations.get(labels)
        if entry is None:
            entry = self.durations[labels] = ([0] * (len(DURATION_BUCKETS) + 1), [0.0])
        entry[0][bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        entry[1][0] += seconds

    def watching(self, info: RequestInfo, delta: int) -> None:
        """One more (``delta`` 1) or one fewer (-1) watch being served."""
        key = (info.kind.group, info.kind.version, info.kind.kind)
        self.watchers[key] = self.watchers.get(key, 0) + delta

    def exposition(self) -> str:
        """Every metric in the Prometheus text format."""
        return "".join(
            (
                *_family(
                    "apiserver_request_total",
                    "counter",
                    "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
                    self._request_samples(),
                ),
                *self._duration_family(),
                *_family(
                    "apiserver_registered_watchers",
                    "gauge",
                    "Number of currently registered watchers for a given resources",
                    (
                        ("", _labels(("group", "version", "kind"), k), v)
                        for k, v in sorted(self.watchers.items())
                    ),
                ),
                *_family(
                    "workqueue_depth",
                    "gauge",
                    "Current depth of workqueue",
                    (
                        ("", _labels(("name",), (n,)), d)
                        for n, d in sorted(workqueue.depths().items())
                    ),
                ),
                *_process_families(self.started),
            )
        )

    def _request_samples(self) -> Iterator[tuple[str, str, float]]:
        for (labels, code), count in sorted(self.requests.items()):
            yield "", _labels((*REQUEST_LABELS, "component", "code"), (*labels, str(code))), count

    def _duration_family(self) -> Iterator[str]:
        name = "apiserver_request_duration_seconds"
        samples: list[tuple[str, str, float]] = []
        for labels, (buckets, total) in sorted(self.durations.items()):
            base = _labels((*REQUEST_LABELS, "component"), labels)
            running = 0
            for bound, count in zip((*DURATION_BUCKETS, "+Inf"), buckets, strict=True):
                running += count
                samples.append(("_bucket", f'{base[:-1]},le="{bound}"}}', running))
            samples += [("_sum", base, total[0]), ("_count", base, running)]
        yield from _family(
            name,
            "histogram",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            samples,
        )


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(
    name: str, kind: str, help: str, samples: Iterable[tuple[str, str, float]]
) -> Iterator[str]:
    """One metric family: HELP, TYPE, then ``name<suffix>{labels} value`` lines."""
    yield f"# HELP {name} {help}\n# TYPE {name} {kind}\n"
    for suffix, labels, value in samples:
        yield f"{name}{suffix}{labels} {_number(value)}\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _process_families(started: float) -> Iterator[str]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    rss = pages * os.sysconf("SC_PAGE_SIZE")
    yield from _family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        [("", "", usage.ru_utime + usage.ru_stime)],
    )
    yield from _family(
        "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", [("", "", rss)]
    )
    yield from _family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        [("", "", started)],
    )
