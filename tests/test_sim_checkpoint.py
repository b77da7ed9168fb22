"""privcity simulate's checkpoints and stops: a run interrupted at a round and resumed (in
process, as a command, under mpiexec on another number of ranks, after its disk filled) ends
with the uninterrupted run's models and per-round metrics; SIGINT/SIGTERM stop every rank
cleanly with one line; a hung rank is named; one run per --out."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import privcity.sim.runner as runner
from privcity.sim import CheckpointError, Interrupted, load_config, resume_config, simulate
from privcity.sim.checkpoint import write_atomic

from test_simulate import _mpiexec_and_env, _untimed

# A tiny city whose rounds take milliseconds; a budget that no round exhausts.
TINY = dict(devices=60, samples_per_device=12, sample_rate=0.3, attacks="none", report=False,
            risk_people=0, noise_multiplier=1.0, epsilon=300.0, seed=3, eval_every=1)
#: The commands' runs: enough rounds that a signal sent a few rounds in lands mid-run.
LONG = dict(TINY, rounds=40)


def _flags(settings: dict) -> list[str]:
    out = []
    for k, v in settings.items():
        flag = "--" + k.replace("_", "-")
        out += [f"--no-{flag[2:]}"] if v is False else [f"{flag}={v}"]
    return out


def _env() -> dict:
    # The privcity this process imported (the work tree's or an installed one: a clean
    # checkout's pycore/ holds no built _core), for the child runs too.
    import privcity
    where = Path(privcity.__file__).resolve().parents[1]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(where),
                                                        os.environ.get("PYTHONPATH", "")]))


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "privcity.cli", "simulate", *_flags(LONG), f"--out={out}",
            "--quiet", *extra]


def _lines(out: Path) -> int:
    try:
        return (out / "rounds.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_for_rounds(out: Path, n: int, proc: subprocess.Popen, limit: float = 120) -> None:
    t0 = time.monotonic()
    while _lines(out) < n:
        assert proc.poll() is None, "the run ended before it was interrupted"
        assert time.monotonic() - t0 < limit, "the run did not start its rounds"
        time.sleep(0.02)


def _sha(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["final_params_sha256"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run of the commands' settings (one process: results do not depend
    on the number of ranks)."""
    return simulate(load_config(None, out=str(tmp_path_factory.mktemp("ref") / "out"), **LONG),
                    progress=False)


def _interrupt_at(monkeypatch, report: int, sig: int = signal.SIGINT) -> None:
    """``sig`` to this process while the aggregator checks the ``report``-th gateway report
    (one a round in one process): mid-round."""
    calls = {"n": 0}
    checked = runner._checked_report

    def hooked(rep, refusals):
        calls["n"] += 1
        if calls["n"] == report:
            os.kill(os.getpid(), sig)
        return checked(rep, refusals)

    monkeypatch.setattr(runner, "_checked_report", hooked)


# --- resume in process ------------------------------------------------------------------------

@pytest.mark.parametrize("settings, report", [
    # central DP with adaptive clipping (the noise streams and the clip replayed) and top-k
    # error feedback (the devices' residuals saved), stopped in FL + DP's third round
    (dict(adaptive_clip=True, compress="topk:0.2"), 8),
    # quantized updates, stopped in FL's second round
    (dict(compress="q4"), 2),
    # secure aggregation with distributed DP (what the servers saw replayed)
    (dict(secure_aggregation=True, devices=40, sample_rate=0.5, noise_multiplier=0.0,
          epsilon=30.0, rounds=3), 5),
], ids=["adaptive-topk", "q4", "secure-ddg"])
def test_a_run_interrupted_mid_round_resumes_to_the_uninterrupted_results(
        tmp_path, monkeypatch, settings, report):
    # Prepare
    cfg = dict({**TINY, "rounds": 5}, **settings)
    whole = simulate(load_config(None, out=str(tmp_path / "whole"), **cfg), progress=False)
    _interrupt_at(monkeypatch, report)

    # Execute: interrupted, then resumed from its checkpoint
    with pytest.raises(Interrupted) as stop:
        simulate(load_config(None, out=str(tmp_path / "cut"), **cfg), progress=False)
    monkeypatch.undo()
    saved = _lines(tmp_path / "cut")
    resumed = simulate(resume_config(str(tmp_path / "cut")), resume=True, progress=False)

    # Assert: stopped after the round in progress, saved it, and ended bit-identical
    assert saved == report and "continue with: privcity simulate --resume" in stop.value.hint
    assert resumed["final_params_sha256"] == whole["final_params_sha256"]
    for name in ("fl", "fl_dp"):
        assert _untimed(resumed["rounds"][name]) == _untimed(whole["rounds"][name])
    assert _untimed(resumed["privacy"]) == _untimed(whole["privacy"])
    assert _lines(tmp_path / "cut") == sum(len(whole["rounds"][n]) for n in ("fl", "fl_dp"))


def test_a_checkpoint_that_does_not_replay_to_its_state_is_refused(tmp_path, monkeypatch):
    # Prepare: a DP run stopped by SIGTERM, whose saved epsilon is then altered
    cfg = dict(TINY, rounds=4)
    _interrupt_at(monkeypatch, 6, signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM"):
        simulate(load_config(None, out=str(tmp_path / "cut"), **cfg), progress=False)
    path = tmp_path / "cut" / "checkpoint.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    state = json.loads(arrays["state"].tobytes())
    state["fl_dp"]["check"]["epsilon"] *= 0.5
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), np.uint8)
    np.savez(path, **arrays)

    # Execute
    with pytest.raises(CheckpointError) as refused:
        simulate(resume_config(str(tmp_path / "cut")), resume=True, progress=False)

    # Assert
    assert refused.value.kind == "mismatch" and "epsilon" in str(refused.value)


# --- one run per directory --------------------------------------------------------------------

def test_a_directory_holding_a_run_is_refused_unless_overwrite(tmp_path):
    # Prepare
    cfg = load_config(None, out=str(tmp_path / "out"), **dict(TINY, rounds=1))
    first = simulate(cfg, progress=False)
    (tmp_path / "out" / "notes.txt").write_text("the user's own")

    # Execute
    with pytest.raises(ValueError) as refused:
        simulate(cfg, progress=False)
    again = simulate(cfg, overwrite=True, progress=False)

    # Assert
    assert "holds another run" in str(refused.value) and "--overwrite" in str(refused.value)
    assert again["final_params_sha256"] == first["final_params_sha256"]
    assert _lines(tmp_path / "out") == 2  # rounds.jsonl restarted, not appended to
    assert (tmp_path / "out" / "notes.txt").read_text() == "the user's own"
    assert not (tmp_path / "out" / ".privcity.lock").exists()


def test_a_run_that_failed_in_its_setup_does_not_block_the_next(tmp_path, capsys):
    # Prepare: a CSV that cannot be read (its checkpoint then holds only the settings)
    from privcity.cli import main as cli_main
    fake = tmp_path / "readings.csv.gz"
    fake.write_text("V4,x\n1,2\n")  # not gzip
    argv = ["simulate", "--task", "csv", "--data", str(fake), "--target", "V4", "--quiet",
            "--out", str(tmp_path / "out")]

    # Execute: the same command twice
    first = cli_main(argv), capsys.readouterr().err
    second = cli_main(argv), capsys.readouterr().err

    # Assert: both refused for the data, not the second for the first's files, and no
    # run files left behind
    assert first == second
    assert first[0] == 2 and first[1].startswith("privcity simulate: cannot read the data:")
    assert sorted(os.listdir(tmp_path / "out")) == []


def test_a_lock_of_a_live_process_refuses_and_a_dead_ones_is_taken_over(tmp_path, capfd):
    # Prepare: a lock held by a live process, then by one that has ended
    out = tmp_path / "out"
    out.mkdir()
    cfg = load_config(None, out=str(out), **dict(TINY, rounds=1))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = os.uname().nodename

    # Execute
    try:
        (out / ".privcity.lock").write_text(f"{live.pid} {host}\n")
        with pytest.raises(ValueError) as refused:
            simulate(cfg, progress=False)
        (out / ".privcity.lock").write_text(f"{dead} {host}\n")
        simulate(cfg, progress=False)
    finally:
        live.kill()
        live.wait()

    # Assert
    assert f"in use by another run (process {live.pid}" in str(refused.value)
    assert f"took over the lock of process {dead}" in capfd.readouterr().err
    assert (out / "metrics.json").exists() and not (out / ".privcity.lock").exists()


def test_an_atomic_write_that_fails_leaves_the_previous_file_and_no_temp(tmp_path):
    # Prepare
    path = tmp_path / "metrics.json"
    path.write_text("previous")

    def half(f):
        f.write(b"{\"half\": ")
        raise OSError(28, "No space left on device")

    # Execute
    with pytest.raises(CheckpointError) as failed:
        write_atomic(str(path), half)

    # Assert
    assert failed.value.kind == "write" and "No space left on device" in str(failed.value)
    assert path.read_text() == "previous" and os.listdir(tmp_path) == ["metrics.json"]


# --- as a command ----------------------------------------------------------------------------

def test_sigint_stops_the_command_with_one_line_and_a_second_run_on_its_out_is_refused(
        tmp_path, reference):
    # Prepare
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(out), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rounds(out, 3, proc)

        # Execute: a second run on the same --out while the first works, then SIGINT
        second = subprocess.run(_command(out, "--overwrite"), env=_env(), capture_output=True,
                                text=True, timeout=120)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = simulate(resume_config(str(out)), resume=True, progress=False)

    # Assert: refused by the lock; stopped with exit 130 and the line saying how to resume
    assert second.returncode == 2 and "is in use by another run (process" in second.stderr
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("privcity simulate: interrupted (SIGINT); "
                                                   "saved up to FL round ")
    assert err.strip().endswith(f"continue with: privcity simulate --resume {out}")
    assert resumed["final_params_sha256"] == reference["final_params_sha256"]
    assert _untimed(resumed["rounds"]) == _untimed(reference["rounds"])


def test_a_disk_that_fills_leaves_the_last_checkpoint_and_a_clear_error(tmp_path, reference):
    # Prepare: files may not grow past 16 KB (rounds.jsonl passes it after a dozen rounds)
    out = tmp_path / "out"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    # Execute
    proc = subprocess.run(_command(out), env=_env(), capture_output=True, text=True,
                          preexec_fn=small_files, timeout=300)
    with np.load(out / "checkpoint.npz") as z:
        state = json.loads(z["state"].tobytes())
    resumed = simulate(resume_config(str(out)), resume=True, progress=False)

    # Assert: one line naming the file and the cause, the checkpoint before it standing
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"privcity simulate: cannot write {out}/rounds.jsonl: File too large; the previous "
        f"checkpoint stands: saved up to FL round {state['fl']['rounds']}; continue with: "
        f"privcity simulate --resume {out}"]
    assert 0 < state["fl"]["rounds"] < LONG["rounds"]
    assert resumed["final_params_sha256"] == reference["final_params_sha256"]
    assert _untimed(resumed["rounds"]) == _untimed(reference["rounds"])


# --- under mpiexec ----------------------------------------------------------------------------

def _rank_pid(root: int, rank: int) -> int:
    """The pid of MPI rank ``rank`` among the descendants of ``root`` (from PMI_RANK)."""
    with os.scandir("/proc") as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"PMI_RANK={rank}".encode() in env and b"privcity" in Path(
                    f"/proc/{pid}/cmdline").read_bytes() and _descends(pid, root):
                return pid
        except OSError:
            continue
    raise AssertionError(f"rank {rank} not found under {root}")


def _descends(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        pid = int(stat.rpartition(b")")[2].split()[1])
    return False


def _mpi(n: int, *args: str, **kw) -> subprocess.Popen:
    mpiexec, env = _mpiexec_and_env()
    env["PYTHONPATH"] = _env()["PYTHONPATH"]
    return subprocess.Popen([mpiexec, "-n", str(n), sys.executable, "-m", "privcity.cli",
                             "simulate", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_under_mpiexec_sigint_and_a_killed_rank_lose_no_round_and_resume_on_two_ranks(
        tmp_path, reference):
    # Prepare
    pytest.importorskip("mpi4py")
    out = tmp_path / "out"
    args = [*_flags(LONG), f"--out={out}", "--quiet"]

    # Execute: SIGINT to mpiexec -n 3 (it passes it to every rank); resumed on 3 ranks and
    # SIGKILL of rank 1 there (mpiexec then ends the job); resumed on 2 ranks to the end
    run = _mpi(3, *args)
    _wait_for_rounds(out, 4, run)
    run.send_signal(signal.SIGINT)
    _, stopped = run.communicate(timeout=120)
    interrupted, at_stop = run.returncode, _lines(out)
    run = _mpi(3, "--resume", str(out), "--quiet")
    _wait_for_rounds(out, at_stop + 20, run)
    os.kill(_rank_pid(run.pid, 1), signal.SIGKILL)
    run.communicate(timeout=120)
    killed = run.returncode
    at_kill = _lines(out)
    last = _mpi(2, "--resume", str(out), "--quiet")
    _, err = last.communicate(timeout=300)

    # Assert: every rank stopped cleanly at the signal (exit 130, one line, no traceback or
    # MPI_Abort); the killed job lost nothing it had finished; the end is bit-identical
    assert interrupted == 130 and killed != 0
    assert "Traceback" not in stopped and "Abort" not in stopped and "failed" not in stopped
    assert stopped.strip().splitlines()[-1].endswith(
        f"continue with: privcity simulate --resume {out}")
    assert at_kill >= at_stop + 20
    assert last.returncode == 0, err
    got = json.loads((out / "metrics.json").read_text())
    assert got["ranks"] == 2
    assert got["final_params_sha256"] == reference["final_params_sha256"]
    assert _untimed(got["rounds"]) == _untimed(reference["rounds"])


def test_under_mpiexec_a_hung_rank_is_named_within_the_rank_timeout(tmp_path):
    # Prepare
    pytest.importorskip("mpi4py")
    out = tmp_path / "out"
    run = _mpi(3, *_flags(LONG), f"--out={out}", "--quiet", "--rank-timeout=2")
    _wait_for_rounds(out, 3, run)

    # Execute: rank 2 stops (SIGSTOP: alive, silent)
    t0 = time.monotonic()
    os.kill(_rank_pid(run.pid, 2), signal.SIGSTOP)
    _, err = run.communicate(timeout=120)
    took = time.monotonic() - t0

    # Assert: rank 0 named it, saved what was done and left (mpiexec then ends the others)
    assert run.returncode != 0
    assert "privcity simulate: rank 2 did not answer within 2 s (--rank-timeout): it died " \
           "or hangs; saved up to FL round" in err and "Traceback" not in err
    assert took < 30
    with np.load(out / "checkpoint.npz") as z:
        assert json.loads(z["state"].tobytes())["fl"]["rounds"] >= 3


# --- crafted checkpoints (review findings) --------------------------------------------------------

def _npz_with(path: Path, members: dict[str, bytes]) -> None:
    import zipfile
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("how", ["huge-shape", "not-a-zip", "deep-json", "no-state"])
def test_a_crafted_checkpoint_is_refused_as_unreadable_never_a_crash(tmp_path, how):
    # Prepare: OUT/checkpoint.npz made by an attacker (or a broken disk)
    out = tmp_path / "out"
    out.mkdir()
    ckpt = out / "checkpoint.npz"
    state = np.frombuffer(b"[" * 100_000 if how == "deep-json" else b"{}", np.uint8)
    buf = __import__("io").BytesIO()
    np.save(buf, state)
    if how == "huge-shape":  # 2**45 float64 declared, a few bytes present
        _npz_with(ckpt, {"state.npy": buf.getvalue(), "w.npy": _npy_header((2**45,)) + b"\0" * 8})
    elif how == "not-a-zip":
        ckpt.write_bytes(b"PK\x03\x04" + b"\xff" * 300)
    elif how == "no-state":
        _npz_with(ckpt, {"w.npy": _npy_header((2,)) + b"\0" * 16})
    else:
        _npz_with(ckpt, {"state.npy": buf.getvalue()})

    # Execute / Assert
    with pytest.raises(CheckpointError, match="not a readable privcity checkpoint"):
        resume_config(str(out))


def test_the_checkpoint_is_readable_by_its_owner_only_and_temp_names_are_unpredictable(tmp_path):
    # Prepare: a link planted where a predictable temp name would be
    target = tmp_path / "victim"
    target.write_text("keep me")
    for pid_name in (f".ckpt.npz.tmp-{os.getpid()}",):
        (tmp_path / pid_name).symlink_to(target)

    # Execute
    write_atomic(str(tmp_path / "ckpt.npz"), lambda f: f.write(b"data"), private=True)

    # Assert
    assert target.read_text() == "keep me"
    assert (tmp_path / "ckpt.npz").stat().st_mode & 0o077 == 0


def test_overwrite_does_not_delete_through_a_linked_models_folder(tmp_path):
    # Prepare: OUT holds a run's metrics, and OUT/models is a link to someone's folder
    from privcity.sim.control import MODELS, claim_out
    out, theirs = tmp_path / "out", tmp_path / "theirs"
    out.mkdir()
    theirs.mkdir()
    (out / "metrics.json").write_text("{}")
    for m in MODELS:
        (theirs / f"{m}.npz").write_bytes(b"precious")
    (out / "models").symlink_to(theirs, target_is_directory=True)

    # Execute
    lock, _ = claim_out(str(out), resume=False, overwrite=True)
    lock.release()

    # Assert: the run's own file is gone, the linked folder's files are not
    assert not (out / "metrics.json").exists()
    assert all((theirs / f"{m}.npz").read_bytes() == b"precious" for m in MODELS)


def test_two_runs_finding_a_dead_runs_lock_cannot_both_take_it(tmp_path):
    # Prepare: a lock left by a process that has ended
    import socket

    from privcity.sim.control import OutLock
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / ".privcity.lock").write_text(f"{dead} {socket.gethostname()}\n")
    first, second = OutLock(str(tmp_path)), OutLock(str(tmp_path))

    # Execute: the first takes it over; the second, right after, finds it held
    note = first.acquire()
    with pytest.raises(ValueError, match="in use by another run"):
        second.acquire()
    first.release()

    # Assert: once released, the lock is free again
    assert f"took over the lock of process {dead}" in note
    assert second.acquire() is None
    second.release()
    assert not (tmp_path / ".privcity.lock").exists()
