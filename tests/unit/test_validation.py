"""Validation: name rules, upstream-worded causes per kind, update rules, schema checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edgek import names
from edgek.defaults import apply_defaults
from edgek.status import invalid
from edgek.validation import (
    cron_schedule_error,
    render_value,
    unknown_fields,
    validate,
    validate_types,
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
    "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


# ---------------------------------------------------------------------------
# names


@pytest.mark.parametrize(
    ("fn", "value", "errors"),
    [
        (names.is_dns1123_subdomain, "example.com", []),
        (names.is_dns1123_subdomain, "Foo_bar", [SUBDOMAIN_MSG]),
        (names.is_dns1123_subdomain, "a" * 254, ["must be no more than 253 characters"]),
        (names.is_dns1123_label, "my-name", []),
        (names.is_dns1123_label, "a.b", ["must not contain dots"]),
        (names.is_dns1123_label, "-a", [LABEL_MSG]),
        (names.is_dns1035_label, "1abc", [DNS1035_MSG]),
        (names.is_qualified_name, "example.com/MyName", []),
        (names.is_qualified_name, "a b", [NAME_PART_MSG]),
        (names.is_qualified_name, "/x", ["prefix part must be non-empty"]),
        (names.is_qualified_name, "x/", ["name part must be non-empty", NAME_PART_MSG]),
        (names.is_qualified_name, "Bad_/x", ["prefix part " + SUBDOMAIN_MSG]),
        (names.is_label_value, "", []),
        (names.is_label_value, "-x", [LABEL_VALUE_MSG]),
        (names.is_config_map_key, "..x", ["must not start with '..'"]),
        (
            names.is_env_var_name,
            "MY=VAR",
            [
                "a valid environment variable name must consist only of printable ASCII characters other than '='"
            ],
        ),
        (names.is_env_var_name, "1st.var-OK", []),
        (
            names.is_valid_port_name,
            "HTTP",
            [
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)",
            ],
        ),
        (names.is_valid_port_name, "a--b", ["must not contain consecutive hyphens"]),
        (names.is_valid_port_num, 0, ["must be between 1 and 65535, inclusive"]),
        (names.is_path_segment_name, "..", ["may not be '..'"]),
        (names.is_path_segment_name, "a%b/c", ["may not contain '/'", "may not contain '%'"]),
    ],
)
def test_name_rules(fn: Any, value: Any, errors: list[str]) -> None:
    assert fn(value) == errors


def test_generate_name_prefix_may_end_with_dash() -> None:
    assert names.name_is_dns_subdomain("web-", True) == []
    assert names.name_is_dns_subdomain("web-", False) == [SUBDOMAIN_MSG]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x", '"x"'),
        ('a"b', '"a\\"b"'),
        (-1, "-1"),
        (True, "true"),
        (None, "null"),
        (["10.0.0.1"], '[]string{"10.0.0.1"}'),
        ({"b": "2", "a": "1"}, 'map[string]string{"a":"1", "b":"2"}'),
    ],
)
def test_render_value(value: Any, shown: str) -> None:
    assert render_value(value) == shown


# ---------------------------------------------------------------------------
# helpers


def _check(
    group: str,
    resource: str,
    kind: str,
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
    *,
    namespaced: bool = True,
) -> list[dict[str, str]]:
    apply_defaults(group, resource, obj)
    if old is not None:
        apply_defaults(group, resource, old)
    return validate(group, resource, kind, obj, old, namespaced=namespaced)


def _messages(causes: list[dict[str, str]]) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in causes]


def _pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx:1"}]}
    base.update(spec)
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": base}


def _deployment(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
        },
    }
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": base}


# ---------------------------------------------------------------------------
# metadata


def test_valid_pod_has_no_causes() -> None:
    assert _check("", "pods", "Pod", _pod()) == []


def test_invalid_name_cause_and_status_message() -> None:
    obj = _pod()
    obj["metadata"]["name"] = "Foo_bar"
    causes = _check("", "pods", "Pod", obj)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "Foo_bar": ' + SUBDOMAIN_MSG,
            "field": "metadata.name",
        }
    ]
    err = invalid("Pod", "", "Foo_bar", causes)
    assert (
        err.message
        == 'Pod "Foo_bar" is invalid: metadata.name: Invalid value: "Foo_bar": ' + SUBDOMAIN_MSG
    )


@pytest.mark.parametrize(
    ("group", "resource", "kind", "name", "namespaced", "expected"),
    [
        (
            "",
            "namespaces",
            "Namespace",
            "a.b",
            False,
            ['metadata.name: Invalid value: "a.b": must not contain dots'],
        ),
        (
            "",
            "services",
            "Service",
            "1web",
            True,
            ['metadata.name: Invalid value: "1web": ' + DNS1035_MSG],
        ),
        ("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", "system:Admin", False, []),
        (
            "rbac.authorization.k8s.io",
            "roles",
            "Role",
            "a/b",
            True,
            ["metadata.name: Invalid value: \"a/b\": may not contain '/'"],
        ),
        (
            "",
            "configmaps",
            "ConfigMap",
            "UPPER",
            True,
            ['metadata.name: Invalid value: "UPPER": ' + SUBDOMAIN_MSG],
        ),
        (
            "certificates.k8s.io",
            "certificatesigningrequests",
            "CertificateSigningRequest",
            "Any_Name",
            False,
            [],
        ),
    ],
)
def test_name_rules_per_kind(
    group: str, resource: str, kind: str, name: str, namespaced: bool, expected: list[str]
) -> None:
    obj: dict[str, Any] = {"metadata": {"name": name}}
    if namespaced:
        obj["metadata"]["namespace"] = "default"
    causes = [
        c
        for c in _check(group, resource, kind, obj, namespaced=namespaced)
        if c["field"].startswith("metadata")
    ]
    assert _messages(causes) == expected


def test_metadata_rules() -> None:
    obj: dict[str, Any] = {
        "metadata": {
            "labels": {"ok": "yes", "bad key": "v", "k": "-bad"},
            "annotations": {"x/y/z": "1"},
            "finalizers": ["example.com/ok", "bad finalizer"],
        }
    }
    causes = _check("", "configmaps", "ConfigMap", obj)
    assert _messages(causes) == [
        "metadata.name: Required value: name or generateName is required",
        "metadata.namespace: Required value",
        'metadata.labels: Invalid value: "bad key": ' + NAME_PART_MSG,
        'metadata.labels: Invalid value: "-bad": ' + LABEL_VALUE_MSG,
        'metadata.annotations: Invalid value: "x/y/z": a qualified name must consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
        "'/' (e.g. 'example.com/MyName')",
        'metadata.finalizers: Invalid value: "bad finalizer": ' + NAME_PART_MSG,
    ]


def test_annotations_too_long_and_namespace_forbidden() -> None:
    obj = {"metadata": {"name": "n", "namespace": "x", "annotations": {"a": "v" * (256 * 1024)}}}
    causes = _check("", "namespaces", "Namespace", obj, namespaced=False)
    assert causes == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: not allowed on this type",
            "field": "metadata.namespace",
        },
        {
            "reason": "FieldValueTooLong",
            "message": "Too long: must have at most 262144 bytes",
            "field": "metadata.annotations",
        },
    ]


def test_generate_name_is_checked_with_prefix_rule() -> None:
    obj = {"metadata": {"generateName": "Web-", "name": "web-abcde", "namespace": "d"}}
    assert _messages(_check("", "configmaps", "ConfigMap", obj)) == [
        'metadata.generateName: Invalid value: "Web-": ' + SUBDOMAIN_MSG
    ]


# ---------------------------------------------------------------------------
# pods


def test_pod_container_errors() -> None:
    obj = _pod(
        containers=[
            {
                "name": "Web",
                "image": "",
                "ports": [
                    {"containerPort": 70000, "protocol": "XTCP"},
                    {"containerPort": 80, "name": "HTTP"},
                ],
                "env": [{"name": "A=B"}],
                "volumeMounts": [{"name": "missing", "mountPath": "/x"}],
            },
            {"name": "sidecar", "image": "busybox"},
            {"name": "sidecar", "image": "busybox"},
        ],
        restartPolicy="Sometimes",
    )
    assert _messages(_check("", "pods", "Pod", obj)) == [
        'spec.containers[0].name: Invalid value: "Web": ' + LABEL_MSG,
        "spec.containers[0].image: Required value",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[0].protocol: Unsupported value: "XTCP": supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[0].ports[1].name: Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
        'spec.containers[0].ports[1].name: Invalid value: "HTTP": must contain at least one letter (a-z)',
        "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        'spec.containers[0].volumeMounts[0].name: Not found: "missing"',
        'spec.containers[2].name: Duplicate value: "sidecar"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
    ]


def test_pod_without_containers() -> None:
    causes = _check("", "pods", "Pod", _pod(containers=[]))
    assert causes == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
    ]


def test_pod_update_allows_image_and_forbids_other_changes() -> None:
    old = _pod(tolerations=[{"key": "a", "operator": "Exists"}])
    apply_defaults("", "pods", old)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    new["spec"]["activeDeadlineSeconds"] = 30
    assert _check("", "pods", "Pod", new, old) == []

    changed = copy.deepcopy(old)
    changed["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    causes = _check("", "pods", "Pod", changed, old)
    assert len(causes) == 1
    assert causes[0]["field"] == "spec"
    assert causes[0]["reason"] == "FieldValueForbidden"
    assert causes[0]["message"].startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
        "additions to existing tolerations)"
    )


def test_pod_update_cannot_remove_toleration_or_raise_deadline() -> None:
    old = _pod(tolerations=[{"key": "a", "operator": "Exists"}], activeDeadlineSeconds=10)
    apply_defaults("", "pods", old)
    new = copy.deepcopy(old)
    new["spec"]["tolerations"] = []
    new["spec"]["activeDeadlineSeconds"] = 20
    assert _messages(_check("", "pods", "Pod", new, old))[0] == (
        "spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"
    )
    assert _check("", "pods", "Pod", new, old)[-1]["field"] == "spec"


# ---------------------------------------------------------------------------
# workloads


def test_deployment_selector_must_match_template() -> None:
    obj = _deployment(replicas=-1, selector={"matchLabels": {"app": "y"}})
    assert _messages(_check("apps", "deployments", "Deployment", obj)) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"x"}: '
        "`selector` does not match template `labels`",
    ]


def test_deployment_selector_required_and_empty() -> None:
    missing = _deployment()
    del missing["spec"]["selector"]
    assert _messages(_check("apps", "deployments", "Deployment", missing)) == [
        "spec.selector: Required value"
    ]
    empty = _deployment(selector={})
    assert _messages(_check("apps", "deployments", "Deployment", empty)) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
    ]


def test_deployment_template_rules() -> None:
    obj = _deployment(strategy={"type": "Recreate", "rollingUpdate": {}})
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    assert _messages(_check("apps", "deployments", "Deployment", obj)) == [
        "spec.template.spec.containers[0].image: Required value",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
    ]


def test_deployment_match_expressions_validation() -> None:
    obj = _deployment(
        selector={
            "matchLabels": {"app": "x"},
            "matchExpressions": [
                {"key": "t", "operator": "In"},
                {"key": "u", "operator": "Has", "values": ["a"]},
            ],
        }
    )
    assert _messages(_check("apps", "deployments", "Deployment", obj)) == [
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        'spec.selector.matchExpressions[1].operator: Invalid value: "Has": not a valid selector operator',
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, '
        'MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"t", Operator:"In", '
        'Values:[]string(nil)}, v1.LabelSelectorRequirement{Key:"u", Operator:"Has", Values:[]string{"a"}}}}: '
        "invalid label selector",
    ]


def test_deployment_selector_is_immutable() -> None:
    old = _deployment()
    new = _deployment(selector={"matchLabels": {"app": "x", "tier": "web"}})
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "web"
    assert _messages(_check("apps", "deployments", "Deployment", new, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"x", '
        '"tier":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable'
    ]
    scaled = _deployment(replicas=5)
    assert _check("apps", "deployments", "Deployment", scaled, old) == []


def test_replica_set_daemon_set_stateful_set() -> None:
    rs = _deployment(selector={})
    assert _messages(_check("apps", "replicasets", "ReplicaSet", rs))[-1].endswith(
        "empty selector is invalid for deployment"
    )
    ds = _deployment()
    ds["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 5
    assert _messages(_check("apps", "daemonsets", "DaemonSet", ds)) == [
        "spec.template.spec.activeDeadlineSeconds: Invalid value: 5: activeDeadlineSeconds must be nil for DaemonSet"
    ]
    sts = _deployment(podManagementPolicy="Random")
    assert _messages(_check("apps", "statefulsets", "StatefulSet", sts)) == [
        'spec.podManagementPolicy: Unsupported value: "Random": supported values: "OrderedReady", "Parallel"'
    ]


def test_stateful_set_update_forbids_other_fields() -> None:
    old = _deployment(serviceName="a")
    new = _deployment(serviceName="b", replicas=3)
    causes = _check("apps", "statefulsets", "StatefulSet", new, old)
    assert _messages(causes) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
        "'template', 'updateStrategy', 'revisionHistoryLimit', "
        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    ]
    assert (
        _check("apps", "statefulsets", "StatefulSet", _deployment(serviceName="a", replicas=3), old)
        == []
    )


def _job(**template_spec: Any) -> dict[str, Any]:
    tspec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    tspec.update(template_spec)
    return {
        "metadata": {"name": "j", "namespace": "default"},
        "spec": {"template": {"spec": tspec}},
    }


def test_job_restart_policy() -> None:
    assert _messages(_check("batch", "jobs", "Job", _job())) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"'
    ]
    assert _check("batch", "jobs", "Job", _job(restartPolicy="Never")) == []


def test_job_template_immutable_unless_suspended() -> None:
    old = _job(restartPolicy="Never")
    new = _job(restartPolicy="OnFailure")
    assert _messages(_check("batch", "jobs", "Job", new, old)) == [
        "spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"
    ]
    old["spec"]["suspend"] = True
    new["spec"]["suspend"] = True
    assert _check("batch", "jobs", "Job", new, old) == []


def test_job_selector_must_match_template_when_given() -> None:
    job = _job(restartPolicy="Never")
    job["spec"]["selector"] = {"matchLabels": {"controller-uid": "u"}}
    job["spec"]["template"]["metadata"] = {"labels": {"controller-uid": "other"}}
    assert _messages(_check("batch", "jobs", "Job", job)) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"controller-uid":"other"}: '
        "`selector` does not match template `labels`"
    ]


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("*/5 * * * *", None),
        ("0 0 1 jan mon", None),
        ("@daily", None),
        ("@every 1h30m", None),
        ("0-59/15 0,12 ? * 1-5", None),
        ("*/5 * * *", "expected exactly 5 fields, found 4: [*/5 * * *]"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("@often", "unrecognized descriptor: @often"),
        ("", "empty spec string"),
    ],
)
def test_cron_schedule(schedule: str, error: str | None) -> None:
    assert cron_schedule_error(schedule) == error


def test_cron_job_validation() -> None:
    cj: dict[str, Any] = {
        "metadata": {"name": "x" * 53, "namespace": "default"},
        "spec": {
            "schedule": "TZ=UTC * * * * *",
            "concurrencyPolicy": "Sometimes",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "c", "image": "b"}],
                        }
                    }
                }
            },
        },
    }
    assert _messages(_check("batch", "cronjobs", "CronJob", cj)) == [
        f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters',
        'spec.schedule: Invalid value: "TZ=UTC * * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead',
        'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',
    ]
    del cj["spec"]["schedule"]
    assert "spec.schedule: Required value" in _messages(_check("batch", "cronjobs", "CronJob", cj))


# ---------------------------------------------------------------------------
# services, config, others


def _service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def test_service_validation() -> None:
    assert _messages(_check("", "services", "Service", _service(selector={"app": "x"}))) == [
        "spec.ports: Required value"
    ]
    assert _check("", "services", "Service", _service(clusterIP="None")) == []
    assert (
        _check("", "services", "Service", _service(type="ExternalName", externalName="example.com"))
        == []
    )
    causes = _check(
        "",
        "services",
        "Service",
        _service(
            type="Fancy",
            ports=[{"port": 0, "name": "a"}, {"port": 80, "name": "a", "targetPort": 70000}],
        ),
    )
    assert _messages(causes) == [
        'spec.type: Unsupported value: "Fancy": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        # targetPort defaults to port, so it is reported too (as upstream does)
        "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
        'spec.ports[1].name: Duplicate value: "a"',
        "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ]


def test_service_duplicate_port_and_unnamed_ports() -> None:
    causes = _check(
        "", "services", "Service", _service(ports=[{"port": 80}, {"port": 80, "name": "b"}])
    )
    assert _messages(causes) == [
        "spec.ports[0].name: Required value",
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
        'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}',
    ]


def test_service_cluster_ip_cannot_change() -> None:
    old = _service(ports=[{"port": 80}], clusterIP="10.43.0.10", clusterIPs=["10.43.0.10"])
    new = _service(ports=[{"port": 80}], clusterIP="10.43.0.11", clusterIPs=["10.43.0.11"])
    assert _messages(_check("", "services", "Service", new, old)) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.43.0.11"}: may not change once set'
    ]


def test_config_map_and_secret_keys() -> None:
    cm = {
        "metadata": {"name": "c", "namespace": "d"},
        "data": {"good.key": "v", "bad key": "v"},
        "binaryData": {"good.key": "AA=="},
    }
    assert _messages(_check("", "configmaps", "ConfigMap", cm)) == [
        'data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric '
        "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
        "for validation is '[-._a-zA-Z0-9]+')",
        'data[good.key]: Invalid value: "good.key": duplicate of key present in binaryData',
    ]
    secret = {
        "metadata": {"name": "s", "namespace": "d"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "QQ=="},
        "stringData": {"..x": "y"},
    }
    assert _messages(_check("", "secrets", "Secret", secret)) == [
        "data[..x]: Invalid value: \"..x\": must not start with '..'",
        "data[tls.key]: Required value",
    ]


def test_immutable_config_map_and_secret_type() -> None:
    old = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": True}
    new = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "2"}, "immutable": True}
    assert _messages(_check("", "configmaps", "ConfigMap", new, old)) == [
        "data: Forbidden: field is immutable when `immutable` is set"
    ]
    old_secret = {"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"}
    new_secret = {"metadata": {"name": "s", "namespace": "d"}, "type": "example.com/x"}
    assert _messages(_check("", "secrets", "Secret", new_secret, old_secret)) == [
        'type: Invalid value: "example.com/x": field is immutable'
    ]


def test_namespace_finalizers_lease_and_pvc() -> None:
    ns = {"metadata": {"name": "ns1"}, "spec": {"finalizers": ["custom"]}}
    assert _messages(_check("", "namespaces", "Namespace", ns, namespaced=False)) == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified'
    ]
    lease = {
        "metadata": {"name": "l", "namespace": "d"},
        "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1},
    }
    assert _messages(_check("coordination.k8s.io", "leases", "Lease", lease)) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
    ]
    pvc = {"metadata": {"name": "c", "namespace": "d"}, "spec": {}}
    assert _messages(_check("", "persistentvolumeclaims", "PersistentVolumeClaim", pvc)) == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
    ]
    old: dict[str, Any] = {
        "metadata": {"name": "c", "namespace": "d"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    grown = copy.deepcopy(old)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert (
        _check("", "persistentvolumeclaims", "PersistentVolumeClaim", grown, copy.deepcopy(old))
        == []
    )
    changed = copy.deepcopy(old)
    changed["spec"]["accessModes"] = ["ReadWriteMany"]
    assert _messages(
        _check("", "persistentvolumeclaims", "PersistentVolumeClaim", changed, copy.deepcopy(old))
    ) == [
        "spec: Forbidden: spec is immutable after creation except resources.requests for bound claims"
    ]


def test_rbac_validation() -> None:
    role = {
        "metadata": {"name": "r", "namespace": "d"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
        ],
    }
    assert _messages(_check("rbac.authorization.k8s.io", "roles", "Role", role)) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        'rules[1].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot apply to non-resource URLs',
    ]
    binding = {
        "metadata": {"name": "b", "namespace": "d"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Secret", "name": "r"},
        "subjects": [
            {"kind": "Robot", "name": "x"},
            {"kind": "User", "name": "u", "apiGroup": "other"},
        ],
    }
    assert _messages(
        _check("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", binding)
    ) == [
        'roleRef.kind: Unsupported value: "Secret": supported values: "Role", "ClusterRole"',
        'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"',
        'subjects[1].apiGroup: Unsupported value: "other": supported values: "rbac.authorization.k8s.io"',
    ]
    old = {
        "metadata": {"name": "b", "namespace": "d"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"},
    }
    new = copy.deepcopy(old)
    new["roleRef"]["name"] = "b"
    assert _messages(
        _check("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", new, old)
    ) == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"b"}: cannot change roleRef'
    ]


def _crd(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group": "example.com",
        "names": {"plural": "widgets", "kind": "Widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            }
        ],
    }
    base.update(spec)
    return {"metadata": {"name": "widgets.example.com"}, "spec": base}


def test_crd_validation() -> None:
    group, resource, kind = (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
    )
    assert _check(group, resource, kind, _crd(), namespaced=False) == []
    bad = _crd(
        group="local",
        scope="Global",
        versions=[{"name": "v1", "storage": False}, {"name": "V2", "storage": False}],
    )
    bad["metadata"]["name"] = "widgets.example.com"
    assert _messages(_check(group, resource, kind, bad, namespaced=False)) == [
        'metadata.name: Invalid value: "widgets.example.com": must be spec.names.plural+"."+spec.group',
        'spec.group: Invalid value: "local": should be a domain with at least one dot',
        'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
        "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have exactly one version marked as storage version",
        "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required",
        'spec.versions[1].name: Invalid value: "V2": ' + DNS1035_MSG,
        "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required",
    ]


def test_custom_resources_get_metadata_checks_only() -> None:
    obj = {"metadata": {"name": "Bad", "namespace": "d"}, "spec": {"anything": 1}}
    assert _messages(validate("example.com", "widgets", "Widget", obj, None, namespaced=True)) == [
        'metadata.name: Invalid value: "Bad": ' + SUBDOMAIN_MSG
    ]


def test_metadata_name_is_immutable_on_update() -> None:
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "1"}}
    new = {"metadata": {"name": "a", "namespace": "d", "uid": "2"}}
    assert _messages(_check("", "configmaps", "ConfigMap", new, old)) == [
        'metadata.uid: Invalid value: "2": field is immutable'
    ]


# ---------------------------------------------------------------------------
# schema checks


def test_unknown_fields() -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x", "labels": {"any": "thing"}, "foo": 1},
        "spec": {
            "bar": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c"},
                        {"name": "d", "imagee": "x", "resources": {"limits": {"cpu": "1"}}},
                    ]
                }
            },
        },
        "status": {"conditions": [{"type": "Available", "extra": True}]},
    }
    assert unknown_fields("apps/v1.Deployment", body) == [
        "metadata.foo",
        "spec.bar",
        "spec.template.spec.containers[1].imagee",
        "status.conditions[0].extra",
    ]
    assert (
        unknown_fields(
            "core/v1.ConfigMap", {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}
        )
        == []
    )


def test_unknown_fields_in_special_types_are_not_reported() -> None:
    body = {
        "metadata": {"managedFields": [{"fieldsV1": {"f:spec": {"f:x": {}}}}]},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "ports": [{"containerPort": 1}],
                            "resources": {"requests": {"memory": "1Gi"}},
                        }
                    ]
                }
            }
        },
    }
    assert unknown_fields("apps/v1.Deployment", body) == []


def test_validate_types() -> None:
    body = {
        "metadata": {"name": 5},
        "spec": {
            "replicas": "three",
            "paused": "yes",
            "strategy": {"rollingUpdate": {"maxSurge": True}},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "ports": [{"containerPort": 1.5}],
                            "args": [1],
                            "resources": {"limits": {"cpu": "lots"}},
                        }
                    ]
                }
            },
        },
    }
    causes = validate_types("apps/v1.Deployment", body)
    assert [(c["field"], c["message"]) for c in causes] == [
        (
            "metadata.name",
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string",
        ),
        (
            "spec.replicas",
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            "spec.paused",
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool",
        ),
        (
            "spec.strategy.rollingUpdate.maxSurge",
            "json: cannot unmarshal bool into Go value of type int32",
        ),
        (
            "spec.template.spec.containers[0].ports[0].containerPort",
            "json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.template.spec.containers.ports.containerPort of type int32",
        ),
        (
            "spec.template.spec.containers[0].args[0]",
            "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.args of type string",
        ),
        (
            "spec.template.spec.containers[0].resources.limits.cpu",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
    ]
    assert (
        validate_types(
            "apps/v1.Deployment",
            {"spec": {"replicas": 3, "template": {"spec": {"containers": []}}}},
        )
        == []
    )


def test_validate_types_secret_base64() -> None:
    assert validate_types("core/v1.Secret", {"data": {"ok": "aGk=", "bad": "not base64!"}}) == [
        {
            "reason": "FieldValueTypeInvalid",
            "message": "illegal base64 data at input byte 3",
            "field": "data.bad",
        }
    ]
    assert validate_types("core/v1.Secret", {"data": "x"})[0]["message"] == (
        "json: cannot unmarshal string into Go struct field Secret.data of type map[string][]uint8"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("replicas", 4),
        ("ordinals", {"start": 2}),
        ("updateStrategy", {"type": "OnDelete"}),
        ("revisionHistoryLimit", 3),
        ("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Delete"}),
        ("minReadySeconds", 7),
    ],
)
def test_stateful_set_update_allows_upstream_mutable_fields(field: str, value: Any) -> None:
    old = _deployment(serviceName="a", revisionHistoryLimit=10)
    new = copy.deepcopy(old)
    new["spec"][field] = value
    assert _check("apps", "statefulsets", "StatefulSet", new, old) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("serviceName", "b"), ("podManagementPolicy", "Parallel"), ("volumeClaimTemplates", [])],
)
def test_stateful_set_update_forbids_frozen_fields(field: str, value: Any) -> None:
    old = _deployment(serviceName="a")
    new = copy.deepcopy(old)
    new["spec"][field] = value
    assert [c["field"] for c in _check("apps", "statefulsets", "StatefulSet", new, old)] == ["spec"]
