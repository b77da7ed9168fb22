"""Accepted input types (any C-contiguous bytes-like object gives the result its bytes give) and
the errors for bad input: ValueError or TypeError naming the argument, raised before any output
is produced, on every implementation."""
from __future__ import annotations

import array
import re

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity
from privcity.crypto import AES256GCM

KEY = bytes(range(7, 39))
NONCE = bytes(range(50, 62))
DATA = bytes(range(48)) * 2  # 96 bytes: a multiple of 8, so any dtype can view it
AAD = bytes(range(200, 224))  # 24 bytes


class BytesSubclass(bytes):
    """A bytes subclass: read through the buffer protocol, not the exact-bytes fast path."""


def _array_u32(b: bytes) -> array.array:
    a = array.array("I")
    a.frombytes(b)
    return a


FORMS = {
    "bytes": lambda b: b,
    "bytes-subclass": BytesSubclass,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "memoryview-slice": lambda b: memoryview(b"<<" + b + b">>")[2 : 2 + len(b)],
    "array.array": lambda b: array.array("B", b),
    "array.array-uint32": _array_u32,
    "uint8": lambda b: np.frombuffer(b, np.uint8).copy(),
    "uint8-2d": lambda b: np.frombuffer(b, np.uint8).reshape(2, -1).copy(),
    "int8": lambda b: np.frombuffer(b, np.int8).copy(),
    "uint16": lambda b: np.frombuffer(b, np.uint16).copy(),
    "int32": lambda b: np.frombuffer(b, np.int32).copy(),
    "float32-2d": lambda b: np.frombuffer(b, np.float32).reshape(1, -1).copy(),
    "float64": lambda b: np.frombuffer(b, np.float64).copy() if len(b) % 8 == 0 else np.frombuffer(b, np.float32).copy(),
    "big-endian-uint16": lambda b: np.frombuffer(b, ">u2").copy(),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("argument", ["key", "nonce", "data", "associated_data"])
def test_bytes_like_forms_give_the_same_result(implementation, form, argument):
    # Prepare
    convert = FORMS[form]
    args = {"key": KEY, "nonce": NONCE, "data": DATA, "associated_data": AAD}
    args[argument] = convert(args[argument])
    expected = AESGCM(KEY).encrypt(NONCE, DATA, AAD)

    # Execute
    gcm = AES256GCM(args["key"], implementation=implementation)
    ct = gcm.encrypt(args["nonce"], args["data"], args["associated_data"])
    pt = gcm.decrypt(args["nonce"], convert(expected) if argument == "data" else expected, args["associated_data"])

    # Assert
    assert type(ct) is bytes and ct == expected
    assert type(pt) is bytes and pt == DATA


def test_none_and_empty_associated_data_are_the_same(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute
    results = {gcm.encrypt(NONCE, DATA, aad) for aad in (None, b"", bytearray(), np.zeros(0, np.uint8))}

    # Assert
    assert results == {AESGCM(KEY).encrypt(NONCE, DATA, None)}


def test_batch_items_of_mixed_forms(implementation):
    # Prepare: every form in one list, for nonces, messages and associated data
    gcm = AES256GCM(KEY, implementation=implementation)
    names = list(FORMS)
    nonces = [FORMS[f](bytes([i]) * 12) for i, f in enumerate(names)]
    msgs = [FORMS[f](DATA[i:] + DATA[:i]) for i, f in enumerate(names)]
    aads = [FORMS[f](AAD[: 8 * (1 + i % 3)]) if i % 5 else None for i, f in enumerate(names)]
    plain = [(bytes([i]) * 12, DATA[i:] + DATA[:i], AAD[: 8 * (1 + i % 3)] if i % 5 else None) for i in range(len(names))]
    expected = [AESGCM(KEY).encrypt(*p) for p in plain]

    # Execute
    cts = gcm.encrypt_many(nonces, msgs, aads)
    pts = gcm.decrypt_many(nonces, [FORMS[f](c) for f, c in zip(names, expected)], aads)

    # Assert
    assert cts == expected
    assert pts == [m for _, m, _ in plain]


def test_inputs_are_not_modified(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    data, aad = bytearray(DATA), np.frombuffer(AAD, np.uint8).copy()
    rows = np.frombuffer(DATA * 3, np.uint8).reshape(3, -1).copy()
    nonces = np.zeros((3, 12), np.uint8)

    # Execute
    ct = gcm.encrypt(NONCE, data, aad)
    gcm.decrypt(NONCE, bytearray(ct), aad)
    cts = gcm.encrypt_many(nonces, rows, aad)
    gcm.decrypt_many(nonces, cts.copy(), aad)

    # Assert
    assert data == DATA and aad.tobytes() == AAD
    assert rows.tobytes() == DATA * 3 and not nonces.any()


# --- errors ------------------------------------------------------------------------------------

STRIDED = np.zeros((4, 24), np.uint8)[:, ::2]  # 48 bytes, not C-contiguous
N4 = np.zeros((4, 12), np.uint8)
GOOD = [b"m0", b"m1", b"m2", b"m3"]

# (label, call on an AES256GCM object, exception type, text the message must contain)
ERRORS = [
    ("nonce 11 bytes", lambda g: g.encrypt(bytes(11), DATA), ValueError, "nonce"),
    ("nonce 13 bytes", lambda g: g.encrypt(bytes(13), DATA), ValueError, "nonce"),
    ("nonce empty", lambda g: g.decrypt(b"", bytes(32)), ValueError, "nonce"),
    ("nonce int", lambda g: g.encrypt(12, DATA), TypeError, "nonce"),
    ("nonce str", lambda g: g.encrypt("x" * 12, DATA), TypeError, "nonce"),
    ("nonce strided", lambda g: g.encrypt(np.zeros(24, np.uint8)[::2], DATA), ValueError, "nonce"),
    ("data int", lambda g: g.encrypt(NONCE, 5), TypeError, "data"),
    ("data str", lambda g: g.encrypt(NONCE, "text"), TypeError, "data"),
    ("data None", lambda g: g.encrypt(NONCE, None), TypeError, "data"),
    ("data list", lambda g: g.encrypt(NONCE, [1, 2, 3]), TypeError, "data"),
    ("data strided", lambda g: g.encrypt(NONCE, STRIDED), ValueError, "data"),
    ("data fortran", lambda g: g.encrypt(NONCE, np.asfortranarray(np.zeros((3, 4), np.uint8))), ValueError, "data"),
    ("ciphertext str", lambda g: g.decrypt(NONCE, "x" * 32), TypeError, "data"),
    ("ciphertext strided", lambda g: g.decrypt(NONCE, STRIDED), ValueError, "data"),
    ("aad int", lambda g: g.encrypt(NONCE, DATA, 7), TypeError, "associated_data"),
    ("aad str", lambda g: g.encrypt(NONCE, DATA, "header"), TypeError, "associated_data"),
    ("aad strided", lambda g: g.decrypt(NONCE, bytes(16), STRIDED), ValueError, "associated_data"),
    ("messages length mismatch", lambda g: g.encrypt_many(N4, GOOD[:3]), ValueError, "messages"),
    ("ciphertexts length mismatch", lambda g: g.decrypt_many(N4, [bytes(16)] * 5), ValueError, "ciphertexts"),
    ("aad list length mismatch", lambda g: g.encrypt_many(N4, GOOD, [b"a"] * 3), ValueError, "associated_data"),
    ("aad list length mismatch (decrypt)", lambda g: g.decrypt_many(N4, [bytes(16)] * 4, [None] * 5), ValueError, "associated_data"),
    ("message rows mismatch", lambda g: g.encrypt_many(N4, np.zeros((3, 8), np.uint8)), ValueError, "messages"),
    ("ciphertext rows mismatch", lambda g: g.decrypt_many(N4, np.zeros((5, 32), np.uint8)), ValueError, "ciphertexts"),
    ("messages[3] int", lambda g: g.encrypt_many(N4, GOOD[:3] + [3]), TypeError, "messages[3]"),
    ("messages[3] str", lambda g: g.encrypt_many(N4, GOOD[:3] + ["m3"]), TypeError, "messages[3]"),
    ("messages[3] None", lambda g: g.encrypt_many(N4, GOOD[:3] + [None]), TypeError, "messages[3]"),
    ("messages[3] strided", lambda g: g.encrypt_many(N4, GOOD[:3] + [STRIDED]), ValueError, "messages[3]"),
    ("ciphertexts[3] int", lambda g: g.decrypt_many(N4, [bytes(16)] * 3 + [16]), TypeError, "ciphertexts[3]"),
    ("associated_data[3] int", lambda g: g.encrypt_many(N4, GOOD, [b"a", None, b"c", 4]), TypeError, "associated_data[3]"),
    ("associated_data[3] str", lambda g: g.decrypt_many(N4, [bytes(16)] * 4, [None, None, None, "x"]), TypeError, "associated_data[3]"),
    ("associated_data str for all", lambda g: g.encrypt_many(N4, GOOD, "header"), TypeError, "associated_data"),
    ("messages strided array", lambda g: g.encrypt_many(N4, np.zeros((4, 16), np.uint8)[:, ::2]), ValueError, "messages"),
    ("ciphertexts strided array", lambda g: g.decrypt_many(N4, np.zeros((4, 64), np.uint8)[:, ::2]), ValueError, "ciphertexts"),
    ("ciphertext rows under 16", lambda g: g.decrypt_many(N4, np.zeros((4, 15), np.uint8)), ValueError, "ciphertexts"),
    ("messages 3-d array", lambda g: g.encrypt_many(N4, np.zeros((4, 2, 2), np.uint8)), ValueError, "messages"),
    ("messages str", lambda g: g.encrypt_many(N4, "abcd"), TypeError, "messages"),
    ("messages int", lambda g: g.encrypt_many(N4, 4), TypeError, "messages"),
    ("messages generator", lambda g: g.encrypt_many(N4, (m for m in GOOD)), TypeError, "messages"),
    ("ciphertexts None", lambda g: g.decrypt_many(N4, None), TypeError, "ciphertexts"),
    ("nonces (4, 11)", lambda g: g.encrypt_many(np.zeros((4, 11), np.uint8), GOOD), ValueError, "nonces"),
    ("nonces 1-d", lambda g: g.encrypt_many(np.zeros(48, np.uint8), GOOD), ValueError, "nonces"),
    ("nonces columns strided", lambda g: g.encrypt_many(STRIDED, GOOD), ValueError, "nonce"),
    ("nonces[2] 11 bytes", lambda g: g.encrypt_many([bytes(12), bytes(12), bytes(11), bytes(12)], GOOD), ValueError, "nonces[2]"),
    ("nonces[2] int", lambda g: g.encrypt_many([bytes(12), bytes(12), 12, bytes(12)], GOOD), TypeError, "nonces[2]"),
]


@pytest.mark.parametrize("label,call,exc,name", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_raises_naming_the_argument(implementation, label, call, exc, name):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute
    with pytest.raises(exc) as info:
        call(gcm)

    # Assert
    assert name in str(info.value), f"{label}: {info.value!r} does not name {name!r}"
    assert not isinstance(info.value, privcity.AuthenticationError)
    assert gcm.encrypt(NONCE, DATA, AAD) == AESGCM(KEY).encrypt(NONCE, DATA, AAD)  # still usable


@pytest.mark.parametrize("data", [b"", bytes(1), bytes(15)], ids=["empty", "1", "15"])
def test_ciphertext_shorter_than_the_tag_fails_authentication_as_in_aesgcm(implementation, data):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    with pytest.raises(InvalidTag):
        AESGCM(KEY).decrypt(NONCE, data, None)  # the reference behaviour

    # Execute / Assert
    with pytest.raises(privcity.AuthenticationError):
        gcm.decrypt(NONCE, data)


def test_short_item_in_a_batch_fails_alone(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    cts = gcm.encrypt_many(N4, GOOD)
    cts[3] = cts[3][:15]

    # Execute
    with pytest.raises(privcity.AuthenticationError) as info:
        gcm.decrypt_many(N4, cts)
    plain, ok = gcm.decrypt_many(N4, cts, return_status=True)

    # Assert
    assert info.value.indices == [3]
    assert ok.tolist() == [True, True, True, False]
    assert plain == GOOD[:3] + [None]


@pytest.mark.parametrize(
    "key,exc",
    [(b"", ValueError), (bytes(16), ValueError), (bytes(31), ValueError), (bytes(33), ValueError),
     (bytes(64), ValueError), ("k" * 32, TypeError), (32, TypeError), (None, TypeError),
     (list(range(32)), TypeError), (np.zeros(64, np.uint8)[::2], ValueError)],
    ids=["empty", "16", "31", "33", "64", "str", "int", "None", "list", "strided"],
)
def test_bad_key_raises_naming_the_key(implementation, key, exc):
    # Execute
    with pytest.raises(exc, match="key"):
        AES256GCM(key, implementation=implementation)


@pytest.mark.parametrize("name", ["", "AESNI", "vaes", "openssl", "none", 1])
def test_unknown_implementation_is_refused(name):
    # Execute
    with pytest.raises(ValueError, match="implementation"):
        AES256GCM(KEY, implementation=name)


def test_generate_key_refuses_other_sizes():
    # Execute
    for bits in (128, 192, 255, 512):
        with pytest.raises(ValueError, match="256"):
            AES256GCM.generate_key(bits)


def test_validation_comes_before_any_decryption(implementation):
    # Prepare: item 1 fails authentication and item 3 is malformed; the malformed input must be
    # reported (nothing decrypted, no partial result), in list and associated-data forms
    gcm = AES256GCM(KEY, implementation=implementation)
    cts = gcm.encrypt_many(N4, GOOD)
    cts[1] = bytes(len(cts[1]))

    # Execute
    with pytest.raises(TypeError, match=re.escape("ciphertexts[3]")):
        gcm.decrypt_many(N4, cts[:3] + ["not bytes"], return_status=True)
    with pytest.raises(TypeError, match=re.escape("associated_data[3]")):
        gcm.decrypt_many(N4, cts, [None, None, None, 1])
    with pytest.raises(TypeError, match=re.escape("messages[3]")):
        gcm.encrypt_many(N4, GOOD[:3] + [object()])

    # Assert: the same call without the malformed item does run and reports item 1
    _, ok = gcm.decrypt_many(N4, cts, return_status=True)
    assert ok.tolist() == [True, False, True, True]


def test_batch_arrays_of_wider_dtypes_are_refused(implementation):
    # Execute
    with pytest.raises((ValueError, TypeError), match="messages"):
        AES256GCM(KEY, implementation=implementation).encrypt_many(N4, np.zeros((4, 8), np.uint16))
    with pytest.raises((ValueError, TypeError), match="nonces"):
        AES256GCM(KEY, implementation=implementation).encrypt_many(np.zeros((4, 12), np.uint16), GOOD)


# --- edge cases where the native and fallback paths once disagreed ------------------------------


def test_zero_size_multidimensional_array_is_an_empty_buffer(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    empty = np.zeros((0, 4), np.uint8)

    # Execute
    ct = gcm.encrypt(NONCE, empty, np.zeros((2, 0), np.uint8))

    # Assert
    assert ct == AESGCM(KEY).encrypt(NONCE, b"", None)


def test_zero_size_multidimensional_key_is_a_wrong_length(implementation):
    # Execute
    with pytest.raises(ValueError, match="key"):
        AES256GCM(np.zeros((0, 32), np.uint8), implementation=implementation)


def test_batch_arrays_of_other_one_byte_dtypes_are_refused(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute
    with pytest.raises((ValueError, TypeError), match="messages"):
        gcm.encrypt_many(N4, np.zeros((4, 8), np.int8))


def test_row_strided_nonces_are_refused(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    every_other_row = np.zeros((8, 12), np.uint8)[::2]

    # Execute
    with pytest.raises(ValueError, match="nonces"):
        gcm.encrypt_many(every_other_row, GOOD)


def test_object_arrays_are_refused_not_encrypted_as_pointers(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    objects = np.array(["secret"], dtype=object)

    # Execute / Assert
    with pytest.raises(TypeError, match="data"):
        gcm.encrypt(NONCE, objects)
    with pytest.raises(TypeError, match="associated_data"):
        gcm.encrypt(NONCE, b"x", objects)


def test_flat_buffer_as_batch_is_a_value_error_on_every_path(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute / Assert
    with pytest.raises(ValueError, match="messages"):
        gcm.encrypt_many(N4, b"abcd")


def test_one_bad_associated_data_for_a_batch_is_named_without_an_index(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute
    with pytest.raises(TypeError, match="associated_data") as info:
        gcm.encrypt_many(N4, GOOD, "not bytes")

    # Assert
    assert "associated_data[" not in str(info.value)


def test_associated_data_as_an_array_is_one_row_per_message(implementation):
    # Prepare: nonces, messages and associated data all (N, .) arrays, as a gateway holds them
    gcm = AES256GCM(KEY, implementation=implementation)
    rng = np.random.default_rng(4)
    nonces = rng.integers(0, 256, (6, 12), dtype=np.uint8)
    rows = rng.integers(0, 256, (6, 40), dtype=np.uint8)
    aad = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    ref = AESGCM(KEY)

    # Execute
    cts = gcm.encrypt_many(nonces, rows, aad)
    back = gcm.decrypt_many(nonces, cts, aad)

    # Assert: row i is sealed with aad[i], as cryptography does message by message
    assert [bytes(c) for c in cts] == [ref.encrypt(bytes(n), bytes(m), bytes(a))
                                       for n, m, a in zip(nonces, rows, aad)]
    assert np.array_equal(back, rows)
    with pytest.raises(ValueError, match="one per message"):
        gcm.encrypt_many(nonces, rows, aad[:5])
