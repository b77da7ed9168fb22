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
- ``mechanism="distributed"``: each reporting device's :func:`privcity.dp.ddg_encode` (its own
  noise share), the ring sum, :func:`privcity.dp.ddg_decode` and
  :class:`privcity.fl.DistributedDPFedAvg`. Either a federation of canaries alone calibrated
  for them (:func:`audit_ddg_params`), or a run's own mechanism: its DDGParams (d = the model's
  parameters, d >= m: canary i owns coordinate i), its ``population`` N of which the m canaries
  are m, the rest filler devices that send a zero update with their noise share (every
  reporting device sends one), its dropout, and its secure-aggregation blocks (N cut into
  ``ddg.n_min / block_floor`` blocks as privcity.sim cuts the city, each unmasked only with at
  least ``block_floor`` shares). A round is released, and charged ``ddg.n_min`` shares, only when
  every block unmasked (else dropped, the model stays), as the simulator's aggregator does; so
  the audit's epsilon is the run's for as many released rounds.

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
from ..fl.rounds import round_cohort, sampled_devices
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
    ceiling : float
        The bound had every guess been right (the scores were the inclusion itself): no
        mechanism, however broken, can show more with these canaries, so a claim above it
        cannot be caught by this audit.
    population : int
        Devices of the federation (canaries and filler devices).
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
    ceiling: float
    population: int


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
    population: int
    block_floor: int
    dropout: float


def _setup(dp: Any, mechanism: Any, server_sees: Any, clip: Any, noise_multiplier: Any,
           sample_rate: Any, rounds: Any, delta: Any, canaries: Any, seed: Any,
           ddg: Any, federation: tuple[Any, Any, Any]) -> _Setup:
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
        if ddg.dim < m or ddg.sample_rate != q:
            raise ValueError(f"ddg must be for dim >= {m} (one coordinate per canary) and "
                             f"sample_rate={q}, got dim={ddg.dim}, sample_rate={ddg.sample_rate}")
    d = _checks.positive(delta, "delta")
    if d >= 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    clip_value = ddg.clip if ddg is not None and clip is None else _checks.positive(clip, "clip")
    if ddg is not None and clip_value != ddg.clip:
        raise ValueError(f"clip ({clip_value}) must be ddg.clip ({ddg.clip})")
    population, block_floor, dropout = _federation(federation, ddg, m)
    return _Setup(dp=dp, mechanism=mechanism if dp else "none",
                  server_sees=server_sees or ("sum" if distributed else "updates"),
                  clip=clip_value,
                  noise_multiplier=None if noise_multiplier is None
                  else _checks.positive(noise_multiplier, "noise_multiplier"),
                  sample_rate=q, rounds=_checks.count(rounds, "rounds", 1), delta=d, canaries=m,
                  seed=_checks.count(seed, "seed", 0), ddg=ddg, population=population,
                  block_floor=block_floor, dropout=dropout)


def _federation(federation: tuple[Any, Any, Any], ddg: DDGParams | None,
                m: int) -> tuple[int, int, float]:
    """(population, block_floor, dropout), checked: given only with distributed DP, where they
    default to the canaries alone in one block of floor ddg.n_min, without dropout."""
    population, block_floor, dropout = federation
    if ddg is None:
        if federation != (None, None, 0.0):
            raise ValueError("population, block_floor and dropout describe distributed DP's "
                             "federation: give them with mechanism='distributed' only")
        return m, 0, 0.0
    n = m if population is None else _checks.count(population, "population", m)
    floor = ddg.n_min if block_floor is None else _checks.count(block_floor, "block_floor", 1)
    if ddg.n_min % floor or ddg.n_min // floor > n:
        raise ValueError(f"block_floor ({floor}) must divide ddg.n_min ({ddg.n_min}) into at "
                         f"most population ({n}) blocks: the run's floor is its blocks' floors")
    d = _checks.fraction(dropout, "dropout")
    if d >= 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return n, floor, d


def _strategy(s: _Setup) -> Strategy:
    if s.mechanism == "none":
        return FedAvg()
    accountant = Accountant(epsilon_budget=_NO_BUDGET, delta=s.delta)
    if s.mechanism == "central":
        return DPFedAvg(inner=FedAvg(), clip=s.clip, noise_multiplier=s.noise_multiplier,
                        sample_rate=s.sample_rate, population=s.canaries, accountant=accountant,
                        rng=SecureRNG(seed=s.seed, stream=1))
    return DistributedDPFedAvg(inner=FedAvg(), ddg=s.ddg, population=s.population,
                               accountant=accountant, block_floor=s.block_floor)


def _rotation_seed(seed: int, r: int) -> bytes:
    """Round r's public rotation seed for distributed DP."""
    return hashlib.sha256(b"privcity.attacks audit ddg rotation|" + np.array(
        [seed, r], np.int64).tobytes()).digest()


@dataclass(frozen=True)
class _Devices:
    """Distributed DP's federation: device ids 0..N-1, canary i is device ``canary[i]`` (spread
    evenly, so over the blocks too), ``present`` the devices that exist (fillers and included
    canaries), ``block`` each device's block (d * blocks // N, privcity.sim's cut)."""

    canary: np.ndarray
    present: np.ndarray
    block: np.ndarray
    blocks: int


def _devices(s: _Setup, included: np.ndarray) -> _Devices:
    n, m = s.population, s.canaries
    canary = np.arange(m, dtype=np.int64) * n // m
    exists = np.ones(n, bool)
    exists[canary[~included]] = False
    blocks = s.ddg.n_min // s.block_floor if s.ddg is not None else 1
    return _Devices(canary=canary, present=np.flatnonzero(exists),
                    block=np.arange(n, dtype=np.int64) * blocks // n, blocks=blocks)


def _ddg_step(s: _Setup, strategy: DistributedDPFedAvg, fed: _Devices, params: np.ndarray,
              r: int) -> tuple[np.ndarray, bool]:
    """One distributed-DP round: Poisson sampling at q, dropout; each block unmasks only with
    at least block_floor shares; if every block did (the ddg.n_min shares charged), each
    reporting device's encoding (canary i: clip * e_i, filler: zeros) is summed in the ring,
    decoded and released; else the round is dropped. (params, released)."""
    ddg = s.ddg
    _, reporting = round_cohort(s.seed, r, fed.present, sample_rate=s.sample_rate,
                                dropout=s.dropout)
    ids = fed.present[reporting]
    per_block = np.bincount(fed.block[ids], minlength=fed.blocks)
    admitted = int(np.count_nonzero((per_block >= s.block_floor) & (per_block >= 2)))
    charged = admitted * s.block_floor  # the simulator trusts no survivor list: the floors
    if not strategy.check_survivors(charged):
        return params, False  # a block's devices refused to unmask so few shares
    seed = _rotation_seed(s.seed, r)
    slot = np.full(s.population, -1, np.int64)
    slot[fed.canary] = np.arange(s.canaries)
    x = np.zeros(ddg.dim, np.float32)
    words = np.empty((ids.size, ddg.padded_dim), ddg.word_dtype)
    for row, d in enumerate(ids):
        i = int(slot[d])
        if i >= 0:
            x[i] = np.float32(s.clip)
        stream = 2**32 + r * s.population + int(d)  # each device and round its own noise stream
        ddg_encode(x, ddg, seed, SecureRNG(seed=s.seed, stream=stream), out=words[row])
        if i >= 0:
            x[i] = 0.0
    estimate = ddg_decode(np.ascontiguousarray(modular_sum(words), dtype=ddg.word_dtype),
                          ddg, seed)
    # charged at the floor, as the simulator's aggregator does: the devices guarantee no more
    return strategy.aggregate_sum(params, estimate, float(charged), charged, round_index=r), True


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
                 ddg: DDGParams | None = None, population: int | None = None,
                 block_floor: int | None = None, dropout: float = 0.0,
                 confidence: float = DEFAULT_CONFIDENCE,
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
        m >= 2: the model's size, or, with ``ddg``, at most ddg.dim (canary i owns coordinate i).
    seed : int
        >= 0: inclusion, sampling, and every noise draw (seeded: a simulation).
    mechanism : {"central", "distributed"}
        With dp=True: DPFedAvg's server-side Gaussian noise, or distributed DP's device shares.
    server_sees : {"updates", "sum"}, optional
        Central DP and FedAvg: the server gets each update (``aggregate``: it clips again), the
        default, or their sum only (``aggregate_sum``, as under secure aggregation; needs no
        (K, m) array, so it suits 10^5 canaries and more). Distributed DP: always the sum.
    ddg : DDGParams, optional
        Distributed DP's parameters at ``sample_rate``, for at least ``canaries`` dimensions:
        :func:`audit_ddg_params`, or a run's own (``strategy.ddg`` of its
        :class:`privcity.fl.DistributedDPFedAvg`); only with mechanism="distributed".
    population : int, optional
        Distributed DP: N >= m devices, the m canaries among them and N - m filler devices
        that each round, when sampled, send a zero update with their noise share; default m
        (canaries only). A run's own: its population.
    block_floor : int, optional
        Distributed DP: the fewest shares a secure-aggregation block unmasks, dividing
        ddg.n_min into its blocks; default ddg.n_min (one block). A run's own:
        ``strategy.block_floor``.
    dropout : float
        Distributed DP: the chance that a sampled device drops out (sends nothing), in [0, 1).
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
               canaries, seed, ddg, (population, block_floor, dropout))
    strategy = _strategy(s)
    included = SecureRNG(seed=s.seed, stream=0).bernoulli(s.canaries, 0.5)
    fed = _devices(s, included)
    start = np.zeros(s.canaries if s.ddg is None else s.ddg.dim, np.float32)
    params = start
    audits: list[Any] = []
    epsilons: list[float] = []
    released = 0
    for r in range(s.rounds):
        if s.mechanism == "distributed":
            params, ok = _ddg_step(s, strategy, fed, params, r)  # type: ignore[arg-type]
        else:
            ids = sampled_devices(s.seed, r, fed.present, sample_rate=s.sample_rate)
            params, ok = _plain_step(s, strategy, params, ids, r), True
        released += int(ok)
        # the sum over rounds of each canary coordinate's change: the last model less the first
        scores = params[:s.canaries].astype(np.float64) - start[:s.canaries].astype(np.float64)
        audits.append(audit_canary_scores(scores, included, delta=s.delta,
                                          confidence=confidence, guess_grid=guess_grid))
        epsilons.append(_epsilon(strategy))
    last = audits[-1]
    ceiling = audit_canary_scores(included.astype(np.float64), included, delta=s.delta,
                                  confidence=confidence, guess_grid=guess_grid).bound
    return AuditResult(bound=last.bound, epsilon=epsilons[-1], exceeded=last.bound > epsilons[-1],
                       bound_per_round=tuple(a.bound for a in audits),
                       epsilon_per_round=tuple(epsilons), canaries=s.canaries,
                       included=int(included.sum()), guesses=last.guesses,
                       correct=last.correct, k_plus=last.k_plus, k_minus=last.k_minus,
                       delta=s.delta, confidence=last.confidence, mechanism=s.mechanism,
                       released_rounds=released, ceiling=ceiling, population=s.population)
