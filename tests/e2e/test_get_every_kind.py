"""``kubectl get`` against one object of every served kind: tables, wide tables, YAML.

The expected headers are those a real Kubernetes 1.33 cluster prints (upstream
``pkg/printers/internalversion/printers.go``; kinds without a printer get ``NAME`` /
``CREATED AT``). The expected cells are what that printer makes of the manifest's objects
on an API server without controllers (nothing fills in workload or quota status).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import Kubectl, ServerProcess, kubectl_binaries

MANIFEST = Path(__file__).parent / "manifests" / "every_kind.yaml"

#: A time-since cell (``translateTimestampSince``): ``12s``, ``3m4s``, ``693d``, ``2y3d``...
AGO = re.compile(r"\d+[smhdy][0-9smhdy]*")
#: A ``CREATED AT`` cell (RFC 3339, seconds).
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
UID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

Expected = str | re.Pattern[str]


@dataclass(frozen=True)
class Case:
    """One kind: how to ask kubectl for its object and what the wide table shows.

    ``cells`` maps each column of the wide table, in order, to its expected text (``{ns}``
    and ``{suffix}`` are filled in) or pattern; ``wide`` names the columns only ``-o wide``
    shows.
    """

    resource: str
    name: str
    cells: dict[str, Expected]
    wide: frozenset[str] = frozenset()

    @property
    def columns(self) -> list[str]:
        return list(self.cells)


def created_at(name: str) -> dict[str, Expected]:
    """The generic table of kinds without a printer."""
    return {"NAME": name, "CREATED AT": TIMESTAMP}


CASES = [
    Case(
        "namespaces",
        "every-ns-{suffix}",
        {"NAME": "every-ns-{suffix}", "STATUS": "Active", "AGE": AGO},
    ),
    Case(
        "pods",
        "every-pod",
        {
            "NAME": "every-pod",
            "READY": "0/1",
            "STATUS": "Pending",
            "RESTARTS": "0",
            "AGE": AGO,
            "IP": "<none>",
            "NODE": "<none>",
            "NOMINATED NODE": "<none>",
            "READINESS GATES": "<none>",
        },
        wide=frozenset({"IP", "NODE", "NOMINATED NODE", "READINESS GATES"}),
    ),
    Case(
        "services",
        "every-svc",
        {
            "NAME": "every-svc",
            "TYPE": "ClusterIP",
            "CLUSTER-IP": re.compile(r"10\.43\.\d{1,3}\.\d{1,3}"),
            "EXTERNAL-IP": "<none>",
            "PORT(S)": "80/TCP",
            "AGE": AGO,
            "SELECTOR": "app=every",
        },
        wide=frozenset({"SELECTOR"}),
    ),
    Case(
        "endpoints",
        "every-external",
        {"NAME": "every-external", "ENDPOINTS": "10.42.0.5:8080", "AGE": AGO},
    ),
    Case("configmaps", "every-cm", {"NAME": "every-cm", "DATA": "2", "AGE": AGO}),
    Case(
        "secrets",
        "every-secret",
        {"NAME": "every-secret", "TYPE": "Opaque", "DATA": "1", "AGE": AGO},
    ),
    Case("serviceaccounts", "every-sa", {"NAME": "every-sa", "SECRETS": "0", "AGE": AGO}),
    Case(
        "nodes",
        "every-node-{suffix}",
        {
            "NAME": "every-node-{suffix}",
            "STATUS": "Ready",
            "ROLES": "control-plane",
            "AGE": AGO,
            "VERSION": "v1.33.0",
            "INTERNAL-IP": "192.0.2.10",
            "EXTERNAL-IP": "<none>",
            "OS-IMAGE": "Debian GNU/Linux 12 (bookworm)",
            "KERNEL-VERSION": "6.1.0-edge",
            "CONTAINER-RUNTIME": "containerd://1.7.24",
        },
        wide=frozenset(
            {"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"}
        ),
    ),
    Case(
        "events",
        "every-event",
        {
            "LAST SEEN": AGO,
            "TYPE": "Normal",
            "REASON": "Testing",
            "OBJECT": "pod/every-pod",
            "SUBOBJECT": "spec.containers{web}",
            "SOURCE": "every-test, every-host",
            "MESSAGE": "every kind is here",
            "FIRST SEEN": AGO,
            "COUNT": "4",
            "NAME": "every-event",
        },
        wide=frozenset({"SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"}),
    ),
    Case(
        "persistentvolumes",
        "every-pv-{suffix}",
        {
            "NAME": "every-pv-{suffix}",
            "CAPACITY": "1Gi",
            "ACCESS MODES": "RWO,ROX",
            "RECLAIM POLICY": "Retain",
            # the binder makes it Available; it may bind every-pvc before the claim's
            # (WaitForFirstConsumer) class, applied later in the manifest, is seen
            "STATUS": re.compile("Available|Bound"),
            "CLAIM": re.compile(r"(every-[\w-]+/every-pvc)?"),
            "STORAGECLASS": "every-sc-{suffix}",
            "VOLUMEATTRIBUTESCLASS": "<unset>",
            "REASON": "",
            "AGE": AGO,
            "VOLUMEMODE": "Filesystem",
        },
        wide=frozenset({"VOLUMEMODE"}),
    ),
    Case(
        "persistentvolumeclaims",
        "every-pvc",
        {
            "NAME": "every-pvc",
            "STATUS": re.compile("Pending|Bound"),
            "VOLUME": re.compile("(every-pv-[\\w-]+)?"),
            "CAPACITY": re.compile("(1Gi)?"),
            "ACCESS MODES": re.compile("(RWO,ROX)?"),
            "STORAGECLASS": "every-sc-{suffix}",
            "VOLUMEATTRIBUTESCLASS": "<unset>",
            "AGE": AGO,
            "VOLUMEMODE": "Filesystem",
        },
        wide=frozenset({"VOLUMEMODE"}),
    ),
    Case(
        "resourcequotas",
        "every-quota",
        # the quota controller fills status.hard/used (empty until its first sync); counts
        # depend on what else is applied
        {
            "NAME": "every-quota",
            "REQUEST": re.compile(r"(pods: \d+/10, requests\.cpu: \S+/2)?"),
            "LIMIT": re.compile(r"(limits\.memory: \S+/4Gi)?"),
            "AGE": AGO,
        },
    ),
    Case("limitranges", "every-limits", created_at("every-limits")),
    Case(
        "podtemplates",
        "every-podtemplate",
        {
            "NAME": "every-podtemplate",
            "CONTAINERS": "web,log",
            "IMAGES": "nginx:1.25,busybox:1.36",
            "POD LABELS": "app=every,tier=web",
        },
    ),
    Case(
        "deployments.apps",
        "every-deploy",
        {
            "NAME": "every-deploy",
            "READY": "0/2",
            "UP-TO-DATE": "0",
            "AVAILABLE": "0",
            "AGE": AGO,
            "CONTAINERS": "web",
            "IMAGES": "nginx:1.25",
            "SELECTOR": "app=every-deploy",
        },
        wide=frozenset({"CONTAINERS", "IMAGES", "SELECTOR"}),
    ),
    Case(
        "replicasets.apps",
        "every-rs",
        {
            "NAME": "every-rs",
            "DESIRED": "3",
            "CURRENT": "0",
            "READY": "0",
            "AGE": AGO,
            "CONTAINERS": "web",
            "IMAGES": "nginx:1.25",
            "SELECTOR": "app=every-rs",
        },
        wide=frozenset({"CONTAINERS", "IMAGES", "SELECTOR"}),
    ),
    Case(
        "statefulsets.apps",
        "every-sts",
        {
            "NAME": "every-sts",
            "READY": "0/1",
            "AGE": AGO,
            "CONTAINERS": "db",
            "IMAGES": "postgres:16",
        },
        wide=frozenset({"CONTAINERS", "IMAGES"}),
    ),
    Case(
        "daemonsets.apps",
        "every-ds",
        {
            "NAME": "every-ds",
            "DESIRED": "0",
            "CURRENT": "0",
            "READY": "0",
            "UP-TO-DATE": "0",
            "AVAILABLE": "0",
            "NODE SELECTOR": "kubernetes.io/os=linux",
            "AGE": AGO,
            "CONTAINERS": "agent",
            "IMAGES": "busybox:1.36",
            "SELECTOR": "app=every-ds",
        },
        wide=frozenset({"CONTAINERS", "IMAGES", "SELECTOR"}),
    ),
    Case(
        "controllerrevisions.apps",
        "every-revision",
        {"NAME": "every-revision", "CONTROLLER": "<none>", "REVISION": "3", "AGE": AGO},
    ),
    Case(
        "jobs.batch",
        "every-job",
        {
            "NAME": "every-job",
            "STATUS": "Running",
            "COMPLETIONS": "0/2",
            "DURATION": "",
            "AGE": AGO,
            "CONTAINERS": "work",
            "IMAGES": "busybox:1.36",
            "SELECTOR": re.compile(rf"batch\.kubernetes\.io/controller-uid={UID}"),
        },
        wide=frozenset({"CONTAINERS", "IMAGES", "SELECTOR"}),
    ),
    Case(
        "cronjobs.batch",
        "every-cronjob",
        {
            "NAME": "every-cronjob",
            "SCHEDULE": "*/5 * * * *",
            "TIMEZONE": "Etc/UTC",
            "SUSPEND": "False",
            "ACTIVE": "0",
            "LAST SCHEDULE": "<none>",
            "AGE": AGO,
            "CONTAINERS": "tick",
            "IMAGES": "busybox:1.36",
            "SELECTOR": "<none>",
        },
        wide=frozenset({"CONTAINERS", "IMAGES", "SELECTOR"}),
    ),
    Case(
        "leases.coordination.k8s.io",
        "every-lease",
        {"NAME": "every-lease", "HOLDER": "every-holder", "AGE": AGO},
    ),
    Case(
        "endpointslices.discovery.k8s.io",
        "every-slice",
        {
            "NAME": "every-slice",
            "ADDRESSTYPE": "IPv4",
            "PORTS": "8080",
            "ENDPOINTS": "10.42.0.5",
            "AGE": AGO,
        },
    ),
    Case(
        "networkpolicies.networking.k8s.io",
        "every-netpol",
        {"NAME": "every-netpol", "POD-SELECTOR": "app=every", "AGE": AGO},
    ),
    Case(
        "ingresses.networking.k8s.io",
        "every-ingress",
        {
            "NAME": "every-ingress",
            "CLASS": "every-class-{suffix}",
            "HOSTS": "every.example.com",
            "ADDRESS": "",
            "PORTS": "80",
            "AGE": AGO,
        },
    ),
    Case(
        "ingressclasses.networking.k8s.io",
        "every-class-{suffix}",
        {
            "NAME": "every-class-{suffix}",
            "CONTROLLER": "example.com/ingress-controller",
            "PARAMETERS": "<none>",
            "AGE": AGO,
        },
    ),
    Case(
        "poddisruptionbudgets.policy",
        "every-pdb",
        {
            "NAME": "every-pdb",
            "MIN AVAILABLE": "1",
            "MAX UNAVAILABLE": "N/A",
            "ALLOWED DISRUPTIONS": "0",
            "AGE": AGO,
        },
    ),
    Case("roles.rbac.authorization.k8s.io", "every-role", created_at("every-role")),
    Case(
        "rolebindings.rbac.authorization.k8s.io",
        "every-rolebinding",
        {
            "NAME": "every-rolebinding",
            "ROLE": "Role/every-role",
            "AGE": AGO,
            "USERS": "alice",
            "GROUPS": "devs",
            "SERVICEACCOUNTS": "{ns}/every-sa",
        },
        wide=frozenset({"USERS", "GROUPS", "SERVICEACCOUNTS"}),
    ),
    Case(
        "clusterroles.rbac.authorization.k8s.io",
        "every-clusterrole-{suffix}",
        created_at("every-clusterrole-{suffix}"),
    ),
    Case(
        "clusterrolebindings.rbac.authorization.k8s.io",
        "every-clusterrolebinding-{suffix}",
        {
            "NAME": "every-clusterrolebinding-{suffix}",
            "ROLE": "ClusterRole/every-clusterrole-{suffix}",
            "AGE": AGO,
            "USERS": "",
            "GROUPS": "ops",
            "SERVICEACCOUNTS": "",
        },
        wide=frozenset({"USERS", "GROUPS", "SERVICEACCOUNTS"}),
    ),
    Case(
        "certificatesigningrequests.certificates.k8s.io",
        "every-csr-{suffix}",
        {
            "NAME": "every-csr-{suffix}",
            "AGE": AGO,
            "SIGNERNAME": "example.com/signer",
            "REQUESTOR": "system:admin",  # the admin kubeconfig's client certificate
            "REQUESTEDDURATION": "60m",
            "CONDITION": "Pending",
        },
    ),
    Case(
        "storageclasses.storage.k8s.io",
        "every-sc-{suffix}",
        {
            "NAME": "every-sc-{suffix}",
            "PROVISIONER": "example.com/no-provisioner",
            "RECLAIMPOLICY": "Retain",
            "VOLUMEBINDINGMODE": "WaitForFirstConsumer",
            "ALLOWVOLUMEEXPANSION": "true",
            "AGE": AGO,
        },
    ),
    Case(
        "events.events.k8s.io",
        "every-new-event",
        {
            "LAST SEEN": AGO,
            "TYPE": "Warning",
            "REASON": "Probing",
            "OBJECT": "pod/every-pod",
            "SUBOBJECT": "",
            "SOURCE": "example.com/every, every-instance",
            "MESSAGE": "the new events API",
            "FIRST SEEN": AGO,
            "COUNT": "1",
            "NAME": "every-new-event",
        },
        wide=frozenset({"SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"}),
    ),
    Case(
        "customresourcedefinitions.apiextensions.k8s.io",
        "widgets.every-{suffix}.example.com",
        created_at("widgets.every-{suffix}.example.com"),
    ),
]

#: Kinds in the ``all`` category and how ``kubectl get all`` names their objects.
ALL_CATEGORY = (
    "pod/every-pod",
    "service/every-svc",
    "deployment.apps/every-deploy",
    "replicaset.apps/every-rs",
    "statefulset.apps/every-sts",
    "daemonset.apps/every-ds",
    "job.batch/every-job",
    "cronjob.batch/every-cronjob",
)


@dataclass(frozen=True)
class Applied:
    """The manifest applied to a fresh namespace with one kubectl binary."""

    kubectl: Kubectl
    namespace: str
    suffix: str
    documents: list[dict[str, Any]]

    def fill(self, text: str) -> str:
        """``text`` with this run's ``{ns}`` and ``{suffix}``."""
        return text.replace("{ns}", self.namespace).replace("{suffix}", self.suffix)

    def get(self, case: Case, *args: str) -> str:
        """``kubectl get`` of the case's object."""
        return self.kubectl("get", case.resource, self.fill(case.name), "-n", self.namespace, *args)


def csr_request() -> str:
    """A fresh PEM certificate request, base64-encoded as ``spec.request`` carries it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "every-kind")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


@pytest.fixture(scope="module", params=sorted(kubectl_binaries().items()), ids=lambda item: item[0])
def applied(
    request: pytest.FixtureRequest, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Applied]:
    """``kubectl apply`` of the whole manifest, once per kubectl binary; deleted after."""
    label, binary = request.param
    kubectl = Kubectl(binary, server.kubeconfig, tmp_path_factory.mktemp("cache"), label)
    suffix = f"{label}-{secrets.token_hex(3)}"
    namespace = f"every-{suffix}"
    text = string.Template(MANIFEST.read_text()).substitute(
        NAMESPACE=namespace, SUFFIX=suffix, CSR_REQUEST=csr_request()
    )
    kubectl("create", "namespace", namespace)
    out = kubectl("apply", "-f", "-", "-n", namespace, input=text)
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    assert len(out.splitlines()) == len(documents) == len(CASES), out
    assert all(line.endswith(" created") for line in out.splitlines()), out
    yield Applied(kubectl, namespace, suffix, documents)
    # cluster-scoped objects (a Ready node, a CRD...) would otherwise outlive the module
    kubectl("delete", "-f", "-", "-n", namespace, "--wait=false", input=text)
    kubectl("delete", "namespace", namespace, "--wait=false")


def parse_table(output: str) -> tuple[list[str], list[str]]:
    """The header and the single row of a one-object table.

    Columns are cut at the header's column starts (kubectl pads every column to its
    widest cell, so cells line up under their headers; cells may be empty).
    """
    lines = output.rstrip("\n").splitlines()
    assert len(lines) == 2, output
    header_line, row_line = lines
    header = re.split(r" {2,}", header_line.strip())
    starts = []
    position = 0
    for name in header:
        position = header_line.index(name, position)
        starts.append(position)
        position += len(name)
    ends = [*starts[1:], None]
    row = [row_line[start:end].strip() for start, end in zip(starts, ends, strict=True)]
    return header, row


def check_cells(applied: Applied, case: Case, header: list[str], row: list[str]) -> None:
    """Each cell of the row against the case's expectation for its column."""
    for column, cell in zip(header, row, strict=True):
        expected = case.cells[column]
        if isinstance(expected, re.Pattern):
            assert expected.fullmatch(cell), f"{column}: {cell!r} !~ {expected.pattern}"
        else:
            assert cell == applied.fill(expected), f"{column}: {cell!r}"


CASE_PARAMS = [pytest.param(case, id=case.resource) for case in CASES]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_table(applied: Applied, case: Case) -> None:
    header, row = parse_table(applied.get(case))
    assert header == [c for c in case.columns if c not in case.wide]
    check_cells(applied, case, header, row)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_wide_table(applied: Applied, case: Case) -> None:
    header, row = parse_table(applied.get(case, "-o", "wide"))
    assert header == case.columns
    check_cells(applied, case, header, row)


def missing(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` lacks or differs from what ``expected`` holds (extra keys are fine)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: {actual!r} is not a map"]
        return [
            problem
            for key, value in expected.items()
            for problem in missing(value, actual.get(key), f"{path}.{key}")
        ]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} != {expected!r}"]
        return [
            problem
            for index, (item, got) in enumerate(zip(expected, actual, strict=True))
            for problem in missing(item, got, f"{path}[{index}]")
        ]
    return [] if expected == actual else [f"{path}: {actual!r} != {expected!r}"]


@pytest.mark.parametrize("case", CASES, ids=[case.resource for case in CASES])
def test_yaml_round_trip(applied: Applied, case: Case) -> None:
    name = applied.fill(case.name)
    [document] = [d for d in applied.documents if d["metadata"]["name"] == name]
    got = yaml.safe_load(applied.get(case, "-o", "yaml"))
    assert got["metadata"]["uid"]
    assert got["metadata"]["creationTimestamp"]
    assert missing(document, got) == []


def test_get_all_lists_the_all_category(applied: Applied) -> None:
    out = applied.kubectl("get", "all", "-n", applied.namespace)
    names = {line.split()[0] for line in out.splitlines() if line and not line.startswith("NAME")}
    assert set(ALL_CATEGORY) <= names
    assert "configmap" not in out
    # anything else is what the control loops made for the applied workloads
    for extra in names - set(ALL_CATEGORY):
        kind, _, name = extra.partition("/")
        obj = json.loads(applied.kubectl("get", kind, name, "-n", applied.namespace, "-o", "json"))
        assert obj["metadata"].get("ownerReferences"), f"{extra} has no owner"


def test_both_event_apis_list_every_event(applied: Applied) -> None:
    ns = ["-n", applied.namespace, "-o", "name"]
    core = applied.kubectl("get", "events", *ns).split()
    new = applied.kubectl("get", "events.events.k8s.io", *ns).split()
    # the control loops add events of their own (e.g. the scheduler's about every-pod)
    assert {"event/every-event", "event/every-new-event"} <= set(core)
    # listed later, the events.k8s.io view holds every core event (and maybe newer ones)
    assert {n.removeprefix("event/") for n in core} <= {
        n.removeprefix("event.events.k8s.io/") for n in new
    }
