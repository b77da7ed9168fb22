"""How the risk measures read a named column of the tables they are given (a DataFrame, a
structured array or a mapping of columns)."""
from __future__ import annotations

from typing import Any

import numpy as np


def column(table: Any, name: str, what: str) -> np.ndarray:
    """``table[name]`` as a numpy array; ValueError naming ``what`` if there is no such column."""
    try:
        col = table[name]
    except (KeyError, ValueError, IndexError, TypeError):
        raise ValueError(f"{what} has no column {name!r}") from None
    return np.asarray(col)
