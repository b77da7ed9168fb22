"""privcity.attacks.optimize: the gradient-matching attack gives back one record as the analytic
attack does, separates a few records of distinct labels (within the information bound), matches
its gradients to finite differences, refuses bad input by name, and finds nothing under noise."""
from __future__ import annotations

import numpy as np
import pytest

from privcity.attacks import (
    guess_labels,
    inversion_report,
    invert_update,
    matching_loss,
    optimize_report,
    reconstruct,
    relative_error,
)
from privcity.attacks.optimize import _pair
from privcity.models import MLP, LinearRegression, SoftmaxRegression, train_local

LR = 0.1


def records_and_update(model, k, seed, *, epochs=1, batch_size=None, labels=None):
    """k standard-normal records, a small random start and their local-training update."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((k, model.n_features)).astype(np.float32)
    if model.task_type == "classification":
        y = rng.permutation(model.n_outputs)[:k] if labels is None else np.asarray(labels)
    else:
        y = rng.standard_normal(k).astype(np.float32)
    start = (0.1 * rng.standard_normal(model.n_params)).astype(np.float32)
    after = train_local(model, start, X, y, epochs=epochs, batch_size=batch_size or k, lr=LR)
    return X, y, start, after - start


def recovered(X, found, tol):
    pair = _pair(X.astype(np.float64), found)
    return sum(relative_error(X[i], found[c]) <= tol for i, c in enumerate(pair))


# --- known answers --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [SoftmaxRegression(n_features=12, n_classes=3),
                                   LinearRegression(n_features=12)], ids=["softmax", "linear"])
def test_one_record_is_recovered_as_the_analytic_attack_recovers_it(model):
    # Prepare
    X, y, start, update = records_and_update(model, 1, seed=4, epochs=3)

    # Execute
    rec = reconstruct(model, update, 1, params_before=start, lr=LR, steps=3)
    analytic = invert_update(model, update)

    # Assert: one record is the update's column space itself (float32 rounding: about 1e-7).
    assert relative_error(analytic.x, rec.records[0]) < 1e-4
    assert relative_error(X[0], rec.records[0]) < 1e-4
    if model.task_type == "classification":
        assert rec.labels.tolist() == [analytic.y] == [int(y[0])]
    else:
        assert rec.labels[0] == pytest.approx(float(y[0]), abs=1e-3)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_a_few_records_of_distinct_labels_are_separated_from_one_full_batch_step(k):
    # Prepare: 5 classes, so k <= 4 records stay within the bound k F <= (F + 1)(C - 1).
    model = SoftmaxRegression(n_features=10, n_classes=5)
    found = 0

    # Execute
    for seed in range(5):
        X, y, start, update = records_and_update(model, k, seed)
        rec = reconstruct(model, update, k, params_before=start, lr=LR, steps=1)
        found += recovered(X, rec.records, 0.05)
        assert sorted(rec.labels.tolist()) == sorted(y.tolist())  # guessed from the biases

    # Assert: most records on most seeds (the analytic attack gets none: one mixture point).
    assert found >= 0.8 * 5 * k


def test_the_unrolled_update_model_separates_records_after_five_local_epochs():
    # Prepare: records fit in one batch, so 5 epochs are 5 full-batch steps (the simulator's
    # default for devices of up to 16 records).
    model = SoftmaxRegression(n_features=10, n_classes=4)
    found = 0

    # Execute
    for seed in range(4):
        X, _, start, update = records_and_update(model, 3, seed, epochs=5, batch_size=16)
        rec = reconstruct(model, update, 3, params_before=start, lr=LR, steps=5)
        found += recovered(X, rec.records, 0.05)

    # Assert
    assert found >= 10


def test_past_the_information_bound_the_records_are_not_recovered():
    # Prepare: 8 records of 10 features against (10 + 1)(3 - 1) = 22 independent numbers.
    model = SoftmaxRegression(n_features=10, n_classes=3)
    X, _, start, update = records_and_update(model, 8, seed=1, labels=[0, 1, 2, 0, 1, 2, 0, 1])

    # Execute
    rec = reconstruct(model, update, 8, params_before=start, lr=LR, steps=1)

    # Assert: a near-perfect match of the update, yet at most a record or two within 0.2.
    assert rec.loss < 1e-3
    assert recovered(X, rec.records, 0.2) <= 2


def test_labels_are_guessed_from_the_output_biases_with_their_counts():
    # Prepare
    model = SoftmaxRegression(n_features=6, n_classes=4)
    _, y, start, update = records_and_update(model, 6, seed=2, labels=[0, 0, 0, 2, 3, 3])

    # Execute
    guessed = guess_labels(model, update, 6, params_before=start, lr=LR)

    # Assert
    assert guessed.tolist() == [0, 0, 0, 2, 3, 3]


# --- the gradient -----------------------------------------------------------------------------

@pytest.mark.parametrize("model", [SoftmaxRegression(n_features=5, n_classes=3, l2=0.01),
                                   LinearRegression(n_features=5, l2=0.01)],
                         ids=["softmax", "linear"])
@pytest.mark.parametrize("steps", [1, 3])
def test_the_matching_loss_gradient_equals_finite_differences(model, steps):
    # Prepare
    rng = np.random.default_rng(7)
    start = 0.3 * rng.standard_normal(model.n_params)
    update = rng.standard_normal(model.n_params)
    X = rng.standard_normal((4, 5))
    lab = np.array([0, 1, 2, 1]) if model.task_type == "classification" else \
        rng.standard_normal(4)
    kw = {"params_before": start, "lr": 0.3, "steps": steps, "l2_weight": 0.5}

    def value(X_, lab_):
        return matching_loss(model, X_, lab_, update, **kw).value

    # Execute
    got = matching_loss(model, X, lab, update, **kw)
    h = 1e-6
    fd = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        e = np.zeros_like(X)
        e[idx] = h
        fd[idx] = (value(X + e, lab) - value(X - e, lab)) / (2 * h)

    # Assert
    np.testing.assert_allclose(got.d_records, fd, atol=1e-7)
    if model.task_type == "regression":
        fd_t = [(value(X, lab + h * e) - value(X, lab - h * e)) / (2 * h) for e in np.eye(4)]
        np.testing.assert_allclose(got.d_labels, fd_t, atol=1e-7)
    else:
        assert got.d_labels is None


def test_the_true_records_match_a_one_step_update_exactly():
    # Prepare
    model = SoftmaxRegression(n_features=6, n_classes=3)
    X, y, start, update = records_and_update(model, 3, seed=3)

    # Execute
    at_truth = matching_loss(model, X, y, update, params_before=start, lr=LR)
    elsewhere = matching_loss(model, X + 0.1, y, update, params_before=start, lr=LR)

    # Assert
    assert at_truth.value < 1e-10 < elsewhere.value


# --- noise ----------------------------------------------------------------------------------------

def test_an_update_drowned_in_dp_noise_gives_back_no_record():
    # Prepare: noise of std 1 on every coordinate, the update's coordinates about 0.05.
    model = SoftmaxRegression(n_features=10, n_classes=5)
    rng = np.random.default_rng(11)
    found = 0

    # Execute
    for seed in range(3):
        X, _, start, update = records_and_update(model, 2, seed)
        noisy = update + rng.standard_normal(model.n_params)
        rec = reconstruct(model, noisy, 2, params_before=start, lr=LR)
        found += recovered(X, rec.records, 0.2)

    # Assert
    assert found == 0


# --- the report -----------------------------------------------------------------------------------

def test_optimize_report_counts_records_per_device_with_their_labels():
    # Prepare: two devices of 2 records each (distinct labels), one device of 1 record.
    model = SoftmaxRegression(n_features=8, n_classes=4)
    start = np.zeros(model.n_params, np.float32)
    parts = []
    for k, seed in ((2, 0), (2, 1), (1, 2)):
        X, y, _, _ = records_and_update(model, k, seed)
        parts.append((X, y, train_local(model, start, X, y, epochs=1, batch_size=k, lr=LR) - start))
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    updates = np.stack([p[2] for p in parts])
    owners = np.array([0, 0, 1, 1, 2])

    # Execute
    rep = optimize_report(model, X, updates, owners=owners, labels=y, params_before=start, lr=LR,
                          steps=[1, 1, 1])
    analytic = inversion_report(model, X, updates, owners=owners, labels=y, tol=0.05)

    # Assert
    assert (rep.n_records, rep.n_updates, rep.tolerance) == (5, 3, 0.05)
    assert rep.errors.shape == (5,) and rep.label_share == 1.0
    assert rep.recovered >= 4 and rep.share == rep.recovered / 5
    assert analytic.recovered == 1  # only the one-record device


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "name"), [
    ({"n_records": 0}, "n_records"),
    ({"update": np.zeros(5)}, "update"),
    ({"update": np.zeros(27)}, "update"),
    ({"lr": -0.1}, "lr"),
    ({"steps": 0}, "steps"),
    ({"restarts": 0}, "restarts"),
    ({"iterations": 0}, "iterations"),
    ({"labels": np.array([0, 1, 2])}, "labels"),
    ({"labels": np.array([0, 7])}, "labels"),
    ({"params_before": np.zeros(4)}, "params_before"),
    ({"l2_weight": -1.0}, "l2_weight"),
    ({"seed": -1}, "seed"),
    ({"model": MLP(n_features=8, hidden=4, n_outputs=3, task_type="classification")}, "MLP"),
])
def test_bad_input_is_refused_with_a_message_naming_the_argument(change, name):
    # Prepare
    model = SoftmaxRegression(n_features=8, n_classes=3)
    args = {"model": model, "update": np.full(model.n_params, 0.01), "n_records": 2,
            "params_before": np.zeros(model.n_params), "lr": LR, "iterations": 5}
    args.update(change)

    # Execute / Assert
    with pytest.raises(ValueError, match=name):
        reconstruct(args.pop("model"), args.pop("update"), args.pop("n_records"), **args)


def test_optimize_report_refuses_steps_not_one_per_update():
    # Prepare
    model = LinearRegression(n_features=3)
    X = np.ones((2, 3))
    updates = np.full((2, 4), 0.01)

    # Execute / Assert
    with pytest.raises(ValueError, match="steps"):
        optimize_report(model, X, updates, params_before=np.zeros(4), lr=LR, steps=[1, 1, 1])
