"""ServiceAccount admission: the default account, the kube-api-access volume and mounts,
automount opt-outs, image pull secrets, mirror pods and updates left alone."""

from __future__ import annotations

from typing import Any

from edgek.kinds import builtin_kinds
from edgek.validation import validate
from server.storage.serviceaccount import MOUNT_PATH, ServiceAccountAdmission

PODS = next(k for k in builtin_kinds() if (k.group, k.resource) == ("", "pods"))
ACCOUNTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ns", "default"): {"metadata": {"name": "default"}},
    ("ns", "quiet"): {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False},
    ("ns", "puller"): {"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "reg"}]},
}
admit = ServiceAccountAdmission(lambda ns, name: ACCOUNTS.get((ns, name)))


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "busybox"}],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            **spec,
        },
    }


def test_default_account_volume_and_mounts() -> None:
    obj = pod()
    admit(PODS, obj, None)
    spec = obj["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    [volume] = spec["volumes"]
    assert volume["name"].startswith("kube-api-access-") and len(volume["name"]) == 21
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["path"] == "namespace"
    for container in spec["initContainers"] + spec["containers"]:
        assert container["volumeMounts"] == [
            {"name": volume["name"], "readOnly": True, "mountPath": MOUNT_PATH}
        ]
    assert not validate("", "pods", "Pod", obj, None, namespaced=True)


def test_opt_outs_own_mounts_pull_secrets_and_mirror_pods() -> None:
    quiet = pod(serviceAccountName="quiet")
    admit(PODS, quiet, None)
    assert "volumes" not in quiet["spec"]
    opted_in = pod(serviceAccountName="quiet", automountServiceAccountToken=True)
    admit(PODS, opted_in, None)
    assert len(opted_in["spec"]["volumes"]) == 1
    own = pod(
        volumes=[{"name": "mine", "emptyDir": {}}],
        containers=[
            {"name": "a", "image": "b", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}
        ],
    )
    admit(PODS, own, None)
    assert own["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "mine", "mountPath": MOUNT_PATH}
    ]
    assert own["spec"]["initContainers"][0]["volumeMounts"][0]["mountPath"] == MOUNT_PATH
    puller = pod(serviceAccountName="puller", automountServiceAccountToken=False)
    admit(PODS, puller, None)
    assert puller["spec"]["imagePullSecrets"] == [{"name": "reg"}]
    deprecated = pod(serviceAccount="quiet")
    admit(PODS, deprecated, None)
    assert (
        deprecated["spec"]["serviceAccountName"] == "quiet" and "volumes" not in deprecated["spec"]
    )
    missing = pod(serviceAccountName="not-yet")
    admit(PODS, missing, None)
    assert len(missing["spec"]["volumes"]) == 1
    mirror = pod()
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    admit(PODS, mirror, None)
    assert "serviceAccountName" not in mirror["spec"]
    update = pod()
    admit(PODS, update, pod())
    assert "serviceAccountName" not in update["spec"]
