"""Envelopes under many keys in one native call: seal_each gives the bytes per-sender seal gives,
open_many opens them whatever the implementation, checked against OpenSSL's AES-GCM, and crafted
arguments or envelopes are refused, never read out of bounds."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity.crypto.envelope as envelope_module
from privcity.crypto.envelope import _receiver, _sender
from privcity import AuthenticationError, _core
from privcity._dispatch import _AES_LEVELS
from privcity.crypto import EnvelopeReceiver, EnvelopeSender
from privcity.crypto.envelope import (CONTENT_BYTES, CONTENT_METADATA, CONTENT_TENSOR,
                                      decode_tensor, parse_header, seal_each)
from privcity.crypto.pki import CertificateAuthority, IdentityKeys, verify_certificate

UTC = dt.timezone.utc
T0 = dt.datetime(2030, 1, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)
N = 6  # devices


class City:
    """A CA, a gateway that receives, and N devices with certificates."""

    def __init__(self) -> None:
        self.ca = CertificateAuthority.create("city-ca", not_before=T0 - 10 * DAY)
        self.crl = self.ca.publish_crl(at=T0 - DAY, next_update=T0 + 60 * DAY)
        self.keys = {name: IdentityKeys.generate()
                     for name in ["gw-1"] + [f"dev-{i}" for i in range(N)]}
        self.certs = {name: self.ca.issue(
            name, "gateway" if name.startswith("gw") else "device",
            identity_key=k.identity_public_key, agreement_key=k.agreement_public_key,
            not_before=T0 - DAY, not_after=T0 + 30 * DAY) for name, k in self.keys.items()}
        self.gw = verify_certificate(self.certs["gw-1"], trust_anchor=self.ca.certificate,
                                     crl=self.crl, at=T0)

    def senders(self) -> list[EnvelopeSender]:
        return [EnvelopeSender(self.keys[f"dev-{i}"], f"dev-{i}", state_path=None, ephemeral=True)
                for i in range(N)]

    def receiver(self) -> EnvelopeReceiver:
        rx = EnvelopeReceiver(self.keys["gw-1"], "gw-1", trust_anchor=self.ca.certificate,
                              crl=self.crl)
        for i in range(N):
            rx.add_sender(self.certs[f"dev-{i}"], at=T0)
        return rx


@pytest.fixture(scope="module")
def city() -> City:
    return City()


@pytest.fixture
def use(monkeypatch, implementation):
    """Makes the envelope layer run on ``implementation`` (the per-process choice otherwise)."""
    for module in (_sender, _receiver):
        monkeypatch.setattr(module, "_selected_aes", lambda: implementation)
    return implementation


def _payload_sets() -> list:
    rng = np.random.default_rng(5)
    return [
        rng.standard_normal((N, 37)).astype(np.float32),  # rows: the FL updates
        rng.standard_normal((N, 3)).astype(">f8"),  # big-endian: encoded little-endian
        np.zeros((N, 0), np.float32),  # empty tensors
        [b"", b"x", {"round": 3}, np.arange(5, dtype=np.int16), b"y" * 1000, {"a": "b"}],
    ]


@pytest.mark.parametrize("which", range(4), ids=["float32", "f8-big-endian", "empty", "mixed"])
def test_seal_each_gives_byte_for_byte_what_each_sender_seal_gives(city, use, which):
    # Prepare: two sets of senders with the same keys and counters
    payloads = _payload_sets()[which]
    one_by_one, together = city.senders(), city.senders()

    # Execute: two epochs, so counters and keys move on
    for epoch in (4, 5):
        expected = [s.seal(city.gw, epoch, p) for s, p in zip(one_by_one, payloads)]
        got = seal_each(together, city.gw, epoch, payloads)

        # Assert
        assert got == expected
    assert [s.next_counter for s in together] == [s.next_counter for s in one_by_one] == [2] * N


def test_seal_each_with_a_content_type_seals_raw_bytes_as_seal_does(city, use):
    # Prepare
    a, b = city.senders(), city.senders()
    raw = [bytes([i]) * (i * 7) for i in range(N)]

    # Execute / Assert
    assert seal_each(b, city.gw, 2, raw, content_type=CONTENT_METADATA) == \
        [s.seal(city.gw, 2, p, content_type=CONTENT_METADATA) for s, p in zip(a, raw)]


def test_envelopes_of_seal_each_decrypt_under_openssl_with_each_senders_own_key(city, use):
    # Prepare
    senders = city.senders()
    rows = np.arange(N * 9, dtype=np.float32).reshape(N, 9)

    # Execute
    sealed = seal_each(senders, city.gw, 7, rows)

    # Assert: an independent AES-GCM (OpenSSL) with the key each pair agreed opens each one
    for i, (s, env) in enumerate(zip(senders, sealed)):
        header = parse_header(env)
        assert (header.sender_id, header.epoch, header.counter) == (f"dev-{i}", 7, 0)
        key = s._ring.sending_key(city.gw, 7)
        nonce = envelope_module.make_nonce(f"dev-{i}", header.counter)
        plain = AESGCM(key).decrypt(nonce, env[header.length:], env[:header.length])
        np.testing.assert_array_equal(decode_tensor(plain), rows[i])
    keys = {s._ring.sending_key(city.gw, 7) for s in senders}
    assert len(keys) == N  # each envelope under its own key


def test_open_many_opens_a_batch_of_many_senders_and_refuses_each_forgery_alone(city, use):
    # Prepare: N senders' envelopes; one with a flipped ciphertext bit, one with a flipped tag
    # bit, and two whose tags were swapped (each a valid tag, of the other's envelope)
    senders, rx = city.senders(), city.receiver()
    rows = np.random.default_rng(1).standard_normal((N, 16)).astype(np.float32)
    sealed = seal_each(senders, city.gw, 3, rows)
    batch = list(sealed)
    body = bytearray(batch[1])
    body[-20] ^= 4
    batch[1] = bytes(body)
    tag = bytearray(batch[2])
    tag[-1] ^= 1
    batch[2] = bytes(tag)
    batch[3], batch[4] = batch[3][:-16] + sealed[4][-16:], batch[4][:-16] + sealed[3][-16:]

    # Execute
    opened, errors = rx.open_many(batch, at=T0)

    # Assert: the forgeries refused as such, the others opened, and a forgery burnt no counter
    assert sorted(errors) == [1, 2, 3, 4]
    assert all(isinstance(e, AuthenticationError) for e in errors.values())
    for i in (0, 5):
        np.testing.assert_array_equal(opened[i].value(), rows[i])
        assert opened[i].sender_id == f"dev-{i}"
    again, errors = rx.open_many([sealed[1], sealed[2], sealed[3], sealed[4], sealed[0]], at=T0)
    assert [o.sender_id for o in again[:4]] == ["dev-1", "dev-2", "dev-3", "dev-4"]
    assert list(errors) == [4] and errors[4].kind == "replay"


def test_an_envelope_sealed_for_one_epoch_does_not_open_as_another(city, use):
    # Prepare: rewrite the epoch in the header (the associated data) of a valid envelope
    senders, rx = city.senders(), city.receiver()
    env = bytearray(seal_each(senders[:1], city.gw, 3, [b"reading"])[0])
    header = parse_header(bytes(env))
    env[header.length - 20 + 7] ^= 1  # epoch 3 -> 2: the key and the AD both change

    # Execute
    opened, errors = rx.open_many([bytes(env)], at=T0)

    # Assert
    assert opened == [None] and isinstance(errors[0], AuthenticationError)


def test_seal_each_refuses_mismatched_arguments(city):
    senders = city.senders()
    with pytest.raises(ValueError, match="senders but"):
        seal_each(senders, city.gw, 1, [b"a"])
    with pytest.raises(TypeError, match="EnvelopeSender"):
        seal_each([object()], city.gw, 1, [b"a"])
    with pytest.raises(TypeError, match="VerifiedCertificate"):
        seal_each(senders[:1], city.certs["gw-1"], 1, [b"a"])
    with pytest.raises(ValueError, match="content_type"):
        seal_each(senders[:1], city.gw, 1, [b"a"], content_type=9)


# --- the native calls themselves ----------------------------------------------------------------

def _native_level(native_implementation: str) -> int:
    return _AES_LEVELS[native_implementation]


def test_native_calls_refuse_keys_nonces_and_header_lengths_that_do_not_fit(
        native_implementation):
    level = _native_level(native_implementation)
    nonces = np.zeros((2, 12), np.uint8)
    with pytest.raises(ValueError, match="32 bytes per envelope"):
        _core.seal_multikey(b"k" * 63, nonces, [b"h", b"h"], b"", [b"a", b"b"], level)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        _core.seal_multikey(b"k" * 64, np.zeros((2, 11), np.uint8), [b"h", b"h"], b"",
                            [b"a", b"b"], level)
    with pytest.raises(ValueError, match="same number"):
        _core.seal_multikey(b"k" * 64, nonces, [b"h", b"h"], b"", [b"a"], level)
    with pytest.raises(ValueError, match="header_lens"):
        _core.open_multikey(b"k" * 64, nonces, [b"abc", b"abcdef"], [0, 7], level)
    with pytest.raises(ValueError, match="header_lens"):
        _core.open_multikey(b"k" * 64, nonces, [b"abc", b"abcdef"], [-1, 0], level)
    with pytest.raises(TypeError):
        _core.open_multikey(b"k" * 64, nonces, [b"abc", 5], [0, 0], level)


def test_native_open_fails_an_envelope_too_short_for_its_tag_and_opens_the_rest(
        native_implementation):
    # Prepare: two envelopes sealed natively, one cut to its header plus 15 bytes
    level = _native_level(native_implementation)
    keys = bytes(range(32)) + bytes(range(32, 64))
    nonces = np.arange(24, dtype=np.uint8).reshape(2, 12)
    sealed = _core.seal_multikey(keys, nonces, [b"head-0", b"hd-1"], b"P:", [b"first", b"2nd"],
                                 level)
    cut = sealed[0][:6 + 15]

    # Execute
    plains, ok = _core.open_multikey(keys, nonces, [cut, sealed[1]], [6, 4], level)

    # Assert: and the sealed bytes are header || AES-GCM(prefix || body) || tag, as OpenSSL has it
    assert plains == [None, b"P:2nd"] and ok.tolist() == [False, True]
    for i, (head, body) in enumerate([(b"head-0", b"first"), (b"hd-1", b"2nd")]):
        assert sealed[i] == head + AESGCM(keys[32 * i:32 * i + 32]).encrypt(
            bytes(nonces[i]), b"P:" + body, head)


@pytest.mark.parametrize("level", [4, 99])
def test_native_calls_refuse_an_implementation_this_cpu_cannot_run(level):
    # (levels above every ladder's top; an open must not report forgeries instead. Level 0,
    # the portable kernel, runs everywhere: tests/test_aes_portable.py)
    nonces = np.zeros((1, 12), np.uint8)
    with pytest.raises(ValueError, match="not available"):
        _core.seal_multikey(b"k" * 32, nonces, [b"h"], b"", [b"a"], level)
    with pytest.raises(ValueError, match="not available"):
        _core.open_multikey(b"k" * 32, nonces, [b"h" + b"c" * 17], [1], level)
