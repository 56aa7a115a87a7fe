"""Server PKI: CAs, serving and client certificates, TLS context and peer identity."""

from server.pki.pki import PKI, ensure_pki, peer_identity, serving_sans, split_sans

__all__ = ["PKI", "ensure_pki", "peer_identity", "serving_sans", "split_sans"]
