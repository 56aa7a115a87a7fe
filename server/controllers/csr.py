"""CertificateSigningRequests: auto-approve kubelet client and serving CSRs (with the node
identity guard), and sign approved CSRs of the signers edgek owns. Other CSRs wait for
``kubectl certificate approve|deny`` and for a signer that handles them.

Level-triggered: every change to a CSR enqueues it; ``reconcile`` reads the current object.
CSRs that need no work (signed, denied or failed) are passed over without loading
``cryptography``; it is imported, and the CAs read, when a CSR is first decided or signed.
"""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edgek.status import ApiError
from edgek.timefmt import format_time
from server.controllers.runtime import Controller, ControllerContext
from server.pki import PKI
from server.pki import csr_state as state
from server.storage.objectstore import WriteOptions

if TYPE_CHECKING:
    from server.pki import csr_crypto as csrs

MANAGER = "edgek-csr-controller"


class CSRController(Controller):
    """Approves and signs CSRs (upstream's "csrapproving" and "csrsigning" in one loop).
    It signs with the cluster CAs in ``config.tls_dir``."""

    name = "csrsigning"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cache = ctx.cache("certificates.k8s.io", "certificatesigningrequests")
        self.kind = self.cache.kind
        self.secrets = ctx.cache("", "secrets")
        self.pki = PKI.at(ctx.config.tls_dir)
        self._cas: tuple[csrs.CA, csrs.CA] | None = None  # (client, server), read when needed
        self.cache.on_change(
            lambda obj, deleted: None if deleted else self.queue.enqueue(obj["metadata"]["name"])
        )

    def start(self) -> None:
        """Look at every CSR (some may have come in while another server led)."""
        for obj in self.cache.items():
            self.queue.enqueue(obj["metadata"]["name"])
        super().start()

    async def reconcile(self, name: str) -> None:
        obj = await self.ctx.objects.try_get(self.kind, "", name)
        if obj is None or (obj.get("status") or {}).get("certificate"):
            return
        if state.is_denied_or_failed(obj):
            return
        if not state.is_approved(obj):
            await self._maybe_approve(obj)
            return
        signer = (obj.get("spec") or {}).get("signerName", "")
        if signer not in state.SIGNERS:
            return
        from server.pki import csr_crypto as csrs  # loads cryptography

        if self._cas is None:
            self._cas = (
                csrs.load_ca(self.pki.client_ca_cert, self.pki.client_ca_key),
                csrs.load_ca(self.pki.server_ca_cert, self.pki.server_ca_key),
            )
        client_ca, server_ca = self._cas
        try:
            pem = csrs.sign(obj, client_ca=client_ca, server_ca=server_ca, now=datetime.now(UTC))
        except csrs.CSRError as e:
            await self._set_status(name, "Failed", "SignerValidationFailure", str(e))
            return

        async def issue(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                return None
            current.setdefault("status", {})["certificate"] = base64.b64encode(pem).decode()
            return current

        await self.ctx.objects.modify(
            self.kind, "", name, issue, WriteOptions(field_manager=MANAGER, subresource="status")
        )

    async def _maybe_approve(self, obj: dict[str, Any]) -> None:
        from server.pki import csr_crypto as csrs  # loads cryptography

        node = csrs.requested_node(obj)
        secret = (
            self.secrets.get(state.IDENTITY_NAMESPACE, state.identity_secret_name(node))
            if node
            else None
        )
        decision = csrs.auto_approval(obj, secret)
        if decision is None:
            return
        approved, reason = decision
        if approved and node:
            await self._record_identity(csrs.identity_secret(node, csrs.parse_request(obj)), secret)
        await self._set_status(
            obj["metadata"]["name"],
            "Approved" if approved else "Denied",
            reason if approved else "NodeIdentityMismatch",
            "Auto approving kubelet certificate after node identity check." if approved else reason,
        )

    async def _record_identity(self, body: dict[str, Any], secret: dict[str, Any] | None) -> None:
        """Create the node identity Secret ``body``, or replace ``secret`` (its current
        version) with it."""
        secrets = self.secrets.kind
        opts = WriteOptions(field_manager=MANAGER)
        if secret is None:
            with contextlib.suppress(ApiError):
                await self.ctx.objects.create(secrets, state.IDENTITY_NAMESPACE, body, opts)
            return
        body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
        await self.ctx.objects.update(
            secrets, state.IDENTITY_NAMESPACE, body["metadata"]["name"], body, opts
        )

    async def _set_status(self, name: str, ctype: str, reason: str, message: str) -> None:
        now = format_time(datetime.now(UTC))

        async def add(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                return None
            conditions = current.setdefault("status", {}).setdefault("conditions", [])
            conditions.append(
                {
                    "type": ctype,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                }
            )
            return current

        await self.ctx.objects.modify(
            self.kind, "", name, add, WriteOptions(field_manager=MANAGER, subresource="status")
        )
