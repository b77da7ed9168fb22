"""Checks of a batch of updates, row by row: a bad row is named with its reason and left out alone,
the good rows go to the kernels without a copy where they already are float32 and C-contiguous."""
from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _core
from ..errors import InvalidUpdate

# Weights above this are refused: with w <= 2**850 and float32 values (< 2**128) every w * x is
# below 2**978, so a float64 sum of up to 2**45 accepted updates cannot overflow.
MAX_WEIGHT = 2.0**850

NON_FINITE = "holds NaN or Inf"
ON_INVALID = ("raise", "skip")

# Integer dtypes of the modular sums, and the unsigned dtype of the kernel that sums each.
_MODULAR = {np.dtype(np.uint32): np.uint32, np.dtype(np.int32): np.uint32,
            np.dtype(np.uint64): np.uint64, np.dtype(np.int64): np.uint64}


def threads_arg(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int, not {type(threads).__name__}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: one per available core), got {threads}")
    return int(threads)


def on_invalid_arg(on_invalid: Any) -> str:
    if on_invalid not in ON_INVALID:
        raise ValueError(f'on_invalid must be "raise" or "skip", got {on_invalid!r}')
    return on_invalid


def count_arg(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def weight_problem(w: Any) -> str | None:
    """Why a weight is refused (None if it is a finite real in [0, MAX_WEIGHT])."""
    if isinstance(w, (bool, np.bool_)):
        return "has a bool weight"
    if isinstance(w, (str, bytes)) or (isinstance(w, np.ndarray) and w.ndim != 0):
        return f"has a weight that is not a real number ({type(w).__name__})"
    try:
        v = float(w)
    except (TypeError, ValueError):
        return f"has a weight that is not a real number ({type(w).__name__})"
    if math.isnan(v) or v < 0 or v > MAX_WEIGHT:
        return f"has weight {v!r} (must be finite, >= 0 and <= 2**850)"
    return None


def invalid_error(reasons: Mapping[int, str], k: int) -> InvalidUpdate:
    """InvalidUpdate naming every rejected row (the first few in the message)."""
    idx = sorted(reasons)
    shown = "; ".join(f"update {i} {reasons[i]}" for i in idx[:5])
    more = f"; and {len(idx) - 5} more" if len(idx) > 5 else ""
    return InvalidUpdate(f"{len(idx)} of {k} updates rejected: {shown}{more}", idx,
                         {i: reasons[i] for i in idx})


def _plurality(values: Iterable[Any], what: str, keyword: str) -> Any:
    counts = collections.Counter(values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        raise ValueError(f"updates disagree on {what} and none is the most common "
                         f"({', '.join(str(v) for v, _ in counts[:4])}); pass {keyword}=")
    return counts[0][0] if counts else None


@dataclass
class Rows:
    """The rows of a batch that are still accepted, ready for a kernel.

    ``data`` is either the caller's 2-D array (every row accepted) or a list of 1-D rows;
    ``index[i]`` is the position in the caller's batch of the i-th accepted row. ``reasons``
    holds every rejected row with its reason.
    """

    k: int
    dim: int
    data: np.ndarray | list[np.ndarray]
    index: np.ndarray
    reasons: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    def row(self, i: int) -> np.ndarray:
        return self.data[i]

    def reject(self, keep: np.ndarray, reasons: Iterable[str] | str) -> None:
        """Drops the accepted rows where ``keep`` is False, with their reason(s)."""
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return
        drop = np.flatnonzero(~keep)
        if isinstance(reasons, str):
            reasons = [reasons] * len(drop)
        for pos, why in zip(drop, reasons):
            self.reasons[int(self.index[pos])] = why
        self.data = [self.data[int(i)] for i in np.flatnonzero(keep)]
        self.index = self.index[keep]

    def settle(self, on_invalid: str) -> None:
        """Raises InvalidUpdate for the rejected rows under on_invalid="raise"."""
        if self.reasons and on_invalid == "raise":
            raise invalid_error(self.reasons, self.k)

    def require(self, minimum: int, what: str) -> None:
        if len(self) < minimum:
            raise ValueError(f"{what} needs at least {minimum} valid update(s); "
                             f"{len(self)} of {self.k} were accepted")


def _as_list(updates: Any) -> list[Any]:
    if isinstance(updates, (str, bytes)) or not isinstance(updates, Iterable):
        raise TypeError("updates must be a 2-D numpy array or a sequence of 1-D arrays, "
                        f"not {type(updates).__name__}")
    return list(updates)


def float_rows(updates: Any, dim: int | None) -> Rows:
    """Structural checks of float updates (1-D, a float dtype, the expected length).

    float32 C-contiguous rows are used as they are; other float dtypes (float64, float16) and
    non-contiguous rows are converted to float32 copies (float64 values beyond float32's range
    become Inf and the row is then rejected as non-finite). Non-float rows are rejected.
    ``dim=None`` takes the length most rows share.
    """
    if dim is not None:
        dim = count_arg(dim, "dim", 1)
    if isinstance(updates, np.ndarray):
        if updates.ndim != 2:
            raise ValueError("updates must be 2-D (updates x parameters) or a sequence of 1-D "
                             f"arrays, got an array of shape {updates.shape}")
        k, d = updates.shape
        index = np.arange(k)
        if dim is None:
            dim = d
        if updates.dtype.kind != "f":
            why = f"has dtype {updates.dtype} (expected a float dtype)"
            return Rows(k, dim, [], index[:0], {i: why for i in range(k)})
        if d != dim:
            why = f"has length {d}, expected {dim}"
            return Rows(k, dim, [], index[:0], {i: why for i in range(k)})
        if updates.dtype != np.float32 or not updates.flags.c_contiguous:
            with np.errstate(over="ignore"):
                updates = np.ascontiguousarray(updates, dtype=np.float32)
        return Rows(k, dim, updates, index)

    items = _as_list(updates)
    reasons: dict[int, str] = {}
    arrays: list[np.ndarray | None] = []
    for i, item in enumerate(items):
        arr: np.ndarray | None = None
        try:
            arr = item if isinstance(item, np.ndarray) else np.asarray(item)
        except (TypeError, ValueError):
            reasons[i] = f"is not an array ({type(item).__name__})"
        if arr is not None and arr.ndim != 1:
            reasons[i] = f"has shape {arr.shape} (expected 1-D)"
            arr = None
        elif arr is not None and arr.dtype.kind != "f":
            reasons[i] = f"has dtype {arr.dtype} (expected a float dtype)"
            arr = None
        arrays.append(arr)
    if dim is None:
        dim = _plurality((a.shape[0] for a in arrays if a is not None and a.shape[0]),
                         "length", "dim") or 0
    rows: list[np.ndarray] = []
    index: list[int] = []
    for i, arr in enumerate(arrays):
        if arr is None:
            continue
        if arr.shape[0] != dim:
            reasons[i] = f"has length {arr.shape[0]}, expected {dim}"
            continue
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            with np.errstate(over="ignore"):
                arr = np.ascontiguousarray(arr, dtype=np.float32)
        rows.append(arr)
        index.append(i)
    return Rows(len(items), dim, rows, np.asarray(index, dtype=np.intp), reasons)


def integer_rows(updates: Any, dim: int | None, dtype: Any) -> tuple[Rows, np.dtype]:
    """Structural checks of integer updates for the modular sums: 1-D, the batch's dtype (one of
    uint32, int32, uint64, int64; ``dtype=None`` takes the 2-D array's dtype or the dtype most
    rows share) and the expected length. Rows are viewed as unsigned, never converted."""
    if dim is not None:
        dim = count_arg(dim, "dim", 1)
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in _MODULAR:
            raise TypeError(f"dtype must be uint32, int32, uint64 or int64, got {dtype}")
    if isinstance(updates, np.ndarray):
        if updates.ndim != 2:
            raise ValueError("updates must be 2-D (updates x parameters) or a sequence of 1-D "
                             f"arrays, got an array of shape {updates.shape}")
        k, d = updates.shape
        index = np.arange(k)
        if dtype is None:
            dtype = updates.dtype
            if dtype not in _MODULAR:
                raise TypeError(f"modular sums take uint32, int32, uint64 or int64, got {dtype}")
        if dim is None:
            dim = d
        why = (f"has dtype {updates.dtype}, expected {dtype}" if updates.dtype != dtype else
               f"has length {d}, expected {dim}" if d != dim else None)
        if why is not None:
            return Rows(k, dim, [], index[:0], {i: why for i in range(k)}), dtype
        return Rows(k, dim, np.ascontiguousarray(updates).view(_MODULAR[dtype]), index), dtype
    items = _as_list(updates)
    reasons: dict[int, str] = {}
    arrays: list[np.ndarray | None] = []
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            reasons[i] = f"is not a numpy array ({type(item).__name__})"
            arrays.append(None)
        elif item.ndim != 1:
            reasons[i] = f"has shape {item.shape} (expected 1-D)"
            arrays.append(None)
        else:
            arrays.append(item)
    if dtype is None:
        dtype = _plurality((a.dtype for a in arrays if a is not None and a.dtype in _MODULAR),
                           "dtype", "dtype")
        if dtype is None:
            dtype = np.dtype(np.uint64)
    if dim is None:
        dim = _plurality((a.shape[0] for a in arrays if a is not None and a.dtype == dtype
                          and a.shape[0]), "length", "dim") or 0
    unsigned = _MODULAR[dtype]
    rows: list[np.ndarray] = []
    index: list[int] = []
    for i, arr in enumerate(arrays):
        if arr is None:
            continue
        if arr.dtype != dtype:
            reasons[i] = f"has dtype {arr.dtype}, expected {dtype}"
        elif arr.shape[0] != dim:
            reasons[i] = f"has length {arr.shape[0]}, expected {dim}"
        else:
            rows.append(np.ascontiguousarray(arr).view(unsigned))
            index.append(i)
    return Rows(len(items), dim, rows, np.asarray(index, dtype=np.intp), reasons), dtype


def reject_non_finite(rows: Rows, threads: int) -> np.ndarray:
    """Drops rows holding NaN or Inf; returns the L2 norms (float64) of the rows kept.

    One read of the rows by the norm kernel, whose norm is non-finite exactly for such rows
    (float32 squares summed in float64 cannot overflow).
    """
    if not len(rows):
        return np.empty(0)
    norms = _core.l2_norms_f32(rows.data, threads)
    finite = np.isfinite(norms)
    rows.reject(finite, NON_FINITE)
    return norms[finite]
