"""How a simulation owns its output directory and how it stops.

* :func:`claim_out`: one run per ``--out``. A lock file (``OUT/.privcity.lock``, created with
  O_EXCL, holding the pid and host) keeps a second run out while one works there; a lock
  whose process is gone (same host) is taken over, with a note. A directory that holds
  another run's files is refused unless the run resumes it or overwrites it.
* :class:`Interrupts`: SIGINT and SIGTERM. The first signal asks the run to stop where it
  can keep everything (after the round in progress, once its checkpoint is written); where
  nothing is in flight (the centralized baseline, the attacks, the report) it stops at once;
  a second signal stops at once anywhere, abandoning the round. Either way the run raises
  :class:`Interrupted` (a KeyboardInterrupt), which the command turns into one line and exit
  status 130. Gateway ranks only note the signal and tell rank 0 in their next report:
  rank 0 decides, so every rank stops together.
* :class:`RankFailure`: a gateway rank that did not answer within ``--rank-timeout``, or
  whose link failed.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..errors import PrivcityError
from .checkpoint import CHECKPOINT, ROUNDS_FILE, CheckpointError, holds_progress

__all__ = ["LOCK_FILE", "RANK_TIMEOUT", "Interrupted", "Interrupts", "OutLock", "RankFailure",
           "claim_out"]

LOCK_FILE = ".privcity.lock"
#: Seconds rank 0 waits for a gateway rank's answer before it names the rank and stops: a
#: round's training on the largest blocks takes seconds to a minute.
RANK_TIMEOUT = 120.0
#: The files that make a directory another run's (metrics.json last, at the run's end).
RUN_FILES = ("metrics.json", ROUNDS_FILE, CHECKPOINT)
MODELS = ("centralized", "fl", "fl_dp")  # OUT/models/<run>.npz


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM (a KeyboardInterrupt, so that no ``except
    Exception`` on the way swallows it). ``abandon``: raised in the middle of an MPI exchange,
    so the ranks cannot finish together (the process must leave without MPI_Finalize);
    ``hint``: filled by the simulator with what the checkpoint holds and how to resume."""

    def __init__(self, reason: str, *, abandon: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.abandon = reason, abandon
        self.hint = ""

    def __str__(self) -> str:
        return self.reason


class RankFailure(PrivcityError):
    """A gateway rank died or hangs (no answer within the rank timeout, or its link failed).
    The other ranks cannot finish together: the process leaves without MPI_Finalize."""

    abandon = True

    def __init__(self, message: str = "a rank failed", *, rank: int = -1) -> None:
        super().__init__(message)
        self.rank = rank
        self.hint = ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class OutLock:
    """``OUT/.privcity.lock``, holding "<pid> <host>" and an exclusive flock for as long as the
    run holds it: the kernel drops the flock when the process ends, so two runs that find a
    dead run's lock cannot both take it (the second finds the first's flock). A file naming a
    live process that holds no flock (an older privcity's lock) is respected too."""

    def __init__(self, out: str) -> None:
        self.path = os.path.join(out, LOCK_FILE)
        self.mine = f"{os.getpid()} {socket.gethostname()}\n"
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Takes the lock; returns a note when it took over a dead process's lock.
        ValueError naming the process that holds it, if it is alive (or on another host)."""
        for _ in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                         0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse(self._holder())
            # The file may have been unlinked (released) between the open and the flock: then
            # the flock is on a file nobody else sees; start again on the current one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            holder = self._holder()
            if holder is not None and holder != (os.getpid(), socket.gethostname()) \
                    and not self._stale(holder):
                os.close(fd)
                self._refuse(holder)
            os.ftruncate(fd, 0)
            os.pwrite(fd, self.mine.encode(), 0)
            self._fd, self.held = fd, True
            if holder is not None and holder[0] != os.getpid():
                return (f"took over the lock of process {holder[0]} in "
                        f"{os.path.dirname(self.path)}: it is no longer running")
            return None
        raise ValueError(f"{os.path.dirname(self.path)} is in use by another run (its lock "
                         f"keeps changing hands): give another --out")

    def _refuse(self, holder: tuple[int, str] | None) -> None:
        who = "another run" if holder is None else \
            f"another run (process {holder[0]} on {holder[1]})"
        raise ValueError(f"{os.path.dirname(self.path)} is in use by {who}: wait "
                         "for it to end, or give another --out (a lock left by a "
                         f"crashed machine can be removed: {self.path})") from None

    def _holder(self) -> tuple[int, str] | None:
        try:
            with open(self.path) as f:
                pid, host = f.read().split()
            return int(pid), host
        except (OSError, ValueError):
            return None

    @staticmethod
    def _stale(holder: tuple[int, str]) -> bool:
        pid, host = holder
        return host == socket.gethostname() and not _alive(pid)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # (still under the flock: no one else holds it)
            os.unlink(self.path)
        if fd is not None:
            os.close(fd)


def claim_out(out: str, *, resume: bool, overwrite: bool) -> tuple[OutLock, str | None]:
    """Creates ``out`` if needed and locks it for this run; refuses (ValueError) a directory
    that holds another run's files unless ``resume`` (then it must hold a checkpoint) or
    ``overwrite`` (then they are removed, with the run's report page and model files; other
    files are left alone). Returns the lock and a note (a stale lock taken over) or None."""
    try:
        os.makedirs(out, exist_ok=True)
        lock = OutLock(out)
        note = lock.acquire()
    except OSError as exc:
        raise ValueError(f"config field 'out': cannot write to {out!r} ({exc})") from None
    try:
        held = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
        if resume and CHECKPOINT not in held:
            raise CheckpointError(f"{out} holds no checkpoint ({CHECKPOINT}) to resume")
        if held and not resume and not overwrite and _worth_keeping(out, held):
            raise ValueError(f"{out} holds another run ({', '.join(held)}): --resume {out} "
                             "continues it, --overwrite replaces it, or give another --out")
        if overwrite and not resume:  # only the files a run writes: OUT may hold others
            # (not through a link: OUT/models pointing elsewhere keeps what it points to)
            models = () if os.path.islink(os.path.join(out, "models")) else \
                tuple(os.path.join("models", f"{m}.npz") for m in MODELS)
            for name in (*RUN_FILES, "report.html", *models):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(out, name))
    except BaseException:
        lock.release()
        raise
    return lock, note


def _worth_keeping(out: str, held: list[str]) -> bool:
    """A run's files hold something a new run would lose: its metrics, or a checkpoint with a
    finished baseline or round (not one that failed in its setup, e.g. on a bad CSV)."""
    if "metrics.json" in held:
        return True
    if CHECKPOINT in held:
        return holds_progress(out)
    return os.path.getsize(os.path.join(out, ROUNDS_FILE)) > 0


class Interrupts:
    """SIGINT/SIGTERM handling for one run (see the module docstring), installed by
    ``with``, in the main thread only (elsewhere signals keep their handlers).

    ``hold()`` marks the start of work that must finish (a round, a collective call) and
    ``release()`` its end, where a stop asked for meanwhile is raised. ``gateway``: a gateway
    rank, which never raises: it notes the signal in :attr:`requested` for rank 0."""

    def __init__(self, *, gateway: bool = False, mpi: bool = False, quiet: bool = False) -> None:
        self.gateway, self.mpi, self.quiet = gateway, mpi, quiet
        self.requested: str | None = None
        self.holding = 0
        # What tells the gateway ranks to stop (set by the simulator once they listen)
        self.stop_gateways: Callable[[], None] = lambda: None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.gateway:
            # A gateway rank that is done waits in MPI_Finalize for rank 0, which may still be
            # attacking or reporting, and Python restores the default handlers before mpi4py
            # finalizes: a signal the launcher passes on would kill it there. Rank 0 decides
            # how the job ends, so the gateway ignores them from now on.
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.gateway:
            self.requested = self.requested or name
            return
        if self.holding and self.requested is None:
            self.requested = name
            if not self.quiet:
                sys.stderr.write(f"\nprivcity simulate: {name}: stopping after the round in "
                                 "progress (send it again to stop at once)\n")
                sys.stderr.flush()
            return
        raise Interrupted(f"interrupted ({name})", abandon=bool(self.holding) and self.mpi)

    def request(self, reason: str) -> None:
        """Ask for a stop at the next :meth:`release` (e.g. a gateway rank got a signal)."""
        self.requested = self.requested or reason

    def hold(self) -> None:
        self.holding += 1

    def release(self) -> None:
        self.holding = max(0, self.holding - 1)
        if self.holding == 0 and self.requested is not None and not self.gateway:
            raise Interrupted(f"interrupted ({self.requested})")
