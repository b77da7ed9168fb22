"""Counter-based random numbers for the synthetic city: a value is a hash of its coordinates.

Every random number of the simulation is ``mix(mix(key(seed, stream) ^ mix(entity)) + j * G)``,
with SplitMix64's finaliser as ``mix`` (Steele, Lea, Flood 2014): ``entity`` is a device, a
person, a district or an hour, ``j`` a counter (sample, day, ...). Nothing depends on which other
entities are generated in the same call, so a block of devices is generated fully vectorised and
device i gets the same values whatever the block. Simulation data only: this is not a CSPRNG.
"""
from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * np.pi


def _mix_int(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (in place when it may; returns the result)."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def stream_key(seed: int, stream: int) -> int:
    """The 64-bit key of one named stream of a seed (a Python int)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return _mix_int(_mix_int(int(seed) * _G + 0x5EED) ^ _mix_int(int(stream) + 0x51DE))


def entity_keys(seed: int, stream: int, entities: np.ndarray) -> np.ndarray:
    """uint64 keys, one per entity id (any integer array), for one stream of a seed."""
    e = np.asarray(entities).astype(np.uint64)  # ids are >= 0
    return mix(mix(e * np.uint64(_G)) ^ np.uint64(stream_key(seed, stream)))


def bits(keys: np.ndarray, counters: np.ndarray | int) -> np.ndarray:
    """64 random bits per (key, counter), broadcast: keys (D, 1) with counters (D, S) or (S,)."""
    c = np.atleast_1d(np.asarray(counters)).astype(np.uint64)
    return mix(keys + (c * np.uint64(_G) + np.uint64(0x632BE59BD9B4E019)))


def uniform(keys: np.ndarray, counters: np.ndarray | int) -> np.ndarray:
    """Uniform on (0, 1), float64 with 53 bits."""
    h = bits(keys, counters) >> np.uint64(11)
    # Through int64: numpy converts signed integers to float far faster than unsigned ones.
    return (h.view(np.int64).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normal(keys: np.ndarray, counters: np.ndarray | int) -> np.ndarray:
    """Standard normal, float32: Box-Muller on two 24-bit uniforms from one hash (|z| < 5.9).

    float32 because its log and cos are vectorised far better; simulation noise needs no more.
    """
    h = bits(keys, counters)
    u1 = (h >> np.uint64(40)).view(np.int64).astype(np.float32)
    u1 += np.float32(0.5)
    u1 *= np.float32(2.0**-24)
    u2 = (h & np.uint64(0xFFFFFF)).view(np.int64).astype(np.float32)
    u2 *= np.float32(_TWO_PI * 2.0**-24)
    np.log(u1, out=u1)
    u1 *= np.float32(-2.0)
    np.sqrt(u1, out=u1)
    np.cos(u2, out=u2)
    u1 *= u2
    return u1


def integers(keys: np.ndarray, counters: np.ndarray | int, n: int) -> np.ndarray:
    """Integers in [0, n), int64 (multiply-shift on 32 bits: bias below n / 2**32)."""
    h = bits(keys, counters) >> np.uint64(32)
    return ((h * np.uint64(n)) >> np.uint64(32)).astype(np.int64)


def log_gamma(keys: np.ndarray, counters: np.ndarray | int, shape: float, rounds: int = 8) -> np.ndarray:
    """log of Gamma(shape, 1) variates, float64, by Marsaglia and Tsang (2000) in vectorised rounds
    (logs, so that tiny shapes, whose variates underflow, still give Dirichlet weights).

    Each round accepts with probability above 0.95; after ``rounds`` the few left (< 1e-10)
    keep their last candidate. shape < 1 uses Gamma(shape + 1) * U**(1 / shape).
    Counters must leave room: this uses counter * 64 + 0 .. 2 * rounds.
    """
    c0 = np.atleast_1d(np.asarray(counters)).astype(np.uint64) * np.uint64(64)
    a = shape + 1.0 if shape < 1.0 else shape
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    out = None
    done = None
    for r in range(rounds):
        z = normal(keys, c0 + np.uint64(2 * r))
        u = uniform(keys, c0 + np.uint64(2 * r + 1))
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (np.log(u) < 0.5 * z * z + d - d * v + d * np.log(np.where(v > 0, v, 1.0)))
        cand = d * np.where(v > 0, v, 1e-300)
        if out is None:
            out, done = cand, ok
        else:
            take = ok & ~done
            out = np.where(take, cand, out)
            done = done | ok
    out = np.log(out)
    if shape < 1.0:
        out += np.log(uniform(keys, c0 + np.uint64(2 * rounds))) / shape
    return out


def dirichlet(keys: np.ndarray, counters: np.ndarray | int, alpha: float, k: int) -> np.ndarray:
    """Dirichlet(alpha, ..., alpha) over k categories, one row per key: float64 (len(keys), k)."""
    lg = log_gamma(keys[:, None], np.asarray(counters) * k + np.arange(k), alpha)
    lg -= lg.max(axis=1, keepdims=True)
    w = np.exp(lg)
    return w / w.sum(axis=1, keepdims=True)
