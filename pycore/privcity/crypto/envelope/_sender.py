"""The envelope sender: seals payloads under counter nonces, one envelope (:meth:`seal`), a
batch to one receiver (:meth:`seal_many`), or one envelope from each of many senders in one
native call (:func:`seal_each`)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import _core
from ..._dispatch import _AES_LEVELS, _selected_aes
from ..aead import AES256GCM
from ..agreement import KeyRing
from ..pki import IdentityKeys, VerifiedCertificate
from ._codec import Payload, encode_payload, tensor_head
from ._state import BLOCK, CounterStore
from ._wire import (CONTENT_TENSOR, CONTENT_TYPES, COUNTER_BODY, U64BE, body_length, header_head,
                    nonce_prefix)


class EnvelopeSender:
    """Seals envelopes from ``sender_id`` (whose private keys are ``keys``).

    One counter per sender, shared by all its keys (receivers and epochs): strictly increasing,
    hence unique under every key. ``state_path`` holds its high-water mark (see
    :class:`CounterStore`); one process per state file. Threads may share a sender: each
    :meth:`seal` and :meth:`seal_many` takes its counters in one atomic step, so no counter (and
    no nonce) is used twice; the envelopes of concurrent calls may leave in any order.

    ``state_path=None`` keeps the counter in memory, and is refused unless ``ephemeral=True``
    says the identity keys were generated for this sender alone and die with it (a simulated
    device, a test): keys that outlive the counter would reuse nonces after a restart.
    """

    def __init__(self, keys: IdentityKeys, sender_id: str, *,
                 state_path: str | os.PathLike[str] | None, block: int = BLOCK,
                 ephemeral: bool = False) -> None:
        if not isinstance(keys, IdentityKeys):
            raise TypeError("keys must be IdentityKeys")
        if state_path is None and not ephemeral:
            raise ValueError("state_path is required (a counter kept in memory is only safe "
                             "for keys that die with the sender: pass ephemeral=True)")
        self._id = sender_id
        self._counter = CounterStore(state_path, sender_id, block=block)
        self._ring = KeyRing(keys, sender_id)
        self._aeads: dict[tuple[str, int, bytes], AES256GCM] = {}
        self._nonce_prefix = nonce_prefix(sender_id)
        self._heads: dict[tuple[str, int, int], bytes] = {}  # header up to the counter

    @property
    def sender_id(self) -> str:
        return self._id

    @property
    def next_counter(self) -> int:
        return self._counter.next_counter

    def _aead(self, receiver: VerifiedCertificate, epoch: int) -> AES256GCM:
        key = self._ring.sending_key(receiver, epoch)
        slot = (receiver.subject_id, epoch, key)
        aead = self._aeads.get(slot)
        if aead is None:
            aead = self._aeads[slot] = AES256GCM(key)
        return aead

    def _head(self, receiver_id: str, epoch: int, content_type: int) -> bytes:
        slot = (receiver_id, epoch, content_type)
        head = self._heads.get(slot)
        if head is None:
            if len(self._heads) >= 4096:
                self._heads.clear()
            head = self._heads[slot] = header_head(self._id, receiver_id, epoch, content_type)
        return head

    @staticmethod
    def _encode(payloads: Sequence[Payload], content_type: int | None) -> list[tuple[int, bytes]]:
        if content_type is None:
            return [encode_payload(p) for p in payloads]
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {CONTENT_TYPES}")
        return [(content_type, bytes(memoryview(p).cast("B"))) for p in payloads]

    def seal(self, receiver: VerifiedCertificate, epoch: int, payload: Payload, *,
             content_type: int | None = None) -> bytes:
        """One envelope to ``receiver`` in ``epoch``: a numpy array is sealed as a tensor, a
        mapping as metadata, anything else bytes-like as raw bytes. With ``content_type``
        given, ``payload`` must be bytes-like and already encoded for that type."""
        if not isinstance(receiver, VerifiedCertificate):
            raise TypeError("receiver must be a VerifiedCertificate (see verify_certificate)")
        ((ctype, plain),) = self._encode((payload,), content_type)
        aead = self._aead(receiver, epoch)
        head = self._head(receiver.subject_id, epoch, ctype)
        body = body_length(len(plain))
        counter = self._counter.take(1)
        header = head + COUNTER_BODY.pack(counter, body)
        return header + aead.encrypt(self._nonce_prefix + U64BE.pack(counter), plain, header)

    def seal_many(self, receiver: VerifiedCertificate, epoch: int,
                  payloads: Sequence[Payload], *, content_type: int | None = None) -> list[bytes]:
        """N envelopes to one receiver and epoch in one ``encrypt_many`` call; their counters
        are consecutive and reserved (persisted) before anything is encrypted."""
        if not isinstance(receiver, VerifiedCertificate):
            raise TypeError("receiver must be a VerifiedCertificate (see verify_certificate)")
        encoded = self._encode(payloads, content_type)
        if not encoded:
            return []
        aead = self._aead(receiver, epoch)
        bodies = [body_length(len(plain)) for _, plain in encoded]
        heads = {ct: self._head(receiver.subject_id, epoch, ct) for ct in {ct for ct, _ in encoded}}
        n = len(encoded)
        first = self._counter.take(n)
        pack = COUNTER_BODY.pack
        headers = [heads[ctype] + pack(first + i, body)
                   for i, ((ctype, _), body) in enumerate(zip(encoded, bodies))]
        # Nonces as in make_nonce, for the whole batch at once: prefix || u64be(counter).
        nonces = np.empty((n, 12), dtype=np.uint8)
        nonces[:, :4] = np.frombuffer(self._nonce_prefix, dtype=np.uint8)
        nonces[:, 4:] = np.arange(first, first + n, dtype=">u8").view(np.uint8).reshape(n, 8)
        sealed = aead.encrypt_many(nonces, [p for _, p in encoded], headers)
        return [h + bytes(b) for h, b in zip(headers, sealed)]

    def close(self) -> None:
        """Release the counter state file (its lock); the sender seals nothing more."""
        self._counter.close()

    def __enter__(self) -> EnvelopeSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EnvelopeSender(sender_id={self._id!r}, next_counter={self.next_counter})"

    def __reduce__(self) -> Any:
        raise TypeError("EnvelopeSender holds secret keys and cannot be pickled")


def seal_each(senders: Sequence[EnvelopeSender], receiver: VerifiedCertificate, epoch: int,
              payloads: Sequence[Payload] | np.ndarray, *,
              content_type: int | None = None) -> list[bytes]:
    """Envelope i from ``senders[i]`` with ``payloads[i]``, all to one receiver and epoch:
    byte for byte what ``[s.seal(receiver, epoch, p) for s, p in zip(senders, payloads)]``
    gives, in one native call (each envelope under its sender's own key) instead of a Python
    round trip per envelope. ``payloads`` may be a 2-D array: row i is sender i's tensor.
    Each sender's counter is taken before anything is encrypted."""
    if not isinstance(receiver, VerifiedCertificate):
        raise TypeError("receiver must be a VerifiedCertificate (see verify_certificate)")
    if len(senders) != len(payloads):
        raise ValueError(f"{len(senders)} senders but {len(payloads)} payloads")
    if any(not isinstance(s, EnvelopeSender) for s in senders):
        raise TypeError("senders must be EnvelopeSender objects")
    level = _AES_LEVELS.get(_selected_aes())
    if level is None:  # no native AES here: the per-envelope path (OpenSSL) does the same
        return [s.seal(receiver, epoch, p, content_type=content_type)
                for s, p in zip(senders, payloads)]
    if isinstance(payloads, np.ndarray) and payloads.ndim == 2 and content_type is None:
        prefix, dt_le = tensor_head(payloads.dtype, payloads.shape[1:])
        rows = np.ascontiguousarray(payloads, dtype=dt_le)
        bodies: list[Any] = list(rows) if rows.shape[1] else [b""] * len(rows)
        ctypes = [CONTENT_TENSOR] * len(rows)
    else:
        prefix = b""
        encoded = EnvelopeSender._encode(payloads, content_type)
        ctypes, bodies = [c for c, _ in encoded], [p for _, p in encoded]
    keys, heads, nonces = [], [], []
    rid = receiver.subject_id
    for s, ctype, body in zip(senders, ctypes, bodies):
        size = body_length(len(prefix) + memoryview(body).nbytes)
        keys.append(s._ring.sending_key(receiver, epoch))
        counter = s._counter.take(1)
        heads.append(s._head(rid, epoch, ctype) + COUNTER_BODY.pack(counter, size))
        nonces.append(s._nonce_prefix + U64BE.pack(counter))
    nonce_rows = np.frombuffer(b"".join(nonces), np.uint8).reshape(len(nonces), 12)
    return _core.seal_multikey(b"".join(keys), nonce_rows, heads, prefix, bodies, level)
