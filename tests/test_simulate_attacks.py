"""privcity simulate's attack suite (sim/attacks.py): each surface's attack notices a leak where
one is planted, finds nothing where there is nothing to find, and the breach figures follow
their definition."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from privcity.sim import load_config, simulate, summary_table
from privcity.sim.attacks import breach_risk, dkw_band, run_attacks, wilson
from privcity.sim.datasets import city

SMALL = dict(devices=160, rounds=6, sample_rate=0.25, samples_per_device=24, seed=3, lr=0.5,
             local_epochs=3, risk_people=0)


def run(tmp_path: Path, **kw) -> dict:
    cfg = load_config(None, out=str(tmp_path / "out"), **{**SMALL, **kw})
    return simulate(cfg, progress=False)


@pytest.fixture(scope="module")
def small_city(tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("sim"), epsilon=8.0)


def test_a_run_reports_every_surface_with_intervals_that_hold_their_estimates(small_city):
    # Prepare
    att = small_city["attacks"]

    # Assert: the three views of the updates, three models attacked per record and per device
    assert set(att["updates"]["views"]) == {"fl", "secagg", "dp_sum"}
    for v in att["updates"]["views"].values():
        assert 0 <= v["ci"][0] <= v["recovered"] <= v["ci"][1] <= 1 and v["n"] > 0
    for unit in ("record", "device"):
        assert set(att["membership"][unit]) == {"centralized", "fl", "fl_dp"}
        for per_model in att["membership"][unit].values():
            assert set(per_model) == {"loss", "calibrated", "lira"}
            for r in per_model.values():
                assert r["advantage_ci"][0] <= r["advantage"] <= r["advantage_ci"][1]
                assert 0 <= r["auc"] <= 1 and len(r["roc"]["fpr"]) == len(r["roc"]["tpr"])
    b = att["breach"]
    assert b["centralized"]["risk"] == 1.0  # the pooled raw records are read, not attacked
    for k in ("fl", "fl_dp"):
        red = b["leakage_reduction"][k]
        assert red["value"] == pytest.approx(1 - b[k]["risk"])
        assert red["ci"][0] <= red["value"] <= red["ci"][1]
    assert att["seconds"] > 0 and att["run_seconds"] > 0


def test_the_table_prints_breach_risk_leakage_reduction_and_the_attacks_share_of_time(
        small_city):
    # Execute
    text = summary_table(small_city)

    # Assert
    assert "breach risk [95% CI]" in text and "leakage reduction" in text
    assert "membership AUC (best)" in text
    assert "update inversion, records recovered within 5%" in text
    assert "of the run's time" in text


def test_one_record_devices_give_their_records_to_the_server_but_not_through_a_block_sum(
        tmp_path):
    # Prepare: every device holds one record: its plaintext update is that record, exactly
    # (the analytic inversion), but a sum over a block of devices mixes them.
    res = run(tmp_path, samples_per_device=1, devices=400, sample_rate=0.5)

    # Execute
    views = res["attacks"]["updates"]["views"]

    # Assert
    assert views["fl"]["recovered"] > 0.95
    assert views["secagg"]["recovered"] < 0.05 and views["dp_sum"]["recovered"] < 0.05
    b = res["attacks"]["breach"]
    assert b["fl"]["risk"] > 0.95 and "update inversion" in b["fl"]["attack"]
    # central DP: the aggregator still opens each device's (clipped) update
    assert b["fl_dp"]["risk"] > 0.95


def test_under_secure_aggregation_both_designs_are_judged_on_block_sums(tmp_path):
    # Prepare: one-record devices, whose plaintext updates would give their records away
    res = run(tmp_path, samples_per_device=1, devices=400, sample_rate=0.5,
              secure_aggregation=True)

    # Execute
    b = res["attacks"]["breach"]
    views = res["attacks"]["updates"]["views"]

    # Assert: a FedAvg server would read them (the fl view), but this run's servers saw only
    # block sums: exact for FL, with the block's own noise shares for FL + DP
    assert views["fl"]["recovered"] > 0.95
    assert "block sums" in b["fl"]["exposes"] and b["fl"]["risk"] < 0.5
    assert "noisy block sums" in b["fl_dp"]["exposes"] and b["fl_dp"]["risk"] < 0.5
    assert "noise shares" in views["dp_sum"]["label"]
    assert b["leakage_reduction"]["fl_dp"]["value"] > 0.5


def test_an_overfit_centralized_model_gives_its_members_away(tmp_path):
    # Prepare: few records, a wide MLP and many epochs: the centralized model memorises
    res = run(tmp_path, devices=40, samples_per_device=4, model="mlp", hidden=64,
              centralized_epochs=300, lr=0.3, rounds=2)

    # Execute
    rec = res["attacks"]["membership"]["record"]["centralized"]

    # Assert
    assert rec["loss"]["auc"] > 0.62  # (0.68 measured)
    assert rec["loss"]["advantage_ci"][0] > 0.15  # (0.34: far from chance)


def test_members_and_held_out_devices_are_alike_when_the_model_learned_nothing(tmp_path):
    # Prepare: the "released" models are the untrained start: any AUC away from 0.5 would be
    # a difference between the member and the held-out populations, not a leak.
    cfg = load_config(None, out=str(tmp_path / "o"), **{**SMALL, "devices": 600})
    from privcity.models import SoftmaxRegression
    data = city(cfg, range(0, 1), cfg.devices)
    model = SoftmaxRegression(n_features=data.X.shape[1], n_classes=data.n_classes)
    init = model.init_params(0)

    # Execute
    att = run_attacks(cfg, level="fast", model=model, first=(0, init), population=cfg.devices,
                      params={"centralized": init, "fl": init, "fl_dp": init},
                      rounds_run={"fl": 6, "fl_dp": 6}, baseline=None, noise_std=1.0,
                      clip=1.0, csv=None, say=lambda _: None)

    # Assert: within 4 null standard deviations of chance, per record and per device
    for unit in ("record", "device"):
        r = att["membership"][unit]["centralized"]["loss"]
        assert abs(r["auc"] - 0.5) < 4 * r["auc_null_std"], (unit, r["auc"])


def test_no_attacks_leaves_the_section_out_and_the_table_says_so(tmp_path):
    # Execute
    res = run(tmp_path, attacks="none", rounds=2)

    # Assert
    assert "attacks" not in res
    assert "attacks: not run (--attacks none)" in summary_table(res)
    assert breach_risk(res) is None


def test_a_dp_run_stopped_before_its_first_round_is_not_attacked(tmp_path):
    # Prepare: a budget no round fits
    res = run(tmp_path, epsilon=0.01, noise_multiplier=0.5, rounds=3)

    # Assert
    assert res["fl_dp"]["rounds_run"] == 0
    assert "note" in res["attacks"]["membership"]["record"]["fl_dp"]


def test_wilson_interval_holds_the_share_and_matches_a_known_value():
    # Execute
    lo, hi = wilson(0, 100)
    lo2, hi2 = wilson(50, 100)

    # Assert: Wilson's interval for 0/100 is [0, 0.037], for 50/100 [0.404, 0.596]
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.0370, abs=1e-4)
    assert (lo2, hi2) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_dkw_band_covers_the_advantage_of_two_samples_of_one_distribution():
    # Prepare: members and non-members from one distribution: true advantage 0
    rng = np.random.default_rng(0)
    from privcity.attacks import evaluate_scores
    misses = 0
    for _ in range(200):
        r = evaluate_scores(rng.normal(size=300), rng.normal(size=300))
        lo, hi = dkw_band(r.advantage, 300, 300)
        misses += not (lo <= 0.0 <= hi)

    # Assert: a 95% band misses at most 5% of the time (DKW is conservative: about never)
    assert misses <= 10


def test_the_released_models_load_score_as_reported_and_name_their_records(small_city):
    # Prepare
    from privcity.data import make_test_set
    from privcity.models import load, record_rows
    cfg = small_city["config"]
    test = make_test_set(cfg["task"], n_devices=500, samples_per_device=cfg["samples_per_device"],
                         seed=cfg["seed"], n_districts=cfg["districts"])

    for name in ("centralized", "fl", "fl_dp"):
        # Execute
        m = load(small_city["models"][name])
        rows = record_rows(m.heldout_ids, test.offsets, test.device_ids)

        # Assert: the held-out ids are the test set's records, on which the model scores what
        # the run printed; members are (device, row) of devices of the city
        assert rows.size == test.X.shape[0]
        acc = float(np.mean(m.predict(test.X[rows]) == test.y[rows]))
        assert acc == pytest.approx(small_city[name]["score"], abs=1e-6)
        assert m.member_ids.shape[1] == 2 and m.member_ids[:, 0].max() < cfg["devices"]
        assert m.meta["run"] == name and (m.meta["epsilon"] is not None) == (name == "fl_dp")


def test_the_audit_bounds_fl_high_and_fl_dp_within_its_epsilon(small_city):
    # Prepare
    audit = small_city["audit"]

    # Assert: without noise the canaries are told apart (large bound); with DP the bound stays
    # below the accountant's epsilon, round by round
    assert audit["fl"]["bound"] > 2.0
    fd = audit["fl_dp"]
    assert not fd["exceeded"] and 0 <= fd["bound"] <= fd["epsilon"]
    assert fd["epsilon"] == pytest.approx(small_city["privacy"]["epsilon"], rel=1e-9)
    assert len(fd["bound_per_round"]) == len(fd["epsilon_per_round"]) == \
        small_city["fl_dp"]["rounds_run"]
    assert all(b <= e for b, e in zip(fd["bound_per_round"], fd["epsilon_per_round"]))


def test_an_accountant_that_undercounts_fails_the_audit_and_audit_strict_exits_3(
        tmp_path, monkeypatch, capsys):
    # Prepare: the double-counting bug's mirror image: an accountant that reports a twentieth
    # of the epsilon it spends (the noise is what the true epsilon 4 needs)
    from privcity.cli import main as cli_main
    from privcity.dp import accountant
    z = 1.17  # the noise multiplier of epsilon 4 at the defaults
    real = accountant.Accountant.epsilon_with
    monkeypatch.setattr(accountant.Accountant, "epsilon_with",
                        lambda self, event: real(self, event) / 20)
    out = tmp_path / "o"

    # Execute
    code = cli_main(["simulate", "--devices", "300", "--rounds", "40", "--noise-multiplier",
                     str(z), "--epsilon", "4", "--out", str(out), "--quiet", "--audit-strict",
                     "--no-report", "--risk-people", "0"])

    # Assert
    err = capsys.readouterr().err
    assert code == 3
    assert "THE EPSILON AUDIT FAILED" in err


def test_a_csv_with_a_handful_of_test_rows_is_not_attacked_and_still_reported(tmp_path):
    # Prepare: 40 rows: a test split of a few rows cannot hold non-members and shadow data
    rng = np.random.default_rng(1)
    csv = tmp_path / "tiny.csv"
    csv.write_text("x1,x2,y\n" + "\n".join(
        f"{rng.normal():.3f},{rng.normal():.3f},{rng.normal():.3f}" for _ in range(12)) + "\n")

    # Execute
    res = simulate(load_config(None, task="csv", data=str(csv), target="y", devices=4,
                               rounds=2, out=str(tmp_path / "o"), report=False), progress=False)

    # Assert
    rec = res["attacks"]["membership"]["record"]
    assert all("too few held-out records" in rec[k]["note"] for k in rec)
    assert "breach risk" in summary_table(res)


def test_gradient_matching_recovers_records_the_analytic_inversion_cannot(tmp_path):
    # Prepare: two records per device: the analytic inversion gives their mixture, the
    # gradient-matching attack (within the information bound: 2 records, 3 classes) separates
    res = run(tmp_path, samples_per_device=2, devices=400, sample_rate=0.5, report=False)

    # Execute
    views = res["attacks"]["updates"]["views"]
    b = res["attacks"]["breach"]

    # Assert
    assert views["fl_optimize"]["recovered"] > 0.2
    assert views["fl_optimize"]["recovered"] > views["fl"]["recovered"]
    assert "gradient matching" in b["fl"]["attack"]


def test_devices_past_the_information_bound_get_a_note_not_an_optimisation(small_city):
    # Assert: 24 records per device in the small city
    upd = small_city["attacks"]["updates"]
    assert "fl_optimize" not in upd["views"]
    assert "at most 16 records" in upd["optimize_note"]


def test_under_secure_aggregation_the_audit_tests_the_runs_own_distributed_mechanism(tmp_path):
    # Prepare / Execute: distributed DP; the audit runs the run's DDGParams, population and
    # block floor (before, it calibrated a 1,000-canary federation of its own, out of reach)
    res = run(tmp_path, secure_aggregation=True, secagg_cohort=20, epsilon=8.0, report=False,
              devices=400, rounds=8)

    # Assert
    audit, ddg = res["audit"], res["privacy"]["ddg"]
    fd = audit["fl_dp"]
    assert fd["mechanism"] == "distributed" and fd["canaries"] == ddg["dim"]
    assert fd["released_rounds"] == res["fl_dp"]["rounds_run"] == 8
    assert fd["epsilon"] == pytest.approx(res["privacy"]["epsilon"], rel=1e-12)
    assert not fd["exceeded"] and fd["bound"] <= fd["epsilon"]
    assert "run's own distributed-DP mechanism" in audit["fl_dp_note"]
    assert audit["fl"]["bound"] > 2.0  # FL under SecAgg: no noise, the canaries are told apart


def test_an_attack_that_fails_leaves_the_trainings_results_on_disk(tmp_path, monkeypatch):
    # Prepare: the attack suite breaks after the three trainings
    from privcity.sim import attacks

    def broken(*a, **k):
        raise RuntimeError("attack suite broke")

    monkeypatch.setattr(attacks, "run_attacks", broken)
    out = tmp_path / "out"

    # Execute
    with pytest.raises(RuntimeError, match="attack suite broke"):
        run(tmp_path, rounds=2, report=False)

    # Assert: the error is not swallowed, and the run's results are saved whole
    import json
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["fl"]["rounds_run"] == 2 and saved["fl_dp"]["rounds_run"] == 2
    assert "attacks" not in saved and not (out / "metrics.json.tmp").exists()
