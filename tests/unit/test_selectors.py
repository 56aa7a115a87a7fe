"""Label and field selectors: parsing, matching, error messages, selectable fields."""

from __future__ import annotations

import pytest

from edgek.selectors import (
    META_FIELDS,
    SelectorError,
    allowed_fields,
    label_selector_from_object,
    label_selector_to_string,
    parse_field_selector,
    parse_label_selector,
    selectable_fields,
)

LABELS = {"app": "web", "tier": "fe", "n": "5"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db)", True),
        ("missing notin (db)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("n>4", True),
        ("n>5", False),
        ("n<6", True),
        ("tier>1", False),
        ("app=web,tier=fe", True),
        ("app=web,tier=be", False),
        ("  app = web , tier in ( fe , be ) ", True),
        ("app=", False),
        ("in in (in)", False),
    ],
)
def test_label_selector_matching(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


def test_label_selector_empty_and_none_labels() -> None:
    assert parse_label_selector("").empty
    assert not parse_label_selector("a").empty
    assert parse_label_selector("!a").matches(None)
    assert not parse_label_selector("a").matches(None)


def test_label_selector_string_is_sorted_and_canonical() -> None:
    sel = parse_label_selector("z in (b,a),  a==1,!m,k")
    assert str(sel) == "a==1,k,!m,z in (a,b)"


_KEY_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a=(b", "unable to parse requirement: found '(', expected: identifier"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("-x=1", 'unable to parse requirement: <nil>: Invalid value: "-x": ' + _KEY_MSG),
        (
            "a>x",
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' "
            "operators, the value must be an integer",
        ),
        (
            "a=" + "v" * 64,
            'unable to parse requirement: values[0][a]: Invalid value: "'
            + "v" * 64
            + '": must be no more than 63 characters',
        ),
    ],
)
def test_label_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_label_selector(text)
    assert str(err.value) == message


def test_label_selector_from_object() -> None:
    sel = label_selector_from_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "gone", "operator": "DoesNotExist"},
                {"key": "n", "operator": "Exists"},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "gone": "1"})
    assert not sel.matches({"app": "web", "tier": "fe"})


def test_label_selector_from_object_nil_and_empty() -> None:
    assert not label_selector_from_object(None).matches({})
    assert not label_selector_from_object(None).empty
    assert label_selector_from_object({}).matches({"x": "y"})
    assert label_selector_from_object({"matchLabels": {}}).empty


def test_label_selector_from_object_bad_operator() -> None:
    with pytest.raises(SelectorError) as err:
        label_selector_from_object({"matchExpressions": [{"key": "a", "operator": "Has"}]})
    assert str(err.value) == '"Has" is not a valid label selector operator'


def test_label_selector_to_string() -> None:
    text = label_selector_to_string(
        {
            "matchLabels": {"tier": "fe", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
                {"key": "x", "operator": "DoesNotExist"},
            ],
        }
    )
    assert text == "app=web,env notin (dev,prod),tier=fe,!x"
    assert label_selector_to_string({}) == ""


POD_FIELDS = allowed_fields("", "pods")


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("spec.nodeName=n1", True),
        ("spec.nodeName==n1", True),
        ("spec.nodeName!=n1", False),
        ("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed", True),
        ("status.phase=Failed", False),
        ("metadata.name=p,metadata.namespace=default", True),
        ("spec.host=n1", True),
        ("status.podIP=10.0.0.5", True),
        ("status.nominatedNodeName=", True),
        ("spec.hostNetwork=false", True),
    ],
)
def test_field_selector_on_pods(text: str, matches: bool) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]},
    }
    fields = selectable_fields("", "pods", pod)
    assert parse_field_selector(text, POD_FIELDS).matches(fields) is matches


def test_field_selector_escaped_values() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d", META_FIELDS)
    assert sel.matches({"metadata.name": "a,b=c\\d"})
    assert sel.exact("metadata.name") == "a,b=c\\d"


@pytest.mark.parametrize(
    ("text", "allowed", "message"),
    [
        ("foo=bar", POD_FIELDS, "field label not supported: foo"),
        (
            "spec.foo=1",
            allowed_fields("", "configmaps"),
            '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        ("nope", POD_FIELDS, "invalid selector: 'nope'; can't understand 'nope'"),
        (
            "spec.nodeName=a=b",
            POD_FIELDS,
            "invalid field selector: unescaped character in value: 61",
        ),
        ("spec.nodeName=a,b=c", POD_FIELDS, "field label not supported: b"),
        ("spec.nodeName=x\\", POD_FIELDS, "invalid field selector: invalid escape sequence: \\"),
        ("spec.nodeName=x\\q", POD_FIELDS, "invalid field selector: invalid escape sequence: \\q"),
        (
            "metadata.namespace=x",
            allowed_fields("", "nodes"),
            "field label not supported: metadata.namespace",
        ),
        (
            "involvedObject.name=x",
            allowed_fields("events.k8s.io", "events"),
            "field label not supported: involvedObject.name",
        ),
    ],
)
def test_field_selector_errors(text: str, allowed: frozenset[str], message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_field_selector(text, allowed)
    assert str(err.value) == message


def test_cluster_scoped_objects_have_empty_namespace_field() -> None:
    fields = selectable_fields(
        "", "namespaces", {"metadata": {"name": "ns1"}, "status": {"phase": "Active"}}
    )
    assert fields == {"metadata.name": "ns1", "status.phase": "Active"}
    assert parse_field_selector("metadata.namespace=", META_FIELDS).matches(fields)
    assert not parse_field_selector("metadata.namespace=x", META_FIELDS).matches(fields)


def test_core_event_fields() -> None:
    event = {
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1"},
        "reason": "Started",
        "type": "Normal",
        "reportingComponent": "kubelet",
    }
    fields = selectable_fields("", "events", event)
    assert fields["involvedObject.kind"] == "Pod"
    assert fields["involvedObject.uid"] == "u1"
    assert fields["involvedObject.fieldPath"] == ""
    assert fields["source"] == "kubelet"  # falls back to the reporting component
    sel = parse_field_selector(
        "involvedObject.name=p,involvedObject.namespace=default,involvedObject.kind=Pod",
        allowed_fields("", "events"),
    )
    assert sel.matches(fields)


def test_events_v1_fields() -> None:
    event = {
        "metadata": {"name": "e", "namespace": "default"},
        "regarding": {"kind": "Node", "name": "n1"},
        "reportingController": "kubelet",
        "deprecatedSource": {"component": "kubelet-src"},
        "type": "Warning",
    }
    fields = selectable_fields("events.k8s.io", "events", event)
    assert fields["regarding.name"] == "n1"
    assert fields["source"] == "kubelet-src"
    sel = parse_field_selector(
        "regarding.kind=Node,type=Warning", allowed_fields("events.k8s.io", "events")
    )
    assert sel.matches(fields)


@pytest.mark.parametrize(
    ("group", "resource", "obj", "expected"),
    [
        (
            "",
            "secrets",
            {"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"},
            {"type": "Opaque"},
        ),
        (
            "",
            "nodes",
            {"metadata": {"name": "n"}, "spec": {"unschedulable": True}},
            {"spec.unschedulable": "true"},
        ),
        ("", "nodes", {"metadata": {"name": "n"}}, {"spec.unschedulable": "false"}),
        (
            "",
            "services",
            {"metadata": {"name": "s"}, "spec": {"clusterIP": "10.0.0.1", "type": "ClusterIP"}},
            {"spec.clusterIP": "10.0.0.1", "spec.type": "ClusterIP"},
        ),
        (
            "apps",
            "replicasets",
            {"metadata": {"name": "r"}, "status": {"replicas": 3}},
            {"status.replicas": "3"},
        ),
        ("apps", "replicasets", {"metadata": {"name": "r"}}, {"status.replicas": "0"}),
        (
            "batch",
            "jobs",
            {"metadata": {"name": "j"}, "status": {"succeeded": 2}},
            {"status.successful": "2"},
        ),
        (
            "certificates.k8s.io",
            "certificatesigningrequests",
            {"metadata": {"name": "c"}, "spec": {"signerName": "x/y"}},
            {"spec.signerName": "x/y"},
        ),
        (
            "",
            "pods",
            {"metadata": {"name": "p"}, "spec": {"hostNetwork": True}},
            {"spec.hostNetwork": "true"},
        ),
    ],
)
def test_selectable_fields_per_kind(
    group: str, resource: str, obj: dict[str, object], expected: dict[str, str]
) -> None:
    fields = selectable_fields(group, resource, obj)
    for key, value in expected.items():
        assert fields[key] == value
        assert key in allowed_fields(group, resource)


def test_allowed_fields_default() -> None:
    assert allowed_fields("", "configmaps") == META_FIELDS
    assert allowed_fields("apps", "deployments") == META_FIELDS
    assert "spec.signerName" in allowed_fields("certificates.k8s.io", "certificatesigningrequests")
