"""The report of a privacy-utility sweep (:func:`render_sweep`): one run per epsilon budget,
sharing the city and the baselines, on one page."""
from __future__ import annotations

import math
from typing import Any

from . import plots
from ._results import RUN_LABELS, best_advantage, finite, get, interval, number
from .page import Page, fmt, fmt_ci, fmt_setting

__all__ = ["SWEEP_FIGURES", "render_sweep"]

#: The PNGs a sweep's report writes beside it (``OUT/report/<name>``).
SWEEP_FIGURES = {
    "score": "sweep_score_vs_epsilon.png",
    "audit": "sweep_audit_vs_epsilon.png",
    "advantage": "sweep_advantage_vs_epsilon.png",
}


def render_sweep(results_list: list[dict[str, Any]], out_dir: str) -> str:
    """Write ``out_dir/report.html`` for a sweep and its PNGs in ``out_dir/report/``; return
    the HTML path.

    Parameters
    ----------
    results_list : list of dict
        One run's results per epsilon budget (``config["epsilon"]``, each > 0 and distinct),
        in any order: the page sorts them.
    out_dir : str
        Directory of the report (created if needed).
    """
    runs = sorted(_checked(results_list), key=lambda r: r["config"]["epsilon"])
    eps = [float(r["config"]["epsilon"]) for r in runs]
    first = runs[0]
    page = Page("privcity privacy-utility sweep: " + str(first["config"].get("task", "run")))
    _settings(page, first, eps)
    _score(page, runs, eps)
    _audit(page, runs, eps)
    _advantage(page, runs, eps)
    _table(page, runs, eps)
    return page.write(out_dir, owned=SWEEP_FIGURES.values())


def _checked(results_list: Any) -> list[dict[str, Any]]:
    if not isinstance(results_list, (list, tuple)) or not results_list:
        raise ValueError("results_list must be a non-empty list of runs' results dicts")
    seen: set[float] = set()
    for i, r in enumerate(results_list):
        eps = finite(get(r, "config", "epsilon"))
        if eps is None or eps <= 0:
            raise ValueError(f"results_list[{i}]['config']['epsilon'] must be a finite number "
                             f"> 0 (the run's budget), got {get(r, 'config', 'epsilon')!r}")
        if eps in seen:
            raise ValueError(f"results_list[{i}]: epsilon {eps:g} appears twice; one run per "
                             "epsilon")
        seen.add(eps)
    return list(results_list)


def _settings(page: Page, first: dict[str, Any], eps: list[float]) -> None:
    page.heading("Settings")
    config = dict(first["config"])
    config["epsilon"] = "swept: " + ", ".join(f"{e:g}" for e in eps)
    page.pairs(("setting", "value"), [(str(k), fmt_setting(v)) for k, v in config.items()])


def _shared(runs: list[dict[str, Any]], run: str) -> float | None:
    """The baseline's score, shared by every run of the sweep (the first's when they differ)."""
    return finite(get(runs[0], run, "score"))


def _score(page: Page, runs: list[dict[str, Any]], eps: list[float]) -> None:
    metric = str(runs[0].get("metric", "score"))
    page.heading(f"Test {metric} against epsilon")
    dp = [v if (v := finite(get(r, "fl_dp", "score"))) is not None else math.nan for r in runs]
    page.figure(SWEEP_FIGURES["score"],
                plots.sweep_score(eps, dp, _shared(runs, "centralized"), _shared(runs, "fl"),
                                  metric),
                f"FL + DP's test {metric} at each epsilon budget (log scale); the centralized "
                "and FL models, trained without DP, as dashed lines.")
    for run in ("centralized", "fl"):
        if len({fmt(number(get(r, run, "score"))) for r in runs}) > 1:
            page.paragraph(f"The {RUN_LABELS[run]} scores differ between the runs (they should "
                           "share their baselines): the line shows the first run's.")


def _audit(page: Page, runs: list[dict[str, Any]], eps: list[float]) -> None:
    page.heading("Epsilon: the accountant's and the audit's")
    accountant = [finite(get(r, "privacy", "epsilon")) for r in runs]
    bound = [finite(get(r, "audit", "fl_dp", "bound")) for r in runs]
    if all(b is None for b in bound):
        page.absent("The epsilon audit was not run.")
    page.figure(SWEEP_FIGURES["audit"],
                plots.sweep_audit(eps, _nan(accountant), _nan(bound)),
                "The accountant's epsilon of FL + DP at each budget, and the audit's empirical "
                "lower bound where the audit ran: the bound may never exceed the epsilon.")
    exceeded = [f"{e:g}" for e, r in zip(eps, runs) if get(r, "audit", "fl_dp", "exceeded")]
    if exceeded:
        page.paragraph("The audit's lower bound exceeds the accountant's epsilon at budget(s) "
                       + ", ".join(exceeded) + ": the accounting or the mechanism is wrong.",
                       alarm=True)


def _advantage(page: Page, runs: list[dict[str, Any]], eps: list[float]) -> None:
    page.heading("Membership advantage against epsilon")
    record = [best_advantage(r, "record", "fl_dp") for r in runs]
    device = [best_advantage(r, "device", "fl_dp") for r in runs]
    if all(x is None for x in record + device):
        page.absent("The attacks were not run (--attacks none).")
        return
    delta = finite(get(runs[0], "privacy", "delta")) or 0.0
    page.figure(SWEEP_FIGURES["advantage"],
                plots.sweep_advantage(eps, _nan([x and x[0] for x in record]),
                                      _nan([x and x[0] for x in device]),
                                      _nan([finite(get(r, "privacy", "epsilon")) for r in runs]),
                                      delta),
                "The best membership attack's advantage against the FL + DP model at each "
                "budget; the dotted line is (e^epsilon - 1 + 2 delta) / (e^epsilon + 1) at the "
                "accountant's epsilon, for reference only: that epsilon counts the amplification "
                "of random sampling, and the attack's members are devices known to have taken "
                "part, so crossing the line does not by itself show the accounting wrong (the "
                "epsilon audit above tests that).")


def _table(page: Page, runs: list[dict[str, Any]], eps: list[float]) -> None:
    page.heading("Runs")
    rows = []
    for e, r in zip(eps, runs):
        rec, dev = best_advantage(r, "record", "fl_dp"), best_advantage(r, "device", "fl_dp")
        breach = get(r, "attacks", "breach")
        rows.append([f"{e:g}", fmt(number(get(r, "privacy", "epsilon")), ".3f"),
                     fmt(number(get(r, "fl_dp", "score"))),
                     fmt(number(get(r, "audit", "fl_dp", "bound")), ".3f"),
                     "-" if rec is None else f"{rec[0]:.3f} ({rec[1]})",
                     "-" if dev is None else f"{dev[0]:.3f} ({dev[1]})",
                     fmt_ci(number(get(breach, "fl_dp", "risk")),
                            interval(get(breach, "fl_dp", "ci"))),
                     fmt_ci(number(get(breach, "leakage_reduction", "fl_dp", "value")),
                            interval(get(breach, "leakage_reduction", "fl_dp", "ci")))])
    metric = str(runs[0].get("metric", "score"))
    page.table(["epsilon budget", "accountant's epsilon", f"FL + DP {metric}", "audit bound",
                "best record advantage", "best device advantage", "breach risk FL + DP",
                "leakage reduction FL + DP"], rows)
    page.paragraph(f"Without DP: centralized {fmt(_shared(runs, 'centralized'))}, "
                   f"FL {fmt(_shared(runs, 'fl'))} ({metric}).")


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]
