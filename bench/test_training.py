"""Local training and evaluation on FLUTE's reference workload (issue 16), in one process:
MNIST-shaped softmax regression (784 features, 10 classes), 1,000 clients of 60 rows in non-IID
shards (bench/_workload.py, seeded, no CSV), clients sampled at q = 0.1, 1 local epoch, batch
10, lr 0.05.

Run: python -m pytest bench/test_training.py -p no:cacheprovider   (full: about a minute)
  * One round's local training: ``privcity.models.train_many`` over the round's sampled
    devices beside the plain loop's client (``_workload.client_update``, the same float32 SGD
    in numpy) looped over the same devices with the same seeds. The two alternate round by
    round (the interleaved fixture) through the first ROUNDS rounds of the schedule; medians
    and the ratio are reported, on 1 thread and on train_many's default (every CPU the
    process may use; a device's result does not depend on the thread count, checked here).
  * Evaluation of the ~15,000-row test set: ``Model.evaluate`` (float32 forward pass, what the
    simulator calls each evaluated round) beside the same accuracy and cross-entropy from the
    float64 outputs (``Model.outputs``: the float64 pass evaluate used to make).
Targets: training >= TRAIN_TARGET x the client loop (the FL round must be >= 2x faster than the
plain loop's round, which is nearly all training, with sealing, aggregation and evaluation in
the same budget). Under --benchmark-disable (the CI smoke) a small workload takes the same paths.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _workload as W  # noqa: E402  (bench/ is no package)

from privcity.models import SoftmaxRegression, train_many, training  # noqa: E402

SAMPLE_RATE, EPOCHS, BATCH, LR, SEED = 0.1, 1, 10, 0.05, 0
ROUNDS = 10  # distinct rounds of the schedule, cycled through by the timed calls
TRAIN_TARGET = 4.0
TRAIN = "FL train one round: train_many vs client loop"
EVAL = "FL evaluate test set: float32 vs float64 pass"


@pytest.fixture(scope="module")
def workload(request) -> SimpleNamespace:
    """The clients' rows grouped by device, standardised as load_csv does (X32: float32 without
    a ones column, as the simulator holds it; Xa: with it, as client_update takes it), the test
    set and the first ROUNDS rounds' (devices, seeds)."""
    full = not request.config.getoption("benchmark_disable", False)
    clients, rows = (1000, 60) if full else (100, 20)
    w = W.make_workload(clients=clients, rows_per_client=rows, seed=SEED)
    train = np.flatnonzero(~w.test)
    order = train[np.argsort(w.device[train], kind="stable")]
    raw = w.pixels.astype(np.float64)
    mean, std = raw[train].mean(axis=0), raw[train].std(axis=0)
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    X32 = ((raw[order] - mean) * (1.0 / std)).astype(np.float32)
    Xa = np.hstack([X32, np.ones((X32.shape[0], 1), np.float32)])
    X_test = ((raw[w.test] - mean) * (1.0 / std)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(w.device[order], minlength=clients))])
    return SimpleNamespace(X32=X32, Xa=Xa, y=w.labels[order], offsets=offsets, X_test=X_test,
                           y_test=w.labels[w.test], clients=clients, rows=rows,
                           plan=W.schedule(SEED, ROUNDS, clients, SAMPLE_RATE))


def _privcity_round(wl: SimpleNamespace, model: SoftmaxRegression, r: int, start: np.ndarray,
                    threads: int | None = None) -> np.ndarray:
    ids, seeds = wl.plan[r]
    return train_many(model, start, wl.X32, wl.y, wl.offsets, ids, epochs=EPOCHS,
                      batch_size=BATCH, lr=LR, seeds=seeds, threads=threads)


def _plain_round(wl: SimpleNamespace, r: int, start: np.ndarray) -> np.ndarray:
    ids, seeds = wl.plan[r]
    W0 = start.reshape(W.N_FEATURES + 1, W.N_CLASSES)
    off = wl.offsets
    return np.stack([W.client_update(W0, wl.Xa[off[d]:off[d + 1]], wl.y[off[d]:off[d + 1]],
                                     epochs=EPOCHS, batch=BATCH, lr=LR, seed=s) - W0
                     for d, s in zip(ids.tolist(), seeds)]).reshape(len(ids), -1)


@pytest.mark.parametrize("threads", ["1 thread", "all cores"])
def test_train_many_one_round_beside_the_plain_client_loop(benchmark, record, interleaved,
                                                           report_line, workload, threads):
    # Prepare: a non-zero start (the second round's model is not zeros either)
    wl, model = workload, SoftmaxRegression(n_features=W.N_FEATURES, n_classes=W.N_CLASSES)
    start = np.random.default_rng(1).normal(0.0, 0.01, model.n_params).astype(np.float32)
    n = 1 if threads == "1 thread" else training._default_threads()
    state = SimpleNamespace(r=-1)
    _privcity_round(wl, model, 0, start)  # compile or load the cached kernel before timing

    def anchor() -> None:
        state.r = (state.r + 1) % ROUNDS  # the same round for the anchor and the call after it
        _plain_round(wl, state.r, start)

    # Execute
    _, stand_in = interleaved(benchmark, lambda: _privcity_round(wl, model, state.r, start, n),
                              anchor, rounds=3 * ROUNDS)

    # Assert: the same clients, shuffles and float32 SGD: equal up to summation order
    ours, plain = _privcity_round(wl, model, 1, start, n), _plain_round(wl, 1, start)
    assert ours.shape == plain.shape
    drift = float(np.abs(ours - plain).max())
    assert drift <= 1e-5 * max(1.0, float(np.abs(plain).max())), drift
    assert np.array_equal(_privcity_round(wl, model, 1, start, 3), ours)  # threads: no change
    if stand_in is None:  # --benchmark-disable
        return
    group = f"{TRAIN} ({threads})"
    record(stand_in, group, "anchor")
    record(benchmark, group, "train_many", TRAIN_TARGET if threads == "all cores" else None)
    mine, theirs = benchmark.stats.stats.median, stand_in.stats.stats.median
    devices = statistics.mean(len(ids) for ids, _ in wl.plan)
    report_line(f"train one round ({devices:.0f} devices x {wl.rows} rows, {n} thread(s)), "
                f"medians of {3 * ROUNDS}: train_many {mine * 1e3:.2f} ms, client_update loop "
                f"{theirs * 1e3:.2f} ms = {theirs / mine:.1f}x; largest |difference| {drift:.2g}")


def test_evaluation_in_float32_beside_float64(benchmark, record, interleaved, report_line,
                                              workload):
    # Prepare: a trained model (a few rounds of FedAvg), so the scores mean something
    wl, model = workload, SoftmaxRegression(n_features=W.N_FEATURES, n_classes=W.N_CLASSES)
    params = model.init_params(0)
    for r in range(3):
        params = params + _privcity_round(wl, model, r, params).mean(axis=0)
    out = {}

    def float64() -> None:  # the float64 pass Model.evaluate made before it went float32
        logits = model.outputs(params, wl.X_test)
        top = logits.max(axis=1)
        lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        out["float64"] = {"accuracy": float(np.mean(np.argmax(logits, axis=1) == wl.y_test)),
                          "loss": float(np.mean(lse - logits[np.arange(len(lse)), wl.y_test]))}

    def float32() -> None:
        out["float32"] = model.evaluate(params, wl.X_test, wl.y_test)

    # Execute
    _, stand_in = interleaved(benchmark, float32, float64, rounds=20)

    # Assert: the same accuracy (a float32 rounding can flip a near tie, hardly more) and loss
    assert abs(out["float32"]["accuracy"] - out["float64"]["accuracy"]) <= 2 / len(wl.y_test)
    assert abs(out["float32"]["loss"] - out["float64"]["loss"]) <= 1e-3
    if stand_in is None:
        return
    record(stand_in, EVAL, "anchor")
    record(benchmark, EVAL, "Model.evaluate")
    f32, f64 = benchmark.stats.stats.median, stand_in.stats.stats.median
    report_line(f"evaluate {len(wl.y_test):,} test rows (accuracy + cross-entropy), medians of "
                f"20: Model.evaluate (float32 forward) {f32 * 1e3:.1f} ms, the same in float64 "
                f"{f64 * 1e3:.1f} ms = {f64 / f32:.1f}x; accuracy {out['float32']['accuracy']:.4f}")
