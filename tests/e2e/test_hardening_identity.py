"""Issue 14, items 3 and 7 against a real server: impersonation headers are authorised and
honoured as upstream's, and anonymous requests are ``system:anonymous`` through RBAC."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

import pytest

from tests.helpers import Kubectl, ServerProcess


def _request(
    server: ServerProcess, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET ``path`` without a client certificate; the status and the decoded body."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, body.decode()


def test_whoami_as_nobody(kubectl: Kubectl) -> None:
    out = kubectl("auth", "whoami", "--as=nobody", "-o", "json")
    assert json.loads(out)["status"]["userInfo"] == {
        "username": "nobody",
        "groups": ["system:authenticated"],
    }


def test_whoami_with_groups_uid_and_service_account(kubectl: Kubectl) -> None:
    out = kubectl("auth", "whoami", "--as=u", "--as-group=devs", "--as-uid=42", "-o", "json")
    assert json.loads(out)["status"]["userInfo"] == {
        "username": "u",
        "uid": "42",
        "groups": ["devs", "system:authenticated"],
    }
    out = kubectl("auth", "whoami", "--as=system:serviceaccount:kube-system:default", "-o", "json")
    assert json.loads(out)["status"]["userInfo"]["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    ]


def test_impersonated_user_is_forbidden_what_it_may_not_do(kubectl: Kubectl) -> None:
    res = kubectl.run("get", "secrets", "-A", "--as=nobody", check=False)
    assert res.returncode != 0
    assert (
        'secrets is forbidden: User "nobody" cannot list resource "secrets" in API group "" '
        "at the cluster scope" in res.stderr
    )
    assert kubectl.run("auth", "can-i", "list", "secrets", "--as=nobody", check=False).stdout == (
        "no\n"
    )
    assert kubectl("auth", "can-i", "list", "secrets") == "yes\n"
    # an impersonated group is the authority: system:masters may do everything
    assert kubectl("auth", "can-i", "list", "secrets", "--as=nobody", "--as-group=system:masters")
    assert "kube-system" in kubectl("get", "ns", "--as=nobody", "--as-group=system:masters")


def test_impersonation_needs_the_impersonate_verb(
    kubectl: Kubectl, server: ServerProcess, namespace: str
) -> None:
    token = kubectl("create", "token", "default", "-n", namespace).strip()
    bearer = {"Authorization": f"Bearer {token}"}
    sa = f"system:serviceaccount:{namespace}:default"
    status, body = _request(server, "/api/v1/namespaces", {**bearer, "Impersonate-User": "bob"})
    assert status == 403
    assert body["message"] == (
        f'users "bob" is forbidden: User "{sa}" cannot impersonate resource "users" in API '
        'group "" at the cluster scope'
    )
    assert body["details"] == {"kind": "users", "name": "bob"}
    status, body = _request(
        server, "/version", {**bearer, "Impersonate-User": "system:serviceaccount:other:robot"}
    )
    assert status == 403
    assert body["message"] == (
        f'serviceaccounts "robot" is forbidden: User "{sa}" cannot impersonate resource '
        '"serviceaccounts" in API group "" in the namespace "other"'
    )
    # granted users only, and then groups, uids and extras each need their own grant
    kubectl(
        "create",
        "clusterrole",
        f"imp-{namespace}",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=bob",
    )
    kubectl(
        "create",
        "clusterrolebinding",
        f"imp-{namespace}",
        f"--clusterrole=imp-{namespace}",
        f"--serviceaccount={namespace}:default",
    )
    status, body = _request(server, "/version", {**bearer, "Impersonate-User": "bob"})
    assert status == 200, body
    status, body = _request(
        server, "/version", {**bearer, "Impersonate-User": "bob", "Impersonate-Extra-Scopes": "x"}
    )
    assert status == 403
    assert body["message"] == (
        f'userextras.authentication.k8s.io "x" is forbidden: User "{sa}" cannot impersonate '
        'resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope'
    )
    status, body = _request(server, "/version", {**bearer, "Impersonate-User": "alice"})
    assert status == 403
    kubectl("delete", "clusterrolebinding", f"imp-{namespace}")
    kubectl("delete", "clusterrole", f"imp-{namespace}")


def test_impersonating_groups_without_a_user_is_a_bad_request(server: ServerProcess) -> None:
    status, body = _request(server, "/version", {"Impersonate-Group": "devs"})
    assert status == 400
    assert body["reason"] == "BadRequest"


@pytest.mark.parametrize("path", ["/version", "/healthz", "/livez", "/readyz"])
def test_public_info_is_served_to_anonymous(server: ServerProcess, path: str) -> None:
    status, _ = _request(server, path)
    assert status == 200


def test_anonymous_is_authorised_through_rbac(server: ServerProcess) -> None:
    status, body = _request(server, "/api")
    assert (status, body["message"]) == (
        403,
        'forbidden: User "system:anonymous" cannot get path "/api"',
    )
    status, body = _request(server, "/api/v1/secrets")
    assert status == 403
    assert body["message"].startswith('secrets is forbidden: User "system:anonymous" cannot')
    # a credential that does not check out is still 401, not anonymous
    status, body = _request(server, "/version", {"Authorization": "Bearer not-a-token"})
    assert (status, body["reason"]) == (401, "Unauthorized")


def test_anonymous_impersonation_is_forbidden(server: ServerProcess) -> None:
    status, body = _request(server, "/version", {"Impersonate-User": "admin"})
    assert status == 403
    assert body["message"].startswith('users "admin" is forbidden: User "system:anonymous"')
