"""Exceptions raised by privcity. Every one derives from :class:`PrivcityError`."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag

__all__ = [
    "PrivcityError", "AuthenticationError", "CertificateError", "EnvelopeError", "InvalidUpdate",
    "ModelFileError", "PrivacyBudgetExceeded", "SecureAggregationError",
]


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


class InvalidUpdate(PrivcityError):
    """One or more model updates were rejected: NaN or Inf, wrong length, shape or dtype, or a
    negative or non-finite weight.

    ``indices`` lists the rejected updates (sorted; ``[0]`` for a single update, as from
    ``Accumulator.add``) and ``reasons`` maps each of them to a short description. Nothing was
    added to any sum by the call that raised it.
    """

    # Defaults only so that pickling (cls(message), then the attributes) round-trips.
    def __init__(self, message: str = "invalid update", indices: Iterable[int] = (0,),
                 reasons: Mapping[int, str] | None = None) -> None:
        super().__init__(message)
        self.indices: list[int] = sorted(int(i) for i in indices)
        self.reasons: dict[int, str] = dict(reasons) if reasons is not None else {}


class ModelFileError(PrivcityError, ValueError):
    """A released-model file (``privcity.models.load``) was refused; ``kind`` says why.

    Kinds (also class attributes): ``not_npz`` (not a zip archive of .npy arrays, or cut
    short), ``missing_key`` (an array the format requires is absent), ``malformed`` (an array of
    the wrong dtype or shape, pickled objects, compressed or oversized members, bad JSON),
    ``unsupported_version`` (another format or a newer version), ``unknown_kind`` (a model
    class privcity does not know), ``inconsistent`` (a config that does not fit the stored
    parameters, or settings the model refuses). Also a ValueError. The message names the file.
    """

    NOT_NPZ = "not_npz"
    MISSING_KEY = "missing_key"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_KIND = "unknown_kind"
    INCONSISTENT = "inconsistent"
    KINDS = (NOT_NPZ, MISSING_KEY, MALFORMED, UNSUPPORTED_VERSION, UNKNOWN_KIND, INCONSISTENT)

    # Defaults only so that pickling (cls(message), then the attributes) round-trips.
    def __init__(self, message: str = "model file refused", *, kind: str = "malformed") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown ModelFileError kind {kind!r}")
        super().__init__(message)
        self.kind = kind


class PrivacyBudgetExceeded(PrivcityError):
    """A release or round would take the privacy loss past the accountant's epsilon budget.

    Raised before anything is released; the accountant records nothing it refused.
    ``epsilon_spent`` is what was already spent (unchanged by the refusal), ``epsilon_after``
    what the refused ``event`` would have brought it to, ``epsilon_budget`` the limit.
    """

    # Defaults only so that pickling (cls(message), then the attributes) round-trips.
    def __init__(self, message: str = "privacy budget exceeded", *, epsilon_spent: float = math.nan,
                 epsilon_after: float = math.nan, epsilon_budget: float = math.nan,
                 event: object = None) -> None:
        super().__init__(message)
        self.epsilon_spent = epsilon_spent
        self.epsilon_after = epsilon_after
        self.epsilon_budget = epsilon_budget
        self.event = event


class CertificateError(PrivcityError):
    """A certificate, CRL or key file was refused; ``kind`` says why.

    Kinds: ``malformed``, ``bad_signature``, ``wrong_issuer``, ``not_a_ca``, ``expired``,
    ``not_yet_valid``, ``revoked``, ``wrong_role``, ``wrong_subject``, ``crl_bad_signature``,
    ``crl_wrong_issuer``, ``crl_stale``, ``crl_not_yet_valid``, ``bad_passphrase``,
    ``passphrase_required``, ``wrong_key_type`` (see ``privcity.crypto.pki``).
    """

    # Defaults only so that pickling (cls(message), then the attributes) round-trips.
    def __init__(self, message: str = "certificate refused", *, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


class EnvelopeError(PrivcityError):
    """An envelope was refused before (or instead of) decryption; ``kind`` says why.

    Kinds (also class attributes, e.g. ``EnvelopeError.REPLAY``): ``truncated`` (shorter than
    its header or its declared body), ``malformed`` (bad magic, bad field, trailing bytes, too
    large, undecodable payload), ``unsupported_version`` (unknown version or cipher suite),
    ``unknown_sender``, ``revoked``, ``expired`` (sender certificate outside its validity),
    ``stale_crl`` (the receiver's CRL is past its next update: it fails closed), ``replay``
    (counter already seen, older than the window, or epoch discarded), ``wrong_receiver``.
    A bad tag is :class:`AuthenticationError`, not this. See ``privcity.crypto.envelope``.
    """

    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_SENDER = "unknown_sender"
    REVOKED = "revoked"
    EXPIRED = "expired"
    STALE_CRL = "stale_crl"
    REPLAY = "replay"
    WRONG_RECEIVER = "wrong_receiver"
    KINDS = (TRUNCATED, MALFORMED, UNSUPPORTED_VERSION, UNKNOWN_SENDER, REVOKED, EXPIRED,
             STALE_CRL, REPLAY, WRONG_RECEIVER)

    # Defaults only so that pickling (cls(message), then the attributes) round-trips.
    def __init__(self, message: str = "envelope refused", *, kind: str = "malformed") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown EnvelopeError kind {kind!r}")
        super().__init__(message)
        self.kind = kind


class SecureAggregationError(PrivcityError):
    """A step of secure aggregation was refused; ``kind`` says why.

    Kinds: ``too_few`` (fewer clients than the threshold at some step: nothing is revealed),
    ``threshold`` (a threshold not above half of each client's group), ``disconnected`` (the
    survivors fall apart into unlinked parts of the neighbourhood graph, whose sums could be
    unmasked apart), ``protocol`` (a step called out of order or twice), ``unknown_client`` (a
    message from or about a client outside the round), ``inconsistent`` (a roster, survivor
    list, setting or rebuilt secret that contradicts what this party knows), ``malformed`` (a
    bad key, vector or share). A share ciphertext that fails authentication is
    :class:`AuthenticationError`. See ``privcity.aggregate.secure``.
    """

    # Defaults only so that pickling (cls(message), then the attributes) round-trips.
    def __init__(self, message: str = "secure aggregation refused", *, kind: str = "protocol") -> None:
        super().__init__(message)
        self.kind = kind
