"""The linkage attack (Sweeney's join on quasi-identifiers, with generalised values): which
released records could be each auxiliary individual's, scored against the ground truth."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ._columns import column
from ._matcher import CELL_BUDGET, QuasiIdentifier
from ._released import EQ, id_key


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
    rel_ids = column(released, id_column, "released").reshape(-1)
    aux_ids = column(auxiliary, id_column, "auxiliary").reshape(-1)
    qis = _quasi_identifiers(released, auxiliary, spec, id_column, hierarchies, len(rel_ids),
                             len(aux_ids))
    classes = _Classes(qis, len(rel_ids))
    n_cand, single = _candidates(classes, len(aux_ids))
    return _score(classes, rel_ids, aux_ids, n_cand, single)


def _quasi_identifiers(released: Any, auxiliary: Any, spec: list[tuple[str, Any]],
                       id_column: str, hierarchies: Mapping[str, Mapping[Any, Any]] | None,
                       n_rel: int, n_aux: int) -> list[QuasiIdentifier]:
    """A matcher per quasi-identifier, its columns checked to be as long as the ids'."""
    qis = []
    for aux_col, rel in spec:
        av = column(auxiliary, aux_col, "auxiliary").reshape(-1)
        if isinstance(rel, str):
            rv = column(released, rel, "released").reshape(-1)
        else:
            lo = column(released, rel[0], "released").reshape(-1).tolist()
            hi = column(released, rel[1], "released").reshape(-1).tolist()
            if len(lo) != len(hi):
                raise ValueError(f"released columns {rel[0]!r} and {rel[1]!r} differ in length")
            rv = np.empty(len(lo), object)
            for i, pair in enumerate(zip(lo, hi)):
                rv[i] = pair
        if len(av) != n_aux or len(rv) != n_rel:
            raise ValueError(f"quasi-identifier {aux_col!r}: column length differs from "
                             f"{id_column!r} (auxiliary {len(av)} vs {n_aux}, released "
                             f"{len(rv)} vs {n_rel})")
        qis.append(QuasiIdentifier(rv, av, aux_col,
                                   None if hierarchies is None else hierarchies.get(aux_col)))
    return qis


class _Classes:
    """Released records grouped into classes of the same published values on every
    quasi-identifier: ``values`` (class x quasi-identifier: value index), each record's class
    ``row``, each class's ``size`` and ``first_row``."""

    def __init__(self, qis: list[QuasiIdentifier], n_rel: int) -> None:
        self.qis = qis
        if n_rel:
            combo = np.stack([q.vidx for q in qis], axis=1)
            self.values, row, self.size = np.unique(combo, axis=0, return_inverse=True,
                                                    return_counts=True)
            self.row = row.reshape(-1)
        else:
            self.values, self.row, self.size = np.zeros((0, len(qis)), np.int64), \
                np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.first_row = np.full(len(self.values), -1, np.int64)
        self.first_row[self.row[::-1]] = np.arange(n_rel)[::-1]

    def compatible(self, a: np.ndarray, c: np.ndarray,
                   check: Sequence[int] | None = None) -> np.ndarray:
        """Auxiliary rows a against classes c (broadcast), on the quasi-identifiers ``check``
        (default all): may the row be a record of the class?"""
        ok = np.ones(np.broadcast_shapes(a.shape, c.shape), bool)
        for i in range(len(self.qis)) if check is None else check:
            ok &= self.qis[i].compatible(a, self.values[c, i])
        return ok


def _candidates(classes: _Classes, n_aux: int) -> tuple[np.ndarray, np.ndarray]:
    """Per auxiliary row: the number of candidate records, and a compatible class of size 1
    (-1: none; the candidate's class when the number is 1).

    Classes grouped by which columns they publish exactly: within a group, a sort-merge join on
    those columns' codes (a hash join when every column is exact), then the generalised columns
    checked on the joined pairs only. Rows with a missing value meet every class."""
    n_cls = len(classes.values)
    n_cand = np.zeros(n_aux, np.int64)
    single = np.full(n_aux, -1, np.int64)
    aux_missing = np.zeros(n_aux, bool)
    for q in classes.qis:
        aux_missing |= q.missing
    rows_all = np.flatnonzero(~aux_missing)
    if n_cls and len(rows_all):
        for rows, lo, hi, cls, check in _exact_joins(classes, rows_all):
            _join(classes, n_cand, single, rows, lo, hi, cls, check)
    rows_m = np.flatnonzero(aux_missing)
    if n_cls and len(rows_m):
        _join(classes, n_cand, single, rows_m, np.zeros(len(rows_m), np.int64),
              np.full(len(rows_m), n_cls, np.int64), np.arange(n_cls), range(len(classes.qis)))
    return n_cand, single


def _exact_joins(classes: _Classes, rows_all: np.ndarray,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per group of classes that publish the same columns exactly: (auxiliary rows, for each
    the range lo:hi of the group's classes ``cls`` equal to it on those columns, the columns
    left to check)."""
    qis, values = classes.qis, classes.values
    exact_q = np.stack([q.kind[values[:, i]] == EQ for i, q in enumerate(qis)], axis=1)
    sigs, sig_of = np.unique(exact_q, axis=0, return_inverse=True)
    sig_of = sig_of.reshape(-1)
    for g, sig in enumerate(sigs):
        cls = np.flatnonzero(sig_of == g)
        block, rest = np.flatnonzero(sig), np.flatnonzero(~sig)
        rows = rows_all
        if block.size:
            ckey = np.stack([qis[i].eq_code[values[cls, i]] for i in block], axis=1)
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
                                          and qis[i].eq_numtext[values[cls, i]].any()]])
        else:
            lo, hi = np.zeros(len(rows), np.int64), np.full(len(rows), len(cls), np.int64)
        yield rows, lo, hi, cls, rest.astype(np.int64)


def _join(classes: _Classes, n_cand: np.ndarray, single: np.ndarray, rows: np.ndarray,
          lo: np.ndarray, hi: np.ndarray, cls: np.ndarray, check: Sequence[int]) -> None:
    """Rows against cls[lo:hi] each (already equal on the blocked columns), checked on the
    columns ``check``, in pieces of at most CELL_BUDGET pairs: adds to ``n_cand`` and
    ``single``."""
    size, n_aux = classes.size, len(n_cand)
    cnt = hi - lo
    cuts = np.searchsorted(np.cumsum(cnt), np.arange(0, cnt.sum(), CELL_BUDGET), side="right")
    edges = np.unique(np.concatenate(([0], cuts, [len(rows)])))
    for s, e in zip(edges[:-1], edges[1:]):
        ln = cnt[s:e]
        local = np.repeat(np.arange(e - s), ln)
        a = rows[s:e][local]
        c = cls[lo[s:e][local] + np.arange(len(local)) - (np.cumsum(ln) - ln)[local]]
        ok = classes.compatible(a, c, check)
        a, c = a[ok], c[ok]
        n_cand[:] += np.bincount(a, weights=size[c], minlength=n_aux).astype(np.int64)
        lone = size[c] == 1
        single[a[lone]] = c[lone]


def _score(classes: _Classes, rel_ids: np.ndarray, aux_ids: np.ndarray, n_cand: np.ndarray,
           single: np.ndarray) -> dict[str, Any]:
    """The outcome of each auxiliary row against the ground truth (ids compare exactly): the
    result of :func:`linkage_attack`."""
    n_rel, n_aux, n_cls = len(rel_ids), len(aux_ids), len(classes.values)
    rel_code, aux_code = _id_codes(rel_ids, aux_ids)
    first_of = np.full(int(rel_code.max(initial=-1)) + 1, -1, np.int64)  # first row of each id
    named = np.flatnonzero(rel_code >= 0)
    first_of[rel_code[named[::-1]]] = named[::-1]
    truth = np.where(aux_code >= 0, first_of[np.maximum(aux_code, 0)], -1) if len(first_of) \
        else np.full(n_aux, -1, np.int64)
    own = truth >= 0           # is the individual's own record among the candidates?
    among = np.zeros(n_aux, bool)
    if own.any():
        a = np.flatnonzero(own)
        among[a] = classes.compatible(a, classes.row[truth[a]])
    lone = n_cand == 1
    lone_row = (np.where(single >= 0, classes.first_row[np.maximum(single, 0)], -1) if n_cls
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


def _qi_spec(quasi_identifiers: Any) -> list[tuple[str, Any]]:
    """The quasi-identifiers as (auxiliary column, released column or (low, high) columns)."""
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
            isinstance(rel, (tuple, list)) and len(rel) == 2
            and all(isinstance(c, str) for c in rel)))
        if not ok:
            raise ValueError("quasi_identifiers: each entry is a column name, or maps an auxiliary "
                             "column to a released column or to a (low, high) pair of columns")
    return spec


def _id_codes(rel: np.ndarray, aux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes of the released ids (-1: missing), and for each auxiliary id the code of the
    equal released id (-2: none). Equal: same kind and exact value, as ``id_key`` says; never
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
                             for k in map(id_key, rel.tolist())], np.int64).reshape(len(rel))
        aux_code = np.array([-2 if k is None else codes.get(k, -2)
                             for k in map(id_key, aux.tolist())], np.int64).reshape(len(aux))
        return rel_code, aux_code
    uniq, rel_code = np.unique(rel, return_inverse=True)
    rel_code = rel_code.reshape(-1).astype(np.int64)
    if kr == "f":                      # a missing (NaN) id is nobody's
        rel_code[np.isnan(rel)] = -1
    if not len(uniq):
        return rel_code, np.full(len(aux), -2, np.int64)
    pos = np.minimum(np.searchsorted(uniq, aux), len(uniq) - 1)
    return rel_code, np.where(fits & (uniq[pos] == aux), pos, -2).astype(np.int64)
