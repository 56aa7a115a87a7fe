"""An agent joins a real server with its node token: CA pinning, CSR auto-approval and
signing, the node identity guard, and what the node identity may then do."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from agent.bootstrap import BootstrapError, bootstrap
from edgek import jointoken
from tests.helpers import REPO, Kubectl, ServerProcess, kubectl_binaries


def node_token(server: ServerProcess) -> str:
    return (server.data_dir / "server" / "node-token").read_text().strip()


def test_agent_joins_and_gets_node_identity(server: ServerProcess, tmp_path: Path) -> None:
    creds = asyncio.run(
        bootstrap(
            server.url,
            node_token(server),
            "edge-join-1",
            tmp_path / "agent",
            node_ips=["127.0.0.1"],
        )
    )
    cert = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    subject = {a.oid: a.value for a in cert.subject}
    assert subject[x509.NameOID.COMMON_NAME] == "system:node:edge-join-1"
    assert subject[x509.NameOID.ORGANIZATION_NAME] == "system:nodes"
    assert creds.client_key.stat().st_mode & 0o777 == 0o600
    serving = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "edge-join-1" in sans.get_values_for_type(x509.DNSName)

    admin = Kubectl(
        kubectl_binaries()["system" if "system" in kubectl_binaries() else "pinned"],
        server.kubeconfig,
        tmp_path / "a",
    )
    node = Kubectl(admin.binary, creds.kubeconfig, tmp_path / "n")
    assert "system:node:edge-join-1" in node("auth", "whoami")
    admin("create", "secret", "generic", "unrelated", "--from-literal=k=v", "-n", "default")
    res = node.run("get", "secret", "unrelated", "-n", "default", check=False)
    assert res.returncode != 0 and "forbidden" in res.stderr
    # a node may manage its own Lease but not another node's Node
    lease = (
        '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease",'
        '"metadata":{"name":"edge-join-1","namespace":"kube-node-lease"},'
        '"spec":{"holderIdentity":"edge-join-1","leaseDurationSeconds":40}}'
    )
    node("create", "-f", "-", input=lease)
    node(
        "patch",
        "lease",
        "edge-join-1",
        "-n",
        "kube-node-lease",
        "--type",
        "merge",
        "-p",
        '{"spec":{"leaseDurationSeconds":30}}',
    )
    other_lease = lease.replace('"name":"edge-join-1"', '"name":"someone-else"')
    assert node.run("create", "-f", "-", input=other_lease, check=False).returncode != 0


def test_wrong_ca_hash_is_refused_before_sending_credentials(
    server: ServerProcess, tmp_path: Path
) -> None:
    token = jointoken.parse(node_token(server))
    forged = f"K10{'0' * 64}::{token.username}:{token.password}"
    with pytest.raises(BootstrapError, match="CA"):
        asyncio.run(
            bootstrap(server.url, forged, "edge-forged", tmp_path / "a", node_ips=[], timeout=10)
        )
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_second_device_cannot_take_over_a_node_name(server: ServerProcess, tmp_path: Path) -> None:
    asyncio.run(
        bootstrap(server.url, node_token(server), "edge-taken", tmp_path / "first", node_ips=[])
    )
    with pytest.raises(BootstrapError, match="different key"):
        asyncio.run(
            bootstrap(
                server.url,
                node_token(server),
                "edge-taken",
                tmp_path / "second",
                node_ips=[],
                timeout=15,
            )
        )


def test_garbage_join_secret_is_unauthorized(server: ServerProcess, tmp_path: Path) -> None:
    token = jointoken.parse(node_token(server))
    wrong = f"K10{token.ca_hash}::server:{'f' * 32}"
    with pytest.raises(BootstrapError):
        asyncio.run(
            bootstrap(server.url, wrong, "edge-wrong", tmp_path / "a", node_ips=[], timeout=10)
        )


def _edgek(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgek", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_bootstrap_token_lifecycle(server: ServerProcess, tmp_path: Path) -> None:
    kc = str(server.kubeconfig)
    made = _edgek(
        "token", "create", "--ttl", "1h", "--description", "for edge-tok", "--kubeconfig", kc
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    parsed = jointoken.parse(token)
    assert parsed.ca_hash == jointoken.ca_hash(
        (server.data_dir / "server" / "tls" / "server-ca.crt").read_bytes()
    )
    token_id = parsed.password.split(".")[0]
    listed = _edgek("token", "list", "--kubeconfig", kc)
    assert token_id in listed.stdout and "for edge-tok" in listed.stdout
    asyncio.run(bootstrap(server.url, token, "edge-tok", tmp_path / "a", node_ips=[]))
    gone = _edgek("token", "delete", token_id, "--kubeconfig", kc)
    assert gone.returncode == 0, gone.stderr
    assert token_id not in _edgek("token", "list", "--kubeconfig", kc).stdout
    with pytest.raises(BootstrapError):
        asyncio.run(
            bootstrap(server.url, token, "edge-tok2", tmp_path / "b", node_ips=[], timeout=10)
        )


def test_expired_bootstrap_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    made = _edgek("token", "create", "--ttl", "1s", "--kubeconfig", str(server.kubeconfig))
    assert made.returncode == 0, made.stderr
    time.sleep(2)
    with pytest.raises(BootstrapError):
        asyncio.run(
            bootstrap(
                server.url,
                made.stdout.strip(),
                "edge-late",
                tmp_path / "a",
                node_ips=[],
                timeout=10,
            )
        )


def test_token_cli_bad_input() -> None:
    res = _edgek("token", "create", "--ttl", "soon", "--kubeconfig", "/nonexistent")
    assert res.returncode != 0
    assert res.stderr.strip().startswith("edgek: ")
    assert len(res.stderr.strip().splitlines()) == 1


def test_certificate_rotate_renews_the_node_identity(server: ServerProcess, tmp_path: Path) -> None:
    agent_dir = tmp_path / "agent"
    creds = asyncio.run(
        bootstrap(server.url, node_token(server), "edge-rot", agent_dir, node_ips=["10.9.8.7"])
    )
    before = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    old_key = creds.client_key.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "edgek", "certificate", "rotate", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    after = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    assert after.serial_number != before.serial_number
    assert after.subject == before.subject  # same node identity (the identity guard allows it)
    assert creds.client_key.read_bytes() != old_key
    serving = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.9.8.7" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    # the renewed kubeconfig works
    kubectl = Kubectl(next(iter(kubectl_binaries().values())), creds.kubeconfig, tmp_path / "c")
    assert "edge-rot" in kubectl("auth", "whoami")

    empty = subprocess.run(
        [sys.executable, "-m", "edgek", "certificate", "rotate", "--data-dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert empty.returncode != 0
    assert "holds no joined node identity" in empty.stderr


def test_certificates_are_renewed_before_they_expire(server: ServerProcess, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from agent.bootstrap import keep_renewed

    agent_dir = tmp_path / "agent"
    creds = asyncio.run(
        bootstrap(server.url, node_token(server), "edge-ren", agent_dir, node_ips=[])
    )
    before = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    lifetime = before.not_valid_after_utc - before.not_valid_before_utc

    async def run(at: datetime) -> None:
        """The renewer's first check happens at ``at``, later ones at the real time."""
        times = iter([at])
        task = asyncio.create_task(
            keep_renewed(agent_dir, interval=0.05, now=lambda: next(times, datetime.now(UTC)))
        )
        await asyncio.sleep(2)
        task.cancel()

    # early in the certificate's life nothing happens
    asyncio.run(run(datetime.now(UTC) + lifetime * 0.5))
    assert x509.load_pem_x509_certificate(creds.client_cert.read_bytes()) == before
    # past 80 % of it the certificates are renewed once, then left alone: they are fresh
    asyncio.run(run(before.not_valid_before_utc + lifetime * 0.85 + timedelta(seconds=1)))
    after = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    assert after.serial_number != before.serial_number
    assert after.subject == before.subject
    kubectl = Kubectl(next(iter(kubectl_binaries().values())), server.kubeconfig, tmp_path / "c")
    csrs = kubectl("get", "csr", "-o", "jsonpath={.items[*].spec.username}").split()
    # the join's serving CSR (its client CSR came from the token) plus one renewal's two
    assert csrs.count("system:node:edge-ren") == 3
