"""Secure aggregation and distributed DP in the simulator: how the city is cut into blocks,
each block's floor of noise shares, the distributed-DP strategy the run calibrates, the
aggregator's step on the gateways' block sums (one per block; no gateway's survivor list
believed), and what the report says of them. The protocol is privcity.aggregate.secure, the
mechanism privcity.dp.distributed, the two sides of a round privcity.fl.rounds; this module is
the simulator's policy (docs/secure-aggregation.md, "In the simulator")."""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Any

import numpy as np

from ..dp import Accountant
from ..fl import Aggregator, DistributedDPFedAvg, FedAvg, GatewayReport
from .config import SimConfig

__all__ = ["DDG_BITS", "DDG_FLOOR_FAILURE", "binomial_cdf", "block_starts", "ddg_floor_miss",
           "ddg_shares", "distributed_strategy", "failure_warning", "rotation_seed",
           "secagg_blocks", "secure_step", "secure_summary"]


#: Ring of distributed DP's sums: 32-bit words, half the bytes of the 64-bit fixed point that
#: FedAvg without DP sums under secure aggregation.
DDG_BITS = 32


def secagg_blocks(cfg: SimConfig, population: int) -> int:
    """How many secure-aggregation blocks the city is cut into: about cfg.secagg_cohort devices
    of each are sampled in a round. Fixed by the configuration and the population, so the
    same for any number of ranks."""
    return max(1, round(population * cfg.sample_rate / cfg.secagg_cohort))


def block_starts(blocks: int, population: int) -> np.ndarray:
    """First device id of each block and the population at the end: blocks of equal size (to
    one device), device d in block d * blocks // population."""
    return -(-np.arange(blocks + 1, dtype=np.int64) * population // blocks)


def secure_step(aggregator: Aggregator, params: np.ndarray, r: int, secure: dict[str, Any],
                cohort: np.ndarray, reports: dict[int, GatewayReport],
                refusals: Counter[str]) -> tuple[np.ndarray, int, bool]:
    """The aggregator's side of a secure round: admit the gateways' block sums (one per block,
    from its own gateway, survivors sampled), then step the model. Returns (params, devices the
    gateways say are in the sum, dropped).

    Distributed DP trusts no gateway's survivor list: each unmasked block sum holds at least the
    block's floor of noise shares because its devices refuse to unmask fewer, so the round is
    charged the floor per admitted block, and released only if that reaches the shares the
    noise was calibrated for (else dropped: the model stays). The servers' epsilon counts every
    device the server sampled (its own sampling) as having taken part, with the floor's shares."""
    ddg, quantizer = secure.get("ddg"), secure.get("quantizer")
    strategy = aggregator.strategy
    width, dtype = (ddg.padded_dim, ddg.word_dtype) if ddg is not None else \
        (quantizer.padded_dim + 1, quantizer.word_dtype) if quantizer is not None else \
        (aggregator.n_params + 1 + int(aggregator.adaptive_bit), np.dtype(np.uint64))
    blocks, kinds = aggregator.admit_blocks(
        {g: rep.secure_blocks for g, rep in reports.items()}, blocks=secure["blocks"],
        population=secure["population"], cohort=cohort, width=width, dtype=dtype)
    refusals.update(kinds)
    sums = [total for _, total, _ in blocks]
    count = sum(len(ids) for _, _, ids in blocks)
    if ddg is None:
        return aggregator.step_secure(params, sums, count, r, secure["scale_bits"],
                                      quantizer=quantizer), count, False
    floor = int(secure["min_survivors"])
    strategy.servers_saw(cohort, floor)
    charged = len(blocks) * floor
    if not strategy.check_survivors(charged):
        strategy.last_accounting_seconds = 0.0
        return params, count, True
    return aggregator.step_ddg(params, sums, charged, r, ddg=ddg,
                               rotation_seed=secure["rotation_seed"]), count, False


def rotation_seed(cfg: SimConfig, r: int) -> bytes:
    """The public seed of round r's distributed-DP rotation (the same for every device)."""
    return hashlib.sha256(b"privcity-simulate ddg rotation|" + np.array(
        [cfg.seed, r], np.int64).tobytes()).digest()


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summed in log space (n up to millions, no scipy at run time)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    return min(1.0, sum(math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp
                                 + (n - i) * lq) for i in range(k + 1)))


#: Chance that a secure-aggregation block's round ends below its distributed-DP floor (the
#: devices then refuse to unmask, and the round is dropped): the floor's binomial tail.
DDG_FLOOR_FAILURE = 1e-3


def _block_sizes(cfg: SimConfig, population: int, holders: np.ndarray | None) -> np.ndarray:
    """Devices of each block that can report: all, or those ``holders`` marks as holding
    records (a device without records never reports)."""
    starts = block_starts(secagg_blocks(cfg, population), population)
    if holders is None:
        return np.diff(starts)
    return np.add.reduceat(np.asarray(holders, dtype=np.int64), starts[:-1])


def ddg_shares(cfg: SimConfig, population: int,
               holders: np.ndarray | None = None) -> tuple[int, int, int]:
    """Noise shares of distributed DP: (the floor of each block: its devices refuse to unmask a
    sum of fewer, the floor of the round: the blocks' floors added, what the noise is
    calibrated for; the most devices a round's sum may hold, for the ring: a 1e-6 tail).
    Survivors of a block are Binomial(its devices that hold records, q (1 - dropout)); a
    device without records (a CSV cut into more devices than rows) never reports. ``holders``:
    which devices hold records (default all)."""
    blocks = secagg_blocks(cfg, population)
    sizes = _block_sizes(cfg, population, holders)
    size = int(sizes.min())  # the block with the fewest devices that can report
    p = cfg.sample_rate * (1.0 - cfg.dropout)
    floor = 2
    while binomial_cdf(floor, size, p) <= DDG_FLOOR_FAILURE:  # P(survivors < floor + 1)
        floor += 1
    active = int(sizes.sum())
    most = max(int(active * cfg.sample_rate), floor * blocks)
    while 1.0 - binomial_cdf(most, active, cfg.sample_rate) > 1e-6:
        most += max(1, most // 100)
    return floor, floor * blocks, most


def distributed_strategy(cfg: SimConfig, population: int, n_params: int,
                         holders: np.ndarray | None) -> DistributedDPFedAvg:
    """DP-FedAvg with the devices' own noise (distributed DP), calibrated for the shares each
    round is sure of; an epsilon no noise reaches is refused in terms of the flags."""
    from ..dp import ddg_params
    block_floor, floor, most = ddg_shares(cfg, population, holders)
    try:
        ddg = ddg_params(dim=n_params, clip=cfg.clip, epsilon=cfg.epsilon, delta=cfg.delta,
                         sample_rate=cfg.sample_rate, rounds=cfg.rounds, n_min=floor,
                         n_expected=most, bits=DDG_BITS)
    except ValueError as exc:
        if "out of reach" not in str(exc):
            raise
        raise ValueError(
            f"distributed DP (--secure-aggregation) cannot reach --epsilon {cfg.epsilon:g} over "
            f"{cfg.rounds} rounds: each round is sure of only {floor} devices' noise shares "
            f"({secagg_blocks(cfg, population)} block(s) of {block_floor}: the devices holding "
            f"records, times --sample-rate, less --dropout), and with a {n_params}-parameter "
            "model whether a device's own share is in a sum shows in its variance, whatever "
            "the noise; raise --devices or --sample-rate, or --epsilon, or run without "
            "--secure-aggregation (central DP)") from None
    return DistributedDPFedAvg(inner=FedAvg(server_lr=cfg.server_lr), ddg=ddg,
                               population=population,
                               accountant=Accountant(epsilon_budget=cfg.epsilon, delta=cfg.delta),
                               block_floor=block_floor)


def ddg_floor_miss(cfg: SimConfig, population: int, holders: np.ndarray | None,
                   floor: int) -> float:
    """The chance that the smallest block's survivors fall below its floor in a round: then the
    round is dropped, and whether it is can turn on one device (the users' epsilon does not
    count that; the simulator keeps it at most DDG_FLOOR_FAILURE but for tiny blocks)."""
    size = int(_block_sizes(cfg, population, holders).min())
    return binomial_cdf(floor - 1, size, cfg.sample_rate * (1.0 - cfg.dropout))


def failure_warning(chance: float, dropout: float) -> str:
    """The line a run prints when its block rounds fail more than SECURE_FAILURE_WARN."""
    return (f"warning: at --dropout {dropout:g} a block's secure-aggregation round fails about "
            f"{chance:.1%} of the time (each group needs about two thirds of its devices to "
            "survive); which rounds fail depends on the devices' freshly drawn keys, so runs "
            "with the same --seed can differ; lower --dropout or raise --secagg-neighbors")


def secure_summary(cfg: SimConfig, population: int) -> dict[str, Any]:
    """How the city's secure-aggregation rounds were laid out, and how often one fails."""
    blocks = secagg_blocks(cfg, population)
    cohort, chance = cfg.secure_failure_chance()
    return {"blocks": blocks, "sampled_per_block": population * cfg.sample_rate / blocks,
            "failure_chance_per_block_round": chance, "expected_cohort": cohort}
