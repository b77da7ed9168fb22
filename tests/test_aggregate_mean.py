"""privcity.aggregate means: weighted_mean and the streaming Accumulator against numpy float64
with a stated error bound, streaming equal to batch bit for bit, hostile updates rejected alone,
and exact modular sums."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import privcity
from privcity.aggregate import Accumulator, AggregateResult, modular_sum, weighted_mean

F32_MAX = float(np.finfo(np.float32).max)


def reference_mean(rows: list[np.ndarray], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(numpy float64 weighted mean, its error bound for privcity's float32 result).

    privcity sums w_k x_k in float64 (error <= (K + 2) 2**-52 sum|w_k x_k|, with room for the
    scale by 1 / W) and rounds once to float32 (<= 2**-24 |mean|, or half the smallest subnormal,
    2**-150, below the normal range). A float32 summation would be K times 2**-24 off and fail
    this bound.
    """
    x = np.stack([r.astype(np.float64) for r in rows])
    total = w.sum()
    ref = (w[:, None] * x).sum(axis=0) / total
    spread = (np.abs(w[:, None] * x)).sum(axis=0) / total
    bound = 2.0**-24 * np.abs(ref) + (len(rows) + 2) * 2.0**-52 * spread + 2.0**-150
    return ref, bound


def make(k: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)  # test data, not noise
    x = (rng.standard_normal((k, d)) * rng.uniform(0.01, 100, (k, 1))).astype(np.float32)
    return x, rng.integers(1, 500, k).astype(np.float64)


# --- weighted_mean against numpy float64 ----------------------------------------------------------

@pytest.mark.parametrize("k, d", [(1, 1), (3, 17), (5, 1000), (64, 70_001)])
@pytest.mark.parametrize("form", ["2-D", "list"])
def test_weighted_mean_within_bound_of_float64(k, d, form):
    # Prepare
    x, w = make(k, d, seed=k + d)
    updates = x if form == "2-D" else [row.copy() for row in x]
    ref, bound = reference_mean(list(x), w)

    # Execute
    out = weighted_mean(updates, w)

    # Assert
    assert out.dtype == np.float32 and out.shape == (d,)
    assert np.all(np.abs(out.astype(np.float64) - ref) <= bound)


def test_weighted_mean_sums_in_float64_without_overflow():
    # Prepare: every float32 partial sum of these would overflow to Inf
    x = np.full((8, 100), F32_MAX * 0.9, np.float32)
    x[::2] *= -0.5

    # Execute
    out = weighted_mean(x, np.arange(1.0, 9.0))

    # Assert
    ref, bound = reference_mean(list(x), np.arange(1.0, 9.0))
    assert np.isfinite(out).all()
    assert np.all(np.abs(out - ref) <= bound)


def test_subnormal_means_are_rounded_once_from_float64():
    # Prepare: found by hypothesis; the means lie between float32's subnormals
    tiny = np.float32(2.0**-149)
    x = np.array([[0.0, tiny, tiny, -tiny], [tiny, tiny, 2 * tiny, 0.0]], np.float32)
    w = np.array([1.0, 1.0])

    # Execute
    out = weighted_mean(x, w)

    # Assert: round to nearest even of the exact float64 mean
    expected = ((x[0].astype(np.float64) + x[1]) / 2).astype(np.float32)
    assert np.array_equal(out, expected)
    assert np.array_equal(out, np.array([0.0, tiny, 2 * tiny, -0.0], np.float32))


def test_default_weights_give_the_plain_mean():
    # Prepare
    x, _ = make(6, 333)

    # Execute
    out = weighted_mean(x)

    # Assert
    ref, bound = reference_mean(list(x), np.ones(6))
    assert np.all(np.abs(out - ref) <= bound)
    assert np.array_equal(out, weighted_mean(x, np.ones(6)))


def test_float64_updates_are_rounded_to_float32_first():
    # Prepare
    x64 = np.random.default_rng(1).standard_normal((7, 501))
    w = np.arange(1.0, 8.0)

    # Execute
    out64 = weighted_mean(x64, w)
    out_list = weighted_mean(list(x64), w)
    out_strided = weighted_mean(x64.astype(np.float32)[:, ::1].T.copy().T, w)  # Fortran order

    # Assert
    expected = weighted_mean(x64.astype(np.float32), w)
    assert out64.dtype == np.float32
    assert np.array_equal(out64, expected)
    assert np.array_equal(out_list, expected)
    assert np.array_equal(out_strided, expected)


def test_report_gives_used_rows_and_total_weight():
    # Prepare
    x, w = make(4, 10)

    # Execute
    res = weighted_mean(x, w, report=True)

    # Assert
    assert isinstance(res, AggregateResult)
    assert res.used == (0, 1, 2, 3) and res.skipped == () and res.reasons == {}
    assert res.total_weight == float(w.sum())
    assert np.array_equal(res.value, weighted_mean(x, w))


# --- hostile updates ------------------------------------------------------------------------------

def hostile_batch(d: int = 300) -> tuple[list, np.ndarray, dict[int, str]]:
    """Ten updates, five of them bad in different ways; the expected reason fragment of each."""
    x, w = make(10, d, seed=9)
    rows: list = [r.copy() for r in x]
    rows[1][7] = np.nan
    rows[3][d - 1] = -np.inf
    rows[4] = rows[4][:-1].copy()
    rows[6] = rows[6].astype(np.int32)
    w = w.copy()
    w[8] = -1.0
    return rows, w, {1: "NaN or Inf", 3: "NaN or Inf", 4: "length 299", 6: "dtype int32",
                     8: "weight -1.0"}


def test_skip_leaves_out_each_bad_update_exactly():
    # Prepare
    rows, w, bad = hostile_batch()
    good = [i for i in range(10) if i not in bad]

    # Execute
    res = weighted_mean(rows, w, on_invalid="skip", report=True)

    # Assert
    assert res.skipped == tuple(sorted(bad))
    assert res.used == tuple(good)
    for i, fragment in bad.items():
        assert fragment in res.reasons[i]
    assert np.array_equal(res.value, weighted_mean([rows[i] for i in good], w[good]))


def test_raise_names_every_bad_update():
    # Prepare
    rows, w, bad = hostile_batch()

    # Execute
    with pytest.raises(privcity.InvalidUpdate) as info:
        weighted_mean(rows, w)

    # Assert
    assert info.value.indices == sorted(bad)
    assert set(info.value.reasons) == set(bad)
    assert isinstance(info.value, privcity.PrivcityError)
    assert "5 of 10 updates rejected" in str(info.value)


@pytest.mark.parametrize("weight", [np.nan, np.inf, -0.5, 2.0**851, "3.0", True, np.array([1.0]),
                                    None, 1j])
def test_each_bad_weight_is_rejected_alone(weight):
    # Prepare
    x, _ = make(4, 50)
    w = [1.0, 2.0, weight, 3.0]

    # Execute
    res = weighted_mean(x, w, on_invalid="skip", report=True)

    # Assert
    assert res.skipped == (2,)
    assert np.array_equal(res.value, weighted_mean(x[[0, 1, 3]], [1.0, 2.0, 3.0]))


def test_two_d_batch_with_nan_rows_skips_them():
    # Prepare
    x, w = make(16, 4097)
    x[[2, 11], [100, 4096]] = np.nan

    # Execute
    res = weighted_mean(x, w, on_invalid="skip", report=True)

    # Assert
    keep = [i for i in range(16) if i not in (2, 11)]
    assert res.skipped == (2, 11)
    assert np.array_equal(res.value, weighted_mean(np.ascontiguousarray(x[keep]), w[keep]))


def test_float64_value_beyond_float32_range_is_rejected_as_non_finite():
    # Prepare
    rows = [np.ones(5), np.full(5, 1e300), np.ones(5) * 3]

    # Execute
    res = weighted_mean(rows, on_invalid="skip", report=True)

    # Assert
    assert res.skipped == (1,) and "NaN or Inf" in res.reasons[1]
    assert np.array_equal(res.value, np.full(5, 2.0, np.float32))


def test_length_is_the_one_most_updates_share_unless_given():
    # Prepare: the first update has the odd length; it must not set the expected one
    rows = [np.ones(4, np.float32), np.ones(3, np.float32), np.full(3, 3.0, np.float32)]

    # Execute
    inferred = weighted_mean(rows, on_invalid="skip", report=True)
    given_dim = weighted_mean(rows, on_invalid="skip", report=True, dim=4)

    # Assert
    assert inferred.skipped == (0,) and np.array_equal(inferred.value, np.full(3, 2.0, np.float32))
    assert given_dim.skipped == (1, 2) and np.array_equal(given_dim.value, np.ones(4, np.float32))


def test_tied_lengths_without_dim_are_an_error():
    # Prepare
    rows = [np.ones(4, np.float32), np.ones(3, np.float32)]

    # Execute / Assert
    with pytest.raises(ValueError, match="pass dim="):
        weighted_mean(rows, on_invalid="skip")


def test_zero_total_weight_is_a_clear_error():
    # Prepare
    x, _ = make(3, 20)

    # Execute / Assert
    with pytest.raises(ValueError, match="total weight .* is 0"):
        weighted_mean(x, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="at least 1 valid update"):
        weighted_mean([x[0] * np.nan], on_invalid="skip")
    with pytest.raises(ValueError, match="total weight .* is 0"):
        Accumulator(20).mean()
    with pytest.raises(ValueError, match="below the normal float64 range"):
        weighted_mean(x, [0.0, 5e-324, 0.0])


@pytest.mark.parametrize("kwargs, error", [
    ({"on_invalid": "ignore"}, ValueError), ({"threads": -1}, ValueError),
    ({"threads": 1.5}, TypeError), ({"dim": 0}, ValueError)])
def test_bad_parameters_are_refused(kwargs, error):
    # Prepare
    x, w = make(3, 20)

    # Execute / Assert
    with pytest.raises(error):
        weighted_mean(x, w, **kwargs)


def test_weights_of_the_wrong_length_or_form_are_refused():
    # Prepare
    x, _ = make(3, 20)

    # Execute / Assert
    with pytest.raises(ValueError, match="weights"):
        weighted_mean(x, np.ones(4))
    with pytest.raises(ValueError, match="weights"):
        weighted_mean(x, [1.0, 2.0])
    with pytest.raises(TypeError, match="weights"):
        weighted_mean(x, 2.0)


def test_invalid_update_pickles_with_its_attributes():
    # Prepare
    err = privcity.InvalidUpdate("2 rejected", [5, 2], {2: "holds NaN or Inf", 5: "x"})

    # Execute
    back = pickle.loads(pickle.dumps(err))

    # Assert
    assert type(back) is privcity.InvalidUpdate
    assert back.indices == [2, 5] and back.reasons == err.reasons and str(back) == "2 rejected"


# --- Accumulator ----------------------------------------------------------------------------------

def test_streaming_equals_batch_bit_for_bit():
    # Prepare
    x, w = make(40, 70_001, seed=3)
    acc = Accumulator(70_001)

    # Execute
    for row, wi in zip(x, w):
        acc.add(row, wi)

    # Assert
    assert acc.count == 40 and acc.total_weight == float(w.sum())
    assert np.array_equal(acc.mean(), weighted_mean(x, w))


def test_streaming_equals_batch_with_hostile_updates_in_between():
    # Prepare
    rows, w, bad = hostile_batch()
    acc = Accumulator(300)
    refused = []

    # Execute
    for i, (row, wi) in enumerate(zip(rows, w)):
        try:
            acc.add(row, wi)
        except privcity.InvalidUpdate:
            refused.append(i)

    # Assert
    assert refused == sorted(bad)
    assert acc.count == 5 and acc.rejected == 5
    assert np.array_equal(acc.mean(), weighted_mean(rows, w, on_invalid="skip"))


@pytest.mark.parametrize("bad_update, bad_weight, fragment", [
    ("nan_last", 1.0, "NaN or Inf"), ("inf_first", 1.0, "NaN or Inf"),
    ("short", 1.0, "length 99"), ("2-D", 1.0, "shape"), ("int", 1.0, "dtype"),
    ("list", 1.0, "not a numpy array"), ("ok", -1.0, "weight"), ("ok", np.nan, "weight")])
def test_add_rejects_and_leaves_the_sum_as_it_was(bad_update, bad_weight, fragment):
    # Prepare
    x, w = make(3, 100, seed=4)
    acc = Accumulator(100)
    acc.add(x[0], w[0])
    acc.add(x[1], w[1])
    before = (acc.weighted_sum(), acc.count, acc.total_weight)
    bad = {"nan_last": x[2].copy(), "inf_first": x[2].copy(), "short": x[2][:99],
           "2-D": x[:2], "int": x[2].astype(np.int64), "list": list(x[2]), "ok": x[2]}[bad_update]
    if bad_update == "nan_last":
        bad[-1] = np.nan
    if bad_update == "inf_first":
        bad[0] = np.inf

    # Execute
    with pytest.raises(privcity.InvalidUpdate) as info:
        acc.add(bad, bad_weight)

    # Assert
    assert fragment in info.value.reasons[0] and info.value.indices == [0]
    assert np.array_equal(acc.weighted_sum(), before[0])
    assert (acc.count, acc.total_weight, acc.rejected) == (before[1], before[2], 1)
    acc.add(x[2], w[2])  # and it goes on as if the bad one never came
    assert np.array_equal(acc.mean(), weighted_mean(x, w))


def test_reset_starts_over():
    # Prepare
    x, w = make(4, 64)
    acc = Accumulator(64)
    for row, wi in zip(x, w):
        acc.add(row, wi)
    with pytest.raises(privcity.InvalidUpdate):
        acc.add(x[0] * np.nan)

    # Execute
    acc.reset()
    acc.add(x[3], w[3])

    # Assert
    assert (acc.count, acc.total_weight, acc.rejected) == (1, float(w[3]), 0)
    assert np.array_equal(acc.mean(), weighted_mean(x[3:], w[3:]))


def test_float64_update_is_rounded_to_float32_by_the_accumulator():
    # Prepare
    x64 = np.random.default_rng(5).standard_normal((3, 77))
    acc = Accumulator(77)

    # Execute
    for row in x64:
        acc.add(row)

    # Assert
    assert np.array_equal(acc.mean(), weighted_mean(x64.astype(np.float32)))


def test_accumulator_refuses_bad_construction():
    # Execute / Assert
    with pytest.raises(ValueError):
        Accumulator(0)
    with pytest.raises(TypeError):
        Accumulator(10.0)
    with pytest.raises(ValueError):
        Accumulator(10, threads=-2)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), k=st.integers(1, 9), d=st.integers(1, 40))
def test_property_streaming_equals_batch_and_float64(data, k, d):
    # Prepare
    finite = st.floats(-(2.0**100), 2.0**100, width=32)
    x = data.draw(hnp.arrays(np.float32, (k, d), elements=finite))
    w = data.draw(hnp.arrays(np.float64, k, elements=st.floats(0.5, 1e6)))
    acc = Accumulator(d, threads=1)

    # Execute
    batch = weighted_mean(x, w, threads=1)
    for row, wi in zip(x, w):
        acc.add(row, wi)

    # Assert
    ref, bound = reference_mean(list(x), w)
    assert np.array_equal(acc.mean(), batch)
    assert np.all(np.abs(batch.astype(np.float64) - ref) <= bound)


# --- modular sums ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint32, np.int32, np.uint64, np.int64])
def test_modular_sum_is_exact_with_wraparound(dtype):
    # Prepare
    info = np.iinfo(dtype)
    rng = np.random.default_rng(6)
    x = rng.integers(info.min, info.max, (33, 1001), dtype=dtype, endpoint=True)
    bits = 8 * np.dtype(dtype).itemsize
    exact = [sum(int(v) for v in col) % 2**bits for col in x.T]  # Python ints, no overflow

    # Execute
    out = modular_sum(x)
    out_list = modular_sum(list(x))

    # Assert
    assert out.dtype == dtype
    assert [int(v) % 2**bits for v in out] == exact
    assert np.array_equal(out, out_list)


def test_modular_sum_rejects_bad_rows_alone():
    # Prepare
    x = np.random.default_rng(7).integers(0, 2**32, (6, 50), dtype=np.uint32)
    rows: list = list(x)
    rows[1] = rows[1].astype(np.uint64)
    rows[4] = rows[4][:49]

    # Execute
    res = modular_sum(rows, on_invalid="skip", report=True)

    # Assert
    assert res.skipped == (1, 4)
    assert np.array_equal(res.value, x[[0, 2, 3, 5]].sum(axis=0, dtype=np.uint32))
    with pytest.raises(privcity.InvalidUpdate) as info:
        modular_sum(rows)
    assert info.value.indices == [1, 4]


def test_modular_sum_refuses_float_batches():
    # Execute / Assert
    with pytest.raises(TypeError, match="uint32"):
        modular_sum(np.ones((2, 3), np.float32))
