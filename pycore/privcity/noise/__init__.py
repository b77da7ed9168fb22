"""Noise from a CSPRNG: AES-256-CTR keystream, vectorised samplers, exact integer samplers."""
from __future__ import annotations

from .rng import SecureRNG as SecureRNG

__all__ = ["SecureRNG"]
