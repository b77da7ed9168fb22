"""The AES256GCM object: key handling (no pickling, no key in its repr), generate_key, the
implementation it runs on, and the exception hierarchy."""
from __future__ import annotations

import copy
import pickle

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity
from privcity.crypto import AES256GCM

KEY = bytes.fromhex("6b5c0e2ad0f17e43a9d41f0e8b37c2a1f00d4c3b2a19081766554433221100ff")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cannot_be_pickled(implementation, protocol):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute
    with pytest.raises(TypeError, match="pickle") as info:
        pickle.dumps(gcm, protocol=protocol)

    # Assert
    assert KEY.hex() not in str(info.value)


def test_cannot_be_copied(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute / Assert
    with pytest.raises(TypeError):
        copy.copy(gcm)
    with pytest.raises(TypeError):
        copy.deepcopy(gcm)


def test_repr_and_attributes_show_no_key(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)

    # Execute
    shown = repr(gcm) + str(gcm) + format(gcm)

    # Assert
    assert implementation in repr(gcm)
    for secret in (KEY.hex(), KEY.hex().upper(), repr(KEY), str(list(KEY)), KEY[:8].hex()):
        assert secret not in shown
    assert not hasattr(gcm, "__dict__")  # __slots__: no place to keep the raw key by accident
    assert not any(getattr(gcm, name, None) == KEY for name in dir(gcm) if not name.startswith("__"))


def test_implementation_property(implementation):
    # Execute
    gcm = AES256GCM(KEY, implementation=implementation)

    # Assert
    assert gcm.implementation == implementation
    with pytest.raises(AttributeError):
        gcm.implementation = "cryptography"  # read-only


def test_default_implementation_is_the_dispatched_one():
    # Execute
    gcm = AES256GCM(KEY)

    # Assert
    assert gcm.implementation == privcity.backend_info()["aes256gcm"]
    assert gcm.implementation in privcity.aes_implementations()


def test_generate_key_returns_distinct_random_32_byte_keys():
    # Execute
    keys = [AES256GCM.generate_key() for _ in range(64)]

    # Assert
    assert all(type(k) is bytes and len(k) == 32 for k in keys)
    assert len(set(keys)) == 64
    # no bit position is stuck (by chance a given one would be, with probability 2**-63)
    for bit in range(256):
        column = {(k[bit // 8] >> (bit % 8)) & 1 for k in keys}
        assert column == {0, 1}, f"bit {bit} never changes"
    assert AES256GCM.generate_key(256) != AES256GCM.generate_key(bit_length=256)


def test_generated_key_works_everywhere(implementation):
    # Prepare
    key = AES256GCM.generate_key()
    nonce = bytes(12)

    # Execute
    ct = AES256GCM(key, implementation=implementation).encrypt(nonce, b"hello", b"ad")

    # Assert
    assert ct == AESGCM(key).encrypt(nonce, b"hello", b"ad")


def test_keys_are_independent(implementation):
    # Prepare: two objects alive at once must not share state
    a = AES256GCM(KEY, implementation=implementation)
    b = AES256GCM(bytes(32), implementation=implementation)

    # Execute
    ca, cb = a.encrypt(bytes(12), b"x" * 100), b.encrypt(bytes(12), b"x" * 100)
    del b
    ca2 = a.encrypt(bytes(12), b"x" * 100)

    # Assert
    assert ca == ca2 == AESGCM(KEY).encrypt(bytes(12), b"x" * 100, None)
    assert cb == AESGCM(bytes(32)).encrypt(bytes(12), b"x" * 100, None)


def test_authentication_error_hierarchy():
    # Prepare
    err = privcity.AuthenticationError("3 of 8 failed", [1, 4, 6])

    # Execute
    restored = pickle.loads(pickle.dumps(err))

    # Assert
    assert issubclass(privcity.AuthenticationError, privcity.PrivcityError)
    assert issubclass(privcity.AuthenticationError, InvalidTag)
    assert issubclass(privcity.PrivcityError, Exception)
    assert err.indices == [1, 4, 6] and str(err) == "3 of 8 failed"
    assert privcity.AuthenticationError().indices == [0]
    assert restored.indices == [1, 4, 6] and str(restored) == "3 of 8 failed"


def test_public_names():
    # Assert
    assert set(privcity.__all__) >= {"AuthenticationError", "PrivcityError", "aes_implementations",
                                      "backend_info", "cpu_features", "__version__"}
    assert {"AES256GCM", "CertificateAuthority", "CertificateError", "EnvelopeError",
            "EnvelopeReceiver", "EnvelopeSender", "IdentityKeys", "KeyRing", "OpenedEnvelope",
            "VerifiedCertificate", "derive_key", "verify_certificate"} == set(privcity.crypto.__all__)
    assert all(hasattr(privcity.crypto, n) for n in privcity.crypto.__all__)
    assert all(hasattr(privcity, n) for n in privcity.__all__)


def test_native_object_made_without_init_raises_instead_of_crashing():
    # Prepare
    from privcity import _core

    bare = _core.Aes256Gcm.__new__(_core.Aes256Gcm)

    # Execute / Assert
    with pytest.raises(TypeError, match="not initialised"):
        bare.encrypt(bytes(12), b"data", None)
    with pytest.raises(TypeError, match="not initialised"):
        bare.impl
