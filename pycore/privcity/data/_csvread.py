"""The cells of a CSV file for :func:`privcity.data.load_csv`: pyarrow.csv splits, numpy keeps.

pyarrow.csv (Arrow's C++ reader: multi-threaded, streaming) splits the file into rows and cells
in blocks of ``_BLOCK_BYTES``, on a thread a block or two ahead of their conversion (``_ahead``:
Arrow splits a block on the thread that asks for it). Arrow's type inference is not used (it
reads "0x1f" as 31, "true" as a boolean, dates as dates): every cell arrives as text, except in
the columns the loader found to hold unsigned integers only in the first ``_SNIFF_BYTES`` after
the header (and only when no "x" or "X" follows the header), which Arrow converts as it splits,
a missing token becoming null. Each block is then converted, and only its rows with a target
value are kept:

- those integer columns all together (``_Integers``: one to_tensor a block, written into one
  array for the whole file, a column's cells a row of it), or, in a block with a missing token,
  column by column;
- text cells that are all numbers of the grammar Arrow and Python's ``float()`` read alike
  (ASCII digits, ``+ - . e E``: checked on the bytes before the cast, tested exhaustively
  against ``float()``) are cast by Arrow, to uint8 or uint16 when every cell is an unsigned
  integer that fits, else to float64; missing tokens in any case (``NA``, ``null``, ...) are
  found by Arrow too; any other cell (``" 1"``, ``"1_000"``, ``"inf"``, a word) goes through
  ``float()``;
- a column is kept in the narrowest dtype that holds every value exactly (pixels 0..255: one
  byte a cell), as text (Arrow strings, then a list of str) once one cell is not a number, and
  read again (that column only) when that cell comes after its first block.

Arrow never decides what a row is on its own: a row of the wrong width that is not blank, text
that is not UTF-8, a cell an integer column cannot hold, or anything else it refuses sends the
file through Arrow again as text, then through the csv module, which raises the error it always
raised (with the line number) or, when the refusal was Arrow's alone, reads the file (slowly)
with the same rules. A pipe is first copied to a temporary file (it is read more than once).
"""
from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import itertools
import math
import mmap
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

_MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
_BLOCK_BYTES = 1 << 21  # bytes Arrow splits at a time (its buffers for one block: ~25x that)
_CHUNK_ROWS = 65_536  # rows the csv module reads at a time (when it reads the file)
_SNIFF_BYTES = 1 << 20  # bytes after the header whose cells choose the integer columns
_THREADS = True  # Arrow splits blocks on its threads
#: The longest cell and row read: the csv module's own default limit for a cell (128 KiB), and
#: 64 MiB for a row. Longer ones are refused with their line and column: no reading is that
#: long, a runaway quote or a binary file is (and Arrow would hold it whole).
_CELL_MAX = 1 << 17
_ROW_MAX = 1 << 26

# Bytes of the cells Arrow's cast reads exactly as float() does (tests/test_data_csv_arrow.py);
# "nan(1)" and "0x1f" are why every other byte goes to float().
_NUMBER_BYTES = b"0123456789+-.eE"
_UINT8, _UINT16, _FLOAT64 = range(3)  # the casts tried, narrowest first


def _open(path: str | os.PathLike) -> io.TextIOBase:
    p = os.fspath(path)
    if p.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", newline="")
    return open(p, encoding="utf-8-sig", newline="")  # -sig: a byte-order mark is not a name


def _missing(v: str) -> bool:
    return v.strip().lower() in _MISSING


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


def _kept(values: Sequence[str]) -> np.ndarray:
    """True where a target value is present and a finite number or a label."""
    try:  # a number parses, and is missing or non-finite exactly when it is not finite
        return np.isfinite(np.fromiter(map(float, values), np.float64, len(values)))
    except ValueError:
        return np.array([not _missing(v) and not _non_finite_number(v) for v in values], bool)


def _non_finite_number(v: str) -> bool:
    try:
        return not np.isfinite(float(v))
    except ValueError:
        return False


def _blank(row: list[str]) -> bool:
    return not any(map(str.strip, row))


@contextlib.contextmanager
def _csv_errors(name: str, reader_of: Callable[[], Any]) -> Iterator[None]:
    """The csv module's cells up to a row's size (``_ROW_MAX``; our own checks refuse cells
    over ``_CELL_MAX`` with their column), and its errors as ValueError naming the file and
    line (``reader_of()``: the reader, once made)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, _ROW_MAX))
    try:
        yield
    except csv.Error as exc:
        reader = reader_of()
        line = f", line {reader.line_num}" if reader is not None else ""
        why = (f"a cell over {_ROW_MAX >> 20} MiB" if "field limit" in str(exc) else str(exc))
        raise ValueError(f"{name}{line}: {why}") from None
    finally:
        csv.field_size_limit(limit)


def _oversized(row: list[str], header: Sequence[str], name: str, line: int) -> None:
    """Refuses a row with a cell over ``_CELL_MAX`` or over ``_ROW_MAX`` in all, naming its
    line and column."""
    sizes = list(map(len, row))
    if max(sizes, default=0) > _CELL_MAX:
        j = max(range(len(sizes)), key=sizes.__getitem__)
        col = repr(header[j]) if j < len(header) else str(j + 1)
        raise ValueError(f"{name}, line {line}, column {col}: a cell of {sizes[j]:,} characters, "
                         f"over the {_CELL_MAX >> 10} KiB a cell may hold (a quote left open?)")
    if sum(sizes) > _ROW_MAX:
        raise ValueError(f"{name}, line {line}: a row of {sum(sizes):,} characters, over the "
                         f"{_ROW_MAX >> 20} MiB a row may hold")


def _header(reader, name: str) -> list[str]:
    for row in reader:
        if not _blank(row):
            _oversized(row, [], name, reader.line_num)
            header = [h.strip() for h in row]
            break
    else:
        raise ValueError(f"{name} is empty: expected a header row and data rows")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"{name}: duplicate column names {dup}")
    return header


# --- Arrow ---------------------------------------------------------------------------------------

@functools.cache
def _arrow() -> tuple[Any, Any, Any]:
    """pyarrow, pyarrow.compute, pyarrow.csv, imported on first use (``import privcity`` does
    not pay for them)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    return pa, pc, pcsv


@functools.cache
def _missing_cells() -> Any:
    """Every spelling of the missing tokens without surrounding blanks ("na", "nA", "Na", ...),
    as an Arrow array: cells Arrow may find as missing itself (others: ``_missing``)."""
    spellings = {"".join(c) for t in _MISSING
                 for c in itertools.product(*({ch.lower(), ch.upper()} for ch in t))}
    return _strings(sorted(spellings))


# Arrow arrays to and from numpy through their buffers: pa.array() and Array.to_numpy() would
# import pandas (half a second) to look for its types.

def _strings(values: Sequence[str]) -> Any:
    """An Arrow string array of ``values``."""
    pa = _arrow()[0]
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, data), np.int64, len(data)), out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("a block of cells over 2 GB")  # _CHUNK_ROWS rows of the csv module
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(data))]
    return pa.Array.from_buffers(pa.string(), len(data), buffers)


def _bools(mask: np.ndarray) -> Any:
    """An Arrow boolean array of a numpy one."""
    pa = _arrow()[0]
    return pa.Array.from_buffers(pa.bool_(), len(mask),
                                 [None, pa.py_buffer(np.packbits(mask, bitorder="little"))])


def _indices(idx: Sequence[int]) -> Any:
    """An Arrow int64 array of indices (for ``take``)."""
    pa = _arrow()[0]
    return pa.Array.from_buffers(pa.int64(), len(idx),
                                 [None, pa.py_buffer(np.asarray(idx, np.int64))])


def _batch(arrays: list[Any], names: list[str]) -> Any:
    """A record batch of ``arrays`` (as pyarrow.csv gives them)."""
    return _arrow()[0].RecordBatch.from_arrays(arrays, names=names)


def _bits(buf: Any, offset: int, n: int) -> np.ndarray:
    """n booleans of an Arrow bitmap from bit ``offset``."""
    bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")
    return bits[offset:offset + n].view(bool)


def _values(arr: Any) -> np.ndarray:
    """A numeric Arrow array as numpy: a view of its values, or float64 with NaN for nulls."""
    dtype = np.dtype(str(arr.type))  # uint8, uint16, float64
    valid, data = arr.buffers()[:2]
    x = np.frombuffer(data, dtype, len(arr), arr.offset * dtype.itemsize)
    if not arr.null_count:
        return x
    out = x.astype(np.float64)
    out[~_bits(valid, arr.offset, len(arr))] = np.nan
    return out


class _Refused(Exception):
    """Arrow could not read the file as the csv module does: the csv module reads it."""


class _Untyped(_Refused):
    """A column Arrow converted to integers holds a cell that decides something else (a missing
    one in a row that may be blank): the file is read again as text."""


def _skip_blank(row: Any) -> str:
    """Arrow's handler of a row of the wrong width: skipped when blank (the csv module's rows of
    blanks of any width are no rows), else an error (``_Refused``)."""
    try:
        cells = [c for r in csv.reader(io.StringIO(row.text, newline="")) for c in r]
    except (csv.Error, TypeError):
        return "error"
    return "skip" if _blank(cells) else "error"


def _stream(real: str, offset: int) -> Any:
    """Arrow's input stream of the file's bytes (decompressed) from ``offset`` on."""
    pa = _arrow()[0]
    raw = pa.OSFile(real)
    if not real.endswith(".gz"):
        raw.seek(offset)
        return raw
    stream = pa.CompressedInputStream(raw, "gzip")
    while offset > 0:
        offset -= len(stream.read(min(offset, 1 << 20)))
    return stream


def _arrow_batches(real: str, offset: int, width: int, columns: Sequence[int] | None = None, *,
                   types: Mapping[int, Any] | None = None,
                   block: int | None = None) -> Iterator[Any]:
    """The rows after the header in blocks: per block, a record batch of ``columns`` (all by
    default), text but for ``types`` (column -> Arrow integer type: null where a cell is a
    missing token). Rows of blanks of the wrong width are left out; those of the right width are
    not (the caller finds them). Raises ``_Refused`` where Arrow fails."""
    pa, _, pcsv = _arrow()
    names = [f"c{j}" for j in range(width)]
    take = range(width) if columns is None else columns
    # One block asked for (``block``): no thread reads ahead.
    read = pcsv.ReadOptions(use_threads=_THREADS and block is None,
                            block_size=block or _BLOCK_BYTES, column_names=names)
    parse = pcsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True, escape_char=False,
                              newlines_in_values=True, ignore_empty_lines=True,
                              invalid_row_handler=_skip_blank)
    convert = pcsv.ConvertOptions(
        check_utf8=True, column_types={names[j]: (types or {}).get(j, pa.string()) for j in take},
        null_values=_missing_cells().to_pylist() if types else [], strings_can_be_null=False,
        include_columns=[names[j] for j in take])
    with _stream(real, offset) as stream:
        try:
            reader = pcsv.open_csv(stream, read_options=read, parse_options=parse,
                                   convert_options=convert)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                yield batch
        except pa.lib.ArrowException as exc:
            raise _Refused(str(exc)) from exc


def _ahead(batches: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """The items of ``batches``, taken on a thread at most ``depth`` ahead of the consumer:
    Arrow's streaming reader splits a block on the thread that asks for it, so the next block
    is split while this one is converted. The thread's exception is raised here; it is ended
    and joined when the consumer stops."""
    items: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                items.put((True, item))
                if stop.is_set():
                    return
            items.put((False, None))
        except BaseException as exc:  # raised again in the consumer's thread
            items.put((False, exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="privcity-csv", daemon=True)
    thread.start()
    try:
        while True:
            more, item = items.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # a producer waiting on a full queue goes on and stops
            try:
                items.get(timeout=0.01)
            except queue.Empty:  # nothing queued at this moment: look again while it runs
                continue
        thread.join()


def _integer_columns(real: str, offset: int, width: int,
                     skip: Collection[int]) -> dict[int, Any]:
    """Columns (but ``skip``) whose cells in the file's first ``_SNIFF_BYTES`` after the header
    are all unsigned integers below 2**16, which Arrow may then convert as it splits the file
    (uint16; a missing token is null, a cell of another kind an error). None in a file with an
    "x" or "X" after its header, since Arrow reads "0x1f" as 31 where float() refuses it, nor
    in a .gz (not searched)."""
    if real.endswith(".gz") or os.path.getsize(real) <= offset:
        return {}
    with open(real, "rb") as fh:
        fh.seek(offset)
        while chunk := fh.read(1 << 20):
            if b"x" in chunk or b"X" in chunk:
                return {}
    try:
        with contextlib.closing(_arrow_batches(real, offset, width, block=_SNIFF_BYTES)) as it:
            first = next(it, None)
    except _Refused:
        return {}
    uint16 = _arrow()[0].uint16()
    out = {}
    for j, cells in enumerate(first.columns if first is not None else ()):
        x, cast = _cast(cells, _UINT8) if j not in skip and len(cells) else (None, 0)
        if x is not None and cast <= _UINT16:
            out[j] = uint16
    return out


def _python_batches(real: str, name: str, columns: Sequence[int] | None = None, *,
                    build: bool = True) -> Iterator[Any]:
    """The csv module's rows after the header in blocks of ``_CHUNK_ROWS``, blank ones left out,
    as record batches of Arrow strings, ``columns`` (all by default); ``build=False`` only checks
    them.
    Raises ValueError for a row of the wrong width (with its line), UnicodeDecodeError."""
    with _open(real) as fh, _csv_errors(name, lambda: reader):
        reader = csv.reader(fh)
        header = _header(reader, name)
        width = len(header)
        take = list(range(width)) if columns is None else list(columns)
        names = [f"c{j}" for j in take]
        block: list[list[str]] = []
        for row in reader:
            if _blank(row):
                continue
            if len(row) != width:
                raise ValueError(f"{name}, line {reader.line_num}: {len(row)} cells, the header "
                                 f"has {width}")
            _oversized(row, header, name, reader.line_num)
            if build:
                block.append(row)
            if len(block) == _CHUNK_ROWS:
                yield _batch([_strings([r[j] for r in block]) for j in take], names)
                block = []
        if block:
            yield _batch([_strings([r[j] for r in block]) for j in take], names)


# --- cells to numbers ----------------------------------------------------------------------------

def _cell_bytes(arr: Any) -> np.ndarray:
    """The bytes of an Arrow string array's cells, one after the other (a view)."""
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, np.int32, len(arr) + 1, arr.offset * 4)
    if data is None or off[-1] == off[0]:
        return np.empty(0, np.uint8)
    return np.frombuffer(data, np.uint8, int(off[-1] - off[0]), int(off[0]))


def _narrow(x: np.ndarray) -> np.ndarray:
    """float64 values (NaN for missing) as float32 when that holds each of them exactly."""
    with np.errstate(over="ignore"):  # beyond float32's range: inf, unequal, float64 kept
        head = x[:64]
        if not np.array_equal(head.astype(np.float32), head, equal_nan=True):  # most decimals
            return x
        f = x.astype(np.float32)
    return f if np.array_equal(f, x, equal_nan=True) else x


def _cast(arr: Any, first: int) -> tuple[np.ndarray | None, int]:
    """Arrow's cast of every cell, when it reads them as ``float()`` does: (uint8 or uint16 when
    they are unsigned integers that fit, else float64 with NaN for non-finite; the cast used),
    (None, first) when some cell is not in the shared grammar. ``first``: the cast tried first."""
    pa, pc, _ = _arrow()
    if not len(arr):
        return np.empty(0, np.uint8), first
    b = _cell_bytes(arr)
    if b.size and 48 <= b.min() and b.max() <= 57:  # digits alone: integers >= 0 (or empty cells)
        casts = range(first, _FLOAT64 + 1)
    elif b.size and not b.tobytes().translate(None, _NUMBER_BYTES):  # no byte but those
        casts = range(_FLOAT64, _FLOAT64 + 1)
    else:
        return None, first
    for level in casts:
        try:
            x = _values(pc.cast(arr, (pa.uint8(), pa.uint16(), pa.float64())[level]))
        except pa.ArrowInvalid:  # a value too large for the type, an empty cell, "1-2", ...
            continue
        if level == _FLOAT64:
            x = _narrow(np.where(np.isfinite(x), x, np.nan))
        return x, level
    return None, first


def _cell_numbers(arr: Any, first: int) -> tuple[np.ndarray | None, int]:
    """The cells as ``_floats`` reads them (NaN for missing and non-finite), in the narrowest
    dtype that holds them exactly, or None when one is not a number; and the cast Arrow used."""
    pa, pc, _ = _arrow()
    x, level = _cast(arr, first)
    if x is not None:
        return x, level
    missing = pc.is_in(arr, value_set=_missing_cells())
    if pc.any(missing).as_py():
        x, level = _cast(arr.filter(pc.invert(missing)), first)
        if x is not None:
            out = np.full(len(arr), np.nan, np.float64 if x.dtype == np.float64 else np.float32)
            out[~_bits(missing.buffers()[1], missing.offset, len(missing))] = x
            return out, level
    x = _floats(arr.to_pylist())  # blanks around a number, "1_000", "inf", or text
    return (None if x is None else _narrow(x)), first


class _Column:
    """The kept cells of one column: numbers (``_cell_numbers`` of each block) while every value
    is a number, the cells themselves (Arrow strings) once one is not. ``integral`` (the device
    column): the numbers also have to be integral, none missing, else the ids are numbered from
    the strings. ``reread``: it turned to text after some rows, whose cells went: read again.
    ``text``: the cells from the start, numbers or not."""

    __slots__ = ("chunks", "text", "integral", "reread", "rows", "cast")

    def __init__(self, *, integral: bool, text: bool = False) -> None:
        self.chunks: list[Any] = []
        self.text = text
        self.integral = integral
        self.reread = False
        self.rows = 0
        self.cast = _UINT8

    def add(self, cells: Any) -> None:
        if self.reread:
            return
        if not self.text and cells.type != _arrow()[0].string():  # Arrow's integers
            x = _values(cells)  # uint16, or float64 with NaN where a token was missing
            if x.dtype.kind == "f":
                x = x.astype(np.float32)
            elif x.size and x.max() < 256:
                x = x.astype(np.uint8)  # a copy: Arrow's block goes
            self.chunks.append(x)
            self.rows += len(x)
            return
        if not self.text:
            x, self.cast = _cell_numbers(cells, self.cast)
            if x is not None and (not self.integral or x.dtype.kind == "u"
                                  or np.array_equal(x, np.round(x))):
                self.chunks.append(x)
                self.rows += len(x)
                return
            self.chunks = []
            if self.rows:
                self.reread = True
                return
            self.text = True
        self.chunks.append(cells)

    def add_numbers(self, x: np.ndarray) -> None:
        """Cells of Arrow's integers already converted as ``add`` converts them."""
        self.chunks.append(x)
        self.rows += len(x)

    def values(self, narrow: bool) -> np.ndarray | list[str]:
        """The cells (the blocks let go: a column at a time is held twice)."""
        chunks, self.chunks = self.chunks, []
        if self.text:
            return [v for c in chunks for v in c.to_pylist()]
        if not chunks:
            return np.empty(0, np.float64)
        if len(chunks) == 1 and chunks[0].flags.writeable:  # (_Integers: a row of its array)
            x = chunks[0]
        else:
            x = np.concatenate(chunks)  # the widest dtype of the blocks: still exact
        if x.dtype == np.uint16 and x.size and x.max() < 256:
            x = x.astype(np.uint8)
        return x if narrow else x.astype(np.float64)


def _longest_cell(arr: Any) -> int:
    """Bytes of the longest cell of a block's column (0 for Arrow's integers, and at once for a
    column whose cells cannot hold a long one)."""
    if arr.type != _arrow()[0].string() or not len(arr) or arr.nbytes <= _CELL_MAX:
        return 0
    off = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
    return int(np.diff(off).max())


def _blank_rows(batch: Any, probe: list[str]) -> list[int]:
    """Rows of the block whose every cell is blank (``probe``: the cells of one column)."""
    rows = [i for i, v in enumerate(probe) if not v.strip()]
    string = _arrow()[0].string()
    for j in range(batch.num_columns):
        if not rows:
            break
        col = batch.column(j)
        cells = col.take(_indices(rows)).to_pylist()
        if col.type == string:
            rows = [i for i, v in zip(rows, cells) if not v.strip()]
        elif None in cells:  # a missing token or a blank cell: which, only the text says
            raise _Untyped("a row that may be blank")
        else:
            rows = []  # a number is not blank
    return rows


def _reserve(shape: tuple[int, int], dtype: type) -> np.ndarray:
    """An uninitialised array whose pages the system provides as they are first written: room
    for more rows than a file may have costs no memory (numpy's arrays of this size get huge
    pages, which the unwritten ends of its rows would share with the written ones). Where the
    system refuses to map that much, fewer rows (the caller asks for another array when full)."""
    size = max(shape[0] * shape[1] * np.dtype(dtype).itemsize, 1)
    try:
        if hasattr(mmap, "MAP_PRIVATE"):
            buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
            if hasattr(mmap, "MADV_NOHUGEPAGE"):
                buf.madvise(mmap.MADV_NOHUGEPAGE)
        else:
            buf = mmap.mmap(-1, size)
    except OSError:  # no overcommit, say
        return np.empty((shape[0], min(shape[1], _CHUNK_ROWS)), dtype)
    return np.frombuffer(buf, dtype, shape[0] * shape[1]).reshape(shape)


class _Integers:
    """The kept cells of the columns Arrow converted to integers (uint16), written a block at a
    time into one (columns, ``rows``) array (``_reserve``): a column's cells are then a row of
    it, contiguous, with no copy. A block is converted in one call (Arrow's to_tensor): a column
    at a time costs more per block than Arrow spends splitting it. Bytes (uint8), or uint16 when
    the first block has a cell >= 256 (``_Column.values`` narrows each column as it would its
    blocks)."""

    def __init__(self, columns: list[int], rows: int) -> None:
        self.columns = columns
        self.rows = rows
        self.cells: np.ndarray | None = None
        self.n = 0
        self.seen = False  # a block (perhaps of no rows) was added

    def add(self, batch: Any, take: np.ndarray | None) -> bool | None:
        """Adds the cells of rows ``take`` (all with None) of a block: True; False when the
        array lacks the room or the width (``hand_over``, then add it again); None when a cell
        is null (a missing token: the columns take the block one by one, ``_Column.add`` making
        them float)."""
        pa = _arrow()[0]
        k = len(self.columns)
        if batch.num_rows:
            try:
                tensor = batch.select(self.columns).to_tensor(row_major=False)
            except pa.ArrowException:  # a null ("Can only convert ... with no nulls")
                return None
            block = np.asarray(tensor).T  # (columns, rows)
            if block.dtype != np.uint16:
                return None
            if take is not None:
                block = block[:, take]
        else:
            block = np.empty((k, 0), np.uint16)
        m = block.shape[1]
        if m:
            wide = bool(block.max() >= 256)
            if self.cells is None:
                self.cells = _reserve((k, self.rows), np.uint16 if wide else np.uint8)
            if self.n + m > self.cells.shape[1] or wide and self.cells.dtype == np.uint8:
                return False
            self.cells[:, self.n:self.n + m] = block
            self.n += m
        self.seen = True
        return True

    def hand_over(self, columns: dict[int, _Column]) -> None:
        """Gives each column its cells so far (a row of the array), then starts anew."""
        if self.n:
            for j, x in zip(self.columns, self.cells[:, :self.n]):
                columns[j].add_numbers(x)
        elif self.seen:  # blocks of no rows: empty uint16, as _Column.add keeps them
            for j in self.columns:
                columns[j].add_numbers(np.empty(0, np.uint16))
        self.cells, self.n, self.seen = None, 0, False


def _scan(batches: Iterator[Any], jt: int, wanted: bool, columns: dict[int, _Column],
          rows: int = 1 << 16) -> tuple[int, list[np.ndarray], list[np.ndarray]]:
    """Reads the blocks: (data rows, per block the mask of its data rows with a target value,
    per block the mask of its source rows that are such rows); ``columns`` get their cells.
    ``rows``: the rows of the file at most (more: the integer columns' arrays are more)."""
    n_rows = 0
    keep_blocks: list[np.ndarray] = []
    take_blocks: list[np.ndarray] = []
    ints: _Integers | bool | None = None  # Arrow's integer columns (False: none, or not so)
    rest: list[int] = []  # the other columns
    for batch in batches:
        n = batch.num_rows
        if any(_longest_cell(col) > _CELL_MAX for col in batch.columns):
            raise _Refused("a cell too long")  # the csv module names its line and column
        probe = batch.column(max(jt, 0)).to_pylist()
        blank = _blank_rows(batch, probe)
        if blank:
            data = np.ones(n, bool)
            data[blank] = False
            probe = [v for v, d in zip(probe, data.tolist()) if d]
        n_rows += len(probe)
        if not wanted:
            continue
        keep = _kept(probe)
        keep_blocks.append(keep)
        take = keep
        if blank:
            take = np.zeros(n, bool)
            take[data] = keep
        take_blocks.append(take)
        every = bool(take.all())
        mask = None if every else _bools(take)
        if ints is None:  # every block has the types of the first
            kinds, string = batch.schema.types, _arrow()[0].string()
            typed = [j for j, c in columns.items() if not c.text and kinds[j] != string]
            ints = _Integers(typed, rows) if typed else False
            rest = [j for j in columns if j not in set(typed)]
        added = ints.add(batch, None if every else take) if ints else None
        if ints and not added:
            ints.hand_over(columns)
            if added is False:
                added = ints.add(batch, None if every else take)
        for j in (rest if added else columns):
            cells = batch.column(j)
            columns[j].add(cells if mask is None else cells.filter(mask))
    if ints:
        ints.hand_over(columns)
    return n_rows, keep_blocks, take_blocks


def _reread(batches: Iterator[Any], take: np.ndarray, columns: dict[int, _Column],
            name: str) -> None:
    """Second pass: the kept cells (``take``: per source row) of ``columns``, as text."""
    for c in columns.values():
        c.text, c.reread, c.chunks = True, False, []
    at = 0
    for batch in batches:
        n = batch.num_rows
        if at + n > len(take):
            raise ValueError(f"{name} changed while it was being read")
        mask = _bools(take[at:at + n])
        at += n
        for c, cells in zip(columns.values(), batch.columns):
            c.chunks.append(cells.filter(mask))
    if at != len(take):
        raise ValueError(f"{name} changed while it was being read")


# --- the file ------------------------------------------------------------------------------------

@contextlib.contextmanager
def _regular(path: str | os.PathLike) -> Iterator[str]:
    """A regular file with the contents of ``path``: itself, or a pipe's bytes copied to a
    temporary file (removed on exit) since the file is read more than once."""
    p = os.fspath(path)
    if os.path.isfile(p):
        yield p
        return
    with open(p, "rb") as src, tempfile.NamedTemporaryFile(
            suffix=".csv.gz" if p.endswith(".gz") else ".csv", delete=False) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    try:
        yield dst.name
    finally:
        os.unlink(dst.name)


def _header_end(real: str, lines: int) -> int:
    """Offset in the (decompressed) bytes of the end of the file's first ``lines`` lines (ended
    by \\n, \\r or \\r\\n, as the csv module reads them), or of the file."""
    ends = re.compile(rb"\r\n|\r|\n")
    opener = gzip.open if real.endswith(".gz") else open
    with opener(real, "rb") as fh:
        head = b""
        while True:
            more = fh.read(max(1 << 16, len(head)))
            head += more
            found = list(itertools.islice(ends.finditer(head), lines))
            if len(found) == lines and (more == b"" or found[-1].end() < len(head)):
                return found[-1].end()  # a final "\r" waits for a possible "\n"
            if not more:
                return len(head)


def _header_of(real: str, name: str) -> tuple[list[str], int]:
    """The header (as ``_header`` reads it) and the offset of the bytes after it."""
    with _open(real) as fh, _csv_errors(name, lambda: reader):
        reader = csv.reader(fh)
        header = _header(reader, name)
        lines = reader.line_num
    return header, _header_end(real, lines)


def read_cells(path: str | os.PathLike, target: str, device_column: str | None,
               use: Collection[str] | None, *, narrow: bool = True, arrow: bool = True,
               text: Collection[str] = ()) -> tuple[list[str], np.ndarray | None,
                                                    dict[str, np.ndarray | list[str]]]:
    """Header, the mask of data rows whose target is present and finite, and the columns named
    in ``use`` (all with None) over those rows: numbers (NaN for missing) where every value is a
    number (the narrowest exact dtype, or float64 unless ``narrow``), the cells otherwise, and
    always for the columns in ``text``.
    Without the target or device column only validates the rows (mask None, no columns).
    ``arrow=False``: the csv module alone splits the file (the reference Arrow is tested by).

    Raises ValueError (empty file, no data rows, duplicate names, a row of the wrong width)
    and UnicodeDecodeError, as the csv module finds them.
    """
    name = os.fspath(path)
    with _regular(path) as real:
        header, offset = _header_of(real, name)
        width = len(header)
        wanted = target in header and (device_column is None or device_column in header)
        jt = header.index(target) if wanted else -1

        def fresh() -> dict[int, _Column]:
            return {j: _Column(integral=h == device_column, text=h in text)
                    for j, h in enumerate(header) if wanted and (use is None or h in use)}

        # Arrow with integer columns where the file has them, else all text; where Arrow
        # refuses, the csv module (its error, or the file read its way).
        sources: list[Callable[..., Iterator[Any]]] = []
        if arrow:
            # Not the target nor the device column: their cells are read as text (labels, ids).
            skip = {j for j, h in enumerate(header) if h in (target, device_column)
                    or h in text or (use is not None and h not in use)}
            types = _integer_columns(real, offset, width, skip) if wanted else {}
            if types:
                sources.append(functools.partial(_arrow_batches, real, offset, width, types=types))
            sources.append(functools.partial(_arrow_batches, real, offset, width))
        # A data row holds width - 1 commas and a line end (but the last): rows at most.
        most = (os.path.getsize(real) - offset) // max(width - 1, 1) + 1
        for source in sources:
            try:
                columns = fresh()
                with contextlib.closing(_ahead(source()) if _THREADS else source()) as batches:
                    n_rows, keep_blocks, take_blocks = _scan(batches, jt, wanted, columns, most)
                break
            except _Refused:
                continue
        else:
            for _ in _python_batches(real, name, build=False):
                pass  # the csv module's error, if it has one; else it reads the file
            source = functools.partial(_python_batches, real, name)
            columns = fresh()
            n_rows, keep_blocks, take_blocks = _scan(source(), jt, wanted, columns)
        if not n_rows:
            raise ValueError(f"{name} has a header but no data rows")
        again = {j: c for j, c in columns.items() if c.reread}
        if again:
            take = np.concatenate(take_blocks)
            try:
                _reread(source(list(again)), take, again, name)
            except _Refused:
                raise ValueError(f"{name} changed while it was being read") from None
    keep = np.concatenate(keep_blocks) if wanted else None
    cols = {header[j]: c.values(narrow) for j, c in columns.items()}
    del columns
    _arrow()[0].default_memory_pool().release_unused()  # Arrow's blocks, back to the system
    return header, keep, cols
