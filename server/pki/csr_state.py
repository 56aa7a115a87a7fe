"""What a CertificateSigningRequest object says without parsing its X.509 request: whether
it is decided (its conditions), the signers edgek owns and the node identity Secret names.

Kept apart from :mod:`server.pki.csr_crypto` (which needs ``cryptography``) so the CSR controller
can pass over CSRs that need no work (already signed, denied or failed) without loading it.
"""

from __future__ import annotations

from typing import Any

CLIENT_KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
#: The signers :func:`server.pki.csr_crypto.sign` handles. For these a CSRError from it means the
#: request breaks the signer's rules (upstream then adds a Failed condition, reason
#: SignerValidationFailure); CSRs for other signers are left pending.
SIGNERS = frozenset({CLIENT_KUBELET_SIGNER, CLIENT_SIGNER, SERVING_SIGNER})

IDENTITY_NAMESPACE = "kube-system"
IDENTITY_SECRET_TYPE = "edgek.io/node-identity"
IDENTITY_KEY = "public-key-sha256"


def is_approved(csr_obj: dict[str, Any]) -> bool:
    """True when the CSR has an Approved condition and no Denied one."""
    types = true_conditions(csr_obj)
    return "Approved" in types and "Denied" not in types


def is_denied_or_failed(csr_obj: dict[str, Any]) -> bool:
    """True when the CSR has a Denied or Failed condition."""
    return bool(true_conditions(csr_obj) & {"Denied", "Failed"})


def true_conditions(csr_obj: dict[str, Any]) -> set[str]:
    """The types of the CSR's conditions whose status is True (or unset)."""
    conditions = (csr_obj.get("status") or {}).get("conditions") or []
    return {
        str(c.get("type"))
        for c in conditions
        if isinstance(c, dict) and c.get("status", "True") in ("True", "")
    }


def identity_secret_name(node: str) -> str:
    """The name of the kube-system Secret recording node ``node``'s identity."""
    return f"{node}.node-identity.edgek"
