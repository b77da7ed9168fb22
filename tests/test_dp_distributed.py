"""The distributed discrete Gaussian (privcity.dp.distributed): exact modular sums, the rounded
norm bound, the rotation, the noise the accountant assumes, wrap-around, the RDP bound against
independent references (the Gaussian mechanism, dp-accounting's sampled Gaussian), the
parameter chooser, every ISA path, and the inputs it refuses."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib
from scipy import stats

import privcity
from privcity import _core
from privcity.aggregate import modular_sum
from privcity.dp import (Accountant, DDGParams, ddg_decode, ddg_encode, ddg_encode_parts,
                         ddg_epsilon, ddg_params, ddg_rdp, ddg_rotation_key)
from privcity.dp.accountant import ddg_round_rdp, ddg_tau
from privcity.dp.distributed import rounded_l2_bound_sq
from privcity.noise import SecureRNG

SEED = bytes(range(32))  # the round's public rotation seed
ORDERS = np.asarray(rdp_lib.DEFAULT_RDP_ORDERS, dtype=np.float64)
DELTA = 1e-5


def small_params(**kw) -> DDGParams:
    base = dict(dim=300, clip=1.0, gamma=0.01, sigma_local=7.5, bits=32, n_min=5)
    base.update(kw)
    return DDGParams(**base)


def update(dim: int, seed: int, norm: float = 3.0) -> np.ndarray:
    """A float32 update of the given norm (above the clip of 1: it gets clipped)."""
    x = np.random.default_rng(seed).standard_normal(dim)
    return (x * norm / np.linalg.norm(x)).astype(np.float32)


def clipped(x: np.ndarray, clip: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64 * min(1.0, clip / np.linalg.norm(x64))


def scaled_rotation(x: np.ndarray, params: DDGParams, seed: bytes = SEED) -> np.ndarray:
    """What the device rounds: the rotated, clipped x over gamma (float64, independent path)."""
    return _core.ddg_rotate(clipped(x, params.clip), ddg_rotation_key(seed)) / params.gamma


# --- the rotation ------------------------------------------------------------------------------

def test_padded_dim_is_the_smallest_power_of_two_or_12_or_20_times_one():
    # Prepare: every candidate of the three families up to 2**21, by brute force
    sizes = sorted({m << k for m in (1, 12, 20) for k in range(22)})

    # Execute / Assert
    for d in list(range(1, 300)) + [1000, 10_000, 16_385, 100_000, 1_000_000]:
        expected = next(s for s in sizes if s >= d)
        assert _core.ddg_padded_dim(d) == expected
        assert expected <= max(8, math.ceil(d * 4 / 3))  # padding at most a third beyond 8
    assert _core.ddg_padded_dim(10_000) == 10_240
    assert _core.ddg_padded_dim(0) == 0 and _core.ddg_padded_dim(2**31 + 1) == 0


@pytest.mark.parametrize("dim", [1, 3, 12, 20, 24, 40, 100, 1000, 10_000, 40_000])
def test_rotation_preserves_the_norm_and_its_inverse_restores_the_input(dim):
    # Prepare
    key = ddg_rotation_key(SEED)
    x = np.random.default_rng(dim).standard_normal(dim)

    # Execute
    y = _core.ddg_rotate(x, key)
    back = _core.ddg_unrotate(y, dim, key)

    # Assert
    assert y.shape == (_core.ddg_padded_dim(dim),)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-14)
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-14 * np.abs(x).max() * math.log2(4 * dim))


@pytest.mark.parametrize("padded", [4, 12, 20, 24, 40, 48, 80])
def test_rotation_matrix_is_orthogonal_with_entries_of_one_magnitude(padded):
    # Prepare: the matrix column by column (d = padded: no padding)
    key = ddg_rotation_key(SEED)
    u = np.stack([_core.ddg_rotate(np.eye(padded)[i], key) for i in range(padded)], axis=1)

    # Assert: U^T U = I, and every entry is +-1/sqrt(d') (a signed Hadamard matrix: a spike is
    # spread evenly over every coordinate, the flattening the wrap-around bound relies on)
    np.testing.assert_allclose(u.T @ u, np.eye(padded), atol=1e-13)
    np.testing.assert_allclose(np.abs(u), 1.0 / math.sqrt(padded), rtol=1e-13)


def test_rotation_signs_are_reproducible_from_the_seed_and_differ_between_seeds():
    # Prepare
    x = np.random.default_rng(1).standard_normal(1000)
    other = bytes(31) + b"\x01"

    # Execute
    a = _core.ddg_rotate(x, ddg_rotation_key(SEED))
    b = _core.ddg_rotate(x, ddg_rotation_key(bytes(range(32))))
    c = _core.ddg_rotate(x, ddg_rotation_key(other))

    # Assert
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert ddg_rotation_key(SEED) != ddg_rotation_key(other)
    assert len(ddg_rotation_key(SEED)) == 32


# --- exact integers --------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [12, 20, 32, 40, 64])
def test_modular_sum_of_devices_equals_their_rounded_vectors_plus_noise_exactly(bits):
    # Prepare
    params = small_params(bits=bits)
    n = 25

    # Execute
    parts = [ddg_encode_parts(update(params.dim, i), params, SEED, SecureRNG(b"dev", stream=i))
             for i in range(n)]
    total = modular_sum([p.words for p in parts])

    # Assert: word by word and summed, (r + noise) mod 2^bits, in integers
    mask = np.uint64(2**bits - 1)
    for p in parts:
        assert p.words.dtype == params.word_dtype
        wrapped = (p.rounded + p.noise).astype(np.uint64) & mask
        assert np.array_equal(p.words.astype(np.uint64), wrapped)
    exact = np.sum([p.rounded + p.noise for p in parts], axis=0)
    assert np.array_equal(total.astype(np.uint64) & mask, exact.astype(np.uint64) & mask)


def test_parts_path_gives_the_same_words_as_the_plain_encoder():
    # Prepare
    params = small_params()
    x = update(params.dim, 3)

    # Execute
    words, norm = ddg_encode(x, params, SEED, SecureRNG(b"same", stream=7))
    parts = ddg_encode_parts(x, params, SEED, SecureRNG(b"same", stream=7))

    # Assert
    assert np.array_equal(words, parts.words)
    assert norm == parts.norm == pytest.approx(3.0, rel=1e-6)


# --- the rounded norm -------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [4, 16, 1000])
def test_rounded_norm_never_exceeds_the_l2_bound_at_clip_times_scale_50(dim):
    # Prepare: clip / gamma = 50, the case where plain stochastic rounding overshot (issue 14)
    params = small_params(dim=dim, gamma=0.02, sigma_local=2.0)
    trials = 300

    # Execute
    runs = [ddg_encode_parts(update(dim, t), params, SEED, SecureRNG(b"norm", stream=t))
            for t in range(trials)]

    # Assert
    squares = [int(np.sum(r.rounded.astype(np.int64) ** 2)) for r in runs]
    assert max(squares) <= params.l2_bound_sq
    assert params.l2_bound ** 2 >= params.l2_bound_sq
    if dim == 4:  # here a plain draw exceeds the bound often: the redraws happened
        assert sum(r.tries > 1 for r in runs) > trials // 50


def test_rounded_norm_holds_on_a_vector_crafted_to_maximise_the_rounding():
    # Prepare: every rotated coordinate at +-1/2, the worst fraction, and no padding; a plain
    # draw's squared norm is then Binomial(1024, 1/2), above the bound 544 about 2% of the time
    params = small_params(dim=1024, gamma=1.0, clip=16.0 * (1 + 1e-9), sigma_local=2.0)
    signs = np.where(np.random.default_rng(0).random(1024) < 0.5, -0.5, 0.5)
    x = _core.ddg_unrotate(signs, 1024, ddg_rotation_key(SEED)).astype(np.float32)
    trials = 400

    # Execute
    runs = [ddg_encode_parts(x, params, SEED, SecureRNG(b"crafted", stream=t))
            for t in range(trials)]

    # Assert
    squares = np.array([np.sum(r.rounded ** 2) for r in runs])
    assert params.l2_bound_sq == 544
    assert squares.max() <= params.l2_bound_sq
    assert sum(r.tries > 1 for r in runs) >= 2  # the plain draw did exceed: redrawn
    assert squares.mean() == pytest.approx(512, abs=4)


def test_the_old_fused_kernel_exceeds_the_bound_that_the_encoder_keeps():
    # Prepare: the same +-1/2 coordinates given straight to clip_round_add_discrete_gaussian
    # (plain stochastic rounding, issue 14), with noise so small that it is always 0
    x = np.where(np.random.default_rng(2).random(1024) < 0.5, -0.5, 0.5).astype(np.float32)
    params = small_params(dim=1024, gamma=1.0, clip=16.0 * (1 + 1e-9), sigma_local=2.0)
    rng = SecureRNG(b"old")

    # Execute
    old = [rng.clip_round_add_discrete_gaussian(x, params.clip, 1.0, 2.0**-10)[0]
           for _ in range(400)]

    # Assert: the old kernel's squared norm passes Delta2^2 (no bound can be charged on it)
    squares = np.array([np.sum(r ** 2) for r in old])
    assert squares.max() > params.l2_bound_sq


@pytest.mark.parametrize("dim, trials", [(4, 4000), (1000, 2000)])
def test_conditional_rounding_stays_close_to_unbiased(dim, trials):
    # Prepare: dim 4 at clip / gamma = 50 redraws about one draw in six; dim 1000 almost never
    params = small_params(dim=dim, gamma=0.02, sigma_local=2.0)
    x = update(dim, 11)
    target = scaled_rotation(x, params)

    # Execute
    mean = np.mean([ddg_encode_parts(x, params, SEED, SecureRNG(b"bias", stream=t)).rounded
                    for t in range(trials)], axis=0)

    # Assert: where redraws are frequent the conditioning pulls the largest coordinates in a
    # little (under 1% of the norm); where they are rare the mean is the input within 5.5
    # standard errors of plain rounding (0.5 / sqrt(trials) at most)
    bias = mean - target
    if dim == 4:
        assert np.linalg.norm(bias) < 0.01 * np.linalg.norm(target)
    else:
        assert np.abs(bias).max() < 5.5 * 0.5 / math.sqrt(trials)


def test_rounding_falls_back_to_truncation_when_no_draw_meets_the_bound():
    # Prepare: every rotated coordinate at +-1/2 and a bound of (clip / gamma)^2 = 256 (plus
    # the kernel's minimal margin): a random draw has squared norm Binomial(1024, 1/2), about
    # 512, 16 standard deviations above; rounding toward zero gives 0
    key = ddg_rotation_key(SEED)
    signs = np.where(np.random.default_rng(1).random(1024) < 0.5, -0.5, 0.5)
    x = _core.ddg_unrotate(signs, 1024, key).astype(np.float32)
    bound = math.ceil(256 * (1 + 2**-30))
    rounded, noise = np.empty(1024, np.int64), np.empty(1024, np.int64)

    # Execute
    words, _, tries = SecureRNG(b"fallback").ddg_encode(
        x, rotation_key=key, clip=16.0 * (1 + 1e-9), gamma=1.0, l2_bound_sq=bound,
        sigma2=(4, 1), bits=32, rounded=rounded, noise=noise)

    # Assert: after 64 misses, truncation toward zero, within the bound; the noise still added
    assert tries == 65
    assert np.array_equal(rounded, np.zeros(1024, np.int64))
    assert np.array_equal(words, noise.astype(np.uint32))


# --- the round trip and the noise ------------------------------------------------------------

def test_decode_without_noise_recovers_the_clipped_sum_within_the_rounding_error():
    # Prepare
    params = small_params(dim=1000)
    n = 10
    xs = [update(1000, i, norm=0.5 + i % 3) for i in range(n)]

    # Execute: the words minus the noise shares, summed in the ring
    parts = [ddg_encode_parts(x, params, SEED, SecureRNG(b"rt", stream=i))
             for i, x in enumerate(xs)]
    noiseless = modular_sum([(p.words - p.noise.astype(np.uint32)) for p in parts])
    estimate = ddg_decode(noiseless, params, SEED)

    # Assert: the error is exactly the devices' rounding errors rotated back, and their squared
    # norm is at most d'/4 per device in expectation (each coordinate's variance <= 1/4)
    truth = np.sum([clipped(x, params.clip) for x in xs], axis=0)
    rounding = np.sum([p.rounded - scaled_rotation(x, params) for p, x in zip(parts, xs)], axis=0)
    key = ddg_rotation_key(SEED)
    back = params.gamma * _core.ddg_unrotate(rounding, 1000, key)
    np.testing.assert_allclose(estimate - truth, back, rtol=0, atol=1e-12)
    err = np.linalg.norm(estimate - truth)
    assert err <= 1.2 * params.gamma * math.sqrt(n * params.padded_dim / 4)


def test_decode_error_has_variance_n_sigma2_gamma2_plus_the_rounding():
    # Prepare
    params = small_params(dim=1000, gamma=0.05, sigma_local=6.0)
    n, rounds = 8, 25
    errors, expected_var = [], []

    # Execute
    for r in range(rounds):
        seed = r.to_bytes(32, "big")
        xs = [update(1000, 100 * r + i, norm=0.8) for i in range(n)]
        words = [ddg_encode(x, params, seed, SecureRNG(b"var", stream=100 * r + i))[0]
                 for i, x in enumerate(xs)]
        truth = np.sum([clipped(x, params.clip) for x in xs], axis=0)
        errors.append(ddg_decode(modular_sum(words), params, seed) - truth)
        frac = [y - np.floor(y) for y in (scaled_rotation(x, params, seed) for x in xs)]
        rounding = sum(float(np.mean(f * (1 - f))) for f in frac)
        expected_var.append(params.gamma ** 2 * (n * params.sigma_local ** 2 + rounding))
    errors = np.stack(errors) / np.sqrt(np.array(expected_var))[:, None]

    # Assert: standardised errors are N(0, 1): variance (chi-square) and shape (KS)
    m = errors.size
    chi2 = float(np.sum(errors ** 2))
    assert stats.chi2.sf(chi2, m) > 1e-4 and stats.chi2.cdf(chi2, m) > 1e-4
    assert stats.kstest(errors.ravel(), "norm").pvalue > 1e-4


def test_aggregate_noise_of_n_devices_has_the_variance_the_accountant_assumes():
    # Prepare: the accountant charges n shares of parameter sigma_local each
    params = small_params(dim=1000, sigma_local=20.0)
    n, rounds = 10, 20
    x = update(1000, 0)

    # Execute
    sums = np.concatenate([
        np.sum([ddg_encode_parts(x, params, SEED, SecureRNG(b"agg", stream=n * r + i)).noise
                for i in range(n)], axis=0) for r in range(rounds)])

    # Assert: chi-square of the variance against n sigma^2 (and not against (n - 1) sigma^2),
    # and the binned shape against the discrete Gaussian of parameter sqrt(n) sigma (tau ~ 0)
    m = sums.size
    chi2 = float(np.sum(sums.astype(np.float64) ** 2)) / (n * params.sigma_local ** 2)
    assert stats.chi2.sf(chi2, m) > 1e-4 and stats.chi2.cdf(chi2, m) > 1e-4
    wrong = chi2 * n / (n - 1)
    assert stats.chi2.sf(wrong, m) < 1e-6
    s = math.sqrt(n) * params.sigma_local
    support = np.arange(-int(12 * s), int(12 * s) + 1)
    pmf = np.exp(-support.astype(np.float64) ** 2 / (2 * s * s))
    pmf /= math.fsum(pmf)
    edges = np.concatenate(([-np.inf], np.arange(-3 * s, 3 * s + 1, s / 4), [np.inf]))
    idx = np.digitize(support, edges) - 1
    expected = np.bincount(idx, weights=pmf, minlength=len(edges) - 1) * m
    observed = np.bincount(np.digitize(sums, edges) - 1, minlength=len(edges) - 1)
    assert stats.chisquare(observed, expected).pvalue > 1e-4


# --- modular wrap-around -----------------------------------------------------------------------

def test_sums_that_wrap_on_the_way_decode_exactly_when_the_total_fits():
    # Prepare: a 12-bit ring; each device's integers near the edge, so partial sums wrap many
    # times, while the total lies inside [-2^11, 2^11)
    params = small_params(dim=1000, bits=12)
    rng = np.random.default_rng(4)
    ints = [rng.integers(-2000, 2000, params.padded_dim) for _ in range(9)]
    ints.append(rng.integers(-2000, 2000, params.padded_dim) - np.sum(ints, axis=0) % 4000)
    total = np.sum(ints, axis=0)
    total = np.clip(total, -2048, 2047)
    ints[-1] += total - np.sum(ints, axis=0)
    words = [(v.astype(np.uint64) & np.uint64(4095)).astype(np.uint32) for v in ints]

    # Execute
    estimate = ddg_decode(modular_sum(words), params, SEED)

    # Assert
    assert np.abs(np.cumsum(ints, axis=0)).max() > 4096  # the partial sums did wrap
    truth = _core.ddg_unrotate(params.gamma * total.astype(np.float64), params.dim,
                               ddg_rotation_key(SEED))
    np.testing.assert_allclose(estimate, truth, rtol=0, atol=1e-12)


def test_a_total_outside_the_ring_comes_back_off_by_a_multiple_of_the_ring():
    # Prepare: one coordinate's total is 2^11, one past the top of [-2^11, 2^11)
    params = small_params(dim=1024, bits=12)
    total = np.zeros(params.padded_dim, np.int64)
    total[5] = 2048
    words = [(total.astype(np.uint64) & np.uint64(4095)).astype(np.uint32)]

    # Execute
    estimate = ddg_decode(modular_sum(words), params, SEED)

    # Assert: read as -2^11 (wrapped)
    wrapped = total.copy()
    wrapped[5] = -2048
    truth = _core.ddg_unrotate(params.gamma * wrapped.astype(np.float64), 1024,
                               ddg_rotation_key(SEED))
    np.testing.assert_allclose(estimate, truth, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k_stddevs, rare", [(4.0, True), (1.0, False)])
def test_chooser_gamma_keeps_wraparound_rare_for_n_expected(k_stddevs, rare):
    # Prepare: n_expected devices with the same update (the aggregate norm n C of the bound)
    n, rounds = 40, 6
    params = ddg_params(dim=256, clip=1.0, epsilon=4.0, delta=DELTA, sample_rate=0.05,
                        rounds=50, n_min=30, n_expected=n, bits=14, k_stddevs=k_stddevs)
    x = update(256, 8)
    half = 2 ** (params.bits - 1)

    # Execute: the integer totals, before any wrap
    wrapped = 0
    for r in range(rounds):
        seed = r.to_bytes(32, "big")
        parts = [ddg_encode_parts(x, params, seed, SecureRNG(b"wrap", stream=n * r + i))
                 for i in range(n)]
        total = np.sum([p.rounded + p.noise for p in parts], axis=0)
        wrapped += int(np.sum((total < -half) | (total >= half)))

    # Assert: a sub-Gaussian tail bound 2 exp(-k^2/2) on the fraction of wrapped coordinates
    fraction = wrapped / (rounds * params.padded_dim)
    if rare:
        assert fraction <= 2 * math.exp(-k_stddevs ** 2 / 2)
    else:
        assert fraction > 0.05


# --- the privacy bound ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 10, 100])
def test_unsampled_rdp_equals_the_gaussian_mechanism_when_tau_is_zero(n):
    # Prepare: sigma large enough that tau underflows to 0 (then the L1 term drops out)
    sigma, l2 = 50.0, 7.0
    assert ddg_tau(sigma, n) == 0.0

    # Execute
    ours = ddg_round_rdp(ORDERS, l2_bound=l2, l1_bound=l2 * 30, sigma=sigma, n=n, dim=1024, q=1.0)

    # Assert: alpha / (2 z^2), z = sqrt(n) sigma / Delta2
    z = math.sqrt(n) * sigma / l2
    np.testing.assert_allclose(ours, ORDERS / (2 * z * z), rtol=1e-14)


def test_tau_and_the_l1_term_only_ever_add_privacy_loss():
    # Prepare: a small sigma, where tau is not negligible
    kw = dict(l2_bound=20.0, sigma=0.6, n=50, dim=256)

    # Execute
    with_tau = ddg_round_rdp(ORDERS, l1_bound=200.0, **kw)
    gaussian = ORDERS / 2 * (20.0 / (math.sqrt(50) * 0.6)) ** 2

    # Assert
    assert ddg_tau(0.6, 50) > 1e-3
    assert np.all(with_tau > gaussian)


@pytest.mark.parametrize("q", [0.001, 0.01, 0.1])
@pytest.mark.parametrize("z", [0.8, 1.5, 3.0])
def test_subsampled_bound_is_above_and_near_dp_accountings_sampled_gaussian(q, z):
    # Prepare: tau = 0 (n = 1, huge sigma): the round is a sampled Gaussian of multiplier z.
    # At integer orders dp-accounting's value is exact; at fractional ones it is a numerical
    # series that can exceed the exact value (at q=0.1, z=2 its order 1.9 tops its order 2).
    ints = np.arange(2, 257, dtype=np.float64)
    sigma = 1e3

    # Execute
    ours = ddg_round_rdp(ints, l2_bound=sigma / z, l1_bound=sigma / z, sigma=sigma, n=1, dim=64,
                         q=q)
    exact = rdp_lib._compute_rdp_poisson_subsampled_gaussian(q, z, ints)

    # Assert: never below; equal at order 2 (Zhu and Wang's bound is tight there); above by at
    # most ln(3) / (alpha - 1) (their bound weighs the terms l >= 3 of the exact binomial
    # expansion by 3), and so is epsilon after 100 rounds
    assert np.all(ours >= exact * (1 - 1e-12))
    assert np.all(ours <= exact + math.log(3) / (ints - 1) + 1e-12)
    assert ours[0] == pytest.approx(math.log1p(q * q * math.expm1(1 / z ** 2)), rel=1e-10)
    eps_ours = rdp_lib.compute_epsilon(ints, 100 * ours, DELTA)[0]
    eps_exact = rdp_lib.compute_epsilon(ints, 100 * exact, DELTA)[0]
    assert eps_exact * (1 - 1e-12) <= eps_ours <= 2.1 * eps_exact


def test_rdp_at_fractional_orders_lies_between_its_integer_neighbours():
    # Prepare
    params = small_params(dim=1000, sample_rate=0.02, sigma_local=40.0)

    # Execute
    rdp = ddg_rdp(params, [2.0, 2.5, 3.0])

    # Assert: non-decreasing in the order, at most the ceiling's value
    assert rdp[0] <= rdp[1] <= rdp[2]


def test_accountant_epsilon_equals_a_direct_recomputation():
    # Prepare
    params = small_params(dim=1000, sample_rate=0.02, sigma_local=40.0)
    acc = Accountant(epsilon_budget=100.0, delta=DELTA)

    # Execute: rounds with varying survivors, and a DP-FedAvg round beside them
    for n in (5, 7, 7, 9):
        acc.record_ddg_round(params, n)
    acc.record_round(q=0.02, z=1.2)

    # Assert
    total = sum(ddg_round_rdp(ORDERS, l2_bound=params.l2_bound, l1_bound=params.l1_bound,
                              sigma=params.sigma_local, n=n, dim=params.padded_dim, q=0.02,
                              presence=True)
                for n in (5, 7, 7, 9))
    total = total + rdp_lib._compute_rdp_poisson_subsampled_gaussian(0.02, 1.2, ORDERS)
    direct = rdp_lib.compute_epsilon(ORDERS, total, DELTA)[0]
    assert acc.epsilon() == pytest.approx(direct, rel=1e-12)
    assert acc.rounds == 5 and len(acc.history()) == 5
    assert acc.history() == sorted(acc.history())


def test_rounds_recorded_one_by_one_equal_rounds_at_once():
    # Prepare
    params = small_params(sample_rate=0.05, sigma_local=20.0)
    one = Accountant(epsilon_budget=50.0, delta=DELTA)
    many = Accountant(epsilon_budget=50.0, delta=DELTA)

    # Execute
    for _ in range(4):
        one.record_ddg_round(params, 6)
    many.record_ddg_rounds(params, 6, 4)

    # Assert
    assert one.epsilon() == pytest.approx(many.epsilon(), rel=1e-12)
    assert one.rounds == many.rounds == 4
    direct = ddg_epsilon(params, rounds=4, delta=DELTA, n=6)
    assert direct == pytest.approx(one.epsilon(), rel=1e-12)


def test_accountant_refuses_a_ddg_round_past_the_budget_and_records_nothing():
    # Prepare
    params = small_params(sample_rate=0.05, sigma_local=60.0)
    acc = Accountant(epsilon_budget=50.0, delta=DELTA)
    acc.record_ddg_round(params, 5)
    before = (acc.epsilon(), acc.rounds, acc.history())

    # Execute
    with pytest.raises(privcity.PrivacyBudgetExceeded) as info:
        acc.record_ddg_rounds(params, 5, 10_000)

    # Assert
    assert (acc.epsilon(), acc.rounds, acc.history()) == before
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.event == info.value.event  # the DDG event survives pickling (MPI metadata)


def test_server_epsilon_without_sampling_exceeds_the_sampled_one_when_shares_are_many():
    # Prepare: 400 shares in 320 dimensions: a device's own share barely moves the variance
    params = small_params(sample_rate=0.01, sigma_local=20.0, n_min=400)
    users = Accountant(epsilon_budget=1e9, delta=DELTA)
    servers = Accountant(epsilon_budget=1e9, delta=DELTA)

    # Execute
    users.record_ddg_rounds(params, 400, 100)
    servers.record_ddg_rounds(params, 400, 100, sampled=False)

    # Assert
    assert servers.epsilon() > 5 * users.epsilon()
    assert servers.epsilon() == pytest.approx(
        ddg_epsilon(params, rounds=100, delta=DELTA, n=400, sampled=False), rel=1e-12)


def test_a_device_s_own_share_leaving_the_sum_is_charged_to_the_sampled_epsilon():
    # Prepare: 5 shares in 320 dimensions: the sum's variance tells whether a device's share is
    # in it (add or remove), however little its update weighs
    params = small_params(sample_rate=0.01, sigma_local=1e6, n_min=5)
    orders = np.array([2.0, 4.0, 8.0])

    # Execute
    kept = ddg_round_rdp(orders, l2_bound=params.l2_bound, l1_bound=params.l1_bound,
                         sigma=params.sigma_local, n=5, dim=params.padded_dim)
    leaves = ddg_round_rdp(orders, l2_bound=0.0, l1_bound=0.0, sigma=params.sigma_local, n=5,
                           dim=params.padded_dim, presence=True)

    # Assert: no shift at all (l2 bound 0), yet the presence costs more than the update does
    # with the share kept; the closed form is the Gaussians' Renyi divergence, by quadrature
    assert np.all(leaves > 10 * kept)
    from scipy import integrate, stats
    a, n = 2.0, 5
    p = stats.norm(0, math.sqrt(n)).logpdf
    q = stats.norm(0, math.sqrt(n - 1)).logpdf
    one, _ = integrate.quad(lambda t: math.exp(a * p(t) + (1 - a) * q(t)), -80, 80)
    other, _ = integrate.quad(lambda t: math.exp(a * q(t) + (1 - a) * p(t)), -80, 80)
    per_coordinate = max(math.log(one), math.log(other)) / (a - 1)
    assert leaves[0] == pytest.approx(
        ddg_round_rdp(np.array([2.0]), l2_bound=0.0, l1_bound=0.0, sigma=params.sigma_local,
                      n=5, dim=1, presence=True)[0] * params.padded_dim, rel=1e-12)
    assert ddg_round_rdp(np.array([2.0]), l2_bound=0.0, l1_bound=0.0, sigma=1e6, n=5, dim=1,
                         presence=True, q=1.0)[0] == pytest.approx(per_coordinate, rel=1e-9)


def test_pld_accountant_refuses_ddg_rounds_with_a_clear_message():
    # Prepare
    acc = Accountant(epsilon_budget=10.0, delta=DELTA, method="pld")

    # Execute / Assert
    with pytest.raises(ValueError, match="method='rdp'"):
        acc.record_ddg_round(small_params(), 5)
    assert acc.events == ()


def test_existing_events_compose_as_before_beside_ddg_support():
    # Prepare: a DP-FedAvg round, composed by privcity and by dp-accounting alone
    acc = Accountant(epsilon_budget=10.0, delta=DELTA)

    # Execute
    eps = acc.record_rounds(q=0.01, z=1.1, n=1000)

    # Assert
    ref = rdp_lib.RdpAccountant()
    ref.compose(dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(0.01, dp_event.GaussianDpEvent(1.1)), 1000))
    assert eps == ref.get_epsilon(DELTA)


# --- the chooser -------------------------------------------------------------------------------

def test_chooser_meets_its_epsilon_and_one_percent_less_noise_does_not():
    # Prepare / Execute
    params = ddg_params(dim=2000, clip=0.5, epsilon=2.0, delta=DELTA, sample_rate=0.02,
                        rounds=200, n_min=400, n_expected=600, bits=18)
    eps = ddg_epsilon(params, rounds=200, delta=DELTA)
    weaker = dataclasses.replace(params, sigma_local=params.sigma_local * 0.99)

    # Assert
    assert 2.0 * (1 - 1e-4) < eps <= 2.0
    assert ddg_epsilon(weaker, rounds=200, delta=DELTA) > 2.0
    assert params.describe()["wrap_stddevs_at_n_expected"] >= 4.0
    assert params.padded_dim == 2048 and params.word_dtype == np.uint32


def test_chooser_never_takes_a_grid_finer_than_the_exact_integers_allow():
    # Prepare / Execute: 32 bits would allow a scale far past 2^24
    params = ddg_params(dim=1000, clip=1.0, epsilon=1.0, delta=DELTA, sample_rate=0.01,
                        rounds=100, n_min=200, n_expected=300, bits=32)

    # Assert
    assert params.clip / params.gamma <= 2**24 * (1 + 1e-6)
    assert params.sigma_local <= 2**20 * (1 + 1e-6)
    assert ddg_epsilon(params, rounds=100, delta=DELTA) <= 1.0


def test_chooser_refuses_a_ring_too_small_for_the_noise():
    with pytest.raises(ValueError, match="bits=4 is too small"):
        ddg_params(dim=1000, clip=1.0, epsilon=1.0, delta=DELTA, sample_rate=0.01, rounds=100,
                   n_min=20, n_expected=1000, bits=4)


@pytest.mark.parametrize("bad, match", [
    (dict(dim=0), "dim"), (dict(clip=-1.0), "clip"), (dict(epsilon=0.0), "epsilon"),
    (dict(delta=1.0), "delta"), (dict(sample_rate=0.0), "sample_rate"), (dict(rounds=0), "rounds"),
    (dict(n_min=0), "n_min"), (dict(n_expected=5), "n_expected"), (dict(bits=65), "bits"),
    (dict(epsilon=1e-9), "out of reach"),
    (dict(dim=10_000, epsilon=4.0), "out of reach with n_min=10 noise shares"),
    (dict(bits=1), "bits"), (dict(beta=1.0), "beta"), (dict(k_stddevs=-1.0), "k_stddevs"),
])
def test_chooser_refuses_bad_parameters(bad, match):
    kw = dict(dim=100, clip=1.0, epsilon=1.0, delta=DELTA, sample_rate=0.1, rounds=10, n_min=10,
              n_expected=20, bits=20)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        ddg_params(**kw)


def test_describe_is_json_ready_and_names_what_the_report_needs():
    # Prepare
    params = small_params(sample_rate=0.1)

    # Execute
    text = json.dumps(params.describe())

    # Assert
    d = json.loads(text)
    for key in ("gamma", "sigma_local", "bits", "l2_bound", "l1_bound", "padded_dim", "beta",
                "n_min", "tau_at_n_min", "noise_multiplier_at_n_min"):
        assert key in d
    assert d["l2_bound_sq"] == rounded_l2_bound_sq(100.0, 320, math.exp(-0.5))
    assert d["tau_at_n_min"] == params.tau == ddg_tau(params.sigma_local, params.n_min)
    assert params.l1_bound == params.l2_bound * min(math.sqrt(320), params.l2_bound)


# --- every ISA path ---------------------------------------------------------------------------

ISA_OUTPUTS = r'''
import hashlib, json
import numpy as np
import privcity
from privcity import _core
from privcity.dp import DDGParams, ddg_encode, ddg_encode_parts, ddg_decode, ddg_rotation_key
from privcity.noise import SecureRNG

def h(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

out = {}
for dim, bits in ((10_000, 20), (1_001, 40), (300, 32), (5, 16)):
    p = DDGParams(dim=dim, clip=1.0, gamma=0.003, sigma_local=11.3, bits=bits, n_min=3)
    x = np.linspace(-1, 1, dim, dtype=np.float32)
    e = ddg_encode_parts(x, p, b"s" * 32, SecureRNG(b"isa", stream=dim))
    out[f"{dim}"] = [h(e.words), h(e.rounded), h(e.noise), e.tries,
                     h(ddg_decode(e.words, p, b"s" * 32))]
    out[f"rot{dim}"] = h(_core.ddg_rotate(x.astype(np.float64), ddg_rotation_key(b"s" * 32)))
print(json.dumps({"simd": _core.simd_isa_selected(), "outputs": out}))
'''


@pytest.mark.parametrize("isa", ["none", "aesni", "vaes512", "armv8"])
def test_seeded_encodings_are_bit_identical_on_every_isa_path(isa, run_python):
    # Prepare
    if isa != "none" and isa not in privcity.aes_implementations():
        pytest.skip(f"this CPU cannot run the {isa!r} path")

    # Execute
    forced = run_python(ISA_OUTPUTS, isa=isa)
    native = run_python(ISA_OUTPUTS)

    # Assert
    assert forced.returncode == 0, forced.stderr
    a, b = json.loads(forced.stdout), json.loads(native.stdout)
    assert a["simd"] == {"none": 0, "aesni": 1, "vaes512": 2, "armv8": 1}[isa]  # armv8: neon
    assert a["outputs"] == b["outputs"]


# --- refused input ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_encoder_refuses_non_finite_updates(value):
    params = small_params()
    x = update(params.dim, 0)
    x[17] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        ddg_encode(x, params, SEED, SecureRNG(b"bad"))


@pytest.mark.parametrize("x, error, match", [
    (np.zeros(300, np.float64), TypeError, "float32"),
    (np.zeros((10, 30), np.float32), ValueError, r"shape \(300,\)"),
    (np.zeros(299, np.float32), ValueError, r"shape \(300,\)"),
    ([0.0] * 300, TypeError, "numpy array"),
])
def test_encoder_refuses_wrong_dtype_and_shape(x, error, match):
    with pytest.raises(error, match=match):
        ddg_encode(x, small_params(), SEED, SecureRNG(b"bad"))


def test_encoder_refuses_a_numpy_generator_and_a_bad_seed():
    x = update(300, 0)
    with pytest.raises(TypeError, match="SecureRNG"):
        ddg_encode(x, small_params(), SEED, np.random.default_rng(0))
    with pytest.raises(ValueError, match="16 to 64 bytes"):
        ddg_encode(x, small_params(), b"short", SecureRNG(b"bad"))
    with pytest.raises(TypeError, match="bytes-like"):
        ddg_encode(x, small_params(), 12345, SecureRNG(b"bad"))


def test_decoder_refuses_a_sum_of_the_wrong_dtype_or_length():
    params = small_params()
    with pytest.raises(ValueError, match="uint32 of shape"):
        ddg_decode(np.zeros(params.padded_dim, np.uint64), params, SEED)
    with pytest.raises(ValueError, match="uint32 of shape"):
        ddg_decode(np.zeros(params.dim, np.uint32), params, SEED)


@pytest.mark.parametrize("bad, match", [
    (dict(clip=0.0), "clip"), (dict(gamma=-1.0), "gamma"), (dict(sigma_local=0.0), "sigma_local"),
    (dict(bits=1), "bits"), (dict(bits=65), "bits"), (dict(n_min=0), "n_min"),
    (dict(sample_rate=1.5), "sample_rate"), (dict(beta=0.0), "beta"), (dict(dim=0), "dim"),
    (dict(gamma=1e-9), "too large for exact integers"),
    (dict(dim=1, gamma=2.0**-24, beta=1 - 1e-12), "no room"),
])
def test_params_refuse_values_out_of_range(bad, match):
    with pytest.raises(ValueError, match=match):
        small_params(**bad)


def test_kernel_refuses_a_bound_below_the_clip_and_writes_nothing():
    # Prepare
    out = np.full(320, 7, np.uint32)

    # Execute / Assert: the bound must cover (clip / gamma)^2, or truncation could not meet it
    with pytest.raises(ValueError, match="l2_bound_sq"):
        SecureRNG(b"k").ddg_encode(update(300, 0), rotation_key=ddg_rotation_key(SEED), clip=1.0,
                                   gamma=0.01, l2_bound_sq=9999, sigma2=(4, 1), bits=32, out=out)
    assert np.all(out == 7)


def test_seed_derivation_is_hkdf_of_the_public_seed():
    # Prepare
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    # Execute
    ref = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"privcity.dp.ddg rotation v1",
               info=b"").derive(SEED)

    # Assert
    assert ddg_rotation_key(SEED) == ref
    assert hashlib.sha256(ref).digest() != hashlib.sha256(SEED).digest()


@pytest.mark.parametrize("dim", [60, 10_000, 4_000_000])
def test_the_chooser_s_grid_adds_at_most_1_in_16384_to_the_squared_sensitivity(dim):
    from privcity.dp.distributed import grid_scaled_clip

    # Prepare
    padded = _core.ddg_padded_dim(dim)
    c = grid_scaled_clip(padded)

    # Execute: the paper's bound on the rounded squared norm, beta -> 1 (no tail term)
    inflation = (c * c + padded / 4.0) / (c * c)

    # Assert: no finer than needed (the noise integers stay small for the sampler), and the
    # rounding's share of the sensitivity negligible
    assert 2.0 ** 16 <= c <= 2.0 ** 24
    assert inflation - 1 <= 1 / 16384 + 1e-12


def test_the_chooser_takes_the_coarse_grid_when_the_ring_has_room():
    # Prepare / Execute: 32 bits, a small model: the ring would allow C/gamma = 2^24
    params = ddg_params(dim=60, clip=1.0, epsilon=4.0, delta=DELTA, sample_rate=0.1, rounds=40,
                        n_min=72, n_expected=148, bits=32)

    # Assert: C/gamma = 2^16 and a noise of about 1e4 integer units, not 2^20
    assert params.clip / params.gamma == pytest.approx(2.0 ** 16, rel=1e-6)
    assert 1e3 < params.sigma_local < 1e5
    assert ddg_epsilon(params, rounds=40, delta=DELTA) <= 4.0


@pytest.mark.parametrize("kw, error, match", [
    (dict(n=0), ValueError, "n must be >= 1"), (dict(n=50.5), TypeError, "n must be an int"),
    (dict(sampled="no"), TypeError, "sampled must be True or False"),
])
def test_ddg_epsilon_refuses_shares_and_flags_that_are_not_what_they_claim(kw, error, match):
    # ("no" once passed as true: the amplified, smaller epsilon, against the servers)
    params = small_params(n_min=200)
    with pytest.raises(error, match=match):
        ddg_epsilon(params, rounds=10, delta=DELTA, **kw)
    with pytest.raises(TypeError, match="DDGParams"):
        ddg_epsilon(None, rounds=10, delta=DELTA)
