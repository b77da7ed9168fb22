"""The native kernels read no byte outside the caller's buffers: messages, ciphertexts and
associated data placed right before and right after an inaccessible page, for every length
0..300 (every partial block and partial vector) and a few long ones, on every native path.

A read past a buffer would crash the process (SIGSEGV), so each path runs in a fresh
interpreter; a read of another object's bytes would leak nothing visible but is a bug that
these guard pages turn into a crash."""
from __future__ import annotations

import sys

import pytest

import privcity

NATIVE = [i for i in privcity.aes_implementations() if i != "cryptography"]

CHILD = r'''
import ctypes, mmap, sys
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from privcity.crypto import AES256GCM

PAGE = mmap.PAGESIZE
SPAN = 8 * PAGE  # room for the longest message inside the guarded region
region = mmap.mmap(-1, SPAN + 2 * PAGE)
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
buf = np.frombuffer(region, np.uint8)
for start in (0, SPAN + PAGE):  # the pages before and after the region: no access at all
    if libc.mprotect(base + start, PAGE, 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")


def placed(data: bytes, at_end: bool) -> memoryview:
    """data copied so that it ends right before the upper guard page, or starts right after the
    lower one."""
    lo = PAGE + SPAN - len(data) if at_end else PAGE
    buf[lo:lo + len(data)] = np.frombuffer(data, np.uint8)
    return memoryview(region)[lo:lo + len(data)]


impl = sys.argv[1]
key = bytes(range(32))
gcm, ref = AES256GCM(key, implementation=impl), AESGCM(key)
rng = np.random.default_rng(7)
checked = 0
for n in list(range(301)) + [4095, 4096 + 17, SPAN - 16]:
    for a in (0, 1, 15, 17, 31, 33, 63, 64, 65, 200):
        nonce, msg, aad = rng.bytes(12), rng.bytes(n), rng.bytes(a)
        ct = ref.encrypt(nonce, msg, aad)
        for at_end in (True, False):
            # one buffer in the region at a time: the message, then the associated data
            assert gcm.encrypt(nonce, placed(msg, at_end), aad) == ct
            assert gcm.encrypt(nonce, msg, placed(aad, at_end)) == ct
            if len(ct) <= SPAN:
                assert gcm.decrypt(nonce, placed(ct, at_end), aad) == msg
            assert gcm.decrypt(nonce, ct, placed(aad, at_end)) == msg
            four = np.frombuffer(nonce * 4, np.uint8).reshape(4, 12)
            assert gcm.encrypt_many(four, [placed(msg, at_end)] * 4, aad) == [ct] * 4
            checked += 1
print(checked)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages via mprotect (Linux)")
@pytest.mark.parametrize("impl", NATIVE)
def test_no_read_outside_the_buffers(run_python, impl):
    # Execute
    proc = run_python(CHILD, args=(impl,))

    # Assert: a read of a guard page kills the child with SIGSEGV (returncode -11)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert int(proc.stdout) == (301 + 3) * 10 * 2
