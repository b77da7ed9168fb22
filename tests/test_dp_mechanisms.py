"""privcity.dp mechanisms: analytic Gaussian calibration against independent computations, the
float-safe release grid, noise statistics, reproducibility, and input validation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting import gaussian_mechanism as dpa_gaussian
from scipy.special import log_ndtr

from privcity.dp import (
    GaussianMechanism,
    LaplaceMechanism,
    ReleaseGrid,
    analytic_gaussian_epsilon,
    analytic_gaussian_sigma,
    gaussian_delta,
)
from privcity.dp import calibration, mechanisms
from privcity.noise import SecureRNG

CASES = [(1.0, 1e-5, 1.0), (0.1, 1e-6, 1.0), (0.5, 1e-3, 2.5), (3.0, 1e-8, 0.3), (8.0, 1e-5, 1.0)]


def numerical_delta(sigma: float, epsilon: float, sensitivity: float, points: int = 400_001) -> float:
    """Hockey-stick divergence sup over neighbours of P(M(x) in S) - e^eps P(M(x') in S), by
    direct numerical integration of max(0, p(y) - e^eps q(y)) for p = N(0, s^2), q = N(D, s^2):
    shares nothing with the closed form under test."""
    y = np.linspace(-40 * sigma, sensitivity + 40 * sigma, points)
    log_p = -0.5 * (y / sigma) ** 2
    log_q = -0.5 * ((y - sensitivity) / sigma) ** 2
    integrand = np.exp(log_p) * np.maximum(0.0, -np.expm1(epsilon + log_q - log_p))
    return float(np.trapezoid(integrand, y) / (sigma * math.sqrt(2 * math.pi)))


# --- calibration --------------------------------------------------------------------------------

@pytest.mark.parametrize("epsilon,delta,sensitivity", CASES)
def test_analytic_sigma_meets_delta_by_numerical_integration(epsilon, delta, sensitivity):
    # Execute
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)

    # Assert: delta is met (to the integration's accuracy) and 1% less noise would miss it
    assert numerical_delta(sigma, epsilon, sensitivity) == pytest.approx(delta, rel=1e-4)
    assert numerical_delta(0.99 * sigma, epsilon, sensitivity) > 1.01 * delta


@pytest.mark.parametrize("epsilon,delta,sensitivity", CASES)
def test_analytic_sigma_matches_dp_accounting(epsilon, delta, sensitivity):
    # Execute
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)

    # Assert
    # (calibration keeps a 1e-6 relative margin on delta: never less noise than the reference,
    # and at most a hair more)
    reference = dpa_gaussian.get_sigma_gaussian(epsilon, delta) * sensitivity
    assert reference * (1 - 1e-9) <= sigma <= reference * (1 + 1e-6)
    assert gaussian_delta(sigma, epsilon, sensitivity) <= delta


def test_analytic_sigma_known_value():
    # Execute
    sigma = analytic_gaussian_sigma(1.0, 1e-5, 1.0)

    # Assert
    assert sigma == pytest.approx(3.7306, abs=5e-4)


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("delta", [1e-12, 1e-6, 1e-3, 0.1])
def test_classical_sigma_is_never_below_analytic(epsilon, delta):
    # Prepare
    classical = math.sqrt(2 * math.log(1.25 / delta)) / epsilon

    # Execute
    sigma = analytic_gaussian_sigma(epsilon, delta)

    # Assert
    assert sigma <= classical


def test_sigma_decreases_with_epsilon_and_delta():
    # Prepare
    epsilons = [0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0]
    deltas = [1e-10, 1e-7, 1e-5, 1e-3, 1e-1]

    # Execute
    by_eps = [analytic_gaussian_sigma(e, 1e-5) for e in epsilons]
    by_delta = [analytic_gaussian_sigma(1.0, d) for d in deltas]

    # Assert
    assert all(a > b for a, b in zip(by_eps, by_eps[1:]))
    assert all(a > b for a, b in zip(by_delta, by_delta[1:]))


def test_sigma_scales_with_sensitivity():
    # Execute
    unit = analytic_gaussian_sigma(0.7, 1e-6, 1.0)
    scaled = analytic_gaussian_sigma(0.7, 1e-6, 12.5)

    # Assert
    assert scaled == pytest.approx(12.5 * unit, rel=1e-12)


@pytest.mark.parametrize("epsilon,delta,sensitivity", CASES)
def test_analytic_epsilon_inverts_sigma(epsilon, delta, sensitivity):
    # Prepare
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)

    # Execute
    back = analytic_gaussian_epsilon(sigma, delta, sensitivity)

    # Assert
    assert back == pytest.approx(epsilon, rel=1e-9)


def test_erfc_fallback_matches_scipy():
    # Prepare: both tails, the switch at -37 and the asymptotic series beyond it
    xs = np.concatenate([np.linspace(-300, -36, 200), np.linspace(-36, 8, 400)])

    # Execute
    ours = np.array([calibration._log_phi_erfc(float(x)) for x in xs])

    # Assert
    np.testing.assert_allclose(ours, log_ndtr(xs), rtol=1e-12, atol=1e-15)


def test_calibration_without_scipy_gives_the_same_sigma(monkeypatch):
    # Prepare
    with_scipy = [analytic_gaussian_sigma(e, d, s) for e, d, s in CASES]
    monkeypatch.setattr(calibration, "_log_phi", calibration._log_phi_erfc)

    # Execute
    without = [analytic_gaussian_sigma(e, d, s) for e, d, s in CASES]

    # Assert
    np.testing.assert_allclose(without, with_scipy, rtol=1e-9)


# --- constructors -------------------------------------------------------------------------------

def test_gaussian_from_epsilon_delta():
    # Execute
    mech = GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=2.0, rng=SecureRNG(1))

    # Assert
    assert mech.sigma == pytest.approx(2 * 3.7306, rel=2e-4)
    assert (mech.epsilon, mech.delta, mech.sensitivity) == (1.0, 1e-5, 2.0)
    assert mech.noise_multiplier == pytest.approx(mech.sigma / 2.0)


def test_gaussian_from_sigma():
    # Execute
    bare = GaussianMechanism(sigma=4.0, rng=SecureRNG(1))
    with_delta = GaussianMechanism(sigma=4.0, delta=1e-5, rng=SecureRNG(1))

    # Assert
    assert bare.sigma == 4.0 and bare.epsilon is None and bare.delta is None
    assert with_delta.epsilon == pytest.approx(analytic_gaussian_epsilon(4.0, 1e-5))
    assert analytic_gaussian_sigma(with_delta.epsilon, 1e-5) == pytest.approx(4.0, rel=1e-9)


def test_laplace_from_epsilon_or_scale():
    # Execute
    by_eps = LaplaceMechanism(epsilon=0.5, sensitivity=2.0, rng=SecureRNG(1))
    by_scale = LaplaceMechanism(scale=3.0, sensitivity=1.5, rng=SecureRNG(1))

    # Assert
    assert by_eps.scale == 4.0 and by_eps.epsilon == 0.5 and by_eps.delta == 0.0
    assert by_scale.scale == 3.0 and by_scale.epsilon == 0.5


def test_dp_events():
    # Prepare
    gauss = GaussianMechanism(sigma=3.0, sensitivity=2.0, rng=SecureRNG(1))
    lap = LaplaceMechanism(scale=3.0, sensitivity=2.0, rng=SecureRNG(1))

    # Execute / Assert
    assert gauss.dp_event() == dp_event.GaussianDpEvent(1.5)
    assert lap.dp_event() == dp_event.LaplaceDpEvent(1.5)


def test_default_rng_is_os_keyed_and_seeded_one_says_so():
    # Execute
    default = GaussianMechanism(sigma=1.0)
    seeded = GaussianMechanism(sigma=1.0, rng=SecureRNG(3))

    # Assert
    assert not default.rng.seeded and "NOT for production" not in repr(default)
    assert seeded.rng.seeded and "NOT for production" in repr(seeded)


# --- release: the grid --------------------------------------------------------------------------

MECHANISMS = [
    pytest.param(lambda rng: GaussianMechanism(epsilon=1.0, delta=1e-5, rng=rng), id="gauss-eps1"),
    pytest.param(lambda rng: GaussianMechanism(sigma=0.003, sensitivity=0.01, rng=rng), id="gauss-small"),
    pytest.param(lambda rng: GaussianMechanism(sigma=1e6, sensitivity=1.0, rng=rng), id="gauss-capped"),
    pytest.param(lambda rng: LaplaceMechanism(epsilon=0.5, sensitivity=2.0, rng=rng), id="laplace"),
    pytest.param(lambda rng: LaplaceMechanism(scale=2.0**31, sensitivity=1.0, rng=rng), id="laplace-capped"),
]


@pytest.mark.parametrize("make", MECHANISMS)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 4), (2, 3, 50)])
def test_release_is_on_its_grid(make, shape):
    # Prepare
    mech = make(SecureRNG(11))
    values = np.random.default_rng(5).normal(0, 10, shape) * np.pi  # test data, not DP noise

    # Execute
    out = mech.release(values)

    # Assert
    g = mech.last_release.grid
    assert out.dtype == np.float64 and out.shape == values.shape
    assert math.frexp(g)[0] == 0.5  # a power of two
    steps = out / g  # exact: division by a power of two
    assert np.array_equal(steps, np.rint(steps))
    assert np.abs(steps).max() < 2**53


@pytest.mark.parametrize("size", [1, 2, 10, 1000, 10**6])
def test_gaussian_grid_formula(size):
    # Prepare
    mech = GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=3.0, rng=SecureRNG(1))
    expected_k = math.floor(math.log2(min(mech.sigma * 2**-20, 2**-10 * 3.0 / math.sqrt(size))))

    # Execute
    info = mech.grid(size)

    # Assert
    assert info.exponent == expected_k and info.grid == 2.0**expected_k
    assert info.effective_sensitivity == pytest.approx(3.0 + info.grid * math.sqrt(size))
    assert info.effective_noise / info.effective_sensitivity >= mech.sigma / 3.0
    assert info.effective_noise / info.effective_sensitivity == pytest.approx(mech.sigma / 3.0, rel=1e-12)
    assert 2**20 <= info.integer_noise


def test_gaussian_grid_is_capped_at_2_to_the_28_noise_steps():
    # Prepare: 2**-10 D / sqrt(d) would put sigma about 2**28.9 grid steps away
    mech = GaussianMechanism(sigma=1e3, sensitivity=1.0, rng=SecureRNG(1))

    # Execute
    info = mech.grid(10**6)

    # Assert
    assert info.exponent == math.ceil(math.log2(1e3 / 2**28))
    assert 2**27 < 1e3 / info.grid <= 2**28
    assert info.effective_noise / info.effective_sensitivity == pytest.approx(1e3, rel=1e-12)


def test_gaussian_release_refuses_noise_beyond_the_exact_sampler():
    # Prepare: sigma_int >= (sigma / D) sqrt(d) = 1e9 grid steps whatever the grid
    mech = GaussianMechanism(sigma=1e6, sensitivity=1.0, rng=SecureRNG(1))

    # Execute / Assert
    with pytest.raises(ValueError, match="too large for a float-safe release"):
        mech.release(np.zeros(10**6))
    assert mech.last_release is None


@pytest.mark.parametrize("size", [1, 5, 1000])
def test_laplace_grid_formula(size):
    # Prepare
    mech = LaplaceMechanism(epsilon=0.25, sensitivity=2.0, rng=SecureRNG(1))
    expected_k = math.floor(math.log2(min(8.0 * 2**-20, 2**-10 * 2.0 / size)))

    # Execute
    info = mech.grid(size)

    # Assert
    assert info.exponent == expected_k
    assert info.effective_sensitivity == 2.0 + info.grid * size
    assert info.effective_noise / info.effective_sensitivity == pytest.approx(8.0 / 2.0, rel=1e-12)
    assert info.effective_noise / info.effective_sensitivity >= 8.0 / 2.0


def test_laplace_grid_is_capped_at_2_to_the_40_noise_steps():
    # Prepare
    mech = LaplaceMechanism(scale=2.0**31, sensitivity=1.0, rng=SecureRNG(1))

    # Execute
    info = mech.grid(3)

    # Assert
    assert info.exponent == -9 and 2.0**31 / info.grid == 2**40
    assert info.effective_noise / info.effective_sensitivity == pytest.approx(2.0**31, rel=1e-12)


def test_laplace_release_refuses_noise_beyond_the_exact_range():
    # Prepare: scale_int >= (scale / D) d = 2**50 grid steps whatever the grid
    mech = LaplaceMechanism(scale=2.0**40, sensitivity=1.0, rng=SecureRNG(1))

    # Execute / Assert
    with pytest.raises(ValueError, match="too large for a float-safe release"):
        mech.release(np.zeros(1024))


@pytest.mark.parametrize("make", MECHANISMS)
def test_grid_does_not_depend_on_the_data(make):
    # Prepare
    mech = make(SecureRNG(2))
    inputs = [np.zeros(16), np.full(16, 1e6), np.linspace(-3.3, 7.1, 16), np.arange(16) * 2.0**-40]

    # Execute
    grids = []
    for x in inputs:
        mech.release(x)
        grids.append(mech.last_release)

    # Assert
    assert all(g == grids[0] for g in grids)
    assert isinstance(grids[0], ReleaseGrid) and grids[0] == mech.grid(16)


def test_snapping_rounds_half_to_even():
    # Prepare: the noise (>= 2**20 grid steps) hides snapping from statistics; check the
    # snapping step itself with zero noise
    info = GaussianMechanism(sigma=1.0, rng=SecureRNG(4)).grid(6)
    g = info.grid
    values = np.array([0.5, 1.5, 2.5, -2.5, 2.5000001, 7.25]) * g

    # Execute
    out = mechanisms._on_grid(values, info, np.zeros(6, np.int64))

    # Assert
    assert out.tolist() == [0.0, 2 * g, 2 * g, -2 * g, 3 * g, 7 * g]


# --- release: noise statistics ------------------------------------------------------------------

def test_gaussian_release_noise_statistics():
    # Prepare
    n = 400_000
    mech = GaussianMechanism(sigma=2.0, sensitivity=50.0, rng=SecureRNG(21))
    values = np.full(n, 10.0)

    # Execute
    out = mech.release(values)

    # Assert: mean within 5 standard errors, std within 5 standard errors of the std
    s = mech.last_release.effective_noise
    assert abs(out.mean() - 10.0) < 5 * s / math.sqrt(n)
    assert abs(out.std() - s) < 5 * s / math.sqrt(2 * n)


def test_laplace_release_noise_statistics():
    # Prepare
    n = 400_000
    mech = LaplaceMechanism(scale=3.0, sensitivity=50.0, rng=SecureRNG(22))
    values = np.full(n, -4.0)

    # Execute
    out = mech.release(values)

    # Assert: Laplace std b sqrt(2); relative standard error of the sample std sqrt(5 / n) / 2
    b = mech.last_release.effective_noise
    assert abs(out.mean() + 4.0) < 5 * b * math.sqrt(2 / n)
    assert abs(out.std() / (b * math.sqrt(2)) - 1) < 5 * math.sqrt(5 / n) / 2


def test_perturb_noise_statistics():
    # Prepare
    n = 400_000
    gauss = GaussianMechanism(sigma=2.0, rng=SecureRNG(23))
    lap = LaplaceMechanism(scale=3.0, rng=SecureRNG(24))

    # Execute
    g_out = gauss.perturb(np.zeros(n))
    l_out = lap.perturb(np.zeros(n))

    # Assert
    assert abs(g_out.std() - 2.0) < 5 * 2.0 / math.sqrt(2 * n)
    assert abs(l_out.std() / (3.0 * math.sqrt(2)) - 1) < 5 * math.sqrt(5 / n) / 2


# --- reproducibility, dtypes --------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw", [(GaussianMechanism, {"sigma": 1.5}), (LaplaceMechanism, {"scale": 1.5})])
def test_seeded_rng_reproduces_releases(cls, kw):
    # Prepare
    values = np.linspace(0, 1, 33)

    # Execute
    a = cls(**kw, rng=SecureRNG(99, stream=4)).release(values)
    b = cls(**kw, rng=SecureRNG(99, stream=4)).release(values)
    c = cls(**kw, rng=SecureRNG(99, stream=5)).release(values)

    # Assert
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls,kw", [(GaussianMechanism, {"sigma": 1.5}), (LaplaceMechanism, {"scale": 1.5})])
@pytest.mark.parametrize("dtype,expected", [(np.float32, np.float32), (np.float64, np.float64),
                                            (np.int32, np.float64), (np.float16, np.float64)])
def test_perturb_keeps_float_dtype_and_shape(cls, kw, dtype, expected):
    # Prepare
    values = np.arange(12, dtype=dtype).reshape(3, 4)
    before = values.copy()

    # Execute
    out = cls(**kw, rng=SecureRNG(1)).perturb(values)

    # Assert
    assert out.dtype == expected and out.shape == (3, 4)
    assert not np.array_equal(out, values.astype(expected))
    assert np.array_equal(values, before)  # input untouched


def test_empty_release():
    # Execute
    out = GaussianMechanism(sigma=1.0, rng=SecureRNG(1)).release(np.zeros((0, 3)))

    # Assert
    assert out.shape == (0, 3) and out.dtype == np.float64


# --- bad input ----------------------------------------------------------------------------------

BAD_REAL = [0.0, -1.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("sigma", BAD_REAL)
def test_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        GaussianMechanism(sigma=sigma)


@pytest.mark.parametrize("scale", BAD_REAL)
def test_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        LaplaceMechanism(scale=scale)


@pytest.mark.parametrize("epsilon", BAD_REAL)
def test_bad_epsilon(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        GaussianMechanism(epsilon=epsilon, delta=1e-5)
    with pytest.raises(ValueError, match="epsilon"):
        LaplaceMechanism(epsilon=epsilon)
    with pytest.raises(ValueError, match="epsilon"):
        analytic_gaussian_sigma(epsilon, 1e-5)


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 1.5, math.nan, math.inf])
def test_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        GaussianMechanism(epsilon=1.0, delta=delta)
    with pytest.raises(ValueError, match="delta"):
        GaussianMechanism(sigma=1.0, delta=delta)


@pytest.mark.parametrize("sensitivity", BAD_REAL)
def test_bad_sensitivity(sensitivity):
    with pytest.raises(ValueError, match="sensitivity"):
        GaussianMechanism(sigma=1.0, sensitivity=sensitivity)
    with pytest.raises(ValueError, match="sensitivity"):
        LaplaceMechanism(scale=1.0, sensitivity=sensitivity)


def test_over_or_under_specified_constructors():
    with pytest.raises(ValueError, match="epsilon and delta, or sigma"):
        GaussianMechanism(epsilon=1.0)
    with pytest.raises(ValueError, match="not both"):
        GaussianMechanism(epsilon=1.0, delta=1e-5, sigma=2.0)
    with pytest.raises(ValueError, match="exactly one of epsilon and scale"):
        LaplaceMechanism()
    with pytest.raises(ValueError, match="exactly one of epsilon and scale"):
        LaplaceMechanism(epsilon=1.0, scale=1.0)
    with pytest.raises(TypeError):
        GaussianMechanism(1.0, 1e-5)  # keyword-only


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("method", ["release", "perturb"])
@pytest.mark.parametrize("cls,kw", [(GaussianMechanism, {"sigma": 1.0}), (LaplaceMechanism, {"scale": 1.0})])
def test_nan_or_inf_values(bad, method, cls, kw):
    # Prepare
    mech = cls(**kw, rng=SecureRNG(1))
    values = np.array([1.0, bad, 2.0])

    # Execute / Assert
    with pytest.raises(ValueError, match="values contains NaN or Inf"):
        getattr(mech, method)(values)
    assert mech.last_release is None


@pytest.mark.parametrize("cls,kw", [(GaussianMechanism, {"sigma": 1e-3}), (LaplaceMechanism, {"scale": 1e-3})])
def test_values_too_large_for_the_grid_are_clamped_not_refused(cls, kw):
    # Prepare: a refusal that depends on the data would leak which side of the limit it is on
    mech = cls(**kw, rng=SecureRNG(1))

    # Execute: the caller (who has the data anyway) is warned; the release is not refused
    with pytest.warns(RuntimeWarning, match=r"2 value\(s\) beyond .* clamped"):
        out = mech.release([1e300, -1e300, 1.0])

    # Assert: clamped to about 2**52 grid steps, still on the grid, the small value untouched
    step = mech.grid(3).grid
    assert mech.last_release.limit == (2**52 - 1) * step
    assert np.all(np.isfinite(out))
    assert abs(out[0]) <= 2.0**52 * step * 1.01 and abs(out[1]) <= 2.0**52 * step * 1.01
    assert out[0] > 0 > out[1]
    assert np.all(out / step == np.rint(out / step))
    assert abs(out[2] - 1.0) < 1.0


def test_non_real_values_and_rng():
    with pytest.raises(TypeError, match="values"):
        GaussianMechanism(sigma=1.0).release(np.array([1 + 2j]))
    with pytest.raises(TypeError, match="rng"):
        GaussianMechanism(sigma=1.0, rng=np.random.default_rng(0))
