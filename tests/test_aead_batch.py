"""encrypt_many / decrypt_many: agreement with single-message calls and with cryptography, the
strict (all or nothing) and return_status modes, list and array forms, every implementation."""
from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity
from privcity.crypto import AES256GCM

KEY = bytes(range(1, 33))


def _nonces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 12), dtype=np.uint8)


def _corrupt(ct: bytes, byte: int = 0) -> bytes:
    out = bytearray(ct)
    out[byte] ^= 0x40
    return bytes(out)


def _ten_messages() -> tuple[np.ndarray, list[bytes], list[bytes | None]]:
    rng = np.random.default_rng(10)
    msgs = [rng.bytes(n) for n in (0, 1, 15, 16, 17, 64, 100, 255, 256, 1000)]
    aads = [None if i % 3 == 0 else rng.bytes(i * 5) for i in range(10)]
    return _nonces(10), msgs, aads


@pytest.mark.parametrize("bad", [(2, 7), (0, 9), (4, 5)])
def test_strict_decrypt_many_lists_every_failed_index(implementation, bad):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonces, msgs, aads = _ten_messages()
    cts = gcm.encrypt_many(nonces, msgs, aads)
    for i in bad:
        cts[i] = _corrupt(cts[i], byte=len(cts[i]) - 1)  # the tag's last byte

    # Execute
    with pytest.raises(privcity.AuthenticationError) as info:
        gcm.decrypt_many(nonces, cts, aads)

    # Assert
    assert info.value.indices == list(bad)
    assert "2 of 10" in str(info.value)


def test_return_status_returns_good_plaintexts_and_none_for_bad(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonces, msgs, aads = _ten_messages()
    cts = gcm.encrypt_many(nonces, msgs, aads)
    cts[3] = _corrupt(cts[3])
    cts[8] = _corrupt(cts[8])

    # Execute
    pts, ok = gcm.decrypt_many(nonces, cts, aads, return_status=True)

    # Assert
    assert isinstance(ok, np.ndarray) and ok.dtype == np.bool_ and ok.shape == (10,)
    assert np.flatnonzero(~ok).tolist() == [3, 8]
    assert pts == [None if i in (3, 8) else m for i, m in enumerate(msgs)]


def test_every_message_failing_lists_all_indices(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonces, msgs, aads = _ten_messages()
    cts = [_corrupt(c, byte=len(c) - 16) for c in gcm.encrypt_many(nonces, msgs, aads)]

    # Execute
    with pytest.raises(privcity.AuthenticationError) as info:
        gcm.decrypt_many(nonces, cts, aads)
    pts, ok = gcm.decrypt_many(nonces, cts, aads, return_status=True)

    # Assert
    assert info.value.indices == list(range(10))
    assert pts == [None] * 10
    assert not ok.any()


@pytest.mark.parametrize("bad", [(2, 7), (0, 9)])
def test_array_mode_strict_and_return_status(implementation, bad):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    rng = np.random.default_rng(5)
    nonces = _nonces(10, seed=5)
    msgs = rng.integers(0, 256, (10, 300), dtype=np.uint8)
    cts = gcm.encrypt_many(nonces, msgs, b"shared header")
    cts[bad[0], 0] ^= 1  # ciphertext
    cts[bad[1], -1] ^= 1  # tag

    # Execute
    with pytest.raises(privcity.AuthenticationError) as info:
        gcm.decrypt_many(nonces, cts, b"shared header")
    pts, ok = gcm.decrypt_many(nonces, cts, b"shared header", return_status=True)

    # Assert
    assert info.value.indices == list(bad)
    assert np.flatnonzero(~ok).tolist() == list(bad)
    assert pts.dtype == np.uint8 and pts.shape == (10, 300)
    assert not pts[list(bad)].any()
    assert np.array_equal(pts[ok], msgs[ok])


def test_strict_failure_is_also_an_invalid_tag(implementation):
    # Prepare: code written for cryptography's AESGCM catches InvalidTag
    from cryptography.exceptions import InvalidTag

    gcm = AES256GCM(KEY, implementation=implementation)
    nonces, msgs, aads = _ten_messages()
    cts = gcm.encrypt_many(nonces, msgs, aads)
    cts[5] = _corrupt(cts[5])

    # Execute
    with pytest.raises(InvalidTag) as info:
        gcm.decrypt_many(nonces, cts, aads)

    # Assert
    assert isinstance(info.value, privcity.AuthenticationError)
    assert info.value.indices == [5]


@pytest.mark.parametrize(
    "aad_form",
    ["none", "one for all", "list", "list with None", "tuple"],
)
def test_associated_data_forms_match_single_calls(implementation, aad_form):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonces, msgs, _ = _ten_messages()
    shared = b"one header for every message"
    per = [bytes([i]) * (i * 9) for i in range(10)]
    aad, singles_aad = {
        "none": (None, [None] * 10),
        "one for all": (shared, [shared] * 10),
        "list": (per, per),
        "list with None": ([None if i % 2 else a for i, a in enumerate(per)], [None if i % 2 else a for i, a in enumerate(per)]),
        "tuple": (tuple(per), per),
    }[aad_form]

    # Execute
    cts = gcm.encrypt_many(nonces, msgs, aad)
    pts = gcm.decrypt_many(nonces, cts, aad)

    # Assert
    ref = AESGCM(KEY)
    assert cts == [ref.encrypt(bytes(nonces[i]), msgs[i], singles_aad[i]) for i in range(10)]
    assert pts == msgs


def test_nonces_as_a_list_of_bytes_equal_the_array_form(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonces, msgs, aads = _ten_messages()
    as_list = [bytes(row) for row in nonces]

    # Execute
    from_list = gcm.encrypt_many(as_list, msgs, aads)
    from_tuple = gcm.encrypt_many(tuple(as_list), msgs, aads)
    from_array = gcm.encrypt_many(nonces, msgs, aads)

    # Assert
    assert from_list == from_array == from_tuple
    assert gcm.decrypt_many(as_list, from_list, aads) == msgs


def test_empty_batches(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    none = np.zeros((0, 12), np.uint8)

    # Execute
    listed = gcm.encrypt_many(none, [])
    rows = gcm.encrypt_many(none, np.zeros((0, 40), np.uint8))
    plain_rows, ok = gcm.decrypt_many(none, np.zeros((0, 56), np.uint8), return_status=True)

    # Assert
    assert listed == []
    assert gcm.decrypt_many(none, []) == []
    assert rows.shape == (0, 56) and rows.dtype == np.uint8
    assert plain_rows.shape == (0, 40) and ok.shape == (0,)


# Small messages may be processed four at a time when four consecutive messages have the same
# shape: vaes512 takes associated data <= 64 bytes and at most 15 blocks of data and associated
# data, shaped by 64-byte vectors; vaes256 takes associated data <= 64 bytes and data <= 128
# bytes, shaped by 32-byte vectors. Runs of equal and of mixed shapes, with lengths varied
# inside a shape, check that grouping never changes a result or its position.
RUNS = {
    "one-ymm": [1, 16, 31, 32, 17, 32],
    "two-ymm": [33, 48, 63, 64, 40],
    "four-ymm-and-past-128": [97, 100, 127, 128, 129, 130, 128],
    "empty": [0, 0, 0, 0, 0],
    "one-vector": [1, 16, 33, 64, 7, 64, 1, 2, 3],
    "two-vectors": [65, 80, 127, 128, 100],
    "three-vectors": [129, 176, 191, 192, 130],
    "four-vectors-and-past-15-blocks": [193, 200, 239, 240, 241, 255, 256],
    "mixed": [0, 64, 0, 64, 128, 64, 0, 1],
    "one-large-inside": [5, 5, 5, 300, 5, 5, 5, 5, 5],
}
SMALL_SHAPES = [
    pytest.param(lengths, aad_len, id=f"{name}-aad{aad_len}")
    for aad_len in (None, 0, 1, 16, 17, 31, 32, 33, 48, 63, 64, 65)
    for name, lengths in RUNS.items()
]


@pytest.mark.parametrize("lengths,aad_len", SMALL_SHAPES)
def test_runs_of_small_messages_match_cryptography(implementation, lengths, aad_len):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    rng = np.random.default_rng(len(lengths) * 1000 + (aad_len or 0))
    n = len(lengths)
    nonces = _nonces(n, seed=n)
    msgs = [rng.bytes(m) for m in lengths]
    aads = [None if aad_len is None else rng.bytes(max(0, aad_len - (i % 2))) for i in range(n)]
    expected = [ref.encrypt(bytes(nonces[i]), msgs[i], aads[i]) for i in range(n)]

    # Execute
    cts = gcm.encrypt_many(nonces, msgs, aads)
    pts = gcm.decrypt_many(nonces, expected, aads)
    tampered = {}
    for bad in range(n):
        cts2 = list(expected)
        cts2[bad] = _corrupt(cts2[bad], byte=len(cts2[bad]) - 1 - bad % 16)
        tampered[bad] = gcm.decrypt_many(nonces, cts2, aads, return_status=True)

    # Assert
    assert cts == expected
    assert pts == msgs
    for bad, (got, ok) in tampered.items():
        assert np.flatnonzero(~ok).tolist() == [bad]
        assert got == [None if i == bad else m for i, m in enumerate(msgs)]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 63, 64, 65, 176, 177, 240, 241, 256, 257])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 9])
def test_array_mode_matches_cryptography(implementation, length, rows):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    rng = np.random.default_rng(length * 10 + rows)
    nonces = _nonces(rows, seed=rows)
    msgs = rng.integers(0, 256, (rows, length), dtype=np.uint8)
    aad = rng.bytes(length % 70)

    # Execute
    cts = gcm.encrypt_many(nonces, msgs, aad)
    pts = gcm.decrypt_many(nonces, cts, aad)

    # Assert
    assert cts.shape == (rows, length + 16)
    assert [c.tobytes() for c in cts] == [ref.encrypt(bytes(nonces[i]), msgs[i].tobytes(), aad) for i in range(rows)]
    assert np.array_equal(pts, msgs)
