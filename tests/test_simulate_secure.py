"""privcity simulate --secure-aggregation: the gateways sum their devices' updates under SecAgg+
and the aggregator sees only sums. The model equals the plain run's to within the fixed-point
rounding, dropouts are recovered, the result does not depend on the number of ranks, and the
unit pieces (Gateway, Aggregator.step_secure, Strategy.aggregate_sum) agree with the plain
path."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from privcity.dp import Accountant
from privcity.fl import DPFedAvg, FedAvg
from privcity.fl.rounds import SECURE_SCALE_BITS
from privcity.sim import load_config, simulate
from privcity.sim.secure import block_starts, secagg_blocks

from test_simulate import SMALL, _mpiexec_and_env

SECURE = dict(SMALL, rounds=3, secure_aggregation=True, secagg_neighbors=8)


def run(tmp_path, **kw) -> dict:
    cfg = load_config(None, out=str(tmp_path / "out"), **{**SECURE, **kw})
    return simulate(cfg, progress=False)


@pytest.fixture(scope="module")
def secure_city(tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("secure"), epsilon=8.0)


@pytest.fixture(scope="module")
def plain_city(tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("plain"), epsilon=8.0, secure_aggregation=False)


def test_the_model_matches_the_plain_run_within_the_rounding(secure_city, plain_city):
    # Assert: the same devices report; FL's score equals the plain run's to 3 decimals (the
    # updates are summed rounded to 2**-20); the DP run's noise differs only as its input does
    for run_ in ("fl", "fl_dp"):
        got, want = secure_city["rounds"][run_], plain_city["rounds"][run_]
        assert [x["reported"] for x in got] == [x["reported"] for x in want]
        assert [x["sampled"] for x in got] == [x["sampled"] for x in want]
    assert secure_city["fl"]["score"] == pytest.approx(plain_city["fl"]["score"], abs=2e-3)
    assert abs(secure_city["fl_dp"]["score"] - plain_city["fl_dp"]["score"]) < 0.05


def test_secure_runs_send_more_bytes_and_say_so(secure_city, plain_city):
    # Assert: masked vectors plus the key exchange and the shares, all counted
    assert secure_city["fl"]["bytes_total"] > plain_city["fl"]["bytes_total"]
    assert all(x["refused"] == 0 and x["lost"] == 0 for x in secure_city["rounds"]["fl"])
    assert secure_city["config"]["secure_aggregation"] is True
    assert secure_city["fl"]["device_privacy_seconds"]["p50"] > 0


def test_dropouts_after_the_key_exchange_are_recovered(tmp_path):
    # Execute: one in ten sampled devices shares keys and then sends nothing; the neighbours
    # are chosen from the cohort and the dropout
    r = run(tmp_path, dropout=0.1, secagg_neighbors=0)
    plain = run(tmp_path / "p", dropout=0.1, secure_aggregation=False)

    # Assert: the same devices counted, the same model to the rounding
    assert [x["reported"] for x in r["rounds"]["fl"]] == [x["reported"] for x in plain["rounds"]["fl"]]
    assert all(x["lost"] == 0 for x in r["rounds"]["fl"])
    assert r["fl"]["score"] == pytest.approx(plain["fl"]["score"], abs=2e-3)


BLOCKS = dict(secagg_cohort=10, dropout=0.1, secagg_neighbors=0)  # blocks of 40 devices: 4


def test_mpiexec_3_ranks_give_the_one_process_result_block_for_block(tmp_path):
    # Prepare: four blocks of devices, two gateways of two blocks each; devices drop out
    mpiexec, env = _mpiexec_and_env()
    one = run(tmp_path / "one", epsilon=8.0, **BLOCKS)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**SECURE, **BLOCKS}.items()
             if k != "secure_aggregation"]
    out = tmp_path / "mpi"

    # Execute
    proc = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "privcity.cli", "simulate",
                           *flags, "--secure-aggregation", "--epsilon=8.0", f"--out={out}",
                           "--quiet"], env=env, capture_output=True, text=True, timeout=300)

    # Assert: the same blocks run the same rounds, and the sums are exact: bit-identical
    # models, the same counts and the same bytes
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads((out / "metrics.json").read_text())
    assert got["ranks"] == 3
    assert got["final_params_sha256"] == one["final_params_sha256"]
    for run_ in ("fl", "fl_dp"):
        keys = ("reported", "lost", "bytes_sent", "diverged")
        assert [{k: x[k] for k in keys} for x in got["rounds"][run_]] == \
            [{k: x[k] for k in keys} for x in one["rounds"][run_]]


def test_devices_are_split_among_ranks_in_whole_blocks():
    from privcity.sim.runner import _rank_devices

    cfg = load_config(None, devices=1000, sample_rate=0.1, secure_aggregation=True,
                      secagg_cohort=20)
    parts = _rank_devices(cfg, 1000, 3)
    assert secagg_blocks(cfg, 1000) == 5
    assert [(int(p[0]), int(p[-1])) for p in parts] == [(0, 399), (400, 799), (800, 999)]
    assert np.array_equal(np.concatenate(parts), np.arange(1000))


@pytest.mark.parametrize("population, blocks", [(1000, 3), (7, 3), (2000, 2), (5, 5)])
def test_blocks_are_equal_to_one_device_and_hold_device_d_at_d_times_blocks_over_n(
        population, blocks):
    # Execute
    starts = block_starts(blocks, population)
    sizes = np.diff(starts)

    # Assert: the Gateway's rule (d * blocks // population) puts each device in its block
    d = np.arange(population)
    assert starts[0] == 0 and starts[-1] == population
    assert sizes.max() - sizes.min() <= 1
    assert np.array_equal(np.searchsorted(starts, d, side="right") - 1, d * blocks // population)


def test_the_city_is_cut_into_blocks_of_about_the_secagg_cohort():
    cfg = load_config(None, devices=2000, sample_rate=0.1, secure_aggregation=True)
    assert secagg_blocks(cfg, 2000) == 2   # 200 sampled: two blocks of 100, not 128 + 72
    assert secagg_blocks(cfg, 100) == 1    # a city smaller than one cohort is one block


def test_tiny_clip_norms_get_a_finer_fixed_point(tmp_path):
    # Execute: a clip far below the default grid (0.5 sqrt(P) 2**-20 would exceed it)
    r = run(tmp_path, clip=3e-6)

    # Assert
    assert r["fl_dp"]["rounds_run"] == 3 and np.isfinite(r["fl_dp"]["score"])
    from privcity.fl.rounds import secure_scale_bits
    assert secure_scale_bits(3e-6, 100) == 20 + 22  # ceil(log2(10 / 3e-6)) = 22
    assert 0.5 * np.sqrt(100) * 2.0**-secure_scale_bits(3e-6, 100) <= 3e-6 * 2.0**-21


def test_robust_aggregators_are_refused_with_secure_aggregation():
    with pytest.raises(ValueError, match="'aggregator'.*only the sum"):
        load_config(None, secure_aggregation=True, aggregator="median")
    with pytest.raises(ValueError, match="'secagg_neighbors'"):
        load_config(None, secagg_neighbors=1)


def test_fedavg_from_the_sum_equals_fedavg_from_the_rows():
    # Prepare
    rng = np.random.default_rng(1)
    params = rng.standard_normal(50).astype(np.float32)
    updates = rng.standard_normal((7, 50)).astype(np.float32)
    weights = rng.integers(1, 40, 7).astype(np.float64)
    strategy = FedAvg(server_lr=0.5)

    # Execute
    rows = strategy.aggregate(params, updates, weights, round_index=0)
    summed = strategy.aggregate_sum(params, (updates * weights[:, None]).sum(axis=0, dtype=np.float64),
                                    float(weights.sum()), 7, round_index=0)

    # Assert
    np.testing.assert_allclose(summed, rows, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="needs each update"):
        FedAvg(aggregator="krum").aggregate_sum(params, np.zeros(50), 1.0, 1, round_index=0)
    assert strategy.aggregate_sum(params, np.zeros(50), 0.0, 0, round_index=0) is params


def test_dp_fedavg_from_the_sum_records_the_round_and_noises_at_the_clip():
    # Prepare
    acc = Accountant(epsilon_budget=10.0, delta=1e-5)
    from privcity.noise import SecureRNG
    strategy = DPFedAvg(inner=FedAvg(), clip=1.0, noise_multiplier=1.0, sample_rate=0.5,
                        population=1000, accountant=acc, rng=SecureRNG(seed=1))
    params = np.zeros(20_000, np.float32)

    # Execute: a zero sum; what comes back is the noise / expected cohort (500)
    out = strategy.aggregate_sum(params, np.zeros(20_000), 0.0, 0, round_index=0)

    # Assert
    assert acc.rounds == 1
    assert np.std(out.astype(np.float64)) == pytest.approx(1.0 / 500, rel=0.05)


def test_fixed_point_scale_leaves_room_for_many_devices():
    # 2**48 per device and coordinate: 2**14 devices at a gateway stay within int64
    assert 48 + 14 < 63 and SECURE_SCALE_BITS == 20


def test_neighbours_are_chosen_from_the_binomial_tail():
    import scipy.stats

    from privcity.aggregate import neighbors_for

    for cohort, dropout in ((100, 0.0), (100, 0.1), (200, 0.3), (1000, 0.2), (60, 0.4)):
        k = neighbors_for(cohort, dropout)
        if k is None:  # everyone: no smaller group was safe enough
            continue
        size = k + 1
        fail = scipy.stats.binom.cdf(size // 2, size, 1 - dropout)  # survivors <= size // 2
        assert cohort * fail <= 1e-6 * (1 + 1e-9)
        if k > 2:  # the next smaller group would not do
            smaller = k - 1
            assert cohort * scipy.stats.binom.cdf(smaller // 2, smaller, 1 - dropout) > 1e-6
    assert neighbors_for(2, 0.1) is None and neighbors_for(500, 0.6) is None
    with pytest.raises(ValueError):
        neighbors_for(10, 1.0)


def test_a_dropout_the_collusion_threshold_cannot_survive_is_refused_with_secure_aggregation():
    # (each group needs about two thirds of its devices: with groups of at most 65, a block
    # round of 128 fails most of the time from a dropout of about 0.2)
    with pytest.raises(ValueError, match="'dropout'.*two thirds"):
        load_config(None, secure_aggregation=True, dropout=0.2)
    load_config(None, secure_aggregation=True, dropout=0.19)


@pytest.mark.parametrize("group, threshold", [(3, 2), (9, 6), (10, 7), (17, 12), (65, 44)])
def test_the_simulator_s_threshold_lets_no_third_of_a_group_pass_two_survivor_lists(group,
                                                                                  threshold):
    from privcity.fl.rounds import secure_threshold

    # Execute
    t = secure_threshold(group)

    # Assert: two lists each signed by t devices need 2t - g colluders among them (pigeonhole);
    # the threshold keeps that above a third of the group, and is the least that does
    colluders = -(-group // 3) - 1
    assert t == threshold
    assert 2 * t - group > colluders
    assert 2 * (t - 1) - group <= colluders or t == 2


def test_automatic_neighbours_stay_within_their_bounds():
    from privcity.fl.rounds import SECURE_MAX_NEIGHBORS, SECURE_MIN_NEIGHBORS, secure_neighbors

    assert secure_neighbors(200, 0.0) == SECURE_MIN_NEIGHBORS   # the dropout needs only 2
    assert secure_neighbors(200, 0.45) == SECURE_MAX_NEIGHBORS  # it would need everyone
    assert SECURE_MIN_NEIGHBORS < secure_neighbors(200, 0.2) <= SECURE_MAX_NEIGHBORS
    assert secure_neighbors(10, 0.2) == SECURE_MIN_NEIGHBORS     # >= 9: everyone in a cohort of 10
