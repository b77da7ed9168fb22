"""Envelope v1: AES-256-GCM messages with an authenticated binary header, counter nonces,
crash-safe sender counters and receiver-side replay windows.

Security: never seal under one (sender, receiver, epoch) key with a counter used before. The
sender's counters come from a state file whose high-water mark is written (temp file + fsync +
``os.replace``) *before* any counter below it is used; never delete, copy or roll back that
file while the identity keys live on (a fresh file restarts at counter 0: move to a new epoch
first); the file is locked while its sender lives, so a second process cannot share it, while
threads may share one sender (its counter is taken atomically).
Receivers reject unknown, revoked or expired senders and wrong receivers before any
decryption, and commit a counter to the replay window only after its tag verified; with a
``state_path`` the windows are written to disk before a plaintext is returned, so a restarted
receiver still refuses what it accepted before.

Wire format (docs/wire-format.md is the normative text; all integers big-endian)::

    off  size  field
    0    4     magic b"PCEV"
    4    1     version = 1
    5    1     suite = 1 (AES-256-GCM, key from privcity.crypto.agreement.derive_key)
    6    1     content type: 0 bytes, 1 tensor, 2 metadata
    7    1     reserved = 0
    8    1     S = len(utf8(sender id)), 1..64, then S bytes
    .    1     R = len(utf8(receiver id)), 1..64, then R bytes
    .    8     epoch (u64)
    .    8     counter (u64)
    .    4     B = body length (ciphertext + 16-byte tag), 16..2**32-1
    H = 30 + S + R bytes of header, then B bytes of body; nothing may follow.

    nonce = SHA-256(utf8(sender id))[:4] || u64be(counter);  AAD = the whole header.

Usage::

    sender = EnvelopeSender(device_keys, "dev-1", state_path="dev-1.counter")
    wire = sender.seal(gateway_cert, epoch, np.ones(10, np.float32))
    receiver = EnvelopeReceiver(gateway_keys, "gw-1", trust_anchor=ca_cert, crl=crl)
    receiver.add_sender(device_cert)
    opened = receiver.open(wire)          # OpenedEnvelope; opened.value() -> the ndarray

Modules, one concern each: ``_wire`` (header layout, parse_header, nonces), ``_codec`` (payload
codecs by content type), ``_state`` (the sender's counter file, the receiver's replay windows
and their file), ``_sender`` (EnvelopeSender, seal_each), ``_receiver`` (EnvelopeReceiver: its
admission checks, open and open_many). This module re-exports their public names.
"""
from __future__ import annotations

from ...errors import EnvelopeError
from ._codec import Payload as Payload
from ._codec import decode_metadata, decode_tensor, encode_metadata, encode_tensor
from ._receiver import WINDOW, EnvelopeReceiver, OpenedEnvelope
from ._sender import EnvelopeSender, seal_each
from ._state import BLOCK, CounterStore
from ._wire import (CONTENT_BYTES, CONTENT_METADATA, CONTENT_TENSOR, MAGIC, MAX_ENVELOPE,
                    SUITE_AES256GCM, VERSION, EnvelopeHeader, build_header, make_nonce,
                    parse_header)

__all__ = [
    "BLOCK", "CONTENT_BYTES", "CONTENT_METADATA", "CONTENT_TENSOR", "MAGIC", "MAX_ENVELOPE",
    "SUITE_AES256GCM", "VERSION", "WINDOW", "EnvelopeError", "EnvelopeHeader",
    "EnvelopeReceiver", "EnvelopeSender", "OpenedEnvelope", "CounterStore", "build_header",
    "decode_metadata", "decode_tensor", "encode_metadata", "encode_tensor", "make_nonce",
    "parse_header", "seal_each",
]
