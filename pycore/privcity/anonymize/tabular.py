"""k-anonymity, l-diversity and t-closeness of tables by Mondrian generalization, and the
checkers and utility measures to verify a release.

:func:`mondrian` is strict multidimensional Mondrian (LeFevre, DeWitt, Ramakrishnan 2006): the
table is cut recursively at the median of the quasi-identifier with the widest normalized range,
as long as both halves still meet every constraint asked: k-anonymity, distinct or entropy
l-diversity of a sensitive column (Machanavajjhala et al. 2007) and t-closeness (Li, Li,
Venkatasubramanian 2007). Each final part is an equivalence class and releases one value per
quasi-identifier:

* numeric column: the closed range of the class's values, the string ``"[lo, hi]"`` (``"[3, 3]"``
  for a single value). Integers print as integers, floats by their shortest exact repr, so
  ``float(lo)``/``float(hi)`` read back the exact bounds:
  ``lo, hi = map(float, s[1:-1].split(", "))``.
* categorical column with a hierarchy (dict child -> parent whose chains end at the root
  ``"*"``): the lowest common ancestor of the class's values, i.e. a node label, a leaf (the
  value itself, as a string) or ``"*"``.
* categorical column without a hierarchy: the set of the class's values, ``"{a|b|c}"`` (their
  string forms, sorted), or the value itself as a string when the class holds just one.
  Values containing ``|`` make that form ambiguous: give a hierarchy for them.

Numeric means an integer or float dtype; bool, str, object, category and datetime columns are
categorical. A column with a hierarchy is categorical whatever its dtype. The checkers
(:func:`k_anonymity`, :func:`l_diversity`, :func:`t_closeness`) group rows by the released values
themselves, in plain Python, sharing no code with :func:`mondrian`.

Tables are pandas DataFrames (pandas is imported only if the caller already did) or 1-D numpy
structured arrays; the result is of the same kind with only the quasi-identifier columns
replaced (strings; for structured arrays a ``<U`` field).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _tabular_encode as enc
from ._tabular_mondrian import Sensitive, mondrian_codes

__all__ = ["discernibility", "k_anonymity", "l_diversity", "mondrian", "ncp", "t_closeness"]

L_KINDS = ("distinct", "entropy")


def mondrian(table: Any, quasi_identifiers: Sequence[str], k: int, *, l: float | None = None,
             l_kind: str = "distinct", t: float | None = None, sensitive: str | None = None,
             hierarchies: Mapping[str, Mapping[Any, Any]] | None = None
             ) -> tuple[Any, np.ndarray]:
    """k-anonymous (and optionally l-diverse, t-close) generalization of ``table``.

    Parameters
    ----------
    table : pandas.DataFrame or numpy structured array
        Not modified. No missing value (NaN, None, NA) allowed in the quasi-identifiers or the
        sensitive column.
    quasi_identifiers : sequence of str
        Columns to generalize (see the module docstring for the released form of each kind).
    k : int
        Minimum class size, 2 <= k <= number of rows.
    l : float, optional
        Every class must hold at least ``l`` distinct sensitive values (``l_kind="distinct"``)
        or have a sensitive entropy of at least log(l) (``l_kind="entropy"``). Needs
        ``sensitive``; the whole table must meet it.
    t : float, optional
        Every class's sensitive distribution must lie within earth mover's distance ``t`` of the
        table's: ordered distance (|i - j| / (m - 1) between the i-th and j-th of the m distinct
        values) for a numeric sensitive column, equal distance for a categorical one, the
        hierarchical distance (height of the lowest common ancestor / tree height) when
        ``hierarchies`` holds the sensitive column. Needs ``sensitive``.
    sensitive : str, optional
        The sensitive column, released unchanged; not a quasi-identifier.
    hierarchies : dict column -> dict child -> parent, optional
        Generalization hierarchies of categorical quasi-identifiers (every value must be a
        leaf) and, for t-closeness, of the sensitive column. Chains end at ``"*"``.

    Returns
    -------
    (generalized, partition)
        ``generalized``: a new table of the same kind, quasi-identifier columns replaced by
        their released strings. ``partition``: int64 class id of each row, in input row order,
        classes numbered by first appearance; two rows share an id exactly when their released
        quasi-identifier values are equal.

    Raises
    ------
    ValueError
        k out of range, an unknown column (named), a missing value (column named), l or t
        without ``sensitive``, an l the table itself does not meet, a bad hierarchy.
    TypeError
        table is neither a DataFrame nor a structured array, k not an integer.

    Notes
    -----
    Cuts are at the median of the chosen attribute, on the side of its median value (or of the
    hierarchy child holding it) that balances the halves best, else on the other side; if
    neither side is allowable the next widest attribute is tried. Without a hierarchy,
    categorical values are ordered by their string form and cut like numbers (the width used to
    rank them is the span of that order). Classes whose released values coincide (possible when
    a hierarchy cut leaves both halves under the same node) are merged, which keeps every
    constraint (each is preserved under unions of classes that meet it).
    """
    n = enc.check_table(table)
    qi = enc.names_arg(table, quasi_identifiers, "quasi_identifiers")
    k = enc.int_arg(k, "k")
    if k < 2:
        raise ValueError(f"k must be >= 2 (k = 1 is no anonymity), got {k}")
    if k > n:
        raise ValueError(f"k = {k} exceeds the number of rows ({n}): no class can be that large")
    if l_kind not in L_KINDS:
        raise ValueError(f"l_kind must be one of {L_KINDS}, got {l_kind!r}")
    if (l is not None or t is not None) and sensitive is None:
        raise ValueError("l-diversity and t-closeness need the sensitive column: pass sensitive=")
    if l is not None and not (isinstance(l, (int, float, np.integer, np.floating))
                              and not isinstance(l, bool) and math.isfinite(l) and l >= 1):
        raise ValueError(f"l must be a finite number >= 1, got {l!r}")
    if t is not None and not (isinstance(t, (int, float, np.integer, np.floating))
                              and not isinstance(t, bool) and math.isfinite(t) and t >= 0):
        raise ValueError(f"t must be a finite number >= 0, got {t!r}")
    hierarchies = enc.hierarchies_arg(hierarchies, table)
    sens = None
    if sensitive is not None:
        (sensitive,) = enc.names_arg(table, [sensitive], "sensitive")
        if sensitive in qi:
            raise ValueError(f"column {sensitive!r} cannot be both sensitive and a quasi-identifier")
        if l is not None or t is not None:
            sens = _sensitive(table, sensitive, hierarchies.get(sensitive), l, l_kind, t)
    cols = [enc.code_column(table, name, hierarchies.get(name)) for name in qi]
    if n == 0:
        raise ValueError("the table has no rows")

    part, lo, hi = mondrian_codes(cols, k, sens)
    released = _release(cols, part, lo, hi)
    labels = [released[name] for name in qi]
    # Classes are the distinct released tuples, numbered by first appearance.
    ids: dict[tuple, int] = {}
    merged = np.fromiter((ids.setdefault(tup, len(ids)) for tup in zip(*labels)), np.int64,
                         count=len(labels[0]))[part]
    _, first_row = np.unique(merged, return_index=True)
    renumber = np.empty(len(first_row), np.int64)
    renumber[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
    partition = renumber[merged]
    out = {name: np.asarray(released[name], dtype=object)[part] for name in qi}
    return enc.replace_columns(table, out), partition


def _sensitive(table, name, hierarchy, l, l_kind, t) -> Sensitive:
    if hierarchy is not None:
        col = enc.code_column(table, name, hierarchy)
        kind = "tree"
    else:
        col = enc.code_column(table, name, None)
        kind = "numeric" if col.kind == "numeric" else "equal"
    sens = Sensitive(codes=col.codes, n_codes=col.n_codes, kind=kind, tree=col.tree,
                     l=float(l) if l is not None else None, l_kind=l_kind,
                     t=float(t) if t is not None else None)
    if l is not None and not sens.table_meets_l():
        present = len(np.unique(col.codes))
        raise ValueError(f"l = {l} is infeasible: the table itself has {present} distinct "
                         f"values of {name!r}" + (" and too low an entropy" if l_kind == "entropy"
                                                  else ""))
    return sens


def _release(cols: list, part: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, list]:
    """Released label of every class (index = class id) for each column."""
    out: dict[str, list] = {}
    n_classes = len(lo)
    for j, col in enumerate(cols):
        if col.kind == "numeric":
            pairs, inverse = np.unique(lo[:, j] * col.n_codes + hi[:, j], return_inverse=True)
            texts = [f"[{enc.number_text(col.values[a])}, {enc.number_text(col.values[b])}]"
                     for a, b in zip(pairs // col.n_codes, pairs % col.n_codes)]
            out[col.name] = [texts[i] for i in inverse.reshape(-1)]
        elif col.kind == "tree":
            tree = col.tree
            a, b = tree.anc[lo[:, j]], tree.anc[hi[:, j]]
            depth = ((a == b) & (a >= 0)).sum(axis=1) - 1
            nodes = a[np.arange(n_classes), depth]
            names = [str(x) for x in tree.names]
            out[col.name] = [names[x] for x in nodes]
        else:
            key = np.unique(part * col.n_codes + col.codes)
            cls, code = key // col.n_codes, key % col.n_codes
            bounds = np.searchsorted(cls, np.arange(n_classes + 1))
            names = [str(x) for x in col.values]
            labels = []
            for c in range(n_classes):
                vals = code[bounds[c]:bounds[c + 1]]
                labels.append(names[vals[0]] if len(vals) == 1 else
                              "{" + "|".join(names[x] for x in vals) + "}")
            out[col.name] = labels
    return out


# --- checkers: plain Python over the released values ----------------------------------------------

def _cells(table: Any, name: str) -> list:
    enc.check_table(table)
    if name not in enc.column_names(table):
        raise ValueError(f"unknown column {name!r} (columns: {enc.column_names(table)})")
    return table[name].tolist()


def _classes(table: Any, qi: Sequence[str]) -> dict[tuple, list[int]]:
    """Released quasi-identifier tuple -> row numbers."""
    if isinstance(qi, str):
        qi = [qi]
    cols = [_cells(table, name) for name in qi]
    if not cols:
        raise ValueError("give at least one quasi-identifier column")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(*cols)):
        groups[key].append(i)
    if not groups:
        raise ValueError("the table has no rows")
    return groups


def k_anonymity(table: Any, qi: Sequence[str]) -> int:
    """Size of the smallest equivalence class (rows with equal values on the ``qi`` columns)."""
    return min(len(rows) for rows in _classes(table, qi).values())


def l_diversity(table: Any, qi: Sequence[str], sensitive: str, kind: str = "distinct") -> float:
    """The l the table meets: the minimum over classes of the number of distinct ``sensitive``
    values (kind="distinct") or of exp(entropy) of their distribution (kind="entropy", so that
    entropy l-diversity holds for every l up to the result)."""
    if kind not in L_KINDS:
        raise ValueError(f"kind must be one of {L_KINDS}, got {kind!r}")
    values = _cells(table, sensitive)
    worst = math.inf
    for rows in _classes(table, qi).values():
        counts = Counter(values[i] for i in rows)
        if kind == "distinct":
            worst = min(worst, len(counts))
        else:
            entropy = -sum(c / len(rows) * math.log(c / len(rows)) for c in counts.values())
            worst = min(worst, math.exp(entropy))
    return float(worst)


def t_closeness(table: Any, qi: Sequence[str], sensitive: str, *, numeric: bool | None = None,
                hierarchy: Mapping[Any, Any] | None = None) -> float:
    """The t the table meets: the largest earth mover's distance between a class's ``sensitive``
    distribution and the whole table's.

    numeric: ordered distance over the sorted distinct values (default: True for an int or
    float column). hierarchy: dict child -> parent up to ``"*"``, for the hierarchical distance
    (height of the lowest common ancestor / height of the tree); otherwise categorical values
    are all at distance 1."""
    values = _cells(table, sensitive)
    classes = _classes(table, qi)
    total = Counter(values)
    n = len(values)
    if hierarchy is not None:
        emd = _tree_emd(hierarchy, total, n)
    else:
        if numeric is None:
            kind = np.asarray(table[sensitive]).dtype.kind
            numeric = kind in "iuf"
        emd = _ordered_emd(sorted(total), total, n) if numeric else _equal_emd(total, n)
    return max(emd(Counter(values[i] for i in rows), len(rows)) for rows in classes.values())


def _equal_emd(total: Counter, n: int):
    def emd(counts: Counter, size: int) -> float:
        return 0.5 * sum(abs(counts.get(v, 0) / size - c / n) for v, c in total.items())
    return emd


def _ordered_emd(ordered: list, total: Counter, n: int):
    m = len(ordered)

    def emd(counts: Counter, size: int) -> float:
        if m == 1:
            return 0.0
        run, acc = 0.0, 0.0
        for v in ordered[:-1]:  # moving the surplus below each value one step up
            run += counts.get(v, 0) / size - total[v] / n
            acc += abs(run)
        return acc / (m - 1)
    return emd


def _tree_emd(hierarchy: Mapping[Any, Any], total: Counter, n: int):
    # Li et al.'s formula: each internal node N moves min(pos_extra, neg_extra) of mass between
    # its children's subtrees, at cost height(N) / H.
    children: dict[Any, list] = defaultdict(list)
    for child, parent in hierarchy.items():
        children[parent].append(child)

    def height(node) -> int:
        return 1 + max(height(c) for c in children[node]) if children[node] else 0

    tree_height = height("*")
    for v in total:
        if v not in hierarchy or children.get(v):
            raise ValueError(f"sensitive value {v!r} is not a leaf of the hierarchy")

    def emd(counts: Counter, size: int) -> float:
        cost = 0.0

        def extra(node) -> float:
            nonlocal cost
            if not children[node]:
                return counts.get(node, 0) / size - total.get(node, 0) / n
            ex = [extra(c) for c in children[node]]
            pos = sum(e for e in ex if e > 0)
            neg = -sum(e for e in ex if e < 0)
            cost += height(node) / tree_height * min(pos, neg)
            return sum(ex)

        extra("*")
        return cost
    return emd


# --- utility --------------------------------------------------------------------------------------

def ncp(original: Any, generalized: Any, qi: Sequence[str], *,
        hierarchies: Mapping[str, Mapping[Any, Any]] | None = None) -> float:
    """Normalized certainty penalty (Xu et al. 2006) of a release, averaged over all
    quasi-identifier cells: 0 = nothing generalized, 1 = everything suppressed.

    A numeric cell released as ``"[lo, hi]"`` costs (hi - lo) / (max - min of the original
    column); a categorical one (|values it covers| - 1) / (|distinct values| - 1), covering the
    leaves under its node with a hierarchy (whose leaves are then the domain), the values of a
    ``"{a|b}"`` set, or one value. ``"*"`` covers everything. Unchanged values cost 0. Rows are
    matched by position."""
    if isinstance(qi, str):
        qi = [qi]
    hierarchies = dict(hierarchies or {})
    total, cells = 0.0, 0
    for name in qi:
        raw, gen = _cells(original, name), _cells(generalized, name)
        if len(raw) != len(gen):
            raise ValueError(f"column {name!r}: {len(raw)} original rows but {len(gen)} released")
        numeric = name not in hierarchies and np.asarray(original[name]).dtype.kind in "iuf"
        if numeric:
            span = max(raw) - min(raw)
            for g in gen:
                if span > 0:
                    lo, hi = _bounds(g)
                    total += 1.0 if g == "*" else (hi - lo) / span
        else:
            covered = _coverage(hierarchies.get(name), raw)
            for g in gen:
                total += covered(g)
        cells += len(raw)
    return total / cells if cells else 0.0


def _bounds(g: Any) -> tuple[float, float]:
    if isinstance(g, str):
        if g == "*":
            return 0.0, 0.0  # counted as the full range by the caller
        lo, hi = g.strip()[1:-1].split(",")
        return float(lo), float(hi)
    return float(g), float(g)


def _coverage(hierarchy: Mapping | None, raw: list):
    if hierarchy is not None:
        children: dict[Any, list] = defaultdict(list)
        for child, parent in hierarchy.items():
            children[str(parent)].append(str(child))
        leaves_memo: dict[str, int] = {}

        def leaves(node: str) -> int:
            if node not in leaves_memo:
                kids = children.get(node)
                leaves_memo[node] = sum(leaves(c) for c in kids) if kids else 1
            return leaves_memo[node]

        domain = leaves("*")
        return lambda g: (leaves(str(g)) - 1) / (domain - 1) if domain > 1 else 0.0
    domain = len(set(raw))

    def covered(g: Any) -> float:
        if domain <= 1:
            return 0.0
        if g == "*":
            return 1.0
        size = len(g[1:-1].split("|")) if isinstance(g, str) and g.startswith("{") else 1
        return (size - 1) / (domain - 1)
    return covered


def discernibility(partition: Any) -> int:
    """Discernibility metric (Bayardo and Agrawal 2005) of a partition: the sum over classes of
    the class size squared (n for all singletons, n**2 for one class)."""
    counts = Counter(np.asarray(partition).reshape(-1).tolist())
    return sum(c * c for c in counts.values())
