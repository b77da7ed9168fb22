"""Cost of ``privcity simulate``'s per-round checkpoints at 100,000 devices under
``mpiexec -n 2`` (q = 0.01: about 1,000 devices a round, 10 rounds of FL and 10 of FL + DP).

Run: python -m pytest bench/test_simulate_checkpoint.py -p no:cacheprovider   (about 3 minutes)
Target (issue 18): the checkpoint (appending the round to OUT/rounds.jsonl and replacing
OUT/checkpoint.npz, each fsynced) costs under 2% of the round time. Measured two ways, both
printed:
  * in the run: rank 0's seconds in the per-round writes (metrics.json "checkpoint":
    round_seconds) over the wall time of the federated rounds (phases fl + fl_dp);
  * beside it: the same run without checkpoints (simulate(..., checkpoint=False)), its
    federated wall time against the checkpointed run's (a difference of two noisy runs on a
    shared machine: a sanity check of the first figure, not a sharper one).
Both runs leave out the centralized baseline, the attacks, the report and the trace risk, which
do not change with checkpoints. Under --benchmark-disable (CI smoke) 2,000 devices, 2 rounds.
Needs an mpiexec (pip install mpich); skipped without one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

DEVICES, SAMPLE_RATE, ROUNDS = 100_000, 0.01, 10
SMOKE_DEVICES, SMOKE_ROUNDS = 2_000, 2
SHARE_TARGET = 0.02
GROUP = "simulate 100k checkpoint cost"

# The run, one process per rank: checkpoint on or off (simulate's keyword; no flag turns
# checkpoints off, since such a run could not be resumed).
DRIVER = """
import sys
from privcity.sim import load_config, mpi_world, simulate
out, devices, rounds, checkpoint = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = load_config(None, devices=devices, sample_rate={q}, rounds=rounds, runs="fl,fl_dp",
                  attacks="none", report=False, risk_people=0, out=out)
simulate(cfg, comm=mpi_world(), progress=False, checkpoint=checkpoint == "on")
"""


def _tool(name: str) -> str | None:
    """``name`` next to this interpreter (the pip wheels' scripts), else on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _measured(seconds: float) -> SimpleNamespace:
    """Stands in for a benchmark in record(): a time measured here, not by pytest-benchmark."""
    return SimpleNamespace(stats=SimpleNamespace(stats=SimpleNamespace(median=seconds)))


def _run(mpiexec: str, tmp: Path, name: str, devices: int, rounds: int, checkpoint: bool,
         timeout: float) -> dict:
    out = tmp / name
    script = tmp / "driver.py"
    script.write_text(DRIVER.format(q=SAMPLE_RATE))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    t0 = time.perf_counter()
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script), str(out),
                           str(devices), str(rounds), "on" if checkpoint else "off"],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = json.loads((out / "metrics.json").read_text())
    m["process_wall_seconds"] = time.perf_counter() - t0
    return m


def test_checkpoint_cost_per_round(benchmark, record, report_line, tmp_path):
    mpiexec = _tool("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec found (pip install mpich)")
    full = not benchmark.disabled
    devices, rounds = (DEVICES, ROUNDS) if full else (SMOKE_DEVICES, SMOKE_ROUNDS)
    timeout = 3600 if full else 600
    benchmark.group = GROUP

    def both() -> tuple[dict, dict]:
        # without first: it also warms the page cache and the compiled kernels for the other
        plain = _run(mpiexec, tmp_path, "off", devices, rounds, False, timeout)
        kept = _run(mpiexec, tmp_path, "on", devices, rounds, True, timeout)
        return plain, kept

    plain, kept = benchmark.pedantic(both, rounds=1, iterations=1)

    # Assert: the runs are the same run, and the checkpointed one wrote every round
    assert kept["final_params_sha256"] == plain["final_params_sha256"]
    assert "checkpoint" not in plain
    ck = kept["checkpoint"]
    n_rounds = kept["fl"]["rounds_run"] + kept["fl_dp"]["rounds_run"]
    assert ck["rounds"] == n_rounds == 2 * rounds
    assert (tmp_path / "on" / "rounds.jsonl").read_bytes().count(b"\n") == n_rounds
    assert not (tmp_path / "off" / "rounds.jsonl").exists()

    fed = {k: m["phases"]["fl"] + m["phases"]["fl_dp"] for k, m in (("on", kept),
                                                                        ("off", plain))}
    share = ck["round_seconds"] / fed["on"]
    beside = (fed["on"] - fed["off"]) / fed["off"]
    per_round = ck["round_seconds"] / n_rounds
    benchmark.extra_info.update(devices=devices, rounds=n_rounds, share=share,
                                share_beside=beside, checkpoint_seconds_per_round=per_round,
                                checkpoint_bytes=ck["bytes"], federated_wall=fed)
    head = "simulate checkpoint cost" if full else "simulate checkpoint smoke (--benchmark-disable)"
    verdict = f", target < {SHARE_TARGET:.0%}: {'met' if share < SHARE_TARGET else 'MISSED'}"
    report_line(f"{head}: mpiexec -n 2, {devices:,} devices, q={SAMPLE_RATE}, {rounds} rounds "
                f"of FL and of FL + DP, model {kept['n_params']} params")
    report_line(f"  per round: {per_round * 1e3:.2f} ms writing rounds.jsonl + checkpoint.npz "
                f"({ck['bytes']:,} B) against {fed['on'] / n_rounds * 1e3:.0f} ms a round: "
                f"{share:.2%} of the round time{verdict if full else ''}")
    report_line(f"  beside the run without checkpoints: federated wall {fed['on']:.2f} s "
                f"against {fed['off']:.2f} s ({beside:+.2%}; two runs' noise included)")
    if full:  # (no target on the ratio: the in-run share above is the measured figure)
        record(_measured(fed["off"]), GROUP, "anchor")
        record(_measured(fed["on"]), GROUP, "with checkpoints")
