"""Property tests: privcity's AES-256-GCM against cryptography's AESGCM (OpenSSL), byte for byte,
for random keys, nonces, message lengths 0..4096 and associated-data lengths 0..512, on every
implementation this CPU can run."""
from __future__ import annotations

import random

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

import privcity
from privcity.crypto import AES256GCM

EXAMPLES = settings(max_examples=200, deadline=None)


def _expand(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


def payloads(max_size: int) -> st.SearchStrategy[bytes]:
    """Short fully-shrinkable byte strings, or any length up to max_size (hypothesis favours the
    ends of the range) filled from a seed so that long inputs stay cheap to generate."""
    return st.one_of(
        st.binary(max_size=48),
        st.builds(_expand, st.integers(0, max_size), st.integers(0, 2**32 - 1)),
    )


keys = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=12, max_size=12)
messages = payloads(4096)
associated = st.one_of(st.none(), payloads(512))


@EXAMPLES
@given(key=keys, nonce=nonces, data=messages, aad=associated)
def test_encrypt_and_decrypt_agree_with_cryptography(implementation, key, nonce, data, aad):
    # Prepare
    gcm = AES256GCM(key, implementation=implementation)
    reference = AESGCM(key)

    # Execute
    ct = gcm.encrypt(nonce, data, aad)
    expected = reference.encrypt(nonce, data, aad)
    pt = gcm.decrypt(nonce, expected, aad)

    # Assert
    assert ct == expected
    assert pt == data
    assert reference.decrypt(nonce, ct, aad) == data


@EXAMPLES
@given(key=keys, nonce=nonces, data=messages, aad=associated, position=st.integers(0, 2**40))
def test_any_changed_byte_is_rejected(implementation, key, nonce, data, aad, position):
    # Prepare
    gcm = AES256GCM(key, implementation=implementation)
    ct = bytearray(AESGCM(key).encrypt(nonce, data, aad))
    ct[position % len(ct)] ^= 1 << (position % 8)

    # Execute
    try:
        gcm.decrypt(nonce, bytes(ct), aad)
        rejected = False
    except privcity.AuthenticationError:
        rejected = True

    # Assert
    assert rejected


batches = st.lists(st.tuples(nonces, payloads(1024), associated), max_size=12)


@EXAMPLES
@given(key=keys, batch=batches)
def test_batch_list_mode_equals_single_calls(implementation, key, batch):
    # Prepare
    gcm = AES256GCM(key, implementation=implementation)
    nonce_rows = np.frombuffer(b"".join(n for n, _, _ in batch), np.uint8).reshape(len(batch), 12)
    msgs = [m for _, m, _ in batch]
    aads = [a for _, _, a in batch]

    # Execute
    cts = gcm.encrypt_many(nonce_rows, msgs, aads)
    singles = [gcm.encrypt(n, m, a) for n, m, a in batch]
    pts = gcm.decrypt_many(nonce_rows, cts, aads)

    # Assert
    assert cts == singles
    assert cts == [AESGCM(key).encrypt(n, m, a) for n, m, a in batch]
    assert pts == msgs


@EXAMPLES
@given(key=keys, data=st.data(), rows=st.integers(0, 12), length=st.integers(0, 600), shared=associated)
def test_batch_array_mode_equals_single_calls(implementation, key, data, rows, length, shared):
    # Prepare: equal-length messages as an (N, L) array, one associated data for all
    gcm = AES256GCM(key, implementation=implementation)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    nonce_rows = rng.integers(0, 256, (rows, 12), dtype=np.uint8)
    msgs = rng.integers(0, 256, (rows, length), dtype=np.uint8)

    # Execute
    cts = gcm.encrypt_many(nonce_rows, msgs, shared)
    singles = [gcm.encrypt(nonce_rows[i], msgs[i], shared) for i in range(rows)]
    pts = gcm.decrypt_many(nonce_rows, cts, shared)

    # Assert
    assert isinstance(cts, np.ndarray) and cts.dtype == np.uint8 and cts.shape == (rows, length + 16)
    assert [row.tobytes() for row in cts] == singles
    assert isinstance(pts, np.ndarray) and pts.shape == (rows, length)
    assert np.array_equal(pts, msgs)


@EXAMPLES
@given(key=keys, batch=st.lists(st.tuples(nonces, payloads(300), associated), min_size=1, max_size=8), data=st.data())
def test_decrypt_many_status_marks_exactly_the_tampered_messages(implementation, key, batch, data):
    # Prepare
    gcm = AES256GCM(key, implementation=implementation)
    nonce_rows = np.frombuffer(b"".join(n for n, _, _ in batch), np.uint8).reshape(len(batch), 12)
    msgs = [m for _, m, _ in batch]
    aads = [a for _, _, a in batch]
    cts = [bytearray(c) for c in gcm.encrypt_many(nonce_rows, msgs, aads)]
    bad = sorted(data.draw(st.sets(st.integers(0, len(batch) - 1)), label="tampered"))
    for i in bad:
        pos = data.draw(st.integers(0, len(cts[i]) * 8 - 1), label=f"bit of {i}")
        cts[i][pos // 8] ^= 1 << (pos % 8)

    # Execute
    pts, ok = gcm.decrypt_many(nonce_rows, cts, aads, return_status=True)
    try:
        gcm.decrypt_many(nonce_rows, cts, aads)
        indices = []
    except privcity.AuthenticationError as e:
        indices = e.indices

    # Assert
    assert np.flatnonzero(~ok).tolist() == bad
    assert pts == [None if i in bad else m for i, m in enumerate(msgs)]
    assert indices == bad
