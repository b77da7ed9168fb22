"""privcity.sim.risk.csv_records_risk: unicity and the linkage attack on a CSV file's own rows
(known answers, a brute-force count, the devices' treatments, hostile names and values, missing
cells, and the real tables shipped with river and vega_datasets)."""
from __future__ import annotations

import csv
import os
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privcity.data import load_csv
from privcity.sim.risk import csv_records_risk

river = pytest.importorskip("river")
vega_datasets = pytest.importorskip("vega_datasets")
# River's chick weights (Crowder and Hand 1990): 50 chicks (the devices), weighed up to 12 times
# each, on one of 4 diets. Vega's LA riots table: the 63 people who died in the 1992 riots.
CHICKS = os.path.join(os.path.dirname(river.__file__), "datasets", "chick-weights.csv")
RIOTS = vega_datasets.local_data.la_riots.filepath
MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}


def write(tmp_path, rows: list[list[object]], name: str = "data.csv") -> str:
    path = tmp_path / name
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return str(path)


def brute_force(path: str, qi: list[str], device: str | None, target: str) -> dict:
    """Unicity by counting equal rows one by one (the csv module alone): a cell is a number when
    the whole column parses, else its stripped text; a missing cell is a value of its own."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.DictReader(fh) if r[target].strip().lower() not in MISSING]

    def number(v: str) -> bool:
        try:
            float(v)
            return True
        except ValueError:
            return False

    numeric = {c: all(number(r[c]) for r in rows if r[c].strip().lower() not in MISSING)
               for c in qi}
    keys = [tuple(None if r[c].strip().lower() in MISSING else
                  float(r[c]) if numeric[c] else r[c].strip() for c in qi) for r in rows]
    count = Counter(keys)
    out = {"records": sum(count[k] == 1 for k in keys) / len(keys), "devices": None}
    if device is not None:
        owners: dict[tuple, set] = {}
        for k, r in zip(keys, rows):
            owners.setdefault(k, set()).add(r[device])
        alone = {r[device] for k, r in zip(keys, rows) if owners[k] == {r[device]}}
        out["devices"] = len(alone) / len({r[device] for r in rows})
    return out


# --- known answers --------------------------------------------------------------------------------

@pytest.mark.parametrize("device_column", [None, "sensor"])
def test_records_unique_on_their_quasi_identifiers_are_all_reidentified(tmp_path, device_column):
    # Prepare: 40 rows of 20 sensors, every (district, age) pair different
    rows = [["sensor", "district", "age", "y"]] + [
        [f"s{i // 2}", f"D{i % 5}", 20 + i, i % 2] for i in range(40)]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["district", "age"], device_column=device_column,
                         target="y", seed=0)

    # Assert
    assert r["unicity"]["raw"]["records"] == 1.0
    assert r["unicity"]["raw"]["devices"] == (None if device_column is None else 1.0)
    assert r["linkage"]["raw"] == {"reidentified": 1.0, "ambiguous": 0.0, "not_found": 0.0,
                                   "guess": 1.0}
    assert r["devices"] == (40 if device_column is None else 20)
    assert r["computed_on"] == "the 40 rows of data.csv (columns district, age)"


@pytest.mark.parametrize("device_column", [None, "sensor"])
def test_constant_quasi_identifiers_identify_nobody(tmp_path, device_column):
    # Prepare
    rows = [["sensor", "district", "age", "y"]] + [[f"s{i // 4}", "D1", 35, i % 2]
                                                    for i in range(40)]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["district", "age"], device_column=device_column,
                         target="y", seed=0)

    # Assert: everyone is a candidate for everyone
    assert r["unicity"]["raw"]["records"] == 0.0
    assert r["unicity"]["raw"]["devices"] == (None if device_column is None else 0.0)
    link = r["linkage"]["raw"]
    assert link["reidentified"] == 0.0 and link["ambiguous"] == 1.0
    assert link["guess"] == pytest.approx(1 / r["devices"])


def test_a_device_is_unique_when_one_of_its_records_is_its_own(tmp_path):
    # Prepare: a and b share (30, 941); only a also shows (31, 941); c shares everything with d
    rows = [["id", "age", "zip", "y"], ["a", 30, 941, 1], ["a", 31, 941, 0], ["b", 30, 941, 1],
            ["c", 40, 950, 0], ["d", 40, 950, 1]]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["age", "zip"], device_column="id", target="y",
                         seed=0)

    # Assert
    assert r["unicity"]["raw"] == {"records": 0.2, "devices": 0.25}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["x", "y", "NA", "", "z "]),
                          st.integers(0, 3)), min_size=1, max_size=60),
       st.booleans())
def test_unicity_equals_a_brute_force_count(tmp_path_factory, table, with_devices):
    # Prepare: small alphabets, so that rows collide; missing cells ("NA", "") among them
    path = write(tmp_path_factory.mktemp("bf"),
                 [["dev", "a", "b", "y"]] + [[f"d{d}", a, b, 1] for a, b, d in table])
    device = "dev" if with_devices else None

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["a", "b"], device_column=device, target="y",
                         seed=1)

    # Assert
    expected = brute_force(path, ["a", "b"], device, "y")
    assert r["unicity"]["raw"]["records"] == pytest.approx(expected["records"])
    if with_devices:
        assert r["unicity"]["raw"]["devices"] == pytest.approx(expected["devices"])
    else:  # each record its own individual: re-identified exactly when unique
        assert r["linkage"]["raw"]["reidentified"] == pytest.approx(expected["records"])


# --- the devices' treatment -----------------------------------------------------------------------

@pytest.mark.parametrize("ages, unicity, reidentified, guess", [
    ([40] * 8, 0.0, 0.0, 0.5),                  # 4 groups of 2 districts: pairs of equals
    ([40, 50] * 4, 1.0, 1.0, 1.0),              # the same groups, but age tells the pairs apart
])
def test_generalising_a_quasi_identifier_lowers_what_the_others_do_not_hold_up(
        tmp_path, ages, unicity, reidentified, guess):
    # Prepare: 8 districts, one person in each
    rows = [["district", "age", "y"]] + [[f"D{i}", a, i % 2] for i, a in enumerate(ages)]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["district", "age"], device_column=None,
                         target="y", seed=0, treatment={"district": "generalize"})

    # Assert
    assert r["released_equals_raw"] is False
    assert r["treatment"] == {"district": "generalize", "age": "keep"}
    assert r["unicity"]["raw"]["records"] == 1.0 and r["linkage"]["raw"]["reidentified"] == 1.0
    assert r["unicity"]["released"]["records"] == unicity
    assert r["linkage"]["released"]["reidentified"] == reidentified
    assert r["linkage"]["released"]["guess"] == pytest.approx(guess)


def test_dropping_or_flagging_sensitive_leaves_the_other_columns_to_identify(tmp_path):
    # Prepare: district identifies everyone; sex splits them in two
    rows = [["district", "sex", "y"]] + [[f"D{i}", "FM"[i % 2], i % 2] for i in range(10)]
    path = write(tmp_path, rows)

    # Execute
    dropped = csv_records_risk(path, quasi_identifiers=["district", "sex"], device_column=None,
                               target="y", seed=0, treatment={"district": "drop"})
    flagged = csv_records_risk(path, quasi_identifiers=["district", "sex"], device_column=None,
                               target="y", seed=0, sensitivity={"district": "sensitive"})

    # Assert: a sensitive text column is dropped by default, as preprocess does
    for r in (dropped, flagged):
        assert r["treatment"]["district"] == "drop"
        assert r["unicity"]["raw"]["records"] == 1.0
        assert r["unicity"]["released"]["records"] == 0.0
        assert r["linkage"]["released"]["reidentified"] == 0.0
        assert r["linkage"]["released"]["guess"] == pytest.approx(1 / 5)


def test_pseudonymised_codes_are_undone_by_their_frequencies(tmp_path):
    # Prepare: districts of different sizes (1, 2, 3, 4 people), ages unique within them
    rows = [["district", "age", "y"]]
    for d in range(4):
        rows += [[f"D{d}", 20 + k, k % 2] for k in range(d + 1)]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["district", "age"], device_column=None,
                         target="y", seed=3, treatment={"district": "pseudonymize"})

    # Assert: the relabelling hides nothing the counts tell
    assert r["released_equals_raw"] is False
    assert r["linkage"]["released"] == r["linkage"]["raw"]
    assert r["linkage"]["raw"]["reidentified"] == 1.0


def test_released_equals_raw_when_no_treatment_changes_the_columns(tmp_path):
    # Prepare: 3 districts, fewer than generalize's 4 groups
    rows = [["district", "age", "y"]] + [[f"D{i % 3}", 20 + i, i % 2] for i in range(9)]
    path = write(tmp_path, rows)

    # Execute
    runs = [csv_records_risk(path, quasi_identifiers=["district", "age"], device_column=None,
                             target="y", seed=0, **kw)
            for kw in ({}, {"field_epsilon": 1.0}, {"treatment": {"district": "generalize"}})]

    # Assert
    for r in runs:
        assert r["released_equals_raw"] is True
        assert r["linkage"]["released"] == r["linkage"]["raw"]
        assert r["unicity"]["released"] == r["unicity"]["raw"]


def test_a_numeric_column_cannot_be_generalised_without_bounds(tmp_path):
    # Prepare
    path = write(tmp_path, [["age", "y"], [30, 0], [40, 1]])

    # Execute / Assert
    with pytest.raises(ValueError, match="'age'.*lower and upper"):
        csv_records_risk(path, quasi_identifiers=["age"], device_column=None, target="y", seed=0,
                         treatment={"age": "generalize"})


# --- hostile names and values, missing cells ------------------------------------------------------

def test_hostile_column_names_and_values_are_plain_data(tmp_path):
    # Prepare: columns named like the function's own tables' ("device", "target"), quoted and
    # non-ASCII names; values that linkage_attack would read as patterns if passed as text
    names = ["device", "target", 'zip, "code"', "âge\u200b", "y"]
    zips = ["941**", "94110", "*", "1-5", "{a,b}", "[1, 2)"]
    rows = [names] + [[i, "t", z, "x", i % 2] for i, z in enumerate(zips)]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["device", "target", 'zip, "code"', "âge\u200b"],
                         device_column=None, target="y", seed=0,
                         treatment={"target": "generalize"})

    # Assert: every row is its own (no "*" matching everything)
    assert r["unicity"]["raw"]["records"] == 1.0
    assert r["linkage"]["raw"]["reidentified"] == 1.0
    assert r["linkage"]["released"]["reidentified"] == 1.0
    assert r["computed_on"] == ("the 6 rows of data.csv (columns device, target, "
                                "'zip, \"code\"', 'âge\\u200b')")


def test_a_missing_cell_is_a_value_of_its_own(tmp_path):
    # Prepare: rows 0 and 1 both lack an age (written two ways) in district D1
    rows = [["age", "district", "y"], ["NA", "D1", 0], ["?", "D1", 1], ["", "D2", 0],
            [35, "D1", 1], [35, "", 0], [36, "D1", 1]]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["age", "district"], device_column=None,
                         target="y", seed=0)

    # Assert
    assert r["missing"] == {"age": 3, "district": 1}
    assert r["unicity"]["raw"]["records"] == pytest.approx(4 / 6)
    assert r["linkage"]["raw"]["reidentified"] == pytest.approx(4 / 6)


def test_a_few_empty_rows_do_not_hide_everyone_else(tmp_path):
    # Prepare: 30 unique rows and 2 rows without any quasi-identifier
    rows = [["city", "state", "y"]] + [[f"c{i}", f"S{i % 3}", 1] for i in range(30)]
    rows += [["", "", 0], ["", "", 1]]
    path = write(tmp_path, rows)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["city", "state"], device_column=None,
                         target="y", seed=0)

    # Assert
    assert r["unicity"]["raw"]["records"] == pytest.approx(30 / 32)
    assert r["linkage"]["raw"]["reidentified"] == pytest.approx(30 / 32)


def test_rows_without_a_target_value_are_left_out_as_load_csv_leaves_them(tmp_path):
    # Prepare
    rows = [["zone", "reading", "y"]] + [[f"Z{i % 7}", i, "" if i % 5 == 0 else i % 2]
                                         for i in range(50)]
    path = write(tmp_path, rows)
    train, (_, y_test) = load_csv(path, target="y", devices=1)

    # Execute
    r = csv_records_risk(path, quasi_identifiers=["zone"], device_column=None, target="y", seed=0)

    # Assert
    assert r["rows"] == len(train.y) + len(y_test) == 40
    assert r["computed_on"] == "the 40 rows of data.csv with a value of 'y' (columns zone)"


# --- which columns, sampling, errors --------------------------------------------------------------

def test_schema_flags_give_the_quasi_identifiers_when_none_are_named(tmp_path):
    # Prepare
    path = write(tmp_path, [["zip", "x", "age", "y"], [941, 1, 30, 0], [942, 2, 30, 1]])

    # Execute
    flagged = csv_records_risk(path, quasi_identifiers=[], device_column=None, target="y",
                               seed=0, sensitivity={"age": "quasi", "zip": "quasi", "x": "public"})
    unflagged = csv_records_risk(path, quasi_identifiers=[], device_column=None, target="y",
                                 seed=0, sensitivity={"x": "sensitive"})
    bare = csv_records_risk(path, quasi_identifiers=[], device_column=None, target="y", seed=0)

    # Assert
    assert flagged["known"] == ["zip", "age"] and flagged["unicity"]["raw"]["records"] == 1.0
    assert unflagged is None and bare is None


def test_a_big_file_is_sampled_with_its_seed_and_says_so(tmp_path):
    # Prepare
    rows = [["meter", "district", "y"]] + [[f"m{i % 300}", f"D{i % 40}", i % 2]
                                           for i in range(3000)]
    path = write(tmp_path, rows)

    # Execute
    a = csv_records_risk(path, quasi_identifiers=["district"], device_column="meter", target="y",
                         seed=5, max_records=1000)
    b = csv_records_risk(path, quasi_identifiers=["district"], device_column="meter", target="y",
                         seed=5, max_records=1000)
    whole = csv_records_risk(path, quasi_identifiers=["district"], device_column="meter",
                             target="y", seed=5)

    # Assert
    assert a == b
    assert a["sampled"] is True and a["records"] == 1000 and a["rows"] == 3000
    assert a["computed_on"] == ("a seeded sample of 1,000 of the 3,000 rows of data.csv "
                                "(columns district)")
    assert whole["sampled"] is False and whole["records"] == 3000 and whole["devices"] == 300


@pytest.mark.parametrize("kwargs, message", [
    ({"quasi_identifiers": ["zip", "postcode"]},
     r"'postcode' is not a column of .*\['id', 'zip', 'age', 'y'\]"),
    ({"quasi_identifiers": ["zip", "y"]}, r"'y' is the target.*\['id', 'zip', 'age', 'y'\]"),
    ({"quasi_identifiers": ["id"], "device_column": "id"}, r"'id' is the device column"),
    ({"quasi_identifiers": ["zip", "zip"]}, r"'zip' is named twice"),
    ({"quasi_identifiers": "zip"}, r"quasi_identifiers must be a list"),
    ({"quasi_identifiers": [3]}, r"quasi_identifiers must be a list"),
    ({"quasi_identifiers": ["zip"], "device_column": "meter"}, r"device column 'meter' is not in"),
    ({"quasi_identifiers": ["zip"], "target": "label"}, r"target column 'label' is not in"),
    ({"quasi_identifiers": ["zip"], "treatment": {"ZIP": "drop"}}, r"treatment names column 'ZIP'"),
    ({"quasi_identifiers": [], "sensitivity": {"zip": "secret"}}, r"sensitivity of 'zip'"),
    ({"quasi_identifiers": ["zip"], "max_records": 0}, r"max_records"),
])
def test_bad_columns_and_arguments_are_refused_by_name(tmp_path, kwargs, message):
    # Prepare
    path = write(tmp_path, [["id", "zip", "age", "y"], ["a", 941, 30, 0], ["b", 942, 31, 1]])
    args = {"device_column": None, "target": "y", "seed": 0, **kwargs}

    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        csv_records_risk(path, **args)


def test_a_device_column_with_a_missing_id_is_refused(tmp_path):
    # Prepare
    path = write(tmp_path, [["id", "zip", "y"], ["a", 941, 0], ["", 942, 1]])

    # Execute / Assert
    with pytest.raises(ValueError, match="device column 'id' has missing values"):
        csv_records_risk(path, quasi_identifiers=["zip"], device_column="id", target="y", seed=0)


# --- real data ------------------------------------------------------------------------------------

def test_the_la_riots_victims_are_unique_on_age_gender_race_and_neighbourhood():
    # Prepare
    qi = ["age", "gender", "race", "neighborhood"]

    # Execute
    r = csv_records_risk(RIOTS, quasi_identifiers=qi, device_column=None, target="type", seed=0)
    fewer = csv_records_risk(RIOTS, quasi_identifiers=["gender", "race"], device_column=None,
                             target="type", seed=0)
    hidden = csv_records_risk(RIOTS, quasi_identifiers=qi, device_column=None, target="type",
                              seed=0, treatment={"neighborhood": "drop"})

    # Assert: 61 of the 63 stand alone (two share everything), as a plain count says
    assert r["unicity"]["raw"] == brute_force(RIOTS, qi, None, "type")
    assert r["unicity"]["raw"]["records"] == pytest.approx(61 / 63)
    assert r["linkage"]["raw"]["reidentified"] == pytest.approx(61 / 63)
    assert r["missing"] == {"age": 1, "gender": 0, "race": 0, "neighborhood": 0}
    assert r["computed_on"] == ("the 63 rows of la-riots.csv "
                                "(columns age, gender, race, neighborhood)")
    assert fewer["unicity"]["raw"]["records"] == pytest.approx(2 / 63)
    # Without the neighbourhood, those unique on age, gender and race alone
    alone = brute_force(RIOTS, ["age", "gender", "race"], None, "type")["records"]
    assert alone == pytest.approx(39 / 63)
    assert hidden["unicity"]["released"]["records"] == pytest.approx(alone)
    assert hidden["linkage"]["released"]["reidentified"] == pytest.approx(39 / 63)


def test_the_river_chicks_are_told_apart_by_their_diet_and_weight():
    # Prepare: the chick is the device; time is what a model would predict
    qi = ["diet", "weight"]

    # Execute
    r = csv_records_risk(CHICKS, quasi_identifiers=qi, device_column="chick", target="time",
                         seed=0)
    by_time = csv_records_risk(CHICKS, quasi_identifiers=["diet", "time"], device_column="chick",
                               target="weight", seed=0)

    # Assert
    assert r["unicity"]["raw"] == pytest.approx(brute_force(CHICKS, qi, "chick", "time"))
    assert r["rows"] == 578 and r["devices"] == 50
    assert r["unicity"]["raw"]["devices"] == pytest.approx(49 / 50)
    assert r["linkage"]["raw"]["reidentified"] > 0.9
    # Diet and weighing day: each is shared by every chick on that diet
    assert by_time["unicity"]["raw"] == {"records": 0.0, "devices": 0.0}
