"""The grammar of released values, for the linkage attack: what a published value is (a number,
a range, a set, a pattern, a hierarchy node, or suppressed) and the keys by which values compare
(see :func:`privcity.anonymize.risk.linkage_attack` for the rules)."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(rf"^\s*{_NUM}\s*$")
_INT_RE = re.compile(r"^\s*[-+]?\d+\s*$")
_DASH_RE = re.compile(rf"^\s*({_NUM})\s*-\s*({_NUM})\s*$")
_BRACKET_RE = re.compile(rf"^\s*([\[(])\s*({_NUM})\s*,\s*({_NUM})\s*([\])])\s*$")
_SET_RE = re.compile(r"^\s*\{(.*)\}\s*$")
#: Kinds of released values: suppressed (matches anything), a value, a range, a set, a pattern.
ANY, EQ, RANGE, SET, PATTERN = 0, 1, 2, 3, 4


def is_missing(v: Any) -> bool:
    """None, a float NaN, a NaT, or a pandas NA/NaT (recognised without importing pandas)."""
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


def float_pair(x: int | float) -> tuple[float, float, bool]:
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


def value_key(v: Any) -> tuple[str, Any]:
    """Identity of a value: ("n", number) for an int or float -- Python ints, so every digit of
    an int64/uint64 counts, and 35 and 35.0 are one key -- else ("s", its text)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return ("n", int(v))
    if isinstance(v, (float, np.floating)):
        return ("n", float(v))
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return ("s", str(v))


def num_key(k: tuple[str, Any]) -> tuple[str, Any] | None:
    """The key a value compares by against a number: its own for a number, the numeric value
    for a string that is a number, None for other text."""
    if k[0] == "n":
        return k
    return ("n", _number(k[1])) if _NUM_RE.match(k[1]) else None


def id_key(v: Any) -> tuple[str, Any] | None:
    """Identity of an id (ground truth, compared exactly and by kind); None when missing."""
    if is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return ("b", bool(v))
    if isinstance(v, (int, np.integer, float, np.floating)):
        return value_key(v)
    if isinstance(v, bytes):
        return ("s", v.decode("utf-8", "surrogateescape"))
    if isinstance(v, str):
        return ("s", str(v))
    try:
        hash(v)
    except TypeError:
        return ("r", repr(v))
    return ("o", v)


def key_text(k: tuple[str, Any]) -> str:
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


def parse_released(v: Any) -> tuple:
    """A released value as (kind, payload); see linkage_attack for the accepted forms."""
    if is_missing(v):
        return (ANY,)
    if isinstance(v, (set, frozenset)):
        return (SET, frozenset(value_key(x) for x in v if not is_missing(x)))
    if isinstance(v, (tuple, list)) and len(v) == 2:
        lo, hi = v
        if is_missing(lo) and is_missing(hi):
            return (ANY,)
        lo = -math.inf if is_missing(lo) else _bound(lo)
        hi = math.inf if is_missing(hi) else _bound(hi)
        return (RANGE, lo, hi, True, True)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        s = v.strip()
        if s == "*":
            return (ANY,)
        m = _DASH_RE.match(s)
        if m and _number(m.group(1)) <= _number(m.group(2)):
            return (RANGE, _number(m.group(1)), _number(m.group(2)), True, True)
        m = _BRACKET_RE.match(s)
        if m:
            return (RANGE, _number(m.group(2)), _number(m.group(3)), m.group(1) == "[",
                    m.group(4) == "]")
        m = _SET_RE.match(s)
        if m:
            sep = "|" if "|" in m.group(1) else ","
            return (SET, frozenset(value_key(x.strip()) for x in m.group(1).split(sep)
                                   if x.strip()))
        if "*" in s:
            return (PATTERN, s)
    return (EQ, value_key(v))


def descendants(hierarchy: Mapping[Any, Any], name: str) -> dict[tuple, frozenset]:
    """Every inner node of a child -> parent hierarchy (nodes linked by their exact key) with
    the keys of all nodes below it."""
    if not isinstance(hierarchy, Mapping):
        raise ValueError(f"hierarchies[{name!r}] must map each child to its parent")
    parent = {value_key(c): value_key(p) for c, p in hierarchy.items()}
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


def cross_index(below: dict[tuple, frozenset]) -> dict[tuple, list[frozenset]]:
    """(node is a number, its numeric key) -> what lies below each such inner node: for
    :func:`hierarchy_node`'s matches across kinds, a number against a string that is a number."""
    cross: dict[tuple, list[frozenset]] = {}
    for node, kids in below.items():
        num = num_key(node)
        if num is not None:
            cross.setdefault((node[0] == "n", num), []).append(kids)
    return cross


def hierarchy_node(below: dict[tuple, frozenset], cross: dict[tuple, list[frozenset]],
          key: tuple) -> frozenset | None:
    """What lies below the inner node a released value names: the node with its key, else the
    nodes equal to it by the rule between a number and a string that is a number (``cross``,
    from :func:`cross_index`)."""
    if key in below:
        return below[key]
    num = num_key(key)
    if num is None:
        return None
    hits = cross.get((key[0] != "n", num))  # nodes of the other kind, same number
    return frozenset().union(*hits) if hits else None

