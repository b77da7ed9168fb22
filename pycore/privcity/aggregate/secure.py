"""Secure aggregation: the server learns the sum of the clients' integer vectors and nothing else
about any one of them, even when some clients drop out mid-round (Bonawitz et al. 2017,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", the semi-honest protocol
with dropout recovery).

One round, four messages per client (each a plain object of bytes and arrays, so any transport
carries them; the server only routes and adds)::

    0. advertise()        client -> server: two X25519 public keys, c (to encrypt its shares to
                          the others) and s (to agree its pairwise masks), a digest of the
                          round's settings and a commitment to its self-mask secret b_u.
    1. share_keys(roster) client -> server -> every other client of its group: the client
                          splits b_u and the secret its s key derives from threshold-out-of-n
                          with Shamir's scheme (GF(2^128) in pycryptodome's format, on the
                          native core; 16-byte secrets, expanded by HKDF), and seals each
                          other client's shares under an AES-256-GCM key agreed from the c
                          keys.
    2. masked_input(x, ciphertexts)
                          client -> server: y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv) mod 2^bits,
                          over every v that shared its keys in step 1; s_uv = HKDF(X25519(s_u,
                          s_v)) and the sign is + for u < v, so the pairwise masks cancel in
                          the sum.
    3. unmask(survivors)  client -> server: its shares of b_w for each w whose y arrived, and of
                          s_w for each w that shared keys but sent no y. Never both for one
                          client, at most once, only if at least `threshold` of its group's y
                          arrived and only if the survivors stay linked in the graph.

    SecAggServer.finish() rebuilds those b_w and s_w from `threshold` shares each (checking them
    against the commitments and advertised keys), removes the self masks and the dropped
    clients' pairwise masks, and returns sum x_u (mod 2^bits) over the clients whose y arrived.

The threshold must exceed half of each client's group (the cohort, or k + 1 with
neighbors=k): a server telling different clients different survivor lists then cannot collect
both secrets of one client.

PRG(seed) is AES-256-CTR under the 32-byte seed from counter 0, read as little-endian words
(privcity._core.mask_add_u32/_u64, checked against ``cryptography``'s AES-CTR).

Threat model: an honest-but-curious server (it follows the protocol but reads everything it
routes), colluding with fewer than `threshold` clients, learns nothing about the inputs of the
others beyond their sum. Not covered: a server that lies in other ways (Bonawitz's malicious
variant signs the advertisements and adds a consistency round; here authenticate the
messages with ``privcity.crypto.envelope``), and anything the sum itself reveals (add DP noise
before masking). See docs/secure-aggregation.md.

Quantize float updates to integers first (e.g. ``SecureRNG.clip_round_add_discrete_gaussian``),
with room for the sum of all n of them in the ring (2**32 or 2**64).
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import _core
from ..crypto.aead import AES256GCM
from ..errors import AuthenticationError, SecureAggregationError

__all__ = ["Advertisement", "SecAggClient", "SecAggServer", "SecureSumReport", "Unmasking",
           "neighbors_for", "secure_sum"]

_PREFIX = b"privcity-secagg-v1|"
_MAGIC = b"PCSA"
_SHARE = 16  # bytes per Shamir share (an element of GF(2^128))
_SHARES_BODY = struct.Struct(">4sqqII")  # magic, sender, recipient, index of sender, of recipient
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


@dataclass(frozen=True)
class Advertisement:
    """Step 0: a client's two X25519 public keys (raw 32 bytes each), the digest of the round's
    settings it was built with (session, dim, dtype, threshold, neighbors: every party must
    agree) and its commitment to its self-mask secret b (SHA-256, so that a bad share of b is
    caught when the server rebuilds it)."""

    client: int
    c_public: bytes
    s_public: bytes
    settings: bytes
    commitment: bytes

    def __post_init__(self) -> None:
        _client_id(self.client)
        for name in ("c_public", "s_public", "settings", "commitment"):
            value = getattr(self, name)
            if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
                raise _fail(f"{name} of client {self.client} must be 32 bytes", "malformed")
            object.__setattr__(self, name, bytes(value))

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: the id and four 32-byte fields."""
        return 8 + 4 * 32


def _settings_digest(session: bytes, dim: int, dtype: np.dtype, threshold: int,
                     neighbors: int | None) -> bytes:
    return hashlib.sha256(_PREFIX + b"settings|" + _lp(session) + struct.pack(
        ">qqqq", dim, dtype.itemsize, threshold, -1 if neighbors is None else neighbors)).digest()


def _commit(b: bytes, session: bytes) -> bytes:
    return hashlib.sha256(_PREFIX + b"commit b|" + _lp(session) + b).digest()


@dataclass(frozen=True)
class Unmasking:
    """Step 3: one client's shares for the server: of b_w for each surviving w, of s_w for each
    dropped w (16 bytes each)."""

    client: int
    self_mask_shares: dict[int, bytes] = field(default_factory=dict)
    key_shares: dict[int, bytes] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return 8 + (8 + _SHARE) * (len(self.self_mask_shares) + len(self.key_shares))


def _roster(advertisements: Any, threshold: int, settings: bytes) -> dict[int, Advertisement]:
    if isinstance(advertisements, Mapping):
        items = list(advertisements.values())
    else:
        items = list(advertisements)
    roster: dict[int, Advertisement] = {}
    keys: set[bytes] = set()
    for adv in items:
        if not isinstance(adv, Advertisement):
            raise TypeError(f"advertisements must be Advertisement objects, not {type(adv).__name__}")
        if adv.client in roster:
            raise _fail(f"client {adv.client} advertised twice", "malformed")
        if adv.settings != settings:
            raise _fail(f"client {adv.client} was set up for another round (session, dim, dtype, "
                        "threshold or neighbors differ)", "inconsistent")
        if adv.c_public in keys or adv.s_public in keys:
            raise _fail(f"client {adv.client} reuses a public key already advertised", "malformed")
        keys.update((adv.c_public, adv.s_public))
        roster[adv.client] = adv
    if len(roster) < threshold:
        raise _fail(f"{len(roster)} clients advertised keys; the threshold is {threshold}",
                    "too_few")
    return dict(sorted(roster.items()))


def _groups(roster: dict[int, Advertisement], neighbors: int | None, threshold: int,
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
    ids = list(roster)
    n = len(ids)
    if neighbors is None or neighbors >= n - 1:
        groups = {c: list(ids) for c in ids}
        size = n
    else:
        half = (neighbors + 1) // 2
        size = 2 * half + 1
        seed = hashlib.sha256(_PREFIX + b"graph|" + _lp(session) + b"".join(
            struct.pack(">q", c) + a.c_public + a.s_public for c, a in roster.items())).digest()
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


def _connected(members: set[int], groups: dict[int, list[int]]) -> bool:
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


def _shamir_index(groups: dict[int, list[int]], owner: int, holder: int) -> int:
    """The index (1-based) of holder's share of owner's secrets: its place in owner's group."""
    return groups[owner].index(holder) + 1


def _neighbors(value: Any) -> int | None:
    if value is None:
        return None
    return _positive(value, "neighbors")


class _Party:
    """What every party of a round is built with, checked, and the digest of it that each
    advertisement carries."""

    def __init__(self, dim: int, threshold: int, dtype: Any, session: bytes,
                 neighbors: int | None) -> None:
        self.dim = _positive(dim, "dim")
        self.threshold = _threshold(threshold)
        self.dtype = _dtype(dtype)
        self.session = _session(session)
        self.neighbors = _neighbors(neighbors)
        self._settings = _settings_digest(self.session, self.dim, self.dtype, self.threshold,
                                          self.neighbors)


class SecAggClient(_Party):
    """One client of a secure-aggregation round. Call advertise, share_keys, masked_input and
    unmask once each, in that order.

    Parameters
    ----------
    client : int
        This client's id in the round, in [0, 2**63 - 1], unique in the cohort.
    dim : int
        Length of the vectors summed.
    threshold : int
        Shares needed to rebuild a secret: the round completes if at least this many clients'
        masked inputs arrive (in each client's group), and fewer than this many colluding
        clients (with the server) learn nothing. It must exceed half of each client's group
        (the cohort, or k + 1 with neighbors=k), checked once the roster is known.
    dtype : uint32 or uint64
        The sum is taken mod 2**32 or 2**64.
    session : bytes
        Binds every key and ciphertext to one round (e.g. the round number and model id); the
        same on every client and the server.
    neighbors : int, optional
        None (default): every client shares its secrets with and masks against every other
        (cost per client grows with the cohort). A number k: SecAgg+ (Bell et al. 2020), each
        client only with its k neighbors in a random graph (k rounded up to even), so a
        client's cost stays O(k) and the threshold applies within each neighborhood of k + 1
        (above half of it, at most all of it). The same on every client and the server.
    """

    def __init__(self, client: int, dim: int, threshold: int, *, dtype: Any = np.uint32,
                 session: bytes = b"", neighbors: int | None = None) -> None:
        self.client = _client_id(client)
        super().__init__(dim, threshold, dtype, session, neighbors)
        # Secrets, each dropped once no later step needs it.
        self._c: x25519.X25519PrivateKey | None = x25519.X25519PrivateKey.generate()
        self._s_seed = os.urandom(_SHARE)
        self._s: x25519.X25519PrivateKey | None = _s_key(self._s_seed, self.session)
        self._b_seed = os.urandom(_SHARE)
        self._c_public = _raw_public(self._c)
        self._s_public = _raw_public(self._s)
        self._roster: dict[int, Advertisement] | None = None
        self._groups: dict[int, list[int]] = {}
        self._index: dict[int, int] = {}  # member of this client's group -> its Shamir index
        self._shares_held: dict[int, tuple[bytes, bytes]] = {}  # sender -> (s share, b share)
        self._sharers: list[int] | None = None  # U2, as this client saw it
        self._step = 0

    def _advance(self, step: int, name: str) -> None:
        if self._step != step:
            raise _fail(f"client {self.client}: {name}() called out of order or twice "
                        f"(the round's steps are advertise, share_keys, masked_input, unmask)",
                        "protocol")
        self._step = step + 1

    def advertise(self) -> Advertisement:
        """Step 0: the public keys (and the settings digest and commitment to b) to send to the
        server."""
        self._advance(0, "advertise")
        return Advertisement(self.client, self._c_public, self._s_public, self._settings,
                             _commit(self._b_seed, self.session))

    def share_keys(self, roster: Any) -> dict[int, bytes]:
        """Step 1: given every advertisement the server received (this client's included), the
        sealed shares for each other client of its group: {recipient id: ciphertext}."""
        self._advance(1, "share_keys")
        roster = _roster(roster, self.threshold, self._settings)
        mine = roster.get(self.client)
        if mine is None or mine.c_public != self._c_public or mine.s_public != self._s_public \
                or mine.commitment != _commit(self._b_seed, self.session):
            raise _fail(f"client {self.client}'s own advertisement is missing or altered in the "
                        "roster", "inconsistent")
        assert self._c is not None
        self._roster = roster
        self._groups = _groups(roster, self.neighbors, self.threshold, self.session)
        group = self._groups[self.client]
        self._index = {cid: i + 1 for i, cid in enumerate(group)}
        n = len(group)
        s_shares = _split(self._s_seed, self.threshold, n)
        b_shares = _split(self._b_seed, self.threshold, n)
        self._s_seed = b""  # its shares are all that is needed from now on
        out: dict[int, bytes] = {}
        for cid in group:
            adv = roster[cid]
            i = self._index[cid] - 1
            if cid == self.client:  # keeps its own shares
                self._shares_held[cid] = (s_shares[i], b_shares[i])
                continue
            # the Shamir indices of the owner and the recipient in the owner's group
            body = _SHARES_BODY.pack(_MAGIC, self.client, cid, self._index[self.client],
                                     self._index[cid]) + s_shares[i] + b_shares[i]
            aead, ad = _share_key(self._c, adv.c_public, (self.client, mine.c_public),
                                  (cid, adv.c_public), self.session)
            out[cid] = aead.encrypt(bytes(12), body, ad)  # one message per key: nonce 0
        return out

    def masked_input(self, x: Any, ciphertexts: Mapping[int, bytes]) -> np.ndarray:
        """Step 2: the masked vector of this client's input x (integers of length dim; taken
        mod 2**bits), given the shares the server routed to it: {sender id: ciphertext}, from
        every client that completed step 1 (U2)."""
        self._advance(2, "masked_input")
        assert self._roster is not None and self._c is not None and self._s is not None
        vec = _vector(x, self.dim, self.dtype, f"client {self.client}'s input")
        if not isinstance(ciphertexts, Mapping):
            raise TypeError("ciphertexts must map sender ids to bytes")
        for sender, ct in sorted(ciphertexts.items()):
            sender = _client_id(sender, "sender id")
            if not isinstance(ct, (bytes, bytearray, memoryview)):
                raise TypeError(f"the ciphertext from client {sender} must be bytes, not "
                                f"{type(ct).__name__}")
            adv = self._roster.get(sender)
            if adv is None or sender == self.client or sender not in self._index:
                raise _fail(f"client {self.client} got shares from {sender}, not another client "
                            "of its group in the roster", "unknown_client")
            aead, ad = _share_key(self._c, adv.c_public, (sender, adv.c_public),
                                  (self.client, self._roster[self.client].c_public), self.session)
            try:
                body = aead.decrypt(bytes(12), ct, ad)
            except AuthenticationError:
                raise AuthenticationError(f"client {self.client}: the shares from client "
                                          f"{sender} failed authentication") from None
            head = _SHARES_BODY.unpack_from(body) if len(body) == _SHARES_BODY.size + 2 * _SHARE \
                else (None,)
            if (head[0] != _MAGIC
                    or head[1:] != (sender, self.client, _shamir_index(self._groups, sender, sender),
                                    _shamir_index(self._groups, sender, self.client))):
                raise _fail(f"client {self.client}: malformed shares from client {sender}",
                            "malformed")
            off = _SHARES_BODY.size
            self._shares_held[sender] = (body[off:off + _SHARE], body[off + _SHARE:])
        sharers = sorted(self._shares_held)  # U2: who shared, this client included
        if len(sharers) < self.threshold:
            raise _fail(f"client {self.client}: {len(sharers)} clients shared keys; the "
                        f"threshold is {self.threshold}", "too_few")
        self._sharers = sharers
        seeds = [_self_mask_seed(self._b_seed, self.session)]
        signs = [1]
        me = (self.client, self._roster[self.client].s_public)
        for v in sharers:
            if v == self.client:
                continue
            seeds.append(_mask_seed(self._s, me, (v, self._roster[v].s_public), self.session))
            signs.append(1 if self.client < v else -1)
        out = vec.copy()
        _KINDS[self.dtype](out, np.frombuffer(b"".join(seeds), np.uint8), np.array(signs, np.int8))
        self._c = self._s = None  # the shares are open and the masks made
        self._b_seed = b""
        return out

    def unmask(self, survivors: Collection[int]) -> Unmasking:
        """Step 3: given the ids whose masked inputs reached the server (this client among them),
        the shares that let the server remove the masks: of b_w for each w of its group that
        survived, of s_w for each that shared keys but did not. Refuses survivors outside the
        roster or of its group that never shared keys with it, and fewer than `threshold`
        survivors among those that did: then nothing is revealed."""
        self._advance(3, "unmask")
        assert self._sharers is not None and self._roster is not None
        live = {_client_id(c, "survivor id") for c in survivors}
        stranger = sorted(live - set(self._roster))
        if stranger:
            raise _fail(f"client {self.client}: survivors {stranger} are not in the roster",
                        "inconsistent")
        sharers = set(self._sharers)
        silent = sorted((live & set(self._index)) - sharers)
        if silent:
            raise _fail(f"client {self.client}: survivors {silent} never shared keys with it",
                        "inconsistent")
        if self.client not in live:
            raise _fail(f"client {self.client} is asked to unmask but is not among the "
                        "survivors", "inconsistent")
        alive = live & sharers
        if len(alive) < self.threshold:
            raise _fail(f"only {len(alive)} masked inputs arrived from client {self.client}'s "
                        f"group; the threshold is {self.threshold}: nothing is revealed", "too_few")
        if not _connected(live, self._groups):
            raise _fail(f"client {self.client}: the survivors fall apart into unlinked parts, "
                        "whose sums could each be unmasked: nothing is revealed", "disconnected")
        held, self._shares_held = self._shares_held, {}
        return Unmasking(
            client=self.client,
            self_mask_shares={w: held[w][1] for w in sorted(alive)},
            key_shares={w: held[w][0] for w in self._sharers if w not in live})


class SecAggServer(_Party):
    """The server of a secure-aggregation round: routes the clients' messages and computes the
    sum. It sees only public keys, sealed shares, masked vectors and the shares it is owed.
    Parameters as for :class:`SecAggClient` (the same on both sides)."""

    def __init__(self, dim: int, threshold: int, *, dtype: Any = np.uint32,
                 session: bytes = b"", neighbors: int | None = None) -> None:
        super().__init__(dim, threshold, dtype, session, neighbors)
        self.roster: dict[int, Advertisement] = {}
        self.sharers: list[int] = []
        self._groups: dict[int, list[int]] = {}
        self._masked: dict[int, np.ndarray] = {}

    def collect_advertisements(self, advertisements: Any) -> dict[int, Advertisement]:
        """Step 0 -> 1: the roster to broadcast (refused below the threshold)."""
        roster = _roster(advertisements, self.threshold, self._settings)
        self._groups = _groups(roster, self.neighbors, self.threshold, self.session)
        self.roster = roster
        return roster

    def route_shares(self, sealed: Mapping[int, Mapping[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """Step 1 -> 2: {sender: {recipient: ct}} from the clients that answered, regrouped as
        {recipient: {sender: ct}}; the senders are U2 (the clients that shared keys)."""
        if not isinstance(sealed, Mapping):
            raise TypeError("sealed must map sender ids to {recipient id: ciphertext}")
        routed: dict[int, dict[int, bytes]] = {cid: {} for cid in sealed}
        for sender, boxes in sealed.items():
            if sender not in self.roster:
                raise _fail(f"shares from client {sender}, not in the roster", "unknown_client")
            if not isinstance(boxes, Mapping):
                raise TypeError(f"the shares of client {sender} must map recipient ids to bytes")
            for recipient, ct in boxes.items():
                if recipient in sealed and recipient != sender:
                    routed[recipient][sender] = ct
        if len(routed) < self.threshold:
            raise _fail(f"{len(routed)} clients shared keys; the threshold is {self.threshold}",
                        "too_few")
        self.sharers = sorted(routed)
        return routed

    def collect_masked(self, masked: Mapping[int, Any]) -> list[int]:
        """Step 2 -> 3: the masked inputs that arrived; returns the survivors (U3) to send to
        every one of them."""
        got: dict[int, np.ndarray] = {}
        for cid, y in masked.items():
            if cid not in self.sharers:
                raise _fail(f"masked input from client {cid}, which shared no keys",
                            "unknown_client")
            got[cid] = _vector(y, self.dim, self.dtype, f"client {cid}'s masked input")
        if len(got) < self.threshold:
            raise _fail(f"{len(got)} masked inputs arrived; the threshold is {self.threshold}",
                        "too_few")
        if not _connected(set(got), self._groups):
            raise _fail("the survivors fall apart into unlinked parts of the neighbourhood graph "
                        "(too many dropped out around some): the clients would refuse to unmask",
                        "disconnected")
        self._masked = dict(sorted(got.items()))
        return list(self._masked)

    def finish(self, responses: Collection[Unmasking]) -> np.ndarray:
        """Step 3: the sum (mod 2**bits, as dtype) of the survivors' inputs. Each secret to
        rebuild (b_w of a survivor, s_w of a client that shared keys but sent no input) needs
        `threshold` shares from answering clients of w's group."""
        for r in responses:
            if not isinstance(r, Unmasking):
                raise TypeError(f"responses must be Unmasking objects, not {type(r).__name__}")
        answers = {r.client: r for r in responses if r.client in self._masked}
        if len(answers) < self.threshold:
            raise _fail(f"{len(answers)} survivors answered the unmasking; the threshold is "
                        f"{self.threshold}", "too_few")
        survivors = list(self._masked)
        dropped = [w for w in self.sharers if w not in self._masked]
        shared = set(self.sharers)

        def rebuild(w: int, kind: str) -> bytes:
            shares = []
            for v in self._groups[w]:
                r = answers.get(v)
                table = None if r is None else (r.self_mask_shares if kind == "b" else r.key_shares)
                if table is not None and w in table:
                    share = table[w]
                    if not isinstance(share, (bytes, bytearray)) or len(share) != _SHARE:
                        raise _fail(f"client {v}'s share for client {w} is not {_SHARE} bytes",
                                    "malformed")
                    shares.append((_shamir_index(self._groups, w, v), bytes(share)))
                    if len(shares) == self.threshold:
                        return _combine(shares)
            what = "self-mask secret" if kind == "b" else "key"
            raise _fail(f"only {len(shares)} shares of client {w}'s {what} came back; the "
                        f"threshold is {self.threshold}", "too_few")

        seeds = []
        for w in survivors:
            b = rebuild(w, "b")
            if _commit(b, self.session) != self.roster[w].commitment:
                raise _fail(f"the self-mask secret rebuilt for client {w} does not match its "
                            "commitment (a bad share)", "inconsistent")
            seeds.append(_self_mask_seed(b, self.session))
        signs = [-1] * len(seeds)
        for w in dropped:
            s_w = _s_key(rebuild(w, "s"), self.session)
            if _raw_public(s_w) != self.roster[w].s_public:
                raise _fail(f"the key rebuilt for dropped client {w} does not match its "
                            "advertisement (a bad share)", "inconsistent")
            for v in self._groups[w]:
                if v == w or v not in self._masked or v not in shared:
                    continue
                seeds.append(_mask_seed(s_w, (w, self.roster[w].s_public),
                                        (v, self.roster[v].s_public), self.session))
                signs.append(-(1 if v < w else -1))  # v added +PRG(s_vw) if v < w
        total = _SUMS[self.dtype](list(self._masked.values()))
        _KINDS[self.dtype](total, np.frombuffer(b"".join(seeds), np.uint8), np.array(signs, np.int8))
        return total


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _threshold(value: Any) -> int:
    t = _positive(value, "threshold")
    if t < 2:
        raise ValueError("threshold must be at least 2 (one share would reveal each secret)")
    return t


def _session(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"session must be bytes, not {type(value).__name__}")
    return bytes(value)


def _vector(x: Any, dim: int, dtype: np.dtype, what: str) -> np.ndarray:
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


@dataclass(frozen=True)
class SecureSumReport:
    """What :func:`secure_sum` measured: the survivors (whose inputs are in the sum), the
    clients dropped after sharing keys, and the bytes each client sent and received."""

    total: np.ndarray | None
    survivors: list[int]
    dropped: list[int]
    bytes_up: dict[int, int]
    bytes_down: dict[int, int]
    failure: str | None = None  # on_failure="report": why the round did not complete


def neighbors_for(cohort: int, dropout: float, *, failure: float = 1e-6) -> int | None:
    """The fewest neighbours (even) such that, with each device of a cohort of this size
    dropping out after the key exchange with probability `dropout`, the chance that some group
    keeps fewer survivors than its threshold (a majority) is at most `failure` (a union bound
    over the groups); None (everyone) when no smaller group does. With dropout >= 0.5 no group
    size does: expect the rounds to fail."""
    if not 0 <= dropout < 1:
        raise ValueError("dropout must be in [0, 1)")
    if cohort < 3:
        return None

    def below_majority(size: int) -> float:  # P(Binomial(size, 1 - dropout) < size // 2 + 1)
        keep = 1.0 - dropout
        return sum(math.comb(size, i) * keep**i * dropout**(size - i)
                   for i in range(size // 2 + 1))

    for k in range(2, cohort - 1, 2):
        if cohort * below_majority(k + 1) <= failure:
            return k
    return None


def secure_sum(inputs: Mapping[int, Any], *, threshold: int | None = None,
               drop_before_sharing: Collection[int] = (), drop_before_input: Collection[int] = (),
               drop_before_unmask: Collection[int] = (), dtype: Any = np.uint32,
               session: bytes = b"", neighbors: int | None = None,
               on_failure: str = "raise") -> SecureSumReport:
    """One whole round in this process: every client and the server, with the given clients
    dropping out at each step. The sum covers the clients whose masked input arrived.

    threshold defaults to a majority of each client's group: n // 2 + 1, or with
    ``neighbors=k``, k // 2 + 1 (k rounded up to even). on_failure: "raise" (default) raises
    the SecureAggregationError of a round that cannot complete (too few survivors in some
    group, survivors cut apart); "report" returns a report with ``total`` None, ``failure``
    the reason and the bytes sent until then.
    """
    if on_failure not in ("raise", "report"):
        raise ValueError(f"on_failure must be 'raise' or 'report', not {on_failure!r}")
    ids = sorted(_client_id(c) for c in inputs)
    if not ids:
        raise ValueError("secure_sum needs at least one client")
    first = np.asarray(inputs[ids[0]])
    if first.ndim != 1:
        raise ValueError(f"inputs must be 1-D integer vectors, got shape {first.shape}")
    dim = int(first.shape[0])
    known = set(ids)
    for name, chosen in (("drop_before_sharing", drop_before_sharing),
                         ("drop_before_input", drop_before_input),
                         ("drop_before_unmask", drop_before_unmask)):
        strangers = sorted(set(chosen) - known, key=repr)
        if strangers:
            raise ValueError(f"{name} names clients that have no input: {strangers[:5]}")
    neighbors = _neighbors(neighbors)
    group = len(ids) if neighbors is None or neighbors >= len(ids) - 1 \
        else 2 * ((neighbors + 1) // 2) + 1
    t = threshold if threshold is not None else max(2, group // 2 + 1)
    server = SecAggServer(dim, t, dtype=dtype, session=session, neighbors=neighbors)
    clients = {c: SecAggClient(c, dim, t, dtype=dtype, session=session, neighbors=neighbors)
               for c in ids}
    up = dict.fromkeys(ids, 0)
    down = dict.fromkeys(ids, 0)

    try:
        ads = [clients[c].advertise() for c in ids]
        for a in ads:
            up[a.client] += a.nbytes
        roster = server.collect_advertisements(ads)
        for c in ids:
            down[c] += sum(a.nbytes for a in roster.values())

        gone = set(drop_before_sharing)
        sealed = {c: clients[c].share_keys(roster) for c in ids if c not in gone}
        for c, boxes in sealed.items():
            up[c] += sum(8 + len(ct) for ct in boxes.values())
        routed = server.route_shares(sealed)
        for c, boxes in routed.items():
            down[c] += sum(8 + len(ct) for ct in boxes.values())

        gone |= set(drop_before_input)
        width = np.dtype(dtype).itemsize
        masked = {c: clients[c].masked_input(inputs[c], routed[c]) for c in routed if c not in gone}
        for c in masked:
            up[c] += dim * width
        survivors = server.collect_masked(masked)
        for c in survivors:
            down[c] += 8 * len(survivors)

        gone |= set(drop_before_unmask)
        responses = [clients[c].unmask(survivors) for c in survivors if c not in gone]
        for r in responses:
            up[r.client] += r.nbytes
        total = server.finish(responses)
    except SecureAggregationError as exc:
        if on_failure == "raise" or exc.kind not in ("too_few", "disconnected"):
            raise
        return SecureSumReport(total=None, survivors=[], dropped=[], bytes_up=up,
                               bytes_down=down, failure=str(exc))
    return SecureSumReport(total=total, survivors=survivors,
                           dropped=[c for c in server.sharers if c not in survivors],
                           bytes_up=up, bytes_down=down)
