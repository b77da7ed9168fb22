"""The synthetic smart city: loop detectors, environmental sensors and smart meters in districts.

Every value is a counter-based hash of (seed, stream, device or district or hour, counter)
(``privcity.data._hash``), so device i's records depend on (seed, i) and the city's shape
(n_districts) only: a rank that generates devices ``range(lo, hi)`` gets exactly the rows the full
city has for them. Time is in whole hours (15-minute slots for meters) counted from
:data:`CITY_EPOCH`; each device starts at its own hour within the first :data:`WINDOW_DAYS` days
and its samples are consecutive, so the per-hour noise of device i at hour t is the same whatever
``samples_per_device`` is.

Record generators return :class:`Records` in physical units (numpy Generator-free; simulation
data, not secure randomness). Values are bit-identical for one numpy build on one kind of CPU;
numpy's vectorised log, cos and exp may round differently on other CPUs, so ranks on a mixed
cluster agree only to float precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import _hash as H
from .schema import Field, Schema

__all__ = [
    "CITY_EPOCH", "WINDOW_DAYS", "Records", "traffic_records", "environment_records",
    "smart_meter_records", "traffic_schema", "environment_schema", "smart_meter_schema",
    "PM25_BREAKPOINTS", "AQ_LEVELS",
]

CITY_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, a Monday
WINDOW_DAYS = 28
CHUNK_DEVICES = 4096     # devices generated per vectorised chunk (bounds the temporaries)

# US EPA 24-h PM2.5 breakpoints (ug/m3, 2012): good <= 12, moderate <= 35.4, above: unhealthy
# (for sensitive groups and worse).
PM25_BREAKPOINTS = (12.0, 35.4)
AQ_LEVELS = ("good", "moderate", "unhealthy")

# Streams: one per (record kind, purpose); never reuse a number.
_S_WEATHER, _S_DISTRICT = 1, 2
_S_TRAFFIC_DEV, _S_TRAFFIC_HOUR = 10, 11
_S_ENV_DEV, _S_ENV_HOUR, _S_ENV_ROAD_DEV, _S_ENV_ROAD_HOUR = 20, 21, 22, 23
_S_METER_DEV, _S_METER_SLOT = 30, 31
_HOUR_OFFSET = 16        # counters use hour + 16 so that incident look-backs stay >= 0


@dataclass(frozen=True)
class Records:
    """Raw records of a block of devices, rows grouped by device.

    Attributes
    ----------
    values : numpy.ndarray
        float64 (N, len(schema.fields)), columns in ``schema.names`` order, physical units;
        categorical fields hold their integer codes.
    time : numpy.ndarray
        int64 (N,), Unix seconds of each row.
    offsets : numpy.ndarray
        int64 (n_devices + 1,): device d's rows are ``values[offsets[d]:offsets[d + 1]]``.
    device_ids, district : numpy.ndarray
        int64 (n_devices,): global ids and districts.
    schema : Schema
    """

    values: np.ndarray
    time: np.ndarray
    offsets: np.ndarray
    device_ids: np.ndarray
    district: np.ndarray
    schema: Schema

    @property
    def n_devices(self) -> int:
        return len(self.device_ids)

    def column(self, name: str) -> np.ndarray:
        """The column of field ``name`` (a view)."""
        return self.values[:, self.schema.names.index(self.schema.field(name).name)]

    def features(self) -> np.ndarray:
        """The non-target columns, (N, len(schema.features)), in ``schema.features`` order."""
        idx = [self.schema.names.index(n) for n in self.schema.features]
        return self.values[:, idx]


# --- schemas ------------------------------------------------------------------------------------

def _time_fields() -> tuple[Field, ...]:
    return (Field("hour", "numeric", "public", "h", 0.0, 24.0, period=24.0),
            Field("day_of_week", "numeric", "public", "day (0 = Monday)", 0.0, 7.0, period=7.0))


def _district_field(n_districts: int) -> Field:
    # one district still spans codes 0..1: a categorical field needs lower < upper
    return Field("district", "categorical", "quasi", "", 0, max(n_districts - 1, 1))


@lru_cache(maxsize=64)
def traffic_schema(n_districts: int = 8) -> Schema:
    """Loop detector records; target: the next hour's vehicle count."""
    return Schema(_time_fields() + (
        _district_field(n_districts),
        Field("vehicle_count", "numeric", "public", "veh/h", 0.0, 4000.0),
        Field("mean_speed", "numeric", "public", "km/h", 0.0, 130.0),
        Field("occupancy", "numeric", "public", "%", 0.0, 100.0),
        Field("rain", "numeric", "public", "mm/h", 0.0, 50.0),
        Field("next_hour_count", "numeric", "public", "veh/h", 0.0, 4000.0),
    ), target="next_hour_count")


@lru_cache(maxsize=64)
def environment_schema(n_districts: int = 8) -> Schema:
    """Environmental sensor records (with the count of the nearest road); target: PM2.5."""
    return Schema(_time_fields() + (
        _district_field(n_districts),
        Field("temperature", "numeric", "public", "degC", -30.0, 45.0),
        Field("humidity", "numeric", "public", "%", 0.0, 100.0),
        Field("wind_speed", "numeric", "public", "m/s", 0.0, 40.0),
        Field("rain", "numeric", "public", "mm/h", 0.0, 50.0),
        Field("traffic_count", "numeric", "public", "veh/h", 0.0, 4000.0),
        Field("no2", "numeric", "public", "ug/m3", 0.0, 400.0),
        Field("noise_db", "numeric", "public", "dB(A)", 20.0, 120.0),
        Field("pm25", "numeric", "public", "ug/m3", 0.0, 500.0),
    ), target="pm25")


@lru_cache(maxsize=64)
def smart_meter_schema(n_districts: int = 8) -> Schema:
    """Smart meter records at 15-minute resolution; target: the next slot's consumption."""
    return Schema(_time_fields() + (
        _district_field(n_districts),
        Field("temperature", "numeric", "public", "degC", -30.0, 45.0),
        Field("household_size", "numeric", "sensitive", "persons", 1.0, 6.0),
        Field("consumption_kwh", "numeric", "sensitive", "kWh per 15 min", 0.0, 2.5),
        Field("next_consumption_kwh", "numeric", "sensitive", "kWh per 15 min", 0.0, 2.5),
    ), target="next_consumption_kwh")


# --- shared city state: weather and district regimes ---------------------------------------------

def _bump(h: np.ndarray, mu: float, s: float) -> np.ndarray:
    return np.exp(-0.5 * ((h - mu) / s) ** 2)


@lru_cache(maxsize=16)
def _weather(seed: int, n_hours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """City-wide weather per hour 0 .. n_hours - 1: temperature, humidity, wind, rain."""
    t = np.arange(n_hours, dtype=np.int64)
    day = t // 24
    h = (t % 24).astype(np.float64) + 0.5
    kd = H.entity_keys(seed, _S_WEATHER, day)
    kt = H.entity_keys(seed, _S_WEATHER, t + (1 << 32))
    t_day = 9.0 + 5.0 * H.normal(kd, 0)
    temp = t_day + 5.0 * np.sin(2 * np.pi * (h - 9.0) / 24.0) + 0.7 * H.normal(kt, 0)
    wind = np.exp(1.0 + 0.45 * H.normal(kd, 1)) * (0.75 + 0.35 * _bump(h, 14.0, 4.0)) \
        * np.exp(0.2 * H.normal(kt, 1))
    rainy_day = H.uniform(kd, 2) < 0.3
    rain = np.where(rainy_day & (H.uniform(kt, 2) < 0.45), 1.5 * np.exp(0.7 * H.normal(kt, 3)), 0.0)
    hum = np.clip(72.0 - 2.2 * (temp - t_day) + 12.0 * (rain > 0) + 7.0 * H.normal(kt, 4), 15.0, 100.0)
    for a in (temp, hum, wind, rain):
        a.setflags(write=False)
    return temp, hum, wind, rain


def _weather_upto(seed: int, last_hour: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The weather table through last_hour (hour t's weather does not depend on the length)."""
    return _weather(seed, max(1024, 1 << int(last_hour).bit_length()))


@lru_cache(maxsize=64)
def _districts(seed: int, n_districts: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-district regime: traffic level (x mean demand) and PM2.5 background (ug/m3)."""
    if isinstance(n_districts, bool) or not isinstance(n_districts, (int, np.integer)) or n_districts < 1:
        raise ValueError(f"n_districts must be an int >= 1, got {n_districts!r}")
    k = H.entity_keys(seed, _S_DISTRICT, np.arange(n_districts))
    level = 0.55 + 1.1 * H.uniform(k, 0)
    background = 5.0 + 24.0 * H.uniform(k, 1)
    level.setflags(write=False)
    background.setflags(write=False)
    return level, background


def _device_ids(devices: range | np.ndarray | None, n_devices: int | None, what: str) -> np.ndarray:
    if devices is None:
        if n_devices is None:
            raise ValueError(f"give {what} or devices")
        if isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer)) or n_devices < 0:
            raise ValueError(f"{what} must be an int >= 0, got {n_devices!r}")
        return np.arange(int(n_devices), dtype=np.int64)
    ids = np.asarray(devices, dtype=np.int64).reshape(-1)
    if ids.size and ids.min() < 0:
        raise ValueError("device ids must be >= 0")
    if n_devices is not None and ids.size and ids.max() >= n_devices:
        raise ValueError(f"devices must lie in range({n_devices}), got up to {int(ids.max())}")
    if ids.size > 1 and not isinstance(devices, range):
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"device ids must be distinct: {int(uniq[counts > 1][0])} is given "
                             f"{int(counts.max())} times")
    return ids


def _count(n: int, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {n!r}")
    return int(n)


# --- traffic ------------------------------------------------------------------------------------

def _profile(h: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Share of peak demand by hour: morning and evening rush on weekdays, a midday hump on
    weekends."""
    wd = 0.05 + 0.95 * _bump(h, 8.0, 1.2) + 0.85 * _bump(h, 17.5, 1.5) + 0.4 * _bump(h, 13.0, 3.0)
    we = 0.07 + 0.65 * _bump(h, 13.5, 3.5) + 0.15 * _bump(h, 22.0, 2.0)
    return np.where(weekend, we, wd)


def _traffic(seed: int, ids: np.ndarray, level: np.ndarray, t: np.ndarray,
             dev_stream: int, hour_stream: int) -> dict[str, np.ndarray]:
    """Vehicle count, speed, occupancy of the roads of devices ``ids`` at hours t (D, T)."""
    kd = H.entity_keys(seed, dev_stream, ids)
    kh = H.entity_keys(seed, hour_stream, ids)[:, None]
    lanes = 1 + H.integers(kd, 0, 3)
    capacity = 900.0 * lanes
    demand = np.clip(0.5 * level * np.exp(0.25 * H.normal(kd, 1)), 0.08, 1.1)
    v_free = np.array([45.0, 60.0, 80.0])[lanes - 1] + 5.0 * H.normal(kd, 2)
    _, _, _, rain_t = _weather_upto(seed, int(t.max()))
    rain = rain_t[t]
    hour = (t % 24).astype(np.float64) + 0.5
    weekend = (t // 24) % 7 >= 5
    c = (t + _HOUR_OFFSET).astype(np.uint64) * np.uint64(16)
    kday = H.entity_keys(seed, hour_stream, ids + (1 << 40))[:, None]
    day_factor = np.exp(0.08 * H.normal(kday, t // 24))
    lam = (capacity * demand)[:, None] * _profile(hour, weekend) * day_factor * np.where(rain > 0, 0.88, 1.0)
    count = lam * np.exp(0.05 * H.normal(kh, c)) + np.sqrt(lam) * H.normal(kh, c + np.uint64(1))
    # Incidents: start with p = 0.006 per hour, last 1-3 hours (looked back through the counters).
    incident = np.zeros(t.shape, dtype=bool)
    for back in range(3):
        cb = c - np.uint64(16 * back)
        started = H.uniform(kh, cb + np.uint64(5)) < 0.006
        incident |= started & (H.integers(kh, cb + np.uint64(6), 3) >= back)
    count = np.maximum(np.rint(np.where(incident, 0.65 * count, count)), 0.0)
    x = np.minimum(count / capacity[:, None], 1.2)
    speed = v_free[:, None] * (1.0 - 0.7 * x * x) * np.where(rain > 0, 0.9, 1.0) \
        + 1.5 * H.normal(kh, c + np.uint64(2))
    speed = np.where(incident, 0.35 * speed, speed)
    speed = np.clip(speed, 3.0, 130.0)
    # Occupancy: density (veh/km/lane) times the effective vehicle + loop length (6.5 m).
    occupancy = 100.0 * 0.0065 * count / (speed * lanes[:, None]) \
        * np.exp(0.05 * H.normal(kh, c + np.uint64(3)))
    occupancy = np.clip(np.where(incident, 2.5 * occupancy, occupancy), 0.0, 98.0)
    return {"count": count, "speed": speed, "occupancy": occupancy, "rain": rain,
            "incident": incident}


def _start_hours(seed: int, stream: int, ids: np.ndarray) -> np.ndarray:
    k = H.entity_keys(seed, stream, ids)
    return H.integers(k, 1 << 20, WINDOW_DAYS * 24)


def _district_of(seed: int, stream: int, ids: np.ndarray, n_districts: int) -> np.ndarray:
    return H.integers(H.entity_keys(seed, stream, ids), 1 << 21, n_districts)


def _traffic_block(seed: int, ids: np.ndarray, n_samples: int, n_districts: int,
                   offset: int = 0) -> dict[str, np.ndarray]:
    """Loop detector i: n_samples + 1 consecutive hours from its start hour (the last one gives
    the target of the one before)."""
    level, _ = _districts(seed, n_districts)
    district = _district_of(seed, _S_TRAFFIC_DEV, ids, n_districts)
    t = _start_hours(seed, _S_TRAFFIC_DEV, ids)[:, None] + (offset + np.arange(n_samples + 1))
    tr = _traffic(seed, ids, level[district], t, _S_TRAFFIC_DEV, _S_TRAFFIC_HOUR)
    return {"t": t, "district": district, **tr}


def _environment_block(seed: int, ids: np.ndarray, n_samples: int, n_districts: int,
                       offset: int = 0) -> dict[str, np.ndarray]:
    """Environmental sensor i at n_samples consecutive hours, with the traffic of its road."""
    level, background = _districts(seed, n_districts)
    district = _district_of(seed, _S_ENV_DEV, ids, n_districts)
    t = _start_hours(seed, _S_ENV_DEV, ids)[:, None] + (offset + np.arange(n_samples))
    tr = _traffic(seed, ids, level[district], t, _S_ENV_ROAD_DEV, _S_ENV_ROAD_HOUR)
    temp_t, hum_t, wind_t, _ = _weather_upto(seed, int(t.max()))
    kd = H.entity_keys(seed, _S_ENV_DEV, ids)
    kh = H.entity_keys(seed, _S_ENV_HOUR, ids)[:, None]
    c = (t + _HOUR_OFFSET).astype(np.uint64) * np.uint64(8)
    hour = (t % 24).astype(np.float64) + 0.5
    exposure = 0.35 + 0.65 * H.uniform(kd, 0)              # how close the sensor is to the road
    site = np.exp(0.2 * H.normal(kd, 1))                    # local sources, siting
    heat = 0.8 * (level[district] - 1.0) + 0.4 * H.normal(kd, 2)  # urban heat island
    temperature = temp_t[t] + heat[:, None] + 0.4 * H.normal(kh, c)
    humidity = np.clip(hum_t[t] + 3.0 * H.normal(kh, c + np.uint64(1)), 5.0, 100.0)
    wind = wind_t[t] * np.exp(0.15 * H.normal(kd, 3))[:, None]
    # Night and early-morning inversions trap pollution when the wind is low.
    inversion = np.exp(-wind / 1.5) * np.clip(_bump(hour, 6.0, 2.5) + _bump(hour, 23.0, 2.5), 0, 1)
    dispersion = 2.0 / (wind + 0.5)
    road = exposure[:, None] * tr["count"] / 1000.0 * dispersion
    wet = np.where(tr["rain"] > 0, 0.7, 1.0)
    growth = 1.0 + 0.5 * np.clip((humidity - 70.0) / 30.0, 0.0, 1.0)  # hygroscopic growth
    stagnation = (2.5 / (wind + 1.0)) ** 0.8                # regional build-up on calm days
    pm25 = (background[district][:, None] * site[:, None] * stagnation * (1.0 + 1.5 * inversion)
            + 20.0 * road) * growth * wet * np.exp(0.25 * H.normal(kh, c + np.uint64(2)))
    no2 = (5.0 + 0.7 * background[district][:, None] + 30.0 * road * (1.0 + 0.5 * inversion)) \
        * np.exp(0.15 * H.normal(kh, c + np.uint64(3)))
    noise_db = 38.0 + 9.0 * np.log10(1.0 + tr["count"]) * exposure[:, None] ** 0.3 \
        + 3.0 * _bump(hour, 14.0, 4.0) + 1.5 * H.normal(kh, c + np.uint64(4))
    return {"t": t, "district": district, "temperature": temperature, "humidity": humidity,
            "wind": wind, "rain": tr["rain"], "count": tr["count"], "no2": np.clip(no2, 0.0, 400.0),
            "noise_db": np.clip(noise_db, 20.0, 120.0), "pm25": np.clip(pm25, 0.0, 500.0)}


def _meter_block(seed: int, ids: np.ndarray, n_samples: int, n_districts: int,
                 offset: int = 0) -> dict[str, np.ndarray]:
    """Household i: n_samples + 1 consecutive 15-minute slots of consumption (kWh)."""
    district = _district_of(seed, _S_METER_DEV, ids, n_districts)
    kd = H.entity_keys(seed, _S_METER_DEV, ids)
    ks = H.entity_keys(seed, _S_METER_SLOT, ids)[:, None]
    slot = 4 * _start_hours(seed, _S_METER_DEV, ids)[:, None] + (offset + np.arange(n_samples + 1))
    t = slot // 4
    temp_t, _, _, _ = _weather_upto(seed, int(t.max()))
    size_cdf = np.cumsum([0.30, 0.33, 0.15, 0.14, 0.06])     # persons 1..5, else 6
    size = 1.0 + np.searchsorted(size_cdf, H.uniform(kd, 0)).astype(np.float64)
    base = (0.03 + 0.012 * size) * np.exp(0.2 * H.normal(kd, 1))
    heating = H.uniform(kd, 2) < 0.25
    away = H.uniform(kd, 3) < 0.6                           # out at work on weekdays
    amp_m = (0.05 + 0.04 * size) * np.exp(0.3 * H.normal(kd, 4))
    amp_e = (0.10 + 0.07 * size) * np.exp(0.3 * H.normal(kd, 5))
    h = (slot % 96).astype(np.float64) / 4.0 + 0.125
    weekend = (t // 24) % 7 >= 5
    home_day = ~(away[:, None] & ~weekend)
    c = slot.astype(np.uint64) * np.uint64(4)
    temperature = temp_t[t]
    kwh = (base[:, None]
           + amp_m[:, None] * _bump(h, 7.5, 0.8)
           + amp_e[:, None] * _bump(h, 19.5, 1.8)
           + home_day * (0.03 * size)[:, None] * _bump(h, 13.0, 3.0)
           + heating[:, None] * 0.02 * np.sqrt(size)[:, None] * np.maximum(16.0 - temperature, 0.0)
           + (H.uniform(ks, c) < 0.06) * 0.3 * np.exp(0.5 * H.normal(ks, c + np.uint64(1))))
    kwh = np.clip(kwh * np.exp(0.15 * H.normal(ks, c + np.uint64(2))), 0.0, 2.5)
    return {"t": t, "slot": slot, "district": district, "temperature": temperature,
            "household_size": size, "kwh": kwh}


# --- public record generators --------------------------------------------------------------------

def _hour_dow(t: np.ndarray, hour_frac: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    hour = (t % 24).astype(np.float64) if hour_frac is None else hour_frac
    return hour, ((t // 24) % 7).astype(np.float64)


def _assemble(schema: Schema, ids: np.ndarray, n_samples: int, blocks: list[tuple[np.ndarray, dict]],
              columns) -> Records:
    n = len(ids) * n_samples
    values = np.empty((n, len(schema.fields)), np.float64)
    time = np.empty(n, np.int64)
    district = np.empty(len(ids), np.int64)
    row = 0
    for lo, b in blocks:
        cols, tsec = columns(b)
        m = cols[0].size
        for j, col in enumerate(cols):
            values[row:row + m, j] = col.reshape(-1)
        time[row:row + m] = tsec.reshape(-1)
        district[lo:lo + len(b["district"])] = b["district"]
        row += m
    offsets = np.arange(len(ids) + 1, dtype=np.int64) * n_samples
    return Records(values, time, offsets, ids.copy(), district, schema)


def _blocks(fn, seed, ids, n_samples, n_districts, offset):
    return [(lo, fn(seed, ids[lo:lo + CHUNK_DEVICES], n_samples, n_districts, offset))
            for lo in range(0, len(ids), CHUNK_DEVICES)]


def traffic_records(*, n_devices: int | None = None, samples_per_device: int = 48, n_districts: int = 8,
                    seed: int = 0, devices: range | None = None, offset: int = 0) -> Records:
    """Hourly loop detector records.

    Parameters
    ----------
    n_devices : int
        Size of the city; devices are ``range(n_devices)`` unless ``devices`` is given.
    samples_per_device : int
        Consecutive hours per device, from the device's own start hour.
    n_districts, seed : int
        The city; device i's rows depend on (seed, n_districts, i) only.
    devices : range or array of int, optional
        Only these devices (ids in ``range(n_devices)`` when n_devices is given).
    offset : int
        Skip the device's first ``offset`` hours: rows continue where an earlier call stopped.

    Returns
    -------
    Records
        :func:`traffic_schema` columns: hour, day_of_week, district, vehicle_count (veh/h),
        mean_speed (km/h), occupancy (%), rain (mm/h), next_hour_count (veh/h). Daily and weekly
        cycles, district traffic levels, incidents (speed drops, occupancy spikes).
    """
    s = _count(samples_per_device, "samples_per_device")
    off = _count(offset, "offset", 0)
    ids = _device_ids(devices, n_devices, "n_devices")
    _districts(seed, n_districts)

    def columns(b):
        t = b["t"][:, :s]
        hour, dow = _hour_dow(t)
        d = np.broadcast_to(b["district"][:, None], t.shape).astype(np.float64)
        return ([hour, dow, d, b["count"][:, :s], b["speed"][:, :s], b["occupancy"][:, :s],
                 b["rain"][:, :s], b["count"][:, 1:]], CITY_EPOCH + 3600 * t)

    return _assemble(traffic_schema(n_districts), ids, s,
                     _blocks(_traffic_block, seed, ids, s, n_districts, off),
                     columns)


def environment_records(*, n_devices: int | None = None, samples_per_device: int = 48, n_districts: int = 8,
                        seed: int = 0, devices: range | None = None, offset: int = 0) -> Records:
    """Hourly environmental sensor records: PM2.5, NO2 (ug/m3), temperature (degC), humidity (%),
    wind (m/s), rain (mm/h), noise (dB(A)) and the vehicle count of the nearest road.

    Pollution follows traffic, dispersion (wind), night inversions, humidity and the district's
    background; parameters as in :func:`traffic_records`. Target: pm25.
    """
    s = _count(samples_per_device, "samples_per_device")
    off = _count(offset, "offset", 0)
    ids = _device_ids(devices, n_devices, "n_devices")
    _districts(seed, n_districts)

    def columns(b):
        t = b["t"]
        hour, dow = _hour_dow(t)
        d = np.broadcast_to(b["district"][:, None], t.shape).astype(np.float64)
        return ([hour, dow, d, b["temperature"], b["humidity"], b["wind"], b["rain"], b["count"],
                 b["no2"], b["noise_db"], b["pm25"]], CITY_EPOCH + 3600 * t)

    return _assemble(environment_schema(n_districts), ids, s,
                     _blocks(_environment_block, seed, ids, s, n_districts, off), columns)


def smart_meter_records(*, n_households: int | None = None, samples_per_household: int = 96,
                        n_districts: int = 8, seed: int = 0, devices: range | None = None,
                        offset: int = 0) -> Records:
    """Household consumption at 15-minute resolution (kWh per slot), consecutive slots.

    Household size (1-6 persons) and consumption are sensitive fields: consumption reveals
    presence and habits (morning and evening peaks, absence at work, electric heating).
    Target: next_consumption_kwh. ``offset`` counts 15-minute slots; other parameters as in
    :func:`traffic_records`.
    """
    s = _count(samples_per_household, "samples_per_household")
    off = _count(offset, "offset", 0)
    ids = _device_ids(devices, n_households, "n_households")
    _districts(seed, n_districts)

    def columns(b):
        t = b["t"][:, :s]
        slot = b["slot"][:, :s]
        hour, dow = _hour_dow(t, (slot % 96).astype(np.float64) / 4.0)
        d = np.broadcast_to(b["district"][:, None], t.shape).astype(np.float64)
        size = np.broadcast_to(b["household_size"][:, None], t.shape)
        return ([hour, dow, d, b["temperature"][:, :s], size, b["kwh"][:, :s], b["kwh"][:, 1:]],
                CITY_EPOCH + 900 * slot)

    return _assemble(smart_meter_schema(n_districts), ids, s,
                     _blocks(_meter_block, seed, ids, s, n_districts, off),
                     columns)
