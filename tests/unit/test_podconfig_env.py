"""A container's environment: every source, $(VAR) expansion, service variables, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.podconfig.env import ContainerConfigError, container_env, expand
from tests.unit.podconfig_fakes import FakeObjects, configmap, secret


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "u-1",
            "labels": {"b": "2", "a": "1"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {"nodeName": "edge", "serviceAccountName": "robot", **spec},
    }


def service(name: str, namespace: str, ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": ip, "ports": ports},
    }


@pytest.fixture
def objects(tmp_path: Path) -> FakeObjects:
    return FakeObjects(
        tmp_path,
        [
            {
                **configmap("cfg", {"mode": "fast", "bad=key": "x", "LEVEL": "3"}),
                "binaryData": {"blob": "AAE="},
            },
            secret("creds", {"user": "admin", "pass": "s3cret"}),
            service("kubernetes", "default", "10.43.0.1", [{"name": "https", "port": 443}]),
            service("my-db", "ns", "10.43.0.9", [{"name": "sql", "port": 5432}]),
            service("headless", "ns", "None", [{"port": 80}]),
            service("elsewhere", "other", "10.43.0.8", [{"port": 80}]),
        ],
    )


async def env_of(p: dict[str, Any], c: dict[str, Any], objects: FakeObjects, **kw: Any) -> Any:
    return await container_env(
        p, c, objects=objects, node_ips=["192.0.2.1", "fd00::1"], pod_ips=["10.42.0.5"], **kw
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "1-two"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("cost $5 $", "cost $5 $"),
        ("$()", "$()"),
        ("x$(A)y$(A)", "x1y1"),
    ],
)
def test_expand_follows_upstream(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "two"}) == expected


async def test_every_source_in_declaration_order(objects: FakeObjects) -> None:
    container = {
        "name": "app",
        "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "PLAIN", "value": "v"},
            {"name": "EXPANDED", "value": "$(PLAIN)/$(CFG_mode)/$(MY_DB_SERVICE_HOST)/$$(PLAIN)"},
            {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "HOSTS", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a']"}}},
            {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
            {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
            {
                "name": "CPU_LIMIT",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
            },
            {"name": "PLAIN", "value": "again"},
        ],
    }
    warnings: list[tuple[str, str]] = []
    env = await env_of(
        pod(),
        container,
        objects,
        allocatable={"cpu": "2"},
        warn=lambda r, m: warnings.append((r, m)),
    )
    names = [k for k, _ in env]
    assert len(names) == len(set(names))
    values = dict(env)
    assert names[:3] == ["CFG_mode", "CFG_LEVEL", "PLAIN"]
    assert values["PLAIN"] == "again"  # a later declaration wins, in the first one's place
    assert values["EXPANDED"] == "v/fast/10.43.0.9/$(PLAIN)"
    assert values["USER"] == "admin" and values["MODE"] == "fast"
    assert (values["NAME"], values["NS"], values["UID"]) == ("web", "ns", "u-1")
    assert (values["NODE"], values["SA"]) == ("edge", "robot")
    assert values["HOST"] == "192.0.2.1" and values["HOSTS"] == "192.0.2.1,fd00::1"
    assert values["IP"] == "10.42.0.5"
    assert values["LABEL"] == "1" and values["LABELS"] == 'a="1"\nb="2"'
    assert values["ANN"] == 'note="say \\"hi\\""'
    assert values["MEM"] == "64"
    assert values["CPU_M"] == "1"  # 250m rounded up to whole cores
    assert values["CPU_LIMIT"] == "2000"  # no limit: the node's allocatable
    assert warnings == [
        (
            "InvalidEnvironmentVariableNames",
            "Keys [CFG_bad=key] from the EnvFrom configMap ns/cfg were skipped since they are "
            "considered invalid environment variable names.",
        )
    ]


async def test_service_variables(objects: FakeObjects) -> None:
    env = dict(await env_of(pod(), {"name": "app"}, objects))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.43.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.43.0.1"
    assert env["MY_DB_SERVICE_HOST"] == "10.43.0.9"
    assert env["MY_DB_SERVICE_PORT_SQL"] == "5432"
    assert env["MY_DB_PORT_5432_TCP"] == "tcp://10.43.0.9:5432"
    assert env["MY_DB_PORT_5432_TCP_PROTO"] == "tcp"
    assert env["MY_DB_PORT_5432_TCP_PORT"] == "5432"
    assert not any(k.startswith(("HEADLESS_", "ELSEWHERE_")) for k in env)
    no_links = dict(await env_of(pod(enableServiceLinks=False), {"name": "app"}, objects))
    assert "MY_DB_SERVICE_HOST" not in no_links
    assert no_links["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    declared = dict(
        await env_of(
            pod(), {"name": "a", "env": [{"name": "MY_DB_SERVICE_HOST", "value": "x"}]}, objects
        )
    )
    assert declared["MY_DB_SERVICE_HOST"] == "x"


async def test_optional_references_are_skipped(objects: FakeObjects) -> None:
    container = {
        "name": "app",
        "envFrom": [{"secretRef": {"name": "gone", "optional": True}}],
        "env": [
            {
                "name": "A",
                "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}},
            },
            {
                "name": "B",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": True}},
            },
        ],
    }
    env = dict(await env_of(pod(), container, objects))
    assert "A" not in env and "B" not in env


@pytest.mark.parametrize(
    ("env", "env_from", "message"),
    [
        (
            [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}],
            [],
            "couldn't find key nope in ConfigMap ns/cfg",
        ),
        (
            [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "blob"}}}],
            [],
            "couldn't find key blob in ConfigMap ns/cfg",
        ),
        (
            [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}],
            [],
            "couldn't find key nope in Secret ns/creds",
        ),
        (
            [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}],
            [],
            'configmap "gone" not found',
        ),
        ([], [{"secretRef": {"name": "gone"}}], 'secret "gone" not found'),
        (
            [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}],
            [],
            "unsupported fieldPath: spec.hostname",
        ),
    ],
)
async def test_missing_references_are_config_errors(
    objects: FakeObjects, env: list[Any], env_from: list[Any], message: str
) -> None:
    with pytest.raises(ContainerConfigError) as info:
        await env_of(pod(), {"name": "app", "env": env, "envFrom": env_from}, objects)
    assert info.value.message == message
    assert info.value.reason == "CreateContainerConfigError"
