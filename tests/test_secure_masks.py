"""The mask kernel of secure aggregation (_core.mask_add_u32 / _u64) against an independent PRG:
`cryptography`'s AES-256-CTR with a zero nonce, read as little-endian words, added with numpy's
wrap-around arithmetic. Every AES path forced with PRIVCITY_ISA in a fresh interpreter; 1 and 2
threads; sizes off every block and tile boundary."""
from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import privcity
from privcity import _core

KERNELS = {np.uint32: _core.mask_add_u32, np.uint64: _core.mask_add_u64}


def prg(seed: bytes, d: int, dtype) -> np.ndarray:
    """Reference: the first d little-endian words of AES-256-CTR(key=seed, nonce=0)."""
    width = np.dtype(dtype).itemsize
    keystream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(width * d))
    return np.frombuffer(keystream, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def reference(base: np.ndarray, seeds: list[bytes], signs: list[int]) -> np.ndarray:
    out = base.copy()
    for seed, sign in zip(seeds, signs):
        mask = prg(seed, base.size, base.dtype.type)
        out = out + mask if sign > 0 else out - mask  # numpy integers wrap around
    return out


def case(d: int, n: int, dtype, seed: int):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, np.iinfo(dtype).max, d, dtype=dtype, endpoint=True)
    seeds = [rng.bytes(32) for _ in range(n)]
    signs = [int(s) for s in rng.choice([-1, 1], n)]
    return base, seeds, signs


def run(base, seeds, signs, threads=0) -> np.ndarray:
    out = base.copy()
    KERNELS[base.dtype.type](out, np.frombuffer(b"".join(seeds), np.uint8),
                             np.array(signs, np.int8), threads)
    return out


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
@pytest.mark.parametrize("d", [1, 3, 4, 5, 17, 4095, 4097, 70_001, 300_003])
def test_masks_equal_cryptography_aes_ctr(dtype, d):
    # Prepare
    base, seeds, signs = case(d, 3, dtype, seed=d)

    # Execute
    got = run(base, seeds, signs)

    # Assert
    assert np.array_equal(got, reference(base, seeds, signs))


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_one_and_two_threads_agree_and_masks_cancel(dtype):
    # Prepare: each seed added once and subtracted once leaves the vector as it was
    base, seeds, _ = case(300_003, 4, dtype, seed=7)
    signs = [1, 1, -1, -1]

    # Execute
    one = run(base, seeds + seeds[:2], [1, 1, 1, 1, -1, -1], threads=1)
    two = run(base, seeds + seeds[:2], [1, 1, 1, 1, -1, -1], threads=2)
    cancelled = run(base, seeds[:2] + seeds[:2], signs)

    # Assert
    assert np.array_equal(one, two)
    assert np.array_equal(cancelled, base)
    assert np.array_equal(one, reference(base, seeds[2:], [1, 1]))


def test_no_seeds_or_empty_vector_change_nothing():
    base = np.arange(10, dtype=np.uint32)
    out = base.copy()
    _core.mask_add_u32(out, np.zeros(0, np.uint8), np.zeros(0, np.int8))
    assert np.array_equal(out, base)
    empty = np.zeros(0, np.uint32)
    _core.mask_add_u32(empty, np.zeros(32, np.uint8), np.ones(1, np.int8))
    assert empty.size == 0


def test_bad_arguments_are_refused():
    out = np.zeros(8, np.uint32)
    with pytest.raises(ValueError, match="32 bytes per sign"):
        _core.mask_add_u32(out, np.zeros(31, np.uint8), np.ones(1, np.int8))
    frozen = np.zeros(8, np.uint32)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        _core.mask_add_u32(frozen, np.zeros(32, np.uint8), np.ones(1, np.int8))
    with pytest.raises(TypeError):  # no silent conversion: the caller's array must change
        _core.mask_add_u32(np.zeros(8, np.int64), np.zeros(32, np.uint8), np.ones(1, np.int8))


PATHS = ("vaes512", "vaes256", "aesni", "armv8", "none")

CHILD = r'''
import sys
import numpy as np
from privcity import _core
rng = np.random.default_rng(5)
seeds = np.frombuffer(rng.bytes(32 * 3), np.uint8)
signs = np.array([1, -1, 1], np.int8)
out32 = np.zeros(70_001, np.uint32)
out64 = np.zeros(70_001, np.uint64)
_core.mask_add_u32(out32, seeds, signs)
_core.mask_add_u64(out64, seeds, signs)
np.savez(sys.argv[1], out32=out32, out64=out64)
'''


def _path(name: str) -> object:
    lacking = name != "none" and name not in privcity.aes_implementations()
    return pytest.param(name, id=name, marks=pytest.mark.skipif(
        lacking, reason=f"this CPU cannot run the {name!r} path"))


@pytest.mark.parametrize("isa", [_path(n) for n in PATHS])
def test_every_aes_path_gives_the_reference_masks(run_python, tmp_path, isa):
    # Prepare
    path = tmp_path / f"{isa}.npz"
    rng = np.random.default_rng(5)
    seeds = [rng.bytes(32) for _ in range(3)]

    # Execute
    proc = run_python(CHILD, isa=isa, args=(str(path),))

    # Assert
    assert proc.returncode == 0, proc.stderr
    with np.load(path) as z:
        for dtype, name in ((np.uint32, "out32"), (np.uint64, "out64")):
            want = reference(np.zeros(70_001, dtype), seeds, [1, -1, 1])
            assert np.array_equal(z[name], want), (isa, name)


def test_threads_that_cannot_start_leave_the_work_to_the_caller(run_python):
    # Prepare: an address-space limit that leaves room for few thread stacks (8 MiB each)
    code = r'''
import resource
import numpy as np
from privcity import _core
out = np.zeros(4_000_000, np.uint32)
ref = out.copy()
seeds = np.arange(32, dtype=np.uint8)
_core.mask_add_u32(ref, seeds, np.ones(1, np.int8), 1)
used = int(open("/proc/self/statm").read().split()[0]) * 4096
resource.setrlimit(resource.RLIMIT_AS, (used + 200 * 2**20,) * 2)
_core.mask_add_u32(out, seeds, np.ones(1, np.int8), 5000)
print("same" if np.array_equal(out, ref) else "differ")
'''

    # Execute
    proc = run_python(code)

    # Assert: no abort, and the same masks
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "same"


def test_memory_for_the_round_keys_failing_raises_memory_error(run_python):
    code = r'''
import resource
import numpy as np
from privcity import _core
n = 3_000_000  # 720 MB of round keys
seeds = np.zeros(32 * n, np.uint8)
signs = np.ones(n, np.int8)
used = int(open("/proc/self/statm").read().split()[0]) * 4096
resource.setrlimit(resource.RLIMIT_AS, (used + 300 * 2**20,) * 2)
out = np.arange(4, dtype=np.uint32)
try:
    _core.mask_add_u32(out, seeds, signs)
except MemoryError:
    print("MemoryError", out.tolist())
'''
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "MemoryError [0, 1, 2, 3]"
