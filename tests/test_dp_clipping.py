"""privcity.dp clipping: clip_l2 / clip_l2_rows against a numpy reference, and adaptive clipping
(Andrew et al. 2021) tracking a quantile."""
from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import dp_event, rdp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privcity import _core
from privcity.dp import AdaptiveClipping, clip_l2, clip_l2_rows, update_noise_multiplier
from privcity.noise import SecureRNG

FLOATS = [np.float32, np.float64]


def reference_clip(x: np.ndarray, clip: float) -> np.ndarray:
    """x * min(1, C / ||x||) in float64 (longdouble-free, independent of privcity)."""
    x64 = x.astype(np.float64)
    norm = math.sqrt(float(np.sum(x64 * x64)))
    return x64 if norm <= clip else x64 * (clip / norm)


def computed_norm(x: np.ndarray) -> float:
    return _core.l2_norm_f32(np.ascontiguousarray(x).reshape(-1)) if x.dtype == np.float32 \
        else float(np.linalg.norm(x.reshape(-1)))


# --- clip_l2 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(1,), (10,), (1000,), (4, 5, 6)])
def test_clip_l2_bounds_the_norm_and_keeps_direction(dtype, shape):
    # Prepare
    x = (np.random.default_rng(3).normal(0, 5, shape)).astype(dtype)  # test data
    before = x.copy()

    # Execute
    out = clip_l2(x, 1.0)

    # Assert
    assert out.dtype == dtype and out.shape == shape
    assert computed_norm(out) <= 1.0
    np.testing.assert_allclose(out, reference_clip(x, 1.0), rtol=1e-6 if dtype == np.float32 else 1e-13)
    assert np.array_equal(x, before)


@pytest.mark.parametrize("dtype", FLOATS)
def test_clip_l2_leaves_short_vectors_alone(dtype):
    # Prepare
    x = np.array([0.3, -0.4], dtype)

    # Execute
    out = clip_l2(x, 0.6)

    # Assert
    assert np.array_equal(out, x) and out is not x


@settings(max_examples=150, deadline=None)
@given(x=hnp.arrays(st.sampled_from(FLOATS), hnp.array_shapes(max_dims=2, max_side=40),
                    elements=st.floats(-1e6, 1e6, width=32)),
       clip=st.floats(1e-3, 1e3))
def test_clip_l2_property(x, clip):
    # Execute
    out = clip_l2(x, clip)

    # Assert
    assert out.dtype == x.dtype and out.shape == x.shape
    assert computed_norm(out) <= clip
    ref = reference_clip(x, clip)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * clip)


def test_clip_l2_float64_huge_values_do_not_overflow():
    # Prepare: the sum of squares overflows float64
    x = np.array([3e200, 4e200])

    # Execute
    out = clip_l2(x, 10.0)

    # Assert
    np.testing.assert_allclose(out, [6.0, 8.0], rtol=1e-15)


def test_clip_l2_accepts_lists_as_float64():
    # Execute
    out = clip_l2([3.0, 4.0], 1.0)

    # Assert
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-15)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_clip_l2_nan_or_inf(dtype, bad):
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        clip_l2(np.array([1.0, bad], dtype), 1.0)


@pytest.mark.parametrize("clip", [0.0, -1.0, math.nan, math.inf])
def test_clip_l2_bad_clip(clip):
    with pytest.raises(ValueError, match="clip"):
        clip_l2(np.ones(3), clip)


def test_clip_l2_refuses_other_dtypes():
    with pytest.raises(TypeError, match="float32 or float64"):
        clip_l2(np.ones(3, np.int64), 1.0)


# --- clip_l2_rows -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_clip_l2_rows(dtype):
    # Prepare
    ups = np.random.default_rng(8).normal(0, 1, (50, 33)).astype(dtype)
    ups[3] = 0.0
    ups[7] *= 0.01

    # Execute
    clipped, norms = clip_l2_rows(ups, 2.0)

    # Assert
    assert clipped.dtype == dtype and clipped.shape == ups.shape and norms.dtype == np.float64
    np.testing.assert_allclose(norms, np.linalg.norm(ups.astype(np.float64), axis=1), rtol=1e-12)
    for row, out in zip(ups, clipped):
        assert computed_norm(out) <= 2.0
        np.testing.assert_allclose(out, reference_clip(row, 2.0), rtol=1e-6, atol=1e-12)
    assert np.array_equal(clipped[3], ups[3]) and np.array_equal(clipped[7], ups[7])


def test_clip_l2_rows_names_the_bad_row():
    # Prepare
    ups = np.ones((4, 3))
    ups[2, 1] = math.nan

    # Execute / Assert
    with pytest.raises(ValueError, match="updates row 2 contains NaN or Inf"):
        clip_l2_rows(ups, 1.0)
    with pytest.raises(ValueError, match="2-D"):
        clip_l2_rows(np.ones(3), 1.0)


# --- adaptive clipping --------------------------------------------------------------------------

NORMS = np.random.default_rng(0).lognormal(mean=1.0, sigma=0.8, size=500)  # fixed test data


@pytest.mark.parametrize("target", [0.2, 0.5, 0.9])
def test_adaptive_clipping_tracks_the_target_quantile(target):
    # Prepare: start far below every norm
    ac = AdaptiveClipping(initial_clip=0.01, target_quantile=target, learning_rate=0.2,
                          count_noise_std=NORMS.size / 20, rng=SecureRNG(5))

    # Execute
    for _ in range(300):
        ac.update(NORMS)

    # Assert
    fraction = float(np.mean(NORMS <= ac.clip))
    assert abs(fraction - target) < 0.05
    assert ac.rounds == 300


def test_adaptive_clipping_update_without_noise_is_the_geometric_rule():
    # Prepare
    ac = AdaptiveClipping(initial_clip=2.0, target_quantile=0.5, learning_rate=0.2,
                          count_noise_std=0.0, rng=SecureRNG(1))

    # Execute
    first = ac.update([1.0, 1.5, 3.0, 4.0, 5.0])            # 2 of 5 unclipped
    second = ac.update_from_count(3, cohort_size=4, expected_count=4.0)    # b = 0.75

    # Assert
    assert first == pytest.approx(2.0 * math.exp(-0.2 * (0.4 - 0.5)), rel=1e-15)
    assert second == pytest.approx(first * math.exp(-0.2 * (0.75 - 0.5)), rel=1e-15)
    assert ac.clip == second


def test_adaptive_clipping_count_noise_statistics():
    # Prepare: an empty cohort; the centred count is 0, so b = noise / (2 m) + 1/2 with noise of
    # standard deviation 2 sigma_b: with target 1/2, log C moves by -(b - 1/2), which has mean 0
    # and standard deviation sigma_b / m
    n, sigma_b, m = 4000, 3.0, 10.0
    ac = AdaptiveClipping(initial_clip=1.0, target_quantile=0.5, learning_rate=1.0,
                          count_noise_std=sigma_b, rng=SecureRNG(9))

    # Execute: log C changes by -b each round
    logs = []
    for _ in range(n):
        before = math.log(ac.clip)
        ac.update_from_count(0, cohort_size=0, expected_count=m)
        logs.append(before - math.log(ac.clip))
    b = np.array(logs)

    # Assert
    assert abs(b.mean()) < 5 * (sigma_b / m) / math.sqrt(n)
    assert abs(b.std() - sigma_b / m) < 5 * (sigma_b / m) / math.sqrt(2 * n)


def test_adaptive_clipping_is_reproducible_with_a_seed():
    # Prepare
    def run(seed):
        ac = AdaptiveClipping(initial_clip=1.0, count_noise_std=5.0, rng=SecureRNG(seed))
        return [ac.update(NORMS) for _ in range(5)]

    # Execute / Assert
    assert run(4) == run(4)
    assert run(4) != run(5)


@pytest.mark.parametrize("kwargs,name", [
    ({"initial_clip": 0.0}, "initial_clip"),
    ({"initial_clip": math.inf}, "initial_clip"),
    ({"target_quantile": -0.1}, "target_quantile"),
    ({"target_quantile": 1.1}, "target_quantile"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": math.nan}, "learning_rate"),
    ({"count_noise_std": -1.0}, "count_noise_std"),
    ({"count_noise_std": math.inf}, "count_noise_std"),
])
def test_adaptive_clipping_validates(kwargs, name):
    # Prepare
    params = {"initial_clip": 1.0, "count_noise_std": 1.0} | kwargs

    # Execute / Assert
    with pytest.raises(ValueError, match=name):
        AdaptiveClipping(**params)


def test_adaptive_clipping_validates_norms():
    # Prepare
    ac = AdaptiveClipping(initial_clip=1.0, count_noise_std=1.0)

    # Execute / Assert
    with pytest.raises(ValueError, match="norms contains NaN or Inf"):
        ac.update([1.0, math.nan])
    with pytest.raises(ValueError, match="norms must be >= 0"):
        ac.update([1.0, -2.0])
    with pytest.raises(ValueError, match="norms must not be empty"):
        ac.update([])
    with pytest.raises(ValueError, match="expected_count"):
        ac.update_from_count(1, cohort_size=1, expected_count=0.0)
    with pytest.raises(ValueError, match="cohort_size"):
        ac.update_from_count(3, cohort_size=2, expected_count=2.0)
    assert ac.clip == 1.0 and ac.rounds == 0


# --- the noise multiplier left for the updates --------------------------------------------------

def test_update_noise_multiplier_formula():
    # Execute
    z_delta = update_noise_multiplier(1.0, 10.0)

    # Assert
    assert z_delta == pytest.approx((1.0 - 1 / 400) ** -0.5, rel=1e-15)
    ac = AdaptiveClipping(initial_clip=1.0, count_noise_std=10.0)
    assert ac.noise_multiplier_for_updates(1.0) == z_delta


def test_update_noise_multiplier_costs_what_z_costs():
    # Prepare: Gaussian RDP is alpha / (2 z^2), so the updates at z_delta and the count at
    # 2 sigma_b (sensitivity 1/2) together must cost exactly the updates at z
    z, sigma_b = 1.1, 5.0
    z_delta = update_noise_multiplier(z, sigma_b)

    # Execute
    both = rdp.RdpAccountant()
    both.compose(dp_event.ComposedDpEvent([dp_event.GaussianDpEvent(z_delta),
                                           dp_event.GaussianDpEvent(2 * sigma_b)]))
    alone = rdp.RdpAccountant()
    alone.compose(dp_event.GaussianDpEvent(z))

    # Assert
    assert both.get_epsilon(1e-5) == pytest.approx(alone.get_epsilon(1e-5), rel=1e-9)


def test_update_noise_multiplier_refuses_too_little_count_noise():
    with pytest.raises(ValueError, match="count_noise_std"):
        update_noise_multiplier(1.0, 0.5)
    with pytest.raises(ValueError, match="count_noise_std"):
        AdaptiveClipping(initial_clip=1.0, count_noise_std=0.0).noise_multiplier_for_updates(1.0)
