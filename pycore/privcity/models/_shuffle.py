"""``np.random.default_rng(seed).permutation(n)``, epoch after epoch, inside numba kernels.

Local training shuffles each device's rows once per epoch with numpy's generator (one
``default_rng(seed)`` per device, epochs drawn in turn from it). Building that generator costs
about 25 us in numpy (SeedSequence hashing, PCG64 seeding) and each permutation 5 us more: for
100 devices of 60 rows that is 3-4 ms a round, as much as their training. These functions do the
same arithmetic in compiled code, bit for bit, so a device's whole SGD runs in one kernel call:

- SeedSequence(seed) with an empty spawn key and pool size 4 (numpy's ``bit_generator.pyx``):
  the seed's 32-bit words hashed into the pool, the pool into four 64-bit state words;
- PCG64 (``pcg64.h``): 128-bit LCG seeded by ``srandom_r(state, inc)``, XSL-RR output, and
  32-bit draws taken from the halves of a buffered 64-bit draw, low half first;
- ``Generator.permutation(n)``: arange(n), then Fisher-Yates from the end, swapping i with
  ``random_interval(i)`` (masked rejection: 32-bit draws while i < 2**32, else 64-bit).

tests/test_models_shuffle.py checks the streams against numpy for many seeds and sizes, so a
numpy release that changed any of these steps would be caught.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_U32 = np.uint64(0xFFFFFFFF)
# SeedSequence's hash constants (numpy/random/bit_generator.pyx).
_INIT_A, _MULT_A = np.uint32(0x43B0D7E5), np.uint32(0x931E8875)
_INIT_B, _MULT_B = np.uint32(0x8B51F9DD), np.uint32(0x58F38DED)
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_X16 = np.uint32(16)
# PCG64's 128-bit multiplier (PCG_DEFAULT_MULTIPLIER_128), high and low 64-bit words.
_M_HI, _M_LO = np.uint64(2549297995355413924), np.uint64(4865540595714422341)


def seed_words(seeds: np.ndarray) -> np.ndarray:
    """(K, 3) uint64 rows (low 32-bit word, high 32-bit word, number of words) of seeds in
    [0, 2**64): SeedSequence hashes a seed below 2**32 (0 included) as one word, else two."""
    s = np.asarray(seeds, np.uint64)
    out = np.empty((s.shape[0], 3), np.uint64)
    out[:, 0] = s & _U32
    out[:, 1] = s >> np.uint64(32)
    out[:, 2] = np.where(out[:, 1] > 0, 2, 1)
    return out


@njit
def _hashmix(value, hash_const):
    """(hashed value, next hash constant) of SeedSequence's hashmix, in uint32."""
    value = np.uint32(value ^ hash_const)
    hash_const = np.uint32(hash_const * _MULT_A)
    value = np.uint32(value * hash_const)
    return np.uint32(value ^ (value >> _X16)), hash_const


@njit
def _mix(x, y):
    r = np.uint32(np.uint32(_MIX_L * x) - np.uint32(_MIX_R * y))
    return np.uint32(r ^ (r >> _X16))


@njit
def _seed_sequence(words, state):
    """SeedSequence(entropy).generate_state(4, uint64) into state (4,) uint64, for the entropy's
    32-bit words (words[0], words[1]; words[2] of them count)."""
    pool = np.zeros(4, np.uint32)
    hc = _INIT_A
    for i in range(4):
        w = np.uint32(words[i]) if i < words[2] else np.uint32(0)
        pool[i], hc = _hashmix(w, hc)
    for i_src in range(4):
        for i_dst in range(4):
            if i_src != i_dst:
                h, hc = _hashmix(pool[i_src], hc)
                pool[i_dst] = _mix(pool[i_dst], h)
    hb = _INIT_B
    for k in range(4):
        lo_hi = np.zeros(2, np.uint32)
        for half in range(2):
            v = np.uint32(pool[(2 * k + half) % 4] ^ hb)
            hb = np.uint32(hb * _MULT_B)
            v = np.uint32(v * hb)
            lo_hi[half] = np.uint32(v ^ (v >> _X16))
        state[k] = np.uint64(lo_hi[0]) | (np.uint64(lo_hi[1]) << np.uint64(32))


@njit
def _mulhi(a, b):
    """High 64 bits of the 128-bit product of uint64 a and b."""
    a_lo, a_hi = a & _U32, a >> np.uint64(32)
    b_lo, b_hi = b & _U32, b >> np.uint64(32)
    p1, p2 = a_lo * b_hi, a_hi * b_lo
    mid = ((a_lo * b_lo) >> np.uint64(32)) + (p1 & _U32) + (p2 & _U32)
    return a_hi * b_hi + (p1 >> np.uint64(32)) + (p2 >> np.uint64(32)) + (mid >> np.uint64(32))


@njit
def _step(rng):
    """One LCG step of rng = [state_hi, state_lo, inc_hi, inc_lo, has32, buffered32] (uint64):
    state = state * M + inc mod 2**128."""
    hi, lo = rng[0], rng[1]
    new_hi = _mulhi(lo, _M_LO) + lo * _M_HI + hi * _M_LO
    new_lo = lo * _M_LO
    lo2 = new_lo + rng[3]
    rng[0] = new_hi + rng[2] + (np.uint64(1) if lo2 < new_lo else np.uint64(0))
    rng[1] = lo2


@njit
def _next64(rng):
    _step(rng)
    x = rng[0] ^ rng[1]
    rot = rng[0] >> np.uint64(58)
    return (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))


@njit
def _next32(rng):
    if rng[4]:
        rng[4] = 0
        return rng[5]
    v = _next64(rng)
    rng[4] = 1
    rng[5] = v >> np.uint64(32)
    return v & _U32


@njit
def new_rng(words):
    """The state of ``np.random.default_rng(seed)`` (6 uint64, see _step) for seed_words' row."""
    s = np.empty(4, np.uint64)
    _seed_sequence(words, s)
    rng = np.zeros(6, np.uint64)
    # pcg_setseq_128_srandom_r: inc = (initseq << 1) | 1, state = 0; step; state += seed; step.
    rng[2] = (s[2] << np.uint64(1)) | (s[3] >> np.uint64(63))
    rng[3] = (s[3] << np.uint64(1)) | np.uint64(1)
    _step(rng)
    lo = rng[1] + s[1]
    rng[0] = rng[0] + s[0] + (np.uint64(1) if lo < rng[1] else np.uint64(0))
    rng[1] = lo
    _step(rng)
    return rng


@njit
def _interval(rng, top):
    """numpy's random_interval: uniform in [0, top] by masked rejection."""
    if top == 0:
        return np.uint64(0)
    mask = top
    for s in (1, 2, 4, 8, 16, 32):
        mask |= mask >> np.uint64(s)
    if top <= _U32:
        v = _next32(rng) & mask
        while v > top:
            v = _next32(rng) & mask
        return v
    v = _next64(rng) & mask
    while v > top:
        v = _next64(rng) & mask
    return v


@njit
def permutation(rng, out):
    """Fills out (n,) int64 with the next ``permutation(n)`` of the generator rng."""
    n = out.shape[0]
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        j = _interval(rng, np.uint64(i))
        out[i], out[j] = out[j], out[i]
