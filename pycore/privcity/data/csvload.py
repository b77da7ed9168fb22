"""Real data from CSV files (read by pyarrow.csv, judged and encoded with numpy), split into
devices.

Rules when no schema is given (each column judged on all its non-missing values):

- missing: empty, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``?`` (any case) and non-finite
  numbers; a missing feature is encoded as the training mean (0 after standardisation), a row
  with a missing target is skipped;
- numeric: every value parses as a float (Python's ``float()``: ``" 1"``, ``"1e5"``, ``"1_000"``
  are numbers, ``"0x1f"`` is not), or all but a few stray ones (at most 1 % of the present
  values, e.g. ``err`` in a sensor log), which are then read as missing;
- timestamp: every value parses as ISO 8601 (``2015-02-04 17:51:00``, ``2022-03-20T11:00:00+01:00``,
  ``2015-02-04``): replaced by ``<col>_hour`` (fractional hour of day) and ``<col>_day_of_week``
  (0 = Monday), both cyclic; the absolute time is dropped (it does not carry over to new data
  and identifies records);
- categorical: anything else, one-hot encoded over the values seen in the training rows (in
  sorted order); a column with more than ``max_categories`` of them (ids, free text) or fewer
  than two is dropped, as is a numeric column with no value at all;
- target: classification when it is not numeric, or when it is numeric with integer values only
  and at most ``max_classes`` distinct ones; regression otherwise. A target whose values are
  numbers but for a few stray cells (at most 1 %, e.g. ``high``) is numeric: those rows are
  left out, with a warning in ``notes``. ``task`` forces either (``regression`` leaves out the
  rows of any text cell); the choice and its reason are the dataset's ``task_note``, and a
  class count past 50, or under 5 training rows a class, is warned of in ``notes``;
- magnitude: a column (or target) of values whose squares overflow float64 (past about 1e154)
  is standardised with a mean and deviation computed on scaled values, noted;
- size: a cell over 128 KiB (a row over 64 MiB) is a ValueError naming its line and column.

Every inferred field is ``public`` unless ``sensitivity`` says otherwise. What the rules did
(rows skipped, stray cells read as missing, columns dropped and why) is listed in the returned
dataset's ``notes``; ``privcity simulate`` prints them.

Test file (``test_data``): every usable row of the file trains (no hashed split), and the test
file's rows are encoded as the training rows are, never the other way round: the training rows'
means and deviations, categories, classes and timestamp features, the columns kept or dropped as
for the training file. The test file needs the target and each column a kept feature comes from
(a missing one is a ValueError naming it); other columns, the device column among them, are
ignored. A row is left out when its target is missing (as in training) or, for classification,
is a class no training row has (or, for regression, not a number); in a feature column, a
value that is not a number (numeric column), not an ISO 8601 date or time (timestamp column) is
read as missing, and one that is not among the training rows' categories sets none of the
column's one-hot features (as an unseen category of a hashed test row does). All of that goes to
``notes``, each starting with "test file: ". No usable test row is a ValueError.

Rows and cells are those of Python's csv module (default dialect): blank rows are skipped, a row
of another width than the header is an error naming its line. pyarrow.csv splits the file
(``_csvread``); the csv module reads it where Arrow cannot (and raises its errors).

Memory: a numeric column is held in the narrowest dtype that keeps every value exactly (a byte a
cell for 0..255, else float32 or float64), a text column as its cells; features are encoded a
column at a time into the float32 output (a byte column by looking its 256 encodings up). Peak:
the held columns, the output and Arrow's buffers for the block it splits (about 50 MB): on 75,000
rows of 784 columns of 0..255, 435 MiB for the whole process (1.9x the float32 data; 140 MiB of
it are Python, numpy and pyarrow themselves). With ``keep``, only the kept devices' rows are
encoded: every row is still read and held (narrow), since the encoding's means, deviations and
categories are those of all the training rows (on that file, without the test set: 275 MiB
keeping no device or half of them).
"""
from __future__ import annotations

import concurrent.futures
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

import numpy as np

from . import _hash as H
from ._csvread import _floats, _missing, read_cells
from .encode import BIG, Encoder, mean_std
from .federated import FederatedDataset
from .schema import Field, Schema

__all__ = ["load_csv"]

# A column is numeric when at most this share of its present values are not numbers (stray
# cells such as "err" in a sensor log, then read as missing and reported).
_STRAY_SHARE = 0.01
_S_CSV_SPLIT = 60
_GROUP_COLS = 64  # encoded columns gathered before they are copied into the row-major output
_COPY_ROWS = 1024  # rows of such a group copied at a time (12x faster than the whole group)
_TEST_FRACTION = 0.2  # load_csv's default; the only value it takes beside a test file
_TEST_NOTE = "test file: "  # the start of every note about the test file

# Where a feature column's raw values come from: (column of the file, "number" | "hour" | "day"
# (of a timestamp column) | the codes of a categorical column's values).
_Source = tuple[str, str | dict[str, float]]


def _timestamps(values: list[str], bad: list[str] | None = None
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """(fractional hour, day of week) arrays (NaN for missing), or None when some value is not
    an ISO 8601 date or time stamp (or none is present). With ``bad`` (a test file's column)
    such values are NaN instead, appended to ``bad``."""
    hour = np.full(len(values), np.nan)
    dow = np.full(len(values), np.nan)
    seen = bad is not None
    for i, v in enumerate(values):
        if _missing(v):
            continue
        s = v.strip()
        try:
            if len(s) < 8 or not s[:4].isdigit():
                raise ValueError(s)
            d = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
        except ValueError:
            if bad is None:
                return None
            bad.append(v)
            continue
        seen = True
        hour[i] = d.hour + d.minute / 60.0 + d.second / 3600.0
        dow[i] = d.weekday()
    return (hour, dow) if seen else None


def _read(path, target: str, device_column: str | None,
          use) -> tuple[list[str], np.ndarray | None, dict[str, np.ndarray | list[str]]]:
    """Header, the mask of data rows whose target is present and finite, and the columns named in
    ``use`` (all with None) over those rows: float64 (NaN for missing) where every value is a
    number (integral, none missing, for the device column), the cells otherwise. Without the
    target or device column only validates the rows (mask None, no columns): the caller names
    the absent column."""
    return read_cells(path, target, device_column, use, narrow=False)


def _mostly_numbers(values: Sequence[str], share: float) -> tuple[np.ndarray, list[str]] | None:
    """(floats, the values that are not numbers) when at most ``share`` of the non-missing
    values are not numbers (and at least one is), else None. Those values become NaN: missing,
    imputed like any other missing cell."""
    # more than share * len(values) is more than the share of the present ones
    split = _split_numbers(values, share * len(values))
    if split is None:
        return None
    out, bad, present = split
    if not bad or len(bad) > share * present or len(bad) == present:
        return None
    return out, bad


def _split_numbers(values: Sequence[str], most: float = math.inf
                   ) -> tuple[np.ndarray, list[str], int] | None:
    """(floats with NaN for missing, non-finite and non-numbers; the values that are not
    numbers; the number of present values), or None once more than ``most`` are not numbers."""
    out = np.empty(len(values), np.float64)
    bad: list[str] = []
    present = 0
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
    return out, bad, present


def _numbers(col: np.ndarray | list[str]) -> np.ndarray | None:
    """``_floats`` of a column from ``_read`` (numbers in any dtype ``read_cells`` keeps)."""
    return col if isinstance(col, np.ndarray) else _floats(col)


def _f64(col: np.ndarray) -> np.ndarray:
    return col if col.dtype == np.float64 else col.astype(np.float64)


def _kept_devices(keep: Callable[[int], range] | None, n: int) -> range:
    if keep is None:
        return range(n)
    r = keep(n)
    if not isinstance(r, range) or r.step != 1 or not 0 <= r.start <= r.stop <= n:
        raise ValueError(f"keep({n}) must return a range of device indices within range({n}), "
                         f"step 1, got {r!r}")
    return r


def load_csv(path: str | os.PathLike, *, target: str, device_column: str | None = None,
             devices: int | None = None, split: str = "contiguous", schema: Schema | None = None,
             task: str | None = None, sensitivity: Mapping[str, str] | None = None, seed: int = 0,
             test_fraction: float = _TEST_FRACTION, max_categories: int = 32,
             max_classes: int = 20, keep: Callable[[int], range] | None = None,
             test_set: bool = True, test_data: str | os.PathLike | None = None,
             ) -> tuple[FederatedDataset, tuple[np.ndarray, np.ndarray] | None]:
    """Loads a CSV file as a federated dataset plus a test set.

    Parameters
    ----------
    path : str or path-like
        A CSV file with a header row (``.gz`` is decompressed; a pipe is copied to a temporary
        file first).
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
        In [0, 1). Left at its default (0.2) with ``test_data``, which replaces the split.
    max_categories, max_classes : int
        See the module docstring.
    keep : callable, optional
        Called with the number of devices; returns the ``range`` (step 1) of the device indices
        whose training rows are encoded and returned. The dataset then equals
        ``load_csv(...)[0].subset(np.arange(r.start, r.stop))`` bit for bit: the same
        standardisation (every training row's), categories, classes and notes. Default: all
        devices. An MPI gateway keeps its block; rank 0 may keep none (``lambda n: range(0)``)
        and learn every device's rows from ``population``.
    test_set : bool
        False: the test rows are not encoded (nor ``test_data`` read: no notes about it), and
        None stands for the test set.
    test_data : str or path-like, optional
        A CSV file of test rows (``.gz`` too): every usable row of ``path`` then trains, and the
        test set is this file's rows encoded with the training rows' encoding (module
        docstring, "Test file"); its notes start with "test file: ".

    Returns
    -------
    (FederatedDataset, (X_test, y_test) or None)
        The training rows grouped by device, encoded (numeric features standardised with the
        training rows' mean and standard deviation; a regression target too, see
        ``target_mean`` and ``target_scale``), and the test rows encoded the same way. The
        dataset's ``population`` holds every device's id and number of training rows, whichever
        devices ``keep`` kept.

    Raises
    ------
    ValueError
        Empty file, missing target or device column (named), a non-numeric target for
        regression, ragged rows, a schema field absent from the file, ``keep`` returning
        something else than a range of device indices; a test file without the target or a
        feature column (named), or without a usable row, ``test_fraction`` with ``test_data``.
    """
    if not (isinstance(test_fraction, (int, float)) and 0.0 <= test_fraction < 1.0):
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if test_data is not None and not isinstance(test_data, (str, os.PathLike)):
        raise ValueError(f"test_data must be a path to a CSV file, got {test_data!r}")
    if test_data is not None and test_fraction != _TEST_FRACTION:
        raise ValueError(f"give test_fraction or test_data, not both: the test file holds the "
                         f"test rows (test_fraction={test_fraction!r})")
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
    if keep is not None and not callable(keep):
        raise ValueError(f"keep must be a callable (number of devices -> range), got {keep!r}")
    if not isinstance(test_set, bool):
        raise ValueError(f"test_set must be True or False, got {test_set!r}")
    use = None if schema is None else {target, device_column, *(f.name for f in schema.feature_fields)}
    name = os.fspath(path)
    header, kept, cols = _read_utf8(path, target, device_column, use)
    for what, col in (("target", target), ("device", device_column)):
        if col is not None and col not in header:
            raise ValueError(f"{what} column {col!r} is not in {name} (columns: {header})")
    if device_column == target:
        raise ValueError(f"column {target!r} cannot be both the target and the device column")
    assert kept is not None
    n_rows_read = len(kept)

    # Target first: a target that is missing, or a number that is not finite (inf, -inf), leaves
    # its row out (``kept``; ``cols`` hold the kept rows only).
    if not kept.any():
        raise ValueError(f"target column {target!r} of {name} has no values")
    idx = np.nonzero(kept)[0]
    if test_data is None:
        test = H.uniform(H.entity_keys(seed, _S_CSV_SPLIT, idx), 0) < test_fraction
    else:  # every row trains
        test = np.zeros(len(idx), bool)
    train = ~test
    if not train.any():
        raise ValueError(f"{name}: no training rows left (test_fraction={test_fraction})")
    notes: list[str] = []
    if n_rows_read > len(idx):
        notes.append(f"{n_rows_read - len(idx):,} of {n_rows_read:,} rows left out: no finite "
                     f"value of the target {target!r}")
    classify, y_all, class_names, class_values, target_field, stray, task_note = _target(
        cols[target], target, name, task, schema, max_classes, notes)
    if stray is not None:  # text cells of a numeric target: their rows are left out
        test &= ~stray
        train = ~test & ~stray
        if not train.any():
            raise ValueError(f"{name}: no training rows left (the target's numbers)")
    if classify:
        _class_count_warning(target, len(class_names), int(train.sum()), task, notes)
    if schema is not None:
        feature_fields, columns, sources = _schema_features(cols, header, schema, device_column,
                                                            name)
        given = schema.field(target)
        target_field = Field(target, target_field.kind, given.sensitivity, given.unit, target_field.lower,
                             target_field.upper)
    else:
        feature_fields, columns, sources = _inferred_features(
            cols, header, (target, device_column), train, max_categories, notes)
    if not feature_fields:
        raise ValueError(f"{name}: no usable feature columns besides the target")
    out_schema = Schema(tuple(feature_fields) + (target_field,), target)
    if sensitivity:
        out_schema = out_schema.with_sensitivity(sensitivity)
    dv = cols[device_column] if device_column is not None else None
    del cols  # each column is let go once encoded (``columns``)

    # Devices of the training rows.
    tr_idx = np.nonzero(train)[0]
    device_ids, local = _devices(dv, device_column, tr_idx, devices, split, notes)
    del dv
    order = np.argsort(local, kind="stable")
    rows_train = tr_idx[order]
    counts = np.bincount(local, minlength=len(device_ids))
    offsets = np.zeros(len(device_ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    del idx, tr_idx, local, order  # each as large as a column
    mine = _kept_devices(keep, len(device_ids))
    rows = rows_train[offsets[mine.start]:offsets[mine.stop]]
    del rows_train

    at = np.flatnonzero(train)  # indices: a column's rows taken faster than through the mask
    enc = Encoder.fit_columns(out_schema, lambda j: _f64(columns[j][at]))
    del at
    if classify:
        t_mean, t_scale = 0.0, 1.0
        y_train, y_test = y_all[rows], y_all[test]
    else:
        t_mean, sd = mean_std(y_all[train])
        t_scale = sd if sd > 0 else 1.0
        y_train = _standardised(y_all[rows], t_mean, t_scale)
        y_test = _standardised(y_all[test], t_mean, t_scale)
    _big_values(enc, [f.name for f in feature_fields], target, t_mean, t_scale, notes)
    held_out: tuple[np.ndarray, np.ndarray] | None = None
    if test_set and test_data is None:
        x_train, x_test = _encode(enc, columns, [rows, test])
        held_out = (x_test, y_test)
    else:
        (x_train,) = _encode(enc, columns, [rows])
        if test_data is not None and test_set:  # the test file, once the training columns go
            held_out = _test_file(test_data, target, enc, sources,
                                  (class_names, class_values, t_mean, t_scale), notes)
    ds = FederatedDataset(
        X=x_train, y=y_train, offsets=offsets[mine.start:mine.stop + 1] - offsets[mine.start],
        device_ids=device_ids[mine.start:mine.stop], district=np.zeros(len(mine), np.int64),
        schema=out_schema, task_type="classification" if classify else "regression",
        n_classes=len(class_names), feature_names=list(enc.feature_names), target_mean=t_mean,
        target_scale=t_scale, class_names=class_names, notes=tuple(notes), task_note=task_note,
        population=(device_ids, counts.astype(np.int64)))
    return ds, held_out


def _standardised(y: np.ndarray, mean: float, scale: float) -> np.ndarray:
    """(y - mean) / scale as float32, without overflow for values near float64's largest."""
    if scale > BIG:
        return (y / scale - mean / scale).astype(np.float32)
    return ((y - mean) / scale).astype(np.float32)


def _big_values(enc: Encoder, names: list[str], target: str, t_mean: float, t_scale: float,
                notes: list[str]) -> None:
    """Notes the columns whose values are too large to square in float64: their mean and
    deviation came from scaled values, and the model reads them standardised, as any other."""
    big = [(n, enc.scale[n], enc.mean[n]) for n in names if n in enc.scale
           and max(enc.scale[n], abs(enc.mean[n])) > BIG]
    if max(t_scale, abs(t_mean)) > BIG:
        big.append((target, t_scale, t_mean))
    for name, scale, mean in big:
        notes.append(f"column {name!r}: values of about {max(scale, abs(mean)):.3g}, whose "
                     "squares overflow float64: its mean and deviation were computed on scaled "
                     "values (the model reads it standardised, as any column)")


def _encode(enc: Encoder, columns: list[np.ndarray], picks: list[np.ndarray]) -> list[np.ndarray]:
    """The rows ``picks[i]`` (indices or a mask of the kept rows) of the feature ``columns``,
    encoded: float32 (rows, n_features) each. A column at a time, let go once encoded (its
    rows taken before the float64 copy; a byte column's values looked up in
    ``Encoder.byte_table``). A wide output is written through a buffer of ``_GROUP_COLS``
    encoded columns, copied in a group at a time, ``_COPY_ROWS`` rows at a time: a column
    written alone into a row-major matrix touches one cache line per row, and a group copied
    whole strides through all of the buffer's columns for each row. Every other group is
    encoded on a second thread (numpy lets the GIL go in these loops): another core, where
    there is one, halves the time."""
    picks = [np.flatnonzero(p) if p.dtype == bool else p for p in picks]  # a mask: slower
    sizes = [len(p) for p in picks]
    outs = [np.empty((n, enc.n_features), np.float32) for n in sizes]
    slices = enc.field_slices
    width = max([_GROUP_COLS] + [s.stop - s.start for s in slices])
    groups: list[tuple[int, int]] = []  # features g0..g1-1: at most ``width`` encoded columns
    g0 = 0
    while g0 < len(columns):
        g1 = g0 + 1
        while g1 < len(columns) and slices[g1].stop - slices[g0].start <= width:
            g1 += 1
        groups.append((g0, g1))
        g0 = g1

    def encode_groups(mine: list[tuple[int, int]]) -> None:
        bufs = ([np.empty((width, n), np.float32).T for n in sizes] if enc.n_features > width
                else None)
        for g0, g1 in mine:
            lo, hi = slices[g0].start, slices[g1 - 1].stop
            for j in range(g0, g1):
                col, columns[j] = columns[j], None  # type: ignore[call-overload]
                sl = slice(slices[j].start - lo, slices[j].stop - lo) if bufs else slices[j]
                table = enc.byte_table(j) if col.dtype == np.uint8 else None
                for i, pick in enumerate(picks):
                    dst = (bufs or outs)[i][:, sl]
                    if table is None:
                        enc.encode_field(j, _f64(col[pick]), dst)
                    else:  # mode "clip": no bounds check (a byte indexes 256 rows), no buffer
                        np.take(table, col[pick], axis=0, out=dst, mode="clip")
            for out, buf in zip(outs, bufs or ()):
                for r in range(0, len(out), _COPY_ROWS):
                    out[r:r + _COPY_ROWS, lo:hi] = buf[r:r + _COPY_ROWS, :hi - lo]

    if len(groups) < 4:
        encode_groups(groups)
        return outs
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="privcity-encode") as pool:
        other = pool.submit(encode_groups, groups[1::2])
        encode_groups(groups[::2])
        other.result()  # (its exception, if any)
    return outs


def _read_utf8(path: str | os.PathLike, target: str, device_column: str | None,
               use: Collection[str] | None, text: Collection[str] = ()
               ) -> tuple[list[str], np.ndarray | None, dict[str, np.ndarray | list[str]]]:
    """``read_cells``; text that is not UTF-8 is a ValueError naming the file."""
    try:
        return read_cells(path, target, device_column, use, text=text)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{os.fspath(path)} is not UTF-8 text ({exc.reason}, byte "
                         f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8") from None


def _test_file(path: str | os.PathLike, target: str, enc: Encoder, sources: list[_Source],
               rule: tuple[tuple[str, ...], np.ndarray | None, float, float],
               notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the usable rows of the test file ``path``, encoded as the training rows were:
    ``enc`` of the feature ``sources``, ``rule`` = (class names, their values when numbers,
    target mean, target scale). What was done to its rows goes to ``notes``, after _TEST_NOTE."""
    name = os.fspath(path)
    used = list(dict.fromkeys(col for col, _ in sources))
    text = {target} | {col for col, how in sources if how != "number"}  # labels, dates, categories
    header, kept, cols = _read_utf8(path, target, None, {target, *used}, text)
    absent = [c for c in [target, *used] if c not in header]
    if absent:
        raise ValueError(f"test file {name} has no column {', '.join(map(repr, absent))}: the "
                         f"model reads the target and every feature column kept from the "
                         f"training file (test file's columns: {header})")
    assert kept is not None
    said: list[str] = []
    if not kept.all():
        said.append(f"{int((~kept).sum()):,} of {len(kept):,} rows left out: no finite value "
                    f"of the target {target!r}")
    y, ok = _test_target(cols.pop(target), target, rule, said)
    if not ok.any():
        raise ValueError(f"test file {name} has no usable rows: {'; '.join(said)}")
    columns = _test_features(cols, sources, ok, said)
    notes += [_TEST_NOTE + n for n in said]
    return _encode(enc, columns, [np.ones(len(y), bool)])[0], y


def _test_target(cells: list[str], target: str,
                 rule: tuple[tuple[str, ...], np.ndarray | None, float, float],
                 said: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(the usable rows' targets, as the training rows' are; the mask of usable rows) of a test
    file's target cells: a class that the training rows lack, or a regression target that is
    not a number, leaves its row out (said)."""
    names, values, t_mean, t_scale = rule
    if names and values is None:  # labels
        code = {v: i for i, v in enumerate(names)}
        y = np.fromiter((code.get(v.strip(), -1) for v in cells), np.int64, len(cells))
        ok = y >= 0
    else:
        x = _split_numbers(cells)[0]  # a label that is not a number: NaN, no class
        if names:
            assert values is not None
            y = np.minimum(np.searchsorted(values, x), len(values) - 1)
            ok = values[y] == x
        else:
            ok = np.isfinite(x)
            y = ((x - t_mean) / t_scale).astype(np.float32)
    if not ok.all():
        why = (f"a class of {target!r} that no training row has" if names
               else f"a value of the target {target!r} that is not a number")
        e_g = cells[int(np.argmin(ok))].strip()
        said.append(f"{int((~ok).sum()):,} of {len(cells):,} rows with a target left out: {why} "
                    f"(e.g. {e_g!r})")
    return y[ok], ok


def _test_features(cols: Mapping[str, np.ndarray | list[str]], sources: list[_Source],
                   ok: np.ndarray, said: list[str]) -> list[np.ndarray]:
    """The raw feature columns (float64, NaN for missing; ``sources`` order) of a test file's
    rows ``ok``: cells that are not numbers, not dates or not a training category are said."""
    columns: list[np.ndarray] = []
    stamps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for col, how in sources:
        cells = cols[col]
        if isinstance(cells, np.ndarray):  # every cell a number
            columns.append(cells[ok])
            continue
        cells = [v for v, k in zip(cells, ok.tolist()) if k]
        bad: list[str] = []
        if how == "number":
            x, bad, _ = _split_numbers(cells)  # type: ignore[misc]
            what = "that are not numbers (e.g. {}) read as missing"
        elif how in ("hour", "day"):
            if col not in stamps:
                stamps[col] = _timestamps(cells, bad)  # type: ignore[assignment]
            x = stamps[col][0 if how == "hour" else 1]
            what = "that are not ISO 8601 dates or times (e.g. {}) read as missing"
        else:  # a value unseen in training: code -1, no one-hot column (as in the hashed split)
            assert isinstance(how, dict)
            x = np.array([np.nan if _missing(v) else how.get(v.strip(), -1.0) for v in cells],
                         np.float64)
            bad = [v for v in cells if not _missing(v) and v.strip() not in how]
            what = (f"that are none of its {len(how)} categories in the training rows (e.g. {{}}): "
                    "all its one-hot columns 0")
        columns.append(x)
        if bad:
            said.append(f"column {col!r}: {len(bad):,} value(s) "
                        + what.format(repr(_short(bad[0].strip()))))
    return columns


def _target(cells: np.ndarray | list[str], target: str, name: str, task: str | None,
            schema: Schema | None, max_classes: int, notes: list[str]
            ) -> tuple[bool, np.ndarray, tuple[str, ...], np.ndarray | None, Field,
                       np.ndarray | None, str]:
    """(classification?, the target of every kept row (class codes, or float64 values), the class
    names (none for regression), the classes' values when they are numbers (sorted, as the
    codes), the target's field, the mask of rows to leave out (text cells of a numeric target;
    None: none), which task and why) as the module docstring's rules (or ``task``, ``schema``)
    say. Text cells read as missing go to ``notes``."""
    t_num = _numbers(cells)
    t_num = None if t_num is None else _f64(t_num)
    forced = task
    if task is None and schema is not None:
        task = "classification" if schema.field(target).kind == "categorical" else "regression"
    stray = None
    if t_num is None and task != "classification":
        # A numeric target with a few text cells ("high" among numbers: a typo, a sensor's
        # "err"), or any share of them when regression is asked for: the rows are left out.
        split = _split_numbers(cells)
        assert split is not None
        x, bad, present = split
        if len(bad) < present and (task == "regression" or len(bad) <= _STRAY_SHARE * present):
            t_num, stray = x, np.isnan(x)
            shown = ", ".join(repr(_short(v.strip())) for v in dict.fromkeys(bad[:20]))
            notes.append(f"warning: target {target!r}: {len(bad):,} of {present:,} values are not "
                         f"numbers ({shown}): their rows are left out"
                         + ("" if task else "; --target-type classification reads the column "
                                            "as labels"))
    if task == "regression" and t_num is None:
        bad_cell = next(v for v in cells if _floats([v]) is None)
        raise ValueError(f"target column {target!r} is not numeric (value {_short(bad_cell)!r}): "
                         "a regression target must be numeric")
    present = t_num[np.isfinite(t_num)] if t_num is not None else None
    uniq = np.unique(present) if present is not None else None
    integral = uniq is not None and bool(np.all(uniq == np.round(uniq)))
    if task is None:
        classify = t_num is None or (integral and len(uniq) <= max_classes)
    else:
        classify = task == "classification"
    why = _task_reason(classify, forced, schema is not None, t_num is None, integral,
                       0 if uniq is None else len(uniq), max_classes)
    if not classify:
        assert t_num is not None
        return False, t_num, (), None, Field(target, "numeric", "public"), stray, why
    if t_num is not None:
        assert uniq is not None
        # Exact names: an integral label as an integer, any other by its shortest repr
        # (format "g" would name 1234567 and 1234568 alike).
        class_names = tuple(str(int(u)) if float(u).is_integer() else repr(float(u)) for u in uniq)
        y_all = np.minimum(np.searchsorted(uniq, t_num), max(len(uniq) - 1, 0)).astype(np.int64)
    else:
        uniq = None
        labels = sorted({v.strip() for v in cells})
        class_names = tuple(labels)
        code = {v: i for i, v in enumerate(labels)}
        y_all = np.array([code[v.strip()] for v in cells], np.int64)
    if len(class_names) < 2:
        raise ValueError(f"target column {target!r} of {name} has a single value "
                         f"({class_names[0] if class_names else 'none'}): nothing to predict")
    return True, y_all, class_names, uniq, Field(target, "categorical", "public", "", 0,
                                                 max(len(class_names) - 1, 1)), stray, why


def _task_reason(classify: bool, forced: str | None, schema: bool, text: bool, integral: bool,
                 distinct: int, max_classes: int) -> str:
    """"regression (...)" / "classification (...)": the task and why it was chosen."""
    task = "classification" if classify else "regression"
    if forced:
        return f"{task} (--target-type {forced})"
    if schema:
        return f"{task} (the schema's target field)"
    if text:
        return f"{task} (auto: its values are text, read as labels)"
    if classify:
        return (f"{task} (auto: integer values, {distinct:,} distinct, at most {max_classes}; "
                "--target-type regression reads them as quantities)")
    if integral:
        return (f"{task} (auto: integer values, {distinct:,} distinct, more than {max_classes}; "
                "--target-type classification reads them as classes)")
    return f"{task} (auto: numbers, not all integers)"


#: A class count beyond which, or training rows per class below which, a target looks like an
#: identifier or free text rather than classes (warned, not refused).
_MANY_CLASSES, _FEW_ROWS_A_CLASS = 50, 5


def _class_count_warning(target: str, classes: int, rows: int, task: str | None,
                         notes: list[str]) -> None:
    if classes <= 2 or (classes <= _MANY_CLASSES and rows >= _FEW_ROWS_A_CLASS * classes):
        return
    notes.append(f"warning: target {target!r} has {classes:,} classes for {rows:,} training rows "
                 f"({rows / classes:.1f} a class): is it an identifier or free text? A "
                 "classifier learns little from a few rows a class"
                 + ("" if task else "; --target-type regression if its values are quantities"))


def _short(text: str, most: int = 40) -> str:
    """``text``, cut to ``most`` characters with an ellipsis (a cell shown in a message)."""
    return text if len(text) <= most else text[:most] + "..."


def _schema_features(cols: Mapping[str, np.ndarray | list[str]], header: list[str], schema: Schema,
                     device_column: str | None, name: str
                     ) -> tuple[list[Field], list[np.ndarray], list[_Source]]:
    """The schema's feature fields, their columns (numbers; a text cell is an error) and
    sources."""
    fields: list[Field] = []
    columns: list[np.ndarray] = []
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
        fields.append(f)
        columns.append(vals)
    return fields, columns, [(f.name, "number") for f in fields]


def _inferred_features(cols: Mapping[str, np.ndarray | list[str]], header: list[str],
                       skip: tuple[str, str | None], train: np.ndarray, max_categories: int,
                       notes: list[str]
                       ) -> tuple[list[Field], list[np.ndarray], list[_Source]]:
    """The feature fields the module docstring's rules infer, their columns (numbers as read, or
    float64: stray cells as NaN, timestamps' hour and day, category codes) and sources; what the
    rules did goes to ``notes``."""
    fields: list[Field] = []
    columns: list[np.ndarray] = []
    sources: list[_Source] = []
    for h in header:
        if h in skip:
            continue
        vals = _numbers(cols[h])
        if vals is not None:
            if vals.dtype.kind == "f" and np.isnan(vals).all():  # nothing to learn from
                notes.append(f"column {h!r} not used: no values")
                continue
            fields.append(Field(h, "numeric", "public"))
            columns.append(vals)
            sources.append((h, "number"))
            continue
        lenient = _mostly_numbers(cols[h], _STRAY_SHARE)
        if lenient is not None:  # a numeric column with a few stray cells
            vals, bad = lenient
            notes.append(f"column {h!r}: {len(bad):,} value(s) that are not numbers (e.g. "
                         f"{_short(bad[0].strip())!r}) read as missing")
            fields.append(Field(h, "numeric", "public"))
            columns.append(vals)
            sources.append((h, "number"))
            continue
        ts = _timestamps(cols[h])
        if ts is not None:
            fields.append(Field(f"{h}_hour", "numeric", "public", "h", 0.0, 24.0, period=24.0))
            fields.append(Field(f"{h}_day_of_week", "numeric", "public", "day (0 = Monday)",
                                0.0, 7.0, period=7.0))
            columns += [ts[0], ts[1]]
            sources += [(h, "hour"), (h, "day")]
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
        fields.append(Field(h, "categorical", "public", "", 0, len(seen) - 1))
        columns.append(vals)
        sources.append((h, code))
    return fields, columns, sources


def _devices(dv: np.ndarray | list[str] | None, device_column: str | None, tr_idx: np.ndarray,
             devices: int | None, split: str, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(int64 device ids, the device index of each training row): by ``device_column`` (integral
    numbers as ids, else the cells numbered in sorted order), else rows dealt to ``devices``."""
    if device_column is not None:
        assert dv is not None
        # Held as numbers only when they are integral, none missing (see _csvread._Column).
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
        return device_ids.astype(np.int64), local
    nd = 1 if devices is None else int(devices)
    m = len(tr_idx)
    if nd > m:
        notes.append(f"{nd:,} devices for {m:,} training rows: {nd - m:,} of them hold no rows")
    local = (np.arange(m) * nd) // max(m, 1) if split == "contiguous" else np.arange(m) % nd
    return np.arange(nd, dtype=np.int64), local
