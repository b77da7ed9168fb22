"""The report of one run (:func:`render_report`): settings, the headline table, accuracy per
round, membership ROC curves, the epsilon audit, cost, update inversion, data and risk notes.
Each section renders from whatever its part of the results holds, and says so when the part
is absent (``--attacks none``, a run without an audit)."""
from __future__ import annotations

from typing import Any

from . import plots
from ._results import LEVELS, RUN_LABELS, RUNS, finite, get, interval, number
from .page import Page, fmt, fmt_ci, fmt_setting

__all__ = ["FIGURES", "render_report"]

#: The PNGs a run's report writes beside it (``OUT/report/<name>``).
FIGURES = {
    "rounds": "score_per_round.png",
    "record": "membership_roc_record.png",
    "device": "membership_roc_device.png",
    "audit": "audit_epsilon_per_round.png",
    "cost": "cost_bytes_cpu_latency.png",
    "inversion": "update_inversion.png",
}


def render_report(results: dict[str, Any], out_dir: str) -> str:
    """Write ``out_dir/report.html`` (one self-contained page, every plot embedded) and its
    PNGs in ``out_dir/report/``; return the HTML path.

    Parameters
    ----------
    results : dict
        A run's results, as ``privcity.sim.simulate`` returns them and metrics.json holds them.
        Every section but "config" may be absent; the page says which were not run.
    out_dir : str
        Directory of the report (created if needed); PNGs of sections absent now that an
        earlier report left there are removed.
    """
    if not isinstance(results, dict) or not isinstance(results.get("config"), dict):
        raise ValueError("results must be a run's results dict (metrics.json) with a 'config' "
                         f"section, got {type(results).__name__}")
    page = Page("privcity report: " + str(results["config"].get("task", "run")))
    for section in (_settings, _headline, _rounds, _membership, _audit, _cost, _inversion,
                    _notes):
        section(page, results)
    return page.write(out_dir, owned=FIGURES.values())


def _settings(page: Page, r: dict[str, Any]) -> None:
    page.heading("Settings")
    facts = [("metric", r.get("metric")), ("devices", r.get("devices")),
             ("records", r.get("records")), ("test records", r.get("test_records")),
             ("model parameters", r.get("n_params")), ("MPI ranks", r.get("ranks")),
             ("wall time (s)", _num(r.get("wall_seconds"), ".1f"))]
    page.pairs(("run", "value"), [(k, fmt(v)) for k, v in facts if v is not None])
    page.pairs(("setting", "value"), [(str(k), fmt_setting(v)) for k, v in r["config"].items()])


def _num(value: Any, spec: str) -> str | None:
    x = number(value)
    return None if x is None else fmt(x, spec)


def _headline(page: Page, r: dict[str, Any]) -> None:
    page.heading("Headline")
    metric = str(r.get("metric", "score"))
    rows = [[f"test {metric}", *(fmt(number(get(r, run, "score"))) for run in RUNS)],
            ["epsilon (delta)", "-", "-", _epsilon(r)]]
    for g in get(r, "privacy", "guarantees") or ():
        if isinstance(g, dict):
            rows.append([f"epsilon {fmt(number(g.get('epsilon')), '.3f')} holds against", "-",
                         "-", str(g.get("holds_against", "-"))])
    rows.append(_audit_row(r))
    rows += _breach_rows(r)
    page.table(["measure", *RUN_LABELS.values()], rows)
    _breach_detail(page, get(r, "attacks", "breach"))
    trust = get(r, "privacy", "trust")
    if trust:
        page.paragraph(f"Whom the epsilon holds against: {trust}")
    noise = get(r, "privacy", "noise")
    if noise:
        page.paragraph(f"DP noise: {noise}")
    if get(r, "audit", "fl_dp", "exceeded") is True:
        page.paragraph("The audit's empirical lower bound on epsilon exceeds the accountant's "
                       "epsilon: the privacy accounting or the mechanism is wrong.", alarm=True)


def _epsilon(r: dict[str, Any]) -> str:
    eps, delta = number(get(r, "privacy", "epsilon")), number(get(r, "privacy", "delta"))
    return "-" if eps is None else f"{fmt(eps, '.3f')} ({fmt(delta, 'g')})"


def _audit_row(r: dict[str, Any]) -> list[str]:
    if not isinstance(r.get("audit"), dict):
        return ["audit lower bound on epsilon", "-", "not run", "not run"]
    conf = finite(get(r, "audit", "confidence"))
    label = "audit lower bound on epsilon" + (f" ({conf:.0%})" if conf is not None else "")
    return [label, "-", *(fmt(number(get(r, "audit", run, "bound")), ".3f")
                          for run in ("fl", "fl_dp"))]


def _breach_rows(r: dict[str, Any]) -> list[list[str]]:
    breach = get(r, "attacks", "breach")
    if not isinstance(breach, dict):
        return [["breach risk", "not run", "not run", "not run"],
                ["leakage reduction vs centralized", "-", "not run", "not run"]]
    risk = [fmt_ci(number(get(breach, run, "risk")), interval(get(breach, run, "ci")))
            for run in RUNS]
    cut = [fmt_ci(number(get(breach, "leakage_reduction", run, "value")),
                  interval(get(breach, "leakage_reduction", run, "ci"))) for run in RUNS[1:]]
    return [["breach risk [95% CI]", *risk], ["leakage reduction vs centralized", "-", *cut]]


def _breach_detail(page: Page, breach: Any) -> None:
    """What each design exposes and which attack on it set its breach risk."""
    if not isinstance(breach, dict):
        return
    page.table(["design", "exposes", "breach risk: best attack"],
               [[RUN_LABELS[run], str(get(breach, run, "exposes") or "-"),
                 str(get(breach, run, "attack") or "-")]
                for run in RUNS if isinstance(breach.get(run), dict)])


def _rounds(page: Page, r: dict[str, Any]) -> None:
    metric = str(r.get("metric", "score"))
    page.heading(f"Test {metric} per round")
    if not any(get(r, "rounds", run) for run in ("fl", "fl_dp")):
        page.absent("No federated rounds were recorded.")
        return
    page.figure(FIGURES["rounds"], plots.score_rounds(r),
                f"Test {metric} after each round of FL and FL + DP; the centralized model's "
                "as a dashed line.")


def _membership(page: Page, r: dict[str, Any]) -> None:
    page.heading("Membership inference")
    attacks = r.get("attacks")
    if not isinstance(attacks, dict):
        page.absent("The attacks were not run (--attacks none).")
        return
    page.paragraph(f"Attack suite ({fmt(attacks.get('level'))}) took "
                   f"{fmt(number(attacks.get('seconds')), '.1f')} s beside the run's "
                   f"{fmt(number(attacks.get('run_seconds')), '.1f')} s.")
    levels = get(attacks, "membership")
    present = [lv for lv in LEVELS if isinstance(get(levels, lv), dict)
               and any(isinstance(v, dict) and v for v in levels[lv].values())]
    if not present:
        page.absent("Membership inference was not run.")
    for lv in present:
        page.figure(FIGURES[lv], plots.roc_panels(levels[lv], f"ROC, {LEVELS[lv]}"),
                    f"Membership inference, {LEVELS[lv]}: ROC curves on log-log axes, one "
                    "panel per released model, one curve per attack; the dotted diagonal is "
                    "chance.")
        page.table(["model", "attack", "AUC", "TPR at FPR 1%", "TPR at FPR 0.1%",
                    "advantage [95% CI]", "members / non-members"], _attack_rows(levels[lv]))


def _attack_rows(level: dict[str, Any]) -> list[list[str]]:
    rows = []
    for run, attacks in level.items():
        if not isinstance(attacks, dict):
            continue
        for name, a in attacks.items():
            rows.append([RUN_LABELS.get(run, str(run)), str(name),
                         fmt(number(get(a, "auc")), ".3f"),
                         fmt(number(get(a, "tpr_at_1pct")), ".4f"),
                         fmt(number(get(a, "tpr_at_0.1pct")), ".4f"),
                         fmt_ci(number(get(a, "advantage")), interval(get(a, "advantage_ci"))),
                         f"{fmt(get(a, 'n_members'))} / {fmt(get(a, 'n_nonmembers'))}"])
    return rows


def _audit(page: Page, r: dict[str, Any]) -> None:
    page.heading("Epsilon audit")
    a = r.get("audit")
    if not isinstance(a, dict):
        page.absent("The epsilon audit was not run.")
        return
    page.figure(FIGURES["audit"], plots.audit_rounds(a),
                "The audit's empirical lower bound on epsilon per round (one training run with "
                "canary devices, Steinke, Nasr and Jagielski 2023) beside the accountant's "
                "epsilon: the bound may never exceed it.")
    page.table(["audit", "FL (no DP)", "FL + DP"], [
        ["lower bound on epsilon", *(fmt(number(get(a, run, "bound")), ".3f")
                                     for run in ("fl", "fl_dp"))],
        ["accountant's epsilon", "-", fmt(number(get(a, "fl_dp", "epsilon")), ".3f")],
        ["bound exceeds epsilon", "-", fmt(get(a, "fl_dp", "exceeded"))],
        ["confidence / canaries / guesses", "", " / ".join(
            fmt(number(a.get(k)), "g") for k in ("confidence", "canaries", "guesses"))]])


def _cost(page: Page, r: dict[str, Any]) -> None:
    page.heading("Cost: bytes, device CPU, latency")
    if not any(isinstance(r.get(run), dict) for run in ("fl", "fl_dp")):
        page.absent("No federated run was recorded.")
        return
    page.figure(FIGURES["cost"], plots.cost_bars(r),
                "Bytes sent (raw upload of the centralized design, sealed, against FL and "
                "FL + DP), device training CPU per round, and the device's privacy work per "
                "round at the median and 99th percentile.")


def _inversion(page: Page, r: dict[str, Any]) -> None:
    page.heading("Update inversion (what the server sees)")
    views = get(r, "attacks", "updates", "views")
    if not isinstance(views, dict) or not views:
        note = get(r, "attacks", "updates", "note")  # it ran but had nothing to invert
        page.absent(f"Update inversion: {note}." if note else "Update inversion was not run"
                    + (" (--attacks none)." if "attacks" not in r else "."))
        return
    tol = finite(get(r, "attacks", "updates", "tolerance"))
    page.figure(FIGURES["inversion"], plots.inversion_bars(views, tol),
                "Share of training records the server reconstructs from what it sees, with "
                "the 95% interval.")
    page.table(["view", "what the server sees", "recovered [95% CI]", "records",
                "median relative error"],
               [[str(k), str(get(v, "label") or ""),
                 fmt_ci(number(get(v, "recovered")), interval(get(v, "ci"))),
                 fmt(get(v, "n")), fmt(number(get(v, "median_error")), ".3g")]
                for k, v in views.items() if isinstance(v, dict)])


def _notes(page: Page, r: dict[str, Any]) -> None:
    page.heading("Data and risk notes")
    data = [str(n) for n in r.get("data_notes") or ()]
    if data:
        page.bullets(data)
    else:
        page.paragraph("Data notes: none.")
    for run in ("fl", "fl_dp"):
        stopped = get(r, run, "stopped")
        if stopped:
            page.paragraph(f"{RUN_LABELS[run]} stopped after "
                           f"{fmt(get(r, run, 'rounds_run'))} round(s): {stopped}")
    _records_risk(page, get(r, "risk", "records"))
    _traces_risk(page, get(r, "risk", "traces"))


def _computed_on(section: dict[str, Any]) -> str:
    on = section.get("computed_on")
    return f"Computed on: {on}." if on else "What these figures were computed on is not recorded."


def _records_risk(page: Page, rec: Any) -> None:
    if not isinstance(rec, dict):
        page.absent("Record linkage was not measured for this task.")
        return
    known = ", ".join(str(k) for k in rec.get("known") or ()) or "nothing"
    page.paragraph(f"Record linkage: an attacker who knows each device's {known} joins it with "
                   f"one released record per device ({fmt(rec.get('devices'))} devices). "
                   + _computed_on(rec))
    treatment = rec.get("treatment")
    if isinstance(treatment, dict) and treatment:
        page.paragraph("Treatment on the devices: "
                       + ", ".join(f"{k}: {v}" for k, v in treatment.items()) + ".")
    # A CSV's own records also carry unicity (records and devices unique on the columns).
    unicity = isinstance(rec.get("unicity"), dict)
    extra = ["unique records", "unique devices"] if unicity else []
    page.table(["records", "re-identified", "ambiguous", "not found", "right guess", *extra],
               [[name, *(fmt(number(get(rec, "linkage", name, k)), ".3f")
                         for k in ("reidentified", "ambiguous", "not_found", "guess")),
                 *(fmt(number(get(rec, "unicity", name, k)), ".3f")
                   for k in ("records", "devices") if unicity)]
                for name in ("raw", "released")])


def _traces_risk(page: Page, tr: Any) -> None:
    if not isinstance(tr, dict):
        page.absent("GPS-trace re-identification was not measured (this task holds no traces).")
        return
    page.paragraph(f"GPS traces of {fmt(tr.get('people'), ',')} people, released on "
                   f"{fmt(number(tr.get('release_cell_m')), 'g')} m cells and "
                   f"{fmt(tr.get('release_time_s'))} s bins under pseudonyms. "
                   + _computed_on(tr))
    page.table(["traces", "unicity from 4 points", "home/work linkage re-identified",
                "right guess"],
               [[name, fmt(number(get(tr, "unicity_4_points", name)), ".3f"),
                 fmt(number(get(tr, "linkage_home_work", name, "reidentified")), ".3f"),
                 fmt(number(get(tr, "linkage_home_work", name, "guess")), ".3f")]
                for name in ("raw", "released")])
