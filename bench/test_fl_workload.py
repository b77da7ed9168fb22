"""FLUTE's reference FL workload (issue 16), privcity beside a plain FedAvg loop in one run:
MNIST-shaped softmax regression (784 features, 10 classes) on 60,000 synthetic training rows
(bench/_workload.py: seeded, no download), 1,000 clients of 60 rows in non-IID label shards,
100 rounds, clients sampled at q = 0.1, 1 local epoch, batch 10, lr 0.05; and the same rows
over 10,000 clients of 6 rows, 10 rounds. The CSV (about 75,000 rows x 786 columns, 150 MB:
device, label, 784 pixels 0..255) is written once to a temp dir; load_csv's hashed split holds
out about 15,000 rows as the test set, and the shards are cut from the other 60,000.

Run: python -m pytest bench/test_fl_workload.py -p no:cacheprovider   (full: 15-30 minutes)
     PRIVCITY_BENCH_REPEATS=N sets the runs of each variant (default 3, alternating).
Every variant runs as its own child process, so its wall time and peak RSS (its VmHWM, read
as it exits) are its own:
  * privcity: ``privcity simulate --task csv`` (``--runs fl`` when the CLI has it; else the
    centralized baseline, at 1 epoch, and the DP run come along, and the table says so).
    Whole process = the child's wall; FL rounds = metrics.json's fl.wall_seconds (it
    evaluates the test set every round).
  * the anchor: bench/_workload.py's plain loop (pandas.read_csv, encoded as load_csv does,
    then ~50 lines of numpy FedAvg with the same client math, evaluated once at the end).
    It trains the same clients from the same shuffles (privcity's seeded sampling and
    per-device seeds), so its model matches privcity's to float32 rounding.
  * the same loop with Flower's ``flwr.server.strategy.aggregate.aggregate`` as the server's
    mean (pip install flwr, the bench extra; skipped without it).
  * ``privcity.data.load_csv`` against ``pandas.read_csv`` of the same file.
Targets (issue 16): load_csv <= 1.5x pandas.read_csv; FL rounds >= 2x faster than the plain
loop; FedAvg-only whole process <= 15 s. Reported: medians, ratios, per-round times, peak
RSS, each variant's test accuracy (they should agree within noise) and the largest
difference between privcity's and the plain loop's final parameters.
Under --benchmark-disable (the CI smoke, < 60 s) tiny workloads go through the same paths.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _workload as W  # noqa: E402  (bench/ is no package)

WORKLOAD = Path(__file__).with_name("_workload.py")
# (clients, rows per client, rounds): full size, then the --benchmark-disable smoke.
FULL = {"1k": (1000, 60, 100), "10k": (10_000, 6, 10)}
SMOKE = {"1k": (40, 20, 3), "10k": (300, 6, 2)}
SAMPLE_RATE, EPOCHS, BATCH, LR, SEED = 0.1, 1, 10, 0.05, 0
LOAD_TARGET = 1 / 1.5  # load_csv at most 1.5x pandas' time
ROUNDS_TARGET = 2.0  # FL rounds at least 2x faster than the plain loop
WHOLE_BUDGET = 15.0  # seconds, FedAvg alone, CSV read included
ACCURACY_TOLERANCE = 0.02  # same data, clients and shuffles: only rounding differs
MiB = 2**20


def _measured(seconds: float) -> SimpleNamespace:
    """Stands in for a benchmark in record(): a time measured here, not by pytest-benchmark."""
    return SimpleNamespace(stats=SimpleNamespace(stats=SimpleNamespace(median=seconds)))


def _repeats(full: bool) -> int:
    return int(os.environ.get("PRIVCITY_BENCH_REPEATS", "3")) if full else 1


@pytest.fixture(scope="module")
def full(request) -> bool:
    return not request.config.getoption("benchmark_disable", False)


@functools.lru_cache(maxsize=None)
def _workload_csv(folder: str, name: str, clients: int, rows: int) -> tuple[str, int]:
    """(path, bytes) of the workload's CSV for this shape, written once per session."""
    path = os.path.join(folder, f"fl-{name}.csv")
    return path, W.write_csv(W.make_workload(clients=clients, rows_per_client=rows, seed=SEED),
                             path)


@pytest.fixture(scope="module")
def workloads(full, tmp_path_factory) -> dict[str, tuple[str, int, int, int, int]]:
    """name -> (CSV path, its bytes, clients, rows per client, rounds)."""
    folder = str(tmp_path_factory.mktemp("fl-workload"))
    out = {}
    for name, (clients, rows, rounds) in (FULL if full else SMOKE).items():
        path, size = _workload_csv(folder, name, clients, rows)
        out[name] = (path, size, clients, rows, rounds)
    return out


# --- child processes ---------------------------------------------------------------------------

# Runs a module or script as __main__ and, at exit, writes its peak resident set (VmHWM of its
# own address space) to $BENCH_PEAK_FILE: rusage's ru_maxrss of a forked child would count the
# pytest process it was forked from.
_LAUNCHER = """
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as f:
        kib = next(line for line in f if line.startswith('VmHWM')).split()[1]
    with open(os.environ['BENCH_PEAK_FILE'], 'w') as g:
        g.write(kib)
atexit.register(_peak)
target, sys.argv = sys.argv[1], sys.argv[1:]
if target.endswith('.py'):
    runpy.run_path(target, run_name='__main__')
else:
    runpy.run_module(target, run_name='__main__', alter_sys=True)
"""


def _child(target: str, args: list[str], cwd: Path,
           timeout: float = 3600) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of ``python target args`` (a module or a .py
    script) in a child process, failing on a non-zero exit."""
    peak_file = cwd / "child.peak"
    peak_file.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_PEAK_FILE=str(peak_file))
    cmd = [sys.executable, "-c", _LAUNCHER, target, *args]
    with open(cwd / "child.out", "w+") as so, open(cwd / "child.err", "w+") as se:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=so, stderr=se, timeout=timeout)
        wall = time.perf_counter() - t0
        so.seek(0)
        se.seek(0)
        out, err = so.read(), se.read()
    assert proc.returncode == 0, f"{target} {' '.join(args)}\n{err[-4000:]}"
    peak = int(peak_file.read_text()) * 1024 if peak_file.exists() else 0  # 0: no /proc
    return wall, peak, out


def _script(what: str, csv: str, *extra: str) -> tuple[str, list[str]]:
    return str(WORKLOAD), [what, csv, *extra]


@functools.lru_cache(maxsize=None)
def _simulate_flags() -> frozenset[str]:
    """The options ``privcity simulate`` has (flags added meanwhile, e.g. --runs, get used)."""
    out = subprocess.run([sys.executable, "-m", "privcity.cli", "simulate", "--help"],
                         capture_output=True, text=True, check=True).stdout
    return frozenset(w.strip("[],") for w in out.split() if w.startswith(("--", "[--")))


def _privcity_cmd(csv: str, rounds: int, out: Path) -> list[str]:
    cmd = ["simulate", "--task", "csv", "--data", csv,
           "--target", "label", "--device-column", "device", "--rounds", str(rounds),
           "--sample-rate", str(SAMPLE_RATE), "--local-epochs", str(EPOCHS),
           "--batch-size", str(BATCH), "--lr", str(LR), "--seed", str(SEED),
           "--attacks", "none", "--no-report", "--quiet", "--out", str(out)]
    flags = _simulate_flags()
    if "--runs" in flags:
        cmd += ["--runs", "fl"]
    else:  # the baseline and the DP run come along: make the baseline as cheap as it goes
        cmd += ["--centralized-epochs", "1"]
    if "--risk-people" in flags:
        cmd += ["--risk-people", "0"]
    if "--overwrite" in flags:  # the repeats write one --out (a run refuses another's)
        cmd += ["--overwrite"]
    return cmd


def _run_privcity(csv: str, rounds: int, cwd: Path) -> dict:
    out = cwd / "out"
    wall, rss, _ = _child("privcity.cli", _privcity_cmd(csv, rounds, out), cwd)
    m = json.loads((out / "metrics.json").read_text())
    from privcity.models import load
    fl = m["fl"]
    assert fl["rounds_run"] == rounds, fl.get("stopped")
    return {"seconds": wall, "rounds_seconds": fl["wall_seconds"],
            "round_seconds": fl["wall_seconds"] / rounds, "rss": rss,
            "accuracy": fl["score"], "device_rounds": fl["device_rounds"],
            "inner_wall": m["wall_seconds"], "bytes_fl": fl["bytes_total"],
            "raw_bytes": m.get("bandwidth", {}).get("raw_upload_bytes", 0),
            # once in a device's life (keys, certificate), and the evaluations the loop skips
            "provision_seconds": fl.get("provision_seconds", 0.0),
            "eval_seconds": m.get("phases", {}).get("evaluation", 0.0),
            "read_seconds": m.get("phases", {}).get("read", 0.0),
            "runs": [k for k in ("centralized", "fl", "fl_dp")
                     if m.get(k) and not m[k].get("skipped")],
            "W": load(out / "models" / "fl.npz").params.reshape(W.N_FEATURES + 1, W.N_CLASSES)}


def _run_plain(what: str, csv: str, rounds: int, cwd: Path) -> dict:
    save = cwd / f"{what}.npy"
    wall, rss, out = _child(*_script(what, csv, "--rounds", str(rounds), "--sample-rate",
                                    str(SAMPLE_RATE), "--epochs", str(EPOCHS), "--batch",
                                    str(BATCH), "--lr", str(LR), "--seed", str(SEED),
                                    "--save", str(save)), cwd)
    r = json.loads(out.strip().splitlines()[-1])
    r.update(seconds=wall, inner_wall=r["seconds"], rss=rss, W=np.load(save),
             round_seconds=statistics.median(r["round_seconds"]))
    return r


# --- CSV --------------------------------------------------------------------------------------

LOAD = "FL CSV: load_csv vs pandas"


def test_load_csv_beside_pandas(benchmark, record, report_line, workloads, full, tmp_path):
    # Prepare
    csv, size, clients, rows, _ = workloads["1k"]
    times: dict[str, list[float]] = {"pandas": [], "load_csv": []}
    peaks: dict[str, list[int]] = {"pandas": [], "load_csv": []}
    shapes = {}

    def alternate() -> None:
        for what, name in (("read_csv", "pandas"), ("load_csv", "load_csv")):
            _, rss, out = _child(*_script(what, csv), tmp_path)
            r = json.loads(out.strip().splitlines()[-1])
            times[name].append(r["seconds"])
            peaks[name].append(rss)
            shapes[name] = r

    # Execute
    benchmark.group = LOAD
    benchmark.pedantic(alternate, rounds=_repeats(full), iterations=1)

    # Assert
    assert shapes["load_csv"]["train_rows"] == clients * rows
    assert shapes["load_csv"]["devices"] == clients
    n_rows = shapes["pandas"]["shape"][0]
    assert shapes["load_csv"]["train_rows"] + shapes["load_csv"]["test_rows"] == n_rows
    med = {k: statistics.median(v) for k, v in times.items()}
    floats = n_rows * W.N_FEATURES * 4
    benchmark.extra_info.update(median_seconds=med, times=times, peak_rss_bytes=peaks)
    ratio = med["load_csv"] / med["pandas"]
    report_line(f"CSV {size / 1e6:.0f} MB ({n_rows:,} rows x {W.N_FEATURES + 2} columns), "
                f"median of {len(times['pandas'])} (child processes, time inside each): "
                f"pandas.read_csv {med['pandas']:.2f} s, load_csv {med['load_csv']:.2f} s = "
                f"{ratio:.2f}x pandas (target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})")
    peak = max(peaks["load_csv"])
    verdict = f": {'met' if peak <= 3 * floats else 'MISSED'}" if full else ""
    report_line(f"  peak RSS (the whole child process): pandas {max(peaks['pandas']) / MiB:.0f} "
                f"MiB, load_csv {peak / MiB:.0f} MiB = {peak / floats:.1f}x the float32 data "
                f"({floats / MiB:.0f} MiB; target <= 3x{verdict})")
    if full:
        record(_measured(med["pandas"]), LOAD, "anchor")
        record(_measured(med["load_csv"]), LOAD, "load_csv", LOAD_TARGET)


# --- FedAvg -----------------------------------------------------------------------------------

def _fedavg(name: str, benchmark, record, report_line, workloads, full, tmp_path,
            flower: bool) -> None:
    csv, size, clients, rows, rounds = workloads[name]
    variants = ["privcity", "plain"] + (["flower"] if flower else [])
    runs: dict[str, list[dict]] = {v: [] for v in variants}

    def alternate() -> None:
        runs["privcity"].append(_run_privcity(csv, rounds, tmp_path))
        runs["plain"].append(_run_plain("plain", csv, rounds, tmp_path))
        if flower:
            runs["flower"].append(_run_plain("flower", csv, rounds, tmp_path))

    benchmark.group = f"FL {name}: one run of each variant"
    benchmark.pedantic(alternate, rounds=_repeats(full), iterations=1)

    med = {v: {k: statistics.median(r[k] for r in runs[v])
               for k in ("seconds", "rounds_seconds", "round_seconds", "rss", "accuracy")}
           for v in variants}
    drift = max(float(np.abs(p["W"] - q["W"]).max())
                for p, q in zip(runs["privcity"], runs["plain"]))
    p0 = runs["privcity"][0]
    benchmark.extra_info.update(medians=med, max_abs_param_difference=drift,
                                runs=p0["runs"], csv_bytes=size)
    # Same rows, clients and shuffles: the accuracies agree (rounding apart).
    for v in variants[1:]:
        assert abs(med[v]["accuracy"] - med["privcity"]["accuracy"]) <= ACCURACY_TOLERANCE, med
    assert all(r["device_rounds"] == p0["device_rounds"] for v in variants for r in runs[v])

    label = f"FedAvg {clients:,} clients x {rows} rows, {rounds} rounds"
    extra = "" if p0["runs"] == ["fl"] else \
        f" (privcity also ran {', '.join(k for k in p0['runs'] if k != 'fl')}: no --runs flag)"
    report_line(f"{label}, q={SAMPLE_RATE} ({p0['device_rounds']:,} device-rounds), "
                f"medians of {len(runs['plain'])}{extra}:")
    report_line(f"  {'variant':<26} {'whole':>8} {'FL rounds':>10} {'per round':>10} "
                f"{'peak RSS':>10} {'accuracy':>9}")
    names = {"privcity": "privcity simulate", "plain": "plain numpy loop",
             "flower": "plain loop, Flower mean"}
    for v in variants:
        m = med[v]
        report_line(f"  {names[v]:<26} {m['seconds']:7.1f}s {m['rounds_seconds']:9.2f}s "
                    f"{m['round_seconds'] * 1e3:8.1f}ms {m['rss'] / MiB:7.0f}MiB "
                    f"{m['accuracy']:9.4f}")
    speed = med["plain"]["rounds_seconds"] / med["privcity"]["rounds_seconds"]
    pv = {k: statistics.median(r[k] for r in runs["privcity"])
          for k in ("provision_seconds", "eval_seconds", "read_seconds")}
    net = med["privcity"]["rounds_seconds"] - pv["provision_seconds"] - pv["eval_seconds"]
    report_line(f"  FL rounds: privcity {speed:.2f}x the plain loop's speed (target >= "
                f"{ROUNDS_TARGET:g}x); they include provisioning first-time devices' keys and "
                f"certificates ({pv['provision_seconds']:.2f} s, once in a device's life) and "
                f"evaluations ({pv['eval_seconds']:.2f} s; the loop evaluates once): without "
                f"them {net:.2f} s, {med['plain']['rounds_seconds'] / max(net, 1e-9):.2f}x; "
                f"privcity read the CSV in {pv['read_seconds']:.2f} s; largest |privcity - "
                f"plain| parameter {drift:.2g}")
    report_line(f"  privcity's FL bytes {p0['bytes_fl'] / 1e6:.0f} MB vs raw upload "
                f"{p0['raw_bytes'] / 1e6:.0f} MB")
    if not full:
        return
    head = f"FL {name} x{rounds}"
    record(_measured(med["plain"]["rounds_seconds"]), f"{head}: rounds vs plain loop", "anchor")
    record(_measured(med["privcity"]["rounds_seconds"]), f"{head}: rounds vs plain loop",
           "privcity", ROUNDS_TARGET if name == "1k" else None)
    record(_measured(med["plain"]["seconds"]), f"{head}: whole vs plain loop", "anchor")
    record(_measured(med["privcity"]["seconds"]), f"{head}: whole vs plain loop", "privcity")
    if flower:
        record(_measured(med["flower"]["rounds_seconds"]), f"{head}: rounds vs Flower mean",
               "anchor")
        record(_measured(med["privcity"]["rounds_seconds"]), f"{head}: rounds vs Flower mean",
               "privcity")
    if name == "1k":
        record(_measured(WHOLE_BUDGET), f"{head}: whole vs {WHOLE_BUDGET:g} s budget", "anchor")
        record(_measured(med["privcity"]["seconds"]), f"{head}: whole vs {WHOLE_BUDGET:g} s budget",
               "privcity", 1.0)


def test_fedavg_1000_clients_beside_plain_loop_and_flower(benchmark, record, report_line,
                                                          workloads, full, tmp_path):
    flower = importlib.util.find_spec("flwr") is not None
    if not flower:
        report_line("FL 1k: Flower's aggregate not timed (pip install flwr: the bench extra)")
    _fedavg("1k", benchmark, record, report_line, workloads, full, tmp_path, flower)


def test_fedavg_10000_clients_beside_plain_loop(benchmark, record, report_line, workloads, full,
                                               tmp_path):
    _fedavg("10k", benchmark, record, report_line, workloads, full, tmp_path, False)


# --- the anchor's data ------------------------------------------------------------------------

def test_plain_loop_trains_on_the_bits_load_csv_gives_privcity(tmp_path):
    # Prepare: a small workload (the anchor's encoding does not depend on the size)
    from privcity.data import load_csv
    path, _ = _workload_csv(str(tmp_path), "bits", 30, 10)

    # Execute
    ours = W.read_plain(path, SEED)
    train, (x_test, y_test) = load_csv(path, target="label", device_column="device", seed=SEED)

    # Assert
    assert np.array_equal(ours.X[:, :-1], train.X) and np.all(ours.X[:, -1] == 1.0)
    assert np.array_equal(ours.y, train.y) and np.array_equal(ours.offsets, train.offsets)
    assert np.array_equal(ours.X_test, x_test) and np.array_equal(ours.y_test, y_test)
    assert np.all(np.diff(train.offsets) == 10)  # the shards are cut from training rows only


def test_workload_shards_are_non_iid_and_seeded():
    # Prepare / Execute
    a = W.make_workload(clients=50, rows_per_client=20, seed=3)
    b = W.make_workload(clients=50, rows_per_client=20, seed=3)

    # Assert: the same seed, the same bits; a client holds 2 shards of label-sorted rows, so
    # mostly 2 labels (a shard can straddle two)
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.device, b.device)
    train = ~a.test
    per_client = np.array([np.unique(a.labels[train & (a.device == c)]).size for c in range(50)])
    assert per_client.max() <= 4 and np.mean(per_client <= 2) >= 0.7
    assert np.bincount(a.device[train], minlength=50).tolist() == [20] * 50
    assert a.pixels.dtype == np.uint8 and (a.pixels == 0).mean() > 0.3  # MNIST-like background
