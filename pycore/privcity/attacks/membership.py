"""Membership inference: was this record (this device) in the released model's training data?

The attacker holds the released parameters (it computes the model's outputs on any record)
and candidate records with their labels; for the calibrated and LiRA attacks also data from
the same population, to train its own reference ("shadow") models, which privcity's models make
cheap (:func:`train_reference_models`). Each function returns one score per record, higher
meaning "member"; :func:`privcity.attacks.evaluate_scores` turns the scores of known members
and non-members into the ROC, AUC, TPR at low FPR and advantage.

- :func:`loss_threshold_scores`: minus the record's loss (Yeom et al. 2018, "Privacy risk in
  machine learning: analyzing the connection to overfitting"): members are fit better.
- :func:`calibrated_scores`: the loss relative to the record's mean loss under reference
  models trained without it (Watson et al. 2022, "On the importance of difficulty calibration
  in membership inference attacks"): an outlier's loss is high member or not, and calibration
  stops it from hiding among non-members (and an easy record from posing as a member).
- :func:`lira_offline_scores`: the offline likelihood-ratio attack (Carlini et al. 2022,
  "Membership inference attacks from first principles", Section IV, offline variant):
  a Gaussian fitted to the record's logit-scaled confidence under shadow models trained
  without it; the score is how many of their standard deviations the released model's
  confidence lies above that mean (the paper's one-sided test, Lambda = Phi(score), orders
  records alike).
- :func:`device_scores`: device-level membership (was this device in training?): the mean of
  its records' scores.

The reference models must not have seen the records being tested (this is the offline setting:
every reference model is an OUT model for every candidate); drawing them from data disjoint from
the candidates is the caller's part.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..models import Model, train_centralized
from . import _checks

__all__ = ["calibrated_scores", "confidence_statistic", "device_scores", "example_losses",
           "lira_offline_scores", "loss_threshold_scores", "train_reference_models"]


def example_losses(model: Model, params: Any, X: Any, y: Any) -> np.ndarray:
    """Each record's loss under ``params``, float64 (n,): cross-entropy for classification,
    half the squared error for regression (the data terms of ``model.loss``, without the l2
    penalty), computed in float64 from the model's outputs as ``model.loss`` does.

    The cross-entropy is taken as ``softplus(-margin)`` with the margin of
    :func:`confidence_statistic`, so a confident fit keeps its tiny loss (down to about
    1e-300) instead of rounding to 0 and tying with every other confident record.
    """
    out, t = _outputs(model, params, X, y)
    if model.task_type == "regression":
        r = out[:, 0] - t
        return 0.5 * r * r
    return _softplus(-_margin(out, t))


def confidence_statistic(model: Model, params: Any, X: Any, y: Any) -> np.ndarray:
    """LiRA's per-record statistic, float64 (n,), larger when the model fits the record better.

    Classification: the logit-scaled confidence ``log(p_y / sum_{c != y} p_c)`` (Carlini et al.
    2022, Section IV: roughly Gaussian across models, where p_y is not), computed from the
    logits in float64 as ``z_y - logsumexp_{c != y} z_c``, exact where p_y rounds to 1.
    Regression (privcity's choice, the paper has none): ``-log(squared error + 1e-30)``, the
    log making the error's spread roughly Gaussian.
    """
    out, t = _outputs(model, params, X, y)
    if model.task_type == "regression":
        r = out[:, 0] - t
        return -np.log(r * r + 1e-30)
    return _margin(out, t)


def loss_threshold_scores(model: Model, params: Any, X: Any, y: Any) -> np.ndarray:
    """Yeom et al.'s attack: score = -loss (members are fit better), float64 (n,)."""
    return -example_losses(model, params, X, y)


def calibrated_scores(model: Model, params: Any, reference_params: Any, X: Any,
                      y: Any) -> np.ndarray:
    """Watson et al.'s difficulty-calibrated loss attack, float64 (n,).

    score = mean loss of the record under the reference models - its loss under ``params``:
    how much better the released model fits it than models that never saw it.

    Parameters
    ----------
    reference_params : array_like
        (R, n_params), R >= 1: models trained like the released one on population data
        without the records X (e.g. :func:`train_reference_models`).
    """
    refs = _stack(model, reference_params, "reference_params", 1)
    reference = np.mean([example_losses(model, p, X, y) for p in refs], axis=0)
    return reference - example_losses(model, params, X, y)


def lira_offline_scores(model: Model, params: Any, shadow_params: Any, X: Any, y: Any, *,
                        global_variance: bool = False) -> np.ndarray:
    """The offline likelihood-ratio attack of Carlini et al. 2022, float64 (n,).

    For each record, its :func:`confidence_statistic` under the R shadow models (all trained
    without it) is fitted by a Gaussian N(mu, sigma^2); the score is
    ``(statistic under params - mu) / sigma``. The one-sided test Lambda = Phi(score) ranks
    records alike, so the ROC is the paper's.

    Parameters
    ----------
    shadow_params : array_like
        (R, n_params), R >= 2: shadow models trained like the released one on population data
        without the records X.
    global_variance : bool
        Use one sigma for every record (the mean of the per-record variances), as the paper
        advises for fewer than about 64 shadow models; default: one sigma per record.
    """
    shadows = _stack(model, shadow_params, "shadow_params", 2)
    out = np.stack([confidence_statistic(model, p, X, y) for p in shadows])
    mu = out.mean(axis=0)
    var = out.var(axis=0, ddof=1)
    sigma = np.sqrt(np.full_like(var, var.mean()) if global_variance else var)
    # A record every shadow model scores alike has sigma 0: any excess is then infinitely
    # unlikely (Carlini et al.'s code adds 1e-30 likewise).
    return (confidence_statistic(model, params, X, y) - mu) / (sigma + 1e-30)


def train_reference_models(model: Model, X: Any, y: Any, *, n_models: int, subset_size: int,
                           epochs: int, batch_size: int, lr: float, seed: int = 0) -> np.ndarray:
    """Trains ``n_models`` reference (shadow) models on random subsets of the attacker's data.

    Model i starts from ``model.init_params(seed + i)`` and runs :func:`train_centralized` on
    ``subset_size`` rows of (X, y) drawn without replacement by
    ``np.random.default_rng(seed + i)``, with these SGD settings (match the released model's
    training as well as is known). X must not hold the records to be tested.

    Returns
    -------
    numpy.ndarray
        float32 (n_models, n_params).
    """
    model = _checks.model(model)
    n_models = _checks.count(n_models, "n_models", 1)
    Xa = _checks.matrix(X, "X", model.n_features)
    ya = _checks.targets(model, y, Xa.shape[0])
    size = _checks.count(subset_size, "subset_size", 1)
    if size > Xa.shape[0]:
        raise ValueError(f"subset_size must be at most the rows of X ({Xa.shape[0]}), got {size}")
    seed = _checks.count(seed, "seed", 0)
    out = np.empty((n_models, model.n_params), np.float32)
    for i in range(n_models):
        rows = np.random.default_rng(seed + i).choice(Xa.shape[0], size, replace=False)
        out[i] = train_centralized(model, model.init_params(seed + i), Xa[rows], ya[rows],
                                   epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + i)
    return out


def device_scores(scores: Any, offsets: Any) -> np.ndarray:
    """Device-level membership: the mean score of each device's records, float64 (D,).

    ``offsets`` (D + 1,) as privcity.data.FederatedDataset's: device d owns
    ``scores[offsets[d]:offsets[d + 1]]``; every device needs at least one record. A device
    that contributed many records to training shifts its mean further than one record does, so
    device-level attacks are stronger than record-level ones on the same model.
    """
    s = _checks.vector(scores, "scores")
    off = np.asarray(offsets)
    if off.ndim != 1 or off.shape[0] < 2 or off.dtype.kind not in "iu":
        raise ValueError(f"offsets must be a 1-D int array of D + 1 >= 2 entries, got "
                         f"{off.dtype} {off.shape}")
    if off[0] != 0 or off[-1] != s.shape[0] or np.any(np.diff(off) <= 0):
        raise ValueError(f"offsets must rise strictly from 0 to len(scores) ({s.shape[0]}): "
                         "every device needs at least one record")
    sums = np.add.reduceat(s, off[:-1].astype(np.int64))
    return sums / np.diff(off)


# --- pieces ---------------------------------------------------------------------------------------

def _outputs(model: Model, params: Any, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(float64 outputs (n, n_outputs): logits or values, validated targets or int labels).

    The attacker holds the released parameters, so it computes the outputs at full precision
    (as ``Model.loss`` does, through the model's own forward pass and checks) rather than from
    ``predict``'s float32 probabilities, which round confident fits to exactly 0 or 1.
    """
    model = _checks.model(model)
    out = model.outputs(params, X)
    return out, _checks.targets(model, y, out.shape[0])


def _margin(Z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """z_y - logsumexp of the other logits, per row (= log p_y - log(1 - p_y))."""
    rows = np.arange(Z.shape[0])
    z_true = Z[rows, t]
    others = Z.copy()
    others[rows, t] = -np.inf
    top = others.max(axis=1)
    lse = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return z_true - lse


def _softplus(u: np.ndarray) -> np.ndarray:
    """log(1 + e^u) without overflow, and accurate where e^u is tiny."""
    return np.maximum(u, 0.0) + np.log1p(np.exp(-np.abs(u)))


def _stack(model: Model, params: Any, name: str, minimum: int) -> np.ndarray:
    model = _checks.model(model)
    arr = _checks.matrix(params, name, model.n_params)
    if arr.shape[0] < minimum:
        raise ValueError(f"{name} must hold at least {minimum} models (rows), got {arr.shape[0]}")
    return arr

