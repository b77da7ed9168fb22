"""Envelope v1 known-answer vectors (tests/data/envelope_vectors.json, made by
tests/data/make_envelope_vectors.py), checked against cryptography's AESGCM and HKDF directly,
then against privcity's own sender and receiver."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import pathlib
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privcity.crypto import EnvelopeReceiver, EnvelopeSender
from privcity.crypto.agreement import kdf_info, kdf_salt
from privcity.crypto.envelope import parse_header
from privcity.crypto.pki import CertificateAuthority, IdentityKeys, verify_certificate

VECTORS = json.loads((pathlib.Path(__file__).parent / "data" / "envelope_vectors.json")
                     .read_text(encoding="utf-8"))
IDS = [v["name"] for v in VECTORS]
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def _x(v, field):
    return bytes.fromhex(v[field])


def test_vectors_cover_every_content_type_and_edge():
    # Assert
    assert len(VECTORS) >= 5
    assert {v["content_type"] for v in VECTORS} == {0, 1, 2}
    assert any(v["counter"] == 2**64 - 2 and v["epoch"] == 2**64 - 1 for v in VECTORS)


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_vector_against_cryptography(v):
    # Prepare
    key, nonce, header = _x(v, "key_hex"), _x(v, "nonce_hex"), _x(v, "header_hex")
    plaintext, envelope = _x(v, "plaintext_hex"), _x(v, "envelope_hex")
    s_priv = x25519.X25519PrivateKey.from_private_bytes(_x(v, "sender_x25519_private_hex"))
    r_priv = x25519.X25519PrivateKey.from_private_bytes(_x(v, "receiver_x25519_private_hex"))

    # Execute
    sealed = AESGCM(key).encrypt(nonce, plaintext, header)
    opened = AESGCM(key).decrypt(nonce, envelope[len(header):], header)
    derived = HKDF(algorithm=hashes.SHA256(), length=32,
                   salt=kdf_salt(s_priv.public_key(), r_priv.public_key()),
                   info=kdf_info(v["sender_id"], v["receiver_id"], v["epoch"]),
                   ).derive(s_priv.exchange(r_priv.public_key()))

    # Assert
    assert envelope == header + sealed and opened == plaintext and derived == key
    sid, rid = v["sender_id"].encode(), v["receiver_id"].encode()
    assert nonce == hashlib.sha256(sid).digest()[:4] + struct.pack(">Q", v["counter"])
    assert header == (b"PCEV" + bytes((1, 1, v["content_type"], 0, len(sid))) + sid
                      + bytes((len(rid),)) + rid
                      + struct.pack(">QQI", v["epoch"], v["counter"], len(plaintext) + 16))
    parsed = parse_header(envelope)
    assert (parsed.sender_id, parsed.receiver_id, parsed.epoch, parsed.counter,
            parsed.content_type, parsed.length) == (v["sender_id"], v["receiver_id"],
                                                    v["epoch"], v["counter"],
                                                    v["content_type"], len(header))


@pytest.fixture(scope="module")
def pki():
    ca = CertificateAuthority.create("vectors-ca", not_before=T0 - 10 * DAY)
    keys, certs = {}, {}
    for v in VECTORS:
        for role, who in (("device", "sender"), ("gateway", "receiver")):
            name = v[f"{who}_id"]
            if name in keys:
                continue
            agreement = x25519.X25519PrivateKey.from_private_bytes(
                _x(v, f"{who}_x25519_private_hex"))
            keys[name] = IdentityKeys(ed25519.Ed25519PrivateKey.generate(), agreement)
            certs[name] = ca.issue(name, role, identity_key=keys[name].identity_public_key,
                                   agreement_key=keys[name].agreement_public_key,
                                   not_before=T0 - DAY, not_after=T0 + DAY)
    crl = ca.publish_crl(at=T0 - DAY, next_update=T0 + DAY)
    return ca, keys, certs, crl


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_privcity_seals_and_opens_the_vector(pki, tmp_path, v):
    # Prepare: a sender whose state file says the vector's counter comes next
    ca, keys, certs, crl = pki
    state = tmp_path / "ctr"
    state.write_text(json.dumps({"format": "privcity-envelope-counter", "version": 1,
                                 "sender_id": v["sender_id"], "high_water": v["counter"]}))
    sender = EnvelopeSender(keys[v["sender_id"]], v["sender_id"], state_path=state)
    receiver_cert = verify_certificate(certs[v["receiver_id"]], trust_anchor=ca.certificate,
                                       crl=crl, at=T0)
    rx = EnvelopeReceiver(keys[v["receiver_id"]], v["receiver_id"],
                          trust_anchor=ca.certificate, crl=crl)
    rx.add_sender(certs[v["sender_id"]], at=T0)

    # Execute
    wire = sender.seal_many(receiver_cert, v["epoch"], [_x(v, "plaintext_hex")],
                            content_type=v["content_type"])[0]
    opened = rx.open(_x(v, "envelope_hex"), at=T0)

    # Assert
    assert wire == _x(v, "envelope_hex")
    assert opened.payload == _x(v, "plaintext_hex") and opened.counter == v["counter"]
