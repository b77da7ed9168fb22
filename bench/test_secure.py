"""Secure aggregation, privcity beside its anchors in the same process. No issue sets targets
for these yet; the ratios are reported.

Run: python -m pytest bench/test_secure.py --benchmark-only -p no:cacheprovider
  * Mask expansion, 20 seeds over D = 1,000,000 uint32 (what a client with 20 neighbours adds
    to its input): _core.mask_add_u32 against the same masks made in Python with
    `cryptography`'s AES-256-CTR and added with numpy (what a pure-Python SecAgg does).
  * One whole round in one process, 100 clients with SecAgg+ groups of 16 neighbours
    (threshold 9), D = 100,000 uint32, 10 clients dropping after sharing keys: secure_sum
    against the same round built from Flower's SecAgg+ primitives (flwr, bench extra; same
    groups and dropouts), and against the plain modular_sum of the same inputs (the cost of
    the protocol over no protection at all).
  * The same round authenticated (signed advertisements, certificates from a city CA, the
    consistency step) against the unauthenticated round: each party with its own
    DeviceVerifier, as 101 devices would (every certificate and signature checked by every
    party, certificate caches cold), and all parties sharing one warm verifier (the simulation
    shortcut: each certificate and signature checked once in the process).
  * One device's share_keys given a roster of 100 (groups of 16), authenticated (its verifier
    warm from earlier rounds: 100 fresh advertisement signatures to check) against the same
    step unauthenticated: the per-device cost of checking the roster.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privcity import _core
from privcity.aggregate import DeviceVerifier, SecAggClient, SecAggServer, modular_sum, secure_sum

from conftest import device_identities

D_MASK, SEEDS = 1_000_000, 20
N_ROUND, D_ROUND, NEIGHBORS, THRESHOLD = 100, 100_000, 16, 9
MASKS = "masks 20 x 1M uint32 vs cryptography+numpy"
ROUND = "secure_sum 100 clients x 100k vs Flower SecAgg+"
ROUND_PLAIN = "secure_sum 100 clients x 100k vs plain sum"
AUTH = "secure_sum 100 x 100k authenticated vs not"
DEVICE = "share_keys, roster 100, k=16: auth vs not"


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    rng = np.random.default_rng(1)
    return [rng.bytes(32) for _ in range(SEEDS)]


def test_masks_anchor(benchmark, record, seeds):
    benchmark.group = MASKS
    out = np.zeros(D_MASK, np.uint32)

    def python_masks() -> None:
        for i, seed in enumerate(seeds):
            stream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
            mask = np.frombuffer(stream.update(bytes(4 * D_MASK)), "<u4")
            if i % 2:
                np.subtract(out, mask, out=out)
            else:
                np.add(out, mask, out=out)

    benchmark.pedantic(python_masks, rounds=5, iterations=1, warmup_rounds=1)
    record(benchmark, MASKS, "anchor")


def test_masks(benchmark, record, seeds):
    benchmark.group = MASKS
    out = np.zeros(D_MASK, np.uint32)
    flat = np.frombuffer(b"".join(seeds), np.uint8)
    signs = np.array([1 if i % 2 == 0 else -1 for i in range(SEEDS)], np.int8)
    benchmark.pedantic(lambda: _core.mask_add_u32(out, flat, signs), rounds=20, iterations=1,
                       warmup_rounds=2)
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["keystream_GB_per_s"] = 4 * D_MASK * SEEDS / benchmark.stats.stats.median / 1e9
    record(benchmark, MASKS, "mask_add_u32")


@pytest.fixture(scope="module")
def round_inputs() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(2)
    return {c: rng.integers(0, 2**32, D_ROUND, dtype=np.uint32) for c in range(N_ROUND)}


def test_round_plain_sum(benchmark, record, round_inputs):
    benchmark.group = ROUND_PLAIN
    rows = [round_inputs[c] for c in range(10, N_ROUND)]
    benchmark.pedantic(lambda: modular_sum(rows), rounds=20, iterations=1, warmup_rounds=2)
    record(benchmark, ROUND_PLAIN, "anchor")


def flower_secaggplus_round(inputs: dict[int, np.ndarray], groups: dict[int, list[int]],
                            dropped: set[int], threshold: int) -> np.ndarray:
    """The same round (same groups, same dropouts, mod 2**32) built from Flower's SecAgg+
    primitives, step for step as flwr's secaggplus_mod and SecAggPlusWorkflow do them:
    SECP384R1 key pairs, Shamir via create_shares/combine_shares (pycryptodome underneath),
    Fernet for the shares, pseudo_rand_gen (numpy RandomState) for the masks."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import (decrypt, encrypt,
                                                                            generate_shared_key)
    from flwr.common.secure_aggregation.secaggplus_utils import (pseudo_rand_gen,
                                                                 share_keys_plaintext_concat,
                                                                 share_keys_plaintext_separate)

    mod = 2**32
    dims = [(D_ROUND,)]
    ids = sorted(inputs)
    sk1 = {c: ec.generate_private_key(ec.SECP384R1()) for c in ids}
    sk2 = {c: ec.generate_private_key(ec.SECP384R1()) for c in ids}
    seeds, held, boxes = {}, {c: {} for c in ids}, {c: [] for c in ids}
    for c in ids:  # stage 1: share keys
        seeds[c] = os.urandom(32)
        raw_sk1 = sk1[c].private_numbers().private_value.to_bytes(48, "big")
        group = groups[c]
        b_sh = create_shares(seeds[c], threshold, len(group))
        s_sh = create_shares(raw_sk1, threshold, len(group))
        for i, v in enumerate(group):
            if v == c:
                held[c][c] = (b_sh[i], s_sh[i])
            else:
                key = generate_shared_key(sk2[c], sk2[v].public_key())
                boxes[v].append((c, encrypt(key, share_keys_plaintext_concat(c, v, b_sh[i], s_sh[i]))))
    masked = {}
    for c in ids:  # stage 2: decrypt the shares, mask the input
        for src, ct in boxes[c]:
            _, _, b, s = share_keys_plaintext_separate(
                decrypt(generate_shared_key(sk2[c], sk2[src].public_key()), ct))
            held[c][src] = (b, s)
        if c in dropped:
            continue
        y = inputs[c].astype(np.int64) + pseudo_rand_gen(seeds[c], mod, dims)[0]
        for v in groups[c]:
            if v != c:
                m = pseudo_rand_gen(generate_shared_key(sk1[c], sk1[v].public_key()), mod, dims)[0]
                y = y + m if c > v else y - m
        masked[c] = np.mod(y, mod)
    total = np.mod(np.sum(list(masked.values()), axis=0), mod)
    for w in ids:  # stage 3 and the server's unmasking
        shares = [held[v][w][0 if w in masked else 1] for v in groups[w] if v in masked][:threshold]
        secret = combine_shares(shares)
        if w in masked:
            total -= pseudo_rand_gen(secret, mod, dims)[0]
        else:
            key = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP384R1())
            for v in groups[w]:
                if v in masked:
                    m = pseudo_rand_gen(generate_shared_key(key, sk1[v].public_key()), mod, dims)[0]
                    total = total - m if v > w else total + m  # what v added, removed
    return np.mod(total, mod).astype(np.uint32)


def harary(ids: list[int], k: int) -> dict[int, list[int]]:
    """Groups of the same shape as secure_sum's: each client with its k/2 next and k/2 previous
    ones in a shuffled order (so that the clients dropping out are spread over the groups)."""
    order = list(np.random.default_rng(3).permutation(ids))
    n, half = len(order), k // 2
    return {int(c): sorted(int(order[(p + j) % n]) for j in range(-half, half + 1))
            for p, c in enumerate(order)}


def test_round_flower_anchor(benchmark, record, round_inputs):
    pytest.importorskip("flwr.common.secure_aggregation", reason="pip install flwr for the anchor")
    benchmark.group = ROUND
    groups = harary(sorted(round_inputs), NEIGHBORS)
    total = benchmark.pedantic(
        lambda: flower_secaggplus_round(round_inputs, groups, set(range(10)), THRESHOLD),
        rounds=1, iterations=1, warmup_rounds=0)
    assert np.array_equal(total, modular_sum([round_inputs[c] for c in range(10, N_ROUND)]))
    record(benchmark, ROUND, "anchor")


def test_round(benchmark, record, round_inputs):
    benchmark.group = ROUND
    report = benchmark.pedantic(
        lambda: secure_sum(round_inputs, neighbors=NEIGHBORS, threshold=THRESHOLD,
                           drop_before_input=range(10)),
        rounds=3, iterations=1, warmup_rounds=0)
    assert np.array_equal(report.total, modular_sum([round_inputs[c] for c in range(10, N_ROUND)]))
    if benchmark.stats:
        up = np.mean([report.bytes_up[c] for c in report.survivors])
        benchmark.extra_info["bytes_up_per_survivor"] = up
        benchmark.extra_info["upload_expansion"] = up / (4 * D_ROUND)
    record(benchmark, ROUND, "secure_sum")
    record(benchmark, ROUND_PLAIN, "secure_sum")
    record(benchmark, AUTH, "anchor")


@pytest.fixture(scope="module")
def city() -> dict:
    """A city CA, its CRL and an identity (Ed25519 key, certificate naming dev-<id>) for each of
    the round's devices."""
    pki = device_identities(N_ROUND)
    return dict(identities=pki.identities, trust_anchor=pki.ca.certificate, crl=pki.crl)


@pytest.mark.parametrize("shared", [False, True], ids=["verifier per device", "shared verifier"])
def test_round_authenticated(benchmark, record, round_inputs, city, shared):
    benchmark.group = AUTH
    verifier = DeviceVerifier(trust_anchor=city["trust_anchor"], crl=city["crl"]) if shared \
        else None
    report = benchmark.pedantic(
        lambda: secure_sum(round_inputs, neighbors=NEIGHBORS, threshold=THRESHOLD,
                           drop_before_input=range(10), verifier=verifier, **city),
        rounds=2 if shared else 1, iterations=1, warmup_rounds=1 if shared else 0)
    assert report.authenticated and report.refused == {}
    assert np.array_equal(report.total, modular_sum([round_inputs[c] for c in range(10, N_ROUND)]))
    if benchmark.stats:
        up = np.mean([report.bytes_up[c] for c in report.survivors])
        benchmark.extra_info["bytes_up_per_survivor"] = up
        benchmark.extra_info["bytes_down_per_survivor"] = np.mean(
            [report.bytes_down[c] for c in report.survivors])
    record(benchmark, AUTH, "shared verifier" if shared else "verifier per device")


def _fresh_roster(city: dict | None, verifier: DeviceVerifier | None,
                  own: DeviceVerifier | None = None):
    """A new round of N_ROUND devices up to the roster (untimed), and device 0 (checking with
    `own`) ready to take it: every advertisement, and so every signature to check, is new."""
    kw = dict(neighbors=NEIGHBORS, authenticated=city is not None)
    clients = {}
    for c in range(N_ROUND):
        creds = {} if city is None else dict(identity=city["identities"][c][0],
                                             certificate=city["identities"][c][1],
                                             verifier=own if c == 0 and own else verifier)
        clients[c] = SecAggClient(c, D_ROUND, THRESHOLD, **kw, **creds)
    server = SecAggServer(D_ROUND, THRESHOLD, verifier=verifier, **kw)
    roster = server.collect_advertisements({c: cl.advertise() for c, cl in clients.items()})
    return (clients[0], roster), {}


def test_device_share_keys_anchor(benchmark, record):
    benchmark.group = DEVICE
    benchmark.pedantic(lambda client, roster: client.share_keys(roster),
                       setup=lambda: _fresh_roster(None, None), rounds=10, iterations=1,
                       warmup_rounds=1)
    record(benchmark, DEVICE, "anchor")


def test_device_share_keys(benchmark, record, city):
    benchmark.group = DEVICE
    # The server's verifier is not the device's: the device's keeps only its certificates.
    device = DeviceVerifier(trust_anchor=city["trust_anchor"], crl=city["crl"])
    server = DeviceVerifier(trust_anchor=city["trust_anchor"], crl=city["crl"])

    benchmark.pedantic(lambda client, roster: client.share_keys(roster),
                       setup=lambda: _fresh_roster(city, server, own=device), rounds=10,
                       iterations=1, warmup_rounds=1)
    if benchmark.stats:
        benchmark.extra_info.update(device.stats)
    record(benchmark, DEVICE, "authenticated")
