"""What a batch aggregator returns when asked for a report (``report=True``)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["AggregateResult"]


@dataclass(frozen=True)
class AggregateResult:
    """The aggregate of a batch, with which updates went into it and why the others did not.

    Attributes
    ----------
    value : numpy.ndarray
        What the function returns without ``report=True`` (the mean, median, ... as float32;
        for :func:`clip_norms` the clipped rows that were used, in order).
    used : tuple of int
        Positions (in the caller's batch) of the updates that were used, ascending.
    skipped : tuple of int
        Positions of the rejected updates, ascending (empty under ``on_invalid="raise"``).
    reasons : Mapping[int, str]
        Why each skipped update was rejected, e.g. ``"holds NaN or Inf"``.
    scores : numpy.ndarray or None
        :func:`krum` only: each update's Krum score (float64, one per update of the batch;
        NaN for skipped ones). Lower is better.
    selected : tuple of int or None
        :func:`krum` only: the positions of the chosen updates, best score first.
    norms : numpy.ndarray or None
        :func:`clip_norms` only: each used update's L2 norm before clipping (float64, aligned
        with ``used``).
    total_weight : float or None
        :func:`weighted_mean` only: the sum of the weights of the used updates.
    """

    value: np.ndarray
    used: tuple[int, ...]
    skipped: tuple[int, ...]
    reasons: Mapping[int, str]
    scores: np.ndarray | None = None
    selected: tuple[int, ...] | None = None
    norms: np.ndarray | None = None
    total_weight: float | None = None
