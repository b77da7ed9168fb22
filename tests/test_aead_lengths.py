"""Message and associated-data lengths around the block size (16), the kernels' vector and loop
widths (64, 128, 256 bytes) and the GIL threshold (2 KiB), against cryptography's AESGCM."""
from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privcity.crypto import AES256GCM

MESSAGE_LENGTHS = (
    0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513,
    2047, 2048, 2049, 4095, 4096, 4097, 65536 + 7,
)
AAD_LENGTHS = (0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 4096)
KEY = bytes(range(200, 232))


def _data(length: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(length)


@pytest.mark.parametrize("length", MESSAGE_LENGTHS)
def test_message_lengths_match_cryptography(implementation, length):
    # Prepare: every message length with every associated-data length (None for 0, then b"")
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    msg = _data(length, length)
    nonce = _data(12, length + 1)
    cases = [(None if a == 0 else _data(a, a + 7)) for a in AAD_LENGTHS] + [b""]
    expected = [ref.encrypt(nonce, msg, aad) for aad in cases]

    # Execute
    cts = [gcm.encrypt(nonce, msg, aad) for aad in cases]
    pts = [gcm.decrypt(nonce, ct, aad) for ct, aad in zip(expected, cases)]

    # Assert
    mismatched = [len(a or b"") for a, c, e in zip(cases, cts, expected) if c != e]
    assert mismatched == []
    assert all(len(c) == length + 16 for c in cts)
    assert all(p == msg for p in pts)


@pytest.mark.parametrize("aad_len", AAD_LENGTHS + (2047, 2048, 4095, 4097))
def test_associated_data_lengths_match_cryptography(implementation, aad_len):
    # Prepare: associated data only (GMAC, empty message) and with a one-byte message
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    aad = _data(aad_len, aad_len)
    nonce = _data(12, aad_len + 3)

    # Execute
    gmac = gcm.encrypt(nonce, b"", aad)
    one = gcm.encrypt(nonce, b"\x5a", aad)

    # Assert
    assert gmac == ref.encrypt(nonce, b"", aad)
    assert one == ref.encrypt(nonce, b"\x5a", aad)
    assert gcm.decrypt(nonce, gmac, aad) == b""
    assert gcm.decrypt(nonce, one, aad) == b"\x5a"


def test_boundary_lengths_in_one_batch(implementation):
    # Prepare: every boundary message length beside every boundary AAD length, in one call
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    pairs = [(m, a) for m in MESSAGE_LENGTHS for a in AAD_LENGTHS[::2]]
    nonces = np.random.default_rng(1).integers(0, 256, (len(pairs), 12), dtype=np.uint8)
    msgs = [_data(m, i) for i, (m, _) in enumerate(pairs)]
    aads = [_data(a, 1000 + i) if a else None for i, (_, a) in enumerate(pairs)]

    # Execute
    cts = gcm.encrypt_many(nonces, msgs, aads)
    pts = gcm.decrypt_many(nonces, cts, aads)

    # Assert
    expected = [ref.encrypt(bytes(nonces[i]), msgs[i], aads[i]) for i in range(len(pairs))]
    assert [pairs[i] for i in range(len(pairs)) if cts[i] != expected[i]] == []
    assert pts == msgs


# Odd associated-data lengths, cycled over the messages: each kernel's partial-block loads of
# AAD (below and above the 32- and 64-byte vectors of the small-message paths) meet every
# partial-block load and store of the data.
ODD_AAD = (None, 1, 13, 31, 33, 47, 63, 65, 77, 129)


def test_every_length_up_to_300_matches_cryptography(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    rng = np.random.default_rng(300)
    aad_lens = [(ODD_AAD[n % 10], ODD_AAD[(n * 7 + 3) % 10]) for n in range(301)]
    cases = [(rng.bytes(12), rng.bytes(n), None if a is None else rng.bytes(a))
             for n in range(301) for a in aad_lens[n]]
    expected = [ref.encrypt(*case) for case in cases]

    # Execute
    cts = [gcm.encrypt(*case) for case in cases]
    pts = [gcm.decrypt(nonce, ct, aad) for (nonce, _, aad), ct in zip(cases, expected)]
    nonces = np.frombuffer(b"".join(c[0] for c in cases), np.uint8).reshape(-1, 12)
    batch = gcm.encrypt_many(nonces, [c[1] for c in cases], [c[2] for c in cases])
    batch_pts = gcm.decrypt_many(nonces, expected, [c[2] for c in cases])

    # Assert
    wrong = [(len(m), len(a or b"")) for (_, m, a), c, e in zip(cases, cts, expected) if c != e]
    assert wrong == []
    assert pts == [c[1] for c in cases]
    assert batch == expected
    assert batch_pts == [c[1] for c in cases]


@pytest.mark.parametrize("length", [16384, 16384 + 16 * 9 + 3, 1 << 20])
@pytest.mark.parametrize("aad_len", [0, 1, 31, 255, 4099])
def test_bulk_lengths_with_odd_associated_data_match_cryptography(implementation, length, aad_len):
    # Prepare: whole 256-byte batches, then a remainder of a 128-byte batch and a partial block
    gcm = AES256GCM(KEY, implementation=implementation)
    msg, aad, nonce = _data(length, length), _data(aad_len, aad_len + 11), _data(12, 5)
    expected = AESGCM(KEY).encrypt(nonce, msg, aad)

    # Execute
    ct = gcm.encrypt(nonce, msg, aad)
    pt = gcm.decrypt(nonce, expected, aad)

    # Assert
    assert ct == expected
    assert pt == msg


@pytest.mark.parametrize("nonce", [b"\xff" * 12, b"\x80" * 12, bytes(12)], ids=["ones", "high-bits", "zeros"])
def test_extreme_nonces(implementation, nonce):
    # Prepare: nonces with every bit or every sign bit set (catches sign extension or a carry
    # when J0 = nonce || 0x00000001 is built and counted up), for a long message, a short one
    # and a batch of four short ones
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    aad = b"\xff" * 33
    long_msg, short_msg = _data(16 * 4099 + 5, 99), _data(17, 98)
    four = np.frombuffer(nonce * 4, np.uint8).reshape(4, 12)

    # Execute
    long_ct = gcm.encrypt(nonce, long_msg, aad)
    short_ct = gcm.encrypt(nonce, short_msg, aad)
    batch = gcm.encrypt_many(four, [short_msg] * 4, aad)

    # Assert
    assert long_ct == ref.encrypt(nonce, long_msg, aad)
    assert short_ct == ref.encrypt(nonce, short_msg, aad)
    assert batch == [short_ct] * 4
    assert gcm.decrypt(nonce, long_ct, aad) == long_msg
    assert gcm.decrypt_many(four, batch, aad) == [short_msg] * 4
