"""Re-identification risk of what the city's devices release in the centralized baseline:
the task's records (synthetic tasks: ``records_risk``; a CSV file's own rows, on the columns
named as quasi-identifiers: ``csv_records_risk``) and the mobile devices' GPS traces
(``release_risk``), raw or generalised on the device (a metric grid of ``release_cell_m`` and
time bins of ``release_time_s``), with rotating pseudonyms instead of identities.

Two attacks, before and after the device's treatment:

- unicity (de Montjoye et al. 2013): the fraction of people whose trace is the only one
  matching 4 of its points (of a CSV's records: the only one with its quasi-identifiers);
- linkage: an attacker who knows where each person lives and works (exact addresses, as a
  voter roll and an employer would) maps them into the released cells and joins them with the
  released (home cell, work cell) pairs of the pseudonymous traces (Golle and Partridge's
  home/work attack); a person is re-identified when exactly one released trace matches and it
  is theirs. Of records: the attacker knows each device's quasi-identifiers (Sweeney's join).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..anonymize import Pseudonymizer, grid_generalize, linkage_attack, unicity
from ..data import (Field, Schema, environment_records, make_gps_traces, preprocess,
                    smart_meter_records, traffic_records)
from ..data.csvload import _STRAY_SHARE, _missing, _mostly_numbers, _numbers, _read
from ..data.preprocess import resolve_treatment
from ..data.schema import SENSITIVITIES
from ..noise import SecureRNG

__all__ = ["csv_records_risk", "records_risk", "release_risk"]

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


# --- a CSV task's own records ---------------------------------------------------------------------

def _csv_columns(path: Any, header: list[str], *, quasi_identifiers: Sequence[str],
                 sensitivity: Mapping[str, str] | None, target: str,
                 device_column: str | None) -> list[str]:
    """The quasi-identifier columns: those named, else those ``sensitivity`` flags "quasi" (in
    the file's order); ValueError naming a column that is not in the file or has another role."""
    where = f"{os.fspath(path)} (columns: {header})"
    for what, col in (("target", target), ("device", device_column)):
        if col is not None and col not in header:
            raise ValueError(f"{what} column {col!r} is not in {where}")
    flags = dict(sensitivity or {})
    for col, flag in flags.items():
        if col not in header:
            raise ValueError(f"sensitivity names column {col!r}, which is not in {where}")
        if flag not in SENSITIVITIES:
            raise ValueError(f"sensitivity of {col!r} must be one of {SENSITIVITIES}, got {flag!r}")
    qi = list(quasi_identifiers or ()) or [h for h in header if flags.get(h) == "quasi"]
    for col in qi:
        if col not in header:
            raise ValueError(f"quasi-identifier {col!r} is not a column of {where}")
        if col in (target, device_column):
            role = "target" if col == target else "device column"
            raise ValueError(f"quasi-identifier {col!r} is the {role}, not a quasi-identifier; "
                             f"pick others among {where}")
        if qi.count(col) > 1:
            raise ValueError(f"quasi-identifier {col!r} is named twice")
    return qi


def _csv_values(cells: np.ndarray | list[str], used: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows ``used`` of a column as ``load_csv`` reads it: (float64 values, NaN for missing; 0)
    when numeric (a few stray cells read as missing), else (codes of the stripped texts of the
    whole column in sorted order, as float64; how many texts). Texts are never parsed further:
    "*" or "1-5" in a file is a value, not a pattern."""
    nums = _numbers(cells)
    if nums is None:
        lenient = _mostly_numbers(cells, _STRAY_SHARE)
        nums = None if lenient is None else lenient[0]
    if nums is not None:
        return nums[used], 0
    # Distinct cells first: a text column holds few of them, however many rows.
    text = {v: None if _missing(v) else v.strip() for v in set(cells)}
    seen = sorted({t for t in text.values() if t is not None})
    code = {t: float(i) for i, t in enumerate(seen)}
    value = {v: np.nan if t is None else code[t] for v, t in text.items()}
    return np.array([value[cells[i]] for i in used.tolist()], np.float64), len(seen)


def _device_codes(cells: np.ndarray | list[str], used: np.ndarray, name: str) -> np.ndarray:
    """Dense device numbers of rows ``used``; a missing id is refused, as ``load_csv`` does."""
    if isinstance(cells, np.ndarray):  # integral numbers, none missing (csvload._Column)
        ids = cells[used]
    elif any(_missing(v) for v in set(cells)):
        raise ValueError(f"device column {name!r} has missing values")
    else:
        ids = np.array([cells[i] for i in used.tolist()], dtype=str)
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def _csv_sample(cols: Mapping[str, Any], used: np.ndarray, qi: list[str],
                device_column: str | None, sensitivity: Mapping[str, str] | None,
                ) -> tuple[np.ndarray, tuple[Field, ...], np.ndarray | None]:
    """(the quasi-identifiers of rows ``used`` as float64, NaN for missing; their fields as
    ``load_csv`` infers them, flagged by ``sensitivity``; the rows' dense device numbers)."""
    raw = np.empty((len(used), len(qi)), np.float64)
    fields = []
    flags = dict(sensitivity or {})
    for j, col in enumerate(qi):
        raw[:, j], n_texts = _csv_values(cols[col], used)
        flag = flags.get(col, "public")
        fields.append(Field(col, "categorical", flag, "", 0, max(n_texts - 1, 1)) if n_texts
                      else Field(col, "numeric", flag))
    device = None if device_column is None else _device_codes(cols[device_column], used,
                                                              device_column)
    return raw, tuple(fields), device


def _row_keys(codes: np.ndarray) -> np.ndarray:
    """Dense int64 ids of the rows of an int64 matrix of codes >= -1 (equal rows, equal ids)."""
    ids = np.zeros(len(codes), np.int64)
    for j in range(codes.shape[1]):
        # Re-densified after each column, so the mixed radix never overflows.
        ids = np.unique(ids * (int(codes[:, j].max(initial=0)) + 2) + codes[:, j] + 1,
                        return_inverse=True)[1].reshape(-1)
    return ids


def _codes(*tables: np.ndarray) -> list[np.ndarray]:
    """The tables' values as int64 codes shared by all of them, column by column; a missing
    (NaN) cell is a value of its own, -1."""
    out = [np.full(t.shape, -1, np.int64) for t in tables]
    for j in range(tables[0].shape[1]):
        seen = np.unique(np.concatenate([t[:, j] for t in tables]))
        seen = seen[~np.isnan(seen)]
        for t, o in zip(tables, out):
            have = ~np.isnan(t[:, j])
            o[have, j] = np.searchsorted(seen, t[have, j])
    return out


def _csv_unicity(codes: np.ndarray, device: np.ndarray | None) -> dict[str, float | None]:
    """Share of records whose quasi-identifiers no other record shows, and of devices with a
    record whose quasi-identifiers no other device's shows."""
    n = len(codes)
    key = _row_keys(codes)
    matches = np.bincount(key)[key]  # rows showing each row's values, itself included
    out: dict[str, float | None] = {"records": float((matches == 1).mean()) if n else 0.0,
                                    "devices": None}
    if device is not None and n:
        mine = _row_keys(np.stack([key, device], axis=1))
        alone = matches == np.bincount(mine)[mine]  # every row that shows them is the device's
        out["devices"] = float((np.bincount(device, weights=alone) > 0).mean())
    return out


def _fresh_name(name: str, taken: Sequence[str]) -> str:
    """``name``, or ``_name``, ``__name``...: one that no column of the file is called."""
    while name in taken:
        name = "_" + name
    return name


def _csv_release(raw: np.ndarray, fields: tuple[Field, ...], treatment: Mapping[str, str],
                 field_epsilon: float, seed: int,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """(released, the same as the attacker reads them, what the attacker matches them with, the
    treatment of each column) of the quasi-identifier columns ``raw`` (NaN: missing; a missing
    cell stays missing)."""
    dummy = _fresh_name("target", [f.name for f in fields])
    schema = Schema(fields + (Field(dummy, "numeric", "public"),), dummy)
    how = resolve_treatment(schema, treatment)
    missing = np.isnan(raw)
    filled = np.where(missing, 0.0, raw)  # codes and bins need a value; put back missing below
    key = hashlib.sha256(b"privcity.data.pseudonyms/" + str(seed).encode()).digest()
    released = preprocess(filled, schema, treatment=how, epsilon=field_epsilon or 1.0,
                          rng=SecureRNG(hashlib.sha256(f"privcity-risk-{seed}".encode()).digest()),
                          pseudonym_key=key)
    # The attacker undoes what they can, as in records_risk: generalisation is public (they
    # generalise what they know alike); relabelled codes are ranked by count against the true
    # codes' (census-known) counts. A dropped column tells nothing: constant on both sides.
    seen = preprocess(filled, schema, treatment={f: ("generalize" if h == "generalize" else "keep")
                                                 for f, h in how.items()})
    released[missing] = seen[missing] = np.nan
    read = released.copy()
    for j, f in enumerate(fields):
        if how[f.name] == "drop":
            released[:, j] = read[:, j] = seen[:, j] = 0.0
        elif how[f.name] == "pseudonymize":
            have = ~missing[:, j]
            read[have, j] = _unshuffle_by_frequency(released[have, j], raw[have, j])
    return released, read, seen, how


def _csv_linkage(released: np.ndarray, known: np.ndarray, rows: np.ndarray,
                 qi: list[str]) -> dict[str, float]:
    """``linkage_attack`` of the known quasi-identifiers of the records ``rows`` (one per
    device) against those records as released."""
    ident = _fresh_name("device", qi)
    tables = [{ident: np.arange(len(rows)), **{c: v[rows, j] for j, c in enumerate(qi)}}
              for v in (released, known)]
    r = linkage_attack(tables[0], tables[1], qi, id_column=ident)
    return {k: float(r[k]) for k in ("reidentified", "ambiguous", "not_found", "guess")}


def _plain(names: Sequence[str]) -> str:
    return ", ".join(c if re.fullmatch(r"[\w.-]+( [\w.-]+)*", c) else repr(c) for c in names)


def csv_records_risk(path: str | os.PathLike, *, quasi_identifiers: Sequence[str],
                     device_column: str | None, target: str, seed: int,
                     treatment: Mapping[str, str] | None = None, field_epsilon: float = 0.0,
                     max_records: int = 20_000,
                     sensitivity: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Unicity and the linkage attack on a CSV file's own rows, on its quasi-identifier columns.

    Parameters
    ----------
    path : str or path-like
        The CSV file (as :func:`privcity.data.load_csv` reads it: the same rows, those with a
        target value; the same missing values; numeric columns by value, others by their text).
    quasi_identifiers : list of str
        The columns an attacker knows of a person or device (numeric or text). Empty: the
        columns ``sensitivity`` flags "quasi"; None is returned when there are none.
    device_column : str or None
        Whose records they are (several rows per device); None: each row is its own individual.
    target : str
        The target column (its missing values leave rows out, as in ``load_csv``).
    seed : int
        Seeds the sample, the released record of each device and the treatment.
    treatment, field_epsilon
        The devices' treatment of the fields, as :func:`privcity.data.preprocess` takes it, over
        the fields ``load_csv`` infers: text columns are categorical (codes in sorted order, so
        ``generalize``, ``pseudonymize`` and ``drop`` apply); numeric ones have no bounds, so
        only ``drop`` does (``laplace`` and ``generalize`` are refused, naming the field, and
        ``field_epsilon`` changes none of them). Columns that are not quasi-identifiers are
        ignored.
    max_records : int
        At most this many rows are used: a seeded sample of larger files. Uniqueness within a
        sample overstates uniqueness within the file.
    sensitivity : mapping of column name to flag, optional
        As ``load_csv``'s: "quasi" columns are the default quasi-identifiers; the flags also set
        the default treatment (sensitive text columns dropped).

    Returns
    -------
    dict or None
        ``computed_on`` (the file and columns every figure is about), ``rows`` (with a target
        value), ``records`` (used), ``sampled``, ``devices`` (individuals of the linkage:
        devices, or records), ``known`` (the columns), ``missing`` (missing cells per column),
        ``treatment`` (of each column), ``released_equals_raw``; ``unicity`` and ``linkage``,
        each ``{"raw": ..., "released": ...}``: unicity ``{"records", "devices"}`` (the share
        of records no other record equals on the columns, of devices with a record no other
        device's equals; devices None without a device column); linkage as
        ``records_risk``'s (``reidentified``, ``ambiguous``, ``not_found``, ``guess``) of an
        attacker who knows each device's quasi-identifiers and joins them to one released record
        per device (a random one of its rows).

    Raises
    ------
    ValueError
        A named column not in the file, or that is the target or the device column (the message
        lists the file's columns); missing device ids; a treatment that does not apply.

    Notes
    -----
    A missing cell is a value of its own ("missing"), to the count and to the attacker, who is
    taken to know each record's quasi-identifiers as the file holds them. Read as a wildcard
    (as ``linkage_attack`` reads a missing value), a few empty rows would match everyone and
    hide the risk of all the others: in vega_datasets' airports.csv, 12 of 3,376 rows without
    a state and city would take the unicity on (state, city) from 0.91 to 0.
    """
    if isinstance(max_records, bool) or not isinstance(max_records, (int, np.integer)) \
            or max_records < 1:
        raise ValueError(f"max_records must be an int >= 1, got {max_records!r}")
    if isinstance(quasi_identifiers, str) or not all(
            isinstance(c, str) for c in (quasi_identifiers or ())):
        raise ValueError("quasi_identifiers must be a list of column names (str)")
    name = os.fspath(path)
    try:
        header, keep, cols = _read(path, target, device_column,
                                   {target, device_column, *(quasi_identifiers or ()),
                                    *(c for c, f in (sensitivity or {}).items() if f == "quasi")})
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    qi = _csv_columns(path, header, quasi_identifiers=quasi_identifiers, sensitivity=sensitivity,
                      target=target, device_column=device_column)
    if not qi:
        return None
    treatment = dict(treatment or {})
    for col in treatment:
        if col not in header:
            raise ValueError(f"treatment names column {col!r}, which is not in {name} "
                             f"(columns: {header})")
    assert keep is not None
    n = int(keep.sum())
    if not n:
        raise ValueError(f"target column {target!r} of {name} has no values")

    rng = np.random.default_rng(int.from_bytes(
        hashlib.sha256(f"privcity-csv-risk-{seed}".encode()).digest()[:8], "little"))
    used = np.sort(rng.choice(n, max_records, replace=False)) if n > max_records else np.arange(n)
    raw, fields, device = _csv_sample(cols, used, qi, device_column, sensitivity)
    released, read, known, how = _csv_release(raw, fields, {c: t for c, t in treatment.items()
                                                            if c in qi}, field_epsilon, seed)
    same = bool(np.array_equal(released, raw, equal_nan=True))
    raw_c, released_c, read_c, known_c = _codes(raw, released, read, known)
    # One released record per device: a random one of its rows.
    order = rng.permutation(len(used))
    individual = order if device is None else order[np.unique(device[order], return_index=True)[1]]
    unicity_raw = _csv_unicity(raw_c, device)
    linkage_raw = _csv_linkage(raw_c, raw_c, individual, qi)
    sample = (f"a seeded sample of {len(used):,} of the {n:,} rows" if len(used) < n
              else f"the {n:,} rows")
    kept = f" with a value of {target!r}" if n < len(keep) else ""
    return {
        "computed_on": (f"{sample} of {os.path.basename(name) or name}{kept} "
                        f"(columns {_plain(qi)})"),
        "rows": n, "records": len(used), "sampled": len(used) < n,
        "devices": len(individual), "known": qi,
        "missing": {c: int(np.isnan(raw[:, j]).sum()) for j, c in enumerate(qi)},
        "treatment": how, "released_equals_raw": same,
        "unicity": {"raw": unicity_raw,
                    "released": dict(unicity_raw) if same else _csv_unicity(released_c, device)},
        "linkage": {"raw": linkage_raw,
                    "released": dict(linkage_raw) if same
                    else _csv_linkage(read_c, known_c, individual, qi)},
    }
