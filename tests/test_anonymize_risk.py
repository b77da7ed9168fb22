"""privcity.anonymize.risk: unicity of GPS traces (against a brute-force count, falling with
coarser resolution) and the linkage attack (against a brute-force matcher, on synthetic people
and on the real LA riots table from vega_datasets, before and after generalisation)."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vega_datasets import local_data

from privcity.anonymize._unicity import _point_keys, _unicity_counts
from privcity.anonymize.risk import linkage_attack, unicity, unicity_curve
from privcity.data import make_gps_traces


@pytest.fixture(scope="module")
def traces() -> np.ndarray:
    return make_gps_traces(2000, 48, seed=1)


# --- unicity --------------------------------------------------------------------------------------

@pytest.mark.parametrize("crowded", [None, 0, 10**9], ids=["auto", "bitsets", "candidates"])
def test_unicity_counts_equal_a_brute_force_count(crowded):
    # Prepare
    small = make_gps_traces(300, 24, seed=3)
    pid, key = _point_keys(small, 1000.0, None, 3600, None)

    # Execute
    counts, chosen = _unicity_counts(pid, key, 4, None, 5, crowded=crowded)

    # Assert
    people = [set(key[pid == p].tolist()) for p in range(300)]
    expected = [sum(set(k for k in row if k >= 0) <= s for s in people) for row in chosen.tolist()]
    assert counts.tolist() == expected
    assert all(set(row[row >= 0].tolist()) <= people[p] for p, row in enumerate(chosen))
    assert counts.min() >= 1 and counts.max() > 1


def test_unicity_is_high_at_fine_resolution_with_four_points(traces):
    # Execute
    u = unicity(traces, 4, spatial_m=100, temporal_s=1800)

    # Assert
    assert u > 0.8


def test_unicity_falls_as_space_coarsens(traces):
    # Execute
    u = unicity_curve(traces, 4, [(100, 3600), (500, 3600), (2000, 3600), (10000, 3600)])

    # Assert
    assert (np.diff(u) < 0).all() and u[0] > 0.8 and u[-1] < 0.3


def test_unicity_falls_as_time_coarsens(traces):
    # Execute
    u = unicity_curve(traces, 4, [(2000, 60), (2000, 300), (2000, 900), (2000, 1800),
                                  (2000, 3600), (2000, 86400)])

    # Assert: down to the sampling interval (30 min) every step hides people; beyond it the
    # trace (one day) collapses to a few distinct points, 4 of them cover most of it, and
    # unicity stays on a plateau -- never back up to the fine-resolution level
    assert (np.diff(u[:4]) < 0).all() and u[0] > 0.95 and u[3] < 0.7
    assert (u[4:] < u[3] + 0.05).all()


def test_unicity_with_geohash_cells_and_more_points(traces):
    # Execute
    by_precision = unicity_curve(traces, 4, [(7, 3600), (6, 3600), (5, 3600)], spatial="geohash")
    by_points = [unicity(traces, p, spatial_m=1000, temporal_s=3600) for p in (1, 2, 4)]

    # Assert
    assert (np.diff(by_precision) < 0).all()
    assert by_points[0] < by_points[1] < by_points[2]


def test_unicity_at_exact_resolution_and_sampling(traces):
    # Execute
    exact = unicity(traces, 4)
    a = unicity(traces, 2, spatial_m=2000, temporal_s=7200, trials=500, seed=9)
    b = unicity(traces, 2, spatial_m=2000, temporal_s=7200, trials=500, seed=9)

    # Assert
    assert exact == 1.0
    assert a == b and (a * 500) == round(a * 500)


def test_unicity_reads_a_dataframe_like_the_structured_array(traces):
    # Prepare
    df = pd.DataFrame({name: traces[name] for name in traces.dtype.names})

    # Execute
    u_df = unicity(df, 3, spatial_m=700, temporal_s=3600)

    # Assert
    assert u_df == unicity(traces, 3, spatial_m=700, temporal_s=3600)


def test_unicity_of_ten_thousand_people_takes_seconds():
    # Prepare
    big = make_gps_traces(10_000, 48, seed=0)

    # Execute
    t0 = time.perf_counter()
    u = unicity(big, 4, spatial_m=500, temporal_s=3600)
    took = time.perf_counter() - t0

    # Assert
    assert 0.5 < u < 1.0 and took < 5.0


@pytest.mark.parametrize("kwargs, match", [
    ({"points": 0}, "points must be an int >= 1"),
    ({"spatial_m": 100, "geohash_precision": 6}, "not both"),
    ({"temporal_s": 0}, "temporal_s"),
    ({"spatial_m": -1}, "cell_m"),
    ({"geohash_precision": 13}, "precision"),
    ({"trials": 0}, "trials"),
])
def test_unicity_validates_arguments(traces, kwargs, match):
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        unicity(traces, **kwargs)


def test_unicity_refuses_bad_traces(traces):
    # Prepare
    nan_lat = traces.copy()
    nan_lat["lat"][5] = np.nan

    # Execute / Assert
    with pytest.raises(ValueError, match="lat contains NaN"):
        unicity(nan_lat, spatial_m=100)
    with pytest.raises(ValueError, match="no column 'person'"):
        unicity({"timestamp": traces["timestamp"]}, spatial_m=100)
    with pytest.raises(ValueError, match="same length"):
        unicity({"person": traces["person"][:-1], "timestamp": traces["timestamp"],
                 "lat": traces["lat"], "lon": traces["lon"]}, spatial_m=100)
    with pytest.raises(ValueError, match="resolutions"):
        unicity_curve(traces, 4, [100])


# --- linkage attack: against a brute-force matcher ------------------------------------------------

def ref_compatible(released, x) -> bool:
    """Independent reading of the documented forms."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return True
    if released is None or released == "*":
        return True
    if isinstance(released, tuple):
        return released[0] <= x <= released[1]
    if isinstance(released, frozenset):
        return x in released
    if isinstance(released, str) and released[0].isdigit() and "-" in released:
        lo, hi = released.split("-")
        return float(lo) <= x <= float(hi)
    if isinstance(released, str) and "*" in released:
        return len(released) == len(str(x)) and all(c in ("*", d) for c, d in zip(released, str(x)))
    return released == x


def synthetic_people(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"name": [f"p{i}" for i in range(n)], "age": rng.integers(18, 80, n),
                         "zip": [f"{z}" for z in rng.integers(10100, 10160, n)],
                         "sex": rng.choice(["F", "M"], n)})


def decade(a: int) -> str:
    return f"{a // 10 * 10}-{a // 10 * 10 + 9}"


def test_linkage_attack_counts_equal_a_brute_force_match():
    # Prepare: every released cell in one of the accepted forms, at random
    people = synthetic_people(200, seed=2)
    rng = np.random.default_rng(3)
    ages, zips, sexes = [], [], []
    for a, z, s in zip(people.age, people.zip, people.sex):
        ages.append([int(a), decade(a), (int(a) - 3, int(a) + 3), None][rng.integers(4)])
        zips.append([z, z[:3] + "**", z[:4] + "*", "*"][rng.integers(4)])
        sexes.append([s, frozenset({"F", "M"})][rng.integers(2)])
    released = pd.DataFrame({"name": people.name, "age": pd.Series(ages, dtype=object),
                             "zip": zips, "sex": pd.Series(sexes, dtype=object)})
    aux = people.copy().astype({"age": object})
    aux.loc[::17, "age"] = None                       # unknown to the attacker

    # Execute
    result = linkage_attack(released, aux, ["age", "zip", "sex"], id_column="name")

    # Assert
    rel_rows = list(zip(ages, zips, sexes))
    aux_rows = list(zip(aux.age.tolist(), aux.zip.tolist(), aux.sex.tolist()))
    cand = [[j for j, r in enumerate(rel_rows) if all(map(ref_compatible, r, a))] for a in aux_rows]
    assert result["candidates"].tolist() == [len(c) for c in cand]
    re_id = sum(len(c) == 1 and c[0] == i for i, c in enumerate(cand))
    assert result["counts"]["reidentified"] == re_id
    assert result["counts"]["ambiguous"] == sum(len(c) > 1 for c in cand)
    assert result["guess"] == pytest.approx(np.mean([(i in c) / max(len(c), 1)
                                                     for i, c in enumerate(cand)]))


def test_generalisation_cuts_reidentification_of_synthetic_people():
    # Prepare
    people = synthetic_people(3000, seed=4)
    coarse = people.assign(age=[decade(a) for a in people.age], zip=[z[:3] + "**" for z in people.zip])

    # Execute
    before = linkage_attack(people, people, ["age", "zip", "sex"], id_column="name")
    after = linkage_attack(coarse, people, ["age", "zip", "sex"], id_column="name")

    # Assert
    assert before["reidentified"] > 0.5 and after["reidentified"] < 0.05
    assert after["guess"] < before["guess"] / 5
    assert before["wrong"] == after["wrong"] == 0 and after["not_found"] == 0
    assert sum(after["counts"].values()) == after["n_auxiliary"] == 3000


def test_ranges_as_two_columns_strings_tuples_and_brackets_agree():
    # Prepare
    people = synthetic_people(500, seed=5)
    lo = people.age // 10 * 10
    forms = {
        "string": people.assign(age=[decade(a) for a in people.age]),
        "tuple": people.assign(age=pd.Series([(a, a + 9) for a in lo], dtype=object)),
        "bracket": people.assign(age=[f"[{a}, {a + 10})" for a in lo]),
    }
    two_cols = people.assign(age_lo=lo, age_hi=lo + 9)

    # Execute
    results = {k: linkage_attack(v, people, ["age", "sex"], id_column="name") for k, v in forms.items()}
    split = linkage_attack(two_cols, people, {"age": ("age_lo", "age_hi"), "sex": "sex"}, id_column="name")

    # Assert
    for r in results.values():
        assert np.array_equal(r["candidates"], split["candidates"])
    assert (split["candidates"] > 1).all()


def test_linkage_attack_reads_structured_arrays():
    # Prepare
    people = synthetic_people(200, seed=6)
    arr = np.array(list(zip(people.name, people.age, people.zip, people.sex)),
                   dtype=[("name", "U8"), ("age", "i8"), ("zip", "U5"), ("sex", "U1")])

    # Execute
    from_array = linkage_attack(arr, arr, ["age", "zip", "sex"], id_column="name")

    # Assert
    from_frame = linkage_attack(people, people, ["age", "zip", "sex"], id_column="name")
    assert np.array_equal(from_array["candidates"], from_frame["candidates"])
    assert from_array["reidentified"] == from_frame["reidentified"] > 0.8


def test_wrong_and_not_found_outcomes():
    # Prepare: the auxiliary knows someone who is not in the release but looks like one who is
    released = {"id": np.array(["a", "b"]), "age": np.array([30, 40]), "zip": np.array(["10115", "10117"])}
    aux = {"id": np.array(["a", "x", "y"]), "age": np.array([30, 40, 50]),
           "zip": np.array(["10115", "10117", "10115"])}

    # Execute
    r = linkage_attack(released, aux, ["age", "zip"], id_column="id")

    # Assert
    assert r["counts"] == {"reidentified": 1, "wrong": 1, "ambiguous": 0, "not_found": 1}
    assert r["guess"] == pytest.approx(1 / 3)


def test_sets_in_braces_and_hierarchy_nodes_match_what_lies_below():
    # Prepare: Mondrian-style labels ("[lo, hi]", "{a|b}", a hierarchy node)
    aux = {"id": np.arange(6), "age": np.array([20, 25, 31, 38, 44, 47]),
           "race": np.array(["Latino", "Black", "Asian", "White", "Latino", "White"])}
    tree = {"Latino": "Non-white", "Black": "Non-white", "Asian": "Non-white", "White": "*",
            "Non-white": "*"}
    released = {"id": aux["id"],
                "age": np.array(["[20, 25]", "[20, 25]", "[31, 38]", "[31, 38]", "[44, 47]", "[44, 47]"]),
                "race": np.array(["Non-white", "Non-white", "{Asian|White}", "{Asian|White}", "Latino",
                                  "White"])}

    # Execute
    with_tree = linkage_attack(released, aux, ["age", "race"], id_column="id", hierarchies={"race": tree})
    without = linkage_attack(released, aux, ["age", "race"], id_column="id")

    # Assert
    assert with_tree["candidates"].tolist() == [2, 2, 2, 2, 1, 1]
    assert with_tree["counts"] == {"reidentified": 2, "wrong": 0, "ambiguous": 4, "not_found": 0}
    assert without["candidates"].tolist() == [0, 0, 2, 2, 1, 1]   # "Non-white" is then a plain value
    with pytest.raises(ValueError, match="cycle"):
        linkage_attack(released, aux, ["race"], id_column="id", hierarchies={"race": {"a": "b", "b": "a"}})


# --- linkage attack: exact identities and values --------------------------------------------------

BIG = 2**53     # the first integer after which float64 skips integers


def test_ids_beyond_float64_precision_are_scored_exactly():
    # Prepare: two people whose int64 ids differ only past float64's 53 bits of precision
    released = {"id": np.array([BIG, BIG + 1], np.int64), "age": np.array([30, 40])}
    swapped = {"id": np.array([BIG + 1, BIG], np.int64), "age": np.array([30, 40])}
    unsigned = {"id": np.array([BIG, BIG + 1], np.uint64), "age": np.array([30, 40])}
    # float64 cannot hold BIG + 1: this attacker holds the id BIG for both people
    as_float = {"id": np.array([BIG, BIG + 1], np.float64), "age": np.array([30, 40])}
    texts = {"id": np.array(["02139", "2139"]), "age": np.array([30, 40])}
    texts_swapped = {"id": np.array(["2139", "02139"]), "age": np.array([30, 40])}

    # Execute
    same = linkage_attack(released, released, ["age"], id_column="id")
    crossed = linkage_attack(released, swapped, ["age"], id_column="id")
    mixed_sign = linkage_attack(released, unsigned, ["age"], id_column="id")
    rounded = linkage_attack(released, as_float, ["age"], id_column="id")
    by_text = linkage_attack(texts, texts_swapped, ["age"], id_column="id")
    kinds = linkage_attack({"id": np.array([2139, 2140]), "age": np.array([30, 40])},
                           {"id": np.array(["2139", "2140"]), "age": np.array([30, 40])},
                           ["age"], id_column="id")

    # Assert
    assert same["counts"] == {"reidentified": 2, "wrong": 0, "ambiguous": 0, "not_found": 0}
    assert crossed["counts"] == {"reidentified": 0, "wrong": 2, "ambiguous": 0, "not_found": 0}
    assert crossed["guess"] == 0.0
    assert mixed_sign["counts"]["reidentified"] == 2
    assert rounded["counts"] == {"reidentified": 1, "wrong": 1, "ambiguous": 0, "not_found": 0}
    assert by_text["counts"]["wrong"] == 2
    assert kinds["counts"]["wrong"] == 2 and kinds["guess"] == 0.0


def test_two_strings_compare_as_text_a_string_and_a_number_by_value():
    # Prepare: ZIP codes as text on both sides; ages published as text, known as numbers
    released = {"id": np.array(["a", "b"]), "zip": np.array(["02139", "2139"]),
                "age": np.array(["35", "35"])}
    aux = {"id": np.array(["a", "b", "c"]), "zip": np.array(["02139", "2139", 2139], object),
           "age": np.array([35, 35, 35])}
    ranged = dict(released, zip=np.array(["02139", "[2000, 2200]"]))

    # Execute
    exact = linkage_attack(released, aux, ["zip", "age"], id_column="id")
    through_range = linkage_attack(ranged, aux, ["zip", "age"], id_column="id")

    # Assert: "02139" and "2139" are two ZIP codes; the number 2139 equals both strings
    assert exact["candidates"].tolist() == [1, 1, 2]
    assert exact["counts"] == {"reidentified": 2, "wrong": 0, "ambiguous": 1, "not_found": 0}
    # a range matches a string that is a number by its value ("02139" is in [2000, 2200] too)
    assert through_range["candidates"].tolist() == [2, 1, 2]


def test_large_integer_quasi_identifiers_compare_exactly():
    # Prepare: cell ids past 2**53, released exactly and as closed ranges in two columns
    cell = np.array([BIG, BIG + 1, BIG + 2], np.int64)
    released = {"id": np.arange(3), "cell": cell, "lo": cell, "hi": cell,
                "text": np.array([str(c) for c in cell.tolist()])}
    aux = {"id": np.arange(3), "cell": cell[::-1].copy()}

    # Execute
    exact = linkage_attack(released, aux, ["cell"], id_column="id")
    ranges = linkage_attack(released, aux, {"cell": ("lo", "hi")}, id_column="id")
    as_text = linkage_attack(released, aux, {"cell": "text"}, id_column="id")

    # Assert: each auxiliary row meets one record, BIG + 1 (middle) its own, the others swapped
    for r in (exact, ranges, as_text):
        assert r["candidates"].tolist() == [1, 1, 1]
        assert r["counts"] == {"reidentified": 1, "wrong": 2, "ambiguous": 0, "not_found": 0}


POOL = ["02139", "2139", 2139, 2139.0, "35", "035", "35.0", " 35", 35, 35.5, "35.5", "3.55e1",
        BIG, BIG + 1, str(BIG), str(BIG + 1), float(BIG), "x", "{35|x}", "{02139, 7}"]


def ref_equal(released, x) -> bool:
    """The documented equality, read independently: two strings as text (a set "{a|b}" by its
    members); otherwise both sides as Python numbers."""
    if isinstance(released, str) and released.startswith("{"):
        members = released.strip("{}").replace("|", ",").split(",")
        return any(ref_equal(m.strip(), x) for m in members)
    if isinstance(released, str) and isinstance(x, str):
        return released == x

    def number(v):
        if not isinstance(v, str):
            return v
        for parse in (int, float):
            try:
                return parse(v)
            except ValueError:
                continue  # not this kind of number: try the next parser
        return None

    a, b = number(released), number(x)
    return a is not None and b is not None and a == b


def column(values: list, plain: bool) -> np.ndarray:
    """Object column, or the numpy dtype (int64, float64, str) when every value has one type."""
    kinds = {type(v) for v in values}
    if plain and len(kinds) == 1 and kinds <= {int, float, str}:
        return np.array(values)
    out = np.empty(len(values), object)
    out[:] = values
    return out


@settings(max_examples=200, deadline=None)
@given(released=st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from(POOL)), min_size=1,
                         max_size=8),
       aux=st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from(POOL), st.integers(0, 9)),
                    min_size=1, max_size=8),
       plain=st.booleans())
def test_mixed_values_match_like_a_brute_force_reading_of_the_rules(released, aux, plain):
    # Prepare
    rel_table = {"id": np.arange(len(released)),
                 "q1": column([r[0] for r in released], plain),
                 "q2": column([r[1] for r in released], plain)}
    aux_table = {"id": np.array([a[2] for a in aux]),
                 "q1": column([a[0] for a in aux], plain), "q2": column([a[1] for a in aux], plain)}

    # Execute
    result = linkage_attack(rel_table, aux_table, ["q1", "q2"], id_column="id")

    # Assert
    cand = [[j for j, r in enumerate(released) if ref_equal(r[0], a[0]) and ref_equal(r[1], a[1])]
            for a in aux]
    assert result["candidates"].tolist() == [len(c) for c in cand]
    assert result["counts"]["reidentified"] == sum(c == [a[2]] for c, a in zip(cand, aux))
    assert result["counts"]["wrong"] == sum(len(c) == 1 and c != [a[2]] for c, a in zip(cand, aux))


# --- linkage attack: the LA riots victims (real table) --------------------------------------------

def test_generalisation_cuts_reidentification_in_the_la_riots_table():
    # Prepare: age, gender, race and neighbourhood are public in news reports of each death
    victims = local_data.la_riots().reset_index().rename(columns={"index": "victim"})
    qis = ["age", "gender", "race", "neighborhood"]
    coarse = victims.assign(
        age=[None if math.isnan(a) else decade(int(a)) for a in victims.age],
        neighborhood="*")

    # Execute
    before = linkage_attack(victims, victims, qis, id_column="victim")
    after = linkage_attack(coarse, victims, qis, id_column="victim")

    # Assert
    assert before["n_auxiliary"] == len(victims) == 63
    assert before["reidentified"] > 0.9
    assert after["reidentified"] < 0.3 and after["reidentified"] < before["reidentified"] / 3
    assert after["guess"] < before["guess"] and after["wrong"] == 0 and after["not_found"] == 0


# --- bad input ------------------------------------------------------------------------------------

def test_linkage_attack_validates_its_arguments():
    # Prepare
    people = synthetic_people(10, seed=7)
    short = people.iloc[:5]

    # Execute / Assert
    with pytest.raises(ValueError, match="released has no column 'name2'"):
        linkage_attack(people, people, ["age"], id_column="name2")
    with pytest.raises(ValueError, match="auxiliary has no column 'height'"):
        linkage_attack(people, people, ["height"], id_column="name")
    with pytest.raises(ValueError, match="at least one column"):
        linkage_attack(people, people, [], id_column="name")
    with pytest.raises(ValueError, match="not one str"):
        linkage_attack(people, people, "age", id_column="name")
    with pytest.raises(ValueError, match="column length differs"):
        linkage_attack(people, {"name": people.name, "age": short.age}, ["age"], id_column="name")
    with pytest.raises(ValueError, match="pair of columns"):
        linkage_attack(people, people, {"age": ("a", "b", "c")}, id_column="name")



def test_linkage_against_an_empty_release_finds_nobody():
    # Prepare
    aux = np.zeros(3, dtype=[("id", "i8"), ("zip", "i8")])
    aux["id"], aux["zip"] = [1, 2, 3], [10, 20, 30]
    released = aux[:0]

    # Execute
    r = linkage_attack(released, aux, ["zip"], id_column="id")

    # Assert
    assert r["not_found"] == 1.0 and r["reidentified"] == 0.0 and r["guess"] == 0.0
