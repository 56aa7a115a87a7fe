"""core/v1 Event <-> events.k8s.io/v1 Event conversion."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client.models import CoreV1Event, EventsV1Event

from edgek import kinds
from edgek.events import core_to_events_v1, events_v1_to_core
from edgek.objects import Obj

TYPE_META = {"kind", "apiVersion"}

POD_REF = {
    "kind": "Pod",
    "namespace": "default",
    "name": "web-7d4b9c8f5-x2k9p",
    "uid": "5b1c8e2a-3f4d-4c6b-9a7e-0d1f2e3c4b5a",
    "apiVersion": "v1",
    "resourceVersion": "5678",
    "fieldPath": "spec.containers{web}",
}
NODE_REF = {"kind": "Node", "name": "node-1", "uid": "node-1", "apiVersion": "v1"}


def _named_metadata(name: str) -> Obj:
    return {
        "name": name,
        "namespace": "default",
        "uid": "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b",
        "resourceVersion": "1234",
        "creationTimestamp": "2024-05-01T10:00:00Z",
    }


#: What kubelet's (legacy) recorder writes, as kube-apiserver serves it on /api/v1.
KUBELET_CORE: Obj = {
    "kind": "Event",
    "apiVersion": "v1",
    "metadata": _named_metadata("web-7d4b9c8f5-x2k9p.17c0a1b2c3d4e5f6"),
    "involvedObject": POD_REF,
    "reason": "Pulled",
    "message": 'Container image "nginx:1.25" already present on machine',
    "source": {"component": "kubelet", "host": "node-1"},
    "firstTimestamp": "2024-05-01T10:00:00Z",
    "lastTimestamp": "2024-05-01T10:05:00Z",
    "count": 3,
    "type": "Normal",
    "eventTime": None,
    "reportingComponent": "kubelet",
    "reportingInstance": "node-1",
}

#: The same object as kube-apiserver serves it on /apis/events.k8s.io/v1.
KUBELET_EVENTS: Obj = {
    "kind": "Event",
    "apiVersion": "events.k8s.io/v1",
    "metadata": _named_metadata("web-7d4b9c8f5-x2k9p.17c0a1b2c3d4e5f6"),
    "eventTime": None,
    "reportingController": "kubelet",
    "reportingInstance": "node-1",
    "reason": "Pulled",
    "regarding": POD_REF,
    "note": 'Container image "nginx:1.25" already present on machine',
    "type": "Normal",
    "deprecatedSource": {"component": "kubelet", "host": "node-1"},
    "deprecatedFirstTimestamp": "2024-05-01T10:00:00Z",
    "deprecatedLastTimestamp": "2024-05-01T10:05:00Z",
    "deprecatedCount": 3,
}

#: What kube-scheduler writes through the events.k8s.io/v1 API.
SCHEDULER_EVENTS: Obj = {
    "kind": "Event",
    "apiVersion": "events.k8s.io/v1",
    "metadata": _named_metadata("web-7d4b9c8f5-x2k9p.17c0a1b2d0000001"),
    "eventTime": "2024-05-01T09:59:59.123456Z",
    "reportingController": "default-scheduler",
    "reportingInstance": "default-scheduler-control-plane",
    "action": "Binding",
    "reason": "Scheduled",
    "regarding": {k: v for k, v in POD_REF.items() if k != "fieldPath"},
    "note": "Successfully assigned default/web-7d4b9c8f5-x2k9p to node-1",
    "type": "Normal",
    "deprecatedSource": {},
    "deprecatedFirstTimestamp": None,
    "deprecatedLastTimestamp": None,
}

#: The scheduler's event as kube-apiserver serves it on /api/v1.
SCHEDULER_CORE: Obj = {
    "kind": "Event",
    "apiVersion": "v1",
    "metadata": _named_metadata("web-7d4b9c8f5-x2k9p.17c0a1b2d0000001"),
    "involvedObject": {k: v for k, v in POD_REF.items() if k != "fieldPath"},
    "reason": "Scheduled",
    "message": "Successfully assigned default/web-7d4b9c8f5-x2k9p to node-1",
    "source": {},
    "firstTimestamp": None,
    "lastTimestamp": None,
    "type": "Normal",
    "eventTime": "2024-05-01T09:59:59.123456Z",
    "action": "Binding",
    "reportingComponent": "default-scheduler",
    "reportingInstance": "default-scheduler-control-plane",
}

#: A repeated event with a series and a related object (events.k8s.io/v1 recorder).
SERIES_EVENTS: Obj = {
    "kind": "Event",
    "apiVersion": "events.k8s.io/v1",
    "metadata": _named_metadata("web-7d4b9c8f5-x2k9p.17c0a1b2d0000002"),
    "eventTime": "2024-05-01T10:00:00.000001Z",
    "series": {"count": 5, "lastObservedTime": "2024-05-01T10:04:30.500000Z"},
    "reportingController": "default-scheduler",
    "reportingInstance": "default-scheduler-control-plane",
    "action": "Scheduling",
    "reason": "FailedScheduling",
    "regarding": POD_REF,
    "related": NODE_REF,
    "note": "0/1 nodes are available: 1 Insufficient cpu.",
    "type": "Warning",
    "deprecatedSource": {},
    "deprecatedFirstTimestamp": None,
    "deprecatedLastTimestamp": None,
}

SERIES_CORE: Obj = {
    "kind": "Event",
    "apiVersion": "v1",
    "metadata": _named_metadata("web-7d4b9c8f5-x2k9p.17c0a1b2d0000002"),
    "involvedObject": POD_REF,
    "reason": "FailedScheduling",
    "message": "0/1 nodes are available: 1 Insufficient cpu.",
    "source": {},
    "firstTimestamp": None,
    "lastTimestamp": None,
    "type": "Warning",
    "eventTime": "2024-05-01T10:00:00.000001Z",
    "series": {"count": 5, "lastObservedTime": "2024-05-01T10:04:30.500000Z"},
    "action": "Scheduling",
    "related": NODE_REF,
    "reportingComponent": "default-scheduler",
    "reportingInstance": "default-scheduler-control-plane",
}

PAIRS = [
    pytest.param(KUBELET_CORE, KUBELET_EVENTS, id="kubelet"),
    pytest.param(SCHEDULER_CORE, SCHEDULER_EVENTS, id="scheduler"),
    pytest.param(SERIES_CORE, SERIES_EVENTS, id="series"),
]


@pytest.mark.parametrize(("core", "events"), PAIRS)
def test_core_to_events_v1(core: Obj, events: Obj) -> None:
    assert core_to_events_v1(core) == events


@pytest.mark.parametrize(("core", "events"), PAIRS)
def test_events_v1_to_core(core: Obj, events: Obj) -> None:
    assert events_v1_to_core(events) == core


@pytest.mark.parametrize(("core", "events"), PAIRS)
def test_round_trips(core: Obj, events: Obj) -> None:
    assert events_v1_to_core(core_to_events_v1(core)) == core
    assert core_to_events_v1(events_v1_to_core(events)) == events


@pytest.mark.parametrize(("core", "events"), PAIRS)
def test_inputs_untouched_and_outputs_independent(core: Obj, events: Obj) -> None:
    core_before, events_before = copy.deepcopy(core), copy.deepcopy(events)
    as_events = core_to_events_v1(core)
    as_core = events_v1_to_core(events)
    assert core == core_before
    assert events == events_before
    as_events["metadata"]["name"] = "changed"
    as_events["regarding"]["name"] = "changed"
    as_core["metadata"]["labels"] = {"x": "y"}
    as_core["involvedObject"]["kind"] = "changed"
    if "series" in as_core:
        as_core["series"]["count"] = 99
    assert core == core_before
    assert events == events_before


def test_no_reporting_fallback_to_source() -> None:
    """Upstream copies the fields 1:1: ``source`` never fills ``reportingController``."""
    legacy = {
        "metadata": {"name": "foo", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "foo"},
        "source": {"component": "controller-manager", "host": "master1"},
        "message": "convert core event to v1 event",
        "reportingComponent": "",
        "reportingInstance": "",
    }
    out = core_to_events_v1(legacy)
    assert "reportingController" not in out
    assert "reportingInstance" not in out
    assert out["deprecatedSource"] == {"component": "controller-manager", "host": "master1"}
    assert out["note"] == "convert core event to v1 event"
    back = events_v1_to_core(out)
    assert back["reportingComponent"] == ""
    assert back["reportingInstance"] == ""
    assert back["source"] == legacy["source"]


def test_no_source_fallback_to_reporting() -> None:
    out = events_v1_to_core(SCHEDULER_EVENTS)
    assert out["source"] == {}
    assert out["reportingComponent"] == "default-scheduler"


@pytest.mark.parametrize("event_time", ["absent", None])
def test_empty_event_time_is_null_in_both_versions(event_time: Any) -> None:
    core = {k: v for k, v in KUBELET_CORE.items() if k != "eventTime"}
    if event_time is None:
        core["eventTime"] = None
    out = core_to_events_v1(core)
    assert "eventTime" in out
    assert out["eventTime"] is None
    assert events_v1_to_core(out)["eventTime"] is None
    assert out["deprecatedFirstTimestamp"] == KUBELET_CORE["firstTimestamp"]


def _rendered_when_zero(type_name: str) -> set[str]:
    """Fields Go's encoder writes even when unset: non-pointer structs (Time and MicroTime
    render as null) and non-``omitempty`` fields."""
    out = set()
    for name, f in kinds.fields(type_name).items():
        ref = kinds.resolve(f.type)
        struct = not f.type.startswith("*") and (
            ref.shape == "struct" or ref.name in ("meta/v1.Time", "meta/v1.MicroTime")
        )
        if struct or not f.omitempty:
            out.add(name)
    return out


def test_empty_objects_render_go_zero_values() -> None:
    events = core_to_events_v1({})
    assert events == {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": {},
        "regarding": {},
        "deprecatedSource": {},
        "deprecatedFirstTimestamp": None,
        "deprecatedLastTimestamp": None,
        "eventTime": None,
    }
    assert set(events) - TYPE_META == _rendered_when_zero("events/v1.Event")
    core = events_v1_to_core({})
    assert core == {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {},
        "involvedObject": {},
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    }
    assert set(core) - TYPE_META == _rendered_when_zero("core/v1.Event")


def test_nulls_and_zero_scalars() -> None:
    core = {
        "metadata": None,
        "involvedObject": None,
        "source": None,
        "reason": "",
        "message": None,
        "count": 0,
        "type": "",
        "series": None,
        "related": None,
        "action": "",
        "reportingComponent": None,
        "reportingInstance": None,
    }
    assert core_to_events_v1(core) == core_to_events_v1({})
    events = {
        "metadata": None,
        "regarding": None,
        "deprecatedSource": None,
        "note": "",
        "deprecatedCount": 0,
        "series": None,
        "related": None,
        "reportingController": "",
        "reportingInstance": None,
        "eventTime": None,
    }
    assert events_v1_to_core(events) == events_v1_to_core({})


def test_zero_series() -> None:
    """``series.count`` is ``omitempty`` in core/v1 only; lastObservedTime renders as null."""
    assert core_to_events_v1({"series": {}})["series"] == {"count": 0, "lastObservedTime": None}
    assert events_v1_to_core({"series": {"count": 0}})["series"] == {"lastObservedTime": None}


def test_times_are_not_reformatted() -> None:
    core = {
        "eventTime": "2024-05-01T12:00:00.1+02:00",
        "firstTimestamp": "2024-05-01T10:00:00.5Z",
        "lastTimestamp": "2024-05-01T12:00:00+02:00",
        "series": {"count": 2, "lastObservedTime": "2024-05-01T10:00:00Z"},
    }
    out = core_to_events_v1(core)
    assert out["eventTime"] == core["eventTime"]
    assert out["deprecatedFirstTimestamp"] == core["firstTimestamp"]
    assert out["deprecatedLastTimestamp"] == core["lastTimestamp"]
    assert out["series"] == core["series"]
    back = events_v1_to_core(out)
    assert {k: back[k] for k in core} == core


def test_fields_of_the_other_version_are_dropped() -> None:
    """Names a version does not have are not carried over (a typed decode drops them)."""
    events = core_to_events_v1({**KUBELET_CORE, "regarding": NODE_REF, "note": "x", "extra": 1})
    assert events == KUBELET_EVENTS
    core = events_v1_to_core({**SCHEDULER_EVENTS, "involvedObject": NODE_REF, "message": "x"})
    assert core == SCHEDULER_CORE
    series = core_to_events_v1({"series": {"count": 2, "state": "Ongoing"}})["series"]
    assert series == {"count": 2, "lastObservedTime": None}


@pytest.mark.parametrize("drop", sorted(set(KUBELET_CORE) | set(SERIES_CORE)))
def test_sparse_core_round_trip_keeps_every_field(drop: str) -> None:
    """Whatever subset a client sent, a round trip keeps it and only adds Go zeros."""
    core = {k: v for k, v in {**KUBELET_CORE, **SERIES_CORE}.items() if k != drop}
    back = events_v1_to_core(core_to_events_v1(core))
    assert {k: back[k] for k in core if k in back} == core
    assert set(core) <= set(back)
    assert all(back[k] in ({}, None, "") for k in set(back) - set(core) - TYPE_META)
    assert (back["kind"], back["apiVersion"]) == ("Event", "v1")


@pytest.mark.parametrize("drop", sorted(SERIES_EVENTS))
def test_sparse_events_round_trip_keeps_every_field(drop: str) -> None:
    events = {k: v for k, v in SERIES_EVENTS.items() if k != drop}
    back = core_to_events_v1(events_v1_to_core(events))
    assert {k: back[k] for k in events} == events
    assert all(back[k] in ({}, None, "") for k in set(back) - set(events) - TYPE_META)
    assert (back["kind"], back["apiVersion"]) == ("Event", "events.k8s.io/v1")


@pytest.mark.parametrize(("core", "events"), PAIRS)
def test_official_client_reads_both_views(core: Obj, events: Obj) -> None:
    as_core = CoreV1Event.from_dict(events_v1_to_core(events))
    assert as_core is not None
    assert as_core.message == events["note"]
    assert as_core.involved_object.name == events["regarding"]["name"]
    if events["eventTime"] is None:
        # Like kube-apiserver, the new API serves legacy events with eventTime: null,
        # which the generated client rejects (kubernetes-client/python#1221).
        with pytest.raises(ValueError, match="eventTime"):
            EventsV1Event.from_dict(core_to_events_v1(core))
        return
    as_events = EventsV1Event.from_dict(core_to_events_v1(core))
    assert as_events is not None
    assert as_events.note == core["message"]
    assert as_events.reporting_controller == core["reportingComponent"]
    assert as_events.regarding is not None
    assert as_events.regarding.name == core["involvedObject"]["name"]
