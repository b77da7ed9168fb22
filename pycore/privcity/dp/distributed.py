"""Distributed DP under secure aggregation: the distributed discrete Gaussian mechanism (Kairouz,
Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation", arXiv 2102.06387).

Each device adds its own share of the noise, so no server (aggregator, gateway) ever sees an
un-noised sum; secure aggregation hides each device's noisy vector.

Device (:func:`ddg_encode`, one native call): clip x to L2 norm C -> pad to d' and rotate by a
randomized Hadamard transform (signs from the round's public seed, the same on every device) ->
scale by 1/gamma -> conditional randomized rounding: stochastic rounding redrawn until the
squared norm is at most ``l2_bound_sq``, so one device's integer vector has L2 norm at most
Delta2 = sqrt(l2_bound_sq), always -> + its own exact discrete Gaussian share (sigma_local,
integer units, from :class:`privcity.noise.SecureRNG`) -> wrap into Z_{2^bits}. The words are
ready for secure aggregation's masks (uint32 for bits <= 32, else uint64).

Server (:func:`ddg_decode`): the modular sum of the survivors' words (secure aggregation gives
it) -> centred into [-2^(bits-1), 2^(bits-1)) -> times gamma -> inverse rotation -> float64 sum.

Privacy (:func:`ddg_epsilon`, :meth:`privcity.dp.Accountant.record_ddg_round`): RDP of the sum
of n shares, Proposition 14 of the paper, Poisson-subsampled by Zhu and Wang 2019 (Theorem 5),
composed over rounds and converted by dp-accounting. :func:`ddg_params` picks gamma and
sigma_local as the paper's Section 4 does.

The rotation pads to the smallest d' >= d of the form 2^k, 12 2^k or 20 2^k (Hadamard matrices
of order 12 and 20 by Paley's construction, Kronecker Sylvester's): 10,000 parameters take
10,240 noise samples instead of 16,384. Every Hadamard matrix flattens as well as Sylvester's:
each rotated coordinate is a Rademacher sum whose squared coefficients add to ||x||^2 / d'.

Example
-------
>>> import numpy as np
>>> from privcity.dp import ddg_params, ddg_encode, ddg_decode, Accountant
>>> from privcity.noise import SecureRNG
>>> p = ddg_params(dim=1000, clip=1.0, epsilon=3.0, delta=1e-5, sample_rate=0.01,
...                rounds=100, n_min=80, n_expected=120, bits=20)
>>> seed = bytes(32)                                   # the round's public seed
>>> words, norm = ddg_encode(np.ones(1000, np.float32), p, seed, SecureRNG())
>>> estimate = ddg_decode(words, p, seed)              # one device here; a SecAgg sum in practice
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import _core
from ..noise import SecureRNG
from ..noise.rng import discrete_gaussian_sigma2
from . import _checks
from .accountant import ddg_round_rdp, ddg_tau, load_dp_accounting

__all__ = ["DDGEncoding", "DDGParams", "ddg_decode", "ddg_encode", "ddg_encode_parts",
           "ddg_epsilon", "ddg_params", "ddg_rdp", "ddg_rotation_key", "rounded_l2_bound_sq"]

_ROTATION_SALT = b"privcity.dp.ddg rotation v1"
# Above these the integers of the device's kernel would leave exact double arithmetic (the
# kernel refuses (C/gamma + sqrt(d') + 1)^2 >= 2^52) or the sampler its fast range (t < 2^21).
# Finer grids gain nothing: the rounding's share of the sensitivity, sqrt(d') / (2 C/gamma), and
# of the error, 1 / (4 sigma^2), are already negligible there.
_MAX_SCALED_CLIP = 2.0 ** 24
_MAX_SIGMA = 2.0 ** 20


def grid_scaled_clip(padded_dim: int) -> float:
    """The finest grid the chooser takes, as C / gamma: max(2^16, 64 sqrt(d')), at most 2^24.
    Stochastic rounding adds about d'/4 to the squared norm (C/gamma)^2: at most 1/16384 of it
    here, so a finer grid buys nothing but larger integers."""
    return min(_MAX_SCALED_CLIP, max(2.0 ** 16, 64.0 * math.sqrt(padded_dim)))


def rounded_l2_bound_sq(scaled_clip: float, padded_dim: int, beta: float) -> int:
    """floor(Delta2^2), the paper's bound on the squared norm after conditional randomized
    rounding of a vector of norm ``scaled_clip`` (integer units) in ``padded_dim`` dimensions:
    min((c + sqrt(d))^2, c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2)) (Theorem 1). A draw of
    plain stochastic rounding exceeds it with probability at most beta."""
    c, d = float(scaled_clip), float(padded_dim)
    b1 = (c + math.sqrt(d)) ** 2
    b2 = c * c + d / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (c + math.sqrt(d) / 2.0)
    return int(math.floor(min(b1, b2)))


@dataclass(frozen=True)
class DDGParams:
    """Everything the devices, the server and the accountant need for one configuration.

    Parameters
    ----------
    dim : int
        Length of the device's vector (the model update).
    clip : float
        L2 clip norm C, in the update's units.
    gamma : float
        Grid step: the device rounds x / gamma to integers.
    sigma_local : float
        Parameter of each device's discrete Gaussian share, integer units. The sampler draws
        with sigma^2 rounded up to num / 2**k (``sigma2``; relative excess below 2**-30): the
        accountant's sigma_local is never more than the noise drawn.
    bits : int
        The ring Z_{2^bits}, 2..64 (uint32 words up to 32 bits, else uint64).
    n_min : int
        Fewest noise shares a released sum may hold (the secure-aggregation threshold).
    sample_rate : float
        Poisson rate at which devices take part (1.0: every device, every round).
    beta : float
        Conditional rounding's parameter in (0, 1): the bound is exceeded by a draw with
        probability at most beta (the paper's default exp(-0.5)).
    n_expected, k_stddevs, target_epsilon, delta, rounds
        How the parameters were chosen (:func:`ddg_params`); None when given by hand.

    Derived: ``padded_dim`` (d'), ``l2_bound_sq`` (enforced exactly on each device's integers),
    ``l2_bound`` (Delta2, its square root rounded up), ``l1_bound`` (Delta2 min(sqrt(d'),
    Delta2): |r_i| <= r_i^2 on integers), ``tau`` (Theorem 1's tau for n_min shares),
    ``sigma2`` (num, den), ``word_dtype``.
    """

    dim: int
    clip: float
    gamma: float
    sigma_local: float
    bits: int
    n_min: int
    sample_rate: float = 1.0
    beta: float = math.exp(-0.5)
    n_expected: int | None = None
    k_stddevs: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    rounds: int | None = None
    padded_dim: int = field(init=False)
    l2_bound_sq: int = field(init=False)
    l2_bound: float = field(init=False)
    l1_bound: float = field(init=False)
    tau: float = field(init=False)
    sigma2: tuple[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        dim = _checks.count(self.dim, "dim", minimum=1)
        padded = _core.ddg_padded_dim(dim)
        if padded == 0:
            raise ValueError(f"dim must be at most 2**31, got {dim}")
        clip = _checks.positive(self.clip, "clip")
        gamma = _checks.positive(self.gamma, "gamma")
        sigma = _checks.positive(self.sigma_local, "sigma_local")
        bits = _checks.count(self.bits, "bits", minimum=2)
        if bits > 64:
            raise ValueError(f"bits must be in [2, 64], got {bits}")
        n_min = _checks.count(self.n_min, "n_min", minimum=1)
        q = _checks.real(self.sample_rate, "sample_rate")
        if not 0 < q <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        beta = _checks.open_unit(self.beta, "beta")
        scaled = clip / gamma
        if (scaled + math.sqrt(padded) + 1.0) ** 2 >= 2.0 ** 52:
            raise ValueError(f"clip / gamma = {scaled:.6g} is too large for exact integers in "
                             f"{padded} dimensions: (clip/gamma + sqrt(padded_dim) + 1)**2 must be "
                             "below 2**52; take a larger gamma")
        l2_sq = rounded_l2_bound_sq(scaled, padded, beta)
        if l2_sq < scaled * scaled * (1 + 2.0 ** -40):  # the kernel's fallback needs the margin
            raise ValueError(f"beta={beta!r} leaves no room above (clip/gamma)^2 for rounding in "
                             f"{padded} dimensions; take a smaller beta")
        l2 = math.nextafter(math.sqrt(l2_sq), math.inf)  # never below the true square root
        for name, value in (("dim", dim), ("clip", clip), ("gamma", gamma), ("sigma_local", sigma),
                            ("bits", bits), ("n_min", n_min), ("sample_rate", q), ("beta", beta),
                            ("padded_dim", padded), ("l2_bound_sq", l2_sq), ("l2_bound", l2),
                            ("l1_bound", l2 * min(math.sqrt(padded), l2)),
                            ("tau", ddg_tau(sigma, n_min)),
                            ("sigma2", discrete_gaussian_sigma2(sigma))):
            object.__setattr__(self, name, value)

    @property
    def word_dtype(self) -> np.dtype:
        """uint32 for bits <= 32, else uint64: the words secure aggregation masks and sums."""
        return np.dtype(np.uint32 if self.bits <= 32 else np.uint64)

    def noise_multiplier(self, n: int | None = None) -> float:
        """sqrt(n) sigma_local / Delta2: the central noise of n shares over the sensitivity
        (n = n_min by default)."""
        n = self.n_min if n is None else n
        return math.sqrt(n) * self.sigma_local / self.l2_bound

    def describe(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (metrics.json)."""
        n = self.n_expected or self.n_min
        agg_std = math.sqrt((self.clip * n / self.gamma) ** 2 / self.padded_dim
                            + n * (0.25 + self.sigma_local ** 2))
        return {
            "mechanism": "distributed discrete Gaussian (Kairouz, Liu, Steinke 2021)",
            "dim": self.dim, "padded_dim": self.padded_dim, "clip": self.clip,
            "gamma": self.gamma, "scaled_clip": self.clip / self.gamma, "beta": self.beta,
            "l2_bound": self.l2_bound, "l2_bound_sq": self.l2_bound_sq, "l1_bound": self.l1_bound,
            "rounding_inflation": self.l2_bound * self.gamma / self.clip,
            "sigma_local": self.sigma_local, "sigma2_num_den": list(self.sigma2),
            "sigma_local_model_units": self.sigma_local * self.gamma,
            "bits": self.bits, "word": str(self.word_dtype), "n_min": self.n_min,
            "n_expected": self.n_expected, "sample_rate": self.sample_rate,
            "noise_multiplier_at_n_min": self.noise_multiplier(),
            "tau_at_n_min": self.tau,
            "k_stddevs": self.k_stddevs,
            "wrap_stddevs_at_n_expected": 2.0 ** self.bits / (2 * agg_std),
            "target_epsilon": self.target_epsilon, "delta": self.delta, "rounds": self.rounds,
        }


# --- accounting -------------------------------------------------------------------------------

def _orders() -> np.ndarray:
    # dp-accounting's default RDP orders: the ones privcity.dp.Accountant composes at
    return np.asarray(load_dp_accounting().rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, float)


def ddg_rdp(params: DDGParams, orders: Any = None, *, n: int | None = None,
            sampled: bool = True) -> np.ndarray:
    """RDP of one round at ``orders`` (dp-accounting's default orders if None) with ``n`` noise
    shares (n_min by default); ``sampled=False`` counts no amplification by sampling."""
    params = _check_params(params)
    n = params.n_min if n is None else _checks.count(n, "n", minimum=1)
    if not isinstance(sampled, bool):
        raise TypeError(f"sampled must be True or False, not {sampled!r}")
    return ddg_round_rdp(_orders() if orders is None else orders, l2_bound=params.l2_bound,
                         l1_bound=params.l1_bound, sigma=params.sigma_local,
                         n=n, dim=params.padded_dim,
                         q=params.sample_rate if sampled else 1.0, presence=sampled)


def ddg_epsilon(params: DDGParams, *, rounds: int, delta: float, n: int | None = None,
                sampled: bool = True) -> float:
    """Epsilon at ``delta`` of ``rounds`` rounds, each with ``n`` shares (n_min by default).

    ``sampled=True``: with Poisson amplification at params.sample_rate (against whoever sees
    only the released models). ``sampled=False``: none (against the servers, who see which
    devices took part).
    """
    rounds = _checks.count(rounds, "rounds", minimum=1)
    delta = _checks.open_unit(delta, "delta")
    orders = _orders()
    rdp = rounds * ddg_rdp(params, orders, n=n, sampled=sampled)
    return _epsilon(orders, rdp, delta)


def _epsilon(orders: np.ndarray, rdp: np.ndarray, delta: float) -> float:
    compute = load_dp_accounting().rdp.rdp_privacy_accountant.compute_epsilon
    return float(compute(orders, rdp, delta)[0])


# --- the chooser ------------------------------------------------------------------------------

def _bisect(f: Any, lo: float, hi: float, rel: float) -> float:
    """Smallest x in [lo, hi] (geometric bisection to relative width rel) with f(x) true, for
    f false at lo and true at hi."""
    while hi / lo > 1.0 + rel:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if f(mid) else (mid, hi)
    return hi


def ddg_params(*, dim: int, clip: float, epsilon: float, delta: float, sample_rate: float,
               rounds: int, n_min: int, n_expected: int, bits: int,
               beta: float = math.exp(-0.5), k_stddevs: float = 4.0) -> DDGParams:
    """gamma and sigma_local as the paper's analysis picks them (Section 4; the reference code's
    ddgauss_params), for ``rounds`` rounds at Poisson rate ``sample_rate`` to meet
    (``epsilon``, ``delta``) when only ``n_min`` noise shares reach each sum.

    sigma_local is the smallest (to 1e-7) that meets epsilon with n_min shares; gamma the
    smallest (finest grid) for which ``k_stddevs`` standard deviations of the sum of
    ``n_expected`` devices fit in Z_{2^bits}: 2 k sqrt(C^2 n^2 / (d' gamma^2) + n (1/4 +
    sigma^2)) <= 2^bits (aligned updates, the sum's norm n C), but no finer than
    C/gamma = max(2^16, 64 sqrt(d')) (:func:`grid_scaled_clip`: rounding then adds at most
    1/16384 to the squared sensitivity, and a finer grid only draws larger noise integers,
    which the exact sampler draws more slowly), nor than sigma_local = 2^20.

    Raises
    ------
    ValueError
        A parameter is out of range, or ``bits`` cannot hold ``n_expected`` noisy devices.
    """
    dim = _checks.count(dim, "dim", minimum=1)
    padded = _core.ddg_padded_dim(dim)
    if padded == 0:
        raise ValueError(f"dim must be at most 2**31, got {dim}")
    clip = _checks.positive(clip, "clip")
    epsilon = _checks.positive(epsilon, "epsilon")
    delta = _checks.open_unit(delta, "delta")
    q = _checks.real(sample_rate, "sample_rate")
    if not 0 < q <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    rounds = _checks.count(rounds, "rounds", minimum=1)
    n_min = _checks.count(n_min, "n_min", minimum=1)
    n_expected = _checks.count(n_expected, "n_expected", minimum=1)
    if n_expected < n_min:
        raise ValueError(f"n_expected ({n_expected}) must be >= n_min ({n_min})")
    bits = _checks.count(bits, "bits", minimum=2)
    if bits > 64:
        raise ValueError(f"bits must be in [2, 64], got {bits}")
    beta = _checks.open_unit(beta, "beta")
    k = _checks.positive(k_stddevs, "k_stddevs")
    orders = _orders()
    z = _gaussian_multiplier(orders, q, rounds, delta, epsilon)
    wrap = _Wrap(clip=clip, padded=padded, n=n_expected, k=k, bits=bits)
    gamma = _finest_grid(wrap, z, n_min, beta)
    for _ in range(100):  # gamma nudged up should the exact sigma no longer fit
        probe = DDGParams(dim=dim, clip=clip, gamma=gamma, sigma_local=1.0, bits=bits,
                          n_min=n_min, sample_rate=q, beta=beta)
        sigma = _smallest_sigma(probe, orders, rounds, delta, epsilon, z)
        if wrap.fits(gamma, sigma) and sigma <= _MAX_SIGMA:
            return DDGParams(dim=dim, clip=clip, gamma=gamma, sigma_local=sigma, bits=bits,
                             n_min=n_min, sample_rate=q, beta=beta, n_expected=n_expected,
                             k_stddevs=k, target_epsilon=epsilon, delta=delta, rounds=rounds)
        # sigma scales as 1/gamma: a coarser grid by the excess (the presence term of the
        # add-or-remove bound can push sigma past what z alone asked for)
        gamma *= max(1.001, 1.001 * sigma / _MAX_SIGMA)
    raise ValueError("could not fit the noise in the ring; raise bits")  # pragma: no cover


def _gaussian_multiplier(orders: np.ndarray, q: float, rounds: int, delta: float,
                         epsilon: float) -> float:
    """The multiplier z = sqrt(n) sigma / Delta2 that meets epsilon when tau = 0: the round is
    then a (Poisson-subsampled) Gaussian mechanism of multiplier z, under the same bound."""
    def eps_z(z: float) -> float:
        rdp = ddg_round_rdp(orders, l2_bound=1.0, l1_bound=1.0, sigma=z, n=1, dim=1, q=q)
        return _epsilon(orders, rounds * rdp, delta)

    if eps_z(1e4) > epsilon:
        raise ValueError(f"epsilon={epsilon!r} is out of reach: even a noise multiplier of 1e4 "
                         f"spends more over {rounds} rounds at delta={delta!r}")
    return _bisect(lambda z: eps_z(z) <= epsilon, 1e-3, 1e4, 1e-9)


@dataclass(frozen=True)
class _Wrap:
    """The ring's constraint: k standard deviations of a coordinate of the sum of n devices,
    2 k sqrt(C^2 n^2 / (d' gamma^2) + n (1/4 + sigma^2)), within 2^bits."""

    clip: float
    padded: int
    n: int
    k: float
    bits: int

    def fits(self, gamma: float, sigma: float) -> bool:
        var = (self.clip * self.n / gamma) ** 2 / self.padded + self.n * (0.25 + sigma ** 2)
        return 2.0 * self.k * math.sqrt(var) <= 2.0 ** self.bits


def _finest_grid(wrap: _Wrap, z: float, n_min: int, beta: float) -> float:
    """The smallest gamma that fits the ring with sigma = z Delta2(gamma) / sqrt(n_min), and
    never finer than the module's limits."""
    def sigma(g: float) -> float:
        return z * math.sqrt(rounded_l2_bound_sq(wrap.clip / g, wrap.padded, beta) / n_min)

    coarsest = wrap.clip * 1e12
    if not wrap.fits(coarsest, sigma(coarsest)):
        raise ValueError(
            f"bits={wrap.bits} is too small: {wrap.k:g} standard deviations of the noise of "
            f"{wrap.n} devices (sigma_local >= {sigma(coarsest):.4g} integer units even on the "
            f"coarsest grid) do not fit in 2**{wrap.bits}; raise bits, lower n_expected or "
            "k_stddevs, or loosen epsilon")
    finest = max(wrap.clip / grid_scaled_clip(wrap.padded),
                 _bisect(lambda g: sigma(g) <= _MAX_SIGMA, wrap.clip * 1e-12, coarsest, 1e-9))
    if wrap.fits(finest, sigma(finest)):
        return finest
    return _bisect(lambda g: wrap.fits(g, sigma(g)), finest, coarsest, 1e-9)


def _smallest_sigma(probe: DDGParams, orders: np.ndarray, rounds: int, delta: float,
                    epsilon: float, z: float) -> float:
    """The smallest sigma_local (to 1e-7) meeting epsilon with the full bound (tau and the L1
    term included) on probe's grid; at least z Delta2 / sqrt(n_min), the tau = 0 value."""
    def meets(sigma: float) -> bool:
        rdp = ddg_round_rdp(orders, l2_bound=probe.l2_bound, l1_bound=probe.l1_bound,
                            sigma=sigma, n=probe.n_min, dim=probe.padded_dim, q=probe.sample_rate,
                            presence=True)
        return _epsilon(orders, rounds * rdp, delta) <= epsilon

    # A device's own share leaves the sum with it (add-or-remove): that changes the sum's
    # variance by about 1/n_min in every coordinate whatever the noise, a floor on epsilon.
    floor = ddg_round_rdp(orders, l2_bound=0.0, l1_bound=0.0, sigma=1e6, n=probe.n_min,
                          dim=probe.padded_dim, q=probe.sample_rate, presence=True)
    if _epsilon(orders, rounds * floor, delta) >= epsilon * (1 - 1e-3):
        raise ValueError(
            f"epsilon={epsilon!r} is out of reach with n_min={probe.n_min} noise shares in "
            f"{probe.padded_dim} dimensions over {rounds} rounds: whether a device's own share "
            "is in the sum shows in its variance, by about 1/n_min per coordinate, however much "
            "noise there is; raise n_min or epsilon, or shrink the model")
    lo = z * probe.l2_bound / math.sqrt(probe.n_min) * (1 - 1e-6)
    if meets(lo):
        return lo
    hi = lo * 1.01
    while not meets(hi):
        lo, hi = hi, hi * 2
    return _bisect(meets, lo, hi, 1e-7)


# --- device and server ------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _rotation_key(seed: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_ROTATION_SALT, info=b"")
    return hkdf.derive(seed)


def ddg_rotation_key(seed: Any) -> bytes:
    """The AES-256 key of the rotation's sign stream: HKDF-SHA256 of the round's public seed
    (16 to 64 bytes, the same for every device of the round and the server)."""
    try:
        raw = bytes(memoryview(seed))
    except TypeError:
        raise TypeError(f"rotation seed must be bytes-like, not {type(seed).__name__}") from None
    if not 16 <= len(raw) <= 64:
        raise ValueError(f"rotation seed must be 16 to 64 bytes, got {len(raw)}")
    return _rotation_key(raw)


class DDGEncoding(NamedTuple):
    """One device's encoding with its parts (tests and audits; never send more than words)."""

    words: np.ndarray    # (rounded + noise) mod 2^bits, padded_dim words
    norm: float          # ||x||_2 before clipping
    rounded: np.ndarray  # the conditionally rounded, rotated, scaled, clipped x (int64)
    noise: np.ndarray    # the device's discrete Gaussian share (int64)
    tries: int           # rounding draws (DDG_MAX_TRIES + 1 = 65: fell back to truncation)


def _check_params(params: Any) -> DDGParams:
    if not isinstance(params, DDGParams):
        raise TypeError(f"params must be a privcity.dp.DDGParams, not {type(params).__name__}")
    return params


def _device_vector(x: Any, params: DDGParams) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, not {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"x must be float32, got {x.dtype}")
    if x.shape != (params.dim,):
        raise ValueError(f"x must have shape ({params.dim},), got {x.shape}")
    return np.ascontiguousarray(x)


def _rng(rng: Any) -> SecureRNG:
    if not isinstance(rng, SecureRNG):
        raise TypeError(f"rng must be a privcity.noise.SecureRNG, not {type(rng).__name__}")
    return rng


def ddg_encode(x: np.ndarray, params: DDGParams, rotation_seed: Any, rng: SecureRNG, *,
               out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The device's step: ``(words, norm)``, the padded_dim ring words (params.word_dtype) to
    mask for secure aggregation and ||x||_2 before clipping.

    x is the update, float32 of shape (params.dim,), finite. ``rotation_seed`` is the round's
    public seed; ``rng`` the device's noise source (OS-keyed outside simulations). ``out``, a
    writable array of padded_dim words, is filled instead of a new one.
    """
    params = _check_params(params)
    words, norm, _ = _rng(rng).ddg_encode(
        _device_vector(x, params), rotation_key=ddg_rotation_key(rotation_seed), clip=params.clip,
        gamma=params.gamma, l2_bound_sq=params.l2_bound_sq, sigma2=params.sigma2,
        bits=params.bits, out=out)
    return words, norm


def ddg_encode_parts(x: np.ndarray, params: DDGParams, rotation_seed: Any,
                     rng: SecureRNG) -> DDGEncoding:
    """:func:`ddg_encode` with the rounded vector, the noise and the rounding draws returned
    beside the words (the same words, from the same keystream, as ddg_encode)."""
    params = _check_params(params)
    rounded = np.empty(params.padded_dim, np.int64)
    noise = np.empty(params.padded_dim, np.int64)
    words, norm, tries = _rng(rng).ddg_encode(
        _device_vector(x, params), rotation_key=ddg_rotation_key(rotation_seed), clip=params.clip,
        gamma=params.gamma, l2_bound_sq=params.l2_bound_sq, sigma2=params.sigma2,
        bits=params.bits, rounded=rounded, noise=noise)
    return DDGEncoding(words, norm, rounded, noise, tries)


def ddg_decode(ring_sum: np.ndarray, params: DDGParams, rotation_seed: Any) -> np.ndarray:
    """The server's step: the float64 estimate (params.dim,) of the sum of the devices'
    clipped updates, from the modular sum of their words (padded_dim, params.word_dtype).

    The sum is read in [-2^(bits-1), 2^(bits-1)): a coordinate whose true sum left that range
    wrapped (rare for the n_expected of :func:`ddg_params`) comes back off by a multiple of
    gamma 2^bits.
    """
    params = _check_params(params)
    if not isinstance(ring_sum, np.ndarray):
        raise TypeError(f"ring_sum must be a numpy array, not {type(ring_sum).__name__}")
    if ring_sum.dtype != params.word_dtype or ring_sum.shape != (params.padded_dim,):
        raise ValueError(f"ring_sum must be {params.word_dtype} of shape ({params.padded_dim},), "
                         f"got {ring_sum.dtype} {ring_sum.shape}")
    decode = _core.ddg_decode_u32 if params.bits <= 32 else _core.ddg_decode_u64
    num, den = params.sigma2
    return decode(np.ascontiguousarray(ring_sum), params.dim, ddg_rotation_key(rotation_seed),
                  params.clip, params.gamma, params.l2_bound_sq, num, den, params.bits)
