"""CSPRNG keystream throughput: SecureRNG.random_bytes (AES-256-CTR on the dispatched kernel)
beside cryptography's AES-256-CTR (OpenSSL) writing into a preallocated buffer, interleaved,
on every AES path this CPU has (the path is fixed when a SecureRNG is keyed).

Run: python -m pytest bench/test_keystream.py --benchmark-only
Target (issue 17): >= 1.4x cryptography on 1 MiB for the best path of a VAES CPU.
"""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import privcity
from privcity import _core
from privcity.noise import SecureRNG

SIZE = 1 << 20
PATHS = [i for i in privcity.aes_implementations() if i != "cryptography"]
LEVELS = {"vaes512": _core.AES_ISA_VAES512, "vaes256": _core.AES_ISA_VAES256,
          "aesni": _core.AES_ISA_AESNI}
TARGET = 1.4 if PATHS and PATHS[0].startswith("vaes") else None


def _keyed_on(path: str) -> SecureRNG:
    """A seeded SecureRNG whose refills run on path (the cap is restored at once)."""
    before = _core.aes_isa_cap()
    _core.set_aes_isa_cap(LEVELS[path])
    try:
        return SecureRNG(b"keystream bench")
    finally:
        _core.set_aes_isa_cap(before)


@pytest.mark.parametrize("path", PATHS)
def test_keystream_1mib(benchmark, record, interleaved, path):
    rng = _keyed_on(path)
    enc = Cipher(algorithms.AES(bytes(32)), modes.CTR(bytes(16))).encryptor()
    zeros, buf = bytes(SIZE), bytearray(SIZE + 15)
    group = f"CSPRNG keystream 1 MiB {path}"
    benchmark.group = group
    out, anchor = interleaved(benchmark, lambda: rng.random_bytes(SIZE),
                              lambda: enc.update_into(zeros, buf), rounds=200, warmup_rounds=5)
    assert len(out) == SIZE
    record(anchor, group, "anchor")
    record(benchmark, group, path, TARGET if path == PATHS[0] else None)
