"""Writes tests/data/envelope_vectors.json: Envelope v1 known-answer vectors.

Run from the repository root: ``python3 tests/data/make_envelope_vectors.py``. Every input is
fixed (X25519 private keys, ids, epochs, counters, payloads), so the output is byte-for-byte
reproducible. The AES key is derived exactly as ``privcity.crypto.agreement.derive_key`` does
(X25519 + HKDF-SHA256 with ``kdf_salt`` / ``kdf_info``); the envelope is sealed with
``cryptography``'s AESGCM, not with privcity's kernels.
"""
from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privcity.crypto.agreement import kdf_info, kdf_salt
from privcity.crypto.envelope import (
    CONTENT_BYTES, CONTENT_METADATA, CONTENT_TENSOR, build_header, encode_metadata,
    encode_tensor, make_nonce,
)

OUT = pathlib.Path(__file__).with_name("envelope_vectors.json")


def _private(label: str) -> x25519.X25519PrivateKey:
    return x25519.X25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


CASES = [
    # name, sender, receiver, epoch, counter, content type, plaintext
    ("bytes-empty", "dev-1", "gw-1", 0, 0, CONTENT_BYTES, b""),
    ("bytes-short", "dev-1", "gw-1", 7, 1, CONTENT_BYTES, b"PM2.5=12.5;NO2=31"),
    ("bytes-block-edge", "dev-1", "gw-1", 7, 1023, CONTENT_BYTES, bytes(range(48))),
    ("tensor-f32", "dev-1", "gw-1", 7, 1024, CONTENT_TENSOR,
     encode_tensor(np.arange(6, dtype=np.float32).reshape(2, 3) / 4)),
    ("tensor-i64-scalar", "dev-2", "gw-1", 2**32, 5, CONTENT_TENSOR,
     encode_tensor(np.array(-3, dtype=np.int64))),
    ("metadata", "dev-2", "gw-1", 3, 99, CONTENT_METADATA,
     encode_metadata({"round": 12, "loss": 0.125, "zone": "nord-3", "n": -1})),
    ("unicode-ids-max-counter", "capteur-é-17", "passerelle-Ω", 2**64 - 1, 2**64 - 2,
     CONTENT_BYTES, b"\x00\xff" * 20),
]


def main() -> None:
    vectors = []
    for name, sender, receiver, epoch, counter, ctype, plaintext in CASES:
        s_priv, r_priv = _private("x25519:" + sender), _private("x25519:" + receiver)
        shared = s_priv.exchange(r_priv.public_key())
        key = HKDF(algorithm=hashes.SHA256(), length=32,
                   salt=kdf_salt(s_priv.public_key(), r_priv.public_key()),
                   info=kdf_info(sender, receiver, epoch)).derive(shared)
        header = build_header(sender_id=sender, receiver_id=receiver, epoch=epoch,
                              counter=counter, plaintext_length=len(plaintext),
                              content_type=ctype)
        nonce = make_nonce(sender, counter)
        envelope = header + AESGCM(key).encrypt(nonce, plaintext, header)
        vectors.append({
            "name": name, "sender_id": sender, "receiver_id": receiver, "epoch": epoch,
            "counter": counter, "content_type": ctype,
            "sender_x25519_private_hex": s_priv.private_bytes_raw().hex(),
            "receiver_x25519_private_hex": r_priv.private_bytes_raw().hex(),
            "key_hex": key.hex(), "nonce_hex": nonce.hex(), "header_hex": header.hex(),
            "plaintext_hex": plaintext.hex(), "envelope_hex": envelope.hex(),
        })
    OUT.write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()
