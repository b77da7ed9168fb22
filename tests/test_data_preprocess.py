"""privcity.data schemas (validation naming the field, sensitivity queries) and on-device
preprocessing by sensitivity flag (Laplace from SecureRNG, keep, drop)."""
from __future__ import annotations

import numpy as np
import pytest

from privcity.data import Encoder, Field, Schema, default_treatment, preprocess, smart_meter_schema
from privcity.noise import SecureRNG


def city_schema() -> Schema:
    return Schema((
        Field("hour", "numeric", "public", "h", 0, 24, period=24),
        Field("zone", "categorical", "quasi", "", 0, 3),
        Field("age", "numeric", "quasi", "years", 0, 100),
        Field("income", "numeric", "sensitive", "kEUR", 0.0, 10.0),
        Field("religion", "categorical", "sensitive", "", 0, 4),
        Field("consumption", "numeric", "public", "kWh"),
    ), target="consumption")


# --- schema ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="text"), "field 'pm25': kind"),
    (dict(sensitivity="secret"), "field 'pm25': sensitivity"),
    (dict(lower=5.0, upper=1.0), "field 'pm25': lower must be < upper"),
    (dict(lower=float("nan")), "field 'pm25': lower"),
    (dict(kind="categorical"), "field 'pm25': a categorical field needs integer bounds"),
    (dict(period=0), "field 'pm25': period"),
])
def test_field_validation_names_the_field(kwargs, match):
    # Prepare
    args = dict(name="pm25", kind="numeric", sensitivity="public") | kwargs

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        Field(**args)


def test_schema_queries():
    # Execute
    s = city_schema()

    # Assert
    assert s.features == ["hour", "zone", "age", "income", "religion"]
    assert s.sensitive() == ["income", "religion"]
    assert s.quasi_identifiers() == ["zone", "age"]
    assert s.field("income").unit == "kEUR" and s.field("zone").n_categories == 4
    with pytest.raises(KeyError, match="nope"):
        s.field("nope")
    assert s.with_sensitivity({"age": "sensitive"}).sensitive() == ["age", "income", "religion"]


def test_schema_rejects_duplicates_and_unknown_target():
    # Prepare
    a = Field("a", "numeric", "public")

    # Execute / Assert
    with pytest.raises(ValueError, match="duplicate"):
        Schema((a, a), target="a")
    with pytest.raises(ValueError, match="'b' is not a field"):
        Schema((a, Field("c", "numeric", "public")), target="b")
    with pytest.raises(Exception):
        city_schema().fields[0].name = "x"   # frozen


def test_encoder_layout():
    # Prepare
    s = city_schema()
    raw = np.array([[6.0, 2, 40, 3.0, 1], [18.0, 7, 60, 5.0, 4]])   # zone 7: unseen code

    # Execute
    X = Encoder(s, {"age": 50.0, "income": 4.0}, {"age": 10.0, "income": 2.0}).encode(raw)

    # Assert
    np.testing.assert_allclose(X[0], [1, 0, 0, 0, 1, 0, -1, -0.5, 0, 1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(X[1], [-1, 0, 0, 0, 0, 0, 1, 0.5, 0, 0, 0, 0, 1], atol=1e-6)


# --- preprocess -----------------------------------------------------------------------------------

def records(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)                      # test data, not noise
    return np.column_stack([rng.integers(0, 24, n), rng.integers(0, 4, n), rng.uniform(18, 90, n),
                            rng.uniform(0, 10, n), rng.integers(0, 5, n)]).astype(np.float64)


def test_default_treatment_by_flag():
    # Execute
    t = default_treatment(city_schema())

    # Assert
    assert t == {"hour": "keep", "zone": "keep", "age": "keep", "income": "laplace", "religion": "drop"}


def test_sensitive_field_noised_unbiased_public_untouched_drop_zeroed():
    # Prepare
    X = records(40_000)

    # Execute
    out = preprocess(X, city_schema(), epsilon=2.0, rng=SecureRNG(1, stream=0))

    # Assert
    assert out.shape == X.shape and out.dtype == np.float64
    assert np.array_equal(out[:, :3], X[:, :3])               # public and quasi kept
    assert np.all(out[:, 3] != X[:, 3])                       # income noised
    noise = out[:, 3] - X[:, 3]
    assert abs(noise.mean()) < 0.1                            # Laplace(scale 5): sd of the mean 0.035
    assert np.std(noise) == pytest.approx(np.sqrt(2) * 5.0, rel=0.05)
    assert np.all(out[:, 4] == 0)                             # sensitive categorical dropped


def test_values_are_clipped_to_bounds_before_noise():
    # Prepare
    X = records(20_000)
    X[:, 3] = 250.0                                           # far above income's upper bound 10

    # Execute
    out = preprocess(X, city_schema(), epsilon=4.0, rng=SecureRNG(2, stream=0))

    # Assert
    assert abs(out[:, 3].mean() - 10.0) < 0.15


def test_epsilon_is_split_over_noised_fields_and_treatment_overrides():
    # Prepare
    X = records(30_000)
    schema = city_schema()

    # Execute: age noised too, so each of 2 fields gets epsilon / 2
    out = preprocess(X, schema, epsilon=2.0, treatment={"age": "laplace", "religion": "keep", "hour": "drop"},
                     rng=SecureRNG(3, stream=0))

    # Assert
    assert np.std(out[:, 2] - X[:, 2]) == pytest.approx(np.sqrt(2) * 2 * 100 / 2.0, rel=0.05)
    assert np.std(out[:, 3] - X[:, 3]) == pytest.approx(np.sqrt(2) * 2 * 10 / 2.0, rel=0.05)
    assert np.array_equal(out[:, 4], X[:, 4]) and np.all(out[:, 0] == 0)


def test_seeded_rng_reproducible_and_float32_kept():
    # Prepare
    X = records(100).astype(np.float32)

    # Execute
    a = preprocess(X, city_schema(), rng=SecureRNG(5, stream=7))
    b = preprocess(X, city_schema(), rng=SecureRNG(5, stream=7))
    c = preprocess(X, city_schema(), rng=SecureRNG(5, stream=8))

    # Assert
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(treatment={"salary": "drop"}), ValueError, "'salary'"),
    (dict(treatment={"income": "blur"}), ValueError, "field 'income'"),
    (dict(treatment={"consumption": "laplace"}), ValueError, "'consumption'"),
    (dict(treatment={"zone": "laplace"}), ValueError, "field 'zone'"),
    (dict(epsilon=0.0), ValueError, "epsilon"),
    (dict(rng=np.random.default_rng(0)), TypeError, "SecureRNG"),
])
def test_preprocess_rejects_bad_input(kwargs, error, match):
    # Execute / Assert
    with pytest.raises(error, match=match):
        preprocess(records(10), city_schema(), **kwargs)


def test_sensitive_field_without_bounds_is_refused_by_name():
    # Prepare
    schema = Schema((Field("salary", "numeric", "sensitive"), Field("y", "numeric", "public")), "y")

    # Execute / Assert
    with pytest.raises(ValueError, match="field 'salary' is sensitive but has no bounds"):
        preprocess(np.zeros((3, 1)), schema)
    assert preprocess(np.ones((3, 1)), schema, treatment={"salary": "drop"}).sum() == 0


def test_smart_meter_schema_preprocess_matches_its_flags():
    # Prepare
    schema = smart_meter_schema(4)
    X = np.array([[8.0, 1.0, 2.0, 12.0, 3.0, 0.4]] * 5)

    # Execute
    out = preprocess(X, schema, rng=SecureRNG(0, stream=0))

    # Assert
    assert np.array_equal(out[:, :4], X[:, :4])
    assert np.all(out[:, 4:] != X[:, 4:])


def test_generalize_snaps_numeric_values_to_bin_centres_and_codes_to_groups():
    # Prepare
    schema = Schema((Field("age", "numeric", "quasi", lower=0, upper=80),
                     Field("zone", "categorical", "quasi", lower=0, upper=7),
                     Field("y", "numeric", "public")), target="y")
    X = np.array([[0.0, 0], [19.9, 1], [20.0, 2], [79.0, 5], [95.0, 7]])

    # Execute
    out = preprocess(X, schema, treatment={"age": "generalize", "zone": "generalize"}, bins=4)

    # Assert: bins of 20 years (centres 10, 30, 50, 70; out-of-range values clipped first);
    # zones in groups of two codes, released as the group's first code
    assert out[:, 0].tolist() == [10.0, 10.0, 30.0, 70.0, 70.0]
    assert out[:, 1].tolist() == [0, 0, 2, 4, 6]


def test_pseudonymize_relabels_codes_by_a_keyed_permutation():
    # Prepare
    schema = Schema((Field("zone", "categorical", "quasi", lower=0, upper=7),
                     Field("y", "numeric", "public")), target="y")
    X = np.arange(8, dtype=np.float64).repeat(3)[:, None]
    key, other = b"k" * 32, b"o" * 32

    # Execute
    a = preprocess(X, schema, treatment={"zone": "pseudonymize"}, pseudonym_key=key)[:, 0]
    again = preprocess(X, schema, treatment={"zone": "pseudonymize"}, pseudonym_key=key)[:, 0]
    b = preprocess(X, schema, treatment={"zone": "pseudonymize"}, pseudonym_key=other)[:, 0]

    # Assert: a permutation of the codes (equal stays equal), fixed by the key
    assert sorted(set(a.tolist())) == list(range(8))
    assert all(len(set(a[i * 3:(i + 1) * 3])) == 1 for i in range(8))
    assert np.array_equal(a, again) and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="pseudonym_key"):
        preprocess(X, schema, treatment={"zone": "pseudonymize"})


def test_treatments_that_do_not_fit_the_field_are_refused_by_name():
    # Prepare
    schema = Schema((Field("hour", "numeric", "public", lower=0, upper=24),
                     Field("speed", "numeric", "public"),
                     Field("y", "numeric", "public")), target="y")
    X = np.zeros((2, 2))

    # Execute / Assert
    with pytest.raises(ValueError, match="'hour'.*pseudonymize"):
        preprocess(X, schema, treatment={"hour": "pseudonymize"}, pseudonym_key=b"k" * 32)
    with pytest.raises(ValueError, match="'speed'.*generalize"):
        preprocess(X, schema, treatment={"speed": "generalize"})
    with pytest.raises(ValueError, match="treatment must be one of"):
        preprocess(X, schema, treatment={"speed": "shred"})



def test_categorical_generalize_makes_the_asked_number_of_groups_and_pseudonyms_need_codes():
    # Prepare
    schema = Schema((Field("zone", "categorical", "quasi", lower=0, upper=4),
                     Field("y", "numeric", "public")), target="y")
    X = np.arange(5, dtype=np.float64)[:, None]

    # Execute
    out = preprocess(X, schema, treatment={"zone": "generalize"}, bins=4)[:, 0]

    # Assert: 5 codes in 4 groups {0, 1}, {2}, {3}, {4}, each released as its first code
    assert out.tolist() == [0, 0, 2, 3, 4]
    with pytest.raises(ValueError, match="'zone'"):
        preprocess(np.array([[np.nan]]), schema, treatment={"zone": "pseudonymize"},
                   pseudonym_key=b"k" * 32)
    with pytest.raises(ValueError, match="'zone'"):
        preprocess(np.array([[7.0]]), schema, treatment={"zone": "pseudonymize"},
                   pseudonym_key=b"k" * 32)


def test_a_missing_categorical_value_encodes_to_all_zeros():
    # Prepare
    schema = Schema((Field("z", "categorical", "quasi", lower=-1, upper=1),
                     Field("y", "numeric", "public")), target="y")
    enc = Encoder.fit(schema, np.array([[-1.0], [0.0], [1.0]]))

    # Execute
    out = enc.encode(np.array([[np.nan], [-1.0]]))

    # Assert: NaN is no category (code -1 would have been the one-hot of lower = -1)
    assert out.tolist() == [[0, 0, 0], [1, 0, 0]]
