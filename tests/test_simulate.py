"""privcity simulate: end-to-end runs of small cities (one process and mpiexec -n 3), metrics,
dropouts, the privacy budget, configuration errors and the CSV path on real data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from privcity.cli import main as cli_main
from privcity.dp import Accountant
from privcity.sim import SimConfig, calibrate_noise_multiplier, load_config, simulate, summary_table

from test_aggregate_mpi import find_mpiexec

SMALL = dict(devices=160, rounds=6, sample_rate=0.25, samples_per_device=24, seed=3, lr=0.5,
             local_epochs=3, eval_every=1)


def run(tmp_path: Path, **kw) -> dict:
    # (a CSV's devices hold its rows: a synthetic city's record count would be refused)
    small = {k: v for k, v in SMALL.items() if k != "samples_per_device" or kw.get("task") != "csv"}
    cfg = load_config(None, out=str(tmp_path / "out"), **{**small, **kw})
    return simulate(cfg, progress=False)


@pytest.fixture(scope="module")
def small_city(tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("sim"), epsilon=8.0)


def test_accuracy_improves_over_rounds(small_city):
    # Prepare
    rounds = small_city["rounds"]["fl"]
    losses = [r["metrics"]["loss"] for r in rounds]

    # Assert: the test loss falls round after round, accuracy ends above where it started,
    # and federated training gets most of what centralized training does
    assert small_city["metric"] == "accuracy"
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert rounds[-1]["score"] > rounds[0]["score"]
    assert small_city["fl"]["score"] > small_city["centralized"]["score"] - 0.1


def test_dp_stays_within_a_margin_of_non_dp_at_moderate_epsilon(small_city):
    # Assert (epsilon 8, 6 rounds at q = 0.25)
    assert abs(small_city["fl_dp"]["score"] - small_city["fl"]["score"]) <= 0.1


def test_metrics_are_present_and_sane(small_city, tmp_path_factory):
    # Prepare
    r = small_city
    written = json.loads((Path(r["config"]["out"]) / "metrics.json").read_text())

    # Assert
    assert written["final_params_sha256"] == r["final_params_sha256"]
    for run_ in ("fl", "fl_dp"):
        s = r[run_]
        assert s["rounds_run"] == SMALL["rounds"]
        assert s["bytes_total"] > 0 and s["bytes_per_round_mean"] > 0
        assert np.isfinite(s["device_overhead_percent"]) and s["device_overhead_percent"] > 0
        assert 0 < s["device_privacy_seconds"]["p50"] <= s["device_privacy_seconds"]["p99"]
        assert s["aggregation_seconds_mean"] > 0
        assert all(x["reported"] <= x["sampled"] for x in r["rounds"][run_])
        assert all(x["refused"] == 0 and x["refusals"] == {} for x in r["rounds"][run_])
        assert (s["refused"], s["refusals"]) == (0, {})
        assert written["rounds"][run_][0]["refusals"] == {} and written[run_]["refused"] == 0
    assert r["bandwidth"]["raw_upload_bytes"] > 0
    # each round's bytes are exactly the sealed updates: header + tensor codec + tag
    one = r["rounds"]["fl"][0]
    assert one["bytes_sent"] > one["reported"] * 4 * r["n_params"]


def test_epsilon_matches_the_accountant(small_city):
    # Prepare
    p = small_city["privacy"]
    acc = Accountant(epsilon_budget=1e9, delta=p["delta"])

    # Execute
    expected = acc.record_rounds(q=p["sample_rate"], z=p["noise_multiplier"], n=SMALL["rounds"])

    # Assert
    assert p["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert p["epsilon"] <= p["epsilon_budget"]
    assert [x["epsilon"] for x in small_city["rounds"]["fl_dp"]] == sorted(
        x["epsilon"] for x in small_city["rounds"]["fl_dp"])


def test_calibrated_noise_multiplier_fits_the_budget_tightly():
    # Execute
    z = calibrate_noise_multiplier(epsilon=2.0, delta=1e-5, sample_rate=0.1, rounds=20)
    eps = Accountant(epsilon_budget=1e9, delta=1e-5).record_rounds(q=0.1, z=z, n=20)
    eps_less = Accountant(epsilon_budget=1e9, delta=1e-5).record_rounds(q=0.1, z=z / 1.02, n=20)

    # Assert
    assert eps <= 2.0 < eps_less


def test_same_seed_same_results_and_another_seed_differs(tmp_path, small_city):
    # Execute
    again = run(tmp_path, epsilon=8.0)
    other = run(tmp_path / "b", epsilon=8.0, seed=4)

    # Assert
    assert again["final_params_sha256"] == small_city["final_params_sha256"]
    assert other["final_params_sha256"]["fl"] != small_city["final_params_sha256"]["fl"]


def _mpiexec_and_env() -> tuple[str, dict]:
    """The mpiexec to launch and its environment (root allowed, ranks oversubscribed); skips
    the test without mpi4py or an mpiexec."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[test]')")
    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec found beside Python or on PATH (pip install mpich)")
    return mpiexec, dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
                         OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                         OMPI_MCA_rmaps_base_oversubscribe="1")


def test_mpiexec_3_ranks_gives_the_one_process_result(tmp_path, small_city):
    # Prepare
    mpiexec, env = _mpiexec_and_env()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    out = tmp_path / "mpi"

    # Execute
    proc = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "privcity.cli", "simulate",
                           *flags, "--epsilon=8.0", f"--out={out}", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)

    # Assert: bit-identical models and the same non-timing metrics
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads((out / "metrics.json").read_text())
    assert got["ranks"] == 3
    assert got["final_params_sha256"] == small_city["final_params_sha256"]
    for run_ in ("fl", "fl_dp"):
        keys = ("round", "sampled", "reported", "refused", "refusals", "bytes_sent", "score",
                "epsilon", "clip")
        assert [{k: x[k] for k in keys} for x in got["rounds"][run_]] == \
            [{k: x[k] for k in keys} for x in small_city["rounds"][run_]]
    # the attacks and the audit, on rank 0, see what one process sees
    assert _untimed(got["attacks"]) == _untimed(small_city["attacks"])
    assert _untimed(got["audit"]) == _untimed(small_city["audit"])


def _untimed(x):
    """A results section without its timings."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if "seconds" not in k}
    return [_untimed(v) for v in x] if isinstance(x, list) else x


def test_the_summary_shows_a_line_only_when_something_was_refused(small_city):
    # Prepare: the same results, as if FL + DP had refused three envelopes
    refused = {**small_city, "fl_dp": {**small_city["fl_dp"], "refused": 3,
                                       "refusals": {"duplicate": 2, "wrong_epoch": 1}}}

    # Execute
    clean, noted = summary_table(small_city), summary_table(refused)

    # Assert
    assert "refused" not in clean
    assert "refused and left out (one vote per sampled device and round): FL + DP 3 " \
        "(duplicate 2, wrong_epoch 1)" in noted


def test_a_sampled_baseline_trains_on_its_sample_and_changes_nothing_else(tmp_path, small_city):
    # Execute
    r = run(tmp_path, epsilon=8.0, baseline_devices=40)

    # Assert: the centralized model saw 40 devices' records; the city and FL are unchanged
    assert r["baseline_records"] == 40 * SMALL["samples_per_device"]
    assert r["records"] == small_city["records"] == SMALL["devices"] * SMALL["samples_per_device"]
    assert small_city["baseline_records"] == small_city["records"]
    assert r["bandwidth"]["raw_upload_bytes"] == small_city["bandwidth"]["raw_upload_bytes"]
    sha, ref = r["final_params_sha256"], small_city["final_params_sha256"]
    assert (sha["fl"], sha["fl_dp"]) == (ref["fl"], ref["fl_dp"])
    assert sha["centralized"] != ref["centralized"]
    assert np.isfinite(r["centralized"]["score"])


def test_raw_upload_bytes_count_each_device_header_exactly():
    # Prepare: device ids of CSV device columns can be negative or long
    from privcity.crypto.envelope import build_header
    from privcity.sim.runner import AGGREGATOR_ID, _Census, _raw_upload_bytes

    ids = np.array([-123, -1, 0, 7, 10**12, 2**63 - 1], np.int64)
    counts = np.array([5, 1, 0, 3, 2, 4], np.int64)
    census = _Census(ids, counts, n_features=6)

    # Execute
    got = _raw_upload_bytes(census)

    # Assert: header + tensor codec (2 + 16) + float32 rows of 7 values + tag, per device
    want = sum(len(build_header(sender_id=f"dev-{i}", receiver_id=AGGREGATOR_ID, epoch=0,
                                counter=0, plaintext_length=0, content_type=1))
               + 2 + 16 + 4 * int(n) * 7 + 16 for i, n in zip(ids.tolist(), counts.tolist()))
    assert got == want


def test_mpiexec_2_ranks_with_a_sampled_baseline_gives_the_one_process_result(tmp_path):
    # Prepare: rank 0 then generates only the sampled devices
    mpiexec, env = _mpiexec_and_env()
    kw = {**SMALL, "rounds": 2, "baseline_devices": 25, "risk_people": 0}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    one = run(tmp_path / "one", **kw)
    out = tmp_path / "mpi"

    # Execute
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "privcity.cli", "simulate",
                           *flags, f"--out={out}"], env=env, capture_output=True, text=True,
                          timeout=300)

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads((out / "metrics.json").read_text())
    assert got["final_params_sha256"] == one["final_params_sha256"]
    assert (got["records"], got["baseline_records"]) == (one["records"], one["baseline_records"])
    assert got["bandwidth"]["raw_upload_bytes"] == one["bandwidth"]["raw_upload_bytes"]
    assert "[setup ]" in proc.stderr and "the centralized baseline's sample" in proc.stderr


def test_setup_phases_are_shown_before_the_rounds(tmp_path, capsys):
    # Execute
    rc = cli_main(["simulate", "--devices", "30", "--rounds", "1", "--samples-per-device", "8",
                   "--risk-people", "0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err

    # Assert: city, enrolment and baseline lines come before the first round's
    assert rc == 0
    setup = [line for line in err.splitlines() if line.startswith("[setup ]")]
    assert any("generating 30 devices x 8 records" in line for line in setup)
    assert any("gateway: 30 devices" in line for line in setup)
    assert any("on 240 pooled records of 30 devices" in line for line in setup)
    assert err.index("[setup ]") < err.index("round   1/1")


def test_a_run_with_dropouts_completes(tmp_path):
    # Execute
    r = run(tmp_path, dropout=0.4, rounds=4)

    # Assert
    rounds = r["rounds"]["fl"]
    assert len(rounds) == 4
    assert sum(x["reported"] for x in rounds) < sum(x["sampled"] for x in rounds)
    assert all(x["reported"] > 0 for x in rounds) and np.isfinite(r["fl"]["score"])


def test_the_budget_stops_the_dp_run_before_it_is_exceeded(tmp_path):
    # Execute: a fixed noise multiplier too small for 6 rounds within epsilon 1
    r = run(tmp_path, epsilon=1.0, noise_multiplier=0.8)

    # Assert
    assert r["fl_dp"]["rounds_run"] < SMALL["rounds"]
    assert "budget" in r["fl_dp"]["stopped"]
    assert r["privacy"]["epsilon"] <= 1.0
    assert r["fl"]["rounds_run"] == SMALL["rounds"]


@pytest.mark.parametrize("kw", [dict(aggregator="median"), dict(aggregator="trimmed_mean"),
                                dict(adaptive_clip=True), dict(model="mlp", hidden=8),
                                dict(task="traffic", lr=0.0), dict(partition="dirichlet", alpha=0.3)],
                         ids=["median", "trimmed", "adaptive-clip", "mlp", "traffic", "dirichlet"])
def test_options_run(tmp_path, kw):
    # Execute
    r = run(tmp_path, rounds=3, **kw)

    # Assert
    assert r["fl"]["rounds_run"] == 3 and np.isfinite(r["fl"]["score"])
    assert np.isfinite(r["fl_dp"]["score"])
    if kw.get("adaptive_clip"):
        clips = [x["clip"] for x in r["rounds"]["fl_dp"]]
        assert clips[0] == 1.0 and len(set(clips)) > 1
    if kw.get("task") == "traffic":  # lr 0: chosen by the model (0.05 for regression)
        assert r["metric"] == "r2" and r["config"]["lr"] == 0.05
        assert r["centralized"]["score"] > 0.5 and r["fl"]["score"] > 0.5


@pytest.mark.parametrize("kw, field", [
    (dict(rounds=0), "rounds"), (dict(sample_rate=0.0), "sample_rate"),
    (dict(sample_rate=1.5), "sample_rate"), (dict(dropout=1.0), "dropout"),
    (dict(epsilon=-1.0), "epsilon"), (dict(delta=1.0), "delta"), (dict(task="mars"), "task"),
    (dict(clip=float("nan")), "clip"), (dict(devices=2.5), "devices"),
    (dict(task="csv"), "data"), (dict(noise_multiplier=-1.0), "noise_multiplier"),
    (dict(field_epsilon=-2.0), "field_epsilon"),
    (dict(out=5), "out"), (dict(release_time_s=0), "release_time_s"),
    (dict(risk_people=-1), "risk_people"), (dict(release_cell_m=0.0), "release_cell_m"),
    (dict(baseline_devices=-1), "baseline_devices"),
    (dict(devices=100, baseline_devices=101), "baseline_devices"),
    (dict(task="csv", data=os.path.dirname(__file__), target="y"), "data"),
    (dict(task="csv", data=__file__, target="y", device_column="d", devices=50), "devices"),
    (dict(clients_per_round=-1), "clients_per_round"),
    (dict(devices=100, clients_per_round=101), "clients_per_round"),
    (dict(clients_per_round=10, secure_aggregation=True), "clients_per_round"),
])
def test_bad_configuration_is_refused_naming_the_field(kw, field):
    # Execute / Assert
    with pytest.raises(ValueError, match=f"'{field}'"):
        load_config(None, **kw)


def test_toml_top_level_and_simulate_table_merge_and_nothing_is_ignored(tmp_path):
    # Prepare
    mixed = tmp_path / "mixed.toml"
    mixed.write_text('devices = 300\n[simulate]\nrounds = 2\n')
    clash = tmp_path / "clash.toml"
    clash.write_text('rounds = 3\n[simulate]\nrounds = 2\n')
    typo = tmp_path / "typo.toml"
    typo.write_text('[simulate]\nrounds = 2\n[simulat]\ndevices = 300\n')

    # Execute
    cfg = load_config(str(mixed))

    # Assert
    assert (cfg.devices, cfg.rounds) == (300, 2)
    with pytest.raises(ValueError, match="'rounds' both at the top level and in"):
        load_config(str(clash))
    with pytest.raises(ValueError, match="unknown config field 'simulat'"):
        load_config(str(typo))


def test_toml_file_and_flags(tmp_path, capsys):
    # Prepare
    path = tmp_path / "city.toml"
    path.write_text('[simulate]\ndevices = 50\nrounds = 2\nsample_rate = 0.5\n')
    (tmp_path / "bad.toml").write_text("devices = 50\nrounds_per_day = 3\n")

    # Execute
    cfg = load_config(str(path), rounds=3)
    with pytest.raises(ValueError, match="rounds_per_day"):
        load_config(str(tmp_path / "bad.toml"))
    (tmp_path / "twice.toml").write_text('sample-rate = 0.5\nsample_rate = 0.2\n')
    with pytest.raises(ValueError, match="twice"):
        load_config(str(tmp_path / "twice.toml"))
    (tmp_path / "flat.toml").write_text("simulate = 1\n")
    with pytest.raises(ValueError, match="table"):
        load_config(str(tmp_path / "flat.toml"))
    rc_bad = cli_main(["simulate", "--rounds", "0"])
    err = capsys.readouterr().err
    rc = cli_main(["simulate", "--config", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    table = capsys.readouterr().out

    # Assert
    assert (cfg.devices, cfg.rounds, cfg.sample_rate, cfg.task) == (50, 3, 0.5, SimConfig().task)
    assert rc_bad == 2 and "--rounds: must be an integer >= 1" in err  # the flag typed
    assert rc == 0 and "FL + DP" in table and "test accuracy" in table
    assert (tmp_path / "o" / "metrics.json").is_file()


def test_csv_path_runs_on_real_sensor_data(tmp_path):
    # Prepare: UCI-derived room sensor readings shipped inside the river package
    river = pytest.importorskip("river")
    csv = Path(river.__file__).parent / "drift" / "datasets" / "occupancy.csv"

    # Execute: CO2 (V4) from temperature, humidity, light and the time of day
    r = run(tmp_path, task="csv", data=str(csv), target="V4", devices=8, rounds=3,
            sample_rate=0.9, lr=0.05)

    # Assert
    assert r["devices"] == 8 and r["task_type"] == "regression" and r["records"] > 300
    assert np.isfinite(r["fl"]["score"]) and np.isfinite(r["centralized"]["score"])
    assert r["fl"]["bytes_total"] > 0
    # ... and no GPS-trace figure, which a user could take for a property of this file
    assert r["risk"]["traces"] is None and "GPS" not in summary_table(r)


def test_what_loading_a_csv_did_is_reported_in_the_table_and_json(tmp_path, capsys):
    # Prepare: real readings, one stray cell in the temperature (V1)
    river = pytest.importorskip("river")
    rows = (Path(river.__file__).parent / "drift" / "datasets" / "occupancy.csv").read_text()
    header, first, *rest = rows.splitlines()
    cells = first.split(",")
    cells[1] = "n/a?"
    csv = tmp_path / "stray.csv"
    csv.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")

    # Execute
    rc = cli_main(["simulate", "--task", "csv", "--data", str(csv), "--target", "V4",
                   "--devices", "8", "--rounds", "1", "--risk-people", "0", "--quiet",
                   "--out", str(tmp_path / "o")])
    table = capsys.readouterr().out
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())

    # Assert
    note = "column 'V1': 1 value(s) that are not numbers (e.g. 'n/a?') read as missing"
    assert rc == 0 and f"data: {note}" in table
    assert saved["data_notes"] == [note]


def test_unreadable_data_is_a_one_line_error(tmp_path, capsys):
    fake = tmp_path / "readings.csv.gz"
    fake.write_text("V4,x\n1,2\n")  # not gzip
    rc = cli_main(["simulate", "--task", "csv", "--data", str(fake), "--target", "V4", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("privcity simulate: cannot read the data:")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_field_noise_on_sensitive_fields_changes_what_devices_release(tmp_path):
    # Execute
    clean = run(tmp_path / "a", task="energy", rounds=2, lr=0.01)
    noised = run(tmp_path / "b", task="energy", rounds=2, lr=0.01, field_epsilon=4.0)

    # Assert: the released data differ, so the centralized baseline trained on them does too
    assert clean["final_params_sha256"]["centralized"] != \
        noised["final_params_sha256"]["centralized"]
    assert noised["config"]["field_epsilon"] == 4.0


def test_divergent_training_is_reported_not_aggregated(tmp_path):
    # Execute: a learning rate far too high for squared loss (numpy warnings are errors here)
    r = run(tmp_path, task="traffic", lr=50.0, rounds=3)

    # Assert: the devices whose SGD overflowed were left out and counted; DP still clips
    assert sum(x["diverged"] for x in r["rounds"]["fl"]) > 0
    assert all(x["reported"] + x["diverged"] <= x["sampled"] for x in r["rounds"]["fl"])
    assert r["centralized"]["diverged"] or np.isfinite(r["centralized"]["score"])


def test_rounds_with_a_single_report_and_csv_devices_without_rows(tmp_path):
    # Prepare: a city so small that some rounds have one report; a CSV split into more
    # devices than it has rows for
    river = pytest.importorskip("river")
    csv = Path(river.__file__).parent / "drift" / "datasets" / "occupancy.csv"

    # Execute
    tiny = run(tmp_path / "a", devices=6, rounds=6, sample_rate=0.2)
    sparse = run(tmp_path / "b", task="csv", data=str(csv), target="V4", devices=1000,
                 rounds=3, sample_rate=0.05, lr=0.05)

    # Assert
    assert any(x["reported"] == 1 for x in tiny["rounds"]["fl"])
    assert np.isfinite(tiny["fl"]["score"]) and np.isfinite(tiny["fl_dp"]["score"])
    assert sparse["fl"]["rounds_run"] == 3 and np.isfinite(sparse["fl"]["score"])


def test_release_risk_is_measured_and_falls_with_generalisation(small_city, tmp_path):
    # Prepare
    risk = small_city["risk"]["traces"]

    # Execute: a coarser release, and none
    coarse = run(tmp_path / "c", rounds=1, release_cell_m=5000.0, release_time_s=4 * 3600)
    off = run(tmp_path / "o", rounds=1, risk_people=0)

    # Assert: raw traces are unique and linkable; generalised releases less so, and coarser
    # releases less than finer ones
    u, lk = risk["unicity_4_points"], risk["linkage_home_work"]
    assert u["raw"] > 0.95 and lk["raw"]["reidentified"] > 0.95
    assert u["released"] < u["raw"]
    assert lk["released"]["reidentified"] < lk["raw"]["reidentified"]
    cu = coarse["risk"]["traces"]["unicity_4_points"]["released"]
    cl = coarse["risk"]["traces"]["linkage_home_work"]["released"]["reidentified"]
    assert cu < u["released"] and cl < lk["released"]["reidentified"]
    assert off["risk"]["traces"] is None
    # ... and every figure says what it was computed on: simulated people, not the task's data
    assert "synthetic GPS traces of" in risk["computed_on"]
    assert "simulated people's synthetic GPS traces" in summary_table(small_city)


def test_device_treatments_change_what_is_released_and_are_validated(tmp_path):
    # Execute
    plain = run(tmp_path / "a", task="energy", rounds=1, lr=0.01)
    treated = run(tmp_path / "b", task="energy", rounds=1, lr=0.01,
                  treatment="district=pseudonymize,hour=generalize")

    # Assert: the pooled raw data differ (so does the baseline trained on it); the parsed
    # treatment is reported; a bad one is refused naming the field
    assert treated["config"]["treatment"] == {"district": "pseudonymize", "hour": "generalize"}
    assert treated["final_params_sha256"]["centralized"] != \
        plain["final_params_sha256"]["centralized"]
    with pytest.raises(ValueError, match="'treatment'"):
        load_config(None, treatment="district")
    with pytest.raises(ValueError, match="'mars'"):
        run(tmp_path / "c", rounds=1, treatment="mars=drop")



def test_linkage_of_the_baselines_records_before_and_after_treatment(tmp_path):
    # Execute
    raw = run(tmp_path / "a", task="energy", rounds=1, lr=0.01)
    treated = run(tmp_path / "b", task="energy", rounds=1, lr=0.01,
                  treatment="district=generalize,household_size=generalize")

    # Assert: without treatment the release is the raw data; generalising what the attacker
    # knows leaves fewer records linked, and a random guess among candidates worse
    r0 = raw["risk"]["records"]["linkage"]
    r1 = treated["risk"]["records"]["linkage"]
    assert raw["risk"]["records"]["known"] == ["district", "household_size"]
    assert r0["released"] == r0["raw"] and r0["raw"]["reidentified"] > 0
    assert r1["released"]["reidentified"] < r1["raw"]["reidentified"]
    assert r1["released"]["guess"] < r1["raw"]["guess"]


@pytest.mark.parametrize("treatment, field_epsilon", [
    ({"district": "pseudonymize", "household_size": "keep"}, 0.0),  # undone by counting
    (None, 1e4),                                                     # noise too small to matter
], ids=["pseudonyms-only", "negligible-noise"])
def test_the_risk_report_credits_no_treatment_an_attacker_undoes(treatment, field_epsilon):
    # Prepare
    from privcity.sim.risk import records_risk

    # Execute
    r = records_risk(task="energy", devices=2000, n_districts=8, seed=1, treatment=treatment,
                     field_epsilon=field_epsilon)["linkage"]

    # Assert: the frequency attack recovers relabelled districts, and rounding undoes tiny
    # noise on household sizes: the released data are as linkable as the raw
    assert r["released"]["guess"] == pytest.approx(r["raw"]["guess"])
    assert r["released"]["reidentified"] == pytest.approx(r["raw"]["reidentified"])


def test_table_says_diverged_for_a_blown_up_regression(small_city):
    import copy
    results = copy.deepcopy(small_city)
    results["metric"] = "r2"
    results["fl"]["score"] = -1.7e69   # finite, but the model's predictions exploded
    results["fl_dp"]["score"] = float("nan")
    results["centralized"]["score"] = -0.5   # poor, not blown up
    row = next(line for line in summary_table(results).splitlines() if line.startswith("test r2"))
    assert "diverged, r2 -1.7e+69 (lower --lr)" in row
    assert "diverged (lower --lr)" in row and "-0.5000" in row


def test_a_csv_too_small_for_a_test_split_is_a_named_error(tmp_path, capsys):
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("x,y\n1,2\n2,3\n3,5\n")
    rc = cli_main(["simulate", "--task", "csv", "--data", str(tiny), "--target", "y",
                   "--devices", "2", "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "none of its 3 usable rows fell in the test split" in err


def test_eval_every_evaluates_every_kth_round_and_the_last_once(tmp_path, monkeypatch):
    # Prepare: count the test-set evaluations
    from privcity.models import base
    calls = []
    real = base.Model._evaluate32
    monkeypatch.setattr(base.Model, "_evaluate32",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))

    # Execute
    res = run(tmp_path, rounds=5, eval_every=2, attacks="none", report=False)

    # Assert: rounds 2, 4 and 5 of each federated run scored, once each (no second pass for
    # the score), the others left unscored; the summary's score is the last round's
    for name in ("fl", "fl_dp"):
        scores = [r["score"] for r in res["rounds"][name]]
        assert [s is not None for s in scores] == [False, True, False, True, True]
        assert res[name]["score"] == scores[-1]
    assert len(calls) == 2 * 3 + 1  # + the centralized model's


def test_a_dp_run_stopped_between_evaluations_still_reports_its_final_score(tmp_path):
    # Prepare: a budget that stops FL + DP after its second round, which eval_every skips
    acc = Accountant(epsilon_budget=1e9, delta=1e-5)
    acc.record_rounds(q=SMALL["sample_rate"], z=1.0, n=2)
    res = run(tmp_path, rounds=6, eval_every=4, epsilon=acc.epsilon() * 1.001,
              noise_multiplier=1.0, attacks="none", report=False)

    # Assert
    rounds = res["rounds"]["fl_dp"]
    assert len(rounds) == 2 and rounds[-1]["score"] is not None and rounds[0]["score"] is None


@pytest.mark.parametrize("runs", ["fl", "fl_dp", "centralized,fl_dp"])
def test_only_the_runs_asked_for_are_trained_reported_and_released(tmp_path, runs, monkeypatch):
    # Prepare: count the federated trainings
    from privcity.sim import runner
    trained = {"federated": 0}
    real_fed = runner._federated

    def federated(*a, **k):
        trained["federated"] += 1
        return real_fed(*a, **k)

    monkeypatch.setattr(runner, "_federated", federated)
    asked = set(runs.split(","))

    # Execute
    res = run(tmp_path, runs=runs, rounds=2, report=False)
    text = summary_table(res)

    # Assert: the others cost nothing and say "not run"; no model file, hash or epsilon for them
    assert trained["federated"] == len(asked & {"fl", "fl_dp"})
    assert set(res["final_params_sha256"]) == asked
    assert {os.path.basename(p)[:-4] for p in res["models"].values()} == asked
    for name in ("centralized", "fl", "fl_dp"):
        assert res[name].get("skipped", False) == (name not in asked)
    score_row = next(line for line in text.splitlines() if line.startswith("test accuracy"))
    assert score_row.count("not run") == 3 - len(asked)
    # (the shadow models of the attacks train centrally too: count the baseline by its time)
    assert (res["centralized"]["cpu_seconds"] == 0.0) == ("centralized" not in asked)
    assert (res["privacy"]["epsilon"] is None) == ("fl_dp" not in asked)
    assert set(res["attacks"]["membership"]["record"]) == asked
    for name in ("fl", "fl_dp"):
        assert (res["attacks"]["breach"][name]["risk"] is None) == (name not in asked)


def test_runs_must_name_known_trainings():
    # Execute / Assert
    for bad in ("", "fl,xx", "centralized;fl"):
        with pytest.raises(ValueError, match="'runs'"):
            load_config(None, runs=bad)


def test_test_fraction_sets_the_csv_split_and_is_refused_elsewhere(tmp_path):
    # Prepare
    river = pytest.importorskip("river")
    csv = Path(river.__file__).parent / "drift" / "datasets" / "occupancy.csv"
    kw = dict(task="csv", data=str(csv), target="V4", devices=8, rounds=1, risk_people=0,
              attacks="none", report=False)

    # Execute
    half = run(tmp_path / "a", test_fraction=0.5, **kw)
    tenth = run(tmp_path / "b", test_fraction=0.1, **kw)

    # Assert: about half and a tenth of the rows tested; train and test partition the rows
    total = half["records"] + half["test_records"]
    assert tenth["records"] + tenth["test_records"] == total
    assert half["test_records"] / total == pytest.approx(0.5, abs=0.03)
    assert tenth["test_records"] / total == pytest.approx(0.1, abs=0.03)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="'test_fraction'"):
            load_config(None, **{**kw, "test_fraction": bad})
    with pytest.raises(ValueError, match="'test_fraction'"):
        load_config(None, test_fraction=0.3)


def test_a_test_file_tests_the_model_trained_on_every_row_of_the_data(tmp_path, capsys):
    # Prepare: river's sensor readings in two files, the last fifth of the readings (and a
    # stray cell) the test file, without the training file's device column
    river = pytest.importorskip("river")
    header, *rows = (Path(river.__file__).parent / "drift" / "datasets" /
                     "occupancy.csv").read_text().splitlines()
    cut = len(rows) * 4 // 5
    train = tmp_path / "train.csv"
    train.write_text("\n".join([header + ",room"] + [f"{r},{i % 8}" for i, r in
                                                     enumerate(rows[:cut])]) + "\n")
    cells = rows[cut].split(",")
    cells[1] = "err"
    test = tmp_path / "test.csv"
    test.write_text("\n".join([header, ",".join(cells), *rows[cut + 1:]]) + "\n")

    # Execute
    rc = cli_main(["simulate", "--task", "csv", "--data", str(train), "--target", "V4",
                   "--device-column", "room", "--test-data", str(test), "--rounds", "2",
                   "--runs", "fl", "--attacks", "none", "--risk-people", "0", "--no-report",
                   "--quiet", "--out", str(tmp_path / "o")])
    table = capsys.readouterr().out
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())

    # Assert: every training row trains, every test row tests, the stray cell is noted
    note = "test file: column 'V1': 1 value(s) that are not numbers (e.g. 'err') read as missing"
    assert rc == 0 and saved["devices"] == 8
    assert saved["records"] == cut and saved["test_records"] == len(rows) - cut
    assert saved["config"]["test_data"] == str(test) and np.isfinite(saved["fl"]["score"])
    assert saved["data_notes"] == [note] and f"data: {note}" in table


def test_a_test_file_is_refused_beside_a_test_fraction_without_a_csv_or_missing(tmp_path):
    # Prepare
    river = pytest.importorskip("river")
    csv = str(Path(river.__file__).parent / "drift" / "datasets" / "occupancy.csv")
    kw = dict(task="csv", data=csv, target="V4", test_data=csv)

    # Execute / Assert
    assert load_config(None, **kw).test_data == csv
    for bad, match in ((dict(test_fraction=0.3), "'test_fraction'.*not both"),
                       (dict(task="traffic", data=""), "'test_data'.*task = 'csv'"),
                       (dict(test_data=str(tmp_path / "none.csv")), "'test_data'.*no such file"),
                       (dict(test_data=str(tmp_path)), "'test_data'.*a directory")):
        with pytest.raises(ValueError, match=match):
            load_config(None, **{**kw, **bad})


def test_a_test_file_without_a_feature_column_is_a_one_line_error(tmp_path, capsys):
    # Prepare: the test file lacks the humidity (V2)
    river = pytest.importorskip("river")
    csv = Path(river.__file__).parent / "drift" / "datasets" / "occupancy.csv"
    test = tmp_path / "test.csv"
    test.write_text("time,V1,V3,V4\n2015-02-04 17:51:00,23.1,420,700\n")

    # Execute
    rc = cli_main(["simulate", "--task", "csv", "--data", str(csv), "--target", "V4",
                   "--test-data", str(test), "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err

    # Assert
    assert rc == 2 and "has no column 'V2'" in err and len(err.strip().splitlines()) == 1


def test_clients_per_round_fixes_fl_cohorts_and_leaves_dp_poisson(tmp_path, small_city):
    # Execute
    res = run(tmp_path, epsilon=8.0, clients_per_round=9)
    text = summary_table(res)

    # Assert: FL takes exactly 9 devices every round, different ones from round to round;
    # FL + DP is the Poisson run of the same seed, bit for bit (its epsilon assumes it)
    fl = res["rounds"]["fl"]
    assert [x["sampled"] for x in fl] == [9] * SMALL["rounds"]
    assert res["final_params_sha256"]["fl"] != small_city["final_params_sha256"]["fl"]
    assert res["final_params_sha256"]["fl_dp"] == small_city["final_params_sha256"]["fl_dp"]
    assert [x["sampled"] for x in res["rounds"]["fl_dp"]] == \
        [x["sampled"] for x in small_city["rounds"]["fl_dp"]]
    assert "FL 9 devices a round (--clients-per-round); FL + DP Poisson at q = 0.25" in text


def test_fixed_cohorts_are_uniform_subsets_and_do_not_depend_on_the_split():
    # Prepare
    from privcity.fl.rounds import fixed_cohort_rate, round_cohort, sampled_devices
    population, k, rounds = 50, 5, 4000
    hits = np.zeros(population)

    # Execute: the server's cohort, and what two gateways of 20 and 30 devices decide alone
    for r in range(rounds):
        rate = fixed_cohort_rate(7, r, population, k)
        cohort = sampled_devices(7, r, np.arange(population), sample_rate=rate)
        halves = [np.arange(20), np.arange(20, population)]
        split = np.concatenate([h[round_cohort(7, r, h, sample_rate=rate, dropout=0.0)[0]]
                                for h in halves])
        assert cohort.size == k and np.array_equal(split, cohort)
        hits[cohort] += 1

    # Assert: each device is taken k / population of the time (binomial, 4.5 sigma band)
    p = k / population
    sd = np.sqrt(rounds * p * (1 - p))
    assert np.all(np.abs(hits - rounds * p) < 4.5 * sd)
    assert fixed_cohort_rate(7, 0, population, population) == 1.0


def test_phases_are_timed_and_shown(small_city):
    # Prepare
    ph = small_city["phases"]
    text = summary_table(small_city)

    # Assert: every phase of the run is there, in order, and they add up to no more than the
    # whole; the table gives each run's wall time and bytes per device and round
    assert list(ph)[:9] == ["read", "setup", "centralized", "fl", "fl_dp", "evaluation",
                            "provisioning", "accounting", "risk"]
    assert 0 < ph["provisioning"] <= ph["fl"] + ph["fl_dp"]
    assert small_city["fl"]["provision_seconds"] + small_city["fl_dp"]["provision_seconds"] \
        == pytest.approx(ph["provisioning"])
    assert all(v >= 0 for v in ph.values())
    assert ph["evaluation"] <= ph["fl"] + ph["fl_dp"]
    assert 0 < ph["accounting"] <= ph["fl_dp"]
    assert sum(v for k, v in ph.items() if k not in ("evaluation", "accounting", "provisioning")) \
        <= small_city["wall_seconds"]
    assert "time (wall, rank 0): read " in text
    row = next(line for line in text.splitlines() if line.startswith("bytes / device / round"))
    fl = small_city["fl"]
    per = fl["bytes_total"] / fl["device_rounds"]
    assert f"{per:.0f} B" in row or f"{per / 1e3:.1f} KB" in row
    assert "(raw, once)" in row


def test_a_run_without_dp_never_imports_dp_accounting(tmp_path, run_python):
    # Prepare: importing dp-accounting (scipy) costs seconds; FL alone computes no epsilon
    code = ("import sys\n"
            "from privcity.sim import load_config, simulate\n"
            f"cfg = load_config(None, out={str(tmp_path / 'o')!r}, devices=40, rounds=2,\n"
            "                  samples_per_device=8, runs='fl', attacks='none', report=False,\n"
            "                  risk_people=0)\n"
            "simulate(cfg, progress=False)\n"
            "print('dp_accounting' in sys.modules)")

    # Execute
    proc = run_python(code)

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "False"


def test_automatic_evaluation_spacing_follows_the_cost_of_a_pass_over_the_test_set():
    # Prepare
    from privcity.sim.runner import auto_eval_every
    cfg = load_config(None, rounds=100, sample_rate=0.1, local_epochs=1)

    # Execute / Assert: 50 evaluations when the test set is small beside a round's training;
    # fewer as it grows (60,000 records: 6,000 rows trained a round; every 4 x test / trained
    # rounds); never past the last round
    assert auto_eval_every(cfg, test_rows=1_000, records=60_000, population=1_000) == 2
    assert auto_eval_every(cfg, test_rows=15_000, records=60_000, population=1_000) == 10
    assert auto_eval_every(cfg, test_rows=10**7, records=60_000, population=1_000) == 100
    fixed = load_config(None, rounds=100, clients_per_round=40, local_epochs=1)
    assert auto_eval_every(fixed, test_rows=15_000, records=60_000, population=1_000) == 25


def test_secure_aggregation_without_the_dp_run_calibrates_nothing_and_attacks_what_ran(tmp_path):
    # Execute: an epsilon distributed DP could not reach in these few blocks is not refused,
    # since FL + DP is not run (it used to be calibrated, and the attacks read its noise)
    res = run(tmp_path, runs="fl", secure_aggregation=True, epsilon=0.01, rounds=2,
              report=False)

    # Assert
    assert res["fl_dp"]["skipped"] and res["privacy"]["epsilon"] is None
    assert res["fl"]["rounds_run"] == 2
    assert "dp_sum" not in res["attacks"]["updates"]["views"]
    assert res["attacks"]["breach"]["fl_dp"]["risk"] is None


@pytest.mark.parametrize("runs", ["fl", "centralized,fl"])
def test_csv_under_mpiexec_each_rank_encodes_its_devices_and_the_result_is_one_process(
        tmp_path, runs, monkeypatch):
    # Prepare: real sensor readings on 8 devices; count the rows each rank's loader encodes
    river = pytest.importorskip("river")
    mpiexec, env = _mpiexec_and_env()
    csv = Path(river.__file__).parent / "drift" / "datasets" / "occupancy.csv"
    kw = dict(task="csv", data=str(csv), target="V4", devices=8, rounds=3, sample_rate=0.9,
              lr=0.05, attacks="none", report=False, runs=runs)
    one = run(tmp_path / "one", **kw)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys, json\n"
        "from mpi4py import MPI\n"
        "import privcity.data as D\n"
        "real = D.load_csv\n"
        "def counted(*a, **k):\n"
        "    train, test = real(*a, **k)\n"
        f"    name = os.path.join({str(tmp_path)!r}, f'rank{{MPI.COMM_WORLD.rank}}')\n"
        "    with open(name, 'w') as f:\n"
        "        json.dump([train.n_devices, test is not None], f)\n"
        "    return train, test\n"
        "D.load_csv = counted\n"
        "from privcity.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**SMALL, **kw}.items()
             if k not in ("samples_per_device",) and not isinstance(v, bool)]

    # Execute
    proc = subprocess.run([mpiexec, "-n", "3", sys.executable, str(probe), "simulate", *flags,
                           "--no-report", f"--out={tmp_path / 'mpi'}", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)

    # Assert: the same model; the gateways encoded their 4 devices each and no test set; rank 0
    # no device unless it trains the pooled baseline
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads((tmp_path / "mpi" / "metrics.json").read_text())
    assert got["final_params_sha256"] == one["final_params_sha256"]
    held = [json.loads((tmp_path / f"rank{r}").read_text()) for r in range(3)]
    assert held[1] == [4, False] and held[2] == [4, False]
    assert held[0] == ([8, True] if "centralized" in runs else [0, True])
