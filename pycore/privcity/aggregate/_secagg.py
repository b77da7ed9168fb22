"""What the client and the server of secure aggregation share: the derivations, the messages, the
settings digest, the signed encodings, the neighbourhood graph and the argument checks (see
:mod:`privcity.aggregate.secure` for the protocol)."""
from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import _core
from ..crypto.aead import AES256GCM
from ..errors import SecureAggregationError

_PREFIX = b"privcity-secagg-v1|"
_MAGIC = b"PCSA"
_SHARE = 16  # bytes per Shamir share (an element of GF(2^128))
_SHARES_BODY = struct.Struct(">4sqqII")  # magic, sender, recipient, index of sender, of recipient
_SEALED = _SHARES_BODY.size + 2 * _SHARE + 16  # one sealed message: body, two shares, GCM tag
_SIGNATURE = 64  # an Ed25519 signature
_MAX_CERTIFICATE = 16_384  # bytes of DER an advertisement may carry
_MAX_ID = 2**63 - 1
_KINDS = {np.dtype(np.uint32): _core.mask_add_u32, np.dtype(np.uint64): _core.mask_add_u64}
_SUMS = {np.dtype(np.uint32): _core.modular_sum_u32, np.dtype(np.uint64): _core.modular_sum_u64}


def _fail(message: str, kind: str) -> SecureAggregationError:
    return SecureAggregationError(message, kind=kind)


def _client_id(value: Any, name: str = "client id") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    value = int(value)
    if not 0 <= value <= _MAX_ID:
        raise ValueError(f"{name} must be in [0, 2**63 - 1], got {value}")
    return value


def _is_id(value: Any) -> bool:
    """Whether value is a client id (an int in [0, 2**63 - 1], not a bool)."""
    return (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))
            and 0 <= int(value) <= _MAX_ID)


def _dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _KINDS:
        raise ValueError(f"dtype must be uint32 or uint64 (the sum is taken mod 2**32 or "
                         f"2**64), got {dt}")
    return dt


def _lp(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def _hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def _raw_public(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _s_key(seed: bytes, session: bytes) -> x25519.X25519PrivateKey:
    """The mask-agreement key s, derived from the 16-byte secret that is Shamir-shared (one
    share per client instead of two for a raw 32-byte key; 128 bits, X25519's own level)."""
    return x25519.X25519PrivateKey.from_private_bytes(
        _hkdf(seed, b"", _PREFIX + b"s key|" + _lp(session)))


def _self_mask_seed(seed: bytes, session: bytes) -> bytes:
    """The PRG key of the self mask, from its 16-byte shared secret b."""
    return _hkdf(seed, b"", _PREFIX + b"self mask|" + _lp(session))


def _exchange(private: x25519.X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(x25519.X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # an all-zero shared secret: a low-order public key
        raise _fail(f"key agreement refused: {exc}", "malformed") from None


def _mask_seed(private: x25519.X25519PrivateKey, mine: tuple[int, bytes],
               theirs: tuple[int, bytes], session: bytes) -> bytes:
    """s_uv: the same 32 bytes on both sides (ordered by client id)."""
    (lo, lo_key), (hi, hi_key) = sorted((mine, theirs))
    info = _PREFIX + b"mask|" + _lp(session) + struct.pack(">qq", lo, hi)
    return _hkdf(_exchange(private, theirs[1]), lo_key + hi_key, info)


def _share_key(private: x25519.X25519PrivateKey, peer_public: bytes, sender: tuple[int, bytes],
               recipient: tuple[int, bytes], session: bytes) -> tuple[AES256GCM, bytes]:
    """The AES-256-GCM key of the one message sender -> recipient (each an (id, c public key)
    pair; `private` is this side's c key, `peer_public` the other side's) and its associated
    data. The salt orders the keys by direction, so the reverse direction gets another key."""
    ad = _PREFIX + b"shares|" + _lp(session) + struct.pack(">qq", sender[0], recipient[0])
    key = _hkdf(_exchange(private, peer_public), sender[1] + recipient[1], ad)
    return AES256GCM(key), ad


def _split(secret: bytes, threshold: int, n: int) -> list[bytes]:
    """Shamir shares of a 16-byte secret: result[i] is for index i+1. The polynomial's other
    threshold - 1 coefficients are uniform from the OS (os.urandom); shares are p(1) .. p(n) in
    GF(2^128), evaluated by _core.shamir_eval in pycryptodome's field and share format
    (Crypto.Protocol.SecretSharing.Shamir, which recombines them: tests/test_shamir.py)."""
    if len(secret) != _SHARE:
        raise ValueError(f"the secret must be {_SHARE} bytes, not {len(secret)}")
    if not 1 <= threshold <= n:
        raise ValueError(f"need 1 <= threshold <= n, got threshold {threshold} and n {n}")
    coeffs = np.empty(_SHARE * threshold, np.uint8)  # highest degree first, the secret last
    coeffs[:-_SHARE] = np.frombuffer(os.urandom(_SHARE * (threshold - 1)), np.uint8)
    coeffs[-_SHARE:] = np.frombuffer(secret, np.uint8)
    try:
        shares = _core.shamir_eval(coeffs, np.arange(1, n + 1, dtype=np.uint32))
    finally:
        coeffs.fill(0)
    return [row.tobytes() for row in shares]


def _combine(shares: list[tuple[int, bytes]]) -> bytes:
    """The 16-byte secret from (index, share) pairs (Lagrange interpolation at 0)."""
    for index, share in shares:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) \
                or not 1 <= index < 2**32:
            raise ValueError(f"a share index must be an integer in [1, 2**32), not {index!r}")
        if not isinstance(share, (bytes, bytearray)) or len(share) != _SHARE:
            raise ValueError(f"each share must be {_SHARE} bytes")
    xs = np.fromiter((i for i, _ in shares), np.uint32, len(shares))
    return _core.shamir_interpolate0(xs, np.frombuffer(b"".join(y for _, y in shares), np.uint8))


# --- messages ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Advertisement:
    """Step 0: a client's two X25519 public keys (raw 32 bytes each), the digest of the round's
    settings it was built with (session, dim, dtype, threshold, neighbors, min_survivors and
    whether the round is authenticated: every party must agree), its commitment to its
    self-mask secret b (SHA-256, so that a bad share of b is caught when the server rebuilds
    it), and in an authenticated round its Ed25519 signature over all of these and its
    certificate (DER) from the city CA. Unauthenticated: both empty."""

    client: int
    c_public: bytes
    s_public: bytes
    settings: bytes
    commitment: bytes
    signature: bytes = b""
    certificate: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "client", _client_id(self.client))
        for name in _FIELDS32 + ("signature", "certificate"):
            value = getattr(self, name)
            if isinstance(value, (bytearray, memoryview)):
                object.__setattr__(self, name, bytes(value))
        problem = _advertisement_problem(self)
        if problem is not None:
            raise _fail(problem, "malformed")

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: the id, four 32-byte fields, the signature and the certificate
        (with its 4-byte length)."""
        return 8 + 4 * 32 + len(self.signature) + 4 + len(self.certificate)


_FIELDS32 = ("c_public", "s_public", "settings", "commitment")


def _well_formed(d: dict) -> bool:
    try:
        c, sig, cert = d["client"], d["signature"], d["certificate"]
        cp, sp, st, cm = d["c_public"], d["s_public"], d["settings"], d["commitment"]
    except KeyError:
        return False
    return (type(c) is int and 0 <= c <= _MAX_ID
            and type(cp) is bytes and len(cp) == 32 and type(sp) is bytes and len(sp) == 32
            and type(st) is bytes and len(st) == 32 and type(cm) is bytes and len(cm) == 32
            and type(sig) is bytes and len(sig) in (0, _SIGNATURE)
            and type(cert) is bytes and len(cert) <= _MAX_CERTIFICATE)


def _advertisement_problem(adv: Any) -> str | None:
    """Why adv is not a well-formed Advertisement, or None. Checked on every field, since a
    frozen dataclass can be built around its __post_init__ (object.__new__)."""
    if type(adv) is Advertisement and _well_formed(adv.__dict__):
        return None  # the common case, checked fast: every client checks every entry
    if not isinstance(adv, Advertisement):
        return f"an advertisement must be an Advertisement, not {type(adv).__name__}"
    fields = tuple(getattr(adv, name, None) for name in _FIELDS32)
    signature, cert = getattr(adv, "signature", None), getattr(adv, "certificate", None)
    if not _is_id(getattr(adv, "client", None)):
        return "the advertisement's client id is not an int in [0, 2**63 - 1]"
    for name, value in zip(_FIELDS32, fields):
        if type(value) is not bytes or len(value) != 32:
            return f"{name} of client {adv.client} must be 32 bytes"
    if type(signature) is not bytes or len(signature) not in (0, _SIGNATURE):
        return f"the signature of client {adv.client} must be {_SIGNATURE} bytes (or empty)"
    if type(cert) is not bytes or len(cert) > _MAX_CERTIFICATE:
        return f"the certificate of client {adv.client} must be at most {_MAX_CERTIFICATE} bytes"
    return None


@dataclass(frozen=True)
class Unmasking:
    """The last step: one client's shares for the server: of b_w for each surviving w, of s_w
    for each dropped w (16 bytes each)."""

    client: int
    self_mask_shares: dict[int, bytes] = field(default_factory=dict)
    key_shares: dict[int, bytes] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return 8 + (8 + _SHARE) * (len(self.self_mask_shares) + len(self.key_shares))


def _settings_digest(session: bytes, dim: int, dtype: np.dtype, threshold: int,
                     neighbors: int | None, min_survivors: int | None,
                     authenticated: bool) -> bytes:
    return hashlib.sha256(_PREFIX + b"settings|" + _lp(session) + struct.pack(
        ">qqqqqq", dim, dtype.itemsize, threshold, -1 if neighbors is None else neighbors,
        -1 if min_survivors is None else min_survivors, int(authenticated))).digest()


def _commit(b: bytes, session: bytes) -> bytes:
    return hashlib.sha256(_PREFIX + b"commit b|" + _lp(session) + b).digest()


# --- what is signed ----------------------------------------------------------------------------

def _advertisement_message(session: bytes, adv: Advertisement) -> bytes:
    """The bytes a client signs in its advertisement: every field but the signature and the
    certificate, each length-prefixed after a domain prefix, so no two advertisements (nor an
    advertisement and a survivor list) share an encoding."""
    return (_PREFIX + b"advertisement|" + _lp(session) + struct.pack(">q", adv.client)
            + _lp(adv.c_public) + _lp(adv.s_public) + _lp(adv.settings) + _lp(adv.commitment))


def _roster_digest(session: bytes, roster: Mapping[int, Advertisement]) -> bytes:
    """SHA-256 of the roster a client used (ids, keys, commitments in id order): the
    consistency signatures name it, so that signers who were shown different rosters do not
    count for each other."""
    return hashlib.sha256(_PREFIX + b"roster|" + _lp(session) + b"".join(
        struct.pack(">q", c) + a.c_public + a.s_public + a.commitment
        for c, a in sorted(roster.items()))).digest()


def _survivor_list(survivors: Iterable[int]) -> bytes:
    """The encoding of U3 in the signed bytes: its size, then its ids in order (8 bytes each)."""
    live = sorted(survivors)
    return struct.pack(f">{len(live) + 1}q", len(live), *live)


def _survivors_message(session: bytes, roster: bytes, signer: int, survivors: bytes) -> bytes:
    """The bytes a client signs in the consistency step: the roster digest, its own id and
    the survivor list U3 (encoded once by _survivor_list)."""
    return (_PREFIX + b"survivors|" + _lp(session) + _lp(roster) + struct.pack(">q", signer)
            + survivors)


# --- the roster and the graph ------------------------------------------------------------------

def _roster(advertisements: Any, threshold: int, settings: bytes) -> dict[int, Advertisement]:
    """A roster as a client takes it from the server: any flaw is the server's and refuses the
    round (the server leaves bad advertisements out before it forwards the roster)."""
    items = list(advertisements.values()) if isinstance(advertisements, Mapping) \
        else list(advertisements)
    roster: dict[int, Advertisement] = {}
    keys: set[bytes] = set()
    for adv in items:
        if not isinstance(adv, Advertisement):
            raise TypeError("advertisements must be Advertisement objects, not "
                            f"{type(adv).__name__}")
        problem = _advertisement_problem(adv)
        if problem is not None:
            raise _fail(problem, "malformed")
        if adv.client in roster:
            raise _fail(f"client {adv.client} advertised twice", "malformed")
        if adv.settings != settings:
            raise _fail(f"client {adv.client} was set up for another round (session, dim, dtype, "
                        "threshold, neighbors, min_survivors or authentication differ)",
                        "inconsistent")
        if adv.c_public in keys or adv.s_public in keys or adv.c_public == adv.s_public:
            raise _fail(f"client {adv.client} reuses a public key already advertised", "malformed")
        keys.update((adv.c_public, adv.s_public))
        roster[adv.client] = adv
    if len(roster) < threshold:
        raise _fail(f"{len(roster)} clients advertised keys; the threshold is {threshold}",
                    "too_few")
    return dict(sorted(roster.items()))


def _groups(roster: Mapping[int, Advertisement], neighbors: int | None, threshold: int,
            session: bytes) -> dict[int, list[int]]:
    """Each client's group: itself and the clients it shares its secrets with and masks
    against, sorted by id. neighbors=None: everyone (Bonawitz et al. 2017). Otherwise SecAgg+
    (Bell et al. 2020): a Harary graph H(n, k) (k = neighbors rounded up to even: each client
    linked to the k/2 next and k/2 previous ones) over an order of the clients drawn from the
    session and every advertised key (so that no party can choose it before all the keys are
    in), the same on every party; the graph is symmetric, so the pairwise masks still cancel.

    The threshold must exceed half of each group: a server that told some of a client's group
    it survived and the others it dropped would otherwise collect both its self-mask secret
    and its key from two disjoint sets of answers, and so its input."""
    ids = sorted(roster)
    n = len(ids)
    if neighbors is None or neighbors >= n - 1:
        groups = {c: list(ids) for c in ids}
        size = n
    else:
        half = (neighbors + 1) // 2
        size = 2 * half + 1
        seed = hashlib.sha256(_PREFIX + b"graph|" + _lp(session) + b"".join(
            struct.pack(">q", c) + roster[c].c_public + roster[c].s_public for c in ids)).digest()
        order = sorted(ids, key=lambda c: (hashlib.sha256(seed + struct.pack(">q", c)).digest(), c))
        groups = {}
        for p, c in enumerate(order):
            groups[c] = sorted({order[(p + j) % n] for j in range(-half, half + 1)})
    if threshold > size:
        raise _fail(f"the threshold {threshold} exceeds the group of each client ({size}, "
                    "itself included)", "too_few")
    if 2 * threshold <= size:
        raise _fail(f"the threshold {threshold} must exceed half of each client's group "
                    f"({size}): at least {size // 2 + 1}", "threshold")
    return groups


def _connected(members: set[int], groups: Mapping[int, list[int]]) -> bool:
    """Whether the graph of the groups, restricted to members, is connected: if it is not, the
    sum of each part could be unmasked apart from the rest."""
    if not members:
        return True
    start = next(iter(members))
    seen = {start}
    todo = [start]
    while todo:
        u = todo.pop()
        for v in groups[u]:
            if v in members and v not in seen:
                seen.add(v)
                todo.append(v)
    return len(seen) == len(members)


def _shamir_index(groups: Mapping[int, list[int]], owner: int, holder: int) -> int:
    """The index (1-based) of holder's share of owner's secrets: its place in owner's group."""
    return groups[owner].index(holder) + 1


def _uncertified(owners: Iterable[int], groups: Mapping[int, list[int]], signers: set[int],
                 threshold: int) -> list[int]:
    """The owners w whose group holds fewer than `threshold` signers of the survivor list. A
    client reveals its shares only when none is short, for every survivor and every client
    whose shares it holds: honest clients sign one list each, so when 2 * threshold exceeds a
    group plus its corrupt members, no two lists can both gather a threshold of one group."""
    return sorted(w for w in owners if len(signers.intersection(groups[w])) < threshold)


# --- argument checks ---------------------------------------------------------------------------

def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _threshold(value: Any) -> int:
    t = _positive(value, "threshold")
    if t < 2:
        raise ValueError("threshold must be at least 2 (one share would reveal each secret)")
    return t


def _optional_positive(value: Any, name: str) -> int | None:
    return None if value is None else _positive(value, name)


def _session(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"session must be bytes, not {type(value).__name__}")
    return bytes(value)


def _authenticated(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"authenticated must be True or False, not {value!r}")
    return value


def _vector(x: Any, dim: int, dtype: np.dtype, what: str) -> np.ndarray:
    """A client's own input as a word vector of the ring (integers, possibly wider, that fit)."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise _fail(f"{what} has shape {arr.shape}, expected ({dim},)", "malformed")
    if arr.dtype.kind not in "iu":
        raise _fail(f"{what} has dtype {arr.dtype}; expected integers (quantize first)",
                    "malformed")
    if arr.dtype.itemsize > dtype.itemsize and arr.size:
        # Wider than the ring: each value must be a word of it, unsigned or two's complement.
        bits = 8 * dtype.itemsize
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -(1 << (bits - 1)) or hi >= 1 << bits:
            bad = lo if lo < -(1 << (bits - 1)) else hi
            raise _fail(f"{what} holds {bad}, outside the {bits}-bit ring [-2**{bits - 1}, "
                        f"2**{bits}): it would wrap around (use dtype=np.uint64, or scale down)",
                        "malformed")
    return np.ascontiguousarray(arr.astype(dtype, copy=False))


class _Party:
    """What every party of a round is built with, checked, and the digest of it that each
    advertisement carries."""

    def __init__(self, dim: int, threshold: int, dtype: Any, session: bytes,
                 neighbors: int | None, min_survivors: int | None, authenticated: bool) -> None:
        self.dim = _positive(dim, "dim")
        self.threshold = _threshold(threshold)
        self.dtype = _dtype(dtype)
        self.session = _session(session)
        self.neighbors = _optional_positive(neighbors, "neighbors")
        self.min_survivors = _optional_positive(min_survivors, "min_survivors")
        self.authenticated = _authenticated(authenticated)
        self._settings = _settings_digest(self.session, self.dim, self.dtype, self.threshold,
                                          self.neighbors, self.min_survivors, self.authenticated)
