"""privcity.data.load_csv(test_data=...): every row of the CSV trains, the test file's rows are
encoded exactly as the training rows are (checked bit for bit against the hashed split of one
file), and what the test file cannot change (classes, categories, standardisation) it does not."""
from __future__ import annotations

import csv
import gzip
import os

import numpy as np
import pytest

from privcity.data import load_csv

river = pytest.importorskip("river")
RIVER = os.path.dirname(river.__file__)
OCCUPANCY = os.path.join(RIVER, "drift", "datasets", "occupancy.csv")  # time, V1..V4
PHISHING = os.path.join(RIVER, "datasets", "phishing.csv.gz")  # numeric features, is_phishing


def write(tmp_path, text: str, name: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def rows_of(path: str) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        header, *body = list(csv.reader(fh))
    return header, body


def write_rows(path, header: list[str], body: list[list[str]]) -> str:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(body)
    return str(path)


def split_by_the_hash(tmp_path, header, body, **kwargs):
    """load_csv of the whole file (a "row" column numbering the rows, as the device column: one
    device per row, so the training rows' ids say which rows trained), and the two files its
    hashed split makes: the training rows (with "row") and the others (without it)."""
    whole_path = write_rows(tmp_path / "whole.csv", header + ["row"],
                            [r + [str(i)] for i, r in enumerate(body)])
    whole = load_csv(whole_path, device_column="row", **kwargs)
    trained = set(whole[0].device_ids.tolist())
    train_path = write_rows(tmp_path / "train.csv", header + ["row"],
                            [r + [str(i)] for i, r in enumerate(body) if i in trained])
    test_path = write_rows(tmp_path / "test.csv", header,
                           [r for i, r in enumerate(body) if i not in trained])
    return whole, train_path, test_path


def assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("path, target", [(OCCUPANCY, "V4"), (PHISHING, "is_phishing")])
def test_a_test_file_of_the_hashed_test_rows_is_encoded_bit_for_bit_as_the_split_encodes_them(
        tmp_path, path, target):
    # Prepare: real sensor readings (regression: a timestamp and numbers) and phishing pages
    # (classification), split in two files by load_csv's own hashed split
    header, body = rows_of(path)
    (whole, (x_whole, y_whole)), train_path, test_path = split_by_the_hash(
        tmp_path, header, body, target=target, seed=5)

    # Execute
    train, (x_test, y_test) = load_csv(train_path, target=target, device_column="row",
                                       test_data=test_path)

    # Assert: the same training rows and encoding, and the same test set, bit for bit
    assert 0.1 < len(y_test) / len(body) < 0.3
    assert train.feature_names == whole.feature_names and train.schema == whole.schema
    assert train.class_names == whole.class_names and train.task_type == whole.task_type
    assert (train.target_mean, train.target_scale) == (whole.target_mean, whole.target_scale)
    assert_same_bits(train.X, whole.X)
    assert_same_bits(train.y, whole.y)
    assert_same_bits(x_test, x_whole)
    assert_same_bits(y_test, y_whole)
    assert train.notes == whole.notes == ()


def test_categories_labels_dates_stray_cells_and_missing_targets_match_the_split_too(tmp_path):
    # Prepare: text labels, a categorical column with a value ("violet") in one row only, a
    # numeric column with one stray cell ("err"), dates, a missing target; a seed that puts
    # the rare value's and the stray cell's rows in the hashed test split
    header = ["when", "zone", "temp", "label"]
    body = [[f"2024-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00", "ABC"[i % 3],
             f"{15 + (i * 7) % 13}.5", ("cold", "mild", "hot")[(i * 5) % 3]] for i in range(300)]
    body[7][1], body[11][2], body[13][3], body[17][2] = "violet", "err", "", "NA"
    for seed in range(100):
        (whole, (x_whole, y_whole)), train_path, test_path = split_by_the_hash(
            tmp_path, header, body, target="label", seed=seed)
        if not {7, 11} & set(whole.device_ids.tolist()):
            break
    else:
        pytest.fail("no seed puts rows 7 and 11 in the test split")

    # Execute
    train, (x_test, y_test) = load_csv(train_path, target="label", device_column="row",
                                       test_data=test_path)

    # Assert: bit for bit; the test file's notes say what its odd cells became
    zone = [j for j, n in enumerate(train.feature_names) if n.startswith("zone=")]
    assert train.feature_names == whole.feature_names and len(zone) == 3
    assert train.class_names == whole.class_names == ("cold", "hot", "mild")
    assert_same_bits(train.X, whole.X)
    assert_same_bits(x_test, x_whole)
    assert_same_bits(y_test, y_whole)
    assert (x_test[:, zone].sum(axis=1) == 0).sum() == 1   # "violet": no zone
    assert train.notes == (
        f"test file: 1 of {len(y_test) + 1} rows left out: no finite value of the target 'label'",
        "test file: column 'zone': 1 value(s) that are none of its 3 categories in the training "
        "rows (e.g. 'violet'): all its one-hot columns 0",
        "test file: column 'temp': 1 value(s) that are not numbers (e.g. 'err') read as missing",
    )


def test_a_test_row_of_a_class_no_training_row_has_is_left_out_with_a_note(tmp_path):
    # Prepare: labels a, b in training; the test file also has z (twice), numeric labels 0..1
    # against a 2 in the other pair of files
    train_path = write(tmp_path, "x,y\n" + "\n".join(f"{i},{'ab'[i % 2]}" for i in range(20)),
                       "train.csv")
    test_path = write(tmp_path, "x,y\n1,a\n2,z\n3,b\n4,z\n", "test.csv")
    num_train = write(tmp_path, "x,y\n" + "\n".join(f"{i},{i % 2}" for i in range(20)), "n.csv")
    num_test = write(tmp_path, "x,y\n5,1\n6,2\n7,0\n8,1.0\n", "nt.csv")

    # Execute
    train, (x_test, y_test) = load_csv(train_path, target="y", test_data=test_path)
    num, (x_num, y_num) = load_csv(num_train, target="y", test_data=num_test)

    # Assert: the kept rows in file order, coded as in training; "1.0" is class 1
    mean, scale = 9.5, np.std(np.arange(20))
    assert train.class_names == ("a", "b") and y_test.tolist() == [0, 1]
    np.testing.assert_allclose(x_test[:, 0], (np.array([1, 3]) - mean) / scale, rtol=1e-6)
    assert train.notes == ("test file: 2 of 4 rows with a target left out: a class of 'y' that "
                           "no training row has (e.g. 'z')",)
    assert num.class_names == ("0", "1") and y_num.tolist() == [1, 0, 1]
    np.testing.assert_allclose(x_num[:, 0], (np.array([5, 7, 8]) - mean) / scale, rtol=1e-6)
    assert num.notes == ("test file: 1 of 4 rows with a target left out: a class of 'y' that no "
                         "training row has (e.g. '2')",)


def test_the_test_file_cannot_change_the_training_encoding(tmp_path):
    # Prepare: a test file whose columns would be judged otherwise on their own (most of "temp"
    # is text, "when" has a non-date, "zone" only unseen values, "y" a text value)
    train_text = "when,zone,temp,y\n" + "\n".join(
        f"2024-05-0{1 + i % 7}T{i % 24:02d}:00:00,{'AB'[i % 2]},{i % 9},{i * 0.5}"
        for i in range(50))
    train_path = write(tmp_path, train_text, "train.csv")
    clean_path = write(tmp_path, "when,zone,temp,y\n2024-05-01T06:00:00,A,3,1.5\n", "clean.csv")
    odd_path = write(tmp_path, "y,temp,zone,when\n1.5,hot,C,yesterday\n2.5,4,D,2024-05-02\n"
                               "oops,5,A,2024-05-03T12:00:00\n", "odd.csv")

    # Execute
    clean, (x_clean, _) = load_csv(train_path, target="y", test_data=clean_path)
    odd, (x_odd, y_odd) = load_csv(train_path, target="y", test_data=odd_path)

    # Assert: the training side is the same; odd cells are missing (0) or no category
    assert_same_bits(odd.X, clean.X)
    assert odd.feature_names == clean.feature_names and odd.schema == clean.schema
    assert (odd.target_mean, odd.target_scale) == (clean.target_mean, clean.target_scale)
    assert x_odd.shape == (2, x_clean.shape[1]) and x_odd.dtype == np.float32
    np.testing.assert_allclose(y_odd, (np.array([1.5, 2.5]) - odd.target_mean) / odd.target_scale,
                               rtol=1e-6)
    names = odd.feature_names
    assert not x_odd[0, :4].any()                                   # "yesterday": missing
    assert x_odd[1, :4].any()                                       # a date: midnight, Thursday
    assert not x_odd[:, [names.index("zone=0"), names.index("zone=1")]].any()  # C, D unseen
    assert x_odd[0, names.index("temp")] == 0.0                     # "hot": the mean
    assert odd.notes == (
        "test file: 1 of 3 rows with a target left out: a value of the target 'y' that is not "
        "a number (e.g. 'oops')",
        "test file: column 'when': 1 value(s) that are not ISO 8601 dates or times (e.g. "
        "'yesterday') read as missing",
        "test file: column 'zone': 2 value(s) that are none of its 2 categories in the training "
        "rows (e.g. 'C'): all its one-hot columns 0",
        "test file: column 'temp': 1 value(s) that are not numbers (e.g. 'hot') read as missing",
    )


def test_the_test_file_needs_the_target_and_the_kept_features_only(tmp_path):
    # Prepare: "id" (one value a row) is dropped in training and "dev" is the device column:
    # neither is needed in the test file; "extra" is ignored
    train_path = write(tmp_path, "id,dev,a,b,y\n" + "\n".join(
        f"r{i},{i % 3},{i},{i % 5},{i % 2}" for i in range(60)), "train.csv")
    enough = write(tmp_path, "extra,y,b,a\nzzz,1,2,3\n", "enough.csv")
    no_b = write(tmp_path, "id,dev,a,y\nr1,0,1,1\n", "no_b.csv")
    no_target = write(tmp_path, "a,b\n1,2\n", "no_y.csv")

    # Execute
    train, (x_test, y_test) = load_csv(train_path, target="y", device_column="dev",
                                       max_categories=8, test_data=enough)

    # Assert
    assert train.feature_names == ["a", "b"] and x_test.shape == (1, 2) and y_test.tolist() == [1]
    with pytest.raises(ValueError, match=r"test file .*no_b\.csv has no column 'b'"):
        load_csv(train_path, target="y", device_column="dev", max_categories=8, test_data=no_b)
    with pytest.raises(ValueError, match=r"no_y\.csv has no column 'y'"):
        load_csv(train_path, target="y", device_column="dev", max_categories=8,
                 test_data=no_target)


@pytest.mark.parametrize("test_text, match", [
    ("x,y\n1,c\n2,d\n", "has no usable rows: 2 of 2 rows with a target left out: a class"),
    ("x,y\n1,\n2,NA\n", "has no usable rows: 2 of 2 rows left out: no finite value"),
    ("x,y\n", "no data rows"),
])
def test_a_test_file_without_usable_rows_is_refused(tmp_path, test_text, match):
    # Prepare
    train_path = write(tmp_path, "x,y\n" + "\n".join(f"{i},{'ab'[i % 2]}" for i in range(10)),
                       "train.csv")
    test_path = write(tmp_path, test_text, "test.csv")

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        load_csv(train_path, target="y", test_data=test_path)


def test_a_test_fraction_beside_a_test_file_is_refused_and_every_row_trains(tmp_path):
    # Prepare
    train_path = write(tmp_path, "x,y\n" + "\n".join(f"{i},{i}" for i in range(40)), "train.csv")
    test_path = write(tmp_path, "x,y\n1,1\n", "test.csv")

    # Execute
    train, (x_test, _) = load_csv(train_path, target="y", seed=9, test_data=test_path)

    # Assert
    assert train.X.shape[0] == 40 and x_test.shape == (1, 1)
    for fraction in (0.0, 0.3):
        with pytest.raises(ValueError, match="give test_fraction or test_data, not both"):
            load_csv(train_path, target="y", test_fraction=fraction, test_data=test_path)
    with pytest.raises(ValueError, match="test_data must be a path"):
        load_csv(train_path, target="y", test_data=3)


def test_a_gateway_keeping_its_devices_does_not_read_the_test_file(tmp_path):
    # Prepare: MPI gateways ask for no test set; the test file would be refused if read
    train_path = write(tmp_path, "d,x,y\n" + "\n".join(f"{i % 4},{i},{i}" for i in range(40)),
                       "train.csv")
    test_path = write(tmp_path, "y\n1\n", "test.csv")

    # Execute
    every, _ = load_csv(train_path, target="y", device_column="d", test_set=False,
                        test_data=test_path)
    mine, test = load_csv(train_path, target="y", device_column="d", keep=lambda n: range(1, 3),
                          test_set=False, test_data=test_path)

    # Assert: the kept devices' rows, of every row of the file, and no test set
    assert test is None and every.X.shape[0] == 40 and list(mine.device_ids) == [1, 2]
    assert_same_bits(mine.X, every.subset(np.arange(1, 3)).X)
    with pytest.raises(ValueError, match="has no column 'x'"):
        load_csv(train_path, target="y", device_column="d", test_data=test_path)
