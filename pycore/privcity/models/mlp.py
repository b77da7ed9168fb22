"""A multilayer perceptron with one hidden layer (:class:`MLP`).

Layout of the flat parameter vector: ``W1 = params[:s1].reshape(n_features + 1, hidden)`` then
``W2 = params[s1:].reshape(hidden + 1, n_outputs)`` with ``s1 = (n_features + 1) * hidden``; the
last row of each is that layer's biases.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _checks
from .base import Model

__all__ = ["MLP"]

ACTIVATIONS = ("relu", "tanh")


class MLP(Model):
    """One hidden layer (ReLU or tanh), then a linear output (regression) or softmax output
    (classification, cross-entropy loss).

    Parameters
    ----------
    n_features : int
        Columns of X, >= 1.
    hidden : int
        Hidden units, >= 1.
    n_outputs : int
        1 for regression; the number of classes (>= 2) for classification.
    task_type : {"regression", "classification"}
    l2 : float
        Penalty 0.5 * l2 * (||W1||^2 + ||W2||^2), >= 0 (biases are not penalised).
    activation : {"relu", "tanh"}
        Hidden activation. Initial weights are He-normal for ReLU, Glorot-normal for tanh
        (the output layer is always Glorot-normal); biases start at zero.
    """

    def __init__(self, *, n_features: int, hidden: int, n_outputs: int, task_type: str,
                 l2: float = 0.0, activation: str = "relu") -> None:
        task_type = _checks.choice(task_type, "task_type", ("regression", "classification"))
        if task_type == "regression":
            n_outputs = _checks.count(n_outputs, "n_outputs", 1)
            if n_outputs != 1:
                raise ValueError(f"n_outputs must be 1 for regression, got {n_outputs}")
        else:
            n_outputs = _checks.count(n_outputs, "n_outputs", 2)
        self.hidden = _checks.count(hidden, "hidden", 1)
        self.activation = _checks.choice(activation, "activation", ACTIVATIONS)
        self._setup(n_features=n_features, n_outputs=n_outputs, task_type=task_type, l2=l2)
        self._s1 = (self.n_features + 1) * self.hidden

    def _config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "hidden": self.hidden, "n_outputs": self.n_outputs,
                "task_type": self.task_type, "l2": self.l2, "activation": self.activation}

    def init_params(self, seed: int) -> np.ndarray:
        """He (ReLU) or Glorot (tanh) normal weights drawn from ``np.random.default_rng(seed)``,
        zero biases; float32 (n_params,)."""
        rng = np.random.default_rng(_checks.count(seed, "seed", 0))
        F, H, C = self.n_features, self.hidden, self.n_outputs
        std1 = math.sqrt(2.0 / F) if self.activation == "relu" else math.sqrt(2.0 / (F + H))
        W1 = np.zeros((F + 1, H))
        W2 = np.zeros((H + 1, C))
        W1[:F] = rng.normal(0.0, std1, (F, H))
        W2[:H] = rng.normal(0.0, math.sqrt(2.0 / (H + C)), (H, C))
        return np.concatenate([W1.reshape(-1), W2.reshape(-1)]).astype(np.float32)

    def _decay(self) -> np.ndarray:
        F, H, C = self.n_features, self.hidden, self.n_outputs
        m1 = np.ones((F + 1, H), np.float32)
        m1[-1] = 0.0
        m2 = np.ones((H + 1, C), np.float32)
        m2[-1] = 0.0
        return np.concatenate([m1.reshape(-1), m2.reshape(-1)])

    def _act(self, Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.activation == "relu":
            return np.maximum(Z, Z.dtype.type(0), out=out)
        return np.tanh(Z, out=out)

    def _forward(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        F, H, C = self.n_features, self.hidden, self.n_outputs
        W1 = params[:self._s1].reshape(F + 1, H)
        W2 = params[self._s1:].reshape(H + 1, C)
        A = self._act(X.astype(params.dtype, copy=False) @ W1[:-1] + W1[-1])
        return A @ W2[:-1] + W2[-1]

    def _train(self, P, X, xstart, counts, t, tstart, words, epochs, batch_size, lr, out):
        from . import _sgd  # numba loads on first training, not with the package (~0.5 s)
        labels, targets = self._kernel_targets(t)
        return _sgd.train_mlp(P, X, xstart, counts, labels, targets, tstart, words, epochs,
                              batch_size, np.float32(lr), self._l2_32, self.hidden,
                              self.activation == "relu", out)

    def _gradient32(self, P, X, t):
        from . import _sgd
        labels, targets = self._kernel_targets(t)
        return _sgd.gradient_mlp(P, X, labels, targets, self._l2_32, self.hidden,
                                 self.activation == "relu")
