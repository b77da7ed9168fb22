"""Argument checks shared by privcity.attacks: every error is a ValueError naming the argument and
the expected form (the convention of privcity.models, whose objects these functions take)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..models import Model


def model(value: Any) -> Model:
    if not isinstance(value, Model):
        raise ValueError(f"model must be a privcity.models.Model, got {type(value).__name__}")
    return value


def count(value: Any, name: str, minimum: int) -> int:
    """value as an int >= minimum (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def positive(value: Any, name: str) -> float:
    """value as a finite float > 0 (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name} must be a finite real number > 0, got {value!r}")
    return float(value)


def vector(values: Any, name: str, length: int | None = None, *,
           allow_empty: bool = False) -> np.ndarray:
    """values as a finite 1-D float64 array (of ``length`` entries when given)."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length):
        want = "a 1-D array" if length is None else f"a 1-D array of {length} entries"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    return _finite(arr, name, allow_empty)


def matrix(values: Any, name: str, columns: int | None = None) -> np.ndarray:
    """values as a finite 2-D float64 array with at least one row (``columns`` wide if given)."""
    arr = np.asarray(values)
    if arr.ndim != 2 or (columns is not None and arr.shape[1] != columns):
        want = "a 2-D array" if columns is None else f"a 2-D array of {columns} columns"
        raise ValueError(f"{name} must be {want} (one row each), got shape {arr.shape}")
    return _finite(arr, name, False)


def _finite(arr: np.ndarray, name: str, allow_empty: bool) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return out


def targets(model: Model, y: Any, n: int) -> np.ndarray:
    """y as float64 targets (regression) or int64 labels in [0, n_outputs) (classification),
    one per row (n)."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"y must be 1-D with one entry per row of X ({n}), got shape {arr.shape}")
    if model.task_type == "regression":
        return _finite(arr, "y", False)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class labels, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= model.n_outputs:
        raise ValueError(f"y must hold class labels in [0, {model.n_outputs}), got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def fraction(value: Any, name: str) -> float:
    """value as a float in [0, 1] (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a real number in [0, 1], got {value!r}")
    return float(value)


def non_negative(value: Any, name: str) -> float:
    """value as a finite float >= 0 (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(float(value)) and float(value) >= 0):
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    return float(value)
