"""Update inversion: what a server that sees a device's model update learns of its records.

The attacker is whoever reads one plaintext update, ``params_after - params_before`` of local
SGD (privcity.models.train_local / train_many; the FedAvg server, or a gateway without secure
aggregation). It needs no data and no optimisation: the attack is analytic.

Why it works. A fully connected first layer ``z = x W + b`` (LinearRegression and
SoftmaxRegression are one; MLP has one first) has, on a single record x, the gradient
``dL/dW = x (dL/db)^T`` whatever the loss and whatever follows the layer. A device that holds
ONE record takes every local step on that same x, so the sum of its steps keeps the form:
``delta_W = x delta_b^T``, and the record is the least-squares ratio
``x = delta_W delta_b / (delta_b . delta_b)``, exact up to float rounding for any number of
epochs, any learning rate and any clipping of the update (a scalar factor). Phong et al. 2017,
"Privacy-preserving deep learning via additively homomorphic encryption" (IEEE TIFS 2018);
Geiping et al. 2020, "Inverting gradients -- how easy is it to break privacy in federated
learning?", Section 3. With classification the output biases give the label: every step adds
``-lr (p_c - [c = y])``, positive on the record's class only (Zhao et al. 2020, "iDLG").

What it returns otherwise. With several records (a device's k records, a secure-aggregation
block sum, a batch), ``delta_W = sum_i x_i a_i^T`` and ``delta_b = sum_i a_i``, so the ratio is
``sum_i w_i x_i`` with ``w_i = a_i . delta_b / ||delta_b||^2`` summing to 1: a point of the
records' affine hull (of their convex hull when all share a label: then every a_i has the same
sign pattern), equal to one record only when it dominates. :func:`mixture_weights` recovers the
w_i given the records. Noise (DP-FedAvg's, distributed DP's) is added to delta_W and delta_b
alike and destroys the ratio once it dominates the update. The optimisation attack of
:mod:`.optimize` (gradient matching, Geiping et al. 2020) separates several records, within the
information bound it states.

Weight decay. With ``model.l2 > 0`` every step also shrinks the weights by ``(1 - lr l2)``, so
``delta_W`` holds ``((1 - lr l2)^T - 1) W_before`` besides the records' part. The server knows
W_before (it sent it), lr and the number of steps T (the protocol's), and removes that term; the
records' part is then ``x s^T`` with ``s`` a decayed sum of the steps' output deltas, so the
direction of x is exact and its length is off by a factor within
``[(1 - lr l2)^(T - 1), 1]`` whenever each output's deltas keep one sign over the steps (always so
for softmax on one record; the bound does not hold for an MLP's hidden units).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..models import MLP, LinearRegression, Model, SoftmaxRegression, train_local
from . import _checks

__all__ = ["Inversion", "InversionReport", "invert_update", "inversion_report",
           "inversion_success", "mixture_weights", "relative_error"]


class Inversion(NamedTuple):
    """What :func:`invert_update` recovers from one update.

    x : numpy.ndarray
        float64 (n_features,): the record (exactly, for one record); all NaN when the update's
        first-layer biases are all zero (nothing to divide by: no step moved them).
    y : int or float
        Classification: the class label (int), -1 when the output biases did not move.
        Regression: the target for LinearRegression when ``params_before``, ``lr`` and ``steps``
        were given, else NaN.
    """

    x: np.ndarray
    y: int | float


def invert_update(model: Model, update: Any, *, params_before: Any = None, lr: float | None = None,
                  steps: int | None = None) -> Inversion:
    """Reconstruct the record behind one update (see the module docstring for what it assumes).

    Parameters
    ----------
    model : LinearRegression, SoftmaxRegression or MLP
        The architecture the update belongs to (for MLP the first layer is inverted).
    update : array_like
        (n_params,) ``params_after - params_before`` of local training (clipped or not), or a
        sum of such updates (then a mixture comes back, see the module docstring).
    params_before, lr, steps : optional
        What the server knows of the round: the model it sent, the local learning rate and the
        number of local SGD steps (epochs x batches; a one-record device takes one per epoch).
        Required when ``model.l2 > 0`` (to remove the weight decay of params_before); they also
        give a LinearRegression record's target. With them the update must be unclipped.

    Returns
    -------
    Inversion
        ``(x, y)``; x exact to float32 rounding for a device with one record and ``l2 == 0``.

    Raises
    ------
    ValueError
        model is not one of the three, update is not a finite vector of n_params entries, or
        ``l2 > 0`` without params_before, lr and steps.
    """
    model = _checks.model(model)
    layer = _first_layer_slicer(model)
    delta = _checks.vector(update, "update", model.n_params)
    known = _known_training(model, params_before, lr, steps)
    W, b = layer(delta)
    if model.l2 > 0.0:
        if known is None:
            raise ValueError(f"model.l2 = {model.l2} > 0: the update's weights include the decay "
                             "of params_before; give params_before, lr and steps")
        p0, lr_, steps_ = known
        # delta_W = (decay^T - 1) W0 + records' part; decay computed as training rounds it.
        decay = float(np.float32(1.0) - np.float32(lr_) * np.float32(model.l2))
        W = W + (1.0 - decay ** steps_) * layer(p0)[0]
    bb = float(b @ b)
    x = W @ b / bb if bb > 0.0 else np.full(model.n_features, np.nan)
    return Inversion(x, _target(model, delta, x, known))


def relative_error(x: Any, x_hat: Any) -> float:
    """``||x_hat - x||_2 / ||x||_2`` in float64: inf when x_hat holds NaN or Inf; for x = 0,
    0.0 when x_hat is 0 too, else inf."""
    xv = _checks.vector(x, "x")
    xh = np.asarray(x_hat, dtype=np.float64)
    if xh.shape != xv.shape:
        raise ValueError(f"x_hat must have the shape of x {xv.shape}, got {xh.shape}")
    if not np.isfinite(xh).all():
        return math.inf
    err, norm = float(np.linalg.norm(xh - xv)), float(np.linalg.norm(xv))
    if norm == 0.0:
        return 0.0 if err == 0.0 else math.inf
    return err / norm


def inversion_success(x: Any, x_hat: Any, tol: float) -> bool:
    """True when x_hat recovers x within relative L2 error ``tol`` (> 0; see
    :func:`relative_error`). NaN in x_hat (nothing recovered) is a failure."""
    return relative_error(x, x_hat) <= _checks.positive(tol, "tol")


def mixture_weights(records: Any, x_hat: Any) -> tuple[np.ndarray, float]:
    """The affine combination of ``records`` closest to x_hat: what a recovered vector is made of.

    Returns ``(w, residual)``: w (k,) float64 summing to 1 that minimises
    ``||records.T w - x_hat||`` (least squares, minimum-norm w for dependent records), and that
    distance relative to ``||x_hat||``. A residual near 0 says x_hat lies in the records' affine
    hull; all w in [0, 1] that it lies in their convex hull.
    """
    R = _checks.matrix(records, "records")
    xh = _checks.vector(x_hat, "x_hat", R.shape[1])
    # x - r0 = sum_{i >= 1} w_i (r_i - r0), w_0 = 1 - sum: the sum-to-one constraint built in.
    rest, *_ = np.linalg.lstsq((R[1:] - R[0]).T, xh - R[0], rcond=None)
    w = np.concatenate([[1.0 - rest.sum()], rest])
    norm = float(np.linalg.norm(xh))
    resid = float(np.linalg.norm(R.T @ w - xh))
    return w, (resid / norm if norm > 0.0 else resid)


@dataclass(frozen=True)
class InversionReport:
    """How many records :func:`inversion_report` recovered.

    Attributes
    ----------
    n_records, n_updates : int
    tolerance : float
        Relative L2 error within which a record counts as recovered.
    recovered : int
        Records recovered: features within ``tolerance`` (and label equal, when labels given).
    share : float
        recovered / n_records: the attack's success rate over records.
    errors : numpy.ndarray
        float64 (n_records,): each record's relative error against its update's inversion.
    label_share : float or None
        Share of records whose label equals their update's recovered label (None without
        labels). On a sum of many records it is about the share of the majority class: a label
        alone identifies nobody.
    """

    n_records: int
    n_updates: int
    tolerance: float
    recovered: int
    share: float
    errors: np.ndarray
    label_share: float | None

    @property
    def median_error(self) -> float:
        return float(np.median(self.errors))


def inversion_report(model: Model, records: Any, updates: Any, *, owners: Any = None,
                     labels: Any = None, tol: float = 0.01, params_before: Any = None,
                     lr: float | None = None, steps: int | None = None) -> InversionReport:
    """Runs :func:`invert_update` on each update and counts the records it gives back.

    Parameters
    ----------
    model : LinearRegression, SoftmaxRegression or MLP
    records : array_like
        (n, n_features): the training records behind the updates (the ground truth).
    updates : array_like
        (m, n_params): what the attacker saw: one device's update, or a sum of several
        devices' (a secure-aggregation block sum), or a noisy sum.
    owners : array_like of int, optional
        (n,) in [0, m): record i went into ``updates[owners[i]]``. Default: one record per
        update (``arange(n)``, m must equal n).
    labels : array_like of int, optional
        (n,) class labels (classification only): a record then counts as recovered only with
        its label.
    tol : float
        Relative L2 error within which a record is recovered; default 0.01 (1%: every feature
        readable to about two digits). An update can give back at most one record.
    params_before, lr, steps
        As for :func:`invert_update` (the same round for every update).
    """
    model = _checks.model(model)
    tol = _checks.positive(tol, "tol")
    R = _checks.matrix(records, "records", model.n_features)
    U = _checks.matrix(updates, "updates", model.n_params)
    own = _owners(owners, R.shape[0], U.shape[0])
    found = [invert_update(model, u, params_before=params_before, lr=lr, steps=steps) for u in U]
    errors = np.array([relative_error(R[i], found[k].x) for i, k in enumerate(own)])
    ok = errors <= tol
    label_share = None
    if labels is not None:
        if model.task_type != "classification":
            raise ValueError("labels are counted for classification models only")
        lab = np.asarray(labels)
        if lab.shape != (R.shape[0],) or lab.dtype.kind not in "iu":
            raise ValueError(f"labels must be a 1-D int array with one label per record "
                             f"({R.shape[0]}), got {lab.dtype} {lab.shape}")
        same = np.array([found[k].y == int(lab[i]) for i, k in enumerate(own)])
        ok &= same
        label_share = float(same.mean())
    return InversionReport(n_records=R.shape[0], n_updates=U.shape[0], tolerance=tol,
                           recovered=int(ok.sum()), share=float(ok.mean()), errors=errors,
                           label_share=label_share)


# --- pieces ---------------------------------------------------------------------------------------

def _first_layer_slicer(model: Model) -> Any:
    """A function v -> (weights (F, H), biases (H,)) of the first layer's block of a flat vector
    (layouts of privcity.models.linear and .mlp: (F + 1) rows, the biases last)."""
    F = model.n_features
    if isinstance(model, (LinearRegression, SoftmaxRegression)):
        width, size = model.n_outputs, model.n_params
    elif isinstance(model, MLP):
        width, size = model.hidden, (F + 1) * model.hidden
    else:
        raise ValueError("update inversion supports LinearRegression, SoftmaxRegression and MLP "
                         f"(a first fully connected layer), got {type(model).__name__}")

    def first_layer(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        block = v[:size].reshape(F + 1, width)
        return block[:-1], block[-1]
    return first_layer


def _known_training(model: Model, params_before: Any, lr: Any,
                    steps: Any) -> tuple[np.ndarray, float, int] | None:
    given = [v is not None for v in (params_before, lr, steps)]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("give params_before, lr and steps together (what the server knows of "
                         "the round), or none of them")
    p0 = _checks.vector(params_before, "params_before", model.n_params)
    return p0, _checks.positive(lr, "lr"), _checks.count(steps, "steps", 1)


def _target(model: Model, delta: np.ndarray, x: np.ndarray,
            known: tuple[np.ndarray, float, int] | None) -> int | float:
    if model.task_type == "classification":
        # Output biases: the record's class gains, every other class loses (iDLG).
        out = delta[-model.n_outputs:]
        return int(np.argmax(out)) if out.max() > out.min() else -1
    if not isinstance(model, LinearRegression) or known is None or not np.isfinite(x).all():
        return math.nan
    return _regression_target(model, delta[-1], x, *known)


def _regression_target(model: LinearRegression, bias_delta: float, x: np.ndarray,
                       p0: np.ndarray, lr: float, steps: int) -> float:
    """The target y whose training from p0 on the one record x moves the bias by bias_delta.

    Least squares is linear in (params, y), so the bias' update is affine in y: two trainings
    (y = 0 and y = 1) give it, and y solves it. NaN when y does not move the bias.
    """
    X1 = x[None, :].astype(np.float32)

    def moved(y: float) -> float:
        after = train_local(model, p0, X1, np.array([y], np.float32), epochs=steps,
                            batch_size=1, lr=lr)
        return float(after[-1]) - float(np.float32(p0[-1]))

    at0 = moved(0.0)
    slope = moved(1.0) - at0
    return (bias_delta - at0) / slope if slope != 0.0 else math.nan


def _owners(owners: Any, n: int, m: int) -> np.ndarray:
    if owners is None:
        if m != n:
            raise ValueError(f"updates must have one row per record ({n}) when owners is not "
                             f"given, got {m}")
        return np.arange(n)
    own = np.asarray(owners)
    if own.shape != (n,) or own.dtype.kind not in "iu":
        raise ValueError(f"owners must be a 1-D int array with one entry per record ({n}), got "
                         f"{own.dtype} {own.shape}")
    if n and (own.min() < 0 or own.max() >= m):
        raise ValueError(f"owners must hold update indices in [0, {m})")
    return own.astype(np.int64)
