"""privcity sweep: one run per epsilon on one city, the baselines trained once, one report."""
from __future__ import annotations

import json
import os

import pytest

from privcity.cli import main as cli_main
from privcity.sim import load_config
from privcity.sim.sweep import parse_epsilons, sweep, sweep_table

SMALL = dict(devices=160, rounds=4, sample_rate=0.25, samples_per_device=24, seed=3, lr=0.5,
             local_epochs=3, risk_people=0)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cfg = load_config(None, out=str(out), **SMALL)
    return out, sweep(cfg, [4.0, 1.0], progress=False)


def test_each_epsilon_gets_its_run_and_the_baselines_are_shared(swept):
    # Prepare
    out, runs = swept

    # Assert: sorted by epsilon; the centralized and FL models are one and the same, the DP
    # model is each epsilon's own and spends at most its budget
    assert [r["config"]["epsilon"] for r in runs] == [1.0, 4.0]
    shas = [r["final_params_sha256"] for r in runs]
    assert shas[0]["centralized"] == shas[1]["centralized"] and shas[0]["fl"] == shas[1]["fl"]
    assert shas[0]["fl_dp"] != shas[1]["fl_dp"]
    for r in runs:
        assert r["privacy"]["epsilon"] <= r["config"]["epsilon"] + 1e-9
        assert os.path.isfile(os.path.join(r["config"]["out"], "metrics.json"))
        assert os.path.isfile(os.path.join(r["config"]["out"], "report.html"))
    # a smaller budget means more noise
    assert runs[0]["privacy"]["noise_multiplier"] > runs[1]["privacy"]["noise_multiplier"]


def test_the_sweep_writes_its_curve_and_report(swept):
    # Prepare
    out, runs = swept

    # Execute
    with open(out / "sweep.json") as f:
        doc = json.load(f)
    text = sweep_table(runs)

    # Assert
    assert doc["epsilons"] == [1.0, 4.0] and len(doc["table"]) == 2
    assert doc["report"] == str(out / "report.html") and os.path.isfile(doc["report"])
    assert all(os.path.isfile(p) for p in doc["runs"])
    assert "epsilon budget" in text and text.count("\n") == 4


@pytest.mark.parametrize("text, why", [("1,x", "not a number"), ("0,1", "> 0"),
                                       ("1,-2", "> 0"), ("1,1", "repeats"), ("", "not a number"),
                                       ("inf", "finite")])
def test_bad_epsilon_lists_are_refused_by_name(text, why):
    # Execute / Assert
    with pytest.raises(ValueError, match=why):
        parse_epsilons(text)


def test_the_cli_refuses_a_fixed_noise_multiplier_and_a_bad_list(tmp_path, capsys):
    # Execute
    code1 = cli_main(["sweep", "--epsilon", "1,zz", "--out", str(tmp_path / "a"), "--quiet"])
    err1 = capsys.readouterr().err
    code2 = cli_main(["sweep", "--epsilon", "1,2", "--noise-multiplier", "1.0",
                      "--out", str(tmp_path / "b"), "--quiet"])
    err2 = capsys.readouterr().err

    # Assert
    assert code1 == 2 and "'zz' is not a number" in err1
    assert code2 == 2 and "--noise-multiplier" in err2  # the flag the user typed


def test_close_epsilons_get_folders_of_their_own():
    # Prepare
    from privcity.sim.sweep import run_folder

    # Assert: 1 and 1.0000001 would both be "epsilon-1" at 6 significant digits
    assert run_folder(1.0) != run_folder(1.0000001)
    assert run_folder(0.5) == "epsilon-0.5" and run_folder(4.0) == "epsilon-4"
