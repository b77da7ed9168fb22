"""Mini-batch SGD: one device (:func:`train_local`), many devices at once (:func:`train_many`)
and the pooled-data baseline (:func:`train_centralized`).

All three run one engine: a compiled kernel (numba, :mod:`._sgd`) that runs a device's whole SGD
in one call. Each device shuffles its rows once per epoch exactly as
``np.random.default_rng(seed).permutation`` does (one generator per device, epochs drawn in
turn; :mod:`._shuffle` reproduces numpy's stream in the kernel) and steps through batches of
``batch_size`` rows, the last one shorter when batch_size does not divide its row count:
``params -= lr * gradient(batch)``, all in float32.

Devices are trained one after the other by the same compiled code, each from its own rows and
seed alone: a device's result is bit-identical whichever devices share the call, which is what
lets a simulation split devices into blocks (MPI ranks) freely: ``train_many(...)[i]`` equals
``train_local(..., seed=seeds[i]) - params`` exactly. The kernel's dot products are vectorised
with a summation order fixed by the compiled code (see :mod:`._sgd`): results are reproducible
run to run on one machine, and may differ in the last bits between CPUs of different vector
widths.

The kernels compile on first use (tens of seconds) and are cached on disk (numba's
``cache=True``: beside the package, or under NUMBA_CACHE_DIR / the user's cache directory when
the package directory is read-only); later processes load them in well under a second.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from . import _checks
from .base import Model, _shape_X

__all__ = ["load_kernels", "train_centralized", "train_local", "train_many"]


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
    X32 = _rows32(_shape_X(X, model.n_features))
    t = _targets(model, y, X32.shape[0], None)
    start, count = np.zeros(1, np.int64), np.array([X32.shape[0]], np.int64)
    seed_list = [_checks.count(seed, "seed", 0)]
    return _sgd(model, p32, X32, start, count, t, start, seed_list,
                *_hyper(epochs, batch_size, lr))[0]


def train_many(model: Model, params: Any, X: Any, y: Any, offsets: Any, devices: Any, *,
               epochs: int, batch_size: int, lr: float, seeds: Any,
               threads: int | None = None) -> np.ndarray:
    """Local training of several devices from the same ``params``; returns their update deltas.

    Parameters
    ----------
    model : Model
    params : array_like
        Common starting parameters (n_params,); rounded to float32, never modified.
    X, y : array_like
        Rows of all devices (N, n_features) and their targets or labels (N,). Only the rows of
        the listed devices are read, converted and checked; a C-contiguous float32 X is read in
        place (no copy).
    offsets : array_like of int
        Device d owns rows ``offsets[d]:offsets[d + 1]``; non-decreasing, within [0, N].
    devices : array_like of int
        Which devices to train, indices in [0, len(offsets) - 1); repeats allowed.
    epochs, batch_size, lr
        As for :func:`train_local`.
    seeds : array_like of int
        ``seeds[i]`` (>= 0) seeds ``devices[i]``, one per entry of devices.
    threads : int, optional
        >= 1: at most this many threads train blocks of devices side by side (the result does
        not depend on it). Default: NUMBA_NUM_THREADS if set, else every CPU this process may
        run on; one MPI rank per core wants 1.

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
    n_threads = _default_threads() if threads is None else _checks.count(threads, "threads", 1)
    arr = _shape_X(X, model.n_features)
    n_rows = arr.shape[0]
    if off.shape[0] < 1 or off[0] < 0 or off[-1] > n_rows or np.any(np.diff(off) < 0):
        raise ValueError(
            f"offsets must be a non-empty, non-decreasing 1-D int array within [0, {n_rows}]")
    if dev.size and (dev.min() < 0 or dev.max() >= off.shape[0] - 1):
        raise ValueError(f"devices must hold device indices in [0, {off.shape[0] - 1})")
    counts = off[dev + 1] - off[dev]
    starts = np.zeros(dev.shape[0], np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    # The listed devices' rows, laid end to end (targets always; X only when it is not already
    # float32 and C-contiguous, which the kernel then reads in place).
    rows = np.repeat(off[dev] - starts, counts) + np.arange(int(counts.sum()))
    t = _targets(model, y, n_rows, rows)
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        X32, xstart = arr, off[dev]
    else:
        X32, xstart = _rows32(arr[rows]), starts
    new = _sgd(model, p32, X32, xstart, counts, t, starts, seed_list, *hyper, threads=n_threads)
    new -= p32
    return new


def load_kernels(model: Model) -> None:
    """Load ``model``'s compiled training kernel now: numba's import and its on-disk cache take
    0.5 to 1.5 s once per process (a cold cache compiles, 10 to 20 s), which a caller timing
    its rounds wants before them, not inside the first. Trains one zero row, for nothing."""
    _check_model(model)
    y = np.zeros(1, np.int64 if model.task_type == "classification" else np.float32)
    train_many(model, np.zeros(model.n_params, np.float32),
               np.zeros((1, model.n_features), np.float32), y, [0, 1], [0], epochs=1,
               batch_size=1, lr=1.0, seeds=[0], threads=1)


def train_centralized(model: Model, params: Any, X: Any, y: Any, *, epochs: int,
                      batch_size: int, lr: float, seed: int) -> np.ndarray:
    """The non-federated baseline: the same SGD as :func:`train_local` on the pooled rows of
    every device; returns the new parameters, float32 (n_params,)."""
    return train_local(model, params, X, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)


# --- engine -------------------------------------------------------------------------------------

def _sgd(model: Model, p32: np.ndarray, X32: np.ndarray, xstart: np.ndarray, counts: np.ndarray,
         t: np.ndarray, tstart: np.ndarray, seeds: list[int], epochs: int, batch_size: int,
         lr: float, threads: int = 1) -> np.ndarray:
    """(K, n_params) float32 parameters after SGD of K devices, device i owning rows
    xstart[i] : xstart[i] + counts[i] of X32 and tstart[i] : tstart[i] + counts[i] of t.

    Contiguous blocks of devices (about equal rows each) run in parallel threads, the kernel
    releasing the GIL; each device is computed alone, so the split changes nothing.
    """
    from ._shuffle import seed_words
    # The kernels only read X: a read-only view gives every call the same argument types, so
    # writable and read-only inputs share one compiled (and cached) kernel.
    X32 = X32.view()
    X32.flags.writeable = False
    K = counts.shape[0]
    out = np.empty((K, model.n_params), np.float32)
    words = seed_words(np.array(seeds, np.uint64))
    finite = np.empty(K, bool)

    def run(lo: int, hi: int) -> None:
        finite[lo:hi] = model._train(p32, X32, xstart[lo:hi], counts[lo:hi], t, tstart[lo:hi],
                                     words[lo:hi], epochs, batch_size, lr, out[lo:hi])

    bounds = _blocks(counts, epochs, threads)
    helpers = [threading.Thread(target=run, args=b) for b in bounds[1:]]
    for h in helpers:
        h.start()
    run(*bounds[0])
    for h in helpers:
        h.join()
    if not finite.all():
        raise ValueError("X contains NaN or Inf (or values beyond the float32 range)")
    return out


# Below this many row-epochs a block is not worth a thread (starting one costs ~0.1 ms, about
# what 2,000 row-steps of a small model take).
_ROWS_PER_THREAD = 2048


def _default_threads() -> int:
    """NUMBA_NUM_THREADS (numba's default: the machine's CPU count), at most the CPUs this
    process may run on. (Not numba.get_num_threads(): that starts numba's thread pool.)"""
    from numba.core import config
    return max(1, min(config.NUMBA_NUM_THREADS, len(os.sched_getaffinity(0))))


def _blocks(counts: np.ndarray, epochs: int, threads: int) -> list[tuple[int, int]]:
    """Contiguous (lo, hi) blocks of devices with about equal rows, at most ``threads`` and
    each of at least _ROWS_PER_THREAD row-epochs (one block covers everything otherwise)."""
    K, total = counts.shape[0], int(counts.sum()) * epochs
    n = max(1, min(threads, K, total // _ROWS_PER_THREAD))
    if n == 1:
        return [(0, K)]
    cuts = np.searchsorted(np.cumsum(counts), np.arange(1, n) * (counts.sum() / n))
    edges = np.unique(np.concatenate([[0], cuts + 1, [K]])).tolist()
    return list(zip(edges[:-1], edges[1:]))


def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise ValueError(f"model must be a privcity.models.Model, got {type(model).__name__}")


def _params32(model: Model, params: Any) -> np.ndarray:
    return np.array(model._check_params(params), dtype=np.float32)  # a copy, always writable


def _hyper(epochs: Any, batch_size: Any, lr: Any) -> tuple[int, int, float]:
    return (_checks.count(epochs, "epochs", 1), _checks.count(batch_size, "batch_size", 1),
            _checks.real(lr, "lr", positive=True))


def _rows32(arr: np.ndarray) -> np.ndarray:
    """arr as a C-contiguous float32 array, no copy when it already is one; values beyond the
    float32 range become Inf, which the kernel's finite check refuses."""
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def _targets(model: Model, y: Any, n: int, rows: np.ndarray | None) -> np.ndarray:
    """Validated targets or labels of X's n rows (restricted to ``rows``)."""
    yarr = np.asarray(y)
    if yarr.ndim != 1 or yarr.shape[0] != n:
        raise ValueError(f"y must be 1-D with one entry per row of X ({n}), got shape {yarr.shape}")
    if rows is not None:
        yarr = yarr[rows]
    return model._check_y(yarr, yarr.shape[0])
