"""Re-identification risk of what the city's mobile devices release in the centralized
baseline: their GPS traces, raw or generalised on the device (a metric grid of
``release_cell_m`` and time bins of ``release_time_s``), with rotating pseudonyms instead of
identities.

Two attacks, before and after the device's treatment:

- unicity (de Montjoye et al. 2013): the fraction of people whose trace is the only one
  matching 4 of its points;
- linkage: an attacker who knows where each person lives and works (exact addresses, as a
  voter roll and an employer would) maps them into the released cells and joins them with the
  released (home cell, work cell) pairs of the pseudonymous traces (Golle and Partridge's
  home/work attack); a person is re-identified when exactly one released trace matches and it
  is theirs.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..anonymize import Pseudonymizer, grid_generalize, linkage_attack, unicity
from ..data import (environment_records, make_gps_traces, preprocess, smart_meter_records,
                    traffic_records)
from ..data.preprocess import resolve_treatment
from ..noise import SecureRNG

__all__ = ["records_risk", "release_risk"]

POINTS_PER_PERSON = 48
FINE_CELL_M = 10.0  # "raw": GPS precision


def _anchor_cells(person: np.ndarray, hour: np.ndarray, cell: np.ndarray, hours: tuple[int, int],
                  n_people: int) -> np.ndarray:
    """Per person, the most frequent cell among the points whose UTC hour is in [lo, hi)."""
    lo, hi = hours
    sel = (hour >= lo) & (hour < hi)
    p, c = person[sel], cell[sel]
    pairs, counts = np.unique(np.stack([p, c], axis=1), axis=0, return_counts=True)
    order = np.lexsort((-counts, pairs[:, 0]))  # by person, most frequent first
    pairs = pairs[order]
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    out = np.full(n_people, -1, dtype=np.int64)
    out[pairs[first, 0]] = pairs[first, 1]
    return out


def _home_work(traces: np.ndarray, cell_m: float, n_people: int) -> tuple[np.ndarray, np.ndarray]:
    cells = grid_generalize(traces["lat"], traces["lon"], cell_m).cell
    hour = (traces["timestamp"] % 86400) // 3600
    person = traces["person"]
    return (_anchor_cells(person, hour, cells, (0, 5), n_people),
            _anchor_cells(person, hour, cells, (9, 16), n_people))


def _linkage(traces: np.ndarray, cell_m: float, n_people: int, key: bytes) -> dict[str, Any]:
    # Released: what the traces show at the release resolution, under pseudonyms (the true id
    # rides along only to score the attack).
    home_rel, work_rel = _home_work(traces, cell_m, n_people)
    ids = np.arange(n_people)
    pseudonyms = Pseudonymizer(key, epoch=0).pseudonymize(ids)
    released = np.zeros(n_people, dtype=[("person", "i8"), ("pseudonym", "U64"),
                                         ("home", "i8"), ("work", "i8")])
    released["person"], released["pseudonym"] = ids, pseudonyms
    released["home"], released["work"] = home_rel, work_rel
    # Auxiliary: each person's home and work address, which the attacker places in the
    # release grid: the cells where the person's night and day points fall.
    aux = np.zeros(n_people, dtype=[("person", "i8"), ("home", "i8"), ("work", "i8")])
    aux["person"] = ids
    aux["home"], aux["work"] = home_rel, work_rel
    known = (home_rel >= 0) & (work_rel >= 0)
    result = linkage_attack(released[known], aux[known], ["home", "work"], id_column="person")
    return {k: float(result[k]) for k in ("reidentified", "ambiguous", "not_found", "guess")}


def release_risk(*, people: int, cell_m: float, time_s: int, seed: int) -> dict[str, Any]:
    """Unicity and the home/work linkage attack on ``people`` synthetic GPS traces (one day,
    a point every 30 minutes), raw (10 m, exact times) and as released (``cell_m`` grid,
    ``time_s`` bins)."""
    traces = make_gps_traces(people, POINTS_PER_PERSON, seed=seed)
    key = hashlib.sha256(f"privcity-simulate-pseudonyms-{seed}".encode()).digest()
    return {
        "people": people,
        "points_per_person": POINTS_PER_PERSON,
        "release_cell_m": cell_m,
        "release_time_s": time_s,
        "unicity_4_points": {
            "raw": unicity(traces, 4, spatial_m=FINE_CELL_M, temporal_s=60, seed=seed),
            "released": unicity(traces, 4, spatial_m=cell_m, temporal_s=time_s, seed=seed)},
        "linkage_home_work": {
            "raw": _linkage(traces, FINE_CELL_M, people, key),
            "released": _linkage(traces, cell_m, people, key)},
    }


_GENERATORS = {"traffic": (traffic_records, "n_devices"),
               "air_quality": (environment_records, "n_devices"),
               "energy": (smart_meter_records, "n_households")}
#: What the attacker knows of each device (a registry: where it is; for a household, its size).
_KNOWN = ("district", "household_size")
MAX_RISK_DEVICES = 20_000


def _unshuffle_by_frequency(released: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The frequency attack on relabelled categories: the k-th most frequent released code is
    taken for the k-th most frequent true code."""
    rel_codes, rel_counts = np.unique(released, return_counts=True)
    true_codes, true_counts = np.unique(truth, return_counts=True)
    rel_order = rel_codes[np.argsort(-rel_counts, kind="stable")]
    true_order = true_codes[np.argsort(-true_counts, kind="stable")]
    guess = dict(zip(rel_order.tolist(), true_order.tolist()))
    return np.array([guess.get(v, v) for v in released.tolist()], dtype=released.dtype)


def records_risk(*, task: str, devices: int, n_districts: int, seed: int,
                 treatment: dict[str, str] | None, field_epsilon: float) -> dict[str, Any] | None:
    """The linkage attack on the records the task's devices upload in the centralized
    baseline: the attacker knows each device's district (and a household's size) and joins them
    with one released record per device; raw records against records after the devices'
    treatment (``treatment`` and ``field_epsilon``, as in the simulation). At most 20,000
    devices. None for the CSV task (no sensitivity flags)."""
    if task not in _GENERATORS:
        return None
    make, count_arg = _GENERATORS[task]
    n = min(devices, MAX_RISK_DEVICES)
    per = "samples_per_household" if count_arg == "n_households" else "samples_per_device"
    rec = make(**{count_arg: n, per: 1, "n_districts": n_districts, "seed": seed})
    schema = rec.schema
    cols = [schema.names.index(f) for f in schema.features]
    raw = np.asarray(rec.values[:, cols], dtype=np.float64)
    qi = [f for f in _KNOWN if f in schema.features]
    if treatment or field_epsilon:
        key = hashlib.sha256(b"privcity.data.pseudonyms/" + str(seed).encode()).digest()
        released = preprocess(raw, schema, treatment=treatment or None,
                              epsilon=field_epsilon or 1.0,
                              rng=SecureRNG(hashlib.sha256(f"privcity-risk-{seed}".encode())
                                            .digest()), pseudonym_key=key)
    else:
        released = raw

    def table(values: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=[("device", "i8")] + [(f, "f8") for f in qi])
        out["device"] = np.arange(n)
        for f in qi:
            out[f] = values[:, schema.features.index(f)]
        return out

    # The attacker undoes what they can. Generalisation is public: they generalise what they
    # know alike. Noise on an integer field: they round the released value to the nearest
    # valid one. Pseudonymised codes: they rank the released codes by count and map them to
    # the true codes ranked by their (census-known) counts.
    seen = raw
    if treatment or field_epsilon:
        how = resolve_treatment(schema, treatment or None)
        public = {f: ("generalize" if h == "generalize" else "keep") for f, h in how.items()}
        seen = preprocess(raw, schema, treatment=public)
        released = released.copy()
        for f in qi:
            j = schema.features.index(f)
            field = schema.field(f)
            if how[f] == "laplace":
                released[:, j] = np.clip(np.rint(released[:, j]), field.lower, field.upper)
            elif how[f] == "pseudonymize":
                released[:, j] = _unshuffle_by_frequency(released[:, j], raw[:, j])
    result = {}
    for name, values, known in (("raw", raw, raw), ("released", released, seen)):
        r = linkage_attack(table(values), table(known), qi, id_column="device")
        result[name] = {k: float(r[k]) for k in ("reidentified", "ambiguous", "not_found", "guess")}
    return {"devices": n, "known": qi, "linkage": result}
