"""Parameter checks shared by privcity.dp: each error names the parameter and the expected form."""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def real(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, not bool")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}") from None


def positive(value: Any, name: str) -> float:
    v = real(value, name)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
    return v


def non_negative(value: Any, name: str) -> float:
    v = real(value, name)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return v


def open_unit(value: Any, name: str) -> float:
    v = real(value, name)
    if not 0 < v < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return v


def closed_unit(value: Any, name: str) -> float:
    v = real(value, name)
    if not 0 <= v <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def count(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def real_array(values: Any, name: str) -> np.ndarray:
    """values as a numpy array of a real dtype (bool, int or float), NaN and Inf refused."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr
