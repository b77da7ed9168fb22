"""The matcher of the linkage attack: for one quasi-identifier, which auxiliary (exact) values
may be which released (generalised) values, by the rules of :mod:`._released`, computed once per
distinct value and looked up per (auxiliary row, released value) pair."""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._released import (ANY, EQ, PATTERN, RANGE, SET, cross_index, descendants, float_pair,
                        hierarchy_node, is_missing, key_text, num_key, parse_released, value_key)

#: (auxiliary row or distinct value, released class or value) pairs held at once.
CELL_BUDGET = 1 << 22


class QuasiIdentifier:
    """One quasi-identifier: the distinct released values and the auxiliary column's forms.

    Equality runs on integer codes of keys (``value_key``; numbers also by ``num_key``): a
    released value and an auxiliary value are equal when their text codes agree (both are text)
    or, when either one is a number, their numeric codes agree. ``eq_code``/``aux_code`` is a
    coarser key (numeric code if any, else text code) that every equal pair shares: the join
    sorts on it, and pairs of two numeric strings are checked again on their text."""

    def __init__(self, rel_values: np.ndarray, aux_values: np.ndarray, name: str,
                 hierarchy: Mapping[Any, Any] | None = None) -> None:
        self._read_released(rel_values, name, hierarchy)
        self._codes: dict[tuple, int] = {}  # value keys -> codes, shared by both columns
        self._code_released()
        self._read_auxiliary(aux_values)
        self._texts: np.ndarray | None = None
        self._lengths = np.zeros(0, np.int64)
        self.match: dict[int, np.ndarray] = {j: self._special_match(self.values[j])
                                             for j in self.special}
        # Compatibility depends on the auxiliary value only: the (distinct value x released
        # value) table when it is small, looked up per pair.
        self.table: np.ndarray | None = None
        nd, nv = len(self._dkeys), len(self.values)
        if nd * nv <= CELL_BUDGET:
            self.table = self._compatible(np.arange(nd)[:, None], np.arange(nv)[None, :])

    def _read_released(self, rel_values: np.ndarray, name: str,
                       hierarchy: Mapping[Any, Any] | None) -> None:
        """``values``: the distinct parsed released values (a hierarchy's inner node as the set
        below it); ``vidx``: each record's value; ``kind``: each value's kind."""
        below = descendants(hierarchy, name) if hierarchy is not None else {}
        cross = cross_index(below)
        memo: dict[Any, int] = {}
        self.values: list[tuple] = []
        index: dict[tuple, int] = {}
        vidx = np.empty(len(rel_values), np.int64)
        for i, raw in enumerate(rel_values.tolist()):
            # True == 1 as a dict key, not as a value; unhashable values (a list, an array)
            # are simply parsed each time.
            mk = ("bool", raw) if isinstance(raw, (bool, np.bool_)) else raw
            try:
                j = memo.get(mk)
            except TypeError:                      # unhashable (list, set)
                j = None
            if j is None:
                try:
                    parsed = parse_released(raw)
                except (TypeError, ValueError):
                    raise ValueError(f"released value {raw!r} of {name!r} is not an accepted "
                                     "form") from None
                if parsed[0] == EQ and below:          # an inner node of the hierarchy
                    kids = hierarchy_node(below, cross, parsed[1])
                    if kids is not None:
                        parsed = (SET, kids)
                j = index.setdefault(parsed, len(index))
                if j == len(self.values):
                    self.values.append(parsed)
                with contextlib.suppress(TypeError):
                    memo[mk] = j
            vidx[i] = j
        self.vidx = vidx
        nv = len(self.values)
        self.kind = np.array([p[0] for p in self.values], np.int64).reshape(nv)

    def _code_released(self) -> None:
        """Per released value: the codes of its keys (equality), its range bounds as exact
        float64 pairs, and the list of sets and patterns (``special``)."""
        nv, codes = len(self.values), self._codes
        self.eq_num = np.full(nv, -2, np.int64)       # code of the numeric key (-2: none)
        self.eq_txt = np.full(nv, -2, np.int64)       # code of the text key (-2: a number)
        self.eq_isnum = np.zeros(nv, bool)
        self.eq_numtext = np.zeros(nv, bool)          # a string that is a number
        self.lo, self.lo_rest = np.full(nv, np.nan), np.zeros(nv)     # bounds as hi + lo pairs
        self.hi, self.hi_rest = np.full(nv, np.nan), np.zeros(nv)
        self.lo_closed = np.zeros(nv, bool)
        self.hi_closed = np.zeros(nv, bool)
        self.bound_inexact = np.zeros(nv, bool)       # a bound no float64 pair holds
        self._bounds: dict[int, tuple] = {}
        self.special: list[int] = []          # sets and patterns, checked one by one
        for j, p in enumerate(self.values):
            if p[0] == EQ:
                num = num_key(p[1])
                if num is not None:
                    self.eq_num[j] = codes.setdefault(num, len(codes))
                if p[1][0] == "n":
                    self.eq_isnum[j] = True
                else:
                    self.eq_txt[j] = codes.setdefault(p[1], len(codes))
                    self.eq_numtext[j] = num is not None
            elif p[0] == RANGE:
                self.lo[j], self.lo_rest[j], lo_ok = float_pair(p[1])
                self.hi[j], self.hi_rest[j], hi_ok = float_pair(p[2])
                self.lo_closed[j], self.hi_closed[j] = p[3], p[4]
                self.bound_inexact[j] = not (lo_ok and hi_ok)
                self._bounds[j] = p[1:]
            elif p[0] == SET:
                for k in p[1]:
                    codes.setdefault(k, len(codes))
                    num = num_key(k)
                    if num is not None:
                        codes.setdefault(num, len(codes))
                self.special.append(j)
            elif p[0] == PATTERN:
                self.special.append(j)
        self.eq_code = np.where(self.eq_num >= 0, self.eq_num, self.eq_txt)

    def _read_auxiliary(self, aux_values: np.ndarray) -> None:
        """The auxiliary column, worked out once per distinct value d (``aux_vid``: each row's
        d): its codes, exact numeric value and missingness; per row ``missing`` and
        ``aux_code`` (the join key)."""
        codes = self._codes
        if aux_values.dtype.kind in "biufUS":      # plain dtypes: numpy finds the distinct values
            uniq, inv = np.unique(aux_values, return_inverse=True)
            self.aux_vid = inv.reshape(-1).astype(np.int64)
            dkeys = [None if is_missing(v) else value_key(v) for v in uniq.tolist()]
        else:
            vid: dict[Any, int] = {}
            self.aux_vid = np.array([vid.setdefault(None if is_missing(v) else value_key(v),
                                                    len(vid))
                                     for v in aux_values.tolist()], np.int64)
            dkeys = list(vid)
        nd = len(dkeys)
        self.d_num, self.d_txt = np.full(nd, -1, np.int64), np.full(nd, -1, np.int64)
        self.d_isnum, d_numtext, d_hasnum = (np.zeros(nd, bool) for _ in range(3))
        self.d_x, self.d_rest = np.full(nd, np.nan), np.full(nd, np.nan)    # numeric value
        self.d_inexact = np.zeros(nd, bool)
        self.d_missing = np.array([k is None for k in dkeys], bool).reshape(nd)
        self._dx: list[int | float | None] = [None] * nd     # exact numeric value
        for d, k in enumerate(dkeys):
            if k is None:
                continue
            num = num_key(k)
            if num is not None:
                d_hasnum[d] = True
                self.d_num[d] = codes.get(num, -1)
                self._dx[d] = num[1]
                self.d_x[d], self.d_rest[d], ok = float_pair(num[1])
                self.d_inexact[d] = not ok
            if k[0] == "n":
                self.d_isnum[d] = True
            else:
                self.d_txt[d] = codes.get(k, -1)
                d_numtext[d] = num is not None
        self.missing = self.d_missing[self.aux_vid]
        self.aux_code = np.where(d_hasnum, self.d_num, self.d_txt)[self.aux_vid]
        self.any_numtext = bool(d_numtext.any())               # a string that is a number
        self._dkeys = dkeys

    def _special_match(self, parsed: tuple) -> np.ndarray:
        """Per distinct auxiliary value: does it match this set or pattern?"""
        if parsed[0] == SET:
            # A member equals x by the same rule as a single value.
            by_num = [self._codes[k] for k in parsed[1] if k[0] == "n"]
            by_num_of_text = [self._codes[n] for n in map(num_key, parsed[1]) if n is not None]
            by_text = [self._codes[k] for k in parsed[1] if k[0] == "s"]
            ok = np.isin(self.d_num, by_num) | np.isin(self.d_txt, by_text)
            ok |= self.d_isnum & np.isin(self.d_num, by_num_of_text)
            return ok & ~self.d_missing
        pattern = parsed[1]
        if self._texts is None:     # the auxiliary values as text, once for all patterns
            texts = ["" if k is None else key_text(k) for k in self._dkeys]
            self._lengths = np.array([len(t) for t in texts], np.int64)
            self._texts = np.array(texts, dtype=f"U{max(self._lengths.max(initial=0), 1)}")
        width = self._texts.dtype.itemsize // 4
        ok = (self._lengths == len(pattern)) & ~self.d_missing
        if self._texts.size and len(pattern) <= width:
            chars = self._texts.view(np.uint32).reshape(len(self._texts), width)
            for i, c in enumerate(pattern):
                if c != "*":
                    ok &= chars[:, i] == ord(c)
        return ok

    def compatible(self, a: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Auxiliary rows a against released values v (broadcast): may they be the same?"""
        d = self.aux_vid[a]
        if self.table is not None:
            return self.table[d, v]
        return self._compatible(d, v)

    def _compatible(self, d: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Distinct auxiliary values d against released values v (broadcast)."""
        kind = self.kind[v]
        x, xr = self.d_x[d], self.d_rest[d]
        ok = (kind == ANY) | self.d_missing[d]          # broadcast to the full shape
        equal = (self.d_num[d] == self.eq_num[v]) & (self.d_isnum[d] | self.eq_isnum[v])
        equal |= self.d_txt[d] == self.eq_txt[v]
        ok |= (kind == EQ) & equal
        lo, lr, hi, hr = self.lo[v], self.lo_rest[v], self.hi[v], self.hi_rest[v]
        with np.errstate(invalid="ignore"):     # exact: compare the hi parts, then the lo parts
            above = (x > lo) | ((x == lo) & ((xr > lr) | (self.lo_closed[v] & (xr == lr))))
            below = (x < hi) | ((x == hi) & ((xr < hr) | (self.hi_closed[v] & (xr == hr))))
        in_range = above & below
        # Values no float64 pair holds (ints beyond about 2**106) are compared as Python numbers.
        again = (kind == RANGE) & (self.d_inexact[d] | self.bound_inexact[v])
        if again.any():
            db, vb = np.broadcast_arrays(d, v)
            for at in zip(*np.nonzero(again)):
                x_e = self._dx[db[at]]
                lo_e, hi_e, lo_c, hi_c = self._bounds[int(vb[at])]
                in_range[at] = x_e is not None and (x_e > lo_e or (lo_c and x_e == lo_e)) and \
                    (x_e < hi_e or (hi_c and x_e == hi_e))
        ok |= (kind == RANGE) & in_range
        for j in self.special:
            ok |= (v == j) & self.match[j][d]
        return ok
