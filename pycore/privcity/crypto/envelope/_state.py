"""Envelope state files: the sender's crash-safe counter and the receiver's replay windows, each
written durably (temp file, fsync, ``os.replace``, fsync of the directory) and locked while in
use, so a restart neither reuses a counter nor accepts an envelope twice."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading

from ._wire import U64, id_bytes

#: Default counter reservation block.
BLOCK = 1024

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory locks
    fcntl = None  # type: ignore[assignment]


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` durably: temp file in the same directory, fsync,
    ``os.replace``, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".privcity-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the replace is done anyway
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class StateLock:
    """An exclusive advisory lock on ``path + ".lock"`` for the life of the object: two
    processes sharing one state file would hand out the same counters (or accept the same
    envelope twice), so the second is refused at once. A lock dies with its process."""

    def __init__(self, path: str) -> None:
        self._fd: int | None = None
        if fcntl is None:  # pragma: no cover
            return
        lock_path = path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RuntimeError(f"state file {path!r} is in use by another sender or "
                                   "receiver (its lock file is held); one process per state "
                                   "file") from None
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()


class CounterStore:
    """A crash-safe counter: the high-water mark (first counter not reserved) lives in a file.

    Counters are reserved in blocks; the new mark is written (temp file in the same directory,
    fsync, ``os.replace``, fsync of the directory) before any counter of the block is handed
    out, so after a crash or restart counting resumes at the stored mark and never repeats.
    A missing file starts at 0; a corrupt one, or one of another sender, is refused. The file
    is locked (``path + ".lock"``, an advisory flock) while the store is open: a second store on
    the same file, in this or another process, raises RuntimeError. :meth:`close` releases it.

    Threads may share a store: :meth:`take` reads, reserves and advances the counter under one
    mutex (the state write included), so no two takes return overlapping counters.
    """

    _FORMAT = "privcity-envelope-counter"

    def __init__(self, path: str | os.PathLike[str] | None, sender_id: str, *,
                 block: int = BLOCK):
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError("block must be an int >= 1")
        id_bytes(sender_id, "sender_id")
        self._sender = sender_id
        self._block = block
        self._closed = False
        self._pid = os.getpid()
        # Held from reading the counter to advancing it: the state write between them releases
        # the GIL, and two threads reading the same counter would seal under the same nonce.
        self._mu = threading.Lock()
        if path is None:  # in memory: for keys that die with this object (see EnvelopeSender)
            self._path = None
            self._lock = None
            self._next = self._limit = 0
            return
        # The real path: os.replace on a symlink would replace the link, not its target, and a
        # second sender reaching the target by another name must meet the same lock.
        self._path = os.path.realpath(os.fspath(path))
        self._lock = StateLock(self._path)
        self._pid = os.getpid()
        try:
            self._next = self._load()
        except BaseException:
            self._lock.release()
            raise
        self._limit = self._next  # nothing reserved by this process yet

    def close(self) -> None:
        """Release the lock; the store hands out nothing more."""
        with self._mu:
            self._closed = True
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> CounterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> int:
        try:
            with open(self._path, "rb") as f:
                raw = f.read(4096)
        except FileNotFoundError:
            return 0
        try:
            state = json.loads(raw.decode("utf-8"))
            ok = (state.get("format") == self._FORMAT and state.get("version") == 1
                  and isinstance(state.get("high_water"), int)
                  and 0 <= state["high_water"] <= U64)
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise ValueError(f"counter state file {self._path!r} is corrupt; refusing to guess "
                             "a counter (use a new epoch with a fresh file)")
        if state.get("sender_id") != self._sender:
            raise ValueError(f"counter state file {self._path!r} belongs to sender "
                             f"{state.get('sender_id')!r}, not {self._sender!r}")
        return int(state["high_water"])

    def _store(self, high_water: int) -> None:
        if self._path is None:
            return
        atomic_write(self._path, json.dumps({"format": self._FORMAT, "version": 1,
                                              "sender_id": self._sender,
                                              "high_water": high_water}).encode("utf-8"))

    @property
    def next_counter(self) -> int:
        """The counter the next :meth:`take` hands out first."""
        return self._next

    @property
    def high_water(self) -> int:
        """The mark on disk: every counter below it may have been used."""
        return self._limit

    def take(self, n: int = 1) -> int:
        """Reserve ``n`` consecutive counters; returns the first. Persists before returning.
        Atomic: threads sharing the store never get overlapping counters."""
        if n < 1:
            raise ValueError("n must be >= 1")
        # Checked before taking the mutex: a child forked while another thread held it would
        # wait forever instead of being refused.
        if self._path is not None and os.getpid() != self._pid:
            # A forked child shares the parent's counter (and its lock): both would seal under
            # the same counters. Open a new store (own state file) in the child instead.
            raise RuntimeError("counter store used in a forked child; open a new one there")
        if self._path is None and os.getpid() != self._pid:
            raise RuntimeError("in-memory counter used in a forked child; its parent holds the "
                               "same counters")
        with self._mu:
            return self._take(n)

    def _take(self, n: int) -> int:
        if self._closed:
            raise ValueError("counter store is closed")
        first = self._next
        if first + n > U64:
            raise OverflowError("counter space exhausted for this sender; move to a new key")
        if first + n > self._limit:
            # Reserve whole blocks covering this request and seven more of its size, so a sender
            # sealing batches writes (and fsyncs) its state once per several batches, not per
            # batch. Counters reserved but not used when the process dies are skipped, never reused.
            want = min(first + 8 * n, U64)
            blocks = -(-(want - self._limit) // self._block)
            new_limit = min(self._limit + blocks * self._block, U64)
            self._store(new_limit)
            self._limit = new_limit
        self._next = first + n
        return first


# --- the receiver's replay windows ----------------------------------------------------------------

class ReplayWindow:
    """Sliding replay window: the highest counter seen and a bitmap of the ``width`` below it
    (bit i set = counter top - i seen)."""

    __slots__ = ("top", "bits")

    def __init__(self) -> None:
        self.top = -1
        self.bits = 0

    def check(self, counter: int, width: int) -> str | None:
        """Why ``counter`` must be refused (already seen, or older than the window), or None."""
        if counter > self.top:
            return None
        age = self.top - counter
        if age >= width:
            return f"counter {counter} is older than the replay window (top {self.top})"
        if (self.bits >> age) & 1:
            return f"counter {counter} was already received"
        return None

    def commit(self, counter: int, width: int) -> None:
        """Mark ``counter`` seen (after its envelope authenticated)."""
        if counter > self.top:
            shift = counter - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << width) - 1) if shift < width else 1
            self.top = counter
        else:
            self.bits |= 1 << (self.top - counter)


Windows = dict[tuple[str, int], ReplayWindow]  # (sender id, epoch) -> its window

_REPLAY_FORMAT = "privcity-envelope-replay"


def load_replay_state(path: str, receiver_id: str, width: int) -> tuple[Windows, int] | None:
    """(windows, epoch floor) stored in ``path`` for ``receiver_id``, as windows of ``width``;
    None when there is no file. ValueError for a corrupt file or another receiver's."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    bad = ValueError(f"replay state file {path!r} is corrupt; refusing to "
                     "start without it (a fresh file would accept old envelopes again)")
    try:
        state = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise bad from None
    if not isinstance(state, dict) or state.get("format") != _REPLAY_FORMAT \
            or state.get("version") != 1:
        raise bad
    if state.get("receiver_id") != receiver_id:
        raise ValueError(f"replay state file {path!r} belongs to receiver "
                         f"{state.get('receiver_id')!r}, not {receiver_id!r}")
    try:
        min_epoch = state["min_epoch"]
        windows = _stored_windows(state["windows"], state["window"], width, bad)
    except (KeyError, TypeError, ValueError):
        raise bad from None
    if not isinstance(min_epoch, int) or not 0 <= min_epoch < U64:
        raise bad
    return windows, min_epoch


def _stored_windows(entries: list, stored_width: int, width: int, bad: ValueError) -> Windows:
    if isinstance(stored_width, bool) or not isinstance(stored_width, int) \
            or stored_width < 1:
        raise bad
    # Counters older than the stored width were refused as too old before the restart;
    # a wider window now must not accept them: they count as seen.
    older = ((1 << width) - 1) & ~((1 << stored_width) - 1)
    windows: Windows = {}
    for sender, epoch, top, bits in entries:
        if not (isinstance(sender, str) and isinstance(epoch, int) and isinstance(top, int)
                and isinstance(bits, str) and 0 <= epoch < U64 and 0 <= top < U64):
            raise bad
        w = ReplayWindow()
        w.top = top
        # A window stored wider than this receiver's keeps its newest counters.
        w.bits = (int(bits, 16) | older) & ((1 << width) - 1)
        windows[(sender, epoch)] = w
    return windows


def save_replay_state(path: str, receiver_id: str, width: int, min_epoch: int,
                      windows: Windows) -> None:
    """Write the windows and the epoch floor to ``path`` durably (:func:`atomic_write`)."""
    entries = [[sid, epoch, w.top, format(w.bits, "x")]
               for (sid, epoch), w in sorted(windows.items())]
    atomic_write(path, json.dumps(
        {"format": _REPLAY_FORMAT, "version": 1, "receiver_id": receiver_id,
         "window": width, "min_epoch": min_epoch, "windows": entries},
        separators=(",", ":")).encode("utf-8"))
