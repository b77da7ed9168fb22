"""Key agreement: X25519 + HKDF-SHA256 keys per (sender, receiver, epoch), the injective info
encoding, a known-answer check against cryptography directly, the KeyRing, use with AES256GCM."""
from __future__ import annotations

import copy
import datetime as dt
import itertools
import pickle
import struct

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privcity import AuthenticationError
from privcity.crypto import AES256GCM
from privcity.crypto.agreement import INFO_PREFIX, KeyRing, derive_key, kdf_info, kdf_salt
from privcity.crypto.pki import CertificateAuthority, IdentityKeys, verify_certificate

UTC = dt.timezone.utc
T0 = dt.datetime(2030, 1, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)


class Party:
    def __init__(self, ca, subject_id, role, crl_holder):
        self.id = subject_id
        self.keys = IdentityKeys.generate()
        self.cert = ca.issue(subject_id, role, identity_key=self.keys.identity_public_key,
                             agreement_key=self.keys.agreement_public_key,
                             not_before=T0 - DAY, not_after=T0 + 30 * DAY)
        self._ca, self._crl = ca, crl_holder

    def verified(self):
        return verify_certificate(self.cert, trust_anchor=self._ca.certificate,
                                  crl=self._crl[0], at=T0)


@pytest.fixture(scope="module")
def city():
    ca = CertificateAuthority.create("city-ca", not_before=T0 - 10 * DAY)
    crl = [None]
    parties = {name: Party(ca, name, role, crl) for name, role in
               [("dev-1", "device"), ("gw-1", "gateway"), ("dev-2", "device"),
                ("ab", "device"), ("a", "device")]}
    crl[0] = ca.publish_crl(at=T0 - DAY, next_update=T0 + DAY)
    return parties


def _raw(key):
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_both_sides_derive_the_same_key(city):
    # Prepare
    dev, gw = city["dev-1"], city["gw-1"]

    # Execute
    on_device = derive_key(dev.keys, gw.verified(), sender_id="dev-1", receiver_id="gw-1", epoch=7)
    on_gateway = derive_key(gw.keys.agreement_key, dev.verified(), sender_id="dev-1",
                            receiver_id="gw-1", epoch=7)

    # Assert
    assert isinstance(on_device, bytes) and len(on_device) == 32
    assert on_device == on_gateway


def test_epochs_directions_and_peers_give_different_keys(city):
    # Prepare
    dev, gw, dev2 = city["dev-1"], city["gw-1"], city["dev-2"]
    gw_cert = gw.verified()

    # Execute
    keys = [derive_key(dev.keys, gw_cert, sender_id="dev-1", receiver_id="gw-1", epoch=e)
            for e in range(4)]
    keys += [derive_key(dev.keys, gw_cert, sender_id="gw-1", receiver_id="dev-1", epoch=e)
             for e in range(4)]
    keys += [derive_key(dev2.keys, gw_cert, sender_id="dev-2", receiver_id="gw-1", epoch=e)
             for e in range(4)]

    # Assert
    assert len(set(keys)) == len(keys) == 12


def test_known_answer_against_cryptography(city):
    # Prepare
    dev, gw = city["dev-1"], city["gw-1"]
    shared = dev.keys.agreement_key.exchange(gw.keys.agreement_public_key)
    salt = _raw(dev.keys.agreement_public_key) + _raw(gw.keys.agreement_public_key)
    info = (b"privcity-v1|" + b"\x00\x00\x00\x0bAES-256-GCM" + b"\x00\x00\x00\x05dev-1"
            + b"\x00\x00\x00\x04gw-1" + (2**40 + 3).to_bytes(8, "big"))
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)

    # Execute
    key = derive_key(dev.keys, gw.verified(), sender_id="dev-1", receiver_id="gw-1",
                     epoch=2**40 + 3)

    # Assert
    assert kdf_info("dev-1", "gw-1", 2**40 + 3) == info
    assert kdf_salt(dev.keys.agreement_public_key, gw.keys.agreement_public_key) == salt
    assert key == expected


TRICKY = ["a", "ab", "b", "c", "bc", "abc", "a|b", "|", "\x00", "a\x00", "\x00\x00\x00\x01a",
          "é", "e\u0301", "𝔸"]


def test_info_is_injective_on_tricky_ids():
    # Prepare
    tuples = [(s, r, e) for s, r in itertools.permutations(TRICKY, 2) for e in (0, 1, 256)]

    # Execute
    infos = {kdf_info(s, r, e) for s, r, e in tuples}

    # Assert
    assert len(infos) == len(tuples)
    assert kdf_info("ab", "c", 1) != kdf_info("a", "bc", 1)
    assert all(i.startswith(INFO_PREFIX) for i in infos)


def test_info_decodes_back_to_its_fields():
    # Prepare: a decoder of the documented layout, to show nothing is ambiguous
    def decode(info):
        rest, fields = info[len(INFO_PREFIX):], []
        for _ in range(3):
            (n,), rest = struct.unpack(">I", rest[:4]), rest[4:]
            fields.append(rest[:n].decode("utf-8"))
            rest = rest[n:]
        (epoch,) = struct.unpack(">Q", rest)
        return tuple(fields) + (epoch,)

    # Execute
    decoded = [decode(kdf_info(s, r, 9)) for s, r in itertools.permutations(TRICKY, 2)]

    # Assert
    assert decoded == [("AES-256-GCM", s, r, 9) for s, r in itertools.permutations(TRICKY, 2)]


def test_tricky_ids_give_different_keys(city):
    # Prepare: the same pair of parties, ids swapped between the roles
    a, ab = city["a"], city["ab"]

    # Execute
    k1 = derive_key(a.keys, ab.verified(), sender_id="ab", receiver_id="a", epoch=1)
    k2 = derive_key(a.keys, ab.verified(), sender_id="a", receiver_id="ab", epoch=1)

    # Assert
    assert k1 != k2
    assert kdf_info("ab", "a", 1) != kdf_info("a", "ab", 1)


@pytest.mark.parametrize("sender, receiver, epoch, error", [
    ("dev-1", "dev-1", 0, ValueError),
    ("dev-1", "dev-2", 0, ValueError),      # peer gw-1 is neither side
    ("dev-1", "gw-1", -1, ValueError),
    ("dev-1", "gw-1", 2**64, ValueError),
    ("dev-1", "gw-1", 1.0, TypeError),
    ("dev-1", "gw-1", True, TypeError),
    ("", "gw-1", 0, ValueError),
    (b"dev-1", "gw-1", 0, TypeError),
])
def test_derive_key_validates(city, sender, receiver, epoch, error):
    # Prepare
    dev, gw = city["dev-1"], city["gw-1"]

    # Execute / Assert
    with pytest.raises(error):
        derive_key(dev.keys, gw.verified(), sender_id=sender, receiver_id=receiver, epoch=epoch)


def test_unverified_certificate_refused(city):
    # Prepare
    dev, gw = city["dev-1"], city["gw-1"]

    # Execute / Assert
    with pytest.raises(TypeError, match="verify"):
        derive_key(dev.keys, gw.cert, sender_id="dev-1", receiver_id="gw-1", epoch=0)


def test_unknown_suite_refused():
    # Execute / Assert
    with pytest.raises(ValueError, match="suite"):
        kdf_info("a", "b", 0, suite="ChaCha20-Poly1305")


def test_aead_round_trip_between_sides(city):
    # Prepare
    dev, gw = city["dev-1"], city["gw-1"]
    send = AES256GCM(derive_key(dev.keys, gw.verified(), sender_id="dev-1", receiver_id="gw-1",
                                epoch=3))
    recv = AES256GCM(derive_key(gw.keys, dev.verified(), sender_id="dev-1", receiver_id="gw-1",
                                epoch=3))
    other_epoch = AES256GCM(derive_key(gw.keys, dev.verified(), sender_id="dev-1",
                                       receiver_id="gw-1", epoch=4))
    nonce, message, ad = (0).to_bytes(12, "big"), b"temperature=21.5;count=17", b"dev-1|3"

    # Execute
    sealed = send.encrypt(nonce, message, ad)
    opened = recv.decrypt(nonce, sealed, ad)

    # Assert
    assert opened == message
    with pytest.raises(AuthenticationError):
        other_epoch.decrypt(nonce, sealed, ad)


def test_keyring_caches_and_matches_derive_key(city):
    # Prepare
    dev, gw = city["dev-1"], city["gw-1"]
    ring_dev, ring_gw = KeyRing(dev.keys, "dev-1"), KeyRing(gw.keys, "gw-1")
    gw_cert, dev_cert = gw.verified(), dev.verified()

    # Execute
    send = ring_dev.sending_key(gw_cert, 5)
    again = ring_dev.sending_key(gw_cert, 5)
    back = ring_dev.receiving_key(gw_cert, 5)

    # Assert
    assert send is again
    assert send == ring_gw.receiving_key(dev_cert, 5)
    assert back == ring_gw.sending_key(dev_cert, 5)
    assert send != back
    assert send == derive_key(dev.keys, gw_cert, sender_id="dev-1", receiver_id="gw-1", epoch=5)
    assert len(ring_dev) == 2


def test_keyring_agrees_once_per_peer_key_and_still_derives_every_epochs_key(city, monkeypatch):
    # Prepare: count the ring's X25519 agreements
    from privcity.crypto import agreement
    dev, gw, dev2 = city["dev-1"], city["gw-1"], city["dev-2"]
    real, exchanges = gw.keys.agreement_key, []
    real_agree = agreement._agree

    def agree(*a, **k):
        exchanges.append(k)
        return real_agree(*a, **k)

    monkeypatch.setattr(agreement, "_agree", agree)
    ring = KeyRing(gw.keys, "gw-1")

    # Execute
    keys = [ring.receiving_key(dev.verified(), e) for e in range(6)]
    keys += [ring.sending_key(dev.verified(), e) for e in range(3)]
    other = ring.receiving_key(dev2.verified(), 0)
    ring.forget("dev-1")
    again = ring.receiving_key(dev.verified(), 0)

    # Assert: one exchange per (peer key, direction), and after forget() one more; every key
    # is derive_key's, distinct per epoch and direction
    assert len(exchanges) == 4
    assert keys[:6] == [derive_key(real, dev.verified(), sender_id="dev-1", receiver_id="gw-1",
                                   epoch=e) for e in range(6)]
    assert keys[6:] == [derive_key(real, dev.verified(), sender_id="gw-1", receiver_id="dev-1",
                                   epoch=e) for e in range(3)]
    assert len(set(keys + [other])) == 10
    assert again == keys[0]


def test_keyring_rotation_and_forget(city):
    # Prepare
    dev, gw, dev2 = city["dev-1"], city["gw-1"], city["dev-2"]
    ring = KeyRing(gw.keys, "gw-1")
    for epoch in range(4):
        ring.sending_key(dev.verified(), epoch)
        ring.receiving_key(dev2.verified(), epoch)

    # Execute
    dropped_old = ring.discard_before(2)
    dropped_peer = ring.forget("dev-2")

    # Assert
    assert (dropped_old, dropped_peer, len(ring)) == (4, 2, 2)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_keyring_hides_and_refuses_pickling(city, protocol):
    # Prepare
    dev, gw = city["dev-1"], city["gw-1"]
    ring = KeyRing(dev.keys, "dev-1")
    key = ring.sending_key(gw.verified(), 0)
    secret = dev.keys.agreement_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())

    # Execute
    text = repr(ring) + str(ring)
    with pytest.raises(TypeError, match="pickle") as info:
        pickle.dumps(ring, protocol=protocol)
    with pytest.raises(TypeError):
        copy.deepcopy(ring)

    # Assert
    for blob in (key, secret):
        assert blob.hex() not in text and repr(blob) not in text
        assert blob.hex() not in str(info.value)


def test_low_order_peer_key_refused(city):
    # Prepare: a CA that certified an all-zero (low-order) X25519 key
    ca = CertificateAuthority.create("lax-ca", not_before=T0 - DAY)
    keys = IdentityKeys.generate()
    cert = ca.issue("evil", "device", identity_key=keys.identity_public_key,
                    agreement_key=x25519.X25519PublicKey.from_public_bytes(bytes(32)),
                    not_before=T0 - DAY)
    verified = verify_certificate(cert, trust_anchor=ca.certificate,
                                  crl=ca.publish_crl(at=T0 - DAY), at=T0)

    # Execute / Assert
    with pytest.raises(ValueError, match="low order"):
        derive_key(city["dev-1"].keys, verified, sender_id="dev-1", receiver_id="evil", epoch=0)
