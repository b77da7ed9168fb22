"""L2 clipping of updates, and adaptive clipping (Andrew et al. 2021) for federated rounds.

Clipping bounds each device's contribution, which is what gives DP-FedAvg its sensitivity: after
:func:`clip_l2` the computed L2 norm is at most ``clip``. float32 norms come from the native
kernel (``_core.l2_norm_f32``, summed in double in a fixed order), float64 ones from numpy.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from ..noise import SecureRNG
from . import _checks

__all__ = ["AdaptiveClipping", "clip_l2", "clip_l2_rows", "update_noise_multiplier"]

# Each retry shrinks the factor by a few ulps; two retries are the most ever seen needed.
_MAX_SHRINK = 64


def _float_array(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind in "biu" and not isinstance(x, np.ndarray):
        arr = arr.astype(np.float64)  # lists and scalars of numbers
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {arr.dtype}")
    return arr


def _norm(flat: np.ndarray) -> float:
    """L2 norm of a C-contiguous 1-D float array; inf or NaN iff it holds Inf or NaN."""
    if flat.dtype == np.float32:
        return _core.l2_norm_f32(flat)  # sums in double: cannot overflow for finite float32
    with np.errstate(over="ignore", invalid="ignore"):
        norm = float(np.linalg.norm(flat))
    if math.isinf(norm) and np.isfinite(flat).all():
        # sum of squares overflowed: rescale by the largest magnitude
        top = float(np.abs(flat).max())
        norm = top * float(np.linalg.norm(flat / top))
    return norm


def _clip_flat(flat: np.ndarray, clip: float, name: str) -> tuple[np.ndarray, float]:
    """(clipped copy, norm before clipping) of a C-contiguous 1-D float array."""
    norm = _norm(flat)
    if not math.isfinite(norm):
        raise ValueError(f"{name} contains NaN or Inf")
    if norm <= clip:
        return flat.copy(), norm
    factor = clip / norm
    shrink = 1.0 - 2.0 * float(np.finfo(flat.dtype).eps)
    for _ in range(_MAX_SHRINK):
        # Rounding each element to the dtype can leave the norm a few ulps above clip; the
        # sensitivity argument needs <= clip, so shrink the factor until it holds.
        out = flat * flat.dtype.type(factor)
        if _norm(out) <= clip:
            return out, norm
        factor *= shrink
    raise AssertionError("clipping did not converge")  # unreachable: each step shrinks the norm


def clip_l2(x: Any, clip: float) -> np.ndarray:
    """A copy of x scaled to L2 norm at most ``clip`` (unchanged if already within it).

    Parameters
    ----------
    x : array_like
        float32 or float64 array of any shape (lists become float64); the norm is taken over
        all elements. Not modified.
    clip : float
        Clip norm C, > 0 and finite.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as x; its computed L2 norm is <= clip.

    Raises
    ------
    ValueError
        x contains NaN or Inf; clip not > 0 or not finite.
    TypeError
        x is not float32 or float64.
    """
    clip = _checks.positive(clip, "clip")
    arr = _float_array(x, "x")
    out, _ = _clip_flat(np.ascontiguousarray(arr).reshape(-1), clip, "x")
    return out.reshape(arr.shape)


def clip_l2_rows(updates: Any, clip: float) -> tuple[np.ndarray, np.ndarray]:
    """Clips each row of a 2-D batch of updates to L2 norm at most ``clip``.

    Parameters
    ----------
    updates : array_like
        float32 or float64, shape (m, d). Not modified.
    clip : float
        Clip norm C, > 0 and finite.

    Returns
    -------
    clipped : numpy.ndarray
        Shape (m, d), the dtype of updates; every row's computed norm <= clip.
    norms : numpy.ndarray
        float64, shape (m,): each row's norm before clipping (what :class:`AdaptiveClipping`
        needs).

    Raises
    ------
    ValueError
        A row contains NaN or Inf (the message gives the first such row), updates not 2-D,
        clip not > 0 or not finite.
    """
    clip = _checks.positive(clip, "clip")
    arr = _float_array(updates, "updates")
    if arr.ndim != 2:
        raise ValueError(f"updates must be 2-D (one update per row), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    out = np.empty_like(arr)
    norms = np.empty(arr.shape[0], np.float64)
    for i in range(arr.shape[0]):
        out[i], norms[i] = _clip_flat(arr[i], clip, f"updates row {i}")
    return out, norms


def update_noise_multiplier(noise_multiplier: float, count_noise_std: float) -> float:
    """The noise multiplier left for the updates when the clipped count also spends privacy.

    Andrew et al. 2021 (Theorem 1): releasing the updates with noise multiplier z_delta and the
    clipped count with noise std sigma_b costs as much as the updates alone with
    z = (z_delta**-2 + (2 sigma_b)**-2) ** -0.5, so
    ``z_delta = (z**-2 - (2 sigma_b)**-2) ** -0.5``.

    Parameters
    ----------
    noise_multiplier : float
        z, the total noise multiplier the accountant is told about, > 0.
    count_noise_std : float
        sigma_b, std of the noise on the clipped count, > 0.

    Returns
    -------
    float
        z_delta > z.

    Raises
    ------
    ValueError
        z**-2 <= (2 sigma_b)**-2 (the count alone would spend the budget: raise sigma_b).
    """
    z = _checks.positive(noise_multiplier, "noise_multiplier")
    sigma_b = _checks.positive(count_noise_std, "count_noise_std")
    rest = z**-2 - (2.0 * sigma_b) ** -2
    if not rest > 0:
        raise ValueError(f"count_noise_std={sigma_b!r} is too small for noise_multiplier={z!r}: "
                         "it must be > noise_multiplier / 2")
    return rest**-0.5


class AdaptiveClipping:
    """Clip norm that tracks a quantile of the update norms (Andrew et al. 2021, "Differentially
    Private Learning with Adaptive Clipping").

    Each round, b = (number of updates with norm <= C + N(0, sigma_b^2)) / m, and
    C <- C * exp(-learning_rate * (b - target_quantile)) (geometric update).

    Parameters
    ----------
    initial_clip : float
        Starting clip norm C, > 0 and finite.
    target_quantile : float
        Fraction of updates that should end up unclipped, in [0, 1] (default 0.5).
    learning_rate : float
        Geometric learning rate eta, > 0 and finite (default 0.2, the paper's choice).
    count_noise_std : float
        sigma_b, std of the Gaussian noise on the clipped count, >= 0. The paper suggests
        about m / 20 for m devices per round. 0 makes the count non-private (simulations only).
    rng : SecureRNG, optional
        Noise source; default a fresh OS-keyed :class:`privcity.noise.SecureRNG`.

    Notes
    -----
    The clipped count spends privacy too; tell the accountant the total noise multiplier z and
    noise the updates with :meth:`noise_multiplier_for_updates` (z) instead of z.
    """

    __slots__ = ("_clip", "_target", "_lr", "_sigma_b", "_rng", "_rounds")

    def __init__(self, *, initial_clip: float, target_quantile: float = 0.5,
                 learning_rate: float = 0.2, count_noise_std: float,
                 rng: SecureRNG | None = None) -> None:
        self._clip = _checks.positive(initial_clip, "initial_clip")
        self._target = _checks.closed_unit(target_quantile, "target_quantile")
        self._lr = _checks.positive(learning_rate, "learning_rate")
        self._sigma_b = _checks.non_negative(count_noise_std, "count_noise_std")
        if rng is None:
            rng = SecureRNG()
        elif not isinstance(rng, SecureRNG):
            raise TypeError(f"rng must be a privcity.noise.SecureRNG or None, not {type(rng).__name__}")
        self._rng = rng
        self._rounds = 0

    @property
    def clip(self) -> float:
        """The current clip norm C: clip this round's updates to it."""
        return self._clip

    @property
    def target_quantile(self) -> float:
        return self._target

    @property
    def learning_rate(self) -> float:
        return self._lr

    @property
    def count_noise_std(self) -> float:
        return self._sigma_b

    @property
    def rounds(self) -> int:
        """Number of updates applied."""
        return self._rounds

    def __repr__(self) -> str:
        seeded = ", rng seeded: reproducible, NOT for production" if self._rng.seeded else ""
        return (f"AdaptiveClipping(clip={self._clip!r}, target_quantile={self._target!r}, "
                f"learning_rate={self._lr!r}, count_noise_std={self._sigma_b!r}{seeded})")

    def noise_multiplier_for_updates(self, noise_multiplier: float) -> float:
        """z_delta = (z**-2 - (2 sigma_b)**-2) ** -0.5: see :func:`update_noise_multiplier`."""
        return update_noise_multiplier(noise_multiplier, self._sigma_b)

    def update_from_count(self, clipped_count: int, *, cohort_size: int, expected_count: float) -> float:
        """Adapts the clip from the number of updates whose norm was <= clip (as devices report
        it, e.g. through secure aggregation), and returns the new clip.

        Parameters
        ----------
        clipped_count : int
            Number of this round's updates with norm <= :attr:`clip`, >= 0.
        cohort_size : int
            Number of updates this round (>= clipped_count).
        expected_count : float
            m, the denominator: the expected cohort size under Poisson sampling (a fixed
            denominator keeps the sensitivity of b at 1 / m), > 0.

        Notes
        -----
        As in Andrew et al. (and TF-Privacy), the count is centred: each device contributes
        b_i - 1/2, so adding or removing one device moves the sum by 1/2 and the noise of
        standard deviation sigma_b has the noise multiplier 2 sigma_b that
        :func:`update_noise_multiplier` assumes. It is released with exact integer noise:
        sum(2 b_i - 1) (sensitivity 1) plus a discrete Gaussian of parameter 2 sigma_b, halved.
        """
        count = _checks.count(clipped_count, "clipped_count")
        total = _checks.count(cohort_size, "cohort_size")
        if count > total:
            raise ValueError("clipped_count must be <= cohort_size")
        m = _checks.positive(expected_count, "expected_count")
        # The new clip is effectively published: exact integer noise, never a float sample.
        centred2 = 2 * count - total  # sum of (2 b_i - 1)
        noise = int(self._rng.discrete_gaussian(1, 2 * self._sigma_b)[0]) if self._sigma_b > 0 else 0
        b = (centred2 + noise) / (2 * m) + 0.5
        self._clip *= math.exp(-self._lr * (b - self._target))
        self._rounds += 1
        return self._clip

    def update(self, norms: Any, *, expected_count: float | None = None) -> float:
        """Adapts the clip from the norms of this round's unclipped updates; returns the new clip.

        Parameters
        ----------
        norms : array_like
            L2 norms of the updates before clipping (e.g. from :func:`clip_l2_rows`), finite,
            >= 0, at least one.
        expected_count : float, optional
            Denominator m; default ``len(norms)``. See :meth:`update_from_count`.
        """
        arr = _checks.real_array(norms, "norms").reshape(-1)
        if arr.size and arr.min() < 0:
            raise ValueError("norms must be >= 0")
        if expected_count is None:
            if arr.size == 0:
                raise ValueError("norms must not be empty (or give expected_count)")
            expected_count = arr.size
        return self.update_from_count(int(np.count_nonzero(arr <= self._clip)), cohort_size=arr.size,
                                      expected_count=expected_count)
