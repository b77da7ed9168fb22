"""The abstract :class:`Model`: parameters as one flat float32 vector, validation of inputs, the
shared output layer (identity for regression, softmax for classification), loss and metrics.

Subclasses provide four pieces: the flat layout (``_decay``: which entries are weights that l2
shrinks, biases are not), a dtype-generic forward pass on 2-D inputs (``_forward``, used by
predict/loss/evaluate), and two calls into their compiled kernels (:mod:`._sgd`): ``_train``,
the local SGD of many devices, each computed from its own rows and seed alone, and
``_gradient32``, the float32 gradient of one batch by the same arithmetic.
"""
from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _checks

__all__ = ["Model"]

TASK_TYPES = ("regression", "classification")


class Model(abc.ABC):
    """A model whose parameters are one flat float32 vector of ``n_params`` entries.

    Attributes
    ----------
    task_type : str
        ``"regression"`` (predict returns float32 (n,)) or ``"classification"`` (predict
        returns float32 class probabilities (n, n_outputs)).
    n_features : int
        Columns of X.
    n_outputs : int
        1 for regression, the number of classes for classification.
    n_params : int
        Length of the parameter vector.
    l2 : float
        Weight of the penalty ``0.5 * l2 * ||weights||^2`` (biases are not penalised).

    Notes
    -----
    X is always rounded to float32 (the precision the model trains at); NaN, Inf or values
    beyond the float32 range are refused. Every method leaves its array arguments unmodified.
    """

    task_type: str
    n_features: int
    n_outputs: int
    n_params: int
    l2: float

    def _setup(self, *, n_features: Any, n_outputs: int, task_type: Any, l2: Any) -> None:
        self.task_type = _checks.choice(task_type, "task_type", TASK_TYPES)
        self.n_features = _checks.count(n_features, "n_features", 1)
        self.n_outputs = n_outputs
        self.l2 = _checks.real(l2, "l2", positive=False)
        decay = self._decay()
        self.n_params = int(decay.shape[0])
        self._l2_32 = np.float32(self.l2)  # the gradient adds l2 * weight, in float32
        self._decay_mask = decay.astype(bool)

    # --- to implement ----------------------------------------------------------------------

    @abc.abstractmethod
    def init_params(self, seed: int) -> np.ndarray:
        """Initial parameters, float32 (n_params,), a deterministic function of ``seed``."""

    @abc.abstractmethod
    def _decay(self) -> np.ndarray:
        """(n_params,) float32 of 1 on weights (penalised by l2) and 0 on biases."""

    @abc.abstractmethod
    def _forward(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Raw outputs (n, n_outputs) in the dtype of params: values or logits."""

    @abc.abstractmethod
    def _train(self, P: np.ndarray, X: np.ndarray, xstart: np.ndarray, counts: np.ndarray,
               t: np.ndarray, tstart: np.ndarray, words: np.ndarray, epochs: int,
               batch_size: int, lr: float, out: np.ndarray) -> np.ndarray:
        """SGD of K devices from P (n_params,) float32 into out (K, n_params); returns which
        devices' rows were finite, (K,) bool (the others' rows of out are P).

        Device k owns rows xstart[k] : xstart[k] + counts[k] of X (float32, C-contiguous) and
        tstart[k] : ... of t (as _check_y returns it); words[k] is its seed
        (_shuffle.seed_words). Row k depends on P and device k's inputs only.
        """

    @abc.abstractmethod
    def _gradient32(self, P: np.ndarray, X: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Gradient (n_params,) float32 of the mean loss on all rows of X (float32,
        C-contiguous, finite) as one batch, by the training kernel's arithmetic."""

    # --- public API ---------------------------------------------------------------------------

    def predict(self, params: Any, X: Any) -> np.ndarray:
        """Predictions for the rows of X, computed in float32.

        Returns
        -------
        numpy.ndarray
            Regression: float32 (n,). Classification: float32 (n, n_outputs) probabilities
            (softmax of the logits, max subtracted first; rows sum to 1 up to rounding).
        """
        p = self._check_params(params).astype(np.float32, copy=False)
        out = self._forward(p, self._check_X(X, allow_empty=True))
        if self.task_type == "regression":
            return np.ascontiguousarray(out[:, 0])
        return _softmax_rows(out)

    def outputs(self, params: Any, X: Any) -> np.ndarray:
        """The raw outputs for the rows of X in float64 (n, n_outputs): logits for
        classification, values for regression; params at full precision, X rounded to float32
        as in training. What an attacker holding the released parameters computes (``predict``'s
        float32 probabilities round confident fits to exactly 0 or 1)."""
        p = self._check_params(params).astype(np.float64)
        return self._forward(p, self._check_X(X, allow_empty=True).astype(np.float64))

    def loss(self, params: Any, X: Any, y: Any) -> float:
        """The training objective, computed in float64: mean data loss + 0.5 * l2 * ||weights||^2.

        The data loss is half the squared error for regression and the cross-entropy (by
        log-sum-exp) for classification, so :meth:`gradient` is its exact gradient. float64
        params are used at full precision (finite-difference checks); X is rounded to float32.
        """
        p = self._check_params(params).astype(np.float64)
        X32 = self._check_X(X)
        t = self._check_y(y, X32.shape[0])
        out = self._forward(p, X32.astype(np.float64))
        return self._data_loss(out, t) + self._penalty(p)

    def gradient(self, params: Any, X: Any, y: Any) -> np.ndarray:
        """Gradient of :meth:`loss` (mean over rows, plus ``l2 * weights``), float32 (n_params,).

        Computed in float32 by the same kernel that training uses.
        """
        p = np.array(self._check_params(params), dtype=np.float32)  # writable: one kernel type
        X32 = self._check_X(X).view()
        X32.flags.writeable = False  # read-only whatever the caller's: one kernel type
        return self._gradient32(p, X32, self._check_y(y, X32.shape[0]))

    def evaluate(self, params: Any, X: Any, y: Any) -> dict[str, float]:
        """Metrics of the model's float32 outputs (its own precision, as trained and as a device
        would run it), summed in float64. Regression: ``{"mse", "rmse", "r2"}``.
        Classification: ``{"accuracy", "loss"}`` where loss is the mean cross-entropy (the data
        term of :meth:`loss`, without the l2 penalty) and accuracy counts argmax(logits) == y
        (first maximum on ties)."""
        X32 = self._check_X(X)
        return self._evaluate32(params, X32, self._check_y(y, X32.shape[0]))

    def evaluator(self, X: Any, y: Any) -> Callable[[Any], dict[str, float]]:
        """``evaluate(params, X, y)`` as a function of ``params`` alone, for evaluating many
        parameter vectors on one test set: X and y are checked (X converted to float32) once
        here, not at every call (a full pass over X each time)."""
        X32 = self._check_X(X)
        return functools.partial(self._evaluate32, X32=X32, t=self._check_y(y, X32.shape[0]))

    def _evaluate32(self, params: Any, X32: np.ndarray, t: np.ndarray) -> dict[str, float]:
        p = self._check_params(params).astype(np.float32)
        # A float64 pass would copy X to float64 (8 bytes a cell) and run a slower GEMM: 5 to 10
        # times the time, for logits that differ by float32 rounding.
        out = self._forward(p, X32).astype(np.float64)
        if self.task_type == "regression":
            r = out[:, 0] - t
            mse = float(np.mean(r * r))
            return {"mse": mse, "rmse": math.sqrt(mse), "r2": _r2(float(np.sum(r * r)), t)}
        accuracy = float(np.mean(np.argmax(out, axis=1) == t))
        return {"accuracy": accuracy, "loss": self._data_loss(out, t)}

    def score(self, params: Any, X: Any, y: Any) -> float:
        """The headline metric, higher is better: accuracy (classification) or R^2 (regression;
        1.0 for a perfect fit of constant y, 0.0 for an imperfect one, as scikit-learn)."""
        metrics = self.evaluate(params, X, y)
        return metrics["r2"] if self.task_type == "regression" else metrics["accuracy"]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    def _config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "l2": self.l2}

    # --- shared maths -------------------------------------------------------------------------

    def _data_loss(self, out: np.ndarray, t: np.ndarray) -> float:
        if self.task_type == "regression":
            r = out[:, 0] - t
            return 0.5 * float(np.mean(r * r))
        m = out.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(out - m).sum(axis=1))
        return float(np.mean(lse - out[np.arange(out.shape[0]), t]))

    def _penalty(self, p: np.ndarray) -> float:
        if self.l2 == 0.0:
            return 0.0
        w = p[self._decay_mask]
        return 0.5 * self.l2 * float(np.dot(w, w))

    def _kernel_targets(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64, targets float32) as the kernels take them: one is t, the other empty."""
        if self.task_type == "classification":
            return t, np.zeros(0, np.float32)
        return np.zeros(0, np.int64), t

    # --- validation ---------------------------------------------------------------------------

    def _check_params(self, params: Any) -> np.ndarray:
        p = np.asarray(params)
        if p.ndim != 1 or p.shape[0] != self.n_params:
            raise ValueError(f"params must be a 1-D array of n_params={self.n_params} floats, "
                             f"got shape {p.shape}")
        if p.dtype.kind != "f":
            raise ValueError(f"params must be a float array, got dtype {p.dtype}")
        if not np.isfinite(p).all() or (p.dtype != np.float32 and np.abs(p).max() > _F32_MAX):
            raise ValueError("params contains NaN or Inf (or values beyond the float32 range)")
        return p

    def _check_X(self, X: Any, *, allow_empty: bool = False) -> np.ndarray:
        """X as a C-contiguous float32 array (n, n_features), no copy when it already is one."""
        arr = _shape_X(X, self.n_features)
        if arr.shape[0] == 0 and not allow_empty:
            raise ValueError("X must have at least one row")
        return _to_float32(arr, "X")

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        """y as float32 (n,) targets (regression) or int64 (n,) labels in [0, n_outputs)."""
        arr = np.asarray(y)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(
                f"y must be 1-D with one entry per row of X ({n}), got shape {arr.shape}")
        if self.task_type == "regression":
            if arr.dtype.kind not in "iuf":
                raise ValueError(f"y must hold real numbers, got dtype {arr.dtype}")
            return _to_float32(arr, "y")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or not np.array_equal(arr, np.floor(arr)):
                raise ValueError("y must hold integer class labels, got non-integer values")
        elif arr.dtype.kind not in "iu":
            raise ValueError(f"y must hold integer class labels, got dtype {arr.dtype}")
        if n and (arr.min() < 0 or arr.max() >= self.n_outputs):
            raise ValueError(
                f"y must hold class labels in [0, {self.n_outputs}), got values in "
                f"[{arr.min()}, {arr.max()}]")
        return arr.astype(np.int64)


_F32_MAX = float(np.finfo(np.float32).max)


def _shape_X(X: Any, n_features: int) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be a 2-D array (rows x n_features), got shape {arr.shape}")
    if arr.shape[1] != n_features:
        raise ValueError(f"X must have n_features={n_features} columns, got {arr.shape[1]}")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"X must hold real numbers (float), got dtype {arr.dtype}")
    return arr


def _to_float32(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(arr, dtype=np.float32)
    else:
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or Inf (or values beyond the float32 range)")
    return out


def _softmax_rows(Z: np.ndarray) -> np.ndarray:
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    E /= E.sum(axis=1, keepdims=True)
    return E


def _r2(ss_res: float, t: np.ndarray) -> float:
    t64 = t.astype(np.float64)
    d = t64 - t64.mean()
    ss_tot = float(np.dot(d, d))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot
