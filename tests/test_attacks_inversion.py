"""privcity.attacks.inversion: the server that reads a one-record device's update gets the record
back exactly (whatever the local epochs, steps or clip); several records, a block sum, noise at a
calibrated scale or distributed DP leave it a mixture or noise, and the tests say how far off."""
from __future__ import annotations

import math

import numpy as np
import pytest

from privcity.attacks import (
    inversion_report,
    inversion_success,
    invert_update,
    mixture_weights,
    relative_error,
)
from privcity.data import make_city
from privcity.dp import analytic_gaussian_sigma, clip_l2, clip_l2_rows, ddg_decode, ddg_encode
from privcity.dp import ddg_params
from privcity.models import (
    MLP,
    LinearRegression,
    SoftmaxRegression,
    train_centralized,
    train_local,
    train_many,
)
from privcity.noise import SecureRNG

# The simulator's local training: 5 epochs of mini-batches of 16.
LOCAL = {"epochs": 5, "batch_size": 16, "lr": 0.1}
DEVICES = 50
FLOAT32_TOL = 1e-5  # relative L2 error of a float32 recovery (measured: about 3e-7)


def city(task: str, samples_per_device: int):
    """The synthetic city's first 50 devices with this many records each, a model, and a global
    model trained on other devices (the start of a later round, not zeros)."""
    data = make_city(task, n_devices=DEVICES + 40, samples_per_device=samples_per_device, seed=3)
    F = data.X.shape[1]
    model = SoftmaxRegression(n_features=F, n_classes=data.n_classes) \
        if data.task_type == "classification" else LinearRegression(n_features=F)
    rest = slice(int(data.offsets[DEVICES]), None)
    start = train_centralized(model, model.init_params(0), data.X[rest], data.y[rest], epochs=3,
                              batch_size=8, lr=0.05, seed=0)
    return data, model, start


def one_record_updates(task: str = "air_quality"):
    data, model, start = city(task, 1)
    updates = train_many(model, start, data.X, data.y, data.offsets, np.arange(DEVICES),
                         seeds=list(range(DEVICES)), **LOCAL)
    return data, model, start, updates


# --- one record: exact ----------------------------------------------------------------------------

def test_one_record_devices_give_back_their_record_to_float32_precision_and_their_label():
    # Prepare
    data, model, _, updates = one_record_updates()

    # Execute
    report = inversion_report(model, data.X[:DEVICES], updates, labels=data.y[:DEVICES],
                              tol=FLOAT32_TOL)

    # Assert
    assert report.recovered == DEVICES and report.share == 1.0 and report.label_share == 1.0
    assert report.errors.max() <= FLOAT32_TOL


@pytest.mark.parametrize("epochs", [1, 20])
def test_the_record_survives_any_number_of_local_steps_and_a_clip_of_the_update(epochs):
    # Prepare: central DP-FedAvg's server sees each update clipped, before its noise
    data, model, start = city("air_quality", 1)
    x, y = data.X[:1], data.y[:1]
    update = train_local(model, start, x, y, epochs=epochs, batch_size=1, lr=0.5) - start
    clipped = clip_l2(update, 1e-3)

    # Execute
    x_hat, label = invert_update(model, clipped)

    # Assert
    assert np.linalg.norm(clipped) <= 1e-3 < np.linalg.norm(update)
    assert relative_error(x[0], x_hat) <= FLOAT32_TOL and label == y[0]


def test_a_linear_regression_record_and_its_target_come_back_given_the_round():
    # Prepare
    data, model, start, updates = one_record_updates("traffic")

    # Execute
    known = [invert_update(model, u, params_before=start, lr=LOCAL["lr"], steps=LOCAL["epochs"])
             for u in updates]
    blind = invert_update(model, updates[0])

    # Assert
    for i, (x_hat, y_hat) in enumerate(known):
        assert relative_error(data.X[i], x_hat) <= FLOAT32_TOL
        assert abs(y_hat - data.y[i]) <= 1e-4 * max(1.0, abs(float(data.y[i])))
    assert relative_error(data.X[0], blind.x) <= FLOAT32_TOL and math.isnan(blind.y)


def test_an_mlp_gives_the_record_through_its_first_layer_and_the_label_through_its_output():
    # Prepare
    data, _, _ = city("air_quality", 1)
    model = MLP(n_features=data.X.shape[1], hidden=16, n_outputs=3, task_type="classification")
    start = model.init_params(1)
    updates = train_many(model, start, data.X, data.y, data.offsets, np.arange(DEVICES),
                         seeds=list(range(DEVICES)), **LOCAL)

    # Execute
    report = inversion_report(model, data.X[:DEVICES], updates, labels=data.y[:DEVICES],
                              tol=FLOAT32_TOL)

    # Assert
    assert report.share == 1.0


def test_weight_decay_is_removed_with_what_the_server_knows_leaving_the_stated_bound():
    # Prepare
    data, _, _ = city("air_quality", 1)
    model = SoftmaxRegression(n_features=data.X.shape[1], n_classes=3, l2=0.05)
    start = model.init_params(0) + np.random.default_rng(0).normal(
        0.0, 0.3, model.n_params).astype(np.float32)
    steps, lr = 8, 0.5
    x = data.X[0]
    update = train_local(model, start, data.X[:1], data.y[:1], epochs=steps, lr=lr) - start

    # Execute
    x_hat, label = invert_update(model, update, params_before=start, lr=lr, steps=steps)

    # Assert: the direction exactly, the length within [(1 - lr l2)^(T - 1), 1] of x's
    cosine = x_hat @ x / (np.linalg.norm(x_hat) * np.linalg.norm(x))
    ratio = np.linalg.norm(x_hat) / np.linalg.norm(x)
    assert cosine >= 1.0 - 1e-6
    assert (1.0 - lr * model.l2) ** (steps - 1) - 1e-5 <= ratio <= 1.0 + 1e-5
    assert label == data.y[0]
    with pytest.raises(ValueError, match="l2 = 0.05 > 0.*params_before, lr and steps"):
        invert_update(model, update)


# --- several records: a mixture -------------------------------------------------------------------

@pytest.mark.parametrize("same_label", [False, True])
def test_a_two_record_device_gives_a_mixture_of_its_records_and_neither_record(same_label):
    # Prepare
    data, model, start = city("air_quality", 1)
    rows = np.flatnonzero(data.y == data.y[0])[:2] if same_label \
        else np.array([0, int(np.flatnonzero(data.y != data.y[0])[0])])
    X2, y2 = data.X[rows], data.y[rows]
    update = train_local(model, start, X2, y2, **LOCAL) - start

    # Execute
    x_hat, _ = invert_update(model, update)
    weights, residual = mixture_weights(X2, x_hat)

    # Assert: in the records' affine hull (convex hull when they share a label), near neither
    assert residual <= FLOAT32_TOL and math.isclose(weights.sum(), 1.0)
    assert min(relative_error(r, x_hat) for r in X2) > 0.05
    if same_label:
        assert np.all((weights > 0.0) & (weights < 1.0))


def test_a_block_sum_of_50_one_record_devices_gives_back_no_record():
    # Prepare: what a secure-aggregation server sees of the block
    data, model, _, updates = one_record_updates()
    block_sum = updates.sum(axis=0, dtype=np.float64)[None, :]

    # Execute
    report = inversion_report(model, data.X[:DEVICES], block_sum,
                              owners=np.zeros(DEVICES, np.int64), tol=0.01)

    # Assert (measured: the nearest record is 76% off, the median 99%)
    assert report.recovered == 0 and report.errors.min() > 0.5


# --- noise ----------------------------------------------------------------------------------------

def test_one_update_with_gaussian_noise_calibrated_for_epsilon_1_gives_back_no_record():
    # Prepare: each update clipped to C = 1 plus N(0, sigma^2), sigma for (1, 1e-5)-DP
    data, model, _, updates = one_record_updates()
    clipped, _ = clip_l2_rows(updates, 1.0)
    sigma = analytic_gaussian_sigma(1.0, 1e-5, 1.0)
    noisy = np.stack([row + SecureRNG(b"inversion test noise", stream=i).gaussian(
        model.n_params, sigma, dtype=np.float64) for i, row in enumerate(clipped)])

    # Execute
    report = inversion_report(model, data.X[:DEVICES], noisy, tol=0.01)

    # Assert (measured: the best record 93% off)
    assert report.recovered == 0 and report.errors.min() > 0.5


def ddg_block_sum(updates: np.ndarray, dim: int) -> np.ndarray:
    """The float sum a distributed-DP server decodes from the block's ring words (each update
    clipped to 1, its own noise share, epsilon 1 for one round with 50 shares)."""
    params = ddg_params(dim=dim, clip=1.0, epsilon=1.0, delta=1e-5, sample_rate=1.0, rounds=1,
                        n_min=len(updates), n_expected=len(updates), bits=32)
    seed = bytes(32)
    total = np.zeros(params.padded_dim, params.word_dtype)
    for i, row in enumerate(updates):
        total += ddg_encode(np.ascontiguousarray(row, np.float32), params, seed,
                            SecureRNG(b"inversion test ddg", stream=i))[0]  # wraps mod 2^32
    return ddg_decode(total, params, seed)


def test_a_sybil_block_exposes_its_victim_under_secure_aggregation_but_not_under_distributed_dp():
    # Prepare: a gateway fills a block with 49 devices of its own that send zero updates
    data, model, _, updates = one_record_updates()
    clipped, _ = clip_l2_rows(updates, 1.0)
    block = np.zeros_like(clipped)
    block[0] = clipped[0]

    # Execute
    plain = invert_update(model, block.sum(axis=0, dtype=np.float64))
    noisy = invert_update(model, ddg_block_sum(block, model.n_params))
    honest = invert_update(model, ddg_block_sum(clipped, model.n_params))

    # Assert (measured: 3e-8 in the clear; 3.5 and, for the honest block's nearest record, 1.3)
    assert inversion_success(data.X[0], plain.x, FLOAT32_TOL) and plain.y == data.y[0]
    assert relative_error(data.X[0], noisy.x) > 0.5
    assert min(relative_error(x, honest.x) for x in data.X[:DEVICES]) > 0.5


# --- edges and bad input --------------------------------------------------------------------------

def test_an_update_that_moved_no_bias_recovers_nothing_and_counts_as_a_failure():
    # Prepare
    model = SoftmaxRegression(n_features=3, n_classes=2)

    # Execute
    x_hat, label = invert_update(model, np.zeros(model.n_params))

    # Assert
    assert np.isnan(x_hat).all() and label == -1
    assert not inversion_success(np.ones(3), x_hat, 0.5)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.zeros(3), np.ones(3)) == math.inf


@pytest.mark.parametrize("call, message", [
    (lambda m: invert_update("softmax", np.zeros(m.n_params)), "model must be a privcity"),
    (lambda m: invert_update(m, np.zeros(m.n_params + 1)), "update must be a 1-D array of 8"),
    (lambda m: invert_update(m, np.full(m.n_params, np.nan)), "update contains NaN"),
    (lambda m: invert_update(m, np.zeros(m.n_params), lr=0.1), "params_before, lr and steps"),
    (lambda m: invert_update(m, np.zeros(m.n_params), params_before=np.zeros(m.n_params), lr=0.1,
                             steps=0), "steps must be an int >= 1"),
    (lambda m: inversion_success(np.ones(3), np.ones(3), 0.0), "tol must be a finite real"),
    (lambda m: relative_error(np.ones(3), np.ones(2)), "x_hat must have the shape of x"),
    (lambda m: inversion_report(m, np.ones((2, 3)), np.zeros((3, m.n_params))),
     "one row per record"),
    (lambda m: inversion_report(m, np.ones((2, 3)), np.zeros((1, m.n_params)),
                                owners=np.array([0, 1])), r"update indices in \[0, 1\)"),
    (lambda m: inversion_report(m, np.ones((2, 4)), np.zeros((2, m.n_params))),
     "records must be a 2-D array of 3 columns"),
    (lambda m: inversion_report(m, np.ones((1, 3)), np.zeros((1, m.n_params)),
                                labels=np.array([0.5])), "labels must be a 1-D int array"),
    (lambda m: inversion_report(LinearRegression(n_features=3), np.ones((1, 3)), np.zeros((1, 4)),
                                labels=np.array([0])), "classification models only"),
    (lambda m: mixture_weights(np.ones((2, 3)), np.ones(4)), "x_hat must be a 1-D array of 3"),
])
def test_bad_input_is_refused_naming_the_argument(call, message):
    # Prepare
    model = SoftmaxRegression(n_features=3, n_classes=2)

    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        call(model)
