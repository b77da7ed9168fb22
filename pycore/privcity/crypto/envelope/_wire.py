"""Envelope v1 wire format: the header layout, its parser, and the nonce (docs/wire-format.md is
the normative text; all integers big-endian)."""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from ...errors import EnvelopeError

MAGIC = b"PCEV"
VERSION = 1
SUITE_AES256GCM = 1
CONTENT_BYTES, CONTENT_TENSOR, CONTENT_METADATA = 0, 1, 2
CONTENT_TYPES = (CONTENT_BYTES, CONTENT_TENSOR, CONTENT_METADATA)
#: Default largest envelope a receiver accepts (header + body), in bytes.
MAX_ENVELOPE = 16 * 2**20
MAX_ID = 64  # longest sender or receiver id, UTF-8 bytes
TAG = 16
FIXED = 30  # header bytes other than the two ids
U64 = 2**64

TAIL = struct.Struct(">QQI")  # epoch, counter, body length: the header's last 20 bytes
U64BE = struct.Struct(">Q")
COUNTER_BODY = struct.Struct(">QI")  # counter, body length: what varies within a batch


def envelope_error(message: str, kind: str) -> EnvelopeError:
    return EnvelopeError(message, kind=kind)


def id_bytes(value: str, name: str) -> bytes:
    """``value`` as UTF-8, checked to be a sender or receiver id (1 to 64 bytes)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    raw = value.encode("utf-8")
    if not 1 <= len(raw) <= MAX_ID:
        raise ValueError(f"{name} must be 1 to {MAX_ID} UTF-8 bytes")
    return raw


def u64(value: int, name: str) -> int:
    """``value`` checked to be an int in [0, 2**64 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value < U64:
        raise ValueError(f"{name} must be in [0, 2**64 - 1]")
    return value


@dataclass(frozen=True)
class EnvelopeHeader:
    """The parsed header of an envelope; ``length`` is the header size in bytes."""

    content_type: int
    sender_id: str
    receiver_id: str
    epoch: int
    counter: int
    body_length: int
    length: int


def nonce_prefix(sender_id: str) -> bytes:
    """The first 4 bytes of each nonce of ``sender_id``: SHA-256(utf8(sender_id))[:4]."""
    return hashlib.sha256(id_bytes(sender_id, "sender_id")).digest()[:4]


def make_nonce(sender_id: str, counter: int) -> bytes:
    """The 12-byte nonce: SHA-256(utf8(sender_id))[:4] || u64be(counter)."""
    return nonce_prefix(sender_id) + struct.pack(">Q", u64(counter, "counter"))


def build_header(*, sender_id: str, receiver_id: str, epoch: int, counter: int,
                 plaintext_length: int, content_type: int = CONTENT_BYTES) -> bytes:
    """The v1 header (also the AAD) for a plaintext of ``plaintext_length`` bytes."""
    head = header_head(sender_id, receiver_id, epoch, content_type)
    return head + COUNTER_BODY.pack(u64(counter, "counter"), body_length(plaintext_length))


def header_head(sender_id: str, receiver_id: str, epoch: int, content_type: int) -> bytes:
    """The header up to the counter: magic .. epoch (the same for a sender's batch)."""
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"content_type must be one of {CONTENT_TYPES}")
    s, r = id_bytes(sender_id, "sender_id"), id_bytes(receiver_id, "receiver_id")
    return (MAGIC + bytes((VERSION, SUITE_AES256GCM, content_type, 0, len(s))) + s
            + bytes((len(r),)) + r + U64BE.pack(u64(epoch, "epoch")))


def body_length(plaintext_length: int) -> int:
    """The body length field for a plaintext of ``plaintext_length`` bytes (ciphertext + tag)."""
    body = plaintext_length + TAG
    if not 0 <= plaintext_length or body >= 2**32:
        raise ValueError("plaintext must be shorter than 2**32 - 16 bytes")
    return body


def parse_header(data: Any, *, max_envelope: int = MAX_ENVELOPE) -> EnvelopeHeader:
    """Parse and check the header of a whole envelope; every length is checked before use.

    Raises EnvelopeError (truncated, malformed, unsupported_version); nothing else for any
    bytes-like input. The body is not touched.
    """
    try:
        mv = memoryview(data).cast("B")
    except (TypeError, ValueError):
        raise TypeError("envelope must be a C-contiguous bytes-like object") from None
    n = mv.nbytes
    if n > max_envelope:
        raise envelope_error(f"envelope of {n} bytes exceeds the maximum of {max_envelope}",
                             "malformed")
    if n < 9:
        if bytes(mv[:min(n, 4)]) != MAGIC[:min(n, 4)]:
            raise envelope_error("bad magic: not a privcity envelope", "malformed")
        raise envelope_error(f"envelope truncated at {n} bytes (header needs at least "
                             f"{FIXED + 2})", "truncated")
    if bytes(mv[:4]) != MAGIC:
        raise envelope_error("bad magic: not a privcity envelope", "malformed")
    version, suite, ctype, reserved, slen = mv[4], mv[5], mv[6], mv[7], mv[8]
    if version != VERSION:
        raise envelope_error(f"envelope version {version} is not supported (only {VERSION})",
                             "unsupported_version")
    if suite != SUITE_AES256GCM:
        raise envelope_error(f"cipher suite {suite} is not supported (only {SUITE_AES256GCM})",
                             "unsupported_version")
    if ctype not in CONTENT_TYPES:
        raise envelope_error(f"unknown content type {ctype}", "malformed")
    if reserved != 0:
        raise envelope_error("reserved header byte must be 0", "malformed")
    if not 1 <= slen <= MAX_ID:
        raise envelope_error(f"sender id length {slen} is outside 1..{MAX_ID}", "malformed")
    pos = 9 + slen
    if n < pos + 1:
        raise envelope_error("envelope truncated inside the sender id", "truncated")
    rlen = mv[pos]
    if not 1 <= rlen <= MAX_ID:
        raise envelope_error(f"receiver id length {rlen} is outside 1..{MAX_ID}", "malformed")
    hlen = FIXED + slen + rlen
    if n < hlen:
        raise envelope_error(f"envelope truncated at {n} bytes (header is {hlen})", "truncated")
    try:
        sender = bytes(mv[9:9 + slen]).decode("utf-8")
        receiver = bytes(mv[pos + 1:pos + 1 + rlen]).decode("utf-8")
    except UnicodeDecodeError:
        raise envelope_error("sender or receiver id is not valid UTF-8", "malformed") from None
    epoch, counter, body = TAIL.unpack_from(mv, pos + 1 + rlen)
    if body < TAG:
        raise envelope_error(f"body length {body} is shorter than the {TAG}-byte tag",
                             "malformed")
    if hlen + body > max_envelope:
        raise envelope_error(f"declared envelope size {hlen + body} exceeds the maximum of "
                             f"{max_envelope}", "malformed")
    if n < hlen + body:
        raise envelope_error(f"envelope truncated at {n} bytes (declared {hlen + body})",
                             "truncated")
    if n > hlen + body:
        raise envelope_error(f"{n - hlen - body} trailing bytes after the envelope", "malformed")
    return EnvelopeHeader(ctype, sender, receiver, epoch, counter, body, hlen)
