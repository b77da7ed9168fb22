"""Compressed updates (issue 16, privcity.fl.compress): the option's syntax, unbiased rotated
quantization and its error bound, bit packing, top-k with error feedback, what the aggregator
refuses (every field an attacker controls), results independent of the gateway split, and
the DP sensitivity after decoding."""
from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest

from privcity import EnvelopeError, _core
from privcity.crypto import EnvelopeSender
from privcity.crypto.envelope import CONTENT_BYTES
from privcity.crypto.pki import IdentityKeys
from privcity.dp import Accountant
from privcity.fl import Aggregator, DPFedAvg, FedAvg, Gateway
from privcity.fl.compress import (Compression, ErrorFeedback, decode_update, encode_quantized,
                                  encode_topk, pack_codes, parse_compression, unpack_codes)
from privcity.fl.compress_secure import SecureQuantizer
from privcity.fl.rounds import sampled_devices
from privcity.noise import SecureRNG

Q8 = Compression("quantize", bits=8, seed=1)
DIM = 300  # padded to 320 = 20 * 2**4 by the rotation


def rng(stream: int = 0) -> SecureRNG:
    return SecureRNG(b"compress-tests", stream=stream)


def vector(dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


# --- the option ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, kind, bits, fraction", [
    ("none", "none", 0, 0.0), ("q8", "quantize", 8, 0.0), ("Q4", "quantize", 4, 0.0),
    ("q16", "quantize", 16, 0.0), ("topk:0.01", "topk", 0, 0.01), ("topk:1", "topk", 0, 1.0)])
def test_the_option_names_a_codec(spec, kind, bits, fraction):
    c = parse_compression(spec, seed=5)
    assert (c.kind, c.bits, c.fraction, c.seed) == (kind, bits, fraction, 5)
    assert parse_compression(c.spec).spec == c.spec


@pytest.mark.parametrize("spec", ["q0", "q17", "q", "topk", "topk:0", "topk:1.5", "topk:-0.1",
                                  "topk:nan", "topk:abc", "gzip", "", "q8,topk:0.1"])
def test_a_bad_option_is_refused_naming_the_forms(spec):
    with pytest.raises(ValueError, match="q<bits>|fraction|bits"):
        parse_compression(spec)


def test_top_k_keeps_at_least_one_coordinate_and_at_most_all():
    assert Compression("topk", fraction=0.01).k(7850) == 79
    assert Compression("topk", fraction=1e-9).k(7850) == 1
    assert Compression("topk", fraction=1.0).k(7850) == 7850


# --- bit packing --------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8, 12, 13, 16])
def test_codes_round_trip_through_their_bit_stream(bits):
    # Prepare: every code value, including the largest, at odd lengths
    codes = np.random.default_rng(bits).integers(0, 2**bits, 1001).astype(np.uint32)
    codes[:2] = [0, 2**bits - 1]

    # Execute
    packed = pack_codes(codes, bits)

    # Assert: exactly ceil(n b / 8) bytes, and the codes come back
    assert len(packed) == math.ceil(1001 * bits / 8)
    assert np.array_equal(unpack_codes(packed, bits, 1001), codes)


def reference_pack(codes: np.ndarray, bits: int) -> bytes:
    """The stream of the wire format, built one Python integer at a time."""
    acc = sum(int(c) << (i * bits) for i, c in enumerate(codes))
    return acc.to_bytes(math.ceil(len(codes) * bits / 8), "little")


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8, 11, 16])
def test_every_packing_path_writes_the_stream_of_the_wire_format(bits):
    codes = np.random.default_rng(bits).integers(0, 2**bits, 37).astype(np.uint32)
    assert pack_codes(codes, bits) == reference_pack(codes, bits)


def test_the_bit_stream_puts_each_code_least_significant_bit_first():
    # 3-bit codes 1, 2, 7: bits 100 010 111 -> byte 0b11_010_001 (LSB first), then 0b0000000_1
    assert pack_codes(np.array([1, 2, 7]), 3) == bytes([0b11010001, 0b00000001])


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_set_padding_bits_are_refused(bits):
    packed = bytearray(pack_codes(np.array([1, 0, 1]), bits))
    packed[-1] |= 0x80
    with pytest.raises(EnvelopeError, match="padding") as exc:
        unpack_codes(bytes(packed), bits, 3)
    assert exc.value.kind == "malformed"


# --- quantization -------------------------------------------------------------------------------

def decoded(payload: bytes, c: Compression = Q8, epoch: int = 0) -> np.ndarray:
    row, _ = decode_update(payload, c, DIM, epoch)
    return row


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_quantization_is_unbiased(bits):
    # Prepare: one update, quantized 4,000 times with independent rounding
    c = Compression("quantize", bits=bits, seed=2)
    x = vector()
    trials = 4000

    # Execute
    rows = np.stack([decoded(encode_quantized(x, c, 3, rng(i)), c, 3) for i in range(trials)])

    # Assert: every coordinate's mean is within 5 standard errors of x (seeded: deterministic)
    mean, se = rows.mean(axis=0), rows.std(axis=0) / math.sqrt(trials)
    assert np.all(np.abs(mean - x) <= 5 * se + 1e-6)


def test_the_unbiasedness_check_would_catch_rounding_to_nearest():
    # Prepare: the same check on a nearest-rounding quantizer of the same grid (biased)
    c = Compression("quantize", bits=2, seed=2)
    x = vector()
    key = _rotation_key(c, 3)
    y = _core.ddg_rotate(x.astype(np.float64), key)
    s = np.abs(y).max()
    step = 2 * s / 3
    nearest = np.rint((y + s) / step) * step - s
    rows = np.stack([_core.ddg_unrotate(nearest, DIM, key)] * 2)

    # Assert: its error is far beyond what the unbiased quantizer shows on average
    assert np.abs(rows.mean(axis=0) - x).max() > 0.05


def _rotation_key(c: Compression, epoch: int) -> bytes:
    from privcity.dp import ddg_rotation_key
    return ddg_rotation_key(c.rotation_seed(epoch))


@pytest.mark.parametrize("bits", [1, 4, 8, 16])
def test_every_rotated_coordinate_is_within_one_step(bits):
    # Prepare
    c = Compression("quantize", bits=bits, seed=4)
    x = vector(seed=bits) * 3

    # Execute
    payload = encode_quantized(x, c, 7, rng())
    got = decoded(payload, c, 7)

    # Assert: in the rotated domain (the codes on the grid) each coordinate moved less than
    # one step 2 s / (2^b - 1), so the decoded update (rotated back, cut to dim) is off by
    # less than that times sqrt(d')
    y = _core.ddg_rotate(x.astype(np.float64), _rotation_key(c, 7))
    (s,) = struct.unpack_from(">f", payload, 12)
    step = 2 * s / (2**bits - 1)
    y_hat = unpack_codes(payload[16:], bits, 320) * step - s
    assert np.abs(y_hat - y).max() < step * (1 + 1e-5)
    assert np.linalg.norm(got - x) < step * math.sqrt(320) * (1 + 1e-5)


def test_eight_bits_cost_a_quarter_of_float32_plus_a_sixteen_byte_head():
    payload = encode_quantized(vector(), Q8, 0, rng())
    assert len(payload) == 16 + 320 == Q8.payload_bytes(DIM)


def test_a_zero_update_decodes_to_zero():
    assert not decoded(encode_quantized(np.zeros(DIM, np.float32), Q8, 0, rng())).any()


def test_the_rotation_changes_with_the_epoch_and_decoding_needs_the_same_epoch():
    x = vector()
    payload = encode_quantized(x, Q8, 4, rng())
    assert np.linalg.norm(decoded(payload, Q8, 4) - x) < 0.1 * np.linalg.norm(x)
    assert np.linalg.norm(decoded(payload, Q8, 5) - x) > 0.5 * np.linalg.norm(x)


def test_the_adaptive_clipping_bit_travels_in_the_flags():
    for bit in (None, True, False):
        _, got = decode_update(encode_quantized(vector(), Q8, 0, rng(), unclipped=bit), Q8,
                               DIM, 0)
        assert got is bit


# --- what the aggregator refuses ----------------------------------------------------------------

def _good() -> bytes:
    return encode_quantized(vector(), Q8, 0, rng())


def _with(payload: bytes, offset: int, raw: bytes) -> bytes:
    return payload[:offset] + raw + payload[offset + len(raw):]


HOSTILE = {
    "empty": lambda p: b"",
    "head only": lambda p: p[:12],
    "one byte short": lambda p: p[:-1],
    "one byte long": lambda p: p + b"\0",
    "twice as long": lambda p: p + p[16:],
    "other magic": lambda p: _with(p, 0, b"PCEV"),
    "top-k codec": lambda p: _with(p, 4, b"\x02"),
    "unknown codec": lambda p: _with(p, 4, b"\x09"),
    "4 bits, not the agreed 8": lambda p: _with(p, 5, b"\x04")[:16 + 160],
    "16 bits, not the agreed 8": lambda p: _with(p, 5, b"\x10") + p[16:],
    "0 bits": lambda p: _with(p, 5, b"\x00")[:16],
    "unknown flag": lambda p: _with(p, 6, b"\x04"),
    "bit value without the bit": lambda p: _with(p, 6, b"\x02"),
    "reserved set": lambda p: _with(p, 7, b"\x01"),
    "another dim": lambda p: _with(p, 8, struct.pack(">I", DIM + 1)),
    "dim 2**32 - 1": lambda p: _with(p, 8, b"\xff\xff\xff\xff"),
    "NaN scale": lambda p: _with(p, 12, struct.pack(">f", float("nan"))),
    "infinite scale": lambda p: _with(p, 12, struct.pack(">f", float("inf"))),
    "negative scale": lambda p: _with(p, 12, struct.pack(">f", -1.0)),
    "scale that could overflow float32": lambda p: _with(p, 12, struct.pack(">f", 3e38)),
    "scale just past the bound": lambda p: _with(p, 12, struct.pack(
        ">f", np.nextafter(np.float32(3.4028235e38 / math.sqrt(320) * (1 - 2.0**-20)),
                           np.float32(np.inf)))),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_malformed_compressed_payload_is_refused_as_malformed(attack):
    # Execute
    with pytest.raises(EnvelopeError) as exc:
        decode_update(HOSTILE[attack](_good()), Q8, DIM, 0)

    # Assert
    assert exc.value.kind == "malformed"
    assert str(exc.value).startswith("compressed update:")


def topk_payload(k: int = 3, dim: int = DIM) -> bytes:
    return encode_topk(np.arange(k) * 7, np.ones(k, np.float32), dim)


TOPK = Compression("topk", fraction=0.01)  # k = 3 of 300

HOSTILE_TOPK = {
    "k above the run's": lambda p: _with(topk_payload(4), 12, struct.pack(">I", 4)),
    "k below the run's": lambda p: topk_payload(2),
    "k of 2**32 - 1": lambda p: _with(p, 12, b"\xff\xff\xff\xff"),
    "indices out of order": lambda p: encode_topk_raw([14, 7, 0]),
    "a repeated index": lambda p: encode_topk_raw([7, 7, 14]),
    "an index past dim": lambda p: encode_topk_raw([0, 7, 511]),
    "index bits not dim's": lambda p: _with(p, 5, b"\x10"),
    "values cut short": lambda p: p[:-4],
    "a trailing byte": lambda p: p + b"\0",
    "quantize codec": lambda p: _with(p, 4, b"\x01"),
}


def encode_topk_raw(indices: list[int]) -> bytes:
    """A top-k payload with indices the encoder itself would refuse."""
    head = struct.pack(">4sBBBBII", b"PCCU", 2, 9, 0, 0, DIM, len(indices))
    return head + pack_codes(np.array(indices, np.uint32), 9) + np.ones(3, "<f4").tobytes()


@pytest.mark.parametrize("attack", sorted(HOSTILE_TOPK))
def test_a_malformed_top_k_payload_is_refused_as_malformed(attack):
    with pytest.raises(EnvelopeError) as exc:
        decode_update(HOSTILE_TOPK[attack](topk_payload()), TOPK, DIM, 0)
    assert exc.value.kind == "malformed"


def test_a_well_formed_top_k_payload_decodes_to_its_sparse_vector():
    row, bit = decode_update(topk_payload(), TOPK, DIM, 0)
    assert bit is None and np.flatnonzero(row).tolist() == [0, 7, 14] and row.sum() == 3


# ... and through the aggregator, where each refusal is counted alone

class Device:
    def __init__(self, device: int) -> None:
        from cryptography.hazmat.primitives import serialization
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        self.id = device
        self.keys = IdentityKeys.generate()
        self.sender = EnvelopeSender(self.keys, f"dev-{device}", state_path=None, ephemeral=True)
        self.enrolment = (device, self.keys.identity_public_key.public_bytes(*raw),
                          self.keys.agreement_public_key.public_bytes(*raw))


def aggregator(strategy=None, compression=Q8, devices=4, adaptive=False, dim=DIM):
    agg = Aggregator(strategy=strategy or FedAvg(), n_params=dim, weights_of=lambda d: 1.0,
                     compression=compression, adaptive_bit=adaptive)
    agg.assign(0, np.arange(devices))
    fleet = [Device(i) for i in range(devices)]
    assert agg.enrol([d.enrolment for d in fleet], gateway=0) == {}
    return agg, fleet


def test_the_aggregator_counts_each_hostile_payload_and_admits_the_honest_one():
    # Prepare: device 0 honest; devices 1-3 send a NaN scale, a tensor, a scale beyond float32
    agg, fleet = aggregator()
    honest = _good()
    wires = [fleet[0].sender.seal(agg.verified, 0, honest, content_type=CONTENT_BYTES),
             fleet[1].sender.seal(agg.verified, 0, HOSTILE["NaN scale"](honest),
                                  content_type=CONTENT_BYTES),
             fleet[2].sender.seal(agg.verified, 0, vector()),
             fleet[3].sender.seal(agg.verified, 0, HOSTILE["scale that could overflow float32"](
                 honest), content_type=CONTENT_BYTES)]

    # Execute
    got = agg.open({0: wires}, epoch=0, cohort=np.arange(4))

    # Assert
    assert got.device_ids.tolist() == [0]
    assert np.array_equal(got.updates[0], decoded(honest))
    assert got.refusals == {"malformed": 3}


def test_a_non_finite_top_k_value_is_refused_as_non_finite():
    agg, fleet = aggregator(compression=TOPK)
    payload = encode_topk(np.array([1, 2, 3]), np.array([1, np.nan, 2], np.float32), DIM)
    got = agg.open({0: [fleet[0].sender.seal(agg.verified, 0, payload,
                                             content_type=CONTENT_BYTES)]},
                   epoch=0, cohort=np.arange(4))
    assert got.device_ids.size == 0 and got.refusals == {"non_finite": 1}


def test_the_largest_accepted_scale_decodes_to_a_finite_update():
    # Prepare: the bound itself, with every code at an end of the grid (the worst case)
    bound = np.float32(3.4028235e38 / math.sqrt(320) * (1 - 2.0**-20))
    payload = _with(_good(), 12, struct.pack(">f", bound))[:16] + b"\xff" * 320

    # Execute
    row = decoded(payload)

    # Assert
    assert np.isfinite(row).all() and np.abs(row).max() > 1e36


def test_an_update_too_large_to_quantize_is_refused_on_the_device():
    with pytest.raises(ValueError, match="too large to quantize"):
        encode_quantized(np.full(DIM, 1e37, np.float32), Q8, 0, rng())


def test_a_missing_or_unexpected_adaptive_bit_is_refused():
    agg, fleet = aggregator(adaptive=True)
    wires = [fleet[0].sender.seal(agg.verified, 0, _good(), content_type=CONTENT_BYTES),
             fleet[1].sender.seal(agg.verified, 0, encode_quantized(
                 vector(), Q8, 0, rng(), unclipped=False), content_type=CONTENT_BYTES)]
    got = agg.open({0: wires}, epoch=0, cohort=np.arange(4))
    assert got.device_ids.tolist() == [1] and got.bits.tolist() == [0.0]
    assert got.refusals == {"malformed": 1}


# --- DP: the sensitivity after decoding ---------------------------------------------------------

def test_decoded_rows_are_clipped_again_so_one_device_moves_the_dp_sum_by_at_most_c():
    # Prepare: a device clips its update to C = 1 and sends it at 1 bit per coordinate: the
    # decoded row is far longer than C (each rotated coordinate is +-s)
    c1 = Compression("quantize", bits=1, seed=3)
    x = vector()
    x /= np.linalg.norm(x)
    payload = encode_quantized(x, c1, 0, rng())
    assert np.linalg.norm(decoded(payload, c1)) > 2.0
    strategy = DPFedAvg(inner=FedAvg(), clip=1.0, noise_multiplier=1.0, sample_rate=1.0,
                        population=4, accountant=Accountant(epsilon_budget=100.0, delta=1e-5))
    summed = []
    strategy._release = lambda params, total, cohort, count: summed.append(total) or params
    agg, fleet = aggregator(strategy, c1)

    # Execute
    opened = agg.open({0: [fleet[0].sender.seal(agg.verified, 0, payload,
                                                content_type=CONTENT_BYTES)]},
                      epoch=0, cohort=np.arange(4))
    agg.step(np.zeros(DIM, np.float32), opened.device_ids, opened.updates, opened.bits, 0)

    # Assert: what the noise is calibrated for (one device's share of the sum) is within C
    assert np.linalg.norm(summed[0]) <= 1.0 + 1e-6


# --- top-k with error feedback ------------------------------------------------------------------

def test_error_feedback_keeps_exactly_what_was_not_sent():
    # Prepare
    ef = ErrorFeedback()
    u1, u2 = vector(seed=1), vector(seed=2)

    # Execute: two rounds of one device, 30 coordinates each
    i1, v1 = ef.step(7, u1, 30)
    r1 = ef.residual(7)
    i2, v2 = ef.step(7, u2, 30)

    # Assert: round 1 sent the 30 largest, the residual is the rest; round 2 chose from
    # u2 + residual; what was sent plus what is held equals everything ever given
    assert set(i1) == set(np.argsort(-np.abs(u1))[:30])
    assert np.array_equal(r1[i1], np.zeros(30)) and np.array_equal(np.delete(r1, i1),
                                                                     np.delete(u1, i1))
    sent = np.zeros(DIM, np.float32)
    sent[i1] += v1
    sent[i2] += v2
    np.testing.assert_allclose(sent + ef.residual(7), u1 + u2, atol=1e-6)
    assert ef.residual(8) is None


def test_error_feedback_under_a_clip_sends_at_most_c_and_keeps_the_cut():
    ef = ErrorFeedback()
    u = vector() * 10
    idx, values = ef.step(0, u, 50, clip=1.0)
    assert np.linalg.norm(values) <= 1.0 + 1e-6
    np.testing.assert_allclose(ef.residual(0)[idx] + values, u[idx], rtol=1e-6)


def test_a_top_k_payload_is_indices_at_dims_bit_width_and_float32_values():
    payload = encode_topk(np.array([0, 5, 299]), np.ones(3, np.float32), DIM)
    assert len(payload) == 16 + math.ceil(3 * 9 / 8) + 12 == TOPK.payload_bytes(DIM)


# --- gateways: the same result for any split --------------------------------------------------

def _train_rounds(compression: Compression, splits: list[range], rounds: int = 4):
    """Final parameters of a few FedAvg rounds of a small city whose devices are hosted by one
    gateway per range of ``splits``."""
    from privcity.data import make_city
    from privcity.models import SoftmaxRegression
    data = make_city("air_quality", n_devices=24, samples_per_device=12, seed=1)
    model = SoftmaxRegression(n_features=data.X.shape[1], n_classes=data.n_classes)
    agg = Aggregator(strategy=FedAvg(), n_params=model.n_params,
                     weights_of=lambda d: float(data.sizes[d]), compression=compression)
    gateways = {}
    for g, part in enumerate(splits):
        agg.assign(g, np.arange(part.start, part.stop))
        gateways[g] = Gateway(model=model, data=data.subset(np.arange(part.start, part.stop)),
                              devices=np.arange(part.start, part.stop), seed=9,
                              aggregator_certificate=agg.verified, epochs=1, batch_size=4,
                              lr=0.5, compression=compression)
    params = model.init_params(0)
    for r in range(rounds):
        reports = {g: gw.run_round(params, r, sample_rate=0.5, dropout=0.0, clip=None,
                                   adaptive_bit=False, epoch=r) for g, gw in gateways.items()}
        for g, rep in reports.items():
            agg.enrol(rep.enrolments, gateway=g)
        opened = agg.open({g: rep.envelopes for g, rep in reports.items()}, epoch=r,
                          cohort=sampled_devices(9, r, np.arange(24), sample_rate=0.5))
        assert opened.refusals == {}
        params = agg.step(params, opened.device_ids, opened.updates, opened.bits, r)
    return params, sum(len(e) for rep in reports.values() for e in rep.envelopes)


@pytest.mark.parametrize("spec", ["q4", "topk:0.2"])
def test_one_gateway_or_three_give_bit_identical_models(spec):
    # Execute
    one, _ = _train_rounds(parse_compression(spec, seed=2), [range(0, 24)])
    three, _ = _train_rounds(parse_compression(spec, seed=2), [range(0, 5), range(5, 17),
                                                               range(17, 24)])
    plain, _ = _train_rounds(Compression(), [range(0, 24)])

    # Assert: the same bits; and compression did change the model (the codec ran)
    assert hashlib.sha256(one.tobytes()).digest() == hashlib.sha256(three.tobytes()).digest()
    assert not np.array_equal(one, plain)


# --- under secure aggregation -------------------------------------------------------------------

def secure_quantizer(bits: int = 8, total_weight: int = 1000, dim: int = DIM) -> SecureQuantizer:
    return SecureQuantizer(Compression("quantize", bits=bits, seed=6), dim, 1.0, total_weight)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


def test_the_secure_sum_of_quantized_updates_is_unbiased():
    # Prepare: three devices of weights 1, 2, 5; their inputs summed mod 2**32, 2,000 times
    q = secure_quantizer(bits=4, total_weight=8)
    xs = [unit(vector(seed=i)) * 0.5 for i in range(3)]
    weights = [1, 2, 5]
    truth = sum(w * x.astype(np.float64) for w, x in zip(weights, xs))
    trials = 2000

    # Execute
    got = []
    for t in range(trials):
        words = [q.encode(x, w, 2, rng(3 * t + i)).astype(q.word_dtype)
                 for i, (x, w) in enumerate(zip(xs, weights))]
        total, weight = q.decode(np.sum(words, axis=0, dtype=q.word_dtype), 2)
        got.append(total)
    got = np.stack(got)

    # Assert: the weights' sum is exact, and every coordinate's mean is within 5 standard errors
    assert weight == 8.0
    se = got.std(axis=0) / math.sqrt(trials)
    assert np.all(np.abs(got.mean(axis=0) - truth) <= 5 * se + 1e-9)


def test_the_ring_holds_the_worst_sum_without_wrapping():
    # Prepare: every unit of weight behind an update of norm C that the rotation puts whole on
    # one coordinate (the largest integer a device can send), all of the same sign
    q = secure_quantizer(bits=8, total_weight=2**12)
    from privcity.dp import ddg_rotation_key
    key = ddg_rotation_key(q.compression.rotation_seed(0))
    e0 = np.zeros(q.padded_dim)
    e0[0] = 1.0
    x = _core.ddg_unrotate(e0, q.padded_dim, key)
    q_full = SecureQuantizer(q.compression, q.padded_dim, 1.0, 2**12)  # dim = d': x is exact
    x = (x / np.linalg.norm(x)).astype(np.float32)

    # Execute: 2**12 devices of weight 1
    one = q_full.encode(x, 1, 0, rng())
    total = (one.astype(np.int64) * 2**12).astype(q_full.word_dtype)  # the sum, mod the word

    # Assert: the largest integer is within the bound and the sum decodes without wrapping
    assert one[0] >= q_full.max_integer - 1 and np.abs(one[:-1]).max() <= q_full.max_integer
    assert q_full.word_dtype == np.uint32 and q_full.ring_bits <= 32
    got, weight = q_full.decode(total, 0)
    assert weight == 2**12
    assert np.linalg.norm(got / 2**12 - x) < q_full.step * math.sqrt(q_full.padded_dim)


@pytest.mark.parametrize("bits, total_weight, word", [(8, 60_000, np.uint32),
                                                      (4, 60_000, np.uint32),
                                                      (16, 60_000, np.uint64)])
def test_the_ring_is_b_plus_log2_of_the_weights_plus_the_rotation_headroom(bits, total_weight,
                                                                           word):
    q = secure_quantizer(bits=bits, total_weight=total_weight, dim=7850)
    headroom = math.log2(math.sqrt(8192) / (2 * 4.0))  # the grid spans +-4 C / sqrt(d')
    assert q.ring_bits == pytest.approx(bits + headroom + math.log2(total_weight) + 1, abs=1.5)
    assert q.word_dtype == word


def test_a_sum_too_wide_for_64_bits_is_refused():
    with pytest.raises(ValueError, match="ring"):
        secure_quantizer(bits=16, total_weight=2**45, dim=7850)
