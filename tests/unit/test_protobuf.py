"""Tests for edgek.protobuf: Kubernetes protobuf envelopes to and from JSON dicts."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from edgek import protobuf
from edgek.protobuf import MAGIC, ProtobufError, decode, default_type_for, encode


def roundtrip(obj: dict[str, Any], type_name: str) -> dict[str, Any]:
    original = copy.deepcopy(obj)
    body = encode(obj, type_name)
    assert body.startswith(MAGIC)
    assert obj == original  # encode does not mutate its input
    return decode(body, lambda av, k: type_name)


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field written by hand (field numbers and lengths < 128)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def envelope(api_version: bytes, kind: bytes, raw: bytes) -> bytes:
    """An envelope laid out the way client-go writes it (empty contentEncoding/contentType)."""
    return MAGIC + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw) + b"\x1a\x00\x22\x00"


# ---------------------------------------------------------------------------
# Round trips


def test_roundtrip_namespace() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "demo",
            "labels": {"b": "2", "a": "1"},
            "annotations": {"note": "héllo"},
            "creationTimestamp": "2024-01-02T03:04:05Z",
            "finalizers": ["x/y"],
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
    assert roundtrip(obj, "core/v1.Namespace") == obj


def test_roundtrip_configmap() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "default", "resourceVersion": "42"},
        "data": {"a": "b", "empty": ""},
        "binaryData": {"bin": base64.b64encode(b"\x00\xff\x10").decode()},
        "immutable": False,
    }
    assert roundtrip(obj, "core/v1.ConfigMap") == obj


def test_roundtrip_secret_bytes() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "Opaque",
        "data": {
            "k": base64.b64encode(b"v").decode(),
            "raw": base64.b64encode(bytes(range(256))).decode(),
            "empty": "",
        },
    }
    assert roundtrip(obj, "core/v1.Secret") == obj


def test_roundtrip_deployment() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "generation": 3,
            "uid": "0b4e6a4c-6b0e-4e0f-9a3b-7d6f3c1e2a10",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": "u1",
                    "controller": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2024-05-06T07:08:09Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                }
            ],
        },
        "spec": {
            "replicas": 0,  # a pointer: zero stays
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "priority": -5,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsUser": 1000, "supplementalGroups": [1, 2, 3]},
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "args": ["-g", "daemon off;"],
                            "ports": [
                                {"name": "http", "containerPort": 80, "protocol": "TCP"},
                                {"containerPort": 0},  # not omitempty: zero stays
                            ],
                            "env": [
                                {"name": "A", "value": "1"},
                                {
                                    "name": "B",
                                    "valueFrom": {
                                        "configMapKeyRef": {"name": "cm", "key": "k"},
                                    },
                                },
                            ],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "100m"},
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "livenessProbe": {
                                "tcpSocket": {"port": 80},
                                "initialDelaySeconds": 3,
                            },
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [
                        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420}},
                    ],
                },
            },
        },
        "status": {
            "replicas": 2,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "lastUpdateTime": "2024-01-02T03:04:05Z",
                    "reason": "MinimumReplicasAvailable",
                }
            ],
        },
    }
    assert roundtrip(obj, "apps/v1.Deployment") == obj


def test_roundtrip_service_int_and_string_target_ports() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [
                {"name": "a", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080},
                {"name": "b", "port": 443, "targetPort": "https"},
            ],
            "clusterIPs": ["10.43.0.10"],
            "allocateLoadBalancerNodePorts": True,
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }
    assert roundtrip(obj, "core/v1.Service") == obj


def test_roundtrip_job() -> None:
    obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {
            "backoffLimit": 4,
            "completions": 1,
            "ttlSecondsAfterFinished": 100,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "pi", "image": "perl", "command": ["perl", "-e"]}],
                }
            },
        },
        "status": {"startTime": "2024-01-02T03:04:05Z", "active": 1},
    }
    assert roundtrip(obj, "batch/v1.Job") == obj


def test_roundtrip_delete_options() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "abc", "resourceVersion": "7"},
        "dryRun": ["All"],
    }
    assert roundtrip(obj, "meta/v1.DeleteOptions") == obj


def test_roundtrip_lease_microtime() -> None:
    obj = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 40,
            "acquireTime": "2024-01-02T03:04:05.000000Z",
            "renewTime": "2024-01-02T03:04:05.123456Z",
            "leaseTransitions": 0,
        },
    }
    assert roundtrip(obj, "coordination/v1.Lease") == obj


def test_roundtrip_crd_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1.5, "maximum": 10, "default": 3},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                },
                "additionalProperties": False,
                "x-kubernetes-validations": [{"rule": "self.size > 0"}],
            },
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},
            "either": {"items": [{"type": "string"}, {"type": "integer"}]},
        },
        "dependencies": {"a": ["b", "c"], "d": {"required": ["e"]}},
    }
    obj = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }
    result = roundtrip(obj, "apiextensions/v1.CustomResourceDefinition")
    assert result == obj
    maximum = result["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert isinstance(maximum["properties"]["size"]["minimum"], float)


# ---------------------------------------------------------------------------
# Wire format independent of the encoder


def test_decode_hand_built_namespace() -> None:
    # What `kubectl create namespace demo` (client-go 1.37) sends, written field by field.
    object_meta = (
        ld(1, b"demo")  # name
        + ld(2, b"")  # generateName
        + ld(3, b"")  # namespace
        + ld(4, b"")  # selfLink
        + ld(5, b"")  # uid
        + ld(6, b"")  # resourceVersion
        + b"\x38\x00"  # generation = 0 (varint, field 7)
        + ld(8, b"")  # creationTimestamp: the zero time is an empty message
    )
    raw = ld(1, object_meta) + ld(2, b"") + ld(3, ld(1, b""))  # metadata, spec, status{phase}
    body = envelope(b"v1", b"Namespace", raw)
    assert body.hex() == (
        "6b3873000a0f0a02763112094e616d657370616365121c0a140a0464656d6f12001a0022002a0032"
        "00380042001200" + "1a020a001a002200"
    )
    assert decode(body, default_type_for) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "demo", "creationTimestamp": None},
        "spec": {},
        "status": {},
    }


# Bodies captured from `kubectl create deployment d1 --image=nginx --port=80 --replicas=2` and
# `kubectl create service clusterip svc1 --tcp=80:8080` (kubectl 1.37); the expected dicts are
# what `--dry-run=client -o json` prints for the same commands.
KUBECTL_DEPLOYMENT = bytes.fromhex(
    "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b4010a1d0a02643112001a00"
    "22002a003200380042005a090a03617070120264311284010802120b0a090a03617070120264311a"
    "6b0a1b0a0012001a0022002a003200380042005a090a0361707012026431124c122e0a056e67696e"
    "7812056e67696e782a00320a0a001000185022002a0042006a007200800100880100900100a20100"
    "1a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800"
    "100018002000280038001a002200"
)
KUBECTL_SERVICE = bytes.fromhex(
    "6b3873000a0d0a027631120753657276696365126c0a210a047376633112001a0022002a00320038"
    "0042005a0b0a0361707012047376633112430a1b0a0738302d383038301203544350185022070800"
    "10903f1a002800120b0a036170701204737663311a002209436c757374657249503a00420052005a"
    "00600068001a020a001a002200"
)


def test_decode_kubectl_deployment() -> None:
    assert decode(KUBECTL_DEPLOYMENT, default_type_for) == {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "d1", "creationTimestamp": None, "labels": {"app": "d1"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "d1"}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "d1"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "resources": {},
                        }
                    ]
                },
            },
            "strategy": {},
        },
        "status": {},
    }


def test_decode_kubectl_service() -> None:
    assert decode(KUBECTL_SERVICE, default_type_for) == {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": "svc1", "creationTimestamp": None, "labels": {"app": "svc1"}},
        "spec": {
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "svc1"},
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


def test_encode_exact_bytes() -> None:
    body = encode(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
        "core/v1.Namespace",
    )
    raw = ld(1, ld(1, b"demo"))
    assert body == envelope(b"v1", b"Namespace", raw)


def test_negative_integers_are_ten_byte_varints() -> None:
    body = encode(
        {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": -1},
        "meta/v1.DeleteOptions",
    )
    assert body == envelope(b"v1", b"DeleteOptions", b"\x08" + b"\xff" * 9 + b"\x01")
    # int32 PodSpec.priority (field 25) = -1, as Go writes it.
    pod_spec = b"\xc8\x01" + b"\xff" * 9 + b"\x01"
    body = envelope(b"v1", b"Pod", ld(2, pod_spec))
    assert decode(body, default_type_for)["spec"] == {"priority": -1}


def test_repeated_scalars_unpacked_on_encode_packed_accepted() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"securityContext": {"supplementalGroups": [1, 300]}},
    }
    unpacked = b"\x20\x01" + b"\x20\xac\x02"  # field 4 varint, twice
    assert encode(obj, "core/v1.Pod") == envelope(b"v1", b"Pod", ld(2, ld(14, unpacked)))
    packed = ld(4, b"\x01\xac\x02")
    decoded = decode(envelope(b"v1", b"Pod", ld(2, ld(14, packed))), default_type_for)
    assert decoded["spec"] == obj["spec"]


def test_omitempty_zero_values_are_dropped() -> None:
    # DeploymentSpec: paused (bool, omitempty) = false, minReadySeconds (int32, omitempty) = 0,
    # replicas (*int32) = 0.
    spec = b"\x38\x00" + b"\x28\x00" + b"\x08\x00"
    body = envelope(b"apps/v1", b"Deployment", ld(2, spec))
    assert decode(body, default_type_for)["spec"] == {"replicas": 0}


def test_time_and_microtime_shapes() -> None:
    # Time keeps seconds only; MicroTime keeps 6 fractional digits.
    ts = b"\x08\xa5\xfa\xcd\xac\x06\x10\xc0\xa9\xd3\x3a"  # 1704164645 s, 123000000 ns
    meta = ld(8, ts)
    body = envelope(b"v1", b"Namespace", ld(1, meta))
    assert decode(body, default_type_for)["metadata"] == {
        "creationTimestamp": "2024-01-02T03:04:05Z"
    }
    lease = ld(2, ld(4, ts))  # spec.renewTime
    body = envelope(b"coordination.k8s.io/v1", b"Lease", lease)
    assert decode(body, default_type_for)["spec"] == {"renewTime": "2024-01-02T03:04:05.123000Z"}
    encoded = encode(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"creationTimestamp": "2024-01-02T03:04:05.9Z"},
        },
        "core/v1.Namespace",
    )
    assert decode(encoded, default_type_for)["metadata"]["creationTimestamp"] == (
        "2024-01-02T03:04:05Z"
    )


def test_unknown_fields_are_skipped() -> None:
    extra = b"\xf8\x07\x05" + b"\xf9\x07" + b"\x00" * 8 + b"\xfd\x07" + b"\x00" * 4
    extra += ld(15, b"junk")
    body = envelope(b"v1", b"Namespace", ld(1, ld(1, b"demo") + extra) + extra)
    assert decode(body, default_type_for)["metadata"] == {"name": "demo"}


def test_map_entry_without_value_is_zero() -> None:
    meta = ld(11, ld(1, b"k"))  # labels entry with a key only
    body = envelope(b"v1", b"Namespace", ld(1, meta))
    assert decode(body, default_type_for)["metadata"] == {"labels": {"k": ""}}


def test_raw_extension_and_fields_v1_are_json() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "rev"},
        "data": {"spec": {"template": {"x": [1, 2, None]}}},
        "revision": 2,
    }
    assert roundtrip(obj, "apps/v1.ControllerRevision") == obj


# ---------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty data"),
        (b'{"kind":"Namespace"}', "expected prefix [107 56 115 0]"),
        (MAGIC, "empty body"),
        (MAGIC + b"\x0a", "unexpected EOF"),  # truncated length varint
        (MAGIC + b"\x0a\x85", "unexpected EOF"),  # truncated varint
        (MAGIC + b"\x0a\x05\x0a\x02", "unexpected EOF"),  # length beyond the end
        (MAGIC + b"\x08" + b"\xff" * 10 + b"\x01", "integer overflow"),
        (MAGIC + b"\x0b", "illegal wireType 3"),
        (MAGIC + b"\x00", "illegal tag 0"),
        (MAGIC + b"\x08\x01", "wrong wireType = 0 for field TypeMeta"),
        (MAGIC + ld(1, ld(1, b"v1")), "Object 'Kind' is missing"),
        (MAGIC + ld(1, ld(2, b"Namespace")), "Object 'apiVersion' is missing"),
    ],
)
def test_malformed_envelopes(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode(body, default_type_for)


def test_unknown_kind() -> None:
    body = envelope(b"example.com/v1", b"Widget", b"")
    with pytest.raises(ProtobufError) as exc:
        decode(body, default_type_for)
    assert str(exc.value).startswith(
        'no kind "Widget" is registered for version "example.com/v1" in scheme'
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (ld(1, b"\x08\x01"), "wrong wireType = 0 for field Name"),  # metadata.name as varint
        (ld(2, b"\x08"), "unexpected EOF"),  # spec.replicas missing its value
        (ld(2, b"\x0a\x01\x00"), "wrong wireType = 2 for field Replicas"),
    ],
)
def test_malformed_objects(raw: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message):
        decode(envelope(b"apps/v1", b"Deployment", raw), default_type_for)


def test_invalid_embedded_json() -> None:
    raw = ld(2, ld(1, b"{not json"))  # ControllerRevision.data
    with pytest.raises(ProtobufError, match="invalid JSON"):
        decode(envelope(b"apps/v1", b"ControllerRevision", raw), default_type_for)


@pytest.mark.parametrize(
    "obj",
    [
        {"metadata": {"name": 5}},
        {"metadata": {"generation": "1"}},
        {"spec": {"replicas": 1 << 31}},
        {"spec": {"paused": 1}},
        {"spec": {"template": {"spec": {"containers": {"name": "x"}}}}},
    ],
)
def test_encode_rejects_wrong_types(obj: dict[str, Any]) -> None:
    with pytest.raises(ProtobufError):
        encode({"apiVersion": "apps/v1", "kind": "Deployment", **obj}, "apps/v1.Deployment")


# ---------------------------------------------------------------------------
# Type lookup


def test_default_type_for() -> None:
    assert default_type_for("apps/v1", "Deployment") == "apps/v1.Deployment"
    assert default_type_for("v1", "Namespace") == "core/v1.Namespace"
    for api_version in ("v1", "apps/v1", "batch/v1", "meta.k8s.io/v1"):
        assert default_type_for(api_version, "DeleteOptions") == "meta/v1.DeleteOptions"
    assert default_type_for("autoscaling/v1", "Scale") == "autoscaling/v1.Scale"
    assert default_type_for("policy/v1", "Eviction") == "policy/v1.Eviction"
    assert default_type_for("authentication.k8s.io/v1", "TokenRequest") == (
        "authentication/v1.TokenRequest"
    )
    assert default_type_for("authorization.k8s.io/v1", "SelfSubjectAccessReview") == (
        "authorization/v1.SelfSubjectAccessReview"
    )
    assert default_type_for("authentication.k8s.io/v1", "DeleteOptions") == (
        "meta/v1.DeleteOptions"
    )
    assert default_type_for("v1", "Deployment") is None
    assert default_type_for("authentication/v1", "TokenRequest") is None


def test_decode_token_request_as_kubectl_sends_it() -> None:
    # kubectl create token sa --audience api --duration 1h: empty metadata, spec {1 audiences,
    # 4 expirationSeconds}, status {1 token "", 2 zero expirationTimestamp}.
    spec = ld(1, b"api") + bytes([4 << 3]) + bytes([0x90, 0x1C])
    raw = ld(1, b"") + ld(2, spec) + ld(3, ld(1, b"") + ld(2, b""))
    body = envelope(b"authentication.k8s.io/v1", b"TokenRequest", raw)
    assert decode(body, default_type_for) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {},
        "spec": {"audiences": ["api"], "expirationSeconds": 3600},
        "status": {"token": "", "expirationTimestamp": None},
    }


def test_decode_self_subject_access_review_as_kubectl_sends_it() -> None:
    # kubectl auth can-i list pods -n demo: resourceAttributes {1 namespace, 2 verb,
    # 5 resource}, status {1 allowed false}.
    attributes = ld(1, b"demo") + ld(2, b"list") + ld(5, b"pods")
    raw = ld(1, b"") + ld(2, ld(1, attributes)) + ld(3, b"\x08\x00")
    body = envelope(b"authorization.k8s.io/v1", b"SelfSubjectAccessReview", raw)
    assert decode(body, default_type_for) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "demo", "verb": "list", "resource": "pods"}},
        "status": {"allowed": False},
    }


def test_eviction_with_delete_options() -> None:
    obj = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "pod-1", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 10},
    }
    assert roundtrip(obj, protobuf.default_type_for("policy/v1", "Eviction") or "") == obj
