"""One device, one vote at the aggregator: duplicates, epochs, the cohort, gateways bound to
their devices, hostile payloads and enrolments refused alone and counted, and a fuzzed round
that never aborts (issue 14)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from privcity import EnvelopeError
from privcity.crypto import EnvelopeSender
from privcity.crypto.envelope import CONTENT_TENSOR, decode_tensor, parse_header
from privcity.crypto.pki import IdentityKeys
from privcity.fl import Aggregator, FedAvg
from privcity.fl.admission import REFUSAL_KINDS

from envelope_mutations import mutated, tensor_payloads

P = 4  # model parameters
GATEWAYS = {1: range(0, 5), 2: range(5, 10)}  # gateway -> the devices it hosts
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class Device:
    """A simulated device: its keys, its enrolment request and its envelope sender."""

    def __init__(self, device: int) -> None:
        self.id = device
        self.keys = IdentityKeys.generate()
        self.sender = EnvelopeSender(self.keys, f"dev-{device}", state_path=None, ephemeral=True)

    def enrolment(self) -> tuple[int, bytes, bytes]:
        return (self.id, self.keys.identity_public_key.public_bytes(*_RAW),
                self.keys.agreement_public_key.public_bytes(*_RAW))

    def seal(self, agg: Aggregator, epoch: int, payload, **kw) -> bytes:
        return self.sender.seal(agg.verified, epoch, payload, **kw)


def home(device: int) -> int:
    return next(g for g, ids in GATEWAYS.items() if device in ids)


def make_aggregator(devices: list[Device]) -> Aggregator:
    agg = Aggregator(strategy=FedAvg(), n_params=P, weights_of=lambda d: 1.0)
    for g, ids in GATEWAYS.items():
        agg.assign(g, np.arange(ids.start, ids.stop))
    for d in devices:
        assert agg.enrol([d.enrolment()], gateway=home(d.id)) == {}
    return agg


def update(value: float) -> np.ndarray:
    return np.full(P, value, np.float32)


@pytest.fixture
def city():
    devices = [Device(i) for i in range(10)]
    return make_aggregator(devices), devices


EVERYONE = np.arange(10)


# --- one device, one vote ---------------------------------------------------------------------

def test_five_envelopes_of_one_device_in_a_round_are_counted_once(city):
    # Prepare: device 3 seals five updates in round epoch 0 (L2 sensitivity 5C if all counted)
    agg, devices = city
    wires = [devices[3].seal(agg, 0, update(1.0 + i)) for i in range(5)]

    # Execute
    got = agg.open({1: wires}, epoch=0, cohort=EVERYONE)

    # Assert: the first it sealed is summed, the four others are refused as duplicates
    assert got.device_ids.tolist() == [3]
    np.testing.assert_array_equal(got.updates, [update(1.0)])
    assert got.refusals == {"duplicate": 4} and got.refused == 4


def test_the_first_sealed_copy_wins_whatever_the_order_of_arrival(city):
    # Prepare
    agg, devices = city
    wires = [devices[6].seal(agg, 2, update(10.0 + i)) for i in range(3)]

    # Execute: the copies arrive last-sealed first
    got = agg.open({2: wires[::-1]}, epoch=2, cohort=EVERYONE)

    # Assert
    np.testing.assert_array_equal(got.updates, [update(10.0)])
    assert got.refusals == {"duplicate": 2}


def test_a_device_counted_earlier_in_the_round_is_refused_later(city):
    # Prepare
    agg, devices = city
    first = agg.open({1: [devices[0].seal(agg, 4, update(1.0))]}, epoch=4, cohort=EVERYONE)

    # Execute: a second call for the same round, and then the next round
    again = agg.open({1: [devices[0].seal(agg, 4, update(2.0))]}, epoch=4, cohort=EVERYONE)
    later = agg.open({1: [devices[0].seal(agg, 5, update(3.0))]}, epoch=5, cohort=EVERYONE)

    # Assert
    assert first.device_ids.tolist() == [0] and again.device_ids.size == 0
    assert again.refusals == {"duplicate": 1}
    assert later.device_ids.tolist() == [0] and later.refusals == {}


def test_an_envelope_for_a_later_or_earlier_epoch_is_refused(city):
    # Prepare
    agg, devices = city
    wires = [devices[1].seal(agg, 13, update(1.0)), devices[2].seal(agg, 2, update(1.0)),
             devices[4].seal(agg, 3, update(5.0))]

    # Execute: the round of epoch 3
    got = agg.open({1: wires}, epoch=3, cohort=EVERYONE)

    # Assert: only the envelope of this round's epoch is counted now
    assert got.device_ids.tolist() == [4]
    assert got.refusals == {"wrong_epoch": 2}


def test_only_devices_the_server_sampled_are_counted(city):
    # Prepare: devices 0..4 send; the server's cohort holds 1 and 3 (and 7, which is silent)
    agg, devices = city
    wires = [devices[i].seal(agg, 0, update(float(i))) for i in range(5)]

    # Execute
    got = agg.open({1: wires}, epoch=0, cohort=[1, 3, 7])

    # Assert
    assert got.device_ids.tolist() == [1, 3]
    assert got.refusals == {"not_sampled": 3}


def test_an_epoch_that_goes_back_is_an_error_of_the_caller(city):
    # Prepare
    agg, _ = city
    agg.open({}, epoch=5, cohort=EVERYONE)

    # Execute / Assert
    with pytest.raises(ValueError, match="epoch"):
        agg.open({}, epoch=4, cohort=EVERYONE)


# --- gateways and enrolment -------------------------------------------------------------------

def test_a_gateway_cannot_enrol_or_replace_another_gateways_device():
    # Prepare: device 2 (gateway 1) enrolled; an impostor key pair claims to be device 2
    devices = [Device(i) for i in range(10)]
    agg = make_aggregator(devices)
    impostor = Device(2)

    # Execute: gateway 2 enrols it; gateway 1 enrols it again with the other keys
    by_other = agg.enrol([impostor.enrolment()], gateway=2)
    rekeyed = agg.enrol([impostor.enrolment()], gateway=1)
    same = agg.enrol([devices[2].enrolment()], gateway=1)
    got = agg.open({1: [impostor.seal(agg, 0, update(9.0)), devices[2].seal(agg, 0, update(1.0))]},
                   epoch=0, cohort=EVERYONE)

    # Assert: both refused and counted; the real device's certificate stays in force, so the
    # impostor's envelope fails authentication and the real one is counted
    assert by_other == {"enrol_wrong_gateway": 1} and rekeyed == {"enrol_conflict": 1}
    assert same == {}
    assert got.device_ids.tolist() == [2]
    np.testing.assert_array_equal(got.updates, [update(1.0)])
    assert got.refusals == {"authentication": 1}


def test_envelopes_relayed_by_a_gateway_that_does_not_host_the_device_are_refused(city):
    # Prepare
    agg, devices = city

    # Execute: gateway 2 relays device 1's update, gateway 1 relays its own device 0's
    got = agg.open({2: [devices[1].seal(agg, 0, update(1.0))],
                    1: [devices[0].seal(agg, 0, update(2.0))]}, epoch=0, cohort=EVERYONE)

    # Assert
    assert got.device_ids.tolist() == [0] and got.refusals == {"wrong_gateway": 1}


def test_an_id_outside_the_population_never_reaches_step():
    # Prepare: a gateway enrols device 10**6 (no gateway hosts it) and relays its update
    devices = [Device(i) for i in range(10)]
    agg = make_aggregator(devices)
    stranger = Device(10**6)

    # Execute
    enrol = agg.enrol([stranger.enrolment()], gateway=1)
    got = agg.open({1: [stranger.seal(agg, 0, update(1.0)), devices[0].seal(agg, 0, update(2.0))]},
                   epoch=0, cohort=[0, 10**6])
    params = agg.step(np.zeros(P, np.float32), got.device_ids, got.updates, got.bits, 0)

    # Assert: refused at enrolment and at the envelope; the round steps on device 0 alone
    assert enrol == {"enrol_wrong_gateway": 1}
    assert got.device_ids.tolist() == [0] and got.refusals == {"unknown_device": 1}
    np.testing.assert_array_equal(params, update(2.0))
    with pytest.raises(ValueError, match="not enrolled"):
        agg.step(np.zeros(P, np.float32), np.array([10**6]), update(1.0)[None], got.bits, 0)


def test_malformed_enrolments_are_refused_alone():
    # Prepare: good keys, short keys, a bool id, a low-order X25519 key, the aggregator's own,
    # not a tuple, four fields, an id beyond int64, a float id
    devices = [Device(i) for i in range(10)]
    agg = make_aggregator([])
    ident, agree = devices[0].enrolment()[1:]
    own = agg.keys.agreement_public_key.public_bytes(*_RAW)
    requests = [(0, ident, agree), (1, ident[:31], agree), (True, ident, agree),
                (3, ident, bytes(32)), (4, ident, own), "not a tuple", (2, ident, agree, 0),
                (2**70, ident, agree), (2.0, ident, agree)]

    # Execute
    refused = agg.enrol(requests, gateway=1)

    # Assert: only device 0 is enrolled, and its envelopes open
    assert refused == {"enrol_malformed": 8}
    got = agg.open({1: [devices[0].seal(agg, 0, update(1.0))]}, epoch=0, cohort=EVERYONE)
    assert got.device_ids.tolist() == [0]


def test_a_device_has_one_gateway():
    # Prepare
    agg = make_aggregator([])

    # Execute / Assert
    with pytest.raises(ValueError, match="already hosted"):
        agg.assign(3, [9, 10])
    with pytest.raises(ValueError, match="already has"):
        agg.assign(1, [20])


# --- hostile payloads ---------------------------------------------------------------------------

def _zero_and_huge_tensor() -> bytes:
    import struct
    return bytes((11, 2)) + struct.pack(">QQ", 0, 2**63)


@pytest.mark.parametrize("payload,kind", [
    (_zero_and_huge_tensor(), "malformed"),
    (np.zeros(P + 1, np.float32), "malformed"),
    (np.zeros((2, P), np.float32), "malformed"),
    (np.zeros(P, np.int32), "malformed"),
    (b"raw bytes", "malformed"),
    ({"round": 1}, "malformed"),
    (np.array([1.0, np.nan, 0.0, 0.0], np.float32), "non_finite"),
    (np.array([1e39, 0.0, 0.0, 0.0], np.float64), "non_finite"),  # inf once in float32
], ids=["zero-and-2**63", "too-long", "2-d", "int32", "bytes", "metadata", "nan", "f64-overflow"])
def test_one_hostile_payload_is_refused_alone_and_the_round_goes_on(city, payload, kind):
    # Prepare: device 5 sends the hostile payload, devices 6 and 7 honest updates
    agg, devices = city
    opts = {"content_type": CONTENT_TENSOR} if isinstance(payload, bytes) and kind == "malformed" \
        and payload[:1] == b"\x0b" else {}
    wires = [devices[5].seal(agg, 0, payload, **opts), devices[6].seal(agg, 0, update(1.0)),
             devices[7].seal(agg, 0, update(3.0))]

    # Execute
    got = agg.open({2: wires}, epoch=0, cohort=EVERYONE)
    params = agg.step(np.zeros(P, np.float32), got.device_ids, got.updates, got.bits, 0)

    # Assert
    assert got.device_ids.tolist() == [6, 7] and got.refusals == {kind: 1}
    np.testing.assert_array_equal(params, update(2.0))


# --- fuzzing ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_city():
    devices = [Device(i) for i in range(10)]
    return make_aggregator(devices[:8]), devices  # 8 and 9 are not enrolled


_EPOCHS = itertools.count(10)


def _as_update(payload: bytes) -> np.ndarray | None:
    """The float32 update a tensor payload holds, or None if it is no valid update."""
    try:
        value = decode_tensor(payload)
    except EnvelopeError:
        return None
    if value.shape != (P,) or value.dtype.kind != "f":
        return None
    with np.errstate(over="ignore"):
        row = value.astype(np.float32)
    return row if np.isfinite(row).all() else None


@st.composite
def hostile_round(draw, agg: Aggregator, devices: list[Device], epoch: int):
    """(relayed, cohort, sealed valid updates): honest updates from their gateways mixed with
    duplicates, crafted payloads, NaN and Inf, other epochs, wrong gateways, mutations, replays
    and random bytes."""
    cohort = draw(st.one_of(st.just(list(range(10))),
                            st.lists(st.integers(0, 9), unique=True, max_size=10)))
    relayed: dict[int, list[bytes]] = {1: [], 2: []}
    valid: dict[bytes, tuple[int, np.ndarray]] = {}  # intact valid-update envelope -> device
    for d in draw(st.lists(st.integers(0, 9), unique=True, max_size=6)):  # honest, first
        row = update(float(d))
        wire = devices[d].seal(agg, epoch, row)
        valid[wire] = (d, row)
        relayed[home(d)].append(wire)
    for _ in range(draw(st.integers(0, 8))):
        d = draw(st.integers(0, 9))
        how = draw(st.sampled_from(["duplicate", "payload", "non_finite", "epoch", "gateway",
                                    "tamper", "mutate", "replay", "random"]))
        gateway = draw(st.sampled_from([1, 2])) if how != "gateway" else 3 - home(d)
        if how in ("duplicate", "gateway"):
            row = update(draw(st.floats(-1e3, 1e3, width=32)))
            wire = devices[d].seal(agg, epoch, row)
            valid[wire] = (d, row)
        elif how == "payload":
            payload = draw(tensor_payloads())
            wire = devices[d].seal(agg, epoch, payload, content_type=CONTENT_TENSOR)
            row = _as_update(payload)
            if row is not None:  # crafted, yet a valid update all the same
                valid[wire] = (d, row)
        elif how == "non_finite":
            bad = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e39]))  # 1e39: inf in f32
            row = np.zeros(P, np.float64)
            row[draw(st.integers(0, P - 1))] = bad
            wire = devices[d].seal(agg, epoch, row if bad == 1e39 or draw(st.booleans())
                                   else row.astype(np.float32))
        elif how == "epoch":
            wire = devices[d].seal(agg, epoch + draw(st.sampled_from([1, 10, 2**40])),
                                   update(1.0))
        elif how in ("tamper", "mutate", "replay") and valid:
            original = draw(st.sampled_from(sorted(valid)))
            wire = original if how == "replay" else draw(mutated(original))
            if how == "tamper":  # one bit of the ciphertext or tag: only the tag check sees it
                b = bytearray(original)
                b[draw(st.integers(parse_header(original).length, len(b) - 1))] ^= 1
                wire = bytes(b)
            gateway = home(valid[original][0])  # altered in transit from its own gateway
        else:
            wire = draw(st.binary(max_size=120))
        relayed[gateway if how != "duplicate" else home(d)].append(wire)
    for g in relayed:
        relayed[g] = draw(st.permutations(relayed[g]))
    return relayed, cohort, valid


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_hostile_round_never_aborts_and_counts_every_refusal(fuzz_city, data):
    # Prepare
    agg, devices = fuzz_city
    epoch = next(_EPOCHS)
    relayed, cohort, valid = data.draw(hostile_round(agg, devices, epoch))
    total = sum(len(v) for v in relayed.values())

    # Execute: nothing raises
    got = agg.open(relayed, epoch=epoch, cohort=cohort)

    # Assert: each envelope is counted once, accepted or refused under a documented kind
    assert got.device_ids.size + got.refused == total
    assert set(got.refusals) <= set(REFUSAL_KINDS)
    # Assert: exactly the devices with an intact valid update, sealed by an enrolled and
    # sampled device and relayed by its own gateway, each once, with the first one it sealed
    first: dict[int, tuple[int, np.ndarray]] = {}
    for g, wires in relayed.items():
        for wire in wires:
            if wire in valid and valid[wire][0] < 8 and valid[wire][0] in cohort \
                    and home(valid[wire][0]) == g:
                d, row = valid[wire]
                counter = parse_header(wire).counter
                if d not in first or counter < first[d][0]:
                    first[d] = (counter, row)
    assert got.device_ids.tolist() == sorted(first)
    for d, row in zip(got.device_ids.tolist(), got.updates):
        np.testing.assert_array_equal(row, first[d][1])


@pytest.fixture(scope="module")
def enrol_city():
    devices = [Device(i) for i in range(10)]
    return make_aggregator(devices[:8]), devices


_KEYS = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40),
                  st.sampled_from([bytes(32), b"\x01" + bytes(31)]))  # low-order X25519 points
_ENROLMENT = st.one_of(
    st.tuples(st.one_of(st.integers(-3, 12), st.integers(), st.booleans(), st.floats()),
              _KEYS, _KEYS),
    st.lists(st.binary(max_size=8), max_size=4), st.none(), st.text(max_size=5))


@settings(max_examples=40, deadline=None)
@given(gateway=st.sampled_from([1, 2, 3]), requests=st.lists(_ENROLMENT, max_size=6))
def test_hostile_enrolments_never_raise_and_never_move_a_device(enrol_city, gateway, requests):
    # Prepare
    agg, devices = enrol_city
    epoch = next(_EPOCHS)

    # Execute
    refused = agg.enrol(requests, gateway=gateway)

    # Assert: every refusal has a documented kind; no device changed gateway or keys, so the
    # enrolled devices' envelopes still open and are counted
    assert set(refused) <= {"enrol_malformed", "enrol_wrong_gateway", "enrol_conflict"}
    assert sum(refused.values()) <= len(requests)
    got = agg.open({home(d): [devices[d].seal(agg, epoch, update(1.0))] for d in (0, 7)},
                   epoch=epoch, cohort=EVERYONE)
    assert got.device_ids.tolist() == [0, 7] and got.refusals == {}
    for d in range(10):
        assert not agg.registry.is_enrolled(d) or agg.registry.home(d) == home(d)
