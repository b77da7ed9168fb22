"""Checkpoints of ``privcity simulate``: what a run writes after every round, so that
``privcity simulate --resume OUT`` continues from the last finished round and ends with the
results of an uninterrupted run, bit for bit (models, every non-timing metric), on any number
of MPI ranks.

What a checkpoint holds. ``OUT/checkpoint.npz`` (numpy arrays, no pickle; replaced whole
after every round: a temp file in OUT, fsync, ``os.replace``, fsync of OUT):

* ``state``, JSON: the format, the privcity version, the run's settings, the SHA-256 of each
  CSV file it reads, how many bytes of ``OUT/rounds.jsonl`` the checkpoint covers, and for
  each run (centralized, fl, fl_dp): rounds finished, the server's log of each round (devices
  in the sum, updates within the clip, noise shares charged), timing totals, and the figures
  the replay below must reproduce (epsilon, the noise stream's position, the clip);
* arrays: each run's model parameters, the parameters of the round the attack suite targets,
  and with top-k compression each device's error-feedback residual.

``OUT/rounds.jsonl`` holds the per-round results, one JSON line a round appended and fsynced
as the round ends; a line past the checkpoint's byte count (a round cut short) is dropped on
resume.

What it does not hold: keys, or anything pickled. The aggregator's CA and keys and every
device's keys are made afresh on resume (a device enrols again, with new keys, when it is next
sampled: no (key, nonce) pair can repeat), so the checkpoint has no secret to protect. The
server strategies' state (the accountant, the seeded noise streams, the adaptive clip, what
the servers saw under distributed DP) is rebuilt by :func:`replay_server`, which gives each
strategy again what the server gave it every round, through its public methods: the noise
draws repeat exactly because they depend on the seed, the sizes and the clip, never on the
updates. Everything else a round uses (who is sampled, drops out, trains with which seed, the
rounding streams) derives from (seed, round, device) alone.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import PrivcityError
from ..fl.compress import ErrorFeedback

__all__ = ["CHECKPOINT", "ROUNDS_FILE", "CheckpointError", "Checkpointer", "SavedRun",
           "TrackedFeedback", "holds_progress", "read_config", "replay_server", "server_entry",
           "strategy_check", "write_atomic"]

CHECKPOINT = "checkpoint.npz"
ROUNDS_FILE = "rounds.jsonl"
FORMAT = "privcity-simulate-checkpoint/1"
FEDERATED = ("fl", "fl_dp")
#: The largest state JSON a checkpoint may hold (a file built to exhaust memory is refused).
STATE_MAX = 64 * 2**20


class CheckpointError(PrivcityError):
    """A checkpoint could not be written, read or replayed; ``kind`` says which: ``write``
    (the disk is full, a file too large, permissions), ``unreadable`` (missing, cut short, not
    this format), ``mismatch`` (another privcity version, a data file changed, or the replay
    did not reproduce the saved state), ``finished`` (the run ended: nothing to resume)."""

    KINDS = ("write", "unreadable", "mismatch", "finished")

    def __init__(self, message: str = "checkpoint error", *, kind: str = "unreadable") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown CheckpointError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.hint = ""  # filled by the simulator: what the checkpoint holds, how to resume


# --- files ------------------------------------------------------------------------------------

def _fsync_dir(folder: str) -> None:
    """Makes a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # (some file systems cannot fsync a directory)
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, write: Callable[[Any], None], *, private: bool = False) -> int:
    """Writes ``path`` whole or not at all: ``write(f)`` fills a temp file in the same folder,
    which is fsynced and renamed over ``path`` (then the folder is fsynced). On any failure
    the temp file is removed, ``path`` keeps its previous content, and CheckpointError
    (kind "write") names the file and the cause. Returns the bytes written. The temp file has
    a random name and is created anew (never through a link planted in a shared folder);
    ``private``: readable by the owner only (else as the umask says)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{secrets.token_hex(8)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except BaseException as exc:  # (an interrupt too: no temp file is left behind)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}",
                                  kind="write") from None
        raise
    _fsync_dir(folder)
    return size


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _data_digests(config: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of each CSV file the run reads: a resumed run must read the same bytes."""
    return {config[k]: _file_digest(config[k]) for k in ("data", "test_data") if config.get(k)}


# --- what the server gave its strategy ------------------------------------------------------------

def server_entry(strategy: Any, round_index: int, events_before: int, *, reported: int,
                 unclipped: int) -> dict[str, Any]:
    """What :func:`replay_server` needs of one round: DP-FedAvg the number of updates summed
    and of those within the clip; distributed DP the noise shares the round was charged (None:
    the round was dropped, the accountant recorded nothing). ``events_before``: the number of
    accountant events before the round."""
    from ..fl import DistributedDPFedAvg, DPFedAvg
    if isinstance(strategy, DistributedDPFedAvg):
        new = strategy.accountant.events[events_before:]
        return {"round": round_index, "charged": int(new[-1].n) if new else None}
    if isinstance(strategy, DPFedAvg):
        return {"round": round_index, "k": int(reported), "unclipped": int(unclipped)}
    return {"round": round_index}


def strategy_check(strategy: Any) -> dict[str, Any]:
    """The figures a replay must reproduce: epsilon (and against the servers), the rounds the
    accountant counts, the position of the server's noise stream and the clip."""
    from ..fl import DistributedDPFedAvg, DPFedAvg
    out: dict[str, Any] = {}
    if isinstance(strategy, (DPFedAvg, DistributedDPFedAvg)):
        out.update(epsilon=strategy.accountant.epsilon(), rounds=strategy.accountant.rounds)
    if isinstance(strategy, DPFedAvg):
        out.update(noise_position=strategy.rng.position, clip=strategy.clip_norm())
    if isinstance(strategy, DistributedDPFedAvg):
        out["epsilon_servers"] = strategy.epsilon_servers()
    return out


def replay_server(strategy: Any, log: list[dict[str, Any]], *, n_params: int,
                  cohort_of: Callable[[int], np.ndarray], check: dict[str, Any]) -> None:
    """Brings a fresh strategy to the state it had after the logged rounds, by giving it
    again, round by round, what the server gave it (the sums replaced by zeros: the noise
    drawn, the rounds recorded and the clip adapted do not depend on them). ``cohort_of(r)``:
    the devices the server sampled in round r (distributed DP records them as seen).
    CheckpointError (kind "mismatch") if the result differs from ``check``."""
    from ..fl import DistributedDPFedAvg, DPFedAvg
    params, zeros = np.zeros(n_params, np.float32), np.zeros(n_params)
    if isinstance(strategy, DistributedDPFedAvg):
        for e in log:
            strategy.servers_saw(cohort_of(e["round"]), strategy.block_floor)
            if e["charged"] is not None:
                strategy.aggregate_sum(params, zeros, 0.0, e["charged"], round_index=e["round"])
    elif isinstance(strategy, DPFedAvg):
        for e in log:
            strategy.aggregate_sum(params, zeros, 0.0, e["k"], round_index=e["round"],
                                   unclipped_count=e["unclipped"])
    got = strategy_check(strategy)
    if got != check:
        differ = sorted(k for k in set(got) | set(check) if got.get(k) != check.get(k))
        raise CheckpointError(f"the checkpoint does not replay to the state it saved ("
                              f"{', '.join(differ)} differ): it was written by other code",
                              kind="mismatch")


class TrackedFeedback(ErrorFeedback):
    """A gateway's top-k error feedback that remembers which devices' residuals changed
    since :meth:`take_changed`, so each checkpoint gathers only those, and can be loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.changed: set[int] = set()

    def step(self, device: int, update: np.ndarray, k: int,
             clip: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        out = super().step(device, update, k, clip)
        self.changed.add(int(device))
        return out

    def take_changed(self) -> tuple[np.ndarray, np.ndarray]:
        """(device ids, residual rows) of the devices whose residual changed, and forgets them."""
        ids = np.array(sorted(self.changed), np.int64)
        self.changed = set()
        rows = [self.residual(int(d)) for d in ids]
        return ids, (np.stack(rows) if rows else np.zeros((0, 0), np.float32))

    def load(self, ids: np.ndarray, rows: np.ndarray, keep: Callable[[int], bool]) -> None:
        """Sets the residuals of the devices ``keep`` accepts (this gateway's) from a checkpoint."""
        for d, row in zip(np.asarray(ids).tolist(), rows):
            if keep(d):
                # ErrorFeedback keeps its residuals in _residual and offers no setter.
                self._residual[int(d)] = np.array(row, np.float32)


# --- the checkpoint itself ----------------------------------------------------------------------

@dataclass
class SavedRun:
    """A federated run as its checkpoint left it (see :meth:`Checkpointer.saved_run`)."""

    params: np.ndarray
    rounds: list[dict[str, Any]]
    log: list[dict[str, Any]]
    check: dict[str, Any]
    first: tuple[int, np.ndarray] | None
    timers: dict[str, float]
    feedback: tuple[np.ndarray, np.ndarray] | None


def _load_npz(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            # (the file opened here: numpy leaves its own open when the zip is broken)
            # The state first, its size checked before it is read; the arrays after it.
            if "state" not in z.files or z.zip.getinfo("state.npy").file_size > STATE_MAX + 1024:
                raise ValueError("it holds no state of a sensible size")
            arrays = {"state": z["state"]}
            arrays.update((k, z[k]) for k in z.files if k != "state")
        state_bytes = arrays.pop("state")
        if state_bytes.dtype != np.uint8 or state_bytes.size > STATE_MAX:
            raise ValueError("its state is not a JSON byte string")
        state = json.loads(state_bytes.tobytes())
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"its format is not {FORMAT}")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint (was the run started with another "
                              "--out, or before privcity wrote checkpoints?)") from None
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, MemoryError,
            RecursionError) as exc:  # (a crafted file: a huge declared shape, deep JSON)
        raise CheckpointError(f"{path} is not a readable privcity checkpoint "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return state, arrays


def holds_progress(out: str) -> bool:
    """Whether ``out``'s checkpoint holds anything a new run would lose: a finished baseline
    or round (a run that failed or stopped in its setup holds only its settings). An
    unreadable checkpoint counts as holding some."""
    try:
        state, _ = _load_npz(os.path.join(out, CHECKPOINT))
    except CheckpointError:
        return True
    return any(state.get(k) is not None for k in ("centralized", *FEDERATED))


def read_config(out: str) -> dict[str, Any]:
    """The settings of the run whose checkpoint is in ``out`` (refused if it finished, or was
    written by another privcity version)."""
    from .. import __version__
    path = os.path.join(out, CHECKPOINT)
    state, _ = _load_npz(path)
    if state.get("finished"):
        raise CheckpointError(f"the run in {out} finished: nothing to resume (its results: "
                              f"{os.path.join(out, 'metrics.json')})", kind="finished")
    if state.get("version") != __version__:
        raise CheckpointError(f"{path} was written by privcity {state.get('version')}, this is "
                              f"{__version__}: a resumed run would not be the same run",
                              kind="mismatch")
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds no settings")
    return config


class Checkpointer:
    """Rank 0's writer of OUT/checkpoint.npz and OUT/rounds.jsonl (see the module docstring).
    :meth:`start` begins a run, :meth:`resume` reopens one; then the run reports each
    finished piece (:meth:`central_done`, :meth:`round_done`) and :meth:`finish`."""

    def __init__(self, out: str, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.out = out
        self.path = os.path.join(out, CHECKPOINT)
        self.rounds_path = os.path.join(out, ROUNDS_FILE)
        self.state, self.arrays = state, arrays
        self.seconds = 0.0  # spent writing, in this process
        self.writes = 0
        self.bytes = 0
        self.round_seconds = 0.0  # of which after rounds (rounds.jsonl and the checkpoint)
        self.rounds_written = 0

    @classmethod
    def start(cls, out: str, config: dict[str, Any]) -> Checkpointer:
        """A new run: an empty OUT/rounds.jsonl and a checkpoint of the settings alone."""
        from .. import __version__
        state = {"format": FORMAT, "version": __version__, "config": config,
                 "data": _data_digests(config), "rounds_bytes": 0, "finished": False,
                 "centralized": None, "fl": None, "fl_dp": None}
        keeper = cls(out, state, {})
        write_atomic(keeper.rounds_path, lambda f: None)
        keeper.save()
        return keeper

    @classmethod
    def resume(cls, out: str) -> Checkpointer:
        """The run whose checkpoint is in ``out``, its rounds.jsonl cut back to the last
        checkpointed round. CheckpointError if a CSV it reads changed since."""
        state, arrays = _load_npz(os.path.join(out, CHECKPOINT))
        for path, digest in state.get("data", {}).items():
            try:
                same = _file_digest(path) == digest
            except OSError as exc:
                raise CheckpointError(f"cannot read {path}, which the run reads: "
                                      f"{exc.strerror or exc}") from None
            if not same:
                raise CheckpointError(f"{path} changed since the run started: a resumed run "
                                      "would not be the same run", kind="mismatch")
        keeper = cls(out, state, arrays)
        keeper._cut_rounds()
        return keeper

    def _cut_rounds(self) -> None:
        """rounds.jsonl back to the checkpoint's byte count; its lines by run."""
        end = int(self.state["rounds_bytes"])
        try:
            with open(self.rounds_path, "r+b") as f:
                data = f.read(end)
                if len(data) < end:
                    raise CheckpointError(f"{self.rounds_path} is shorter than its checkpoint "
                                          "says: it was cut or replaced")
                f.truncate(end)
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.rounds_path}: "
                                  f"{exc.strerror or exc}") from None
        self._lines: dict[str, list[dict[str, Any]]] = {name: [] for name in FEDERATED}
        for line in data.decode("utf-8").splitlines():
            record = json.loads(line)
            self._lines[record.pop("run")].append(record)

    # --- what a resumed run takes up -----------------------------------------------------------
    def central(self) -> tuple[np.ndarray | None, float] | None:
        """(parameters, CPU seconds) of the finished centralized baseline, or None."""
        saved = self.state.get("centralized")
        if saved is None:
            return None
        return self.arrays.get("centralized.params"), float(saved["cpu_seconds"])

    def saved_run(self, name: str) -> SavedRun | None:
        """The federated run ``name`` as last checkpointed, or None before its first round."""
        saved = self.state.get(name)
        if saved is None:
            return None
        rounds = self._lines[name]
        if len(rounds) != saved["rounds"]:
            raise CheckpointError(f"{self.rounds_path} holds {len(rounds)} rounds of {name}, "
                                  f"its checkpoint {saved['rounds']}")
        first = None if saved["first_round"] is None else \
            (int(saved["first_round"]), self.arrays[f"{name}.first"])
        feedback = (self.arrays[f"{name}.feedback_ids"], self.arrays[f"{name}.feedback_rows"]) \
            if f"{name}.feedback_ids" in self.arrays else None
        return SavedRun(params=self.arrays[f"{name}.params"], rounds=rounds, log=saved["log"],
                        check=saved["check"], first=first, timers=saved["timers"],
                        feedback=feedback)

    def progress(self) -> str:
        """What the checkpoint holds, for the line that says how to resume."""
        done = [f"{label} round {self.state[n]['rounds']}" for n, label in
                (("fl", "FL"), ("fl_dp", "FL + DP")) if self.state.get(n)]
        if done:
            return "saved up to " + ", ".join(done)
        return "saved the centralized baseline" if self.state.get("centralized") else \
            "saved the settings (no round had finished)"

    # --- what a run reports ----------------------------------------------------------------------
    def central_done(self, params: np.ndarray | None, cpu_seconds: float) -> None:
        self.state["centralized"] = {"cpu_seconds": float(cpu_seconds)}
        if params is not None:
            self.arrays["centralized.params"] = params
        self.save()

    def round_done(self, name: str, *, params: np.ndarray, record: dict[str, Any],
                   entry: dict[str, Any], check: dict[str, Any],
                   first: tuple[int, np.ndarray] | None, timers: dict[str, float],
                   feedback: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Appends the round's results to rounds.jsonl, then checkpoints the run after it."""
        t0 = time.perf_counter()
        line = json.dumps({"run": name, **record}).encode() + b"\n"
        try:
            with open(self.rounds_path, "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise CheckpointError(f"cannot write {self.rounds_path}: {exc.strerror or exc}",
                                  kind="write") from None
        before = (dict(self.state), dict(self.arrays))
        saved = self.state.get(name) or {"rounds": 0, "log": []}
        self.state[name] = {"rounds": saved["rounds"] + 1, "log": saved["log"] + [entry],
                            "check": check, "timers": timers,
                            "first_round": None if first is None else int(first[0])}
        self.state["rounds_bytes"] += len(line)
        self.arrays[f"{name}.params"] = params
        if first is not None:
            self.arrays[f"{name}.first"] = first[1]
        if feedback is not None:
            self._merge_feedback(name, *feedback)
        self.seconds += time.perf_counter() - t0
        try:
            self.save()
        except CheckpointError:  # the previous checkpoint stands, and so does what we say of it
            self.state, self.arrays = before
            raise
        self.round_seconds += time.perf_counter() - t0
        self.rounds_written += 1

    def _merge_feedback(self, name: str, ids: np.ndarray, rows: np.ndarray) -> None:
        """The run's residual table with the rows of devices ``ids`` replaced or added."""
        key_ids, key_rows = f"{name}.feedback_ids", f"{name}.feedback_rows"
        if key_ids not in self.arrays:
            self.arrays[key_ids] = np.zeros(0, np.int64)
            self.arrays[key_rows] = np.zeros((0, rows.shape[1] if rows.ndim == 2 else 0),
                                             np.float32)
        if ids.size == 0:
            return
        old_ids, old_rows = self.arrays[key_ids], self.arrays[key_rows]
        kept = ~np.isin(old_ids, ids)
        all_ids = np.concatenate([old_ids[kept], ids])
        all_rows = np.concatenate([old_rows[kept].reshape(-1, rows.shape[1]), rows])
        order = np.argsort(all_ids, kind="stable")
        self.arrays[key_ids], self.arrays[key_rows] = all_ids[order], all_rows[order]

    def discard_if_empty(self) -> None:
        """Removes the checkpoint and rounds.jsonl while they hold only the settings."""
        if not any(self.state.get(k) is not None for k in ("centralized", *FEDERATED)):
            for path in (self.path, self.rounds_path):
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def finish(self) -> None:
        """The run ended (its metrics.json is written): nothing is left to resume. The devices'
        top-k residuals (un-noised parts of their updates) are not kept past the run."""
        self.state["finished"] = True
        for key in [k for k in self.arrays if k.endswith((".feedback_ids", ".feedback_rows"))]:
            del self.arrays[key]
        self.save()

    def save(self) -> None:
        t0 = time.perf_counter()
        state = np.frombuffer(json.dumps(self.state).encode(), np.uint8)

        def write(f: Any) -> None:
            buf = io.BytesIO()  # np.savez seeks; one write of the whole archive
            np.savez(buf, state=state, **self.arrays)
            f.write(buf.getbuffer())

        self.bytes = write_atomic(self.path, write, private=True)
        self.writes += 1
        self.seconds += time.perf_counter() - t0

    def summary(self) -> dict[str, Any]:
        """metrics.json's "checkpoint" section."""
        return {"path": self.path, "rounds_file": self.rounds_path, "writes": self.writes,
                "seconds": self.seconds, "bytes": self.bytes, "rounds": self.rounds_written,
                "round_seconds": self.round_seconds,
                "holds": "settings, data digests, each run's parameters, server log and "
                         "timing totals, top-k residuals; no keys (made afresh on resume)"}
