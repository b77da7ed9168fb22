"""A one-run canary audit of privcity's own federated averaging, with and without DP.

The run (Steinke, Nasr, Jagielski 2023, with Dirac canaries in the spirit of Nasr et al. 2021's
white-box gradient canaries): m canary devices, each in the population independently with
probability 1/2; the model has m parameters; in each of T rounds the server Poisson-samples the
population at rate q (:func:`privcity.fl.rounds.sampled_devices`, the simulator's sampling) and
every sampled canary i sends the update clip * e_i (at the clip norm: the largest contribution
DP-FedAvg allows, in a coordinate no other canary touches). The updates go through the real
server code:

- ``dp=False``: :class:`privcity.fl.FedAvg` (no protection: the bound is limited only by m);
- ``mechanism="central"``: :class:`privcity.fl.DPFedAvg` with its :class:`privcity.dp.Accountant`
  (``aggregate``: the server clips again and sums; or ``aggregate_sum``: the sum secure
  aggregation gives), noise from :class:`privcity.dp.GaussianMechanism`'s release;
- ``mechanism="distributed"``: each sampled canary's :func:`privcity.dp.ddg_encode` (its own
  noise share), the ring sum, :func:`privcity.dp.ddg_decode` and
  :class:`privcity.fl.DistributedDPFedAvg`, one secure-aggregation block whose floor of shares
  is ``ddg.n_min`` (a round with fewer is dropped and the model stays, as the simulator does).

The auditor sees every intermediate global model (what the accountant's epsilon covers: all
releases), scores canary i by the sum over rounds of its coordinate's change, and gets the
one-run lower bound at 95% after each round (:func:`privcity.attacks.audit_canary_scores`).
A correct mechanism never gives a bound above the accountant's epsilon (but with probability at
most 1 - confidence); a bound above it means the mechanism leaks more than claimed.

All randomness is seeded (reproducible, NOT for protecting data): the audit is a simulation.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..aggregate import modular_sum
from ..dp import Accountant, DDGParams, ddg_decode, ddg_encode, ddg_params
from ..fl import DPFedAvg, DistributedDPFedAvg, FedAvg, Strategy
from ..fl.rounds import sampled_devices
from ..noise import SecureRNG
from . import _checks
from .audit import DEFAULT_CONFIDENCE, _binomial_log_pmf, audit_canary_scores

__all__ = ["AuditResult", "audit_ddg_params", "audit_fedavg"]

_MECHANISMS = ("central", "distributed")
_SERVER_SEES = ("updates", "sum")
# No budget: the audit runs every round (the accountant still records each).
_NO_BUDGET = 1e300
# Tails of the distributed mechanism's share counts, as the simulator's (sim.secure): a round
# falls below the floor with probability at most 1e-3, above the ring's size at most 1e-6.
_FLOOR_TAIL = 1e-3
_RING_TAIL = 1e-6


@dataclass(frozen=True)
class AuditResult:
    """What :func:`audit_fedavg` measured.

    Attributes
    ----------
    bound : float
        The empirical lower bound on epsilon after the last round, at ``confidence``.
    epsilon : float
        The accountant's epsilon at ``delta`` after the last round (inf without DP).
    exceeded : bool
        bound > epsilon: the mechanism leaked more than its accountant claims (a correct one
        does so with probability at most 1 - confidence).
    bound_per_round, epsilon_per_round : tuple of float
        The same after each round (each bound holds at ``confidence`` on its own; they are not
        simultaneous).
    canaries : int
        m.
    included : int
        Canaries that were in the population.
    guesses, correct : int
        The last round's guesses (k_plus + k_minus) and how many were right.
    k_plus, k_minus : int
        The last round's best pair.
    delta, confidence : float
    mechanism : str
        "none" (FedAvg), "central" or "distributed".
    released_rounds : int
        Rounds whose model was released (distributed DP drops a round below its floor).
    """

    bound: float
    epsilon: float
    exceeded: bool
    bound_per_round: tuple[float, ...]
    epsilon_per_round: tuple[float, ...]
    canaries: int
    included: int
    guesses: int
    correct: int
    k_plus: int
    k_minus: int
    delta: float
    confidence: float
    mechanism: str
    released_rounds: int


def _share_quantiles(canaries: int, sample_rate: float) -> tuple[int, int]:
    """(floor, most): the canaries sampled in a round are Binomial(m, q / 2) (each in the
    population with probability 1/2, then sampled at q); the floor is undershot with
    probability at most 1e-3, ``most`` exceeded with probability at most 1e-6."""
    p = sample_rate / 2.0
    cdf = np.cumsum(np.exp(_binomial_log_pmf(canaries, math.log(p), math.log1p(-p))))
    floor = max(2, int(np.searchsorted(cdf, _FLOOR_TAIL, side="right")))  # P[X < floor] <= tail
    most = int(np.searchsorted(cdf, 1.0 - _RING_TAIL, side="left"))       # P[X > most] <= tail
    return floor, max(most, floor)


def audit_ddg_params(*, canaries: int, clip: float, epsilon: float, delta: float,
                     sample_rate: float, rounds: int, bits: int = 32) -> DDGParams:
    """Distributed-DP parameters for :func:`audit_fedavg`'s canaries
    (:func:`privcity.dp.ddg_params` for ``canaries`` parameters), calibrated for the shares a
    round is sure of as the simulator does: a floor undershot with probability 1e-3 (the round
    is then dropped), a ring sized for 1e-6. Chosen without knowing which canaries are in."""
    m = _checks.count(canaries, "canaries", 2)
    q = _rate(sample_rate)
    floor, most = _share_quantiles(m, q)
    return ddg_params(dim=m, clip=clip, epsilon=epsilon, delta=delta, sample_rate=q,
                      rounds=rounds, n_min=floor, n_expected=most, bits=bits)


def _rate(sample_rate: Any) -> float:
    q = _checks.positive(sample_rate, "sample_rate")
    if q > 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    return q


@dataclass(frozen=True)
class _Setup:
    """The checked arguments of one audit."""

    dp: bool
    mechanism: str
    server_sees: str
    clip: float
    noise_multiplier: float | None
    sample_rate: float
    rounds: int
    delta: float
    canaries: int
    seed: int
    ddg: DDGParams | None


def _setup(dp: Any, mechanism: Any, server_sees: Any, clip: Any, noise_multiplier: Any,
           sample_rate: Any, rounds: Any, delta: Any, canaries: Any, seed: Any,
           ddg: Any) -> _Setup:
    if not isinstance(dp, bool):
        raise ValueError(f"dp must be True or False, got {dp!r}")
    if mechanism not in _MECHANISMS:
        raise ValueError(f"mechanism must be one of {_MECHANISMS}, got {mechanism!r}")
    if server_sees is not None and server_sees not in _SERVER_SEES:
        raise ValueError(f"server_sees must be one of {_SERVER_SEES} or None, got {server_sees!r}")
    distributed = dp and mechanism == "distributed"
    if mechanism == "distributed" and not dp:
        raise ValueError("mechanism='distributed' is a DP mechanism: give dp=True")
    if distributed and server_sees == "updates":
        raise ValueError("server_sees='updates' is impossible with distributed DP: the server "
                         "gets the noisy sum only")
    wants_z = dp and mechanism == "central"
    if wants_z != (noise_multiplier is not None):
        raise ValueError("noise_multiplier is needed for dp=True, mechanism='central', and only "
                         "then (distributed DP's noise is set by ddg)")
    if distributed != (ddg is not None):
        raise ValueError("ddg (a privcity.dp.DDGParams, e.g. from audit_ddg_params) is needed "
                         "for mechanism='distributed', and only then")
    m = _checks.count(canaries, "canaries", 2)
    q = _rate(sample_rate)
    if ddg is not None:
        if not isinstance(ddg, DDGParams):
            raise ValueError(f"ddg must be a privcity.dp.DDGParams, got {type(ddg).__name__}")
        if ddg.dim != m or ddg.sample_rate != q:
            raise ValueError(f"ddg must be for dim={m} (the canaries) and sample_rate={q}, got "
                             f"dim={ddg.dim}, sample_rate={ddg.sample_rate}")
    d = _checks.positive(delta, "delta")
    if d >= 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    clip_value = ddg.clip if ddg is not None and clip is None else _checks.positive(clip, "clip")
    if ddg is not None and clip_value != ddg.clip:
        raise ValueError(f"clip ({clip_value}) must be ddg.clip ({ddg.clip})")
    return _Setup(dp=dp, mechanism=mechanism if dp else "none",
                  server_sees=server_sees or ("sum" if distributed else "updates"),
                  clip=clip_value,
                  noise_multiplier=None if noise_multiplier is None
                  else _checks.positive(noise_multiplier, "noise_multiplier"),
                  sample_rate=q, rounds=_checks.count(rounds, "rounds", 1), delta=d, canaries=m,
                  seed=_checks.count(seed, "seed", 0), ddg=ddg)


def _strategy(s: _Setup) -> Strategy:
    if s.mechanism == "none":
        return FedAvg()
    accountant = Accountant(epsilon_budget=_NO_BUDGET, delta=s.delta)
    if s.mechanism == "central":
        return DPFedAvg(inner=FedAvg(), clip=s.clip, noise_multiplier=s.noise_multiplier,
                        sample_rate=s.sample_rate, population=s.canaries, accountant=accountant,
                        rng=SecureRNG(seed=s.seed, stream=1))
    return DistributedDPFedAvg(inner=FedAvg(), ddg=s.ddg, population=s.canaries,
                               accountant=accountant)


def _rotation_seed(seed: int, r: int) -> bytes:
    """Round r's public rotation seed for distributed DP."""
    return hashlib.sha256(b"privcity.attacks audit ddg rotation|" + np.array(
        [seed, r], np.int64).tobytes()).digest()


def _ddg_step(s: _Setup, strategy: DistributedDPFedAvg, params: np.ndarray, ids: np.ndarray,
              r: int) -> tuple[np.ndarray, bool]:
    """One distributed-DP round: each sampled canary encodes clip * e_i with its own share; the
    server decodes the ring sum and steps, or drops a round below the floor. (params, released)."""
    ddg = s.ddg
    if not strategy.check_survivors(int(ids.size)):
        return params, False  # its devices refuse to unmask so few shares
    seed = _rotation_seed(s.seed, r)
    x = np.zeros(s.canaries, np.float32)
    words = []
    for i in ids:
        x[i] = np.float32(s.clip)
        stream = 2**32 + r * s.canaries + int(i)  # each device and round its own noise stream
        words.append(ddg_encode(x, ddg, seed, SecureRNG(seed=s.seed, stream=stream))[0])
        x[i] = 0.0
    estimate = ddg_decode(np.ascontiguousarray(modular_sum(words), dtype=ddg.word_dtype), ddg,
                          seed)
    # charged at the floor, as the simulator's aggregator does: the devices guarantee no more
    return strategy.aggregate_sum(params, estimate, float(ddg.n_min), ddg.n_min,
                                  round_index=r), True


def _plain_step(s: _Setup, strategy: Strategy, params: np.ndarray, ids: np.ndarray,
                r: int) -> np.ndarray:
    """One round of FedAvg or central DP-FedAvg on the sampled canaries' Dirac updates."""
    k = int(ids.size)
    if s.server_sees == "sum":
        total = np.zeros(s.canaries)
        total[ids] = s.clip
        return strategy.aggregate_sum(params, total, float(k), k, round_index=r)
    updates = np.zeros((k, s.canaries), np.float32)
    updates[np.arange(k), ids] = np.float32(s.clip)
    return strategy.aggregate(params, updates, np.ones(k), round_index=r)


def _epsilon(strategy: Strategy) -> float:
    accountant = getattr(strategy, "accountant", None)
    return math.inf if accountant is None else float(accountant.epsilon())


def audit_fedavg(*, dp: bool, clip: float | None, sample_rate: float, rounds: int,
                 delta: float, noise_multiplier: float | None = None, canaries: int = 1000,
                 seed: int = 0, mechanism: str = "central", server_sees: str | None = None,
                 ddg: DDGParams | None = None, confidence: float = DEFAULT_CONFIDENCE,
                 guess_grid: Sequence[tuple[int, int]] | None = None) -> AuditResult:
    """Runs the canary audit (see the module) and returns the bound beside the accountant's
    epsilon, after each round.

    Parameters
    ----------
    dp : bool
        False: plain FedAvg (no noise, no accountant: epsilon is inf).
    clip : float
        The clip norm C, > 0 (each canary's update has norm C); None with ``ddg`` (its clip).
    sample_rate : float
        q, in (0, 1]: Poisson sampling of the population each round.
    rounds : int
        T >= 1.
    delta : float
        In (0, 1): the accountant's delta, and the delta of the claim the audit tests.
    noise_multiplier : float, optional
        z of central DP (DPFedAvg), > 0; only with ``dp=True, mechanism="central"``.
    canaries : int
        m >= 2 (also the model's size).
    seed : int
        >= 0: inclusion, sampling, and every noise draw (seeded: a simulation).
    mechanism : {"central", "distributed"}
        With dp=True: DPFedAvg's server-side Gaussian noise, or distributed DP's device shares.
    server_sees : {"updates", "sum"}, optional
        Central DP and FedAvg: the server gets each update (``aggregate``: it clips again), the
        default, or their sum only (``aggregate_sum``, as under secure aggregation; needs no
        (K, m) array, so it suits 10^5 canaries and more). Distributed DP: always the sum.
    ddg : DDGParams, optional
        Distributed DP's parameters for ``canaries`` dimensions at ``sample_rate``
        (:func:`audit_ddg_params`); only with mechanism="distributed".
    confidence : float
        Of each bound, in (0, 1); default 0.95.
    guess_grid : sequence of (int, int), optional
        (k+, k-) pairs to choose from (:func:`privcity.attacks.audit_canary_scores`; each is
        paid for by a union bound).

    Raises
    ------
    ValueError
        An argument out of range or a combination that means nothing (the message names it).
    """
    s = _setup(dp, mechanism, server_sees, clip, noise_multiplier, sample_rate, rounds, delta,
               canaries, seed, ddg)
    strategy = _strategy(s)
    included = SecureRNG(seed=s.seed, stream=0).bernoulli(s.canaries, 0.5)
    population = np.flatnonzero(included)
    start = np.zeros(s.canaries, np.float32)
    params = start
    audits: list[Any] = []
    epsilons: list[float] = []
    released = 0
    for r in range(s.rounds):
        ids = sampled_devices(s.seed, r, population, sample_rate=s.sample_rate)
        if s.mechanism == "distributed":
            params, ok = _ddg_step(s, strategy, params, ids, r)  # type: ignore[arg-type]
        else:
            params, ok = _plain_step(s, strategy, params, ids, r), True
        released += int(ok)
        # the sum over rounds of each coordinate's change: the last model less the first
        scores = params.astype(np.float64) - start.astype(np.float64)
        audits.append(audit_canary_scores(scores, included, delta=s.delta,
                                          confidence=confidence, guess_grid=guess_grid))
        epsilons.append(_epsilon(strategy))
    last = audits[-1]
    return AuditResult(bound=last.bound, epsilon=epsilons[-1], exceeded=last.bound > epsilons[-1],
                       bound_per_round=tuple(a.bound for a in audits),
                       epsilon_per_round=tuple(epsilons), canaries=s.canaries,
                       included=int(population.size), guesses=last.guesses, correct=last.correct,
                       k_plus=last.k_plus, k_minus=last.k_minus, delta=s.delta,
                       confidence=last.confidence, mechanism=s.mechanism,
                       released_rounds=released)
