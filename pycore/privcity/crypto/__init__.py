"""Encryption: AES-256-GCM on the native core, with `cryptography` as the fallback."""
from __future__ import annotations

from .aead import AES256GCM as AES256GCM

__all__ = ["AES256GCM"]
