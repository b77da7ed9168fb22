"""A "q<b>" codec (:mod:`privcity.fl.compress`) whose integers secure aggregation sums: FedAvg's
devices round onto one shared grid, so that the masked sum of their integers decodes to the
weighted sum of their updates (see :class:`SecureQuantizer`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from ..dp.distributed import ddg_rotation_key
from ..noise import SecureRNG
from .compress import Compression, _update

__all__ = ["SECURE_SPAN", "SecureQuantizer"]

#: Rotated coordinates of an update of norm C are sub-Gaussian with variance proxy C^2 / d':
#: the grid of a "q<b>" codec under secure aggregation spans +-SECURE_SPAN C / sqrt(d') with
#: 2^b - 1 steps (a coordinate beyond it is not clamped: it takes more of the ring).
SECURE_SPAN = 4.0


@dataclass(frozen=True)
class SecureQuantizer:
    """A "q<b>" codec whose integers are summed under secure aggregation (FedAvg without DP).

    Secure aggregation sums words, so every device rounds onto one shared grid (a per-update
    scale cannot be summed): each clips its update to ``clip``, rotates it with the round's
    public rotation (:meth:`Compression.rotation_seed` of the round), and rounds each coordinate
    at random to a multiple of ``step`` = 2 SECURE_SPAN clip / (sqrt(d') (2^b - 1)), unbiased
    and never clamped; its input is weight * those integers, then its weight. The server
    decodes the modular sum: step * (the integers' sum), rotated back, over the weights' sum.

    The ring must hold the sum without wrapping: one device's integers are at most
    clip / step + 1 in magnitude, so a sum whose weights add up to at most ``total_weight``
    needs ``ring_bits`` = bit_length(total_weight (clip / step + 1)) + 1 bits (about b +
    log2(sqrt(d') / (2 SECURE_SPAN)) + log2(total_weight) + 1); ``word_dtype`` is uint32 when
    that fits, else uint64. The masked words are uniform in the ring, so b does not shrink them
    below the word: q8 and q4 send the same bytes, half of the 64-bit fixed point.
    """

    compression: Compression
    dim: int
    clip: float
    total_weight: int

    def __post_init__(self) -> None:
        if self.compression.kind != "quantize":
            raise ValueError("secure aggregation sums quantized integers: q<bits> only")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {self.dim!r}")
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip)
                and self.clip > 0):
            raise ValueError(f"clip must be a finite number > 0, got {self.clip!r}")
        if isinstance(self.total_weight, bool) or not isinstance(self.total_weight, int) \
                or self.total_weight < 1:
            raise ValueError(f"total_weight must be an int >= 1, got {self.total_weight!r}")
        if self.ring_bits > 64:
            raise ValueError(f"a sum of weights up to {self.total_weight} at "
                             f"{self.compression.bits} bits needs a {self.ring_bits}-bit ring; "
                             "at most 64")

    @property
    def padded_dim(self) -> int:
        return int(_core.ddg_padded_dim(self.dim))

    @property
    def step(self) -> float:
        levels = (1 << self.compression.bits) - 1
        return 2.0 * SECURE_SPAN * self.clip / (math.sqrt(self.padded_dim) * levels)

    @property
    def max_integer(self) -> int:
        """The largest |integer| one device's rounding can give (clip(1 + 1e-6): float32
        clipping may leave the norm a rounding above the clip)."""
        return math.floor(self.clip * (1 + 1e-6) / self.step) + 1

    @property
    def ring_bits(self) -> int:
        return (self.total_weight * self.max_integer).bit_length() + 1

    @property
    def word_dtype(self) -> np.dtype:
        return np.dtype(np.uint32 if self.ring_bits <= 32 else np.uint64)

    def encode(self, x: np.ndarray, weight: int, round_index: int, rng: SecureRNG) -> np.ndarray:
        """One device's input (int64, padded_dim + 1): weight * its rounded, rotated update
        (``x`` already clipped to ``clip``), then its weight."""
        x = _update(x)
        key = ddg_rotation_key(self.compression.rotation_seed(round_index))
        t = _core.ddg_rotate(x.astype(np.float64), key) / self.step
        low = np.floor(t)
        q = (low + (rng.uniform(t.size) < (t - low))).astype(np.int64)
        if np.abs(q).max(initial=0) > self.max_integer:
            raise ValueError(f"the update's norm exceeds the clip {self.clip}: clip it first")
        return np.append(q * int(weight), np.int64(weight))

    def decode(self, total: np.ndarray, round_index: int) -> tuple[np.ndarray, float]:
        """(the weighted sum of the updates, float64 (dim,); the sum of the weights) from the
        modular sum of the inputs (word_dtype, padded_dim + 1)."""
        if total.dtype != self.word_dtype or total.shape != (self.padded_dim + 1,):
            raise ValueError(f"the sum must be {self.word_dtype} of shape "
                             f"({self.padded_dim + 1},), got {total.dtype} {total.shape}")
        signed = total.view(np.int32 if self.word_dtype == np.uint32 else np.int64)
        y = signed[:-1].astype(np.float64) * self.step
        key = ddg_rotation_key(self.compression.rotation_seed(round_index))
        return _core.ddg_unrotate(y, self.dim, key), float(signed[-1])

    def describe(self) -> dict[str, Any]:
        return {"bits": self.compression.bits, "clip": self.clip, "step": self.step,
                "span_stddevs": SECURE_SPAN, "padded_dim": self.padded_dim,
                "ring_bits": self.ring_bits, "word": str(self.word_dtype),
                "max_total_weight": self.total_weight}
