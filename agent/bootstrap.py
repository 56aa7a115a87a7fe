"""Agent TLS bootstrap: join a cluster with a join token and get kubelet certificates.

The join token is k3s-style, ``K10<sha256 hex of the server's CA bundle PEM>::<user>:<password>``
(see :mod:`edgek.jointoken`). Joining goes:

1. ``GET <server>/cacerts`` *without* TLS verification and compare the body's hash with the
   token's (constant time). On a mismatch :class:`BootstrapError` is raised before anything
   else is sent: no credential leaves the device towards a server that is not the cluster. A
   short token (no hash) skips this pinning with a logged warning.
2. From then on trust only that CA (an ``ssl.SSLContext`` holding exactly that bundle).
3. Use the agent's EC P-256 key: created locally (mode 0600 under the agent directory) or
   reused if present; private keys are never transmitted.
4. Create a ``certificates.k8s.io/v1`` CertificateSigningRequest (``generateName:
   node-csr-``, subject ``CN=system:node:<node>, O=system:nodes``, signer
   ``kubernetes.io/kube-apiserver-client-kubelet``, usages digital signature + client auth)
   authenticated with ``Authorization: Bearer <token password>`` (the server maps the join
   secret and bootstrap tokens to a ``system:bootstrappers`` identity), then watch it (polling
   when the watch is refused) until ``status.certificate`` is set; a Denied or Failed
   condition, or the timeout, raises :class:`BootstrapError`.
5. With that client certificate (and no bearer token), request the kubelet serving
   certificate the same way: signer ``kubernetes.io/kubelet-serving``, same subject, SANs =
   node name, ``localhost``, the node IPs and 127.0.0.1, usages digital signature, key
   encipherment, server auth.
6. Write ``client-kubelet.crt/.key``, ``serving-kubelet.crt/.key``, ``server-ca.crt`` and
   ``kubelet.kubeconfig`` (credentials embedded) into the agent directory, keys 0600, every
   file replaced atomically.

:func:`renew` rotates both certificates (new keys) authenticating with the current client
certificate; :func:`needs_renewal` says when (past 80% of the certificate's lifetime).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgek import certs, jointoken
from edgek.kubeconfig import admin_kubeconfig, atomic_write, load_kubeconfig, write_kubeconfig
from edgek.names import is_dns1123_subdomain

log = logging.getLogger(__name__)

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
CLIENT_USAGES = ("digital signature", "client auth")
SERVING_USAGES = ("digital signature", "key encipherment", "server auth")
NODES_GROUP = "system:nodes"

CLIENT_CERT = "client-kubelet.crt"
CLIENT_KEY = "client-kubelet.key"
SERVING_CERT = "serving-kubelet.crt"
SERVING_KEY = "serving-kubelet.key"
SERVER_CA = "server-ca.crt"
KUBECONFIG = "kubelet.kubeconfig"

#: How long one watch request may stay open before the CSR is re-read.
WATCH_SECONDS = 30
#: Pause between reads when the server refuses to watch.
POLL_SECONDS = 1.0


class BootstrapError(Exception):
    """Joining or renewing failed; the message says why and what to do."""


@dataclass
class AgentCredentials:
    """What the agent holds after joining: the cluster CA and its certificate files."""

    ca_pem: bytes
    client_cert: Path
    client_key: Path
    serving_cert: Path
    serving_key: Path
    kubeconfig: Path

    @classmethod
    def at(cls, agent_dir: Path, ca_pem: bytes) -> AgentCredentials:
        """The credential file layout in ``agent_dir``."""
        return cls(
            ca_pem=ca_pem,
            client_cert=agent_dir / CLIENT_CERT,
            client_key=agent_dir / CLIENT_KEY,
            serving_cert=agent_dir / SERVING_CERT,
            serving_key=agent_dir / SERVING_KEY,
            kubeconfig=agent_dir / KUBECONFIG,
        )


def _base_url(server_url: str) -> str:
    """The server URL without trailing slashes; BootstrapError unless it is https."""
    parts = urlsplit(server_url)
    if parts.scheme != "https" or not parts.netloc:
        raise BootstrapError(f"the server URL must be https://host[:port], got {server_url!r}")
    return server_url.rstrip("/")


async def fetch_ca(server_url: str, *, timeout: float = 10) -> bytes:  # noqa: ASYNC109
    """The server's CA bundle from ``/cacerts``, fetched without verifying TLS and without
    credentials. The caller must check it (against the join token's hash) before trusting it.
    """
    url = _base_url(server_url) + "/cacerts"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, ssl=False) as resp,
        ):
            if resp.status != 200:
                raise BootstrapError(f"GET {url}: HTTP {resp.status}")
            body = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise BootstrapError(f"cannot fetch the cluster CA from {url}: {e or 'timed out'}") from e
    try:
        x509.load_pem_x509_certificates(body)
    except ValueError:
        raise BootstrapError(f"{url} did not return a PEM CA bundle") from None
    return body


def _check_ca(token: jointoken.JoinToken, ca_pem: bytes, server: str) -> None:
    """Raise unless the fetched CA is the one the token pins (warn when it pins none)."""
    if not token.ca_hash:
        log.warning(
            "the join token has no CA hash: trusting the CA served by %s without verification; "
            "use the full K10... token from the server to pin the cluster CA",
            server,
        )
        return
    if not jointoken.verify_ca(token, ca_pem):
        raise BootstrapError(
            f"the server's CA does not match the token's CA hash (token {token.ca_hash}, "
            f"{server} serves {jointoken.ca_hash(ca_pem)}): not sending credentials; check "
            "the server address and the token"
        )


def _ssl_context(
    ca_pem: bytes, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """TLS client context trusting exactly ``ca_pem``, presenting ``cert``/``key`` if given."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The EC key stored at ``path``; a new one (written 0600) when missing or unreadable."""
    key = certs.load_key(path)
    if key is None:
        if path.exists():
            log.warning("bootstrap: %s is not a usable EC key, generating a new one", path)
        key = certs.new_key()
        atomic_write(path, certs.key_to_pem(key), mode=0o600)
    return key


def _build_csr(
    key: ec.EllipticCurvePrivateKey,
    node: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> bytes:
    """PEM request for ``O=system:nodes, CN=system:node:<node>`` with the given SANs."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _csr_object(request_pem: bytes, signer: str, usages: Sequence[str]) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": base64.b64encode(request_pem).decode("ascii"),
            "signerName": signer,
            "usages": list(usages),
        },
    }


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    """``HTTP <code>: <message>`` from an error response (a metav1.Status when it is one)."""
    body = await resp.read()
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()
    return f"HTTP {resp.status}" + (f": {message}" if message else "")


async def _create_csr(session: aiohttp.ClientSession, base: str, obj: dict[str, Any]) -> str:
    """POST the CSR; its generated name."""
    async with session.post(base + CSR_PATH, json=obj) as resp:
        if resp.status == 401:
            raise BootstrapError(
                f"{base} rejected the credentials (401 Unauthorized): is the join token current?"
            )
        if resp.status not in (200, 201, 202):
            raise BootstrapError(f"creating a CertificateSigningRequest: {await _error_text(resp)}")
        created = await resp.json()
    return str(created["metadata"]["name"])


def _issued_certificate(obj: dict[str, Any], name: str) -> str | None:
    """The CSR's ``status.certificate`` (base64 PEM), None while pending; BootstrapError once
    it is denied or failed."""
    status = obj.get("status") or {}
    for cond in status.get("conditions") or []:
        kind = cond.get("type")
        if kind in ("Denied", "Failed") and cond.get("status", "True") == "True":
            detail = cond.get("message") or cond.get("reason") or "no reason given"
            raise BootstrapError(f"CertificateSigningRequest {name} was {kind.lower()}: {detail}")
    return status.get("certificate") or None


async def _watch_once(
    session: aiohttp.ClientSession, base: str, name: str, resource_version: str
) -> str | None:
    """Watch the CSR from ``resource_version`` until it is issued (the certificate), or the
    watch ends or is refused (None: read it again)."""
    params = {
        "watch": "1",
        "fieldSelector": f"metadata.name={name}",
        "resourceVersion": resource_version,
        "timeoutSeconds": str(WATCH_SECONDS),
    }
    async with session.get(base + CSR_PATH, params=params) as resp:
        if resp.status != 200:
            log.debug("bootstrap: watch refused (%s), polling", await _error_text(resp))
            await asyncio.sleep(POLL_SECONDS)
            return None
        async for line in resp.content:
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("type") == "DELETED":
                raise BootstrapError(f"CertificateSigningRequest {name} was deleted")
            if event.get("type") not in ("ADDED", "MODIFIED"):
                return None  # ERROR (e.g. resourceVersion too old): start over
            cert = _issued_certificate(event["object"], name)
            if cert is not None:
                return cert
    return None


async def _wait_for_certificate(
    session: aiohttp.ClientSession, base: str, name: str, deadline: float
) -> str:
    """Read and watch CSR ``name`` until it has a certificate (before the loop's ``deadline``)."""
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                async with session.get(f"{base}{CSR_PATH}/{name}") as resp:
                    if resp.status != 200:
                        raise BootstrapError(
                            f"reading CertificateSigningRequest {name}: {await _error_text(resp)}"
                        )
                    obj = await resp.json()
                cert = _issued_certificate(obj, name)
                if cert is None:
                    rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                    cert = await _watch_once(session, base, name, rv)
                if cert is not None:
                    return cert
    except TimeoutError:
        raise BootstrapError(
            f"timed out waiting for CertificateSigningRequest {name} to be approved and signed "
            f"(an administrator can run `kubectl certificate approve {name}`)"
        ) from None


async def _request_serving_certificate(
    session: aiohttp.ClientSession,
    base: str,
    key: ec.EllipticCurvePrivateKey,
    node: str,
    node_ips: Sequence[str],
    deadline: float,
) -> bytes:
    """The node's serving certificate (SANs: node name, its IPs, localhost)."""
    dns, ips = _serving_sans(node, node_ips)
    return await _request_certificate(
        session,
        base,
        key,
        node,
        signer=SERVING_SIGNER,
        usages=SERVING_USAGES,
        deadline=deadline,
        dns_names=dns,
        ip_addresses=ips,
    )


async def _request_certificate(
    session: aiohttp.ClientSession,
    base: str,
    key: ec.EllipticCurvePrivateKey,
    node: str,
    *,
    signer: str,
    usages: Sequence[str],
    deadline: float,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> bytes:
    """Create a CSR for ``key``, wait for it to be signed, check and return the PEM cert."""
    request = _build_csr(key, node, dns_names, ip_addresses)
    try:
        name = await _create_csr(session, base, _csr_object(request, signer, usages))
        encoded = await _wait_for_certificate(session, base, name, deadline)
    except (aiohttp.ClientError, TimeoutError) as e:
        raise BootstrapError(f"talking to {base}: {str(e) or 'timed out'}") from e
    try:
        pem = base64.b64decode(encoded, validate=True)
        cert = x509.load_pem_x509_certificate(pem)
    except (binascii.Error, ValueError):
        raise BootstrapError(f"CertificateSigningRequest {name}: certificate is not PEM") from None
    if not certs.key_matches(cert, key):
        raise BootstrapError(f"CertificateSigningRequest {name}: certificate is for another key")
    return pem


def _serving_sans(node: str, node_ips: Sequence[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) of the kubelet serving certificate."""
    ips = [str(ipaddress.ip_address(ip)) for ip in [*node_ips, "127.0.0.1"]]
    return list(dict.fromkeys([node, "localhost"])), list(dict.fromkeys(ips))


def _check_node(node_name: str, node_ips: Sequence[str]) -> None:
    problems = is_dns1123_subdomain(node_name)
    if problems:
        raise BootstrapError(f"invalid node name {node_name!r}: {'; '.join(problems)}")
    for ip in node_ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise BootstrapError(f"invalid node IP {ip!r}") from None


def _prepare(
    agent_dir: Path, ca_pem: bytes
) -> tuple[AgentCredentials, ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    """Create the agent directory (0700) and load or create the client and serving keys."""
    agent_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds = AgentCredentials.at(agent_dir, ca_pem)
    return creds, _load_or_create_key(creds.client_key), _load_or_create_key(creds.serving_key)


def _write_credentials(
    creds: AgentCredentials,
    base: str,
    client: tuple[bytes, ec.EllipticCurvePrivateKey],
    serving: tuple[bytes, ec.EllipticCurvePrivateKey],
) -> None:
    """Replace every credential file atomically (each key before its certificate)."""
    client_pem, client_key = client
    serving_pem, serving_key = serving
    atomic_write(creds.client_key, certs.key_to_pem(client_key), mode=0o600)
    atomic_write(creds.client_cert, client_pem, mode=0o644)
    atomic_write(creds.serving_key, certs.key_to_pem(serving_key), mode=0o600)
    atomic_write(creds.serving_cert, serving_pem, mode=0o644)
    atomic_write(creds.client_cert.parent / SERVER_CA, creds.ca_pem, mode=0o644)
    config = admin_kubeconfig(base, creds.ca_pem, client_pem, certs.key_to_pem(client_key))
    write_kubeconfig(creds.kubeconfig, config, mode=0o600)


async def bootstrap(
    server_url: str,
    token: str,
    node_name: str,
    agent_dir: Path,
    *,
    node_ips: list[str],
    timeout: float = 60,  # noqa: ASYNC109 (bounds several requests and waits)
) -> AgentCredentials:
    """Join the cluster at ``server_url`` as ``node_name`` (see the module docstring).

    ``timeout`` bounds the whole join, including waiting for both CSRs to be approved.
    Existing keys in ``agent_dir`` are reused. BootstrapError on any failure.
    """
    _check_node(node_name, node_ips)
    try:
        parsed = jointoken.parse(token)
    except ValueError as e:
        raise BootstrapError(f"invalid join token: {e}") from None
    base = _base_url(server_url)
    deadline = asyncio.get_running_loop().time() + timeout
    ca_pem = await fetch_ca(base, timeout=timeout)
    _check_ca(parsed, ca_pem, base)

    creds, client_key, serving_key = _prepare(agent_dir, ca_pem)
    http_timeout = aiohttp.ClientTimeout(total=timeout)

    ctx = _ssl_context(ca_pem)
    headers = {"Authorization": f"Bearer {parsed.password}"}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx), headers=headers, timeout=http_timeout
    ) as session:
        client_pem = await _request_certificate(
            session,
            base,
            client_key,
            node_name,
            signer=CLIENT_SIGNER,
            usages=CLIENT_USAGES,
            deadline=deadline,
        )
    atomic_write(creds.client_cert, client_pem, mode=0o644)
    log.info("bootstrap: node %s has its client certificate", node_name)

    ctx = _ssl_context(ca_pem, creds.client_cert, creds.client_key)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx), timeout=http_timeout
    ) as session:
        serving_pem = await _request_serving_certificate(
            session, base, serving_key, node_name, node_ips, deadline
        )
    _write_credentials(creds, base, (client_pem, client_key), (serving_pem, serving_key))
    log.info("bootstrap: node %s joined %s", node_name, base)
    return creds


def needs_renewal(cert_path: Path, now: datetime, *, fraction: float = 0.8) -> bool:
    """True once ``now`` is past ``fraction`` of the certificate's lifetime (so it is rotated
    well before it expires), and when the certificate is missing or unreadable."""
    cert = certs.load_cert(cert_path)
    if cert is None:
        return True
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * fraction


async def renew(
    server_url: str,
    creds: AgentCredentials,
    node_name: str,
    node_ips: list[str],
    *,
    timeout: float = 60,  # noqa: ASYNC109 (bounds several requests and waits)
) -> AgentCredentials:
    """New client and serving certificates, for new keys, authenticated with the current
    client certificate and trusting the stored CA.

    Files are only replaced (each atomically) once both certificates are issued; processes
    holding the old ones keep working until they reload. BootstrapError on failure, leaving
    the current files as they were.
    """
    _check_node(node_name, node_ips)
    base = _base_url(server_url)
    deadline = asyncio.get_running_loop().time() + timeout
    client_key, serving_key = certs.new_key(), certs.new_key()
    try:
        ctx = _ssl_context(creds.ca_pem, creds.client_cert, creds.client_key)
    except (OSError, ssl.SSLError) as e:
        raise BootstrapError(f"cannot load the current client certificate: {e}") from e
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx), timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        client_pem = await _request_certificate(
            session,
            base,
            client_key,
            node_name,
            signer=CLIENT_SIGNER,
            usages=CLIENT_USAGES,
            deadline=deadline,
        )
        serving_pem = await _request_serving_certificate(
            session, base, serving_key, node_name, node_ips, deadline
        )
    _write_credentials(creds, base, (client_pem, client_key), (serving_pem, serving_key))
    log.info("bootstrap: renewed the certificates of node %s", node_name)
    return creds


def stored_identity(agent_dir: Path) -> tuple[str, AgentCredentials, str, list[str]]:
    """What a joined agent keeps in ``agent_dir``: (server URL, credentials, node name,
    node IPs), read back from its kubeconfig and certificates. BootstrapError when the
    directory holds no joined identity."""
    try:
        ca_pem = (agent_dir / SERVER_CA).read_bytes()
        config = load_kubeconfig(agent_dir / KUBECONFIG)
        server = str(config["clusters"][0]["cluster"]["server"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise BootstrapError(f"{agent_dir} holds no joined node identity: {e}") from e
    creds = AgentCredentials.at(agent_dir, ca_pem)
    client, serving = certs.load_cert(creds.client_cert), certs.load_cert(creds.serving_cert)
    if client is None or serving is None:
        raise BootstrapError(f"{agent_dir} lacks the node's certificates")
    common_names = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    user = str(common_names[0].value) if common_names else ""
    if not user.startswith("system:node:"):
        raise BootstrapError(f"{creds.client_cert} is not a node certificate ({user!r})")
    try:
        sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        ips = []
    node_ips = [ip for ip in ips if not ipaddress.ip_address(ip).is_loopback]
    return server, creds, user.removeprefix("system:node:"), node_ips


def _reuse_problem(
    stored: tuple[str, AgentCredentials, str, list[str]],
    server_url: str,
    ca_pem: bytes,
    node_name: str,
    node_ips: Sequence[str],
    now: datetime,
) -> str:
    """Why the stored identity cannot serve a join of ``server_url`` (whose CA is
    ``ca_pem``) as ``node_name`` with ``node_ips``; empty when it can."""
    server, creds, name, ips = stored
    if creds.ca_pem != ca_pem:
        return "they belong to another cluster CA"
    if server != server_url:
        return f"they are for {server}"
    wanted_ips = [ip for ip in node_ips if not ipaddress.ip_address(ip).is_loopback]
    if name != node_name or sorted(ips) != sorted(wanted_ips):
        return f"they are for node {name} with IPs {ips}"
    if needs_renewal(creds.client_cert, now) or needs_renewal(creds.serving_cert, now):
        return "they are due for renewal"
    return ""


async def join(
    server_url: str,
    token: str,
    node_name: str,
    agent_dir: Path,
    *,
    node_ips: list[str],
    now: datetime,
    timeout: float = 60,  # noqa: ASYNC109 (passed on to bootstrap)
) -> AgentCredentials:
    """The node's credentials: those stored in ``agent_dir`` while they belong to the same
    cluster CA, server, node name and IPs and are fresh, else a new :func:`bootstrap`
    (reusing the keys). The CA is the token's hash; a short token pins none, so the CA the
    server serves is fetched and compared (and when the server cannot be reached, stored
    credentials are kept: the device must start while the uplink is down)."""
    try:
        parsed = jointoken.parse(token)
    except ValueError as e:
        raise BootstrapError(f"invalid join token: {e}") from None
    try:
        stored: tuple[str, AgentCredentials, str, list[str]] | None = stored_identity(agent_dir)
    except BootstrapError:
        stored = None
    if stored is not None:
        base = _base_url(server_url)
        ca_pem = stored[1].ca_pem
        if not jointoken.verify_ca(parsed, ca_pem):
            ca_pem = b""
        elif not parsed.ca_hash:
            try:
                ca_pem = await fetch_ca(base, timeout=timeout)
            except BootstrapError as e:
                log.warning("bootstrap: %s; using the stored credentials unchecked", e)
        problem = _reuse_problem(stored, base, ca_pem, node_name, node_ips, now)
        if not problem:
            return stored[1]
        log.info("bootstrap: not reusing the credentials in %s: %s", agent_dir, problem)
    return await bootstrap(
        server_url, token, node_name, agent_dir, node_ips=node_ips, timeout=timeout
    )


async def rotate(agent_dir: Path) -> AgentCredentials:
    """``edgek certificate rotate``: renew the node's certificates now, whatever their age."""
    server, creds, node_name, node_ips = stored_identity(agent_dir)
    return await renew(server, creds, node_name, node_ips)


async def keep_renewed(
    agent_dir: Path,
    *,
    interval: float = 3600.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Run for the agent's lifetime: every ``interval`` seconds, renew the node's
    certificates once 80 % of either one's lifetime has passed. Failures are logged and
    retried at the next check; the current files stay in place until a renewal succeeds."""
    creds = AgentCredentials.at(agent_dir, b"")
    while True:
        when = now()
        if needs_renewal(creds.client_cert, when) or needs_renewal(creds.serving_cert, when):
            try:
                await rotate(agent_dir)
            except BootstrapError as e:
                log.warning("bootstrap: certificate renewal failed (%s); retrying later", e)
        await asyncio.sleep(interval)
