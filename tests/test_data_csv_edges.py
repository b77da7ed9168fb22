"""CSV loader edges found by fuzzing (issue 18), on vega_datasets' Seattle weather (a table it
ships): missing cells in any column, timestamps included, are missing values; an oversized
cell is refused with its file, line and column on both reading paths; values whose squares
overflow float64 are standardised, noted, never a zeroed column or a NaN target."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from privcity.data import _csvread, load_csv

local_data = pytest.importorskip("vega_datasets").local_data


@pytest.fixture(scope="module")
def rows() -> list[list[str]]:
    table = local_data.seattle_weather()
    table["date"] = table["date"].dt.strftime("%Y-%m-%d")
    return [list(table.columns)] + table.astype(str).values.tolist()


def _write(path, rows) -> str:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return str(path)


@pytest.mark.parametrize("column", range(6))
@pytest.mark.parametrize("token", ["", "NA", "null"])
def test_a_missing_cell_in_any_column_is_a_missing_value(rows, column, token, tmp_path):
    # Prepare: one cell missing in each of a few rows (the date, a number, the weather label)
    holed = [list(r) for r in rows]
    for i in (1, 5, 700, len(rows) - 1):
        holed[i][column] = token
    path = _write(tmp_path / "holes.csv", holed)

    # Execute
    train, (x_test, _) = load_csv(path, target="temp_max", devices=5)

    # Assert: every feature finite; only a missing target leaves rows out
    assert np.isfinite(train.X).all() and np.isfinite(x_test).all()
    left_out = 4 if rows[0][column] == "temp_max" else 0
    assert train.X.shape[0] + x_test.shape[0] == len(rows) - 1 - left_out
    assert train.feature_names[:2] == ["date_hour_sin", "date_hour_cos"]


@pytest.mark.parametrize("ragged", [False, True], ids=["arrow", "csv-module"])
@pytest.mark.parametrize("size", [200_000, 3_000_000])
def test_an_oversized_cell_is_refused_with_file_line_and_column(rows, ragged, size, tmp_path):
    # Prepare: a cell over 128 KiB in line 4's wind column; a ragged row further down sends
    # the file to the csv module's path, which raised _csv.Error before
    big = [list(r) for r in rows]
    big[3][4] = "7" * size
    if ragged:
        big[9].append("extra")
    path = _write(tmp_path / "big.csv", big)

    # Execute / Assert
    with pytest.raises(ValueError, match=rf"big\.csv, line 4, column 'wind': a cell of "
                                         rf"{size:,} characters, over the 128 KiB"):
        load_csv(path, target="temp_max", devices=2)
    assert _csvread.csv.field_size_limit() == 131072  # the csv module's limit put back


def test_a_cell_within_the_limit_is_read_as_before(rows, tmp_path):
    # Prepare: a long text cell of 100,000 characters in a numeric column: a stray cell
    long = [list(r) for r in rows]
    long[3][4] = "x" * 100_000
    path = _write(tmp_path / "long.csv", long)

    # Execute
    train, _ = load_csv(path, target="temp_max", devices=2)

    # Assert: read as missing, and the note shows the cell cut short
    note = next(n for n in train.notes if n.startswith("column 'wind'"))
    assert "read as missing" in note and len(note) < 200


@pytest.mark.parametrize("column", ["precipitation", "temp_max"])
def test_values_whose_squares_overflow_are_standardised_not_lost(rows, column, tmp_path):
    # Prepare: one column (a feature, or the target) in units 1e200 times larger
    j = rows[0].index(column)
    huge = [list(r) for r in rows]
    for r in huge[1:]:
        r[j] = repr(float(r[j]) * 1e200)
    plain = _write(tmp_path / "plain.csv", rows)
    scaled = _write(tmp_path / "scaled.csv", huge)

    # Execute
    with np.errstate(all="raise"):  # no overflow anywhere
        want, (xw, yw) = load_csv(plain, target="temp_max", devices=3)
        got, (xg, yg) = load_csv(scaled, target="temp_max", devices=3)

    # Assert: the model reads what it would in plain units (to float32 rounding), noted
    assert np.isfinite(got.X).all() and np.isfinite(got.y).all()
    np.testing.assert_allclose(got.X, want.X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.y, want.y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(yg, yw, rtol=1e-5, atol=1e-5)
    assert any(n.startswith(f"column {column!r}: values of about") for n in got.notes)
    assert want.notes == ()
