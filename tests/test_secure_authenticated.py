"""Secure aggregation against an active server (Bonawitz et al. 2017, the malicious variant):
the key-swapping server that recovers a chosen client's input when advertisements are not
signed is refused by every form of forged roster entry, before the target seals anything; a
server that shows different survivor lists to different clients (to unmask a sum of fewer than
min_survivors devices) is refused by the consistency step; and the certificate checks (chain,
CRL, subject, validity) hold with their cache."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

import privcity
from privcity import _core
from privcity.aggregate import DeviceVerifier, SecAggClient, secure_sum
from privcity.aggregate._secagg import (_MAGIC, _SHARES_BODY, _advertisement_message, _combine,
                                        _commit, _groups, _mask_seed, _roster_digest, _s_key,
                                        _self_mask_seed, _shamir_index, _share_key,
                                        _survivor_list, _survivors_message)
from privcity.crypto.pki import CertificateAuthority, CertificateError, IdentityKeys

from test_secure_aggregation import HOUR, Round, city, inputs, plain_sum

D = 64


def raw(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def unmask_for(y: np.ndarray, owner: int, owner_s_public: bytes, b_seed: bytes, s_seed: bytes,
               peers: dict[int, bytes], session: bytes) -> np.ndarray:
    """y with the owner's self mask and its pairwise masks with `peers` (id -> s public key)
    removed: what anyone holding its two secrets can do."""
    s_key = _s_key(s_seed, session)
    seeds = [_self_mask_seed(b_seed, session)]
    signs = [-1]
    for c, s_public in peers.items():
        seeds.append(_mask_seed(s_key, (owner, owner_s_public), (c, s_public), session))
        signs.append(-1 if owner < c else 1)
    out = y.copy()
    _core.mask_add_u32(out, np.frombuffer(b"".join(seeds), np.uint8), np.array(signs, np.int8))
    return out


class KeySwappingServer:
    """An active server after one client's input (issue 14, point 3): it forwards to the target
    a roster in which every other client's c key is one it owns, opens the shares the target
    seals to them, rebuilds the target's b and s secrets, seals made-up shares back to the
    target under its own keys so that the target masks its input, and removes every mask."""

    def __init__(self, clients: dict[int, SecAggClient], target: int, session: bytes,
                 threshold: int) -> None:
        self.clients, self.target, self.session, self.t = clients, target, session, threshold
        self.ads = {c: cl.advertise() for c, cl in clients.items()}
        self.fakes = {c: x25519.X25519PrivateKey.generate() for c in self.ads if c != target}

    def forged_roster(self, forge=None) -> dict:
        """The target's roster: its own entry, and every other with the server's c key in it
        (`forge(client, advertisement with the swapped key)` may dress it up further)."""
        roster = {}
        for c, adv in self.ads.items():
            if c != self.target:
                adv = dataclasses.replace(adv, c_public=raw(self.fakes[c]))
                adv = forge(c, adv) if forge is not None else adv
            roster[c] = adv
        return roster

    def attack(self, roster: dict, x: np.ndarray) -> np.ndarray:
        """The target's input, recovered from what the target sends given `roster`."""
        me = self.ads[self.target]
        boxes = self.clients[self.target].share_keys(roster)  # what the target seals
        b_shares, s_shares = [], []
        for c, ct in boxes.items():
            aead, ad = _share_key(self.fakes[c], me.c_public, (self.target, me.c_public),
                                  (c, raw(self.fakes[c])), self.session)
            body = aead.decrypt(bytes(12), ct, ad)
            index = _SHARES_BODY.unpack_from(body)[4]
            s_shares.append((index, body[_SHARES_BODY.size:_SHARES_BODY.size + 16]))
            b_shares.append((index, body[_SHARES_BODY.size + 16:]))
        b_seed, s_seed = _combine(b_shares[:self.t]), _combine(s_shares[:self.t])
        assert _commit(b_seed, self.session) == me.commitment  # the target's real secrets
        groups = _groups(roster, None, self.t, self.session)
        made_up = {}
        for c in boxes:
            body = _SHARES_BODY.pack(_MAGIC, c, self.target, _shamir_index(groups, c, c),
                                     _shamir_index(groups, c, self.target)) + bytes(32)
            aead, ad = _share_key(self.fakes[c], me.c_public, (c, raw(self.fakes[c])),
                                  (self.target, me.c_public), self.session)
            made_up[c] = aead.encrypt(bytes(12), body, ad)
        y = self.clients[self.target].masked_input(x, made_up)
        return unmask_for(y, self.target, me.s_public, b_seed, s_seed,
                          {c: roster[c].s_public for c in boxes}, self.session)


def victims(n: int, authenticated: bool, session: bytes) -> dict[int, SecAggClient]:
    kw = dict(session=session)
    if authenticated:
        return {c: city().client(c, D, n // 2 + 1, **kw) for c in range(n)}
    return {c: SecAggClient(c, D, n // 2 + 1, authenticated=False, **kw) for c in range(n)}


def test_a_key_swapping_server_recovers_the_input_of_an_unauthenticated_client():
    # Prepare: what authenticated=False is exposed to (and every round was before signing)
    x = np.random.default_rng(1).integers(0, 2**32, D, dtype=np.uint32)
    server = KeySwappingServer(victims(5, False, b"r"), target=2, session=b"r", threshold=3)

    # Execute
    recovered = server.attack(server.forged_roster(), x)

    # Assert: the exact input of one client, which secure aggregation must never reveal
    assert np.array_equal(recovered, x)


def _resign(keys_and_cert):
    """forge(): re-sign the swapped entry with a key the server holds, and attach its
    certificate."""
    key, cert = keys_and_cert

    def forge(c, adv):
        unsigned = dataclasses.replace(adv, signature=b"", certificate=b"")
        return dataclasses.replace(adv, signature=key.sign(_advertisement_message(b"r", unsigned)),
                                   certificate=cert)
    return forge


def _other_ca_identity(c: int):
    now = dt.datetime.now(dt.timezone.utc)
    rogue = CertificateAuthority.create("secagg-test-ca", not_before=now - 24 * HOUR)  # same name
    keys = IdentityKeys.generate()
    cert = rogue.issue(f"dev-{c}", "device", identity_key=keys.identity_public_key,
                       agreement_key=keys.agreement_public_key, not_before=now - HOUR)
    return keys.signing_key, cert.public_bytes(serialization.Encoding.DER)


def _revoked_identity(c: int):
    pair = city().identity(10_000 + c, subject=f"dev-{c}")  # an old key of dev-c, revoked
    from cryptography import x509
    city().ca.revoke(x509.load_der_x509_certificate(pair[1]))
    city().crl = city().ca.publish_crl(at=dt.datetime.now(dt.timezone.utc) - HOUR)
    return pair


def _expired_identity(c: int):
    now = dt.datetime.now(dt.timezone.utc)
    return city().identity(c, subject=f"dev-{c}", not_before=now - 48 * HOUR, not_after=now - HOUR)


FORGERIES = {
    "the victims' signatures kept": lambda: None,
    "no signature nor certificate": lambda: (
        lambda c, adv: dataclasses.replace(adv, signature=b"", certificate=b"")),
    "re-signed under the server's own device certificate": lambda: _resign(city().identity(999)),
    "re-signed under a revoked certificate of the right subject": lambda: (
        lambda c, adv: _resign(_revoked_identity(c))(c, adv)),
    "re-signed under an expired certificate of the right subject": lambda: (
        lambda c, adv: _resign(_expired_identity(c))(c, adv)),
    "re-signed under a certificate from another CA": lambda: (
        lambda c, adv: _resign(_other_ca_identity(c))(c, adv)),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_key_swapping_server_is_refused_before_the_target_seals_anything(forgery):
    # Prepare: honest authenticated clients, and a roster for the target with forged entries
    # (the target's verifier is built after any revocation, with the CRL then in force)
    x = np.random.default_rng(2).integers(0, 2**32, D, dtype=np.uint32)
    forge = FORGERIES[forgery]()
    server = KeySwappingServer(victims(5, True, b"r"), target=2, session=b"r", threshold=3)
    roster = server.forged_roster(forge)
    target = city().client(2, D, 3, session=b"r")  # its verifier sees the CRL in force now
    server.clients[2] = target
    server.ads[2] = roster[2] = target.advertise()

    # Execute
    with pytest.raises(privcity.SecureAggregationError, match="roster's entry") as err:
        server.attack(roster, x)

    # Assert: refused as an authentication failure, before any ciphertext left the target;
    # its secrets are gone and it takes no further step, so nothing of x can ever be unmasked
    assert err.value.kind == "authentication"
    assert target._s_seed == b"" and target._b_seed == b"" and target._c is None
    assert target._shares_held == {}
    with pytest.raises(privcity.SecureAggregationError, match="refused this round") as later:
        target.masked_input(x, {})
    assert later.value.kind == "protocol"


def test_an_honest_server_leaves_out_each_unauthentic_advertisement_and_says_why():
    # Prepare: seven devices; one with a revoked certificate, one with another device's
    # certificate, one unsigned, one whose signature does not cover its keys
    xs = inputs(7, seed=3, d=D)
    ids = sorted(xs)
    identities = {c: city().identity(c) for c in ids}
    identities[ids[0]] = _revoked_identity(ids[0])
    identities[ids[1]] = city().identity(ids[2])  # dev-<ids[2]>'s key and certificate
    rnd = Round(xs, threshold=3)
    for c, (key, cert) in identities.items():
        rnd.clients[c] = SecAggClient(c, D, 3, session=b"round 1", identity=key,
                                      certificate=cert, verifier=city().verifier())
    ads = {c: cl.advertise() for c, cl in rnd.clients.items()}
    ads[ids[3]] = dataclasses.replace(ads[ids[3]], signature=b"", certificate=b"")
    ads[ids[4]] = dataclasses.replace(ads[ids[4]], s_public=ads[ids[4]].c_public[::-1])

    # Execute
    rnd.server = city().server(D, 3, session=b"round 1")  # verifies under today's CRL
    roster = rnd.server.collect_advertisements(ads)

    # Assert: each refused alone, by kind and with its reason; the others go on
    assert sorted(roster) == ids[2:3] + ids[5:]
    assert rnd.server.refused == dict.fromkeys(ids[:2] + ids[3:5], "authentication")
    reasons = rnd.server.refusal_reasons
    assert "revoked" in reasons[ids[0]] and "wrong_subject" in reasons[ids[1]]
    assert "malformed" in reasons[ids[3]] and "signature does not verify" in reasons[ids[4]]
    assert rnd.server.refusal_counts() == {"authentication": 4}


def test_an_honest_server_leaves_out_a_signed_low_order_key_that_would_abort_the_round():
    # Prepare: a certified device advertises, and signs, a key of low order: every honest member
    # of its group would fail the key agreement with it and abort
    xs = inputs(6, seed=4, d=D)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3)
    key, cert = city().identity(ids[0])
    ads = {c: cl.advertise() for c, cl in rnd.clients.items()}
    low_order = bytes(32)  # the point 0: X25519 with it gives the all-zero secret
    unsigned = dataclasses.replace(ads[ids[0]], c_public=low_order, signature=b"",
                                   certificate=b"")
    ads[ids[0]] = dataclasses.replace(
        unsigned, signature=key.sign(_advertisement_message(b"round 1", unsigned)),
        certificate=cert)

    # Execute
    roster = rnd.server.collect_advertisements(ads)

    # Assert: refused alone, before any client sees it; the others go on to the exact sum
    assert sorted(roster) == ids[1:]
    assert rnd.server.refused == {ids[0]: "malformed"}
    assert "low order" in rnd.server.refusal_reasons[ids[0]]
    del rnd.clients[ids[0]]
    survivors = rnd.server.collect_masked(rnd.mask(rnd.server.route_shares(
        rnd.share({c: roster[c] for c in roster}))))
    assert np.array_equal(rnd.server.finish(rnd.unmask(survivors)), plain_sum(xs, ids[1:]))


def test_secure_sum_leaves_out_a_revoked_device_and_counts_it():
    # Prepare
    xs = inputs(6, seed=4, d=D)
    ids = sorted(xs)
    pki = city().pki(xs)
    pki["identities"][ids[1]] = _revoked_identity(ids[1])
    pki["crl"] = city().crl

    # Execute
    report = secure_sum(xs, threshold=3, **pki)

    # Assert: the sum of the five others; the refusal counted by kind and named
    assert report.authenticated and report.survivors == ids[:1] + ids[2:]
    assert np.array_equal(report.total, plain_sum(xs, report.survivors))
    assert report.refused == {"authentication": 1}
    assert report.refused_clients == {ids[1]: "authentication"}


# --- the consistency step ------------------------------------------------------------------------

S, F = list(range(5)), list(range(5, 10))  # the five whose sum the server wants, the five others


def survivor_lists() -> dict[int, list[int]]:
    """A list for each of ten clients, each of seven survivors (so min_survivors=7 and the
    threshold 6 hold for each client), all holding S, and each client of F left out of six
    lists: six clients then reveal its key as if it had dropped."""
    lists = {}
    for j in range(5):
        lists[S[j]] = sorted(set(S) | set(F) - {F[j], F[(j + 1) % 5], F[(j + 2) % 5]})
        lists[F[j]] = sorted(set(S) | set(F) - {F[(j + 1) % 5], F[(j + 2) % 5], F[(j + 3) % 5]})
    return lists


def split_view_round(authenticated: bool):
    xs = {c: np.random.default_rng(c).integers(0, 2**32, D, dtype=np.uint32) for c in range(10)}
    rnd = Round(xs, threshold=6, min_survivors=7, authenticated=authenticated)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    rnd.server.collect_masked(rnd.mask(routed))  # all ten masked inputs arrive
    return xs, rnd


def unmask_sum_of_s(rnd: Round, answers) -> np.ndarray:
    """The server's arithmetic with the answers to the split lists: the sum of S's inputs."""
    roster, groups, session = rnd.server.roster, rnd.server._groups, b"round 1"
    total = np.sum([rnd.server._masked[w] for w in S], axis=0, dtype=np.uint32)
    for w in S:
        b = _combine([(_shamir_index(groups, w, a.client), a.self_mask_shares[w])
                      for a in answers if w in a.self_mask_shares][:6])
        seed = _self_mask_seed(b, session)
        _core.mask_add_u32(total, np.frombuffer(seed, np.uint8), np.array([-1], np.int8))
    for f in F:
        s = _combine([(_shamir_index(groups, f, a.client), a.key_shares[f])
                      for a in answers if f in a.key_shares][:6])
        key = _s_key(s, session)
        for w in S:  # w added +PRG(s_wf) when w < f: remove it
            seed = _mask_seed(key, (f, roster[f].s_public), (w, roster[w].s_public), session)
            _core.mask_add_u32(total, np.frombuffer(seed, np.uint8),
                               np.array([-1 if w < f else 1], np.int8))
    return total


def test_split_survivor_lists_unmask_a_sum_below_min_survivors_without_authentication():
    # Prepare: every client is told seven survivors, each list different
    xs, rnd = split_view_round(authenticated=False)

    # Execute
    answers = [rnd.clients[c].unmask(survivors) for c, survivors in survivor_lists().items()]

    # Assert: the server learns the sum of five inputs although min_survivors is 7
    assert np.array_equal(unmask_sum_of_s(rnd, answers), plain_sum(xs, S))


@pytest.mark.parametrize("forward", ["all", "matching"])
def test_split_survivor_lists_are_refused_by_the_consistency_step(forward):
    # Prepare: the same lists; each client confirms its own
    xs, rnd = split_view_round(authenticated=True)
    lists = survivor_lists()
    confirmations = {c: rnd.clients[c].confirm(lst) for c, lst in lists.items()}

    # Execute: the server forwards every confirmation, or to each client only those over its
    # own list; no list has six signers
    refusals = {}
    for c, lst in lists.items():
        sent = confirmations if forward == "all" else \
            {v: sig for v, sig in confirmations.items() if lists[v] == lst}
        with pytest.raises(privcity.SecureAggregationError) as err:
            rnd.clients[c].unmask(signatures=sent)
        refusals[c] = err.value.kind

    # Assert: every client refuses, so no share of anyone leaves a client
    expected = "authentication" if forward == "all" else "too_few"
    assert refusals == dict.fromkeys(lists, expected)
    assert all(cl._shares_held == {} for cl in rnd.clients.values())


@pytest.mark.parametrize("threshold", [3, 4])
def test_one_colluding_device_breaks_a_bare_majority_and_not_2t_above_g_plus_c(threshold):
    # Prepare: five devices; device 4 colludes (signs anything, hands over its shares). The
    # server tells 0 and 1 that everyone survived, and 2 and 3 that 0 dropped
    xs = {c: np.random.default_rng(40 + c).integers(0, 2**32, D, dtype=np.uint32)
          for c in range(5)}
    rnd = Round(xs, threshold=threshold)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    masked = rnd.mask(routed)
    roster, groups = rnd.server.roster, rnd.server._groups
    every, without = [0, 1, 2, 3, 4], [1, 2, 3, 4]
    views = {0: every, 1: every, 2: without, 3: without}
    signed = {c: rnd.clients[c].confirm(view) for c, view in views.items()}
    digest = _roster_digest(b"round 1", roster)
    colluder = {tuple(v): city().identity(4)[0].sign(
        _survivors_message(b"round 1", digest, 4, _survivor_list(v))) for v in (every, without)}

    # Execute: each honest device is shown the confirmations over its own list
    answers, refused = {}, {}
    for c, view in views.items():
        forwarded = {v: sig for v, sig in signed.items() if views[v] == view}
        try:
            answers[c] = rnd.clients[c].unmask(signatures={**forwarded, 4: colluder[tuple(view)]})
        except privcity.SecureAggregationError as exc:
            refused[c] = exc.kind

    # Assert: threshold 3 = a bare majority of 5 (2t = 6 = g + c): three signers for each list,
    # b of device 0 from 0, 1 and 4, its s from 2, 3 and 4: its input is exposed. Threshold 4
    # (2t = 8 > 6): no list gathers four signers, every honest device refuses
    if threshold == 3:
        held = rnd.clients[4]._shares_held[0]  # the colluder's (s, b) shares of device 0
        index = {v: _shamir_index(groups, 0, v) for v in range(5)}
        b = _combine([(index[v], answers[v].self_mask_shares[0]) for v in (0, 1)]
                     + [(index[4], held[1])])
        s = _combine([(index[v], answers[v].key_shares[0]) for v in (2, 3)]
                     + [(index[4], held[0])])
        exposed = unmask_for(masked[0], 0, roster[0].s_public, b, s,
                             {v: roster[v].s_public for v in range(1, 5)}, b"round 1")
        assert np.array_equal(exposed, xs[0])
    else:
        assert answers == {} and refused == dict.fromkeys(views, "too_few")


def test_a_client_refuses_a_forwarded_confirmation_that_does_not_verify():
    # Prepare
    xs = inputs(5, seed=5, d=D)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    forwarded = rnd.server.collect_confirmations(
        {c: rnd.clients[c].confirm(survivors) for c in survivors})
    bad = dict(forwarded)
    bad[ids[1]] = bytes(64)

    # Execute / Assert: refused, nothing revealed; a confirmation from outside U3 likewise
    with pytest.raises(privcity.SecureAggregationError, match="does not verify") as err:
        rnd.clients[ids[0]].unmask(signatures=bad)
    assert err.value.kind == "authentication"
    with pytest.raises(privcity.SecureAggregationError, match="not a survivor"):
        rnd.clients[ids[2]].unmask(signatures={**forwarded, 999: bytes(64)})
    answer = rnd.clients[ids[3]].unmask(survivors, signatures=forwarded)  # an honest forward
    assert sorted(answer.self_mask_shares) == ids


def test_with_neighbourhoods_each_group_needs_a_threshold_of_confirmations():
    # Prepare: 12 clients in groups of 5 (threshold 3)
    xs = inputs(12, seed=6, d=D)
    rnd = Round(xs, threshold=3, neighbors=4)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    confirmations = {c: rnd.clients[c].confirm(survivors) for c in survivors}
    groups = rnd.server._groups
    victim = survivors[0]
    # drop the confirmations of all of the victim's group but two
    keep = {c: s for c, s in confirmations.items() if c not in groups[victim][2:]}

    # Execute / Assert: the server sees it, and a client of that group refuses too
    with pytest.raises(privcity.SecureAggregationError, match="fewer than 3 valid") as err:
        rnd.server.collect_confirmations(keep)
    assert err.value.kind == "too_few"
    with pytest.raises(privcity.SecureAggregationError, match="fewer than 3 valid") as err:
        rnd.clients[victim].unmask(signatures=keep)
    assert err.value.kind == "too_few"


# --- min_survivors -------------------------------------------------------------------------------

def test_min_survivors_is_refused_by_the_server_and_by_each_client():
    # Prepare: seven clients, min_survivors 6, two dropping before their input
    xs = inputs(7, seed=7, d=D)
    ids = sorted(xs)
    rnd = Round(xs, threshold=4, min_survivors=6)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    masked = rnd.mask(routed, skip=ids[:2])

    # Execute / Assert
    with pytest.raises(privcity.SecureAggregationError, match="min_survivors=6") as err:
        rnd.server.collect_masked(masked)
    assert err.value.kind == "too_few"
    with pytest.raises(privcity.SecureAggregationError, match="min_survivors=6") as err:
        rnd.clients[ids[2]].confirm(ids[2:])
    assert err.value.kind == "too_few"
    report = secure_sum(xs, threshold=4, min_survivors=6, drop_before_input=ids[:1],
                        **city().pki(xs))
    assert np.array_equal(report.total, plain_sum(xs, ids[1:]))
    failed = secure_sum(xs, threshold=4, min_survivors=6, drop_before_input=ids[:2],
                        on_failure="report", **city().pki(xs))
    assert failed.total is None and "min_survivors=6" in failed.failure


# --- the verifier --------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


def test_the_verifier_checks_a_certificate_once_per_crl_and_still_enforces_time_and_subject():
    # Prepare
    clock = Clock()
    verifier = city().verifier(clock=clock)
    _, cert = city().identity(42)

    # Execute: the same DER three times
    first = [verifier.certificate(cert, 42) for _ in range(3)]

    # Assert: one full check, then cache hits; the subject is still bound on a hit; the CRL's
    # freshness is still judged on a hit
    assert verifier.stats["certificate_checks"] == 1 and verifier.stats["certificate_hits"] == 2
    assert all(v.subject_id == "dev-42" for v in first)
    with pytest.raises(CertificateError) as err:
        verifier.certificate(cert, 43)
    assert err.value.kind == "wrong_subject"
    clock.now += dt.timedelta(days=8)  # past the CRL's next update (7 days)
    with pytest.raises(CertificateError) as err:
        verifier.certificate(cert, 42)
    assert err.value.kind == "crl_stale"


def test_a_new_crl_revokes_a_certificate_the_verifier_had_cached():
    # Prepare
    verifier = city().verifier()
    pair = city().identity(7, subject="dev-7")
    verifier.certificate(pair[1], 7)

    # Execute
    from cryptography import x509
    city().ca.revoke(x509.load_der_x509_certificate(pair[1]))
    city().crl = city().ca.publish_crl(at=dt.datetime.now(dt.timezone.utc) - HOUR)
    verifier.set_crl(city().crl)

    # Assert: checked again under the new CRL, and refused; an older CRL is not taken back
    with pytest.raises(CertificateError) as err:
        verifier.certificate(pair[1], 7)
    assert err.value.kind == "revoked"
    old = city().ca.publish_crl(at=dt.datetime.now(dt.timezone.utc) - HOUR)
    newer = city().ca.publish_crl(at=dt.datetime.now(dt.timezone.utc) - HOUR)
    verifier.set_crl(newer)
    with pytest.raises(ValueError, match="older"):
        verifier.set_crl(old)
    city().crl = newer


def test_a_verifier_refuses_junk_certificates_and_signatures():
    verifier = city().verifier()
    for junk in (b"", b"\x30\x03\x02\x01\x01", "dev-1", None, bytes(20_000)):
        with pytest.raises(CertificateError) as err:
            verifier.certificate(junk, 1)
        assert err.value.kind == "malformed"
    cert = verifier.certificate(city().identity(1)[1], 1)
    assert not verifier.verify(cert, bytes(64), b"message")
    assert not verifier.verify(cert, b"short", b"message")
    key = city().identity(1)[0]
    assert verifier.verify(cert, key.sign(b"message"), b"message")
    with pytest.raises(TypeError):
        DeviceVerifier(trust_anchor=b"not a certificate", crl=city().crl)


def test_a_round_left_without_valid_advertisements_says_why():
    # Prepare: every certificate from a CA the devices' verifiers do not trust
    xs = inputs(5, seed=5, d=D)
    rogue = {c: _other_ca_identity(c) for c in xs}

    # Execute / Assert: not only "0 clients advertised valid keys", but why
    with pytest.raises(privcity.SecureAggregationError,
                       match=r"0 clients advertised valid keys.*5 refused \(authentication\).*"
                             r"wrong_issuer"):
        secure_sum(xs, identities=rogue, trust_anchor=city().ca.certificate, crl=city().crl)


def test_secure_sum_names_the_client_whose_identity_is_not_a_key_and_certificate():
    # Prepare
    xs = inputs(3, seed=6, d=D)
    ids = sorted(xs)
    identities = {c: city().identity(c) for c in ids}
    identities[ids[1]] = identities[ids[1]][0]  # the key alone

    # Execute / Assert
    with pytest.raises(TypeError, match=rf"identities\[{ids[1]}\] must be \(Ed25519PrivateKey"):
        secure_sum(xs, identities=identities, trust_anchor=city().ca.certificate, crl=city().crl)
    with pytest.raises(TypeError, match="inputs must map client ids"):
        secure_sum(list(xs.values()))
