"""Tests for server.pki.csr_crypto: parsing, auto-approval with the node identity guard, signing."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgek.certs import new_key
from server.pki import ensure_pki
from server.pki.csr_crypto import (
    CLIENT_KUBELET_SIGNER,
    CLIENT_SIGNER,
    SERVING_SIGNER,
    SIGNERS,
    CSRError,
    auto_approval,
    identity_secret,
    is_approved,
    is_denied_or_failed,
    parse_request,
    public_key_sha256,
    requested_node,
    sign,
)
from tests.unit.pki_helpers import CA, signing_cas

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
CLIENT_USAGES = ["digital signature", "client auth"]
SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]
BOOTSTRAPPER = ("system:bootstrap:abcdef", ["system:bootstrappers", "system:authenticated"])
NODE1 = ("system:node:n1", ["system:nodes", "system:authenticated"])
NODE2 = ("system:node:n2", ["system:nodes", "system:authenticated"])
GUARD_MESSAGE = (
    'node "n1" already joined with a different key; delete secret '
    "kube-system/n1.node-identity.edgek to let a new device take the name"
)


def request_pem(
    key: ec.EllipticCurvePrivateKey,
    cn: str = "system:node:n1",
    orgs: Sequence[str] = ("system:nodes",),
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    emails: Sequence[str] = (),
    uris: Sequence[str] = (),
) -> bytes:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.RFC822Name(e) for e in emails]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_obj(
    pem: bytes,
    signer: str = CLIENT_KUBELET_SIGNER,
    usages: Sequence[str] = CLIENT_USAGES,
    requester: tuple[str, list[str]] = BOOTSTRAPPER,
    *,
    conditions: Sequence[str] = (),
    expiration: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": base64.b64encode(pem).decode(),
        "signerName": signer,
        "usages": list(usages),
        "username": requester[0],
        "groups": requester[1],
    }
    if expiration is not None:
        spec["expirationSeconds"] = expiration
    obj: dict[str, Any] = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr-x"},
        "spec": spec,
    }
    if conditions:
        obj["status"] = {
            "conditions": [{"type": c, "status": "True", "reason": "Test"} for c in conditions]
        }
    return obj


def spki_sha256(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, CA]:
    tls: Path = tmp_path_factory.mktemp("tls")
    pki = ensure_pki(tls, dns_names=[], ip_addresses=[], clock=lambda: NOW)
    return signing_cas(pki)


@pytest.fixture(scope="module")
def key1() -> ec.EllipticCurvePrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def key2() -> ec.EllipticCurvePrivateKey:
    return new_key()


# --- parse_request ----------------------------------------------------------------------


def test_parse_request_round_trips(key1: ec.EllipticCurvePrivateKey) -> None:
    req = parse_request(csr_obj(request_pem(key1, dns=["n1"])))
    assert req.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert public_key_sha256(req) == spki_sha256(key1)


@pytest.mark.parametrize(
    ("request_value", "message"),
    [
        (None, "spec.request is missing"),
        ("", "spec.request is missing"),
        ("not base64!", "not base64"),
        (base64.b64encode(b"hello").decode(), "PEM block type must be CERTIFICATE REQUEST"),
        (
            base64.b64encode(
                b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            ).decode(),
            "cannot parse certificate request",
        ),
    ],
)
def test_parse_request_rejects_garbage(request_value: str | None, message: str) -> None:
    with pytest.raises(CSRError, match=message):
        parse_request({"spec": {"request": request_value}})


def test_parse_request_checks_the_signature(
    key1: ec.EllipticCurvePrivateKey, key2: ec.EllipticCurvePrivateKey
) -> None:
    # The request of key1 with its public key swapped for key2's: the signature no longer fits.
    good = x509.load_pem_x509_csr(request_pem(key1)).public_bytes(serialization.Encoding.DER)
    pub1 = key1.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub2 = key2.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert good.count(pub1) == 1
    forged = good.replace(pub1, pub2)
    pem = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(forged)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    with pytest.raises(CSRError, match="unable to verify certificate request signature"):
        parse_request(csr_obj(pem))


# --- conditions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "approved", "denied_or_failed"),
    [
        ((), False, False),
        (("Approved",), True, False),
        (("Denied",), False, True),
        (("Approved", "Denied"), False, True),
        (("Approved", "Failed"), True, True),
    ],
)
def test_condition_helpers(
    key1: ec.EllipticCurvePrivateKey,
    conditions: tuple[str, ...],
    approved: bool,
    denied_or_failed: bool,
) -> None:
    obj = csr_obj(request_pem(key1), conditions=conditions)
    assert is_approved(obj) is approved
    assert is_denied_or_failed(obj) is denied_or_failed


def test_condition_with_status_false_does_not_count(key1: ec.EllipticCurvePrivateKey) -> None:
    obj = csr_obj(request_pem(key1))
    obj["status"] = {"conditions": [{"type": "Approved", "status": "False"}]}
    assert not is_approved(obj)


# --- auto_approval: kubelet client certificates -----------------------------------------


def test_bootstrapper_client_csr_is_approved(key1: ec.EllipticCurvePrivateKey) -> None:
    assert auto_approval(csr_obj(request_pem(key1)), None) == (True, "AutoApproved")
    with_encipherment = ["digital signature", "key encipherment", "client auth"]
    obj = csr_obj(request_pem(key1), usages=with_encipherment)
    assert auto_approval(obj, None) == (True, "AutoApproved")


@pytest.mark.parametrize(
    "overrides",
    [
        {"orgs": ("system:masters",)},
        {"orgs": ("system:nodes", "system:masters")},
        {"orgs": ()},
        {"cn": "admin"},
        {"cn": "system:node:"},
        {"cn": "system:node:Bad_Name"},
        {"dns": ("n1",)},
        {"ips": ("10.0.0.1",)},
        {"emails": ("n1@example.com",)},
        {"uris": ("spiffe://n1",)},
    ],
)
def test_client_csr_of_the_wrong_shape_gets_no_opinion(
    key1: ec.EllipticCurvePrivateKey, overrides: dict[str, Any]
) -> None:
    # Upstream's approver does not recognize these and leaves them pending for a human.
    assert auto_approval(csr_obj(request_pem(key1, **overrides)), None) is None


@pytest.mark.parametrize(
    "usages",
    [
        ["client auth"],
        ["digital signature", "client auth", "server auth"],
        ["digital signature", "key encipherment", "server auth"],
        ["digital signature", "client auth", "signing"],
    ],
)
def test_client_csr_with_other_usages_gets_no_opinion(
    key1: ec.EllipticCurvePrivateKey, usages: list[str]
) -> None:
    assert auto_approval(csr_obj(request_pem(key1), usages=usages), None) is None


@pytest.mark.parametrize(
    "requester",
    [
        ("alice", ["system:authenticated"]),
        ("system:node:n2", ["system:nodes", "system:authenticated"]),
        ("system:node:n1", ["system:authenticated"]),
    ],
)
def test_client_csr_from_others_gets_no_opinion(
    key1: ec.EllipticCurvePrivateKey, requester: tuple[str, list[str]]
) -> None:
    assert auto_approval(csr_obj(request_pem(key1), requester=requester), None) is None


def test_decided_or_foreign_csrs_get_no_opinion(key1: ec.EllipticCurvePrivateKey) -> None:
    pem = request_pem(key1)
    for conditions in (("Approved",), ("Denied",), ("Failed",)):
        assert auto_approval(csr_obj(pem, conditions=conditions), None) is None
    issued = csr_obj(pem)
    issued["status"] = {"certificate": "Zm9v"}
    assert auto_approval(issued, None) is None
    assert auto_approval(csr_obj(pem, signer="example.com/custom"), None) is None
    assert auto_approval(csr_obj(pem, signer=CLIENT_SIGNER), None) is None
    garbage = csr_obj(pem)
    garbage["spec"]["request"] = base64.b64encode(b"junk").decode()
    assert auto_approval(garbage, None) is None


def test_identity_guard_denies_a_new_key_for_a_joined_node(
    key1: ec.EllipticCurvePrivateKey, key2: ec.EllipticCurvePrivateKey
) -> None:
    first = csr_obj(request_pem(key1))
    assert auto_approval(first, None) == (True, "AutoApproved")
    secret = identity_secret("n1", parse_request(first))
    # The same device joining again (same key) is fine.
    assert auto_approval(csr_obj(request_pem(key1)), secret) == (True, "AutoApproved")
    # Another device with the join token trying to take the name is denied.
    assert auto_approval(csr_obj(request_pem(key2)), secret) == (False, GUARD_MESSAGE)


def test_identity_guard_fails_closed_on_an_unreadable_secret(
    key1: ec.EllipticCurvePrivateKey,
) -> None:
    secret = identity_secret("n1", parse_request(csr_obj(request_pem(key1))))
    secret["data"] = {"public-key-sha256": "***"}
    assert auto_approval(csr_obj(request_pem(key1)), secret) == (False, GUARD_MESSAGE)


def test_self_renewal_may_change_the_key(
    key1: ec.EllipticCurvePrivateKey, key2: ec.EllipticCurvePrivateKey
) -> None:
    secret = identity_secret("n1", parse_request(csr_obj(request_pem(key1))))
    renewal = csr_obj(request_pem(key2), requester=NODE1)
    assert auto_approval(renewal, secret) == (True, "AutoApproved")
    assert auto_approval(renewal, None) == (True, "AutoApproved")


def test_identity_secret_shape(key1: ec.EllipticCurvePrivateKey) -> None:
    secret = identity_secret("n1", parse_request(csr_obj(request_pem(key1))))
    assert secret["metadata"] == {"name": "n1.node-identity.edgek", "namespace": "kube-system"}
    assert secret["type"] == "edgek.io/node-identity"
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    stored = base64.b64decode(secret["data"]["public-key-sha256"]).decode()
    assert stored == spki_sha256(key1)


def test_requested_node(key1: ec.EllipticCurvePrivateKey) -> None:
    assert requested_node(csr_obj(request_pem(key1))) == "n1"
    assert requested_node(csr_obj(request_pem(key1, "system:node:edge-7.lan"))) == "edge-7.lan"
    assert requested_node(csr_obj(request_pem(key1, "alice"))) is None
    serving = csr_obj(request_pem(key1, dns=["n1"]), SERVING_SIGNER, SERVING_USAGES)
    assert requested_node(serving) is None
    assert requested_node({"spec": {"signerName": CLIENT_KUBELET_SIGNER}}) is None


# --- auto_approval: kubelet serving certificates ----------------------------------------


def serving_obj(
    key: ec.EllipticCurvePrivateKey,
    requester: tuple[str, list[str]] = NODE1,
    usages: Sequence[str] = SERVING_USAGES,
    **kwargs: Any,
) -> dict[str, Any]:
    kwargs.setdefault("dns", ["n1", "localhost"])
    kwargs.setdefault("ips", ["10.0.0.5", "127.0.0.1"])
    return csr_obj(request_pem(key, **kwargs), SERVING_SIGNER, usages, requester)


def test_serving_csr_from_its_node_is_approved(key1: ec.EllipticCurvePrivateKey) -> None:
    assert auto_approval(serving_obj(key1), None) == (True, "AutoApproved")
    no_encipherment = ["digital signature", "server auth"]
    assert auto_approval(serving_obj(key1, usages=no_encipherment), None) == (
        True,
        "AutoApproved",
    )
    assert auto_approval(serving_obj(key1, dns=[]), None) == (True, "AutoApproved")


@pytest.mark.parametrize(
    ("requester", "overrides"),
    [
        (NODE2, {}),  # another node asking for n1's identity
        (BOOTSTRAPPER, {}),
        (("system:node:n1", ["system:authenticated"]), {}),
        (NODE1, {"dns": ["n1", "kubernetes.default.svc"]}),
        (NODE1, {"emails": ["n1@example.com"]}),
        (NODE1, {"uris": ["spiffe://n1"]}),
        (NODE1, {"dns": [], "ips": []}),
        (NODE1, {"orgs": ("system:masters",)}),
        (NODE1, {"usages": ["digital signature", "client auth"]}),
        (NODE1, {"usages": ["digital signature", "server auth", "client auth"]}),
    ],
)
def test_other_serving_csrs_get_no_opinion(
    key1: ec.EllipticCurvePrivateKey,
    requester: tuple[str, list[str]],
    overrides: dict[str, Any],
) -> None:
    assert auto_approval(serving_obj(key1, requester, **overrides), None) is None


# --- sign -------------------------------------------------------------------------------


def approved(obj: dict[str, Any]) -> dict[str, Any]:
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    return obj


def do_sign(cas: tuple[CA, CA], obj: dict[str, Any], **kwargs: Any) -> x509.Certificate:
    client, server = cas
    pem = sign(obj, client_ca=client, server_ca=server, now=NOW, **kwargs)
    return x509.load_pem_x509_certificate(pem)


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_sign_kubelet_client(cas: tuple[CA, CA], key1: ec.EllipticCurvePrivateKey) -> None:
    (client_cert, _), _ = cas
    cert = do_sign(cas, approved(csr_obj(request_pem(key1))))
    cert.verify_directly_issued_by(client_cert)
    assert cert.issuer == client_cert.subject
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert cert.public_key() == key1.public_key()
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=365) - timedelta(minutes=5)


def test_sign_kube_apiserver_client(cas: tuple[CA, CA], key1: ec.EllipticCurvePrivateKey) -> None:
    (client_cert, _), _ = cas
    obj = approved(csr_obj(request_pem(key1, "alice", ["dev"]), CLIENT_SIGNER, ["client auth"]))
    cert = do_sign(cas, obj)
    cert.verify_directly_issued_by(client_cert)
    assert cert.subject.rfc4514_string() == "CN=alice,O=dev"
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.KeyUsage)


def test_sign_kubelet_serving(cas: tuple[CA, CA], key1: ec.EllipticCurvePrivateKey) -> None:
    _, (server_cert, _) = cas
    cert = do_sign(cas, approved(serving_obj(key1)))
    cert.verify_directly_issued_by(server_cert)
    assert cert.issuer == server_cert.subject
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("127.0.0.1"),
    ]


@pytest.mark.parametrize(
    ("expiration", "kwargs", "lifetime"),
    [
        (3600, {}, timedelta(hours=1)),  # short: the end is not backdated
        (60, {}, timedelta(minutes=10)),  # raised to the minimum
        (86400 * 2, {}, timedelta(days=2) - timedelta(minutes=5)),
        (86400 * 5000, {}, timedelta(days=365) - timedelta(minutes=5)),  # capped
        (None, {"default_days": 30}, timedelta(days=30) - timedelta(minutes=5)),
    ],
)
def test_sign_validity(
    cas: tuple[CA, CA],
    key1: ec.EllipticCurvePrivateKey,
    expiration: int | None,
    kwargs: dict[str, Any],
    lifetime: timedelta,
) -> None:
    obj = approved(csr_obj(request_pem(key1), expiration=expiration))
    cert = do_sign(cas, obj, **kwargs)
    assert cert.not_valid_after_utc == NOW + lifetime


def test_sign_never_outlives_the_ca(cas: tuple[CA, CA], key1: ec.EllipticCurvePrivateKey) -> None:
    (client_cert, _), _ = cas
    cert = do_sign(cas, approved(csr_obj(request_pem(key1))), default_days=20000)
    assert cert.not_valid_after_utc == client_cert.not_valid_after_utc
    client, server = cas
    with pytest.raises(CSRError, match="expired in the past"):
        sign(
            approved(csr_obj(request_pem(key1))),
            client_ca=client,
            server_ca=server,
            now=client_cert.not_valid_after_utc,
        )


@pytest.mark.parametrize(
    ("obj_args", "message"),
    [
        ({"signer": "example.com/custom"}, "unrecognized signerName: 'example.com/custom'"),
        ({"orgs": ("system:masters",)}, "subject organization is not system:nodes"),
        ({"cn": "alice"}, "subject common name does not begin with system:node:"),
        ({"dns": ("n1",)}, "DNS subjectAltNames are not allowed"),
        ({"ips": ("10.0.0.1",)}, "IP subjectAltNames are not allowed"),
        ({"emails": ("a@b.c",)}, "Email subjectAltNames are not allowed"),
        ({"uris": ("spiffe://x",)}, "URI subjectAltNames are not allowed"),
        ({"usages": ["client auth"]}, "usages did not match"),
        (
            {"signer": CLIENT_SIGNER, "usages": ["client auth", "server auth"]},
            "invalid usage for client certificate: server auth",
        ),
        (
            {"signer": CLIENT_SIGNER, "usages": ["digital signature"]},
            "missing required usage for client certificate: client auth",
        ),
        (
            {"signer": SERVING_SIGNER, "usages": SERVING_USAGES},
            "DNS or IP subjectAltName is required",
        ),
        (
            {"signer": SERVING_SIGNER, "usages": SERVING_USAGES, "dns": ("n1",), "uris": ("a:b",)},
            "URI subjectAltNames are not allowed",
        ),
        (
            {"signer": SERVING_SIGNER, "usages": ["server auth"], "dns": ("n1",)},
            "usages did not match",
        ),
    ],
)
def test_sign_refuses_requests_outside_the_signer_rules(
    cas: tuple[CA, CA], key1: ec.EllipticCurvePrivateKey, obj_args: dict[str, Any], message: str
) -> None:
    signer = obj_args.pop("signer", CLIENT_KUBELET_SIGNER)
    assert (signer in SIGNERS) is (signer != "example.com/custom")
    usages = obj_args.pop("usages", CLIENT_USAGES)
    obj = approved(csr_obj(request_pem(key1, **obj_args), signer, usages))
    with pytest.raises(CSRError, match=message):
        do_sign(cas, obj)


def test_sign_requires_approval(cas: tuple[CA, CA], key1: ec.EllipticCurvePrivateKey) -> None:
    pem = request_pem(key1)
    for conditions in ((), ("Denied",), ("Approved", "Denied"), ("Approved", "Failed")):
        with pytest.raises(CSRError, match="not approved"):
            do_sign(cas, csr_obj(pem, conditions=conditions))
