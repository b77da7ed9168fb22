"""privcity.models training: SGD converges to the right answers, is deterministic, never writes
its inputs, and train_many equals train_local per device bit for bit, however devices are
grouped."""
from __future__ import annotations

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
from privcity.models import training


def blobs(n: int, seed: int, *, n_classes: int = 4, n_features: int = 5, spread: float = 0.5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 4.0, (n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    return (centers[y] + rng.normal(0.0, spread, (n, n_features))).astype(np.float32), y


def xor(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32)
    return X, (X[:, 0] * X[:, 1] > 0).astype(np.int64)


def federated_data(model, sizes, seed: int):
    """X, y and offsets of devices with the given row counts."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    X = rng.normal(size=(offsets[-1], model.n_features)).astype(np.float32)
    if model.task_type == "regression":
        noise = rng.normal(0, 0.1, offsets[-1])
        y = (X @ rng.normal(size=model.n_features) + noise).astype(np.float32)
    else:
        y = rng.integers(0, model.n_outputs, offsets[-1])
    # A non-zero start, so the comparison also covers the first step's matmuls.
    params = model.init_params(3) + rng.normal(0, 0.1, model.n_params).astype(np.float32)
    return X, y, offsets, params


MODELS = {
    "linear": lambda: LinearRegression(n_features=5, l2=0.01),
    "softmax": lambda: SoftmaxRegression(n_features=5, n_classes=4, l2=0.01),
    "mlp-relu": lambda: MLP(n_features=5, hidden=8, n_outputs=3, task_type="classification",
                            l2=0.01),
    "mlp-tanh-regression": lambda: MLP(n_features=5, hidden=8, n_outputs=1, task_type="regression",
                                       activation="tanh"),
}

HYPER = {"epochs": 2, "batch_size": 8, "lr": 0.05}


def local_updates(model, params, X, y, offsets, devices, seeds):
    p32 = np.float32(params)
    return np.stack([
        train_local(model, params, X[offsets[d]:offsets[d + 1]], y[offsets[d]:offsets[d + 1]],
                    seed=s, **HYPER) - p32
        for d, s in zip(devices, seeds, strict=True)])


# --- convergence -------------------------------------------------------------------------------

def test_linear_regression_sgd_reaches_least_squares():
    # Prepare
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    w = np.array([1.5, -2.0, 0.5, 0.0, 3.0])
    y = (X @ w + 0.7 + rng.normal(0, 0.1, 2000)).astype(np.float32)
    model = LinearRegression(n_features=5)
    A = np.hstack([X, np.ones((2000, 1))]).astype(np.float64)
    exact = np.linalg.lstsq(A, y.astype(np.float64), rcond=None)[0]

    # Execute
    params = train_centralized(model, model.init_params(0), X, y, epochs=20, batch_size=32,
                               lr=0.02, seed=1)

    # Assert
    np.testing.assert_allclose(params, exact, atol=0.02)
    assert model.evaluate(params, X, y)["mse"] < 1.05 * np.mean((A @ exact - y) ** 2)


def test_ridge_sgd_reaches_the_ridge_solution_with_unpenalised_intercept():
    # Prepare
    rng = np.random.default_rng(1)
    X = rng.normal(1.0, 1.0, size=(1500, 3)).astype(np.float32)
    y = (X @ np.array([2.0, -1.0, 0.5]) + 4.0 + rng.normal(0, 0.1, 1500)).astype(np.float32)
    l2 = 0.5
    model = LinearRegression(n_features=3, l2=l2)
    A = np.hstack([X, np.ones((1500, 1))]).astype(np.float64)
    # Minimiser of 0.5 mean((A p - y)^2) + 0.5 l2 ||w||^2 (bias excluded from the penalty).
    exact = np.linalg.solve(A.T @ A / 1500 + l2 * np.diag([1, 1, 1, 0]), A.T @ y / 1500)
    ols = np.linalg.lstsq(A, y, rcond=None)[0]
    penalised_intercept = np.linalg.solve(A.T @ A / 1500 + l2 * np.eye(4), A.T @ y / 1500)

    # Execute
    params = train_centralized(model, model.init_params(0), X, y, epochs=30, batch_size=32,
                               lr=0.02, seed=2)

    # Assert
    np.testing.assert_allclose(params, exact, atol=0.03)
    # The alternatives are far away: the test tells them apart.
    assert np.abs(exact - ols).max() > 0.3 and np.abs(exact - penalised_intercept).max() > 0.3


def test_softmax_reaches_high_accuracy_on_separable_blobs():
    # Prepare
    X, y = blobs(1200, seed=2)
    X_test, y_test = X[1000:], y[1000:]
    model = SoftmaxRegression(n_features=5, n_classes=4)

    # Execute
    params = train_local(model, model.init_params(0), X[:1000], y[:1000], epochs=5,
                         batch_size=32, lr=0.1, seed=0)

    # Assert
    assert model.score(params, X_test, y_test) > 0.97
    assert model.evaluate(params, X_test, y_test)["loss"] < 0.2


def test_mlp_fits_xor_where_a_linear_model_cannot():
    # Prepare
    X, y = xor(1200, seed=4)
    mlp = MLP(n_features=2, hidden=16, n_outputs=2, task_type="classification")
    linear = SoftmaxRegression(n_features=2, n_classes=2)
    fit = {"epochs": 60, "batch_size": 16, "lr": 0.1, "seed": 0}

    # Execute
    p_mlp = train_local(mlp, mlp.init_params(0), X[:800], y[:800], **fit)
    p_lin = train_local(linear, linear.init_params(0), X[:800], y[:800], **fit)

    # Assert
    assert mlp.score(p_mlp, X[800:], y[800:]) > 0.9
    assert linear.score(p_lin, X[800:], y[800:]) < 0.75


def test_mlp_regression_fits_a_nonlinear_function():
    # Prepare
    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, (1000, 1)).astype(np.float32)
    y = np.sin(2 * X[:, 0]).astype(np.float32)
    model = MLP(n_features=1, hidden=32, n_outputs=1, task_type="regression", activation="tanh")

    # Execute
    params = train_local(model, model.init_params(0), X, y, epochs=150, batch_size=32, lr=0.1,
                         seed=0)

    # Assert
    assert model.score(params, X, y) > 0.9
    assert LinearRegression(n_features=1).score(
        np.linalg.lstsq(np.hstack([X, np.ones((1000, 1))]), y, rcond=None)[0], X, y) < 0.5


# --- determinism and inputs --------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_train_local_is_deterministic_and_leaves_params_alone(name):
    # Prepare
    model = MODELS[name]()
    X, y, _, params = federated_data(model, [100], seed=6)
    params.flags.writeable = False  # any in-place write would raise
    before = params.copy()

    # Execute
    a = train_local(model, params, X, y, epochs=2, batch_size=16, lr=0.05, seed=9)
    b = train_local(model, params, X, y, epochs=2, batch_size=16, lr=0.05, seed=9)
    c = train_local(model, params, X, y, epochs=2, batch_size=16, lr=0.05, seed=10)

    # Assert
    assert a.dtype == np.float32 and a.shape == (model.n_params,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the seed drives the shuffle
    assert not np.array_equal(a, params)
    assert np.array_equal(params, before)


def test_train_local_of_float64_inputs_equals_their_float32_rounding():
    # Prepare
    model = SoftmaxRegression(n_features=5, n_classes=4)
    X, y, _, params = federated_data(model, [64], seed=7)
    X64 = X.astype(np.float64) + 1e-12  # rounds back to X

    # Execute
    a = train_local(model, params.astype(np.float64), X64, y.astype(np.float64), seed=1)
    b = train_local(model, params, X, y, seed=1)

    # Assert
    assert np.array_equal(a, b)


def test_train_local_on_no_rows_returns_a_copy_of_params():
    # Prepare
    model = SoftmaxRegression(n_features=5, n_classes=4)
    params = model.init_params(0) + 1

    # Execute
    out = train_local(model, params, np.zeros((0, 5)), np.zeros(0, np.int64))

    # Assert
    assert np.array_equal(out, params) and out is not params


@pytest.mark.parametrize("name", MODELS)
def test_a_batch_size_beyond_the_rows_is_one_batch_of_all_rows(name):
    # Prepare
    model = MODELS[name]()
    X, y, _, params = federated_data(model, [30], seed=15)

    # Execute: scratch memory follows the rows, not the (huge) batch size
    huge = train_local(model, params, X, y, epochs=2, batch_size=2**40, lr=0.05, seed=3)
    exact = train_local(model, params, X, y, epochs=2, batch_size=30, lr=0.05, seed=3)

    # Assert
    assert np.array_equal(huge, exact)


def test_train_centralized_is_train_local_on_pooled_rows():
    # Prepare
    model = MODELS["mlp-relu"]()
    X, y, _, params = federated_data(model, [90], seed=8)

    # Execute
    a = train_centralized(model, params, X, y, epochs=2, batch_size=10, lr=0.1, seed=4)
    b = train_local(model, params, X, y, epochs=2, batch_size=10, lr=0.1, seed=4)

    # Assert
    assert np.array_equal(a, b)


# --- train_many against train_local ------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_train_many_equals_train_local_for_equal_device_sizes(name):
    # Prepare
    model = MODELS[name]()
    X, y, offsets, params = federated_data(model, [24] * 30, seed=9)
    devices = np.arange(30)
    seeds = np.arange(30) * 7 + 1

    # Execute
    updates = train_many(model, params, X, y, offsets, devices, seeds=seeds, **HYPER)

    # Assert
    assert updates.dtype == np.float32 and updates.shape == (30, model.n_params)
    assert np.array_equal(updates, local_updates(model, params, X, y, offsets, devices, seeds))
    assert np.all(np.abs(updates).sum(axis=1) > 0)


@pytest.mark.parametrize("name", MODELS)
def test_train_many_equals_train_local_for_unequal_device_sizes(name):
    # Prepare: empty devices, single rows, sizes above, at and below the batch size
    model = MODELS[name]()
    sizes = [0, 1, 7, 8, 9, 16, 23, 24, 24, 40, 3, 8, 0, 31]
    X, y, offsets, params = federated_data(model, sizes, seed=10)
    devices = np.array([13, 2, 5, 5, 0, 9, 1, 3, 4, 6, 7, 8, 10, 11, 12])  # repeats, any order
    seeds = np.arange(len(devices)) + 100

    # Execute
    updates = train_many(model, params, X, y, offsets, devices, seeds=seeds, **HYPER)

    # Assert
    assert np.array_equal(updates, local_updates(model, params, X, y, offsets, devices, seeds))
    assert not updates[[4, 14]].any()  # the empty devices did not move
    assert not np.array_equal(updates[2], updates[3])  # same device, different seeds


@pytest.mark.parametrize("name", MODELS)
def test_train_many_rows_do_not_depend_on_how_devices_are_grouped(name):
    # Prepare
    model = MODELS[name]()
    rng = np.random.default_rng(11)
    sizes = rng.integers(5, 40, 60)
    X, y, offsets, params = federated_data(model, sizes, seed=11)
    seeds = rng.integers(0, 2**63, 60)
    whole = train_many(model, params, X, y, offsets, np.arange(60), seeds=seeds, **HYPER)

    # Execute: contiguous blocks of different sizes, and a random regrouping
    blocks = [train_many(model, params, X, y, offsets, np.arange(a, b), seeds=seeds[a:b], **HYPER)
              for a, b in [(0, 1), (1, 17), (17, 18), (18, 45), (45, 60)]]
    order = rng.permutation(60)
    shuffled = np.empty_like(whole)
    for part in np.array_split(order, 7):
        shuffled[part] = train_many(model, params, X, y, offsets, part, seeds=seeds[part], **HYPER)

    # Assert
    assert np.array_equal(np.concatenate(blocks), whole)
    assert np.array_equal(shuffled, whole)


@pytest.mark.parametrize("name", MODELS)
def test_train_many_gives_the_same_bits_on_any_number_of_threads(name, monkeypatch):
    # Prepare: enough rows that the devices are split into one block per thread
    model = MODELS[name]()
    monkeypatch.setattr(training, "_ROWS_PER_THREAD", 1)
    rng = np.random.default_rng(14)
    sizes = rng.integers(0, 40, 50)
    X, y, offsets, params = federated_data(model, sizes, seed=14)
    seeds = rng.integers(0, 2**63, 50)
    runs = {}

    # Execute
    for threads in (1, 2, 3, 7):
        runs[threads] = train_many(model, params, X, y, offsets, np.arange(50), seeds=seeds,
                                   threads=threads, **HYPER)

    # Assert
    assert len(training._blocks(sizes, 1, 7)) == 7  # the split really happened
    assert all(np.array_equal(runs[t], runs[1]) for t in runs)


def test_train_many_gives_the_same_bits_from_rows_it_must_convert_or_reads_in_place():
    # Prepare: float32 C-contiguous X is read in place; float64 or Fortran-ordered X has the
    # listed devices' rows gathered and rounded first
    model = MODELS["softmax"]()
    X, y, offsets, params = federated_data(model, [12, 30, 7, 19], seed=16)
    devices, seeds = np.array([3, 0, 2, 3]), [5, 6, 7, 8]

    # Execute
    runs = [train_many(model, params, A, y, offsets, devices, seeds=seeds, **HYPER)
            for A in (X, X.astype(np.float64), np.asfortranarray(X))]

    # Assert
    assert np.array_equal(runs[1], runs[0]) and np.array_equal(runs[2], runs[0])


def test_train_many_reads_only_the_listed_devices():
    # Prepare: a NaN in a device that is not trained must not matter
    model = SoftmaxRegression(n_features=5, n_classes=4)
    X, y, offsets, params = federated_data(model, [10, 10, 10], seed=12)
    X[offsets[1]] = np.nan

    # Execute
    updates = train_many(model, params, X, y, offsets, [0, 2], seeds=[1, 2], **HYPER)

    # Assert
    assert np.isfinite(updates).all()
    with pytest.raises(ValueError, match=r"^X contains NaN"):
        train_many(model, params, X, y, offsets, [1], seeds=[1], **HYPER)


def test_federated_averaging_of_train_many_updates_learns():
    # Prepare: 20 devices of separable blobs, 10 rounds of FedAvg
    model = SoftmaxRegression(n_features=5, n_classes=4)
    X, y = blobs(20 * 48 + 400, seed=13)
    offsets = np.arange(21) * 48
    params = model.init_params(0)

    # Execute
    for r in range(10):
        updates = train_many(model, params, X, y, offsets, np.arange(20), epochs=1, batch_size=16,
                             lr=0.1, seeds=np.arange(20) + 1000 * r)
        params = params + updates.mean(axis=0)

    # Assert
    assert model.score(params, X[960:], y[960:]) > 0.95


# --- the compiled kernels ----------------------------------------------------------------------

def add_one(a):
    return a + 1


def test_kernels_are_cached_on_disk_where_numba_can_write():
    # Prepare / Execute
    from privcity.models._compile import cached_njit
    from privcity.models._sgd import train_linear
    fn = cached_njit()(add_one)

    # Assert
    assert fn(1) == 2
    assert type(fn._cache).__name__ == "FunctionCache"
    assert type(train_linear._cache).__name__ == "FunctionCache"


def test_kernels_still_compile_where_no_cache_can_be_written(monkeypatch):
    # Prepare: no cache locator applies (a read-only install, no writable home): numba's
    # cache=True alone raises RuntimeError at decoration, i.e. at import
    from numba.core import caching

    from privcity.models._compile import cached_njit
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    # Execute
    fn = cached_njit(nogil=True)(add_one)

    # Assert
    assert fn(1) == 2
    assert type(fn._cache).__name__ == "NullCache"


@pytest.mark.parametrize("make,kernel", [
    ("SoftmaxRegression(n_features=6, n_classes=3)", "train_linear"),
    ("LinearRegression(n_features=4)", "train_linear"),
    ("MLP(n_features=5, hidden=4, n_outputs=2, task_type='classification')", "train_mlp"),
])
def test_load_kernels_readies_the_kernel_the_rounds_then_call(run_python, make, kernel):
    # Prepare: a fresh interpreter, so no kernel is loaded yet
    code = f"""
import numpy as np
from privcity.models import MLP, LinearRegression, SoftmaxRegression, load_kernels, train_many
from privcity.models import _sgd
model = {make}
kernel = _sgd.{kernel}
before = len(kernel.signatures)
load_kernels(model)
after = len(kernel.signatures)
X = np.random.default_rng(0).standard_normal((8, model.n_features)).astype(np.float32)
y = (np.arange(8) % 2).astype(np.int64 if model.task_type == 'classification' else np.float32)
train_many(model, model.init_params(0), X, y, [0, 4, 8], [0, 1], epochs=1, batch_size=2,
           lr=0.1, seeds=[1, 2])
print(before, after, len(kernel.signatures))
"""

    # Execute
    out = run_python(code)

    # Assert: one signature loaded by load_kernels, the very one training then uses
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "1"]
