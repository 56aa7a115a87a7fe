"""The official kubernetes Python client against a real edgek server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.helpers import ServerProcess, list_meta, object_names


@pytest.fixture
def api(server: ServerProcess) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def ns(api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = "py-client"
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as e:
        if e.status != 409:
            raise
    yield name


def test_core_flow(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for i in range(3):
        core.create_namespaced_config_map(
            ns,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"cm{i}", labels={"idx": str(i), "app": "py"}),
                data={"i": str(i)},
            ),
        )
    listed = core.list_namespaced_config_map(ns, label_selector="app=py,idx in (0,2)")
    assert sorted(object_names(listed)) == ["cm0", "cm2"]
    listed = core.list_namespaced_config_map(ns, field_selector="metadata.name=cm1")
    assert object_names(listed) == ["cm1"]
    page = core.list_namespaced_config_map(ns, label_selector="app=py", limit=2)
    assert len(page.items) == 2 and list_meta(page)._continue
    rest = core.list_namespaced_config_map(
        ns, label_selector="app=py", limit=2, _continue=list_meta(page)._continue
    )
    assert object_names(rest) == ["cm2"]

    patched = core.patch_namespaced_config_map("cm1", ns, {"data": {"i": "one"}})
    assert patched.data == {"i": "one"}
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", ns)
    assert err.value.status == 404

    core.delete_namespaced_config_map("cm0", ns)
    left = core.list_namespaced_config_map(ns, label_selector="app=py")
    assert sorted(object_names(left)) == ["cm1", "cm2"]


def test_watch_sees_changes(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    start = list_meta(core.list_namespaced_config_map(ns)).resource_version
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for event in w.stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=start,
            label_selector="watched=yes",
            timeout_seconds=10,
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1", labels={"watched": "yes"}))
    core.create_namespaced_config_map(ns, body)
    core.patch_namespaced_config_map("w1", ns, {"data": {"x": "1"}})
    core.delete_namespaced_config_map("w1", ns)
    t.join(timeout=15)
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_deployment_apps_api(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="pyweb"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "pyweb"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "pyweb"}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="c", image="busybox:1.36")]
                ),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, dep)
    assert created.metadata is not None and created.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment_scale("pyweb", ns, {"spec": {"replicas": 3}})
    assert scaled.spec is not None and scaled.spec.replicas == 3
    got = apps.read_namespaced_deployment("pyweb", ns)
    assert got.spec is not None and got.spec.replicas == 3
    assert got.metadata is not None and got.metadata.generation == 2
    apps.delete_namespaced_deployment("pyweb", ns)
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("pyweb", ns)
    assert err.value.status == 404
