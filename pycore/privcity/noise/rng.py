"""``SecureRNG``: noise for differential privacy from a cryptographically secure generator.

The generator is AES-256 in counter mode (privcity's AES kernels), keyed from the operating
system by default. With a seed it is reproducible: each (seed, stream) pair gives its own
independent stream (the key is HKDF-SHA256 of the seed, with the stream in the info), so every
device and round of a simulation can have one. A seeded generator is for simulations only:
anyone who knows the seed can recompute every sample.

Samplers consume the keystream in a fixed way: the same seed gives the same samples on every
CPU path, and n samples drawn at once equal the same n drawn in chunks (for one kind of draw).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import _core

__all__ = ["SecureRNG", "discrete_gaussian_sigma2", "discrete_laplace_scale"]

_SALT = b"privcity.noise.SecureRNG v1"
_MAX_STREAM = 2**64 - 1


def _seed_bytes(seed: Any) -> bytes:
    if isinstance(seed, bool):
        raise TypeError("seed must be bytes-like or a non-negative int, not bool")
    if isinstance(seed, (int, np.integer)):  # numpy integers are ints here, not buffers
        if seed < 0:
            raise ValueError("seed must be a non-negative int or bytes")
        return b"int:" + str(int(seed)).encode()
    try:
        return b"bytes:" + bytes(memoryview(seed))
    except TypeError:
        raise TypeError(f"seed must be bytes-like or a non-negative int, not {type(seed).__name__}") from None


def derive_key(seed: Any, stream: int) -> bytes:
    """The AES key of a seeded stream: HKDF-SHA256(seed, salt, info = stream as 8 bytes)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=stream.to_bytes(8, "big"))
    return hkdf.derive(_seed_bytes(seed))


def _count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(n)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, (str, bytes, bool, np.bool_)):  # float("1") would take a string
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def discrete_gaussian_sigma2(sigma: float) -> tuple[int, int]:
    """sigma^2 as num/den = num/2**k for the exact sampler: sigma^2 itself when it has such a
    form with k <= 39 (sigma = 1, 2.5, 100, ...), else the smallest num/2**k >= sigma^2 whose
    relative excess is below 2**-30. The coarsest such k is taken: smaller integers keep the
    sampler on its fast path. The sampled distribution has exactly this variance parameter,
    never less noise than asked for."""
    s2 = Fraction(sigma) ** 2
    finest = None
    for k in range(0, 40):
        den = 1 << k
        num = math.ceil(s2 * den)
        if num >= 2**63 or not _core.discrete_gaussian_params_ok(num, den):
            continue
        finest = (num, den)
        if Fraction(num, den) == s2 or (num - s2 * den) <= s2 * den / 2**30:
            return num, den
    if finest is not None:  # tiny sigma: the finest grid the sampler takes (still never below)
        return finest
    raise ValueError(f"sigma={sigma!r} is outside the range of the exact discrete Gaussian sampler "
                     "(about 2**-10 to 5e8)")


def discrete_laplace_scale(scale: float) -> tuple[int, int]:
    """scale as num/den for the exact sampler: exact when both fit in 62 bits, else the
    smallest num / 2**k >= scale that fits. Scales above 2**56 are refused: the sampler cannot
    represent |x| >= 2**62, which must stay improbable (below e**-64) for the draw to be exact."""
    if scale > 2.0**56:
        raise ValueError(f"scale={scale!r} is too large for the exact discrete Laplace sampler (max 2**56)")
    f = Fraction(scale)
    if f.numerator < 2**62 and f.denominator < 2**62:
        return f.numerator, f.denominator
    for k in range(61, -1, -1):
        num = math.ceil(f * (1 << k))
        if num < 2**62:
            return num, 1 << k
    raise ValueError(f"scale={scale!r} is too large for the exact discrete Laplace sampler")


def _float32_vector(x: Any, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return x.reshape(-1)


class SecureRNG:
    """Noise from AES-256-CTR, keyed from the OS or, for simulations, from a seed.

    Parameters
    ----------
    seed : bytes-like or int, optional
        None (default): a fresh key from the operating system (getrandom); a forked child re-keys
        itself before drawing. Given: a reproducible stream, NOT for protecting real data.
    stream : int
        With a seed, which of its independent streams (0 .. 2**64 - 1): one per device and round.

    Draws are not thread-safe in the sense of ordering (two threads interleave unpredictably),
    but never hand out the same keystream twice; a fork waits for draws in progress.

    The exact samplers are rejection samplers: the keystream they consume (:attr:`position`)
    and their running time depend on the values drawn. Never publish either beside a release.
    """

    __slots__ = ("_rng", "_stream")

    def __init__(self, seed: Any = None, stream: int = 0) -> None:
        if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)):
            raise TypeError(f"stream must be an int, not {type(stream).__name__}")
        if not 0 <= stream <= _MAX_STREAM:
            raise ValueError(f"stream must be in [0, 2**64), got {stream}")
        if seed is None:
            if stream != 0:
                raise ValueError("stream selects a stream of a seed; give a seed too")
            self._rng = _core.Rng(None)
        else:
            self._rng = _core.Rng(derive_key(seed, int(stream)))
        self._stream = int(stream)

    @property
    def seeded(self) -> bool:
        """True for a reproducible (seeded) generator: never use one to protect real data."""
        return self._rng.seeded

    @property
    def position(self) -> int:
        """Keystream bytes consumed so far."""
        return self._rng.position

    def __repr__(self) -> str:
        if self.seeded:
            return (f"SecureRNG(seeded, stream={self._stream}: reproducible, NOT for production: "
                    "anyone with the seed can recompute the noise)")
        return "SecureRNG(keyed from the OS)"

    def __reduce__(self) -> Any:
        raise TypeError("SecureRNG holds a secret key and cannot be pickled")

    # --- raw ------------------------------------------------------------------------------------
    def random_bytes(self, n: int) -> bytes:
        """The next n keystream bytes."""
        return self._rng.fill_bytes(_count(n))

    def uniform(self, n: int) -> np.ndarray:
        """n floats uniform on [0, 1) (52 random bits each), float64."""
        out = np.empty(_count(n), np.float64)
        self._rng.uniform(out)
        return out

    def bernoulli(self, n: int, p: float) -> np.ndarray:
        """n draws of Bernoulli(p) as a bool array (p resolved to 2**-64)."""
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        out = np.empty(_count(n), np.uint8)
        self._rng.bernoulli(out, p)
        return out.view(bool)

    # --- continuous (fast float path; see the floating-point caveat in privcity.dp) ---------------
    def gaussian(self, n: int, sigma: float = 1.0, dtype: Any = np.float32) -> np.ndarray:
        """n samples of N(0, sigma^2) as float32 (default) or float64 (vectorised Box-Muller).

        Floating-point noise is for simulations and model updates; a release that must resist
        floating-point attacks uses privcity.dp's ``release`` (integer noise on a grid).
        """
        sigma = _positive(sigma, "sigma")
        dt = np.dtype(dtype)
        f32 = np.finfo(np.float32)
        if dt == np.float32 and not float(f32.tiny) <= sigma <= float(f32.max):
            raise ValueError(f"sigma must lie in float32's range [{float(f32.tiny):.3g}, "
                             f"{float(f32.max):.3g}] for float32 samples, got {sigma!r} (use "
                             "dtype=np.float64)")
        out = np.empty(_count(n), dt)
        if dt == np.float32:
            self._rng.gaussian_f32(out, sigma)
        elif dt == np.float64:
            self._rng.gaussian_f64(out, sigma)
        else:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        return out

    def add_gaussian_(self, x: np.ndarray, sigma: float) -> np.ndarray:
        """Adds N(0, sigma^2) to every element of x in place (float32 or float64, C-contiguous,
        writable) and returns x."""
        sigma = _positive(sigma, "sigma")
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array, not {type(x).__name__}")
        if not (x.flags.c_contiguous and x.flags.writeable):
            raise ValueError("x must be a C-contiguous, writable array")
        if x.dtype == np.float32:
            self._rng.add_gaussian_f32(x.reshape(-1), sigma)
        elif x.dtype == np.float64:
            self._rng.add_gaussian_f64(x.reshape(-1), sigma)
        else:
            raise TypeError(f"x must be float32 or float64, got {x.dtype}")
        return x

    def laplace(self, n: int, scale: float) -> np.ndarray:
        """n samples of Laplace(0, scale), float64."""
        scale = _positive(scale, "scale")
        out = np.empty(_count(n), np.float64)
        self._rng.laplace(out, scale)
        return out

    # --- fused device kernels -------------------------------------------------------------------
    def clip_add_gaussian(self, x: np.ndarray, clip: float, sigma: float,
                          out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Clips a float32 vector to L2 norm ``clip`` and adds N(0, sigma^2) noise, in one call.

        Returns ``(out, norm)`` with norm the L2 norm of x (all its elements, whatever its
        shape) before clipping. ``out`` may be x itself (in place) or a preallocated float32
        array of x's size; by default a new array of x's shape. Float noise: for model updates
        in simulations (see privcity.dp.GaussianMechanism.perturb).
        """
        clip = _positive(clip, "clip")
        sigma = _positive(sigma, "sigma")
        xs = _float32_vector(x, "x")
        if out is None:
            out = np.empty(np.shape(x), np.float32)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.size == xs.size
                  and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError("out must be a writable C-contiguous float32 array of x's size")
        norm = self._rng.clip_add_gaussian_f32(out.reshape(-1), xs, clip, sigma)
        return out, norm

    def clip_round_add_discrete_gaussian(self, x: np.ndarray, clip: float, scale: float,
                                         sigma: float) -> tuple[np.ndarray, float]:
        """Clip x (float32) to L2 norm ``clip``, multiply by ``scale``, round each coordinate
        stochastically to an integer (up with probability equal to the fraction) and add exact
        discrete Gaussian noise of parameter sigma (in integer units), in one call. Returns
        ``(int64 array, norm of x before clipping)``.

        The rounded vector's norm is not bounded by clip * scale (rounding adds up to sqrt(n)):
        it is no sensitivity bound for a DP release. Distributed DP uses
        :func:`privcity.dp.ddg_encode`, whose conditional rounding bounds it.
        """
        clip = _positive(clip, "clip")
        scale = _positive(scale, "scale")
        sigma = _positive(sigma, "sigma")
        xs = _float32_vector(x, "x")
        num, den = discrete_gaussian_sigma2(sigma)
        out = np.empty(xs.size, np.int64)
        norm = self._rng.clip_round_add_dgauss(out, xs, clip, scale, num, den)
        return out.reshape(np.shape(x)), norm

    def ddg_encode(self, x: np.ndarray, *, rotation_key: bytes, clip: float, gamma: float,
                   l2_bound_sq: int, sigma2: tuple[int, int], bits: int,
                   out: np.ndarray | None = None, rounded: np.ndarray | None = None,
                   noise: np.ndarray | None = None) -> tuple[np.ndarray, float, int]:
        """The device's step of the distributed discrete Gaussian, fused in one native call: clip
        x (float32, 1-D) to L2 norm ``clip``, rotate (randomized Hadamard, signs from the public
        ``rotation_key``), scale by 1/gamma, round stochastically until the squared norm is at
        most ``l2_bound_sq``, add an exact discrete Gaussian share with sigma^2 = num/den
        (``sigma2``, integer units) and wrap into Z_{2^bits}.

        Returns ``(words, norm, tries)``: uint32 words for bits <= 32, else uint64 (``out`` may
        be a preallocated array of the padded length), x's norm before clipping, and the number
        of rounding draws (data-dependent: never publish it). ``rounded`` and ``noise``, int64
        arrays of the padded length, receive the two parts (tests); asking for them changes
        nothing else. Use :func:`privcity.dp.ddg_encode`, which takes these from a DDGParams.
        """
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1:
            raise TypeError("x must be a 1-D float32 numpy array")
        if not x.flags.c_contiguous:
            raise ValueError("x must be C-contiguous")
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
            raise ValueError(f"bits must be an int in [1, 64], got {bits!r}")
        num, den = sigma2
        padded = _core.ddg_padded_dim(x.size)
        dtype = np.dtype(np.uint32 if bits <= 32 else np.uint64)
        if out is None:
            out = np.empty(padded, dtype)
        elif not (isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (padded,)
                  and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"out must be a writable C-contiguous {dtype} array of shape "
                             f"({padded},)")
        encode = self._rng.ddg_encode_u32 if bits <= 32 else self._rng.ddg_encode_u64
        norm, tries = encode(out, x, rotation_key, _positive(clip, "clip"),
                             _positive(gamma, "gamma"), int(l2_bound_sq), int(num), int(den),
                             int(bits), rounded, noise)
        return out, norm, tries

    # --- exact integer samplers (Canonne, Kamath, Steinke 2020) ------------------------------------
    def discrete_gaussian(self, n: int, sigma: float) -> np.ndarray:
        """n exact samples of the discrete Gaussian on the integers, int64.

        P(x) is proportional to exp(-x^2 / (2 s^2)) where s^2 is sigma^2 itself or, when it has
        no short binary form, sigma^2 rounded up to num/2**k (:func:`discrete_gaussian_sigma2`;
        relative excess below 2**-30).
        Integer arithmetic only; exact for sigma up to about 5e8.
        """
        sigma = _positive(sigma, "sigma")
        num, den = discrete_gaussian_sigma2(sigma)
        out = np.empty(_count(n), np.int64)
        self._rng.discrete_gaussian(out, num, den)
        return out

    def discrete_laplace(self, n: int, scale: float) -> np.ndarray:
        """n exact samples of the discrete Laplace on the integers, int64:
        P(x) proportional to exp(-|x| / scale)."""
        scale = _positive(scale, "scale")
        num, den = discrete_laplace_scale(scale)
        out = np.empty(_count(n), np.int64)
        self._rng.discrete_laplace(out, num, den)
        return out
