"""Argument checks shared by privcity.models: every error is a ValueError naming the argument and
the expected form."""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def count(value: Any, name: str, minimum: int) -> int:
    """value as an int >= minimum (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def real(value: Any, name: str, *, positive: bool) -> float:
    """value as a finite float, > 0 if positive else >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} and finite, got {value!r}")
    return v


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def int_vector(values: Any, name: str) -> np.ndarray:
    """values as a 1-D int64 array (empty allowed); bools, floats and other kinds refused."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of ints, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold ints, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds values beyond the int64 range")
    return arr.astype(np.int64, copy=False)


def seeds(values: Any, n: int) -> list[int]:
    """One non-negative int seed per device, as Python ints for np.random.default_rng."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"seeds must be a 1-D sequence with one seed per device ({n}), got shape {arr.shape}")
    if n and arr.dtype.kind not in "iu":
        raise ValueError(f"seeds must hold ints >= 0, got dtype {arr.dtype}")
    out = [int(s) for s in arr]
    if any(s < 0 for s in out):
        raise ValueError("seeds must hold ints >= 0, got a negative seed")
    return out
