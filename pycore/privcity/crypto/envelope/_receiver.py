"""The envelope receiver: admits senders by certificate, checks each envelope before any
decryption, authenticates and decrypts it, and keeps the replay windows; one envelope
(:meth:`EnvelopeReceiver.open`) or a batch of many senders' in one native call
(:meth:`EnvelopeReceiver.open_many`)."""
from __future__ import annotations

import datetime as dt
import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography import x509

from ... import _core
from ..._dispatch import _AES_LEVELS, _selected_aes
from ...errors import AuthenticationError, EnvelopeError, PrivcityError
from ..aead import AES256GCM
from ..agreement import KeyRing
from ..pki import IdentityKeys, VerifiedCertificate, verify_certificate
from ._codec import decode_metadata, decode_tensor
from ._state import ReplayWindow, StateLock, load_replay_state, save_replay_state
from ._wire import (CONTENT_METADATA, CONTENT_TENSOR, FIXED, MAX_ENVELOPE, TAG, TAIL, U64BE,
                    EnvelopeHeader, envelope_error, id_bytes, nonce_prefix, parse_header, u64)

#: Default replay-window width (counters).
WINDOW = 1024


@dataclass(frozen=True)
class OpenedEnvelope:
    """An authenticated envelope: its header fields and the decrypted payload bytes."""

    sender_id: str
    receiver_id: str
    epoch: int
    counter: int
    content_type: int
    payload: bytes

    def value(self) -> bytes | np.ndarray | dict[str, int | float | str]:
        """The payload decoded by its content type (EnvelopeError if it does not decode)."""
        if self.content_type == CONTENT_TENSOR:
            return decode_tensor(self.payload)
        if self.content_type == CONTENT_METADATA:
            return decode_metadata(self.payload)
        return self.payload


@dataclass
class _DirectoryEntry:
    """An admitted sender: its verified certificate and the 4-byte prefix of its nonces."""

    verified: VerifiedCertificate
    nonce_prefix: bytes


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return -1


def _locked(method: Any) -> Any:
    """Runs the method holding the receiver's mutex: threads may share a receiver."""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._mu:
            return method(self, *args, **kwargs)
    return run


class EnvelopeReceiver:
    """Opens envelopes addressed to ``receiver_id``.

    The receiver learns senders from a directory it keeps: :meth:`add_sender` verifies a
    certificate against ``trust_anchor`` and the current CRL (``verify_certificate``) and
    stores it. Each envelope is then checked, before any decryption, in this order: header
    (truncated, malformed, unsupported_version), receiver id (wrong_receiver), sender in the
    directory (unknown_sender), CRL fresh at ``at`` (stale_crl), sender serial not in the CRL
    (revoked), sender certificate valid at ``at`` (expired), epoch not discarded and counter
    fresh in the (sender, epoch) window (replay). Then the tag (AuthenticationError); only an
    authentic envelope advances the window. :meth:`set_crl` installs a newer CRL.

    With ``state_path``, the replay windows (and the epoch floor of :meth:`discard_before`)
    survive a restart: they are loaded from that file, and every :meth:`open` or
    :meth:`open_many` that accepts an envelope writes them (temp file + fsync + replace) before
    it returns a plaintext, so an envelope accepted before a crash is refused after it. One
    write per call: open envelopes in batches where that matters. The file is locked while the
    receiver lives (:meth:`close` releases it). Without ``state_path`` the windows live in
    memory only, and a restarted receiver accepts again what it accepted before.

    Threads may share a receiver: its methods run one at a time (one mutex), so an envelope is
    accepted once however the threads interleave.
    """

    def __init__(self, keys: IdentityKeys, receiver_id: str, *, trust_anchor: x509.Certificate,
                 crl: x509.CertificateRevocationList, window: int = WINDOW,
                 max_envelope: int = MAX_ENVELOPE,
                 state_path: str | os.PathLike[str] | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError("window must be an int >= 1")
        if isinstance(max_envelope, bool) or not isinstance(max_envelope, int) \
                or max_envelope < FIXED + 2 + TAG:
            raise ValueError(f"max_envelope must be an int >= {FIXED + 2 + TAG}")
        self._id = receiver_id
        id_bytes(receiver_id, "receiver_id")
        self._mu = threading.Lock()  # held by each public method that reads or changes state
        self._ring = KeyRing(keys, receiver_id)
        self._anchor = trust_anchor
        self._crl = crl
        self._revoked: set[int] = set()
        self._window = window
        self._max = max_envelope
        self._senders: dict[str, _DirectoryEntry] = {}
        self._windows: dict[tuple[str, int], ReplayWindow] = {}
        self._aeads: dict[tuple[str, int], AES256GCM] = {}
        # Header prefixes (magic .. receiver id) of admitted envelopes -> (content type, sender
        # id, receiver id): _checked reads only the rest of a header that starts so.
        self._header_prefixes: dict[bytes, tuple[int, str, str]] = {}
        self._min_epoch = 0
        self.set_crl(crl)
        self._state_path = None if state_path is None else os.path.realpath(os.fspath(state_path))
        self._lock: StateLock | None = None
        self._closed = False
        self._pid = os.getpid()
        if self._state_path is not None:
            self._lock = StateLock(self._state_path)
            try:
                stored = load_replay_state(self._state_path, self._id, self._window)
            except BaseException:
                self._lock.release()
                raise
            if stored is not None:
                self._windows, self._min_epoch = stored

    def _save_state(self) -> None:
        if self._state_path is not None:
            save_replay_state(self._state_path, self._id, self._window, self._min_epoch,
                              self._windows)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("receiver is closed")
        if self._state_path is not None and os.getpid() != self._pid:
            raise RuntimeError("receiver with a replay state file used in a forked child: both "
                               "processes would accept the same envelope; open a new one")

    def _persist(self, touched: list[tuple[str, int]], before: dict[Any, tuple[int, int] | None],
                 ) -> None:
        """Write the state; if that fails, put the touched windows back and re-raise (a
        refused open changes no state)."""
        try:
            self._save_state()
        except BaseException:
            for slot in touched:
                old = before.get(slot)
                if old is None:
                    self._windows.pop(slot, None)
                else:
                    self._windows[slot].top, self._windows[slot].bits = old
            raise

    def _snapshot(self, slots: list[tuple[str, int]]) -> dict[Any, tuple[int, int] | None]:
        out: dict[Any, tuple[int, int] | None] = {}
        for slot in slots:
            w = self._windows.get(slot)
            out[slot] = None if w is None else (w.top, w.bits)
        return out

    @_locked
    def close(self) -> None:
        """Release the replay state file (its lock); the receiver opens nothing more."""
        self._closed = True
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            self._state_path = None

    def __enter__(self) -> EnvelopeReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def receiver_id(self) -> str:
        return self._id

    @_locked
    def set_crl(self, crl: x509.CertificateRevocationList) -> None:
        """Install a CRL (signed by the trust anchor); its revoked serials take effect now."""
        if not isinstance(crl, x509.CertificateRevocationList):
            raise TypeError("crl must be an x509.CertificateRevocationList")
        if crl.issuer != self._anchor.subject or not crl.is_signature_valid(
                self._anchor.public_key()):  # type: ignore[arg-type]
            raise ValueError("CRL is not issued and signed by the trust anchor")
        # Never roll back: an older CRL would un-revoke senders revoked since.
        if _crl_number(crl) < _crl_number(self._crl):
            raise ValueError("CRL is older than the one installed (lower CRL number)")
        self._crl = crl
        self._revoked = {r.serial_number for r in crl}
        for sid in [s for s, v in self._senders.items()
                    if v.verified.serial_number in self._revoked]:
            self._ring.forget(sid)
            self._aeads = {k: a for k, a in self._aeads.items() if k[0] != sid}

    @_locked
    def add_sender(self, certificate: x509.Certificate | bytes | VerifiedCertificate, *,
                   at: dt.datetime | None = None) -> VerifiedCertificate:
        """Verify ``certificate`` at ``at`` (default now) and admit its subject as a sender.
        Raises CertificateError if it does not verify, ValueError if no key can be agreed with
        it (a low-order X25519 key, this receiver's own key or id); replaces an earlier
        certificate. A VerifiedCertificate checked against this receiver's CA key (or issued
        by it, CertificateAuthority.issue_verified) is re-checked without its signature (see
        verify_certificate)."""
        verified = verify_certificate(certificate, trust_anchor=self._anchor, crl=self._crl,
                                      at=at)
        sid = verified.subject_id
        self._ring.forget(sid)
        if sid in self._senders:  # (only an admitted sender's envelopes made a cached AEAD)
            self._aeads = {k: a for k, a in self._aeads.items() if k[0] != sid}
        # Agree a key now: a sender whose key agreement fails would make every later open of
        # its envelopes raise ValueError instead of refusing them (and open_many the batch).
        self._ring.receiving_key(verified, self._min_epoch)
        self._senders[sid] = _DirectoryEntry(verified, nonce_prefix(sid))
        return verified

    @_locked
    def remove_sender(self, sender_id: str) -> None:
        """Take ``sender_id`` out of the directory and forget its keys: its envelopes are
        refused (kind ``unknown_sender``) until :meth:`add_sender` admits it again. Its replay
        windows stay, so what it sent before is still refused as a replay after that."""
        self._senders.pop(sender_id, None)
        self._ring.forget(sender_id)
        self._aeads = {k: a for k, a in self._aeads.items() if k[0] != sender_id}

    @_locked
    def discard_before(self, epoch: int) -> None:
        """Forget windows and keys of epochs below ``epoch``; their envelopes are refused from
        now on (kind ``replay``), since their windows are gone."""
        self._check_open()
        self._min_epoch = max(self._min_epoch, u64(epoch, "epoch"))
        self._windows = {k: w for k, w in self._windows.items() if k[1] >= self._min_epoch}
        self._aeads = {k: a for k, a in self._aeads.items() if k[1] >= self._min_epoch}
        self._ring.discard_before(self._min_epoch)
        self._save_state()

    def _aead_for(self, sender_id: str, epoch: int) -> AES256GCM:
        slot = (sender_id, epoch)
        aead = self._aeads.get(slot)
        if aead is None:
            key = self._ring.receiving_key(self._senders[sender_id].verified, epoch)
            aead = self._aeads[slot] = AES256GCM(key)
        return aead

    @staticmethod
    def _when(at: dt.datetime | None) -> dt.datetime:
        if at is None:
            return dt.datetime.now(dt.timezone.utc)
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        return at

    @_locked
    def open(self, envelope: Any, *, at: dt.datetime | None = None) -> OpenedEnvelope:
        """Check, authenticate and decrypt one envelope at time ``at`` (default now).

        Raises EnvelopeError (see the class docstring) or AuthenticationError; a refused
        envelope changes no state.
        """
        self._check_open()
        when = self._when(at)
        sender, epoch, counter, ctype, hlen, mv = self._checked(envelope, when,
                                                                self._crl_fresh(when), {})
        nonce = self._senders[sender].nonce_prefix + U64BE.pack(counter)
        plain = self._aead_for(sender, epoch).decrypt(nonce, mv[hlen:], mv[:hlen])
        slot = (sender, epoch)
        before = self._snapshot([slot])
        win = self._windows.get(slot)
        if win is None:
            win = self._windows[slot] = ReplayWindow()
        win.commit(counter, self._window)  # _checked found it fresh, under the same mutex
        self._persist([slot], before)
        return OpenedEnvelope(sender, self._id, epoch, counter, ctype, plain)

    # --- admission: every check before decryption, for open and open_many alike ---------------

    def _crl_fresh(self, when: dt.datetime) -> bool:
        """Is the installed CRL current at ``when`` (between its last and next update)?"""
        nxt = self._crl.next_update_utc
        return nxt is not None and self._crl.last_update_utc <= when <= nxt

    def _checked(self, env: Any, when: dt.datetime, crl_fresh: bool, cleared: dict[str, bool],
                 ) -> tuple[str, int, int, int, int, memoryview]:
        """Read the header of ``env`` and admit it (:meth:`_admit`): (sender, epoch, counter,
        content type, header length, view of the bytes).

        Bytes whose header prefix (magic .. receiver id) was admitted before, with lengths that
        agree, are read from the prefix cache: only the epoch, counter and body length are
        unpacked. Anything else goes through parse_header, which raises the exact EnvelopeError
        of a bad header."""
        if type(env) is bytes:
            n = len(env)
            if 9 <= n <= self._max and 9 + env[8] < n:
                end = 10 + env[8] + env[9 + env[8]]  # the prefix: up to the receiver id's end
                known = self._header_prefixes.get(env[:end])
                if known is not None and n >= end + 20 + TAG:
                    epoch, counter, body = TAIL.unpack_from(env, end)
                    if end + 20 + body == n and body >= TAG:
                        ctype, sender, receiver = known
                        self._admit(sender, receiver, epoch, counter, when, crl_fresh, cleared)
                        return sender, epoch, counter, ctype, end + 20, memoryview(env)
        header = parse_header(env, max_envelope=self._max)
        self._admit(header.sender_id, header.receiver_id, header.epoch, header.counter, when,
                    crl_fresh, cleared)
        mv = memoryview(env).cast("B")
        self._remember_prefix(header, mv)
        return (header.sender_id, header.epoch, header.counter, header.content_type,
                header.length, mv)

    def _admit(self, sender_id: str, receiver_id: str, epoch: int, counter: int,
               when: dt.datetime, crl_fresh: bool, cleared: dict[str, bool]) -> None:
        """The admission checks of a parsed header, in the order of the class docstring; raises
        the EnvelopeError of the first that fails. open and open_many both admit here: a check
        added here holds for both. ``crl_fresh`` is :meth:`_crl_fresh` at ``when``; ``cleared``
        collects the senders that passed the sender checks (directory .. validity) in this call,
        whose answers cannot change while the call holds the mutex."""
        if receiver_id != self._id:
            raise envelope_error(f"envelope is for {receiver_id!r}, not {self._id!r}",
                                 "wrong_receiver")
        if sender_id not in cleared:
            sender = self._senders.get(sender_id)
            if sender is None:
                raise envelope_error(f"unknown sender {sender_id!r}", "unknown_sender")
            if not crl_fresh:
                raise envelope_error("the receiver's CRL is not fresh at this time; install a "
                                     "new one", "stale_crl")
            cert = sender.verified
            if cert.serial_number in self._revoked:
                raise envelope_error(f"sender {sender_id!r} is revoked", "revoked")
            if not cert.not_before <= when <= cert.not_after:
                raise envelope_error(f"sender {sender_id!r} certificate is not valid at "
                                     f"{when.isoformat()}", "expired")
            cleared[sender_id] = True
        if epoch < self._min_epoch:
            raise envelope_error(f"epoch {epoch} was discarded (minimum {self._min_epoch})",
                                 "replay")
        win = self._windows.get((sender_id, epoch))
        if win is not None and counter <= win.top:  # (a counter above the top is fresh)
            reason = win.check(counter, self._window)
            if reason is not None:
                raise envelope_error(reason, "replay")

    def _remember_prefix(self, header: EnvelopeHeader, env: memoryview) -> None:
        """Cache the prefix of an admitted header. Its receiver id is stored as ``self._id``
        (equal to it: _admit checked), so _admit's comparison of the two is an identity test."""
        if len(self._header_prefixes) >= 65536:  # many senders: start over rather than grow
            self._header_prefixes.clear()
        key = bytes(env[:header.length - 20])
        self._header_prefixes[key] = (header.content_type, header.sender_id, self._id)

    def _decrypt_passed(self, passed: list[tuple[int, str, int, int, int, int, memoryview]],
                        ) -> list[bytes | None]:
        """The plaintext of each checked envelope, or None where its tag does not verify: one
        native call for the whole batch, each envelope under its (sender, epoch) key."""
        if not passed:
            return []
        nonces = np.frombuffer(b"".join(self._senders[p[1]].nonce_prefix + U64BE.pack(p[3])
                                        for p in passed), np.uint8).reshape(len(passed), 12)
        level = _AES_LEVELS.get(_selected_aes())
        if level is not None:
            ring, senders = self._ring, self._senders
            keys = b"".join(ring.receiving_key(senders[p[1]].verified, p[2]) for p in passed)
            plains, _ = _core.open_multikey(keys, nonces, [p[6] for p in passed],
                                            [p[5] for p in passed], level)
            return plains
        # No native AES here: one decrypt_many (OpenSSL) per (sender, epoch).
        plains: list[bytes | None] = [None] * len(passed)
        groups: dict[tuple[str, int], list[int]] = {}
        for j, p in enumerate(passed):
            groups.setdefault((p[1], p[2]), []).append(j)
        for (sender, epoch), js in groups.items():
            views = [passed[j][6] for j in js]
            hlens = [passed[j][5] for j in js]
            out, ok = self._aead_for(sender, epoch).decrypt_many(
                nonces[js], [v[h:] for v, h in zip(views, hlens)],
                [v[:h] for v, h in zip(views, hlens)], return_status=True)
            for j, plain, good in zip(js, out, ok.tolist()):
                plains[j] = bytes(plain) if good else None
        return plains

    @_locked
    def open_many(self, envelopes: Sequence[Any], *, at: dt.datetime | None = None,
                  ) -> tuple[list[OpenedEnvelope | None], dict[int, PrivcityError]]:
        """Open N envelopes, decrypted in one native call (each under its sender's key).

        Returns ``(opened, errors)``: ``opened[i]`` is the OpenedEnvelope or None, and
        ``errors`` maps each refused index to its EnvelopeError or AuthenticationError. A bad
        envelope is refused alone; duplicates within the batch are refused after the first.
        Every envelope goes through the checks of :meth:`open`, in the same order, except that
        the replay check of a counter first seen in this batch follows authentication (a
        forgery of a counter an authentic envelope of the batch carries is refused as a
        forgery, not as a replay: either way it is refused and changes nothing).
        """
        self._check_open()
        when = self._when(at)
        crl_fresh = self._crl_fresh(when)
        cleared: dict[str, bool] = {}  # senders known, not revoked and valid at `when`
        opened: list[OpenedEnvelope | None] = [None] * len(envelopes)
        errors: dict[int, PrivcityError] = {}
        # Every envelope that passed the checks: (index, sender, epoch, counter, content type,
        # header length, view of its bytes), in index order.
        passed: list[tuple[int, str, int, int, int, int, memoryview]] = []
        checked = self._checked
        for i, env in enumerate(envelopes):
            try:
                passed.append((i, *checked(env, when, crl_fresh, cleared)))
            except EnvelopeError as exc:
                errors[i] = exc.with_traceback(None)  # no frame (and batch) kept alive
        # Decrypt everything first, then advance windows: nothing is committed for a
        # plaintext that is not returned.
        self._commit_batch(passed, self._decrypt_passed(passed), opened, errors)
        return opened, dict(sorted(errors.items()))

    def _commit_batch(self, passed: list[tuple[int, str, int, int, int, int, memoryview]],
                      plains: list[bytes | None], opened: list[OpenedEnvelope | None],
                      errors: dict[int, PrivcityError]) -> None:
        """Advance the windows for the authentic envelopes of a batch (refusing a counter seen
        earlier in it), fill ``opened`` and ``errors``, and persist the windows once."""
        slots = sorted({(p[1], p[2]) for p, plain in zip(passed, plains) if plain is not None})
        before = self._snapshot(slots)
        width, windows, rid = self._window, self._windows, self._id
        for (i, sender, epoch, counter, ctype, _, _), plain in zip(passed, plains):
            if plain is None:
                errors[i] = AuthenticationError()
                continue
            win = windows.get((sender, epoch))
            if win is None:
                win = windows[(sender, epoch)] = ReplayWindow()
            reason = win.check(counter, width)  # a duplicate inside one batch
            if reason is not None:
                errors[i] = envelope_error(reason, "replay")
                continue
            win.commit(counter, width)
            opened[i] = OpenedEnvelope(sender, rid, epoch, counter, ctype, plain)
        if slots:
            self._persist(slots, before)

    def __repr__(self) -> str:
        return f"EnvelopeReceiver(receiver_id={self._id!r}, senders={len(self._senders)})"

    def __reduce__(self) -> Any:
        raise TypeError("EnvelopeReceiver holds secret keys and cannot be pickled")
