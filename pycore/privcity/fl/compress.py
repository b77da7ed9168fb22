"""Compressed model updates: fewer bytes per device and round, decoded by the aggregator.

Two codecs, agreed for a whole run (:class:`Compression`, ``privcity simulate --compress``):

- ``q<b>`` (b = 1..16 bits): unbiased stochastic quantization after a shared random rotation
  (Suresh et al. 2017, "Distributed Mean Estimation with Limited Communication"). The device
  pads its update x to d' and rotates it with the randomized Hadamard transform of the
  distributed-DP encoder (``privcity._core.ddg_rotate``, keyed from the round's public seed:
  :meth:`Compression.rotation_seed`), which spreads its energy evenly over the coordinates;
  takes s = max |y_i| (sent as float32, rounded up) and rounds each y_i at random to one of
  the two neighbouring points of the grid -s + k 2s / (2^b - 1), k = 0..2^b - 1, with the
  probabilities that make the rounding unbiased. The server maps the codes back to the grid
  and rotates back: E[decode(encode(x))] = x exactly (the rotation is orthonormal and fixed
  before x is known), and every coordinate of the rotated vector is off by less than one step,
  so ||decode(encode(x)) - x||_2 < 2 s sqrt(d') / (2^b - 1).
- ``topk:<f>`` (0 < f <= 1): the k = ceil(f dim) coordinates of largest magnitude, with error
  feedback (Stich et al. 2018, Karimireddy et al. 2019): each device keeps what it did not send
  (:class:`ErrorFeedback`, on its gateway, across rounds) and adds it to its next update, so
  nothing is lost, only delayed. Biased per round; for runs without secure aggregation (each
  device's sparsity pattern differs, so a masked sum of sparse vectors saves nothing).

Under secure aggregation (:class:`privcity.fl.compress_secure.SecureQuantizer`) a "q<b>" codec
composes with the masks: the devices round onto one shared grid (clip C, b bits across
+-4 C / sqrt(d') of the rotated coordinates, unbiased, never clamped) and secure aggregation
sums weight * integers in a ring of about b + log2(sqrt(d') / 8) + log2(total weight) + 1 bits:
32-bit words instead of the 64-bit fixed point, half the bytes of each masked input. No fewer:
masked words are uniform in the ring, so b bits per coordinate would need the ring itself that
small and secure aggregation to pack its words (it sends uint32 or uint64). Distributed DP
already sends rotated, rounded integers in its own 32-bit ring and is left as it is.

Differential privacy (central DP, :class:`privcity.fl.DPFedAvg`): compression runs on the
device after clipping, and quantization may raise the norm (the decoded vector is x plus the
rounding error). What the accountant charges is the sensitivity of what is summed, and the
server sums decoded rows only after clipping each of them to C again
(:meth:`privcity.fl.DPFedAvg.aggregate`): one device changes the sum by at most C whatever it
sent, compressed or not, honest or not. The rounding randomness is the device's own and
independent of every other device, so the argument is unchanged. With top-k and error
feedback the residual carries earlier rounds' data into later rounds; each round's
contribution is still clipped to C on the server, and the accountant composes rounds
adaptively, so the bound holds (the device also clips what it sends, so the server's clip
rarely bites, and what it cut stays in the residual).

Wire format of a compressed update: the plaintext of a ``CONTENT_BYTES`` envelope (fixed
fields big-endian, as the envelope header; bulk data little-endian, as the tensor codec)::

    off  size  field
    0    4     magic b"PCCU"
    4    1     codec: 1 rotated stochastic quantization, 2 top-k
    5    1     bits: quantization bits b (1..16); top-k: bits of each index, bit_length(dim - 1)
    6    1     flags: bit 0 the adaptive-clipping bit is present, bit 1 its value (1: the
               update was within the clip); other bits 0
    7    1     reserved = 0
    8    4     dim: the model's parameter count (u32)
    codec 1:
    12   4     scale s (IEEE float32, finite, >= 0, at most float32's largest / sqrt(d'))
    16   .     d' codes of b bits: code i in bits [i b, (i + 1) b) of the stream, least
               significant bit first, zero-padded to a byte (ceil(d' b / 8) bytes);
               d' = privcity.dp ddg padded dimension of dim
    codec 2:
    12   4     k (u32), the run's ceil(f dim)
    16   .     k indices, strictly increasing, < dim, of ``bits`` bits each, packed as above
    .    4k    k float32 values

Nothing may follow. The aggregator refuses, as ``EnvelopeError(kind="malformed")`` with a
message naming the field, every payload that is not exactly this for the run's codec: another
magic, codec, bit width or dim than agreed, flags out of place, a scale that is NaN, infinite,
negative or so large that the decoded update could leave float32 (every decoded coordinate is
at most s sqrt(d') in magnitude), a k other than the run's, indices out of order or range,
padding bits set, any other length. A non-finite top-k value is refused as "non_finite", like
an uncompressed update.
"""
from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from ..dp.distributed import ddg_rotation_key
from ..errors import EnvelopeError
from ..noise import SecureRNG

__all__ = ["COMPRESS_MAGIC", "Compression", "ErrorFeedback", "decode_update", "encode_quantized",
           "encode_topk", "pack_codes", "parse_compression", "unpack_codes"]

COMPRESS_MAGIC = b"PCCU"
_CODEC_QUANTIZE, _CODEC_TOPK = 1, 2
_FLAG_BIT, _FLAG_UNCLIPPED = 1, 2
_HEAD = struct.Struct(">4sBBBBI")  # magic, codec, bits, flags, reserved, dim: 12 bytes
_SCALE = struct.Struct(">f")
_K = struct.Struct(">I")
_MAX_BITS = 16
_F32_MAX = float(np.finfo(np.float32).max)


def _malformed(message: str) -> EnvelopeError:
    return EnvelopeError(f"compressed update: {message}", kind="malformed")


@dataclass(frozen=True)
class Compression:
    """The codec a run's devices and aggregator agree on.

    Parameters
    ----------
    kind : {"none", "quantize", "topk"}
    bits : int
        Quantization bits per coordinate, 1..16 ("quantize" only; 0 otherwise).
    fraction : float
        Share of coordinates top-k sends, in (0, 1] ("topk" only; 0 otherwise).
    seed : int
        Public seed of the rotations (one per epoch, :meth:`rotation_seed`): the same on the
        devices and the aggregator; not a secret (unbiasedness needs only that the rotation is
        fixed before the update is known).
    """

    kind: str = "none"
    bits: int = 0
    fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("none", "quantize", "topk"):
            raise ValueError(f"compression kind must be none, quantize or topk, not {self.kind!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise TypeError(f"bits must be an int, not {type(self.bits).__name__}")
        if self.kind == "quantize" and not 1 <= self.bits <= _MAX_BITS:
            raise ValueError(f"quantization bits must be in 1..{_MAX_BITS}, got {self.bits}")
        if self.kind != "quantize" and self.bits:
            raise ValueError("bits is for kind='quantize' only")
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f):
            raise ValueError(f"fraction must be a finite number, got {f!r}")
        if self.kind == "topk" and not 0 < f <= 1:
            raise ValueError(f"top-k fraction must be in (0, 1], got {f!r}")
        if self.kind != "topk" and f:
            raise ValueError("fraction is for kind='topk' only")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, not {type(self.seed).__name__}")

    @property
    def active(self) -> bool:
        """Whether updates are compressed (not "none")."""
        return self.kind != "none"

    @property
    def spec(self) -> str:
        """The option's text: "none", "q8", "topk:0.01"."""
        if self.kind == "quantize":
            return f"q{self.bits}"
        if self.kind == "topk":
            return f"topk:{self.fraction:g}"
        return "none"

    def k(self, dim: int) -> int:
        """Coordinates top-k sends of a ``dim``-parameter update: ceil(fraction dim), >= 1."""
        return max(1, min(dim, math.ceil(self.fraction * dim - 1e-9)))

    def rotation_seed(self, epoch: int) -> bytes:
        """The public seed of the rotation used in ``epoch`` (32 bytes)."""
        return hashlib.sha256(b"privcity compress rotation|" + np.array(
            [self.seed, epoch], np.int64).tobytes()).digest()

    def payload_bytes(self, dim: int) -> int:
        """Exact length of one compressed update of ``dim`` parameters (0 for "none")."""
        if self.kind == "quantize":
            return _HEAD.size + 4 + -(-_core.ddg_padded_dim(dim) * self.bits // 8)
        if self.kind == "topk":
            k = self.k(dim)
            return _HEAD.size + 4 + -(-k * _index_bits(dim) // 8) + 4 * k
        return 0

    def describe(self, dim: int | None = None) -> dict[str, Any]:
        """The codec as a JSON-ready dict (metrics.json), with its payload size for ``dim``."""
        out: dict[str, Any] = {"compress": self.spec, "kind": self.kind}
        if self.kind == "quantize":
            out.update(bits=self.bits, rotation="randomized Hadamard (privcity.dp.distributed)",
                       unbiased=True)
        if self.kind == "topk":
            out.update(fraction=self.fraction, error_feedback=True, unbiased=False)
        if dim is not None and self.active:
            out.update(dim=dim, payload_bytes=self.payload_bytes(dim), dense_payload_bytes=(
                2 + 8 + 4 * dim), k=self.k(dim) if self.kind == "topk" else None,
                padded_dim=_core.ddg_padded_dim(dim) if self.kind == "quantize" else None)
        return out


_SPEC = re.compile(r"^(?:none|q(\d{1,2})|topk:([0-9.eE+-]+))$")


def parse_compression(spec: str, *, seed: int = 0) -> Compression:
    """The :class:`Compression` of an option's text: "none", "q<b>" (b bits, 1..16, e.g.
    "q8"), or "topk:<fraction>" (e.g. "topk:0.01"). ValueError names the accepted forms."""
    if not isinstance(spec, str):
        raise ValueError(f"compress must be a string such as none, q8, q4 or topk:0.01, "
                         f"not {spec!r}")
    m = _SPEC.match(spec.strip().lower())
    if not m:
        raise ValueError(f"compress must be none, q<bits> (1..{_MAX_BITS}, e.g. q8) or "
                         f"topk:<fraction in (0, 1]> (e.g. topk:0.01), not {spec!r}")
    if m.group(1) is not None:
        return Compression("quantize", bits=int(m.group(1)), seed=seed)
    if m.group(2) is not None:
        try:
            fraction = float(m.group(2))
        except ValueError:
            raise ValueError(f"topk fraction must be a number in (0, 1], not "
                             f"{m.group(2)!r}") from None
        return Compression("topk", fraction=fraction, seed=seed)
    return Compression(seed=seed)


# --- bit packing ------------------------------------------------------------------------------

def _index_bits(dim: int) -> int:
    return max(1, (dim - 1).bit_length())


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Unsigned codes (each < 2**bits, bits 1..32) as one bit stream: code i in bits
    [i bits, (i + 1) bits), least significant bit first, the last byte zero-padded."""
    c = np.asarray(codes)
    if c.ndim != 1 or c.dtype.kind not in "ui":
        raise ValueError("codes must be a 1-D integer array")
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    if c.size and (int(c.min()) < 0 or int(c.max()) >> bits):
        raise ValueError(f"codes must be in [0, 2**{bits})")
    return _pack(c, bits)


def _pack(c: np.ndarray, bits: int) -> bytes:
    """:func:`pack_codes` of codes already checked."""
    if bits == 8:
        return c.astype(np.uint8).tobytes()
    if bits == 16:
        return c.astype("<u2").tobytes()
    if bits == 1:
        return np.packbits(c.astype(np.uint8), bitorder="little").tobytes()
    if bits in (2, 4):  # whole codes per byte: code j of each byte shifted into its place
        per = 8 // bits
        padded = np.zeros(-(-c.size // per) * per, np.uint8)
        padded[:c.size] = c
        out = padded[0::per].copy()
        for j in range(1, per):
            out |= padded[j::per] << np.uint8(j * bits)
        return out.tobytes()
    planes = (c.astype(np.uint32)[:, None] >> np.arange(bits, dtype=np.uint32)) & np.uint32(1)
    return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes()


def unpack_codes(data: Any, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``count`` codes (uint32). EnvelopeError("malformed") if
    ``data`` is not exactly ceil(count bits / 8) bytes or a padding bit is set."""
    raw = np.frombuffer(data, np.uint8)
    need = -(-count * bits // 8)
    if raw.size != need:
        raise _malformed(f"{count} codes of {bits} bits take {need} bytes, got {raw.size}")
    if bits == 8:
        return raw.astype(np.uint32)
    if bits == 16:
        return raw.view("<u2").astype(np.uint32)
    if bits in (2, 4):  # whole codes per byte
        per, mask = 8 // bits, np.uint8((1 << bits) - 1)
        codes = np.empty(raw.size * per, np.uint8)
        for j in range(per):
            codes[j::per] = (raw >> np.uint8(j * bits)) & mask
        if codes[count:].any():
            raise _malformed("padding bits after the last code are not zero")
        return codes[:count].astype(np.uint32)
    flat = np.unpackbits(raw, bitorder="little")
    if flat[count * bits:].any():
        raise _malformed("padding bits after the last code are not zero")
    planes = flat[:count * bits].reshape(count, bits).astype(np.uint32)
    return (planes << np.arange(bits, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)


# --- encoders ---------------------------------------------------------------------------------

def _head(codec: int, bits: int, dim: int, unclipped: bool | None) -> bytes:
    flags = 0 if unclipped is None else _FLAG_BIT | (_FLAG_UNCLIPPED if unclipped else 0)
    return _HEAD.pack(COMPRESS_MAGIC, codec, bits, flags, 0, dim)


def _update(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype != np.float32 or not x.size:
        raise ValueError("the update must be a non-empty 1-D float32 array")
    if not np.isfinite(x).all():
        raise ValueError("the update must be finite")
    return x


def encode_quantized(x: np.ndarray, compression: Compression, epoch: int, rng: SecureRNG, *,
                     unclipped: bool | None = None) -> bytes:
    """The device's payload for update ``x`` (float32, finite) under a "quantize" codec:
    rotated with ``epoch``'s seed, scaled by max |y|, rounded at random (``rng``: the device's
    own stream; OS-keyed outside simulations) to ``compression.bits`` bits. ``unclipped``: the
    adaptive-clipping bit, if the run sends one. ValueError for an update so large that its
    scale would pass float32's largest / sqrt(d') (the aggregator would refuse it)."""
    if compression.kind != "quantize":
        raise ValueError(f"encode_quantized needs a quantize codec, not {compression.spec}")
    x = _update(x)
    key = ddg_rotation_key(compression.rotation_seed(epoch))
    t = _core.ddg_rotate(x.astype(np.float64), key)  # y = U x, padded; reused in place below
    levels = (1 << compression.bits) - 1
    # The scale travels as float32: rounded up, so every |y_i| <= s and each code is in range.
    top = float(np.abs(t).max())
    s32 = np.float32(top)
    if float(s32) < top:
        s32 = np.nextafter(s32, np.float32(np.inf))
    s = float(s32)
    if s > _max_scale(t.size):
        raise ValueError(f"the update is too large to quantize: its scale {s:.4g} exceeds "
                         f"{_max_scale(t.size):.4g}, beyond which decoding could overflow float32")
    if s > 0:
        t += s  # >= 0 exactly, as s >= |y_i|
        t *= levels / (2.0 * s)  # in [0, levels]: the grid step is 2 s / levels
        low = np.floor(t)
        t -= low
        # Up with probability t - floor(t): E[code] = t, so E[decoded y_i] = y_i (unbiased).
        low += rng.uniform(t.size) < t
        np.minimum(low, levels, out=low)  # (t may pass levels by a rounding of the product)
        codes = low.astype(np.uint8 if compression.bits <= 8 else np.uint16)
    else:
        codes = np.zeros(t.size, np.uint8)
    return (_head(_CODEC_QUANTIZE, compression.bits, x.size, unclipped) + _SCALE.pack(s32)
            + _pack(codes, compression.bits))


def encode_topk(indices: np.ndarray, values: np.ndarray, dim: int, *,
                unclipped: bool | None = None) -> bytes:
    """The device's payload of a top-k update: ``indices`` strictly increasing in [0, dim),
    ``values`` their float32 values (:meth:`ErrorFeedback.step` picks both)."""
    idx = np.asarray(indices, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float32)
    if idx.ndim != 1 or vals.shape != idx.shape or not idx.size:
        raise ValueError("indices and values must be 1-D of one non-zero length")
    if idx[0] < 0 or idx[-1] >= dim or (idx.size > 1 and np.any(np.diff(idx) <= 0)):
        raise ValueError(f"indices must be strictly increasing in [0, {dim})")
    bits = _index_bits(dim)
    return (_head(_CODEC_TOPK, bits, dim, unclipped) + _K.pack(idx.size)
            + pack_codes(idx.astype(np.uint32), bits) + vals.astype("<f4").tobytes())


class ErrorFeedback:
    """Top-k with error feedback on one gateway: each device's residual (what it has not sent
    yet, float32) kept across rounds, keyed by device id. A device's residual depends only on
    its own updates, so results do not depend on how devices are spread over gateways."""

    def __init__(self) -> None:
        self._residual: dict[int, np.ndarray] = {}

    def residual(self, device: int) -> np.ndarray | None:
        """The device's residual (a copy), or None before it first sent."""
        r = self._residual.get(int(device))
        return None if r is None else r.copy()

    def step(self, device: int, update: np.ndarray, k: int,
             clip: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) the device sends this round: the k largest coordinates in
        magnitude of update + residual, scaled to L2 norm ``clip`` at most (DP runs); the rest,
        and whatever the scaling cut, becomes the new residual."""
        v = _update(update).astype(np.float32, copy=True)
        held = self._residual.get(int(device))
        if held is not None:
            v += held
        if not 1 <= k <= v.size:
            raise ValueError(f"k must be in [1, {v.size}], got {k}")
        # argpartition then sort: deterministic for a given vector (ties included).
        idx = np.sort(np.argpartition(-np.abs(v), k - 1)[:k]) if k < v.size \
            else np.arange(v.size)
        values = v[idx]
        if clip is not None:
            norm = float(np.linalg.norm(values.astype(np.float64)))
            if norm > clip:
                values = (values * np.float32(clip / norm)).astype(np.float32)
        v[idx] -= values
        self._residual[int(device)] = v
        return idx, values

    def __len__(self) -> int:
        return len(self._residual)


# --- the aggregator's decoder -----------------------------------------------------------------

def decode_update(payload: Any, compression: Compression, dim: int,
                  epoch: int) -> tuple[np.ndarray, bool | None]:
    """(the decoded update, float32 of shape (dim,); the adaptive-clipping bit or None if
    absent) of a compressed payload sealed for ``epoch``. EnvelopeError(kind="malformed") for
    anything but exactly the run's codec (see the module docstring); the row may hold Inf when
    the scale is too large for float32 (the caller refuses it as non-finite)."""
    mv = memoryview(payload).cast("B")
    if mv.nbytes < _HEAD.size + 4:
        raise _malformed(f"{mv.nbytes} bytes is shorter than its 16-byte head")
    magic, codec, bits, flags, reserved, got_dim = _HEAD.unpack_from(mv, 0)
    want = _CODEC_QUANTIZE if compression.kind == "quantize" else _CODEC_TOPK
    if magic != COMPRESS_MAGIC:
        raise _malformed(f"magic {magic!r}, expected {COMPRESS_MAGIC!r}")
    if not compression.active or codec != want:
        raise _malformed(f"codec {codec}; the run agreed {compression.spec}")
    if got_dim != dim:
        raise _malformed(f"dim {got_dim}; the model has {dim} parameters")
    if flags & ~(_FLAG_BIT | _FLAG_UNCLIPPED) or (flags & _FLAG_UNCLIPPED
                                                  and not flags & _FLAG_BIT) or reserved:
        raise _malformed(f"flags {flags:#04x} / reserved {reserved}: only bits 0 and 1 of the "
                         "flags (bit 1 only with bit 0) may be set, reserved must be 0")
    bit = bool(flags & _FLAG_UNCLIPPED) if flags & _FLAG_BIT else None
    if codec == _CODEC_QUANTIZE:
        return _decode_quantized(mv, bits, compression, dim, epoch), bit
    return _decode_topk(mv, bits, compression, dim), bit


def _max_scale(padded: int) -> float:
    """The largest scale accepted: decoded coordinates (at most s sqrt(d') in magnitude, the
    rotation being orthonormal) stay within float32."""
    return float(np.float32(_F32_MAX / math.sqrt(padded) * (1 - 2.0**-20)))


def _decode_quantized(mv: memoryview, bits: int, compression: Compression, dim: int,
                      epoch: int) -> np.ndarray:
    if bits != compression.bits:
        raise _malformed(f"{bits} bits per coordinate; the run agreed {compression.bits}")
    (s,) = _SCALE.unpack_from(mv, _HEAD.size)
    padded = _core.ddg_padded_dim(dim)
    if not (math.isfinite(s) and 0 <= s <= _max_scale(padded)):
        raise _malformed(f"scale {s!r} must be finite, >= 0 and at most "
                         f"{_max_scale(padded):.6g} (float32's largest / sqrt({padded}))")
    codes = unpack_codes(mv[_HEAD.size + 4:], bits, padded)
    levels = (1 << bits) - 1
    y = codes.astype(np.float64) * (2.0 * s / levels) - s
    x = _core.ddg_unrotate(y, dim, ddg_rotation_key(compression.rotation_seed(epoch)))
    with np.errstate(over="ignore"):  # (within float32 by the scale's bound; a last rounding
        return x.astype(np.float32)      # past it would be refused by the caller as non-finite)


def _decode_topk(mv: memoryview, bits: int, compression: Compression, dim: int) -> np.ndarray:
    if bits != _index_bits(dim):
        raise _malformed(f"{bits} bits per index; {dim} parameters take {_index_bits(dim)}")
    (k,) = _K.unpack_from(mv, _HEAD.size)
    if k != compression.k(dim):
        raise _malformed(f"k = {k}; the run agreed {compression.k(dim)} of {dim}")
    index_bytes = -(-k * bits // 8)
    start = _HEAD.size + 4
    if mv.nbytes != start + index_bytes + 4 * k:
        raise _malformed(f"{mv.nbytes} bytes; {k} indices and values take "
                         f"{start + index_bytes + 4 * k}")
    idx = unpack_codes(mv[start:start + index_bytes], bits, k).astype(np.int64)
    if idx[-1] >= dim or (k > 1 and np.any(np.diff(idx) <= 0)):
        raise _malformed(f"indices must be strictly increasing and below {dim}")
    row = np.zeros(dim, np.float32)
    row[idx] = np.frombuffer(mv[start + index_bytes:], dtype="<f4")
    return row
