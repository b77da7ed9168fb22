"""Scale of ``privcity simulate``: 100,000 devices sampled at q = 0.01 for 10 rounds under
``mpiexec -n 2`` (rank 0 aggregates, rank 1 hosts the devices), the whole run timed once.

Run: python -m pytest bench/test_simulate.py -p no:cacheprovider   (about two minutes)
Targets (the issue's scale case):
  * it fits in 4 GiB: the peak resident set (VmHWM) of rank 0 plus that of rank 1, polled
    from /proc while the run goes (mpiexec's own rusage would only show its largest child);
  * it finishes in minutes: wall time <= 600 s.
Reported beside them: reporting device-rounds per second (the FL and FL+DP runs' reported
updates over the wall time), and the test score of centralized, FL and FL+DP training.
Under --benchmark-disable (CI smoke) a tiny city (2,000 devices, 2 rounds) goes through the
same path, and metrics.json is checked as in the full run. Needs an mpiexec (pip install
mpich, or the test extra); skipped without one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

DEVICES, SAMPLE_RATE, ROUNDS = 100_000, 0.01, 10
SMOKE_DEVICES, SMOKE_ROUNDS = 2_000, 2
MEMORY_TARGET = 4 * 2**30  # bytes, ranks together
WALL_TARGET = 600.0  # seconds ("minutes")
GROUP = "simulate 100k q=0.01 x10 vs 600 s budget"
GiB = 2**30


def _tool(name: str) -> str | None:
    """``name`` next to this interpreter (the pip wheels' scripts), else on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _privcity() -> list[str]:
    entry = _tool("privcity")
    return [entry] if entry else [sys.executable, "-m", "privcity.cli"]


# --- peak memory of the process tree ------------------------------------------------------------

def _children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/*/stat (/proc/<pid>/task/*/children needs CONFIG_PROC_CHILDREN,
    which not every kernel has)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rpartition(b")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(root: int) -> list[int]:
    children = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _rank(pid: int) -> int | None:
    """The MPI rank of ``pid`` from its environment (MPICH/Hydra or Open MPI), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    except OSError:
        return None
    for key in (b"PMI_RANK", b"OMPI_COMM_WORLD_RANK"):
        if key in env:
            return int(env[key])
    return None


class MemoryPoller(threading.Thread):
    """Polls VmHWM (peak resident set) and VmRSS of every process under ``root`` until
    stopped. ``peaks``: pid -> (label, peak bytes), label "rank N" for an MPI rank, else the
    process name (mpiexec, hydra_pmi_proxy); ``concurrent``: the largest sum of the ranks'
    VmRSS seen in one sample (the sum of per-rank peaks bounds it from above)."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self.concurrent = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        rss_now = 0
        for pid in _descendants(self.root):
            try:
                status = _status(pid)
                hwm = int(status["VmHWM"].split()[0]) * 1024
                rss = int(status["VmRSS"].split()[0]) * 1024
            except (OSError, KeyError, ValueError):  # gone, or a zombie (no mm)
                continue
            rank = _rank(pid)
            label = f"rank {rank}" if rank is not None else status.get("Name", "?").strip()
            if rank is not None:
                rss_now += rss
            # After exec (a launcher script becoming python) the label and the mm change.
            old = self.peaks.get(pid, (label, 0))[1]
            self.peaks[pid] = (label, max(old, hwm))
        self.concurrent = max(self.concurrent, rss_now)

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def rank_peaks(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for label, peak in self.peaks.values():
            if label.startswith("rank "):
                out[label] = max(out.get(label, 0), peak)
        return dict(sorted(out.items(), key=lambda kv: int(kv[0].split()[1])))

    def other_peaks(self) -> int:
        return sum(peak for label, peak in self.peaks.values() if not label.startswith("rank "))


# --- the benchmark --------------------------------------------------------------------------------

def _measured(seconds: float) -> SimpleNamespace:
    """Stands in for a benchmark in record(): a time measured here, not by pytest-benchmark."""
    return SimpleNamespace(stats=SimpleNamespace(stats=SimpleNamespace(median=seconds)))


def _check_metrics(m: dict, devices: int, rounds: int) -> None:
    assert m["ranks"] == 2
    assert m["devices"] == devices
    assert m["wall_seconds"] > 0
    for run in ("fl", "fl_dp"):
        assert m[run]["rounds_run"] == rounds, m[run]["stopped"]
        assert m[run]["bytes_total"] > 0
        assert sum(r["reported"] for r in m["rounds"][run]) > 0
        assert math.isfinite(m[run]["score"])
    assert m["bandwidth"]["fl_bytes_total"] > 0 and m["bandwidth"]["fl_dp_bytes_total"] > 0
    assert m["bandwidth"]["raw_upload_bytes"] > 0
    assert 0 < m["privacy"]["epsilon"] <= m["privacy"]["epsilon_budget"]
    assert math.isfinite(m["centralized"]["score"])


def test_simulate_scale(benchmark, record, report_line, tmp_path):
    mpiexec = _tool("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec found (pip install mpich)")
    full = not benchmark.disabled  # --benchmark-disable: the tiny smoke city
    devices, rounds = (DEVICES, ROUNDS) if full else (SMOKE_DEVICES, SMOKE_ROUNDS)
    out = tmp_path / "out"
    cmd = [mpiexec, "-n", "2", *_privcity(), "simulate", "--devices", str(devices),
           "--sample-rate", str(SAMPLE_RATE), "--rounds", str(rounds), "--out", str(out),
           "--quiet"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    benchmark.group = GROUP
    polled = os.path.isdir("/proc/self")

    def run() -> tuple[subprocess.CompletedProcess, float, MemoryPoller | None]:
        with open(tmp_path / "stdout", "w+") as so, open(tmp_path / "stderr", "w+") as se:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=so, stderr=se, text=True)
            poller = MemoryPoller(proc.pid) if polled else None
            if poller:
                poller.start()
            try:
                code = proc.wait(timeout=3600 if full else 600)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if poller:
                    poller.stop()
            wall = time.perf_counter() - t0
            so.seek(0)
            se.seek(0)
            done = subprocess.CompletedProcess(cmd, code, so.read(), se.read())
        return done, wall, poller

    proc, wall, poller = benchmark.pedantic(run, rounds=1, iterations=1)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = json.loads((out / "metrics.json").read_text())
    _check_metrics(m, devices, rounds)

    reported = {run_: sum(r["reported"] for r in m["rounds"][run_]) for run_ in ("fl", "fl_dp")}
    total = sum(reported.values())
    sim_wall = m["wall_seconds"]
    ranks = poller.rank_peaks() if poller else {}
    rank_total = sum(ranks.values())
    figures = {
        "devices": devices, "rounds": rounds, "task": m["config"]["task"],
        "wall_seconds": sim_wall, "process_wall_seconds": wall,
        "peak_rss_bytes": ranks, "peak_rss_ranks_total_bytes": rank_total,
        "peak_rss_concurrent_bytes": poller.concurrent if poller else None,
        "device_rounds": reported, "device_rounds_per_second": total / sim_wall,
        "scores": {k: m[k]["score"] for k in ("centralized", "fl", "fl_dp")},
        "epsilon": m["privacy"]["epsilon"],
    }
    benchmark.extra_info.update(figures)

    head = "simulate scale" if full else "simulate smoke (--benchmark-disable)"
    cfg = m["config"]
    report_line(f"{head}: mpiexec -n 2, {devices:,} devices, q={SAMPLE_RATE}, {rounds} rounds, "
                f"task {cfg['task']} (local_epochs {cfg['local_epochs']}, lr {cfg['lr']}, "
                f"model {m['n_params']} params)")
    wall_verdict = (f", target <= {WALL_TARGET:g} s: "
                    f"{'met' if sim_wall <= WALL_TARGET else 'MISSED'}")
    report_line(f"  wall {sim_wall:.1f} s (simulate's wall_seconds; {wall:.1f} s with "
                f"interpreter start-up){wall_verdict if full else ''}")
    if ranks:
        per = ", ".join(f"{label} {peak / GiB:.2f} GiB" for label, peak in ranks.items())
        mem_verdict = (f", target <= {MEMORY_TARGET / GiB:g} GiB: "
                       f"{'met' if rank_total <= MEMORY_TARGET else 'MISSED'}")
        report_line(f"  peak RSS (VmHWM): {per}; ranks total {rank_total / GiB:.2f} GiB "
                    f"(largest concurrent sum seen {poller.concurrent / GiB:.2f} GiB; launcher "
                    f"{poller.other_peaks() / 2**20:.0f} MiB){mem_verdict if full else ''}")
    else:
        report_line("  peak RSS: not measured (no /proc, or no rank found under mpiexec)")
    report_line(f"  device-rounds: fl {reported['fl']:,} + fl_dp {reported['fl_dp']:,} = "
                f"{total:,} -> {total / sim_wall:.0f} /s over the wall (per run, over the same "
                f"wall: fl {reported['fl'] / sim_wall:.0f} /s, fl_dp "
                f"{reported['fl_dp'] / sim_wall:.0f} /s; metrics.json has no per-run wall time)")
    rank0 = {run_: {k: sum(r[f"{k}_seconds"] for r in m["rounds"][run_])
                    for k in ("enrol", "aggregation", "accounting")} for run_ in ("fl", "fl_dp")}
    report_line(f"  rank 0: centralized {m['centralized']['cpu_seconds']:.1f} s CPU; enrol "
                f"{rank0['fl']['enrol']:.1f} + {rank0['fl_dp']['enrol']:.1f} s, aggregation "
                f"{rank0['fl']['aggregation']:.1f} + {rank0['fl_dp']['aggregation']:.1f} s, "
                f"accounting {rank0['fl_dp']['accounting']:.1f} s (fl + fl_dp)")
    report_line(f"  test {m['metric']}: centralized {m['centralized']['score']:.4f}, "
                f"FL {m['fl']['score']:.4f}, FL+DP {m['fl_dp']['score']:.4f} "
                f"(epsilon {m['privacy']['epsilon']:.3f}, delta {m['privacy']['delta']:g})")
    if full:
        if polled:
            assert ranks, "no MPI rank found under mpiexec: peak memory not measured"
        record(_measured(WALL_TARGET), GROUP, "anchor")
        record(_measured(sim_wall), GROUP, "mpiexec -n 2", 1.0)
