"""Identity end to end: service-account tokens from `kubectl create token`, RBAC with the
default roles, garbage credentials, default service accounts and join token files."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from pathlib import Path

import yaml

from edgek import jointoken
from tests.helpers import Kubectl, ServerProcess


def token_kubeconfig(admin: Path, token: str, dest: Path) -> Path:
    cfg = yaml.safe_load(admin.read_text())
    cfg["users"][0]["user"] = {"token": token}
    dest.write_text(yaml.safe_dump(cfg))
    return dest


def wait_for(kubectl: Kubectl, *args: str) -> str:
    for _ in range(50):
        res = kubectl.run(*args, check=False)
        if res.returncode == 0:
            return res.stdout
        time.sleep(0.1)
    raise AssertionError(f"kubectl {' '.join(args)} never succeeded: {res.stderr}")


def test_namespace_gets_default_service_account_and_root_ca(
    kubectl: Kubectl, namespace: str
) -> None:
    wait_for(kubectl, "get", "serviceaccount", "default", "-n", namespace)
    ca = wait_for(
        kubectl, "get", "cm", "kube-root-ca.crt", "-n", namespace, "-o", "jsonpath={.data.ca\\.crt}"
    )
    assert ca.startswith("-----BEGIN CERTIFICATE-----")


def test_service_account_token_and_rbac(
    kubectl: Kubectl, namespace: str, server: ServerProcess, tmp_path: Path
) -> None:
    ns = ["-n", namespace]
    kubectl("create", "serviceaccount", "reader", *ns)
    kubectl("create", "configmap", "data", "--from-literal=a=1", *ns)
    token = kubectl("create", "token", "reader", "--duration=15m", *ns).strip()
    assert token.count(".") == 2
    user = Kubectl(
        kubectl.binary,
        token_kubeconfig(server.kubeconfig, token, tmp_path / "u.yaml"),
        tmp_path / "uc",
    )
    res = user.run("get", "configmaps", *ns, check=False)
    assert res.returncode != 0
    assert (
        f'configmaps is forbidden: User "system:serviceaccount:{namespace}:reader" cannot list '
        f'resource "configmaps" in API group "" in the namespace "{namespace}"'
    ) in res.stderr
    kubectl(
        "create",
        "rolebinding",
        "reader-view",
        "--clusterrole=view",
        f"--serviceaccount={namespace}:reader",
        *ns,
    )
    assert "data" in wait_for(user, "get", "configmaps", *ns)
    res = user.run("delete", "configmap", "data", *ns, check=False)
    assert res.returncode != 0
    assert "forbidden" in res.stderr
    assert user.run("auth", "can-i", "list", "configmaps", *ns, check=False).stdout.strip() == "yes"
    assert (
        user.run("auth", "can-i", "delete", "configmaps", *ns, check=False).stdout.strip() == "no"
    )
    assert user.run("get", "secrets", *ns, check=False).returncode != 0
    rules = user("auth", "can-i", "--list", *ns)
    assert any(
        line.split()[0] == "configmaps" and "[get list watch]" in line
        for line in rules.splitlines()
    )
    whoami = json.loads(user("auth", "whoami", "-o", "json"))
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"
    # the token stops working when its service account is deleted
    kubectl("delete", "serviceaccount", "reader", *ns)
    for _ in range(50):
        res = user.run("get", "configmaps", *ns, check=False)
        if res.returncode != 0:
            break
        time.sleep(0.1)
    assert "Unauthorized" in res.stderr or "must be logged in" in res.stderr


def _raw(server: ServerProcess, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/namespaces", headers=headers)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


def test_garbage_credentials_get_401(server: ServerProcess) -> None:
    admin = yaml.safe_load(server.kubeconfig.read_text())
    assert admin["users"][0]["user"]["client-certificate-data"]
    fake_jwt = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=")
            for p in (
                {"alg": "ES256", "kid": "x"},
                {"sub": "system:serviceaccount:default:default"},
            )
        )
        + ".c2ln"
    )
    for token in (
        "garbage",
        "abcdef.0123456789abcdef",
        fake_jwt,
        fake_jwt[:-3],
        "a.b.c",
        "x" * 5000,
    ):
        code, body = _raw(server, {"Authorization": f"Bearer {token}"})
        assert code == 401, token
        assert body["reason"] == "Unauthorized"
    # no token at all (an empty one, or another scheme) is anonymous, as upstream: RBAC says no
    for header in ("Bearer ", "Basic Zm9vOmJhcg=="):
        code, body = _raw(server, {"Authorization": header})
        assert code == 403, header
        assert 'User "system:anonymous" cannot list' in str(body["message"])


def test_join_token_files(server: ServerProcess) -> None:
    server_dir = server.data_dir / "server"
    ca = (server_dir / "tls" / "server-ca.crt").read_bytes()
    for name in ("token", "node-token"):
        path = server_dir / name
        assert path.stat().st_mode & 0o777 == 0o600
        token = jointoken.parse(path.read_text().strip())
        assert token.ca_hash == jointoken.ca_hash(ca)
        assert jointoken.verify_ca(token, ca)


def test_secrets_encryption_at_rest(tmp_path: Path) -> None:
    from tests.helpers import kubectl_binaries, start_server

    srv = start_server(tmp_path, "--secrets-encryption")
    try:
        kubectl = Kubectl(next(iter(kubectl_binaries().values())), srv.kubeconfig, tmp_path / "c")
        kubectl("create", "secret", "generic", "vault", "--from-literal=password=plain-sight-4711")
        got = kubectl("get", "secret", "vault", "-o", "jsonpath={.data.password}")
        assert base64.b64decode(got) == b"plain-sight-4711"
        encoded = base64.b64encode(b"plain-sight-4711")
        db = srv.data_dir / "server" / "db"
        for f in db.iterdir():
            content = f.read_bytes()
            assert b"plain-sight-4711" not in content and encoded not in content, f.name
        config = srv.data_dir / "server" / "cred" / "encryption-config.json"
        assert config.stat().st_mode & 0o777 == 0o600
    finally:
        srv.stop()
    srv.start()
    try:
        got = kubectl("get", "secret", "vault", "-o", "jsonpath={.data.password}")
        assert base64.b64decode(got) == b"plain-sight-4711"
    finally:
        srv.stop()


def test_service_account_token_expires(
    kubectl: Kubectl, namespace: str, server: ServerProcess, tmp_path: Path
) -> None:
    from server.auth.satoken_crypto import TokenSigner

    kubectl("create", "serviceaccount", "short", "-n", namespace)
    kubectl(
        "create",
        "rolebinding",
        "short-view",
        "--clusterrole=view",
        f"--serviceaccount={namespace}:short",
        "-n",
        namespace,
    )
    sa = json.loads(kubectl("get", "sa", "short", "-n", namespace, "-o", "json"))
    signer = TokenSigner.load_or_create(server.data_dir / "server" / "tls" / "service.key")
    now = int(time.time())
    fresh, _ = signer.issue(
        namespace=namespace,
        name="short",
        uid=sa["metadata"]["uid"],
        audiences=["edgek"],
        expiration_seconds=600,
        now=now,
    )
    stale, _ = signer.issue(
        namespace=namespace,
        name="short",
        uid=sa["metadata"]["uid"],
        audiences=["edgek"],
        expiration_seconds=600,
        now=now - 3600,
    )
    assert (
        _raw(server, {"Authorization": f"Bearer {fresh}"})[0] == 403
    )  # authenticated, not allowed cluster-wide
    assert _raw(server, {"Authorization": f"Bearer {stale}"})[0] == 401


def test_service_account_issuer_discovery(kubectl: Kubectl) -> None:
    config = json.loads(kubectl("get", "--raw", "/.well-known/openid-configuration"))
    assert config["issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert config["jwks_uri"].endswith("/openid/v1/jwks")
    jwks = json.loads(kubectl("get", "--raw", "/openid/v1/jwks"))
    assert jwks["keys"][0]["kty"] == "EC" and jwks["keys"][0]["alg"] == "ES256"


def test_custom_roles_aggregate_into_view(kubectl: Kubectl) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": f"crontab-reader-{kubectl.label}",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        },
        "rules": [
            {
                "apiGroups": ["stable.example.com"],
                "resources": [f"crontabs{kubectl.label}"],
                "verbs": ["get"],
            }
        ],
    }
    kubectl("apply", "-f", "-", input=json.dumps(role))
    for _ in range(50):
        view = json.loads(kubectl("get", "clusterrole", "view", "-o", "json"))
        if any(f"crontabs{kubectl.label}" in r.get("resources", []) for r in view["rules"]):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("view did not aggregate the new role")
    admin = json.loads(kubectl("get", "clusterrole", "admin", "-o", "json"))
    assert any(f"crontabs{kubectl.label}" in r.get("resources", []) for r in admin["rules"])
