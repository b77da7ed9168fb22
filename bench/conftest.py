"""Shared bench machinery: every benchmark records its median under a (group, role) key, and
the session ends with a table of privcity / anchor ratios (throughput, higher is better)."""
from __future__ import annotations

import collections

import pytest

# group -> role -> (median seconds, target ratio or None)
_RESULTS: dict[str, dict[str, tuple[float, float | None]]] = collections.defaultdict(dict)


@pytest.fixture
def record():
    """record(benchmark, group, role, target=None) after benchmark(...) has run.

    role "anchor" is the reference; any other role is compared against it.
    """

    def _record(benchmark, group: str, role: str, target: float | None = None) -> None:
        _RESULTS[group][role] = (benchmark.stats.stats.median, target)

    return _record


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("privcity / anchor (median time of anchor / median time of privcity)")
    for group in sorted(_RESULTS):
        roles = _RESULTS[group]
        if "anchor" not in roles:
            continue
        anchor = roles["anchor"][0]
        for role, (median, target) in sorted(roles.items()):
            if role == "anchor":
                continue
            ratio = anchor / median
            verdict = ""
            if target is not None:
                verdict = f"  target >= {target:g}x: {'met' if ratio >= target else 'MISSED'}"
            tr.write_line(f"{group:<34} {role:<22} {ratio:6.2f}x{verdict}")
