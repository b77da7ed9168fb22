"""The epsilon itself, audited: an empirical lower bound on a mechanism's epsilon from one run.

Steinke, Nasr and Jagielski 2023, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023,
arXiv 2305.08846). m canaries are each included in the input independently with probability 1/2;
after the run the auditor scores every canary from what it observed, guesses "in" for the k+
highest scores and "out" for the k- lowest, and abstains on the rest. If the mechanism is
(epsilon, delta)-DP, the number of correct guesses among the r = k+ + k- is stochastically
dominated as their main theorem, with its delta term, states (the p-value of their Appendix D's
code, ``p_value_DP_audit``):

    P[correct >= v] <= f(v) + 2 m delta max_{1 <= i <= v} (f(v - i) - f(v)) / i,
    f(x) = P[Binomial(r, e^eps / (1 + e^eps)) >= x].

The largest epsilon that this test rejects at level 1 - confidence is a lower bound on the true
epsilon at that confidence (:func:`one_run_epsilon_bound`). The m canaries are all tested in one
run, and the analysis does not pay group privacy for them.

- :func:`one_run_p_value`, :func:`one_run_epsilon_bound`: the test and the bound from counts.
- :func:`canary_guesses`, :func:`audit_canary_scores`: guesses from scores, and the best bound
  over a small grid of (k+, k-) with the union bound that choosing after the fact costs.
- :func:`audit_fedavg` (:mod:`privcity.attacks.fedavg_audit`): canary devices through
  privcity's own DP-FedAvg (central or distributed DP) or plain FedAvg, the bound after each
  round beside the accountant's epsilon.

Example
-------
>>> from privcity.attacks import one_run_epsilon_bound
>>> round(one_run_epsilon_bound(100, 100, canaries=1000), 3)   # 100 guesses, all correct
3.493
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _checks

__all__ = ["CanaryAudit", "audit_canary_scores", "canary_guesses", "default_guess_grid",
           "one_run_epsilon_bound", "one_run_p_value"]

DEFAULT_CONFIDENCE = 0.95
# The bisection stops when the bracket is this narrow (absolute, in epsilon): far below what the
# audit resolves, and the value returned is always the rejected end of the bracket.
_EPS_TOLERANCE = 1e-7


# --- the test -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _log_binomial_coefficients(n: int) -> np.ndarray:
    """log C(n, k) for k = 0..n, read-only (shared by every epsilon the bisection tries): running
    sums of log((n - k + 1) / k), within 1e-11 of lgamma's values at n = 1,000 and 3e-8 at
    n = 10^6 (a relative error of 3e-8 in a probability; lgamma itself is good to about 1e-9
    there)."""
    k = np.arange(1, n + 1, dtype=np.float64)
    out = np.concatenate(([0.0], np.cumsum(np.log1p((n - 2.0 * k + 1.0) / k))))
    out.flags.writeable = False
    return out


def _binomial_log_pmf(n: int, log_p: float, log_not_p: float) -> np.ndarray:
    """log P[Binomial(n, p) = k], k = 0..n, from log p and log(1 - p)."""
    k = np.arange(n + 1, dtype=np.float64)
    return _log_binomial_coefficients(n) + k * log_p + (n - k) * log_not_p


def _log_pmf(r: int, epsilon: float) -> np.ndarray:
    """log P[Binomial(r, q) = k], k = 0..r, q = e^eps / (1 + e^eps), without overflow."""
    log_q = -math.log1p(math.exp(-epsilon))
    return _binomial_log_pmf(r, log_q, log_q - epsilon)  # 1 - q = q e^-eps


def _tail_terms(r: int, v: int, epsilon: float) -> tuple[float, float]:
    """(f(v), max_{1 <= i <= v} (f(v - i) - f(v)) / i) of the theorem, f the binomial tail."""
    log_pmf = _log_pmf(r, epsilon)
    upper = log_pmf[v:]
    top = upper.max()
    tail = math.exp(top) * float(np.exp(upper - top).sum())
    if v == 0:
        return tail, 0.0
    below = log_pmf[v - 1::-1]  # P[W = v-1], P[W = v-2], ..., P[W = 0]
    top = below.max()
    # f(v - i) - f(v) = P[v - i <= W < v]: the running sums of the pmf below v
    ratios = np.cumsum(np.exp(below - top)) / np.arange(1, v + 1)
    return tail, math.exp(top) * float(ratios.max())


def _p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    tail, spread = _tail_terms(r, v, epsilon)
    return min(1.0, tail + 2.0 * m * delta * spread)


def _envelope(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """A p-value that never decreases in epsilon (see :func:`one_run_epsilon_bound`)."""
    c = 2.0 * m * delta
    if c <= 1.0:
        return _p_value(m, r, v, epsilon, delta)
    tail, spread = _tail_terms(r, v, epsilon)
    tail0, _ = _tail_terms(r, v, 0.0)
    return min(1.0, c * (spread + tail) - (c - 1.0) * tail0)


def _check_counts(guesses: Any, correct: Any, canaries: Any) -> tuple[int, int, int]:
    m = _checks.count(canaries, "canaries", 1)
    r = _checks.count(guesses, "guesses", 0)
    v = _checks.count(correct, "correct", 0)
    if r > m:
        raise ValueError(f"guesses must be at most canaries ({m}), got {r}")
    if v > r:
        raise ValueError(f"correct must be at most guesses ({r}), got {v}")
    return m, r, v


def _check_delta(delta: Any) -> float:
    d = _checks.fraction(delta, "delta")
    if d >= 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta!r}")
    return d


def _check_confidence(confidence: Any) -> float:
    c = _checks.fraction(confidence, "confidence")
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def one_run_p_value(guesses: int, correct: int, epsilon: float, *, canaries: int,
                    delta: float = 0.0) -> float:
    """P[at least ``correct`` of ``guesses`` right] at most, for any (epsilon, delta)-DP mechanism
    audited with ``canaries`` canaries each included with probability 1/2 (the paper's Theorem;
    its Appendix D's ``p_value_DP_audit``).

    Parameters
    ----------
    guesses : int
        r, the guesses made (abstentions excluded), 0 <= r <= canaries, fixed before the run.
    correct : int
        v, the correct ones, 0 <= v <= r.
    epsilon : float
        >= 0, finite.
    canaries : int
        m >= 1.
    delta : float
        In [0, 1).

    Returns
    -------
    float
        The p-value, in [0, 1].
    """
    m, r, v = _check_counts(guesses, correct, canaries)
    eps = _checks.non_negative(epsilon, "epsilon")
    return _p_value(m, r, v, eps, _check_delta(delta))


def one_run_epsilon_bound(guesses: int, correct: int, *, canaries: int, delta: float = 0.0,
                          confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The largest epsilon that ``correct`` right guesses out of ``guesses`` rule out at
    ``confidence``: with that probability, no (epsilon', delta)-DP mechanism with epsilon' below
    the returned value would give so many (the paper's Appendix D ``get_eps_audit``).

    The number of guesses must be fixed before the run (or paid for: see
    :func:`audit_canary_scores`). Returned: the largest epsilon whose p-value is below
    1 - confidence, to within 1e-7 and never above it (0.0 when even epsilon = 0 is not
    rejected).

    Notes
    -----
    The bound is the first epsilon where the p-value reaches 1 - confidence, so that "bound >
    true epsilon" implies "the true epsilon was rejected", an event of probability at most
    1 - confidence. For 2 m delta <= 1 the p-value never decreases in epsilon (its derivative in
    q is at least r P[Binomial(r - 1, q) = v - 1] (1 - 2 m delta)), so bisection finds that
    point, and the value agrees with Appendix D's code. For 2 m delta > 1 it may dip; the bound
    then tests the envelope 2 m delta (g + f(v)) - (2 m delta - 1) f_0(v) (g the delta term's
    max, f_0 the tail at epsilon 0), which is at least every p-value at smaller epsilons and
    never decreases: valid, slightly below Appendix D's value.

    Raises
    ------
    ValueError
        An argument out of range (the message names it).
    """
    m, r, v = _check_counts(guesses, correct, canaries)
    d = _check_delta(delta)
    alpha = 1.0 - _check_confidence(confidence)
    return _bound(m, r, v, d, alpha, floor=0.0)


def _bound(m: int, r: int, v: int, delta: float, alpha: float, floor: float) -> float:
    """The bound of :func:`one_run_epsilon_bound`, or ``floor`` when it is not above it."""
    if v == 0 or _p_value(m, r, v, floor, 0.0) >= alpha:
        return floor  # the delta = 0 p-value is the smallest: nothing to gain
    if _envelope(m, r, v, floor, delta) >= alpha:
        return floor
    lo, hi = floor, max(1.0, 2.0 * floor)
    while _envelope(m, r, v, hi, delta) < alpha:  # ends: the tail tends to 1 as eps grows
        lo, hi = hi, 2.0 * hi
    while hi - lo > _EPS_TOLERANCE:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if _envelope(m, r, v, mid, delta) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


# --- guesses from scores --------------------------------------------------------------------------

def canary_guesses(scores: Any, k_plus: int, k_minus: int) -> np.ndarray:
    """Guesses from scores (higher meaning "in"): +1 for the ``k_plus`` highest, -1 for the
    ``k_minus`` lowest, 0 (abstain) for the rest; ties broken by canary index (which is fixed
    before the run, so the guesses still depend on the output alone). int8, one per score."""
    s = _checks.vector(scores, "scores")
    kp = _checks.count(k_plus, "k_plus", 0)
    km = _checks.count(k_minus, "k_minus", 0)
    if kp + km > s.size:
        raise ValueError(f"k_plus + k_minus must be at most the number of scores ({s.size}), "
                         f"got {kp} + {km}")
    order = np.argsort(s, kind="stable")  # ascending; equal scores by index
    out = np.zeros(s.size, np.int8)
    out[order[:km]] = -1
    if kp:
        out[order[s.size - kp:]] = 1
    return out


def default_guess_grid(canaries: int) -> tuple[tuple[int, int], ...]:
    """The (k+, k-) pairs :func:`audit_canary_scores` tries by default: r = 50, 100, 200, 500,
    1000, 2000, ... guesses below the number of canaries m, and r = m; each split evenly
    (k+ = floor(r / 2), k- the rest) and all "in" (k+ = r, k- = 0). Even splits suit additive
    noise (in and out canaries shifted apart); "in" alone suits sampled rounds, where an
    included canary that was never sampled looks like an excluded one. Fewer than 50 guesses
    rarely show anything: 50 right out of 50 give at most 2.1 at 95% over this grid."""
    m = _checks.count(canaries, "canaries", 2)
    ladder = [50] + [mult * 10 ** e for e in range(2, 19) for mult in (1, 2, 5)]
    sizes = [r for r in ladder if r < m]
    sizes.append(m)
    pairs: list[tuple[int, int]] = []
    for r in sizes:
        for pair in ((r // 2, r - r // 2), (r, 0)):
            if pair not in pairs:
                pairs.append(pair)
    return tuple(pairs)


@dataclass(frozen=True)
class CanaryAudit:
    """The best bound :func:`audit_canary_scores` found.

    Attributes
    ----------
    bound : float
        Lower bound on epsilon at ``confidence`` (0.0: nothing shown).
    k_plus, k_minus : int
        The guesses that gave it ("in" for the k_plus highest, "out" for the k_minus lowest).
    guesses, correct : int
        r = k_plus + k_minus, and how many were right.
    canaries : int
    delta, confidence : float
    grid_size : int
        How many (k+, k-) pairs were tried: each was tested at level (1 - confidence) /
        grid_size.
    """

    bound: float
    k_plus: int
    k_minus: int
    guesses: int
    correct: int
    canaries: int
    delta: float
    confidence: float
    grid_size: int


def _check_grid(grid: Any, m: int) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple((int(a), int(b)) for a, b in grid)
    except (TypeError, ValueError):
        raise ValueError("guess_grid must be a sequence of (k_plus, k_minus) pairs of ints") \
            from None
    if not pairs:
        raise ValueError("guess_grid must hold at least one (k_plus, k_minus) pair")
    for kp, km in pairs:
        if kp < 0 or km < 0 or kp + km == 0 or kp + km > m:
            raise ValueError(f"guess_grid pair ({kp}, {km}) must have k_plus, k_minus >= 0 and "
                             f"1 <= k_plus + k_minus <= {m} (the canaries)")
    return pairs


def audit_canary_scores(scores: Any, included: Any, *, delta: float = 0.0,
                        confidence: float = DEFAULT_CONFIDENCE,
                        guess_grid: Sequence[tuple[int, int]] | None = None) -> CanaryAudit:
    """The best one-run bound over a grid of (k+, k-), valid at ``confidence``.

    Parameters
    ----------
    scores : array_like
        One finite score per canary, higher meaning "in", computed from the run's output only.
    included : array_like of bool
        Whether each canary was in the input (independently with probability 1/2).
    delta : float
        The delta of the (epsilon, delta) claim tested, in [0, 1).
    confidence : float
        In (0, 1), default 0.95.
    guess_grid : sequence of (int, int), optional
        The (k+, k-) pairs to try; default :func:`default_guess_grid`. A single pair fixed
        before the run pays nothing.

    Returns
    -------
    CanaryAudit

    Notes
    -----
    The paper's guarantee is for a number of guesses fixed in advance. Picking the best of G
    pairs after seeing the scores is G tests, so each is run at level (1 - confidence) / G (a
    union bound, as jax_privacy's ``Bonferroni`` threshold strategy does): the returned bound
    holds at the stated confidence whatever pair won.
    """
    s = _checks.vector(scores, "scores")
    truth = np.asarray(included)
    if truth.shape != s.shape or truth.dtype != np.bool_:
        raise ValueError(f"included must be a bool array of the scores' shape {s.shape}, got "
                         f"{truth.dtype} {truth.shape}")
    m = s.size
    d = _check_delta(delta)
    conf = _check_confidence(confidence)
    pairs = _check_grid(default_guess_grid(m) if guess_grid is None else guess_grid, m)
    alpha = (1.0 - conf) / len(pairs)
    order = np.argsort(s, kind="stable")
    hits = truth[order]  # ascending scores: "in" is right at the top, "out" at the bottom
    right = [int(np.count_nonzero(hits[m - kp:])) + km - int(np.count_nonzero(hits[:km]))
             for kp, km in pairs]  # hits[m:] is empty when kp = 0
    best = 0  # index into pairs; the first pair is reported when nothing beats 0
    eps = 0.0
    for i, (kp, km) in enumerate(pairs):
        # floor=eps: a pair that cannot beat the best so far stops after one evaluation
        found = _bound(m, kp + km, right[i], d, alpha, floor=eps)
        if found > eps:
            best, eps = i, found
    kp, km = pairs[best]
    v = right[best]
    return CanaryAudit(bound=eps, k_plus=kp, k_minus=km, guesses=kp + km, correct=v, canaries=m,
                       delta=d, confidence=conf, grid_size=len(pairs))
