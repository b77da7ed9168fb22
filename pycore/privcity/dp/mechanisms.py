"""The Gaussian and Laplace mechanisms: calibrated, float-safe releases and a fast float path.

Two ways to add noise:

``release(values)``
    For anything published. The values are snapped to a power-of-two grid g chosen from the
    noise scale, the sensitivity and the number of values -- never from the data -- and exact
    integer noise (discrete Gaussian or discrete Laplace, from :class:`privcity.noise.SecureRNG`)
    is added in units of g, as Google's and OpenDP's secure noise do. Every output is an exact
    multiple of g, so the low-order bits of a float carry nothing about the input (the attack
    of Mironov 2012 on textbook floating-point Laplace noise; Jin et al. 2022 for the Gaussian).
``perturb(values)``
    Fast float noise for simulations and model updates, with the floating-point caveat.

Example
-------
>>> from privcity.dp import GaussianMechanism
>>> mech = GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=1.0)
>>> noisy = mech.release([3.0, 4.0])          # float64, on mech.last_release.grid
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..noise import SecureRNG
from ..noise.rng import discrete_gaussian_sigma2
from . import _checks
from .accountant import load_dp_accounting
from .calibration import analytic_gaussian_epsilon, analytic_gaussian_sigma, laplace_scale

__all__ = ["GaussianMechanism", "LaplaceMechanism", "ReleaseGrid"]

# Below 2**-1000 the products integer * g could be subnormal (inexact); above 2**960 they
# could overflow. Both are far outside any meaningful noise scale.
_MIN_EXPONENT = -1000
_MAX_EXPONENT = 960
_EXACT_INT = 2**53
_MAX_STEPS_EXP = 52
# Float rounding in computing the effective noise must never shrink it: scale up by far more
# than the few ulps the computation can lose.
_ROUND_UP = 1.0 + 2.0**-50
# Discrete Laplace noise of scale t exceeds 2**53 steps with probability exp(-2**53 / t):
# exp(-128) at this bound.
_MAX_LAPLACE_STEPS = 2.0**46


@dataclass(frozen=True)
class ReleaseGrid:
    """How ``release`` quantizes and noises ``size`` values (data-independent).

    Attributes
    ----------
    grid : float
        g = 2**exponent; every released value is an exact multiple of g.
    exponent : int
        log2 of the grid.
    size : int
        Number of values released together.
    effective_sensitivity : float
        Sensitivity after snapping to the grid: D + g sqrt(d) (L2, Gaussian) or D + g d (L1,
        Laplace).
    integer_noise : float
        Noise parameter in grid units given to the exact sampler: the discrete Gaussian's sigma
        (the sampler rounds sigma^2 up to num / 2**k, relative excess below 2**-30) or the
        discrete Laplace's scale.
    effective_noise : float
        ``integer_noise * grid``: the noise the release carries, in value units.
    limit : float
        The largest magnitude released as it is, (2**52 - 1) grid steps: values beyond it are
        clamped to it before the noise (see ``release``).
    """

    grid: float
    exponent: int
    size: int
    effective_sensitivity: float
    integer_noise: float
    effective_noise: float

    @property
    def limit(self) -> float:
        return math.ldexp(float(2**_MAX_STEPS_EXP - 1), self.exponent)


def _floor_log2(x: float) -> int:
    m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= m < 1: exact, unlike math.log2
    return e - 1


def _ceil_log2(x: float) -> int:
    m, e = math.frexp(x)
    return e - 1 if m == 0.5 else e


def _grid_exponent(noise: float, per_value: float, max_ratio: float) -> int:
    # Fine enough that rounding costs little: g <= noise * 2**-20 and g <= 2**-10 times the
    # per-value sensitivity; coarse enough that the integer noise stays below max_ratio.
    k = _floor_log2(min(noise * 2.0**-20, per_value * 2.0**-10))
    if noise / math.ldexp(1.0, k) > max_ratio:
        k = _ceil_log2(noise / max_ratio)
    if not _MIN_EXPONENT <= k <= _MAX_EXPONENT:
        raise ValueError(f"noise scale {noise!r} is out of the range release() supports")
    return k


def _resolve_rng(rng: Any) -> SecureRNG:
    if rng is None:
        return SecureRNG()
    if not isinstance(rng, SecureRNG):
        raise TypeError(f"rng must be a privcity.noise.SecureRNG or None, not {type(rng).__name__}")
    return rng


def _on_grid(values: Any, grid: ReleaseGrid, noise: np.ndarray) -> np.ndarray:
    """(round-half-even(values / g) + noise) * g, exactly, as float64 of the values' shape."""
    x = values.astype(np.float64)
    # Values beyond (2**52 - 1) grid steps are clamped, never refused: a refusal that depends on
    # the data would itself leak (two neighbouring inputs on either side of the limit would give
    # an output and an exception). Clamping is 1-Lipschitz, so the sensitivity is unchanged;
    # 2**52 rather than 2**53 leaves room for the noise.
    # The caller, who holds the data, is told (a local warning is not part of the release).
    limit = grid.limit
    over = int(np.count_nonzero(np.abs(x) > limit))
    if over:
        warnings.warn(f"{over} value(s) beyond +-{limit:.6g} (2**52 grid steps of {grid.grid:g})"
                      " clamped to it before the noise: rescale the values or release them with "
                      "a coarser grid (a larger sensitivity or noise)", RuntimeWarning,
                      stacklevel=3)
    x = np.clip(x, -limit, limit)
    snapped = np.rint(x / grid.grid)  # exact: division by a power of two, no overflow
    total = snapped.astype(np.int64).reshape(-1) + noise
    if total.size and not np.abs(total).max() < _EXACT_INT:
        raise ValueError("values plus noise leave the exactly representable range (2**53 grid steps)")
    return (total.astype(np.float64) * grid.grid).reshape(values.shape)


def _perturb_dtype(arr: np.ndarray) -> np.dtype:
    return arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)


class GaussianMechanism:
    """Adds Gaussian noise to a query of L2 sensitivity D.

    Built from ``epsilon`` and ``delta`` (sigma by the analytic Gaussian mechanism, Balle and
    Wang 2018, Algorithm 1: the smallest sigma whose exact privacy profile at epsilon is at
    most delta) or directly from ``sigma`` (then ``epsilon`` is derived from ``delta`` if one
    is given, else None).

    Parameters
    ----------
    epsilon : float, optional
        > 0; with ``delta``, and without ``sigma``.
    delta : float, optional
        In (0, 1).
    sigma : float, optional
        Noise standard deviation, > 0 and finite; instead of ``epsilon``.
    sensitivity : float
        L2 sensitivity D of the whole vector released at once (default 1), > 0 and finite.
    rng : SecureRNG, optional
        Noise source; default a fresh OS-keyed :class:`privcity.noise.SecureRNG`. A seeded one
        makes releases reproducible and is for simulations only.

    Attributes
    ----------
    last_release : ReleaseGrid or None
        Grid and effective noise of the last ``release``.

    Notes
    -----
    ``release`` snaps d values to the grid g = 2**k, k = floor(log2(min(sigma * 2**-20,
    2**-10 * D / sqrt(d)))), made coarser if sigma / g would exceed 2**28 (then
    k = ceil(log2(sigma / 2**28))). Snapping moves a vector by at most g sqrt(d) / 2 in L2, so
    neighbours end at most D + g sqrt(d) apart; the noise is inflated to
    sigma_eff = sigma (D + g sqrt(d)) / D, keeping sensitivity / noise = D / sigma, and drawn as
    exact discrete Gaussian noise of parameter sigma_eff / g (>= 2**20 grid steps). Since
    sigma_eff / g >= (sigma / D) sqrt(d) whatever g, a release whose (sigma / D) sqrt(d) is
    beyond the exact sampler (about 5e8) is refused with ValueError.

    The discrete Gaussian is accounted as the continuous Gaussian with the same
    sensitivity-to-noise ratio (:meth:`dp_event`): Canonne, Kamath and Steinke 2020 show it
    has the same zCDP, and its (epsilon, delta) curve agrees with the continuous one closely at
    sigma_int >= 2**20.
    """

    __slots__ = ("_sigma", "_epsilon", "_delta", "_sensitivity", "_rng", "last_release")

    def __init__(self, *, epsilon: float | None = None, delta: float | None = None,
                 sigma: float | None = None, sensitivity: float = 1.0,
                 rng: SecureRNG | None = None) -> None:
        self._sensitivity = _checks.positive(sensitivity, "sensitivity")
        if sigma is None:
            if epsilon is None or delta is None:
                raise ValueError("give epsilon and delta, or sigma")
            self._epsilon: float | None = _checks.positive(epsilon, "epsilon")
            self._delta: float | None = _checks.open_unit(delta, "delta")
            self._sigma = analytic_gaussian_sigma(self._epsilon, self._delta, self._sensitivity)
        else:
            if epsilon is not None:
                raise ValueError("give epsilon and delta, or sigma, not both")
            self._sigma = _checks.positive(sigma, "sigma")
            if delta is None:
                self._epsilon = self._delta = None
            else:
                self._delta = _checks.open_unit(delta, "delta")
                self._epsilon = analytic_gaussian_epsilon(self._sigma, self._delta, self._sensitivity)
        self._rng = _resolve_rng(rng)
        self.last_release: ReleaseGrid | None = None

    @property
    def sigma(self) -> float:
        """Noise standard deviation of ``perturb`` (``release`` inflates it slightly; see Notes)."""
        return self._sigma

    @property
    def epsilon(self) -> float | None:
        """epsilon of one release at ``delta`` (None if built from sigma without delta)."""
        return self._epsilon

    @property
    def delta(self) -> float | None:
        return self._delta

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity D."""
        return self._sensitivity

    @property
    def noise_multiplier(self) -> float:
        """sigma / sensitivity."""
        return self._sigma / self._sensitivity

    @property
    def rng(self) -> SecureRNG:
        return self._rng

    def __repr__(self) -> str:
        seeded = ", rng seeded: reproducible, NOT for production" if self._rng.seeded else ""
        return (f"GaussianMechanism(sigma={self._sigma!r}, sensitivity={self._sensitivity!r}, "
                f"epsilon={self._epsilon!r}, delta={self._delta!r}{seeded})")

    def dp_event(self) -> Any:
        """The dp_accounting event of one release or perturb: ``GaussianDpEvent(sigma / D)``."""
        return load_dp_accounting().dp_event.GaussianDpEvent(self.noise_multiplier)

    def grid(self, size: int) -> ReleaseGrid:
        """The grid and noise ``release`` uses for ``size`` values (depends on sigma, D and
        size only)."""
        d = max(_checks.count(size, "size"), 1)
        sigma, sens = self._sigma, self._sensitivity
        k = _grid_exponent(sigma, sens / math.sqrt(d), 2.0**28)
        g = math.ldexp(1.0, k)
        sens_eff = sens + g * math.sqrt(d)
        sigma_int = sigma * sens_eff / sens / g * _ROUND_UP
        try:
            discrete_gaussian_sigma2(sigma_int)
        except ValueError:
            # sigma_int >= sigma / g + (sigma / D) sqrt(d) for every g: no grid can help
            raise ValueError(f"sigma / sensitivity * sqrt(size) = {sigma / sens * math.sqrt(d):.3g} is too "
                             "large for a float-safe release (the exact sampler takes sigma up to about "
                             "5e8 grid steps); release fewer values at once") from None
        return ReleaseGrid(g, k, d, sens_eff, sigma_int, sigma_int * g)

    def release(self, values: Any) -> np.ndarray:
        """Float-safe release: values snapped to the grid plus exact discrete Gaussian noise.

        Parameters
        ----------
        values : array_like
            Real numbers, finite; released together (their L2 sensitivity is ``sensitivity``).

        Returns
        -------
        numpy.ndarray
            float64, the shape of ``values``; every element an exact multiple of
            ``self.last_release.grid``.

        Raises
        ------
        ValueError
            values contain NaN or Inf (values beyond ``last_release.limit``, 2**52 grid steps,
            are clamped to it with a RuntimeWarning, never refused: a refusal would leak);
            sigma / sensitivity * sqrt(size) beyond what the exact sampler takes (about 2**28).
        """
        arr = _checks.real_array(values, "values")
        info = self.grid(arr.size)
        noise = self._rng.discrete_gaussian(arr.size, info.integer_noise)
        out = _on_grid(arr, info, noise)
        self.last_release = info
        return out

    def perturb(self, values: Any) -> np.ndarray:
        """Fast path: values + N(0, sigma^2) in floating point, for simulations.

        The floating-point caveat (Mironov 2012): the low-order bits of a float sample, and
        of a float sum, can reveal the input, so this does not carry the DP guarantee against an
        adversary who reads exact floats. The float samples also have bounded support (|z| at
        most 6.7 sigma in float32, 8.5 sigma in float64), so they are not exactly Gaussian. Use
        :meth:`release` for anything published.

        Parameters
        ----------
        values : array_like
            Real numbers, finite.

        Returns
        -------
        numpy.ndarray
            A new array of the values' shape: float32 stays float32, float64 stays float64,
            other dtypes become float64.
        """
        arr = _checks.real_array(values, "values")
        out = np.array(arr, dtype=_perturb_dtype(arr), order="C", copy=True)
        self._rng.add_gaussian_(out, self._sigma)
        return out


class LaplaceMechanism:
    """Adds Laplace noise to a query of L1 sensitivity D: epsilon-DP with scale D / epsilon.

    Parameters
    ----------
    epsilon : float, optional
        > 0 and finite; or give ``scale``.
    scale : float, optional
        Laplace scale b, > 0 and finite; instead of ``epsilon`` (then epsilon = D / b).
    sensitivity : float
        L1 sensitivity D of the whole vector released at once (default 1), > 0 and finite.
    rng : SecureRNG, optional
        Noise source; default a fresh OS-keyed :class:`privcity.noise.SecureRNG`.

    Attributes
    ----------
    last_release : ReleaseGrid or None
        Grid and effective noise of the last ``release``.

    Notes
    -----
    ``release`` snaps d values to g = 2**k, k = floor(log2(min(b * 2**-20, 2**-10 * D / d))),
    made coarser if b / g would exceed 2**40, and adds exact discrete Laplace noise of scale
    b_eff / g with b_eff = b (D + g d) / D: snapping moves a vector by at most g d / 2 in L1, so
    the ratio D / b, hence epsilon, is kept. The discrete Laplace of scale t on integer shifts of
    L1 norm at most Delta is (Delta / t)-DP, exactly as the continuous one.
    """

    __slots__ = ("_scale", "_sensitivity", "_rng", "last_release")

    def __init__(self, *, epsilon: float | None = None, scale: float | None = None,
                 sensitivity: float = 1.0, rng: SecureRNG | None = None) -> None:
        self._sensitivity = _checks.positive(sensitivity, "sensitivity")
        if (epsilon is None) == (scale is None):
            raise ValueError("give exactly one of epsilon and scale")
        if scale is None:
            self._scale = laplace_scale(epsilon, self._sensitivity)  # type: ignore[arg-type]
        else:
            self._scale = _checks.positive(scale, "scale")
        self._rng = _resolve_rng(rng)
        self.last_release: ReleaseGrid | None = None

    @property
    def scale(self) -> float:
        """Laplace scale b of ``perturb`` (``release`` inflates it slightly; see Notes)."""
        return self._scale

    @property
    def epsilon(self) -> float:
        """D / scale."""
        return self._sensitivity / self._scale

    @property
    def delta(self) -> float:
        """0.0: the Laplace mechanism is pure DP."""
        return 0.0

    @property
    def sensitivity(self) -> float:
        """L1 sensitivity D."""
        return self._sensitivity

    @property
    def rng(self) -> SecureRNG:
        return self._rng

    def __repr__(self) -> str:
        seeded = ", rng seeded: reproducible, NOT for production" if self._rng.seeded else ""
        return (f"LaplaceMechanism(scale={self._scale!r}, sensitivity={self._sensitivity!r}, "
                f"epsilon={self.epsilon!r}{seeded})")

    def dp_event(self) -> Any:
        """The dp_accounting event of one release or perturb: ``LaplaceDpEvent(scale / D)``."""
        return load_dp_accounting().dp_event.LaplaceDpEvent(self._scale / self._sensitivity)

    def grid(self, size: int) -> ReleaseGrid:
        """The grid and noise ``release`` uses for ``size`` values (depends on scale, D and
        size only)."""
        d = max(_checks.count(size, "size"), 1)
        scale, sens = self._scale, self._sensitivity
        k = _grid_exponent(scale, sens / d, 2.0**40)
        g = math.ldexp(1.0, k)
        sens_eff = sens + g * d
        scale_int = scale * sens_eff / sens / g * _ROUND_UP
        if scale_int > _MAX_LAPLACE_STEPS:
            # scale_int >= (scale / D) d for every g: no grid can help
            raise ValueError(f"scale / sensitivity * size = {scale / sens * d:.3g} is too large for a "
                             "float-safe release (noise must stay far below 2**53 grid steps); "
                             "release fewer values at once")
        return ReleaseGrid(g, k, d, sens_eff, scale_int, scale_int * g)

    def release(self, values: Any) -> np.ndarray:
        """Float-safe release: values snapped to the grid plus exact discrete Laplace noise.

        Parameters
        ----------
        values : array_like
            Real numbers, finite; released together (their L1 sensitivity is ``sensitivity``).

        Returns
        -------
        numpy.ndarray
            float64, the shape of ``values``; every element an exact multiple of
            ``self.last_release.grid``.

        Raises
        ------
        ValueError
            values contain NaN or Inf (values beyond ``last_release.limit``, 2**52 grid steps,
            are clamped to it with a RuntimeWarning, never refused: a refusal would leak);
            scale / sensitivity * size beyond 2**46 (the noise could leave the exact range).
        """
        arr = _checks.real_array(values, "values")
        info = self.grid(arr.size)
        noise = self._rng.discrete_laplace(arr.size, info.integer_noise)
        out = _on_grid(arr, info, noise)
        self.last_release = info
        return out

    def perturb(self, values: Any) -> np.ndarray:
        """Fast path: values + Laplace(0, scale) in floating point, for simulations.

        The floating-point caveat (Mironov 2012): the low-order bits of a float Laplace sample
        can reveal the input, so this does not carry the DP guarantee against an adversary who
        reads exact floats; the float samples are also bounded (|x| at most 36 scale). Use
        :meth:`release` for anything published.

        Parameters
        ----------
        values : array_like
            Real numbers, finite.

        Returns
        -------
        numpy.ndarray
            A new array of the values' shape: float32 stays float32, float64 stays float64,
            other dtypes become float64.
        """
        arr = _checks.real_array(values, "values")
        out = np.array(arr, dtype=_perturb_dtype(arr), order="C", copy=True)
        noise = self._rng.laplace(out.size, self._scale)
        out += noise.reshape(out.shape).astype(out.dtype, copy=False)
        return out
