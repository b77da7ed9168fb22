"""The breach figures (sim/attacks.py breach_risk): a design with nothing attacked gets no
figure rather than a crash or a perfect score; intervals widen for the attacks compared."""
from __future__ import annotations

from pathlib import Path

import pytest

from privcity.sim import load_config, simulate, summary_table
from privcity.sim.attacks import breach_risk, dkw_band


def _view(recovered: float, label: str) -> dict:
    return {"label": label, "devices": 30, "n": 30, "recovered": recovered,
            "ci": [max(0.0, recovered - 0.1), min(1.0, recovered + 0.1)], "median_error": 0.0}


def _results(*, secure: bool, fl_rounds: int = 3, dp_rounds: int = 3,
             views: dict | None = None, membership: dict | None = None) -> dict:
    roc = {"advantage": 0.05, "advantage_ci": [0.0, 0.2], "n_members": 300, "n_nonmembers": 300}
    per_model = membership if membership is not None else {
        m: {"loss": roc} for m in ("centralized", "fl", "fl_dp")}
    return {"config": {"secure_aggregation": secure},
            "fl": {"rounds_run": fl_rounds}, "fl_dp": {"rounds_run": dp_rounds},
            "attacks": {"updates": {"views": views if views is not None else {
                "fl": _view(1.0, "plaintext"), "secagg": _view(0.0, "block sum"),
                "dp_sum": _view(0.0, "noisy block sum")}},
                "membership": {"record": per_model, "device": {}}}}


def test_fl_without_secure_aggregation_is_charged_the_plaintext_updates():
    # Execute
    b = breach_risk(_results(secure=False))

    # Assert
    assert b["fl"]["risk"] == 1.0


def test_a_dp_run_that_released_no_round_gets_no_breach_figure_nor_leakage_reduction():
    # Prepare: the budget stopped FL + DP before its first round; its model was not attacked
    note = {"note": "no candidate device took part in its training: not attacked"}
    res = _results(secure=False, dp_rounds=0, views={"fl": _view(0.0, "plaintext")},
                   membership={"centralized": {"loss": {"advantage": 0.05,
                                                        "advantage_ci": [0.0, 0.2]}},
                               "fl": {"loss": {"advantage": 0.05, "advantage_ci": [0.0, 0.2], "n_members": 300, "n_nonmembers": 300}},
                               "fl_dp": note})

    # Execute
    b = breach_risk(res)

    # Assert: not "risk 0, leakage reduction 100%" for a run that never ran
    assert b["fl_dp"]["risk"] is None
    assert b["leakage_reduction"]["fl_dp"]["value"] is None


def test_a_design_with_nothing_attacked_gets_no_figure_instead_of_a_crash():
    # Prepare: no device reported (no update views) and neither FL model was attacked
    note = {"note": "no candidate device took part in its training: not attacked"}
    res = _results(secure=False, views={}, membership={
        "centralized": {"loss": {"advantage": 0.05, "advantage_ci": [0.0, 0.2], "n_members": 300, "n_nonmembers": 300}},
        "fl": note, "fl_dp": note})

    # Execute
    b = breach_risk(res)

    # Assert
    assert b["fl"]["risk"] is None and b["fl_dp"]["risk"] is None
    assert b["centralized"]["risk"] == 1.0


@pytest.mark.parametrize("flags", [dict(dropout=0.99), dict(sample_rate=0.005, devices=100, rounds=2)])
def test_a_run_in_which_no_device_reports_finishes_and_prints_its_table(tmp_path: Path, flags):
    # Prepare: `privcity simulate --devices 200 --rounds 3 --dropout 0.99` crashed with
    # "max() arg is an empty sequence" (reported as if the user's input were bad, exit 2)
    cfg = load_config(None, out=str(tmp_path / "o"), **{
        **dict(devices=200, rounds=3, risk_people=0, report=False), **flags})

    # Execute
    res = simulate(cfg, progress=False)

    # Assert
    assert "breach risk" in summary_table(res)


def test_secure_aggregation_charges_fl_the_block_sums_and_widens_for_the_attacks_compared():
    # Execute
    b = breach_risk(_results(secure=True))

    # Assert: the FL server saw block sums (recovered nothing), so FL's risk is the membership
    # attack's, whose interval is wider than its own 95% one (Bonferroni over 2 attacks)
    assert b["fl"]["risk"] == pytest.approx(0.05) and "membership" in b["fl"]["attack"]
    assert b["fl"]["attacks_compared"] == 2
    assert b["fl"]["ci"][1] > dkw_band(0.05, 300, 300)[1]
    assert b["fl"]["above_chance"] is False
    assert "block sums" in b["fl"]["exposes"]
