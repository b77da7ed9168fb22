"""The fused device kernels exposed by SecureRNG: clip + Gaussian noise, and clip + scale +
stochastic rounding + discrete Gaussian noise (the integer path of distributed DP)."""
from __future__ import annotations

import numpy as np
import pytest

from privcity import _core
from privcity.noise import SecureRNG


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 4097])
@pytest.mark.parametrize("scale_up", [0.5, 3.0], ids=["inside", "clipped"])
def test_clip_add_gaussian_equals_clip_then_the_same_seeded_noise(n, scale_up):
    # Prepare: the fused kernel adds the very noise gaussian() draws from the same stream
    x = (np.random.default_rng(n).standard_normal(n) * scale_up / np.sqrt(n)).astype(np.float32)
    clip, sigma = 1.0, 0.25
    norm = _core.l2_norm_f32(x)
    s = np.float32(clip / norm) if norm > clip else np.float32(1.0)
    expected = x * s + SecureRNG(b"fused", 1).gaussian(n, sigma)

    # Execute
    out, got_norm = SecureRNG(b"fused", 1).clip_add_gaussian(x, clip, sigma)

    # Assert
    assert got_norm == pytest.approx(np.linalg.norm(x.astype(np.float64)), rel=1e-12)
    np.testing.assert_array_equal(out, expected)


def test_clip_add_gaussian_in_place_and_errors():
    # Prepare
    x = np.full(100, 0.5, np.float32)
    y = x.copy()

    # Execute
    out, _ = SecureRNG(b"k").clip_add_gaussian(y, 1.0, 0.1, out=y)
    ref, _ = SecureRNG(b"k").clip_add_gaussian(x, 1.0, 0.1)

    # Assert
    assert out is y
    np.testing.assert_array_equal(y, ref)
    with pytest.raises(ValueError, match="NaN or Inf"):
        SecureRNG(b"k").clip_add_gaussian(np.array([1.0, np.nan], np.float32), 1.0, 0.1)
    with pytest.raises(ValueError, match="clip"):
        SecureRNG(b"k").clip_add_gaussian(x, 0.0, 0.1)
    with pytest.raises(TypeError, match="float32"):
        SecureRNG(b"k").clip_add_gaussian(x.astype(np.float64), 1.0, 0.1)


def test_clip_round_add_discrete_gaussian_is_unbiased_and_integer():
    # Prepare: a clipped vector of known values, many independent draws
    x = np.array([3.0, -4.0, 0.0, 0.1], np.float32)  # norm 5, clipped to 1 -> (0.6, -0.8, 0, 0.02)
    rng = SecureRNG(b"round", 7)
    scale, sigma, reps = 100.0, 2.0, 20000

    # Execute
    draws = np.stack([rng.clip_round_add_discrete_gaussian(x, 1.0, scale, sigma)[0] for _ in range(reps)])

    # Assert: integers whose mean is the clipped, scaled vector (rounding and noise unbiased)
    assert draws.dtype == np.int64
    target = np.array([60.0, -80.0, 0.0, 2.0])
    se = np.sqrt(sigma**2 + 0.25) / np.sqrt(reps)
    np.testing.assert_allclose(draws.mean(axis=0), target, atol=5 * se)
    assert draws.var(axis=0) == pytest.approx(np.full(4, sigma**2), rel=0.1, abs=0.3)


def test_clip_round_add_discrete_gaussian_errors():
    # Prepare
    rng = SecureRNG(b"e")
    x = np.ones(4, np.float32)

    # Execute / Assert
    with pytest.raises(ValueError, match="NaN or Inf"):
        rng.clip_round_add_discrete_gaussian(np.array([np.inf], np.float32), 1.0, 10.0, 1.0)
    with pytest.raises(ValueError, match="2\\*\\*61"):
        rng.clip_round_add_discrete_gaussian(x, 1.0, 2.0**62, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        rng.clip_round_add_discrete_gaussian(x, 1.0, 10.0, -1.0)


def test_clip_add_gaussian_keeps_the_shape_of_x():
    x = np.full((4, 5), 0.1, np.float32)
    out, norm = SecureRNG(b"shape").clip_add_gaussian(x, 10.0, 1e-3)
    flat, flat_norm = SecureRNG(b"shape").clip_add_gaussian(x.ravel(), 10.0, 1e-3)
    assert out.shape == (4, 5) and out.dtype == np.float32
    assert np.array_equal(out.ravel(), flat) and norm == flat_norm


@pytest.mark.parametrize("sigma,error,match", [
    ("1", TypeError, "real number, not str"), (True, TypeError, "real number, not bool"),
    (1e300, ValueError, "float32's range"), (1e-300, ValueError, "float32's range"),
])
def test_sigma_that_float32_cannot_hold_or_that_is_not_a_number_is_refused(sigma, error, match):
    with pytest.raises(error, match=match):
        SecureRNG(b"s").gaussian(4, sigma=sigma)
