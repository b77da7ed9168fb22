"""Calibration: the noise a Gaussian or Laplace mechanism needs for a given (epsilon, delta).

The Gaussian mechanism is calibrated exactly by the analytic Gaussian mechanism (Balle and Wang
2018, "Improving the Gaussian Mechanism for Differential Privacy", Algorithm 1): the smallest
sigma whose privacy profile at epsilon is at most delta. The classical bound
sigma = sqrt(2 ln(1.25 / delta)) * D / epsilon only holds for epsilon < 1 and always asks for more
noise than this.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

from . import _checks

__all__ = ["analytic_gaussian_epsilon", "analytic_gaussian_sigma", "gaussian_delta", "laplace_scale"]

_SQRT2 = math.sqrt(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_phi_erfc(x: float) -> float:
    """log Phi(x) for the standard normal CDF from math.erfc, accurate in both tails."""
    if x > 0:
        return math.log1p(-0.5 * math.erfc(x / _SQRT2))
    if x > -37.0:
        return math.log(0.5 * math.erfc(-x / _SQRT2))
    # erfc underflows below here: the asymptotic series of the Mills ratio, whose truncation
    # error (the next term, 135135 / x**14) is below 1e-17 for x <= -37.
    r = 1.0 / (x * x)
    series = 1.0 - r * (1.0 - 3.0 * r * (1.0 - 5.0 * r * (1.0 - 7.0 * r * (1.0 - 9.0 * r * (1.0 - 11.0 * r)))))
    return -0.5 * x * x - math.log(-x) - _HALF_LOG_2PI + math.log(series)


@functools.lru_cache(maxsize=1)
def _log_phi_impl() -> Callable[[float], float]:
    # scipy's log_ndtr when it is importable (imported on first use: `import privcity` stays
    # light), else the erfc-based version above.
    try:
        from scipy.special import log_ndtr
    except ImportError:
        return _log_phi_erfc
    return lambda x: float(log_ndtr(x))


def _log_phi(x: float) -> float:
    return _log_phi_impl()(x)


def _delta_for_ratio(ratio: float, epsilon: float) -> float:
    """Privacy profile of the Gaussian mechanism with sigma / sensitivity = ratio:
    Phi(1/(2r) - eps r) - e^eps Phi(-1/(2r) - eps r), computed in logs (no overflow of e^eps,
    no cancellation when both terms are tiny)."""
    log_a = _log_phi(0.5 / ratio - epsilon * ratio)
    log_b = epsilon + _log_phi(-0.5 / ratio - epsilon * ratio)
    if log_b >= log_a:
        return 0.0
    return math.exp(log_a) * -math.expm1(log_b - log_a)


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The smallest delta for which the Gaussian mechanism is (epsilon, delta)-DP.

    The exact privacy profile (Balle and Wang 2018, Theorem 8) of adding N(0, sigma^2) to a
    query of L2 sensitivity ``sensitivity``:
    ``Phi(D/(2s) - eps s/D) - e^eps Phi(-D/(2s) - eps s/D)``.

    Parameters
    ----------
    sigma : float
        Noise standard deviation, > 0.
    epsilon : float
        >= 0.
    sensitivity : float
        L2 sensitivity D, > 0.

    Returns
    -------
    float
        delta in [0, 1].
    """
    sigma = _checks.positive(sigma, "sigma")
    sensitivity = _checks.positive(sensitivity, "sensitivity")
    epsilon = _checks.non_negative(epsilon, "epsilon")
    return _delta_for_ratio(sigma / sensitivity, epsilon)


def _bisect_smallest(ok: Callable[[float], bool], start: float) -> float:
    """The smallest x > 0 with ok(x), for ok monotone (False below a threshold, True above),
    to within one or two ulps; always returns a point where ok holds."""
    hi = start
    while not ok(hi):
        hi *= 2.0
        if math.isinf(hi):
            raise ValueError("calibration did not converge (parameters out of range)")
    lo = hi / 2.0
    while ok(lo):
        hi, lo = lo, lo / 2.0
        if lo == 0.0:
            return hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


# Calibration aims at delta * (1 - 1e-6): the margin covers the rounding of the profile's float
# evaluation (an mpmath check found it up to 2.5e-9 relative too optimistic), so the sigma (or
# epsilon) returned is never on the wrong side of the true one.
_DELTA_MARGIN = 1.0 - 1e-6


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest sigma making the Gaussian mechanism (epsilon, delta)-DP (analytic Gaussian
    mechanism, Balle and Wang 2018, Algorithm 1).

    Bisection on sigma over the exact privacy profile (:func:`gaussian_delta`, decreasing in
    sigma); the result satisfies ``gaussian_delta(sigma, epsilon, sensitivity) <= delta``.

    Parameters
    ----------
    epsilon : float
        > 0 and finite.
    delta : float
        In (0, 1).
    sensitivity : float
        L2 sensitivity D of the query, > 0 and finite.

    Returns
    -------
    float
        sigma, proportional to ``sensitivity``; for epsilon = 1, delta = 1e-5, D = 1 about 3.73
        (the classical bound gives 4.84).

    Raises
    ------
    ValueError
        A parameter out of range (the message names it).
    """
    epsilon = _checks.positive(epsilon, "epsilon")
    delta = _checks.open_unit(delta, "delta")
    sensitivity = _checks.positive(sensitivity, "sensitivity")

    target = delta * _DELTA_MARGIN

    def ok(sigma: float) -> bool:
        return _delta_for_ratio(sigma / sensitivity, epsilon) <= target

    return _bisect_smallest(ok, sensitivity)


def analytic_gaussian_epsilon(sigma: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest epsilon for which adding N(0, sigma^2) is (epsilon, delta)-DP (the inverse
    of :func:`analytic_gaussian_sigma`).

    Parameters
    ----------
    sigma : float
        Noise standard deviation, > 0 and finite.
    delta : float
        In (0, 1).
    sensitivity : float
        L2 sensitivity D, > 0 and finite.

    Returns
    -------
    float
        epsilon >= 0 (0.0 when the mechanism is already (0, delta)-DP).
    """
    sigma = _checks.positive(sigma, "sigma")
    delta = _checks.open_unit(delta, "delta")
    sensitivity = _checks.positive(sensitivity, "sensitivity")
    ratio = sigma / sensitivity
    target = delta * _DELTA_MARGIN
    if _delta_for_ratio(ratio, 0.0) <= target:
        return 0.0

    def ok(epsilon: float) -> bool:
        return _delta_for_ratio(ratio, epsilon) <= target

    return _bisect_smallest(ok, 1.0)


def laplace_scale(epsilon: float, sensitivity: float = 1.0) -> float:
    """The Laplace scale b = D / epsilon that makes a query of L1 sensitivity D epsilon-DP.

    Parameters
    ----------
    epsilon : float
        > 0 and finite.
    sensitivity : float
        L1 sensitivity D, > 0 and finite.
    """
    epsilon = _checks.positive(epsilon, "epsilon")
    sensitivity = _checks.positive(sensitivity, "sensitivity")
    return sensitivity / epsilon
