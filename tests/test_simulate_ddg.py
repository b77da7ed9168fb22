"""privcity simulate --secure-aggregation with DP is distributed DP (issue 14), checked from the
outside: each block sum a gateway unmasks is exactly the ring sum of its survivors' encodings,
reproduced from the seeded streams; the aggregator decodes the admitted sums and steps by
server_lr / (q N); the aggregate noise has the variance the accountant assumes; rounds and
blocks below their floor of noise shares are dropped or lost; epsilon against the servers is
recomputed from the seeded sampling; each epsilon says whom it holds against; utility matches
central DP; and the result does not depend on the number of ranks."""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from privcity import _core
from privcity.aggregate import modular_sum
from privcity.cli import main as cli_main
from privcity.dp import (Accountant, DDGParams, ddg_decode, ddg_encode_parts, ddg_epsilon,
                         ddg_rotation_key)
from privcity.fl import Aggregator, DistributedDPFedAvg, FedAvg, GatewayReport
from privcity.fl.rounds import round_cohort, training_seeds
from privcity.models import train_many
from privcity.noise import SecureRNG
from privcity.sim import load_config, simulate, summary_table
from privcity.sim import runner
from privcity.sim import secure as sim_secure
from privcity.sim.secure import secagg_blocks

from test_simulate import _mpiexec_and_env

# Four blocks of 40 devices (about 10 sampled in each), two of them per gateway under mpiexec -n 3;
# one device in ten drops out after sharing keys; server_lr != 1 so that the step shows it.
DDG = dict(devices=160, rounds=3, sample_rate=0.25, samples_per_device=24, seed=3, lr=0.5,
           local_epochs=3, secure_aggregation=True, secagg_cohort=10, dropout=0.1,
           epsilon=8.0, server_lr=0.7, risk_people=0)
ALPHA = 1e-3  # significance of the statistical tests (each is seeded: it passes or fails always)


def flags(config: dict) -> list[str]:
    """The command-line flags of a config dict."""
    return [f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
            for k, v in config.items()]


@pytest.fixture(scope="module")
def spied(tmp_path_factory) -> SimpleNamespace:
    """A real distributed-DP run, with what each gateway got and reported in each DP round and
    each call of Aggregator.step_ddg recorded on the way (nothing else changes)."""
    cfg = load_config(None, out=str(tmp_path_factory.mktemp("ddg") / "out"), **DDG)
    rounds: list[SimpleNamespace] = []
    steps: list[SimpleNamespace] = []
    gateway_round, step_ddg = runner._gateway_round, Aggregator.step_ddg

    def spy_round(gateway, msg):
        report = gateway_round(gateway, msg)
        if (msg.get("secure") or {}).get("ddg") is not None:
            msg = {**msg, "params": msg["params"].copy()}
            rounds.append(SimpleNamespace(gateway=gateway, msg=msg, report=report))
        return report

    def spy_step(self, params, sums, count, round_index, **kw):
        out = step_ddg(self, params, sums, count, round_index, **kw)
        steps.append(SimpleNamespace(params=params.copy(), sums=[s.copy() for s in sums],
                                     count=count, round=round_index, out=out.copy(), **kw))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "_gateway_round", spy_round)
        mp.setattr(Aggregator, "step_ddg", spy_step)
        results = simulate(cfg, progress=False)
    return SimpleNamespace(cfg=cfg, results=results, rounds=rounds, steps=steps)


def noise_rng(seed: int, round_index: int, device: int) -> SecureRNG:
    """The seeded noise stream of one device in one round, as the simulator's gateways key it."""
    key = hashlib.sha256(b"privcity-simulate ddg noise|"
                         + np.array([seed, round_index], np.int64).tobytes()).digest()
    return SecureRNG(key, stream=device)


def retrained(gateway, msg: dict, ids: np.ndarray) -> np.ndarray:
    """The updates of devices ``ids`` in the round of ``msg``, trained again from the same seeds."""
    local = np.searchsorted(gateway.devices, ids)
    assert np.array_equal(gateway.devices[local], ids)
    return train_many(gateway.model, msg["params"], gateway.data.X, gateway.data.y,
                      gateway.data.offsets, local, epochs=gateway.epochs,
                      batch_size=gateway.batch_size, lr=gateway.lr,
                      seeds=training_seeds(gateway.seed, msg["round"], ids))


def encodings(captured: SimpleNamespace, ids) -> list:
    """Each device's DDG encoding in that round, reproduced from its update and seeded stream."""
    ids = np.asarray(ids, np.int64)
    secure, r = captured.msg["secure"], captured.msg["round"]
    return [ddg_encode_parts(np.ascontiguousarray(row, np.float32), secure["ddg"],
                             secure["rotation_seed"], noise_rng(captured.gateway.seed, r, int(d)))
            for d, row in zip(ids, retrained(captured.gateway, captured.msg, ids))]


def rotation_columns(ddg: DDGParams, seed: bytes) -> np.ndarray:
    """The rotation as a (padded_dim, dim) matrix, built column by column from the forward
    kernel: its transpose rotates back (an independent path from ddg_decode's inverse)."""
    key = ddg_rotation_key(seed)
    return np.stack([_core.ddg_rotate(np.eye(ddg.dim)[i], key) for i in range(ddg.dim)], axis=1)


def clipped(rows: np.ndarray, clip: float) -> np.ndarray:
    x = rows.astype(np.float64)
    return x * np.minimum(1.0, clip / np.linalg.norm(x, axis=1))[:, None]


# --- 1. exact sums -----------------------------------------------------------------------------

def test_each_block_sum_is_the_ring_sum_of_its_survivors_seeded_encodings(spied):
    # Prepare
    cfg = spied.cfg
    assert len(spied.rounds) == cfg.rounds
    for captured in spied.rounds:
        r, report, secure = captured.msg["round"], captured.report, captured.msg["secure"]
        assert report.diverged == 0 and report.secure_lost == 0
        _, reporting = round_cohort(cfg.seed, r, np.arange(cfg.devices),
                                    sample_rate=cfg.sample_rate, dropout=cfg.dropout)
        blocks = np.flatnonzero(reporting) * secure["blocks"] // cfg.devices
        assert sorted(b for b, _, _ in report.secure_blocks) == sorted(set(blocks.tolist()))
        for block, total, survivors in report.secure_blocks:
            # Execute
            parts = encodings(captured, survivors)
            words = np.zeros(secure["ddg"].padded_dim, np.uint32)
            integers = np.zeros(secure["ddg"].padded_dim, np.int64)
            for p in parts:
                words += p.words  # uint32 wraps: the ring Z_{2^32}
                integers += p.rounded + p.noise

            # Assert: the survivors are the block's reporting devices by the seeded sampling,
            # and the unmasked sum is exact, word for word
            assert sorted(survivors) == np.flatnonzero(reporting)[blocks == block].tolist()
            assert total.dtype == np.uint32
            assert np.array_equal(total, words)
            assert np.array_equal(total, (integers % 2**32).astype(np.uint32))
            assert all(np.any(p.noise != 0) for p in parts)  # each device added its share


# --- 2. the aggregator's decode and step ---------------------------------------------------------

def test_the_aggregator_decodes_the_admitted_sums_and_steps_by_server_lr_over_q_n(spied):
    # Prepare
    cfg = spied.cfg
    assert [s.round for s in spied.steps] == list(range(cfg.rounds))  # no round dropped here
    for step, captured in zip(spied.steps, spied.rounds):
        ddg = step.ddg
        report = captured.report
        admitted = sorted(report.secure_blocks, key=lambda b: b[0])
        parts = [p for _, _, ids in admitted for p in encodings(captured, ids)]
        integers = np.sum([p.rounded + p.noise for p in parts], axis=0)
        reference = rotation_columns(ddg, step.rotation_seed).T @ (ddg.gamma * integers)

        # Execute
        estimate = ddg_decode(modular_sum(step.sums), ddg, step.rotation_seed)

        # Assert: the admitted sums are the blocks' (in block order), over every survivor
        floor = spied.steps[0].ddg.n_min // secagg_blocks(cfg, cfg.devices)
        assert len(parts) == sum(len(ids) for _, _, ids in admitted) >= step.count
        assert step.count == len(admitted) * floor  # charged: the floor of each block
        assert all(np.array_equal(a, b) for a, b in zip(step.sums, [t for _, t, _ in admitted]))
        assert step.rotation_seed == sim_secure.rotation_seed(cfg, step.round)
        np.testing.assert_allclose(estimate, reference, rtol=0,
                                   atol=1e-12 * np.abs(reference).max())
        # Assert: params + server_lr * estimate / (q N), in float32 (the expected cohort, not
        # the count of this round: they differ below)
        want = step.params.astype(np.float64) + cfg.server_lr * estimate / (
            cfg.sample_rate * cfg.devices)
        np.testing.assert_allclose(step.out, want, rtol=0,
                                   atol=2 * np.finfo(np.float32).eps * np.abs(want).max())
        assert step.out.dtype == np.float32
    assert any(step.count != cfg.sample_rate * cfg.devices for step in spied.steps)


# --- 3. the noise the accountant assumes ---------------------------------------------------------

def _noise_samples(spied, rounds: int) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """(per block, per round) the decoded block sum minus the sum of its devices' clipped
    updates, over ``rounds`` fresh rounds of the simulator's own device step (the gateway's
    seeded streams, the round's rotation seed) on round 1's survivors and updates; and the
    same for the whole round's sum. The SecAgg sum is exact (test above): the ring sum of the
    words stands for it."""
    captured = spied.rounds[0]
    secure, ddg = captured.msg["secure"], captured.msg["secure"]["ddg"]
    blocks = sorted(captured.report.secure_blocks, key=lambda b: b[0])
    ids = np.concatenate([np.asarray(s, np.int64) for _, _, s in blocks])
    rows = retrained(captured.gateway, captured.msg, ids)
    truth = {b: clipped(rows[np.isin(ids, s)], ddg.clip).sum(axis=0) for b, _, s in blocks}
    per_block: list[list[np.ndarray]] = [[] for _ in blocks]
    whole: list[np.ndarray] = []
    for r in range(1000, 1000 + rounds):  # rounds the run never reached: fresh streams
        seed = sim_secure.rotation_seed(spied.cfg, r)
        # The gateway's own encoding step (private: the SecAgg around it is tested above)
        words = captured.gateway._ddg_inputs(rows, ids, {**secure, "rotation_seed": seed}, r)
        sums = []
        for i, (b, _, survivors) in enumerate(blocks):
            sums.append(modular_sum([words[int(d)] for d in survivors]))
            per_block[i].append(ddg_decode(sums[-1], ddg, seed) - truth[b])
        whole.append(ddg_decode(modular_sum(sums), ddg, seed) - sum(truth.values()))
    return [np.concatenate(x) for x in per_block], [np.concatenate(whole)], \
        [len(s) for _, _, s in blocks]


def _chi2_p(samples: np.ndarray, variance: float) -> float:
    """Two-sided p-value of sum(x^2) / variance ~ chi2(len(x)) (zero-mean samples)."""
    stat = float(np.sum(samples**2) / variance)
    return 2 * min(stats.chi2.cdf(stat, samples.size), stats.chi2.sf(stat, samples.size))


def test_the_aggregate_noise_has_the_variance_the_accountant_assumes_for_its_shares(spied):
    # Prepare
    ddg = spied.rounds[0].msg["secure"]["ddg"]
    per_share = ddg.sigma_local**2 * ddg.gamma**2  # one device's share, in the model's units

    # Execute: 150 rounds x 60 coordinates for each block, and for the round's sum
    blocks, whole, counts = _noise_samples(spied, rounds=150)

    # Assert: for each block sum (what its gateway sees) and for the round's (the aggregator's),
    # variance = shares x sigma_local^2 gamma^2 (the rounding's at most 1/4 per share is 1e-13
    # of it); one share fewer is rejected
    pooled_true = np.concatenate([x / math.sqrt(c * per_share) for x, c in zip(blocks, counts)])
    pooled_fewer = np.concatenate([x / math.sqrt((c - 1) * per_share)
                                   for x, c in zip(blocks, counts)])
    assert _chi2_p(pooled_true, 1.0) > ALPHA
    assert _chi2_p(pooled_fewer, 1.0) < ALPHA
    for x, c in zip(blocks, counts):
        assert _chi2_p(x, c * per_share) > ALPHA
        assert _chi2_p(x, (c - 1) * per_share) < ALPHA
    assert _chi2_p(whole[0], sum(counts) * per_share) > ALPHA
    # ... and its shape is Gaussian, centred (the sum of discrete Gaussians of sigma 2^20)
    assert stats.kstest(pooled_true, "norm").pvalue > ALPHA
    assert abs(pooled_true.mean()) < 4 / math.sqrt(pooled_true.size)


# --- 4, 5. dropped rounds and blocks below their floor --------------------------------------------

def _ddg_aggregator(n_min: int = 6, population: int = 20) -> Aggregator:
    ddg = DDGParams(dim=8, clip=1.0, gamma=1e-3, sigma_local=50.0, bits=32, n_min=n_min,
                    sample_rate=0.5)
    strategy = DistributedDPFedAvg(inner=FedAvg(server_lr=0.5), ddg=ddg, population=population,
                                   accountant=Accountant(epsilon_budget=1e4, delta=1e-5))
    agg = Aggregator(strategy=strategy, n_params=8, weights_of=lambda d: 1.0)
    agg.assign(0, np.arange(population))
    return agg


def _secure_step(agg: Aggregator, survivors: dict[int, list[int]], params: np.ndarray):
    """The aggregator's step on block sums of the given survivors (block -> ids), two blocks
    of 10 devices with a floor of 3 shares each (n_min 6), all 20 devices sampled."""
    ddg = agg.strategy.ddg
    words = np.random.default_rng(0).integers(0, 2**12, ddg.padded_dim).astype(np.uint32)
    secure = {"ddg": ddg, "blocks": 2, "population": 20, "rotation_seed": bytes(32),
              "scale_bits": 20, "min_survivors": 3}
    refusals: Counter[str] = Counter()
    reports = {0: GatewayReport(secure_blocks=[(b, words, ids) for b, ids in survivors.items()])}
    out = sim_secure.secure_step(agg, params, 0, secure, np.arange(20), reports, refusals)
    return out, refusals


def test_a_round_below_n_min_leaves_the_model_charges_no_user_but_counts_for_the_servers():
    # Prepare: n_min 6, one block of two came back (however many survivors it claims)
    agg = _ddg_aggregator()
    strategy = agg.strategy
    params = np.linspace(-1, 1, 8).astype(np.float32)

    # Execute
    (out, count, dropped), refusals = _secure_step(agg, {0: [1, 2, 3, 4, 5, 6, 7]}, params)

    # Assert: charged the block's floor (3), not its claimed 7: dropped
    assert (count, dropped, refusals) == (7, True, Counter())
    assert np.array_equal(out, params)
    assert strategy.accountant.rounds == 0 and strategy.accountant.epsilon() == 0
    assert strategy.epsilon_servers() == ddg_epsilon(strategy.ddg, rounds=1, delta=1e-5, n=3,
                                                     sampled=False)
    with pytest.raises(ValueError, match="fewer noise shares than the 6"):
        strategy.aggregate_sum(params, np.zeros(8), 3.0, 3, round_index=0)
    assert strategy.accountant.rounds == 0


def test_a_round_of_exactly_n_min_shares_is_released_and_charged():
    # Prepare
    agg = _ddg_aggregator()
    params = np.zeros(8, np.float32)

    # Execute: both blocks, each at its floor
    (out, count, dropped), _ = _secure_step(agg, {0: [1, 2, 3], 1: [10, 11, 12]}, params)

    # Assert
    assert (count, dropped) == (6, False)
    assert not np.array_equal(out, params)
    assert agg.strategy.accountant.rounds == 1 and agg.strategy.accountant.epsilon() > 0


def test_a_block_below_its_floor_reveals_nothing_and_its_survivors_count_as_lost(spied):
    # Prepare: round 1 again at its gateway, the floor raised to the size of one block
    captured = spied.rounds[0]
    sizes = {b: len(s) for b, _, s in captured.report.secure_blocks}
    floor = sorted(sizes.values())[len(sizes) // 2]  # some blocks reach it, some do not
    msg = captured.msg
    secure = {**msg["secure"], "min_survivors": floor}

    # Execute
    report = captured.gateway.run_round(msg["params"], msg["round"],
                                        sample_rate=msg["sample_rate"], dropout=msg["dropout"],
                                        clip=msg["clip"], adaptive_bit=False, epoch=msg["epoch"],
                                        secure=secure)

    # Assert: exactly the blocks with at least `floor` survivors are unmasked, the same sums
    # as before; the others are lost, their survivors counted
    kept = {b for b, n in sizes.items() if n >= floor}
    assert 0 < len(kept) < len(sizes)
    assert {b for b, _, _ in report.secure_blocks} == kept
    before = {b: t for b, t, _ in captured.report.secure_blocks}
    assert all(np.array_equal(t, before[b]) for b, t, _ in report.secure_blocks)
    assert report.secure_lost == sum(n for b, n in sizes.items() if b not in kept)
    assert report.secure_count == sum(sizes[b] for b in kept)


# --- 6. epsilon against the servers, recomputed -------------------------------------------------

def ddg_of(results: dict) -> DDGParams:
    """The mechanism as metrics.json describes it."""
    d = results["privacy"]["ddg"]
    return DDGParams(dim=d["dim"], clip=d["clip"], gamma=d["gamma"], sigma_local=d["sigma_local"],
                     bits=d["bits"], n_min=d["n_min"], sample_rate=d["sample_rate"],
                     beta=d["beta"])


def servers_saw(cfg, results: dict) -> list[list[np.ndarray]]:
    """Per DP round, the survivors of each block sum the servers unmasked, from the seeded
    sampling alone: a block's reporting devices, when at least its floor (n_min / blocks);
    checked against what metrics.json says each round counted and lost."""
    population = results["devices"]
    blocks = secagg_blocks(cfg, population)
    n_min = results["privacy"]["ddg"]["n_min"]
    floor = n_min // blocks
    seen = []
    for r, row in enumerate(results["rounds"]["fl_dp"]):
        _, reporting = round_cohort(cfg.seed, r, np.arange(population),
                                    sample_rate=cfg.sample_rate, dropout=cfg.dropout)
        ids = np.flatnonzero(reporting)
        parts = [ids[ids * blocks // population == b] for b in range(blocks)]
        shown = [p for p in parts if len(p) >= floor]
        assert row["diverged"] == 0
        assert row["reported"] == sum(len(p) for p in shown)
        assert row["lost"] == sum(len(p) for p in parts if len(p) < floor)
        assert row["dropped"] == (len(shown) < blocks)  # charged the floor per block shown
        seen.append(shown)
    return seen


def expected_epsilon_servers(cfg, results: dict) -> list[float | None]:
    """epsilon_servers after each round: the DDG bound without sampling, with a block's floor
    of shares (what its devices enforce; no gateway's survivor list is believed), over the most
    rounds any device was sampled in (the server's own sampling)."""
    ddg, delta = ddg_of(results), results["privacy"]["delta"]
    population = results["devices"]
    floor = results["privacy"]["ddg"]["n_min"] // secagg_blocks(cfg, population)
    taken = np.zeros(population, np.int64)
    out = []
    servers_saw(cfg, results)  # (checks what metrics.json counted, lost and dropped)
    for r in range(len(results["rounds"]["fl_dp"])):
        sampled, _ = round_cohort(cfg.seed, r, np.arange(population),
                                  sample_rate=cfg.sample_rate, dropout=cfg.dropout)
        taken[sampled] += 1
        out.append(ddg_epsilon(ddg, rounds=int(taken.max()), delta=delta, n=floor,
                               sampled=False) if taken.max() else None)
    return out


def _check_epsilon_servers(cfg, results: dict) -> None:
    rows = results["rounds"]["fl_dp"]
    want = expected_epsilon_servers(cfg, results)
    assert [x["epsilon_servers"] for x in rows] == pytest.approx(want, rel=1e-12)
    assert results["privacy"]["epsilon_servers"] == rows[-1]["epsilon_servers"]
    # (no order between the two: the servers' epsilon keeps the device's share in both sums,
    # the users' counts it leaving with the device, which with few shares can cost more)


def test_epsilon_servers_is_the_unsampled_bound_over_the_most_rounds_any_device_took(spied):
    # Prepare: metrics.json as written, its mechanism the one the strategy ran
    written = json.loads((Path(spied.cfg.out) / "metrics.json").read_text())
    described, ran = ddg_of(written), spied.steps[0].ddg
    for k in ("padded_dim", "l2_bound_sq", "l2_bound", "l1_bound", "tau", "sigma2"):
        assert getattr(described, k) == getattr(ran, k)

    # Assert: recomputed from the seeded sampling and metrics.json; with q = 0.25 some device
    # takes part again every round, so it grows each round
    _check_epsilon_servers(spied.cfg, written)
    eps = [x["epsilon_servers"] for x in written["rounds"]["fl_dp"]]
    assert all(b > a for a, b in zip(eps, eps[1:]))


def test_epsilon_servers_grows_with_a_devices_rounds_and_with_fewer_shares():
    # Prepare
    agg = _ddg_aggregator()
    strategy = agg.strategy

    def eps(rounds: int, n: int) -> float:
        return ddg_epsilon(strategy.ddg, rounds=rounds, delta=1e-5, n=n, sampled=False)

    # Execute / Assert
    assert strategy.epsilon_servers() is None
    strategy.servers_saw(np.array([4, 5]), 6)
    first = strategy.epsilon_servers()
    strategy.servers_saw(np.array([6, 7]), 6)      # other devices: nobody took part twice
    assert strategy.epsilon_servers() == first == eps(1, 6)
    strategy.servers_saw(np.array([5, 8]), 6)      # device 5 again
    assert strategy.epsilon_servers() == eps(2, 6) > first
    strategy.servers_saw(np.array([9]), 2)         # a sum of two shares
    assert strategy.epsilon_servers() == eps(2, 2) > eps(2, 6)


# --- 4 end to end: a city too small for its floor -----------------------------------------------

TINY = dict(devices=40, sample_rate=0.25, samples_per_device=24, lr=0.5, local_epochs=3,
            eval_every=1, secure_aggregation=True, secagg_cohort=5, epsilon=60.0,
            risk_people=0)
# (epsilon 60: with 4 shares in 64 dimensions, whether a device's own share is in a sum shows
# in its variance, a floor of 11 to 20 on epsilon over these rounds whatever the noise)


def _city_with_a_dropped_round() -> tuple[int, int]:
    """(seed, round) of the first seed whose sampling gives a round r >= 1 in which one block
    reaches its floor and the other has nobody, so the sum holds fewer shares than n_min, and
    in which a device is sampled for the most times yet (the servers' epsilon grows: it counts
    sampled devices, each sum at the floor); no block of a round up to r has one device."""
    cfg = load_config(None, **TINY)
    blocks = secagg_blocks(cfg, cfg.devices)
    floor, n_min, _ = sim_secure.ddg_shares(cfg, cfg.devices)
    assert (blocks, floor, n_min) == (2, 2, 4)
    for seed in range(2000):
        taken = np.zeros(40, np.int64)
        for r in range(8):
            sampled, _ = round_cohort(seed, r, np.arange(40), sample_rate=0.25, dropout=0.0)
            ids = np.flatnonzero(sampled)
            sizes = np.bincount(ids * blocks // 40, minlength=blocks)
            if 1 in sizes:
                break
            most = taken.max()
            taken[ids] += 1
            if r >= 1 and 0 in sizes and floor <= sizes.max() < n_min and taken.max() > most:
                return seed, r
    raise AssertionError("no seed below 2000 drops a round")


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory) -> SimpleNamespace:
    seed, r = _city_with_a_dropped_round()
    cfg = load_config(None, out=str(tmp_path_factory.mktemp("tiny") / "out"), seed=seed,
                      rounds=r + 1, **TINY)
    return SimpleNamespace(cfg=cfg, dropped=r, results=simulate(cfg, progress=False))


def test_a_dropped_round_keeps_the_model_and_the_users_epsilon_and_says_so(tiny_city):
    # Prepare
    rows = tiny_city.results["rounds"]["fl_dp"]
    r = tiny_city.dropped
    written = json.loads((Path(tiny_city.cfg.out) / "metrics.json")
                         .read_text())

    # Assert: only that round is dropped; the model did not move (the same test scores to the
    # last bit), nothing was charged to the users' accountant
    assert [x["dropped"] for x in written["rounds"]["fl_dp"]] == [i == r for i in range(r + 1)]
    assert rows[r]["score"] == rows[r - 1]["score"]
    assert rows[r]["metrics"] == rows[r - 1]["metrics"]
    assert rows[r]["epsilon"] == rows[r - 1]["epsilon"]
    assert 0 < rows[r]["reported"] < tiny_city.results["privacy"]["ddg"]["n_min"]
    # ... and the servers saw the block sum that did reach its floor: it counts for them
    _check_epsilon_servers(tiny_city.cfg, written)
    assert rows[r]["epsilon_servers"] > rows[r - 1]["epsilon_servers"]
    table = summary_table(tiny_city.results)
    assert "FL + DP: 1 round(s) dropped, their sums holding fewer noise shares than the 4" in table


# --- 7. trust statements ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def central_city(tmp_path_factory) -> dict:
    cfg = load_config(None, out=str(tmp_path_factory.mktemp("central") / "out"),
                      **{**DDG, "secure_aggregation": False, "dropout": 0.0, "rounds": 2})
    return simulate(cfg, progress=False)


def _table_row(table: str, label: str) -> list[str] | None:
    for line in table.splitlines():
        if line.startswith(label + "  "):
            return [c.strip() for c in line[len(label):].split("  ") if c.strip()]
    return None


def test_central_dp_claims_one_guarantee_against_model_users_and_none_against_the_aggregator(
        central_city):
    # Prepare
    p = central_city["privacy"]

    # Assert
    assert p["mechanism"] == "central" and "epsilon_servers" not in p
    assert len(p["guarantees"]) == 1
    g = p["guarantees"][0]
    assert g["holds_against"] == "users of the released model"
    assert g["epsilon"] == p["epsilon"] == central_city["rounds"]["fl_dp"][-1]["epsilon"] > 0
    assert "aggregator" in g["does_not_hold_against"]
    assert "aggregator" not in g["holds_against"]
    assert p["trust"].startswith("central DP") and "only" in p["trust"]
    table = summary_table(central_city)
    assert _table_row(table, "epsilon vs servers") is None
    assert "against the aggregator and the gateways" not in table


def test_distributed_dp_claims_two_guarantees_users_and_servers(spied):
    # Prepare
    p = spied.results["privacy"]
    written = json.loads((Path(spied.cfg.out) / "metrics.json").read_text())

    # Assert
    assert written["privacy"] == p
    assert p["mechanism"] == "distributed"
    users, servers = p["guarantees"]
    assert users["holds_against"] == "users of the released model"
    assert users["epsilon"] == p["epsilon"]
    assert {"aggregator", "gateways"} <= set(servers["holds_against"].replace(",", "").split())
    assert servers["epsilon"] == p["epsilon_servers"] is not None
    assert servers["sampling"].startswith("not amplified")
    assert users["sampling"].startswith("amplified")
    table = summary_table(spied.results)
    assert _table_row(table, "epsilon vs servers") == ["-", "-",
                                                       f"{p['epsilon_servers']:.3f} / device"]
    assert f"{p['epsilon_servers']:.3f} against the aggregator and the gateways" in table


@pytest.mark.parametrize("which", ["central", "distributed"])
def test_both_say_the_noise_is_seeded_and_name_the_seed(which, central_city, spied):
    # Prepare
    results = central_city if which == "central" else spied.results

    # Assert
    noise = results["privacy"]["noise"]
    assert "seeded" in noise and f"--seed {DDG['seed']}" in noise
    assert "no epsilon holds against anyone who knows the seed" in noise
    assert f"DP noise: {noise}" in summary_table(results)


@pytest.mark.parametrize("which", ["central", "distributed"])
def test_fl_without_dp_claims_no_epsilon_anywhere(which, central_city, spied):
    # Prepare
    results = central_city if which == "central" else spied.results

    # Assert: no epsilon in FL's rounds or summary, and "-" in its column of the table
    claims = [k for x in results["rounds"]["fl"] for k, v in x.items()
              if "epsilon" in k and v is not None]
    assert claims == [] and not any("epsilon" in k for k in results["fl"])
    assert _table_row(summary_table(results), "epsilon (delta)")[:2] == ["-", "-"]


# --- 8. utility ---------------------------------------------------------------------------------

UTILITY = dict(devices=1000, sample_rate=0.1, epsilon=4.0, rounds=15, seed=0, risk_people=0,
               baseline_devices=50, eval_every=1)  # every round scored: the first is compared


def test_distributed_dp_is_within_one_point_of_central_dp_at_the_same_epsilon(tmp_path):
    # Prepare: the default task (air_quality), about 100 devices a round; 15 rounds keep the
    # test near 30 s (the secure run also runs FL without DP under SecAgg)
    central_cfg = load_config(None, out=str(tmp_path / "c"), **UTILITY)
    secure_cfg = load_config(None, out=str(tmp_path / "s"), secure_aggregation=True, **UTILITY)

    # Execute
    central = simulate(central_cfg, progress=False)
    secure = simulate(secure_cfg, progress=False)

    # Assert: both stay within the budget and learned; DDG within 1 point of central DP
    assert central["task_type"] == "classification" and central["config"]["task"] == "air_quality"
    assert central["privacy"]["epsilon"] <= 4.0 and secure["privacy"]["epsilon"] <= 4.0
    assert secure["fl_dp"]["rounds_run"] == central["fl_dp"]["rounds_run"] == 15
    assert not any(x["dropped"] for x in secure["rounds"]["fl_dp"])
    assert 90 <= np.mean([x["reported"] for x in secure["rounds"]["fl_dp"]]) <= 110
    for run_ in (central, secure):
        assert run_["fl_dp"]["score"] > run_["rounds"]["fl_dp"][0]["score"]
    print(f"\naccuracy at epsilon 4: central DP {central['fl_dp']['score']:.4f}, distributed DP "
          f"{secure['fl_dp']['score']:.4f} (users' epsilon {secure['privacy']['epsilon']:.3f}, "
          f"servers' {secure['privacy']['epsilon_servers']:.3f})")
    assert abs(secure["fl_dp"]["score"] - central["fl_dp"]["score"]) <= 0.01


# --- 9. ranks -----------------------------------------------------------------------------------

def test_mpiexec_3_ranks_give_the_one_process_distributed_dp_run(tmp_path, spied):
    # Prepare: two gateways of two blocks each
    mpiexec, env = _mpiexec_and_env()
    out = tmp_path / "mpi"

    # Execute
    proc = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "privcity.cli", "simulate",
                           *flags(DDG), f"--out={out}", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)

    # Assert: the same models bit for bit, the same epsilons and the same rounds
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got, one = json.loads((out / "metrics.json").read_text()), spied.results
    assert got["ranks"] == 3 and one["ranks"] == 1
    assert got["final_params_sha256"] == one["final_params_sha256"]
    assert got["privacy"] == one["privacy"]
    keys = ("sampled", "reported", "lost", "dropped", "epsilon", "epsilon_servers", "score",
            "bytes_sent", "refusals")
    assert [{k: x[k] for k in keys} for x in got["rounds"]["fl_dp"]] == \
        [{k: x[k] for k in keys} for x in one["rounds"]["fl_dp"]]


# --- 11. configurations refused -----------------------------------------------------------------

@pytest.mark.parametrize("extra, field", [
    (dict(adaptive_clip=True), "adaptive_clip"),
    (dict(noise_multiplier=1.0), "noise_multiplier"),
    (dict(dropout=0.3), "dropout"),
    (dict(dropout=0.6), "dropout"),
])
def test_settings_distributed_dp_cannot_honour_are_refused_naming_the_field(extra, field, capsys):
    # Execute / Assert: the config and the command line
    with pytest.raises(ValueError, match=f"config field '{field}'"):
        load_config(None, secure_aggregation=True, **extra)
    load_config(None, **extra)  # without secure aggregation each is fine
    rc = cli_main(["simulate", "--secure-aggregation", *flags(extra), "--quiet"])
    err = capsys.readouterr().err
    flag = "--" + field.replace("_", "-")  # the command line names the flag typed
    assert rc == 2 and err.startswith(f"privcity simulate: {flag}: ") and "Traceback" not in err


def test_a_dropout_just_below_the_limit_is_accepted_with_secure_aggregation():
    # (cohorts of 128, 64 neighbours at most: a block round fails under half the time)
    cfg = load_config(None, secure_aggregation=True, dropout=0.19)
    assert cfg.dropout == 0.19 and 1e-3 < cfg.secure_failure_chance()[1] < 0.5


# --- found while writing these tests ---------------------------------------------------------------

def _city_with_a_lone_device() -> int:
    """The first seed whose round 1 samples exactly one device of some block (TINY's blocks)."""
    for seed in range(500):
        sampled, _ = round_cohort(seed, 0, np.arange(40), sample_rate=0.25, dropout=0.0)
        if 1 in np.bincount(np.flatnonzero(sampled) * 2 // 40, minlength=2):
            return seed
    raise AssertionError("no seed below 500 samples a lone device")


def test_a_block_with_a_single_sampled_device_is_lost_and_the_run_goes_on(tmp_path):
    # Prepare: a block round of one device can hide nothing (its sum is its input)
    cfg = load_config(None, out=str(tmp_path / "out"), seed=_city_with_a_lone_device(), rounds=1,
                      **TINY)

    # Execute: must not raise (main: "threshold must be at least 2" from SecAggServer)
    results = simulate(cfg, progress=False)

    # Assert: in both runs the lone device's update is lost, the other block's counted
    for run_ in ("fl", "fl_dp"):
        row = results["rounds"][run_][0]
        assert row["lost"] == 1 and row["reported"] == row["sampled"] - 1


def test_a_dropped_round_spends_no_accounting_time(tiny_city):
    # Prepare
    row = tiny_city.results["rounds"]["fl_dp"][tiny_city.dropped]

    # Assert: nothing was recorded in the accountant, so no time was spent on it, and the
    # aggregation time (measured minus accounting) cannot be negative
    assert row["dropped"] is True
    assert row["accounting_seconds"] == 0.0
    assert row["aggregation_seconds"] >= 0.0


# --- what a user is told ---------------------------------------------------------------------------

def test_the_noise_floor_counts_only_devices_that_hold_records():
    # Prepare: 2,000 devices in two blocks; half of the second block's devices hold no rows (a
    # CSV cut into more devices than rows): they are sampled, but never report
    cfg = load_config(None, devices=2000, sample_rate=0.1, secure_aggregation=True)
    holders = np.ones(2000, bool)
    holders[1000:1500] = False

    # Execute
    full = sim_secure.ddg_shares(cfg, 2000)
    thin = sim_secure.ddg_shares(cfg, 2000, holders)

    # Assert: the floor is set by the block with the fewest devices that can report
    assert secagg_blocks(cfg, 2000) == 2
    assert thin[0] < full[0] and thin[1] == 2 * thin[0]
    p = cfg.sample_rate
    assert sim_secure.binomial_cdf(thin[0] - 1, 500, p) <= sim_secure.DDG_FLOOR_FAILURE
    assert sim_secure.binomial_cdf(thin[0], 500, p) > sim_secure.DDG_FLOOR_FAILURE


def test_an_epsilon_no_noise_reaches_is_refused_in_terms_of_the_flags(tmp_path):
    # Prepare: 50 devices at q = 0.1: a round is sure of 2 noise shares
    cfg = load_config(None, devices=50, rounds=3, secure_aggregation=True, risk_people=0,
                      out=str(tmp_path / "out"))

    # Execute / Assert
    with pytest.raises(ValueError, match=r"cannot reach --epsilon 4.*sure of only 2 devices.*"
                                         r"raise --devices or --sample-rate"):
        simulate(cfg, progress=False)


def test_a_dropout_that_fails_block_rounds_is_warned_of_and_one_that_fails_most_is_refused(
        tmp_path):
    # Prepare / Execute: 300 devices (one block of about 30) at dropout 0.2
    cfg = load_config(None, devices=300, rounds=1, secure_aggregation=True, dropout=0.2,
                      risk_people=0, out=str(tmp_path / "out"))
    results = simulate(cfg, progress=False)

    # Assert: the chance is in metrics.json and the table warns that seeded runs can differ
    lay = results["secure_aggregation"]
    assert lay["blocks"] == 1 and lay["sampled_per_block"] == pytest.approx(30)
    assert 1e-3 < lay["failure_chance_per_block_round"] < 0.5
    assert "runs with the same --seed can differ" in summary_table(results)
    with pytest.raises(ValueError, match="'dropout'.*would fail"):
        load_config(None, devices=300, secure_aggregation=True, dropout=0.4)


def test_a_round_whose_block_rounds_rarely_fail_gives_no_warning():
    # Prepare / Execute: the default cohort at no dropout
    cfg = load_config(None, secure_aggregation=True)

    # Assert
    assert cfg.secure_failure_chance()[1] < 1e-6


def test_blocks_too_small_for_their_floor_are_warned_of(tiny_city):
    # Assert: TINY's blocks of 20 devices at q = 0.25 miss a floor of 2 in 2.4% of the rounds;
    # whether such a round is dropped can turn on one device (the users' epsilon does not
    # count that), and the run says so
    chance = tiny_city.results["privacy"]["block_below_floor_chance"]
    assert chance == pytest.approx(sim_secure.binomial_cdf(1, 20, 0.25))
    assert chance > sim_secure.DDG_FLOOR_FAILURE
    assert "falls below its floor of noise shares in 2.4% of the rounds" in \
        summary_table(tiny_city.results)


def test_a_city_of_ordinary_blocks_is_not_warned_of_its_floor(spied):
    # Assert: DDG's blocks of 40 devices (q = 0.25, dropout 0.1) and their floor
    written = json.loads((Path(spied.cfg.out) / "metrics.json").read_text())
    assert written["privacy"]["block_below_floor_chance"] <= sim_secure.DDG_FLOOR_FAILURE
