"""privcity.attacks membership inference and its figures: the ROC helpers against independent
computations, each attack on a case with a known answer (an overfit model and a planted outlier,
a mislabeled canary only calibrated attacks see, a DP-FedAvg model at epsilon 0.1 with its
noise-free twin), device-level scores, and bad input."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from privcity.attacks import (
    calibrated_scores,
    confidence_statistic,
    device_scores,
    evaluate_scores,
    example_losses,
    lira_offline_scores,
    loss_threshold_scores,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
    train_reference_models,
)
from privcity.dp import Accountant, clip_l2_rows
from privcity.models import (
    MLP,
    LinearRegression,
    SoftmaxRegression,
    train_centralized,
    train_many,
)
from privcity.noise import SecureRNG

# --- the ROC helpers ------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(pos=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
       neg=st.lists(st.integers(-5, 5), min_size=1, max_size=40))
def test_auc_is_the_mann_whitney_statistic_ties_counting_one_half(pos, neg):
    # Prepare: small integers, so ties are frequent
    expected = mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg))

    # Execute
    result = evaluate_scores(np.array(pos, float), np.array(neg, float))

    # Assert
    assert math.isclose(result.auc, expected, abs_tol=1e-12)
    assert result.fpr[0] == result.tpr[0] == 0.0 and result.fpr[-1] == result.tpr[-1] == 1.0


def test_the_roc_of_a_hand_built_case():
    # Prepare: members 3, 2, 2, 0; non-members 2, 1, 1, 0
    members, nonmembers = np.array([3.0, 2, 2, 0]), np.array([2.0, 1, 1, 0])

    # Execute
    fpr, tpr, thresholds = roc_curve(members, nonmembers)
    result = evaluate_scores(members, nonmembers, fprs=[0.25, 0.5])

    # Assert: thresholds inf, 3, 2, 1, 0; the tie at 2 moves both rates at once
    assert thresholds.tolist() == [math.inf, 3.0, 2.0, 1.0, 0.0]
    assert fpr.tolist() == [0.0, 0.0, 0.25, 0.75, 1.0]
    assert tpr.tolist() == [0.0, 0.25, 0.75, 0.75, 1.0]
    # pairs won: 3 > all 4; each 2 beats 1, 1, 0 and ties 2 (3.5); 0 ties 0 (0.5): 11.5 / 16
    assert result.auc == pytest.approx(11.5 / 16)
    assert result.advantage == pytest.approx(0.5)  # at threshold 2: 0.75 - 0.25
    assert result.tpr_at == {0.25: 0.75, 0.5: 0.75}


def test_tpr_at_fpr_interpolates_linearly_between_the_thresholds_around_it():
    # Prepare: 20 non-members, two tied at the threshold that gives (0.1, 0.8)
    fpr, tpr = np.array([0.0, 0.0, 0.1, 1.0]), np.array([0.0, 0.5, 0.8, 1.0])

    # Execute
    halfway = tpr_at_fpr(fpr, tpr, 0.05, 20)
    on_point = tpr_at_fpr(fpr, tpr, 0.1, 20)

    # Assert: half the time each threshold: FPR 0.05, TPR 0.65
    assert halfway == pytest.approx(0.65) and on_point == pytest.approx(0.8)


def test_tpr_at_fpr_is_nan_with_fewer_nonmembers_than_one_over_the_rate():
    # Prepare
    rng = np.random.default_rng(0)
    members = rng.normal(1.0, 1.0, 50)

    # Execute
    few = evaluate_scores(members, rng.normal(0.0, 1.0, 99), fprs=[0.01, 0.001])
    enough = evaluate_scores(members, rng.normal(0.0, 1.0, 100), fprs=[0.01, 0.001])

    # Assert
    assert math.isnan(few.tpr_at[0.01]) and math.isnan(few.tpr_at[0.001])
    assert 0.0 <= enough.tpr_at[0.01] <= 1.0 and math.isnan(enough.tpr_at[0.001])


def test_device_scores_are_the_mean_of_each_devices_records():
    # Execute
    means = device_scores(np.array([1.0, 3.0, -2.0, 4.0, 5.0, 6.0]), np.array([0, 2, 3, 6]))

    # Assert
    assert means.tolist() == [2.0, -2.0, 5.0]


# --- known answers --------------------------------------------------------------------------------

F_WIDE, CLASSES = 400, 3


@functools.lru_cache(maxsize=None)
def overfit_case():
    """30 members (the first an outlier, 6 times the spread) with random labels, memorised by a
    softmax model of 400 features; 1,000 fresh non-members from the same distribution."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1030, F_WIDE)).astype(np.float32)
    y = rng.integers(0, CLASSES, 1030)
    X[0] *= 6.0
    model = SoftmaxRegression(n_features=F_WIDE, n_classes=CLASSES)
    params = train_centralized(model, model.init_params(0), X[:30], y[:30], epochs=100,
                               batch_size=8, lr=0.1, seed=0)
    return model, params, (X[:30], y[:30]), (X[30:], y[30:])


def test_the_loss_threshold_attack_finds_the_members_of_an_overfit_model_and_its_outlier():
    # Prepare
    model, params, (Xm, ym), (Xn, yn) = overfit_case()

    # Execute
    members = loss_threshold_scores(model, params, Xm, ym)
    nonmembers = loss_threshold_scores(model, params, Xn, yn)
    result = evaluate_scores(members, nonmembers)

    # Assert (measured: AUC 1.0, TPR 1.0 at both rates)
    assert result.auc >= 0.99 and result.tpr_at[0.01] >= 0.9 and result.tpr_at[0.001] >= 0.5
    assert result.advantage >= 0.9
    assert members[0] > nonmembers.max()  # the planted outlier is ranked a member
    # the losses are the model's own (its mean loss is their mean)
    assert np.mean(-members) == pytest.approx(model.loss(params, Xm, ym), rel=1e-9, abs=1e-12)



def test_the_attacks_take_an_mlp_and_find_its_memorised_members_too():
    # Prepare
    _, _, (Xm, ym), (Xn, yn) = overfit_case()
    model = MLP(n_features=F_WIDE, hidden=16, n_outputs=CLASSES, task_type="classification")
    params = train_centralized(model, model.init_params(0), Xm, ym, epochs=100, batch_size=8,
                               lr=0.1, seed=0)

    # Execute
    result = evaluate_scores(loss_threshold_scores(model, params, Xm, ym),
                             loss_threshold_scores(model, params, Xn, yn))

    # Assert (measured: AUC 0.9999)
    assert result.auc >= 0.99

F_BLOB = 10
CENTERS = np.random.default_rng(42).normal(0.0, 1.5, (CLASSES, F_BLOB))
BLOB_TRAINING = {"epochs": 100, "batch_size": 10, "lr": 0.1}


def blobs(n: int, rng: np.random.Generator):
    y = rng.integers(0, CLASSES, n)
    return (CENTERS[y] + rng.normal(size=(n, F_BLOB))).astype(np.float32), y


@functools.lru_cache(maxsize=None)
def canary_case():
    """A model that generalises (three Gaussian classes, 100 members) trained with and without a
    canary: a point 4 from class 0's centre labelled 1. 16 shadow models on 101 population records
    each, 1,000 non-members."""
    rng = np.random.default_rng(0)
    Xm, ym = blobs(100, rng)
    u = rng.normal(size=F_BLOB)
    canary = (CENTERS[0] + 4.0 * u / np.linalg.norm(u)).astype(np.float32)[None, :]
    Xin, yin = np.vstack([Xm, canary]), np.r_[ym, 1]
    nonmembers = blobs(1000, rng)
    population = blobs(3000, rng)
    model = SoftmaxRegression(n_features=F_BLOB, n_classes=CLASSES)
    with_canary = train_centralized(model, model.init_params(0), Xin, yin, seed=0, **BLOB_TRAINING)
    without = train_centralized(model, model.init_params(0), Xm, ym, seed=0, **BLOB_TRAINING)
    shadows = train_reference_models(model, *population, n_models=16, subset_size=101, seed=1,
                                     **BLOB_TRAINING)
    return model, with_canary, without, shadows, (Xin, yin), nonmembers


def canary_attacks(model, shadows):
    return {
        "loss": lambda p, X, y: loss_threshold_scores(model, p, X, y),
        "calibrated": lambda p, X, y: calibrated_scores(model, p, shadows, X, y),
        "lira": lambda p, X, y: lira_offline_scores(model, p, shadows, X, y),
        "lira_global": lambda p, X, y: lira_offline_scores(model, p, shadows, X, y,
                                                           global_variance=True),
    }


def test_calibrated_attacks_rank_a_planted_canary_first_where_the_loss_threshold_misses_it():
    # Prepare
    model, with_canary, without, shadows, (Xin, yin), (Xn, yn) = canary_case()
    canary, label = Xin[-1:], yin[-1:]

    # Execute: the share of non-members scoring at least the canary, in and out of training
    above = {}
    for name, attack in canary_attacks(model, shadows).items():
        nonmembers = attack(with_canary, Xn, yn)
        above[name] = (np.mean(nonmembers >= attack(with_canary, canary, label)[0]),
                       np.mean(attack(without, Xn, yn) >= attack(without, canary, label)[0]))

    # Assert (measured: 90.5% of non-members score at least the member canary by loss, none by
    # the others; out of training LiRA puts 34% above it)
    assert above["loss"][0] > 0.5
    for name in ("calibrated", "lira", "lira_global"):
        assert above[name][0] == 0.0, name
    assert above["lira"][1] > 0.05 and above["lira_global"][1] > 0.05


def test_lira_scores_of_nonmembers_are_centred_like_a_standard_score():
    # Prepare
    model, with_canary, _, shadows, _, (Xn, yn) = canary_case()

    # Execute
    z = lira_offline_scores(model, with_canary, shadows, Xn, yn)
    z_global = lira_offline_scores(model, with_canary, shadows, Xn, yn, global_variance=True)

    # Assert (measured: mean 0.004, sd 1.57 with 16 shadows; 0.007 and 1.29 global)
    assert abs(np.mean(z)) < 0.2 and 0.7 < np.std(z) < 2.0
    assert abs(np.mean(z_global)) < 0.2 and 0.7 < np.std(z_global) < 2.0


def test_device_level_scores_separate_devices_better_than_records_do():
    # Prepare: 20 member devices and 20 others of 10 records each; the released model saw the
    # members' records
    model, _, _, shadows, _, _ = canary_case()
    rng = np.random.default_rng(7)
    X, y = blobs(400, rng)
    params = train_centralized(model, model.init_params(0), X[:200], y[:200], seed=0,
                               **BLOB_TRAINING)
    offsets = np.arange(0, 201, 10)

    # Execute
    scores = calibrated_scores(model, params, shadows, X, y)
    records = evaluate_scores(scores[:200], scores[200:])
    devices = evaluate_scores(device_scores(scores[:200], offsets),
                              device_scores(scores[200:], offsets))

    # Assert (measured: record AUC 0.56, device AUC 0.78)
    assert devices.auc > records.auc + 0.1


# --- DP -------------------------------------------------------------------------------------------

N_DP, Q, ROUNDS, Z = 200, 0.1, 100, 35.0  # epsilon 0.097 at delta 1e-5 by the RDP accountant


@functools.lru_cache(maxsize=None)
def dp_case(noise: bool):
    """DP-FedAvg where each device holds one record (so the guarantee is per record): Poisson
    sampling at q, one local step, updates clipped to 1, the sum plus N(0, z^2) from a seeded
    SecureRNG, divided by q N. Random labels, 400 features: without noise it memorises."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2 * N_DP, F_WIDE)).astype(np.float32)
    y = rng.integers(0, CLASSES, 2 * N_DP)
    model = SoftmaxRegression(n_features=F_WIDE, n_classes=CLASSES)
    params = model.init_params(0)
    sampling = np.random.default_rng(1)
    noise_rng = SecureRNG(b"membership test dp-fedavg noise", stream=0)
    offsets = np.arange(N_DP + 1)
    for _ in range(ROUNDS):
        cohort = np.flatnonzero(sampling.random(N_DP) < Q)
        total = np.zeros(model.n_params)
        if cohort.size:
            updates = train_many(model, params, X[:N_DP], y[:N_DP], offsets, cohort, epochs=1,
                                 batch_size=1, lr=1.0, seeds=[0] * cohort.size)
            total += clip_l2_rows(updates, 1.0)[0].sum(axis=0)
        if noise:
            total += noise_rng.gaussian(model.n_params, Z * 1.0, dtype=np.float64)
        params = (params + total / (Q * N_DP)).astype(np.float32)
    members = loss_threshold_scores(model, params, X[:N_DP], y[:N_DP])
    nonmembers = loss_threshold_scores(model, params, X[N_DP:], y[N_DP:])
    return evaluate_scores(members, nonmembers)


def test_a_dp_fedavg_model_at_epsilon_0_1_leaks_no_membership_beyond_noise():
    # Prepare
    epsilon = Accountant(1.0, 1e-5).record_rounds(Q, Z, ROUNDS)
    e = math.exp(epsilon)
    # The most AUC (epsilon, delta)-DP allows: the area under min(e^eps f + delta,
    # 1 - (1 - delta - f) / e^eps), about 0.5 + epsilon / 4 (0.525 here)
    f = np.linspace(0.0, 1.0, 100_001)
    bound = np.minimum(np.minimum(e * f + 1e-5, 1.0 - (1.0 - 1e-5 - f) / e), 1.0)
    auc_bound = float(np.sum(np.diff(f) * (bound[1:] + bound[:-1])) / 2.0)

    # Execute
    result = dp_case(noise=True)

    # Assert: within 4 null standard deviations (0.029 each, 200 and 200 records) of the bound
    # (measured: AUC 0.490)
    assert epsilon <= 0.1
    tolerance = 4.0 * result.auc_null_std
    assert 1.0 - auc_bound - tolerance <= result.auc <= auc_bound + tolerance


def test_the_same_training_without_noise_leaks_membership():
    # Execute
    result = dp_case(noise=False)

    # Assert (measured: AUC 0.951): the DP test above can tell noise from none
    assert result.auc > 0.85


# --- regression and bad input ---------------------------------------------------------------------

def test_regression_losses_and_statistics_follow_the_squared_error():
    # Prepare
    model = LinearRegression(n_features=2)
    params = np.array([1.0, -1.0, 0.5], np.float32)
    X = np.array([[1.0, 2.0], [0.0, 0.0]], np.float32)
    y = np.array([0.0, 0.5])  # predictions -0.5 and 0.5

    # Execute
    losses = example_losses(model, params, X, y)
    stat = confidence_statistic(model, params, X, y)

    # Assert
    assert losses.tolist() == [0.125, 0.0]
    assert stat[0] == pytest.approx(-math.log(0.25)) and stat[1] == pytest.approx(-math.log(1e-30))


def test_a_confident_fit_keeps_a_loss_above_zero_that_ranks_it():
    # Prepare: logit margins 40 and 60; float32 probabilities round both to exactly 1
    model = SoftmaxRegression(n_features=1, n_classes=2)
    params = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    X = np.array([[40.0], [60.0]], np.float32)

    # Execute
    losses = example_losses(model, params, X, np.array([1, 1]))

    # Assert
    assert losses == pytest.approx([math.exp(-40.0), math.exp(-60.0)], rel=1e-9)


@pytest.mark.parametrize("call, message", [
    (lambda m, p: evaluate_scores([], [1.0]), "member_scores must not be empty"),
    (lambda m, p: evaluate_scores([1.0, np.nan], [1.0]), "member_scores contains NaN"),
    (lambda m, p: evaluate_scores([[1.0]], [1.0]), "member_scores must be a 1-D array"),
    (lambda m, p: evaluate_scores([1.0], [0.0], fprs=[1.5]), r"target must be in \(0, 1\)"),
    (lambda m, p: tpr_at_fpr([0.0, 1.0], [0.0, 1.0], 0.01, 0), "n_nonmembers must be an int"),
    (lambda m, p: roc_auc([0.0, 1.0], [0.0]), "tpr must be a 1-D array of 2"),
    (lambda m, p: roc_auc([0.0, 1.0], [1.0, 0.5]), "tpr must be non-decreasing"),
    (lambda m, p: tpr_at_fpr([0.1, 1.0], [0.5, 1.0], 0.05, 100), "fpr must start at 0"),
    (lambda m, p: train_reference_models(m, np.ones((3, 2)), [0, 1], n_models=1, subset_size=2,
                                         epochs=1, batch_size=1, lr=0.1), "one entry per row"),
    (lambda m, p: loss_threshold_scores("model", p, np.ones((1, 2)), [0]), "model must be a"),
    (lambda m, p: loss_threshold_scores(m, p, np.ones((2, 2)), [0]), "one entry per row of X"),
    (lambda m, p: loss_threshold_scores(m, p, np.ones((1, 2)), [3]), r"labels in \[0, 2\)"),
    (lambda m, p: loss_threshold_scores(m, p, np.ones((1, 2)), [0.0]), "integer class labels"),
    (lambda m, p: loss_threshold_scores(m, p[:-1], np.ones((1, 2)), [0]), "n_params=6"),
    (lambda m, p: calibrated_scores(m, p, np.zeros((0, 6)), np.ones((1, 2)), [0]),
     "reference_params must not be empty"),
    (lambda m, p: lira_offline_scores(m, p, np.zeros((1, 6)), np.ones((1, 2)), [0]),
     "at least 2 models"),
    (lambda m, p: lira_offline_scores(m, p, np.zeros((2, 5)), np.ones((1, 2)), [0]),
     "shadow_params must be a 2-D array of 6 columns"),
    (lambda m, p: train_reference_models(m, np.ones((3, 2)), [0, 1, 0], n_models=1,
                                         subset_size=4, epochs=1, batch_size=1, lr=0.1),
     "subset_size must be at most the rows of X"),
    (lambda m, p: device_scores([1.0, 2.0], [0, 0, 2]), "every device needs at least one"),
    (lambda m, p: device_scores([1.0, 2.0], [0.0, 2.0]), "offsets must be a 1-D int array"),
])
def test_bad_input_is_refused_naming_the_argument(call, message):
    # Prepare
    model = SoftmaxRegression(n_features=2, n_classes=2)

    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        call(model, model.init_params(0))
