"""load_csv's reader: pyarrow.csv splits the file and casts numbers, yet every cell, row and error
is the csv module's and every number float()'s. Each test holds Arrow's path against the csv
module's (``read_cells(arrow=False)``, the reference) or against float() itself, on the cells
where the two could part: Arrow's integers read "0x1f" as 31 and trim blanks, its floats read
"nan(1)", and it splits rows (quotes, blank rows, line ends) with its own parser."""
from __future__ import annotations

import gzip
import itertools
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privcity.data import _csvread, load_csv
from privcity.data._csvread import _UINT8, _cell_numbers, _floats, _strings, read_cells


def write(tmp_path, text: str | bytes, name: str = "data.csv") -> str:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(p)


def both(path: str, target: str = "y", device_column: str | None = None):
    """read_cells through Arrow and through the csv module: (result or error) of each."""
    out = []
    for arrow in (True, False):
        try:
            out.append(read_cells(path, target, device_column, None, arrow=arrow))
        except (ValueError, UnicodeDecodeError) as exc:
            out.append((type(exc), str(exc)))
    return out


def same_floats(x: np.ndarray | None, y: np.ndarray | None) -> bool:
    """The same values (NaN alike, -0.0 apart from 0.0), whatever dtype holds them."""
    if x is None or y is None:
        return x is None and y is None
    x, y = x.astype(np.float64), y.astype(np.float64)
    return bool(np.array_equal(x, y, equal_nan=True)
                and np.array_equal(np.signbit(x), np.signbit(y)))


def assert_same(a, b) -> None:
    if isinstance(a[0], type):  # an error
        assert a == b
        return
    (ha, ka, ca), (hb, kb, cb) = a, b
    assert ha == hb and np.array_equal(ka, kb) and ca.keys() == cb.keys()
    for name in ca:
        x, y = ca[name], cb[name]
        if isinstance(x, list):
            assert x == y, name
        else:  # numbers: Arrow's path may hold them narrower, never other
            assert isinstance(y, np.ndarray) and same_floats(x, y), name


# --- numbers -------------------------------------------------------------------------------------

def test_every_short_cell_of_digits_signs_dots_and_exponents_is_read_as_float_reads_it():
    # Prepare: every string of up to 3 characters over the bytes Arrow's cast is trusted with
    alphabet = "0123456789+-.eE"
    cells = ["".join(t) for n in range(1, 4) for t in itertools.product(alphabet, repeat=n)]

    # Execute / Assert: one cell at a time, so that each is judged alone
    for cell in cells:
        x, _ = _cell_numbers(_strings([cell]), _UINT8)
        assert same_floats(x, _floats([cell])), cell


DIGITS = st.text("0123456789", min_size=1, max_size=25)
NUMBER = st.builds(
    lambda sign, whole, frac, exp: sign + whole + ("" if frac is None else "." + frac) + exp,
    st.sampled_from(["", "+", "-"]), DIGITS, st.none() | st.text("0123456789", max_size=25),
    st.just("") | st.builds("".join, st.tuples(
        st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
        st.text("0123456789", min_size=1, max_size=3))))


@settings(max_examples=300, deadline=None)
@given(st.lists(NUMBER, min_size=1, max_size=20))
def test_long_mantissas_and_exponents_are_read_to_the_same_bit(cells):
    x, _ = _cell_numbers(_strings(cells), _UINT8)
    assert same_floats(x, _floats(cells))


@pytest.mark.parametrize("cell, value", [
    ("0x1f", None), ("0X10", None), ("nan(1)", None), ("1_000", 1000.0), (" 1", 1.0), ("1 ", 1.0),
    ("\t7\t", 7.0), ("+1", 1.0), ("-0", -0.0), ("007", 7.0), ("1e5", 1e5), (".5", 0.5), ("5.", 5.0),
    ("inf", np.nan), ("-Infinity", np.nan), ("1e400", np.nan), ("NaN", np.nan), (" NA ", np.nan),
    ("nUlL", np.nan), ("?", np.nan), ("", np.nan), ("99999999999999999999", 1e20),
    ("9007199254740993", 9007199254740992.0), ("\u0661\u0662", 12.0), ("\uff11", 1.0),
    ("true", None), ("1,5", None), ("--1", None), ("1e", None)])
def test_a_cell_is_the_number_float_makes_of_it(cell, value):
    # Execute: in a column of integers (Arrow's fast cast first) and alone
    column = ["3", "250", cell, "17"]
    x, _ = _cell_numbers(_strings(column), _UINT8)

    # Assert
    expected = _floats(column)
    assert same_floats(x, expected)
    if value is None:
        assert expected is None  # not a number: a stray cell or text to load_csv
    else:
        assert same_floats(expected[2:3], np.array([value]))


@pytest.fixture
def small_blocks(monkeypatch):
    """Integer columns chosen on the first 4 KiB; Arrow blocks of 4 KiB."""
    monkeypatch.setattr(_csvread, "_SNIFF_BYTES", 1 << 12)
    monkeypatch.setattr(_csvread, "_BLOCK_BYTES", 1 << 12)


def test_a_hex_cell_among_integers_is_a_stray_cell_not_31(tmp_path, small_blocks):
    # Prepare: an integer column Arrow converts itself, one hex cell after the first 4 KiB
    rows = [f"{i % 7},{i % 256},{i % 2}" for i in range(3_000)]
    rows[2_500] = "3,0x1f,1"
    path = write(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")

    # Execute
    train, _ = load_csv(path, target="y", test_fraction=0.0)

    # Assert
    note = "column 'b': 1 value(s) that are not numbers (e.g. '0x1f') read as missing"
    assert note in train.notes
    assert_same(*both(path))


@pytest.mark.parametrize("late", ["70000", "oops", "", " 5", "NA", "-1", "2.5", "1_0"])
def test_an_integer_column_that_changes_after_the_first_block_is_read_as_the_csv_module_reads_it(
        tmp_path, small_blocks, late):
    # Prepare: integers below 256 in the first 4 KiB (Arrow then converts the column as uint16),
    # then a value that does not fit, text, a missing or padded cell, a sign, a fraction
    rows = [f"{i % 7},{i % 200},{i % 3}" for i in range(3_000)]
    rows[2_500] = f"1,{late},2"
    path = write(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")

    # Execute / Assert
    assert_same(*both(path))


# --- rows ----------------------------------------------------------------------------------------

CELLS = ["1", "22", "", " ", "a", "-0", "1e3", "NA", "3.5", '"q"', '"x\ny"', '"a,b"', '" "', '"1"',
         '"say ""hi"""', "x y", '"a"b', 'a"b', "\u00e9", "0x1f", "inf", "\t"]


@st.composite
def csv_text(draw) -> str:
    width = draw(st.integers(1, 4))
    header = ",".join(["y"] + [f"c{j}" for j in range(1, width)])
    lines = [header]
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["row"] * 8 + ["empty", "spaces", "commas", "short"]))
        if kind == "row":
            lines.append(",".join(draw(st.sampled_from(CELLS)) for _ in range(width)))
        elif kind == "empty":
            lines.append("")
        elif kind == "spaces":
            lines.append(" \t ")
        elif kind == "commas":
            lines.append("," * draw(st.integers(1, width + 1)))
        else:
            lines.append(",".join("7" for _ in range(draw(st.integers(1, width + 2)))))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return end.join(lines) + draw(st.sampled_from(["", end]))


@settings(max_examples=300, deadline=None)
@given(csv_text(), st.sampled_from([20, 64, 1 << 22]))
def test_arrow_reads_any_file_as_the_csv_module_does(tmp_path_factory, text, block):
    # Prepare: quoted cells, blank rows of any width, rows too short or too long, line ends
    path = write(tmp_path_factory.mktemp("csv"), text)
    saved = _csvread._BLOCK_BYTES
    _csvread._BLOCK_BYTES = block
    try:
        # Execute
        arrow, module = both(path)
    finally:
        _csvread._BLOCK_BYTES = saved

    # Assert: the same rows and cells, or the same error (with the same line number)
    assert_same(arrow, module)


@pytest.mark.parametrize("text", [
    'a,b,y\n"x\ny",2,3\n"p,q",5,6\n7,8\n',          # a short row after quoted line breaks: line 5
    "a,b,y\n1,2,3\n ,\n4,5,6\n,,,,\n7,8,9\n",         # blank rows of any width are no rows
    "a,b,y\r1,2,3\r4,5,6\r",                         # old Mac line ends
    '\n , \n"a",b,y\n1,2,3\n',                       # blank rows before the header
    "a,b,y\n1,2\x003,4\n5,6,7\n",                     # a NUL in a cell
    'a,b,y\n"unterminated,1,2\n3,4,5\n',            # a quote never closed: one long cell
    "a,b,y\n\u00a0,\u2003,\u00a0\n\x1c,\x1d,\x1e\n1,2,3\n",  # Unicode blanks: a blank row
    "a,b,y\n1,2,3\n4,5,6,7\n",                       # a long row
    "a,b,y",                                          # a header alone
    "a,b,y\n\n\n",                                    # and empty lines
    "a,b,y\n,,\n \n",                                 # and blank rows
])
def test_rows_blank_rows_and_row_errors_are_the_csv_modules(tmp_path, text):
    assert_same(*both(write(tmp_path, text)))


def test_blank_rows_in_a_file_of_integers_are_no_rows(tmp_path):
    # Prepare: columns Arrow converts as integers, and rows whose cells are all empty
    rows = [f"{i % 5},{i % 9},{i % 2}" for i in range(300)]
    rows[100:100] = [",,", " , ,\t"]
    path = write(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")

    # Execute
    header, keep, cols = read_cells(path, "y", None, None)

    # Assert
    assert len(keep) == 300 and cols["a"].dtype == np.uint8
    assert_same(*both(path))


def test_a_file_that_is_not_utf8_gets_the_csv_modules_error_deep_in_the_file(tmp_path):
    text = "x,place,y\n" + "".join(f"{i},Bonn,{i % 2}\n" for i in range(50_000))
    data = text.encode() + "7,Z\xfcrich,1\n".encode("latin-1")
    arrow, module = both(write(tmp_path, data))
    assert arrow == module and arrow[0] is UnicodeDecodeError


def test_duplicate_names_and_a_byte_order_mark_are_read_from_the_header(tmp_path):
    assert_same(*both(write(tmp_path, "a, b,b \n1,2,3\n")))
    bom = write(tmp_path, b"\xef\xbb\xbfid,y\n1,2\n3,4\n", "bom.csv")
    assert read_cells(bom, "y", None, None)[0] == ["id", "y"]


def test_device_ids_beyond_2_to_the_53_and_names_are_kept_as_the_csv_module_keeps_them(tmp_path):
    rows = [f"{(1 << 60) + i % 5},{i % 3},{i}" for i in range(60)] + ["1e3,1,60", "2.5,1,61"]
    path = write(tmp_path, "dev,x,y\n" + "\n".join(rows) + "\n")
    arrow, module = both(path, device_column="dev")
    assert_same(arrow, module)
    assert isinstance(arrow[2]["dev"], list)  # 2.5 is no id: the cells are numbered as names


# --- sources -------------------------------------------------------------------------------------

def test_a_pipe_and_a_gzip_file_load_as_the_plain_file(tmp_path):
    # Prepare
    text = "dev,when,x,y\n" + "\n".join(
        f"{i % 4},2024-05-0{1 + i % 7}T{i % 24:02d}:00:00,{i % 250},{i % 2}" for i in range(500))
    plain = write(tmp_path, text)
    with gzip.open(tmp_path / "d.csv.gz", "wt") as fh:
        fh.write(text)
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w") as fh:
            fh.write(text)

    writer = threading.Thread(target=feed)
    writer.start()

    # Execute
    through_pipe, (xp, yp) = load_csv(fifo, target="y", device_column="dev")
    writer.join()
    gz, (xg, yg) = load_csv(tmp_path / "d.csv.gz", target="y", device_column="dev")
    want, (xw, yw) = load_csv(plain, target="y", device_column="dev")

    # Assert
    for got, x, y in ((through_pipe, xp, yp), (gz, xg, yg)):
        assert np.array_equal(got.X, want.X) and np.array_equal(got.y, want.y)
        assert np.array_equal(got.offsets, want.offsets) and np.array_equal(x, xw)
        assert np.array_equal(y, yw) and got.notes == want.notes


def test_importing_privcity_loads_no_pyarrow_and_load_csv_no_pandas(tmp_path):
    # pyarrow costs 60 MB and a fifth of a second at import; pa.array() would import pandas
    path = write(tmp_path, "a,b,y\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(50)))
    code = ("import sys, privcity.data as d; a = 'pyarrow' in sys.modules; "
            f"d.load_csv({path!r}, target='y'); print(a, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.split() == ["False", "False"]
