"""Each native sampler is its documented formula applied to the keystream words, checked value by
value against numpy (float64, the platform's libm) on the same seeded words:

  * Box-Muller for the Gaussians (block layout: radii words first, then angle words), Laplace
    as -b log u with the top bit's sign, the 52-bit uniform: the vector kernels' polynomials
    (Cephes logf/sinf/cosf, log/sin/cos on reduced ranges) stay within a few ulps of the exact
    values, whatever the vector width of the path that runs;
  * the stochastic rounding of clip_round_add_discrete_gaussian equals its scalar formula bit
    for bit, on the vector path and on the scalar one (|x s| >= 2^49).

The statistical tests (test_noise_samplers.py) check the distributions; these check the values.
"""
from __future__ import annotations

import numpy as np
import pytest

from privcity.noise import SecureRNG

SEED = b"privcity tests: noise reference"
EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
EPS64 = float(np.finfo(np.float64).eps)  # 2^-52


def words(stream: int, n: int, dtype) -> np.ndarray:
    """The first n words of the seeded keystream (what a fresh generator's sampler reads)."""
    return np.frombuffer(SecureRNG(SEED, stream).random_bytes(n * np.dtype(dtype).itemsize), dtype)


def test_gaussian_f32_is_box_muller_of_the_keystream_within_3_ulp():
    # Prepare: blocks of 32 words, 16 radii then 16 angles; u1 = (float32(w) + 1) 2^-32
    n, sigma = 32 * 4096, 1.0
    w = words(1, n, np.uint32).reshape(-1, 2, 16)
    u1 = ((w[:, 0].astype(np.float32) + np.float32(1)) * np.float32(2.0**-32)).astype(np.float64)
    r = np.sqrt(-2.0 * np.log(u1))
    angle = 2 * np.pi * (w[:, 1].astype(np.float64) / 2.0**32)
    expected = np.concatenate([r * np.cos(angle), r * np.sin(angle)], axis=1).reshape(-1)

    # Execute
    got = SecureRNG(SEED, 1).gaussian(n, sigma).astype(np.float64)

    # Assert: within 3 float32 ulps of the radius (cos and sin are at most 1; 1.43 measured
    # over 6.4 M samples)
    radius = r.reshape(-1, 1, 16).repeat(2, axis=1).reshape(-1)
    err = np.abs(got - expected) / (EPS32 * np.maximum(radius, 2.0**-10))
    assert err.max() <= 3.0, f"max error {err.max():.2f} ulp of the radius"


def test_gaussian_f64_is_box_muller_of_the_keystream_within_6_ulp():
    # Prepare: blocks of 16 words, 8 radii then 8 angles; u1 = 1 - (w >> 12) 2^-52, exact
    n, sigma = 16 * 4096, 1.0
    w = words(2, n, np.uint64).reshape(-1, 2, 8)
    u1 = 1.0 - (w[:, 0] >> np.uint64(12)).astype(np.float64) * 2.0**-52
    r = np.sqrt(-2.0 * np.log(u1))
    a = w[:, 1]  # the turn a / 2^64, its 64 bits in two exact parts
    turn = (a >> np.uint64(11)).astype(np.float64) * 2.0**-53 + (a & np.uint64(2047)) * 2.0**-64
    angle = 2 * np.pi * turn
    expected = np.concatenate([r * np.cos(angle), r * np.sin(angle)], axis=1).reshape(-1)

    # Execute
    got = SecureRNG(SEED, 2).gaussian(n, sigma, dtype=np.float64)

    # Assert: within 6 ulps of the radius (4.65 measured over 3.2 M samples: the angle keeps 52
    # bits of the quarter turn, 1.6 ulp at most, and the polynomials and libm add the rest)
    radius = r.reshape(-1, 1, 8).repeat(2, axis=1).reshape(-1)
    err = np.abs(got - expected) / (EPS64 * np.maximum(radius, 2.0**-20))
    assert err.max() <= 6.0, f"max error {err.max():.2f} ulp of the radius"


def test_laplace_is_minus_b_log_u_with_the_top_bit_as_sign_within_2_ulp():
    # Prepare: u = 1 - (w mod 2^52) 2^-52 in (0, 1], exact
    n, b = 100_003, 0.8
    w = words(3, n, np.uint64)
    u = 1.0 - (w & np.uint64(2**52 - 1)).astype(np.float64) * 2.0**-52
    magnitude = -b * np.log(u)
    expected = np.where(w >> np.uint64(63) == 1, -magnitude, magnitude)

    # Execute
    got = SecureRNG(SEED, 3).laplace(n, b)

    # Assert: the sign exactly (zero included), the magnitude within 2 ulps (1.25 measured)
    assert np.array_equal(np.signbit(got), np.signbit(expected))
    err = np.abs(got - expected) / (EPS64 * np.maximum(magnitude, 2.0**-40))
    assert err.max() <= 2.0, f"max error {err.max():.2f} ulp"


def test_uniform_is_the_top_52_bits_exactly():
    # Prepare
    n = 100_003
    expected = (words(4, n, np.uint64) >> np.uint64(12)).astype(np.float64) * 2.0**-52

    # Execute
    got = SecureRNG(SEED, 4).uniform(n)

    # Assert
    np.testing.assert_array_equal(got, expected)


def _rounding_cases(n: int, top: float) -> np.ndarray:
    """float32 values whose scaled copies land on integers, near them, on halves, on both signs,
    from tiny to `top`."""
    g = np.random.default_rng(5)
    x = np.concatenate([
        np.arange(-50, 50, dtype=np.float32),                  # integers (scale 1 below)
        np.arange(-50, 50, dtype=np.float32) + 0.5,            # halves
        np.nextafter(np.arange(-20, 20, dtype=np.float32), np.float32(np.inf)),
        np.nextafter(np.arange(-20, 20, dtype=np.float32), np.float32(-np.inf)),
        (g.standard_normal(n) * 10.0 ** g.uniform(-6, np.log10(top), n)).astype(np.float32),
        np.float32([0.0, -0.0, top, -top]),
    ])
    return x


@pytest.mark.parametrize("top,scale", [(1e3, 1.0), (2.0**40, 1.0), (2.0**55, 2.0)],
                         ids=["small", "2^40", "scalar-path"])
def test_stochastic_rounding_equals_its_scalar_formula_bit_for_bit(top, scale):
    # Prepare: the clip is inactive (s = scale); the noise comes first, then one word per value
    x = _rounding_cases(20_011, top)
    clip, sigma = float(np.linalg.norm(x.astype(np.float64))) * 2, 3.0
    ref = SecureRNG(SEED, 6)
    noise = ref.discrete_gaussian(x.size, sigma)
    w = np.frombuffer(ref.random_bytes(8 * x.size), np.uint64)
    v = x.astype(np.float64) * scale
    fl = np.floor(v)
    u = (w >> np.uint64(12)).astype(np.float64) * 2.0**-52
    expected = noise + fl.astype(np.int64) + (u < v - fl)

    # Execute
    got, norm = SecureRNG(SEED, 6).clip_round_add_discrete_gaussian(x, clip, scale, sigma)

    # Assert
    assert norm < clip
    np.testing.assert_array_equal(got, expected)
