"""AES-256-GCM throughput, privcity beside cryptography's AESGCM (OpenSSL) in the same process.

Run: python -m pytest bench/test_aead.py --benchmark-only
Each path runs interleaved with its anchor (the anchor before every round), so a shared
machine whose speed drifts shifts both alike. Targets, for the best path of this CPU:
- vaes512 (issue: native core and AES-256-GCM): bulk >= 1.0x cryptography at 1 KiB, 16 KiB
  and 1 MiB; a batch of 10,000 x 64 B >= 10x a Python loop over AESGCM.encrypt.
- vaes256 (issue 17, VAES + AVX2 without AVX-512, e.g. Zen 3): 16 KiB and 1 MiB >= 1.6x,
  1 KiB >= 1.3x; a batch of 10,000 x 64 B >= 15x (encrypt; decrypt keeps 10x).
- every path: 10,000 x 1 KiB >= 3x.
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
BULK_TARGETS = {
    "vaes512": {1024: 1.0, 16384: 1.0, 1 << 20: 1.0},
    "vaes256": {1024: 1.3, 16384: 1.6, 1 << 20: 1.6},
}
BATCH_TARGETS = {("encrypt", 64): 15.0 if BEST == "vaes256" else 10.0, ("decrypt", 64): 10.0,
                 ("encrypt", 1024): 3.0, ("decrypt", 1024): 3.0}


@pytest.mark.parametrize("size", [1024, 16384, 1 << 20], ids=["1KiB", "16KiB", "1MiB"])
@pytest.mark.parametrize("op", ["encrypt", "decrypt"])
@pytest.mark.parametrize("impl", IMPLS)
def test_bulk(benchmark, record, interleaved, size, op, impl):
    data = os.urandom(size)
    ref = AESGCM(KEY)
    obj = AES256GCM(KEY, implementation=impl)
    if op == "decrypt":
        data = ref.encrypt(NONCE, data, None)
    fn, anchor_fn = getattr(obj, op), getattr(ref, op)
    calls = max(1, (256 << 10) // size)  # rounds of at least ~25 us: timer noise stays small

    def ours() -> bytes:
        for _ in range(calls):
            out = fn(NONCE, data, None)
        return out

    def theirs() -> None:
        for _ in range(calls):
            anchor_fn(NONCE, data, None)

    group = f"bulk {op} {size // 1024} KiB {impl}"
    benchmark.group = group
    benchmark.extra_info["bytes"] = size * calls
    out, anchor = interleaved(benchmark, ours, theirs, rounds=max(60, (64 << 20) // (size * calls)),
                              warmup_rounds=3)
    assert len(out) == size + (16 if op == "encrypt" else 0)
    record(anchor, group, "anchor")
    record(benchmark, group, impl, BULK_TARGETS.get(impl, {}).get(size) if impl == BEST else None)


N_BATCH = 10_000
# The anchor's last output is kept until its next call: freeing 10,000 outputs right before a
# timed round lets malloc hand the pages back to the OS, and the round would pay page faults
# that a steady loop of either side never sees.


def _batch(size):
    rng = np.random.default_rng(size)
    msgs = rng.integers(0, 256, size=(N_BATCH, size), dtype=np.uint8)
    nonces = rng.integers(0, 256, size=(N_BATCH, 12), dtype=np.uint8)
    return nonces, msgs


@pytest.mark.parametrize("size", [64, 1024], ids=["64B", "1KiB"])
@pytest.mark.parametrize("mode", ["list", "array"])
def test_batch_encrypt(benchmark, record, interleaved, size, mode):
    nonces, msgs = _batch(size)
    group = f"batch encrypt 10k x {size} B"
    benchmark.group = group
    ref = AESGCM(KEY)
    nl = [bytes(n) for n in nonces]
    ml = [bytes(m) for m in msgs]

    kept: list = []

    def theirs() -> None:
        enc = ref.encrypt
        kept[:] = [[enc(nl[i], ml[i], None) for i in range(N_BATCH)]]

    aes = AES256GCM(KEY)
    data = ml if mode == "list" else msgs
    out, anchor = interleaved(benchmark, lambda: aes.encrypt_many(nonces, data), theirs, rounds=30,
                              warmup_rounds=2)
    assert len(out) == N_BATCH
    record(anchor, f"{group} ({mode})", "anchor")
    record(benchmark, f"{group} ({mode})", f"{BEST} {mode}", BATCH_TARGETS["encrypt", size])


@pytest.mark.parametrize("size", [64, 1024], ids=["64B", "1KiB"])
@pytest.mark.parametrize("mode", ["list", "array"])
def test_batch_decrypt(benchmark, record, interleaved, size, mode):
    nonces, msgs = _batch(size)
    group = f"batch decrypt 10k x {size} B"
    benchmark.group = group
    ref = AESGCM(KEY)
    nl = [bytes(n) for n in nonces]
    cts = [ref.encrypt(nl[i], bytes(m), None) for i, m in enumerate(msgs)]

    kept: list = []

    def theirs() -> None:
        dec = ref.decrypt
        kept[:] = [[dec(nl[i], cts[i], None) for i in range(N_BATCH)]]

    aes = AES256GCM(KEY)
    data = cts if mode == "list" else np.frombuffer(b"".join(cts), np.uint8).reshape(N_BATCH, -1)
    out, anchor = interleaved(benchmark, lambda: aes.decrypt_many(nonces, data), theirs, rounds=30,
                              warmup_rounds=2)
    assert len(out) == N_BATCH
    record(anchor, f"{group} ({mode})", "anchor")
    record(benchmark, f"{group} ({mode})", f"{BEST} {mode}", BATCH_TARGETS["decrypt", size])
