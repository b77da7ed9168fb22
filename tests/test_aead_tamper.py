"""Every single-bit change of ciphertext, tag, associated data or nonce is rejected, singly and in
batches (where only the changed message fails), on every implementation."""
from __future__ import annotations

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity
from privcity.crypto import AES256GCM

LENGTHS = (0, 1, 17, 33, 64, 129, 300)
KEY = bytes(range(32))
AAD = bytes(range(100, 120))  # 20 bytes: a full block and a partial one


def _message(length: int) -> tuple[bytes, bytes, bytes]:
    rng = np.random.default_rng(length)
    nonce, msg = rng.bytes(12), rng.bytes(length)
    return nonce, msg, AESGCM(KEY).encrypt(nonce, msg, AAD)


def _flips(data: bytes):
    """Every copy of data with exactly one bit inverted."""
    for bit in range(len(data) * 8):
        out = bytearray(data)
        out[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(out)


def _rejected(gcm: AES256GCM, nonce: bytes, ct: bytes, aad: bytes | None) -> bool:
    try:
        gcm.decrypt(nonce, ct, aad)
    except privcity.AuthenticationError:
        return True
    return False


@pytest.mark.parametrize("length", LENGTHS)
def test_every_bit_flip_of_ciphertext_and_tag_is_rejected(implementation, length):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonce, msg, ct = _message(length)

    # Execute
    accepted = [bit for bit, bad in _flips(ct) if not _rejected(gcm, nonce, bad, AAD)]

    # Assert
    assert gcm.decrypt(nonce, ct, AAD) == msg
    assert accepted == []


@pytest.mark.parametrize("length", LENGTHS)
def test_every_bit_flip_of_associated_data_and_nonce_is_rejected(implementation, length):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonce, _, ct = _message(length)

    # Execute
    accepted_aad = [bit for bit, bad in _flips(AAD) if not _rejected(gcm, nonce, ct, bad)]
    accepted_nonce = [bit for bit, bad in _flips(nonce) if not _rejected(gcm, bad, ct, AAD)]

    # Assert
    assert accepted_aad == []
    assert accepted_nonce == []


@pytest.mark.parametrize("length", LENGTHS)
def test_changed_lengths_and_wrong_key_are_rejected(implementation, length):
    # Prepare: GCM authenticates the lengths, so dropping or adding bytes must fail too
    gcm = AES256GCM(KEY, implementation=implementation)
    nonce, _, ct = _message(length)
    other_key = AES256GCM(bytes(32), implementation=implementation)
    variants = {
        "no associated data": (nonce, ct, None),
        "associated data + zero byte": (nonce, ct, AAD + b"\0"),
        "associated data - last byte": (nonce, ct, AAD[:-1]),
        "ciphertext + zero byte": (nonce, ct[:-16] + b"\0" + ct[-16:], AAD),
        "ciphertext - last byte": (nonce, ct[:-17] + ct[-16:], AAD) if length else None,
        "tag of zeros": (nonce, ct[:-16] + bytes(16), AAD),
    }

    # Execute
    accepted = [name for name, v in variants.items() if v is not None and not _rejected(gcm, *v)]
    wrong_key = _rejected(other_key, nonce, ct, AAD)

    # Assert
    assert accepted == []
    assert wrong_key


def test_failed_decrypt_is_an_invalid_tag_with_index_zero(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    nonce, _, ct = _message(17)

    # Execute
    with pytest.raises(InvalidTag) as info:
        gcm.decrypt(nonce, ct[:-1] + bytes([ct[-1] ^ 1]), AAD)

    # Assert
    assert isinstance(info.value, privcity.AuthenticationError)
    assert isinstance(info.value, privcity.PrivcityError)
    assert info.value.indices == [0]


@pytest.mark.parametrize("where", ["ciphertext", "aad", "nonce"])
def test_batch_with_one_flipped_bit_fails_only_that_message(implementation, where):
    # Prepare: one message of each length; flip every bit position class of message j in turn
    gcm = AES256GCM(KEY, implementation=implementation)
    triples = [_message(n) for n in LENGTHS]
    nonces = np.array([np.frombuffer(n, np.uint8) for n, _, _ in triples])
    msgs = [m for _, m, _ in triples]
    cts = [c for _, _, c in triples]
    aads = [AAD] * len(LENGTHS)
    wrong: list[tuple[int, int]] = []
    strict_wrong: list[tuple[int, int]] = []

    for j in range(len(LENGTHS)):
        target = {"ciphertext": cts[j], "aad": AAD, "nonce": triples[j][0]}[where]
        for bit, bad in _flips(target):
            c2, a2, n2 = list(cts), list(aads), nonces.copy()
            if where == "ciphertext":
                c2[j] = bad
            elif where == "aad":
                a2[j] = bad
            else:
                n2[j] = np.frombuffer(bad, np.uint8)

            # Execute
            pts, ok = gcm.decrypt_many(n2, c2, a2, return_status=True)
            try:
                gcm.decrypt_many(n2, c2, a2)
                indices = None
            except privcity.AuthenticationError as e:
                indices = e.indices

            # Assert (collected)
            if ok.tolist() != [i != j for i in range(len(LENGTHS))] or pts != [None if i == j else m for i, m in enumerate(msgs)]:
                wrong.append((j, bit))
            if indices != [j]:
                strict_wrong.append((j, bit))

    assert wrong == []
    assert strict_wrong == []
