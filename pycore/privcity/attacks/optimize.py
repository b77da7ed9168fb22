"""Update inversion by optimisation: several records out of one device's update.

The attacker is the server of :mod:`.inversion` (it reads one plaintext update
``params_after - params_before`` and knows params_before, the local learning rate and the number
of local steps: the protocol's). Where the analytic attack returns one mixture of a device's k
records, this one searches for k candidate records whose update matches the observed one, in
the style of "Deep Leakage from Gradients" (Zhu et al. 2019) as refined by Geiping et al. 2020,
"Inverting gradients -- how easy is it to break privacy in federated learning?": cosine distance
between the candidates' update and the observed one (optionally plus a relative squared L2
term), Adam with step decay, random restarts, the best match kept. Labels come first, from the
output biases (iDLG, Zhao et al. 2020, extended to label counts), unless given.

The update model. The candidates' update is simulated as ``steps`` full-batch gradient steps from
params_before (weight decay included) and differentiated exactly, in numpy, through every step
(backward through the unrolled steps: the records' gradient and a Hessian-vector product per
step). It is exact for a device whose records fit in one batch (k <= batch_size: the
simulator's default of 5 epochs of batches of 16 is then 5 full-batch steps) and an
approximation when the device took mini-batch steps in an order the server does not know.
LinearRegression and SoftmaxRegression only; an MLP's first layer is left to the analytic attack.

The information bound. An update of a linear model has (F + 1) C numbers; for softmax the
classes' columns sum to zero (every record's output delta p - onehot does), leaving (F + 1)(C - 1)
independent numbers, and the data part lies in the span of the k records (plus the ones column).
k records have k F unknowns. Past ``k F > (F + 1)(C - 1)`` many sets of k records give the same
update and no attack can tell them apart; for LinearRegression (C = 1) that is every k >= 2
(the update is ``sum_i r_i [x_i, 1]`` with free residuals r_i, and any decomposition fits).

Measured (AMD Zen 3, shared; ``python bench/inversion_optimize_table.py 40``): the synthetic
city's air_quality records (softmax, F = 19, C = 3: bound k <= 2) and traffic records (linear,
F = 16: bound k = 1), 40 devices of k records per cell, a start trained on other devices, lr 0.1,
labels guessed, defaults (4 restarts, 500 iterations). Share of records within relative L2 error
0.05 (label equal too) / 0.2 (features only); (a) one full-batch step, (b) 5 local epochs of
batches of 16 (5 full-batch steps for k <= 16); time per device.

===  =====================  =====================  =====================  =====================
k    softmax (a)            softmax (b)            linear (a)             linear (b)
===  =====================  =====================  =====================  =====================
1    1.00 / 1.00   71 ms    1.00 / 1.00  206 ms    1.00 / 1.00   64 ms    1.00 / 1.00  141 ms
2    0.81 / 0.96   82 ms    0.72 / 0.80  207 ms    0.00 / 0.06   64 ms    0.00 / 0.00  148 ms
4    0.00 / 0.01   70 ms    0.00 / 0.01  209 ms    0.00 / 0.00   61 ms    0.00 / 0.00  145 ms
8    0.00 / 0.00   71 ms    0.00 / 0.00  211 ms    0.00 / 0.00   65 ms    0.00 / 0.00  153 ms
16   0.00 / 0.00   76 ms    0.00 / 0.00  229 ms    0.00 / 0.00   67 ms    0.00 / 0.00  159 ms
===  =====================  =====================  =====================  =====================

Past the bound the candidates match the update (loss near 0) yet are other records: the
simulator's devices (48 records) are far past it for these models. Two records of the same
class are the hard case within the bound (their output deltas are nearly parallel): most of the
k = 2 misses. With more classes the bound grows: 2-4 records of distinct labels on a 5-class
softmax are all recovered in the tests.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..models import LinearRegression, Model, SoftmaxRegression
from . import _checks
from .inversion import InversionReport, _owners, relative_error

__all__ = ["MatchingLoss", "Reconstruction", "guess_labels", "matching_loss", "optimize_report",
           "reconstruct"]

_ADAM_BETAS = (0.9, 0.999)
_EPS = 1e-12
_MILESTONES = (3 / 4, 7 / 8)  # of the iterations, each dividing the step by 10


class Reconstruction(NamedTuple):
    """What :func:`reconstruct` recovers from one update.

    records : numpy.ndarray
        float64 (k, n_features): the best restart's candidate records, in no particular order.
    labels : numpy.ndarray
        (k,) the candidates' labels: int64 classes (guessed or given) or float64 regression
        targets (optimised with the records, or given).
    loss : float
        The matching loss of ``records`` (0 for a perfect match; 1 - cosine plus the L2 term).
    """

    records: np.ndarray
    labels: np.ndarray
    loss: float


class MatchingLoss(NamedTuple):
    """:func:`matching_loss`'s value and its exact gradients (float64)."""

    value: float
    d_records: np.ndarray
    d_labels: np.ndarray | None


def reconstruct(model: Model, update: Any, n_records: int, *, params_before: Any, lr: float,
                steps: int | None = None, labels: Any = None, restarts: int = 4,
                iterations: int = 500, step_size: float = 0.1, l2_weight: float | None = None,
                seed: int = 0) -> Reconstruction:
    """Search k = ``n_records`` records whose simulated update matches ``update``.

    Parameters
    ----------
    model : LinearRegression or SoftmaxRegression
    update : array_like
        (n_params,) the observed ``params_after - params_before`` (unclipped, no noise).
    n_records : int
        k >= 1, the device's record count (the server knows it: FedAvg weights by it).
    params_before, lr, steps
        The round as the server knows it: the parameters it sent, the local learning rate and
        the number of local SGD steps (default 1: FedSGD). Simulated as full-batch steps.
    labels : array_like, optional
        (k,) known labels (int classes) or regression targets; default: classes guessed by
        :func:`guess_labels`, targets optimised with the records.
    restarts, iterations : int
        Random starts (run together) and Adam iterations each; the lowest final loss wins.
    step_size : float
        Adam's step size, decayed tenfold at 3/4 and 7/8 of the iterations (Geiping decays at
        3/8, 5/8 and 7/8; later decay separated more records here).
    l2_weight : float, optional
        Weight of ``||u - update||^2 / ||update||^2`` added to the cosine distance (>= 0).
        Default 0 for classification (Geiping's cosine alone) and 1 for regression: the cosine
        is blind to the residuals' scale (``u = -lr sum_i r_i [x_i, 1]``), which the targets
        need.
    seed : int
        Seeds the random starts (>= 0).

    Raises
    ------
    ValueError
        An argument out of its form (named in the message), or an MLP.
    """
    if l2_weight is None:
        l2_weight = 1.0 if _checks.model(model).task_type == "regression" else 0.0
    job = _Job.build(model, update, n_records, params_before, lr, steps, l2_weight)
    restarts = _checks.count(restarts, "restarts", 1)
    iterations = _checks.count(iterations, "iterations", 1)
    step_size = _checks.positive(step_size, "step_size")
    rng = np.random.default_rng(_checks.count(seed, "seed", 0))
    fixed = labels is not None
    if fixed:
        lab = _labels(model, labels, job.k)
    elif model.task_type == "classification":
        lab = guess_labels(model, update, job.k, params_before=params_before, lr=lr, steps=steps)
    else:
        lab = np.zeros(job.k)  # targets: optimised from the start model's predictions
    X, t = job.initial(rng, restarts, lab if fixed and model.task_type == "regression" else None)
    opt_t = model.task_type == "regression" and not fixed
    X, t = _adam(job, X, t, lab, opt_t, iterations, step_size)
    loss, _, _ = job.loss_and_grad(X, t, lab)
    best = int(np.argmin(loss))
    out_labels = t[best].copy() if model.task_type == "regression" else lab.copy()
    return Reconstruction(X[best].copy(), out_labels, float(loss[best]))


def guess_labels(model: Model, update: Any, n_records: int, *, params_before: Any, lr: float,
                 steps: int | None = None) -> np.ndarray:
    """The k records' classes from the output biases' update (iDLG extended to counts).

    The biases move by ``-lr sum_steps mean(p - onehot)``, about ``-lr T (pbar - n / k)`` with
    pbar the mean predicted probabilities, estimated here by ``softmax(b_before)``; the counts
    ``n`` are rounded to sum to k (largest remainders), every class whose bias rose getting at
    least one record while records last. Returns int64 (k,) labels, sorted.
    """
    model = _checks.model(model)
    if not isinstance(model, SoftmaxRegression):
        raise ValueError("labels are guessed for SoftmaxRegression only (regression targets are "
                         f"optimised with the records), got {type(model).__name__}")
    k = _checks.count(n_records, "n_records", 1)
    delta = _checks.vector(update, "update", model.n_params)
    p0 = _checks.vector(params_before, "params_before", model.n_params)
    T = 1 if steps is None else _checks.count(steps, "steps", 1)
    lr = _checks.positive(lr, "lr")
    C = model.n_outputs
    b0, db = p0[-C:], delta[-C:]
    pbar = np.exp(b0 - b0.max())
    pbar /= pbar.sum()
    share = np.clip(pbar + db / (lr * T), 0.0, None)
    counts = _round_counts(share / share.sum() * k if share.sum() > 0 else np.full(C, k / C), k)
    for c in np.argsort(-db):  # a class whose bias rose holds a record (iDLG)
        if db[c] > 0 and counts[c] == 0:
            counts[np.argmax(counts)] -= 1
            counts[c] = 1
    return np.repeat(np.arange(C), counts).astype(np.int64)


def matching_loss(model: Model, records: Any, labels: Any, update: Any, *, params_before: Any,
                  lr: float, steps: int | None = None, l2_weight: float = 0.0) -> MatchingLoss:
    """The loss :func:`reconstruct` minimises for these candidate records, and its gradients.

    ``1 - cos(u, update) + l2_weight ||u - update||^2 / ||update||^2`` where u is the update of
    ``steps`` full-batch steps on (records, labels) from params_before. d_labels is the gradient
    with respect to regression targets (None for classification).
    """
    R = _checks.matrix(records, "records", _checks.model(model).n_features)
    job = _Job.build(model, update, R.shape[0], params_before, lr, steps, l2_weight)
    lab = _labels(model, labels, job.k)
    t = lab[None, :].astype(np.float64) if model.task_type == "regression" else None
    value, dX, dt = job.loss_and_grad(R[None], t, lab)
    return MatchingLoss(float(value[0]), dX[0], None if dt is None else dt[0])


def optimize_report(model: Model, records: Any, updates: Any, *, owners: Any = None,
                    labels: Any = None, tol: float = 0.05, params_before: Any, lr: float,
                    steps: Any = None, restarts: int = 4, iterations: int = 500,
                    seed: int = 0) -> InversionReport:
    """:func:`reconstruct` on each update with its known record count, scored as
    :func:`~privcity.attacks.inversion_report` scores the analytic attack.

    Parameters as for inversion_report (``tol`` defaults to 0.05 here) and :func:`reconstruct`;
    ``steps`` is one int for every update or one per update. Labels, when given, score the
    attack (a record counts only with its label); the attack guesses them itself. Each record is
    paired with one candidate of its update (greedily, nearest pairs first); ``errors`` holds
    each record's relative error to its candidate.
    """
    model = _checks.model(model)
    tol = _checks.positive(tol, "tol")
    R = _checks.matrix(records, "records", model.n_features)
    U = _checks.matrix(updates, "updates", model.n_params)
    own = _owners(owners, R.shape[0], U.shape[0])
    lab = None if labels is None else _report_labels(model, labels, R.shape[0])
    per_step = _steps_per_update(steps, U.shape[0])
    errors = np.full(R.shape[0], np.inf)
    same = np.zeros(R.shape[0], bool)
    for j in range(U.shape[0]):
        mine = np.flatnonzero(own == j)
        if mine.size == 0:
            continue
        rec = reconstruct(model, U[j], mine.size, params_before=params_before, lr=lr,
                          steps=per_step[j], restarts=restarts, iterations=iterations, seed=seed)
        pair = _pair(R[mine], rec.records)
        errors[mine] = [relative_error(R[i], rec.records[c]) for i, c in zip(mine, pair)]
        if lab is not None:
            same[mine] = rec.labels[pair] == lab[mine]
    ok = errors <= tol
    if lab is not None:
        ok &= same
    return InversionReport(n_records=R.shape[0], n_updates=U.shape[0], tolerance=tol,
                           recovered=int(ok.sum()), share=float(ok.mean()), errors=errors,
                           label_share=None if lab is None else float(same.mean()))


# --- the differentiable update model ----------------------------------------------------------

class _Job:
    """One inversion: the model's shape, the round's parameters and the observed update."""

    def __init__(self, model: Model, delta: np.ndarray, k: int, p0: np.ndarray, lr: float,
                 steps: int, l2_weight: float) -> None:
        self.model, self.k, self.lr, self.steps, self.l2_weight = model, k, lr, steps, l2_weight
        F, C = model.n_features, model.n_outputs
        self.F, self.C = F, C
        self.theta0 = p0.reshape(F + 1, C)
        self.target = delta.reshape(F + 1, C)
        self.target_norm = float(np.linalg.norm(delta))
        self.decay = model.l2 * model._decay_mask.reshape(F + 1, C).astype(np.float64)
        self.span = self._span()

    @classmethod
    def build(cls, model: Any, update: Any, n_records: Any, params_before: Any, lr: Any,
              steps: Any, l2_weight: Any) -> _Job:
        model = _checks.model(model)
        if not isinstance(model, (LinearRegression, SoftmaxRegression)):
            raise ValueError("optimisation inversion supports LinearRegression and "
                             f"SoftmaxRegression, got {type(model).__name__} (for an MLP's first "
                             "layer use invert_update)")
        delta = _checks.vector(update, "update", model.n_params)
        if not np.any(delta):
            raise ValueError("update must not be all zeros (nothing to match)")
        return cls(model, delta, _checks.count(n_records, "n_records", 1),
                   _checks.vector(params_before, "params_before", model.n_params),
                   _checks.positive(lr, "lr"),
                   1 if steps is None else _checks.count(steps, "steps", 1),
                   _checks.non_negative(l2_weight, "l2_weight"))

    def initial(self, rng: np.random.Generator, restarts: int,
                targets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Random starts: records N(0, 1) (privcity's features are standardised) projected on
        the update's column space when it can hold them; regression targets unless given."""
        X = self.project(rng.standard_normal((restarts, self.k, self.F)))
        if self.model.task_type != "regression":
            return X, None
        if targets is not None:
            return X, np.repeat(targets[None, :].astype(np.float64), restarts, axis=0)
        # Residuals start at their mean as the bias reads it (-delta_b / (lr T)): the right sign,
        # where residual 0 would give a zero update (no direction to compare).
        mean_residual = -self.target[-1, 0] / (self.lr * self.steps)
        return X, X @ self.theta0[:-1, 0] + self.theta0[-1, 0] - mean_residual

    def _span(self) -> np.ndarray | None:
        """Orthonormal columns U spanning the update's data part when k <= its rank, else None.

        Every step adds ``sum_i [x_i, 1] a_i^T`` (weight decay of params_before removed), so
        each [x_i, 1] lies in span(U) when the span is not smaller than the records'."""
        decay = (1.0 - self.lr * self.model.l2) ** self.steps
        data = self.target + (1.0 - decay) * (self.decay > 0) * self.theta0
        U, sv, _ = np.linalg.svd(data, full_matrices=False)
        rank = int((sv > 1e-6 * sv[0]).sum())
        U = U[:, :rank]
        return U if self.k <= rank and float(U[-1] @ U[-1]) > 1e-12 else None

    def project(self, X: np.ndarray) -> np.ndarray:
        """X (R, k, F) moved onto ``{x : [x, 1] in span(U)}`` (nearest point), or X itself when
        the span cannot hold the records: the search then runs on that affine subspace."""
        U = self.span
        if U is None:
            return X
        last = U[-1]
        c = np.concatenate([X, np.ones(X.shape[:2] + (1,))], axis=2) @ U
        c += ((1.0 - c @ last) / float(last @ last))[..., None] * last
        return (c @ U.T)[..., :-1]

    def loss_and_grad(self, X: np.ndarray, t: np.ndarray | None,
                      lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Loss (R,), d/dX (R, k, F) and d/dt (R, k) (regression) for R candidate sets."""
        thetas, states = self._forward(X, t, lab)
        u = thetas[-1] - self.theta0
        value, lam = self._match(u)
        dX = np.zeros_like(X)
        dt = None if t is None else np.zeros_like(t)
        for theta, (P, A) in zip(reversed(thetas[:-1]), reversed(states)):
            lam = self._step_back(X, theta, P, A, lam, dX, dt)
        return value, dX, dt

    def _forward(self, X: np.ndarray, t: np.ndarray | None,
                 lab: np.ndarray) -> tuple[list[np.ndarray], list[tuple[Any, np.ndarray]]]:
        theta = np.repeat(self.theta0[None], X.shape[0], axis=0)
        thetas, states = [theta], []
        onehot = None if t is not None else np.eye(self.C)[lab]
        for _ in range(self.steps):
            Z = X @ theta[:, :-1] + theta[:, -1:]
            if t is None:
                P = np.exp(Z - Z.max(axis=2, keepdims=True))
                P /= P.sum(axis=2, keepdims=True)
                A = (P - onehot) / self.k
            else:
                P, A = None, (Z - t[:, :, None]) / self.k
            theta = theta - self.lr * (self._grad(X, A) + self.decay * theta)
            thetas.append(theta)
            states.append((P, A))
        return thetas, states

    def _grad(self, X: np.ndarray, A: np.ndarray) -> np.ndarray:
        """The data gradient [X, 1]^T A, (R, F + 1, C)."""
        return np.concatenate([np.swapaxes(X, 1, 2) @ A, A.sum(axis=1, keepdims=True)], axis=1)

    def _match(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss (R,) of updates u (R, F + 1, C) and its gradient in u."""
        D, dn = self.target, self.target_norm
        un = np.sqrt((u * u).sum(axis=(1, 2))) + _EPS
        cos = (u * D).sum(axis=(1, 2)) / (un * dn)
        grad = -(D[None] / (un * dn)[:, None, None] - (cos / un**2)[:, None, None] * u)
        value = 1.0 - cos
        if self.l2_weight > 0.0:
            diff = u - D
            value = value + self.l2_weight * (diff * diff).sum(axis=(1, 2)) / dn**2
            grad = grad + (2.0 * self.l2_weight / dn**2) * diff
        return value, grad

    def _step_back(self, X: np.ndarray, theta: np.ndarray, P: np.ndarray | None, A: np.ndarray,
                   lam: np.ndarray, dX: np.ndarray, dt: np.ndarray | None) -> np.ndarray:
        """Backward through ``theta' = theta - lr (grad(X, theta) + decay theta)`` given lam =
        dL/dtheta'; adds the step's share to dX (and dt), returns dL/dtheta."""
        N = -self.lr * lam  # cotangent of the step's gradient
        dA = X @ N[:, :-1] + N[:, -1:]
        if P is None:
            dZ = dA / self.k
            dt -= dZ[:, :, 0]
        else:
            dZ = P * (dA - (P * dA).sum(axis=2, keepdims=True)) / self.k
        dX += A @ np.swapaxes(N[:, :-1], 1, 2) + dZ @ np.swapaxes(theta[:, :-1], 1, 2)
        return lam + self.decay * N + self._grad(X, dZ)


def _adam(job: _Job, X: np.ndarray, t: np.ndarray | None, lab: np.ndarray, opt_t: bool,
          iterations: int, step_size: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Adam on X (and t when opt_t) with Geiping's step decay; the R restarts step together.
    Each restart's best iterate is kept: Adam's normalised steps leave an exact start."""
    b1, b2 = _ADAM_BETAS
    params = [X.copy()] + ([t.copy()] if opt_t else [])
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    best = [X.copy(), None if t is None else t.copy()]
    best_loss = np.full(X.shape[0], np.inf)
    milestones = {int(iterations * f) for f in _MILESTONES}
    rate = step_size
    for it in range(1, iterations + 2):
        cur_t = params[1] if opt_t else t
        loss, dX, dt = job.loss_and_grad(params[0], cur_t, lab)
        better = loss < best_loss
        best_loss[better] = loss[better]
        best[0][better] = params[0][better]
        if opt_t:
            best[1][better] = cur_t[better]
        if it > iterations:
            break
        if it in milestones:
            rate *= 0.1
        for p, g, mi, vi in zip(params, [dX, dt], m, v):
            mi *= b1
            mi += (1 - b1) * g
            vi *= b2
            vi += (1 - b2) * g * g
            p -= rate * (mi / (1 - b1**it)) / (np.sqrt(vi / (1 - b2**it)) + 1e-8)
        params[0] = job.project(params[0])
    return best[0], best[1]


# --- pieces ---------------------------------------------------------------------------------------

def _round_counts(share: np.ndarray, k: int) -> np.ndarray:
    """Non-negative ints summing to k, nearest to ``share`` (largest remainders)."""
    counts = np.floor(share).astype(np.int64)
    rest = k - int(counts.sum())
    if rest > 0:
        counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    while counts.sum() > k:  # floors cannot exceed k, kept for safety of rounding
        counts[np.argmax(counts)] -= 1
    return counts


def _labels(model: Model, labels: Any, k: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (k,):
        raise ValueError(f"labels must be a 1-D array of n_records={k} entries, got shape "
                         f"{arr.shape}")
    if model.task_type == "regression":
        return _checks.vector(arr, "labels", k)
    return _report_labels(model, arr, k)


def _report_labels(model: Model, labels: Any, n: int) -> np.ndarray:
    if model.task_type != "classification":
        raise ValueError("labels are counted for classification models only")
    lab = np.asarray(labels)
    if lab.shape != (n,) or lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D int array with one label per record ({n}), got "
                         f"{lab.dtype} {lab.shape}")
    if lab.min() < 0 or lab.max() >= model.n_outputs:
        raise ValueError(f"labels must hold classes in [0, {model.n_outputs})")
    return lab.astype(np.int64)


def _steps_per_update(steps: Any, m: int) -> list[int | None]:
    if steps is None or np.ndim(steps) == 0:
        one = None if steps is None else _checks.count(steps, "steps", 1)
        return [one] * m
    arr = np.asarray(steps)
    if arr.shape != (m,) or arr.dtype.kind not in "iu":
        raise ValueError(f"steps must be an int >= 1 or a 1-D int array with one entry per "
                         f"update ({m}), got {arr.dtype} {arr.shape}")
    return [_checks.count(int(s), "steps", 1) for s in arr]


def _pair(records: np.ndarray, found: np.ndarray) -> np.ndarray:
    """For each record the index of a distinct candidate: nearest (relative L2) pairs first."""
    norms = np.linalg.norm(records, axis=1)
    dist = np.linalg.norm(records[:, None, :] - found[None, :, :], axis=2)
    rel = dist / np.where(norms > 0, norms, 1.0)[:, None]
    pair = np.full(records.shape[0], -1)
    used = np.zeros(found.shape[0], bool)
    for flat in np.argsort(rel, axis=None, kind="stable"):
        i, c = divmod(int(flat), found.shape[0])
        if pair[i] < 0 and not used[c]:
            pair[i], used[c] = c, True
    return pair
