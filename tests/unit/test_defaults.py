"""Server-side defaults as users see them in ``kubectl get -o yaml``."""

from __future__ import annotations

from typing import Any

import pytest

from edgek.defaults import apply_defaults, image_pull_policy


def _containers(image: str = "nginx") -> list[dict[str, Any]]:
    return [{"name": "c", "image": image, "ports": [{"containerPort": 80}]}]


POD_SPEC_DEFAULTS = {
    "dnsPolicy": "ClusterFirst",
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "schedulerName": "default-scheduler",
    "securityContext": {},
}


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("registry:5000/app", "Always"),
        ("registry:5000/app:v1", "IfNotPresent"),
        ("nginx@sha256:abcd", "IfNotPresent"),
        ("nginx:latest@sha256:abcd", "Always"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_pod_defaults() -> None:
    pod: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"containers": _containers()}}
    apply_defaults("", "pods", pod)
    spec = pod["spec"]
    for key, value in POD_SPEC_DEFAULTS.items():
        assert spec[key] == value
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "Always"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["resources"] == {}
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_pod_defaults_keep_user_values() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "priorityClassName": "high",
            "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}],
        }
    }
    apply_defaults("", "pods", pod)
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0
    assert "priority" not in pod["spec"]  # priority comes from the class
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_pod_limits_become_requests_and_probes_volumes_default() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "name": "c",
                    "image": "x:1",
                    "ports": [{"containerPort": 8080}],
                    "resources": {
                        "limits": {"cpu": "1", "memory": "1Gi"},
                        "requests": {"cpu": "500m"},
                    },
                    "livenessProbe": {"httpGet": {"port": 8080}},
                    "env": [
                        {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                    ],
                }
            ],
            "volumes": [
                {"name": "a"},
                {"name": "b", "configMap": {"name": "cm"}},
                {"name": "h", "hostPath": {"path": "/x"}},
            ],
        }
    }
    apply_defaults("", "pods", pod)
    c = pod["spec"]["containers"][0]
    assert c["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert c["ports"][0]["hostPort"] == 8080
    probe = c["livenessProbe"]
    assert (
        probe["timeoutSeconds"],
        probe["periodSeconds"],
        probe["successThreshold"],
        probe["failureThreshold"],
    ) == (1, 10, 1, 3)
    assert probe["httpGet"] == {"port": 8080, "path": "/", "scheme": "HTTP"}
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    volumes = pod["spec"]["volumes"]
    assert volumes[0] == {"name": "a", "emptyDir": {}}
    assert volumes[1]["configMap"]["defaultMode"] == 420
    assert volumes[2]["hostPath"]["type"] == ""


def _workload(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "w"},
        "spec": {
            "selector": {"matchLabels": {"app": "w"}},
            "template": {
                "metadata": {"labels": {"app": "w"}},
                "spec": {"containers": _containers("nginx:1")},
            },
            **(extra or {}),
        },
    }


def _assert_template_defaulted(spec: dict[str, Any]) -> None:
    tspec = spec["template"]["spec"]
    for key, value in POD_SPEC_DEFAULTS.items():
        assert tspec[key] == value
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in tspec
    assert "priority" not in tspec


def test_deployment_defaults() -> None:
    obj = _workload()
    apply_defaults("apps", "deployments", obj)
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    _assert_template_defaulted(spec)


def test_deployment_recreate_has_no_rolling_update() -> None:
    obj = _workload({"strategy": {"type": "Recreate"}, "replicas": 0})
    apply_defaults("apps", "deployments", obj)
    assert obj["spec"]["strategy"] == {"type": "Recreate"}
    assert obj["spec"]["replicas"] == 0


def test_replica_set_stateful_set_daemon_set_defaults() -> None:
    rs = _workload()
    apply_defaults("apps", "replicasets", rs)
    assert rs["spec"]["replicas"] == 1
    _assert_template_defaulted(rs["spec"])

    sts = _workload({"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]})
    apply_defaults("apps", "statefulsets", sts)
    spec = sts["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["status"] == {"phase": "Pending"}

    ds = _workload()
    apply_defaults("apps", "daemonsets", ds)
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert "replicas" not in ds["spec"]


def test_job_defaults() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"restartPolicy": "Never", "containers": _containers()},
            }
        },
    }
    apply_defaults("batch", "jobs", job)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert "manualSelector" not in spec
    assert job["metadata"]["labels"] == {"a": "b"}
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_job_parallelism_without_completions_leaves_completions_unset() -> None:
    job: dict[str, Any] = {
        "spec": {
            "parallelism": 3,
            "podFailurePolicy": {"rules": [{"onPodConditions": [{"type": "X"}]}]},
            "template": {"spec": {}},
        }
    }
    apply_defaults("batch", "jobs", job)
    assert "completions" not in job["spec"]
    assert job["spec"]["parallelism"] == 3
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"] == "True"


def test_cron_job_defaults() -> None:
    cj: dict[str, Any] = {
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": _containers()}}}},
        }
    }
    apply_defaults("batch", "cronjobs", cj)
    spec = cj["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 1
    job_spec = spec["jobTemplate"]["spec"]
    assert "backoffLimit" not in job_spec
    assert job_spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_service_defaults() -> None:
    svc: dict[str, Any] = {
        "spec": {
            "selector": {"app": "x"},
            "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
        }
    }
    apply_defaults("", "services", svc)
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1] == {"port": 53, "protocol": "UDP", "targetPort": "dns"}
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert "clusterIP" not in spec
    assert "externalTrafficPolicy" not in spec


def test_service_defaults_by_type() -> None:
    lb: dict[str, Any] = {
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "sessionAffinity": "ClientIP"}
    }
    apply_defaults("", "services", lb)
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    ext: dict[str, Any] = {"spec": {"type": "ExternalName", "externalName": "example.com"}}
    apply_defaults("", "services", ext)
    assert "ipFamilies" not in ext["spec"]
    assert "internalTrafficPolicy" not in ext["spec"]
    headless: dict[str, Any] = {"spec": {"clusterIP": "None"}}
    apply_defaults("", "services", headless)
    assert headless["spec"]["ipFamilyPolicy"] == "RequireDualStack"


@pytest.mark.parametrize(
    ("group", "resource", "obj", "expected"),
    [
        ("", "secrets", {}, {"type": "Opaque"}),
        ("", "secrets", {"type": "kubernetes.io/tls"}, {"type": "kubernetes.io/tls"}),
        (
            "",
            "namespaces",
            {},
            {"status": {"phase": "Active"}},
        ),
        (
            "",
            "persistentvolumeclaims",
            {"spec": {}},
            {"spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}},
        ),
        (
            "",
            "persistentvolumes",
            {"spec": {}},
            {
                "spec": {"persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"},
                "status": {"phase": "Pending"},
            },
        ),
        (
            "storage.k8s.io",
            "storageclasses",
            {"provisioner": "x"},
            {"provisioner": "x", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"},
        ),
        ("", "configmaps", {"data": {}}, {"data": {}}),
        ("", "serviceaccounts", {}, {}),
        (
            "",
            "nodes",
            {"status": {"capacity": {"cpu": "4"}}},
            {"status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "4"}}},
        ),
        (
            "",
            "endpoints",
            {"subsets": [{"ports": [{"port": 80}]}]},
            {"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]},
        ),
        (
            "discovery.k8s.io",
            "endpointslices",
            {"ports": [{"port": 80}]},
            {"ports": [{"port": 80, "name": "", "protocol": "TCP"}]},
        ),
        (
            "networking.k8s.io",
            "networkpolicies",
            {"spec": {"podSelector": {}}},
            {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
        ),
        (
            "networking.k8s.io",
            "networkpolicies",
            {"spec": {"egress": [{"ports": [{"port": 53}]}]}},
            {
                "spec": {
                    "egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}],
                    "policyTypes": ["Ingress", "Egress"],
                }
            },
        ),
        (
            "rbac.authorization.k8s.io",
            "rolebindings",
            {"subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]},
            {
                "subjects": [
                    {"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"},
                    {"kind": "ServiceAccount", "name": "s", "apiGroup": ""},
                ]
            },
        ),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            {"spec": {"names": {"kind": "Widget", "plural": "widgets"}}},
            {
                "spec": {
                    "names": {
                        "kind": "Widget",
                        "plural": "widgets",
                        "singular": "widget",
                        "listKind": "WidgetList",
                    },
                    "conversion": {"strategy": "None"},
                }
            },
        ),
        ("coordination.k8s.io", "leases", {"spec": {}}, {"spec": {}}),
    ],
)
def test_simple_kind_defaults(
    group: str, resource: str, obj: dict[str, Any], expected: dict[str, Any]
) -> None:
    apply_defaults(group, resource, obj)
    assert obj == expected


def test_defaults_are_idempotent() -> None:
    obj = _workload()
    apply_defaults("apps", "deployments", obj)
    once = repr(obj)
    apply_defaults("apps", "deployments", obj)
    assert repr(obj) == once


def _limit_range(*items: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "lr"}, "spec": {"limits": [dict(i) for i in items]}}


def test_limit_range_container_defaults_follow_max_then_default_then_min() -> None:
    lr = _limit_range(
        {
            "type": "Container",
            "max": {"cpu": "2", "memory": "1Gi"},
            "min": {"cpu": "100m", "ephemeral-storage": "1Gi"},
            "default": {"memory": "512Mi"},
        }
    )
    apply_defaults("", "limitranges", lr)
    item = lr["spec"]["limits"][0]
    # the default limit keeps its own value and falls back to max
    assert item["default"] == {"memory": "512Mi", "cpu": "2"}
    # the default request comes from the default limit first, then from min
    assert item["defaultRequest"] == {"memory": "512Mi", "cpu": "2", "ephemeral-storage": "1Gi"}


def test_limit_range_keeps_explicit_default_request() -> None:
    lr = _limit_range(
        {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "250m"}}
    )
    apply_defaults("", "limitranges", lr)
    assert lr["spec"]["limits"][0]["defaultRequest"] == {"cpu": "250m"}


@pytest.mark.parametrize(
    "item",
    [
        {"type": "Pod", "max": {"cpu": "2"}, "min": {"cpu": "1"}},
        {"type": "PersistentVolumeClaim", "max": {"storage": "5Gi"}},
        {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
        {"type": "Container", "max": {"cpu": "2"}, "default": "oops"},
    ],
)
def test_limit_range_defaults_only_well_formed_container_items(item: dict[str, Any]) -> None:
    lr = _limit_range(item)
    apply_defaults("", "limitranges", lr)
    assert lr["spec"]["limits"] == [item]
