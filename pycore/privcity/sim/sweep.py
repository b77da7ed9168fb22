"""``privcity sweep``: the privacy-utility curve, one simulation per epsilon in one report."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any, Sequence

from .config import SimConfig
from .runner import simulate

__all__ = ["parse_epsilons", "sweep", "sweep_table"]


def parse_epsilons(text: str | Sequence[float]) -> list[float]:
    """"0.5,1,2" (or a sequence) -> sorted distinct epsilons, each finite and > 0."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            e = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"epsilon list: {item!r} is not a number") from None
        if not (math.isfinite(e) and e > 0):
            raise ValueError(f"epsilon list: every epsilon must be finite and > 0, got {item!r}")
        out.append(e)
    if not out:
        raise ValueError("epsilon list: give at least one epsilon, e.g. 0.5,1,2,4,8")
    if len(set(out)) != len(out):
        raise ValueError(f"epsilon list: {text!r} repeats an epsilon")
    return sorted(out)


def sweep(cfg: SimConfig, epsilons: Sequence[float], *, comm: Any = None,
          progress: bool = True) -> list[dict[str, Any]] | None:
    """One run per epsilon into ``cfg.out``/epsilon-E/ (each with its metrics.json, report and
    models); the centralized and FL runs are trained once and shared (only the DP run depends
    on epsilon). Rank 0 writes ``cfg.out``/report.html (the curve) and sweep.json and returns
    the runs' results; other ranks return None."""
    cfg.validate()
    if cfg.noise_multiplier:
        raise ValueError("config field 'noise_multiplier': a sweep over epsilon calibrates the "
                         "noise to each epsilon; leave it 0")
    if "fl_dp" not in cfg.run_set():
        raise ValueError("config field 'runs': a sweep over epsilon needs the fl_dp run")
    eps = parse_epsilons(epsilons)
    rank = 0 if comm is None else comm.Get_rank()
    shared: dict[str, Any] = {}
    runs = []
    for i, e in enumerate(eps):
        if progress and rank == 0:
            sys.stderr.write(f"[sweep  ] epsilon {e:g} ({i + 1} of {len(eps)})\n")
        sub = dataclasses.replace(cfg, epsilon=e, out=os.path.join(cfg.out, run_folder(e)))
        runs.append(simulate(sub, comm=comm, progress=progress, shared=shared))
    if rank != 0:
        return None
    from ..report import render_sweep
    path = render_sweep(runs, cfg.out) if cfg.report else None
    with open(os.path.join(cfg.out, "sweep.json"), "w") as f:
        json.dump({"epsilons": eps, "report": path,
                   "runs": [os.path.join(cfg.out, run_folder(e), "metrics.json") for e in eps],
                   "table": _rows(runs)}, f, indent=1)
    for r in runs:
        r["sweep_report"] = path
    return runs


def run_folder(epsilon: float) -> str:
    """The run's folder: epsilon-E with E to 12 significant digits (so 1 and 1.0000001 differ)."""
    return f"epsilon-{epsilon:.12g}"


def _rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        audit = (r.get("audit") or {}).get("fl_dp") or {}
        breach = ((r.get("attacks") or {}).get("breach") or {}).get("fl_dp") or {}
        rows.append({"epsilon_budget": r["config"]["epsilon"],
                     "epsilon": r["privacy"]["epsilon"], "score": r["fl_dp"]["score"],
                     "audit_bound": audit.get("bound"), "breach_risk": breach.get("risk")})
    return rows


def sweep_table(runs: list[dict[str, Any]]) -> str:
    """The sweep as a text table (what ``privcity sweep`` prints)."""
    m = runs[0]["metric"]
    head = (f"privcity sweep: {len(runs)} epsilons, task {runs[0]['config']['task']}; "
            f"centralized {m} {_num(runs[0]['centralized']['score'])}, FL "
            f"{_num(runs[0]['fl']['score'])} (shared by every run)")
    rows = [("epsilon budget", "epsilon spent", f"FL + DP {m}", "audit bound", "breach risk")]
    for row in _rows(runs):
        rows.append((f"{row['epsilon_budget']:g}", _num(row["epsilon"]), _num(row["score"]),
                     _num(row["audit_bound"]), _num(row["breach_risk"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return head + "\n" + "\n".join(lines)


def _num(x: Any) -> str:
    if x is None:
        return "-"
    x = float(x)
    return f"{x:.4f}" if math.isfinite(x) else "n/a"
