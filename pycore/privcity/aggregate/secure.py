"""Secure aggregation: the server learns the sum of the clients' integer vectors and nothing else
about any one of them, even when some clients drop out mid-round and even when the server lies
about the roster or the survivors, within the collusion bound below (Bonawitz et al. 2017,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", the protocol against an
active server: signed advertisements and a consistency round; SecAgg+ neighbourhoods from Bell
et al. 2020).

One round, five messages per client (each a plain object of bytes and arrays, so any transport
carries them; the server only routes, checks and adds)::

    0. advertise()        client -> server: two X25519 public keys, c (to encrypt its shares to
                          the others) and s (to agree its pairwise masks), a digest of the
                          round's settings, a commitment to its self-mask secret b_u, its
                          Ed25519 signature over all of these (identity key of the city PKI)
                          and its certificate.
    1. share_keys(roster) client -> server -> every other client of its group: the client first
                          verifies every roster entry (certificate chain to the city CA, CRL,
                          subject dev-<id>, signature) and refuses the round if any fails: the
                          server forwarded it. It then splits b_u and the secret its s key
                          derives from threshold-out-of-n with Shamir's scheme (GF(2^128) in
                          pycryptodome's format, on the native core; 16-byte secrets, expanded
                          by HKDF), and seals each other client's shares under an AES-256-GCM
                          key agreed from the c keys.
    2. masked_input(x, ciphertexts)
                          client -> server: y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv) mod 2^bits,
                          over every v that shared its keys in step 1; s_uv = HKDF(X25519(s_u,
                          s_v)) and the sign is + for u < v, so the pairwise masks cancel in
                          the sum.
    3. confirm(survivors) client -> server: given U3 (the clients whose y arrived), its signature
                          over (roster digest, U3), after the checks below.
    4. unmask(signatures=...)
                          client -> server: given the confirmations the server forwards, its
                          shares of b_w for each w whose y arrived, and of s_w for each w that
                          shared keys but sent no y. Never both for one client, at most once,
                          only if at least `threshold` of its group's y arrived, at least
                          `min_survivors` overall, the survivors stay linked in the graph, and
                          every survivor's group (and the group of every client whose shares
                          it holds) holds `threshold` valid signatures over the same roster
                          and U3.

    SecAggServer.finish() rebuilds those b_w and s_w from `threshold` good shares each (checked
    against the commitments and advertised keys; a bad share is outvoted when more came back),
    removes the self masks and the dropped clients' pairwise masks, and returns sum x_u (mod
    2^bits) over the clients whose y arrived. The server refuses each malformed, unknown or
    unauthentic message alone and counts it (SecAggServer.refused); only too few clients left
    end the round.

The threshold must exceed half of each client's group (the cohort, or k + 1 with
neighbors=k). Against a server colluding with c clients of a group of g, an input stays hidden
when 2 * threshold > g + c, whatever the server lies about: each honest member reveals at most
one of a client's two secrets, and the server needs `threshold` shares of both (with the default
majority threshold that is c = 0 or 1; with neighbourhoods the server picks the roster and so
the graph: count c over the whole cohort). The consistency step adds, when all honest clients
see one roster: one certified survivor list per group, so every sum the server can unmask
covers a whole certified list of at least `min_survivors` clients.

PRG(seed) is AES-256-CTR under the 32-byte seed from counter 0, read as little-endian words
(privcity._core.mask_add_u32/_u64, checked against ``cryptography``'s AES-CTR).

``authenticated=False`` runs the same round without signatures, certificates or consistency
step. It holds only against an honest-but-curious server: a server that swaps the keys in the
roster it forwards recovers any chosen client's input (tests/test_secure_authenticated.py shows
it). What still needs trust either way: the city CA (a server holding it can mint devices), and
what the sum itself reveals (add DP noise before masking). See docs/secure-aggregation.md.

Quantize float updates to integers first, with room for the sum of all n of them in the ring
(2**32 or 2**64); with distributed DP, ``privcity.dp.ddg_encode`` does it with a bounded norm.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from ..crypto.pki import VerifiedCertificate
from ..errors import AuthenticationError, CertificateError, PrivcityError, SecureAggregationError
from ._secagg import (_KINDS, _MAGIC, _SHARE, _SHARES_BODY, Advertisement, Unmasking,
                      _advertisement_message, _authenticated, _client_id, _commit, _connected,
                      _fail, _groups, _is_id, _mask_seed, _optional_positive, _Party, _positive,
                      _raw_public,
                      _roster, _roster_digest, _s_key, _self_mask_seed, _shamir_index, _share_key,
                      _split, _survivor_list, _survivors_message, _uncertified, _vector)
from ._secagg import _combine as _combine  # tests/test_shamir.py checks the kernels through it
from .secure_server import SecAggServer
from .verifier import DeviceVerifier

__all__ = ["Advertisement", "DeviceVerifier", "SecAggClient", "SecAggServer", "SecureSumReport",
           "Unmasking", "collusion_threshold", "neighbors_for", "secure_sum"]

class SecAggClient(_Party):
    """One client of a secure-aggregation round. Call advertise, share_keys, masked_input,
    confirm (authenticated rounds only) and unmask once each, in that order. A client that
    refuses a step (a forged roster entry, a lie about the survivors) wipes its secrets and
    takes no further step.

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
        Binds every key, signature and ciphertext to one round (e.g. the round number and
        model id); the same on every client and the server.
    neighbors : int, optional
        None (default): every client shares its secrets with and masks against every other
        (cost per client grows with the cohort). A number k: SecAgg+ (Bell et al. 2020), each
        client only with its k neighbors in a random graph (k rounded up to even), so a
        client's cost stays O(k) and the threshold applies within each neighborhood of k + 1
        (above half of it, at most all of it). The same on every client and the server.
    min_survivors : int, optional
        The client reveals nothing unless at least this many masked inputs arrived (U3): with
        distributed DP, its noise is then summed with that many devices' noise. Enforced
        against a lying server only in an authenticated round (the consistency step). The same
        on every party.
    identity : Ed25519PrivateKey
        This device's identity key (authenticated rounds).
    certificate : bytes or x509.Certificate
        Its certificate from the city CA, naming ``verifier.subject_of(client)`` and carrying
        the identity key (authenticated rounds).
    verifier : DeviceVerifier
        Checks the other devices' certificates and signatures; keep one across rounds.
    authenticated : bool
        True (default): the protocol against an active server. False: no signatures,
        certificates or consistency step; holds only against an honest-but-curious server.
    """

    def __init__(self, client: int, dim: int, threshold: int, *, dtype: Any = np.uint32,
                 session: bytes = b"", neighbors: int | None = None,
                 min_survivors: int | None = None,
                 identity: ed25519.Ed25519PrivateKey | None = None,
                 certificate: bytes | x509.Certificate | None = None,
                 verifier: DeviceVerifier | None = None, authenticated: bool = True) -> None:
        self.client = _client_id(client)
        super().__init__(dim, threshold, dtype, session, neighbors, min_survivors, authenticated)
        self._identity, self._certificate = self._credentials(identity, certificate, verifier)
        self._verifier = verifier
        self._steps = ("advertise", "share_keys", "masked_input") + \
            (("confirm", "unmask") if self.authenticated else ("unmask",))
        self._prepared: np.ndarray | None = None  # the masks, made ahead by prepare_mask
        # Secrets, each dropped once no later step needs it.
        self._c: x25519.X25519PrivateKey | None = x25519.X25519PrivateKey.generate()
        self._s_seed = os.urandom(_SHARE)
        self._s: x25519.X25519PrivateKey | None = _s_key(self._s_seed, self.session)
        self._b_seed = os.urandom(_SHARE)
        self._c_public = _raw_public(self._c)
        self._s_public = _raw_public(self._s)
        self._roster: dict[int, Advertisement] | None = None
        self._roster_digest = b""
        self._certificates: dict[int, VerifiedCertificate] = {}
        self._groups: dict[int, list[int]] = {}
        self._index: dict[int, int] = {}  # member of this client's group -> its Shamir index
        self._shares_held: dict[int, tuple[bytes, bytes]] = {}  # sender -> (s share, b share)
        self._sharers: list[int] | None = None  # U2, as this client saw it
        self._live: list[int] | None = None  # U3, as confirmed
        self._step = 0

    def _credentials(self, identity: Any, certificate: Any,
                     verifier: Any) -> tuple[ed25519.Ed25519PrivateKey | None, bytes]:
        if not self.authenticated:
            if identity is not None or certificate is not None or verifier is not None:
                raise ValueError("authenticated=False takes no identity, certificate or verifier")
            return None, b""
        if not isinstance(identity, ed25519.Ed25519PrivateKey) \
                or not isinstance(verifier, DeviceVerifier) or certificate is None:
            raise ValueError("an authenticated client needs identity= (its Ed25519 key), "
                             "certificate= (from the city CA) and verifier= (a DeviceVerifier); "
                             "authenticated=False holds only against an honest-but-curious server")
        if isinstance(certificate, x509.Certificate):
            certificate = certificate.public_bytes(serialization.Encoding.DER)
        if not isinstance(certificate, (bytes, bytearray)):
            raise TypeError("certificate must be DER bytes or an x509.Certificate")
        try:
            cert_key = x509.load_der_x509_certificate(bytes(certificate)).public_key()
        except ValueError:
            raise ValueError("certificate is not a DER X.509 certificate") from None
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        if not isinstance(cert_key, ed25519.Ed25519PublicKey) \
                or cert_key.public_bytes(*raw) != identity.public_key().public_bytes(*raw):
            raise ValueError(f"client {self.client}'s certificate does not carry its identity key")
        return identity, bytes(certificate)

    def _advance(self, name: str) -> None:
        if self._step < 0:
            raise _fail(f"client {self.client} refused this round; it takes no further step",
                        "protocol")
        if self._step >= len(self._steps) or self._steps[self._step] != name:
            raise _fail(f"client {self.client}: {name}() called out of order or twice "
                        f"(the round's steps are {', '.join(self._steps)})", "protocol")
        self._step += 1

    @contextlib.contextmanager
    def _or_abort(self) -> Iterator[None]:
        """Any refusal inside ends the round for this client: its secrets are dropped."""
        try:
            yield
        except (PrivcityError, TypeError, ValueError):
            self._c = self._s = None
            self._s_seed = self._b_seed = b""
            self._shares_held = {}
            self._prepared = None
            self._step = -1
            raise

    def advertise(self) -> Advertisement:
        """Step 0: the public keys, the settings digest and the commitment to b to send to the
        server; signed, with the certificate, in an authenticated round."""
        self._advance("advertise")
        adv = Advertisement(self.client, self._c_public, self._s_public, self._settings,
                            _commit(self._b_seed, self.session))
        if self._identity is None:
            return adv
        signature = self._identity.sign(_advertisement_message(self.session, adv))
        return Advertisement(adv.client, adv.c_public, adv.s_public, adv.settings,
                             adv.commitment, signature, self._certificate)

    def share_keys(self, roster: Any) -> dict[int, bytes]:
        """Step 1: given every advertisement the server kept (this client's included), the
        sealed shares for each other client of its group: {recipient id: ciphertext}.
        Authenticated: every entry must verify first (``authentication`` otherwise, before
        anything is split or sealed)."""
        self._advance("share_keys")
        with self._or_abort():
            roster = _roster(roster, self.threshold, self._settings)
            mine = roster.get(self.client)
            if mine is None or mine.c_public != self._c_public or mine.s_public != self._s_public \
                    or mine.commitment != _commit(self._b_seed, self.session):
                raise _fail(f"client {self.client}'s own advertisement is missing or altered in "
                            "the roster", "inconsistent")
            if self.authenticated:
                self._verify_roster(roster)
            return self._seal(roster, mine)

    def _verify_roster(self, roster: Mapping[int, Advertisement]) -> None:
        """Every entry, not only this client's group: the graph is drawn from every key, and
        U3, min_survivors and the confirmations count only certified devices."""
        assert self._verifier is not None
        for cid, adv in roster.items():
            try:
                cert = self._verifier.certificate(adv.certificate, cid)
            except CertificateError as exc:
                raise _fail(f"client {self.client}: the roster's entry for client {cid} has a "
                            f"certificate that is refused ({exc.kind}: {exc}); the server "
                            "forwarded it, so the round is refused", "authentication") from None
            if not self._verifier.verify(cert, adv.signature,
                                         _advertisement_message(self.session, adv)):
                raise _fail(f"client {self.client}: the roster's entry for client {cid} is not "
                            "signed by that client; the server forwarded it, so the round is "
                            "refused", "authentication")
            self._certificates[cid] = cert

    def _seal(self, roster: dict[int, Advertisement], mine: Advertisement) -> dict[int, bytes]:
        assert self._c is not None
        self._roster = roster
        if self.authenticated:  # named by the confirmations only
            self._roster_digest = _roster_digest(self.session, roster)
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

    def masked_input(self, x: Any, ciphertexts: Mapping[int, bytes] | None = None) -> np.ndarray:
        """Step 2: the masked vector of this client's input x (integers of length dim; taken
        mod 2**bits), given the shares the server routed to it: {sender id: ciphertext}, from
        every client that completed step 1 (U2). With the masks made ahead by
        :meth:`prepare_mask`, pass no ciphertexts: the input is only added to them."""
        self._advance("masked_input")
        with self._or_abort():
            vec = _vector(x, self.dim, self.dtype, f"client {self.client}'s input")
            if self._prepared is not None:
                if ciphertexts is not None:
                    raise TypeError("the masks are made (prepare_mask): pass no ciphertexts")
                out, self._prepared = vec + self._prepared, None  # wraps mod 2**bits
                return out
            self._open_all(ciphertexts)
            return self._mask(vec)

    def prepare_mask(self, ciphertexts: Mapping[int, bytes]) -> None:
        """Step 2, first half: open the routed shares and make the masks now, before the input
        exists (they do not depend on it), so that :meth:`masked_input` only adds the input:
        a device can do this while it trains. Refusals are those of masked_input."""
        if self._step < 0 or self._step >= len(self._steps) \
                or self._steps[self._step] != "masked_input" or self._prepared is not None:
            raise _fail(f"client {self.client}: prepare_mask() belongs just before "
                        "masked_input(), once", "protocol")
        with self._or_abort():
            self._open_all(ciphertexts)
            self._prepared = self._mask(np.zeros(self.dim, self.dtype))

    def _open_all(self, ciphertexts: Any) -> None:
        if not isinstance(ciphertexts, Mapping):
            raise TypeError("ciphertexts must map sender ids to bytes")
        for sender, ct in sorted(ciphertexts.items()):
            self._open_shares(_client_id(sender, "sender id"), ct)

    def _open_shares(self, sender: int, ct: Any) -> None:
        assert self._roster is not None and self._c is not None
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

    def _mask(self, vec: np.ndarray) -> np.ndarray:
        assert self._roster is not None and self._s is not None
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

    def _check_survivors(self, survivors: Collection[int]) -> set[int]:
        """U3 as the server announced it, refused when it contradicts this client's view or
        when revealing would expose anyone: survivors outside the roster or of its group that
        never shared keys with it, itself missing, fewer than `threshold` of its group or
        `min_survivors` overall, or survivors cut apart in the graph."""
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
        if self.min_survivors is not None and len(live) < self.min_survivors:
            raise _fail(f"client {self.client}: only {len(live)} survivors; the round needs "
                        f"min_survivors={self.min_survivors}: nothing is revealed", "too_few")
        if not _connected(live, self._groups):
            raise _fail(f"client {self.client}: the survivors fall apart into unlinked parts, "
                        "whose sums could each be unmasked: nothing is revealed", "disconnected")
        return live

    def confirm(self, survivors: Collection[int]) -> bytes:
        """Step 3 (authenticated rounds): given the survivors the server announced (U3, this
        client among them), checked as for :meth:`unmask`, this client's Ed25519 signature over
        (session, roster digest, its id, sorted U3), for the server to forward to all."""
        if not self.authenticated:
            raise _fail("an unauthenticated round has no consistency step: call "
                        "unmask(survivors)", "protocol")
        self._advance("confirm")
        with self._or_abort():
            self._live = sorted(self._check_survivors(survivors))
            assert self._identity is not None
            return self._identity.sign(_survivors_message(
                self.session, self._roster_digest, self.client, _survivor_list(self._live)))

    def unmask(self, survivors: Collection[int] | None = None, *,
               signatures: Mapping[int, bytes] | None = None) -> Unmasking:
        """Last step: the shares that let the server remove the masks: of b_w for each w of its
        group that survived, of s_w for each that shared keys but did not.

        Authenticated: `signatures` are the confirmations the server forwarded ({survivor id:
        signature}); survivors (optional) must be the list confirmed. Refused (nothing
        revealed) if a forwarded confirmation fails, or if the group of some survivor, or of
        some client whose shares this client holds, has fewer than `threshold` valid signers
        over the same roster and survivor list. Unauthenticated: `survivors` is U3, checked
        as in :meth:`confirm`."""
        self._advance("unmask")
        with self._or_abort():
            if self.authenticated:
                live = self._confirmed(survivors, signatures)
            else:
                if signatures is not None or survivors is None:
                    raise TypeError("an unauthenticated client unmasks given the survivors only")
                live = self._check_survivors(survivors)
            assert self._sharers is not None
            held, self._shares_held = self._shares_held, {}
            return Unmasking(
                client=self.client,
                self_mask_shares={w: held[w][1] for w in self._sharers if w in live},
                key_shares={w: held[w][0] for w in self._sharers if w not in live})

    def _confirmed(self, survivors: Collection[int] | None, signatures: Any) -> set[int]:
        assert self._live is not None and self._sharers is not None and self._verifier is not None
        live = set(self._live)
        if survivors is not None and {_client_id(c, "survivor id") for c in survivors} != live:
            raise _fail(f"client {self.client}: the survivors differ from those it confirmed",
                        "inconsistent")
        if not isinstance(signatures, Mapping):
            raise TypeError("signatures must map survivor ids to their confirmations")
        owners = live | set(self._sharers)
        if not all(_is_id(s) and int(s) in live for s in signatures):
            raise _fail(f"client {self.client}: the server forwarded a confirmation from "
                        "a client that is not a survivor", "authentication")
        # Each owner w needs `threshold` valid signers in its group; the graph is symmetric,
        # so signer s counts for the owners in its own group. Signers that no owner still
        # needs are not checked (and not counted): about half of them.
        listed = _survivor_list(self._live)
        need = dict.fromkeys(owners, self.threshold)
        valid: set[int] = set()
        for signer in sorted(int(s) for s in signatures):
            helped = [w for w in self._groups[signer] if need.get(w, 0) > 0]
            if not helped:
                continue
            message = _survivors_message(self.session, self._roster_digest, signer, listed)
            if not self._verifier.verify(self._certificates[signer], signatures[signer], message):
                raise _fail(f"client {self.client}: the confirmation of client {signer} that "
                            "the server forwarded does not verify over this roster and "
                            "survivor list", "authentication")
            valid.add(signer)
            for w in helped:
                need[w] -= 1
        short = _uncertified(owners, self._groups, valid, self.threshold)
        if short:
            raise _fail(f"client {self.client}: the groups of clients {short[:5]} hold fewer "
                        f"than {self.threshold} valid confirmations of this survivor list: "
                        "nothing is revealed", "too_few")
        return live


@dataclass(frozen=True)
class SecureSumReport:
    """What :func:`secure_sum` measured: the survivors (whose inputs are in the sum), the
    clients dropped after sharing keys, the bytes each client sent and received, and the
    refusals (per kind, and which client)."""

    total: np.ndarray | None
    survivors: list[int]
    dropped: list[int]
    bytes_up: dict[int, int]
    bytes_down: dict[int, int]
    failure: str | None = None  # on_failure="report": why the round did not complete
    authenticated: bool = False
    refused: dict[str, int] = field(default_factory=dict)
    refused_clients: dict[int, str] = field(default_factory=dict)


def collusion_threshold(group: int, colluders: int | None = None) -> int:
    """The smallest threshold t with 2t > g + c for a group of g: then no two survivor lists
    can each gather t valid signatures in the consistency step, so a server colluding with c
    devices cannot collect both secrets of an honest one. ``colluders`` defaults to fewer than
    a third of the group (c = ceil(g / 3) - 1, Bonawitz et al.'s t of about 2g/3); a majority
    (g // 2 + 1) tolerates no colluder at all when g is odd."""
    g = _positive(group, "group")
    c = -(-g // 3) - 1 if colluders is None else int(colluders)
    if not 0 <= c < g:
        raise ValueError(f"colluders must be in [0, {g}), got {colluders!r}")
    return min(g, max(2, (g + c) // 2 + 1))


def neighbors_for(cohort: int, dropout: float, *, failure: float = 1e-6,
                  threshold: Callable[[int], int] | None = None) -> int | None:
    """The fewest neighbours (even) such that, with each device of a cohort of this size
    dropping out after the key exchange with probability `dropout`, the chance that some group
    keeps fewer survivors than its threshold is at most `failure` (a union bound over the
    groups); None (everyone) when no smaller group does. ``threshold(group size)`` gives the
    threshold (default a majority, g // 2 + 1; :func:`collusion_threshold` for one that
    tolerates colluders). With dropout >= 0.5 no group size meets a majority: expect the
    rounds to fail."""
    if not 0 <= dropout < 1:
        raise ValueError("dropout must be in [0, 1)")
    if cohort < 3:
        return None
    need = threshold or (lambda size: size // 2 + 1)

    def below(size: int) -> float:  # P(Binomial(size, 1 - dropout) < need(size))
        keep = 1.0 - dropout
        return sum(math.comb(size, i) * keep**i * dropout**(size - i)
                   for i in range(need(size)))

    for k in range(2, cohort - 1, 2):
        if cohort * below(k + 1) <= failure:
            return k
    return None


def secure_sum(inputs: Mapping[int, Any], *, threshold: int | None = None,
               drop_before_sharing: Collection[int] = (), drop_before_input: Collection[int] = (),
               drop_before_unmask: Collection[int] = (), dtype: Any = np.uint32,
               session: bytes = b"", neighbors: int | None = None,
               min_survivors: int | None = None,
               identities: Mapping[int, tuple[ed25519.Ed25519PrivateKey, bytes]] | None = None,
               trust_anchor: x509.Certificate | None = None,
               crl: x509.CertificateRevocationList | None = None,
               verifier: DeviceVerifier | None = None, authenticated: bool | None = None,
               on_failure: str = "raise") -> SecureSumReport:
    """One whole round in this process: every client and the server, with the given clients
    dropping out at each step. The sum covers the clients whose masked input arrived.

    Authenticated: `identities` maps every client id to (its Ed25519 identity key, its
    certificate DER from the city CA, naming ``dev-<id>``). Each party checks the others with
    its own :class:`DeviceVerifier` over `trust_anchor` and `crl`, as n devices would; or all
    share `verifier` when given, a simulation shortcut (each certificate and signature is then
    checked once in this process, not once per device). ``authenticated=False``: no
    signatures, certificates or consistency step; it holds only against an honest-but-curious
    server. ``authenticated=None`` (the default) means authenticated exactly when identities
    are given: kept for callers written before authentication; pass it explicitly.

    threshold defaults to a majority of each client's group: n // 2 + 1, or with
    ``neighbors=k``, k // 2 + 1 (k rounded up to even). drop_before_unmask: clients whose
    masked input arrived and that answer nothing more (no confirmation, no shares).
    on_failure: "raise" (default) raises the SecureAggregationError of a round that cannot
    complete (too few survivors in some group, survivors cut apart, a secret no subset of its
    shares rebuilds: a device that shared a bad one); "report" returns a report
    with ``total`` None, ``failure`` the reason and the bytes sent until then. Either way the
    server's refusals are counted in the report; a client refused at its advertisement (an
    invalid or revoked certificate) takes no further part.
    """
    if on_failure not in ("raise", "report"):
        raise ValueError(f"on_failure must be 'raise' or 'report', not {on_failure!r}")
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must map client ids to integer vectors, not "
                        f"{type(inputs).__name__}")
    ids = sorted(_client_id(c) for c in inputs)
    if not ids:
        raise ValueError("secure_sum needs at least one client")
    first = np.asarray(inputs[ids[0]])
    if first.ndim != 1:
        raise ValueError(f"inputs must be 1-D integer vectors, got shape {first.shape}")
    drops = []
    for name, chosen in (("drop_before_sharing", drop_before_sharing),
                         ("drop_before_input", drop_before_input),
                         ("drop_before_unmask", drop_before_unmask)):
        strangers = sorted(set(chosen) - set(ids), key=repr)
        if strangers:
            raise ValueError(f"{name} names clients that have no input: {strangers[:5]}")
        drops.append(set(chosen))
    neighbors = _optional_positive(neighbors, "neighbors")
    group = len(ids) if neighbors is None or neighbors >= len(ids) - 1 \
        else 2 * ((neighbors + 1) // 2) + 1
    t = threshold if threshold is not None else max(2, group // 2 + 1)
    auth = identities is not None if authenticated is None else _authenticated(authenticated)
    credentials = _credentials(auth, ids, identities, trust_anchor, crl, verifier)
    kw = dict(dtype=dtype, session=session, neighbors=neighbors, min_survivors=min_survivors,
              authenticated=auth)
    server = SecAggServer(int(first.shape[0]), t, verifier=credentials(None)[2], **kw)
    clients = {}
    for c in ids:
        identity, certificate, own = credentials(c)
        clients[c] = SecAggClient(c, int(first.shape[0]), t, identity=identity,
                                  certificate=certificate, verifier=own, **kw)
    up = dict.fromkeys(ids, 0)
    down = dict.fromkeys(ids, 0)

    def report(total: np.ndarray | None, survivors: list[int], failure: str | None = None,
               ) -> SecureSumReport:
        return SecureSumReport(
            total=total, survivors=survivors,
            dropped=[c for c in server.sharers if c not in survivors] if total is not None else [],
            bytes_up=up, bytes_down=down, failure=failure, authenticated=auth,
            refused=server.refusal_counts(), refused_clients=dict(server.refused))

    try:
        total, survivors = _run_round(server, clients, inputs, drops, up, down)
    except SecureAggregationError as exc:
        if on_failure == "raise" or exc.kind not in ("too_few", "disconnected", "inconsistent"):
            raise
        return report(None, [], str(exc))
    return report(total, survivors)


def _credentials(auth: bool, ids: list[int], identities: Any, trust_anchor: Any, crl: Any,
                 verifier: Any) -> Any:
    """credentials(client id, or None for the server) -> (identity, certificate, verifier)."""
    if not auth:
        if identities is not None or verifier is not None:
            raise ValueError("authenticated=False takes no identities or verifier")
        return lambda c: (None, None, None)
    if not isinstance(identities, Mapping):
        raise ValueError("an authenticated round needs identities={client id: (Ed25519 key, "
                         "certificate DER)}")
    missing = [c for c in ids if c not in identities]
    if missing:
        raise ValueError(f"identities has no key and certificate for clients {missing[:5]}")
    for c in ids:
        pair = identities[c]
        if not (isinstance(pair, tuple) and len(pair) == 2
                and isinstance(pair[0], ed25519.Ed25519PrivateKey)
                and isinstance(pair[1], (bytes, bytearray))):
            raise TypeError(f"identities[{c}] must be (Ed25519PrivateKey, certificate DER bytes), "
                            f"not {type(pair).__name__}")
    if verifier is None and (trust_anchor is None or crl is None):
        raise ValueError("an authenticated round needs trust_anchor= and crl= (or verifier=)")

    def make(c: int | None) -> tuple[Any, Any, DeviceVerifier]:
        own = verifier if verifier is not None else DeviceVerifier(trust_anchor=trust_anchor,
                                                                   crl=crl)
        if c is None:
            return None, None, own
        key, cert = identities[c]
        return key, cert, own

    return make


def _run_round(server: SecAggServer, clients: dict[int, SecAggClient],
               inputs: Mapping[int, Any], drops: list[set[int]], up: dict[int, int],
               down: dict[int, int]) -> tuple[np.ndarray, list[int]]:
    """The round's steps, the bytes each client sends and receives counted on the way."""
    ads = {c: cl.advertise() for c, cl in clients.items()}
    for c, a in ads.items():
        up[c] += a.nbytes
    roster = server.collect_advertisements(ads)
    roster_bytes = sum(a.nbytes for a in roster.values())
    for c in roster:
        down[c] += roster_bytes

    gone = set(drops[0])
    sealed = {c: clients[c].share_keys(roster) for c in roster if c not in gone}
    for c, boxes in sealed.items():
        up[c] += sum(8 + len(ct) for ct in boxes.values())
    routed = server.route_shares(sealed)
    for c, boxes in routed.items():
        down[c] += sum(8 + len(ct) for ct in boxes.values())

    gone |= drops[1]
    masked = {c: clients[c].masked_input(inputs[c], routed[c]) for c in routed if c not in gone}
    for c, y in masked.items():
        up[c] += y.nbytes
    survivors = server.collect_masked(masked)
    for c in survivors:
        down[c] += 8 * len(survivors)

    gone |= drops[2]
    answering = [c for c in survivors if c not in gone]
    if server.authenticated:
        confirmations = {c: clients[c].confirm(survivors) for c in answering}
        for c in confirmations:
            up[c] += 64
        forwarded = server.collect_confirmations(confirmations)
        for c in answering:
            down[c] += (8 + 64) * len(forwarded)
        responses = {c: clients[c].unmask(signatures=forwarded) for c in answering}
    else:
        responses = {c: clients[c].unmask(survivors) for c in answering}
    for c, r in responses.items():
        up[c] += r.nbytes
    return server.finish(responses), survivors
