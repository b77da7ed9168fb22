"""privcity.models: evaluate/score/loss on hand-made examples, and validation errors that name
the argument."""
from __future__ import annotations

import math

import numpy as np
import pytest

from privcity.models import (
    MLP,
    LinearRegression,
    SoftmaxRegression,
    train_centralized,
    train_local,
    train_many,
)

# --- metrics on hand-made examples -------------------------------------------------------------


def test_regression_metrics_by_hand():
    # Prepare: y_hat = 2 x + 1 -> [1, 3, 5] against y = [1, 3, 6]
    model = LinearRegression(n_features=1)
    params = np.array([2.0, 1.0], np.float32)
    X, y = [[0.0], [1.0], [2.0]], [1.0, 3.0, 6.0]
    ss_tot = (1 - 10 / 3) ** 2 + (3 - 10 / 3) ** 2 + (6 - 10 / 3) ** 2

    # Execute
    metrics = model.evaluate(params, X, y)
    score = model.score(params, X, y)
    loss = model.loss(params, X, y)

    # Assert
    assert metrics == pytest.approx({"mse": 1 / 3, "rmse": math.sqrt(1 / 3), "r2": 1 - 1 / ss_tot})
    assert score == metrics["r2"]
    assert loss == pytest.approx(0.5 * 1 / 3)  # half the mean squared error
    np.testing.assert_array_equal(model.predict(params, X), np.array([1, 3, 5], np.float32))


def test_ridge_loss_adds_half_l2_times_squared_weights_only():
    # Prepare
    model = LinearRegression(n_features=2, l2=0.1)
    params = np.array([3.0, -4.0, 10.0], np.float32)  # ||w||^2 = 25; the intercept 10 is free
    X, y = [[0.0, 0.0]], [10.0]

    # Execute
    loss = model.loss(params, X, y)

    # Assert
    assert loss == pytest.approx(0.5 * 0.1 * 25)


@pytest.mark.parametrize("y, expected", [([2.0, 2.0], 1.0), ([3.0, 3.0], 0.0)])
def test_r2_of_constant_targets_follows_scikit_learn(y, expected):
    # Prepare: the model predicts 2 everywhere
    model = LinearRegression(n_features=1)
    params = np.array([0.0, 2.0], np.float32)

    # Execute
    score = model.score(params, [[1.0], [5.0]], y)

    # Assert
    assert score == expected


def test_classification_metrics_by_hand():
    # Prepare: logits = [x0, x1, 0.5]; argmax -> 0, 1, 2, 0 (first of tied maxima)
    model = SoftmaxRegression(n_features=2, n_classes=3)
    params = np.array([1, 0, 0,
                       0, 1, 0,
                       0, 0, 0.5], np.float32)
    X = [[2.0, 0.0], [0.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    y = [0, 1, 2, 1]
    logits = [[2, 0, 0.5], [0, 2, 0.5], [0, 0, 0.5], [1, 1, 0.5]]
    ce = [math.log(sum(math.exp(v) for v in z)) - z[c] for z, c in zip(logits, y, strict=True)]

    # Execute
    metrics = model.evaluate(params, X, y)
    score = model.score(params, X, y)

    # Assert
    assert metrics["accuracy"] == 0.75
    assert metrics["loss"] == pytest.approx(sum(ce) / 4, rel=1e-12)
    assert score == 0.75
    assert model.loss(params, X, y) == pytest.approx(sum(ce) / 4, rel=1e-12)  # l2 = 0


def test_classification_evaluate_loss_is_cross_entropy_without_penalty():
    # Prepare
    plain = SoftmaxRegression(n_features=2, n_classes=3)
    ridge = SoftmaxRegression(n_features=2, n_classes=3, l2=2.0)
    params = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0.5], np.float32)  # ||W||^2 = 2
    X, y = [[2.0, 0.0], [0.0, 2.0]], [0, 2]

    # Execute
    ev_plain, ev_ridge = plain.evaluate(params, X, y), ridge.evaluate(params, X, y)
    loss_plain, loss_ridge = plain.loss(params, X, y), ridge.loss(params, X, y)

    # Assert
    assert ev_plain == ev_ridge
    assert loss_ridge - loss_plain == pytest.approx(0.5 * 2.0 * 2)


def test_float_labels_that_are_integers_are_accepted():
    # Prepare
    model = SoftmaxRegression(n_features=1, n_classes=2)
    params = np.array([1.0, -1.0, 0.0, 0.0], np.float32)

    # Execute
    score = model.score(params, [[1.0], [-1.0]], np.array([0.0, 1.0]))

    # Assert
    assert score == 1.0


def test_repr_shows_the_configuration():
    # Prepare
    model = MLP(n_features=3, hidden=4, n_outputs=2, task_type="classification", l2=0.5)

    # Execute
    text = repr(model)

    # Assert
    assert text == ("MLP(n_features=3, hidden=4, n_outputs=2, task_type='classification', "
                    "l2=0.5, activation='relu')")
    assert model.n_params == (3 + 1) * 4 + (4 + 1) * 2


# --- validation --------------------------------------------------------------------------------

CONSTRUCTORS = [
    (lambda: LinearRegression(n_features=0), "n_features"),
    (lambda: LinearRegression(n_features=2.0), "n_features"),
    (lambda: LinearRegression(n_features=True), "n_features"),
    (lambda: LinearRegression(n_features=2, l2=-0.1), "l2"),
    (lambda: LinearRegression(n_features=2, l2=float("nan")), "l2"),
    (lambda: SoftmaxRegression(n_features=2, n_classes=1), "n_classes"),
    (lambda: MLP(n_features=2, hidden=0, n_outputs=2, task_type="classification"), "hidden"),
    (lambda: MLP(n_features=2, hidden=3, n_outputs=2, task_type="ranking"), "task_type"),
    (lambda: MLP(n_features=2, hidden=3, n_outputs=2, task_type="regression"), "n_outputs"),
    (lambda: MLP(n_features=2, hidden=3, n_outputs=1, task_type="classification"), "n_outputs"),
    (lambda: MLP(n_features=2, hidden=3, n_outputs=2, task_type="classification",
                 activation="sigmoid"), "activation"),
]


@pytest.mark.parametrize("make, name", CONSTRUCTORS)
def test_constructors_reject_bad_arguments_by_name(make, name):
    # Prepare
    pattern = f"^{name} must"

    # Execute / Assert
    with pytest.raises(ValueError, match=pattern):
        make()


def test_constructors_are_keyword_only():
    # Execute / Assert
    with pytest.raises(TypeError):
        LinearRegression(3)  # type: ignore[misc]


CLF = SoftmaxRegression(n_features=2, n_classes=3)
REG = LinearRegression(n_features=2)
GOOD_X = np.zeros((4, 2))
GOOD_Y = np.array([0, 1, 2, 1])
P_CLF = CLF.init_params(0)
P_REG = REG.init_params(0)

DATA_ERRORS = [
    (CLF, P_CLF, np.zeros(4), GOOD_Y, "X"),
    (CLF, P_CLF, np.zeros((4, 3)), GOOD_Y, "X"),
    (CLF, P_CLF, np.zeros((0, 2)), np.zeros(0, int), "X"),
    (CLF, P_CLF, np.array([[0, 1], [np.nan, 0], [0, 0], [0, 0]]), GOOD_Y, "X"),
    (CLF, P_CLF, np.array([[0, 1], [np.inf, 0], [0, 0], [0, 0]]), GOOD_Y, "X"),
    (CLF, P_CLF, np.full((4, 2), 1e39), GOOD_Y, "X"),  # beyond float32
    (CLF, P_CLF, np.zeros((4, 2), bool), GOOD_Y, "X"),
    (CLF, P_CLF, np.full((4, 2), "a"), GOOD_Y, "X"),
    (CLF, P_CLF, GOOD_X, GOOD_Y[:3], "y"),
    (CLF, P_CLF, GOOD_X, np.array([0, 1, 3, 1]), "y"),
    (CLF, P_CLF, GOOD_X, np.array([0, -1, 2, 1]), "y"),
    (CLF, P_CLF, GOOD_X, np.array([0, 1.5, 2, 1]), "y"),
    (CLF, P_CLF, GOOD_X, np.array(["a", "b", "c", "d"]), "y"),
    (REG, P_REG, GOOD_X, np.array([0, np.nan, 2, 1]), "y"),
    (CLF, P_CLF[:-1], GOOD_X, GOOD_Y, "params"),
    (CLF, P_CLF.reshape(3, 3), GOOD_X, GOOD_Y, "params"),
    (CLF, np.where(np.arange(9) == 4, np.nan, 0.0), GOOD_X, GOOD_Y, "params"),
    (CLF, np.arange(9), GOOD_X, GOOD_Y, "params"),
]


METHODS = ["loss", "gradient", "evaluate", "score", "train_local"]


# Training on no rows is allowed (no steps), so that one case is not an error for train_local.
@pytest.mark.parametrize("method, model, params, X, y, name", [
    (method, *case) for method in METHODS for case in DATA_ERRORS
    if not (method == "train_local" and case[2].shape[0] == 0)])
def test_bad_data_is_rejected_by_name(method, model, params, X, y, name):
    # Prepare
    if method == "train_local":
        call = lambda: train_local(model, params, X, y)  # noqa: E731
    else:
        call = lambda: getattr(model, method)(params, X, y)  # noqa: E731

    # Execute / Assert
    with pytest.raises(ValueError, match=rf"^{name} "):
        call()


def test_predict_rejects_bad_X_by_name():
    # Execute / Assert
    with pytest.raises(ValueError, match=r"^X must have n_features=2 columns"):
        CLF.predict(P_CLF, np.zeros((3, 5)))


OFFSETS = np.array([0, 2, 4])

TRAINING_ERRORS = [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": 0.0}, "lr"),
    ({"lr": float("inf")}, "lr"),
    ({"offsets": np.array([0, 3, 2])}, "offsets"),
    ({"offsets": np.array([0, 2, 5])}, "offsets"),
    ({"offsets": np.array([0.0, 2.0, 4.0])}, "offsets"),
    ({"devices": np.array([0, 2])}, "devices"),
    ({"devices": np.array([0, -1])}, "devices"),
    ({"seeds": [1]}, "seeds"),
    ({"seeds": [1, -2]}, "seeds"),
    ({"seeds": [1.0, 2.0]}, "seeds"),
    ({"model": "softmax"}, "model"),
    ({"threads": 0}, "threads"),
    ({"threads": 2.0}, "threads"),
]


@pytest.mark.parametrize("override, name", TRAINING_ERRORS)
def test_train_many_rejects_bad_arguments_by_name(override, name):
    # Prepare
    args = {"model": CLF, "params": P_CLF, "X": GOOD_X, "y": GOOD_Y, "offsets": OFFSETS,
            "devices": np.array([0, 1]), "epochs": 1, "batch_size": 2, "lr": 0.1, "seeds": [1, 2]}
    args.update(override)

    # Execute / Assert
    with pytest.raises(ValueError, match=rf"^{name} must"):
        train_many(**args)


@pytest.mark.parametrize("override, name", [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
                                            ({"epochs": 1.0}, "epochs"), ({"lr": -1}, "lr")])
def test_train_centralized_rejects_bad_arguments_by_name(override, name):
    # Prepare
    args = {"epochs": 1, "batch_size": 2, "lr": 0.1, "seed": 0}
    args.update(override)

    # Execute / Assert
    with pytest.raises(ValueError, match=rf"^{name} must"):
        train_centralized(CLF, P_CLF, GOOD_X, GOOD_Y, **args)


def test_init_params_rejects_a_negative_seed():
    # Execute / Assert
    with pytest.raises(ValueError, match=r"^seed must"):
        MLP(n_features=2, hidden=3, n_outputs=2, task_type="classification").init_params(-1)


def test_an_evaluator_gives_what_evaluate_gives_and_checks_its_data_once():
    # Prepare
    from privcity.models import SoftmaxRegression
    model = SoftmaxRegression(n_features=5, n_classes=3)
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    params = [rng.standard_normal(model.n_params).astype(np.float32) for _ in range(3)]

    # Execute
    evaluate = model.evaluator(X, y)

    # Assert: the same metrics for every params; bad data refused when the evaluator is made
    for p in params:
        assert evaluate(p) == model.evaluate(p, X, y)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.evaluator(bad, y)
    with pytest.raises(ValueError, match="class labels"):
        model.evaluator(X, np.full(40, 7))
