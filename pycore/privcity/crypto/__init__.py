"""Encryption: AES-256-GCM on the native core (with `cryptography` as the fallback), the city
PKI (Ed25519 CA, certificates, CRLs), X25519 + HKDF key agreement, and sealed envelopes (v1,
specified in docs/wire-format.md)."""
from __future__ import annotations

from .aead import AES256GCM as AES256GCM
from .agreement import KeyRing as KeyRing
from .agreement import derive_key as derive_key
from .envelope import EnvelopeError as EnvelopeError
from .envelope import EnvelopeReceiver as EnvelopeReceiver
from .envelope import EnvelopeSender as EnvelopeSender
from .envelope import OpenedEnvelope as OpenedEnvelope
from .pki import CertificateAuthority as CertificateAuthority
from .pki import CertificateError as CertificateError
from .pki import IdentityKeys as IdentityKeys
from .pki import VerifiedCertificate as VerifiedCertificate
from .pki import verify_certificate as verify_certificate

__all__ = [
    "AES256GCM",
    "CertificateAuthority",
    "CertificateError",
    "EnvelopeError",
    "EnvelopeReceiver",
    "EnvelopeSender",
    "IdentityKeys",
    "KeyRing",
    "OpenedEnvelope",
    "VerifiedCertificate",
    "derive_key",
    "verify_certificate",
]
