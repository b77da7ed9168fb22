"""How well a membership score separates members from non-members: the ROC curve, its AUC,
TPR at a low FPR and the membership advantage, as the membership-inference literature reports
them (Carlini et al. 2022, "Membership inference attacks from first principles", Section III:
TPR at low FPR on log-log ROC curves; Yeom et al. 2018: advantage = TPR - FPR).

Scores are "higher means member". Every figure here is over all thresholds, chosen knowing who
is a member: the best an attacker could do with this score, an optimistic figure for it (a real
attacker sets its threshold without the labels, e.g. at the mean training loss as Yeom et al.).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _checks

__all__ = ["AttackROC", "evaluate_scores", "roc_auc", "roc_curve", "tpr_at_fpr"]

DEFAULT_FPRS = (0.01, 0.001)


def roc_curve(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """The ROC of the rule "member when score >= t" over every threshold t.

    Returns
    -------
    fpr, tpr : numpy.ndarray
        float64, non-decreasing, from (0, 0) (t = +inf) to (1, 1): one point per distinct score
        value, so tied scores move both rates at once (a diagonal step).
    thresholds : numpy.ndarray
        float64, decreasing: ``thresholds[0] = inf``, then each distinct score.
    """
    pos = _checks.vector(member_scores, "member_scores")
    neg = _checks.vector(nonmember_scores, "nonmember_scores")
    scores = np.concatenate([pos, neg])
    is_member = np.concatenate([np.ones(pos.size, bool), np.zeros(neg.size, bool)])
    order = np.argsort(-scores, kind="stable")
    s, m = scores[order], is_member[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # end of each group of equal scores
    tp, fp = np.cumsum(m)[last], np.cumsum(~m)[last]
    fpr = np.r_[0.0, fp / neg.size]
    tpr = np.r_[0.0, tp / pos.size]
    return fpr, tpr, np.r_[math.inf, s[last]]


def roc_auc(fpr: Any, tpr: Any) -> float:
    """Area under an ROC (trapezoids): for :func:`roc_curve`'s curve, the Mann-Whitney
    probability that a member outscores a non-member, ties counting one half."""
    f, t = _curve(fpr, tpr)
    return float(np.sum(np.diff(f) * (t[1:] + t[:-1])) / 2.0)


def tpr_at_fpr(fpr: Any, tpr: Any, target: float, n_nonmembers: int) -> float:
    """TPR of the ROC at false-positive rate ``target``, NaN when the data cannot resolve it.

    Between two ROC points the rate is interpolated linearly: an attacker reaches that point by
    choosing between the two thresholds at random, so the figure is achievable, not a
    smoothing. With fewer non-members than 1 / target, the smallest non-zero FPR measured is
    1 / n_nonmembers > target: nothing was measured at that rate and NaN is returned (a
    figure there would rest on less than one false positive).
    """
    f, t = _curve(fpr, tpr)
    target = _checks.positive(target, "target")
    if target >= 1.0:
        raise ValueError(f"target must be in (0, 1), got {target!r}")
    n = _checks.count(n_nonmembers, "n_nonmembers", 1)
    if n * target < 1.0 - 1e-9:
        return math.nan
    i = int(np.searchsorted(f, target, side="right")) - 1  # last point with fpr <= target
    if f[i] == target or i == f.size - 1:
        return float(t[i])
    w = (target - f[i]) / (f[i + 1] - f[i])
    return float(t[i] + w * (t[i + 1] - t[i]))


@dataclass(frozen=True)
class AttackROC:
    """A membership score's success (see :func:`evaluate_scores`).

    Attributes
    ----------
    auc : float
        P(member outscores non-member), ties one half; 0.5 is chance, 1.0 perfect.
    advantage : float
        Membership advantage max(TPR - FPR) over thresholds (Yeom et al. 2018); 0 is chance.
        An (epsilon, delta)-DP model bounds it by (e^epsilon - 1 + 2 delta) / (e^epsilon + 1).
    tpr_at : dict of float to float
        TPR at each requested FPR (NaN where fewer than 1 / FPR non-members were scored).
    fpr, tpr, thresholds : numpy.ndarray
        The ROC curve (:func:`roc_curve`), for plots (log-log, as Carlini et al. draw them).
    n_members, n_nonmembers : int
    """

    auc: float
    advantage: float
    tpr_at: dict[float, float]
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)
    n_members: int
    n_nonmembers: int

    @property
    def auc_null_std(self) -> float:
        """Standard deviation of the AUC of a score that knows nothing (members and non-members
        exchangeable, no ties): sqrt((n1 + n0 + 1) / (12 n1 n0)), the Mann-Whitney U's.
        An AUC within 3 or 4 of these of 0.5 is chance."""
        n1, n0 = self.n_members, self.n_nonmembers
        return math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))


def evaluate_scores(member_scores: Any, nonmember_scores: Any, *,
                    fprs: Any = DEFAULT_FPRS) -> AttackROC:
    """ROC, AUC, advantage and TPR at each FPR in ``fprs`` (each in (0, 1); default 1% and
    0.1%) of a membership score, higher meaning member. Both score arrays: finite, non-empty."""
    fpr, tpr, thresholds = roc_curve(member_scores, nonmember_scores)
    n1, n0 = int(np.asarray(member_scores).size), int(np.asarray(nonmember_scores).size)
    targets = [float(a) for a in _checks.vector(fprs, "fprs")]
    return AttackROC(auc=roc_auc(fpr, tpr), advantage=float(np.max(tpr - fpr)),
                     tpr_at={a: tpr_at_fpr(fpr, tpr, a, n0) for a in targets}, fpr=fpr, tpr=tpr,
                     thresholds=thresholds, n_members=n1, n_nonmembers=n0)


def _curve(fpr: Any, tpr: Any) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) checked as an ROC: equal lengths, non-decreasing within [0, 1], from fpr 0."""
    f = _checks.vector(fpr, "fpr")
    t = _checks.vector(tpr, "tpr", f.shape[0])
    for arr, name in ((f, "fpr"), (t, "tpr")):
        if arr.min() < 0.0 or arr.max() > 1.0 or np.any(np.diff(arr) < 0.0):
            raise ValueError(f"{name} must be non-decreasing within [0, 1] (an ROC curve)")
    if f[0] != 0.0:
        raise ValueError(f"fpr must start at 0 (the threshold +inf), got {f[0]}")
    return f, t
