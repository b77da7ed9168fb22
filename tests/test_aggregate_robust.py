"""privcity.aggregate robust aggregators: median, trimmed mean, Krum / multi-Krum and norm clipping
against numpy/scipy float64 references, hostile updates rejected alone, and 20% of the updates
set to huge values leaving the result within the range of the honest ones."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

import privcity
from privcity import _core
from privcity.aggregate import clip_norms, krum, median, trimmed_mean, weighted_mean

F32_MAX = float(np.finfo(np.float32).max)


def make(k: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)  # test data
    return (rng.standard_normal((k, d)) * rng.uniform(0.1, 10, (k, 1))).astype(np.float32)


def reference_krum(x: np.ndarray, f: int) -> np.ndarray:
    """Krum scores in float64 with numpy alone (Blanchard et al. 2017, eq. of section 4)."""
    x64 = x.astype(np.float64)
    k = len(x64)
    dist = ((x64[:, None, :] - x64[None, :, :]) ** 2).sum(axis=2)
    return np.array([np.sort(np.delete(dist[i], i))[: k - f - 2].sum() for i in range(k)])


# --- against numpy / scipy ------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 7, 16, 33])
@pytest.mark.parametrize("form", ["2-D", "list"])
def test_median_equals_numpy_float64_median_rounded(k, form):
    # Prepare: the mean of the two middle values is exact in float64, then rounded once
    x = make(k, 5003, seed=k)
    x[:, :100] = np.round(x[:, :100])  # ties
    expected = np.median(x.astype(np.float64), axis=0).astype(np.float32)

    # Execute
    out = median(x if form == "2-D" else list(x))

    # Assert
    assert out.dtype == np.float32
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.25, 0.49])
@pytest.mark.parametrize("k", [5, 20, 64])
def test_trimmed_mean_within_bound_of_scipy(beta, k):
    # Prepare
    x = make(k, 4099, seed=k + 1)
    ref = scipy.stats.trim_mean(x.astype(np.float64), beta, axis=0)
    kept = k - 2 * int(beta * k)
    # float64 sum of the kept values (error <= kept 2**-52 sum|x| / kept) rounded once to float32.
    bound = 2.0**-24 * np.abs(ref) + (kept + 2) * 2.0**-52 * np.abs(x.astype(np.float64)).max(axis=0)

    # Execute
    out = trimmed_mean(x, beta)

    # Assert
    assert np.all(np.abs(out.astype(np.float64) - ref) <= bound)


@pytest.mark.parametrize("k, f", [(5, 1), (12, 3), (30, 7)])
def test_krum_selects_as_a_float64_reference(k, f):
    # Prepare
    x = make(k, 3001, seed=k)
    scores = reference_krum(x, f)
    best = int(np.argmin(scores))

    # Execute
    res = krum(x, f, report=True)

    # Assert
    assert res.selected == (best,)
    assert np.array_equal(res.value, x[best])
    np.testing.assert_allclose(res.scores, scores, rtol=1e-12)


def test_multi_krum_is_the_mean_of_the_m_best():
    # Prepare
    x = make(20, 2001, seed=11)
    order = np.argsort(reference_krum(x, 4), kind="stable")[:6]

    # Execute
    res = krum(x, 4, m=6, report=True)

    # Assert
    assert res.selected == tuple(int(i) for i in order)
    assert np.array_equal(res.value, weighted_mean(x[np.sort(order)]))


def test_krum_needs_more_than_2f_plus_2_updates():
    # Prepare
    x = make(8, 10)

    # Execute / Assert
    assert krum(x, 2).shape == (10,)  # 8 > 6
    with pytest.raises(ValueError, match="more than 2f \\+ 2 = 8"):
        krum(x, 3)
    with pytest.raises(ValueError, match="m=9"):
        krum(x, 1, m=9)


@pytest.mark.parametrize("max_norm", [0.5, 30.0, 1e6])
def test_clip_norms_bounds_each_norm_and_keeps_direction(max_norm):
    # Prepare
    x = make(12, 10_007, seed=2)
    x[3] = 0.0
    norms64 = np.linalg.norm(x.astype(np.float64), axis=1)

    # Execute
    res = clip_norms(x, max_norm, report=True)

    # Assert
    after = _core.l2_norms_f32(res.value)
    assert np.all(after <= max_norm)
    np.testing.assert_allclose(res.norms, norms64, rtol=1e-12)
    expected = x.astype(np.float64) * np.minimum(1.0, max_norm / np.maximum(norms64, 1e-300))[:, None]
    np.testing.assert_allclose(res.value, expected, rtol=1e-6, atol=1e-30)
    small = norms64 <= max_norm
    assert np.array_equal(res.value[small], x[small])


# --- hostile updates ------------------------------------------------------------------------------

AGGREGATORS = {
    "median": lambda u, **kw: median(u, **kw),
    "trimmed_mean": lambda u, **kw: trimmed_mean(u, 0.2, **kw),
    "krum": lambda u, **kw: krum(u, 1, **kw),
    "multi-krum": lambda u, **kw: krum(u, 1, m=3, **kw),
    "clip_norms": lambda u, **kw: clip_norms(u, 2.0, **kw),
}


@pytest.mark.parametrize("name", AGGREGATORS)
def test_robust_aggregators_reject_bad_updates_alone(name):
    # Prepare
    fn = AGGREGATORS[name]
    x = make(10, 257, seed=5)
    rows: list = list(x.copy())
    rows[2][0] = np.nan
    rows[5] = rows[5][:200]
    rows[7] = np.full(257, np.inf, np.float32)
    good = [0, 1, 3, 4, 6, 8, 9]

    # Execute
    res = fn(rows, on_invalid="skip", report=True)
    with pytest.raises(privcity.InvalidUpdate) as info:
        fn(rows)

    # Assert
    assert res.skipped == (2, 5, 7) and res.used == tuple(good)
    assert np.array_equal(res.value, fn(x[good]))
    assert info.value.indices == [2, 5, 7]


@pytest.mark.parametrize("name", AGGREGATORS)
def test_robust_aggregators_need_a_valid_update(name):
    # Prepare
    rows = [np.full(4, np.nan, np.float32)] * 3

    # Execute / Assert
    with pytest.raises(ValueError):
        AGGREGATORS[name](rows, on_invalid="skip")


def test_krum_scores_of_skipped_updates_are_nan_and_indices_are_the_callers():
    # Prepare
    x = make(9, 50, seed=8)
    x[0] = np.nan

    # Execute
    res = krum(x, 1, report=True, on_invalid="skip")

    # Assert
    assert math.isnan(res.scores[0]) and np.isfinite(res.scores[1:]).all()
    np.testing.assert_allclose(res.scores[1:], reference_krum(x[1:], 1), rtol=1e-12)
    assert res.selected == (int(np.argmin(res.scores[1:])) + 1,)


@pytest.mark.parametrize("beta", [-0.1, 0.5, float("nan")])
def test_trimmed_mean_refuses_beta_outside_range(beta):
    # Execute / Assert
    with pytest.raises(ValueError, match="beta"):
        trimmed_mean(make(5, 3), beta)


def test_more_than_4096_updates_are_refused_by_the_sorting_kernels():
    # Prepare
    x = np.zeros((4097, 2), np.float32)

    # Execute / Assert
    with pytest.raises(ValueError, match="4096"):
        median(x)
    with pytest.raises(ValueError, match="4096"):
        trimmed_mean(x, 0.1)


# --- 20% poisoned updates -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def poisoned() -> tuple[np.ndarray, np.ndarray]:
    """50 updates: 40 honest ones around 1.0, then 10 (20%) at +-float32 max or 1e30."""
    rng = np.random.default_rng(20)
    honest = (1.0 + 0.1 * rng.standard_normal((40, 20_000))).astype(np.float32)
    attack = np.empty((10, 20_000), np.float32)
    attack[:4] = F32_MAX
    attack[4:7] = -F32_MAX
    attack[7:] = rng.choice([-1e30, 1e30], (3, 20_000)).astype(np.float32)
    batch = np.concatenate([honest, attack])
    return batch[rng.permutation(50)], honest


@pytest.mark.parametrize("name, fn", [
    ("median", lambda b: median(b)),
    ("trimmed_mean", lambda b: trimmed_mean(b, 0.2)),
    ("krum", lambda b: krum(b, 10)),
    ("multi-krum", lambda b: krum(b, 10, m=20))])
def test_robust_aggregators_stay_within_the_honest_range(poisoned, name, fn):
    # Prepare
    batch, honest = poisoned
    lo, hi = honest.min(axis=0), honest.max(axis=0)

    # Execute
    out = fn(batch)

    # Assert
    assert np.all((lo <= out) & (out <= hi)), name


def test_the_plain_mean_does_not_stay_within_the_honest_range(poisoned):
    # Prepare: the same data moves an unprotected mean far out (the attack is real)
    batch, honest = poisoned

    # Execute
    out = weighted_mean(batch)

    # Assert
    assert np.abs(out).min() > 10 * np.abs(honest).max()
