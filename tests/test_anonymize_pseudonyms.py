"""privcity.anonymize.pseudonyms: HMAC-SHA256 pseudonyms under HKDF-derived epoch keys,
recomputed here independently with hmac and cryptography; determinism, rotation, collisions,
and that the key never leaks through repr, pickling or copying."""
from __future__ import annotations

import copy
import hashlib
import hmac
import pickle
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from privcity.anonymize.pseudonyms import Pseudonymizer

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def epoch_key(master: bytes, epoch: int) -> bytes:
    """The documented derivation, written out from the module docstring."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"privcity.anonymize.Pseudonymizer v1",
                info=b"epoch" + struct.pack(">Q", epoch)).derive(master)


def reference(master: bytes, epoch: int, message: bytes) -> str:
    return hmac.new(epoch_key(master, epoch), message, hashlib.sha256).hexdigest()


# --- the construction -----------------------------------------------------------------------------

@pytest.mark.parametrize("epoch", [0, 1, 2**64 - 1])
def test_pseudonyms_match_an_independent_hmac_of_the_derived_key(epoch):
    # Prepare
    ids = np.array([0, 42, -7, 10**15], np.int64)

    # Execute
    got = Pseudonymizer(KEY, epoch=epoch).pseudonymize(ids)

    # Assert
    assert got.tolist() == [reference(KEY, epoch, b"%d" % v) for v in ids.tolist()]


def test_strings_bytes_and_ints_have_their_documented_canonical_bytes():
    # Prepare
    p = Pseudonymizer(KEY, epoch=3)

    # Execute
    text = p.pseudonymize(np.array(["alice", "Zoë", ""]))
    raw = p.pseudonymize([b"\x00\xffraw"])
    obj = p.pseudonymize(np.array(["42", 42, b"42"], dtype=object))

    # Assert
    assert text.tolist() == [reference(KEY, 3, s.encode()) for s in ["alice", "Zoë", ""]]
    assert raw.tolist() == [reference(KEY, 3, b"\x00\xffraw")]
    assert len(set(obj.tolist())) == 1 and obj[0] == reference(KEY, 3, b"42")


@given(st.text(max_size=40))
def test_any_text_identifier_is_the_hmac_of_its_utf8(text):
    # Execute
    got = Pseudonymizer(KEY, epoch=9).pseudonymize(text)

    # Assert
    assert got == reference(KEY, 9, text.encode("utf-8"))


def test_uint64_output_is_the_first_eight_digest_bytes():
    # Prepare
    ids = np.arange(100).reshape(10, 10)

    # Execute
    words = Pseudonymizer(KEY).pseudonymize(ids, output="uint64")

    # Assert
    assert words.dtype == np.uint64 and words.shape == (10, 10)
    expected = [int(reference(KEY, 0, b"%d" % v)[:16], 16) for v in range(100)]
    assert words.ravel().tolist() == expected
    assert Pseudonymizer(KEY).pseudonymize(5, output="uint64") == expected[5]


# --- determinism and rotation ---------------------------------------------------------------------

def test_same_key_and_epoch_give_the_same_pseudonyms():
    # Prepare
    ids = np.arange(1000)

    # Execute
    a = Pseudonymizer(KEY, epoch=4).pseudonymize(ids)
    b = Pseudonymizer(bytearray(KEY), epoch=4).pseudonymize(ids.astype(np.uint32))

    # Assert
    assert np.array_equal(a, b) and a.shape == (1000,) and a.dtype == np.dtype("U64")


def test_other_epochs_and_keys_give_unrelated_pseudonyms():
    # Prepare
    ids = np.arange(1000)
    base = Pseudonymizer(KEY, epoch=4)

    # Execute
    next_epoch = base.at_epoch(5).pseudonymize(ids)
    other_key = Pseudonymizer(OTHER_KEY, epoch=4).pseudonymize(ids)
    same = base.pseudonymize(ids)

    # Assert: no pseudonym of one epoch (or key) appears in the other at all
    assert not set(same.tolist()) & set(next_epoch.tolist())
    assert not set(same.tolist()) & set(other_key.tolist())
    assert base.at_epoch(5).epoch == 5 and base.epoch == 4
    assert np.array_equal(next_epoch, Pseudonymizer(KEY, epoch=5).pseudonymize(ids))


def test_no_collisions_on_a_hundred_thousand_ids():
    # Prepare
    ids = np.arange(100_000, dtype=np.int64) * 7919
    p = Pseudonymizer(KEY, epoch=1)

    # Execute
    hexes = p.pseudonymize(ids)
    words = p.pseudonymize(ids, output="uint64")

    # Assert
    assert len(np.unique(hexes)) == 100_000 and len(np.unique(words)) == 100_000


# --- the key stays secret -------------------------------------------------------------------------

def test_repr_and_str_do_not_show_the_key():
    # Prepare
    p = Pseudonymizer(KEY, epoch=2)

    # Execute
    texts = [repr(p), str(p), f"{p}"]

    # Assert
    assert texts[0] == "Pseudonymizer(epoch=2)"
    for t in texts:
        assert KEY.hex() not in t and repr(KEY) not in t and epoch_key(KEY, 2).hex() not in t
    assert not hasattr(p, "__dict__")   # slots only: no stray attribute to dump
    assert all(getattr(p, name) not in (KEY, epoch_key(KEY, 2))
               for name in dir(p) if not name.startswith("_"))


@pytest.mark.parametrize("leak", [pickle.dumps, copy.copy, copy.deepcopy])
def test_pickling_and_copying_are_refused(leak):
    # Prepare
    p = Pseudonymizer(KEY)

    # Execute / Assert
    with pytest.raises(TypeError, match="secret key"):
        leak(p)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [b"", b"x" * 15, bytearray(8)])
def test_short_keys_are_refused(key):
    # Execute / Assert
    with pytest.raises(ValueError, match="key must be at least 16 bytes"):
        Pseudonymizer(key)


@pytest.mark.parametrize("key", ["a" * 32, 12345, None])
def test_non_bytes_keys_are_refused(key):
    # Execute / Assert
    with pytest.raises(TypeError, match="key must be bytes-like"):
        Pseudonymizer(key)


@pytest.mark.parametrize("epoch, exc", [(-1, ValueError), (2**64, ValueError), (1.0, TypeError),
                                        (True, TypeError)])
def test_bad_epochs_are_refused(epoch, exc):
    # Execute / Assert
    with pytest.raises(exc, match="epoch"):
        Pseudonymizer(KEY, epoch=epoch)


@pytest.mark.parametrize("ids", [np.array([1.5, 2.0]), np.array([True, False]), [1.0], 2.5, True,
                                 np.array([None], dtype=object)])
def test_floats_bools_and_others_are_not_identifiers(ids):
    # Execute / Assert
    with pytest.raises(TypeError, match="identifiers must be"):
        Pseudonymizer(KEY).pseudonymize(ids)


def test_unknown_output_is_refused():
    # Execute / Assert
    with pytest.raises(ValueError, match="output must be one of"):
        Pseudonymizer(KEY).pseudonymize([1], output="base64")


def test_trailing_nul_bytes_are_kept_and_state_never_leaks():
    # Prepare
    import pickle
    p = Pseudonymizer(b"k" * 32)

    # Execute
    one = p.pseudonymize(b"a\x00")
    many = p.pseudonymize([b"a", b"a\x00"])

    # Assert: a list goes through as objects (numpy's fixed-width bytes would drop the NUL)
    assert many[1] == one and many[0] != many[1]
    with pytest.raises(TypeError):
        p.__getstate__()
    with pytest.raises(TypeError):
        pickle.dumps(p)
