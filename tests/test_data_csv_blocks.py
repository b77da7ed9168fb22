"""load_csv's fast paths give the bits of the slow ones: the integer columns of a block converted
together into one array (``_csvread._Integers``) against the same blocks converted column by
column; byte columns encoded by looking their values up (``Encoder.byte_table``) against
``encode_field`` on their float64 values; and the thread that reads Arrow's blocks ahead
(``_csvread._ahead``) raises what the reading raised and ends with the reading."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from privcity.data import Encoder, Field, Schema, _csvread, csvload, load_csv
from privcity.data._csvread import _ahead, read_cells


def write(tmp_path, rows: list[str], header: str) -> str:
    p = tmp_path / "data.csv"
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(p)


def pixels_file(tmp_path, change=None) -> str:
    """3,000 rows: device, label, 12 integer columns 0..255, then ``change(rows)``."""
    rng = np.random.default_rng(7)
    px = rng.integers(0, 256, (3_000, 12))
    rows = [f"{i % 40},{i % 3}," + ",".join(map(str, p)) for i, p in enumerate(px)]
    if change:
        change(rows)
    return write(tmp_path, rows, "device,label," + ",".join(f"p{j}" for j in range(12)))


def set_cell(row: int, col: int, value: str):
    def change(rows: list[str]) -> None:
        cells = rows[row].split(",")
        cells[col] = value
        rows[row] = ",".join(cells)
    return change


CHANGES = {
    "none": None,
    "a missing token in a late block": set_cell(2_500, 5, "NA"),
    "an empty cell in a late block": set_cell(2_500, 5, ""),
    "a value above a byte in a late block": set_cell(2_000, 7, "300"),
    "a value above a byte in the first block": set_cell(3, 7, "65535"),
    "a wide value and a missing token in one block": lambda rows: (
        set_cell(2_990, 4, "300")(rows), set_cell(2_991, 6, "null")(rows)),
    "rows without a target across blocks": lambda rows: [
        set_cell(i, 1, "NA")(rows) for i in range(0, 3_000, 7)],
    "a block without a target": lambda rows: [
        set_cell(i, 1, "")(rows) for i in range(1_000, 1_700)],
}


@pytest.fixture
def small_blocks(monkeypatch):
    """Integer columns chosen on the first 4 KiB; Arrow blocks of 4 KiB (about 60 rows)."""
    monkeypatch.setattr(_csvread, "_SNIFF_BYTES", 1 << 12)
    monkeypatch.setattr(_csvread, "_BLOCK_BYTES", 1 << 12)


def column_by_column(monkeypatch) -> None:
    """Every block of the integer columns through _Column.add, one column at a time."""
    monkeypatch.setattr(_csvread._Integers, "add", lambda self, batch, take: None)


def cells_bits(result) -> tuple:
    header, keep, cols = result
    return (header, keep.tobytes(), {k: (v.dtype.str, v.tobytes()) if isinstance(v, np.ndarray)
                                     else v for k, v in cols.items()})


def dataset_bits(result) -> tuple:
    ds, (x_test, y_test) = result
    return (ds.X.tobytes(), ds.y.tobytes(), ds.offsets.tobytes(), ds.device_ids.tobytes(),
            ds.notes, ds.feature_names, x_test.tobytes(), y_test.tobytes())


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_integer_columns_converted_a_block_at_a_time_hold_the_bits_of_a_column_at_a_time(
        tmp_path, small_blocks, monkeypatch, change):
    # Prepare
    path = pixels_file(tmp_path, CHANGES[change])
    calls = []
    add = _csvread._Integers.add
    monkeypatch.setattr(_csvread._Integers, "add",
                        lambda self, batch, take: calls.append(1) or add(self, batch, take))

    # Execute: the blocks together, then (the reference) one column at a time
    fast = [cells_bits(read_cells(path, "label", "device", None, narrow=n)) for n in (True, False)]
    fast_ds = dataset_bits(load_csv(path, target="label", device_column="device"))
    column_by_column(monkeypatch)
    slow = [cells_bits(read_cells(path, "label", "device", None, narrow=n)) for n in (True, False)]
    slow_ds = dataset_bits(load_csv(path, target="label", device_column="device"))

    # Assert: the fast path ran, and every column has the same dtype and bytes
    assert calls
    assert fast == slow
    assert fast_ds == slow_ds


def test_integer_columns_in_several_arrays_where_the_system_maps_less_hold_the_same_bits(
        tmp_path, small_blocks, monkeypatch):
    # Prepare: no anonymous map (a system without overcommit): arrays of 500 rows, 6 or 7 in all
    path = pixels_file(tmp_path, set_cell(2_000, 7, "300"))

    def refuse(*args, **kwargs):
        raise OSError("Cannot allocate memory")

    reference = cells_bits(read_cells(path, "label", "device", None))
    monkeypatch.setattr(_csvread.mmap, "mmap", refuse)
    monkeypatch.setattr(_csvread, "_CHUNK_ROWS", 500)

    # Execute
    held = cells_bits(read_cells(path, "label", "device", None))

    # Assert
    assert held == reference


def test_byte_columns_are_held_as_bytes_or_wider_only_where_a_value_needs_it(tmp_path,
                                                                        small_blocks):
    # Prepare: p7 has 300 in a late block, p5 a missing token
    path = pixels_file(tmp_path, lambda rows: (set_cell(2_000, 9, "300")(rows),
                                               set_cell(2_500, 7, "NA")(rows)))

    # Execute
    _, _, cols = read_cells(path, "label", "device", None)

    # Assert
    assert cols["p7"].dtype == np.uint16 and cols["p7"].max() == 300
    assert cols["p5"].dtype == np.float32 and np.isnan(cols["p5"]).sum() == 1
    assert {cols[f"p{j}"].dtype for j in range(12) if j not in (5, 7)} == {np.dtype(np.uint8)}


@pytest.mark.parametrize("field", [
    Field("b", "numeric", "public"),
    Field("b", "categorical", "public", "", 0, 9),
    Field("b", "categorical", "public", "", 3, 5),
], ids=["numeric", "categorical", "categorical with codes outside"])
def test_a_byte_column_looked_up_encodes_to_the_bits_of_its_float64_values(field):
    # Prepare
    rng = np.random.default_rng(3)
    col = rng.integers(0, 256, 5_000).astype(np.uint8)
    schema = Schema((field, Field("y", "numeric", "public")), "y")
    enc = Encoder.fit(schema, col[:, None].astype(np.float64) * 1.7)  # a mean, a scale
    rows = rng.permutation(5_000)[:3_000]

    # Execute
    looked_up = csvload._encode(enc, [col], [rows])[0]
    direct = enc.encode(col[rows, None].astype(np.float64))

    # Assert
    assert enc.byte_table(0) is not None
    assert looked_up.tobytes() == direct.tobytes()


def test_a_wide_table_encoded_by_two_threads_has_the_bits_of_encoding_it_whole():
    # Prepare: 330 features of every kind (byte, float with NaN, byte codes, hour of day): more
    # than four groups of 64 encoded columns, so a second thread encodes every other group
    rng = np.random.default_rng(11)
    n = 4_000
    cols = ([rng.integers(0, 256, n).astype(np.uint8) for _ in range(300)]
            + [np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 2, n)) for _ in range(20)]
            + [rng.integers(0, 5, n).astype(np.uint8) for _ in range(8)]
            + [rng.uniform(0, 24, n) for _ in range(2)])
    fields = ([Field(f"b{j}", "numeric", "public") for j in range(300)]
              + [Field(f"f{j}", "numeric", "public") for j in range(20)]
              + [Field(f"c{j}", "categorical", "public", "", 0, 4) for j in range(8)]
              + [Field(f"h{j}", "numeric", "public", "h", 0.0, 24.0, period=24.0)
                 for j in range(2)])
    schema = Schema(tuple(fields) + (Field("y", "numeric", "public"),), "y")
    raw = np.column_stack([c.astype(np.float64) for c in cols])
    enc = Encoder.fit(schema, raw)
    rows = rng.permutation(n)[:3_000]
    test = rng.random(n) < 0.25

    # Execute
    train_x, test_x = csvload._encode(enc, list(cols), [rows, test])

    # Assert
    assert len(enc.field_slices) == 330 and enc.n_features > 4 * csvload._GROUP_COLS
    assert train_x.tobytes() == enc.encode(raw[rows]).tobytes()
    assert test_x.tobytes() == enc.encode(raw[test]).tobytes()


def test_a_periodic_field_is_not_looked_up():
    # Prepare
    schema = Schema((Field("h", "numeric", "public", "h", 0.0, 24.0, period=24.0),
                     Field("y", "numeric", "public")), "y")

    # Execute / Assert
    assert Encoder(schema, {}, {}).byte_table(0) is None


def test_the_thread_reading_ahead_raises_what_the_reading_raised_after_the_blocks_before():
    # Prepare
    def blocks():
        yield 1
        yield 2
        raise ValueError("Arrow refused block 3")

    # Execute
    got = []
    with pytest.raises(ValueError, match="block 3"):
        for b in _ahead(blocks()):
            got.append(b)

    # Assert
    assert got == [1, 2]
    assert not [t for t in threading.enumerate() if t.name == "privcity-csv"]


def test_the_thread_reading_ahead_ends_and_closes_the_reading_when_the_reader_stops():
    # Prepare
    closed = threading.Event()

    def blocks():
        try:
            for i in range(1_000):
                yield i
        finally:
            closed.set()

    # Execute: stop after two of many blocks (the thread is blocked on a full queue)
    it = _ahead(blocks(), depth=2)
    first = [next(it), next(it)]
    it.close()

    # Assert
    assert first == [0, 1]
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "privcity-csv"]


def test_no_reading_thread_outlives_a_refused_file(tmp_path):
    # Prepare: a row of the wrong width deep in the file (Arrow refuses, the csv module raises)
    rows = [f"{i % 5},{i % 3},{i % 250}" for i in range(20_000)]
    rows[15_000] = "1,2"
    path = write(tmp_path, rows, "device,label,p")

    # Execute
    with pytest.raises(ValueError, match="line 15002: 2 cells, the header has 3"):
        read_cells(path, "label", "device", None)

    # Assert
    assert not [t for t in threading.enumerate() if t.name == "privcity-csv"]
