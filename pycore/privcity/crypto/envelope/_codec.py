"""Envelope payload codecs: what a body carries by its content type (raw bytes, a tensor, a
small metadata map). The codes and layouts are part of the wire format (docs/wire-format.md)."""
from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

from ._wire import (CONTENT_BYTES, CONTENT_METADATA, CONTENT_TENSOR, MAX_ID, envelope_error,
                    id_bytes)

#: What a sender seals: bytes-like (raw bytes), a numpy array (tensor), a mapping (metadata).
Payload = Union[bytes, bytearray, memoryview, np.ndarray, Mapping[str, Any]]

# Codes are part of the wire format: never renumber.
_DTYPES = {1: "bool", 2: "int8", 3: "uint8", 4: "int16", 5: "uint16", 6: "int32", 7: "uint32",
           8: "int64", 9: "uint64", 10: "float16", 11: "float32", 12: "float64"}
_DTYPE_CODES = {np.dtype(v).newbyteorder("<") if np.dtype(v).itemsize > 1 else np.dtype(v): k
                for k, v in _DTYPES.items()}
_MAX_NDIM = 8
#: Largest product of a tensor's non-zero dimensions times its item size: what a body can hold
#: (its length is a u32), for empty tensors too.
_MAX_TENSOR_BYTES = 2**32 - 1


def encode_tensor(array: np.ndarray) -> bytes:
    """Tensor codec: u8 dtype code, u8 ndim (0..8), ndim x u64be dims, little-endian data."""
    arr = np.asarray(array)
    head, dt_le = tensor_head(arr.dtype, arr.shape)
    return head + np.ascontiguousarray(arr, dtype=dt_le).tobytes()


def tensor_head(dtype: np.dtype, shape: tuple[int, ...]) -> tuple[bytes, np.dtype]:
    """(the tensor codec's head for this dtype and shape, the little-endian dtype of its data);
    TypeError or ValueError for a tensor no envelope may carry."""
    dt_le = dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype
    code = _DTYPE_CODES.get(dt_le)
    if code is None:
        raise TypeError(f"tensor dtype {dtype} is not supported; use one of "
                        f"{sorted(_DTYPES.values())}")
    if len(shape) > _MAX_NDIM:
        raise ValueError(f"tensor has {len(shape)} dimensions; at most {_MAX_NDIM}")
    if _extent(shape) * dtype.itemsize > _MAX_TENSOR_BYTES:
        raise ValueError(f"tensor shape {shape} is too large for an envelope (the product "
                         f"of its non-zero dimensions times the item size must be at most "
                         f"{_MAX_TENSOR_BYTES})")
    return bytes((code, len(shape))) + b"".join(struct.pack(">Q", d) for d in shape), dt_le


def decode_tensor(data: Any) -> np.ndarray:
    """Inverse of :func:`encode_tensor` (a new native-order array); EnvelopeError if malformed."""
    mv = memoryview(data).cast("B")
    if mv.nbytes < 2:
        raise envelope_error("tensor payload shorter than its 2-byte head", "malformed")
    code, ndim = mv[0], mv[1]
    if code not in _DTYPES:
        raise envelope_error(f"unknown tensor dtype code {code}", "malformed")
    if ndim > _MAX_NDIM:
        raise envelope_error(f"tensor ndim {ndim} exceeds {_MAX_NDIM}", "malformed")
    head = 2 + 8 * ndim
    if mv.nbytes < head:
        raise envelope_error("tensor payload truncated inside its shape", "malformed")
    shape = struct.unpack_from(f">{ndim}Q", mv, 2)
    dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
    # An empty tensor has no data to bound its other dimensions: (0, 2**63) would pass the
    # length check below and then fail in numpy. Every shape numpy must honour is bounded here.
    if _extent(shape) * dtype.itemsize > _MAX_TENSOR_BYTES:
        raise envelope_error(f"tensor shape {shape} is too large (the product of its non-zero "
                             f"dimensions times the item size must be at most "
                             f"{_MAX_TENSOR_BYTES})", "malformed")
    count = math.prod(shape)  # exact Python int: no overflow
    if count * dtype.itemsize != mv.nbytes - head:
        raise envelope_error(f"tensor data is {mv.nbytes - head} bytes; shape {shape} of "
                             f"{dtype.name} needs {count * dtype.itemsize}", "malformed")
    try:
        arr = np.frombuffer(mv[head:], dtype=dtype).reshape(shape)
    except ValueError as exc:  # a 32-bit numpy indexes less than the bound: refuse, not crash
        raise envelope_error(f"tensor shape {shape} cannot be built: {exc}", "malformed") from None
    # np.dtype(name) is numpy's canonical native dtype object (a byte-order-swapped one compares
    # equal but is not the same object, and strict dtype checks downstream test identity).
    return arr.astype(np.dtype(_DTYPES[code]), copy=True)


def _extent(shape: Sequence[int]) -> int:
    """The product of the non-zero dimensions (what numpy must be able to index)."""
    return math.prod(d for d in shape if d)


_MAX_META_ITEMS = 256
_MAX_META_STR = 1024
_META_INT, _META_FLOAT, _META_STR = 1, 2, 3


def encode_metadata(meta: Mapping[str, Any]) -> bytes:
    """Metadata codec: u16be count (<= 256), then per entry in increasing key-byte order:
    u8 key length (1..64), key, u8 type, value (1: i64be, 2: f64be, 3: u16be length <= 1024 +
    UTF-8)."""
    if len(meta) > _MAX_META_ITEMS:
        raise ValueError(f"metadata holds at most {_MAX_META_ITEMS} entries")
    items = []
    for key, value in meta.items():
        raw = id_bytes(key, "metadata key")
        if isinstance(value, bool) or isinstance(value, (int, np.integer)):
            v = int(value)
            if not -2**63 <= v < 2**63:
                raise ValueError(f"metadata {key!r}: int outside the signed 64-bit range")
            enc = bytes((_META_INT,)) + struct.pack(">q", v)
        elif isinstance(value, (float, np.floating)):
            enc = bytes((_META_FLOAT,)) + struct.pack(">d", float(value))
        elif isinstance(value, str):
            s = value.encode("utf-8")
            if len(s) > _MAX_META_STR:
                raise ValueError(f"metadata {key!r}: string longer than {_MAX_META_STR} bytes")
            enc = bytes((_META_STR,)) + struct.pack(">H", len(s)) + s
        else:
            raise TypeError(f"metadata {key!r}: values must be int, float or str, "
                            f"not {type(value).__name__}")
        items.append((raw, enc))
    items.sort()
    return struct.pack(">H", len(items)) + b"".join(bytes((len(k),)) + k + e for k, e in items)


def decode_metadata(data: Any) -> dict[str, int | float | str]:
    """Inverse of :func:`encode_metadata`; keys must be strictly increasing (canonical, no
    duplicates). EnvelopeError(kind="malformed") on any violation."""
    mv = memoryview(data).cast("B")
    n = mv.nbytes

    def need(pos: int, k: int) -> None:
        if pos + k > n:
            raise envelope_error("metadata payload truncated", "malformed")

    need(0, 2)
    (count,) = struct.unpack_from(">H", mv, 0)
    if count > _MAX_META_ITEMS:
        raise envelope_error(f"metadata holds {count} entries; at most {_MAX_META_ITEMS}",
                             "malformed")
    pos, out, last = 2, {}, b""
    for _ in range(count):
        need(pos, 1)
        klen = mv[pos]
        if not 1 <= klen <= MAX_ID:
            raise envelope_error(f"metadata key length {klen} outside 1..{MAX_ID}", "malformed")
        need(pos + 1, klen + 1)
        raw = bytes(mv[pos + 1:pos + 1 + klen])
        if raw <= last:
            raise envelope_error("metadata keys are not strictly increasing", "malformed")
        last = raw
        typ = mv[pos + 1 + klen]
        pos += 2 + klen
        value: int | float | str
        if typ == _META_INT:
            need(pos, 8)
            (value,) = struct.unpack_from(">q", mv, pos)
            pos += 8
        elif typ == _META_FLOAT:
            need(pos, 8)
            (value,) = struct.unpack_from(">d", mv, pos)
            pos += 8
        elif typ == _META_STR:
            need(pos, 2)
            (slen,) = struct.unpack_from(">H", mv, pos)
            if slen > _MAX_META_STR:
                raise envelope_error(f"metadata string of {slen} bytes; at most "
                                     f"{_MAX_META_STR}", "malformed")
            need(pos + 2, slen)
            try:
                value = bytes(mv[pos + 2:pos + 2 + slen]).decode("utf-8")
            except UnicodeDecodeError:
                raise envelope_error("metadata string is not valid UTF-8", "malformed") from None
            pos += 2 + slen
        else:
            raise envelope_error(f"unknown metadata value type {typ}", "malformed")
        try:
            out[raw.decode("utf-8")] = value
        except UnicodeDecodeError:
            raise envelope_error("metadata key is not valid UTF-8", "malformed") from None
    if pos != n:
        raise envelope_error(f"{n - pos} trailing bytes after the metadata", "malformed")
    return out


def encode_payload(payload: Payload) -> tuple[int, bytes]:
    """(content type, plaintext) of a payload: a numpy array is a tensor, a mapping metadata,
    anything else bytes-like raw bytes."""
    if type(payload) is bytes:
        return CONTENT_BYTES, payload
    if isinstance(payload, np.ndarray):
        return CONTENT_TENSOR, encode_tensor(payload)
    if isinstance(payload, Mapping):
        return CONTENT_METADATA, encode_metadata(payload)
    try:
        return CONTENT_BYTES, bytes(memoryview(payload).cast("B"))
    except TypeError:
        raise TypeError("payload must be a numpy array (tensor), a mapping (metadata) or "
                        f"bytes-like, not {type(payload).__name__}") from None
