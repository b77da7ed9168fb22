"""Exceptions raised by privcity. Every one derives from :class:`PrivcityError`."""
from __future__ import annotations

from collections.abc import Iterable

from cryptography.exceptions import InvalidTag

__all__ = ["PrivcityError", "AuthenticationError"]


class PrivcityError(Exception):
    """Base class of every error privcity raises on purpose."""


class AuthenticationError(PrivcityError, InvalidTag):
    """A ciphertext, tag, nonce or associated data failed authentication.

    Also an instance of ``cryptography.exceptions.InvalidTag``, so code written for
    ``AESGCM`` keeps catching it. For batches, ``indices`` lists every message that failed
    (sorted); for a single message it is ``[0]``.
    """

    def __init__(self, message: str = "authentication failed", indices: Iterable[int] = (0,)):
        super().__init__(message)
        self.indices: list[int] = list(indices)
