"""Secure aggregation (privcity.aggregate.secure): the sum is exact with and without dropouts
at every step, the server's view of one client is uniformly masked, and every refusal the
protocol owes (too few survivors, steps out of order, tampered or misrouted shares, rosters and
survivor lists that contradict the client's view, bad rebuilt keys) happens. Rounds here are
authenticated (signed advertisements, certificates from a test city CA, the consistency step)
unless a test says otherwise; tests/test_secure_authenticated.py covers the active server and
tests/test_secure_hostile.py the hostile input."""
from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pytest
import scipy.stats
from cryptography.hazmat.primitives import serialization

import privcity
from privcity.aggregate import DeviceVerifier, SecAggClient, SecAggServer, secure_sum
from privcity.aggregate.secure import Unmasking
from privcity.crypto.pki import CertificateAuthority, IdentityKeys
from privcity.noise import SecureRNG

D = 2_000
HOUR = dt.timedelta(hours=1)


class City:
    """A test city CA that issues each device id its identity (Ed25519 key and certificate
    naming dev-<id>) on first use, and its current CRL."""

    def __init__(self) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        self.ca = CertificateAuthority.create("secagg-test-ca", not_before=now - 24 * HOUR)
        self.crl = self.ca.publish_crl(at=now - HOUR)
        self._identities: dict[int, tuple] = {}

    def identity(self, client: int, subject: str | None = None, **issue) -> tuple:
        """(Ed25519 key, certificate DER) of a device; a fixed one per id unless `subject` or
        issue arguments (not_before, not_after) ask for another."""
        custom = subject is not None or bool(issue)
        if not custom and client in self._identities:
            return self._identities[client]
        keys = IdentityKeys.generate()
        issue.setdefault("not_before", dt.datetime.now(dt.timezone.utc) - HOUR)
        cert = self.ca.issue(subject or f"dev-{client}", "device",
                             identity_key=keys.identity_public_key,
                             agreement_key=keys.agreement_public_key, **issue)
        pair = (keys.signing_key, cert.public_bytes(serialization.Encoding.DER))
        if not custom:
            self._identities[client] = pair
        return pair

    def revoke(self, client: int) -> None:
        """Revoke the device's certificate and publish a new CRL."""
        from cryptography import x509
        self.ca.revoke(x509.load_der_x509_certificate(self.identity(client)[1]))
        self.crl = self.ca.publish_crl(at=dt.datetime.now(dt.timezone.utc) - HOUR)

    def verifier(self, **kw) -> DeviceVerifier:
        return DeviceVerifier(trust_anchor=self.ca.certificate, crl=self.crl, **kw)

    def client(self, client: int, dim: int, threshold: int, *, verifier=None, **kw) -> SecAggClient:
        key, cert = self.identity(client)
        return SecAggClient(client, dim, threshold, identity=key, certificate=cert,
                            verifier=verifier or self.verifier(), **kw)

    def server(self, dim: int, threshold: int, **kw) -> SecAggServer:
        return SecAggServer(dim, threshold, verifier=self.verifier(), **kw)

    def pki(self, ids) -> dict:
        """secure_sum's arguments for an authenticated round of these ids."""
        return dict(identities={c: self.identity(c) for c in ids},
                    trust_anchor=self.ca.certificate, crl=self.crl)


@functools.cache
def city() -> City:
    return City()


def inputs(n: int, dtype=np.uint32, seed: int = 0, d: int = D) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    return {100 + 3 * i: rng.integers(0, info.max, d, dtype=dtype, endpoint=True) for i in range(n)}


def plain_sum(xs: dict[int, np.ndarray], ids, dtype=np.uint32) -> np.ndarray:
    return np.sum([xs[c] for c in ids], axis=0, dtype=dtype)  # numpy wraps around


class Round:
    """Drives one round step by step, so a test can tamper with any message. Authenticated
    (one verifier per party, as on separate devices) unless authenticated=False."""

    def __init__(self, xs: dict[int, np.ndarray], threshold: int, dtype=np.uint32,
                 session: bytes = b"round 1", neighbors: int | None = None,
                 authenticated: bool = True, min_survivors: int | None = None) -> None:
        self.xs = xs
        self.authenticated = authenticated
        d = len(next(iter(xs.values())))
        kw = dict(dtype=dtype, session=session, neighbors=neighbors, min_survivors=min_survivors)
        if authenticated:
            self.server = city().server(d, threshold, **kw)
            self.clients = {c: city().client(c, d, threshold, **kw) for c in xs}
        else:
            kw["authenticated"] = False
            self.server = SecAggServer(d, threshold, **kw)
            self.clients = {c: SecAggClient(c, d, threshold, **kw) for c in xs}

    def advertise(self):
        ads = {c: cl.advertise() for c, cl in self.clients.items()}
        return self.server.collect_advertisements(ads)

    def share(self, roster, skip=()):
        sealed = {c: cl.share_keys(roster) for c, cl in self.clients.items() if c not in skip}
        return sealed

    def mask(self, routed, skip=()):
        return {c: self.clients[c].masked_input(self.xs[c], routed[c]) for c in routed
                if c not in skip}

    def unmask(self, survivors, who=None) -> list[Unmasking]:
        """Every survivor confirms (authenticated); those in `who` (default all) unmask."""
        who = survivors if who is None else who
        if not self.authenticated:
            return [self.clients[c].unmask(survivors) for c in who]
        forwarded = self.server.collect_confirmations(
            {c: self.clients[c].confirm(survivors) for c in survivors})
        return [self.clients[c].unmask(signatures=forwarded) for c in who]

    def answer(self, client, survivors):
        """One client's first step after the survivors are announced (where it checks them)."""
        if self.authenticated:
            return self.clients[client].confirm(survivors)
        return self.clients[client].unmask(survivors)


# --- the sum ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "unauthenticated"])
@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_sum_is_exact_without_dropouts(dtype, authenticated):
    # Prepare
    xs = inputs(7, dtype, seed=1)
    pki = city().pki(xs) if authenticated else {}

    # Execute
    report = secure_sum(xs, dtype=dtype, session=b"s", authenticated=authenticated, **pki)

    # Assert
    assert report.authenticated is authenticated and report.refused == {}
    assert report.survivors == sorted(xs) and report.dropped == []
    assert report.total.dtype == dtype
    assert np.array_equal(report.total, plain_sum(xs, xs, dtype))


@pytest.mark.parametrize("stage", ["drop_before_sharing", "drop_before_input", "drop_before_unmask"])
def test_sum_covers_exactly_the_survivors_whatever_step_they_drop_at(stage):
    # Prepare
    xs = inputs(9, seed=2)
    ids = sorted(xs)
    gone = [ids[0], ids[4], ids[8]]

    # Execute
    report = secure_sum(xs, threshold=5, **{stage: gone}, **city().pki(xs))

    # Assert
    in_sum = [c for c in ids if c not in gone] if stage != "drop_before_unmask" else ids
    assert report.survivors == in_sum
    assert report.dropped == (gone if stage == "drop_before_input" else [])
    assert np.array_equal(report.total, plain_sum(xs, in_sum))


def test_dropouts_at_every_step_in_one_round():
    # Prepare
    xs = inputs(12, seed=3)
    ids = sorted(xs)

    # Execute
    report = secure_sum(xs, threshold=7, drop_before_sharing=[ids[1]],
                        drop_before_input=[ids[2], ids[7]], drop_before_unmask=[ids[3], ids[11]],
                        **city().pki(xs))

    # Assert: those who dropped before their input are out; those who only missed the
    # unmasking are in (their input arrived and the others' shares remove their masks)
    expected = [c for c in ids if c not in (ids[1], ids[2], ids[7])]
    assert report.survivors == expected and report.dropped == [ids[2], ids[7]]
    assert np.array_equal(report.total, plain_sum(xs, expected))


def test_signed_integers_wrap_and_decode_as_twos_complement():
    # Prepare: int32 values whose sum fits
    rng = np.random.default_rng(4)
    xs = {i: rng.integers(-10**6, 10**6, D).astype(np.int64) for i in range(5)}

    # Execute
    total = secure_sum(xs, **city().pki(xs)).total

    # Assert
    assert np.array_equal(total.view(np.int32), np.sum(list(xs.values()), axis=0))


def test_float_updates_quantized_with_discrete_noise_sum_to_the_noisy_mean():
    # Prepare: the distributed-DP integer path feeding secure aggregation
    rng = np.random.default_rng(5)
    updates = {i: rng.standard_normal(500).astype(np.float32) * 0.1 for i in range(6)}
    scale = 2.0**16
    quantized = {}
    for i, x in updates.items():
        q, _ = SecureRNG(seed=9, stream=i).clip_round_add_discrete_gaussian(x, 10.0, scale, 2.0)
        quantized[i] = q

    # Execute
    total = secure_sum(quantized, **city().pki(quantized)).total.view(np.int32).astype(np.float64) / scale

    # Assert: equals the sum of the quantized values exactly, and the float sum within the
    # rounding and noise (sigma 2 per device, in units of 2**-16)
    assert np.array_equal(total * scale, np.sum(list(quantized.values()), axis=0))
    assert np.max(np.abs(total - np.sum(list(updates.values()), axis=0))) < 60 / scale


# --- what the server sees ----------------------------------------------------------------------------

def test_a_masked_input_is_uniform_whatever_the_input():
    # Prepare: one client's input all zeros, another's all 0xffffffff
    xs = {1: np.zeros(200_000, np.uint32), 2: np.full(200_000, 2**32 - 1, np.uint32),
          3: np.zeros(200_000, np.uint32)}
    rnd = Round(xs, threshold=2)
    roster = rnd.advertise()
    routed = rnd.server.route_shares(rnd.share(roster))

    # Execute
    masked = rnd.mask(routed)

    # Assert: each masked vector's bytes pass a chi-square test of uniformity, and the server
    # cannot tell the inputs apart from it
    for y in masked.values():
        counts = np.bincount(y.view(np.uint8), minlength=256)
        assert scipy.stats.chisquare(counts).pvalue > 1e-4
        assert np.count_nonzero(y == 0) < 20 and np.count_nonzero(y == 2**32 - 1) < 20


def test_partial_sums_of_masked_inputs_stay_masked():
    # Prepare
    xs = inputs(4, seed=6)
    rnd = Round(xs, threshold=3)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    masked = rnd.mask(routed)
    ids = sorted(xs)

    # Execute: all but one masked input (the pairwise masks with the missing one remain)
    partial = np.sum([masked[c] for c in ids[:3]], axis=0, dtype=np.uint32)

    # Assert
    assert np.count_nonzero(partial == plain_sum(xs, ids[:3])) < 5
    assert np.array_equal(np.sum(list(masked.values()), axis=0, dtype=np.uint32) == plain_sum(xs, ids),
                          np.zeros(D, bool))  # the self masks remain until unmasking


# --- refusals -------------------------------------------------------------------------------------------

def test_too_few_survivors_reveal_nothing():
    # Prepare
    xs = inputs(5, seed=7)
    rnd = Round(xs, threshold=4)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    ids = sorted(xs)
    masked = rnd.mask(routed, skip=ids[:2])

    # Execute / Assert: the server refuses, and a client asked anyway refuses too
    with pytest.raises(privcity.SecureAggregationError) as err:
        rnd.server.collect_masked(masked)
    assert err.value.kind == "too_few"
    with pytest.raises(privcity.SecureAggregationError) as err:
        rnd.answer(ids[2], ids[2:])
    assert err.value.kind == "too_few"


def test_fewer_unmasking_answers_than_the_threshold_are_refused():
    # Prepare
    xs = inputs(5, seed=8)
    rnd = Round(xs, threshold=4)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    answers = rnd.unmask(survivors, who=survivors[:3])

    # Execute / Assert
    with pytest.raises(privcity.SecureAggregationError, match="threshold is 4") as err:
        rnd.server.finish(answers)
    assert err.value.kind == "too_few"


def test_steps_out_of_order_or_twice_are_refused():
    client = city().client(1, 10, 2)
    with pytest.raises(privcity.SecureAggregationError) as err:
        client.unmask([1, 2])
    assert err.value.kind == "protocol"
    client.advertise()
    with pytest.raises(privcity.SecureAggregationError, match="out of order or twice"):
        client.advertise()


def test_tampered_or_misrouted_shares_fail_authentication():
    # Prepare
    xs = inputs(4, seed=9)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    tampered = dict(routed[ids[0]])
    ct = bytearray(tampered[ids[1]])
    ct[5] ^= 1
    tampered[ids[1]] = bytes(ct)
    swapped = dict(routed[ids[2]])
    swapped[ids[1]] = routed[ids[3]][ids[1]]  # meant for ids[3]

    # Execute / Assert
    with pytest.raises(privcity.AuthenticationError, match=f"from client {ids[1]}"):
        rnd.clients[ids[0]].masked_input(xs[ids[0]], tampered)
    with pytest.raises(privcity.AuthenticationError):
        rnd.clients[ids[2]].masked_input(xs[ids[2]], swapped)


@pytest.mark.parametrize("setting", [dict(session=b"round 8"), dict(threshold=4),
                                     dict(neighbors=4), dict(dim=D + 1), dict(dtype=np.uint64),
                                     dict(min_survivors=4), dict(authenticated=False)])
def test_parties_set_up_for_another_round_are_refused(setting):
    # Prepare: a client whose session, threshold, neighbours, length, modulus, survivor floor
    # or authentication differ
    xs = inputs(5, seed=10)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3, session=b"round 7")
    kw = dict(dict(dim=D, threshold=3, session=b"round 7"), **setting)
    make = SecAggClient if kw.get("authenticated") is False else city().client
    odd = make(ids[0], kw.pop("dim"), kw.pop("threshold"), **kw)
    rnd.clients[ids[0]] = odd

    # Execute: the server leaves its advertisement out, alone
    ads = [c.advertise() for c in rnd.clients.values()]
    roster = rnd.server.collect_advertisements(ads)

    # Assert: refused and counted; and the odd client refuses the others' roster
    assert sorted(roster) == ids[1:]
    assert rnd.server.refused == {ids[0]: "inconsistent"}
    assert "another round" in rnd.server.refusal_reasons[ids[0]]
    with pytest.raises(privcity.SecureAggregationError, match="set up for another round") as err:
        odd.share_keys(ads)
    assert err.value.kind == "inconsistent"


def test_a_bad_share_of_a_self_mask_secret_is_outvoted_and_its_holder_counted():
    # Prepare: five answers, the first with a bad share of ids[2]'s self-mask secret
    xs = inputs(5, seed=18)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    answers = rnd.unmask(survivors)
    bad = bytearray(answers[0].self_mask_shares[ids[2]])
    bad[0] ^= 1
    answers[0] = Unmasking(answers[0].client, {**answers[0].self_mask_shares, ids[2]: bytes(bad)},
                           answers[0].key_shares)

    # Execute: the first three shares fail the commitment; three others rebuild it
    total = rnd.server.finish(answers)

    # Assert
    assert np.array_equal(total, plain_sum(xs, ids))
    assert rnd.server.refused == {ids[0]: "bad_share"}


def test_a_bad_share_among_exactly_threshold_shares_is_detected_and_ends_the_round():
    # Prepare: only three answers (the threshold), the first with a bad share
    xs = inputs(5, seed=18)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    answers = rnd.unmask(survivors, who=ids[:3])
    bad = bytearray(answers[0].self_mask_shares[ids[2]])
    bad[0] ^= 1
    answers[0] = Unmasking(answers[0].client, {**answers[0].self_mask_shares, ids[2]: bytes(bad)},
                           answers[0].key_shares)

    # Execute / Assert: no three good shares, so nothing can be rebuilt
    with pytest.raises(privcity.SecureAggregationError, match="committed to") as err:
        rnd.server.finish(answers)
    assert err.value.kind == "too_few"


def test_a_threshold_at_or_below_half_the_group_is_refused():
    # Two disjoint halves told different survivor lists would give both shares of one client
    xs = inputs(4, seed=19, d=10)
    with pytest.raises(privcity.SecureAggregationError, match="exceed half") as err:
        Round(xs, threshold=2).advertise()
    assert err.value.kind == "threshold"
    with pytest.raises(privcity.SecureAggregationError, match="exceed half"):
        secure_sum(inputs(30, seed=19, d=10), neighbors=8, threshold=4)


def test_secrets_are_dropped_once_used():
    xs = inputs(3, seed=20, d=10)
    rnd = Round(xs, threshold=2)
    client = rnd.clients[sorted(xs)[0]]
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    assert client._s_seed == b""
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    assert client._c is None and client._s is None and client._b_seed == b""
    rnd.unmask(survivors)
    assert client._shares_held == {}


def test_a_roster_without_the_clients_own_keys_is_refused():
    # Prepare: the forged entry is even signed by client 1 (another of its rounds' keys)
    a, b, c = (city().client(i, 10, 2) for i in (1, 2, 3))
    ads = [a.advertise(), b.advertise(), c.advertise()]
    forged = city().client(1, 10, 2).advertise()  # a server substituting client 1's keys

    # Execute / Assert
    with pytest.raises(privcity.SecureAggregationError) as err:
        a.share_keys([forged, ads[1], ads[2]])
    assert err.value.kind == "inconsistent"


def test_rosters_with_duplicates_or_below_threshold_are_refused():
    # Prepare: client 1 advertises twice with different keys
    a, b, c = (city().client(i, 10, 3) for i in (1, 2, 3))
    ad_a, ad_b, ad_c = a.advertise(), b.advertise(), c.advertise()
    again = city().client(1, 10, 3).advertise()

    # Execute / Assert: the server counts one message sent twice once, leaves out a client
    # with two different ones, and refuses a roster below the threshold
    server = city().server(10, 3)
    assert sorted(server.collect_advertisements([ad_a, ad_a, ad_b, ad_c])) == [1, 2, 3]
    with pytest.raises(privcity.SecureAggregationError, match="threshold is 3") as err:
        server.collect_advertisements([ad_a, again, ad_b, ad_c])
    assert err.value.kind == "too_few" and server.refused == {1: "duplicate"}
    with pytest.raises(privcity.SecureAggregationError, match="threshold is 3"):
        city().server(10, 3).collect_advertisements([ad_a, ad_b])
    # a client refuses a roster that names one client twice
    with pytest.raises(privcity.SecureAggregationError, match="advertised twice"):
        b.share_keys([ad_a, ad_a, ad_b, ad_c])


def test_survivors_outside_the_clients_view_are_refused():
    # Prepare
    xs = inputs(4, seed=11)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise(), skip=[ids[3]]))
    rnd.mask(routed)

    # Execute / Assert: ids[3] never shared keys, so its b and s were never split: a server
    # listing it as a survivor is lying
    with pytest.raises(privcity.SecureAggregationError) as err:
        rnd.answer(ids[0], ids)
    assert err.value.kind == "inconsistent"


@pytest.mark.parametrize("answering", [4, 3])
def test_a_bad_share_of_a_dropped_key_is_outvoted_or_ends_the_round(answering):
    # Prepare: ids[4] dropped before its input; the first answer's share of its key is bad
    xs = inputs(5, seed=12)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    survivors = rnd.server.collect_masked(rnd.mask(routed, skip=[ids[4]]))
    answers = rnd.unmask(survivors, who=survivors[:answering])
    bad = bytearray(answers[0].key_shares[ids[4]])
    bad[5] ^= 1
    answers[0] = Unmasking(answers[0].client, answers[0].self_mask_shares, {ids[4]: bytes(bad)})

    # Execute / Assert: with a share to spare the key is rebuilt from the others; with none,
    # the rebuilt key never matches ids[4]'s advertised one and the round ends
    if answering == 4:
        assert np.array_equal(rnd.server.finish(answers), plain_sum(xs, ids[:4]))
        assert rnd.server.refused == {ids[0]: "bad_share"}
    else:
        with pytest.raises(privcity.SecureAggregationError, match="committed to") as err:
            rnd.server.finish(answers)
        assert err.value.kind == "too_few"


@pytest.mark.parametrize("x, fragment", [
    (np.zeros(9, np.uint32), r"shape \(9,\)"), (np.zeros(10, np.float32), "quantize first"),
    (np.zeros((2, 5), np.uint32), "shape")])
def test_bad_inputs_are_refused(x, fragment):
    xs = {1: np.zeros(10, np.uint32), 2: np.zeros(10, np.uint32)}
    rnd = Round(xs, threshold=2)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    with pytest.raises(privcity.SecureAggregationError, match=fragment) as err:
        rnd.clients[1].masked_input(x, routed[1])
    assert err.value.kind == "malformed"


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"threshold": 1}, ValueError, "at least 2"), ({"dim": 0}, ValueError, "positive"),
    ({"dtype": np.int32}, ValueError, "uint32 or uint64"), ({"session": "x"}, TypeError, "bytes"),
    ({"client": -1}, ValueError, "2\\*\\*63"), ({"client": 1.0}, TypeError, "int"),
    ({"min_survivors": 0}, ValueError, "min_survivors must be a positive int"),
    ({"authenticated": 1}, TypeError, "True or False"),
    ({}, ValueError, "needs identity="),
    ({"authenticated": False, "verifier": object()}, ValueError, "takes no identity")])
def test_bad_parameters_are_refused(kwargs, error, fragment):
    args = dict({"client": 1, "dim": 10, "threshold": 2}, **kwargs)
    with pytest.raises(error, match=fragment):
        SecAggClient(args.pop("client"), args.pop("dim"), args.pop("threshold"), **args)


def test_bandwidth_report_counts_the_masked_vector_and_the_shares():
    # Prepare
    xs = inputs(6, seed=13, d=10_000)

    # Execute
    report = secure_sum(xs, drop_before_input=[sorted(xs)[0]], **city().pki(xs))
    plain = secure_sum(xs, drop_before_input=[sorted(xs)[0]], authenticated=False)

    # Assert: a survivor sends its 40 kB vector plus keys, certificate, signatures and shares;
    # a dropped one no vector; the certificate and signatures add under 1 kB each way
    first, second = sorted(xs)[:2]
    assert 40_000 < report.bytes_up[second] < 40_000 + 2_000
    assert report.bytes_up[first] < 2_000
    assert all(report.bytes_down[c] > 0 for c in xs)
    extra = report.bytes_up[second] - plain.bytes_up[second]
    assert 64 + 64 + 100 < extra < 1_000  # advertisement and confirmation signatures, certificate


def test_errors_pickle_with_their_kind():
    import pickle
    err = privcity.SecureAggregationError("x", kind="too_few")
    back = pickle.loads(pickle.dumps(err))
    assert back.kind == "too_few" and str(back) == "x"


# --- SecAgg+ neighbourhoods ---------------------------------------------------------------------------

def groups_of(n: int, neighbors: int, threshold: int, session: bytes = b"") -> dict:
    """The groups a server computes for n fresh clients."""
    server = city().server(10, threshold, session=session, neighbors=neighbors)
    server.collect_advertisements([city().client(c, 10, threshold, session=session,
                                                 neighbors=neighbors).advertise()
                                   for c in range(n)])
    return server._groups


def test_neighbourhood_groups_are_symmetric_of_the_stated_size_and_key_dependent():
    # Execute
    ids = list(range(40))
    groups = groups_of(40, 6, 4)
    other = groups_of(40, 6, 4)  # other clients' keys: another graph

    # Assert: each client with itself and 6 neighbors; v in group(u) iff u in group(v)
    assert all(len(g) == 7 and c in g for c, g in groups.items())
    assert all((u in groups[v]) == (v in groups[u]) for u in ids for v in ids)
    assert groups != other
    assert groups_of(40, 50, 21) == {c: ids for c in ids}  # k >= n - 1: everyone


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_neighbourhood_sum_is_exact_with_dropouts_at_every_step(dtype):
    # Prepare
    xs = inputs(40, dtype, seed=14, d=500)
    ids = sorted(xs)

    # Execute: groups of 17 (threshold 9) keep at least 11 of their members whichever 6 drop,
    # so the round completes for any graph the keys draw
    report = secure_sum(xs, neighbors=16, threshold=9, dtype=dtype,
                        drop_before_sharing=ids[:2], drop_before_input=ids[10:13],
                        drop_before_unmask=ids[20:21], **city().pki(xs))

    # Assert
    expected = [c for c in ids if c not in ids[:2] + ids[10:13]]
    assert report.survivors == expected and report.dropped == ids[10:13]
    assert np.array_equal(report.total, plain_sum(xs, expected, dtype))


def test_neighbourhood_clients_send_only_to_their_group():
    # Prepare
    xs = inputs(30, seed=15, d=100)
    rnd = Round(xs, threshold=3, neighbors=4)
    roster = rnd.advertise()

    # Execute
    sealed = rnd.share(roster)

    # Assert: 4 ciphertexts each, to clients that list the sender as a neighbour too
    groups = rnd.server._groups
    for sender, boxes in sealed.items():
        assert sorted(boxes) == [c for c in groups[sender] if c != sender]
        assert all(sender in groups[r] for r in boxes)


def test_too_many_dropped_neighbours_leave_a_secret_unrebuildable():
    # Prepare: one client's whole group (but itself) drops before unmasking
    xs = inputs(30, seed=16, d=100)
    ids = sorted(xs)
    rnd = Round(xs, threshold=3, neighbors=4)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    victim = ids[7]
    silent = set(rnd.server._groups[victim]) - {victim}
    answers = rnd.unmask(survivors, who=[c for c in survivors if c not in silent])

    # Execute / Assert
    with pytest.raises(privcity.SecureAggregationError, match="self-mask secret came back") as err:
        rnd.server.finish(answers)
    assert err.value.kind == "too_few"


def test_survivors_split_into_unlinked_parts_are_refused():
    # Prepare: a ring of groups (k = 2); two clients dropping before their input cut it in two,
    # and the server could then unmask the sum of each part
    xs = inputs(12, seed=21, d=50)
    rnd = Round(xs, threshold=2, neighbors=2)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    groups = rnd.server._groups
    a = sorted(xs)[0]
    left, right = [c for c in groups[a] if c != a]
    far = next(c for c in xs if c not in groups[a] and len(set(groups[c]) & set(groups[a])) == 0
               and c not in groups[left] and c not in groups[right])
    cut = {a, far}
    masked = rnd.mask(routed, skip=cut)

    # Execute / Assert: the server sees it, and so does every client asked to unmask
    with pytest.raises(privcity.SecureAggregationError, match="unlinked") as err:
        rnd.server.collect_masked(masked)
    assert err.value.kind == "disconnected"
    live = sorted(masked)
    with pytest.raises(privcity.SecureAggregationError, match="unlinked"):
        rnd.answer(live[0], live)


def test_a_threshold_above_the_group_size_is_refused():
    xs = inputs(30, seed=17, d=10)
    with pytest.raises(privcity.SecureAggregationError, match="exceeds the group") as err:
        secure_sum(xs, neighbors=4, threshold=6)
    assert err.value.kind == "too_few"


def test_inputs_that_would_wrap_around_the_ring_are_refused():
    # int64 inputs into the default 32-bit ring: negative values are two's complement words,
    # values of 2**32 or more would silently wrap
    ok = {d: np.array([-(2**31), 2**32 - 1, -1], np.int64) for d in range(3)}
    report = secure_sum(ok, **city().pki(ok))
    assert np.array_equal(report.total, (3 * np.array([2**31, 2**32 - 1, 2**32 - 1])) % 2**32)
    with pytest.raises(privcity.SecureAggregationError, match="outside the 32-bit ring") as info:
        secure_sum({d: np.array([2**32 + 5], np.int64) for d in range(3)})
    assert info.value.kind == "malformed"
    with pytest.raises(privcity.SecureAggregationError, match="outside the 32-bit ring"):
        secure_sum({d: np.array([-(2**31) - 1], np.int64) for d in range(3)})
    wide = secure_sum({d: np.array([2**32 + 5], np.int64) for d in range(3)}, dtype=np.uint64)
    assert int(wide.total[0]) == 3 * (2**32 + 5)


def test_dropouts_must_name_clients_of_the_round():
    inputs = {d: np.arange(4) for d in range(4)}
    with pytest.raises(ValueError, match="drop_before_input names clients that have no input"):
        secure_sum(inputs, drop_before_input=[999])


def test_masks_made_ahead_give_the_same_masked_input_and_sum():
    # Prepare: two rounds of the same clients' keys cannot be had (fresh keys per client), so
    # compare the sum: with every client making its masks before its input exists
    xs = inputs(6, seed=11, d=D)
    rnd = Round(xs, threshold=4)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))

    # Execute
    for c, client in rnd.clients.items():
        client.prepare_mask(routed[c])
    masked = {c: client.masked_input(xs[c]) for c, client in rnd.clients.items()}
    survivors = rnd.server.collect_masked(masked)
    total = rnd.server.finish(rnd.unmask(survivors))

    # Assert: the exact sum; the masked vectors hide the inputs as before
    assert np.array_equal(total, plain_sum(xs, sorted(xs)))
    assert not any(np.array_equal(masked[c], xs[c]) for c in xs)


def test_prepare_mask_is_refused_out_of_order_and_with_ciphertexts_given_twice():
    # Prepare
    xs = inputs(5, seed=12, d=D)
    rnd = Round(xs, threshold=3)
    ads = rnd.advertise()
    c = sorted(xs)[0]

    # Execute / Assert: before share_keys
    with pytest.raises(privcity.SecureAggregationError, match="prepare_mask"):
        rnd.clients[c].prepare_mask({})
    routed = rnd.server.route_shares(rnd.share(ads))
    client = rnd.clients[c]
    client.prepare_mask(routed[c])
    with pytest.raises(privcity.SecureAggregationError, match="once"):
        client.prepare_mask(routed[c])
    with pytest.raises(TypeError, match="pass no ciphertexts"):
        client.masked_input(xs[c], routed[c])
    with pytest.raises(privcity.SecureAggregationError, match="refused this round"):
        client.masked_input(xs[c])  # the refusal above ended its round
