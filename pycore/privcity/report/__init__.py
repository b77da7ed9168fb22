"""The report of a run or a privacy-utility sweep: one self-contained HTML page a city engineer
can open (every plot embedded as a PNG), with the same PNGs beside it.

Usage::

    from privcity.report import render_report, render_sweep
    render_report(results, "runs/a")           # runs/a/report.html, runs/a/report/*.png
    render_sweep([r_05, r_1, r_2], "runs/sw")  # one page for runs at several epsilons

``results`` is what ``privcity.sim.simulate`` returns (metrics.json). Plots are drawn with
matplotlib's Agg canvas without pyplot, so rendering leaves the process's backend alone.
"""
from __future__ import annotations

from .run import render_report as render_report
from .sweep import render_sweep as render_sweep

__all__ = ["render_report", "render_sweep"]
