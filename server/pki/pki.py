"""The server's PKI: two CAs, the API serving certificate and the admin client certificate.

Layout under ``tls_dir`` (file names as k3s uses them)::

    server-ca.crt / server-ca.key                    signs serving certificates
    client-ca.crt / client-ca.key                    signs client certificates
    serving-kube-apiserver.crt / .key                the API server's TLS certificate
    client-admin.crt / client-admin.key              CN=system:admin, O=system:masters
    client-kube-apiserver.crt / .key                 CN=system:apiserver, O=system:masters:
                                                     the API server's identity towards agents

:func:`ensure_pki` creates what is missing on first start and reuses it afterwards, renewing
only leaf certificates (never a valid CA: replacing a CA would cut off every joined agent).

Nothing in this module needs ``cryptography``: serving TLS reads the PEM files with the
stdlib ``ssl`` module, and the X.509 work (:mod:`server.pki.provision`, :mod:`edgek.certs`)
is imported only when certificates are created, checked or signed. A restart whose files
passed that check before and are still far from expiry does not load it at all (see
:mod:`server.pki.checked`).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edgek.forked import call_in_child
from server.pki.checked import CheckRecord

if TYPE_CHECKING:
    from edgek.certs import IPAddress, PublicKey

CA_DAYS = 3650
LEAF_DAYS = 365
#: Leaf certificates closer than this to expiry are reissued on start.
RENEW_BEFORE = timedelta(days=90)
CLUSTER_DOMAIN = "cluster.local"
ADMIN_USER = "system:admin"
ADMIN_GROUP = "system:masters"
#: The API server's client identity when it dials an agent's streaming endpoint (k3s's
#: ``client-kube-apiserver.crt`` subject); agents accept no other client.
APISERVER_USER = "system:apiserver"
#: Name of the PKI check in the directory's :class:`~server.pki.checked.CheckRecord`.
_CHECK = "pki"

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def split_sans(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``--tls-san`` style values into (DNS names, IP addresses), both de-duplicated.

    A value that parses as an IPv4/IPv6 address is an IP (returned in canonical form);
    anything else is a DNS name (lower-cased). Blank values are ignored.
    """
    dns: list[str] = []
    ips: list[str] = []
    for raw in values:
        value = raw.strip()
        if not value:
            continue
        try:
            ip = str(ipaddress.ip_address(value))
        except ValueError:
            if value.lower() not in dns:
                dns.append(value.lower())
            continue
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def serving_sans(
    dns_names: Iterable[str], ip_addresses: Iterable[str]
) -> tuple[list[str], list[IPAddress]]:
    """The serving certificate's SANs: the fixed defaults plus the given names and IPs."""
    defaults = [
        socket.gethostname(),
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
    ]
    dns = list(dict.fromkeys(d.lower() for d in [*defaults, *dns_names] if d))
    ips = list(
        dict.fromkeys(ipaddress.ip_address(ip) for ip in ["127.0.0.1", "::1", *ip_addresses])
    )
    return dns, ips


@dataclass
class PKI:
    """Paths of the server's certificates and keys, plus the operations that use them."""

    tls_dir: Path
    server_ca_cert: Path
    server_ca_key: Path
    client_ca_cert: Path
    client_ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    apiserver_client_cert: Path
    apiserver_client_key: Path
    clock: Clock = field(default=_utcnow, repr=False, compare=False)

    @classmethod
    def at(cls, tls_dir: Path, *, clock: Clock | None = None) -> PKI:
        """The PKI layout in ``tls_dir`` (no files are read or created)."""
        return cls(
            tls_dir=tls_dir,
            server_ca_cert=tls_dir / "server-ca.crt",
            server_ca_key=tls_dir / "server-ca.key",
            client_ca_cert=tls_dir / "client-ca.crt",
            client_ca_key=tls_dir / "client-ca.key",
            serving_cert=tls_dir / "serving-kube-apiserver.crt",
            serving_key=tls_dir / "serving-kube-apiserver.key",
            admin_cert=tls_dir / "client-admin.crt",
            admin_key=tls_dir / "client-admin.key",
            apiserver_client_cert=tls_dir / "client-kube-apiserver.crt",
            apiserver_client_key=tls_dir / "client-kube-apiserver.key",
            clock=clock or _utcnow,
        )

    def files(self) -> list[Path]:
        """Every certificate and key file, CAs first."""
        return [
            self.server_ca_cert,
            self.server_ca_key,
            self.client_ca_cert,
            self.client_ca_key,
            self.serving_cert,
            self.serving_key,
            self.admin_cert,
            self.admin_key,
            self.apiserver_client_cert,
            self.apiserver_client_key,
        ]

    def server_ssl_context(self) -> ssl.SSLContext:
        """TLS server context for the API port.

        Serves the serving certificate, asks for (but does not require) a client certificate
        and verifies any presented one against the client CA, so anonymous requests still
        reach the handlers (which answer 401 where authentication is needed). TLS 1.2+, ALPN
        ``http/1.1``. Files are read now: build a new context after certificates rotate.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.serving_cert, self.serving_key)
        ctx.load_verify_locations(cafile=self.client_ca_cert)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def agent_client_ssl_context(self) -> ssl.SSLContext:
        """TLS client context for dialing an agent's streaming endpoint: presents the API
        server's client certificate and verifies the agent's serving certificate (from its
        kubelet-serving CSR) with the server CA."""
        ctx = ssl.create_default_context(cafile=str(self.server_ca_cert))
        ctx.load_cert_chain(self.apiserver_client_cert, self.apiserver_client_key)
        return ctx

    def ca_bundle_pem(self) -> bytes:
        """The CA bundle clients use to verify this server: ``server-ca.crt``, byte for byte.

        This is what ``/cacerts`` serves and what the join token pins (``K10`` + sha256 hex of
        these bytes). It holds only the server CA, as in k3s: it is all a client needs to
        trust the API server. The client CA is not included; whoever must verify client
        certificates (e.g. an agent's streaming endpoint) needs ``client_ca_cert`` separately.
        """
        return self.server_ca_cert.read_bytes()

    def issue_client_cert(
        self,
        common_name: str,
        organizations: Sequence[str],
        public_key: PublicKey,
        *,
        days: int = LEAF_DAYS,
    ) -> bytes:
        """PEM client certificate (clientAuth) for ``public_key``, signed by the client CA.

        The API server maps CN to the user name and each O to a group.
        """
        return self._issue(common_name, public_key, days, client=True, organizations=organizations)

    def issue_serving_cert(
        self,
        common_name: str,
        public_key: PublicKey,
        *,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        days: int = LEAF_DAYS,
    ) -> bytes:
        """PEM serving certificate (serverAuth) for ``public_key``, signed by the server CA.

        For TLS endpoints other than the API port that clients verify with the server CA
        (e.g. an agent's streaming endpoint).
        """
        ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
        return self._issue(
            common_name, public_key, days, client=False, dns_names=dns_names, ip_addresses=ips
        )

    def _issue(
        self,
        common_name: str,
        public_key: PublicKey,
        days: int,
        *,
        client: bool,
        organizations: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[IPAddress] = (),
    ) -> bytes:
        """PEM certificate signed by the client CA (``client``: clientAuth) or the server CA
        (serverAuth)."""
        from edgek import certs  # loads cryptography: only once something is signed

        usage = certs.CLIENT_AUTH if client else certs.SERVER_AUTH
        leaf = certs.Leaf(common_name, usage, organizations, dns_names, ip_addresses)
        ca_cert_path = self.client_ca_cert if client else self.server_ca_cert
        ca_key_path = self.client_ca_key if client else self.server_ca_key
        ca_cert = certs.load_cert(ca_cert_path)
        ca_key = certs.load_key(ca_key_path)
        if ca_cert is None or ca_key is None:
            raise FileNotFoundError(f"CA {ca_cert_path} / {ca_key_path} missing or unreadable")
        cert = certs.sign_leaf(ca_cert, ca_key, leaf, public_key, now=self.clock(), days=days)
        return certs.cert_to_pem(cert)


def ensure_pki(
    tls_dir: Path,
    *,
    dns_names: list[str],
    ip_addresses: list[str],
    clock: Clock | None = None,
) -> PKI:
    """Create the server PKI in ``tls_dir`` on first start; reuse and renew it afterwards.

    CAs are valid 10 years, leaf certificates 1 year, all keys EC P-256. A CA is only
    replaced when unusable (missing, corrupt, expired). The serving certificate is reissued
    when its SANs do not cover the defaults (hostname, localhost, kubernetes.default.svc...,
    127.0.0.1, ::1) plus ``dns_names``/``ip_addresses``, or when it expires within 90 days;
    the admin certificate when it expires within 90 days. Leaves are also reissued when
    their CA changed. Keys are mode 0600, ``tls_dir`` 0700, every write is atomic.
    ``clock`` returns the current time (timezone-aware).

    These checks parse the files with ``cryptography``. Their outcome is recorded (with the
    files' hashes) in ``checked.json``; while the files are unchanged, later calls decide
    from the recorded expiry dates and SANs alone and do not load ``cryptography``.
    """
    pki = PKI.at(tls_dir, clock=clock)
    now = pki.clock()
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    dns, ips = serving_sans(dns_names, ip_addresses)
    record = CheckRecord(tls_dir)
    facts = record.get(_CHECK, pki.files())
    if facts is None or not _still_good(facts, dns, ips, now):
        facts = call_in_child(functools.partial(_provision, pki, dns, ips, now))
        record.put(_CHECK, pki.files(), facts)
    return pki


def _provision(
    pki: PKI, dns_names: Sequence[str], ips: Sequence[IPAddress], now: datetime
) -> dict[str, Any]:
    """:func:`server.pki.provision.ensure`, run in a child process by :func:`ensure_pki`:
    it loads ``cryptography`` (about 11 MB resident), which the server then does not need
    until something must be signed, so the first start idles as small as a restart."""
    from server.pki import provision

    return provision.ensure(pki, dns_names, ips, now)


def _still_good(
    facts: dict[str, Any], dns_names: Sequence[str], ips: Sequence[IPAddress], now: datetime
) -> bool:
    """Whether :func:`server.pki.provision.ensure` would keep every file as it is, judged
    from the facts it recorded when these very files last passed its checks: both CAs are
    still valid, both leaves are valid for more than :data:`RENEW_BEFORE`, and the serving
    certificate covers the requested SANs (DNS names case-insensitively)."""
    try:
        cas = [datetime.fromisoformat(t) for t in facts["ca_not_after"]]
        leaves = [datetime.fromisoformat(t) for t in facts["leaf_not_after"]]
        have_dns, have_ips = set(facts["serving_dns"]), set(facts["serving_ips"])
    except (KeyError, TypeError, ValueError):
        return False
    return (
        all(now < end for end in cas)
        and all(end - now > RENEW_BEFORE for end in leaves)
        and all(d.lower() in have_dns for d in dns_names)
        and all(str(ip) in have_ips for ip in ips)
    )


#: peer_identity per TLS connection: the certificate is fixed once the handshake is done,
#: and decoding it again for every request on a kept-alive connection costs ~1 % of a
#: busy server's CPU.
_PEER_IDENTITIES: weakref.WeakKeyDictionary[Any, tuple[str, list[str]] | None] = (
    weakref.WeakKeyDictionary()
)


def peer_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
) -> tuple[str, list[str]] | None:
    """(user, groups) from the peer's verified client certificate: CN and the O values.

    None when there is no TLS, no certificate, or an unverified one (``getpeercert()`` only
    returns a populated dict for a certificate that passed verification), and when the CN
    is empty (Kubernetes does not authenticate such certificates). With several CNs the last
    one wins, as in Go's name parsing.
    """
    if ssl_object is None:
        return None
    try:
        return _PEER_IDENTITIES[ssl_object]
    except KeyError:
        identity = _PEER_IDENTITIES[ssl_object] = _identity_of(ssl_object)
        return identity


def _identity_of(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[str, list[str]] | None:
    peer = ssl_object.getpeercert()
    if not peer:
        return None
    user = ""
    groups: list[str] = []
    subject = cast(tuple[tuple[tuple[str, str], ...], ...], peer.get("subject", ()))
    for rdn in subject:
        for attr, value in rdn:
            if attr == "commonName":
                user = value
            elif attr == "organizationName":
                groups.append(value)
    return (user, groups) if user else None
