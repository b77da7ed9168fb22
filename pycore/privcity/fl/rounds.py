"""One federated round, split between the two sides that the simulator puts on MPI ranks:
:class:`Gateway` (hosts a contiguous block of devices: local training, clipping, sealing) and
:class:`Aggregator` (the city's server: enrols devices with the city CA, opens the envelopes,
aggregates with a :class:`~privcity.fl.strategy.Strategy`). Both work in one process on plain
Python values (lists of bytes), so the simulator only moves bytes between them.

Determinism: who is sampled, who drops out and each device's training seed depend only on
(seed, round, device id), never on which gateway hosts the device, and the aggregator orders
updates by device id before reducing: the model after each round is the same for any split of
the devices into gateways.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from ..crypto import EnvelopeReceiver, EnvelopeSender
from ..crypto.envelope import (CONTENT_BYTES, CONTENT_TENSOR, OpenedEnvelope, decode_tensor,
                               encode_tensor, parse_header, seal_each)
from ..crypto.pki import CertificateAuthority, IdentityKeys, VerifiedCertificate
from ..data._hash import mix
from ..dp import clip_l2_rows
from ..errors import EnvelopeError, PrivcityError, SecureAggregationError
from .admission import (DeviceRegistry, OpenedRound, as_device_ids, items_of, member,
                        refusal_kind)
from .compress import Compression, ErrorFeedback, decode_update, encode_quantized, encode_topk
from .compress_secure import SecureQuantizer
from .strategy import Strategy

__all__ = ["Aggregator", "Gateway", "GatewayReport", "OpenedRound", "device_uniforms",
           "fixed_cohort_rate", "round_cohort", "sampled_devices", "training_seeds"]

AGGREGATOR_ID = "aggregator"

#: Fixed point of the updates summed under secure aggregation: value * 2**bits, rounded to the
#: nearest integer, in uint64 (two's complement); bits is at least this, more for small clips
#: (see :func:`secure_scale_bits`).
SECURE_SCALE_BITS = 20


#: Neighbours of each device in a secure-aggregation round when the configuration leaves it to
#: the round: at least SECURE_MIN_NEIGHBORS (a device's input is exposed only if all its
#: neighbours collude with the server), more as the dropout needs (aggregate.neighbors_for),
#: at most SECURE_MAX_NEIGHBORS (the cost grows with the group: past it a high dropout fails
#: some rounds, whose updates are counted as lost).
SECURE_MIN_NEIGHBORS, SECURE_MAX_NEIGHBORS = 16, 64


def secure_neighbors(cohort: int, dropout: float) -> int:
    """Neighbours for a round of `cohort` devices at this dropout (see SECURE_MIN_NEIGHBORS),
    with the threshold of :func:`secure_threshold`."""
    from ..aggregate import neighbors_for
    need = neighbors_for(cohort, dropout, threshold=secure_threshold)
    k = cohort - 1 if need is None else need
    return min(max(k, SECURE_MIN_NEIGHBORS), SECURE_MAX_NEIGHBORS)


def secure_threshold(group: int) -> int:
    """The simulator's SecAgg threshold for a group of g: about two thirds
    (aggregate.collusion_threshold), so that two survivor lists cannot both pass the consistency
    step unless 2t - g devices collude with the gateway (a majority lets one colluder do it).
    The gateway chooses the roster and can steer colluders into one group, so count them over
    the whole block: it tolerates 2t - g - 1 of them (6 with groups of 17)."""
    from ..aggregate import collusion_threshold
    return collusion_threshold(group)


def secure_failure_chance(cohort: int, dropout: float, neighbors: int = 0) -> float:
    """The chance that a block round of ``cohort`` devices fails when each drops out with
    probability ``dropout`` after sharing keys: some group keeps fewer survivors than its
    threshold (:func:`secure_threshold`), union-bounded over the groups. ``neighbors`` 0: as
    the simulator picks them (:func:`secure_neighbors`)."""
    k = neighbors or secure_neighbors(cohort, dropout)
    g = secure_group(cohort, k)
    t, keep = secure_threshold(g), 1.0 - dropout
    below = sum(math.comb(g, i) * keep**i * dropout**(g - i) for i in range(t))
    return min(1.0, (cohort if g < cohort else 1) * below)


def secure_group(members: int, neighbors: int) -> int:
    """Size of each device's group in a block round of `members` devices: k + 1 (k rounded up
    to even), or everyone when that is no smaller."""
    return members if neighbors >= members - 1 else 2 * ((neighbors + 1) // 2) + 1


def secure_scale_bits(clip: float | None, n_params: int) -> int:
    """Fixed-point bits for a round: 20, or more when the clip norm is small, so that rounding
    moves an update by at most 2**-21 of the clip (0.5 sqrt(P) 2**-bits <= C 2**-21)."""
    if clip is None:
        return SECURE_SCALE_BITS
    need = math.ceil(math.log2(math.sqrt(n_params) / clip)) + SECURE_SCALE_BITS
    return max(SECURE_SCALE_BITS, need)


def secure_value_limit(population: int) -> float:
    """Largest |value * 2**bits| a device may put in the sum: the sum of every device's stays
    within int64 (2**62 / population, at most 2**52 so that float64 holds it exactly)."""
    return float(min(2**52, 2**62 // max(1, population)))


def _hash(seed: int, round_index: int, purpose: int, devices: np.ndarray) -> np.ndarray:
    """64 bits per device from (seed, round, purpose, device id): the city's SplitMix64 mix."""
    base = mix(np.array([(seed * 0x9E3779B97F4A7C15 + round_index * 0x632BE59BD9B4E019
                          + purpose * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF], np.uint64))
    return mix(base ^ mix(devices.astype(np.uint64) + np.uint64(1)))


def device_uniforms(seed: int, round_index: int, purpose: int, devices: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1) (53 bits), one per device id, from (seed, round, purpose, device)
    only. Simulation randomness (who is sampled, who drops out), not a secret."""
    return (_hash(seed, round_index, purpose, devices) >> np.uint64(11)).astype(np.float64) \
        * (1.0 / 2**53)


def training_seeds(seed: int, round_index: int, devices: np.ndarray) -> list[int]:
    """Seed of each device's local training (shuffling) in a round."""
    return [int(s) for s in _hash(seed, round_index, 3, devices) >> np.uint64(1)]


def round_cohort(seed: int, round_index: int, devices: np.ndarray, *, sample_rate: float,
                 dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """(sampled, reporting) boolean masks over ``devices``: Poisson sampling at rate q, then
    each sampled device drops out with probability ``dropout``."""
    sampled = device_uniforms(seed, round_index, 1, devices) < sample_rate
    stays = device_uniforms(seed, round_index, 2, devices) >= dropout
    return sampled, sampled & stays


def sampled_devices(seed: int, round_index: int, devices: np.ndarray, *,
                    sample_rate: float) -> np.ndarray:
    """The ids among ``devices`` that Poisson sampling puts in a round: the server's cohort,
    the same decision as :func:`round_cohort`'s ``sampled``."""
    devices = np.asarray(devices, dtype=np.int64)
    return devices[device_uniforms(seed, round_index, 1, devices) < sample_rate]


def fixed_cohort_rate(seed: int, round_index: int, population: int, clients: int) -> float:
    """The rate that makes :func:`round_cohort` and :func:`sampled_devices` take exactly
    ``clients`` of devices ``0 .. population - 1`` in this round (sampling without replacement,
    uniform over the subsets): just above the ``clients``-th smallest of the devices' sampling
    uniforms. Every gateway then keeps its own devices' share of the cohort with the rule it
    uses for Poisson sampling, and the cohort does not depend on how devices are spread."""
    if clients >= population:
        return 1.0
    u = device_uniforms(seed, round_index, 1, np.arange(population, dtype=np.int64))
    kth = float(np.partition(u, clients - 1)[clients - 1])
    return float(np.nextafter(kth, 2.0))  # u < rate for the k smallest (53-bit values: no ties)


@dataclass
class GatewayReport:
    """What a gateway sends to the aggregator after a round (plain bytes and numbers, so it
    can travel between MPI ranks)."""

    envelopes: list[bytes] = field(default_factory=list)
    enrolments: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    sampled: int = 0
    train_seconds: list[float] = field(default_factory=list)       # per reporting device
    privacy_seconds: list[float] = field(default_factory=list)     # clip + seal, per device
    diverged: int = 0  # devices whose local training gave a non-finite update (not sent)
    provision_seconds: float = 0.0  # new devices' keys and senders, made when first sampled
    # Secure aggregation (msg["secure"]): each block round that completed, as (block, the
    # modular sum of its survivors' inputs, the survivors): uint64 fixed point without DP
    # (weight * update * 2**scale_bits, then the weight, then the unclipped bit with adaptive
    # clipping), the ring words of privcity.dp.ddg_encode with distributed DP; how many
    # devices the sums cover, the bytes the devices sent (failed rounds included), and devices
    # whose inputs were lost because their block's round could not complete.
    secure_blocks: list[tuple[int, np.ndarray, list[int]]] = field(default_factory=list)
    secure_count: int = 0
    secure_bytes: int = 0
    secure_lost: int = 0
    # ... and what the block rounds' servers refused, by kind (a sampled device the city CA
    # did not certify counts as "uncertified" and takes no part)
    secure_refusals: Counter[str] = field(default_factory=Counter)


def _enrolment(device: int, keys: IdentityKeys) -> tuple[int, bytes, bytes]:
    """What a gateway sends the aggregator to enrol a device: its id and raw public keys."""
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    return (device, keys.identity_public_key.public_bytes(*raw),
            keys.agreement_public_key.public_bytes(*raw))


class Gateway:
    """Hosts devices ``devices`` (global ids) with their local data, and runs their side of
    each round. Device identities (Ed25519 + X25519 keys) are created when a device is first
    sampled and sent to the aggregator for enrolment; their counters live in memory, since the
    keys die with the gateway (``ephemeral=True``).

    Under secure aggregation the devices sign their SecAgg messages with their certificates:
    before each round :meth:`enrolments` gives the keys of sampled devices that have none, and
    :meth:`take_certificates` stores what the city CA (``trust_anchor``, with ``crl``) issued.
    The devices of this gateway check each other's certificates and signatures through one
    cache kept across rounds (a simulation shortcut: each certificate and signature is checked
    once in this process, not once per device).

    ``compression`` (:mod:`privcity.fl.compress`): the codec of the sealed updates, the same as
    the aggregator's; with top-k the gateway keeps each device's error-feedback residual.
    ``threads``: training threads (None: as many as the CPUs this process may use; a simulator
    running several gateways on one machine gives each its share)."""

    def __init__(self, *, model: Any, data: Any, devices: np.ndarray, seed: int,
                 aggregator_certificate: VerifiedCertificate, epochs: int, batch_size: int,
                 lr: float, trust_anchor: x509.Certificate | None = None,
                 crl: x509.CertificateRevocationList | None = None,
                 compression: Compression | None = None, threads: int | None = None) -> None:
        self.model = model
        self.data = data
        self.devices = np.asarray(devices, dtype=np.int64)
        self.seed = seed
        self.aggregator = aggregator_certificate
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.trust_anchor, self.crl = trust_anchor, crl
        self._keys: dict[int, IdentityKeys] = {}
        self._senders: dict[int, EnvelopeSender] = {}
        self._certificates: dict[int, bytes] = {}
        self._verifier: Any = None
        self.compression = compression if compression is not None else Compression()
        self.feedback = ErrorFeedback()  # top-k: what each device has not sent yet
        self.threads = threads

    def _identity(self, device: int, enrolments: list[tuple[int, bytes, bytes]]) -> IdentityKeys:
        """The device's keys, made (and their public halves added to ``enrolments``) the first
        time it is asked for."""
        keys = self._keys.get(device)
        if keys is None:
            keys = self._keys[device] = IdentityKeys.generate()
            enrolments.append(_enrolment(device, keys))
        return keys

    def _sender(self, device: int, enrolments: list[tuple[int, bytes, bytes]]) -> EnvelopeSender:
        tx = self._senders.get(device)
        if tx is None:
            keys = self._identity(device, enrolments)
            tx = self._senders[device] = EnvelopeSender(keys, f"dev-{device}", state_path=None,
                                                        ephemeral=True)
        return tx

    def enrolments(self, round_index: int, *, sample_rate: float) -> list[tuple[int, bytes, bytes]]:
        """Public keys (device, Ed25519, X25519) of this gateway's devices sampled into the round
        that hold no certificate yet, for the aggregator to certify before the round starts."""
        sampled, _ = round_cohort(self.seed, round_index, self.devices, sample_rate=sample_rate,
                                  dropout=0.0)
        out: list[tuple[int, bytes, bytes]] = []
        for device in self.devices[sampled].tolist():
            if device in self._certificates:
                continue
            if device in self._keys:  # sent before, not certified (yet): ask again
                out.append(_enrolment(device, self._keys[device]))
            else:
                self._identity(device, out)
        return out

    def _device_verifier(self) -> Any:
        """The certificate and signature cache this gateway's devices share (see the class)."""
        if self._verifier is None:
            from ..aggregate import DeviceVerifier
            if self.trust_anchor is None or self.crl is None:
                raise ValueError("secure aggregation needs the gateway's trust_anchor and crl")
            self._verifier = DeviceVerifier(trust_anchor=self.trust_anchor, crl=self.crl)
        return self._verifier

    def take_certificates(self, certificates: Mapping[int, bytes]) -> None:
        """Store the certificates (DER) the city CA issued to this gateway's devices."""
        for device, der in certificates.items():
            if device in self._keys:
                self._certificates[int(device)] = bytes(der)

    def run_round(self, params: np.ndarray, round_index: int, *, sample_rate: float,
                  dropout: float, clip: float | None, adaptive_bit: bool, epoch: int,
                  secure: dict[str, Any] | None = None) -> GatewayReport:
        """Train, clip and seal the updates of this gateway's devices that report this round.

        secure: instead of sealing each update, the devices sum their updates under secure
        aggregation, one SecAgg+ round per block of devices (device d in block
        d * "blocks" // "population": fixed blocks of equal size, so the sums are the same
        however the devices are spread over gateways), this gateway the server; the report carries only the sum of the blocks' sums. Keys: "weighted" (each
        update counts times its number of records, for FedAvg, or once, for DP-FedAvg),
        "blocks", "population", "neighbors" (0: chosen per block from its cohort and "dropout"),
        "scale_bits" and "limit" (the fixed point). Sampled devices that drop out take part in
        the key exchange and then send no input: their masks are recovered."""
        from ..models import train_many
        sampled, reporting = round_cohort(self.seed, round_index, self.devices,
                                          sample_rate=sample_rate, dropout=dropout)
        report = GatewayReport(sampled=int(sampled.sum()))
        # A device without records (a CSV split to more devices than rows) has nothing to train.
        sizes = np.diff(np.asarray(self.data.offsets))
        local = np.flatnonzero(reporting & (sizes > 0))
        if secure is not None:
            cohort = self.devices[np.flatnonzero(sampled & (sizes > 0))]
        if local.size == 0:
            return report
        ids = self.devices[local]
        seeds = training_seeds(self.seed, round_index, ids)
        t0 = time.process_time()
        # A learning rate too high makes SGD overflow; such devices are detected below and
        # left out (reported as diverged), so numpy's overflow warnings add nothing.
        with np.errstate(over="ignore", invalid="ignore"):
            updates = train_many(self.model, params, self.data.X, self.data.y,
                                 self.data.offsets, local, epochs=self.epochs,
                                 batch_size=self.batch_size, lr=self.lr, seeds=seeds,
                                 threads=self.threads)
        per_device_train = (time.process_time() - t0) / local.size
        finite = np.isfinite(updates).all(axis=1)
        report.diverged = int(local.size - finite.sum())
        if secure is not None and secure.get("ddg") is not None:
            # Under distributed DP a diverged device still sends a zero update with its noise
            # share: whether it trained well (its data) must not decide whether its share is in
            # the sum. (report.diverged is the simulation's diagnostic, seen by no server.)
            updates[~finite] = 0.0
            finite[:] = True
        rows, ids = updates[finite], ids[finite]
        # Clipping all rows in one call (the kernel computes each norm once); each device's
        # pipeline time is its share of that plus its own sealing.
        t0 = time.perf_counter()
        ddg = secure.get("ddg") if secure is not None else None
        if clip is not None and ddg is None:  # (the distributed DP encoder clips by itself)
            # Under secure aggregation the sum is of updates rounded to 2**-scale_bits: clipping
            # a little below C (at most 2**-21 C) keeps each rounded update within C as well.
            c = clip if secure is None else \
                clip - 0.5 * np.sqrt(rows.shape[1]) / 2.0**secure["scale_bits"]
            rows, norms = clip_l2_rows(rows, c)
        else:
            norms = np.zeros(len(rows))
        clip_share = (time.perf_counter() - t0) / max(len(rows), 1)
        if secure is not None:
            weights = sizes[local][finite].astype(np.float64) if secure["weighted"] \
                else np.ones(len(rows))
            self._secure_sum(report, rows, norms, ids, weights, cohort, clip, adaptive_bit,
                             secure, round_index, per_device_train, clip_share)
            return report
        # Provisioning a new device's identity (key generation) is not part of its round.
        t1 = time.perf_counter()
        senders = [self._sender(int(device), report.enrolments) for device in ids]
        report.provision_seconds += time.perf_counter() - t1
        bits = norms <= clip if adaptive_bit else None
        if self.compression.active:
            for row, device, bit, tx in zip(rows, ids.tolist(), bits if adaptive_bit
                                             else [None] * len(rows), senders):
                t1 = time.perf_counter()
                try:
                    payload = self._compressed(row, device, None if bit is None else bool(bit),
                                               clip, epoch)
                except ValueError:  # too large to quantize (float32 overflow): as diverged
                    report.diverged += 1
                    continue
                report.envelopes.append(tx.seal(self.aggregator, epoch, payload,
                                                content_type=CONTENT_BYTES))
                report.train_seconds.append(per_device_train)
                report.privacy_seconds.append(clip_share + time.perf_counter() - t1)
            return report
        # Every device seals its own update under its own key; the simulation seals them all
        # in one native call, and each device's sealing time is its share of that call.
        t1 = time.perf_counter()
        payloads = rows if bits is None else np.hstack(
            [rows, bits.astype(rows.dtype)[:, None]])
        report.envelopes.extend(seal_each(senders, self.aggregator, epoch, payloads))
        seal_share = (time.perf_counter() - t1) / max(len(rows), 1)
        report.train_seconds.extend([per_device_train] * len(rows))
        report.privacy_seconds.extend([clip_share + seal_share] * len(rows))
        return report

    def _compressed(self, row: np.ndarray, device: int, bit: bool | None, clip: float | None,
                    epoch: int) -> bytes:
        """The device's compressed payload (privcity.fl.compress): top-k of its update plus its
        residual (clipped again to ``clip`` under DP), or its update quantized with rounding
        drawn from its own stream of the epoch (seeded: a simulation)."""
        c = self.compression
        if c.kind == "topk":
            idx, values = self.feedback.step(device, row, c.k(row.size), clip)
            return encode_topk(idx, values, row.size, unclipped=bit)
        from ..noise import SecureRNG
        key = hashlib.sha256(b"privcity-simulate compress rounding|" + np.array(
            [self.seed, epoch], np.int64).tobytes()).digest()
        return encode_quantized(np.ascontiguousarray(row, dtype=np.float32), c, epoch,
                                SecureRNG(key, stream=device), unclipped=bit)

    def _secure_sum(self, report: GatewayReport, rows: np.ndarray, norms: np.ndarray,
                    ids: np.ndarray, weights: np.ndarray, cohort: np.ndarray,
                    clip: float | None, adaptive_bit: bool, secure: dict[str, Any],
                    round_index: int, per_device_train: float, clip_share: float) -> None:
        t0 = time.perf_counter()
        ddg, quantizer = secure.get("ddg"), secure.get("quantizer")
        if ddg is not None:
            sending = self._ddg_inputs(rows, ids, secure, round_index)
            dtype, width = ddg.word_dtype, ddg.padded_dim
        elif quantizer is not None:
            sending = self._quantized_inputs(rows, ids, weights, quantizer, round_index)
            dtype, width = quantizer.word_dtype, quantizer.padded_dim + 1
        else:
            sending = self._fixed_point_inputs(report, rows, norms, ids, weights, clip,
                                               adaptive_bit, secure)
            dtype, width = np.dtype(np.uint64), rows.shape[1] + 1 + int(adaptive_bit)
        # Block of device d: d * blocks // population (blocks of equal size, to one device).
        blocks = cohort * int(secure["blocks"]) // int(secure["population"])
        for b in np.unique(blocks):  # one round per block, in block order
            self._block_round(report, int(b), cohort[blocks == b], sending, width, dtype,
                              secure, round_index)
        n_sent = len(sending)
        seconds = (time.perf_counter() - t0) / max(n_sent, 1)
        report.train_seconds.extend([per_device_train] * n_sent)
        report.privacy_seconds.extend([clip_share + seconds] * n_sent)

    def _fixed_point_inputs(self, report: GatewayReport, rows: np.ndarray, norms: np.ndarray,
                            ids: np.ndarray, weights: np.ndarray, clip: float | None,
                            adaptive_bit: bool, secure: dict[str, Any]) -> dict[int, np.ndarray]:
        """Each device's input without DP: weight * update * 2**scale_bits rounded, the weight,
        and the unclipped bit with adaptive clipping (int64, summed mod 2**64)."""
        scaled = rows.astype(np.float64) * weights[:, None] * 2.0**secure["scale_bits"]
        fits = np.all(np.abs(scaled) < secure["limit"], axis=1)
        report.diverged += int(np.count_nonzero(~fits))
        columns = [np.rint(scaled).astype(np.int64), weights.astype(np.int64)[:, None]]
        if adaptive_bit:
            columns.append((norms <= clip).astype(np.int64)[:, None])
        quantized = np.hstack(columns)
        return {int(d): q for d, q, ok in zip(ids, quantized, fits) if ok}

    def _quantized_inputs(self, rows: np.ndarray, ids: np.ndarray, weights: np.ndarray,
                          quantizer: SecureQuantizer,
                          round_index: int) -> dict[int, np.ndarray]:
        """Each device's input under a "q<b>" codec (privcity.fl.compress_secure.SecureQuantizer):
        its update clipped to the codec's clip, rotated, rounded at random onto the shared grid
        (its own seeded stream: a simulation), times its weight, then its weight."""
        from ..noise import SecureRNG
        rows, _ = clip_l2_rows(rows, quantizer.clip)
        key = hashlib.sha256(b"privcity-simulate secure rounding|" + np.array(
            [self.seed, round_index], np.int64).tobytes()).digest()
        return {int(d): quantizer.encode(np.ascontiguousarray(row, dtype=np.float32), int(w),
                                         round_index, SecureRNG(key, stream=int(d)))
                for d, row, w in zip(ids, rows, weights)}

    def _ddg_inputs(self, rows: np.ndarray, ids: np.ndarray, secure: dict[str, Any],
                    round_index: int) -> dict[int, np.ndarray]:
        """Each device's distributed-DP words (privcity.dp.ddg_encode: clipped, rotated with
        the round's public seed, rounded, its own discrete Gaussian share, in the ring)."""
        from ..dp import ddg_encode
        from ..noise import SecureRNG
        params, seed = secure["ddg"], secure["rotation_seed"]
        # Seeded noise, one stream per device and round (a simulation: the run says so).
        key = hashlib.sha256(b"privcity-simulate ddg noise|" + np.array(
            [self.seed, round_index], np.int64).tobytes()).digest()
        return {int(d): ddg_encode(np.ascontiguousarray(row, dtype=np.float32), params, seed,
                                   SecureRNG(key, stream=int(d)))[0]
                for d, row in zip(ids, rows)}

    def _block_round(self, report: GatewayReport, block: int, cohort: np.ndarray,
                     sending: dict[int, np.ndarray], width: int, dtype: np.dtype,
                     secure: dict[str, Any], round_index: int) -> None:
        """One block's SecAgg+ round, this gateway its server: its sampled devices that hold a
        certificate take part; those that send nothing drop out after sharing keys."""
        from ..aggregate import secure_sum
        # A device takes part only with the certificate the city CA issued it.
        members = [int(d) for d in cohort if int(d) in self._certificates]
        report.secure_refusals["uncertified"] += len(cohort) - len(members)
        if len(members) < 2:  # one device's "sum" is its input: nothing can hide it
            report.secure_lost += sum(1 for d in members if d in sending)
            return
        inputs = {d: sending.get(d, np.zeros(width, dtype)) for d in members}
        silent = [d for d in members if d not in sending]  # dropped after sharing keys
        k = secure["neighbors"] or secure_neighbors(len(members), secure["dropout"])
        ddg = secure.get("ddg")
        session = (b"privcity-sim fl-dp|" if ddg is not None else b"privcity-sim fl|") \
            + np.array([self.seed, round_index, block], np.int64).tobytes()
        try:
            result = secure_sum(
                inputs, neighbors=k, threshold=secure_threshold(secure_group(len(members), k)),
                dtype=dtype, drop_before_input=silent, session=session, on_failure="report",
                min_survivors=None if ddg is None else secure["min_survivors"],
                identities={d: (self._keys[d].signing_key, self._certificates[d])
                            for d in members},
                verifier=self._device_verifier(), authenticated=True)
        except SecureAggregationError as exc:  # whatever one device did, the run goes on
            report.secure_refusals[f"round_{exc.kind}"] += 1
            report.secure_lost += len(members) - len(silent)
            return
        report.secure_refusals.update(result.refused)
        report.secure_bytes += int(sum(result.bytes_up.values()))
        if result.total is None:  # too few survivors in some group: nothing is revealed
            report.secure_lost += len(members) - len(silent)
            return
        report.secure_blocks.append((block, result.total, list(result.survivors)))
        report.secure_count += len(result.survivors)


class Aggregator:
    """The city's server: a CA that certifies devices, an identity of its own, a receiver
    that opens device envelopes, and a strategy that turns updates into the next model.

    One device, one vote (see :mod:`privcity.fl.admission`): the city tells the aggregator
    which gateway hosts which devices (:meth:`assign`); a gateway may enrol only its own
    devices, once, and relay only their envelopes; :meth:`open` admits at most one update per
    device per round, from devices of the round's cohort (the server's sample, never a
    gateway's claim) sealed for the round's epoch. Every refusal is counted by kind; no
    enrolment request or envelope, however crafted, makes :meth:`enrol` or :meth:`open` raise.
    """

    def __init__(self, *, strategy: Strategy, n_params: int, weights_of: Any,
                 adaptive_bit: bool = False, compression: Compression | None = None) -> None:
        self.strategy = strategy
        self.n_params = n_params
        self.weights_of = weights_of  # device id -> weight (number of examples)
        self.adaptive_bit = adaptive_bit
        # The codec every device's update must arrive in (privcity.fl.compress), or none.
        self.compression = compression if compression is not None else Compression()
        now = dt.datetime.now(dt.timezone.utc)
        self.ca = CertificateAuthority.create("privcity-city-ca",
                                              not_before=now - dt.timedelta(days=1))
        self.keys = IdentityKeys.generate()
        self.certificate = self.ca.issue(AGGREGATOR_ID, "aggregator",
                                         identity_key=self.keys.identity_public_key,
                                         agreement_key=self.keys.agreement_public_key)
        self.crl = self.ca.publish_crl(next_update=now + dt.timedelta(days=30))
        self.receiver = EnvelopeReceiver(self.keys, AGGREGATOR_ID,
                                         trust_anchor=self.ca.certificate, crl=self.crl)
        from ..crypto.pki import verify_certificate
        self.verified = verify_certificate(self.certificate, trust_anchor=self.ca.certificate,
                                           crl=self.crl)
        self.registry = DeviceRegistry()
        self._epoch = -1  # the latest epoch opened
        self._voted: set[int] = set()  # devices counted in that epoch

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def assign(self, gateway: int, devices: Any) -> None:
        """Record that ``gateway`` hosts ``devices`` (the city's provisioning, not a gateway's
        word): only it may enrol them and relay their envelopes. ValueError if a device already
        has a gateway or the gateway its devices."""
        self.registry.assign(gateway, devices)

    def enrol(self, enrolments: Sequence[Any], *, gateway: int,
              issued: dict[int, bytes] | None = None) -> dict[str, int]:
        """Certify devices whose public keys (device id, 32-byte Ed25519, 32-byte X25519)
        ``gateway`` relayed, and admit them as senders; returns the refusals by kind
        (:data:`~privcity.fl.admission.ENROL_REFUSALS`). A device enrolled again by its gateway
        with the same keys is left as it is. ``issued``: filled with device -> certificate
        (DER) of each device certified now, for devices that need theirs (secure
        aggregation signs with it)."""
        refusals: Counter[str] = Counter()
        for item in items_of(enrolments, gateway, refusals):
            kind = self._enrol_one(item, gateway, issued)
            if kind:
                refusals[kind] += 1
        return dict(sorted(refusals.items()))

    def _enrol_one(self, item: Any, gateway: int,
                   issued: dict[int, bytes] | None = None) -> str | None:
        try:
            device, ident, agree = item
            ok = not isinstance(device, bool) and isinstance(device, (int, np.integer)) \
                and -2**63 <= device < 2**63 and isinstance(ident, bytes) \
                and isinstance(agree, bytes)
        except (TypeError, ValueError):
            ok = False
        if not ok or len(ident) != 32 or len(agree) != 32:
            return "enrol_malformed"
        device = int(device)
        kind = self.registry.check(gateway, device, ident + agree)
        if kind is not None:
            return kind or None
        sender_id = f"dev-{device}"
        try:
            # The aggregator runs the city CA: what it has just signed needs no second
            # signature check (the window, the CRL and the key agreement are still checked).
            verified = self.ca.issue_verified(
                sender_id, "device",
                identity_key=ed25519.Ed25519PublicKey.from_public_bytes(ident),
                agreement_key=x25519.X25519PublicKey.from_public_bytes(agree))
            self.receiver.add_sender(verified)  # ValueError: no key can be agreed with it
        except (ValueError, PrivcityError):
            return "enrol_malformed"
        self.registry.bind(gateway, device, ident + agree, sender_id)
        if issued is not None:
            issued[device] = verified.certificate.public_bytes(serialization.Encoding.DER)
        return None

    def open(self, relayed: Mapping[int, Sequence[Any]], *, epoch: int,
             cohort: Any) -> OpenedRound:
        """Open the round's envelopes, ``relayed[g]`` those gateway ``g`` relayed; ``cohort``
        holds the ids of the devices the server sampled into the round of ``epoch``.

        Admits at most one update per device (the authentic, well-formed one with the lowest
        counter, i.e. the first it sealed: the same whatever the order of arrival or the number
        of ranks); every other envelope is refused alone and counted by kind. A device counted
        by an earlier call for the same epoch is refused as a duplicate. Epochs must not go
        back (ValueError): a closed round takes no more votes.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < self._epoch:
            raise ValueError(f"epoch must be an int >= {max(self._epoch, 0)} (the latest "
                             f"opened), not {epoch!r}")
        if epoch != self._epoch:
            self._epoch, self._voted = epoch, set()
        sampled = as_device_ids(cohort, "cohort")
        refusals: Counter[str] = Counter()
        envelopes, devices = self._precheck(relayed, epoch, sampled, refusals)
        opened, errors = self.receiver.open_many(envelopes)
        for exc in errors.values():
            refusals[refusal_kind(exc)] += 1
        best: dict[int, tuple[int, np.ndarray]] = {}  # device -> (counter, update)
        for env, device in zip(opened, devices):
            if env is None:
                continue
            row, kind = self._update_of(env)
            if kind is None and device in self._voted:
                kind = "duplicate"
            if kind is not None:
                refusals[kind] += 1
                continue
            held = best.get(device)
            if held is not None:
                refusals["duplicate"] += 1
                if held[0] < env.counter:
                    continue
            best[device] = (env.counter, row)
        self._voted.update(best)
        return self._opened_round(best, refusals)

    def _precheck(self, relayed: Mapping[int, Sequence[Any]], epoch: int, sampled: np.ndarray,
                  refusals: Counter[str]) -> tuple[list[Any], list[int]]:
        """The envelopes (and their devices) that pass the checks on the header, before any
        decryption; the others are counted in ``refusals``."""
        envelopes: list[Any] = []
        devices: list[int] = []
        for gateway in sorted(relayed):
            for env in items_of(relayed[gateway], gateway, refusals):
                try:
                    header = parse_header(env)
                except EnvelopeError as exc:
                    refusals[exc.kind] += 1
                    continue
                except TypeError:  # not bytes-like
                    refusals["malformed"] += 1
                    continue
                device = self.registry.device_of(header.sender_id)
                kind = ("unknown_device" if device is None
                        else "wrong_gateway" if self.registry.home(device) != gateway
                        else "wrong_epoch" if header.epoch != epoch else None)
                if kind is not None:
                    refusals[kind] += 1
                    continue
                envelopes.append(env)
                devices.append(device)
        chosen = member(sampled, np.asarray(devices, np.int64))
        refusals["not_sampled"] += int(np.count_nonzero(~chosen))
        keep = np.flatnonzero(chosen).tolist()
        return [envelopes[i] for i in keep], [devices[i] for i in keep]

    def _update_of(self, env: OpenedEnvelope) -> tuple[np.ndarray | None, str | None]:
        """(the update as float32, None), or (None, the refusal kind) for an authentic payload
        that is not a float tensor of the model's width (with compression: not exactly the
        run's codec), or holds NaN or Inf once in float32."""
        if self.compression.active:
            return self._compressed_update_of(env)
        width = self.n_params + (1 if self.adaptive_bit else 0)
        if env.content_type != CONTENT_TENSOR:
            return None, "malformed"
        payload = env.payload
        if len(payload) == 10 + 4 * width and payload.startswith(self._float32_head(width)):
            # The float32 vector every honest device sends: read in place (no copy).
            row = np.frombuffer(payload, "<f4", offset=10)
            return (row, None) if np.isfinite(row).all() else (None, "non_finite")
        try:
            value = decode_tensor(payload)
        except EnvelopeError:
            return None, "malformed"
        if value.shape != (width,) or value.dtype.kind != "f":
            return None, "malformed"
        with np.errstate(over="ignore"):  # a float64 beyond float32's range: refused below
            row = value.astype(np.float32, copy=False)
        if not np.isfinite(row).all():
            return None, "non_finite"
        return row, None

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _float32_head(width: int) -> bytes:
        """The tensor codec's head of a float32 vector of ``width`` (10 bytes)."""
        return encode_tensor(np.zeros(width, np.float32))[:10]

    def _compressed_update_of(self, env: OpenedEnvelope) -> tuple[np.ndarray | None, str | None]:
        """:meth:`_update_of` for a run with compression: the decoded row (with its
        adaptive-clipping bit appended when the run has one)."""
        if env.content_type != CONTENT_BYTES:
            return None, "malformed"
        try:
            row, bit = decode_update(env.payload, self.compression, self.n_params, env.epoch)
        except EnvelopeError:
            return None, "malformed"
        if (bit is None) == self.adaptive_bit:  # the bit missing, or one the run does not use
            return None, "malformed"
        if not np.isfinite(row).all():
            return None, "non_finite"
        return (row if bit is None else np.append(row, np.float32(bit))), None

    def _opened_round(self, best: dict[int, tuple[int, np.ndarray]],
                      refusals: Counter[str]) -> OpenedRound:
        width = self.n_params + (1 if self.adaptive_bit else 0)
        device_ids = np.asarray(sorted(best), dtype=np.int64)
        if best:
            mat = np.stack([best[int(d)][1] for d in device_ids])
        else:
            mat = np.zeros((0, width), np.float32)
        bits = mat[:, self.n_params] if self.adaptive_bit else np.zeros(0, np.float32)
        return OpenedRound(device_ids, np.ascontiguousarray(mat[:, :self.n_params]), bits,
                           {k: v for k, v in sorted(refusals.items()) if v})

    def admit_blocks(self, relayed: Mapping[int, Sequence[Any]], *, blocks: int,
                     population: int, cohort: Any, width: int,
                     dtype: Any) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], dict[str, int]]:
        """The block sums of a secure round that may count: ``relayed[g]`` holds the (block,
        modular sum, survivors) of the block rounds gateway ``g`` ran. One vote per device here
        too: a block counts once, only from the gateway that hosts all its devices, with a sum
        of the round's width and dtype, and survivors that are distinct devices of the block
        that the server sampled (``cohort``). Returns the admitted blocks in block order, the
        survivors as sorted arrays, and the refusals by kind; never raises on what a gateway
        sent."""
        starts = -(-np.arange(blocks + 1, dtype=np.int64) * population // blocks)
        sampled = as_device_ids(cohort, "cohort")
        dtype = np.dtype(dtype)
        admitted: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        refusals: Counter[str] = Counter()
        for gateway in sorted(relayed):
            for entry in items_of(relayed[gateway], gateway, refusals):
                kind, block = self._block_refusal(entry, gateway, starts, sampled, width, dtype)
                if kind is None and block in admitted:
                    kind = "duplicate"
                if kind is not None:
                    refusals[kind] += 1
                    continue
                admitted[block] = (block, entry[1], np.unique(np.asarray(entry[2], np.int64)))
        return [admitted[b] for b in sorted(admitted)], dict(sorted(refusals.items()))

    def _block_refusal(self, entry: Any, gateway: int, starts: np.ndarray, sampled: np.ndarray,
                       width: int, dtype: np.dtype) -> tuple[str | None, int]:
        try:
            block, total, survivors = entry
            ids = np.asarray(survivors)
            ok = isinstance(block, (int, np.integer)) and not isinstance(block, bool) \
                and 0 <= block < len(starts) - 1 and isinstance(total, np.ndarray) \
                and total.dtype == dtype and total.shape == (width,) and ids.ndim == 1 \
                and ids.size > 0 and np.issubdtype(ids.dtype, np.integer)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            return "malformed", -1
        block = int(block)
        lo, hi = int(starts[block]), int(starts[block + 1])
        if len(np.unique(ids)) != ids.size or ids.min() < lo or ids.max() >= hi:
            return "malformed", block
        if not self.registry.hosts_all(gateway, np.arange(lo, hi, dtype=np.int64)):
            return "wrong_gateway", block  # (a block counts only from the host of all of it)
        if not member(sampled, ids.astype(np.int64)).all():
            return "not_sampled", block
        return None, block

    def step_ddg(self, params: np.ndarray, sums: list[np.ndarray], count: int,
                 round_index: int, *, ddg: Any, rotation_seed: bytes) -> np.ndarray:
        """The next global model from the block sums of a distributed-DP round (ring words of
        ``ddg``, see :func:`privcity.dp.ddg_encode`) over ``count`` devices: added in the ring,
        decoded (unwrapped, rescaled, rotated back) and released by the strategy as they are:
        the devices added the noise."""
        from ..aggregate import modular_sum
        from ..dp import ddg_decode
        total = modular_sum(sums) if sums else np.zeros(ddg.padded_dim, ddg.word_dtype)
        estimate = ddg_decode(np.ascontiguousarray(total, dtype=ddg.word_dtype), ddg,
                              rotation_seed)
        return self.strategy.aggregate_sum(params, estimate, float(count), count,
                                           round_index=round_index)

    def secure_quantizer(self, clip: float, population: int) -> SecureQuantizer | None:
        """The codec of this run's secure sums under "q<b>" compression (the devices clip to
        ``clip``; the ring holds the weights of all ``population`` devices), else None."""
        if self.compression.kind != "quantize":
            return None
        total = int(sum(self.weights_of(d) for d in range(population)))
        return SecureQuantizer(self.compression, self.n_params, float(clip), max(1, total))

    def step_secure(self, params: np.ndarray, sums: list[np.ndarray], count: int,
                    round_index: int, scale_bits: int = SECURE_SCALE_BITS,
                    quantizer: SecureQuantizer | None = None) -> np.ndarray:
        """The next global model from the gateways' secure-aggregation sums (uint64, as in
        :class:`GatewayReport`; with ``quantizer``, its words) over ``count`` devices in all.
        They are added mod 2**64 (2**32), which is exact: the same for any split of the devices
        into gateways."""
        from ..aggregate import modular_sum
        if quantizer is not None:
            total = modular_sum(sums) if sums else np.zeros(quantizer.padded_dim + 1,
                                                           quantizer.word_dtype)
            weighted, weight = quantizer.decode(np.ascontiguousarray(total), round_index)
            return self.strategy.aggregate_sum(params, weighted, weight, count,
                                               round_index=round_index)
        p = self.n_params
        width = p + 1 + (1 if self.adaptive_bit else 0)
        total = modular_sum(sums) if sums else np.zeros(width, np.uint64)
        values = total.view(np.int64)
        weighted = values[:p].astype(np.float64) / 2.0**scale_bits
        unclipped = int(values[p + 1]) if self.adaptive_bit else None
        return self.strategy.aggregate_sum(params, weighted, float(values[p]), count,
                                           round_index=round_index, unclipped_count=unclipped)

    def step(self, params: np.ndarray, device_ids: np.ndarray, updates: np.ndarray,
             bits: np.ndarray, round_index: int) -> np.ndarray:
        """The next global model from the updates :meth:`open` admitted (ValueError for an id
        that is no enrolled device)."""
        unknown = [int(d) for d in device_ids if not self.registry.is_enrolled(int(d))]
        if unknown:
            raise ValueError(f"device_ids {unknown[:5]} are not enrolled devices; step takes "
                             "the ids that open() admitted")
        weights = np.asarray([self.weights_of(int(d)) for d in device_ids], dtype=np.float64)
        return self.strategy.aggregate(params, updates, weights, round_index=round_index,
                                       unclipped=bits if self.adaptive_bit else None)
