"""privcity.data synthetic city: per-device determinism (a block equals the rows of the full
city), realistic cycles and regimes, non-IID partitions, the held-out test set, GPS traces."""
from __future__ import annotations

import numpy as np
import pytest

from privcity.data import (CITY_EPOCH, FederatedDataset, environment_records, make_city, make_gps_traces,
                           make_test_set, smart_meter_records, traffic_records)
from privcity.data.federated import TEST_BASE, _dirichlet_select, _dirichlet_want

TASKS = ["traffic", "air_quality", "energy"]


def rows_of(ds: FederatedDataset, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    return ds.X[ds.offsets[lo]:ds.offsets[hi]], ds.y[ds.offsets[lo]:ds.offsets[hi]]


# --- determinism ----------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_block_of_devices_equals_rows_of_full_city(task):
    # Prepare
    full = make_city(task, n_devices=60, seed=4)

    # Execute
    block = make_city(task, n_devices=60, seed=4, devices=range(10, 20))

    # Assert
    X, y = rows_of(full, 10, 20)
    assert np.array_equal(block.X, X) and np.array_equal(block.y, y)
    assert np.array_equal(block.device_ids, np.arange(10, 20))
    assert np.array_equal(block.district, full.district[10:20])
    assert block.feature_names == full.feature_names


def test_device_rows_do_not_depend_on_the_city_size_or_the_order_asked():
    # Prepare
    small = traffic_records(n_devices=30, seed=2)

    # Execute
    big = traffic_records(n_devices=5000, seed=2, devices=[29, 3, 17])

    # Assert
    for k, dev in enumerate([29, 3, 17]):
        assert np.array_equal(big.values[big.offsets[k]:big.offsets[k + 1]],
                              small.values[small.offsets[dev]:small.offsets[dev + 1]])


def test_fewer_samples_are_a_prefix_and_offset_continues():
    # Prepare
    long = environment_records(n_devices=20, samples_per_device=48, seed=1)

    # Execute
    head = environment_records(n_devices=20, samples_per_device=24, seed=1)
    tail = environment_records(n_devices=20, samples_per_device=24, seed=1, offset=24)

    # Assert
    lv = long.values.reshape(20, 48, -1)
    assert np.array_equal(head.values.reshape(20, 24, -1), lv[:, :24])
    assert np.array_equal(tail.values.reshape(20, 24, -1), lv[:, 24:])


def test_same_seed_same_data_different_seed_differs():
    # Execute
    a = make_city("air_quality", n_devices=50, seed=7)
    b = make_city("air_quality", n_devices=50, seed=7)
    c = make_city("air_quality", n_devices=50, seed=8)

    # Assert
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    assert np.mean(a.X != c.X) > 0.5


# --- realism --------------------------------------------------------------------------------------

def test_traffic_daily_and_weekly_cycles():
    # Prepare
    r = traffic_records(n_devices=600, seed=0)
    hour, dow, count = r.column("hour"), r.column("day_of_week"), r.column("vehicle_count")
    weekday = dow < 5

    # Execute
    rush = count[weekday & ((hour == 8) | (hour == 17))].mean()
    night = count[weekday & (hour == 3)].mean()
    weekend_morning = count[~weekday & (hour == 8)].mean()

    # Assert
    assert rush > 5 * night
    assert weekend_morning < 0.6 * count[weekday & (hour == 8)].mean()
    assert np.all(r.time == CITY_EPOCH + 3600 * ((r.time - CITY_EPOCH) // 3600))


def test_traffic_next_hour_target_is_the_next_row_and_speed_falls_with_congestion():
    # Prepare
    r = traffic_records(n_devices=200, samples_per_device=24, seed=3)
    count = r.column("vehicle_count").reshape(200, 24)
    nxt = r.column("next_hour_count").reshape(200, 24)
    speed, occ = r.column("mean_speed"), r.column("occupancy")

    # Assert
    assert np.array_equal(nxt[:, :-1], count[:, 1:])
    assert np.corrcoef(r.column("vehicle_count"), speed)[0, 1] < 0
    assert np.percentile(speed, 0.5) < 0.5 * np.median(speed)   # incidents and jams
    assert occ.max() > 5 * np.median(occ)


def test_pollution_follows_traffic_and_districts_differ():
    # Prepare
    e = environment_records(n_devices=800, seed=5)
    district = np.repeat(e.district, 48)

    # Execute
    pm_by_district = np.array([e.column("pm25")[district == k].mean() for k in range(8)])
    corr_no2 = np.corrcoef(e.column("traffic_count"), e.column("no2"))[0, 1]
    corr_noise = np.corrcoef(np.log1p(e.column("traffic_count")), e.column("noise_db"))[0, 1]

    # Assert
    assert pm_by_district.max() > 1.5 * pm_by_district.min()
    assert corr_no2 > 0.3 and corr_noise > 0.5


def test_smart_meters_peak_in_the_evening_and_grow_with_household_size():
    # Prepare
    m = smart_meter_records(n_households=400, seed=2)
    hour, kwh, size = m.column("hour"), m.column("consumption_kwh"), m.column("household_size")

    # Assert
    assert kwh[(hour >= 19) & (hour < 21)].mean() > 2 * kwh[(hour >= 2) & (hour < 4)].mean()
    assert kwh[size >= 4].mean() > 1.5 * kwh[size == 1].mean()
    assert m.schema.sensitive() == ["household_size", "consumption_kwh", "next_consumption_kwh"]
    assert np.all(np.diff(m.time.reshape(400, 96), axis=1) == 900)


# --- tasks ----------------------------------------------------------------------------------------

def test_air_quality_labels_cover_all_classes():
    # Execute
    ds = make_city("air_quality", n_devices=300, seed=1)

    # Assert
    counts = np.bincount(ds.y, minlength=3)
    assert ds.task_type == "classification" and ds.n_classes == 3 and ds.y.dtype == np.int64
    assert ds.class_names == ("good", "moderate", "unhealthy")
    assert np.all(counts > 0.05 * len(ds.y))
    assert "pm25" not in ds.feature_names


def test_regression_target_and_features_are_standardised_by_fixed_constants():
    # Prepare
    records = traffic_records(n_devices=400, seed=6)

    # Execute
    ds = make_city("traffic", n_devices=400, seed=6)

    # Assert
    assert ds.y.dtype == np.float32 and abs(ds.y.mean()) < 0.15 and 0.8 < ds.y.std() < 1.2
    np.testing.assert_allclose(ds.y * ds.target_scale + ds.target_mean, records.column("next_hour_count"),
                               rtol=1e-5, atol=1e-2)
    plain = [ds.feature_names.index(n) for n in ("vehicle_count", "mean_speed", "occupancy")]
    assert np.all(np.abs(ds.X[:, plain].mean(axis=0)) < 0.15)
    onehot = ds.X[:, [i for i, n in enumerate(ds.feature_names) if n.startswith("district=")]]
    assert np.all(onehot.sum(axis=1) == 1)


def test_district_partition_gives_different_per_district_means():
    # Execute
    ds = make_city("traffic", n_devices=400, seed=9)

    # Assert
    dist = np.repeat(ds.district, ds.sizes)
    raw = ds.y * ds.target_scale + ds.target_mean
    means = np.array([raw[dist == k].mean() for k in range(8)])
    assert len(np.unique(ds.district)) == 8
    assert means.max() > 1.8 * means.min()


def test_dirichlet_small_alpha_skews_label_mixes_and_large_alpha_evens_them():
    # Execute
    skewed = make_city("air_quality", n_devices=300, seed=2, partition="dirichlet", alpha=0.05)
    even = make_city("air_quality", n_devices=300, seed=2, partition="dirichlet", alpha=100.0)

    # Assert
    def shares(ds):
        c = ds.label_counts()
        return c / c.sum(axis=1, keepdims=True)

    s, e = shares(skewed), shares(even)
    assert s.max(axis=1).mean() > 0.8
    assert e.max(axis=1).mean() < 0.55
    tv_even = 0.5 * np.abs(e - 1 / 3).sum(axis=1).mean()
    tv_skew = 0.5 * np.abs(s - 1 / 3).sum(axis=1).mean()
    assert tv_even < 0.2 < 0.4 < tv_skew
    assert np.all(skewed.sizes == 48) and np.all(even.sizes == 48)


def test_dirichlet_block_equals_full_city_and_equals_selection_from_the_full_pool():
    # Prepare
    full = make_city("air_quality", n_devices=40, seed=3, partition="dirichlet", alpha=0.3)
    pool = environment_records(n_devices=40, samples_per_device=8 * 48, seed=3)
    labels = np.searchsorted([12.0, 35.4], pool.column("pm25"), side="right").reshape(40, -1)
    want = _dirichlet_want(3, np.arange(40), 48, 0.3, 3)

    # Execute
    block = make_city("air_quality", n_devices=40, seed=3, partition="dirichlet", alpha=0.3,
                      devices=range(30, 40))
    pos = _dirichlet_select(labels, want, 48)

    # Assert
    X, y = rows_of(full, 30, 40)
    assert np.array_equal(block.X, X) and np.array_equal(block.y, y)
    assert np.array_equal(full.y.reshape(40, 48), np.take_along_axis(labels, pos, axis=1))


def test_dirichlet_needs_classification():
    # Execute / Assert
    with pytest.raises(ValueError, match="classification"):
        make_city("traffic", n_devices=10, partition="dirichlet")


def test_test_set_is_held_out_and_rebuilt_identically():
    # Execute
    t1 = make_test_set("air_quality", n_devices=100, seed=5)
    t2 = make_test_set("air_quality", n_devices=100, seed=5)
    train = make_city("air_quality", n_devices=1000, seed=5, devices=range(900, 1000))

    # Assert
    assert np.array_equal(t1.X, t2.X) and np.array_equal(t1.y, t2.y)
    assert t1.device_ids.min() >= TEST_BASE and not np.isin(t1.device_ids, train.device_ids).any()
    assert t1.feature_names == train.feature_names
    assert np.all(np.bincount(t1.y, minlength=3) > 0)


def test_device_and_subset():
    # Prepare
    ds = make_city("energy", n_devices=30, seed=1, samples_per_device=10)

    # Execute
    sub = ds.subset([7, 2])
    X7, y7 = ds.device(7)

    # Assert
    assert sub.n_devices == 2 and np.array_equal(sub.device_ids, [7, 2])
    assert np.array_equal(sub.device(0)[0], X7) and np.array_equal(sub.device(0)[1], y7)
    assert np.array_equal(sub.device(1)[0], ds.device(2)[0])
    assert np.array_equal(sub.offsets, [0, 10, 20])
    with pytest.raises(IndexError):
        ds.device(30)


def test_two_thousand_devices():
    # Execute
    ds = make_city("air_quality", n_devices=2000, seed=11)

    # Assert
    assert ds.X.shape == (2000 * 48, len(ds.feature_names)) and ds.X.dtype == np.float32
    assert np.isfinite(ds.X).all()
    assert ds.offsets[-1] == ds.X.shape[0] and ds.n_devices == 2000


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="weather"), "task"),
    (dict(devices=range(5, 20)), "range"),
    (dict(partition="random"), "partition"),
    (dict(n_districts=0), "n_districts"),
    (dict(samples_per_device=0), "samples_per_device"),
])
def test_bad_arguments(kwargs, match):
    # Prepare
    args = dict(task="traffic", n_devices=10) | kwargs
    task = args.pop("task")

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        make_city(task, **args)


def test_private_city_noises_sensitive_fields_per_device_reproducibly():
    # Prepare
    clean = make_city("energy", n_devices=40, seed=2)

    # Execute
    noisy = make_city("energy", n_devices=40, seed=2, epsilon=2.0, noise_seed=9)
    block = make_city("energy", n_devices=40, seed=2, epsilon=2.0, noise_seed=9, devices=range(20, 30))
    dropped = make_city("energy", n_devices=40, seed=2, treatment={"household_size": "drop",
                                                                   "consumption_kwh": "keep"})

    # Assert
    changed = np.any(noisy.X != clean.X, axis=0)
    names = [n for n, c in zip(noisy.feature_names, changed) if c]
    assert names == ["household_size", "consumption_kwh"]
    assert np.array_equal(block.X, rows_of(noisy, 20, 30)[0])
    # the target (next consumption, sensitive) is released noised too: it would otherwise give
    # away the next record's noised consumption
    assert not np.array_equal(noisy.y, clean.y)
    assert np.array_equal(block.y, noisy.y[noisy.offsets[20]:noisy.offsets[30]])
    j = dropped.feature_names.index("household_size")
    assert np.all(dropped.X[:, j] == 0)
    assert np.array_equal(np.delete(dropped.X, j, axis=1), np.delete(clean.X, j, axis=1))


# --- GPS ------------------------------------------------------------------------------------------

def test_gps_traces_shape_ranges_and_per_person_determinism():
    # Execute
    g = make_gps_traces(300, 40, seed=3, city_center=(45.46, 9.19))
    part = make_gps_traces(300, 40, seed=3, city_center=(45.46, 9.19), people=range(100, 110))

    # Assert
    assert g.shape == (12000,) and g.dtype.names == ("person", "timestamp", "lat", "lon")
    assert np.array_equal(g["person"], np.repeat(np.arange(300), 40))
    assert np.all(np.abs(g["lat"] - 45.46) < 0.15) and np.all(np.abs(g["lon"] - 9.19) < 0.2)
    assert np.all(np.diff(g["timestamp"].reshape(300, 40), axis=1) > 0)
    assert np.array_equal(part, g[100 * 40:110 * 40])


def test_gps_coarsening_increases_collisions_and_lowers_unicity():
    # Prepare
    g = make_gps_traces(1500, 48, seed=1)
    hour = (g["timestamp"] - CITY_EPOCH) // 3600

    def shared_fraction(decimals: int) -> float:
        cell = np.stack([np.round(g["lat"], decimals), np.round(g["lon"], decimals)], axis=1)
        _, inv = np.unique(cell, axis=0, return_inverse=True)
        pairs = np.unique(np.stack([inv.reshape(-1), g["person"]], axis=1), axis=0)
        people_per_cell = np.bincount(pairs[:, 0])
        return float((people_per_cell[inv.reshape(-1)] > 1).mean())

    def unicity(decimals: int) -> float:
        # share of people whose 4 points (cell, hour) match nobody else's
        cell = np.stack([np.round(g["lat"], decimals), np.round(g["lon"], decimals), hour], axis=1)
        _, inv = np.unique(cell, axis=0, return_inverse=True)
        inv = inv.reshape(1500, 48)[:, [0, 12, 24, 36]]
        sets = [set(row) for row in inv.tolist()]
        owners: dict[int, set[int]] = {}
        for p, row in enumerate(inv.tolist()):
            for c in row:
                owners.setdefault(c, set()).add(p)
        return float(np.mean([len(set.intersection(*(owners[c] for c in s))) == 1 for s in sets]))

    # Execute
    shared = [shared_fraction(d) for d in (5, 3, 2)]
    uniq = [unicity(d) for d in (4, 2, 1)]

    # Assert
    assert shared[0] < 0.01 < shared[1] < shared[2]
    assert uniq[0] > 0.95 and uniq[0] >= uniq[1] > uniq[2]


@pytest.mark.parametrize("task", ["air_quality", "traffic", "energy"])
def test_a_city_of_one_district(task):
    ds = make_city(task, n_devices=20, samples_per_device=8, n_districts=1, seed=0)
    assert set(ds.district.tolist()) == {0} and ds.X.shape[0] == 160
    assert np.isfinite(ds.X).all()


def test_repeated_device_ids_are_refused():
    with pytest.raises(ValueError, match="distinct: 2 is given 2 times"):
        make_city("traffic", n_devices=5, samples_per_device=4, devices=[2, 2, 3], seed=0)
