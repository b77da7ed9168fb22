"""NIST CAVP known-answer tests for AES-256-GCM (96-bit IV, 128-bit tag), every implementation.

The vectors are tests/data/nist_gcm256_96.json, made by tests/data/make_gcm_vectors.py from
gcmEncryptExtIV256.rsp and gcmDecrypt256.rsp.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity
from privcity.crypto import AES256GCM

VECTORS = json.loads((Path(__file__).parent / "data" / "nist_gcm256_96.json").read_text())


def _b(entry: dict, field: str) -> bytes:
    return bytes.fromhex(entry[field])


def _batch_around(v: dict, position: int, size: int, rng: np.random.Generator):
    """A batch of `size` messages under v's key with v's message at `position` and the others
    random (their expected ciphertexts from cryptography's AESGCM). Fillers alternate between
    no associated data (None) and random associated data."""
    key, ref = _b(v, "key"), AESGCM(_b(v, "key"))
    length = len(v["ct"]) // 2
    nonces = rng.integers(0, 256, (size, 12), dtype=np.uint8)
    nonces[position] = np.frombuffer(_b(v, "iv"), np.uint8)
    msgs = [rng.bytes(length) for _ in range(size)]
    aads: list = [None if j % 2 else rng.bytes(j * 7) for j in range(size)]
    cts = [ref.encrypt(bytes(nonces[j]), msgs[j], aads[j]) for j in range(size)]
    msgs[position] = None if v["fail"] else _b(v, "pt")
    aads[position] = _b(v, "aad") or None  # None and b"" mean the same
    cts[position] = _b(v, "ct") + _b(v, "tag")
    return key, nonces, msgs, aads, cts


def test_vector_file_is_complete_and_agrees_with_openssl():
    # Prepare
    passing = [v for v in VECTORS if not v["fail"]]
    failing = [v for v in VECTORS if v["fail"]]
    shapes = {(len(v["ct"]) // 2, len(v["aad"]) // 2) for v in VECTORS}

    # Execute
    mismatches = [
        v["source"]
        for v in passing
        if AESGCM(_b(v, "key")).encrypt(_b(v, "iv"), _b(v, "pt"), _b(v, "aad")) != _b(v, "ct") + _b(v, "tag")
    ]

    # Assert
    assert len(VECTORS) == 750  # 375 per file: 5 PT lengths x 5 AAD lengths x 15
    assert sum(v["source"].startswith("gcmEncryptExtIV256.rsp") for v in VECTORS) == 375
    assert len(failing) > 100 and all(v["source"].startswith("gcmDecrypt256.rsp") for v in failing)
    assert all("pt" not in v for v in failing)
    assert shapes == {(p, a) for p in (0, 13, 16, 32, 51) for a in (0, 16, 20, 48, 90)}
    assert mismatches == []


def test_encrypt_matches_nist(implementation):
    # Prepare
    passing = [v for v in VECTORS if not v["fail"]]

    # Execute
    mismatches = [
        v["source"]
        for v in passing
        if AES256GCM(_b(v, "key"), implementation=implementation).encrypt(_b(v, "iv"), _b(v, "pt"), _b(v, "aad"))
        != _b(v, "ct") + _b(v, "tag")
    ]

    # Assert
    assert len(passing) > 500
    assert mismatches == []


def test_decrypt_matches_nist(implementation):
    # Prepare
    wrong: list[str] = []
    accepted_forgeries: list[str] = []

    # Execute
    for v in VECTORS:
        gcm = AES256GCM(_b(v, "key"), implementation=implementation)
        aad = _b(v, "aad") or None  # None and b"" mean the same
        try:
            pt = gcm.decrypt(_b(v, "iv"), _b(v, "ct") + _b(v, "tag"), aad)
        except privcity.AuthenticationError:
            if not v["fail"]:
                wrong.append(v["source"])
            continue
        if v["fail"]:
            accepted_forgeries.append(v["source"])
        elif pt != _b(v, "pt"):
            wrong.append(v["source"])

    # Assert
    assert wrong == []
    assert accepted_forgeries == []


def test_encrypt_many_matches_nist(implementation):
    # Prepare: each NIST entry has its own key, so each goes into its own batch of 4, at a
    # position that cycles through 0..3, beside messages of the same length
    rng = np.random.default_rng(96)
    mismatches: list[str] = []

    for i, v in enumerate(v for v in VECTORS if not v["fail"]):
        key, nonces, msgs, aads, cts = _batch_around(v, i % 4, 4, rng)
        gcm = AES256GCM(key, implementation=implementation)

        # Execute
        listed = gcm.encrypt_many(nonces, msgs, aads)
        rows = gcm.encrypt_many(nonces, np.array([np.frombuffer(m, np.uint8) for m in msgs]), aads)

        # Assert (collected, reported below with the NIST sources)
        if listed != cts or [r.tobytes() for r in rows] != cts:
            mismatches.append(v["source"])

    assert mismatches == []


def test_decrypt_many_matches_nist(implementation):
    # Prepare
    rng = np.random.default_rng(128)
    mismatches: list[str] = []
    wrong_indices: list[str] = []

    for i, v in enumerate(VECTORS):
        position = i % 4
        key, nonces, msgs, aads, cts = _batch_around(v, position, 4, rng)
        gcm = AES256GCM(key, implementation=implementation)

        # Execute
        pts, ok = gcm.decrypt_many(nonces, cts, aads, return_status=True)
        ct_rows = np.array([np.frombuffer(c, np.uint8) for c in cts])
        rows, rows_ok = gcm.decrypt_many(nonces, ct_rows, aads, return_status=True)
        try:
            strict = gcm.decrypt_many(nonces, cts, aads)
            raised = None
        except privcity.AuthenticationError as e:
            strict, raised = None, e.indices

        # Assert (collected, reported below with the NIST sources)
        expected_ok = [j != position or not v["fail"] for j in range(4)]
        zero = bytes(len(v["ct"]) // 2)
        if (
            pts != msgs
            or ok.tolist() != expected_ok
            or rows_ok.tolist() != expected_ok
            or [r.tobytes() for r in rows] != [zero if m is None else m for m in msgs]
        ):
            mismatches.append(v["source"])
        if (raised, strict) != (([position], None) if v["fail"] else (None, msgs)):
            wrong_indices.append(v["source"])

    assert mismatches == []
    assert wrong_indices == []
