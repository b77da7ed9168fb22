"""privcity.models: gradients against central finite differences of the float64 loss, the l2
term, initialisation, predictions and numerically stable softmax."""
from __future__ import annotations

import math

import numpy as np
import pytest

from privcity.models import MLP, LinearRegression, SoftmaxRegression


def make_model(kind: str, l2: float):
    if kind == "linear":
        return LinearRegression(n_features=4, l2=l2)
    if kind == "softmax":
        return SoftmaxRegression(n_features=4, n_classes=3, l2=l2)
    task, activation = kind.split("-")[1:]
    n_outputs = 1 if task == "regression" else 3
    return MLP(n_features=4, hidden=6, n_outputs=n_outputs, task_type=task, l2=l2,
               activation=activation)


def make_data(model, n: int, seed: int):
    """X and params exactly representable in float32, so only the compute precision differs
    between the float32 gradient and the float64 loss."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.n_features)).astype(np.float32).astype(np.float64)
    if model.task_type == "regression":
        y = rng.normal(size=n)
    else:
        y = rng.integers(0, model.n_outputs, n)
    params = rng.normal(0.0, 0.7, model.n_params).astype(np.float32).astype(np.float64)
    return params, X, y


def bias_mask(model) -> np.ndarray:
    """Bias entries by the documented layout: the last row of each (inputs + 1, outputs) block."""
    if isinstance(model, MLP):
        blocks = [(model.n_features + 1, model.hidden), (model.hidden + 1, model.n_outputs)]
    else:
        blocks = [(model.n_features + 1, model.n_outputs)]
    masks = []
    for rows, cols in blocks:
        m = np.zeros((rows, cols), bool)
        m[-1] = True
        masks.append(m.reshape(-1))
    return np.concatenate(masks)


KINDS = ["linear", "softmax", "mlp-regression-relu", "mlp-regression-tanh",
         "mlp-classification-relu", "mlp-classification-tanh"]


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_matches_central_finite_differences(kind, l2):
    # Prepare
    model = make_model(kind, l2)
    params, X, y = make_data(model, 25, seed=7)
    eps = 1e-6
    eye = np.eye(model.n_params)

    # Execute
    grad = model.gradient(params, X, y)
    numeric = np.array([(model.loss(params + eps * e, X, y) - model.loss(params - eps * e, X, y))
                        / (2 * eps) for e in eye])

    # Assert
    assert grad.dtype == np.float32 and grad.shape == (model.n_params,)
    scale = max(1.0, float(np.abs(numeric).max()))
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=2e-5 * scale)
    assert np.abs(numeric).max() > 1e-2  # the check is not vacuous


@pytest.mark.parametrize("kind", KINDS)
def test_l2_penalises_weights_but_not_biases(kind):
    # Prepare
    plain, ridge = make_model(kind, 0.0), make_model(kind, 0.5)
    params, X, y = make_data(plain, 10, seed=3)
    bias = bias_mask(ridge)
    weights = np.where(bias, 0.0, params)

    # Execute
    extra_loss = ridge.loss(params, X, y) - plain.loss(params, X, y)
    extra_grad = ridge.gradient(params, X, y) - plain.gradient(params, X, y)

    # Assert
    assert extra_loss == pytest.approx(0.5 * 0.5 * float(np.dot(weights, weights)), rel=1e-12)
    np.testing.assert_allclose(extra_grad, 0.5 * weights, rtol=1e-5, atol=1e-6)
    assert np.all(extra_grad[bias] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_init_params_is_deterministic_float32(kind):
    # Prepare
    model = make_model(kind, 0.0)

    # Execute
    a, b, c = model.init_params(1), model.init_params(1), model.init_params(2)

    # Assert
    assert a.dtype == np.float32 and a.shape == (model.n_params,)
    assert np.array_equal(a, b)
    if kind.startswith("mlp"):
        assert not np.array_equal(a, c)
        assert np.all(a[bias_mask(model)] == 0) and np.all(a[~bias_mask(model)] != 0)
    else:
        assert not a.any()  # convex models start at zero


def test_mlp_init_scales_he_for_relu_and_glorot_for_tanh():
    # Prepare
    relu = MLP(n_features=200, hidden=300, n_outputs=2, task_type="classification")
    tanh = MLP(n_features=200, hidden=300, n_outputs=2, task_type="classification",
               activation="tanh")
    s1 = 201 * 300

    # Execute
    w_relu = relu.init_params(0)[:s1].reshape(201, 300)[:200]
    w_tanh = tanh.init_params(0)[:s1].reshape(201, 300)[:200]

    # Assert
    assert w_relu.std() == pytest.approx(math.sqrt(2 / 200), rel=0.02)
    assert w_tanh.std() == pytest.approx(math.sqrt(2 / 500), rel=0.02)


def test_parameter_layout_is_documented_reshape():
    # Prepare
    model = SoftmaxRegression(n_features=2, n_classes=3)
    params = np.arange(9, dtype=np.float32) / 10  # W = rows 0..1, biases = row 2
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)
    W = params.reshape(3, 3)

    # Execute
    probs = model.predict(params, X)

    # Assert
    logits = X @ W[:2] + W[2]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_shapes_and_probabilities(kind):
    # Prepare
    model = make_model(kind, 0.0)
    params, X, _ = make_data(model, 12, seed=5)

    # Execute
    out = model.predict(params, X)
    empty = model.predict(params, np.zeros((0, model.n_features)))

    # Assert
    assert out.dtype == np.float32
    if model.task_type == "regression":
        assert out.shape == (12,) and empty.shape == (0,)
    else:
        assert out.shape == (12, model.n_outputs) and empty.shape == (0, model.n_outputs)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
        assert np.all(out >= 0)


def test_softmax_is_stable_for_huge_logits():
    # Prepare: logits of order 1e6 overflow a naive exp in float32 and float64 alike
    model = SoftmaxRegression(n_features=1, n_classes=3)
    params = np.array([1e4, 0.0, -1e4, 0.0, 0.0, 0.0], np.float32)
    X = np.array([[100.0], [-100.0]], np.float32)
    y = np.array([1, 1])

    # Execute
    probs = model.predict(params, X)
    loss = model.loss(params, X, y)
    grad = model.gradient(params, X, y)

    # Assert
    np.testing.assert_array_equal(probs, [[1, 0, 0], [0, 0, 1]])
    assert loss == pytest.approx(1e6)  # log-sum-exp: z_max - z_y = 1e6 for both rows
    assert np.isfinite(grad).all()


def test_outputs_are_the_float64_logits_behind_predict_and_loss():
    # Prepare: a confident fit, whose float32 probabilities round to exactly 1
    model = SoftmaxRegression(n_features=3, n_classes=2)
    params = np.array([30.0, 0.0, 0.0, 0.0, -30.0, 0.0, 0.0, 0.0], np.float32)
    X = np.array([[1.0, 0.0, 0.0], [0.5, 0.2, 0.1]], np.float32)

    # Execute
    z = model.outputs(params, X)

    # Assert: the same probabilities as predict, the same loss as loss(), at full precision
    assert z.dtype == np.float64 and z.shape == (2, 2)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, model.predict(params, X), atol=1e-6)
    nll = -np.mean(np.log(p[np.arange(2), [1, 1]]))
    assert model.loss(params, X, np.array([1, 1])) == pytest.approx(nll, rel=1e-9)
    assert model.predict(params, X)[0, 0] == 1.0 and p[0, 0] < 1.0
