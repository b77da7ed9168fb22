"""Device PKI: issuing and verifying certificates (chain, validity window, CRL, roles), the
layout of the X25519 agreement key, PEM files with and without passphrase, no key leaks."""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import pickle

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.x509.oid import NameOID

import privcity
from privcity.crypto import pki
from privcity.crypto.pki import (
    AGREEMENT_KEY_OID,
    CertificateAuthority,
    CertificateError,
    IdentityKeys,
    VerifiedCertificate,
    verify_certificate,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2030, 1, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)


def _raw(key):
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture(scope="module")
def ca():
    return CertificateAuthority.create("city-ca", not_before=T0 - 10 * DAY,
                                       not_after=T0 + 3650 * DAY)


@pytest.fixture(scope="module")
def other_ca():
    return CertificateAuthority.create("other-ca", not_before=T0 - 10 * DAY,
                                       not_after=T0 + 3650 * DAY)


@pytest.fixture(scope="module")
def keys():
    return IdentityKeys.generate()


def _issue(ca, keys, subject_id="sensor-0042", role="device", start=T0, days=30):
    return ca.issue(subject_id, role, identity_key=keys.identity_public_key,
                    agreement_key=keys.agreement_public_key,
                    not_before=start, not_after=start + days * DAY)


def _crl(ca, at=T0):
    return ca.publish_crl(at=at, next_update=at + 7 * DAY)


def _kind(excinfo):
    return excinfo.value.kind


# --- issue and verify -------------------------------------------------------------------------

def test_issue_and_verify(ca, keys):
    # Prepare
    cert = _issue(ca, keys)

    # Execute
    verified = verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca),
                                  at=T0 + DAY, role="device", subject_id="sensor-0042")

    # Assert
    assert isinstance(verified, VerifiedCertificate)
    assert verified.subject_id == "sensor-0042"
    assert verified.role == "device"
    assert verified.serial_number == cert.serial_number
    assert verified.not_before == T0 and verified.not_after == T0 + 30 * DAY
    assert _raw(verified.identity_key) == _raw(keys.identity_public_key)
    assert _raw(verified.agreement_key) == _raw(keys.agreement_public_key)


def test_certificate_layout(ca, keys):
    # Prepare
    cert = _issue(ca, keys, role="gateway")

    # Execute
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    ext = cert.extensions.get_extension_for_oid(AGREEMENT_KEY_OID)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    agreement = serialization.load_der_public_key(ext.value.value)

    # Assert
    assert (cn, ou) == ("sensor-0042", "gateway")
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert isinstance(agreement, x25519.X25519PublicKey)
    assert _raw(agreement) == _raw(keys.agreement_public_key)
    assert ext.critical is False
    assert bc.critical and bc.value.ca is False
    assert cert.issuer == ca.certificate.subject


def test_serials_differ(ca, keys):
    # Prepare / Execute
    serials = {_issue(ca, keys).serial_number for _ in range(8)}

    # Assert
    assert len(serials) == 8


def test_certificates_of_one_subject_have_one_size_whatever_their_serial(ca, keys):
    # Prepare / Execute: with 159-bit random serials, 1 in 256 has a zero top byte (19 DER
    # bytes), and a device's bytes on the wire (it sends its certificate) varied between runs
    certs = [_issue(ca, keys) for _ in range(300)]

    # Assert
    assert {len(c.public_bytes(serialization.Encoding.DER)) for c in certs} == {
        len(certs[0].public_bytes(serialization.Encoding.DER))}
    assert {c.serial_number.bit_length() for c in certs} == {159}


def test_accepts_der_and_pem_bytes(ca, keys):
    # Prepare
    cert = _issue(ca, keys)
    crl = _crl(ca)

    # Execute
    from_der = verify_certificate(cert.public_bytes(serialization.Encoding.DER),
                                  trust_anchor=ca.certificate, crl=crl, at=T0)
    from_pem = verify_certificate(cert.public_bytes(serialization.Encoding.PEM),
                                  trust_anchor=ca.certificate, crl=crl, at=T0)

    # Assert
    assert from_der.serial_number == from_pem.serial_number == cert.serial_number


def test_verified_certificate_cannot_be_forged(ca, keys):
    # Prepare
    cert = _issue(ca, keys)
    verified = verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca), at=T0)

    # Execute / Assert
    with pytest.raises(TypeError, match="verify_certificate"):
        VerifiedCertificate(cert, "x", "device", 1, T0, T0, keys.identity_public_key,
                            keys.agreement_public_key)
    with pytest.raises(TypeError, match="verify_certificate"):
        dataclasses.replace(verified, subject_id="someone-else")


# --- validity window --------------------------------------------------------------------------

@pytest.mark.parametrize("at, kind", [
    (T0 - dt.timedelta(seconds=1), "not_yet_valid"),
    (T0 + 30 * DAY + dt.timedelta(seconds=1), "expired"),
])
def test_outside_validity_window(ca, keys, at, kind):
    # Prepare
    cert = _issue(ca, keys)
    crl = _crl(ca, at=at - DAY)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=ca.certificate, crl=crl, at=at)

    # Assert
    assert _kind(info) == kind


@pytest.mark.parametrize("at", [T0, T0 + 30 * DAY])
def test_window_bounds_are_inclusive(ca, keys, at):
    # Prepare
    cert = _issue(ca, keys)

    # Execute
    verified = verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca, at - DAY),
                                  at=at)

    # Assert
    assert verified.serial_number == cert.serial_number


def test_naive_time_refused(ca, keys):
    # Prepare
    cert = _issue(ca, keys)

    # Execute / Assert
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca),
                           at=dt.datetime(2030, 1, 2))


def test_other_timezone_is_converted(ca, keys):
    # Prepare: 23:30 on Dec 31 at UTC-1 is 00:30 UTC on Jan 1, inside the window
    cert = _issue(ca, keys)
    at = dt.datetime(2029, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-1)))

    # Execute
    verified = verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca, T0 - DAY),
                                  at=at)

    # Assert
    assert verified.subject_id == "sensor-0042"


# --- revocation -------------------------------------------------------------------------------

def test_revoked_via_crl(keys):
    # Prepare
    ca = CertificateAuthority.create("revoking-ca", not_before=T0 - DAY)
    revoked, kept = _issue(ca, keys), _issue(ca, keys, subject_id="sensor-0043")
    before = _crl(ca)
    ca.revoke(revoked, at=T0)
    after = ca.publish_crl(at=T0 + DAY, next_update=T0 + 8 * DAY)

    # Execute
    ok_before = verify_certificate(revoked, trust_anchor=ca.certificate, crl=before, at=T0)
    ok_kept = verify_certificate(kept, trust_anchor=ca.certificate, crl=after, at=T0 + DAY)
    with pytest.raises(CertificateError) as info:
        verify_certificate(revoked, trust_anchor=ca.certificate, crl=after, at=T0 + DAY)

    # Assert
    assert ok_before.serial_number == revoked.serial_number
    assert ok_kept.subject_id == "sensor-0043"
    assert _kind(info) == "revoked"
    assert isinstance(info.value, privcity.PrivcityError)
    assert revoked.serial_number in ca.revoked
    assert after.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None


def test_crl_numbers_grow(keys):
    # Prepare
    ca = CertificateAuthority.create("numbering-ca", not_before=T0 - DAY)

    # Execute
    numbers = [_crl(ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
               for _ in range(3)]

    # Assert
    assert numbers == [1, 2, 3]


def test_crl_with_bad_signature_rejected(ca, keys):
    # Prepare: same issuer name as the CA, signed by another key
    impostor = CertificateAuthority.create("city-ca", not_before=T0 - DAY)
    impostor.revoke(12345)
    forged = _crl(impostor)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(_issue(ca, keys), trust_anchor=ca.certificate, crl=forged, at=T0)

    # Assert
    assert _kind(info) == "crl_bad_signature"


def test_crl_with_tampered_bytes_rejected(ca, keys):
    # Prepare: change the CRL's next_update year (the signature no longer covers it)
    der = bytearray(_crl(ca).public_bytes(serialization.Encoding.DER))
    stamp = b"300108000000Z"  # next_update = T0 + 7 days, UTCTime
    at = bytes(der).index(stamp)
    der[at:at + 2] = b"31"
    tampered = x509.load_der_x509_crl(bytes(der))

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(_issue(ca, keys), trust_anchor=ca.certificate, crl=tampered, at=T0)

    # Assert
    assert tampered.next_update_utc.year == 2031
    assert _kind(info) == "crl_bad_signature"


def test_crl_from_another_ca_rejected(ca, other_ca, keys):
    # Prepare
    crl = _crl(other_ca)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(_issue(ca, keys), trust_anchor=ca.certificate, crl=crl, at=T0)

    # Assert
    assert _kind(info) == "crl_wrong_issuer"


@pytest.mark.parametrize("crl_at, at, kind", [
    (T0, T0 + 7 * DAY + dt.timedelta(seconds=1), "crl_stale"),
    (T0 + DAY, T0, "crl_not_yet_valid"),
])
def test_crl_freshness(ca, keys, crl_at, at, kind):
    # Prepare
    cert = _issue(ca, keys, days=60)
    crl = _crl(ca, at=crl_at)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=ca.certificate, crl=crl, at=at)

    # Assert
    assert _kind(info) == kind


# --- chain ------------------------------------------------------------------------------------

def test_signed_by_another_ca_rejected(ca, other_ca, keys):
    # Prepare
    cert = _issue(other_ca, keys)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca), at=T0)

    # Assert
    assert _kind(info) == "wrong_issuer"


def test_signed_by_another_ca_with_same_name_rejected(ca, keys):
    # Prepare: an impostor CA that copies the name (and so the issuer field)
    impostor = CertificateAuthority.create("city-ca", not_before=T0 - DAY)
    cert = _issue(impostor, keys)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca), at=T0)

    # Assert: caught by the authority key identifier before the signature
    assert _kind(info) == "wrong_issuer"
    assert "key identifier" in str(info.value)


def test_impostor_without_key_identifier_fails_signature(ca, keys):
    # Prepare: same issuer name, no AKI, signed by another key
    impostor = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-0042"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "device")])
    spki = keys.agreement_public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.certificate.subject)
            .public_key(keys.identity_public_key).serial_number(7)
            .not_valid_before(T0).not_valid_after(T0 + DAY)
            .add_extension(x509.UnrecognizedExtension(AGREEMENT_KEY_OID, spki), critical=False)
            .sign(impostor, None))

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca), at=T0)

    # Assert
    assert _kind(info) == "bad_signature"


@pytest.mark.parametrize("field", ["subject_id", "agreement_key", "signature"])
def test_tampered_certificate_rejected(ca, keys, field):
    # Prepare
    der = bytearray(_issue(ca, keys).public_bytes(serialization.Encoding.DER))
    if field == "subject_id":
        at = bytes(der).index(b"sensor-0042")
        der[at + len("sensor-004")] = ord("3")
    elif field == "agreement_key":
        der[bytes(der).index(_raw(keys.agreement_public_key))] ^= 0x01
    else:
        der[-1] ^= 0x01

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(bytes(der), trust_anchor=ca.certificate, crl=_crl(ca), at=T0)

    # Assert
    assert _kind(info) == "bad_signature"


def test_garbage_certificate_is_malformed(ca):
    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(b"\x30\x03\x02\x01\x01", trust_anchor=ca.certificate, crl=_crl(ca),
                           at=T0)

    # Assert
    assert _kind(info) == "malformed"


def test_leaf_as_trust_anchor_rejected(ca, keys):
    # Prepare
    leaf = _issue(ca, keys)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(leaf, trust_anchor=leaf, crl=_crl(ca), at=T0)

    # Assert
    assert _kind(info) == "not_a_ca"


def test_expired_ca_rejected(keys):
    # Prepare
    short = CertificateAuthority.create("short-ca", not_before=T0 - DAY, not_after=T0 + DAY)
    cert = _issue(short, keys, days=30)

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=short.certificate, crl=_crl(short, T0 + 2 * DAY),
                           at=T0 + 2 * DAY)

    # Assert
    assert _kind(info) == "expired"
    assert "CA" in str(info.value)


# --- role and subject -------------------------------------------------------------------------

@pytest.mark.parametrize("expect_role, expect_id, kind", [
    ("aggregator", None, "wrong_role"),
    (None, "sensor-9999", "wrong_subject"),
])
def test_role_and_subject_checked(ca, keys, expect_role, expect_id, kind):
    # Prepare
    cert = _issue(ca, keys, role="device")

    # Execute
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca), at=T0,
                           role=expect_role, subject_id=expect_id)

    # Assert
    assert _kind(info) == kind


@pytest.mark.parametrize("role", ["device", "gateway", "aggregator"])
def test_every_role_verifies(ca, keys, role):
    # Execute
    verified = verify_certificate(_issue(ca, keys, role=role), trust_anchor=ca.certificate,
                                  crl=_crl(ca), at=T0, role=role)

    # Assert
    assert verified.role == role


@pytest.mark.parametrize("subject_id, role, error", [
    ("", "device", ValueError),
    ("x" * 65, "device", ValueError),
    ("sensor", "server", ValueError),
    (42, "device", TypeError),
])
def test_issue_validates(ca, keys, subject_id, role, error):
    # Execute / Assert
    with pytest.raises(error):
        ca.issue(subject_id, role, identity_key=keys.identity_public_key,
                 agreement_key=keys.agreement_public_key, not_before=T0)


def test_issue_refuses_swapped_keys(ca, keys):
    # Execute / Assert
    with pytest.raises(TypeError, match="identity_key"):
        ca.issue("sensor", "device", identity_key=keys.agreement_public_key,
                 agreement_key=keys.agreement_public_key, not_before=T0)


# --- PEM files --------------------------------------------------------------------------------

@pytest.mark.parametrize("passphrase", [None, "correct horse", b"\x00binary\xff"])
def test_identity_keys_round_trip(tmp_path, keys, passphrase):
    # Prepare
    path = tmp_path / "device.key.pem"

    # Execute
    keys.save(path, passphrase=passphrase)
    loaded = IdentityKeys.load(path, passphrase=passphrase)
    text = path.read_bytes()

    # Assert
    assert _raw(loaded.identity_public_key) == _raw(keys.identity_public_key)
    assert _raw(loaded.agreement_public_key) == _raw(keys.agreement_public_key)
    assert (b"ENCRYPTED PRIVATE KEY" in text) == (passphrase is not None)
    assert os.stat(path).st_mode & 0o077 == 0


@pytest.mark.parametrize("saved, given, kind", [
    ("right", "wrong", "bad_passphrase"),
    ("right", None, "passphrase_required"),
    (None, "right", "bad_passphrase"),
])
def test_identity_keys_passphrase_errors(tmp_path, keys, saved, given, kind):
    # Prepare
    path = tmp_path / "device.key.pem"
    keys.save(path, passphrase=saved)

    # Execute
    with pytest.raises(CertificateError) as info:
        IdentityKeys.load(path, passphrase=given)

    # Assert
    assert _kind(info) == kind


@pytest.mark.parametrize("make", [ed25519.Ed25519PrivateKey.generate,
                                  x25519.X25519PrivateKey.generate])
def test_private_key_round_trip_and_wrong_passphrase(tmp_path, make):
    # Prepare
    key = make()
    path = tmp_path / "k.pem"

    # Execute
    pki.save_private_key(path, key, passphrase="s3cret")
    loaded = pki.load_private_key(path, passphrase="s3cret")
    with pytest.raises(CertificateError) as info:
        pki.load_private_key(path, passphrase="S3cret")

    # Assert
    assert _raw(loaded.public_key()) == _raw(key.public_key())
    assert _kind(info) == "bad_passphrase"
    assert "wrong passphrase" in str(info.value)


def test_certificate_and_crl_round_trip(tmp_path, ca, keys):
    # Prepare
    cert, crl = _issue(ca, keys), _crl(ca)

    # Execute
    pki.save_certificate(tmp_path / "c.pem", cert)
    pki.save_crl(tmp_path / "crl.pem", crl)
    pki.save_certificate(tmp_path / "ca.pem", ca.certificate)
    verified = verify_certificate(pki.load_certificate(tmp_path / "c.pem"),
                                  trust_anchor=pki.load_certificate(tmp_path / "ca.pem"),
                                  crl=pki.load_crl(tmp_path / "crl.pem"), at=T0)

    # Assert
    assert verified.certificate == cert


def test_load_certificate_garbage(tmp_path):
    # Prepare
    (tmp_path / "bad.pem").write_bytes(b"not a certificate")

    # Execute
    with pytest.raises(CertificateError) as info:
        pki.load_certificate(tmp_path / "bad.pem")

    # Assert
    assert _kind(info) == "malformed"


def test_ca_round_trip_with_revocations(tmp_path, keys):
    # Prepare
    ca = CertificateAuthority.create("saved-ca", not_before=T0 - DAY)
    cert = _issue(ca, keys)
    ca.revoke(cert, at=T0)
    crl = _crl(ca)
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem", passphrase="ca pass")

    # Execute
    loaded = CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.pem",
                                       passphrase="ca pass", crl=crl)
    fresh = loaded.publish_crl(at=T0 + DAY)
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust_anchor=loaded.certificate, crl=fresh, at=T0 + DAY)

    # Assert
    assert _kind(info) == "revoked"
    assert fresh.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ca.key").read_bytes()


# --- no key leaks -----------------------------------------------------------------------------

def _secrets(holder):
    if isinstance(holder, IdentityKeys):
        keys = [holder.signing_key, holder.agreement_key]
    else:
        keys = [holder._key]
    return [k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption()) for k in keys]


@pytest.mark.parametrize("which", ["keys", "ca"])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_private_holders_cannot_be_pickled(ca, keys, which, protocol):
    # Prepare
    holder = keys if which == "keys" else ca

    # Execute
    with pytest.raises(TypeError, match="pickle") as info:
        pickle.dumps(holder, protocol=protocol)

    # Assert
    assert all(s.hex() not in str(info.value) for s in _secrets(holder))


@pytest.mark.parametrize("which", ["keys", "ca"])
def test_private_holders_cannot_be_copied_and_hide_keys(ca, keys, which):
    # Prepare
    holder = keys if which == "keys" else ca

    # Execute
    text = repr(holder) + str(holder)
    with pytest.raises(TypeError):
        copy.deepcopy(holder)

    # Assert
    assert all(s.hex() not in text and repr(s) not in text for s in _secrets(holder))


def test_error_pickles_with_kind():
    # Prepare
    error = CertificateError("revoked!", kind="revoked")

    # Execute
    back = pickle.loads(pickle.dumps(error))

    # Assert
    assert (str(back), back.kind) == ("revoked!", "revoked")
    assert isinstance(back, privcity.PrivcityError)


# --- a VerifiedCertificate checked again (issue_verified, re-verification) ----------------------

def _issue_verified(ca, keys, subject_id="sensor-0042", role="device", start=T0, days=30):
    return ca.issue_verified(subject_id, role, identity_key=keys.identity_public_key,
                             agreement_key=keys.agreement_public_key,
                             not_before=start, not_after=start + days * DAY)


def test_issue_verified_is_what_verify_certificate_makes_of_the_certificate(ca, keys):
    mine = _issue_verified(ca, keys)
    theirs = verify_certificate(mine.certificate, trust_anchor=ca.certificate, crl=_crl(ca),
                                at=T0 + DAY)
    for f in ("subject_id", "role", "serial_number", "not_before", "not_after", "issuer_key",
              "agreement_key_bytes"):
        assert getattr(mine, f) == getattr(theirs, f), f
    assert mine.certificate.public_bytes(serialization.Encoding.DER) == \
        theirs.certificate.public_bytes(serialization.Encoding.DER)
    assert _raw(mine.identity_key) == _raw(theirs.identity_key)
    assert mine.issuer_key == _raw(ca.certificate.public_key())
    # and it is refused for what issue() refuses
    with pytest.raises(ValueError, match="role"):
        _issue_verified(ca, keys, role="mayor")


def test_reverified_certificate_keeps_every_check_but_the_signature(ca, keys):
    v = _issue_verified(ca, keys)
    crl = _crl(ca)
    assert verify_certificate(v, trust_anchor=ca.certificate, crl=crl, at=T0 + DAY) is v
    for at, kind in ((T0 - DAY, "not_yet_valid"), (T0 + 31 * DAY, "expired")):
        with pytest.raises(CertificateError) as e:
            verify_certificate(v, trust_anchor=ca.certificate, crl=_crl(ca, at=at), at=at)
        assert e.value.kind == kind
    with pytest.raises(CertificateError) as e:  # a stale CRL
        verify_certificate(v, trust_anchor=ca.certificate, crl=crl, at=T0 + 8 * DAY)
    assert e.value.kind == "crl_stale"
    with pytest.raises(CertificateError) as e:
        verify_certificate(v, trust_anchor=ca.certificate, crl=crl, at=T0 + DAY, role="gateway")
    assert e.value.kind == "wrong_role"
    with pytest.raises(CertificateError) as e:
        verify_certificate(v, trust_anchor=ca.certificate, crl=crl, at=T0 + DAY,
                           subject_id="sensor-0043")
    assert e.value.kind == "wrong_subject"


def test_reverified_certificate_revoked_since_is_refused():
    ca = CertificateAuthority.create("city-ca", not_before=T0 - 10 * DAY,
                                     not_after=T0 + 3650 * DAY)
    v = _issue_verified(ca, IdentityKeys.generate())
    ca.revoke(v.serial_number, at=T0)
    with pytest.raises(CertificateError) as e:
        verify_certificate(v, trust_anchor=ca.certificate, crl=_crl(ca, at=T0 + DAY),
                           at=T0 + DAY)
    assert e.value.kind == "revoked"


def test_verified_against_another_ca_is_verified_from_scratch(ca, keys):
    # A CA of the same name but another key: the signature must be checked, and fails.
    twin = CertificateAuthority.create("city-ca", not_before=T0 - 10 * DAY,
                                       not_after=T0 + 3650 * DAY)
    v = _issue_verified(twin, keys)
    assert v.certificate.issuer == ca.certificate.subject
    with pytest.raises(CertificateError) as e:
        verify_certificate(v, trust_anchor=ca.certificate, crl=_crl(ca), at=T0 + DAY)
    assert e.value.kind in ("wrong_issuer", "bad_signature")
    # ... while the real CA's certificate, verified against it, passes
    w = verify_certificate(_issue(ca, keys), trust_anchor=ca.certificate, crl=_crl(ca),
                           at=T0 + DAY)
    assert verify_certificate(w, trust_anchor=ca.certificate, crl=_crl(ca), at=T0 + DAY) is w


def test_issuer_key_cannot_be_forged_by_replace(ca, keys):
    v = _issue_verified(ca, keys)
    with pytest.raises(TypeError):
        dataclasses.replace(v, issuer_key=b"\0" * 32)


def test_receiver_admits_its_own_cas_verified_certificate_and_no_other():
    from privcity.crypto import EnvelopeReceiver, EnvelopeSender
    now = dt.datetime.now(UTC)
    ca = CertificateAuthority.create("city-ca")
    twin = CertificateAuthority.create("city-ca")  # same name, another key
    server = IdentityKeys.generate()
    server_cert = ca.issue_verified("aggregator", "aggregator",
                                    identity_key=server.identity_public_key,
                                    agreement_key=server.agreement_public_key)
    rx = EnvelopeReceiver(server, "aggregator", trust_anchor=ca.certificate,
                          crl=ca.publish_crl(at=now - DAY))
    dev = IdentityKeys.generate()
    forged = twin.issue_verified("dev-1", "device", identity_key=dev.identity_public_key,
                                 agreement_key=dev.agreement_public_key)
    with pytest.raises(CertificateError):
        rx.add_sender(forged)
    good = ca.issue_verified("dev-1", "device", identity_key=dev.identity_public_key,
                             agreement_key=dev.agreement_public_key)
    assert rx.add_sender(good) is good
    tx = EnvelopeSender(dev, "dev-1", state_path=None, ephemeral=True)
    assert rx.open(tx.seal(server_cert, 0, b"reading")).payload == b"reading"
    ca.revoke(good.serial_number)
    with pytest.raises(CertificateError) as e:  # admitted again under a CRL that revokes it
        EnvelopeReceiver(server, "aggregator", trust_anchor=ca.certificate,
                         crl=ca.publish_crl()).add_sender(good)
    assert e.value.kind == "revoked"


def test_a_crl_checked_once_does_not_vouch_for_another(ca, other_ca, keys):
    # Prepare: a certificate verified with the CA's own CRL (its check is then remembered)
    cert = _issue(ca, keys)
    v = verify_certificate(cert, trust_anchor=ca.certificate, crl=_crl(ca), at=T0 + DAY)
    twin = CertificateAuthority.create("city-ca", not_before=T0 - 10 * DAY,
                                       not_after=T0 + 3650 * DAY)
    # Execute / Assert: another CA's CRL, and one under the CA's name but another key, are
    # refused, for the certificate and for its VerifiedCertificate alike
    for c in (cert, v):
        with pytest.raises(CertificateError) as e:
            verify_certificate(c, trust_anchor=ca.certificate, crl=_crl(other_ca), at=T0 + DAY)
        assert e.value.kind == "crl_wrong_issuer"
        with pytest.raises(CertificateError) as e:
            verify_certificate(c, trust_anchor=ca.certificate, crl=_crl(twin), at=T0 + DAY)
        assert e.value.kind == "crl_bad_signature"


def _forgeries(v, other_raw):
    """VerifiedCertificates made around verify_certificate: each claims another role."""
    import copy as _copy
    a = object.__new__(VerifiedCertificate)
    a.__dict__.update(v.__dict__)
    b = _copy.copy(v)
    if b is v:  # (copy returns the object itself: edit a __new__ one instead)
        b = object.__new__(VerifiedCertificate)
        b.__dict__.update(v.__dict__)
    object.__setattr__(b, "issuer_key", other_raw)

    class Sub(VerifiedCertificate):
        def __post_init__(self):  # the forgery: no token check, nothing registered
            return None

    c = Sub(**{f.name: getattr(v, f.name) for f in dataclasses.fields(v) if f.name != "_token"})
    d = v  # a genuine one edited in place afterwards (done by the caller)
    return [a, b, c, d]


def test_a_verified_certificate_made_or_edited_around_verify_certificate_is_verified_anew(
        ca, other_ca, keys):
    # Prepare: a genuine device certificate of another CA, dressed up as an aggregator of ours
    anchor_raw = _raw(ca.certificate.public_key())
    theirs = _issue_verified(other_ca, keys)
    forged = _forgeries(theirs, anchor_raw)
    for f in forged:
        object.__setattr__(f, "issuer_key", anchor_raw)
        object.__setattr__(f, "role", "aggregator")

    # Execute / Assert: each is verified from its certificate, which our CA did not sign
    for f in forged:
        with pytest.raises(CertificateError) as e:
            verify_certificate(f, trust_anchor=ca.certificate, crl=_crl(ca), at=T0 + DAY)
        assert e.value.kind in ("wrong_issuer", "bad_signature")


def test_an_edited_verified_certificate_of_our_ca_gets_its_certificates_contents_back(ca, keys):
    # Prepare: ours, its role edited after it was made
    v = _issue_verified(ca, keys)
    object.__setattr__(v, "role", "aggregator")

    # Execute
    got = verify_certificate(v, trust_anchor=ca.certificate, crl=_crl(ca), at=T0 + DAY)

    # Assert: verified anew, the role is the certificate's
    assert got is not v and got.role == "device" and got.subject_id == "sensor-0042"
