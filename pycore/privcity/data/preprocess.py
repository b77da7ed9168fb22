"""On-device preprocessing driven by each field's sensitivity flag."""
from __future__ import annotations

import hashlib

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..dp import LaplaceMechanism
from ..noise import SecureRNG
from .schema import Schema

__all__ = ["GENERALIZE_BINS", "TREATMENTS", "default_treatment", "preprocess", "preprocess_record"]

TREATMENTS = ("keep", "drop", "laplace", "generalize", "pseudonymize")
#: Default number of equal-width bins (numeric) or groups (categorical codes) of "generalize".
GENERALIZE_BINS = 4


def default_treatment(schema: Schema) -> dict[str, str]:
    """The treatment of every feature by its flag: sensitive numeric -> ``laplace``, sensitive
    categorical -> ``drop`` (no noise for codes yet), public and quasi -> ``keep``."""
    out = {}
    for f in schema.feature_fields:
        if f.sensitivity == "sensitive":
            out[f.name] = "laplace" if f.kind == "numeric" else "drop"
        else:
            out[f.name] = "keep"
    return out


def resolve_treatment(schema: Schema, treatment: Mapping[str, str] | None) -> dict[str, str]:
    """``default_treatment`` updated by ``treatment``, validated (ValueError naming the field)."""
    out = default_treatment(schema)
    features = set(schema.features)
    for name, how in (treatment or {}).items():
        if name not in features:
            raise ValueError(f"treatment names {name!r}, which is not a feature of the schema "
                             f"(features: {schema.features})")
        if how not in TREATMENTS:
            raise ValueError(f"field {name!r}: treatment must be one of {TREATMENTS}, got {how!r}")
        f = schema.field(name)
        if how == "laplace" and (f.kind != "numeric" or not f.bounded):
            raise ValueError(f"field {name!r}: the laplace treatment needs a numeric field with "
                             "lower and upper bounds")
        if how == "generalize" and not f.bounded:
            raise ValueError(f"field {name!r}: the generalize treatment needs lower and upper "
                             "bounds (bins over [lower, upper])")
        if how == "pseudonymize" and (f.kind != "categorical" or not f.bounded):
            raise ValueError(f"field {name!r}: the pseudonymize treatment needs a categorical "
                             "field with codes lower..upper")
        out[name] = how
    for name, how in out.items():
        f = schema.field(name)
        if how == "laplace" and not f.bounded:
            raise ValueError(f"field {name!r} is sensitive but has no bounds: give lower and upper "
                             "(the noise is calibrated to upper - lower) or treat it as 'drop'")
    return out


def preprocess(X: np.ndarray, schema: Schema, *, treatment: Mapping[str, str] | None = None,
               epsilon: float = 1.0, rng: SecureRNG | None = None,
               bins: int = GENERALIZE_BINS, pseudonym_key: bytes | None = None) -> np.ndarray:
    """What a device releases from its raw records, field by field.

    Parameters
    ----------
    X : numpy.ndarray
        Raw records (N, len(schema.features)), columns in ``schema.features`` order, physical
        units (categorical fields as codes). Not modified.
    schema : Schema
    treatment : mapping of field name to a treatment, optional
        Overrides :func:`default_treatment` (sensitive numeric fields ``laplace``, sensitive
        categorical ones ``drop``, public and quasi-identifier fields ``keep``). Treatments:
        ``keep``; ``drop`` (zeroed); ``laplace`` (clipped to the bounds, Laplace noise);
        ``generalize`` (numeric: the centre of one of ``bins`` equal-width bins of
        [lower, upper]; categorical codes: the first code of one of ``bins`` groups of
        consecutive codes); ``pseudonymize`` (categorical codes relabelled by a keyed
        permutation: HMAC-SHA256 of each code under ``pseudonym_key`` through
        :class:`privcity.anonymize.Pseudonymizer`, so equal values stay equal and a model can
        still learn per category). It hides which label is which only where the labels'
        frequencies do not tell: for a few categories of different sizes (districts), ranking
        the released codes by count recovers them, and the simulator's risk report models that
        attack. It is no substitute for generalisation or noise.
        Row-level k-anonymity of a whole table is :func:`privcity.anonymize.mondrian`, which
        needs the table, not one device's rows.
    epsilon : float
        Local DP budget of one record, split evenly over its ``laplace`` fields: each gets
        Laplace noise of scale k (upper - lower) / epsilon after clipping to [lower, upper]
        (k fields), so one record's release is epsilon-DP (each row separately).
    rng : SecureRNG, optional
        Noise source (default: a fresh OS-keyed :class:`privcity.noise.SecureRNG`). A seeded one
        is for simulations only.
    bins : int
        Bins or groups of ``generalize`` (>= 1).
    pseudonym_key : bytes, optional
        Key of ``pseudonymize`` (>= 16 bytes), shared by the devices of a deployment and never
        stored with the data; required when a field is pseudonymized.

    Returns
    -------
    numpy.ndarray
        A new array of X's shape (float32 stays float32, else float64). ``drop`` fields are
        zeroed, not removed, so the width of the matrix (and of any model) stays fixed. Noised
        values are not clipped again, so they may leave the bounds; their mean is unbiased
        for in-bound data. The noise is :meth:`privcity.dp.LaplaceMechanism.release`'s: the
        values snapped to a grid chosen from the noise scale plus exact discrete Laplace noise.
        The target of a record is not in X: release records with :func:`preprocess_record`,
        which treats it by its flag too.
    """
    feats = schema.features
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != len(feats):
        raise ValueError(f"X must be (N, {len(feats)}) with columns {feats}, got shape {X.shape}")
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool)
            and np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if rng is not None and not isinstance(rng, SecureRNG):
        raise TypeError(f"rng must be a privcity.noise.SecureRNG (DP noise never comes from numpy), "
                        f"got {type(rng).__name__}")
    how = resolve_treatment(schema, treatment)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    if "pseudonymize" in how.values() and pseudonym_key is None:
        raise ValueError("pseudonym_key is required to pseudonymize a field")
    out = np.array(X, dtype=np.float32 if X.dtype == np.float32 else np.float64, order="C", copy=True)
    noised = [j for j, name in enumerate(feats) if how[name] == "laplace"]
    if noised and out.shape[0]:
        rng = rng if rng is not None else SecureRNG()
        eps_field = float(epsilon) / len(noised)
        for j in noised:
            f = schema.field(feats[j])
            col = np.clip(out[:, j], f.lower, f.upper)
            width = float(f.upper) - float(f.lower)  # type: ignore[arg-type]
            mech = LaplaceMechanism(epsilon=eps_field, sensitivity=width, rng=rng)
            # Float-safe: the column snapped to a grid chosen from the noise scale, plus exact
            # discrete Laplace noise (one record moves its column by at most ``width``).
            out[:, j] = mech.release(np.ascontiguousarray(col, dtype=np.float64))
    for j, name in enumerate(feats):
        f = schema.field(name)
        if how[name] == "drop":
            out[:, j] = 0.0
        elif how[name] == "generalize":
            out[:, j] = _generalize(out[:, j], f, bins)
        elif how[name] == "pseudonymize":
            out[:, j] = _pseudonymize(out[:, j], f, pseudonym_key)  # type: ignore[arg-type]
    return out


def _generalize(col: np.ndarray, f: Any, bins: int) -> np.ndarray:
    lo, hi = float(f.lower), float(f.upper)
    if f.kind == "numeric":
        width = (hi - lo) / bins
        if width <= 0:
            return np.full_like(col, lo)
        idx = np.clip(np.floor((np.clip(col, lo, hi) - lo) / width), 0, bins - 1)
        return (lo + (idx + 0.5) * width).astype(col.dtype)
    n_codes = int(hi - lo) + 1
    groups = min(bins, n_codes)
    codes = (np.clip(np.rint(col), lo, hi) - lo).astype(np.int64)
    # Group g holds codes [floor(g n / G), floor((g + 1) n / G)): G groups of near-equal size,
    # each released as its first code.
    g = (codes * groups) // n_codes
    first = -((-g * n_codes) // groups)  # ceil(g n / G)
    return (lo + first).astype(col.dtype)


def _relabeling(key: bytes, name: str, lo: int, hi: int) -> np.ndarray:
    """The keyed permutation of codes lo..hi (read-only). The last few are kept, so the devices
    of one city, which share a key, derive it once; they are looked up by a hash of the key,
    never the key itself."""
    slot = (hashlib.sha256(key).digest(), name, lo, hi)
    relabel = _RELABELINGS.get(slot)
    if relabel is None:
        from ..anonymize import Pseudonymizer
        codes = np.arange(lo, hi + 1)
        tags = Pseudonymizer(key).pseudonymize([f"{name}={c}" for c in codes], output="uint64")
        relabel = np.empty(codes.size, dtype=np.int64)
        relabel[np.argsort(tags, kind="stable")] = np.arange(codes.size)
        relabel.flags.writeable = False
        if len(_RELABELINGS) >= 16:
            _RELABELINGS.pop(next(iter(_RELABELINGS)))
        _RELABELINGS[slot] = relabel
    return relabel


_RELABELINGS: dict[tuple, np.ndarray] = {}


def _pseudonymize(col: np.ndarray, f: Any, key: bytes) -> np.ndarray:
    lo, hi = int(f.lower), int(f.upper)
    relabel = _relabeling(key, f.name, lo, hi)
    codes = np.rint(col)
    if not np.isfinite(codes).all() or (codes < lo).any() or (codes > hi).any():
        raise ValueError(f"field {f.name!r}: pseudonymize needs integer codes in "
                         f"[{lo}, {hi}] (found NaN or a code outside)")
    idx = (codes - lo).astype(np.int64)
    return (lo + relabel[idx]).astype(col.dtype)


def preprocess_record(X: np.ndarray, y: np.ndarray, schema: Schema, **kwargs: Any,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """What a device releases of whole records, features ``X`` and target ``y``: as
    :func:`preprocess`, with the target treated by its own flag too (a sensitive numeric
    target gets its share of the epsilon and its noise, like any sensitive field). Returns the
    released (X, y). ``treatment`` may name the target."""
    from .schema import Field
    X = np.asarray(X)
    y = np.asarray(y)
    if y.ndim != 1 or X.ndim != 2 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be 1-D with one value per row of X, got {y.shape} for {X.shape}")
    names = [f.name for f in schema.fields]
    dummy = "__privcity_no_target__"
    release = Schema(tuple(schema.fields) + (Field(dummy, "numeric", "public"),), target=dummy)
    full = np.empty((X.shape[0], len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        full[:, j] = y if name == schema.target else X[:, schema.features.index(name)]
    out = preprocess(full, release, **kwargs)
    cols = [names.index(f) for f in schema.features]
    return out[:, cols].astype(X.dtype if X.dtype == np.float32 else np.float64), \
        out[:, names.index(schema.target)]
