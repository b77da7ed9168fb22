"""The portable (none) AES path: a constant-time bitsliced AES-256 and a GHASH without tables,
for CPUs without AES instructions. Its CTR keystream (CSPRNG and SecAgg masks) and its
AES-256-GCM must be byte for byte what ``cryptography`` (OpenSSL) and the AES instructions
give, for any key; and the extension must hold no AES table at all, since a table's cache
timing would leak the secret keys this path runs (OS-keyed noise, pairwise mask seeds)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

import privcity
from privcity import _core

VECTORS = json.loads((Path(__file__).parent / "data" / "nist_gcm256_96.json").read_text())
HARDWARE = [n for n in privcity.aes_implementations() if n != "cryptography"]


def _aes_sbox() -> bytes:
    """FIPS-197's S-box from its definition (inverse in GF(2^8), then the affine map)."""
    def mul(a: int, b: int) -> int:
        r = 0
        while b:
            r ^= a if b & 1 else 0
            a = ((a << 1) ^ (0x11B if a & 0x80 else 0)) & 0xFF
            b >>= 1
        return r

    inv = [0] + [next(y for y in range(1, 256) if mul(x, y) == 1) for x in range(1, 256)]
    rot = lambda v, i: ((v << i) | (v >> (8 - i))) & 0xFF  # noqa: E731
    return bytes(0x63 ^ v ^ rot(v, 1) ^ rot(v, 2) ^ rot(v, 3) ^ rot(v, 4) for v in inv)


def _table_signatures() -> dict[str, bytes]:
    """Byte strings that any table AES or table GHASH compiled into the module would contain:
    slices of the S-box and its inverse, the first words of the T-tables (Te0..Te3, Td0) in
    either byte order, and Shoup's 4-bit GHASH reduction table as 16- and 64-bit words."""
    sbox = _aes_sbox()
    inv = bytes(sbox.index(i) for i in range(256))
    sig = {f"sbox[{i}:{i + 16}]": sbox[i:i + 16] for i in range(0, 256, 16)}
    sig.update({f"inverse sbox[{i}:{i + 16}]": inv[i:i + 16] for i in range(0, 256, 16)})

    def xt(v: int) -> int:
        return ((v << 1) ^ (0x11B if v & 0x80 else 0)) & 0xFF

    te0 = [(xt(s) << 24) | (s << 16) | (s << 8) | (xt(s) ^ s) for s in sbox[:4]]
    for r in range(4):
        words = [((w >> (8 * r)) | (w << (32 - 8 * r))) & 0xFFFFFFFF for w in te0]
        sig[f"Te{r} (big-endian)"] = struct.pack(">4I", *words)
        sig[f"Te{r} (little-endian)"] = struct.pack("<4I", *words)
    td0 = [0x51F4A750, 0x7E416553, 0x1A17A4C3, 0x3A275E96]
    sig["Td0 (big-endian)"] = struct.pack(">4I", *td0)
    sig["Td0 (little-endian)"] = struct.pack("<4I", *td0)
    last4 = [0x0000, 0x1C20, 0x3840, 0x2460, 0x7080, 0x6CA0, 0x48C0, 0x54E0]
    for fmt, name in (("<8H", "16-bit LE"), (">8H", "16-bit BE"), ("<8Q", "64-bit LE")):
        sig[f"GHASH last4 ({name})"] = struct.pack(fmt, *last4)
    sig["GHASH last4 (64-bit LE, shifted 48)"] = struct.pack("<8Q", *(v << 48 for v in last4))
    return sig


def _ctr(key: bytes, n: int) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return enc.update(bytes(n)) + enc.finalize()


def _keystream_on(level: int, key: bytes, n: int) -> tuple[int, bytes]:
    """A seeded generator built under the cap `level` (its path is fixed at construction)."""
    before = _core.aes_isa_cap()
    _core.set_aes_isa_cap(level)
    try:
        rng = _core.Rng(key)
    finally:
        _core.set_aes_isa_cap(before)
    return rng.impl, rng.fill_bytes(n)


def test_the_extension_holds_no_aes_or_ghash_table():
    # Prepare
    module = Path(_core.__file__).read_bytes()
    signatures = _table_signatures()
    assert _aes_sbox()[:4] == bytes([0x63, 0x7C, 0x77, 0x7B])  # the reference itself is right

    # Execute
    found = [name for name, pattern in signatures.items() if pattern in module]

    # Assert
    assert found == [], f"a table AES or GHASH is compiled into {_core.__file__}: {found}"


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), n=st.integers(0, 1100))
def test_portable_keystream_is_aes_ctr_for_any_key(key, n):
    # Execute
    impl, got = _keystream_on(_core.AES_ISA_NONE, key, n)

    # Assert
    assert impl == _core.AES_ISA_NONE
    assert got == _ctr(key, n)


@pytest.mark.skipif(not HARDWARE, reason="this CPU has no AES instructions to compare with")
@settings(max_examples=40, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), n=st.integers(1, 5000))
def test_portable_keystream_equals_the_aes_instructions_for_any_key(key, n):
    # Prepare
    best = _core.aes_isa_supported()

    # Execute
    (p_impl, portable), (h_impl, hardware) = (_keystream_on(level, key, n)
                                              for level in (_core.AES_ISA_NONE, best))

    # Assert
    assert (p_impl, h_impl) == (_core.AES_ISA_NONE, best)
    assert portable == hardware


def test_portable_gcm_passes_every_nist_vector():
    # Prepare
    wrong = []

    # Execute
    for v in VECTORS:
        key, iv, aad = (bytes.fromhex(v[f]) for f in ("key", "iv", "aad"))
        sealed = bytes.fromhex(v["ct"]) + bytes.fromhex(v["tag"])
        gcm = _core.Aes256Gcm(key, _core.AES_ISA_NONE)
        if v["fail"]:
            try:
                gcm.decrypt(iv, sealed, aad)
                wrong.append(v["source"])
            except _core.TagMismatch:
                continue  # refused, as the vector says
        elif (gcm.encrypt(iv, bytes.fromhex(v["pt"]), aad) != sealed
              or gcm.decrypt(iv, sealed, aad) != bytes.fromhex(v["pt"])):
            wrong.append(v["source"])

    # Assert
    assert len(VECTORS) == 750 and wrong == []


@settings(max_examples=80, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       data=st.binary(max_size=600), aad=st.binary(max_size=70))
def test_portable_gcm_equals_openssl_for_any_input(key, nonce, data, aad):
    # Prepare
    gcm = _core.Aes256Gcm(key, _core.AES_ISA_NONE)

    # Execute
    sealed = gcm.encrypt(nonce, data, aad)

    # Assert
    assert gcm.impl == _core.AES_ISA_NONE
    assert sealed == AESGCM(key).encrypt(nonce, data, aad)
    assert gcm.decrypt(nonce, sealed, aad) == data


@settings(max_examples=40, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), data=st.binary(min_size=1, max_size=300),
       flip=st.integers(0, 10_000))
def test_portable_gcm_refuses_any_flipped_bit(key, data, flip):
    # Prepare: one bit flipped anywhere in ciphertext || tag
    gcm = _core.Aes256Gcm(key, _core.AES_ISA_NONE)
    sealed = bytearray(gcm.encrypt(b"\x01" * 12, data, b"head"))
    bit = flip % (8 * len(sealed))
    sealed[bit // 8] ^= 1 << (bit % 8)

    # Execute / Assert
    with pytest.raises(_core.TagMismatch):
        gcm.decrypt(b"\x01" * 12, bytes(sealed), b"head")


def test_portable_level_seals_and_opens_envelopes_under_many_keys():
    # Prepare: the native multi-key calls at level 0 (they refused it while no portable
    # AES-GCM existed)
    keys = bytes(range(32)) + bytes(range(100, 132))
    nonces = bytes(range(24))
    heads, bodies = [b"head-0", b"hd-1"], [b"first body", b"2nd" * 30]
    nonce_rows = np.frombuffer(nonces, np.uint8).reshape(2, 12)

    # Execute
    sealed = _core.seal_multikey(keys, nonce_rows, heads, b"P:", bodies, _core.AES_ISA_NONE)
    plains, ok = _core.open_multikey(keys, nonce_rows, sealed, [6, 4], _core.AES_ISA_NONE)

    # Assert: header || AES-GCM(prefix || body) with the header as associated data, as OpenSSL
    for i in range(2):
        assert sealed[i] == heads[i] + AESGCM(keys[32 * i:32 * i + 32]).encrypt(
            nonces[12 * i:12 * i + 12], b"P:" + bodies[i], heads[i])
    assert plains == [b"P:" + b for b in bodies] and ok.tolist() == [True, True]
