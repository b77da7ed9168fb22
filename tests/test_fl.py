"""privcity.fl: strategies against direct computations, the server's defences against bad
updates, and the deterministic cohort."""
from __future__ import annotations

import numpy as np
import pytest

from privcity import PrivacyBudgetExceeded
from privcity.aggregate import median
from privcity.dp import Accountant
from privcity.fl import DPFedAvg, FedAvg, round_cohort
from privcity.noise import SecureRNG


def dp(**kw) -> DPFedAvg:
    args = dict(inner=FedAvg(), clip=1.0, noise_multiplier=1.0, sample_rate=0.1,
                population=100, accountant=Accountant(epsilon_budget=50.0, delta=1e-5),
                rng=SecureRNG(b"fl-tests", stream=1))
    args.update(kw)
    return DPFedAvg(**args)


def test_fedavg_is_the_weighted_mean_step():
    # Prepare
    rng = np.random.default_rng(0)
    params = rng.standard_normal(50).astype(np.float32)
    updates = rng.standard_normal((7, 50)).astype(np.float32)
    w = rng.integers(1, 20, 7).astype(np.float64)

    # Execute
    new = FedAvg(server_lr=0.5).aggregate(params, updates, w, round_index=0)

    # Assert
    expected = params + 0.5 * (w[:, None] * updates.astype(np.float64)).sum(0) / w.sum()
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2])
def test_krum_with_too_few_updates_falls_back_to_the_median(k):
    # Prepare
    updates = np.arange(4 * k, dtype=np.float32).reshape(k, 4)

    # Execute
    new = FedAvg(aggregator="krum").aggregate(np.zeros(4, np.float32), updates, np.ones(k),
                                              round_index=0)

    # Assert
    np.testing.assert_array_equal(new, median(updates))


def test_dp_fedavg_bounds_what_one_unclipped_device_can_do():
    # Prepare: one device sends a huge update it did not clip
    params = np.zeros(20, np.float32)
    huge = np.full((1, 20), 1e30, np.float32)
    strategy = dp(noise_multiplier=1e-3,  # tiny noise: the step is the clipped mean
                  accountant=Accountant(epsilon_budget=1e9, delta=1e-5))

    # Execute
    new = strategy.aggregate(params, huge, np.ones(1), round_index=0)

    # Assert: the server clipped the row to C = 1 before summing; divided by q N = 10
    assert np.linalg.norm(new) == pytest.approx(0.1, rel=0.01)


def test_dp_fedavg_noise_has_the_calibrated_spread_and_is_accounted():
    # Prepare
    strategy = dp(noise_multiplier=2.0)
    params = np.zeros(20000, np.float32)

    # Execute: no device reports, so the step is noise alone: std z C / (q N) = 0.2
    new = strategy.aggregate(params, np.zeros((0, 20000), np.float32), np.ones(0),
                             round_index=0)

    # Assert
    assert new.std() == pytest.approx(0.2, rel=0.03)
    assert strategy.accountant.rounds == 1
    assert strategy.accountant.epsilon() > 0


def test_dp_fedavg_refuses_a_round_past_the_budget_before_it_runs():
    # Prepare
    strategy = dp(noise_multiplier=0.5, accountant=Accountant(epsilon_budget=1.0, delta=1e-5))

    # Execute / Assert
    with pytest.raises(PrivacyBudgetExceeded):
        strategy.check_budget()
    assert strategy.accountant.rounds == 0


def test_dp_fedavg_needs_a_mean_inner_strategy():
    # Execute / Assert
    with pytest.raises(ValueError, match="mean"):
        dp(inner=FedAvg(aggregator="median"))


def test_cohort_depends_only_on_seed_round_and_device():
    # Prepare
    devices = np.arange(10_000)

    # Execute
    sampled, reporting = round_cohort(7, 3, devices, sample_rate=0.1, dropout=0.25)
    s2, r2 = round_cohort(7, 3, devices[5000:], sample_rate=0.1, dropout=0.25)
    other, _ = round_cohort(7, 4, devices, sample_rate=0.1, dropout=0.25)

    # Assert: a block sees the same decisions as the whole; rates as asked
    assert np.array_equal(sampled[5000:], s2) and np.array_equal(reporting[5000:], r2)
    assert sampled.mean() == pytest.approx(0.1, abs=0.01)
    assert reporting.sum() / sampled.sum() == pytest.approx(0.75, abs=0.05)
    assert not np.array_equal(sampled, other)
    assert not (reporting & ~sampled).any()
