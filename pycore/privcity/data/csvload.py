"""Real data from CSV files (csv module and numpy only), split into devices.

Rules when no schema is given (each column judged on all its non-missing values):

- missing: empty, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``?`` (any case) and non-finite
  numbers; a missing feature is encoded as the training mean (0 after standardisation), a row
  with a missing target is skipped;
- numeric: every value parses as a float, or all but a few stray ones (at most 1 % of the
  present values, e.g. ``err`` in a sensor log), which are then read as missing;
- timestamp: every value parses as ISO 8601 (``2015-02-04 17:51:00``, ``2022-03-20T11:00:00+01:00``,
  ``2015-02-04``): replaced by ``<col>_hour`` (fractional hour of day) and ``<col>_day_of_week``
  (0 = Monday), both cyclic; the absolute time is dropped (it does not carry over to new data
  and identifies records);
- categorical: anything else, one-hot encoded over the values seen in the training rows (in
  sorted order); a column with more than ``max_categories`` of them (ids, free text) or fewer
  than two is dropped, as is a numeric column with no value at all;
- target: classification when it is not numeric, or when it is numeric with integer values only
  and at most ``max_classes`` distinct ones; regression otherwise. ``task`` forces either.

Every inferred field is ``public`` unless ``sensitivity`` says otherwise. What the rules did
(rows skipped, stray cells read as missing, columns dropped and why) is listed in the returned
dataset's ``notes``; ``privcity simulate`` prints them.

Memory: rows are parsed in blocks of ``_CHUNK_ROWS`` and converted column by column, so a numeric
column costs 8 bytes a row. Only a column with a value that is not a number keeps its cells as
strings; when that value comes after the first block, the column's cells are read again in a
second pass over the file (a pipe, which cannot be read twice, keeps every column as strings).
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import numpy as np

from . import _hash as H
from .encode import Encoder
from .federated import FederatedDataset
from .schema import Field, Schema

__all__ = ["load_csv"]

_MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
# A column is numeric when at most this share of its present values are not numbers (stray
# cells such as "err" in a sensor log, then read as missing and reported).
_STRAY_SHARE = 0.01
_S_CSV_SPLIT = 60
_CHUNK_ROWS = 65_536  # rows parsed before their cells are converted (bounds the live str objects)


def _open(path: str | os.PathLike) -> io.TextIOBase:
    p = os.fspath(path)
    if p.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", newline="")
    return open(p, encoding="utf-8-sig", newline="")  # -sig: a byte-order mark is not a name


def _missing(v: str) -> bool:
    return v.strip().lower() in _MISSING


def _non_finite_number(v: str) -> bool:
    try:
        return not np.isfinite(float(v))
    except ValueError:
        return False


def _floats(values: Sequence[str]) -> np.ndarray | None:
    """float64 array (NaN for missing and non-finite), or None when some value is not a number."""
    try:  # all numbers: the common case, at C speed
        fast = np.fromiter(map(float, values), np.float64, len(values))
    except ValueError:  # a missing value, or not a number: value by value below
        fast = None
    if fast is not None:
        fast[~np.isfinite(fast)] = np.nan  # the only missing marker float() takes is "nan"
        return fast
    out = np.empty(len(values), np.float64)
    for i, v in enumerate(values):
        if _missing(v):
            out[i] = np.nan
            continue
        try:
            x = float(v)
        except ValueError:
            return None
        out[i] = x if math.isfinite(x) else np.nan
    return out


def _timestamps(values: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(fractional hour, day of week) arrays (NaN for missing), or None when some value is not
    an ISO 8601 date or time stamp."""
    hour = np.full(len(values), np.nan)
    dow = np.full(len(values), np.nan)
    seen = False
    for i, v in enumerate(values):
        if _missing(v):
            continue
        s = v.strip()
        if len(s) < 8 or not s[:4].isdigit():
            return None
        try:
            d = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
        except ValueError:
            return None
        seen = True
        hour[i] = d.hour + d.minute / 60.0 + d.second / 3600.0
        dow[i] = d.weekday()
    return (hour, dow) if seen else None


def _kept(values: Sequence[str]) -> np.ndarray:
    """True where a target value is present and a finite number or a label."""
    try:  # a number parses, and is missing or non-finite exactly when it is not finite
        return np.isfinite(np.fromiter(map(float, values), np.float64, len(values)))
    except ValueError:
        return np.array([not _missing(v) and not _non_finite_number(v) for v in values], bool)


def _blank(row: list[str]) -> bool:
    return not any(map(str.strip, row))


def _header(reader, name: str) -> list[str]:
    for row in reader:
        if not _blank(row):
            header = [h.strip() for h in row]
            break
    else:
        raise ValueError(f"{name} is empty: expected a header row and data rows")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"{name}: duplicate column names {dup}")
    return header


class _Column:
    """The kept cells of one column: float64 (as ``_floats`` gives them) while every value is a
    number, the cells themselves once one is not. ``integral`` (the device column): the numbers
    also have to be integral, none missing, else the ids are numbered from the strings."""

    __slots__ = ("data", "strings", "rows", "integral", "reread")

    def __init__(self, *, numeric: bool, integral: bool) -> None:
        self.data: np.ndarray | None = np.empty(0, np.float64) if numeric else None
        self.strings: list[str] | None = None if numeric else []
        self.rows = 0
        self.integral = integral
        self.reread = False  # the cells of earlier blocks went: read them again after this pass

    def add(self, cells: Sequence[str]) -> None:
        if self.data is not None:
            x = _floats(cells)
            if x is not None and (not self.integral or np.array_equal(x, np.round(x))):
                end = self.rows + len(x)
                if end > len(self.data):
                    # Doubling into a fresh array: only the rows written become resident (a list
                    # of blocks joined at the end would leave its freed blocks in malloc's heap).
                    grown = np.empty(max(end, 2 * len(self.data)), np.float64)
                    grown[:self.rows] = self.data[:self.rows]
                    self.data = grown
                self.data[self.rows:end] = x
                self.rows = end
                return
            self.data = None
            if self.rows:
                self.reread = True
                return
            self.strings = []
        if self.strings is not None:
            self.strings.extend(cells)

    def values(self) -> np.ndarray | list[str]:
        if self.data is None:
            assert self.strings is not None
            return self.strings
        self.data.resize(self.rows, refcheck=False)  # drops the unused tail, no copy
        return self.data


def _read(path, target: str, device_column: str | None,
          use: Collection[str] | None) -> tuple[list[str], np.ndarray | None,
                                                 dict[str, np.ndarray | list[str]]]:
    """Header, the mask of data rows whose target is present and finite, and the columns named in
    ``use`` (all with None) over those rows: float64 (NaN for missing) where every value is a
    number, the cells otherwise. Without the target or device column only validates the rows
    (mask None, no columns): the caller names the absent column."""
    name = os.fspath(path)
    with _open(path) as fh:
        reader = csv.reader(fh)
        header = _header(reader, name)
        width = len(header)
        wanted = target in header and (device_column is None or device_column in header)
        jt = header.index(target) if wanted else -1
        rereadable = os.path.isfile(name)  # else (a pipe) every column is kept as strings
        cols = {j: _Column(numeric=rereadable, integral=h == device_column)
                for j, h in enumerate(header) if wanted and (use is None or h in use)}
        keep_blocks: list[np.ndarray] = []
        n_rows = 0

        def convert(block: list[list[str]]) -> None:
            if not wanted or not block:
                return
            keep = _kept([r[jt] for r in block])
            keep_blocks.append(keep)
            if not keep.all():
                block = [r for r, k in zip(block, keep.tolist()) if k]
            if block:
                cells = list(zip(*block))
                for j, c in cols.items():
                    c.add(cells[j])

        block: list[list[str]] = []
        for row in reader:
            if _blank(row):
                continue
            if len(row) != width:
                raise ValueError(f"{name}, line {reader.line_num}: {len(row)} cells, the header has "
                                 f"{width}")
            block.append(row)
            n_rows += 1
            if len(block) == _CHUNK_ROWS:
                convert(block)
                block = []
        convert(block)
        del block
    if not n_rows:
        raise ValueError(f"{name} has a header but no data rows")
    keep = np.concatenate(keep_blocks) if wanted else None
    again: dict[int, list[str]] = {}
    for j, c in cols.items():
        if c.reread:
            c.strings = again[j] = []
    if again:
        assert keep is not None
        _read_again(path, header, keep, again)
    return header, keep, {header[j]: c.values() for j, c in cols.items()}


def _read_again(path, header: list[str], keep: np.ndarray, cells: dict[int, list[str]]) -> None:
    """Second pass: appends the kept cells of columns ``cells`` (by index) to their lists."""
    name = os.fspath(path)
    kept = iter(keep.tolist())
    with _open(path) as fh:
        reader = csv.reader(fh)
        same = _header(reader, name) == header
        for row in reader:
            if not same:
                break
            if _blank(row):
                continue
            k = next(kept, None)
            if k is None or len(row) != len(header):
                same = False
            elif k:
                for j, out in cells.items():
                    out.append(row[j])
    if not same or next(kept, None) is not None:
        raise ValueError(f"{name} changed while it was being read")


def _mostly_numbers(values: Sequence[str], share: float) -> tuple[np.ndarray, list[str]] | None:
    """(floats, the values that are not numbers) when at most ``share`` of the non-missing
    values are not numbers (and at least one is), else None. Those values become NaN: missing,
    imputed like any other missing cell."""
    out = np.empty(len(values), np.float64)
    bad: list[str] = []
    present = 0
    most = share * len(values)  # more than this many is more than the share of the present ones
    for i, v in enumerate(values):
        if _missing(v):
            out[i] = np.nan
            continue
        present += 1
        try:
            x = float(v)
        except ValueError:
            bad.append(v)
            if len(bad) > most:  # a text column: stop early
                return None
            out[i] = np.nan
            continue
        out[i] = x if math.isfinite(x) else np.nan
    if not bad or len(bad) > share * present or len(bad) == present:
        return None
    return out, bad


def _numbers(col: np.ndarray | list[str]) -> np.ndarray | None:
    """``_floats`` of a column from ``_read``."""
    return col if isinstance(col, np.ndarray) else _floats(col)


def load_csv(path: str | os.PathLike, *, target: str, device_column: str | None = None,
             devices: int | None = None, split: str = "contiguous", schema: Schema | None = None,
             task: str | None = None, sensitivity: Mapping[str, str] | None = None, seed: int = 0,
             test_fraction: float = 0.2, max_categories: int = 32,
             max_classes: int = 20) -> tuple[FederatedDataset, tuple[np.ndarray, np.ndarray]]:
    """Loads a CSV file as a federated dataset plus a test set.

    Parameters
    ----------
    path : str or path-like
        A CSV file with a header row (``.gz`` is decompressed).
    target : str
        The target column.
    device_column : str, optional
        Column whose value says which device a row belongs to (not a feature). Integer values
        become the device ids; other values are numbered in sorted order.
    devices : int, optional
        Without ``device_column``: the number of devices the training rows are dealt to
        (default 1), ``split="contiguous"`` (blocks in file order, as a sensor's time series) or
        ``"round_robin"``.
    schema : Schema, optional
        The columns to use and their kinds (categorical columns then hold integer codes in
        ``lower .. upper``); other columns are ignored. Default: inferred (module docstring).
    task : {"regression", "classification"}, optional
        Forces the task (default: inferred from the target).
    sensitivity : mapping of column name to flag, optional
        Sensitivity of inferred (or given) fields; default public.
    seed : int
        Row i is a test row when a hash of (seed, i) falls below ``test_fraction``: the split
        does not depend on the devices.
    test_fraction : float
        In [0, 1).
    max_categories, max_classes : int
        See the module docstring.

    Returns
    -------
    (FederatedDataset, (X_test, y_test))
        The training rows grouped by device, encoded (numeric features standardised with the
        training rows' mean and standard deviation; a regression target too, see
        ``target_mean`` and ``target_scale``), and the test rows encoded the same way.

    Raises
    ------
    ValueError
        Empty file, missing target or device column (named), a non-numeric target for
        regression, ragged rows, a schema field absent from the file.
    """
    if not (isinstance(test_fraction, (int, float)) and 0.0 <= test_fraction < 1.0):
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if task not in (None, "regression", "classification"):
        raise ValueError(f"task must be 'regression', 'classification' or None, got {task!r}")
    if split not in ("contiguous", "round_robin"):
        raise ValueError(f"split must be 'contiguous' or 'round_robin', got {split!r}")
    if device_column is not None and devices is not None:
        raise ValueError("give device_column or devices, not both")
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, (int, np.integer))
                                or devices < 1):
        raise ValueError(f"devices must be an int >= 1, got {devices!r}")
    if schema is not None and target != schema.target:
        raise ValueError(f"target {target!r} differs from the schema's target {schema.target!r}")
    use = None if schema is None else {target, device_column, *(f.name for f in schema.feature_fields)}
    name = os.fspath(path)
    try:
        header, keep, cols = _read(path, target, device_column, use)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not UTF-8 text ({exc.reason}, byte "
                         f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8") from None
    for what, col in (("target", target), ("device", device_column)):
        if col is not None and col not in header:
            raise ValueError(f"{what} column {col!r} is not in {name} (columns: {header})")
    if device_column == target:
        raise ValueError(f"column {target!r} cannot be both the target and the device column")
    assert keep is not None
    n_rows_read = len(keep)

    # Target first: a target that is missing, or a number that is not finite (inf, -inf), leaves
    # its row out (``keep``; ``cols`` hold the kept rows only).
    if not keep.any():
        raise ValueError(f"target column {target!r} of {name} has no values")
    idx = np.nonzero(keep)[0]
    test = H.uniform(H.entity_keys(seed, _S_CSV_SPLIT, idx), 0) < test_fraction
    train = ~test
    if not train.any():
        raise ValueError(f"{name}: no training rows left (test_fraction={test_fraction})")

    t_num = _numbers(cols[target])
    if task is None and schema is not None:
        task = "classification" if schema.field(target).kind == "categorical" else "regression"
    if task == "regression" and t_num is None:
        bad = next(v for v in cols[target] if _floats([v]) is None)
        raise ValueError(f"target column {target!r} is not numeric (value {bad!r}): a regression target "
                         "must be numeric")
    if task is None:
        integral = t_num is not None and bool(np.all(t_num == np.round(t_num)))
        classify = t_num is None or (integral and len(np.unique(t_num)) <= max_classes)
    else:
        classify = task == "classification"
    if classify:
        if t_num is not None:
            uniq = np.unique(t_num)
            # Exact names: an integral label as an integer, any other by its shortest repr
            # (format "g" would name 1234567 and 1234568 alike).
            class_names = tuple(str(int(u)) if float(u).is_integer() else repr(float(u))
                                for u in uniq)
            y_all = np.searchsorted(uniq, t_num).astype(np.int64)
        else:
            labels = sorted({v.strip() for v in cols[target]})
            class_names = tuple(labels)
            code = {v: i for i, v in enumerate(labels)}
            y_all = np.array([code[v.strip()] for v in cols[target]], np.int64)
        if len(class_names) < 2:
            raise ValueError(f"target column {target!r} of {name} has a single value "
                             f"({class_names[0] if class_names else 'none'}): nothing to predict")
        target_field = Field(target, "categorical", "public", "", 0, max(len(class_names) - 1, 1))
    else:
        y_all = t_num  # type: ignore[assignment]
        target_field = Field(target, "numeric", "public")

    # Features.
    feature_fields: list[Field] = []
    columns: list[np.ndarray] = []
    notes: list[str] = []
    if n_rows_read > len(idx):
        notes.append(f"{n_rows_read - len(idx):,} of {n_rows_read:,} rows left out: no finite "
                     f"value of the target {target!r}")
    if schema is not None:
        for f in schema.feature_fields:
            if f.name not in header:
                raise ValueError(f"schema field {f.name!r} is not a column of {name} (columns: {header})")
            if f.name == device_column:
                continue
            vals = _numbers(cols[f.name])
            if vals is None:
                bad = next(v for v in cols[f.name] if _floats([v]) is None)
                hint = "; categorical columns hold integer codes" if f.kind == "categorical" else ""
                raise ValueError(f"column {f.name!r}: value {bad!r} is not a number (the schema says "
                                 f"{f.kind}{hint})")
            feature_fields.append(f)
            columns.append(vals)
        given = schema.field(target)
        target_field = Field(target, target_field.kind, given.sensitivity, given.unit, target_field.lower,
                             target_field.upper)
    else:
        for h in header:
            if h in (target, device_column):
                continue
            vals = _numbers(cols[h])
            if vals is not None:
                if np.isnan(vals).all():  # nothing to learn from
                    notes.append(f"column {h!r} not used: no values")
                    continue
                feature_fields.append(Field(h, "numeric", "public"))
                columns.append(vals)
                continue
            lenient = _mostly_numbers(cols[h], _STRAY_SHARE)
            if lenient is not None:  # a numeric column with a few stray cells
                vals, bad = lenient
                notes.append(f"column {h!r}: {len(bad):,} value(s) that are not numbers (e.g. "
                             f"{bad[0].strip()!r}) read as missing")
                feature_fields.append(Field(h, "numeric", "public"))
                columns.append(vals)
                continue
            ts = _timestamps(cols[h])
            if ts is not None:
                feature_fields.append(Field(f"{h}_hour", "numeric", "public", "h", 0.0, 24.0, period=24.0))
                feature_fields.append(Field(f"{h}_day_of_week", "numeric", "public", "day (0 = Monday)",
                                            0.0, 7.0, period=7.0))
                columns += [ts[0], ts[1]]
                continue
            seen = sorted({v.strip() for v, tr in zip(cols[h], train) if tr and not _missing(v)})
            if len(seen) < 2 or len(seen) > max_categories:
                why = (f"{len(seen):,} distinct values in the training rows that are not "
                       f"numbers, more than max_categories={max_categories}"
                       if len(seen) > max_categories
                       else "fewer than 2 distinct values in the training rows")
                notes.append(f"column {h!r} not used: {why}")
                continue
            code = {v: float(i) for i, v in enumerate(seen)}
            vals = np.array([code.get(v.strip(), -1.0) if not _missing(v) else np.nan for v in cols[h]])
            feature_fields.append(Field(h, "categorical", "public", "", 0, len(seen) - 1))
            columns.append(vals)
    if not feature_fields:
        raise ValueError(f"{name}: no usable feature columns besides the target")
    out_schema = Schema(tuple(feature_fields) + (target_field,), target)
    if sensitivity:
        out_schema = out_schema.with_sensitivity(sensitivity)
    # The training and the test rows of the features, a column at a time, each column let go once
    # copied (Fortran order: copying a column touches that column's pages only).
    cols = {device_column: cols[device_column]} if device_column is not None else {}
    vals = ts = None
    f_train = np.empty((int(train.sum()), len(columns)), np.float64, order="F")
    f_test = np.empty((len(train) - len(f_train), len(columns)), np.float64, order="F")
    for j in range(len(columns)):
        f_train[:, j] = columns[j][train]
        f_test[:, j] = columns[j][test]
        columns[j] = None  # type: ignore[call-overload]
    del columns

    # Devices of the training rows.
    tr_idx = np.nonzero(train)[0]
    if device_column is not None:
        dv = cols[device_column]
        # Held as numbers only when they are integral, none missing (see _Column).
        if not isinstance(dv, np.ndarray) and any(_missing(dv[i]) for i in tr_idx):
            raise ValueError(f"device column {device_column!r} has missing values")
        dnum = _numbers(dv)
        if dnum is not None and np.all(dnum == np.round(dnum)) and not np.isnan(dnum).any():
            dev_of_row = dnum.astype(np.int64)
        else:
            names = sorted(set(dv))
            code_d = {v: i for i, v in enumerate(names)}
            dev_of_row = np.array([code_d[v] for v in dv], np.int64)
        device_ids, local = np.unique(dev_of_row[tr_idx], return_inverse=True)
    else:
        nd = 1 if devices is None else int(devices)
        m = len(tr_idx)
        if nd > m:
            notes.append(f"{nd:,} devices for {m:,} training rows: {nd - m:,} of them hold no rows")
        if split == "contiguous":
            local = (np.arange(m) * nd) // max(m, 1)
        else:
            local = np.arange(m) % nd
        device_ids = np.arange(nd, dtype=np.int64)
    order = np.argsort(local, kind="stable")
    rows_train = tr_idx[order]
    counts = np.bincount(local, minlength=len(device_ids))
    offsets = np.zeros(len(device_ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    del idx, tr_idx, local  # each as large as a column

    enc = Encoder.fit(out_schema, f_train)
    if classify:
        t_mean, t_scale = 0.0, 1.0
        y_train, y_test = y_all[rows_train], y_all[test]
    else:
        t_mean = float(y_all[train].mean())
        sd = float(y_all[train].std())
        t_scale = sd if sd > 0 else 1.0
        y_train = ((y_all[rows_train] - t_mean) / t_scale).astype(np.float32)
        y_test = ((y_all[test] - t_mean) / t_scale).astype(np.float32)
    # Encoded in blocks of rows (f_train[order] whole would be another copy of the features).
    x_train = np.empty((len(order), enc.n_features), np.float32)
    for a in range(0, len(order), _CHUNK_ROWS):
        enc.encode(f_train[order[a:a + _CHUNK_ROWS]], out=x_train[a:a + _CHUNK_ROWS])
    ds = FederatedDataset(
        X=x_train, y=y_train, offsets=offsets, device_ids=device_ids.astype(np.int64),
        district=np.zeros(len(device_ids), np.int64), schema=out_schema,
        task_type="classification" if classify else "regression",
        n_classes=len(class_names) if classify else 0,
        feature_names=list(enc.feature_names), target_mean=t_mean, target_scale=t_scale,
        class_names=class_names if classify else (), notes=tuple(notes))
    return ds, (enc.encode(f_test), y_test)
