"""privcity.anonymize.location: geohashes against published values and an independent bisection,
metric grids, time coarsening, spatial k-cloaking against brute force, and the planar Laplace
of geo-indistinguishability against its radial CDF (scipy, test-only)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special, stats

from privcity.anonymize.location import (EARTH_RADIUS_M, coarsen_time, geo_indistinguishable, geohash_decode,
                                         geohash_encode, geohash_generalize, grid_generalize, lambertw_m1,
                                         spatial_cloak)
from privcity.noise import SecureRNG

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180
ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"


def bisection_geohash(lat: float, lon: float, precision: int) -> str:
    """The textbook algorithm, one bit at a time (lon first, upper half on >= mid)."""
    rng = {0: [-180.0, 180.0], 1: [-90.0, 90.0]}
    value = (lon, lat)
    bits, which = [], 0
    while len(bits) < 5 * precision:
        lo, hi = rng[which]
        mid = (lo + hi) / 2
        if value[which] >= mid:
            bits.append(1)
            rng[which][0] = mid
        else:
            bits.append(0)
            rng[which][1] = mid
        which = 1 - which
    return "".join(ALPHABET[int("".join(map(str, bits[i:i + 5])), 2)] for i in range(0, len(bits), 5))


def city_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return 52.52 + rng.normal(0, 0.03, n), 13.405 + rng.normal(0, 0.05, n)


# --- geohash --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lat, lon, precision, expected", [
    (57.64911, 10.40744, 11, "u4pruydqqvj"),   # Wikipedia, Geohash
    (57.648, 10.410, 6, "u4pruy"),              # latlon-geohash test suite (Jutland)
    (-25.38262, -49.26561, 8, "6gkzwgjz"),      # latlon-geohash test suite (Curitiba)
    (51.433718, -0.214126, 2, "gc"),            # Rosetta Code, Geohash
    (51.433718, -0.214126, 9, "gcpue5hp4"),     # Rosetta Code (Wimbledon centre court)
    (42.6, -5.6, 5, "ezs42"),                   # Wikipedia
])
def test_geohash_encode_matches_published_values(lat, lon, precision, expected):
    # Execute
    got = geohash_encode(lat, lon, precision)

    # Assert
    assert got == expected


def test_geohash_decode_gives_the_published_cell():
    # Prepare: "geek" spans 65.390625..65.56640625 N, 17.9296875..17.578125 W (pygeodesy tests)

    # Execute
    box = geohash_decode(np.array(["geek", "GEEK"]))

    # Assert
    assert np.allclose(box.lat, (65.390625 + 65.56640625) / 2, rtol=0, atol=1e-12)
    assert np.allclose(box.lon, (-17.9296875 - 17.578125) / 2, rtol=0, atol=1e-12)
    assert np.allclose(box.lat_err, (65.56640625 - 65.390625) / 2)
    assert np.allclose(box.lon_err, (17.9296875 - 17.578125) / 2)


@given(st.floats(-90, 90), st.floats(-180, 180), st.integers(1, 12))
def test_geohash_encode_equals_textbook_bisection(lat, lon, precision):
    # Execute
    got = geohash_encode(np.array([lat]), np.array([lon]), precision)

    # Assert
    assert got[0] == bisection_geohash(lat, lon, precision)


def test_geohash_vectorised_keeps_shape_and_prefixes_nest():
    # Prepare
    lat, lon = city_points(600)
    lat, lon = lat.reshape(20, 30), lon.reshape(20, 30)

    # Execute
    fine = geohash_encode(lat, lon, 12)
    coarse = geohash_encode(lat, lon, 6)

    # Assert
    assert fine.shape == (20, 30) and coarse.dtype == np.dtype("U6")
    assert all(f.startswith(c) for f, c in zip(fine.ravel(), coarse.ravel()))
    assert fine[3, 4] == geohash_encode(lat[3, 4], lon[3, 4], 12)


def test_geohash_decode_round_trip_contains_the_point():
    # Prepare
    lat, lon = city_points(2000, seed=1)
    mixed = np.array([geohash_encode(a, b, 1 + i % 12) for i, (a, b) in enumerate(zip(lat, lon))])

    # Execute
    box = geohash_decode(mixed)

    # Assert
    assert (np.abs(lat - box.lat) <= box.lat_err).all()
    assert (np.abs(lon - box.lon) <= box.lon_err).all()
    assert box.lat_err[11] < 1e-6 < box.lat_err[0]


def test_geohash_generalize_gives_decoded_centres():
    # Prepare
    lat, lon = city_points(500, seed=2)

    # Execute
    gen = geohash_generalize(lat, lon, 7)

    # Assert
    box = geohash_decode(gen.cell)
    assert np.array_equal(gen.lat, box.lat) and np.array_equal(gen.lon, box.lon)
    assert np.array_equal(gen.cell, geohash_encode(lat, lon, 7))
    assert len(np.unique(gen.cell)) < len(lat)


@pytest.mark.parametrize("bad", ["a", "u4pruydqqvjab", "", "u4é"])
def test_geohash_decode_refuses_invalid_hashes(bad):
    # Execute / Assert
    with pytest.raises(ValueError, match="hashes"):
        geohash_decode([bad])


@pytest.mark.parametrize("precision", [0, 13, True, 2.0])
def test_geohash_precision_out_of_range_is_refused(precision):
    # Execute / Assert
    with pytest.raises(ValueError, match="precision"):
        geohash_encode(52.0, 13.0, precision)


# --- coordinates checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("lat, lon, match", [
    ([np.nan], [13.0], "lat contains NaN"),
    ([52.0], [np.nan], "lon contains NaN"),
    ([90.5], [13.0], r"lat must be in \[-90, 90\]"),
    ([52.0], [181.0], r"lon must be in \[-180, 180\]"),
    ([52.0, 53.0], [13.0], "same shape"),
])
@pytest.mark.parametrize("fn", [
    lambda a, b: geohash_encode(a, b, 5),
    lambda a, b: grid_generalize(a, b, 100.0),
    lambda a, b: spatial_cloak(a, b, 2),
    lambda a, b: geo_indistinguishable(a, b, 0.01, rng=SecureRNG(seed=0)),
])
def test_bad_coordinates_are_refused_by_name(fn, lat, lon, match):
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        fn(lat, lon)


# --- metric grid ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cell_m", [25.0, 500.0, 3000.0])
def test_grid_generalize_centres_lie_within_half_a_cell(cell_m):
    # Prepare
    lat, lon = city_points(5000, seed=3)

    # Execute
    gen = grid_generalize(lat, lon, cell_m, ref_lat=52.52)

    # Assert
    dy = (lat - gen.lat) * M_PER_DEG
    dx = (lon - gen.lon) * M_PER_DEG * math.cos(math.radians(52.52))
    assert (np.abs(dy) <= cell_m / 2 + 1e-6).all() and (np.abs(dx) <= cell_m / 2 + 1e-6).all()
    # one centre per cell id and one id per centre
    pairs = np.unique(np.stack([gen.cell.astype(np.float64), gen.lat, gen.lon]), axis=1)
    assert pairs.shape[1] == len(np.unique(gen.cell)) == len(np.unique(gen.lat + 1j * gen.lon))


def test_grid_default_reference_is_the_whole_degree_of_the_mean():
    # Prepare
    lat, lon = city_points(1000, seed=4)

    # Execute
    default = grid_generalize(lat, lon, 200.0)
    first_half = grid_generalize(lat[:500], lon[:500], 200.0)

    # Assert: 52.52 rounds to 53 for both batches, so they share one grid
    assert np.array_equal(default.cell, grid_generalize(lat, lon, 200.0, ref_lat=53.0).cell)
    assert np.array_equal(first_half.cell, default.cell[:500])


@pytest.mark.parametrize("cell_m", [0, -5, np.nan, np.inf, 0.001, "x"])
def test_grid_cell_size_is_validated(cell_m):
    # Execute / Assert
    with pytest.raises(ValueError, match="cell_m"):
        grid_generalize([52.0], [13.0], cell_m)


# --- time -----------------------------------------------------------------------------------------

def test_coarsen_time_floors_integers_floats_and_datetimes():
    # Prepare
    ints = np.array([0, 1, 3599, 3600, 7201, -1], np.int64)
    floats = ints.astype(np.float64) + 0.5
    dts = np.array(["2024-05-01T10:59:59", "2024-05-01T11:00:00", "NaT"], "datetime64[s]")

    # Execute
    ci = coarsen_time(ints, 3600)
    cf = coarsen_time(floats, 3600)
    cd = coarsen_time(dts, 3600)
    co = coarsen_time(ints, 3600, origin=1800)

    # Assert
    assert ci.dtype == np.int64 and ci.tolist() == [0, 0, 0, 3600, 7200, -3600]
    assert cf.tolist() == [0.0, 0.0, 0.0, 3600.0, 7200.0, -3600.0]
    assert cd[0] == np.datetime64("2024-05-01T10:00:00") and cd[1] == np.datetime64("2024-05-01T11:00:00")
    assert np.isnat(cd[2])
    assert co.tolist() == [-1800, -1800, 1800, 1800, 5400, -1800]


def test_coarsen_time_validates_its_arguments():
    # Execute / Assert
    with pytest.raises(ValueError, match="seconds"):
        coarsen_time(np.array([1, 2]), 0)
    with pytest.raises(ValueError, match="seconds must be a whole number"):
        coarsen_time(np.array([1, 2]), 1.5)
    with pytest.raises(ValueError, match="timestamps contains NaN"):
        coarsen_time(np.array([1.0, np.nan]), 60)
    with pytest.raises(ValueError, match="timestamps must be"):
        coarsen_time(np.array(["a"]), 60)


# --- spatial k-cloaking ---------------------------------------------------------------------------

def brute_count(lat, lon, lat_min, lat_max, lon_min, lon_max):
    inside = (lat[None, :] >= lat_min[:, None]) & (lat[None, :] < lat_max[:, None]) & \
             (lon[None, :] >= lon_min[:, None]) & (lon[None, :] < lon_max[:, None])
    return inside.sum(axis=1)


@pytest.mark.parametrize("k", [2, 5, 20])
def test_spatial_cloak_regions_hold_k_points_and_are_the_smallest_quadrants(k):
    # Prepare
    lat, lon = city_points(1500, seed=k)

    # Execute
    cloak = spatial_cloak(lat, lon, k, min_cell_m=1.0)

    # Assert: every region holds the point, k or more points, and the count it reports
    ok = ~cloak.suppressed
    assert ok.all()
    assert ((lat >= cloak.lat_min) & (lat < cloak.lat_max) & (lon >= cloak.lon_min)
            & (lon < cloak.lon_max)).all()
    counted = brute_count(lat, lon, cloak.lat_min, cloak.lat_max, cloak.lon_min, cloak.lon_max)
    assert np.array_equal(counted, cloak.count) and (cloak.count >= k).all()
    # minimal: the quadrant one level down that holds the point has fewer than k points
    mid_lat, mid_lon = (cloak.lat_min + cloak.lat_max) / 2, (cloak.lon_min + cloak.lon_max) / 2
    up, right = lat >= mid_lat, lon >= mid_lon
    sub = brute_count(lat, lon, np.where(up, mid_lat, cloak.lat_min), np.where(up, cloak.lat_max, mid_lat),
                      np.where(right, mid_lon, cloak.lon_min), np.where(right, cloak.lon_max, mid_lon))
    assert (sub < k).all()
    # square cells in metres, sides halving from the root
    side_ns = (cloak.lat_max - cloak.lat_min) * M_PER_DEG
    assert np.allclose(side_ns, cloak.cell_m, rtol=1e-9)
    levels = np.log2(cloak.cell_m.max() / cloak.cell_m)
    assert np.allclose(levels, np.round(levels))


def test_spatial_cloak_suppresses_points_beyond_the_largest_cell():
    # Prepare: a dense cluster (sd about 300 m) and a few isolated points 20 km away
    rng = np.random.default_rng(5)
    lat, lon = 52.52 + rng.normal(0, 0.003, 400), 13.405 + rng.normal(0, 0.005, 400)
    lat = np.append(lat, [52.7, 52.3, 52.35])
    lon = np.append(lon, [13.1, 13.7, 13.1])

    # Execute
    cloak = spatial_cloak(lat, lon, 5, max_cell_m=3000.0)

    # Assert
    assert cloak.suppressed[-3:].all() and not cloak.suppressed[:400].any()
    assert np.isnan(cloak.lat_min[-3:]).all() and (cloak.count[-3:] == 0).all()
    assert np.nanmax(cloak.cell_m) <= 3000.0


def test_spatial_cloak_with_fewer_than_k_points_suppresses_all():
    # Execute
    cloak = spatial_cloak([52.5, 52.6], [13.4, 13.5], 3)

    # Assert
    assert cloak.suppressed.all() and np.isnan(cloak.cell_m).all()


def test_spatial_cloak_respects_the_minimum_cell_and_a_fixed_area():
    # Prepare: 50 points on one spot
    lat, lon = np.full(50, 52.52), np.full(50, 13.405)
    area = (52.3, 52.7, 13.0, 13.8)

    # Execute
    cloak = spatial_cloak(lat, lon, 10, min_cell_m=100.0, area=area)

    # Assert
    assert (cloak.cell_m >= 100.0).all() and (cloak.cell_m < 200.0).all() and (cloak.count == 50).all()
    assert (cloak.lat_min >= area[0]).all() and (cloak.lon_max <= area[3] + 1e-9).all()
    with pytest.raises(ValueError, match="inside area"):
        spatial_cloak([10.0], [13.5], 2, area=area)


def test_spatial_cloak_one_million_points():
    # Prepare
    lat, lon = city_points(1_000_000, seed=6)

    # Execute
    cloak = spatial_cloak(lat, lon, 10)

    # Assert
    assert cloak.count.shape == (1_000_000,) and (cloak.count[~cloak.suppressed] >= 10).all()
    assert np.median(cloak.cell_m) < 200.0


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 1}, "k must be an int >= 2"), ({"k": 2.5}, "k must"), ({"k": True}, "k must"),
    ({"k": 5, "min_cell_m": 0}, "min_cell_m"), ({"k": 5, "max_cell_m": -1}, "max_cell_m"),
    ({"k": 5, "area": (1, 2)}, "area"),
])
def test_spatial_cloak_validates_arguments(kwargs, match):
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        spatial_cloak([52.5, 52.6], [13.4, 13.5], **kwargs)


# --- Lambert W and the planar Laplace -------------------------------------------------------------

def test_lambertw_m1_matches_scipy():
    # Prepare: from 1e-5 above the branch point to -1e-300 (scipy itself is inexact closer in)
    z = np.concatenate([-np.exp(-1) + np.logspace(-5, np.log10(np.exp(-1)) - 1e-9, 3000),
                        -np.logspace(-300, -1, 3000)])

    # Execute
    w = lambertw_m1(z)

    # Assert
    ref = special.lambertw(z, -1).real
    assert np.allclose(w, ref, rtol=1e-13, atol=0)


def test_lambertw_m1_near_the_branch_point_and_at_the_ends():
    # Prepare
    z = -np.exp(-1) + np.logspace(-16, -5, 200)

    # Execute
    w = lambertw_m1(z)

    # Assert: the defining identity (to the conditioning near -1/e), the branch and the ends
    assert (w <= -1).all() and np.allclose(w * np.exp(w), z, rtol=1e-15, atol=1e-17)
    assert lambertw_m1(-1 / math.e) == -1.0 and lambertw_m1(0.0) == -math.inf
    with pytest.raises(ValueError, match="z must be"):
        lambertw_m1(0.1)
    with pytest.raises(ValueError, match="z must be"):
        lambertw_m1(-0.5)


def displacement(lat0, lon0, lat1, lon1):
    dy = (lat1 - lat0) * M_PER_DEG
    dx = (lon1 - lon0) * M_PER_DEG * np.cos(np.radians(lat0))
    return np.hypot(dx, dy), np.arctan2(dy, dx) % (2 * np.pi)


def test_planar_laplace_radius_angle_and_mean_follow_the_distribution():
    # Prepare
    eps = math.log(4) / 200
    n = 200_000
    lat, lon = city_points(n, seed=7)

    # Execute
    nlat, nlon = geo_indistinguishable(lat, lon, eps, rng=SecureRNG(seed=11))

    # Assert
    r, theta = displacement(lat, lon, nlat, nlon)
    cdf = lambda x: 1 - (1 + eps * x) * np.exp(-eps * x)  # noqa: E731
    assert stats.kstest(r, cdf).pvalue > 1e-3
    assert stats.kstest(theta, stats.uniform(0, 2 * np.pi).cdf).pvalue > 1e-3
    assert abs(r.mean() - 2 / eps) < 0.01 * (2 / eps)
    assert abs(np.median(r) - 1.67834699 / eps) < 0.01 / eps   # median of Gamma(2, 1/eps)


def test_planar_laplace_is_reproducible_only_with_the_same_seeded_stream():
    # Prepare
    lat, lon = city_points(100, seed=8)

    # Execute
    a = geo_indistinguishable(lat, lon, 0.01, rng=SecureRNG(seed=3, stream=1))
    b = geo_indistinguishable(lat, lon, 0.01, rng=SecureRNG(seed=3, stream=1))
    c = geo_indistinguishable(lat, lon, 0.01, rng=SecureRNG(seed=3, stream=2))
    d = geo_indistinguishable(lat, lon, 0.01)          # OS-keyed default

    # Assert
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])
    assert np.all(displacement(lat, lon, *d)[0] < 5000)


def test_planar_laplace_stays_on_the_globe_near_poles_and_the_antimeridian():
    # Prepare
    lat = np.array([89.9999, -89.9999, 10.0, 90.0])
    lon = np.array([0.0, 179.9999, -179.9999, 45.0])

    # Execute
    nlat, nlon = geo_indistinguishable(np.repeat(lat, 1000), np.repeat(lon, 1000), 1 / 500.0,
                                       rng=SecureRNG(seed=1))

    # Assert
    assert (np.abs(nlat) <= 90).all() and (nlon >= -180).all() and (nlon < 180).all()
    assert np.isfinite(nlat).all() and np.isfinite(nlon).all()


def test_planar_laplace_moves_points_along_great_circles_for_any_distance():
    # Prepare: epsilon so small that displacements reach thousands of km, past poles and
    # around the globe
    lat = np.repeat([52.5, 89.0, -60.0, 0.0], 500)
    lon = np.repeat([13.4, 0.0, 170.0, -179.9], 500)
    eps = 1e-9

    # Execute
    nlat, nlon = geo_indistinguishable(lat, lon, eps, rng=SecureRNG(seed=5))

    # Assert: on the globe, and the great-circle distance is the drawn radius modulo the
    # circumference (folded into [0, pi R]), which the same stream reproduces
    assert (np.abs(nlat) <= 90).all() and (nlon >= -180).all() and (nlon < 180).all()
    gen = SecureRNG(seed=5)
    u = gen.uniform(2 * lat.size)
    p = u[lat.size:]
    from scipy.special import lambertw
    r = -(np.real(lambertw((p - 1) / np.e, k=-1)) + 1) / eps
    arc = np.mod(r / EARTH_RADIUS_M, 2 * np.pi)
    arc = np.where(arc > np.pi, 2 * np.pi - arc, arc)
    p1, p2 = np.radians(lat), np.radians(nlat)
    dl = np.radians(nlon - lon)
    central = np.arccos(np.clip(np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl),
                                -1, 1))
    assert np.abs(central - arc).max() < 1e-6
    assert r.max() > 2e7   # some went more than half way round


@pytest.mark.parametrize("eps", [0, -1.0, np.nan, np.inf])
def test_planar_laplace_refuses_non_positive_epsilon(eps):
    # Execute / Assert
    with pytest.raises(ValueError, match="epsilon"):
        geo_indistinguishable([52.0], [13.0], eps, rng=SecureRNG(seed=0))


def test_planar_laplace_refuses_numpy_generators():
    # Execute / Assert
    with pytest.raises(ValueError, match="SecureRNG"):
        geo_indistinguishable([52.0], [13.0], 0.01, rng=np.random.default_rng(0))
