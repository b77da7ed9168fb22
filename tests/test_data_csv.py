"""privcity.data.load_csv: real sensor data shipped with river (UCI Occupancy, Phishing),
schema inference, device splits, standardisation from the training rows only, clear errors."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import tracemalloc

import numpy as np
import pytest

from privcity.data import _csvread, csvload, load_csv

river = pytest.importorskip("river")
RIVER = os.path.dirname(river.__file__)
# river's copy of UCI Occupancy (every 16th reading): time, V1..V4 = Temperature (degC),
# Humidity (%), Light (lux), CO2 (ppm). It has no Occupancy column.
OCCUPANCY = os.path.join(RIVER, "drift", "datasets", "occupancy.csv")
PHISHING = os.path.join(RIVER, "datasets", "phishing.csv.gz")


def write(tmp_path, text: str, name: str = "data.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_occupancy_regression_with_time_features_and_contiguous_devices():
    # Prepare
    with open(OCCUPANCY) as fh:
        header = fh.readline().strip().split(",")
        n_rows = sum(1 for _ in fh)

    # Execute
    train, (X_test, y_test) = load_csv(OCCUPANCY, target="V4", devices=5)

    # Assert
    assert header == ["time", "V1", "V2", "V3", "V4"]
    assert train.task_type == "regression" and train.n_classes == 0
    assert train.feature_names == ["time_hour_sin", "time_hour_cos", "time_day_of_week_sin",
                                   "time_day_of_week_cos", "V1", "V2", "V3"]
    assert train.X.shape[0] + X_test.shape[0] == n_rows
    assert 0.1 < X_test.shape[0] / n_rows < 0.3
    assert train.n_devices == 5 and train.sizes.max() - train.sizes.min() <= 1
    assert 300 < train.target_mean < 1500                     # CO2 in ppm
    assert X_test.dtype == np.float32 and y_test.dtype == np.float32


def test_phishing_classification_inferred_with_two_classes_round_robin():
    # Execute
    train, (X_test, y_test) = load_csv(PHISHING, target="is_phishing", devices=10, split="round_robin")

    # Assert
    assert train.task_type == "classification" and train.n_classes == 2
    assert train.class_names == ("0", "1") and train.y.dtype == np.int64
    assert set(np.unique(train.y)) == {0, 1} and set(np.unique(y_test)) <= {0, 1}
    assert train.X.shape[0] + len(y_test) == 1250
    assert train.sizes.max() - train.sizes.min() <= 1
    assert np.all(np.abs(train.X.mean(axis=0)) < 1e-5)


def test_standardisation_uses_training_rows_only(tmp_path):
    # Prepare: x = row index; target = row index too, so y recovers which rows were trained on
    lines = ["x,target"] + [f"{i},{i}" for i in range(400)]
    path = write(tmp_path, "\n".join(lines))

    # Execute
    train, (X_test, y_test) = load_csv(path, target="target", seed=3)

    # Assert
    i_train = train.y.astype(np.float64) * train.target_scale + train.target_mean
    i_test = y_test.astype(np.float64) * train.target_scale + train.target_mean
    assert train.task_type == "regression"
    np.testing.assert_allclose(np.sort(np.r_[i_train, i_test]), np.arange(400), atol=1e-3)
    m, s = np.round(i_train).mean(), np.round(i_train).std()
    assert train.target_mean == pytest.approx(m) and train.target_scale == pytest.approx(s)
    np.testing.assert_allclose(train.X[:, 0], (np.round(i_train) - m) / s, atol=1e-5)
    np.testing.assert_allclose(X_test[:, 0], (np.round(i_test) - m) / s, atol=1e-5)
    assert abs(m - 199.5) > 1e-3                              # train mean is not the all-rows mean


def test_split_does_not_depend_on_devices(tmp_path):
    # Prepare
    path = write(tmp_path, "a,b,y\n" + "\n".join(f"{i},{i * i % 7},{i % 3}" for i in range(300)))

    # Execute
    one, (_, y1) = load_csv(path, target="y", seed=1)
    many, (_, y2) = load_csv(path, target="y", seed=1, devices=7)

    # Assert
    assert np.array_equal(y1, y2) and one.X.shape == many.X.shape
    assert one.task_type == "classification" and one.n_classes == 3


def test_device_column_groups_rows_and_categoricals_are_one_hot(tmp_path):
    # Prepare
    text = "sensor,zone,when,temp,label\n" + "\n".join(
        f"{'north' if i % 3 else 'south'},{'ABC'[i % 3]},2024-05-0{1 + i % 7}T{i % 24:02d}:30:00,"
        f"{20 + i % 5},{'hot' if i % 5 > 2 else 'cold'}" for i in range(90))
    path = write(tmp_path, text)

    # Execute
    train, (X_test, y_test) = load_csv(path, target="label", device_column="sensor", test_fraction=0.0)

    # Assert
    assert train.n_devices == 2 and list(train.sizes) == [60, 30]          # north, south
    assert train.class_names == ("cold", "hot") and train.n_classes == 2
    zone = [i for i, n in enumerate(train.feature_names) if n.startswith("zone=")]
    assert len(zone) == 3 and np.all(train.X[:, zone].sum(axis=1) == 1)
    assert "when_hour_sin" in train.feature_names and "sensor" not in " ".join(train.feature_names)
    assert X_test.shape == (0, train.X.shape[1])


def test_integer_device_ids_are_kept(tmp_path):
    # Prepare
    path = write(tmp_path, "dev,x,y\n" + "\n".join(f"{100 + i % 4},{i},{i * 0.5}" for i in range(40)))

    # Execute
    train, _ = load_csv(path, target="y", device_column="dev", test_fraction=0.0)

    # Assert
    assert list(train.device_ids) == [100, 101, 102, 103] and list(train.sizes) == [10] * 4


def test_gzip_and_missing_values(tmp_path):
    # Prepare
    p = tmp_path / "d.csv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("x,y\n1,1.5\nNA,2.5\n3,\n4,4.5\n5,5.5\n")

    # Execute
    train, _ = load_csv(p, target="y", test_fraction=0.0)

    # Assert: the row without a target is skipped, the missing feature encoded as the mean (0)
    assert train.X.shape == (4, 1) and train.X[1, 0] == 0.0


def test_a_missing_timestamp_encodes_as_zeros_not_nan(tmp_path):
    # Prepare: the second reading has no time
    path = write(tmp_path, "time,x,y\n2015-02-04 17:51:00,1,2\n,2,3\n2015-02-05 10:00:00,3,5\n"
                           "2015-02-06 11:00:00,4,5\n")

    # Execute
    train, _ = load_csv(path, target="y", test_fraction=0.0)

    # Assert: the four cyclic time features are 0 (the circle's centre), the others encoded
    assert train.feature_names[:4] == ["time_hour_sin", "time_hour_cos", "time_day_of_week_sin",
                                       "time_day_of_week_cos"]
    assert np.isfinite(train.X).all() and not train.X[1, :4].any() and train.X[0, :4].any()


@pytest.mark.parametrize("text, kwargs, match", [
    ("a,b\n1,2\n", dict(target="c"), "target column 'c' is not in"),
    ("a,b\n1,2\n", dict(target="a", device_column="d"), "device column 'd' is not in"),
    ("", dict(target="a"), "is empty"),
    ("\n\n", dict(target="a"), "is empty"),
    ("a,b\n", dict(target="a"), "no data rows"),
    ("a,b\nx,1\ny,2\n", dict(target="a", task="regression"), "target column 'a' is not numeric"),
    ("a,b\n1,2\n3\n", dict(target="a"), "line 3"),
    ("a,b\n1,2\n", dict(target="a", devices=2, device_column="b"), "not both"),
])
def test_errors_name_the_problem(tmp_path, text, kwargs, match):
    # Prepare
    path = write(tmp_path, text)

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        load_csv(path, **kwargs)


def test_a_byte_order_mark_and_non_finite_targets(tmp_path):
    # Prepare: a UTF-8 file with a BOM (as spreadsheet exports write) and an inf target
    from privcity.data import load_csv
    rows = "\n".join(f"{i},{i % 7}.5,{2 * i}" for i in range(60))
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,x,y\n".encode() + rows.encode() + b"\n61,1.5,inf\n")

    # Execute
    train, (x_test, y_test) = load_csv(path, target="y", devices=3)

    # Assert: the first column is named "id", not "\ufeffid"; the inf row is left out
    assert np.isfinite(train.y).all() and np.isfinite(y_test).all()
    assert train.X.shape[0] + x_test.shape[0] == 60


@pytest.mark.parametrize("reader, block", [("arrow", 30), ("arrow", 120), ("arrow", 150),
                                           ("csv", 1), ("csv", 4), ("csv", 5)])
def test_values_after_a_block_boundary_are_judged_as_in_one_block(tmp_path, monkeypatch, reader,
                                                                   block):
    # Prepare: "code" holds numbers for 8 rows, then a letter (categorical); "noisy" has its only
    # non-number in a row without a target (numeric); "dev" turns non-integral late (device ids
    # numbered from the strings); "when" is a timestamp (cyclic features)
    rows = [f"{i % 3},{i * 0.5},{i % 2},2024-05-0{1 + i % 7}T{i % 24:02d}:15:00,{i}" for i in range(8)]
    rows += ["A,1.5,2.5,2024-05-08T09:00:00,8", "1,oops,1,2024-05-09T10:00:00,", "2,NA,0,,10",
             "A,3.0,1,2024-05-10T11:30:00,11", "0,4.5,2.5,2024-05-11T12:00:00,12"]
    path = write(tmp_path, "code,noisy,dev,when,y\n" + "\n".join(rows) + "\n")
    kwargs = dict(target="y", device_column="dev", test_fraction=0.3, seed=2)
    whole, (x_test_whole, y_test_whole) = load_csv(path, **kwargs)         # one block
    if reader == "arrow":  # blocks of about 1, 4 and 5 rows (each about 30 bytes)
        monkeypatch.setattr(_csvread, "_BLOCK_BYTES", block)
    else:  # the csv module's blocks of rows (where Arrow refuses a file)
        monkeypatch.setattr(_csvread, "_CHUNK_ROWS", block)
        monkeypatch.setattr(csvload, "read_cells",
                            functools.partial(_csvread.read_cells, arrow=False))

    # Execute
    train, (x_test, y_test) = load_csv(path, **kwargs)

    # Assert
    assert train.feature_names == ["code=0", "code=1", "code=2", "code=3", "noisy", "when_hour_sin",
                                   "when_hour_cos", "when_day_of_week_sin", "when_day_of_week_cos"]
    assert train.schema == whole.schema and train.feature_names == whole.feature_names
    assert list(train.device_ids) == list(whole.device_ids) and len(whole.device_ids) == 3   # 0, 1, 2.5
    assert train.X.shape[0] + x_test.shape[0] == 12                      # the row without a target left out
    np.testing.assert_array_equal(train.offsets, whole.offsets)
    np.testing.assert_array_equal(train.X, whole.X)
    np.testing.assert_array_equal(train.y, whole.y)
    np.testing.assert_array_equal(x_test, x_test_whole)
    np.testing.assert_array_equal(y_test, y_test_whole)
    assert (train.target_mean, train.target_scale) == (whole.target_mean, whole.target_scale)


def test_stray_cells_skipped_rows_and_dropped_columns_are_reported(tmp_path):
    # Prepare: real readings with one stray cell in a numeric column (as a sensor log has),
    # some rows without a target, an id column and a constant column
    with open(OCCUPANCY) as f:
        header, *rows = f.read().splitlines()
    lines = [header + ",reading_id,site"]
    for i, row in enumerate(rows):
        cells = row.split(",")
        if i == 10:
            cells[1] = "err"                     # V1, the temperature
        if i % 100 == 3:
            cells[4] = ""                        # V4, the target: missing
        lines.append(",".join(cells) + f",r{i},lab")
    path = write(tmp_path, "\n".join(lines) + "\n")
    clean, _ = load_csv(OCCUPANCY, target="V4")

    # Execute
    train, _ = load_csv(path, target="V4")

    # Assert
    assert "V1" in train.feature_names               # still a numeric feature, not dropped
    skipped = len(range(3, len(rows), 100))
    assert train.notes == (
        f"{skipped} of {len(rows):,} rows left out: no finite value of the target 'V4'",
        "column 'V1': 1 value(s) that are not numbers (e.g. 'err') read as missing",
        f"column 'reading_id' not used: {len(train.y):,} distinct values in the training "
        "rows that are not numbers, more than max_categories=32",
        "column 'site' not used: fewer than 2 distinct values in the training rows",
    )
    assert clean.notes == ()


def test_a_column_with_many_words_is_not_read_as_numbers(tmp_path):
    # 1 in 10 values is a word: more than stray cells, so the column is categorical
    path = write(tmp_path, "x,level,y\n" + "\n".join(
        f"{i},{'high' if i % 10 == 0 else i % 3},{i * 0.5}" for i in range(200)))
    train, _ = load_csv(path, target="y", test_fraction=0.0)
    level = train.schema.field("level")
    assert (level.kind, level.lower, level.upper) == ("categorical", 0, 3)  # 0, 1, 2, high
    assert not any("level" in n for n in train.notes)


def test_more_devices_than_training_rows_is_reported(tmp_path):
    path = write(tmp_path, "x,y\n" + "\n".join(f"{i},{i * 0.5}" for i in range(10)))
    train, _ = load_csv(path, target="y", devices=25, test_fraction=0.0)
    assert "25 devices for 10 training rows: 15 of them hold no rows" in train.notes


def test_a_constant_target_and_text_that_is_not_utf8_get_named_errors(tmp_path):
    const = write(tmp_path, "x,label\n" + "\n".join(f"{i},7" for i in range(20)), "const.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("x,place\n1,Z\xfcrich\n2,Köln\n".encode("latin-1"))
    with pytest.raises(ValueError, match="'label' of .*const.csv has a single value \\(7\\)"):
        load_csv(const, target="label")
    with pytest.raises(ValueError, match="latin.csv is not UTF-8 text"):
        load_csv(str(latin), target="x")


def _mixed_csv(tmp_path, rows: int = 400) -> str:
    """Named sensors, an integer reading, a noisy float with a stray cell, a zone, a timestamp and
    a label (some missing): every kind of column load_csv encodes."""
    lines = ["sensor,count,temp,zone,when,label"]
    for i in range(rows):
        temp = "err" if i == 7 else ("" if i % 11 == 0 else f"{20 + (i * 37 % 100) / 7:.3f}")
        label = "" if i % 29 == 0 else ("hot" if i * 7 % 10 > 5 else "cold")
        lines.append(f"s{i % 13},{i * 31 % 300},{temp},{'ABC'[i % 3]},"
                     f"2024-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00,{label}")
    return write(tmp_path, "\n".join(lines) + "\n")


def _same_dataset(a, b) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "population":
            assert all(np.array_equal(u, v) and u.dtype == v.dtype for u, v in zip(x, y))
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("kwargs", [dict(target="label", device_column="sensor"),
                                    dict(target="temp", devices=9, split="round_robin")])
@pytest.mark.parametrize("share", [(0, 0), (0, 1), (3, 7), (8, 9)])
def test_keeping_a_range_of_devices_is_the_subset_of_the_whole_file_bit_for_bit(tmp_path, kwargs,
                                                                                 share):
    # Prepare: a regression and a classification, the kept range a share of the devices
    path = _mixed_csv(tmp_path)
    whole, (x_test, y_test) = load_csv(path, **kwargs)
    n = whole.n_devices
    r = range(share[0] * n // 9, share[1] * n // 9)
    asked = []

    # Execute
    part, test = load_csv(path, **kwargs, keep=lambda m: asked.append(m) or r)

    # Assert: standardised with every training row, the same categories, classes and notes
    assert asked == [n]
    _same_dataset(part, whole.subset(np.arange(r.start, r.stop)))
    assert np.array_equal(test[0], x_test) and np.array_equal(test[1], y_test)
    assert np.array_equal(part.population[0], whole.device_ids)
    assert np.array_equal(part.population[1], whole.sizes)


def test_a_rank_that_keeps_no_device_still_knows_every_device_and_may_skip_the_test_set(tmp_path):
    # Prepare
    path = _mixed_csv(tmp_path)
    whole, _ = load_csv(path, target="label", device_column="sensor")

    # Execute
    none, test = load_csv(path, target="label", device_column="sensor", keep=lambda n: range(0),
                          test_set=False)

    # Assert
    assert test is None and none.n_devices == 0 and none.X.shape == (0, whole.X.shape[1])
    assert none.feature_names == whole.feature_names and none.notes == whole.notes
    ids, sizes = none.population
    assert list(ids) == list(whole.device_ids) and list(sizes) == list(whole.sizes)
    assert sizes.sum() == whole.X.shape[0] and ids.dtype == sizes.dtype == np.int64


@pytest.mark.parametrize("keep, match", [
    (lambda n: [0, 1], "must return a range"), (lambda n: range(0, n + 1), "within range"),
    (lambda n: range(0, n, 2), "step 1"), (lambda n: range(2, 1), "within range"),
    ("0:3", "must be a callable")])
def test_keep_must_give_a_range_of_device_indices(tmp_path, keep, match):
    path = _mixed_csv(tmp_path, rows=60)
    with pytest.raises(ValueError, match=match):
        load_csv(path, target="label", device_column="sensor", keep=keep)


def test_test_set_must_be_a_bool(tmp_path):
    path = _mixed_csv(tmp_path, rows=60)
    with pytest.raises(ValueError, match="test_set must be True or False"):
        load_csv(path, target="label", test_set="no")


def test_the_encoded_output_is_the_peak_part_that_falls_with_the_rows_kept(tmp_path):
    # Prepare: 30,000 rows x 40 integer columns; numpy's allocations as tracemalloc sees them
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 256, (30_000, 40))
    rows = [f"{i % 100},{i % 3}," + ",".join(map(str, r)) for i, r in enumerate(cells.tolist())]
    path = write(tmp_path, "dev,y," + ",".join(f"p{j}" for j in range(40)) + "\n"
                 + "\n".join(rows) + "\n")

    def peak(**kwargs) -> int:
        tracemalloc.start()
        try:
            load_csv(path, target="y", device_column="dev", **kwargs)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # Execute
    whole = peak()
    quarter = peak(keep=lambda n: range(n // 4), test_set=False)

    # Assert: the float32 output of every row (4.8 MB) is most of the whole load's peak
    assert whole > 30_000 * 40 * 4
    assert quarter < 0.55 * whole
