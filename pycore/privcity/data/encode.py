"""Schema-driven feature encoding: raw record columns to the float32 matrix a model reads."""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np

from .schema import Schema

__all__ = ["Encoder"]


#: Magnitude above which a column's mean and deviation are computed on the values divided by
#: their largest (squares of values past about 1.3e154 overflow float64: the deviation would be
#: inf and the column encoded as zeros).
BIG = 1e150


def mean_std(col: np.ndarray) -> tuple[float, float]:
    """(mean, standard deviation) of finite float64 values, finite whatever their magnitude
    (up to float64's largest): values past ``BIG`` are scaled first. (0, 0) for none."""
    if not col.size:
        return 0.0, 0.0
    top = float(np.max(np.abs(col)))
    if top <= BIG:
        return float(col.mean()), float(col.std())
    unit = col / top
    return float(unit.mean()) * top, float(unit.std()) * top


class Encoder:
    """Encodes the feature columns of a schema (``schema.features`` order) for learning.

    - numeric field with a ``period`` (hour of day, day of week): two columns,
      ``name_sin`` and ``name_cos`` of 2 pi x / period (both 0 for a missing value);
    - categorical field: one-hot over its codes ``lower .. upper`` (``name=code``); a code outside
      them (an unseen category) or a missing one gives all zeros;
    - other numeric field: ``(x - mean) / scale``.

    Parameters
    ----------
    schema : Schema
    mean, scale : mapping of field name to float
        Standardisation of the plain numeric fields (scale > 0; a missing name means 0 / 1).
    """

    def __init__(self, schema: Schema, mean: Mapping[str, float], scale: Mapping[str, float]) -> None:
        self.schema = schema
        self.mean = {k: float(v) for k, v in mean.items()}
        self.scale = {k: float(v) for k, v in scale.items()}
        for k, v in self.scale.items():
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"field {k!r}: scale must be finite and > 0, got {v!r}")
        names: list[str] = []
        self._slices: dict[str, slice] = {}
        self._fields = schema.feature_fields
        for f in self._fields:
            start = len(names)
            if f.kind == "categorical":
                lo, hi = int(f.lower), int(f.upper)  # type: ignore[arg-type]
                names += [f"{f.name}={c}" for c in range(lo, hi + 1)]
            elif f.period is not None:
                names += [f"{f.name}_sin", f"{f.name}_cos"]
            else:
                names.append(f.name)
            self._slices[f.name] = slice(start, len(names))
        self.feature_names = names
        self.field_slices = tuple(self._slices[f.name] for f in self._fields)  # columns of field j

    @classmethod
    def fit(cls, schema: Schema, features: np.ndarray) -> Encoder:
        """Standardisation from data: mean and standard deviation of each plain numeric column of
        ``features`` (N, len(schema.features)); a constant column gets scale 1. NaNs ignored."""
        return cls.fit_columns(schema, lambda j: features[:, j])

    @classmethod
    def fit_columns(cls, schema: Schema, column: Callable[[int], np.ndarray]) -> Encoder:
        """``fit`` from one column at a time: ``column(j)`` is called once for each plain numeric
        field j (``schema.features`` order) and returns its values (N,), so a caller holding
        columns apart need not stack them."""
        mean: dict[str, float] = {}
        scale: dict[str, float] = {}
        for j, f in enumerate(schema.feature_fields):
            if f.kind == "numeric" and f.period is None:
                col = np.asarray(column(j), np.float64)
                finite = np.isfinite(col)
                if not finite.all():  # (a copy that changes nothing costs a pass)
                    col = col[finite]
                m, s = mean_std(col)
                mean[f.name] = m
                scale[f.name] = s if s > 1e-12 * max(1.0, abs(m)) else 1.0
        return cls(schema, mean, scale)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def columns(self, name: str) -> slice:
        """The encoded columns of field ``name``."""
        return self._slices[self.schema.field(name).name]

    def encode(self, features: np.ndarray, *, zero: Collection[str] = (),
               out: np.ndarray | None = None) -> np.ndarray:
        """Encodes raw features (N, len(schema.features)) into float32 (N, n_features).

        Fields named in ``zero`` (dropped on the device) get all-zero columns. ``out``, when
        given, is a float32 (N, n_features) array written in place and returned. NaN in a plain
        numeric column (a missing value) becomes 0, the standardised mean; in a periodic one,
        0 in both columns.
        """
        fields = self._fields
        if features.ndim != 2 or features.shape[1] != len(fields):
            raise ValueError(f"features must be (N, {len(fields)}) in schema.features order, "
                             f"got shape {features.shape}")
        n = features.shape[0]
        if out is None:
            out = np.empty((n, self.n_features), np.float32)
        elif out.shape != (n, self.n_features) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 of shape {(n, self.n_features)}")
        for j, f in enumerate(fields):
            if f.name in zero:
                out[:, self._slices[f.name]] = 0.0
            else:
                self.encode_field(j, features[:, j], out[:, self._slices[f.name]])
        return out

    def byte_table(self, j: int) -> np.ndarray | None:
        """``encode_field`` of field j for each byte value 0..255: float32 (256, k), row v the
        encoding of v. A column of bytes is then encoded by looking its values up (the same bits:
        the encoding is value by value). None for a periodic field (numpy may take the sine of a
        whole column otherwise than of 256 values)."""
        if self._fields[j].period is not None:
            return None
        sl = self.field_slices[j]
        table = np.empty((256, sl.stop - sl.start), np.float32)
        self.encode_field(j, np.arange(256, dtype=np.float64), table)
        return table

    def encode_field(self, j: int, col: np.ndarray, out: np.ndarray) -> None:
        """Encodes the raw values (N,) of feature field j (``schema.features`` order) into
        ``out``, float32 (N, k) of any layout: the field's k columns (``field_slices[j]`` of
        ``encode``'s output), as ``encode`` writes them."""
        sl = self.field_slices[j]
        if out.dtype != np.float32 or out.shape != (len(col), sl.stop - sl.start):
            raise ValueError(f"out must be float32 of shape {(len(col), sl.stop - sl.start)}")
        f = self._fields[j]
        if f.kind == "categorical":
            lo = int(f.lower)  # type: ignore[arg-type]
            finite = np.isfinite(col)
            code = np.where(finite, col, lo).astype(np.int64) - lo
            out[:] = (code[:, None] == np.arange(out.shape[1])) & finite[:, None]  # NaN: all zero
        elif f.period is not None:
            angle = ((2.0 * np.pi / f.period) * col).astype(np.float32)
            out[:, 0] = np.sin(angle)
            out[:, 1] = np.cos(angle)
            bad = ~np.isfinite(angle)
            if bad.any():  # missing: the circle's centre, as a missing number gets the mean
                out[bad] = 0.0
        else:
            scale = self.scale.get(f.name, 1.0)
            if scale > BIG:  # values near float64's largest: their differences would overflow
                z = col / scale - self.mean.get(f.name, 0.0) / scale
            else:
                z = col - self.mean.get(f.name, 0.0)
                z *= 1.0 / scale
            bad = ~np.isfinite(z)
            if bad.any():
                z[bad] = 0.0
            out[:, 0] = z
