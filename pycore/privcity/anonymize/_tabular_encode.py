"""Table access and integer coding for :func:`privcity.anonymize.tabular.mondrian`.

Each quasi-identifier becomes one integer code per row, ordered so that a contiguous range of
codes is what Mondrian may release: numeric values by rank (np.unique), categorical values by
their sorted string form, and hierarchical values by the depth-first order of the hierarchy's
leaves (every node then covers a contiguous range of leaf codes). pandas is imported only when
the table is a DataFrame.
"""
from __future__ import annotations

import operator
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

ROOT = "*"


def is_dataframe(table: Any) -> bool:
    pd = sys.modules.get("pandas")  # a DataFrame can only exist if pandas was imported
    return pd is not None and isinstance(table, pd.DataFrame)


def check_table(table: Any) -> int:
    """Number of rows; TypeError unless a DataFrame or a 1-D numpy structured array."""
    if is_dataframe(table):
        return len(table)
    if isinstance(table, np.ndarray) and table.dtype.names is not None:
        if table.ndim != 1:
            raise ValueError(f"a structured array table must be 1-D, got shape {table.shape}")
        return len(table)
    raise TypeError("table must be a pandas DataFrame or a 1-D numpy structured array, got "
                    f"{type(table).__name__}")


def column_names(table: Any) -> list[str]:
    return list(table.columns) if is_dataframe(table) else list(table.dtype.names)


def names_arg(table: Any, names: Any, what: str) -> list[str]:
    """A list of distinct existing column names (a single str is one name)."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError(f"{what}: give at least one column")
    have = column_names(table)
    for name in names:
        if name not in have:
            raise ValueError(f"{what}: unknown column {name!r} (columns: {have})")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: a column is named twice in {names}")
    return names


def _is_missing(v: Any) -> bool:
    """None, a float NaN, a NaT, or a pandas NA/NaT (recognised without importing pandas)."""
    if v is None or (isinstance(v, float) and v != v):
        return True
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    return type(v).__name__ in ("NAType", "NaTType")


def raw_column(table: Any, name: str) -> tuple[np.ndarray, bool]:
    """(values as a numpy array, numeric?); ValueError naming the column if any value is
    missing (NaN, None, pandas NA). Booleans, strings, objects and datetimes are categorical."""
    if is_dataframe(table):
        import pandas as pd

        s = table[name]
        missing = int(s.isna().sum())
        if missing:
            raise ValueError(f"column {name!r} has {missing} missing value(s) (NaN/None); drop "
                             "or impute them first (e.g. table.dropna(subset=[...]))")
        numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
        values = s.to_numpy()
        if numeric and values.dtype.kind not in "iuf":  # nullable extension dtypes
            values = values.astype(np.float64)
        return values, numeric
    values = table[name]
    kind = values.dtype.kind
    if kind == "f":
        missing = int(np.isnan(values).sum())
    elif kind in "mM":
        missing = int(np.isnat(values).sum())
    elif kind == "O":
        missing = sum(1 for v in values if _is_missing(v))
    else:
        missing = 0
    if missing:
        raise ValueError(f"column {name!r} has {missing} missing value(s) (NaN/None); drop or "
                         "impute them first")
    return values, kind in "iuf"


# --- hierarchies ----------------------------------------------------------------------------------

@dataclass
class Tree:
    """A generalization hierarchy. Nodes 0..L-1 are the leaves in depth-first order (their codes),
    the internal nodes follow; node ``root`` is ``"*"``."""

    names: list           # node -> label (leaves keep their original value)
    parent: np.ndarray    # node -> parent node (-1 for the root)
    lo: np.ndarray        # node -> first leaf code under it
    hi: np.ndarray        # node -> last leaf code under it
    height: np.ndarray    # node -> height of its subtree (leaves 0)
    anc: np.ndarray       # (L, H + 1): ancestor of each leaf at each depth, -1 below the leaf
    leaf_code: dict       # leaf value -> code
    root: int

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_code)


def build_tree(hierarchy: Mapping[Any, Any], name: str) -> Tree:
    """Tree from a child -> parent mapping whose every chain ends at "*". Children are ordered
    by their string form, so the leaf order does not depend on the mapping's order."""
    if not isinstance(hierarchy, Mapping) or not hierarchy:
        raise ValueError(f"hierarchy of {name!r} must be a non-empty dict child -> parent")
    if ROOT in hierarchy:
        raise ValueError(f"hierarchy of {name!r}: the root {ROOT!r} cannot have a parent")
    children: dict[Any, list] = {}
    for child, parent in hierarchy.items():
        children.setdefault(parent, []).append(child)
    for child in hierarchy:  # every chain must reach the root without a cycle
        seen, node = set(), child
        while node != ROOT:
            if node in seen:
                raise ValueError(f"hierarchy of {name!r} has a cycle through {node!r}")
            seen.add(node)
            if node not in hierarchy:
                raise ValueError(f"hierarchy of {name!r}: {node!r} has no parent and is not the "
                                 f"root {ROOT!r}")
            node = hierarchy[node]
    leaves: list = []
    internal: list = []
    stack = [(ROOT, 0)]
    order: list = []  # depth-first pre-order of (node, depth)
    while stack:
        node, depth = stack.pop()
        order.append((node, depth))
        kids = sorted(children.get(node, []), key=str)
        (internal if kids else leaves).append(node)
        stack.extend((c, depth + 1) for c in reversed(kids))
    index = {node: i for i, node in enumerate(leaves + internal)}
    n_nodes, n_leaves = len(index), len(leaves)
    parent = np.full(n_nodes, -1, np.int64)
    depth = np.zeros(n_nodes, np.int64)
    for node, d in order:
        depth[index[node]] = d
        if node != ROOT:
            parent[index[node]] = index[hierarchy[node]]
    lo = np.full(n_nodes, n_leaves, np.int64)
    hi = np.full(n_nodes, -1, np.int64)
    height = np.zeros(n_nodes, np.int64)
    max_depth = int(depth[:n_leaves].max())
    anc = np.full((n_leaves, max_depth + 1), -1, np.int64)
    for code in range(n_leaves):
        node, h = code, 0
        while node >= 0:
            lo[node] = min(lo[node], code)
            hi[node] = max(hi[node], code)
            height[node] = max(height[node], h)
            anc[code, depth[node]] = node
            node, h = parent[node], h + 1
    return Tree(names=leaves + internal, parent=parent, lo=lo, hi=hi, height=height, anc=anc,
                leaf_code={leaf: i for i, leaf in enumerate(leaves)}, root=index[ROOT])


def tree_codes(values: np.ndarray, tree: Tree, name: str) -> np.ndarray:
    uniq, inverse = unique_inverse(values)
    codes = np.empty(len(uniq), np.int64)
    for i, v in enumerate(uniq):
        v = v.item() if isinstance(v, np.generic) else v
        code = tree.leaf_code.get(v)
        if code is None:
            where = "an internal node" if v == ROOT or v in tree.names else "absent"
            raise ValueError(f"column {name!r}: value {v!r} is {where} in its hierarchy; every "
                             "value must be a leaf")
        codes[i] = code
    return codes[inverse]


def unique_inverse(values: np.ndarray) -> tuple[list | np.ndarray, np.ndarray]:
    """Distinct values (sorted when numpy can sort them) and the inverse index."""
    if values.dtype.kind != "O":
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    if "pandas" in sys.modules:  # hashing beats sorting Python objects
        import pandas as pd

        inverse, uniq = pd.factorize(values, sort=False)
        return list(uniq), inverse.astype(np.int64)
    lookup: dict = {}
    inverse = np.fromiter((lookup.setdefault(v, len(lookup)) for v in values), np.int64,
                          count=len(values))
    return list(lookup), inverse


# --- columns --------------------------------------------------------------------------------------

@dataclass
class Column:
    """One coded column. kind: "numeric" (codes are ranks of ``values``), "set" (codes index
    ``values``, sorted by their string form) or "tree" (codes are leaf codes of ``tree``)."""

    name: str
    kind: str
    codes: np.ndarray     # int64, one per row
    n_codes: int
    values: Any = None    # numeric: sorted distinct np.ndarray; set: list sorted by str
    tree: Tree | None = None


def code_column(table: Any, name: str, hierarchy: Mapping | None) -> Column:
    values, numeric = raw_column(table, name)
    if hierarchy is not None:
        tree = build_tree(hierarchy, name)
        return Column(name, "tree", tree_codes(values, tree, name), tree.n_leaves, tree=tree)
    if numeric:
        uniq, inverse = np.unique(values, return_inverse=True)
        return Column(name, "numeric", inverse.reshape(-1).astype(np.int64), len(uniq), uniq)
    uniq, inverse = unique_inverse(values)
    uniq = [u.item() if isinstance(u, np.generic) else u for u in uniq]
    order = sorted(range(len(uniq)), key=lambda i: str(uniq[i]))
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    return Column(name, "set", rank[inverse], len(uniq), [uniq[i] for i in order])


def number_text(v: Any) -> str:
    """Exact text of a number: ints as ints, floats by the shortest repr that reads back."""
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    return repr(float(v))


def int_arg(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None


def hierarchies_arg(hierarchies: Mapping | None, table: Any) -> dict:
    if hierarchies is None:
        return {}
    if not isinstance(hierarchies, Mapping):
        raise TypeError("hierarchies must be a dict column -> (dict child -> parent)")
    have = column_names(table)
    for name in hierarchies:
        if name not in have:
            raise ValueError(f"hierarchies: unknown column {name!r} (columns: {have})")
    return dict(hierarchies)


def replace_columns(table: Any, released: dict[str, np.ndarray]) -> Any:
    """A copy of table whose columns in ``released`` (object arrays of str) are replaced."""
    if is_dataframe(table):
        out = table.copy()
        for name, col in released.items():
            out[name] = col
        return out
    fields = []
    for name in table.dtype.names:
        if name in released:
            width = max((len(s) for s in released[name]), default=1)
            fields.append((name, f"<U{max(width, 1)}"))
        else:
            fields.append((name, table.dtype.fields[name][0]))
    out = np.empty(len(table), dtype=fields)
    for name in table.dtype.names:
        out[name] = released[name] if name in released else table[name]
    return out

