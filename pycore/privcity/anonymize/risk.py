"""Measured re-identification risk: unicity of mobility traces (de Montjoye et al. 2013) and a
linkage attack of released records against an auxiliary table (Sweeney's join on
quasi-identifiers, with generalised values).

Both are attacks run by the evaluator, not protections: their random choices come from numpy's
seeded generator (reproducible experiments), never from the CSPRNG that protects data.

Usage::

    traces = privcity.data.make_gps_traces(10_000, 48)
    unicity(traces, 4, spatial_m=500, temporal_s=3600)           # fraction unique from 4 points
    unicity_curve(traces, 4, [(100, 1800), (1000, 3600), (5000, 4 * 3600)])
    linkage_attack(released, auxiliary, ["age", "gender", "zip"], id_column="name")
"""
from __future__ import annotations

import contextlib

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .location import _geohash_codes, _latlon, _positive, _precision, coarsen_time, grid_generalize

__all__ = ["linkage_attack", "unicity", "unicity_curve"]

_CANDIDATE_BUDGET = 1 << 23     # candidate (trial, person) pairs held at once by unicity
_CELL_BUDGET = 1 << 22          # (auxiliary row, released class) pairs held at once by linkage


def _column(table: Any, name: str, what: str) -> np.ndarray:
    try:
        col = table[name]
    except (KeyError, ValueError, IndexError, TypeError):
        raise ValueError(f"{what} has no column {name!r}") from None
    return np.asarray(col)


# --- unicity --------------------------------------------------------------------------------------

def _factorize(x: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(x, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), len(uniq)


def _point_keys(traces: Any, spatial_m: float | None, geohash_precision: int | None,
                temporal_s: float | None, ref_lat: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Dense person ids and dense ids of the generalised (cell, time bin) of every point."""
    person = _column(traces, "person", "traces").reshape(-1)
    ts = _column(traces, "timestamp", "traces").reshape(-1)
    lat, lon = _latlon(_column(traces, "lat", "traces").reshape(-1),
                       _column(traces, "lon", "traces").reshape(-1))
    if not len(person) == len(ts) == len(lat):
        raise ValueError("traces columns person, timestamp, lat, lon must have the same length")
    if spatial_m is not None and geohash_precision is not None:
        raise ValueError("give spatial_m or geohash_precision, not both")
    if spatial_m is not None:
        cell, n_cells = _factorize(grid_generalize(lat, lon, spatial_m, ref_lat=ref_lat).cell)
    elif geohash_precision is not None:
        cell, n_cells = _factorize(_geohash_codes(lat, lon, _precision(geohash_precision)))
    else:   # exact positions
        ilat, n_lat = _factorize(lat)
        ilon, n_lon = _factorize(lon)
        cell, n_cells = _factorize(ilat * n_lon + ilon)
    if temporal_s is not None:
        ts = coarsen_time(ts, _positive(temporal_s, "temporal_s"))
    tbin, n_bins = _factorize(np.asarray(ts))
    key, _ = _factorize(cell * n_bins + tbin)
    pid, _ = _factorize(person)
    return pid, key


def _unicity_counts(pid: np.ndarray, key: np.ndarray, points: int, trials: int | None,
                    seed: Any, crowded: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each trial: how many people's traces hold all the points drawn from one person, and
    the drawn keys (trials x points, -1 padded). ``crowded``: the bitset threshold (tests)."""
    n_keys = int(key.max()) + 1 if key.size else 1
    n_people = int(pid.max()) + 1 if pid.size else 0
    pairs = np.unique(pid * n_keys + key)               # person's distinct points, by person
    pair_p, pair_k = pairs // n_keys, pairs % n_keys
    p_count = np.bincount(pair_p, minlength=n_people)
    p_start = np.cumsum(p_count) - p_count
    by_key = np.argsort(pair_k, kind="stable")          # per key, its people in increasing order
    k_people = pair_p[by_key]
    k_count = np.bincount(pair_k, minlength=n_keys)
    k_start = np.cumsum(k_count) - k_count

    rng = np.random.default_rng(seed)
    tp = np.arange(n_people) if trials is None else rng.integers(0, n_people, trials)
    n_trials = len(tp)
    # Draw min(points, m) distinct points of each trial's person: random ranks within the person.
    m = p_count[tp]
    grp = np.repeat(np.arange(n_trials), m)
    g_start = np.cumsum(m) - m
    rank = np.arange(len(grp)) - g_start[grp]
    cand_key = pair_k[p_start[tp][grp] + rank]
    order = np.lexsort((rng.random(len(grp)), grp))
    take = order[rank < points]
    t_of, k_of = grp[take], cand_key[take]
    # Rarest point first: its people are the candidates, the other points filter them.
    o = np.lexsort((k_count[k_of], t_of))
    t_of, k_of = t_of[o], k_of[o]
    n_pts = np.minimum(m, points)
    col = np.arange(len(t_of)) - (np.cumsum(n_pts) - n_pts)[t_of]
    chosen = np.full((n_trials, points), -1, np.int64)
    chosen[t_of, col] = k_of

    counts = np.zeros(n_trials, np.int64)
    first_len = k_count[chosen[:, 0]]
    # Trials whose rarest point is shared by many people (coarse resolutions) AND bitsets of the
    # people at each point; the others filter the candidate list of their rarest point.
    words = (n_people + 63) // 64
    crowded = max(64, n_people // 32) if crowded is None else crowded
    dense = first_len > crowded
    if dense.any():
        counts[dense] = _count_by_bitsets(chosen[dense], k_count > crowded, pair_p, pair_k,
                                          n_keys, words)
    sparse = np.flatnonzero(~dense)
    lens = first_len[sparse]
    bounds = np.searchsorted(np.cumsum(lens), np.arange(0, lens.sum(), _CANDIDATE_BUDGET),
                             side="right")
    edges = np.unique(np.concatenate(([0], bounds, [len(sparse)])))
    for a, b in zip(edges[:-1], edges[1:]):
        if a == b:
            continue
        tr, ln = sparse[a:b], lens[a:b]
        local = np.repeat(np.arange(b - a), ln)
        ct = tr[local]
        within = np.arange(len(ct)) - (np.cumsum(ln) - ln)[local]
        cp = k_people[k_start[chosen[ct, 0]] + within]
        for j in range(1, points):
            kj = chosen[ct, j]
            code = cp * n_keys + kj
            idx = np.minimum(np.searchsorted(pairs, code), len(pairs) - 1)
            keep = (kj < 0) | (pairs[idx] == code)
            local, ct, cp = local[keep], ct[keep], cp[keep]
        counts[tr] = np.bincount(local, minlength=b - a)
    return counts, chosen


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], np.int64)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def _count_by_bitsets(chosen: np.ndarray, is_dense: np.ndarray, pair_p: np.ndarray,
                      pair_k: np.ndarray, n_keys: int, words: int) -> np.ndarray:
    """People holding every chosen key of each trial, from one bitset of people per key (every
    key of these trials is crowded: the rarest one is)."""
    row = np.full(n_keys, -1, np.int64)
    row[is_dense] = np.arange(int(is_dense.sum()))
    sel = is_dense[pair_k]
    bits = np.zeros((int(is_dense.sum()) + 1, words), np.uint64)
    bits[-1] = ~np.uint64(0)                     # "no such point": everyone
    pp = pair_p[sel]
    np.bitwise_or.at(bits, (row[pair_k[sel]], pp >> 6), np.uint64(1) << (pp & 63).astype(np.uint64))
    idx = np.where(chosen >= 0, row[np.maximum(chosen, 0)], len(bits) - 1)
    out = np.empty(len(chosen), np.int64)
    step = max(1, _CANDIDATE_BUDGET // (8 * words))
    for s in range(0, len(chosen), step):
        acc = bits[idx[s:s + step, 0]].copy()
        for j in range(1, chosen.shape[1]):
            acc &= bits[idx[s:s + step, j]]
        out[s:s + step] = _popcount(acc).sum(axis=1)
    return out


def _count_arg(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def unicity(traces: Any, points: int = 4, *, spatial_m: float | None = None,
            geohash_precision: int | None = None, temporal_s: float | None = None,
            trials: int | None = None, seed: Any = 0, ref_lat: float | None = None) -> float:
    """Unicity of mobility traces (de Montjoye et al. 2013, "Unique in the Crowd").

    For each trial, ``points`` distinct spatio-temporal points are drawn at random from one
    person's generalised trace; the trial succeeds when that person is the only one whose trace
    holds all of them. Unicity is the fraction of successful trials.

    Parameters
    ----------
    traces : structured array or DataFrame
        Columns ``person``, ``timestamp`` (seconds), ``lat``, ``lon`` (degrees), e.g. from
        :func:`privcity.data.make_gps_traces`.
    points : int
        Points known to the attacker (>= 1). A person with fewer distinct generalised points
        gives all of them.
    spatial_m : float, optional
        Side of the square grid cells, metres (:func:`~privcity.anonymize.location.grid_generalize`
        with ``ref_lat``).
    geohash_precision : int, optional
        Geohash cells instead (1..12). Neither: exact coordinates.
    temporal_s : float, optional
        Time bins, seconds (timestamps floored). None: exact timestamps.
    trials : int, optional
        Number of people drawn (with replacement); default every person once.
    seed : int
        Seed of numpy's generator for the attacker's draws.

    Returns
    -------
    float
        Fraction of trials in [0, 1].

    Notes
    -----
    Each generalised point is an int64 key; people per key and keys per person are kept as
    sorted arrays. Candidates are the people at the trial's rarest point, filtered by binary
    search of the (person, key) pairs for the others: 10,000 people x 48 points take well under
    a second at fine resolution.
    """
    points = _count_arg(points, "points", 1)
    if trials is not None:
        trials = _count_arg(trials, "trials", 1)
    pid, key = _point_keys(traces, spatial_m, geohash_precision, temporal_s, ref_lat)
    if pid.size == 0:
        raise ValueError("traces is empty")
    counts, _ = _unicity_counts(pid, key, points, trials, seed)
    return float(np.mean(counts == 1))


def unicity_curve(traces: Any, points: int, resolutions: Sequence[tuple[Any, Any]], *,
                  spatial: str = "grid", trials: int | None = None, seed: Any = 0,
                  ref_lat: float | None = None) -> np.ndarray:
    """Unicity at each ``(spatial, temporal_s)`` resolution, as a float64 array in that order.

    ``spatial`` says what the first element of each pair is: ``"grid"`` a cell side in metres,
    ``"geohash"`` a geohash precision; None in either place keeps exact values. The same seed
    draws the same people for every resolution.
    """
    if spatial not in ("grid", "geohash"):
        raise ValueError(f"spatial must be 'grid' or 'geohash', got {spatial!r}")
    out = []
    for res in resolutions:
        try:
            s, t = res
        except (TypeError, ValueError):
            raise ValueError(f"resolutions must be (spatial, temporal_s) pairs, got {res!r}") from None
        kw = {"spatial_m": s} if spatial == "grid" else {"geohash_precision": s}
        out.append(unicity(traces, points, temporal_s=t, trials=trials, seed=seed,
                           ref_lat=ref_lat, **kw))
    return np.array(out, np.float64)


# --- linkage attack -------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(rf"^\s*{_NUM}\s*$")
_DASH_RE = re.compile(rf"^\s*({_NUM})\s*-\s*({_NUM})\s*$")
_BRACKET_RE = re.compile(rf"^\s*([\[(])\s*({_NUM})\s*,\s*({_NUM})\s*([\])])\s*$")
_SET_RE = re.compile(r"^\s*\{(.*)\}\s*$")
_ANY, _EQ, _RANGE, _SET, _PATTERN = 0, 1, 2, 3, 4


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    return type(v).__name__ in ("NAType", "NaTType")


def _key(v: Any) -> tuple[str, Any]:
    """Equality key: numbers (and numeric strings) by value, anything else by its text."""
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        return ("n", float(v))
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str) and _NUM_RE.match(v):
        return ("n", float(v))
    return ("s", str(v))


def _text(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return "%d" % v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _parse(v: Any) -> tuple:
    """A released value as (kind, payload); see linkage_attack for the accepted forms."""
    if _is_missing(v):
        return (_ANY,)
    if isinstance(v, (set, frozenset)):
        return (_SET, frozenset(_key(x) for x in v if not _is_missing(x)))
    if isinstance(v, (tuple, list)) and len(v) == 2:
        lo, hi = v
        if _is_missing(lo) and _is_missing(hi):
            return (_ANY,)
        lo = -math.inf if _is_missing(lo) else float(lo)
        hi = math.inf if _is_missing(hi) else float(hi)
        return (_RANGE, lo, hi, True, True)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        s = v.strip()
        if s == "*":
            return (_ANY,)
        m = _DASH_RE.match(s)
        if m and float(m.group(1)) <= float(m.group(2)):
            return (_RANGE, float(m.group(1)), float(m.group(2)), True, True)
        m = _BRACKET_RE.match(s)
        if m:
            return (_RANGE, float(m.group(2)), float(m.group(3)), m.group(1) == "[", m.group(4) == "]")
        m = _SET_RE.match(s)
        if m:
            sep = "|" if "|" in m.group(1) else ","
            return (_SET, frozenset(_key(x.strip()) for x in m.group(1).split(sep) if x.strip()))
        if "*" in s:
            return (_PATTERN, s)
    return (_EQ, _key(v))


def _descendants(hierarchy: Mapping[Any, Any], name: str) -> dict[tuple, frozenset]:
    """Every inner node of a child -> parent hierarchy (by equality key) with the keys of all
    nodes below it."""
    if not isinstance(hierarchy, Mapping):
        raise ValueError(f"hierarchies[{name!r}] must map each child to its parent")
    parent = {_key(c): _key(p) for c, p in hierarchy.items()}
    below: dict[tuple, set] = {}
    for child in parent:
        node, seen = child, {child}
        while node in parent:
            node = parent[node]
            if node in seen:
                raise ValueError(f"hierarchies[{name!r}] has a cycle through {node[1]!r}")
            seen.add(node)
            below.setdefault(node, set()).add(child)
    return {node: frozenset(kids) for node, kids in below.items()}


class _Qi:
    """One quasi-identifier: the distinct released values and the auxiliary column's forms."""

    def __init__(self, rel_values: np.ndarray, aux_values: np.ndarray, name: str,
                 hierarchy: Mapping[Any, Any] | None = None) -> None:
        below = _descendants(hierarchy, name) if hierarchy is not None else {}
        memo: dict[Any, int] = {}
        self.values: list[tuple] = []
        index: dict[tuple, int] = {}
        vidx = np.empty(len(rel_values), np.int64)
        for i, raw in enumerate(rel_values.tolist()):
            try:
                j = memo.get(raw)
            except TypeError:                      # unhashable (list, set)
                j = None
            if j is None:
                try:
                    parsed = _parse(raw)
                except (TypeError, ValueError):
                    raise ValueError(f"released value {raw!r} of {name!r} is not an accepted "
                                     "form") from None
                if parsed[0] == _EQ and parsed[1] in below:     # an inner node of the hierarchy
                    parsed = (_SET, below[parsed[1]])
                j = index.setdefault(parsed, len(index))
                if j == len(self.values):
                    self.values.append(parsed)
                # Values that cannot be hashed (a list, an array) are simply parsed each time.
                with contextlib.suppress(TypeError):
                    memo[raw] = j
            vidx[i] = j
        self.vidx = vidx
        nv = len(self.values)
        self.kind = np.array([p[0] for p in self.values], np.int64).reshape(nv)
        codes: dict[tuple, int] = {}
        self.eq_code = np.full(nv, -2, np.int64)
        self.lo = np.full(nv, np.nan)
        self.hi = np.full(nv, np.nan)
        self.lo_closed = np.zeros(nv, bool)
        self.hi_closed = np.zeros(nv, bool)
        self.special: list[int] = []          # sets and patterns, checked one by one
        for j, p in enumerate(self.values):
            if p[0] == _EQ:
                self.eq_code[j] = codes.setdefault(p[1], len(codes))
            elif p[0] == _RANGE:
                self.lo[j], self.hi[j], self.lo_closed[j], self.hi_closed[j] = p[1:]
            elif p[0] == _SET:
                for k in p[1]:
                    codes.setdefault(k, len(codes))
                self.special.append(j)
            elif p[0] == _PATTERN:
                self.special.append(j)

        aux = aux_values.tolist()
        self.missing = np.array([_is_missing(v) for v in aux], bool)
        keys = [None if miss else _key(v) for v, miss in zip(aux, self.missing)]
        self.aux_code = np.array([-1 if k is None else codes.get(k, -1) for k in keys], np.int64)
        self.aux_num = np.array([k[1] if k is not None and k[0] == "n" else np.nan for k in keys],
                                np.float64)
        self._aux = aux
        self._codes = codes
        self._texts: np.ndarray | None = None
        self._lengths = np.zeros(0, np.int64)
        self.match: dict[int, np.ndarray] = {j: self._special_match(self.values[j])
                                             for j in self.special}
        # Compatibility depends on the auxiliary value only: one row per distinct value, and the
        # (distinct value x released value) table when it is small, looked up per pair.
        vid: dict[Any, int] = {}
        self.aux_vid = np.array([vid.setdefault(k, len(vid)) for k in keys], np.int64)
        self.table: np.ndarray | None = None
        if len(vid) * nv <= _CELL_BUDGET:
            rep = np.zeros(len(vid), np.int64)
            rep[self.aux_vid[::-1]] = np.arange(len(keys))[::-1]
            self.table = self._compatible(rep[:, None], np.arange(nv)[None, :])

    def _special_match(self, parsed: tuple) -> np.ndarray:
        if parsed[0] == _SET:
            member = np.array([self._codes[k] for k in parsed[1]], np.int64)
            return np.isin(self.aux_code, member) & ~self.missing
        pattern = parsed[1]
        if self._texts is None:     # the auxiliary values as text, once for all patterns
            texts = ["" if miss else _text(v) for v, miss in zip(self._aux, self.missing)]
            self._lengths = np.array([len(t) for t in texts], np.int64)
            self._texts = np.array(texts, dtype=f"U{max(self._lengths.max(initial=0), 1)}")
        width = self._texts.dtype.itemsize // 4
        ok = (self._lengths == len(pattern)) & ~self.missing
        if self._texts.size and len(pattern) <= width:
            chars = self._texts.view(np.uint32).reshape(len(self._texts), width)
            for i, c in enumerate(pattern):
                if c != "*":
                    ok &= chars[:, i] == ord(c)
        return ok

    def compatible(self, a: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Auxiliary rows a against released values v (broadcast): may they be the same?"""
        if self.table is not None:
            return self.table[self.aux_vid[a], v]
        return self._compatible(a, v)

    def _compatible(self, a: np.ndarray, v: np.ndarray) -> np.ndarray:
        kind = self.kind[v]
        x = self.aux_num[a]
        ok = (kind == _ANY) | self.missing[a]            # broadcast to the full shape
        ok |= (kind == _EQ) & (self.aux_code[a] == self.eq_code[v])
        lo, hi = self.lo[v], self.hi[v]
        with np.errstate(invalid="ignore"):
            in_range = ((x > lo) | (self.lo_closed[v] & (x == lo))) & \
                       ((x < hi) | (self.hi_closed[v] & (x == hi)))
        ok |= (kind == _RANGE) & in_range
        for j in self.special:
            ok |= (v == j) & self.match[j][a]
        return ok


def _qi_spec(quasi_identifiers: Any) -> list[tuple[str, Any]]:
    if isinstance(quasi_identifiers, str):
        raise ValueError("quasi_identifiers must be a sequence of column names or a mapping, "
                         "not one str")
    if isinstance(quasi_identifiers, Mapping):
        spec = list(quasi_identifiers.items())
    else:
        spec = [(q, q) for q in quasi_identifiers]
    if not spec:
        raise ValueError("quasi_identifiers must name at least one column")
    for aux_col, rel in spec:
        ok = isinstance(aux_col, str) and (isinstance(rel, str) or (
            isinstance(rel, (tuple, list)) and len(rel) == 2 and all(isinstance(c, str) for c in rel)))
        if not ok:
            raise ValueError("quasi_identifiers: each entry is a column name, or maps an auxiliary "
                             "column to a released column or to a (low, high) pair of columns")
    return spec


def linkage_attack(released: Any, auxiliary: Any, quasi_identifiers: Any, *, id_column: str,
                   hierarchies: Mapping[str, Mapping[Any, Any]] | None = None) -> dict[str, Any]:
    """Re-identify auxiliary individuals in released records by joining on quasi-identifiers.

    The attacker knows each auxiliary individual's exact quasi-identifiers and looks for the
    released records that could be theirs; ``id_column`` (in both tables) is the ground truth
    used to score the attack, never to match.

    Parameters
    ----------
    released : DataFrame, structured array or mapping of columns
        The published records (possibly generalised), one per individual.
    auxiliary : DataFrame, structured array or mapping of columns
        What the attacker knows: exact values. A missing value (None, NaN, pd.NA) constrains
        nothing.
    quasi_identifiers : sequence of str, or mapping
        Column names present in both tables, or ``{aux_column: released_column}``, or
        ``{aux_column: (low_column, high_column)}`` for a range published as two columns
        (closed; a missing bound is open-ended).
    id_column : str
        Identity column of both tables.
    hierarchies : mapping, optional
        ``{aux_column: {child: parent}}``, chains ending at ``"*"`` (as for
        :func:`privcity.anonymize.tabular.mondrian`): a released inner node matches every value
        below it.

    Returns
    -------
    dict
        ``n_auxiliary``; the fractions ``reidentified`` (exactly one candidate record and it is
        theirs), ``wrong`` (exactly one, someone else's), ``ambiguous`` (several candidates),
        ``not_found`` (none); ``guess``, the mean probability of naming the right record by
        picking one candidate at random (the prosecutor risk); ``counts`` of each outcome; and
        ``candidates``, the number of candidate records per auxiliary row.

    Notes
    -----
    Accepted released values, each matched against an exact auxiliary value ``x``:

    - a number, or any other value: equality (numbers, and strings that are numbers, compare
      by numeric value: ``"35"`` equals ``35``; other strings by text);
    - a range: a tuple ``(lo, hi)``, a string ``"lo-hi"`` (numbers, lo <= hi) -- both closed --
      or ``"[lo, hi)"`` with any of ``[ ] ( )``: matches numeric ``x`` inside it;
    - a set (``set``/``frozenset``, or a string ``"{a, b, c}"`` or ``"{a|b|c}"``): ``x`` equal
      to a member;
    - with a hierarchy for the column, an inner node: ``x`` below it;
    - a string with ``*``: each ``*`` stands for one character (``"941**"`` matches ``"94110"``
      but not ``"9411"``); a lone ``"*"`` or a missing value (suppressed) matches anything.

    Released records are grouped into classes of identical published values; classes are
    joined with the auxiliary rows by sorting on the columns they publish exactly, and only the
    joined pairs are checked on the generalised columns (by table look-up per distinct value).
    The cost is about the number of (auxiliary row, class) pairs that agree on the exact columns.
    """
    if not isinstance(id_column, str):
        raise ValueError("id_column must be a column name")
    spec = _qi_spec(quasi_identifiers)
    if hierarchies is not None and not isinstance(hierarchies, Mapping):
        raise ValueError("hierarchies must map auxiliary column names to {child: parent} dicts")
    rel_ids = _column(released, id_column, "released").reshape(-1)
    aux_ids = _column(auxiliary, id_column, "auxiliary").reshape(-1)
    n_rel, n_aux = len(rel_ids), len(aux_ids)
    qis = []
    for aux_col, rel in spec:
        av = _column(auxiliary, aux_col, "auxiliary").reshape(-1)
        if isinstance(rel, str):
            rv = _column(released, rel, "released").reshape(-1)
        else:
            lo = _column(released, rel[0], "released").reshape(-1).tolist()
            hi = _column(released, rel[1], "released").reshape(-1).tolist()
            if len(lo) != len(hi):
                raise ValueError(f"released columns {rel[0]!r} and {rel[1]!r} differ in length")
            rv = np.empty(len(lo), object)
            for i, pair in enumerate(zip(lo, hi)):
                rv[i] = pair
        if len(av) != n_aux or len(rv) != n_rel:
            raise ValueError(f"quasi-identifier {aux_col!r}: column length differs from "
                             f"{id_column!r} (auxiliary {len(av)} vs {n_aux}, released "
                             f"{len(rv)} vs {n_rel})")
        qis.append(_Qi(rv, av, aux_col, None if hierarchies is None else hierarchies.get(aux_col)))

    # Classes: released records with the same published values on every quasi-identifier.
    if n_rel:
        combo = np.stack([q.vidx for q in qis], axis=1)
        class_vals, row_class, size = np.unique(combo, axis=0, return_inverse=True, return_counts=True)
        row_class = row_class.reshape(-1)
    else:
        class_vals, row_class, size = np.zeros((0, len(qis)), np.int64), np.zeros(0, np.int64), \
            np.zeros(0, np.int64)
    n_cls = len(class_vals)
    first_row = np.full(n_cls, -1, np.int64)
    first_row[row_class[::-1]] = np.arange(n_rel)[::-1]
    nq = len(qis)
    exact_q = np.stack([q.kind[class_vals[:, i]] == _EQ for i, q in enumerate(qis)], axis=1)
    aux_missing = np.zeros(n_aux, bool)
    for q in qis:
        aux_missing |= q.missing

    def compat(a: np.ndarray, c: np.ndarray, check: Sequence[int] = range(nq)) -> np.ndarray:
        ok = np.ones(np.broadcast_shapes(a.shape, c.shape), bool)
        for i in check:
            ok &= qis[i].compatible(a, class_vals[c, i])
        return ok

    n_cand = np.zeros(n_aux, np.int64)
    single = np.full(n_aux, -1, np.int64)       # a compatible class of size 1 (valid if n_cand 1)

    def join(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, cls: np.ndarray,
             check: Sequence[int]) -> None:
        """Rows against cls[lo:hi] each (already equal on the blocked columns)."""
        cnt = hi - lo
        cuts = np.searchsorted(np.cumsum(cnt), np.arange(0, cnt.sum(), _CELL_BUDGET), side="right")
        edges = np.unique(np.concatenate(([0], cuts, [len(rows)])))
        for s, e in zip(edges[:-1], edges[1:]):
            ln = cnt[s:e]
            local = np.repeat(np.arange(e - s), ln)
            a = rows[s:e][local]
            c = cls[lo[s:e][local] + np.arange(len(local)) - (np.cumsum(ln) - ln)[local]]
            ok = compat(a, c, check)
            a, c = a[ok], c[ok]
            n_cand[:] += np.bincount(a, weights=size[c], minlength=n_aux).astype(np.int64)
            lone = size[c] == 1
            single[a[lone]] = c[lone]

    # Classes grouped by which columns they publish exactly: within a group, a sort-merge join on
    # those columns' codes (a hash join when every column is exact), then the generalised columns
    # checked on the joined pairs only. Rows with a missing value meet every class.
    rows_all = np.flatnonzero(~aux_missing)
    if n_cls and len(rows_all):
        sigs, sig_of = np.unique(exact_q, axis=0, return_inverse=True)
        sig_of = sig_of.reshape(-1)
        for g, sig in enumerate(sigs):
            cls = np.flatnonzero(sig_of == g)
            block, rest = np.flatnonzero(sig), np.flatnonzero(~sig)
            rows = rows_all
            if block.size:
                ckey = np.stack([qis[i].eq_code[class_vals[cls, i]] for i in block], axis=1)
                akey = np.stack([qis[i].aux_code[rows] for i in block], axis=1)
                known = (akey >= 0).all(axis=1)          # a value never published matches nothing
                rows, akey = rows[known], akey[known]
                _, inv = np.unique(np.concatenate([ckey, akey]), axis=0, return_inverse=True)
                inv = inv.reshape(-1)
                ck, ak = inv[:len(cls)], inv[len(cls):]
                order = np.argsort(ck, kind="stable")
                cls, ck = cls[order], ck[order]
                lo, hi = np.searchsorted(ck, ak, "left"), np.searchsorted(ck, ak, "right")
            else:
                lo, hi = np.zeros(len(rows), np.int64), np.full(len(rows), len(cls), np.int64)
            join(rows, lo, hi, cls, rest)
    rows_m = np.flatnonzero(aux_missing)
    if n_cls and len(rows_m):
        join(rows_m, np.zeros(len(rows_m), np.int64), np.full(len(rows_m), n_cls, np.int64),
             np.arange(n_cls), range(nq))

    # Ground truth: is the individual's own record among the candidates?
    rel_row = {}
    for i, v in enumerate(rel_ids.tolist()):
        rel_row.setdefault(v, i)
    truth = np.array([rel_row.get(v, -1) for v in aux_ids.tolist()], np.int64)
    own = truth >= 0
    among = np.zeros(n_aux, bool)
    if own.any():
        a = np.flatnonzero(own)
        among[a] = compat(a, row_class[truth[a]])
    lone = n_cand == 1
    lone_row = (np.where(single >= 0, first_row[np.maximum(single, 0)], -1) if n_cls
                else np.full(n_aux, -1, np.int64))  # nothing released: nobody found
    lone_id_ok = np.array([lone_row[i] >= 0 and rel_ids[lone_row[i]] == aux_ids[i] if lone[i] else False
                           for i in range(n_aux)], bool)
    counts = {
        "reidentified": int((lone & lone_id_ok).sum()),
        "wrong": int((lone & ~lone_id_ok).sum()),
        "ambiguous": int((n_cand > 1).sum()),
        "not_found": int((n_cand == 0).sum()),
    }
    frac = {k: (v / n_aux if n_aux else 0.0) for k, v in counts.items()}
    guess = np.where(among & (n_cand > 0), 1.0 / np.maximum(n_cand, 1), 0.0)
    return {"n_auxiliary": n_aux, **frac, "guess": float(guess.mean()) if n_aux else 0.0,
            "counts": counts, "candidates": n_cand}
