"""Linear models: least squares / ridge (:class:`LinearRegression`) and multinomial logistic
regression (:class:`SoftmaxRegression`).

Layout of the flat parameter vector: ``params.reshape(n_features + 1, n_outputs)``, one row per
feature and a last row of biases (the bias is the weight of an implicit constant-1 input).
Both start at zero: the losses are convex, so no symmetry needs breaking.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from .base import Model

__all__ = ["LinearRegression", "SoftmaxRegression"]


class _Linear(Model):
    def init_params(self, seed: int) -> np.ndarray:
        """Zeros, float32 (n_params,); ``seed`` is checked (int >= 0) for a uniform API."""
        _checks.count(seed, "seed", 0)
        return np.zeros(self.n_params, np.float32)

    def _decay(self) -> np.ndarray:
        mask = np.ones((self.n_features + 1, self.n_outputs), np.float32)
        mask[-1] = 0.0
        return mask.reshape(-1)

    def _forward(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        W = params.reshape(self.n_features + 1, self.n_outputs)
        return X.astype(params.dtype, copy=False) @ W[:-1] + W[-1]

    def _train(self, P, X, xstart, counts, t, tstart, words, epochs, batch_size, lr, out):
        from . import _sgd  # numba loads on first training, not with the package (~0.5 s)
        labels, targets = self._kernel_targets(t)
        return _sgd.train_linear(P, X, xstart, counts, labels, targets, tstart, words, epochs,
                                 batch_size, np.float32(lr), self._l2_32, out)

    def _gradient32(self, P, X, t):
        from . import _sgd
        labels, targets = self._kernel_targets(t)
        return _sgd.gradient_linear(P, X, labels, targets, self._l2_32)


class LinearRegression(_Linear):
    """Least squares, ridge when ``l2 > 0``.

    loss = 0.5 * mean((X w + b - y)^2) + 0.5 * l2 * ||w||^2.

    Parameters
    ----------
    n_features : int
        Columns of X, >= 1.
    l2 : float
        Ridge penalty, >= 0 (the intercept is not penalised).

    ``params`` is ``[w_0, ..., w_{F-1}, b]`` (n_params = n_features + 1).
    """

    def __init__(self, *, n_features: int, l2: float = 0.0) -> None:
        self._setup(n_features=n_features, n_outputs=1, task_type="regression", l2=l2)


class SoftmaxRegression(_Linear):
    """Multinomial logistic regression: softmax of ``X W + b``, cross-entropy loss.

    Parameters
    ----------
    n_features : int
        Columns of X, >= 1.
    n_classes : int
        Number of classes, >= 2; labels are 0 .. n_classes - 1.
    l2 : float
        Penalty 0.5 * l2 * ||W||^2, >= 0 (biases are not penalised).

    ``params.reshape(n_features + 1, n_classes)``: W on the first rows, biases on the last.
    """

    def __init__(self, *, n_features: int, n_classes: int, l2: float = 0.0) -> None:
        n_classes = _checks.count(n_classes, "n_classes", 2)
        self._setup(n_features=n_features, n_outputs=n_classes, task_type="classification", l2=l2)

    @property
    def n_classes(self) -> int:
        return self.n_outputs

    def _config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "n_classes": self.n_classes, "l2": self.l2}
