"""Federated learning tasks on the synthetic city: per-device datasets, partitions, a test set.

Usage::

    train = make_city("air_quality", n_devices=10_000, seed=7, devices=range(lo, hi))
    test = make_test_set("air_quality", seed=7)          # identical on every rank
    X, y = train.device(0)

Feature standardisation and the regression target's scaling are constants of the task and the
city (seed, n_districts): the mean and standard deviation over a reference population of
1,024 held-out pseudo-devices (ids ``REFERENCE_BASE + k``). No statistic of the generated
block is used, so every block, rank and test set is encoded identically.

The test set is a held-out population too: pseudo-devices ``TEST_BASE + k`` of the same city,
never among the training devices (ids ``< 2**40``), rebuilt identically by every rank.
"""
from __future__ import annotations

import hashlib
import os

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from ..noise import SecureRNG
from . import _hash as H
from .city import (AQ_LEVELS, CHUNK_DEVICES, PM25_BREAKPOINTS, Records, _count, _device_ids, _districts,
                   environment_records, environment_schema, smart_meter_records, smart_meter_schema,
                   traffic_records, traffic_schema)
from .encode import Encoder
from .preprocess import preprocess_record, resolve_treatment
from .schema import Field, Schema

__all__ = ["FederatedDataset", "TASKS", "PARTITIONS", "make_city", "make_test_set", "air_quality_schema",
           "REFERENCE_BASE", "TEST_BASE", "MAX_DEVICES"]

TASKS = ("traffic", "air_quality", "energy")
PARTITIONS = ("district", "dirichlet")
MAX_DEVICES = 1 << 40               # training device ids lie below
REFERENCE_BASE = 1 << 41            # pseudo-devices giving the standardisation constants
TEST_BASE = 1 << 42                 # pseudo-devices of the held-out test set
_REFERENCE_DEVICES = 1024
_DIRICHLET_POOL = 8                 # candidate hours per kept sample under the Dirichlet partition
_S_PARTITION = 40


@dataclass(frozen=True)
class FederatedDataset:
    """Rows of many devices in one matrix, grouped by device (CSR-like).

    Attributes
    ----------
    X : numpy.ndarray
        float32 (N, F), encoded and standardised features.
    y : numpy.ndarray
        float32 (N,) for regression (standardised: ``raw = y * target_scale + target_mean``),
        int64 (N,) class indices for classification.
    offsets : numpy.ndarray
        int64 (n_devices + 1,): device d's rows are ``X[offsets[d]:offsets[d + 1]]``.
    device_ids : numpy.ndarray
        int64 (n_devices,), global ids.
    district : numpy.ndarray
        int64 (n_devices,); 0 where the data has no districts (CSV without them).
    schema : Schema
        The raw record fields (before encoding), with their sensitivity flags.
    task_type : {"regression", "classification"}
    n_classes : int
        0 for regression.
    feature_names : list of str
        Names of X's columns (``hour_sin``, ``district=3``, ...).
    target_mean, target_scale : float
        Scaling of a regression target (0 and 1 for classification).
    class_names : tuple of str
        Label of each class index (classification).
    notes : tuple of str
        What loading did to the data that the caller should know (``load_csv``: rows left out,
        cells read as missing, columns not used, each with its reason); empty when nothing.
    task_note : str
        Which task the target makes and why (``load_csv``: "regression: ..."); empty for the
        synthetic city, whose task is fixed.
    population : (numpy.ndarray, numpy.ndarray) or None
        (device_ids, sizes), int64 each: every device of the source and its rows, whichever
        devices this dataset holds (``load_csv`` sets it: a rank that keeps one block of devices
        still knows them all); kept by ``subset``. None for the synthetic city.
    """

    X: np.ndarray
    y: np.ndarray
    offsets: np.ndarray
    device_ids: np.ndarray
    district: np.ndarray
    schema: Schema
    task_type: str
    n_classes: int
    feature_names: list[str]
    target_mean: float = 0.0
    target_scale: float = 1.0
    class_names: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    task_note: str = ""
    population: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = len(self.device_ids)
        if self.task_type not in ("regression", "classification"):
            raise ValueError(f"task_type must be 'regression' or 'classification', got {self.task_type!r}")
        if self.X.ndim != 2 or self.X.dtype != np.float32:
            raise ValueError("X must be a float32 (N, F) array")
        if self.y.shape != (self.X.shape[0],):
            raise ValueError(f"y must have shape ({self.X.shape[0]},), got {self.y.shape}")
        want = np.int64 if self.task_type == "classification" else np.float32
        if self.y.dtype != want:
            raise ValueError(f"y must be {np.dtype(want)} for {self.task_type}, got {self.y.dtype}")
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or self.offsets[-1] != self.X.shape[0] \
                or np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must be (n_devices + 1,), non-decreasing, from 0 to N")
        if self.district.shape != (n,):
            raise ValueError("district must have one entry per device")
        if len(self.feature_names) != self.X.shape[1]:
            raise ValueError("feature_names must name every column of X")
        if self.population is not None and (
                len(self.population) != 2 or self.population[0].shape != self.population[1].shape
                or self.population[0].ndim != 1):
            raise ValueError("population must be (device_ids, sizes), two arrays of one length")

    @property
    def n_devices(self) -> int:
        """Number of devices."""
        return len(self.device_ids)

    @property
    def sizes(self) -> np.ndarray:
        """Rows per device, int64 (n_devices,)."""
        return np.diff(self.offsets)

    def device(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the d-th device of this dataset (a local index; views, not copies)."""
        if not -self.n_devices <= d < self.n_devices:
            raise IndexError(f"device index {d} out of range for {self.n_devices} devices")
        d %= self.n_devices
        lo, hi = int(self.offsets[d]), int(self.offsets[d + 1])
        return self.X[lo:hi], self.y[lo:hi]

    def subset(self, device_indices: Sequence[int] | np.ndarray) -> FederatedDataset:
        """A new dataset holding the given devices (local indices), in the given order."""
        idx = np.asarray(device_indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_devices):
            raise IndexError(f"device indices must lie in range({self.n_devices})")
        sizes = self.sizes[idx]
        offsets = np.zeros(idx.size + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        rows = np.repeat(self.offsets[idx] - offsets[:-1], sizes) + np.arange(offsets[-1])
        return replace(self, X=self.X[rows], y=self.y[rows], offsets=offsets,
                       device_ids=self.device_ids[idx], district=self.district[idx])

    def label_counts(self) -> np.ndarray:
        """Classification: int64 (n_devices, n_classes), each device's rows per class."""
        if self.task_type != "classification":
            raise ValueError("label_counts is for classification datasets")
        dev = np.repeat(np.arange(self.n_devices), self.sizes)
        out = np.zeros((self.n_devices, self.n_classes), np.int64)
        np.add.at(out, (dev, self.y), 1)
        return out


# --- tasks ---------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def air_quality_schema(n_districts: int = 8) -> Schema:
    """Environmental + traffic features; target: the PM2.5 level (0 good, 1 moderate,
    2 unhealthy, by :data:`PM25_BREAKPOINTS`). PM2.5 itself is not a feature."""
    env = environment_schema(n_districts)
    fields = tuple(f for f in env.fields if f.name != "pm25")
    level = Field("aq_level", "categorical", "public", "", 0, len(AQ_LEVELS) - 1)
    return Schema(fields + (level,), "aq_level")


def _generate(task: str, ids: np.ndarray, samples: int, n_districts: int, seed: int,
              offset: int = 0) -> Records:
    kw = dict(n_districts=n_districts, seed=seed, devices=ids, offset=offset)
    if task == "traffic":
        return traffic_records(samples_per_device=samples, **kw)
    if task == "air_quality":
        return environment_records(samples_per_device=samples, **kw)
    return smart_meter_records(samples_per_household=samples, **kw)


def _task_schema(task: str, n_districts: int) -> Schema:
    return {"traffic": traffic_schema, "air_quality": air_quality_schema,
            "energy": smart_meter_schema}[task](n_districts)


def _split(task: str, rec: Records, schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    """Raw features (schema.features order) and raw target of generated records."""
    names = rec.schema.names
    feats = rec.values[:, [names.index(n) for n in schema.features]]
    if task == "air_quality":
        target = np.searchsorted(np.asarray(PM25_BREAKPOINTS), rec.column("pm25"), side="right")
    else:
        target = rec.column(schema.target)
    return feats, target


@lru_cache(maxsize=32)
def _reference(task: str, seed: int, n_districts: int) -> tuple[Encoder, float, float]:
    schema = _task_schema(task, n_districts)
    ids = REFERENCE_BASE + np.arange(_REFERENCE_DEVICES, dtype=np.int64)
    feats, target = _split(task, _generate(task, ids, 48, n_districts, seed), schema)
    enc = Encoder.fit(schema, feats)
    if task == "air_quality":
        return enc, 0.0, 1.0
    return enc, float(target.mean()), float(target.std())


def _check_task(task: str, partition: str, alpha: float) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    if partition == "dirichlet":
        if task != "air_quality":
            raise ValueError(f"the dirichlet partition skews labels: it needs a classification task "
                             f"(air_quality), not {task!r}")
        if not (isinstance(alpha, (int, float)) and np.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")


def _dirichlet_want(seed: int, ids: np.ndarray, samples: int, alpha: float, n_classes: int) -> np.ndarray:
    """Rows wanted per class, int64 (D, n_classes): device i draws its label mix
    p ~ Dirichlet(alpha) and the counts ~ Multinomial(samples, p) from its own stream."""
    keys = H.entity_keys(seed, _S_PARTITION, ids)
    p = H.dirichlet(keys, 0, alpha, n_classes)
    u = H.uniform(keys[:, None], np.arange(samples) + (1 << 20))
    cls = (u[:, :, None] > np.cumsum(p, axis=1)[:, None, :-1]).sum(axis=2)
    want = np.zeros((len(ids), n_classes), np.int64)
    np.add.at(want, (np.repeat(np.arange(len(ids)), samples), cls.reshape(-1)), 1)
    return want


def _dirichlet_select(labels: np.ndarray, want: np.ndarray, samples: int) -> np.ndarray:
    """Positions (D, samples) of the kept candidates: the first ``want[c]`` candidates (in time
    order) of each class c, then, for any shortfall, the first unused ones. Label n_classes marks
    a candidate not generated (only for devices already satisfied)."""
    n_classes = want.shape[1]
    want_x = np.concatenate([want, np.zeros((len(want), 1), np.int64)], axis=1)
    onehot = labels[:, :, None] == np.arange(n_classes + 1)
    rank = np.take_along_axis(np.cumsum(onehot, axis=1), labels[:, :, None], axis=2)[:, :, 0] - 1
    chosen = rank < np.take_along_axis(want_x, labels, axis=1)
    short = samples - chosen.sum(axis=1)
    free_rank = np.cumsum(~chosen, axis=1) - 1
    chosen |= ~chosen & (free_rank < short[:, None])
    return np.nonzero(chosen)[1].reshape(len(labels), samples)


def _dirichlet_chunk(task, chunk, s, n_districts, seed, alpha, schema):
    """Features, targets and districts of a chunk under the Dirichlet partition. The candidates
    are the device's consecutive hours, generated s at a time until its wanted counts are met
    (at most _DIRICHLET_POOL * s): the result equals selecting from the full pool."""
    n_classes = len(AQ_LEVELS)
    want = _dirichlet_want(seed, chunk, s, alpha, n_classes)
    d, pool = len(chunk), s * _DIRICHLET_POOL
    labels = np.full((d, pool), n_classes, np.int64)
    feats = np.zeros((d, pool, len(schema.features)), np.float64)
    active = np.arange(d)
    district = None
    for r in range(_DIRICHLET_POOL):
        rec = _generate(task, chunk[active], s, n_districts, seed, offset=r * s)
        f, t = _split(task, rec, schema)
        feats[active, r * s:(r + 1) * s] = f.reshape(len(active), s, -1)
        labels[active, r * s:(r + 1) * s] = t.reshape(len(active), s)
        if district is None:
            district = rec.district
        have = np.stack([(labels == c).sum(axis=1) for c in range(n_classes)], axis=1)
        active = np.nonzero((have < want).any(axis=1))[0]
        if active.size == 0:
            break
    pos = _dirichlet_select(labels, want, s)
    rows = (np.arange(d)[:, None] * pool + pos).reshape(-1)
    return feats.reshape(d * pool, -1)[rows], labels.reshape(-1)[rows], district


def _noise_rng(noise_seed, device_id: int) -> SecureRNG:
    return SecureRNG(b"privcity.data.preprocess/" + str(noise_seed).encode(), stream=int(device_id))


def make_city(task: str, *, n_devices: int, samples_per_device: int = 48, n_districts: int = 8, seed: int = 0,
              devices: range | Sequence[int] | None = None, partition: str = "district", alpha: float = 0.5,
              treatment: Mapping[str, str] | None = None, epsilon: float | None = None,
              noise_seed: int | bytes | None = None) -> FederatedDataset:
    """A federated learning task on the synthetic city.

    Parameters
    ----------
    task : {"traffic", "air_quality", "energy"}
        ``traffic``: regression, next hour's vehicle count of a loop detector from its current
        hour (count, speed, occupancy, rain, time, district). ``air_quality``: classification of
        the PM2.5 level (good / moderate / unhealthy) from weather, NO2, noise and the nearby
        traffic count. ``energy``: regression, a smart meter's next 15-minute consumption
        (household size and consumption are sensitive fields).
        Regression targets are standardised with the reference population's mean and standard
        deviation (``target_mean``, ``target_scale``), so they have about unit variance.
    n_devices : int
        Size of the city (devices ``0 .. n_devices - 1``).
    samples_per_device : int
        Rows per device: consecutive hours (15-minute slots for energy) from the device's start.
    n_districts, seed : int
        The city. Device i's rows depend on (task, seed, n_districts, partition, alpha, i) only.
    devices : range or sequence of int, optional
        Generate only these devices (global ids in ``range(n_devices)``): the same rows as the
        full city has for them. Default: all.
    partition : {"district", "dirichlet"}
        ``district``: devices keep their natural data, non-IID by district (traffic levels and
        pollution backgrounds differ). ``dirichlet`` (classification only): each device draws a
        label mix from Dirichlet(alpha) and keeps a matching subsample of its first
        8 x samples_per_device hours; small alpha gives one or two classes per device.
    alpha : float
        Dirichlet concentration (> 0).
    treatment, epsilon, noise_seed : optional
        When ``treatment`` or ``epsilon`` is given, each device's raw features go through
        :func:`privcity.data.preprocess` (epsilon default 1) before encoding; dropped fields
        become zero columns. Noise from a SecureRNG: OS-keyed, or with ``noise_seed`` one seeded
        stream per device (reproducible, simulations only). Pseudonymized fields use one key
        for all devices: random per call, or derived from ``noise_seed`` (then every block and
        rank of a simulation relabels alike).

    Returns
    -------
    FederatedDataset
    """
    _check_task(task, partition, alpha)
    if isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer)) \
            or not 0 < n_devices <= MAX_DEVICES:
        raise ValueError(f"n_devices must be an int in [1, 2**40], got {n_devices!r}")
    ids = _device_ids(devices, n_devices, "n_devices")
    return _build(task, ids, samples_per_device, n_districts, seed, partition, alpha, treatment, epsilon,
                  noise_seed)


def make_test_set(task: str, *, n_devices: int = 1000, samples_per_device: int = 48, n_districts: int = 8,
                  seed: int = 0) -> FederatedDataset:
    """The held-out test set of a task: ``n_devices`` pseudo-devices (ids ``TEST_BASE + k``) of
    the same city (seed, n_districts), natural (district) distribution, no preprocessing.

    It depends on none of make_city's ``devices``, ``n_devices`` or partition, so every rank
    rebuilds the same one; encoded with the same constants as the training data.
    """
    _check_task(task, "district", 1.0)
    n = _count(n_devices, "n_devices")
    ids = TEST_BASE + np.arange(n, dtype=np.int64)
    return _build(task, ids, samples_per_device, n_districts, seed, "district", 1.0, None, None, None)


def _build(task, ids, samples_per_device, n_districts, seed, partition, alpha, treatment, epsilon,
           noise_seed) -> FederatedDataset:
    s = _count(samples_per_device, "samples_per_device")
    _districts(seed, n_districts)
    schema = _task_schema(task, n_districts)
    enc, t_mean, t_scale = _reference(task, seed, n_districts)
    classification = task == "air_quality"
    private = treatment is not None or epsilon is not None
    zero: tuple[str, ...] = ()
    if private:
        how = resolve_treatment(schema, {k: v for k, v in (treatment or {}).items()
                                         if k != schema.target})
        zero = tuple(n for n, h in how.items() if h == "drop")
        eps = 1.0 if epsilon is None else epsilon
        shared_rng = None
        if noise_seed is None:
            shared_rng = SecureRNG()
            key = os.urandom(32)  # one pseudonym key for all devices of this call
        else:
            key = hashlib.sha256(b"privcity.data.pseudonyms/" + str(noise_seed).encode()).digest()
    n = len(ids) * s
    X = np.empty((n, enc.n_features), np.float32)
    y = np.empty(n, np.int64 if classification else np.float32)
    district = np.empty(len(ids), np.int64)
    step = CHUNK_DEVICES // 4 if partition == "dirichlet" else CHUNK_DEVICES
    for lo in range(0, len(ids), step):
        chunk = ids[lo:lo + step]
        if partition == "dirichlet":
            feats, target, chunk_district = _dirichlet_chunk(task, chunk, s, n_districts, seed, alpha, schema)
        else:
            rec = _generate(task, chunk, s, n_districts, seed)
            feats, target = _split(task, rec, schema)
            chunk_district = rec.district
        if private:
            # Whole records are released: the target is treated by its flag too (the energy
            # task's next consumption is sensitive, and would otherwise give away the noised
            # consumption of the following record).
            if shared_rng is not None:
                feats, target = preprocess_record(feats, target, schema, treatment=treatment,
                                                  epsilon=eps, rng=shared_rng, pseudonym_key=key)
            else:
                target = np.array(target, dtype=np.float64)
                for k, dev in enumerate(chunk):
                    sl = slice(k * s, (k + 1) * s)
                    feats[sl], target[sl] = preprocess_record(
                        feats[sl], target[sl], schema, treatment=treatment, epsilon=eps,
                        rng=_noise_rng(noise_seed, dev), pseudonym_key=key)
        r0, r1 = lo * s, (lo + len(chunk)) * s
        enc.encode(feats, zero=zero, out=X[r0:r1])
        if classification:
            y[r0:r1] = target
        else:
            y[r0:r1] = (target - t_mean) / t_scale
        district[lo:lo + len(chunk)] = chunk_district
    offsets = np.arange(len(ids) + 1, dtype=np.int64) * s
    return FederatedDataset(
        X=X, y=y, offsets=offsets, device_ids=ids.copy(), district=district, schema=schema,
        task_type="classification" if classification else "regression",
        n_classes=len(AQ_LEVELS) if classification else 0, feature_names=list(enc.feature_names),
        target_mean=t_mean, target_scale=t_scale, class_names=AQ_LEVELS if classification else ())
