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

from ._columns import column as _column
from ._unicity import unicity, unicity_curve

__all__ = ["linkage_attack", "unicity", "unicity_curve"]

_CELL_BUDGET = 1 << 22          # (auxiliary row, released class) pairs held at once by linkage



# --- linkage attack -------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(rf"^\s*{_NUM}\s*$")
_INT_RE = re.compile(r"^\s*[-+]?\d+\s*$")
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


def _number(s: str) -> int | float:
    """A numeric string's value: an integer literal exactly (every digit), anything else as a
    float."""
    return int(s) if _INT_RE.match(s) else float(s)


def _split(x: int | float) -> tuple[float, float, bool]:
    """x as hi + lo, two float64 of exact sum with hi = x rounded: pairs compare as the numbers
    do (hi first, then lo), ints beyond 2**53 included. False: no such pair (an int beyond about
    2**106 or the float range)."""
    try:
        hi = float(x)
    except OverflowError:
        return (math.inf if x > 0 else -math.inf), 0.0, False
    if isinstance(x, float) or math.isinf(hi):
        return hi, 0.0, isinstance(x, float)
    rest = x - int(hi)
    return hi, float(rest), float(rest) == rest


def _key(v: Any) -> tuple[str, Any]:
    """Identity of a value: ("n", number) for an int or float -- Python ints, so every digit of
    an int64/uint64 counts, and 35 and 35.0 are one key -- else ("s", its text)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return ("n", int(v))
    if isinstance(v, (float, np.floating)):
        return ("n", float(v))
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return ("s", str(v))


def _num_key(k: tuple[str, Any]) -> tuple[str, Any] | None:
    """The key a value compares by against a number: its own for a number, the numeric value
    for a string that is a number, None for other text."""
    if k[0] == "n":
        return k
    return ("n", _number(k[1])) if _NUM_RE.match(k[1]) else None


def _id_key(v: Any) -> tuple[str, Any] | None:
    """Identity of an id (ground truth, compared exactly and by kind); None when missing."""
    if _is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return ("b", bool(v))
    if isinstance(v, (int, np.integer, float, np.floating)):
        return _key(v)
    if isinstance(v, bytes):
        return ("s", v.decode("utf-8", "surrogateescape"))
    if isinstance(v, str):
        return ("s", str(v))
    try:
        hash(v)
    except TypeError:
        return ("r", repr(v))
    return ("o", v)


def _key_text(k: tuple[str, Any]) -> str:
    """A value's text for patterns: a float holding an integer without its ".0"."""
    if isinstance(k[1], float) and k[1].is_integer():
        return "%d" % k[1]
    return str(k[1])


def _bound(v: Any) -> int | float:
    """A range bound's exact value."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str) and _NUM_RE.match(v):
        return _number(v)
    return float(v)


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
        lo = -math.inf if _is_missing(lo) else _bound(lo)
        hi = math.inf if _is_missing(hi) else _bound(hi)
        return (_RANGE, lo, hi, True, True)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        s = v.strip()
        if s == "*":
            return (_ANY,)
        m = _DASH_RE.match(s)
        if m and _number(m.group(1)) <= _number(m.group(2)):
            return (_RANGE, _number(m.group(1)), _number(m.group(2)), True, True)
        m = _BRACKET_RE.match(s)
        if m:
            return (_RANGE, _number(m.group(2)), _number(m.group(3)), m.group(1) == "[",
                    m.group(4) == "]")
        m = _SET_RE.match(s)
        if m:
            sep = "|" if "|" in m.group(1) else ","
            return (_SET, frozenset(_key(x.strip()) for x in m.group(1).split(sep) if x.strip()))
        if "*" in s:
            return (_PATTERN, s)
    return (_EQ, _key(v))


def _descendants(hierarchy: Mapping[Any, Any], name: str) -> dict[tuple, frozenset]:
    """Every inner node of a child -> parent hierarchy (nodes linked by their exact key) with
    the keys of all nodes below it."""
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


def _cross_index(below: dict[tuple, frozenset]) -> dict[tuple, list[frozenset]]:
    """(node is a number, its numeric key) -> what lies below each such inner node: for
    :func:`_node`'s matches across kinds, a number against a string that is a number."""
    cross: dict[tuple, list[frozenset]] = {}
    for node, kids in below.items():
        num = _num_key(node)
        if num is not None:
            cross.setdefault((node[0] == "n", num), []).append(kids)
    return cross


def _node(below: dict[tuple, frozenset], cross: dict[tuple, list[frozenset]],
          key: tuple) -> frozenset | None:
    """What lies below the inner node a released value names: the node with its key, else the
    nodes equal to it by the rule between a number and a string that is a number (``cross``,
    from :func:`_cross_index`)."""
    if key in below:
        return below[key]
    num = _num_key(key)
    if num is None:
        return None
    hits = cross.get((key[0] != "n", num))  # nodes of the other kind, same number
    return frozenset().union(*hits) if hits else None


class _Qi:
    """One quasi-identifier: the distinct released values and the auxiliary column's forms.

    Equality runs on integer codes of keys (``_key``; numbers also by ``_num_key``): a released
    value and an auxiliary value are equal when their text codes agree (both are text) or,
    when either one is a number, their numeric codes agree. ``eq_code``/``aux_code`` is a
    coarser key (numeric code if any, else text code) that every equal pair shares: the join
    sorts on it, and pairs of two numeric strings are checked again on their text."""

    def __init__(self, rel_values: np.ndarray, aux_values: np.ndarray, name: str,
                 hierarchy: Mapping[Any, Any] | None = None) -> None:
        below = _descendants(hierarchy, name) if hierarchy is not None else {}
        cross = _cross_index(below)
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
                    parsed = _parse(raw)
                except (TypeError, ValueError):
                    raise ValueError(f"released value {raw!r} of {name!r} is not an accepted "
                                     "form") from None
                if parsed[0] == _EQ and below:          # an inner node of the hierarchy
                    kids = _node(below, cross, parsed[1])
                    if kids is not None:
                        parsed = (_SET, kids)
                j = index.setdefault(parsed, len(index))
                if j == len(self.values):
                    self.values.append(parsed)
                with contextlib.suppress(TypeError):
                    memo[mk] = j
            vidx[i] = j
        self.vidx = vidx
        nv = len(self.values)
        self.kind = np.array([p[0] for p in self.values], np.int64).reshape(nv)
        codes: dict[tuple, int] = {}
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
            if p[0] == _EQ:
                num = _num_key(p[1])
                if num is not None:
                    self.eq_num[j] = codes.setdefault(num, len(codes))
                if p[1][0] == "n":
                    self.eq_isnum[j] = True
                else:
                    self.eq_txt[j] = codes.setdefault(p[1], len(codes))
                    self.eq_numtext[j] = num is not None
            elif p[0] == _RANGE:
                self.lo[j], self.lo_rest[j], lo_ok = _split(p[1])
                self.hi[j], self.hi_rest[j], hi_ok = _split(p[2])
                self.lo_closed[j], self.hi_closed[j] = p[3], p[4]
                self.bound_inexact[j] = not (lo_ok and hi_ok)
                self._bounds[j] = p[1:]
            elif p[0] == _SET:
                for k in p[1]:
                    codes.setdefault(k, len(codes))
                    num = _num_key(k)
                    if num is not None:
                        codes.setdefault(num, len(codes))
                self.special.append(j)
            elif p[0] == _PATTERN:
                self.special.append(j)
        self.eq_code = np.where(self.eq_num >= 0, self.eq_num, self.eq_txt)

        # The auxiliary column, worked out once per distinct value d (aux_vid: each row's d).
        if aux_values.dtype.kind in "biufUS":      # plain dtypes: numpy finds the distinct values
            uniq, inv = np.unique(aux_values, return_inverse=True)
            self.aux_vid = inv.reshape(-1).astype(np.int64)
            dkeys = [None if _is_missing(v) else _key(v) for v in uniq.tolist()]
        else:
            vid: dict[Any, int] = {}
            self.aux_vid = np.array([vid.setdefault(None if _is_missing(v) else _key(v), len(vid))
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
            num = _num_key(k)
            if num is not None:
                d_hasnum[d] = True
                self.d_num[d] = codes.get(num, -1)
                self._dx[d] = num[1]
                self.d_x[d], self.d_rest[d], ok = _split(num[1])
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
        self._codes = codes
        self._texts: np.ndarray | None = None
        self._lengths = np.zeros(0, np.int64)
        self.match: dict[int, np.ndarray] = {j: self._special_match(self.values[j])
                                             for j in self.special}
        # Compatibility depends on the auxiliary value only: the (distinct value x released
        # value) table when it is small, looked up per pair.
        self.table: np.ndarray | None = None
        if nd * nv <= _CELL_BUDGET:
            self.table = self._compatible(np.arange(nd)[:, None], np.arange(nv)[None, :])

    def _special_match(self, parsed: tuple) -> np.ndarray:
        """Per distinct auxiliary value: does it match this set or pattern?"""
        if parsed[0] == _SET:
            # A member equals x by the same rule as a single value.
            by_num = [self._codes[k] for k in parsed[1] if k[0] == "n"]
            by_num_of_text = [self._codes[n] for n in map(_num_key, parsed[1]) if n is not None]
            by_text = [self._codes[k] for k in parsed[1] if k[0] == "s"]
            ok = np.isin(self.d_num, by_num) | np.isin(self.d_txt, by_text)
            ok |= self.d_isnum & np.isin(self.d_num, by_num_of_text)
            return ok & ~self.d_missing
        pattern = parsed[1]
        if self._texts is None:     # the auxiliary values as text, once for all patterns
            texts = ["" if k is None else _key_text(k) for k in self._dkeys]
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
        ok = (kind == _ANY) | self.d_missing[d]          # broadcast to the full shape
        equal = (self.d_num[d] == self.eq_num[v]) & (self.d_isnum[d] | self.eq_isnum[v])
        equal |= self.d_txt[d] == self.eq_txt[v]
        ok |= (kind == _EQ) & equal
        lo, lr, hi, hr = self.lo[v], self.lo_rest[v], self.hi[v], self.hi_rest[v]
        with np.errstate(invalid="ignore"):     # exact: compare the hi parts, then the lo parts
            above = (x > lo) | ((x == lo) & ((xr > lr) | (self.lo_closed[v] & (xr == lr))))
            below = (x < hi) | ((x == hi) & ((xr < hr) | (self.hi_closed[v] & (xr == hr))))
        in_range = above & below
        # Values no float64 pair holds (ints beyond about 2**106) are compared as Python numbers.
        again = (kind == _RANGE) & (self.d_inexact[d] | self.bound_inexact[v])
        if again.any():
            db, vb = np.broadcast_arrays(d, v)
            for at in zip(*np.nonzero(again)):
                x_e = self._dx[db[at]]
                lo_e, hi_e, lo_c, hi_c = self._bounds[int(vb[at])]
                in_range[at] = x_e is not None and (x_e > lo_e or (lo_c and x_e == lo_e)) and \
                    (x_e < hi_e or (hi_c and x_e == hi_e))
        ok |= (kind == _RANGE) & in_range
        for j in self.special:
            ok |= (v == j) & self.match[j][d]
        return ok


def _id_codes(rel: np.ndarray, aux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes of the released ids (-1: missing), and for each auxiliary id the code of the
    equal released id (-2: none). Equal: same kind and exact value, as ``_id_key`` says; never
    through float64 (int64 against uint64 is compared in the released column's own dtype)."""
    kr, ka = rel.dtype.kind, aux.dtype.kind
    if kr in "iu" and ka in "iu":
        wide = np.dtype(np.int64 if kr == "i" else np.uint64)
        if ka == kr:
            fits = np.ones(len(aux), bool)
        else:                           # values out of the other dtype's range equal nothing
            fits = aux >= 0 if ka == "i" else aux <= np.iinfo(np.int64).max
        rel, aux = rel.astype(wide), np.where(fits, aux, 0).astype(wide)
    elif kr == ka and kr in "fUS":
        if kr == "f":
            wide = np.result_type(rel, aux)
            rel, aux = rel.astype(wide), aux.astype(wide)
        fits = ~np.isnan(aux) if kr == "f" else np.ones(len(aux), bool)
    else:                               # objects, mixed kinds: one Python key per id
        codes: dict[tuple, int] = {}
        rel_code = np.array([-1 if k is None else codes.setdefault(k, len(codes))
                             for k in map(_id_key, rel.tolist())], np.int64).reshape(len(rel))
        aux_code = np.array([-2 if k is None else codes.get(k, -2)
                             for k in map(_id_key, aux.tolist())], np.int64).reshape(len(aux))
        return rel_code, aux_code
    uniq, rel_code = np.unique(rel, return_inverse=True)
    rel_code = rel_code.reshape(-1).astype(np.int64)
    if kr == "f":                      # a missing (NaN) id is nobody's
        rel_code[np.isnan(rel)] = -1
    if not len(uniq):
        return rel_code, np.full(len(aux), -2, np.int64)
    pos = np.minimum(np.searchsorted(uniq, aux), len(uniq) - 1)
    return rel_code, np.where(fits & (uniq[pos] == aux), pos, -2).astype(np.int64)


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
        Identity column of both tables: the ground truth, compared exactly and by kind. Integers
        (any int or uint dtype, Python ints) and floats by exact value (``2**53`` and
        ``2**53 + 1`` differ, ``7`` equals ``7.0``); strings as text (``"02139"`` and ``"2139"``
        differ; bytes are decoded as UTF-8); a number never equals a string or a bool; a missing
        id (None, NaN, pd.NA) is nobody's.
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

    - a number, or any other value: equality, by these rules:

      * two numbers (ints, floats, of any dtype) compare by exact value: ints keep every digit,
        so ``2**53 + 1`` differs from ``2**53``, and an int equals a float only when the float
        holds that integer (``35`` equals ``35.0``);
      * a number and a string that is a number compare by numeric value: ``"35"`` and
        ``"035"`` equal ``35``; an integer literal is read exactly as an int, any other as a
        float (``"3.5e1"`` equals ``35``);
      * two strings compare as text, even when both are numbers: ``"02139"`` differs from
        ``"2139"``, ``"35"`` from ``"35.0"``;
      * any other value (a bool, a date, ...) compares as its text (``str``); bytes are decoded
        as UTF-8.

    - a range: a tuple ``(lo, hi)``, a string ``"lo-hi"`` (numbers, lo <= hi) -- both closed --
      or ``"[lo, hi)"`` with any of ``[ ] ( )``: matches ``x`` a number or a string that is a
      number, inside it (compared exactly, ints beyond 2**53 included);
    - a set (``set``/``frozenset``, or a string ``"{a, b, c}"`` or ``"{a|b|c}"``, whose members
      are strings): ``x`` equal to a member by the rules above;
    - with a hierarchy for the column, an inner node (nodes are linked child to parent by exact
      key, a released value names a node by the rules above): ``x`` equal to a node below it;
    - a string with ``*``: each ``*`` stands for one character of ``x``'s text (a float holding an
      integer without ``.0``): ``"941**"`` matches ``"94110"`` and ``94110`` but not ``"9411"``;
      a lone ``"*"`` or a missing value (suppressed) matches anything.

    Released records are grouped into classes of identical published values; classes are
    joined with the auxiliary rows by sorting on the columns they publish exactly (on numeric
    value where there is one), and only the joined pairs are checked on the generalised columns,
    and on the text of two strings that are numbers (by table look-up per distinct value). The
    cost is about the number of (auxiliary row, class) pairs that agree on the exact columns.
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
                # The join key is numeric for a string that is a number: two such strings
                # equal as numbers may differ as text ("02139", "2139"), checked again here.
                rest = np.concatenate([rest, [i for i in block if qis[i].any_numtext
                                              and qis[i].eq_numtext[class_vals[cls, i]].any()]])
            else:
                lo, hi = np.zeros(len(rows), np.int64), np.full(len(rows), len(cls), np.int64)
            join(rows, lo, hi, cls, rest.astype(np.int64))
    rows_m = np.flatnonzero(aux_missing)
    if n_cls and len(rows_m):
        join(rows_m, np.zeros(len(rows_m), np.int64), np.full(len(rows_m), n_cls, np.int64),
             np.arange(n_cls), range(nq))

    # Ground truth: is the individual's own record among the candidates? Ids compare exactly.
    rel_code, aux_code = _id_codes(rel_ids, aux_ids)
    first_of = np.full(int(rel_code.max(initial=-1)) + 1, -1, np.int64)  # first row of each id
    named = np.flatnonzero(rel_code >= 0)
    first_of[rel_code[named[::-1]]] = named[::-1]
    truth = np.where(aux_code >= 0, first_of[np.maximum(aux_code, 0)], -1) if len(first_of) \
        else np.full(n_aux, -1, np.int64)
    own = truth >= 0
    among = np.zeros(n_aux, bool)
    if own.any():
        a = np.flatnonzero(own)
        among[a] = compat(a, row_class[truth[a]])
    lone = n_cand == 1
    lone_row = (np.where(single >= 0, first_row[np.maximum(single, 0)], -1) if n_cls
                else np.full(n_aux, -1, np.int64))  # nothing released: nobody found
    lone_id_ok = lone & (lone_row >= 0) & (rel_code[np.maximum(lone_row, 0)] == aux_code) \
        if n_rel else np.zeros(n_aux, bool)
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
