"""Large messages, the path that releases the GIL (inputs of 2 KiB and more), and one object
shared by several threads."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import privcity
from privcity.crypto import AES256GCM

KEY = bytes(range(64, 96))


def _data(length: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(length)


def test_one_mebibyte_plus_five(implementation):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    msg, aad, nonce = _data((1 << 20) + 5, 1), _data(3000, 2), _data(12, 3)
    expected = AESGCM(KEY).encrypt(nonce, msg, aad)

    # Execute
    ct = gcm.encrypt(nonce, msg, aad)
    pt = gcm.decrypt(nonce, expected, aad)
    batch = gcm.encrypt_many([nonce, nonce[::-1]], [msg, b"small"], [aad, None])

    # Assert
    assert ct == expected
    assert pt == msg
    assert batch == [expected, AESGCM(KEY).encrypt(nonce[::-1], b"small", None)]


# (message length, associated-data length) on both sides of the 2 KiB threshold, which counts
# message (or ciphertext with tag) plus associated data
AROUND_THRESHOLD = [(2047, 0), (2048, 0), (2049, 0), (2031, 0), (2032, 0), (0, 2047), (0, 2048),
                    (1, 2047), (1000, 1048), (3000, 5000)]


@pytest.mark.parametrize("length,aad_len", AROUND_THRESHOLD)
def test_around_the_gil_threshold(implementation, length, aad_len):
    # Prepare
    gcm = AES256GCM(KEY, implementation=implementation)
    msg, aad, nonce = _data(length, length), _data(aad_len, aad_len + 1), _data(12, 7)
    expected = AESGCM(KEY).encrypt(nonce, msg, aad)
    bad = bytearray(expected)
    bad[length // 2] ^= 4

    # Execute
    ct = gcm.encrypt(nonce, bytearray(msg), memoryview(aad))
    pt = gcm.decrypt(nonce, np.frombuffer(expected, np.uint8), aad)
    with pytest.raises(privcity.AuthenticationError):
        gcm.decrypt(nonce, bytes(bad), aad)

    # Assert
    assert ct == expected
    assert pt == msg


def test_threads_share_one_object(implementation):
    # Prepare: 4 threads start together and each encrypts, decrypts and batch-encrypts its own
    # jobs (large ones run without the GIL) many times with the same AES256GCM object
    gcm = AES256GCM(KEY, implementation=implementation)
    ref = AESGCM(KEY)
    jobs = [(_data(12, i), _data(100 + 997 * i, i + 50), _data(i * 13, i + 90)) for i in range(32)]
    expected = [ref.encrypt(*job) for job in jobs]
    nonces = np.array([np.frombuffer(n, np.uint8) for n, _, _ in jobs])
    start = threading.Barrier(4)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait(timeout=30)
            mine = []
            for _ in range(10):
                cts = [gcm.encrypt(*jobs[i]) for i in range(t, 32, 4)]
                pts = [gcm.decrypt(jobs[i][0], expected[i], jobs[i][2]) for i in range(t, 32, 4)]
                many = gcm.encrypt_many(nonces, [m for _, m, _ in jobs], [a for _, _, a in jobs])
                mine.append((cts, pts, many))
            results[t] = mine
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]

    # Execute
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)

    # Assert
    assert errors == []
    assert sorted(results) == [0, 1, 2, 3]
    for t, rounds in results.items():
        mine = range(t, 32, 4)
        for cts, pts, many in rounds:
            assert cts == [expected[i] for i in mine]
            assert pts == [jobs[i][1] for i in mine]
            assert many == expected
