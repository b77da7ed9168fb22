"""The report's figures, each returned as PNG bytes.

Figures are drawn on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never through
pyplot: importing or running privcity leaves the user's matplotlib backend and pyplot state as
they were (``matplotlib.use`` would change them for the whole process).
Text taken from results goes through :func:`_plain` (a ``$`` would start mathtext, and a label
such as ``$\\frac{`` would stop the rendering).
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (FixedFormatter, FixedLocator, LogLocator, MaxNLocator,
                               NullFormatter)

from ._results import RUN_LABELS, finite, get, interval, series

__all__ = ["audit_rounds", "cost_bars", "inversion_bars", "roc_panels", "score_rounds",
           "sweep_advantage", "sweep_audit", "sweep_score"]

DPI = 100
COLORS = {"centralized": "#555555", "fl": "#1f77b4", "fl_dp": "#d62728"}
ATTACK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


def _figure(width: float, height: float, ncols: int = 1, *, top: float = 0.35,
            left: float = 0.75, wspace: float = 0.25, **kw: Any) -> tuple[Figure, Any]:
    """A figure of ``ncols`` axes in a row with fixed margins (inches): constrained layout
    would double the time of every figure, and these figures' text is known in advance."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = {"left": left / width, "right": 1.0 - 0.15 / width, "bottom": 0.55 / height,
            "top": 1.0 - top / height, "wspace": wspace}
    axes = fig.subplots(1, ncols, squeeze=False, gridspec_kw=grid, **kw)[0]
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _plain(text: Any) -> str:
    """Text from results as matplotlib shows it literally."""
    return str(text).replace("$", r"\$")


def score_rounds(results: dict[str, Any]) -> bytes:
    """Test score per round of FL and FL + DP, the centralized score as a horizontal line."""
    metric = _plain(results.get("metric", "score"))
    fig, (ax,) = _figure(7.0, 3.8)
    drawn = []
    for run in ("fl", "fl_dp"):
        rounds = get(results, "rounds", run) or []
        xs = [r.get("round", i + 1) for i, r in enumerate(rounds) if isinstance(r, dict)]
        ys = series([r.get("score") for r in rounds if isinstance(r, dict)])
        ax.plot(xs, ys, marker="o", ms=3, color=COLORS[run], label=RUN_LABELS[run])
        drawn += [y for y in ys if not math.isnan(y)]
    central = finite(get(results, "centralized", "score"))
    if central is not None:
        ax.axhline(central, color=COLORS["centralized"], ls="--", label="centralized")
        drawn.append(central)
    if metric == "r2" and drawn and min(drawn) < -1.0:
        ax.set_ylim(bottom=-1.0)  # a diverged run would flatten every other line
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def _roc_points(attack: Any) -> tuple[np.ndarray, np.ndarray] | None:
    fpr, tpr = series(get(attack, "roc", "fpr")), series(get(attack, "roc", "tpr"))
    if not fpr or len(fpr) != len(tpr):
        return None
    f, t = np.asarray(fpr), np.asarray(tpr)
    keep = (f > 0) & (t > 0)  # log axes: (0, 0) and the zero-rate steps have no place on them
    return (f[keep], t[keep]) if keep.any() else None


def _log_axes(ax: Any, floor: float) -> None:
    """Both axes log from ``floor`` to 1, decades labelled in plain numbers: matplotlib's
    default 10^k labels go through mathtext, which made a 3-panel ROC figure take over a
    second to lay out."""
    decades = [10.0 ** k for k in range(round(math.log10(floor)), 1)]
    labels = [f"{d:g}" for d in decades]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(decades))
        axis.set_major_formatter(FixedFormatter(labels))
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())


def roc_panels(level: dict[str, Any], title: str) -> bytes:
    """One log-log ROC panel per model of ``level`` (membership["record"] or ["device"]), one
    curve per attack, the diagonal as chance (Carlini et al. 2022 draw them so: what matters is
    the TPR at low FPR)."""
    runs = [r for r in RUN_LABELS if isinstance(level.get(r), dict)]
    runs += [r for r in level if r not in runs and isinstance(level[r], dict)]
    curves = {run: {name: pts for name, a in level[run].items()
                    if (pts := _roc_points(a)) is not None} for run in runs}
    lows = [min(f.min(), t.min()) for c in curves.values() for f, t in c.values()]
    floor = 10.0 ** math.floor(math.log10(max(min(lows, default=1e-3), 1e-6)))
    fig, axes = _figure(3.6 * max(len(runs), 1), 4.0, max(len(runs), 1), top=0.65, left=0.9,
                        wspace=0.12, sharey=True)
    for ax, run in zip(axes, runs):
        for i, (name, (f, t)) in enumerate(curves[run].items()):
            auc = finite(get(level, run, name, "auc"))
            label = _plain(name) + (f" (AUC {auc:.3f})" if auc is not None else "")
            ax.plot(f, t, color=ATTACK_COLORS[i % len(ATTACK_COLORS)], lw=1.4, label=label)
        ax.plot([floor, 1.0], [floor, 1.0], color="#999999", ls=":", lw=1, label="chance")
        _log_axes(ax, floor)
        ax.set_title(f"{_plain(RUN_LABELS.get(run, run))} model", fontsize="medium")
        ax.set_xlabel("false positive rate")
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.legend(loc="lower right", fontsize="x-small")
    axes[0].set_ylabel("true positive rate")
    fig.suptitle(_plain(title), fontsize="medium", y=1.0 - 0.08 / 4.0, va="top")
    return _png(fig)


def audit_rounds(audit: dict[str, Any]) -> bytes:
    """The audit's empirical lower bound per round (FL, FL + DP) against the accountant's
    epsilon per round; the title says so when the bound exceeds the epsilon."""
    fig, (ax,) = _figure(7.0, 3.8)
    conf = finite(audit.get("confidence"))
    at = f" ({conf:.0%})" if conf is not None else ""
    lines = (("fl", "bound_per_round", f"audit lower bound{at}, FL (no DP)", "-"),
             ("fl_dp", "bound_per_round", f"audit lower bound{at}, FL + DP", "-"),
             ("fl_dp", "epsilon_per_round", "accountant's epsilon, FL + DP", "--"))
    for run, key, label, style in lines:
        ys = series(get(audit, run, key))
        if ys:
            color = "#000000" if key == "epsilon_per_round" else COLORS[run]
            ax.plot(range(1, len(ys) + 1), ys, ls=style, marker="o", ms=3, color=color,
                    label=label)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("epsilon")
    ax.set_ylim(bottom=0.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if get(audit, "fl_dp", "exceeded") is True:
        ax.set_title("THE AUDIT'S BOUND EXCEEDS THE ACCOUNTANT'S EPSILON", color="#b00020",
                     fontweight="bold")
    return _png(fig)


def _bars(ax: Any, labels: Sequence[str], values: Sequence[float | None], colors: Sequence[str],
          unit: str, spec: str) -> None:
    heights = [v if v is not None else 0.0 for v in values]
    bars = ax.bar(range(len(labels)), heights, color=colors)
    ax.bar_label(bars, labels=["n/a" if v is None else format(v, spec) for v in values],
                 fontsize="x-small", padding=2)
    ax.set_xticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylabel(unit)
    ax.margins(y=0.15)


def cost_bars(results: dict[str, Any]) -> bytes:
    """Bytes on the wire (raw upload, FL, FL + DP), device CPU per round and the device's
    privacy latency p50/p99 (FL, FL + DP)."""
    fig, (a_bytes, a_cpu, a_lat) = _figure(10.5, 3.4, 3, wspace=0.42)
    sent = [finite(get(results, "bandwidth", "raw_upload_bytes")),
            finite(get(results, "fl", "bytes_total")), finite(get(results, "fl_dp", "bytes_total"))]
    _bars(a_bytes, ["raw upload", "FL", "FL + DP"], [None if v is None else v / 1e3 for v in sent],
          [COLORS["centralized"], COLORS["fl"], COLORS["fl_dp"]], "kB sent", ",.1f")
    a_bytes.set_title("bytes on the wire", fontsize="medium")
    cpu = [finite(get(results, r, "device_train_cpu_seconds_mean")) for r in ("fl", "fl_dp")]
    _bars(a_cpu, ["FL", "FL + DP"], [None if v is None else v * 1e3 for v in cpu],
          [COLORS["fl"], COLORS["fl_dp"]], "ms per device round", ".3f")
    a_cpu.set_title("device training CPU", fontsize="medium")
    lat = [(finite(get(results, r, "device_privacy_seconds", "p50")),
            finite(get(results, r, "device_privacy_seconds", "p99"))) for r in ("fl", "fl_dp")]
    labels = ["FL\np50", "FL\np99", "FL + DP\np50", "FL + DP\np99"]
    values = [None if v is None else v * 1e3 for pair in lat for v in pair]
    _bars(a_lat, labels, values, [COLORS["fl"], "#9ecae1", COLORS["fl_dp"], "#fc9272"],
          "ms per device round", ".3f")
    secure = bool(get(results, "config", "secure_aggregation"))
    a_lat.set_title("device privacy latency (clip + " + ("secagg)" if secure else "seal)"),
                    fontsize="medium")
    return _png(fig)


def inversion_bars(views: dict[str, Any], tolerance: float | None) -> bytes:
    """Share of records the update inversion recovered, per view of the server, with the
    95% interval as error bars."""
    names = [k for k in views if isinstance(views[k], dict)]
    shares = [finite(get(views, k, "recovered")) for k in names]
    lo_hi = [interval(get(views, k, "ci")) for k in names]
    err = np.array([[max(s - ci[0], 0.0), max(ci[1] - s, 0.0)] if s is not None and ci
                    else [0.0, 0.0] for s, ci in zip(shares, lo_hi)]).T.reshape(2, -1)
    fig, (ax,) = _figure(max(4.0, 2.0 + 1.6 * len(names)), 3.6)
    short = {"fl": "plaintext update\n(FedAvg)", "secagg": "block sum\n(SecAgg)",
             "fl_optimize": "plaintext update,\ngradient matching",
             "ddg": "noisy block sum\n(distributed DP)",
             "dp_sum": "block sum + DP noise\n(DP servers)"}
    ax.bar(range(len(names)), [s or 0.0 for s in shares], yerr=err, capsize=5,
           color=ATTACK_COLORS[:len(names)])
    for i, (s, ci) in enumerate(zip(shares, lo_hi)):  # above the error bar, not across it
        top = max(s or 0.0, ci[1] if ci else 0.0)
        ax.text(i, top + 0.02, "n/a" if s is None else f"{s:.1%}", ha="center", va="bottom",
                fontsize="small")
    ax.set_xticks(range(len(names)), [_plain(short.get(k, k)) for k in names], fontsize="small")
    ax.set_ylim(0.0, 1.12)
    tol = f" (relative L2 error < {tolerance:g})" if tolerance is not None else ""
    ax.set_ylabel("records recovered" + _plain(tol), fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def sweep_score(eps: Sequence[float], dp_scores: Sequence[float], central: float | None,
                fl: float | None, metric: str) -> bytes:
    """FL + DP's score against the epsilon budget (log x), the centralized and FL scores as
    horizontal lines."""
    fig, (ax,) = _figure(7.0, 3.8)
    ax.plot(eps, dp_scores, marker="o", color=COLORS["fl_dp"], label="FL + DP")
    for value, run in ((central, "centralized"), (fl, "fl")):
        if value is not None:
            ax.axhline(value, ls="--", color=COLORS[run], label=f"{RUN_LABELS[run]} (no DP)")
    ax.set_xscale("log")
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.minorticks_off()
    ax.set_xlabel("epsilon budget")
    ax.set_ylabel(f"test {_plain(metric)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def sweep_audit(eps: Sequence[float], accountant: Sequence[float],
                bound: Sequence[float]) -> bytes:
    """The accountant's epsilon and the audit's lower bound (FL + DP) per epsilon budget."""
    fig, (ax,) = _figure(7.0, 3.8)
    ax.plot(eps, accountant, marker="o", ls="--", color="#000000", label="accountant's epsilon")
    if any(not math.isnan(b) for b in bound):
        ax.plot(eps, bound, marker="s", color=COLORS["fl_dp"], label="audit lower bound")
    ax.set_xscale("log")
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.minorticks_off()
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("epsilon budget")
    ax.set_ylabel("epsilon")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def sweep_advantage(eps: Sequence[float], record: Sequence[float], device: Sequence[float],
                    accountant: Sequence[float], delta: float) -> bytes:
    """Best membership advantage against the FL + DP model per epsilon budget, beside the
    advantage (e^eps - 1 + 2 delta) / (e^eps + 1) that (eps, delta)-DP allows a device-level
    attack (add or remove a device: the relation DP-FedAvg is accounted for), at each run's
    accountant's epsilon (at most the budget)."""
    fig, (ax,) = _figure(7.0, 3.8)
    for ys, label, color in ((record, "record-level", ATTACK_COLORS[0]),
                             (device, "device-level", ATTACK_COLORS[1])):
        if any(not math.isnan(y) for y in ys):
            ax.plot(eps, ys, marker="o", color=color, label=f"best attack, {label}")
    e = np.asarray(accountant, dtype=np.float64)
    ax.plot(eps, (np.expm1(e) + 2 * delta) / (np.exp(e) + 1), ls=":", marker=".",
            color="#000000", label="most DP allows (device-level)")
    ax.set_xscale("log")
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.minorticks_off()
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("epsilon budget")
    ax.set_ylabel("membership advantage (TPR - FPR)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)
