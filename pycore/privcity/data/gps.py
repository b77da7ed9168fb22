"""Synthetic GPS traces of people moving between home, work and leisure places.

Each person has anchors (home in one of the city's residential clusters, work mostly in the
centre or a business park, one leisure place near home) and a routine (employment, working
hours, evenings out), so a few points identify a person at fine resolution and collisions grow
as the resolution coarsens: the material for the anonymization work. Person p depends on
(seed, p) only.
"""
from __future__ import annotations

import numpy as np

from . import _hash as H
from .city import CITY_EPOCH, _count, _device_ids

__all__ = ["GPS_DTYPE", "make_gps_traces"]

GPS_DTYPE = np.dtype([("person", "<i8"), ("timestamp", "<i8"), ("lat", "<f8"), ("lon", "<f8")])
_S_GPS_CITY, _S_GPS_PERSON, _S_GPS_POINT, _S_GPS_DAY = 50, 51, 52, 53
_N_RESIDENTIAL = 12
_N_BUSINESS = 4
_KM_PER_DEG_LAT = 110.574


def _ring(keys: np.ndarray, c: int, r_min: float, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    r = r_min + (r_max - r_min) * np.sqrt(H.uniform(keys, c))
    a = 2 * np.pi * H.uniform(keys, c + 1)
    return r * np.cos(a), r * np.sin(a)


def make_gps_traces(n_people: int | None, points_per_person: int, seed: int = 0, *,
                    city_center: tuple[float, float] = (52.52, 13.405), radius_km: float = 10.0,
                    interval_s: int = 1800, noise_m: float = 15.0,
                    people: range | None = None) -> np.ndarray:
    """GPS points of people over days, ``points_per_person`` each about every ``interval_s``.

    Parameters
    ----------
    n_people : int
        People ``0 .. n_people - 1`` (or ``people`` only, ids in that range).
    points_per_person : int
        Points per person, in time order, from a person-specific start within the first day.
    seed : int
        The city (its residential clusters and business parks) and everybody's routine.
    city_center : (lat, lon)
        Degrees.
    radius_km : float
        Scale of the city: residential clusters lie 15-85% of it from the centre.
    interval_s : int
        Mean sampling interval (each point jittered by up to +-interval_s / 3).
    noise_m : float
        Standard deviation of the GPS error per coordinate, metres.
    people : range or sequence of int, optional
        Generate only these people (same points as in the full set).

    Returns
    -------
    numpy.ndarray
        Structured array of :data:`GPS_DTYPE` (person, timestamp in Unix seconds, lat, lon),
        ``len(people) * points_per_person`` rows grouped by person.
    """
    t_count = _count(points_per_person, "points_per_person")
    ids = _device_ids(people, n_people, "n_people")
    lat0, lon0 = (float(v) for v in city_center)
    if not (-80.0 <= lat0 <= 80.0 and -180.0 <= lon0 <= 180.0):
        raise ValueError(f"city_center must be (lat, lon) in degrees with |lat| <= 80, got {city_center!r}")
    if not radius_km > 0 or not interval_s > 0 or not noise_m >= 0:
        raise ValueError("radius_km and interval_s must be > 0, noise_m >= 0")
    out = np.empty(len(ids) * t_count, GPS_DTYPE)
    if len(ids) == 0:
        return out
    kc = H.entity_keys(seed, _S_GPS_CITY, np.arange(_N_RESIDENTIAL + _N_BUSINESS))
    cx, cy = _ring(kc, 0, 0.15 * radius_km, 0.85 * radius_km)
    res_x, res_y = cx[:_N_RESIDENTIAL], cy[:_N_RESIDENTIAL]
    biz_x, biz_y = cx[_N_RESIDENTIAL:], cy[_N_RESIDENTIAL:]
    kp = H.entity_keys(seed, _S_GPS_PERSON, ids)
    cl = H.integers(kp, 0, _N_RESIDENTIAL)
    spread = 0.08 * radius_km
    home_x = res_x[cl] + spread * H.normal(kp, 1)
    home_y = res_y[cl] + spread * H.normal(kp, 2)
    in_centre = H.uniform(kp, 3) < 0.6
    park = H.integers(kp, 4, _N_BUSINESS)
    centre_sd, park_sd = 0.12 * radius_km, 0.05 * radius_km
    work_x = np.where(in_centre, centre_sd * H.normal(kp, 5), biz_x[park] + park_sd * H.normal(kp, 6))
    work_y = np.where(in_centre, centre_sd * H.normal(kp, 7), biz_y[park] + park_sd * H.normal(kp, 8))
    dist = 0.3 * radius_km * np.exp(0.5 * H.normal(kp, 9))
    ang = 2 * np.pi * H.uniform(kp, 10)
    leis_x, leis_y = home_x + dist * np.cos(ang), home_y + dist * np.sin(ang)
    employed = H.uniform(kp, 11) < 0.8
    w_start = 7.0 + 2.5 * H.uniform(kp, 12)
    w_end = w_start + 8.0 + 1.0 * H.uniform(kp, 13)
    commute = np.hypot(work_x - home_x, work_y - home_y) / 25.0 + 0.15   # hours, ~25 km/h
    start = (H.uniform(kp, 14) * 86400.0).astype(np.int64)

    for lo in range(0, len(ids), 8192):
        sl = slice(lo, lo + 8192)
        kq = H.entity_keys(seed, _S_GPS_POINT, ids[sl])[:, None]
        kday = H.entity_keys(seed, _S_GPS_DAY, ids[sl])[:, None]
        k = np.arange(t_count)
        jitter = (H.uniform(kq, 4 * k) - 0.5) * (2.0 / 3.0) * interval_s
        ts = start[sl, None] + k * interval_s + np.rint(jitter).astype(np.int64)
        hour = (ts % 86400) / 3600.0
        day = ts // 86400
        weekend = day % 7 >= 5                                  # day 0 of CITY_EPOCH is a Monday
        out_evening = H.uniform(kday, 2 * day) < 0.3
        out_weekend = H.uniform(kday, 2 * day + 1) < 0.5
        hx, hy = home_x[sl, None], home_y[sl, None]
        wx, wy = work_x[sl, None], work_y[sl, None]
        lx, ly = leis_x[sl, None], leis_y[sl, None]
        ws, we, cm = w_start[sl, None], w_end[sl, None], commute[sl, None]
        works = employed[sl, None] & ~weekend
        x, y = np.broadcast_to(hx, hour.shape), np.broadcast_to(hy, hour.shape)
        at_work = works & (hour >= ws) & (hour < we)
        x, y = np.where(at_work, wx, x), np.where(at_work, wy, y)
        going = works & (hour >= ws - cm) & (hour < ws)
        f = np.clip((hour - (ws - cm)) / cm, 0.0, 1.0)
        x, y = np.where(going, hx + f * (wx - hx), x), np.where(going, hy + f * (wy - hy), y)
        back = works & (hour >= we) & (hour < we + cm)
        f = np.clip((hour - we) / cm, 0.0, 1.0)
        x, y = np.where(back, wx + f * (hx - wx), x), np.where(back, wy + f * (hy - wy), y)
        leisure = (~weekend & out_evening & (hour >= 19.0) & (hour < 22.0)) | \
                  (weekend & out_weekend & (hour >= 11.0) & (hour < 17.0))
        x, y = np.where(leisure, lx, x), np.where(leisure, ly, y)
        x = x + noise_m / 1000.0 * H.normal(kq, 4 * k + 1)
        y = y + noise_m / 1000.0 * H.normal(kq, 4 * k + 2)
        rows = slice(lo * t_count, (lo + len(ts)) * t_count)
        out["person"][rows] = np.repeat(ids[sl], t_count)
        out["timestamp"][rows] = (CITY_EPOCH + ts).reshape(-1)
        out["lat"][rows] = (lat0 + y / _KM_PER_DEG_LAT).reshape(-1)
        out["lon"][rows] = (lon0 + x / (111.320 * np.cos(np.radians(lat0)))).reshape(-1)
    return out
