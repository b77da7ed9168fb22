"""Models for federated learning on small tabular city data, and their local training.

Every model keeps its parameters in ONE flat float32 vector (``n_params`` entries), so the
federated code can clip, noise, seal and average them as a vector.

- :class:`LinearRegression` (ridge when ``l2 > 0``), :class:`SoftmaxRegression`, :class:`MLP`
  (one hidden layer, ReLU or tanh): keyword-only constructors that validate; methods
  ``init_params``, ``predict``, ``loss``, ``gradient``, ``evaluate`` and ``score`` (accuracy for
  classification, R^2 for regression).
- :func:`train_local`: mini-batch SGD on one device, deterministic for a seed.
- :func:`train_many`: many devices from the same start, each device's whole SGD in one compiled
  (numba) call, blocks of devices on parallel threads; returns their update deltas, each
  bit-identical to :func:`train_local` on that device alone, so results never depend on how
  devices are split into blocks, ranks or threads.
- :func:`train_centralized`: the same SGD on pooled data, the non-federated baseline.
- :func:`save` and :func:`load` (:mod:`.io`): a released model as one ``.npz`` that numpy alone
  reads (parameters, config, metadata, the ids of its training and held-out records), rebuilt
  as a :class:`ReleasedModel` with ``predict``/``predict_proba``; :func:`record_ids` and
  :func:`record_rows` (:mod:`.records`) name a dataset's records ``(device id, row within the
  device)`` and back.

Bad input raises ValueError naming the argument (X, y, params, offsets, devices, seeds, ...);
NaN, Inf or values beyond the float32 range in X are refused. Compute is float32 (softmax with
the maximum subtracted first); ``loss`` and ``evaluate`` are computed in float64.

Example
-------
>>> import numpy as np
>>> from privcity.models import SoftmaxRegression, train_local
>>> model = SoftmaxRegression(n_features=2, n_classes=2)
>>> X = np.array([[0., 1.], [1., 0.]] * 8, np.float32); y = np.array([0, 1] * 8)
>>> params = train_local(model, model.init_params(0), X, y, epochs=20, batch_size=4, lr=0.5)
>>> model.score(params, X, y)
1.0
"""
from __future__ import annotations

from .base import Model as Model
from .io import ReleasedModel as ReleasedModel
from .io import load as load
from .io import save as save
from .linear import LinearRegression as LinearRegression
from .linear import SoftmaxRegression as SoftmaxRegression
from .mlp import MLP as MLP
from .records import record_ids as record_ids
from .records import record_rows as record_rows
from .training import load_kernels as load_kernels
from .training import train_centralized as train_centralized
from .training import train_local as train_local
from .training import train_many as train_many

__all__ = [
    "MLP",
    "LinearRegression",
    "Model",
    "ReleasedModel",
    "SoftmaxRegression",
    "load",
    "load_kernels",
    "record_ids",
    "record_rows",
    "save",
    "train_centralized",
    "train_local",
    "train_many",
]
