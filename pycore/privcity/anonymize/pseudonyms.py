"""Keyed pseudonyms: HMAC-SHA256 of identifiers under a per-epoch key.

Security: keep the master key away from the data it pseudonymizes -- whoever holds it can
recompute every pseudonym of every epoch and link them. Pseudonyms of one epoch cannot be linked
to another epoch's without the key (the epoch keys are independent HKDF outputs), but within an
epoch a pseudonym is a stable identifier: everything recorded under it links, so rotate epochs
as often as linking must be broken. A pseudonym is not anonymity (see privcity.anonymize.risk).

Construction (normative; tests recompute it with hmac and cryptography)::

    epoch_key = HKDF-SHA256(ikm = master key, salt = b"privcity.anonymize.Pseudonymizer v1",
                            info = b"epoch" || u64be(epoch), length = 32)
    pseudonym = HMAC-SHA256(epoch_key, canonical bytes of the identifier)

Canonical bytes: a str is UTF-8, an int is its decimal text (``42`` and ``"42"`` are the same
identifier, whichever way a column was loaded), bytes are taken as they are.

Usage::

    p = Pseudonymizer(master_key, epoch=7)
    p.pseudonymize(np.array([17, 42]))           # array of 64-hex-character str
    p.pseudonymize(names, output="uint64")       # first 8 bytes, big-endian, as uint64
"""
from __future__ import annotations

import hmac
import struct
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["HKDF_SALT", "MIN_KEY_BYTES", "Pseudonymizer"]

#: HKDF salt of the epoch keys.
HKDF_SALT = b"privcity.anonymize.Pseudonymizer v1"
#: Shortest master key accepted, bytes.
MIN_KEY_BYTES = 16
_OUTPUTS = ("hex", "uint64")


def _epoch(epoch: Any) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
        raise TypeError(f"epoch must be an int, not {type(epoch).__name__}")
    if not 0 <= epoch < 2**64:
        raise ValueError(f"epoch must be in [0, 2**64), got {epoch}")
    return int(epoch)


def _epoch_key(master: bytes, epoch: int) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT,
                info=b"epoch" + struct.pack(">Q", epoch))
    return hkdf.derive(master)


def _canonical(v: Any) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return b"%d" % int(v)
    raise TypeError(f"identifiers must be str, bytes or int, not {type(v).__name__}")


def _messages(ids: Any) -> tuple[list[bytes], tuple[int, ...] | None]:
    """Canonical bytes of every identifier and the shape of the input (None for a scalar)."""
    if isinstance(ids, (str, bytes, bytearray, int, np.integer, np.str_, np.bytes_)):
        return [_canonical(ids)], None
    if isinstance(ids, (list, tuple)):
        # Not through numpy's fixed-width strings, which drop trailing NULs (b"a\x00" -> b"a").
        arr = np.empty(len(ids), dtype=object)
        arr[:] = list(ids)
        if any(isinstance(v, (list, tuple)) for v in ids):
            arr = np.asarray(ids, dtype=object)
    else:
        arr = np.asarray(ids)
    kind = arr.dtype.kind
    flat = arr.reshape(-1)
    if kind in "iu":
        return [b"%d" % v for v in flat.tolist()], arr.shape
    if kind == "U":
        return [v.encode("utf-8") for v in flat.tolist()], arr.shape
    if kind == "S":   # fixed-width bytes: numpy drops trailing NULs
        return flat.tolist(), arr.shape
    if kind == "O":
        return [_canonical(v) for v in flat.tolist()], arr.shape
    raise TypeError(f"identifiers must be ints, str or bytes, got dtype {arr.dtype}")


class Pseudonymizer:
    """Keyed, rotating pseudonyms: HMAC-SHA256 under a per-epoch key derived by HKDF-SHA256.

    Parameters
    ----------
    key : bytes-like
        The master key, at least 16 bytes (32 random bytes recommended: ``os.urandom(32)``).
        It is copied and never shown, pickled or stored with the output.
    epoch : int
        Which epoch's pseudonyms this object gives (0 .. 2**64 - 1).
    """

    __slots__ = ("_master", "_key", "_epoch")

    def __init__(self, key: Any, *, epoch: int = 0) -> None:
        if isinstance(key, str):
            raise TypeError("key must be bytes-like, not str")
        try:
            master = bytes(memoryview(key))
        except TypeError:
            raise TypeError(f"key must be bytes-like, not {type(key).__name__}") from None
        if len(master) < MIN_KEY_BYTES:
            raise ValueError(f"key must be at least {MIN_KEY_BYTES} bytes, got {len(master)}")
        self._epoch = _epoch(epoch)
        self._master = master
        self._key = _epoch_key(master, self._epoch)

    @property
    def epoch(self) -> int:
        return self._epoch

    def at_epoch(self, epoch: int) -> Pseudonymizer:
        """A pseudonymizer for another epoch under the same master key."""
        return Pseudonymizer(self._master, epoch=epoch)

    def pseudonymize(self, ids: Any, *, output: str = "hex") -> Any:
        """Pseudonyms of ``ids`` (a scalar or array_like of str, bytes or int).

        Parameters
        ----------
        ids : str, bytes, int or array_like
            Identifiers; an array keeps its shape. Floats and bools are refused (TypeError).
        output : {"hex", "uint64"}
            ``"hex"``: the whole 256-bit HMAC as 64 lower-case hex characters (array of str).
            ``"uint64"``: its first 8 bytes as a big-endian unsigned integer -- compact, but
            two of n identifiers collide with probability about n**2 / 2**65 (3e-10 for 1e5).

        Returns
        -------
        str, int or numpy.ndarray
            One pseudonym per identifier (a Python str / int for a scalar input).
        """
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        msgs, shape = _messages(ids)
        key = self._key
        digests = [hmac.digest(key, m, "sha256") for m in msgs]
        if output == "hex":
            if shape is None:
                return digests[0].hex()
            return np.array([d.hex() for d in digests], dtype="U64").reshape(shape)
        words = np.frombuffer(b"".join(d[:8] for d in digests), dtype=">u8").astype(np.uint64)
        if shape is None:
            return int(words[0])
        return words.reshape(shape)

    def __repr__(self) -> str:
        return f"Pseudonymizer(epoch={self._epoch})"

    def __reduce__(self) -> Any:
        raise TypeError("Pseudonymizer holds a secret key and cannot be pickled or copied")

    def __getstate__(self) -> Any:  # Python 3.11+ gives every object one: never the key
        raise TypeError("Pseudonymizer holds a secret key and cannot be pickled or copied")
