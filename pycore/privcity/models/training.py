"""Mini-batch SGD: one device (:func:`train_local`), many devices at once (:func:`train_many`)
and the pooled-data baseline (:func:`train_centralized`).

All three run one engine. Each device shuffles its rows once per epoch with
``np.random.default_rng(seed).permutation`` (one generator per device, epochs drawn in turn)
and steps through batches of ``batch_size`` rows, the last one shorter when batch_size does not
divide its row count: ``params -= lr * gradient(batch)``, all in float32.

Devices run in lockstep: at every step, all devices whose current batch has the same size are
stacked into one (K, b, n_features + 1) tensor and take their step together through the model's
batched gradient (per-slice matmuls, no cross-slice reductions). Devices with equal row counts
thus share every step; unequal ones share the steps where their batch sizes agree. A device's
result is bit-identical whichever devices it is stacked with, which is what lets a simulation
split devices into blocks (MPI ranks) freely: ``train_many(...)[i]`` equals
``train_local(..., seed=seeds[i]) - params`` exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from .base import Model, _shape_X, _with_ones

__all__ = ["train_centralized", "train_local", "train_many"]


def train_local(model: Model, params: Any, X: Any, y: Any, *, epochs: int = 1,
                batch_size: int = 32, lr: float = 0.05, seed: int = 0) -> np.ndarray:
    """Mini-batch SGD on one device's data from ``params``; returns the new parameters.

    Parameters
    ----------
    model : Model
    params : array_like
        Starting parameters (n_params,); rounded to float32, never modified.
    X, y : array_like
        The device's rows (n, n_features) and targets or labels (n,). n may be 0 (no steps).
    epochs, batch_size : int
        >= 1 each.
    lr : float
        Step size, > 0.
    seed : int
        >= 0; seeds the per-epoch shuffles, so the result is a deterministic function of the
        arguments.

    Returns
    -------
    numpy.ndarray
        float32 (n_params,), a new array.
    """
    _check_model(model)
    p32 = _params32(model, params)
    Xa, t = _data(model, X, y, None)
    new = _sgd(model, p32, Xa, t, np.zeros(1, np.int64), np.array([Xa.shape[0]]),
               [_checks.count(seed, "seed", 0)], *_hyper(epochs, batch_size, lr))
    return new[0]


def train_many(model: Model, params: Any, X: Any, y: Any, offsets: Any, devices: Any, *,
               epochs: int, batch_size: int, lr: float, seeds: Any) -> np.ndarray:
    """Local training of several devices from the same ``params``; returns their update deltas.

    Parameters
    ----------
    model : Model
    params : array_like
        Common starting parameters (n_params,); rounded to float32, never modified.
    X, y : array_like
        Rows of all devices (N, n_features) and their targets or labels (N,). Only the rows of
        the listed devices are read, converted and checked.
    offsets : array_like of int
        Device d owns rows ``offsets[d]:offsets[d + 1]``; non-decreasing, within [0, N].
    devices : array_like of int
        Which devices to train, indices in [0, len(offsets) - 1); repeats allowed.
    epochs, batch_size, lr
        As for :func:`train_local`.
    seeds : array_like of int
        ``seeds[i]`` (>= 0) seeds ``devices[i]``, one per entry of devices.

    Returns
    -------
    numpy.ndarray
        float32 (len(devices), n_params): row i is ``new_params_i - float32(params)``,
        bit-identical to ``train_local(model, params, X[a:b], y[a:b], seed=seeds[i], ...) -
        params`` for that device alone, whatever the other devices.
    """
    _check_model(model)
    p32 = _params32(model, params)
    off = _checks.int_vector(offsets, "offsets")
    dev = _checks.int_vector(devices, "devices")
    seed_list = _checks.seeds(seeds, dev.shape[0])
    hyper = _hyper(epochs, batch_size, lr)
    n_rows = _shape_X(X, model.n_features).shape[0]
    if off.shape[0] < 1 or off[0] < 0 or off[-1] > n_rows or np.any(np.diff(off) < 0):
        raise ValueError(
            f"offsets must be a non-empty, non-decreasing 1-D int array within [0, {n_rows}]")
    if dev.size and (dev.min() < 0 or dev.max() >= off.shape[0] - 1):
        raise ValueError(f"devices must hold device indices in [0, {off.shape[0] - 1})")
    counts = off[dev + 1] - off[dev]
    starts = np.zeros(dev.shape[0], np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    # Gather the listed devices' rows into one compact block (converting only what is used).
    rows = np.repeat(off[dev] - starts, counts) + np.arange(int(counts.sum()))
    Xa, t = _data(model, X, y, rows)
    new = _sgd(model, p32, Xa, t, starts, counts, seed_list, *hyper)
    new -= p32
    return new


def train_centralized(model: Model, params: Any, X: Any, y: Any, *, epochs: int,
                      batch_size: int, lr: float, seed: int) -> np.ndarray:
    """The non-federated baseline: the same SGD as :func:`train_local` on the pooled rows of
    every device; returns the new parameters, float32 (n_params,)."""
    return train_local(model, params, X, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)


# --- engine -------------------------------------------------------------------------------------

def _sgd(model: Model, p32: np.ndarray, Xa: np.ndarray, t: np.ndarray, starts: np.ndarray,
         counts: np.ndarray, seeds: list[int], epochs: int, batch_size: int,
         lr: float) -> np.ndarray:
    """(K, n_params) float32 parameters after SGD of K devices, device i owning rows
    starts[i] : starts[i] + counts[i] of (Xa, t)."""
    K = counts.shape[0]
    P = np.repeat(p32[None, :], K, axis=0)
    lr32 = np.float32(lr)
    # Devices with the same row count follow the same batch-size schedule: one group each, with
    # every epoch's shuffled row indices laid end to end (ord[:, e*n + j*bs ...]).
    groups = []
    for n in np.unique(counts).tolist():
        if n == 0:
            continue
        members = np.flatnonzero(counts == n)
        order = np.empty((members.shape[0], epochs * n), np.int64)
        for r, i in enumerate(members.tolist()):
            rng = np.random.default_rng(seeds[i])
            for e in range(epochs):
                order[r, e * n:(e + 1) * n] = rng.permutation(n)
        order += starts[members, None]
        groups.append((n, -(-n // batch_size), members, order))
    n_steps = max((epochs * spe for _, spe, _, _ in groups), default=0)
    for step in range(n_steps):
        buckets: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for n, spe, members, order in groups:
            if step >= epochs * spe:
                continue
            e, j = divmod(step, spe)
            b = min(batch_size, n - j * batch_size)
            lo = e * n + j * batch_size
            buckets.setdefault(b, []).append((members, order[:, lo:lo + b]))
        for parts in buckets.values():
            if len(parts) == 1:
                dev, rows = parts[0]
            else:
                dev = np.concatenate([m for m, _ in parts])
                rows = np.concatenate([r for _, r in parts])
            everyone = len(parts) == 1 and dev.shape[0] == K  # members is then arange(K)
            Pb = P if everyone else P[dev]
            G = model._grad_batch(Pb, Xa[rows], t[rows])
            G *= lr32
            Pb -= G
            if not everyone:
                P[dev] = Pb
    return P


def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise ValueError(f"model must be a privcity.models.Model, got {type(model).__name__}")


def _params32(model: Model, params: Any) -> np.ndarray:
    return np.array(model._check_params(params), dtype=np.float32)  # always a copy


def _hyper(epochs: Any, batch_size: Any, lr: Any) -> tuple[int, int, float]:
    return (_checks.count(epochs, "epochs", 1), _checks.count(batch_size, "batch_size", 1),
            _checks.real(lr, "lr", positive=True))


def _data(model: Model, X: Any, y: Any, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(X rows as float32 with a ones column, validated targets), restricted to ``rows``."""
    arr = _shape_X(X, model.n_features)
    yarr = np.asarray(y)
    if yarr.ndim != 1 or yarr.shape[0] != arr.shape[0]:
        raise ValueError(
            f"y must be 1-D with one entry per row of X ({arr.shape[0]}), got shape {yarr.shape}")
    if rows is not None:
        arr, yarr = arr[rows], yarr[rows]
    return _with_ones(arr), model._check_y(yarr, arr.shape[0])
