"""AES-256-GCM with the semantics of ``cryptography``'s ``AESGCM``, on privcity's C++ kernels.

Security: never encrypt two messages under one key with the same nonce. Build nonces from a
per-key counter (privcity's envelopes do); random 12-byte nonces are safe only for fewer than
2**32 messages per key.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import _core
from .._dispatch import _AES_LEVELS, _selected_aes, aes_implementations
from ..errors import AuthenticationError

__all__ = ["AES256GCM"]

Buffer = Union[bytes, bytearray, memoryview, np.ndarray]
_MAX_MESSAGE = int(_core.AEAD_MAX_MESSAGE)
_KNOWN = ("vaes512", "vaes256", "aesni", "armv8", "cryptography")
_TAG = 16


_EMPTY = memoryview(b"")


def _buffer(obj: Any, name: str) -> memoryview:
    """The buffer of a bytes-like object, checked: C-contiguous, not an array of objects."""
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, not {type(obj).__name__}") from None
    if not mv.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous buffer")
    if "O" in mv.format:
        raise TypeError(f"{name} is an array of Python objects; pass bytes-like data")
    return mv


def _view(obj: Any, name: str) -> memoryview:
    """A flat byte view of a C-contiguous bytes-like object, without copying."""
    mv = _buffer(obj, name)
    if mv.nbytes == 0:
        return _EMPTY  # memoryview.cast refuses shapes with a zero
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv


def _uint8_2d(obj: Any, name: str, what: str) -> np.ndarray:
    """An (N, L) uint8 array view of a buffer, with the native binding's errors."""
    arr = np.asarray(_buffer(obj, name))
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must have dtype uint8, got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be {what}, got ndim {arr.ndim}")
    return arr


def _as_nonces(nonces: Any) -> Any:
    """Accepts an (N, 12) uint8 array as is; converts a sequence of 12-byte objects."""
    if isinstance(nonces, (list, tuple)):
        views = [_view(n, f"nonces[{i}]") for i, n in enumerate(nonces)]
        for i, v in enumerate(views):
            if v.nbytes != 12:
                raise ValueError(f"nonces[{i}] must be 12 bytes")
        return np.frombuffer(b"".join(views), dtype=np.uint8).reshape(len(views), 12)
    return nonces


def _per_message_ad(associated_data: Any, n: int) -> Any:
    """An (N, k) array of associated data is one row per message, like the nonces and an
    (N, L) array of messages; any other bytes-like is one value for every message."""
    if isinstance(associated_data, np.ndarray) and associated_data.ndim >= 2:
        if associated_data.ndim != 2 or associated_data.shape[0] != n:
            raise ValueError(f"associated_data as an array must be (N, k) with N = {n} rows, "
                             f"one per message; got shape {associated_data.shape}")
        return list(np.ascontiguousarray(associated_data))
    return associated_data


class AES256GCM:
    """AES-256-GCM authenticated encryption (96-bit nonces, 128-bit tags).

    A drop-in for ``cryptography.hazmat.primitives.ciphers.aead.AESGCM`` with a 256-bit key:
    ``encrypt`` returns ciphertext || tag, ``decrypt`` takes the same, ``associated_data`` may
    be None. A failed decryption (including data shorter than the tag) raises
    :class:`privcity.AuthenticationError` (which is also a ``cryptography.exceptions.InvalidTag``)
    and releases no plaintext. Deliberate differences: nonces must be exactly 12 bytes (AESGCM
    also takes 8 to 128; GCM with other lengths is weaker and slower), and any C-contiguous
    buffer is taken as its raw bytes (AESGCM refuses some numpy dtypes).

    Parameters
    ----------
    key : bytes-like
        32 bytes. The object keeps only the expanded key, in native memory wiped on release;
        it cannot be pickled and its repr shows no key material.
    implementation : str, optional
        ``"vaes512"``, ``"vaes256"``, ``"aesni"``, ``"armv8"`` or ``"cryptography"``; default:
        the best this CPU has, capped by the ``PRIVCITY_ISA`` environment variable read at import.
        ``privcity.aes_implementations()`` lists what is available.

    Any C-contiguous bytes-like input (bytes, bytearray, memoryview, numpy arrays) is read
    without copying; large inputs are processed with the GIL released.
    """

    __slots__ = ("_impl", "_native", "_fallback")

    def __init__(self, key: Buffer, *, implementation: str | None = None) -> None:
        kv = _view(key, "key")
        if kv.nbytes != 32:
            raise ValueError("AES256GCM key must be 32 bytes")
        impl = _selected_aes() if implementation is None else implementation
        if impl not in aes_implementations():
            known = ", ".join(repr(n) for n in _KNOWN)
            if impl in _KNOWN:
                raise ValueError(f"implementation {impl!r} is not available on this CPU")
            raise ValueError(f"implementation must be one of {known}, got {impl!r}")
        self._impl = impl
        if impl == "cryptography":
            self._native = None
            self._fallback = AESGCM(bytes(kv))
        else:
            self._native = _core.Aes256Gcm(kv, _AES_LEVELS[impl])
            self._fallback = None

    @staticmethod
    def generate_key(bit_length: int = 256) -> bytes:
        """A fresh random 32-byte key from the operating system's CSPRNG."""
        if bit_length != 256:
            raise ValueError("AES256GCM keys are 256 bits")
        return os.urandom(32)

    @property
    def implementation(self) -> str:
        """The implementation it runs on: vaes512, vaes256, aesni, armv8 or cryptography."""
        return self._impl

    def __repr__(self) -> str:
        return f"AES256GCM(implementation={self._impl!r})"

    def __reduce__(self) -> Any:
        raise TypeError("AES256GCM holds a secret key and cannot be pickled")

    # --- single messages -------------------------------------------------------------------

    def encrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None = None) -> bytes:
        """Encrypts ``data``; returns ciphertext || 16-byte tag.

        ``nonce`` must be 12 bytes and never repeat under this key. ``data`` may be at most
        2**36 - 32 bytes.
        """
        if self._native is not None:
            return self._native.encrypt(nonce, data, associated_data)
        return self._fallback_encrypt(nonce, data, associated_data)

    def decrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer | None = None) -> bytes:
        """Authenticates and decrypts ciphertext || tag; raises AuthenticationError on failure."""
        if self._native is not None:
            try:
                return self._native.decrypt(nonce, data, associated_data)
            except _core.TagMismatch:
                raise AuthenticationError() from None
        return self._fallback_decrypt(nonce, data, associated_data)

    # --- batches -----------------------------------------------------------------------------

    def encrypt_many(
        self,
        nonces: Any,
        messages: Sequence[Buffer] | np.ndarray,
        associated_data: Buffer | Sequence[Buffer | None] | None = None,
    ) -> list[bytes] | np.ndarray:
        """Encrypts N messages in one call.

        Parameters
        ----------
        nonces : (N, 12) uint8 array
            One nonce per message (a sequence of 12-byte objects is converted).
        messages : list of bytes-like, or (N, L) uint8 array
        associated_data : None, one bytes-like for every message, a sequence of N (None
            entries mean no associated data), or an (N, k) array (row i for message i).

        Returns
        -------
        A list of N bytes objects (ciphertext || tag) for list input, or an (N, L + 16) uint8
        array for array input. The native path makes one call with one GIL release.

        Every nonce must be new for this key, across calls and within the batch: GCM with a
        repeated nonce leaks the XOR of the plaintexts and lets tags be forged. This call does
        not check it (privcity.crypto.envelope draws nonces from persisted counters).
        """
        nonces = _as_nonces(nonces)
        associated_data = _per_message_ad(associated_data, len(nonces))
        if self._native is not None:
            return self._native.encrypt_many(nonces, messages, associated_data)
        return self._fallback_many(nonces, messages, associated_data, encrypt=True, strict=True)[0]

    def decrypt_many(
        self,
        nonces: Any,
        ciphertexts: Sequence[Buffer] | np.ndarray,
        associated_data: Buffer | Sequence[Buffer | None] | None = None,
        *,
        return_status: bool = False,
    ) -> Any:
        """Authenticates and decrypts N messages in one call.

        By default the batch is all or nothing: if any message fails, AuthenticationError is
        raised with ``.indices`` listing every failed message, and no plaintext is returned
        (the native path wipes every output buffer).

        With ``return_status=True`` the call returns ``(plaintexts, ok)`` instead of raising:
        ``ok`` is an (N,) bool array; failed list entries are None and failed array rows are
        zeros; messages that authenticated are returned as usual.
        """
        nonces = _as_nonces(nonces)
        associated_data = _per_message_ad(associated_data, len(nonces))
        strict = not return_status
        if self._native is not None:
            out, ok = self._native.decrypt_many(nonces, ciphertexts, associated_data, strict)
        else:
            out, ok = self._fallback_many(nonces, ciphertexts, associated_data, encrypt=False, strict=strict)
        if strict and not ok.all():
            bad = np.flatnonzero(~ok).tolist()
            shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
            raise AuthenticationError(
                f"{len(bad)} of {len(ok)} messages failed authentication (indices {shown})", bad
            )
        return (out, ok) if return_status else out

    # --- fallback on cryptography (OpenSSL) --------------------------------------------------

    def _check(self, nonce: Any, data: Any, ad: Any, decrypt: bool, suffix: str = "") -> tuple:
        nv = _view(nonce, "nonce" + suffix)
        if nv.nbytes != 12:
            raise ValueError("nonce must be 12 bytes")
        name = ("ciphertexts" if decrypt and suffix else "messages" if suffix else "data") + suffix
        dv = _view(data, name)
        n = dv.nbytes - (_TAG if decrypt else 0)
        if n < 0:  # too short to hold a tag: an authentication failure, as in AESGCM
            raise AuthenticationError()
        if n > _MAX_MESSAGE:
            raise ValueError(f"{name} is longer than GCM allows (2**36 - 32 bytes)")
        av = None if ad is None else _view(ad, "associated_data" + suffix)
        return nv, dv, av

    def _fallback_encrypt(self, nonce: Any, data: Any, ad: Any) -> bytes:
        nv, dv, av = self._check(nonce, data, ad, decrypt=False)
        return self._fallback.encrypt(nv, dv, av)

    def _fallback_decrypt(self, nonce: Any, data: Any, ad: Any) -> bytes:
        nv, dv, av = self._check(nonce, data, ad, decrypt=True)
        try:
            return self._fallback.decrypt(nv, dv, av)
        except InvalidTag:
            raise AuthenticationError() from None

    def _fallback_many(self, nonces: Any, items: Any, ad: Any, *, encrypt: bool, strict: bool) -> tuple:
        nonces = _uint8_2d(nonces, "nonces", "an (N, 12) uint8 array")
        if nonces.shape[1] != 12:
            raise ValueError("nonces must be an (N, 12) uint8 array")
        n = nonces.shape[0]
        name = "messages" if encrypt else "ciphertexts"
        array_mode = not isinstance(items, (list, tuple))
        if array_mode:
            try:
                memoryview(items)
            except TypeError:
                raise TypeError(
                    f"{name} must be a list of bytes-like objects or an (N, L) uint8 array"
                ) from None
            items = _uint8_2d(items, name, "an (N, L) uint8 array")
            if not encrypt and items.shape[1] < _TAG:
                raise ValueError(f"{name} rows are shorter than the 16-byte tag")
        if len(items) != n:
            raise ValueError(f"{name} has {len(items)} items but nonces has {n} rows")
        if ad is None or not isinstance(ad, (list, tuple)):
            ads = [None if ad is None else _view(ad, "associated_data")] * n
        elif len(ad) != n:
            raise ValueError(f"associated_data has {len(ad)} items but nonces has {n} rows")
        else:
            ads = list(ad)
        checked: list = []
        for i in range(n):
            try:
                checked.append(self._check(nonces[i], items[i], ads[i], not encrypt, f"[{i}]"))
            except AuthenticationError:
                checked.append(None)  # a ciphertext shorter than the tag: fails below
        ok = np.ones(n, dtype=bool)
        out: list = []
        for i, item in enumerate(checked):
            if item is None:
                ok[i] = False
                out.append(None)
                continue
            nv, dv, av = item
            if encrypt:
                out.append(self._fallback.encrypt(nv, dv, av))
                continue
            try:
                out.append(self._fallback.decrypt(nv, dv, av))
            except InvalidTag:
                ok[i] = False
                out.append(None)
        if strict and not ok.all():
            out = [None] * n
        if array_mode:
            width = items.shape[1] + (_TAG if encrypt else -_TAG)
            arr = np.zeros((n, width), dtype=np.uint8)
            for i, r in enumerate(out):
                if r is not None:
                    arr[i] = np.frombuffer(r, dtype=np.uint8)
            return arr, ok
        return out, ok
