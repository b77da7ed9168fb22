"""Shared by the location generalisers and the risk measures: the checks of coordinates and
of the arguments both take, and the bit interleaving (Morton order) behind geohashes. Internal:
the public API is :mod:`privcity.anonymize.location`."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

# --- checks ---------------------------------------------------------------------------------------

def latlon(lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
    """lat and lon as float64 arrays of one shape, in range and without NaN; else ValueError."""
    try:
        la = np.asarray(lat, dtype=np.float64)
        lo = np.asarray(lon, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("lat and lon must be arrays of numbers (degrees)") from None
    if la.shape != lo.shape:
        raise ValueError(f"lat and lon must have the same shape, got {la.shape} and {lo.shape}")
    for v, name, lim in ((la, "lat", 90.0), (lo, "lon", 180.0)):
        if np.isnan(v).any():
            raise ValueError(f"{name} contains NaN")
        if v.size and not (np.abs(v) <= lim).all():
            raise ValueError(f"{name} must be in [-{lim:g}, {lim:g}] degrees")
    return la, lo


def positive_arg(value: Any, name: str) -> float:
    """``value`` as a finite float > 0; else ValueError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def precision_arg(precision: Any) -> int:
    """A geohash precision: an int in 1..12 (characters); else ValueError."""
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)) \
            or not 1 <= precision <= 12:
        raise ValueError(f"precision must be an int in 1..12, got {precision!r}")
    return int(precision)


# --- bit interleaving (Morton order; a geohash is the Morton code of lon, lat) --------------------

U = np.uint64


def spread(x: np.ndarray) -> np.ndarray:
    """Bits 0..31 of x moved to the even positions 0, 2, ..., 62."""
    x = x.astype(U) & U(0xFFFFFFFF)
    x = (x | (x << U(16))) & U(0x0000FFFF0000FFFF)
    x = (x | (x << U(8))) & U(0x00FF00FF00FF00FF)
    x = (x | (x << U(4))) & U(0x0F0F0F0F0F0F0F0F)
    x = (x | (x << U(2))) & U(0x3333333333333333)
    return (x | (x << U(1))) & U(0x5555555555555555)


def compact(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`spread`: the even bits of x packed into bits 0..31."""
    x = x.astype(U) & U(0x5555555555555555)
    x = (x | (x >> U(1))) & U(0x3333333333333333)
    x = (x | (x >> U(2))) & U(0x0F0F0F0F0F0F0F0F)
    x = (x | (x >> U(4))) & U(0x00FF00FF00FF00FF)
    x = (x | (x >> U(8))) & U(0x0000FFFF0000FFFF)
    return (x | (x >> U(16))) & U(0xFFFFFFFF)


def bisect_index(v: np.ndarray, lo: float, span: float, bits: int) -> np.ndarray:
    """Index of v's cell among 2**bits equal cells of [lo, lo + span], exactly as repeated
    bisection with ``v >= mid`` gives it (the float quotient can be one off; the cell edges are
    dyadic and exact, so one comparison with them corrects it). The top edge is in the top cell."""
    n = 1 << bits
    width = span / n
    idx = np.clip(np.floor((v - lo) / width), 0, n - 1).astype(np.int64)
    idx -= v < lo + idx * width
    idx += (v >= lo + (idx + 1) * width) & (idx < n - 1)
    return idx


def geohash_codes(la: np.ndarray, lo: np.ndarray, precision: int) -> np.ndarray:
    """The 5 * precision geohash bits of each point as uint64 (first character highest)."""
    nbits = 5 * precision
    lon_bits, lat_bits = (nbits + 1) // 2, nbits // 2
    ilon = spread(bisect_index(lo, -180.0, 360.0, lon_bits))
    ilat = spread(bisect_index(la, -90.0, 180.0, lat_bits))
    # The first bit is a longitude bit: longitude takes the odd positions when nbits is even.
    return (ilon << U(1)) | ilat if nbits % 2 == 0 else ilon | (ilat << U(1))
