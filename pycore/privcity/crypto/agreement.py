"""Authenticated key agreement: X25519 + HKDF-SHA256, one AES-256-GCM key per direction and epoch.

Security: the peer's X25519 key must come from a certificate that passed
``privcity.crypto.pki.verify_certificate`` (only a :class:`~privcity.crypto.pki.VerifiedCertificate`
is accepted). A derived key is for one direction (sender -> receiver) and one epoch: never
encrypt in both directions under one key, and build its nonces from a per-key counter. Derived
keys are secrets: never log, print or pickle them.

Wire format (changing any byte here changes every key)
------------------------------------------------------
``shared = X25519(my_private, peer_public)`` (an all-zero result, from a low-order peer key, is
refused), then ``key = HKDF-SHA256(shared, length=32, salt, info)`` with::

    salt = X25519_pub(sender) || X25519_pub(receiver)                 (32 + 32 raw bytes)
    info = b"privcity-v1|" || lp(suite) || lp(sender_id) || lp(receiver_id) || u64be(epoch)
    lp(s) = u32be(len(utf8(s))) || utf8(s)

Every variable field is length-prefixed and the epoch has a fixed width, so ``info`` is an
injective encoding of (suite, sender_id, receiver_id, epoch): no two tuples give the same bytes
(("ab", "c") and ("a", "bc") differ). The salt binds the exact public keys of both sides in
direction order. Ids are compared as UTF-8 bytes, without Unicode normalisation.
"""
from __future__ import annotations

import hmac
import struct
from typing import Any, Union

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .pki import IdentityKeys, VerifiedCertificate

__all__ = ["INFO_PREFIX", "SUITE_AES256GCM", "KeyRing", "derive_key", "kdf_info", "kdf_salt"]

#: Version tag that opens every HKDF info string.
INFO_PREFIX = b"privcity-v1|"
#: The only cipher suite so far; its name enters the info string.
SUITE_AES256GCM = "AES-256-GCM"
_KEY_LENGTHS = {SUITE_AES256GCM: 32}
_MAX_EPOCH = 2**64 - 1
_EPOCH = struct.Struct(">Q")  # the last 8 bytes of the HKDF info

PrivateAgreementKey = Union[x25519.X25519PrivateKey, IdentityKeys]


def _lp(field: str, name: str) -> bytes:
    if not isinstance(field, str):
        raise TypeError(f"{name} must be a str, not {type(field).__name__}")
    if not field:
        raise ValueError(f"{name} must not be empty")
    raw = field.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


def _check_epoch(epoch: int) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise TypeError(f"epoch must be an int, not {type(epoch).__name__}")
    if not 0 <= epoch <= _MAX_EPOCH:
        raise ValueError("epoch must be in [0, 2**64 - 1]")
    return epoch


def kdf_info(sender_id: str, receiver_id: str, epoch: int, suite: str = SUITE_AES256GCM) -> bytes:
    """The HKDF info string of the module docstring (part of the wire format)."""
    if suite not in _KEY_LENGTHS:
        raise ValueError(f"unknown cipher suite {suite!r}; known: {sorted(_KEY_LENGTHS)}")
    return (INFO_PREFIX + _lp(suite, "suite") + _lp(sender_id, "sender_id")
            + _lp(receiver_id, "receiver_id") + struct.pack(">Q", _check_epoch(epoch)))


def _raw(public_key: x25519.X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def kdf_salt(sender_public: x25519.X25519PublicKey,
             receiver_public: x25519.X25519PublicKey) -> bytes:
    """The HKDF salt: the raw X25519 public keys of sender then receiver (64 bytes)."""
    return _raw(sender_public) + _raw(receiver_public)


def _private(my_private: PrivateAgreementKey) -> x25519.X25519PrivateKey:
    if isinstance(my_private, IdentityKeys):
        return my_private.agreement_key
    if isinstance(my_private, x25519.X25519PrivateKey):
        return my_private
    raise TypeError("my_private must be an X25519PrivateKey or IdentityKeys")


def derive_key(my_private: PrivateAgreementKey, peer: VerifiedCertificate, *,
               sender_id: str, receiver_id: str, epoch: int,
               suite: str = SUITE_AES256GCM) -> bytes:
    """The 32-byte AES-256-GCM key for messages ``sender_id -> receiver_id`` in ``epoch``.

    ``peer`` is the other side's verified certificate; its subject id must be exactly one of
    ``sender_id`` and ``receiver_id`` (the other one is this side). Both sides, each with its
    own private key and the other's certificate, derive the same key. Raises TypeError for an
    unverified certificate and ValueError for inconsistent ids or a low-order peer key.
    """
    if not isinstance(peer, VerifiedCertificate):  # (checked first, as always)
        raise TypeError("peer must be a VerifiedCertificate: verify the peer's certificate "
                        "with privcity.crypto.pki.verify_certificate first")
    info = kdf_info(sender_id, receiver_id, epoch, suite)
    shared, salt = _agree(my_private, peer, sender_id=sender_id, receiver_id=receiver_id)
    return _expand(shared, salt, info, suite)


def _agree(my_private: PrivateAgreementKey, peer: Any, *, sender_id: str,
           receiver_id: str) -> tuple[bytes, bytes]:
    """(X25519 shared secret, HKDF salt) of :func:`derive_key`, after its checks; the same for
    every epoch, so a KeyRing computes it once per peer key."""
    if not isinstance(peer, VerifiedCertificate):
        raise TypeError("peer must be a VerifiedCertificate: verify the peer's certificate "
                        "with privcity.crypto.pki.verify_certificate first")
    if sender_id == receiver_id:
        raise ValueError("sender_id and receiver_id must differ")
    if peer.subject_id not in (sender_id, receiver_id):
        raise ValueError(f"peer certificate is for {peer.subject_id!r}, which is neither "
                         f"sender_id {sender_id!r} nor receiver_id {receiver_id!r}")
    mine = _private(my_private)
    my_public, peer_public = mine.public_key(), peer.agreement_key
    if _raw(my_public) == _raw(peer_public):
        raise ValueError("peer certificate holds this side's own agreement key")
    try:
        shared = mine.exchange(peer_public)
    except ValueError:
        raise ValueError("X25519 agreement failed: the peer key is of low order") from None
    salt = kdf_salt(peer_public, my_public) if peer.subject_id == sender_id \
        else kdf_salt(my_public, peer_public)
    return shared, salt


def _expand(shared: bytes, salt: bytes, info: bytes, suite: str = SUITE_AES256GCM) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=_KEY_LENGTHS[suite], salt=salt,
                info=info).derive(shared)


class KeyRing:
    """This side's derived keys, cached per (peer, peer key, epoch, direction).

    ``sending_key(peer, e)`` is the key for ``my_id -> peer`` in epoch ``e``;
    ``receiving_key(peer, e)`` the key for ``peer -> my_id``. Call :meth:`discard_before` as
    epochs rotate and :meth:`forget` when a peer is revoked (the ring does not re-verify).
    Not picklable or copyable; the repr shows no keys.
    """

    __slots__ = ("_private", "_my_id", "_keys", "_shared")

    def __init__(self, my_private: PrivateAgreementKey, my_id: str) -> None:
        self._private = _private(my_private)
        _lp(my_id, "my_id")
        self._my_id = my_id
        # Both caches are grouped by peer id, so that forgetting a peer (a receiver admitting a
        # new sender does it each time) costs that peer's entries, not a scan of every peer's.
        # peer id -> (peer key, epoch, direction) -> key
        self._keys: dict[str, dict[tuple[bytes, int, str], bytes]] = {}
        # peer id -> (peer key, direction) -> (HKDF pseudorandom key, HKDF info but its epoch):
        # an epoch's key is then one HKDF expand (3 us) instead of an X25519 exchange (40 us,
        # and Python's key-object overhead) and a whole HKDF; the same bytes derive_key gives.
        self._shared: dict[str, dict[tuple[bytes, str], tuple[bytes, bytes]]] = {}

    @property
    def my_id(self) -> str:
        return self._my_id

    def _get(self, peer: VerifiedCertificate, epoch: int, direction: str) -> bytes:
        if not isinstance(peer, VerifiedCertificate):
            raise TypeError("peer must be a VerifiedCertificate (see verify_certificate)")
        peer_id, peer_key = peer.subject_id, peer.agreement_key_bytes
        slot = (peer_key, _check_epoch(epoch), direction)
        keys = self._keys.get(peer_id)
        key = keys.get(slot) if keys is not None else None
        if key is None:
            sender, receiver = (self._my_id, peer_id) if direction == "send" \
                else (peer_id, self._my_id)
            pairs = self._shared.setdefault(peer_id, {})
            agreed = pairs.get((peer_key, direction))
            if agreed is None:
                # HKDF's extract step (RFC 5869 2.2: PRK = HMAC-SHA256(salt, shared secret)) and
                # the info string up to its epoch are the same for every epoch of this pair:
                # an epoch's key is then HKDF's expand step alone, derive_key's bytes.
                shared, salt = _agree(self._private, peer, sender_id=sender,
                                      receiver_id=receiver)
                agreed = pairs[(peer_key, direction)] = (
                    hmac.digest(salt, shared, "sha256"), kdf_info(sender, receiver, 0)[:-8])
            prk, info_head = agreed
            key = HKDFExpand(algorithm=hashes.SHA256(), length=_KEY_LENGTHS[SUITE_AES256GCM],
                             info=info_head + _EPOCH.pack(epoch)).derive(prk)
            self._keys.setdefault(peer_id, {})[slot] = key
        return key

    def sending_key(self, peer: VerifiedCertificate, epoch: int) -> bytes:
        """Key for messages from this side to ``peer`` in ``epoch``."""
        return self._get(peer, epoch, "send")

    def receiving_key(self, peer: VerifiedCertificate, epoch: int) -> bytes:
        """Key for messages from ``peer`` to this side in ``epoch``."""
        return self._get(peer, epoch, "receive")

    def discard_before(self, epoch: int) -> int:
        """Drop every cached key of an epoch below ``epoch``; returns how many were dropped."""
        dropped = 0
        for peer_id in list(self._keys):
            keys = self._keys[peer_id]
            old = [slot for slot in keys if slot[1] < epoch]
            for slot in old:
                del keys[slot]
            if not keys:
                del self._keys[peer_id]
            dropped += len(old)
        return dropped

    def forget(self, peer_id: str) -> int:
        """Drop every cached key shared with ``peer_id``; returns how many were dropped."""
        self._shared.pop(peer_id, None)
        return len(self._keys.pop(peer_id, {}))

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys.values())

    def __repr__(self) -> str:
        return f"KeyRing(my_id={self._my_id!r}, cached={len(self)})"

    def __reduce__(self) -> Any:
        raise TypeError("KeyRing holds secret keys and cannot be pickled or copied")
