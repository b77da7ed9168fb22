"""numba's ``njit`` with the compiled code cached on disk where a cache can be written.

numba caches beside the source (``__pycache__``), else under NUMBA_CACHE_DIR or the user's
cache directory; with none writable (a read-only install run by a user without a home) its
``cache=True`` refuses the function at import. The kernels then compile in each process
instead: slower to start, never broken.
"""
from __future__ import annotations

from typing import Any, Callable

from numba import njit


def cached_njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: ``njit(cache=True, **options)``, or ``njit(**options)`` without a cache."""
    def decorate(fn: Callable[..., Any]) -> Any:
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(**options)(fn)
    return decorate
