"""Unicity of mobility traces (de Montjoye et al. 2013, "Unique in the Crowd"): the fraction of
people whose generalised trace is the only one holding a few of its points.

The attacker's random draws come from numpy's seeded generator (reproducible experiments), never
from the CSPRNG that protects data."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ._columns import column
from ._geo import geohash_codes, latlon, positive_arg, precision_arg
from .location import coarsen_time, grid_generalize

_CANDIDATE_BUDGET = 1 << 23     # candidate (trial, person) pairs held at once by unicity


def _factorize(x: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(x, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), len(uniq)


def _point_keys(traces: Any, spatial_m: float | None, geohash_precision: int | None,
                temporal_s: float | None, ref_lat: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Dense person ids and dense ids of the generalised (cell, time bin) of every point."""
    person = column(traces, "person", "traces").reshape(-1)
    ts = column(traces, "timestamp", "traces").reshape(-1)
    lat, lon = latlon(column(traces, "lat", "traces").reshape(-1),
                       column(traces, "lon", "traces").reshape(-1))
    if not len(person) == len(ts) == len(lat):
        raise ValueError("traces columns person, timestamp, lat, lon must have the same length")
    if spatial_m is not None and geohash_precision is not None:
        raise ValueError("give spatial_m or geohash_precision, not both")
    if spatial_m is not None:
        cell, n_cells = _factorize(grid_generalize(lat, lon, spatial_m, ref_lat=ref_lat).cell)
    elif geohash_precision is not None:
        cell, n_cells = _factorize(geohash_codes(lat, lon, precision_arg(geohash_precision)))
    else:   # exact positions
        ilat, n_lat = _factorize(lat)
        ilon, n_lon = _factorize(lon)
        cell, n_cells = _factorize(ilat * n_lon + ilon)
    if temporal_s is not None:
        ts = coarsen_time(ts, positive_arg(temporal_s, "temporal_s"))
    tbin, n_bins = _factorize(np.asarray(ts))
    key, _ = _factorize(cell * n_bins + tbin)
    pid, _ = _factorize(person)
    return pid, key


class _PointIndex(NamedTuple):
    """Each person's distinct points and each point's people, as sorted arrays: ``pairs`` holds
    person * n_keys + key, in increasing order; a person's keys are ``pair_k[p_start[p]:]``
    (``p_count[p]`` of them), a key's people ``k_people[k_start[k]:]`` (``k_count[k]``)."""

    pairs: np.ndarray
    pair_p: np.ndarray
    pair_k: np.ndarray
    p_count: np.ndarray
    p_start: np.ndarray
    k_people: np.ndarray
    k_count: np.ndarray
    k_start: np.ndarray
    n_keys: int
    n_people: int


def _point_index(pid: np.ndarray, key: np.ndarray) -> _PointIndex:
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
    return _PointIndex(pairs, pair_p, pair_k, p_count, p_start, k_people, k_count, k_start,
                       n_keys, n_people)


def _unicity_counts(pid: np.ndarray, key: np.ndarray, points: int, trials: int | None,
                    seed: Any, crowded: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each trial: how many people's traces hold all the points drawn from one person, and
    the drawn keys (trials x points, -1 padded). ``crowded``: the bitset threshold (tests)."""
    ix = _point_index(pid, key)
    chosen = _draw_points(ix, points, trials, seed)
    counts = np.zeros(len(chosen), np.int64)
    first_len = ix.k_count[chosen[:, 0]]
    # Trials whose rarest point is shared by many people (coarse resolutions) AND bitsets of the
    # people at each point; the others filter the candidate list of their rarest point.
    words = (ix.n_people + 63) // 64
    crowded = max(64, ix.n_people // 32) if crowded is None else crowded
    dense = first_len > crowded
    if dense.any():
        counts[dense] = _count_by_bitsets(chosen[dense], ix.k_count > crowded, ix.pair_p,
                                          ix.pair_k, ix.n_keys, words)
    sparse = np.flatnonzero(~dense)
    counts[sparse] = _count_by_candidates(ix, chosen[sparse], first_len[sparse])
    return counts, chosen


def _draw_points(ix: _PointIndex, points: int, trials: int | None, seed: Any) -> np.ndarray:
    """The attacker's draws: per trial, a person (every person once when ``trials`` is None)
    and min(points, their count) of their distinct keys, rarest first (trials x points, -1
    padded)."""
    rng = np.random.default_rng(seed)
    tp = np.arange(ix.n_people) if trials is None else rng.integers(0, ix.n_people, trials)
    n_trials = len(tp)
    # Draw min(points, m) distinct points of each trial's person: random ranks within the person.
    m = ix.p_count[tp]
    grp = np.repeat(np.arange(n_trials), m)
    g_start = np.cumsum(m) - m
    rank = np.arange(len(grp)) - g_start[grp]
    cand_key = ix.pair_k[ix.p_start[tp][grp] + rank]
    order = np.lexsort((rng.random(len(grp)), grp))
    take = order[rank < points]
    t_of, k_of = grp[take], cand_key[take]
    # Rarest point first: its people are the candidates, the other points filter them.
    o = np.lexsort((ix.k_count[k_of], t_of))
    t_of, k_of = t_of[o], k_of[o]
    n_pts = np.minimum(m, points)
    col = np.arange(len(t_of)) - (np.cumsum(n_pts) - n_pts)[t_of]
    chosen = np.full((n_trials, points), -1, np.int64)
    chosen[t_of, col] = k_of
    return chosen


def _count_by_candidates(ix: _PointIndex, chosen: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """People holding every chosen key of each trial: the ``lens`` people at its first (rarest)
    key, filtered by binary search of the pairs for the others, at most _CANDIDATE_BUDGET
    candidates at once."""
    counts = np.zeros(len(chosen), np.int64)
    pairs, n_keys = ix.pairs, ix.n_keys
    bounds = np.searchsorted(np.cumsum(lens), np.arange(0, lens.sum(), _CANDIDATE_BUDGET),
                             side="right")
    edges = np.unique(np.concatenate(([0], bounds, [len(chosen)])))
    for a, b in zip(edges[:-1], edges[1:]):
        if a == b:
            continue
        ln = lens[a:b]
        local = np.repeat(np.arange(b - a), ln)
        ct = a + local
        within = np.arange(len(ct)) - (np.cumsum(ln) - ln)[local]
        cp = ix.k_people[ix.k_start[chosen[ct, 0]] + within]
        for j in range(1, chosen.shape[1]):
            kj = chosen[ct, j]
            code = cp * n_keys + kj
            idx = np.minimum(np.searchsorted(pairs, code), len(pairs) - 1)
            keep = (kj < 0) | (pairs[idx] == code)
            local, ct, cp = local[keep], ct[keep], cp[keep]
        counts[a:b] = np.bincount(local, minlength=b - a)
    return counts


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
            raise ValueError(f"resolutions must be (spatial, temporal_s) pairs, got {res!r}") \
                from None
        kw = {"spatial_m": s} if spatial == "grid" else {"geohash_precision": s}
        out.append(unicity(traces, points, temporal_s=t, trials=trials, seed=seed,
                           ref_lat=ref_lat, **kw))
    return np.array(out, np.float64)
