"""Server strategies: how a round's updates become the next global model (shaped like Flower's
``Strategy``: keyword-only constructors that validate, the maths in privcity.aggregate and
privcity.dp, DP as a wrapper around another strategy).

A strategy sees the global parameters, the updates of the devices that reported (one row per
device, in increasing device id, already clipped on the device when the strategy asked for a
clip norm) and their weights, and returns the new global parameters.
"""
from __future__ import annotations

import abc
import math
import time
from typing import Any

import numpy as np

from .. import aggregate
from ..dp import Accountant, AdaptiveClipping, DDGParams, GaussianMechanism, clip_l2_rows
from ..dp import ddg_epsilon
from ..dp import _checks
from ..noise import SecureRNG

__all__ = ["DPFedAvg", "DistributedDPFedAvg", "FedAvg", "Strategy"]

_AGGREGATORS = ("mean", "median", "trimmed_mean", "krum")


class Strategy(abc.ABC):
    """Base class of server strategies."""

    @abc.abstractmethod
    def aggregate(self, params: np.ndarray, updates: np.ndarray, weights: np.ndarray, *,
                  round_index: int, unclipped: np.ndarray | None = None) -> np.ndarray:
        """New global parameters (float32) from ``params`` and the (K, P) ``updates``;
        ``unclipped`` (one 0/1 per update: its norm was within the clip) is for strategies
        that adapt their clip norm and may be ignored."""

    @abc.abstractmethod
    def aggregate_sum(self, params: np.ndarray, total: np.ndarray, total_weight: float,
                      count: int, *, round_index: int,
                      unclipped_count: int | None = None) -> np.ndarray:
        """New global parameters from the sum of the updates alone, as secure aggregation
        gives it: ``total`` = sum of weight * update over ``count`` devices (float64; the
        weight is the device's number of records for a weighted mean, 1 under DP),
        ``total_weight`` the sum of the weights, ``unclipped_count`` how many updates were
        within the clip norm (for adaptive clipping)."""

    def clip_norm(self) -> float | None:
        """L2 norm the devices clip their updates to this round, or None (no clipping)."""
        return None

    def check_budget(self) -> None:
        """Raise :class:`privcity.PrivacyBudgetExceeded` if another round would exceed the
        privacy budget (nothing to check without DP)."""

    def describe(self) -> dict[str, Any]:
        """The strategy's settings, for reports."""
        return {"strategy": type(self).__name__}


class FedAvg(Strategy):
    """Federated averaging: params + server_lr * aggregate(updates).

    Parameters
    ----------
    server_lr : float
        Server learning rate (1.0 is plain FedAvg), > 0.
    aggregator : {"mean", "median", "trimmed_mean", "krum"}
        "mean" weights updates by their weights (numbers of examples); the robust ones
        (privcity.aggregate.median, trimmed_mean with ``beta``, krum with ``krum_f``) ignore
        weights and bound what a minority of bad devices can do.
    beta : float
        Fraction cut from each side by "trimmed_mean", in [0, 0.5).
    krum_f : int
        Number of Byzantine devices "krum" tolerates, >= 0.
    """

    def __init__(self, *, server_lr: float = 1.0, aggregator: str = "mean", beta: float = 0.1,
                 krum_f: int = 1) -> None:
        self.server_lr = _checks.positive(server_lr, "server_lr")
        if aggregator not in _AGGREGATORS:
            raise ValueError(f"aggregator must be one of {_AGGREGATORS}, not {aggregator!r}")
        self.aggregator = aggregator
        if not (isinstance(beta, (int, float)) and 0 <= beta < 0.5):
            raise ValueError("beta must be in [0, 0.5)")
        self.beta = float(beta)
        if isinstance(krum_f, bool) or not isinstance(krum_f, int) or krum_f < 0:
            raise ValueError("krum_f must be an int >= 0")
        self.krum_f = krum_f

    def combine(self, updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The aggregate update (float32) of the (K, P) ``updates``."""
        if self.aggregator == "mean":
            return aggregate.weighted_mean(updates, weights)
        if self.aggregator == "median":
            return aggregate.median(updates)
        if self.aggregator == "trimmed_mean":
            return aggregate.trimmed_mean(updates, self.beta)
        k = updates.shape[0]
        if k < 3:  # Krum needs k > 2 f + 2 even for f = 0: the median of so few
            return aggregate.median(updates)
        f = min(self.krum_f, (k - 3) // 2)
        return aggregate.krum(updates, f, m=max(1, k - f))

    def aggregate(self, params: np.ndarray, updates: np.ndarray, weights: np.ndarray, *,
                  round_index: int, unclipped: np.ndarray | None = None) -> np.ndarray:
        if updates.shape[0] == 0:
            return params
        delta = self.combine(updates, weights)
        return self._step(params, delta)

    def _step(self, params: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """params + server_lr * delta, in float32."""
        return (params + np.float32(self.server_lr) * delta.astype(np.float32, copy=False)).astype(np.float32)

    def aggregate_sum(self, params: np.ndarray, total: np.ndarray, total_weight: float,
                      count: int, *, round_index: int,
                      unclipped_count: int | None = None) -> np.ndarray:
        if self.aggregator != "mean":
            raise ValueError(f"the {self.aggregator} aggregator needs each update; from their "
                             "sum only the mean can be had")
        if count == 0 or not total_weight > 0:
            return params
        return self._step(params, np.asarray(total, dtype=np.float64) / float(total_weight))

    def describe(self) -> dict[str, Any]:
        return {"strategy": "FedAvg", "server_lr": self.server_lr, "aggregator": self.aggregator}


class DPFedAvg(Strategy):
    """DP-FedAvg (McMahan et al. 2018) around a :class:`FedAvg`: devices clip their update to
    L2 norm C; the server sums the clipped updates (unweighted), adds Gaussian noise of standard
    deviation z C from the CSPRNG, and divides by the expected cohort size q N (a fixed
    denominator, so one device changes the mean by at most C / (q N); with dropouts, about
    q (1 - dropout) N devices report, so the step shrinks by that factor while the accounting at
    rate q stays conservative). Each round is recorded in
    the accountant as Poisson sampling at rate q with noise multiplier z; :meth:`check_budget`
    refuses a round that would exceed the budget, before it is run.

    Parameters
    ----------
    inner : FedAvg
        Supplies the server learning rate; its aggregator must be "mean".
    clip : float
        Initial clip norm C, > 0.
    noise_multiplier : float
        z = noise std / C, > 0.
    sample_rate : float
        q, the Poisson sampling rate of devices per round, in (0, 1].
    population : int
        N, the number of devices.
    accountant : Accountant
        Records each round and enforces the budget.
    adaptive : AdaptiveClipping, optional
        Adapts C to a quantile of the update norms from the devices' clipped/not-clipped bits
        (noised); the updates then get the noise multiplier
        ``adaptive.noise_multiplier_for_updates(z)`` so the total stays z.
    rng : SecureRNG, optional
        Noise source (default: OS-keyed).
    """

    def __init__(self, *, inner: FedAvg, clip: float, noise_multiplier: float,
                 sample_rate: float, population: int, accountant: Accountant,
                 adaptive: AdaptiveClipping | None = None, rng: SecureRNG | None = None) -> None:
        if not isinstance(inner, FedAvg) or inner.aggregator != "mean":
            raise ValueError("inner must be a FedAvg with aggregator='mean' (the DP analysis is "
                             "for the clipped mean)")
        self.inner = inner
        self._clip = _checks.positive(clip, "clip")
        self.noise_multiplier = _checks.positive(noise_multiplier, "noise_multiplier")
        q = float(sample_rate)
        if not (math.isfinite(q) and 0 < q <= 1):
            raise ValueError("sample_rate must be in (0, 1]")
        self.sample_rate = q
        if isinstance(population, bool) or not isinstance(population, int) or population < 1:
            raise ValueError("population must be an int >= 1")
        self.population = population
        if not isinstance(accountant, Accountant):
            raise TypeError("accountant must be a privcity.dp.Accountant")
        self.accountant = accountant
        self.adaptive = adaptive
        if adaptive is not None:
            adaptive.noise_multiplier_for_updates(noise_multiplier)  # checks z against sigma_b
        self.rng = rng if rng is not None else SecureRNG()
        self.last_accounting_seconds = 0.0

    def clip_norm(self) -> float:
        return self.adaptive.clip if self.adaptive is not None else self._clip

    @property
    def update_noise_multiplier(self) -> float:
        if self.adaptive is None:
            return self.noise_multiplier
        return self.adaptive.noise_multiplier_for_updates(self.noise_multiplier)

    def check_budget(self) -> None:
        event = Accountant.round_event(self.sample_rate, self.noise_multiplier)
        eps = self.accountant.epsilon_with(event)
        if eps > self.accountant.epsilon_budget:
            from ..errors import PrivacyBudgetExceeded
            raise PrivacyBudgetExceeded(
                f"refused: round {self.accountant.rounds + 1} would take epsilon to {eps:.4g}, "
                f"past the budget {self.accountant.epsilon_budget:g}")

    def aggregate(self, params: np.ndarray, updates: np.ndarray, weights: np.ndarray, *,
                  round_index: int, unclipped: np.ndarray | None = None) -> np.ndarray:
        """``unclipped``: per device, 1 if its update's norm was <= C (for adaptive clipping).

        The server clips every row to C again (a device that did not clip cannot raise the
        sensitivity; nor can compression: a decoded update of privcity.fl.compress is the
        device's clipped update plus its rounding error, which may take it past C, and it is
        this clip, after decoding, that bounds what one device adds), sums the rows, and
        releases the sum with
        :class:`privcity.dp.GaussianMechanism`'s float-safe ``release`` (the sum snapped to a
        grid chosen from the noise scale, plus exact discrete Gaussian noise of at least z C).
        """
        c = self.clip_norm()
        k = updates.shape[0]
        if k:
            clipped, _ = clip_l2_rows(updates, c)
            total = aggregate.weighted_mean(np.ascontiguousarray(clipped, dtype=np.float32),
                                            np.ones(k)).astype(np.float64) * k
        else:
            total = np.zeros(params.shape[0])
        bits = np.zeros(0) if unclipped is None else np.asarray(unclipped)
        count = int(np.count_nonzero(bits == 1))  # anything but 1 counts as clipped
        return self._release(params, total, k, count)

    def _release(self, params: np.ndarray, total: np.ndarray, cohort: int,
                 unclipped_count: int) -> np.ndarray:
        """Records the round, releases the sum of the clipped updates with noise of z C, divides
        by the expected cohort, adapts the clip, and steps the parameters."""
        t0 = time.perf_counter()
        self.accountant.record_round(self.sample_rate, self.noise_multiplier)
        self.last_accounting_seconds = time.perf_counter() - t0
        c = self.clip_norm()
        expected = self.sample_rate * self.population
        mechanism = GaussianMechanism(sigma=self.update_noise_multiplier * c, sensitivity=c,
                                      rng=self.rng)
        noisy = mechanism.release(np.asarray(total, dtype=np.float64)) / expected
        if self.adaptive is not None:
            self.adaptive.update_from_count(unclipped_count, cohort_size=int(cohort),
                                            expected_count=expected)
        return self.inner._step(params, noisy)

    def aggregate_sum(self, params: np.ndarray, total: np.ndarray, total_weight: float,
                      count: int, *, round_index: int,
                      unclipped_count: int | None = None) -> np.ndarray:
        """As :meth:`aggregate`, from the sum of the clipped updates (each of weight 1) that
        secure aggregation gives. The server cannot clip again what it does not see: the
        sensitivity rests on the devices' clipping (the simulator's devices clip to C less the
        fixed-point rounding of the sum)."""
        return self._release(params, total, count, int(unclipped_count or 0))

    def describe(self) -> dict[str, Any]:
        return {"strategy": "DPFedAvg", "server_lr": self.inner.server_lr,
                "clip": self.clip_norm(), "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate, "population": self.population,
                "adaptive_clipping": self.adaptive is not None}


class DistributedDPFedAvg(Strategy):
    """DP-FedAvg whose noise the devices add: the distributed discrete Gaussian (Kairouz, Liu,
    Steinke 2021) under secure aggregation. Each device clips to C, rotates, scales, rounds
    (norm bounded) and adds its own discrete Gaussian share before masking
    (:func:`privcity.dp.ddg_encode`); the server gets the decoded noisy sum
    (:func:`privcity.dp.ddg_decode`), adds no noise, and divides by the expected cohort q N.

    Two epsilons, for two kinds of observer:

    - against users of the released model (``accountant``): each round is recorded as a
      Poisson-sampled DDG release (add or remove of a device, its own share with it) with the
      noise shares the caller vouches for (at least ``ddg.n_min``: the aggregator drops a round
      with fewer, see :meth:`check_survivors`);
    - against the aggregator and the gateways (:meth:`epsilon_servers`): they see which
      devices took part and the sums of single blocks, so no amplification by sampling and
      only one block's shares: the DDG bound without sampling (the device's update replaced by
      zeros, its share kept), with the fewest shares any block sum they saw held, composed over
      the most rounds any device took part in (as :meth:`servers_saw` was told: the simulator
      counts every device it sampled, and each sum at its block's floor).

    Parameters
    ----------
    inner : FedAvg
        Supplies the server learning rate; its aggregator must be "mean".
    ddg : DDGParams
        The mechanism (:func:`privcity.dp.ddg_params`), calibrated for ``ddg.n_min`` shares.
    population : int
        N, the number of devices.
    accountant : Accountant
        Records each round (against model users) and enforces the budget.
    block_floor : int, optional
        The fewest noise shares a sum the servers unmask may hold (under secure aggregation in
        blocks, each block's devices refuse fewer); default ddg.n_min.
    """

    def __init__(self, *, inner: FedAvg, ddg: DDGParams, population: int,
                 accountant: Accountant, block_floor: int | None = None) -> None:
        if not isinstance(inner, FedAvg) or inner.aggregator != "mean":
            raise ValueError("inner must be a FedAvg with aggregator='mean' (the DP analysis is "
                             "for the clipped sum)")
        if not isinstance(ddg, DDGParams):
            raise TypeError("ddg must be a privcity.dp.DDGParams")
        if isinstance(population, bool) or not isinstance(population, int) or population < 1:
            raise ValueError("population must be an int >= 1")
        if not isinstance(accountant, Accountant):
            raise TypeError("accountant must be a privcity.dp.Accountant")
        self.inner, self.ddg, self.population, self.accountant = inner, ddg, population, accountant
        self.block_floor = ddg.n_min if block_floor is None else _checks.count(
            block_floor, "block_floor", minimum=1)
        self.sample_rate = ddg.sample_rate
        self.noise_multiplier = ddg.noise_multiplier()
        self.last_accounting_seconds = 0.0
        self._taken = np.zeros(population, np.int32)  # rounds each device's input was in a sum
        self._fewest: int | None = None  # fewest shares a block sum the servers saw held

    def clip_norm(self) -> float:
        return self.ddg.clip

    def check_budget(self) -> None:
        event = Accountant.ddg_round_event(self.ddg, self.ddg.n_min)
        eps = self.accountant.epsilon_with(event)
        if eps > self.accountant.epsilon_budget:
            from ..errors import PrivacyBudgetExceeded
            raise PrivacyBudgetExceeded(
                f"refused: round {self.accountant.rounds + 1} would take epsilon to {eps:.4g}, "
                f"past the budget {self.accountant.epsilon_budget:g}")

    def check_survivors(self, count: int) -> bool:
        """Whether a round whose sum holds ``count`` devices' shares may be released: at least
        the ddg.n_min the noise was calibrated for."""
        return count >= self.ddg.n_min

    def servers_saw(self, devices: np.ndarray, shares: int) -> None:
        """Record that ``devices`` took part (or may have) in sums the servers unmasked, each
        holding at least ``shares`` noise shares (whether or not the round was then released)."""
        ids = np.asarray(devices, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.population):
            raise ValueError("devices must be ids in [0, population)")
        np.add.at(self._taken, ids, 1)
        self._fewest = shares if self._fewest is None else min(self._fewest, shares)

    def epsilon_servers(self) -> float | None:
        """Epsilon against the aggregator and the gateways so far (see the class), or None
        before they saw any sum."""
        most = int(self._taken.max()) if self._taken.size else 0
        if most == 0 or self._fewest is None:
            return None
        return ddg_epsilon(self.ddg, rounds=most, delta=self.accountant.delta, n=self._fewest,
                           sampled=False)

    def aggregate(self, params: np.ndarray, updates: np.ndarray, weights: np.ndarray, *,
                  round_index: int, unclipped: np.ndarray | None = None) -> np.ndarray:
        raise ValueError("distributed DP never sees one device's update: the server gets the "
                         "noisy sum (aggregate_sum)")

    def aggregate_sum(self, params: np.ndarray, total: np.ndarray, total_weight: float,
                      count: int, *, round_index: int,
                      unclipped_count: int | None = None) -> np.ndarray:
        """The next model from ``total``, the decoded noisy sum of ``count`` devices' clipped
        updates (each of weight 1, each with its noise share); records the round."""
        if not self.check_survivors(count):
            raise ValueError(f"a sum of {count} devices holds fewer noise shares than the "
                             f"{self.ddg.n_min} the noise was calibrated for")
        t0 = time.perf_counter()
        self.accountant.record_ddg_round(self.ddg, int(count))
        self.last_accounting_seconds = time.perf_counter() - t0
        expected = self.sample_rate * self.population
        return self.inner._step(params, np.asarray(total, dtype=np.float64) / expected)

    def describe(self) -> dict[str, Any]:
        return {"strategy": "DistributedDPFedAvg", "server_lr": self.inner.server_lr,
                "clip": self.ddg.clip, "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate, "population": self.population,
                "adaptive_clipping": False, "ddg": self.ddg.describe(),
                "block_floor": self.block_floor,
                "servers_most_rounds_taken_part": int(self._taken.max()) if self._taken.size
                else 0, "servers_fewest_shares": self._fewest}
