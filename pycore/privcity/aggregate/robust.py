"""Robust aggregators for rounds where a minority of devices may send poisoned updates: coordinate
median, trimmed mean, Krum / multi-Krum (Blanchard et al. 2017), and L2 norm clipping.

The sorting, distances and norms are native kernels; this module validates, selects and
orchestrates. Each function takes ``on_invalid``, ``report``, ``dim`` and ``threads`` as
:func:`privcity.aggregate.weighted_mean` does; updates with NaN or Inf (found by one read of the
norm kernel) or of the wrong length, shape or dtype are rejected alone.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from . import _validate as v
from .mean import _result

__all__ = ["clip_norms", "krum", "median", "trimmed_mean"]

# Each retry of the clipping scale shrinks it by a few ulps; one retry is the most ever needed.
_MAX_SHRINK = 64


def _finite_rows(updates: Any, dim: int | None, on_invalid: str, threads: int
                 ) -> tuple[v.Rows, np.ndarray]:
    on_invalid = v.on_invalid_arg(on_invalid)
    rows = v.float_rows(updates, dim)
    norms = v.reject_non_finite(rows, threads)
    rows.settle(on_invalid)
    return rows, norms


def median(updates: Any, *, on_invalid: str = "raise", report: bool = False,
           dim: int | None = None, threads: int = 0) -> Any:
    """Coordinate-wise median (numpy's convention: the mean of the two middle values for an even
    number of updates, here taken in float64 and rounded once).

    Parameters
    ----------
    updates : numpy.ndarray or sequence of numpy.ndarray
        2-D array or sequence of 1-D float arrays (float32 read in place; other float dtypes
        rounded to float32). At most 4096 updates.
    on_invalid, report, dim, threads
        As for :func:`privcity.aggregate.weighted_mean`.

    Returns
    -------
    numpy.ndarray or AggregateResult
        float32, length dim.

    Raises
    ------
    InvalidUpdate
        on_invalid="raise" and some updates are invalid.
    ValueError
        No update was accepted, or more than 4096 were given.
    """
    threads = v.threads_arg(threads)
    rows, _ = _finite_rows(updates, dim, on_invalid, threads)
    rows.require(1, "median")
    return _result(rows, _core.median_f32(rows.data, threads), report)


def trimmed_mean(updates: Any, beta: float, *, on_invalid: str = "raise", report: bool = False,
                 dim: int | None = None, threads: int = 0) -> Any:
    """Coordinate-wise trimmed mean: per coordinate, the int(beta * k) smallest and as many
    largest values of the k accepted updates are cut and the rest averaged in float64 (as
    ``scipy.stats.trim_mean(updates, beta, axis=0)``).

    Parameters
    ----------
    updates : numpy.ndarray or sequence of numpy.ndarray
        As for :func:`median` (at most 4096 updates).
    beta : float
        Fraction cut from each end, 0 <= beta < 0.5. To withstand f poisoned updates out of k,
        beta * k must be >= f.
    on_invalid, report, dim, threads
        As for :func:`privcity.aggregate.weighted_mean`; k counts the accepted updates only.

    Returns
    -------
    numpy.ndarray or AggregateResult
        float32, length dim.

    Raises
    ------
    InvalidUpdate
        on_invalid="raise" and some updates are invalid.
    ValueError
        beta outside [0, 0.5); no update was accepted, or more than 4096 were given.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise TypeError(f"beta must be a real number, not {type(beta).__name__}")
    if not 0 <= beta < 0.5:
        raise ValueError(f"beta must be in [0, 0.5), got {beta!r}")
    threads = v.threads_arg(threads)
    rows, _ = _finite_rows(updates, dim, on_invalid, threads)
    rows.require(1, "trimmed_mean")
    cut = int(beta * len(rows))  # as scipy.stats.trim_mean; < k / 2 since beta < 0.5
    return _result(rows, _core.trimmed_mean_f32(rows.data, cut, threads), report)


def krum(updates: Any, f: int, m: int = 1, *, on_invalid: str = "raise", report: bool = False,
         dim: int | None = None, threads: int = 0) -> Any:
    """Krum and multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent").

    Each accepted update i gets the score sum of its k - f - 2 smallest squared L2 distances to
    the other updates (k: accepted updates, f: the number of Byzantine ones tolerated). Krum
    returns the update with the lowest score; multi-Krum (m > 1) the plain mean of the m
    updates with the lowest scores. Ties go to the earlier update.

    Parameters
    ----------
    updates : numpy.ndarray or sequence of numpy.ndarray
        As for :func:`median`.
    f : int
        Byzantine updates tolerated, >= 0; needs k > 2f + 2.
    m : int
        Updates selected, 1 <= m <= k (default 1: Krum).
    on_invalid, report, dim, threads
        As for :func:`privcity.aggregate.weighted_mean`. ``report=True`` also gives ``scores``
        (one per update of the batch, NaN for skipped ones) and ``selected`` (best first).

    Returns
    -------
    numpy.ndarray or AggregateResult
        float32, length dim: a copy of the selected update (m = 1) or the mean of the selected
        ones, summed in float64 in batch order.

    Raises
    ------
    InvalidUpdate
        on_invalid="raise" and some updates are invalid.
    ValueError
        k <= 2f + 2 accepted updates, or m outside [1, k].
    """
    f = v.count_arg(f, "f", 0)
    m = v.count_arg(m, "m", 1)
    threads = v.threads_arg(threads)
    rows, _ = _finite_rows(updates, dim, on_invalid, threads)
    k = len(rows)
    if k <= 2 * f + 2:
        raise ValueError(f"krum with f={f} needs more than 2f + 2 = {2 * f + 2} valid updates; "
                         f"{k} of {rows.k} were accepted")
    if m > k:
        raise ValueError(f"m={m} exceeds the {k} accepted updates")
    dist = _core.pairwise_sqdist_f32(rows.data, threads)
    # Each row's distances to the others (the zero diagonal left out), ascending; the score
    # adds the k - f - 2 nearest in that order.
    others = np.sort(dist[~np.eye(k, dtype=bool)].reshape(k, k - 1), axis=1)
    scores = others[:, : k - f - 2].sum(axis=1)
    best = np.argsort(scores, kind="stable")[:m]
    if m == 1:
        value = np.array(rows.row(int(best[0])), dtype=np.float32, copy=True)
    else:
        chosen = [rows.row(int(i)) for i in np.sort(best)]
        value, _ = _core.weighted_mean_f32(chosen, np.ones(m), 1.0 / m, threads)
    all_scores = np.full(rows.k, np.nan)
    all_scores[rows.index] = scores
    return _result(rows, value, report, scores=all_scores,
                   selected=tuple(int(rows.index[i]) for i in best))


def clip_norms(updates: Any, max_norm: float, *, on_invalid: str = "raise", report: bool = False,
               dim: int | None = None, threads: int = 0) -> Any:
    """Scales every update whose L2 norm exceeds ``max_norm`` down to it (direction kept).

    Parameters
    ----------
    updates : numpy.ndarray or sequence of numpy.ndarray
        As for :func:`median`. Not modified.
    max_norm : float
        Norm bound C, > 0 and finite.
    on_invalid, report, dim, threads
        As for :func:`privcity.aggregate.weighted_mean`. ``report=True`` also gives ``norms``,
        each used update's norm before clipping.

    Returns
    -------
    numpy.ndarray or AggregateResult
        float32 array of shape (number of used updates, dim): the used updates in batch order,
        each with computed norm <= max_norm (rows already within it are copied unchanged).

    Raises
    ------
    InvalidUpdate
        on_invalid="raise" and some updates are invalid.
    ValueError
        max_norm not > 0 and finite; no update was accepted.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.integer,
                                                            np.floating)):
        raise TypeError(f"max_norm must be a real number, not {type(max_norm).__name__}")
    if not (max_norm > 0 and math.isfinite(max_norm)):
        raise ValueError(f"max_norm must be > 0 and finite, got {max_norm!r}")
    threads = v.threads_arg(threads)
    rows, norms = _finite_rows(updates, dim, on_invalid, threads)
    rows.require(1, "clip_norms")
    scale = np.where(norms > max_norm, max_norm / np.where(norms > 0, norms, 1.0), 1.0)
    out = np.empty((len(rows), rows.dim), np.float32)
    for i in range(len(rows)):
        np.multiply(rows.row(i), np.float32(scale[i]), out=out[i])
    # Rounding each element to float32 can leave a clipped norm a few ulps above max_norm; the
    # bound is what callers (norm-bounded aggregation, DP sensitivity) rely on, so shrink those.
    over = np.flatnonzero(norms > max_norm)
    shrink = 1.0 - 2.0 * float(np.finfo(np.float32).eps)
    for _ in range(_MAX_SHRINK):
        if not len(over):
            break
        now = _core.l2_norms_f32([out[i] for i in over], threads)
        over = over[now > max_norm]
        scale[over] *= shrink
        for i in over:
            np.multiply(rows.row(int(i)), np.float32(scale[i]), out=out[i])
    else:
        raise AssertionError("clipping did not converge")  # unreachable: each step shrinks
    return _result(rows, out, report, norms=norms)
