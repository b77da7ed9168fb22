"""The attack suite's cost beside the simulation's own (issue 15): ``privcity simulate`` at its
defaults (2,000 devices, 40 rounds, --attacks fast), the attacks and the epsilon audit timed
inside the same run as the simulation they attack.

Run: python -m pytest bench/test_attacks.py -p no:cacheprovider   (about a minute)
Target: the attacks (update inversion, membership inference with shadow models, the audit) take
at most 30% of the run's wall time without them. Reported beside it: --attacks full's share.
"""
from __future__ import annotations

import statistics

import pytest

from privcity.sim import load_config, simulate

TARGET = 0.30
ROUNDS = 3


@pytest.mark.parametrize("level", ["fast", "full"])
def test_attack_suite_share_of_the_run(benchmark, tmp_path, report_line, level):
    # Prepare
    cfg = load_config(None, out=str(tmp_path / level), attacks=level, report=False)
    shares, attack_s, run_s = [], [], []

    def one_run() -> None:
        res = simulate(cfg, progress=False)
        att = res["attacks"]
        attack_s.append(att["seconds"])
        run_s.append(att["run_seconds"])
        shares.append(att["seconds"] / att["run_seconds"])

    # Execute
    benchmark.pedantic(one_run, rounds=ROUNDS, iterations=1)

    # Assert
    share = statistics.median(shares)
    report_line(f"attacks {level}: median {statistics.median(attack_s):.2f} s beside the "
                f"simulation's {statistics.median(run_s):.2f} s: {share:.0%} of its time "
                f"(target for fast: <= {TARGET:.0%})")
    if level == "fast":
        assert share <= TARGET
