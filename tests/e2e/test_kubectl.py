"""The real kubectl against a real edgek server: the everyday command set."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

from tests.e2e.cluster import wait_for
from tests.helpers import Kubectl

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: {image}
        env:{env}
        ports: [{containerPort: 80}]
"""

MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
"""


def deployment(image: str, env: dict[str, str]) -> str:
    lines = "\n".join(f"        - {{name: {k}, value: '{v}'}}" for k, v in env.items())
    return DEPLOYMENT.replace("{image}", image).replace("{env}", "\n" + lines if lines else " []")


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_version_and_discovery(kubectl: Kubectl) -> None:
    out = json.loads(kubectl("version", "-o", "json"))
    assert out["serverVersion"]["gitVersion"].startswith("v1.")
    assert "+edgek" in out["serverVersion"]["gitVersion"]
    resources = kubectl("api-resources", "--no-headers")
    names = {line.split()[0] for line in resources.splitlines()}
    for expected in (
        "pods",
        "deployments",
        "customresourcedefinitions",
        "leases",
        "clusterroles",
        "networkpolicies",
        "endpointslices",
        "certificatesigningrequests",
    ):
        assert expected in names
    short = {line.split()[0]: line.split()[1] for line in resources.splitlines()}
    assert short["deployments"] == "deploy"


def test_system_namespaces(kubectl: Kubectl) -> None:
    out = kubectl("get", "ns")
    assert header(out) == ["NAME", "STATUS", "AGE"]
    names = {line.split()[0] for line in out.splitlines()[1:]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_create_commands(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("create", "configmap", "cm1", "--from-literal=a=1", *ns)
    kubectl("create", "secret", "generic", "s1", "--from-literal=password=hunter2", *ns)
    kubectl("create", "deployment", "d1", "--image=busybox:1.36", "--replicas=3", *ns)
    kubectl("create", "service", "clusterip", "svc1", "--tcp=80:8080", *ns)
    kubectl("create", "job", "j1", "--image=busybox:1.36", *ns)
    kubectl("create", "serviceaccount", "sa1", *ns)
    cm = json.loads(kubectl("get", "configmap", "cm1", "-o", "json", *ns))
    assert cm["data"] == {"a": "1"}
    secret = json.loads(kubectl("get", "secret", "s1", "-o", "json", *ns))
    assert secret["data"]["password"] == "aHVudGVyMg=="
    assert secret["type"] == "Opaque"
    d = json.loads(kubectl("get", "deploy", "d1", "-o", "json", *ns))
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["generation"] == 1
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    svc = json.loads(kubectl("get", "svc", "svc1", "-o", "json", *ns))
    assert svc["spec"]["ports"][0]["port"] == 80
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    job = json.loads(kubectl("get", "job", "j1", "-o", "json", *ns))
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    res = kubectl.run("create", "configmap", "cm1", *ns, check=False)
    assert res.returncode != 0
    assert 'configmaps "cm1" already exists' in res.stderr


def test_apply_and_reapply_updates_in_place(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    first = MANIFEST + deployment("nginx:1.25", {"A": "1", "B": "2"})
    out = kubectl("apply", "-f", "-", *ns, input=first)
    assert "configmap/settings created" in out
    assert "deployment.apps/web created" in out
    before = json.loads(kubectl("get", "deploy", "web", "-o", "json", *ns))
    changed = MANIFEST + deployment("nginx:1.26", {"A": "1"})
    out = kubectl("apply", "-f", "-", *ns, input=changed)
    assert "deployment.apps/web configured" in out
    assert "configmap/settings unchanged" in out
    after = json.loads(kubectl("get", "deploy", "web", "-o", "json", *ns))
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    container = after["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.26"
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert "kubectl.kubernetes.io/last-applied-configuration" in after["metadata"]["annotations"]


def test_get_tables_and_output_formats(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("apply", "-f", "-", *ns, input=MANIFEST + deployment("nginx:1.25", {}))
    assert header(kubectl("get", "deploy", *ns)) == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
    ]
    assert header(kubectl("get", "deploy", "-o", "wide", *ns)) == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert header(kubectl("get", "svc", *ns)) == [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ]
    assert header(kubectl("get", "cm", *ns)) == ["NAME", "DATA", "AGE"]
    # the Deployment controller creates the ReplicaSet (2 up to date); no node runs pods
    row = wait_for(
        lambda: (r := kubectl("get", "deploy", "web", "--no-headers", *ns).split())[2] == "2" and r,
        "the deployment's ReplicaSet",
    )
    assert row[:4] == ["web", "0/2", "2", "0"]
    doc = yaml.safe_load(kubectl("get", "cm", "settings", "-o", "yaml", *ns))
    assert doc["data"] == {"mode": "fast"}
    assert kubectl("get", "cm", "settings", "-o", "jsonpath={.data.mode}", *ns) == "fast"
    names = kubectl("get", "cm,svc,deploy", "-o", "name", *ns).split()
    assert {"configmap/settings", "service/web", "deployment.apps/web"} <= set(names)
    listed = json.loads(kubectl("get", "cm", "-o", "json", *ns))
    assert listed["kind"] == "List"
    names = [i["metadata"]["name"] for i in listed["items"]]
    assert [n for n in names if n != "kube-root-ca.crt"] == ["settings"]


def test_get_all(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("apply", "-f", "-", *ns, input=MANIFEST + deployment("nginx:1.25", {}))
    out = kubectl("get", "all", *ns)
    assert "service/web" in out
    assert "deployment.apps/web" in out
    assert "configmap" not in out


def test_get_watch_sees_update(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("create", "configmap", "watched", "--from-literal=v=1", *ns)
    cmd = [
        kubectl.binary,
        "--kubeconfig",
        str(kubectl.kubeconfig),
        "--cache-dir",
        str(kubectl.cache_dir),
        "get",
        "cm",
        "watched",
        "-w",
        "-o",
        'jsonpath={.data.v}{"\\n"}',
        *ns,
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1"
        kubectl("patch", "cm", "watched", "--type", "merge", "-p", '{"data":{"v":"2"}}', *ns)
        assert proc.stdout.readline().strip() == "2"
        proc.terminate()


def test_label_annotate_patch(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("apply", "-f", "-", *ns, input=deployment("nginx:1.25", {"A": "1"}))
    kubectl("label", "deploy", "web", "tier=front", *ns)
    kubectl("annotate", "deploy", "web", "note=hello", *ns)
    kubectl("patch", "deploy", "web", "--type", "merge", "-p", '{"spec":{"replicas":4}}', *ns)
    kubectl(
        "patch",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/extra","value":"yes"}]',
        *ns,
    )
    kubectl(
        "patch",
        "deploy",
        "web",
        "--type",
        "strategic",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}',
        *ns,
    )
    d = json.loads(kubectl("get", "deploy", "web", "-o", "json", *ns))
    assert d["metadata"]["labels"] == {"app": "web", "tier": "front", "extra": "yes"}
    assert d["metadata"]["annotations"]["note"] == "hello"
    assert d["spec"]["replicas"] == 4
    containers = d["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    assert containers[0]["image"] == "nginx:1.27"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}]
    assert len(kubectl("get", "deploy", "-l", "tier=front", "-o", "name", *ns).split()) == 1
    assert kubectl("get", "deploy", "-l", "tier=back", "-o", "name", *ns).strip() == ""


def test_scale(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("create", "deployment", "s", "--image=busybox:1.36", *ns)
    assert "scaled" in kubectl("scale", "deployment", "s", "--replicas=5", *ns)
    assert kubectl("get", "deploy", "s", "-o", "jsonpath={.spec.replicas}", *ns) == "5"


def test_replace_with_stale_resource_version_conflicts(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("create", "configmap", "c", "--from-literal=a=1", *ns)
    stale = json.loads(kubectl("get", "cm", "c", "-o", "json", *ns))
    kubectl("patch", "cm", "c", "--type", "merge", "-p", '{"data":{"a":"2"}}', *ns)
    stale["data"]["a"] = "3"
    res = kubectl.run("replace", "-f", "-", *ns, input=json.dumps(stale), check=False)
    assert res.returncode != 0
    assert "the object has been modified" in res.stderr
    assert kubectl("get", "cm", "c", "-o", "jsonpath={.data.a}", *ns) == "2"
    fresh = json.loads(kubectl("get", "cm", "c", "-o", "json", *ns))
    fresh["data"]["a"] = "4"
    kubectl("replace", "-f", "-", *ns, input=json.dumps(fresh))
    assert kubectl("get", "cm", "c", "-o", "jsonpath={.data.a}", *ns) == "4"


def test_delete_with_and_without_finalizers(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("create", "configmap", "plain", *ns)
    assert 'configmap "plain" deleted' in kubectl("delete", "cm", "plain", *ns)
    assert kubectl.run("get", "cm", "plain", *ns, check=False).returncode != 0
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
    }
    kubectl("create", "-f", "-", *ns, input=json.dumps(held))
    kubectl("delete", "cm", "held", "--wait=false", *ns)
    obj = json.loads(kubectl("get", "cm", "held", "-o", "json", *ns))
    assert obj["metadata"]["deletionTimestamp"]
    kubectl("patch", "cm", "held", "--type", "merge", "-p", '{"metadata":{"finalizers":null}}', *ns)
    res = kubectl.run("get", "cm", "held", *ns, check=False)
    assert res.returncode != 0
    assert 'configmaps "held" not found' in res.stderr


def test_explain(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pod.spec.containers")
    assert "FIELD" in out or "FIELDS" in out
    assert "image" in out
    assert "Container" in out
    out = kubectl("explain", "deployment.spec.strategy")
    assert "rollingUpdate" in out


def test_server_side_apply(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    manifest = deployment("nginx:1.25", {"A": "1"})
    out = kubectl("apply", "--server-side", "-f", "-", *ns, input=manifest)
    assert "serverside-applied" in out
    d = json.loads(kubectl("get", "deploy", "web", "-o", "json", "--show-managed-fields", *ns))
    managers = {m["manager"]: m["operation"] for m in d["metadata"]["managedFields"]}
    assert managers.get("kubectl") == "Apply"
    kubectl("scale", "deploy", "web", "--replicas=7", *ns)
    res = kubectl.run("apply", "--server-side", "-f", "-", *ns, input=manifest, check=False)
    assert res.returncode != 0
    assert "conflict" in res.stderr.lower()
    assert ".spec.replicas" in res.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *ns, input=manifest)
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}", *ns) == "2"


def test_diff(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("apply", "-f", "-", *ns, input=deployment("nginx:1.25", {}))
    same = kubectl.run("diff", "-f", "-", *ns, input=deployment("nginx:1.25", {}), check=False)
    assert same.returncode == 0, same.stderr
    changed = kubectl.run("diff", "-f", "-", *ns, input=deployment("nginx:1.99", {}), check=False)
    assert changed.returncode == 1, changed.stderr
    assert "nginx:1.99" in changed.stdout
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={..image}", *ns) == "nginx:1.25"


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: crontabs.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string}
              replicas: {type: integer}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"""


def test_crd_and_custom_resources(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("apply", "-f", "-", input=CRD)
    kubectl("wait", "--for=condition=Established", "crd/crontabs.stable.example.com")
    cr = {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "every-minute"},
        "spec": {"cronSpec": "* * * * *", "replicas": 1},
    }
    for _attempt in range(20):
        res = kubectl.run("apply", "-f", "-", *ns, input=json.dumps(cr), check=False)
        if res.returncode == 0:
            break
        time.sleep(0.2)
    assert res.returncode == 0, res.stderr
    out = kubectl("get", "crontabs", *ns)
    assert header(out) == ["NAME", "SPEC", "AGE"]
    assert "every-minute" in out and "* * * * *" in out
    assert "every-minute" in kubectl("get", "ct", *ns)
    kubectl(
        "patch", "crontab", "every-minute", "--type", "merge", "-p", '{"spec":{"replicas":3}}', *ns
    )
    assert kubectl("get", "ct", "every-minute", "-o", "jsonpath={.spec.replicas}", *ns) == "3"


def test_delete_namespace_deletes_contents(kubectl: Kubectl) -> None:
    name = f"gone-{kubectl.label}"
    kubectl("create", "namespace", name)
    kubectl("create", "configmap", "x", "-n", name)
    kubectl("create", "deployment", "d", "--image=busybox:1.36", "-n", name)
    kubectl("delete", "namespace", name, "--timeout=30s")
    res = kubectl.run("get", "namespace", name, check=False)
    assert res.returncode != 0
    assert f'namespaces "{name}" not found' in res.stderr
    assert kubectl("get", "cm", "-n", name, "-o", "name").strip() == ""


def test_custom_resource_schema_is_enforced(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    kubectl("apply", "-f", "-", input=CRD)
    kubectl("wait", "--for=condition=Established", "crd/crontabs.stable.example.com")
    bad_type = {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "typed"},
        "spec": {"cronSpec": "* * * * *", "replicas": "three"},
    }
    res = kubectl.run("create", "-f", "-", *ns, input=json.dumps(bad_type), check=False)
    assert res.returncode != 0
    assert "spec.replicas in body must be of type integer" in res.stderr
    unknown = {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "extra"},
        "spec": {"cronSpec": "* * * * *", "colour": "blue"},
    }
    res = kubectl.run("create", "-f", "-", *ns, input=json.dumps(unknown), check=False)
    assert res.returncode != 0
    assert 'unknown field "spec.colour"' in res.stderr
    kubectl("create", "--validate=false", "-f", "-", *ns, input=json.dumps(unknown))
    stored = json.loads(kubectl("get", "crontab", "extra", "-o", "json", *ns))
    assert "colour" not in stored["spec"]


def test_server_dry_run_changes_nothing(kubectl: Kubectl, namespace: str) -> None:
    ns = ["-n", namespace]
    out = kubectl(
        "create", "configmap", "ghost", "--from-literal=a=1", "--dry-run=server", "-o", "json", *ns
    )
    assert json.loads(out)["metadata"]["uid"]
    assert kubectl.run("get", "cm", "ghost", *ns, check=False).returncode != 0
    kubectl("create", "configmap", "real", "--from-literal=a=1", *ns)
    before = kubectl("get", "cm", "real", "-o", "jsonpath={.metadata.resourceVersion}", *ns)
    kubectl(
        "patch",
        "cm",
        "real",
        "--type",
        "merge",
        "-p",
        '{"data":{"a":"2"}}',
        "--dry-run=server",
        *ns,
    )
    kubectl("delete", "cm", "real", "--dry-run=server", *ns)
    assert kubectl("get", "cm", "real", "-o", "jsonpath={.data.a}", *ns) == "1"
    after = kubectl("get", "cm", "real", "-o", "jsonpath={.metadata.resourceVersion}", *ns)
    assert after == before
