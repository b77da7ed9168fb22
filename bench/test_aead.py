"""AES-256-GCM throughput, privcity beside cryptography's AESGCM (OpenSSL) in the same process.

Run: python -m pytest bench/test_aead.py --benchmark-only
Targets (issue: native core and AES-256-GCM): bulk >= 1.0x cryptography at 1 KiB, 16 KiB and
1 MiB on a VAES CPU; a batch of 10,000 x 64 B >= 10x a Python loop over AESGCM.encrypt;
10,000 x 1 KiB >= 3x.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity
from privcity.crypto import AES256GCM

KEY = bytes(range(32))
NONCE = bytes(12)
IMPLS = [i for i in privcity.aes_implementations() if i != "cryptography"]
BEST = IMPLS[0] if IMPLS else "cryptography"
BULK_TARGET = 1.0 if "vaes512" in IMPLS else None


@pytest.mark.parametrize("size", [1024, 16384, 1 << 20], ids=["1KiB", "16KiB", "1MiB"])
@pytest.mark.parametrize("op", ["encrypt", "decrypt"])
@pytest.mark.parametrize("impl", ["anchor"] + IMPLS)
def test_bulk(benchmark, record, size, op, impl):
    data = os.urandom(size)
    ref = AESGCM(KEY)
    obj = ref if impl == "anchor" else AES256GCM(KEY, implementation=impl)
    if op == "decrypt":
        data = ref.encrypt(NONCE, data, None)
    fn = getattr(obj, op)
    group = f"bulk {op} {size // 1024} KiB"
    benchmark.group = group
    benchmark.extra_info["bytes"] = size
    iterations = max(1, (256 << 10) // size)  # rounds of at least ~25 us: timer noise stays small
    out = benchmark.pedantic(fn, args=(NONCE, data, None), rounds=max(50, (32 << 20) // size // iterations),
                             iterations=iterations, warmup_rounds=3)
    assert len(out) == size + (16 if op == "encrypt" else 0)
    record(benchmark, group, impl, BULK_TARGET if impl == BEST else None)


N_BATCH = 10_000


def _batch(size):
    rng = np.random.default_rng(size)
    msgs = rng.integers(0, 256, size=(N_BATCH, size), dtype=np.uint8)
    nonces = rng.integers(0, 256, size=(N_BATCH, 12), dtype=np.uint8)
    return nonces, msgs


@pytest.mark.parametrize("size", [64, 1024], ids=["64B", "1KiB"])
@pytest.mark.parametrize("mode", ["anchor", "list", "array"])
def test_batch_encrypt(benchmark, record, size, mode):
    nonces, msgs = _batch(size)
    group = f"batch encrypt 10k x {size} B"
    benchmark.group = group
    if mode == "anchor":
        aes = AESGCM(KEY)
        nl = [bytes(n) for n in nonces]
        ml = [bytes(m) for m in msgs]

        def run():
            enc = aes.encrypt
            return [enc(nl[i], ml[i], None) for i in range(N_BATCH)]
    else:
        aes = AES256GCM(KEY)
        data = [bytes(m) for m in msgs] if mode == "list" else msgs

        def run():
            return aes.encrypt_many(nonces, data)
    out = benchmark.pedantic(run, rounds=30, iterations=1, warmup_rounds=2)
    assert len(out) == N_BATCH
    target = {64: 10.0, 1024: 3.0}[size]
    record(benchmark, group, "anchor" if mode == "anchor" else f"{BEST} {mode}",
           None if mode == "anchor" else target)


@pytest.mark.parametrize("size", [64, 1024], ids=["64B", "1KiB"])
@pytest.mark.parametrize("mode", ["anchor", "list", "array"])
def test_batch_decrypt(benchmark, record, size, mode):
    nonces, msgs = _batch(size)
    group = f"batch decrypt 10k x {size} B"
    benchmark.group = group
    ref = AESGCM(KEY)
    cts = [ref.encrypt(bytes(n), bytes(m), None) for n, m in zip(nonces, msgs)]
    if mode == "anchor":
        nl = [bytes(n) for n in nonces]

        def run():
            dec = ref.decrypt
            return [dec(nl[i], cts[i], None) for i in range(N_BATCH)]
    else:
        aes = AES256GCM(KEY)
        data = cts if mode == "list" else np.frombuffer(b"".join(cts), np.uint8).reshape(N_BATCH, -1)

        def run():
            return aes.decrypt_many(nonces, data)
    out = benchmark.pedantic(run, rounds=30, iterations=1, warmup_rounds=2)
    assert len(out) == N_BATCH
    target = {64: 10.0, 1024: 3.0}[size]
    record(benchmark, group, "anchor" if mode == "anchor" else f"{BEST} {mode}",
           None if mode == "anchor" else target)
