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
        their released strings. Every other column is copied unchanged: drop direct
        identifiers (names, addresses, exact coordinates) before releasing it. ``partition``:
        int64 class id of each row, in input row order, classes numbered by first appearance;
        two rows share an id exactly when their released quasi-identifier values are equal.

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


# --- checkers: rows grouped in plain Python by the released values -------------------------------

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


def _class_ids(table: Any, qi: Sequence[str]) -> np.ndarray:
    """Class number of each row (int64), classes numbered 0, 1, ... by first appearance of their
    released quasi-identifier tuple (the classes of :func:`_classes`)."""
    if isinstance(qi, str):
        qi = [qi]
    cols = [_cells(table, name) for name in qi]
    if not cols:
        raise ValueError("give at least one quasi-identifier column")
    ids: dict[tuple, int] = {}
    out = np.fromiter((ids.setdefault(key, len(ids)) for key in zip(*cols)), np.int64,
                      count=len(cols[0]))
    if not ids:
        raise ValueError("the table has no rows")
    return out


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
    are all at distance 1. Values are told apart by Python equality, as in a dict."""
    values = _cells(table, sensitive)
    group = _class_ids(table, qi)
    if hierarchy is not None:
        index, codes = _factorize(values)
        emd = _tree_emd(hierarchy, index, codes, group)
    else:
        if numeric is None:
            kind = np.asarray(table[sensitive]).dtype.kind
            numeric = kind in "iuf"
        if numeric:
            emd = _ordered_emd(*_ranks(table[sensitive], values), group)
        else:
            index, codes = _factorize(values)
            emd = _equal_emd(codes, len(index), group)
    return float(emd.max())


# Each EMD below is computed per class in integers: with class size s, table size n, class count
# c and table count t of a value, c/s - t/n = (c*n - t*s) / (s*n), so the sums are exact and
# rounded once by the final division. Work is O(n log n) over the sorted distinct (class, value)
# pairs, never a classes x values matrix. Past int64 (tables of millions of rows) float64 is used.

def _exact_dtype(bound: int) -> type:
    return np.int64 if bound < 2**62 else np.float64


def _factorize(values: list) -> tuple[dict, np.ndarray]:
    """value -> code by first appearance (dict equality, as a Counter of the values), codes."""
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64,
                        count=len(values))
    return index, codes


def _ranks(column: Any, values: list) -> tuple[np.ndarray, int]:
    """Rank of each value among the m sorted distinct values, and m."""
    arr = np.asarray(column)
    if arr.dtype.kind in "biu" or (arr.dtype.kind == "f" and not np.isnan(arr).any()):
        distinct, ranks = np.unique(arr, return_inverse=True)
        return ranks.reshape(-1).astype(np.int64, copy=False), len(distinct)
    # Any other column is ranked as Python's sorted() orders its distinct values (first
    # appearance order in, so even NaN, which compares false, lands where sorted() puts it).
    index, codes = _factorize(values)
    keys = list(index)
    rank = np.empty(len(keys), np.int64)
    rank[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
    return rank[codes], len(keys)


def _pairs(group: np.ndarray, codes: np.ndarray, m: int):
    """Distinct (class, code) pairs sorted by class then code, their counts, class sizes and the
    start of each class's run (every class id below max + 1 has rows)."""
    key, count = np.unique(group * m + codes, return_counts=True)
    cls, code = np.divmod(key, m)
    size = np.bincount(group)
    starts = np.searchsorted(cls, np.arange(len(size)))
    return cls, code, count, size, starts


def _equal_emd(codes: np.ndarray, m: int, group: np.ndarray) -> np.ndarray:
    # 0.5 * sum over all values of |c/s - t/n|; a value absent from the class adds t/n.
    n = len(codes)
    cls, code, count, size, starts = _pairs(group, codes, m)
    dt = _exact_dtype(2 * n * int(size.max()))
    total = np.bincount(codes, minlength=m).astype(dt)[code]
    s, n_ = size.astype(dt), dt(n)
    gap = np.abs(count.astype(dt) * n_ - total * s[cls])
    num = np.add.reduceat(gap, starts) + s * (n_ - np.add.reduceat(total, starts))
    return num / (2 * s * n_)


def _ordered_emd(ranks: np.ndarray, m: int, group: np.ndarray) -> np.ndarray:
    # sum over i < m - 1 of |C_i/s - T_i/n| / (m - 1), C and T the class's and table's counts
    # of ranks <= i. C is constant between two ranks present in the class, and T_i grows with
    # i, so on each such run the sign of C*n - T_i*s flips once: found by a binary search in T,
    # the two sides summed from prefix sums P of T.
    n = len(ranks)
    cls, rank, count, size, starts = _pairs(group, ranks, m)
    if m == 1:
        return np.zeros(len(size))
    dt = _exact_dtype(m * n * int(size.max()))
    cum_t = np.cumsum(np.bincount(ranks, minlength=m)).astype(dt)
    prefix = np.concatenate([np.zeros(1, dt), np.cumsum(cum_t)])  # sum T[a:b] = P[b] - P[a]
    run = np.cumsum(count)
    c = (run - np.repeat(run[starts] - count[starts], np.diff(np.append(starts, len(run))))
         ).astype(dt)
    s, n_ = size.astype(dt)[cls], dt(n)
    a = rank
    b = np.append(rank[1:], m - 1)
    b[np.append(starts[1:], len(rank)) - 1] = m - 1  # each class's last run ends at m - 1
    need = -(-c * n_ // s) if dt is np.int64 else np.ceil(c * n_ / s)  # T_i*s >= c*n from here
    k = np.clip(np.searchsorted(cum_t, need, side="left"), a, b)
    num = ((k - a) * c * n_ - s * (prefix[k] - prefix[a])
           + s * (prefix[b] - prefix[k]) - (b - k) * c * n_)
    sizes = size.astype(dt)
    # Below the class's smallest rank C = 0: the run [0, first) adds s * sum T[:first].
    num = np.add.reduceat(num, starts) + sizes * prefix[rank[starts]]
    return num / (sizes * n_ * dt(m - 1))


def _tree_emd(hierarchy: Mapping[Any, Any], index: dict, codes: np.ndarray,
              group: np.ndarray) -> np.ndarray:
    # Li et al.'s formula: each internal node N moves min(pos_extra, neg_extra) of mass between
    # its children's subtrees, at cost height(N) / H; extra = class share - table share of a
    # subtree. Only nodes above a value of the class can have a positive extra below them, so
    # only those (class, node) pairs are visited; absent children add their table share to neg.
    children: dict[Any, list] = defaultdict(list)
    for child, parent in hierarchy.items():
        children[parent].append(child)
    nodes, parent, depth = ["*"], [-1], [0]  # the tree under "*", breadth first
    for i, node in enumerate(nodes):
        for child in children.get(node, ()):
            nodes.append(child)
            parent.append(i)
            depth.append(depth[i] + 1)
        if len(nodes) > len(hierarchy) + 1:
            raise ValueError("the hierarchy has a cycle through '*'")
    for v in index:
        if v not in hierarchy or children.get(v):
            raise ValueError(f"sensitive value {v!r} is not a leaf of the hierarchy")
    n, n_nodes = len(codes), len(nodes)
    size = np.bincount(group)
    up = np.array(parent, np.int64)
    # Breadth first order keeps each depth contiguous: sweeping the levels from the deepest up
    # finishes every node before its parent reads it.
    level = np.searchsorted(depth, np.arange(depth[-1] + 2))
    levels = [slice(level[d], level[d + 1]) for d in range(depth[-1], 0, -1)]
    height = np.zeros(n_nodes, np.int64)
    for lv in levels:
        np.maximum.at(height, up[lv], height[lv] + 1)
    tree_height = int(height[0])
    if tree_height == 0:
        return np.zeros(len(size))
    # Values at leaves not under "*" are outside the tree: they move no mass.
    leaf_of = np.full(len(index), -1, np.int64)
    for j in np.flatnonzero(height == 0).tolist():
        code = index.get(nodes[j])
        if code is not None:
            leaf_of[code] = j
    leaf = leaf_of[codes]
    inside = leaf >= 0
    dt = _exact_dtype(4 * tree_height * n * int(size.max()))
    total = np.bincount(leaf[inside], minlength=n_nodes).astype(dt)
    for lv in levels:
        np.add.at(total, up[lv], total[lv])
    key, count = np.unique(group[inside] * n_nodes + leaf[inside], return_counts=True)
    keys, counts = [key], [count]
    while len(key):  # each (class, leaf) count also counts for every ancestor
        cls, node = np.divmod(key, n_nodes)
        above = up[node] >= 0
        key, count = cls[above] * n_nodes + up[node][above], count[above]
        keys.append(key)
        counts.append(count)
    key = np.concatenate(keys)
    if not len(key):
        return np.zeros(len(size))
    order = np.argsort(key)
    key = key[order]
    first = np.flatnonzero(np.append(True, key[1:] != key[:-1]))
    key, count = key[first], np.add.reduceat(np.concatenate(counts)[order], first).astype(dt)
    cls, node = np.divmod(key, n_nodes)
    s, n_ = size.astype(dt)[cls], dt(n)
    extra = count * n_ - total[node] * s  # (class share - table share) * s * n
    pos, neg, seen = np.zeros(len(key), dt), np.zeros(len(key), dt), np.zeros(len(key), dt)
    child = node > 0
    at = np.searchsorted(key, cls[child] * n_nodes + up[node[child]])
    np.add.at(pos, at, np.maximum(extra[child], 0))
    np.add.at(neg, at, np.maximum(-extra[child], 0))
    np.add.at(seen, at, total[node[child]])
    neg += (total[node] - seen) * s  # children without the class's values: extra = -t/n
    cost = np.zeros(len(size), dt)
    np.add.at(cost, cls, height[node].astype(dt) * np.minimum(pos, neg))
    return cost / (dt(tree_height) * size.astype(dt) * n_)


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
