"""The server of a secure-aggregation round (see :mod:`privcity.aggregate.secure`): it routes the
clients' messages, refuses each bad one alone, and computes the sum.

Every message the server takes is hostile until checked: a message that is malformed, from or
about a client outside the step, or that fails authentication is left out with its client, and
the refusal is recorded in :attr:`SecAggServer.refused` (client -> kind) and
:attr:`SecAggServer.refusal_reasons`. A client whose advertisement, shares or masked input is
refused is out of the round from then on (its masks are recovered like a dropped client's); one
whose signature or unmasking answer is refused stays in the sum, its message unused. Only too few
clients left (``too_few``) or survivors cut apart (``disconnected``) end the round. The
containers themselves (a mapping of the messages received) are the caller's own and must be
mappings (TypeError otherwise).
"""
from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import x25519

from ..errors import CertificateError
from ._secagg import (_KINDS, _SEALED, _SHARE, _SIGNATURE, _SUMS, Advertisement, Unmasking,
                      _advertisement_message, _advertisement_problem, _combine, _commit,
                      _connected, _fail, _groups, _is_id, _mask_seed, _Party, _raw_public,
                      _roster_digest, _s_key, _self_mask_seed, _shamir_index, _survivor_list,
                      _survivors_message, _uncertified)
from .verifier import DeviceVerifier

__all__ = ["SecAggServer"]

#: Interpolations tried per secret to find `threshold` shares that rebuild the committed value.
SEARCH_BUDGET = 256


def _entries(messages: Any, name: str) -> list[tuple[Any, Any]]:
    if not isinstance(messages, Mapping):
        raise TypeError(f"{name} must map client ids to their messages")
    return list(messages.items())



def _agreeable(public: bytes) -> bool:
    """Whether an X25519 public key yields a shared secret (not of low order): tried against a
    throwaway key."""
    try:
        x25519.X25519PrivateKey.generate().exchange(x25519.X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return False
    return True

class SecAggServer(_Party):
    """The server of a secure-aggregation round: routes the clients' messages and computes the
    sum. It sees only public keys, certificates, signatures, sealed shares, masked vectors and
    the shares it is owed. Parameters as for :class:`SecAggClient` (the same on both sides),
    with `verifier` its own :class:`DeviceVerifier` in an authenticated round.

    Steps: :meth:`collect_advertisements`, :meth:`route_shares`, :meth:`collect_masked`, then
    (authenticated) :meth:`collect_confirmations`, and :meth:`finish`.
    """

    def __init__(self, dim: int, threshold: int, *, dtype: Any = np.uint32,
                 session: bytes = b"", neighbors: int | None = None,
                 min_survivors: int | None = None, verifier: DeviceVerifier | None = None,
                 authenticated: bool = True) -> None:
        super().__init__(dim, threshold, dtype, session, neighbors, min_survivors, authenticated)
        if self.authenticated and not isinstance(verifier, DeviceVerifier):
            raise ValueError("an authenticated server needs verifier= (a DeviceVerifier over the "
                             "city CA); authenticated=False holds only against an "
                             "honest-but-curious server")
        if not self.authenticated and verifier is not None:
            raise ValueError("authenticated=False takes no verifier")
        self._verifier = verifier
        self.roster: dict[int, Advertisement] = {}
        self.sharers: list[int] = []
        self.survivors: list[int] = []
        self.confirmations: dict[int, bytes] = {}
        #: client -> kind of the first refusal of one of its messages
        self.refused: dict[int, str] = {}
        #: client -> why (the message of that refusal)
        self.refusal_reasons: dict[int, str] = {}
        #: messages refused that named no client id (so counted against none)
        self.unattributed = 0
        self._groups: dict[int, list[int]] = {}
        self._certificates: dict[int, Any] = {}
        self._roster_digest = b""
        self._masked: dict[int, np.ndarray] = {}
        self._boxes: dict[int, dict[int, bytes]] = {}

    # --- bookkeeping ---------------------------------------------------------------------------

    def _refuse(self, client: Any, kind: str, reason: str) -> None:
        if not _is_id(client):
            self.unattributed += 1
            return
        client = int(client)
        self.refused.setdefault(client, kind)
        self.refusal_reasons.setdefault(client, reason)

    def refusal_counts(self) -> dict[str, int]:
        """How many clients were refused, by kind (plus "unattributed" messages, if any)."""
        counts = dict(Counter(self.refused.values()))
        if self.unattributed:
            counts["unattributed"] = self.unattributed
        return counts

    # --- step 0 -> 1 ---------------------------------------------------------------------------

    def collect_advertisements(self, advertisements: Any) -> dict[int, Advertisement]:
        """Step 0 -> 1: the roster to broadcast, from {client id: Advertisement} (or a sequence
        of them, each naming its client). Leaves out, each alone: malformed messages, an id
        that differs from the sender's, other settings, a certificate or signature that fails,
        a client that sent two different advertisements, and clients sharing a public key.
        Raises ``too_few`` below the threshold."""
        items = _entries(advertisements, "advertisements") \
            if isinstance(advertisements, Mapping) else [(None, a) for a in advertisements]
        candidates: dict[int, Advertisement] = {}
        twice: set[int] = set()
        for key, adv in items:
            cid = self._admit_advertisement(key, adv)
            if cid is None:
                continue
            if cid in candidates and candidates[cid] != adv:
                twice.add(cid)
            candidates[cid] = adv
        for cid in twice:
            self._refuse(cid, "duplicate", f"client {cid} sent two different advertisements")
            del candidates[cid]
        self._drop_shared_keys(candidates)
        roster = dict(sorted(candidates.items()))
        if len(roster) < self.threshold:
            why = "".join(f"; {n} refused ({k}), e.g. {self.refusal_reasons[c]}"
                          for k, n, c in self._examples())
            raise _fail(f"{len(roster)} clients advertised valid keys; the threshold is "
                        f"{self.threshold}{why}", "too_few")
        self._groups = _groups(roster, self.neighbors, self.threshold, self.session)
        self._roster_digest = _roster_digest(self.session, roster)
        self.roster = roster
        return dict(roster)

    def _examples(self) -> list[tuple[str, int, int]]:
        """(kind, count, one client refused so) for each kind refused so far."""
        first: dict[str, int] = {}
        for c, kind in self.refused.items():
            first.setdefault(kind, c)
        return [(k, n, first[k]) for k, n in sorted(self.refusal_counts().items()) if k in first]

    def _admit_advertisement(self, key: Any, adv: Any) -> int | None:
        """The client id of a valid advertisement, or None once its refusal is recorded."""
        claimed = key if key is not None else getattr(adv, "client", None) \
            if isinstance(adv, Advertisement) else None
        if not _is_id(claimed):
            self._refuse(None, "malformed", "an advertisement that names no client id")
            return None
        cid = int(claimed)
        problem = _advertisement_problem(adv)
        if problem is not None:
            self._refuse(cid, "malformed", problem)
            return None
        if adv.client != cid:
            self._refuse(cid, "inconsistent", f"client {cid} sent an advertisement for client "
                         f"{adv.client}")
            return None
        if adv.settings != self._settings:
            self._refuse(cid, "inconsistent", f"client {cid} was set up for another round")
            return None
        if not (_agreeable(adv.c_public) and _agreeable(adv.s_public)):
            # A low-order key would make every honest member of its group abort the round.
            self._refuse(cid, "malformed", f"client {cid} advertised a key no key can be agreed "
                         "with (low order)")
            return None
        if self.authenticated:
            problem = self._authentication_problem(adv)
            if problem is not None:
                self._refuse(cid, "authentication", problem)
                return None
        return cid

    def _authentication_problem(self, adv: Advertisement) -> str | None:
        assert self._verifier is not None
        try:
            cert = self._verifier.certificate(adv.certificate, adv.client)
        except CertificateError as exc:
            return f"client {adv.client}'s certificate is refused ({exc.kind}): {exc}"
        if not self._verifier.verify(cert, adv.signature,
                                     _advertisement_message(self.session, adv)):
            return f"client {adv.client}'s advertisement signature does not verify"
        self._certificates[adv.client] = cert
        return None

    def _drop_shared_keys(self, candidates: dict[int, Advertisement]) -> None:
        """Clients that advertise a key another client also advertises (or use one key for
        both roles) are all left out: which one copied cannot be told."""
        owners: dict[bytes, set[int]] = {}
        for cid, adv in candidates.items():
            owners.setdefault(adv.c_public, set()).add(cid)
            owners.setdefault(adv.s_public, set()).add(cid)
        clash = {cid for cids in owners.values() if len(cids) > 1 for cid in cids}
        clash |= {cid for cid, adv in candidates.items() if adv.c_public == adv.s_public}
        for cid in sorted(clash):
            self._refuse(cid, "duplicate", f"client {cid} advertises a public key that is not "
                         "its own alone")
            del candidates[cid]

    # --- step 1 -> 2 ---------------------------------------------------------------------------

    def route_shares(self, sealed: Mapping[int, Any]) -> dict[int, dict[int, bytes]]:
        """Step 1 -> 2: {sender: {recipient: ct}} from the clients that answered, regrouped as
        {recipient: {sender: ct}}; the senders kept are U2 (the clients that shared keys). A
        sender must seal exactly one message of the right length to each other member of its
        group, else it is left out (a missing message would leave a pairwise mask
        uncancelled)."""
        kept: dict[int, dict[int, bytes]] = {}
        for sender, boxes in _entries(sealed, "sealed"):
            if not _is_id(sender) or int(sender) not in self.roster:
                self._refuse(sender, "unknown_client", f"shares from client {sender!r}, not in "
                             "the roster")
                continue
            sender = int(sender)
            problem = self._boxes_problem(sender, boxes)
            if problem is not None:
                self._refuse(sender, "malformed", problem)
                continue
            kept[sender] = {int(r): bytes(ct) for r, ct in boxes.items()}
        if len(kept) < self.threshold:
            raise _fail(f"{len(kept)} clients shared keys; the threshold is {self.threshold}",
                        "too_few")
        self.sharers = sorted(kept)
        self._boxes = kept
        return {r: {s: kept[s][r] for s in self.sharers if r in kept[s]} for r in self.sharers}

    def _boxes_problem(self, sender: int, boxes: Any) -> str | None:
        if not isinstance(boxes, Mapping):
            return f"the shares of client {sender} are not a mapping of recipient ids to bytes"
        expected = set(self._groups[sender]) - {sender}
        keys = list(boxes)
        if not all(_is_id(r) for r in keys) or {int(r) for r in keys} != expected \
                or len(keys) != len(expected):
            return (f"client {sender} must seal one message to each other member of its group "
                    f"({len(expected)}), and to no one else")
        if not all(isinstance(ct, (bytes, bytearray)) and len(ct) == _SEALED
                   for ct in boxes.values()):
            return f"the sealed shares of client {sender} must be {_SEALED} bytes each"
        return None

    # --- step 2 -> 3 ---------------------------------------------------------------------------

    def collect_masked(self, masked: Mapping[int, Any]) -> list[int]:
        """Step 2 -> 3: the masked inputs that arrived; returns the survivors (U3) to send to
        every one of them. A masked vector that is not a 1-D array of the ring's dtype and
        length leaves its client out, as if it had dropped."""
        got: dict[int, np.ndarray] = {}
        shared = set(self.sharers)
        for cid, y in _entries(masked, "masked"):
            if not _is_id(cid) or int(cid) not in shared:
                self._refuse(cid, "unknown_client", f"masked input from client {cid!r}, which "
                             "shared no keys")
                continue
            vec = self._masked_vector(y)
            if vec is None:
                self._refuse(cid, "malformed", f"client {cid}'s masked input is not a "
                             f"({self.dim},) array of {self.dtype}")
                continue
            got[int(cid)] = vec
        live = set(got)
        self._check_survivors(live)
        self._masked = dict(sorted(got.items()))
        self.survivors = sorted(live)
        return list(self.survivors)

    def _masked_vector(self, y: Any) -> np.ndarray | None:
        try:
            if not isinstance(y, np.ndarray) or y.dtype != self.dtype or y.shape != (self.dim,):
                return None
            return np.ascontiguousarray(y)
        except Exception:  # a hostile object raising from an attribute: refused alone
            return None

    def _check_survivors(self, live: set[int]) -> None:
        """What each survivor will check before it reveals anything: refused here first."""
        if len(live) < self.threshold:
            raise _fail(f"{len(live)} masked inputs arrived; the threshold is {self.threshold}",
                        "too_few")
        if self.min_survivors is not None and len(live) < self.min_survivors:
            raise _fail(f"{len(live)} masked inputs arrived; the round needs at least "
                        f"min_survivors={self.min_survivors}", "too_few")
        short = [v for v in live if len(live.intersection(self._groups[v])) < self.threshold]
        if short:
            raise _fail(f"clients {short[:5]} keep fewer than {self.threshold} survivors in their "
                        "group: they would refuse to unmask", "too_few")
        if not _connected(live, self._groups):
            raise _fail("the survivors fall apart into unlinked parts of the neighbourhood graph "
                        "(too many dropped out around some): the clients would refuse to unmask",
                        "disconnected")

    # --- step 3 -> 4 (authenticated) -------------------------------------------------------------

    def collect_confirmations(self, signatures: Mapping[int, Any]) -> dict[int, bytes]:
        """The consistency step: each survivor's signature over (roster, U3). Returns the valid
        ones, to forward to every survivor. Raises ``too_few`` when the group of some survivor
        (or of a client whose shares a survivor holds) has fewer than `threshold` valid
        signers: its members would refuse to unmask."""
        if not self.authenticated:
            raise _fail("an unauthenticated round has no consistency step", "protocol")
        assert self._verifier is not None
        live = set(self.survivors)
        listed = _survivor_list(self.survivors)
        valid: dict[int, bytes] = {}
        for cid, sig in _entries(signatures, "signatures"):
            if not _is_id(cid) or int(cid) not in live:
                self._refuse(cid, "unknown_client", f"a confirmation from client {cid!r}, not a "
                             "survivor")
                continue
            cid = int(cid)
            if not isinstance(sig, (bytes, bytearray)) or len(sig) != _SIGNATURE:
                self._refuse(cid, "malformed", f"client {cid}'s confirmation is not a "
                             f"{_SIGNATURE}-byte signature")
                continue
            message = _survivors_message(self.session, self._roster_digest, cid, listed)
            if not self._verifier.verify(self._certificates[cid], sig, message):
                self._refuse(cid, "authentication", f"client {cid}'s confirmation does not "
                             "verify over this roster and survivor list")
                continue
            valid[cid] = bytes(sig)
        owners = live | {w for w in self.sharers if live.intersection(self._groups[w])}
        short = _uncertified(owners, self._groups, set(valid), self.threshold)
        if short:
            raise _fail(f"the groups of clients {short[:5]} hold fewer than {self.threshold} valid "
                        "confirmations: their members would refuse to unmask", "too_few")
        self.confirmations = valid
        return dict(valid)

    # --- last step -----------------------------------------------------------------------------

    def finish(self, responses: Any) -> np.ndarray:
        """The sum (mod 2**bits, as dtype) of the survivors' inputs, from the unmasking answers
        ({client id: Unmasking}, or a sequence of them). Each secret to rebuild (b_w of a
        survivor, s_w of a client that shared keys but sent no input) needs `threshold` good
        shares from answering clients of w's group: a share that fails the commitment is
        outvoted when more came back (see :func:`_rebuild`), and its holder is refused."""
        answers = self._answers(responses)
        if len(answers) < self.threshold:
            raise _fail(f"{len(answers)} survivors answered the unmasking with valid shares; the "
                        f"threshold is {self.threshold}", "too_few")
        seeds = []
        for w in self.survivors:
            b = self._rebuild(w, 0, answers, lambda s, w=w: _commit(s, self.session)
                              == self.roster[w].commitment)
            seeds.append(_self_mask_seed(b, self.session))
        signs = [-1] * len(seeds)
        for w in (w for w in self.sharers if w not in self._masked):
            seed = self._rebuild(w, 1, answers, lambda s, w=w: _raw_public(
                _s_key(s, self.session)) == self.roster[w].s_public)
            s_w = _s_key(seed, self.session)
            for v in self._groups[w]:
                if v == w or v not in self._masked:
                    continue
                seeds.append(_mask_seed(s_w, (w, self.roster[w].s_public),
                                        (v, self.roster[v].s_public), self.session))
                signs.append(-(1 if v < w else -1))  # v added +PRG(s_vw) if v < w
        total = _SUMS[self.dtype](list(self._masked.values()))
        _KINDS[self.dtype](total, np.frombuffer(b"".join(seeds), np.uint8),
                           np.array(signs, np.int8))
        return total

    def _answers(self, responses: Any) -> dict[int, tuple[dict[int, bytes], dict[int, bytes]]]:
        """The well-formed answers: client -> (its b shares, its s shares)."""
        items = _entries(responses, "responses") if isinstance(responses, Mapping) \
            else [(None, r) for r in responses]
        got: dict[int, tuple[dict[int, bytes], dict[int, bytes]]] = {}
        twice: set[int] = set()
        for key, r in items:
            claimed = key if key is not None else getattr(r, "client", None) \
                if isinstance(r, Unmasking) else None
            if not _is_id(claimed) or int(claimed) not in self._masked:
                self._refuse(claimed, "unknown_client", f"an unmasking answer from {claimed!r}, "
                             "not a survivor")
                continue
            cid = int(claimed)
            tables = self._answer_tables(cid, r)
            if isinstance(tables, str):
                self._refuse(cid, "malformed", tables)
                continue
            if cid in got and got[cid] != tables:
                twice.add(cid)
            got[cid] = tables
        for cid in twice:
            self._refuse(cid, "duplicate", f"client {cid} sent two different unmasking answers")
            del got[cid]
        return got

    def _answer_tables(self, cid: int, r: Any) -> tuple[dict[int, bytes], dict[int, bytes]] | str:
        """(b shares, s shares) of a valid answer from cid, or why it is refused: exactly one
        b share of each survivor of its group and one s share of each client of its group
        that shared keys and sent no input (what it holds when the server routed every
        share), 16 bytes each."""
        if not isinstance(r, Unmasking) or not _is_id(getattr(r, "client", None)) \
                or int(r.client) != cid:
            return f"client {cid}'s unmasking answer is not an Unmasking of its own"
        group = set(self._groups[cid])
        live = set(self._masked)
        allowed = ((group & live), group & (set(self.sharers) - live))
        out = []
        for table, owners, what in zip((r.self_mask_shares, r.key_shares), allowed, ("b", "s")):
            if not isinstance(table, Mapping):
                return f"client {cid}'s {what} shares are not a mapping"
            if not all(_is_id(w) for w in table) or {int(w) for w in table} != owners \
                    or len(table) != len(owners):
                return (f"client {cid} must answer a {what} share for each of {sorted(owners)} "
                        "and for no one else")
            if not all(isinstance(s, (bytes, bytearray)) and len(s) == _SHARE
                       for s in table.values()):
                return f"client {cid}'s {what} shares must be {_SHARE} bytes each"
            out.append({int(w): bytes(s) for w, s in table.items()})
        return out[0], out[1]

    def _rebuild(self, w: int, which: int, answers: Mapping[int, tuple[dict, dict]],
                 check: Callable[[bytes], bool]) -> bytes:
        """The secret of w (which=0: its b, 1: its s seed) from the answers of its group,
        checked by `check` (against w's commitment or advertised key). See _search."""
        holders = [(v, (_shamir_index(self._groups, w, v), answers[v][which][w]))
                   for v in self._groups[w] if v in answers and w in answers[v][which]]
        what = "self-mask secret" if which == 0 else "key"
        if len(holders) < self.threshold:
            raise _fail(f"only {len(holders)} shares of client {w}'s {what} came back; the "
                        f"threshold is {self.threshold}", "too_few")
        found, exhaustive = _search([s for _, s in holders], self.threshold, check)
        if found is None:
            if exhaustive:
                raise _fail(f"no {self.threshold} of the {len(holders)} shares of client {w}'s "
                            f"{what} rebuild the value it committed to: fewer than "
                            f"{self.threshold} good shares came back (or the client shared a "
                            "bad secret)", "too_few")
            raise _fail(f"none of the first {SEARCH_BUDGET} subsets of client {w}'s "
                        f"{len(holders)} {what} shares matches its commitment (several bad "
                        "shares)", "inconsistent")
        secret, pick = found
        base = [holders[i][1] for i in pick[1:]]
        for i, (v, share) in enumerate(holders):
            if i not in pick and not check(_combine(base + [share])):
                self._refuse(v, "bad_share", f"client {v}'s share of client {w}'s {what} is "
                             "not on the polynomial the others agree on")
        return secret


def _search(shares: list[tuple[int, bytes]], threshold: int,
            check: Callable[[bytes], bool]) -> tuple[tuple[bytes, tuple[int, ...]] | None, bool]:
    """The first `threshold` shares whose secret passes `check`: ((secret, indices picked), _)
    or (None, exhaustive). Subsets are tried leaving out ever more shares, the first ones kept
    (so one bad share among threshold + 1 costs at most threshold + 1 interpolations), at most
    SEARCH_BUDGET of them; exhaustive says whether every subset was tried."""
    m = len(shares)
    tried: set[tuple[int, ...]] = set()
    for left_out in range(m - threshold + 1):
        for excluded in itertools.combinations(range(m), left_out):
            pick = tuple(i for i in range(m) if i not in excluded)[:threshold]
            if pick in tried:
                continue
            if len(tried) == SEARCH_BUDGET:
                return None, False
            tried.add(pick)
            secret = _combine([shares[i] for i in pick])
            if check(secret):
                return (secret, pick), True
    return None, True
