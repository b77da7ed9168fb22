"""Hostile input on the server's path of secure aggregation (issue 14, point 4): a malformed,
unknown, duplicated or unauthentic message is refused alone and counted, its client is left out
(or, for a late message, its message unused), and the round goes on while the threshold holds.
A hypothesis test mutates one client's message at each server entry of an otherwise honest
round; the deterministic tests below name the cases."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import privcity
from privcity.aggregate import SecAggClient, SecAggServer
from privcity.aggregate._secagg import (_SEALED, _roster_digest, _survivor_list,
                                        _survivors_message)
from privcity.aggregate.secure import Advertisement, Unmasking

from test_secure_aggregation import Round, city, inputs, plain_sum

IDS = [11, 22, 33, 44, 55]
T, DIM, SESSION = 3, 8, b"hostile"
XS = {c: np.random.default_rng(c).integers(0, 2**32, DIM, dtype=np.uint32) for c in IDS}
STEPS = ("advertise", "share", "masked", "confirm", "unmask")


class HostileArray(np.ndarray):
    """An array whose shape cannot even be read."""

    @property
    def shape(self):  # type: ignore[override]
        raise RuntimeError("no shape for you")


def run_round(step: str, victim: int, mutate, dropouts: set[int]) -> tuple[SecAggServer, object]:
    """One authenticated round of IDS in which `victim`'s message at `step` is replaced by
    mutate(message, context); the clients in `dropouts` send no masked input. Returns the
    server and the sum, or the SecureAggregationError that ended the round."""
    server = SecAggServer(DIM, T, session=SESSION, verifier=_verifiers["server"])
    clients = {c: SecAggClient(c, DIM, T, session=SESSION, identity=city().identity(c)[0],
                               certificate=city().identity(c)[1], verifier=_verifiers["clients"])
               for c in IDS}
    ctx: dict = {"victim": victim}
    try:
        ads = ctx["ads"] = {c: cl.advertise() for c, cl in clients.items()}
        if step == "advertise":
            ads[victim] = mutate(ads[victim], ctx)
        roster = ctx["roster"] = server.collect_advertisements(ads)
        sealed = {c: clients[c].share_keys(roster) for c in roster}
        if step == "share":
            sealed[victim] = mutate(sealed[victim], ctx)
        routed = server.route_shares(sealed)
        masked = {c: clients[c].masked_input(XS[c], routed[c]) for c in routed
                  if c not in dropouts}
        if step == "masked":
            masked[victim] = mutate(masked[victim], ctx)
        survivors = ctx["survivors"] = server.collect_masked(masked)
        confirmations = ctx["confirmations"] = {c: clients[c].confirm(survivors)
                                                for c in survivors}
        if step == "confirm":
            confirmations[victim] = mutate(confirmations[victim], ctx)
        forwarded = server.collect_confirmations(confirmations)
        answers = {c: clients[c].unmask(signatures=forwarded) for c in survivors}
        if step == "unmask":
            answers[victim] = mutate(answers[victim], ctx)
        return server, server.finish(answers)
    except privcity.SecureAggregationError as exc:
        return server, exc


_verifiers = {"server": city().verifier(), "clients": city().verifier()}


def expected(step: str, victim: int, dropouts: set[int]) -> list[int] | None:
    """The survivors whose sum the round must return, or None when too few are left."""
    out = set(IDS) - dropouts - ({victim} if step in ("advertise", "share", "masked") else set())
    helpers = out - {victim}  # those whose confirmations and shares count
    if len(out) < T or len(helpers) < T:
        return None
    return sorted(out)


# --- mutations: each returns a message that differs from the honest one -------------------------

junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=80),
                 st.text(max_size=8), st.lists(st.integers(0, 2**32 - 1), max_size=DIM + 1),
                 st.dictionaries(st.integers(), st.binary(max_size=20), max_size=3))


def _flip(raw: bytes, at: int) -> bytes:
    out = bytearray(raw)
    out[at % len(out)] ^= 1 << (at % 8)
    return bytes(out)


def _forced(cls, base, **changes):
    """An instance of the frozen dataclass cls with fields changed without its checks."""
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        object.__setattr__(obj, f.name, changes.get(f.name, getattr(base, f.name)))
    return obj


def _other(ctx, pool) -> int:
    return next(c for c in pool if c != ctx["victim"])


ADV_FIELDS = ["client", "c_public", "s_public", "settings", "commitment", "signature",
              "certificate"]
mutate_advertisement = st.one_of(
    junk.map(lambda j: lambda adv, ctx: j),
    st.tuples(st.sampled_from(ADV_FIELDS), junk).filter(lambda t: t[1] not in IDS).map(
        lambda t: lambda adv, ctx: _forced(Advertisement, adv, **{t[0]: t[1]})),
    st.tuples(st.sampled_from(ADV_FIELDS[1:]), st.integers(0, 10**6)).map(
        lambda t: lambda adv, ctx: _forced(Advertisement, adv,
                                           **{t[0]: _flip(getattr(adv, t[0]), t[1])})),
    st.just(lambda adv, ctx: dataclasses.replace(adv, client=_other(ctx, IDS))),
    st.just(lambda adv, ctx: dataclasses.replace(
        adv, c_public=ctx["ads"][_other(ctx, IDS)].c_public)),
)


def _first(boxes):
    return next(iter(boxes))


mutate_shares = st.one_of(
    junk.map(lambda j: lambda boxes, ctx: j),
    st.just(lambda boxes, ctx: {r: ct for r, ct in boxes.items() if r != _first(boxes)}),
    st.one_of(st.integers(), st.text(max_size=3), st.none()).filter(lambda k: k not in IDS).map(
        lambda k: lambda boxes, ctx: {**boxes, k: next(iter(boxes.values()))}),
    st.just(lambda boxes, ctx: {**boxes, ctx["victim"]: next(iter(boxes.values()))}),
    st.binary(max_size=100).filter(lambda b: len(b) != _SEALED).map(
        lambda b: lambda boxes, ctx: {**boxes, _first(boxes): b}),
    junk.filter(lambda j: not isinstance(j, bytes)).map(
        lambda j: lambda boxes, ctx: {**boxes, _first(boxes): j}),
)

mutate_masked = st.one_of(
    junk.map(lambda j: lambda y, ctx: j),
    st.sampled_from([np.int64, np.uint64, np.int32, np.float32, np.float64, np.uint16, object,
                     np.dtype(">u4")]).map(lambda dt: lambda y, ctx: y.astype(dt)),
    st.integers(0, 2 * DIM).filter(lambda n: n != DIM).map(
        lambda n: lambda y, ctx: np.resize(y, n)),
    st.just(lambda y, ctx: y.reshape(2, DIM // 2)),
    st.just(lambda y, ctx: y[0]),
    st.just(lambda y, ctx: y.view(HostileArray)),
    st.just(lambda y, ctx: y.tolist()),
)


def _wrong_list(sig, ctx):
    """The victim's own valid signature, over a survivor list other than the announced one."""
    key = city().identity(ctx["victim"])[0]
    digest = _roster_digest(SESSION, ctx["roster"])
    return key.sign(_survivors_message(SESSION, digest, ctx["victim"],
                                       _survivor_list(ctx["survivors"][1:])))


mutate_confirmation = st.one_of(
    junk.map(lambda j: lambda sig, ctx: j),
    st.binary(min_size=64, max_size=64).map(lambda b: lambda sig, ctx: b),
    st.integers(0, 10**6).map(lambda at: lambda sig, ctx: _flip(sig, at)),
    st.just(lambda sig, ctx: ctx["confirmations"][_other(ctx, ctx["survivors"])]),
    st.just(_wrong_list),
)


def _some(table):
    return next(iter(table))


mutate_unmasking = st.one_of(
    junk.map(lambda j: lambda r, ctx: j),
    st.just(lambda r, ctx: dataclasses.replace(r, client=_other(ctx, IDS))),
    st.tuples(st.sampled_from(["self_mask_shares", "key_shares"]), junk).map(
        # (junk equal to the honest table, {} for key_shares when nobody dropped, is no change)
        lambda t: lambda r, ctx: _forced(Unmasking, r, **{
            t[0]: t[1] if t[1] != getattr(r, t[0]) else "not a table"})),
    st.binary(max_size=40).filter(lambda b: len(b) != 16).map(
        lambda b: lambda r, ctx: dataclasses.replace(
            r, self_mask_shares={**r.self_mask_shares, _some(r.self_mask_shares): b})),
    junk.filter(lambda j: not isinstance(j, bytes)).map(
        lambda j: lambda r, ctx: dataclasses.replace(
            r, self_mask_shares={**r.self_mask_shares, _some(r.self_mask_shares): j})),
    st.one_of(st.integers(), st.text(max_size=3)).filter(lambda k: k not in IDS).map(
        lambda k: lambda r, ctx: dataclasses.replace(
            r, self_mask_shares={**r.self_mask_shares, k: bytes(16)})),
    st.just(lambda r, ctx: dataclasses.replace(  # a b share moved to the s table
        r, key_shares={**r.key_shares, _some(r.self_mask_shares): bytes(16)})),
    st.just(lambda r, ctx: dataclasses.replace(  # one share missing
        r, self_mask_shares={w: s for w, s in r.self_mask_shares.items()
                             if w != _some(r.self_mask_shares)})),
    st.integers(0, 10**6).map(lambda at: lambda r, ctx: dataclasses.replace(  # a wrong share
        r, self_mask_shares={w: (_flip(s, at) if w == _some(r.self_mask_shares) else s)
                             for w, s in r.self_mask_shares.items()})),
)

MUTATIONS = {"advertise": mutate_advertisement, "share": mutate_shares, "masked": mutate_masked,
             "confirm": mutate_confirmation, "unmask": mutate_unmasking}


@st.composite
def hostile_rounds(draw, step: str):
    victim = draw(st.sampled_from(IDS))
    dropouts = draw(st.sets(st.sampled_from([c for c in IDS if c != victim]), max_size=2))
    return victim, draw(MUTATIONS[step]), dropouts


@pytest.mark.parametrize("step", STEPS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_hostile_message_is_refused_alone_and_the_round_goes_on(step, data):
    # Prepare
    victim, mutate, dropouts = data.draw(hostile_rounds(step))

    # Execute
    server, result = run_round(step, victim, mutate, dropouts)

    # Assert: too few left -> too_few (or disconnected) and nothing else; otherwise the exact sum
    # of the survivors that stayed valid; either way the victim, and only it, is counted
    want = expected(step, victim, dropouts)
    if want is None:
        assert isinstance(result, privcity.SecureAggregationError), result
        assert result.kind in ("too_few", "disconnected")
    else:
        assert not isinstance(result, Exception), result
        assert np.array_equal(result, plain_sum(XS, want))
    assert set(server.refused) <= {victim} and server.unattributed == 0
    if want is not None or step in ("advertise", "share", "masked"):
        assert victim in server.refused, server.refusal_reasons


# --- the cases, one by one -----------------------------------------------------------------------

def honest_until_masked(n=6, threshold=4, seed=30):
    xs = inputs(n, seed=seed, d=DIM)
    rnd = Round(xs, threshold=threshold)
    routed = rnd.server.route_shares(rnd.share(rnd.advertise()))
    return xs, sorted(xs), rnd, rnd.mask(routed)


def test_a_malformed_masked_vector_drops_its_client_and_the_round_goes_on():
    # Prepare: one masked vector with a wrong length
    xs, ids, rnd, masked = honest_until_masked()
    masked[ids[1]] = masked[ids[1]][:-1]

    # Execute
    survivors = rnd.server.collect_masked(masked)
    total = rnd.server.finish(rnd.unmask(survivors))

    # Assert: left out as a dropout (its masks recovered), counted, the others summed
    assert survivors == ids[:1] + ids[2:]
    assert np.array_equal(total, plain_sum(xs, survivors))
    assert rnd.server.refused == {ids[1]: "malformed"}


def test_a_malformed_unmasking_answer_is_ignored_and_the_round_goes_on():
    # Prepare
    xs, ids, rnd, masked = honest_until_masked()
    survivors = rnd.server.collect_masked(masked)
    answers = rnd.unmask(survivors)
    answers[2] = Unmasking(answers[2].client, {**answers[2].self_mask_shares, 10**6: bytes(16)},
                           answers[2].key_shares)

    # Execute
    total = rnd.server.finish(answers)

    # Assert: its input is in the sum (it arrived), its answer unused, its refusal counted
    assert np.array_equal(total, plain_sum(xs, ids))
    assert rnd.server.refused == {ids[2]: "malformed"}


def test_a_sender_that_leaves_out_a_recipient_is_left_out():
    # Prepare: a client seals to all of its group but one; routed as it is, that recipient
    # would not mask against it while it masks against the recipient, and the recipient would
    # refuse to unmask a survivor that never shared keys with it: one device would stop the round
    xs = inputs(6, seed=31, d=DIM)
    ids = sorted(xs)
    rnd = Round(xs, threshold=4)
    sealed = rnd.share(rnd.advertise())
    del sealed[ids[0]][ids[1]]

    # Execute
    routed = rnd.server.route_shares(sealed)
    survivors = rnd.server.collect_masked(rnd.mask(routed))
    total = rnd.server.finish(rnd.unmask(survivors))

    # Assert
    assert ids[0] not in routed and survivors == ids[1:]
    assert np.array_equal(total, plain_sum(xs, ids[1:]))
    assert rnd.server.refused == {ids[0]: "malformed"}


def test_a_ciphertext_the_server_cannot_check_is_refused_by_its_recipient():
    # Prepare: garbage of the right length reaches a recipient (only it holds the key)
    xs = inputs(6, seed=32, d=DIM)
    ids = sorted(xs)
    rnd = Round(xs, threshold=4)
    sealed = rnd.share(rnd.advertise())
    sealed[ids[0]][ids[1]] = bytes(_SEALED)
    routed = rnd.server.route_shares(sealed)

    # Execute: the recipient refuses and, from the server's view, drops out
    with pytest.raises(privcity.AuthenticationError, match=f"from client {ids[0]}"):
        rnd.clients[ids[1]].masked_input(xs[ids[1]], routed[ids[1]])
    survivors = rnd.server.collect_masked(rnd.mask(routed, skip=[ids[1]]))
    total = rnd.server.finish(rnd.unmask(survivors))

    # Assert: the round goes on without it; the server had nothing to refuse
    assert np.array_equal(total, plain_sum(xs, survivors)) and ids[1] not in survivors
    assert rnd.server.refused == {}


def test_an_invalid_confirmation_is_left_out_and_the_round_goes_on():
    # Prepare
    xs, ids, rnd, masked = honest_until_masked()
    survivors = rnd.server.collect_masked(masked)
    confirmations = {c: rnd.clients[c].confirm(survivors) for c in survivors}
    confirmations[ids[3]] = confirmations[ids[4]]

    # Execute
    forwarded = rnd.server.collect_confirmations(confirmations)
    total = rnd.server.finish([rnd.clients[c].unmask(signatures=forwarded) for c in survivors])

    # Assert
    assert sorted(forwarded) == ids[:3] + ids[4:]
    assert np.array_equal(total, plain_sum(xs, ids))
    assert rnd.server.refused == {ids[3]: "authentication"}


def test_only_too_few_valid_messages_left_end_the_round():
    # Prepare: threshold 4 of 6; three malformed masked vectors leave three
    xs, ids, rnd, masked = honest_until_masked()
    for c in ids[:3]:
        masked[c] = "not a vector"

    # Execute / Assert
    with pytest.raises(privcity.SecureAggregationError, match="threshold is 4") as err:
        rnd.server.collect_masked(masked)
    assert err.value.kind == "too_few"
    assert rnd.server.refusal_counts() == {"malformed": 3}


def test_messages_from_clients_outside_the_step_are_counted_and_ignored():
    # Prepare
    xs, ids, rnd, masked = honest_until_masked()

    # Execute: a masked vector from a stranger, and a message under a key that is no id
    survivors = rnd.server.collect_masked({**masked, 999: masked[ids[0]], "x": masked[ids[1]]})
    total = rnd.server.finish(rnd.unmask(survivors))

    # Assert
    assert survivors == ids and np.array_equal(total, plain_sum(xs, ids))
    assert rnd.server.refused == {999: "unknown_client"} and rnd.server.unattributed == 1
