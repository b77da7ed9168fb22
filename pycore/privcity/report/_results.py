"""Reading a results dict (metrics.json) for the report: every section is optional, so each
accessor returns None where a value is absent or not of its kind instead of raising."""
from __future__ import annotations

import math
from typing import Any

#: The three designs every run compares, in the order the report shows them.
RUNS = ("centralized", "fl", "fl_dp")
RUN_LABELS = {"centralized": "centralized", "fl": "FL", "fl_dp": "FL + DP"}
LEVELS = {"record": "record-level (was this record in training?)",
          "device": "device-level (was this device in training?)"}


def get(results: Any, *path: str) -> Any:
    """results[path[0]][path[1]]..., or None where a key is missing or a level is no dict."""
    node = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def number(value: Any) -> float | None:
    """value as a float when it is a real number (bool excluded), else None. NaN and inf pass:
    the formatter says what they mean."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def finite(value: Any) -> float | None:
    """value as a finite float, else None (what a plot can draw)."""
    x = number(value)
    return x if x is not None and math.isfinite(x) else None


def series(values: Any) -> list[float]:
    """A list of numbers as floats, NaN for each entry that is not a finite number (a gap in a
    line plot, never a crash)."""
    if not isinstance(values, list):
        return []
    return [v if (v := finite(x)) is not None else math.nan for x in values]


def interval(value: Any) -> tuple[float, float] | None:
    """A confidence interval [lo, hi] as two finite floats, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    lo, hi = finite(value[0]), finite(value[1])
    return None if lo is None or hi is None else (lo, hi)


def best_advantage(results: Any, level: str, run: str) -> tuple[float, str] | None:
    """The largest membership advantage any attack reached against ``run``'s model at ``level``
    ("record" or "device"), with the attack's name; None when no attack ran there."""
    attacks = get(results, "attacks", "membership", level, run)
    if not isinstance(attacks, dict):
        return None
    found = [(v, str(name)) for name, a in attacks.items()
             if (v := finite(get(a, "advantage"))) is not None]
    return max(found) if found else None
