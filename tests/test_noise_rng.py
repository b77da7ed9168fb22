"""SecureRNG's keystream and state: seeded bytes against `cryptography`'s AES-256-CTR (OpenSSL,
no code shared with privcity's kernels), key derivation, positions, reproducibility across runs
and batch splits, OS keying, fork re-keying, repr and pickling."""
from __future__ import annotations

import copy
import os
import pickle
import warnings

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

import privcity
from privcity.noise import SecureRNG
from privcity.noise.rng import derive_key

LENGTHS = [0, 1, 15, 16, 17, 4095, 4096, 4097, 100000]
SEEDS = [0, 1, 2**70 + 3, b"", b"privcity", bytes(range(32)), bytes(1000)]
STREAMS = [0, 1, 7, 2**64 - 1]
N_REPRO = 1_000_000
# Uneven chunk sizes: 1 and 7 cut the Gaussian blocks (32 float32 / 16 float64 normals per
# block), 4095/4097 cut the 4 KiB keystream buffer, 100001 crosses the 8 KiB kernel chunks.
CHUNKS = [1, 7, 31, 32, 33, 1000, 4095, 17, 100001, 4097, 16, 15]


def aes_ctr(key: bytes, n: int, offset: int = 0) -> bytes:
    """The reference keystream: AES-256-CTR with an all-zero initial counter block."""
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return enc.update(bytes(offset + n))[offset:]


def reference_key(seed: bytes | int, stream: int) -> bytes:
    """HKDF-SHA256 as documented, written out here rather than taken from privcity."""
    material = b"int:" + str(seed).encode() if isinstance(seed, int) else b"bytes:" + bytes(seed)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"privcity.noise.SecureRNG v1",
                info=stream.to_bytes(8, "big"))
    return hkdf.derive(material)


def split(n: int, chunks: list[int] = CHUNKS) -> list[int]:
    """n cut into the chunk sizes in turn (the last one shortened)."""
    out, i, k = [], 0, 0
    while i < n:
        c = min(chunks[k % len(chunks)], n - i)
        out.append(c)
        i += c
        k += 1
    return out


# --- keystream ----------------------------------------------------------------------------------

def test_derive_key_is_the_documented_hkdf():
    # Prepare
    cases = [(s, t) for s in SEEDS for t in STREAMS]

    # Execute
    keys = [derive_key(s, t) for s, t in cases]

    # Assert
    assert keys == [reference_key(s, t) for s, t in cases]
    assert len(set(keys)) == len(cases)  # every (seed, stream) its own key


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("seed,stream", [(0, 0), (b"privcity", 0), (b"privcity", 1),
                                         (2**70 + 3, 2**64 - 1), (bytes(range(32)), 7)])
def test_keystream_equals_aes_ctr(seed, stream, length):
    # Prepare
    rng = SecureRNG(seed, stream=stream)

    # Execute
    out = rng.random_bytes(length)

    # Assert
    assert out == aes_ctr(reference_key(seed, stream), length)
    assert rng.position == length


def test_keystream_in_chunks_equals_aes_ctr():
    # Prepare
    rng = SecureRNG(b"chunks", stream=3)
    sizes = LENGTHS + [3, 8191, 8192, 8193, 64, 0, 5]

    # Execute
    parts = []
    for n in sizes:
        parts.append(rng.random_bytes(n))

    # Assert
    assert b"".join(parts) == aes_ctr(reference_key(b"chunks", 3), sum(sizes))
    assert [len(p) for p in parts] == sizes
    assert rng.position == sum(sizes)


@settings(max_examples=60, deadline=None)
@given(seed=st.binary(max_size=40), stream=st.integers(0, 2**64 - 1),
       sizes=st.lists(st.integers(0, 9000), max_size=12))
def test_keystream_in_any_chunks_equals_aes_ctr(seed, stream, sizes):
    # Prepare
    rng = SecureRNG(seed, stream=stream)

    # Execute
    out = b"".join(rng.random_bytes(n) for n in sizes)

    # Assert
    assert out == aes_ctr(reference_key(seed, stream), sum(sizes))
    assert rng.position == sum(sizes)


def test_streams_and_seeds_give_different_bytes():
    # Prepare
    cases = [(s, t) for s in SEEDS for t in STREAMS]

    # Execute
    heads = [SecureRNG(s, stream=t).random_bytes(32) for s, t in cases]

    # Assert
    assert len(set(heads)) == len(cases)


def test_int_and_bytes_seeds_are_distinct_but_bytes_likes_agree():
    # Prepare: the type prefix keeps 1 and b"1" (or b"int:1") apart
    seeds = [1, b"1", b"int:1", b"\x01"]

    # Execute
    heads = [SecureRNG(s).random_bytes(32) for s in seeds]
    as_bytearray = SecureRNG(bytearray(b"seed")).random_bytes(32)
    as_memoryview = SecureRNG(memoryview(b"xseedx")[1:5]).random_bytes(32)
    as_array = SecureRNG(np.frombuffer(b"seed", np.uint8)).random_bytes(32)

    # Assert
    assert len(set(heads)) == len(seeds)
    assert as_bytearray == as_memoryview == as_array == SecureRNG(b"seed").random_bytes(32)


def test_position_starts_at_zero_and_counts_bytes():
    # Prepare
    rng = SecureRNG(5)
    positions = [rng.position]

    # Execute
    for n in [0, 1, 15, 4096, 3]:
        rng.random_bytes(n)
        positions.append(rng.position)

    # Assert
    assert positions == [0, 0, 1, 16, 4112, 4115]


DRAWS = {
    "uniform": lambda r, n: r.uniform(n),
    "bernoulli": lambda r, n: r.bernoulli(n, 0.25),
    "gaussian_f32": lambda r, n: r.gaussian(n, 1.5),
    "gaussian_f64": lambda r, n: r.gaussian(n, 1.5, dtype=np.float64),
    "add_gaussian_f32": lambda r, n: r.add_gaussian_(np.ones(n, np.float32), 0.5),
    "add_gaussian_f64": lambda r, n: r.add_gaussian_(np.ones(n, np.float64), 0.5),
    "laplace": lambda r, n: r.laplace(n, 2.0),
    "discrete_gaussian": lambda r, n: r.discrete_gaussian(n, 3.0),
    "discrete_laplace": lambda r, n: r.discrete_laplace(n, 2.0),
}


@pytest.mark.parametrize("n", [1, 33, 5000])
@pytest.mark.parametrize("kind", sorted(DRAWS))
def test_samplers_advance_the_position_along_the_keystream(kind, n):
    # Prepare: random_bytes after a draw must continue the keystream exactly where the draw
    # stopped (position), so every sampler reads keystream and position counts what it read
    rng = SecureRNG(b"position", stream=2)
    stream = aes_ctr(reference_key(b"position", 2), 1 << 20)

    # Execute
    DRAWS[kind](rng, n)
    pos = rng.position
    tail = rng.random_bytes(64)

    # Assert
    assert 0 < pos < len(stream) - 64
    assert tail == stream[pos:pos + 64]
    assert rng.position == pos + 64


@pytest.mark.parametrize("kind", sorted(DRAWS))
def test_empty_draws_consume_nothing(kind):
    # Prepare
    rng = SecureRNG(11)
    rng.random_bytes(5)

    # Execute
    out = DRAWS[kind](rng, 0)

    # Assert
    assert out.shape == (0,)
    assert rng.position == 5


def test_uniform_reads_one_word_per_sample():
    # Prepare: uniform(n) is documented as 52 random bits each, from 64-bit words
    rng = SecureRNG(b"words")
    words = np.frombuffer(aes_ctr(reference_key(b"words", 0), 8 * 1000), "<u8")

    # Execute
    u = rng.uniform(1000)

    # Assert: the top 52 bits of each little-endian word
    assert np.array_equal(u, (words >> np.uint64(12)).astype(np.float64) * 2.0**-52)
    assert rng.position == 8000


# --- reproducibility ----------------------------------------------------------------------------

REPRO = {
    "gaussian_f32": lambda r, n: r.gaussian(n, 2.0),
    "gaussian_f64": lambda r, n: r.gaussian(n, 2.0, dtype=np.float64),
    "laplace": lambda r, n: r.laplace(n, 1.5),
    "uniform": lambda r, n: r.uniform(n),
    "bernoulli": lambda r, n: r.bernoulli(n, 0.3),
    "discrete_gaussian": lambda r, n: r.discrete_gaussian(n, 3.0),
    "discrete_laplace": lambda r, n: r.discrete_laplace(n, 2.5),
    "random_bytes": lambda r, n: np.frombuffer(r.random_bytes(n), np.uint8),
}


@pytest.mark.parametrize("kind", sorted(REPRO))
def test_same_seed_same_output_at_once_and_in_chunks(kind):
    # Prepare
    draw = REPRO[kind]
    sizes = split(N_REPRO)

    # Execute
    once_rng = SecureRNG(b"repro", stream=4)
    once = draw(once_rng, N_REPRO)
    again = draw(SecureRNG(b"repro", stream=4), N_REPRO)
    chunked_rng = SecureRNG(b"repro", stream=4)
    chunked = np.concatenate([draw(chunked_rng, n) for n in sizes])
    other = draw(SecureRNG(b"repro", stream=5), N_REPRO)

    # Assert
    assert len(sizes) > 100 and min(sizes) == 1
    assert once.shape == (N_REPRO,)
    assert np.array_equal(once, again)
    assert np.array_equal(once, chunked)
    assert not np.array_equal(once, other)
    assert chunked_rng.position == once_rng.position  # the same keystream, consumed alike
    assert np.mean(once == other) < 0.9  # streams are not shifted copies of each other


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_gaussian_at_once_and_in_chunks(dtype):
    # Prepare
    x = np.linspace(-3, 3, N_REPRO).astype(dtype)
    sizes = split(N_REPRO)

    # Execute
    once = SecureRNG(b"add", stream=1).add_gaussian_(x.copy(), 0.75)
    chunked = x.copy()
    rng = SecureRNG(b"add", stream=1)
    start = 0
    for n in sizes:
        rng.add_gaussian_(chunked[start:start + n], 0.75)
        start += n
    noise = SecureRNG(b"add", stream=1).gaussian(N_REPRO, 0.75, dtype=dtype)

    # Assert
    assert once.dtype == dtype
    assert np.array_equal(once, chunked)
    assert np.array_equal(once, x + noise)  # x + sigma * z, the same z as gaussian()


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(REPRO)), sizes=st.lists(st.integers(0, 300), min_size=1, max_size=8))
def test_any_batch_split_gives_the_same_draws(kind, sizes):
    # Prepare
    draw = REPRO[kind]
    chunked_rng = SecureRNG(b"split", stream=9)

    # Execute
    once = draw(SecureRNG(b"split", stream=9), sum(sizes))
    chunked = np.concatenate([draw(chunked_rng, n) for n in sizes])

    # Assert
    assert np.array_equal(once, chunked)


def test_add_gaussian_keeps_shape_and_returns_x():
    # Prepare
    x = np.zeros((40, 25), np.float32)

    # Execute
    out = SecureRNG(3).add_gaussian_(x, 1.0)

    # Assert
    assert out is x
    assert np.array_equal(x.ravel(), SecureRNG(3).gaussian(1000, 1.0))


def test_mixed_kinds_in_one_stream_are_reproducible():
    # Prepare: an interleaving of every kind (spare normals of one kind must not leak into
    # another, and must come out identically on a second run)
    def run(seed):
        r = SecureRNG(seed)
        return [np.asarray(d(r, n)).tobytes() for n in (1, 33, 7) for d in REPRO.values()]

    # Execute
    first, second, other = run(b"mixed"), run(b"mixed"), run(b"other")

    # Assert
    assert first == second
    assert first != other


# --- OS keying, repr, pickling ------------------------------------------------------------------

def test_os_keyed_generators_are_unseeded_and_distinct():
    # Execute
    a, b = SecureRNG(), SecureRNG()
    xa, xb = a.random_bytes(64), b.random_bytes(64)

    # Assert
    assert not a.seeded and not b.seeded
    assert xa != xb
    assert a.position == 64
    assert repr(a) == "SecureRNG(keyed from the OS)"


def test_seeded_repr_warns_it_is_not_for_production():
    # Execute
    rng = SecureRNG(b"secret seed", stream=9)
    text = repr(rng)

    # Assert
    assert rng.seeded
    assert "NOT for production" in text
    assert "stream=9" in text
    assert "secret" not in text  # the seed itself is never shown


@pytest.mark.parametrize("seed", [None, 42])
@pytest.mark.parametrize("dump", [pickle.dumps, copy.copy, copy.deepcopy], ids=["pickle", "copy", "deepcopy"])
def test_cannot_be_pickled_or_copied(seed, dump):
    # Prepare
    rng = SecureRNG(seed)

    # Execute / Assert
    with pytest.raises(TypeError, match="cannot be pickled"):
        dump(rng)


def test_backend_info_names_the_noise_paths():
    # Execute
    info = privcity.backend_info()

    # Assert
    assert {"aes256gcm", "csprng", "noise", "isa_cap"} <= set(info)
    assert info["csprng"] in ("vaes512", "vaes256", "aesni", "portable")
    assert info["noise"] in ("avx512", "avx2", "portable")
    assert info["isa_cap"] in ("vaes512", "vaes256", "aesni", "none", "unset")


# --- fork ---------------------------------------------------------------------------------------

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform has no os.fork")


def _draw_in_child_and_parent(rng: SecureRNG, draw) -> tuple[bytes, bytes]:
    """Forks; child and parent each run draw(rng) -> bytes; returns (parent's, child's)."""
    rd, wr = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking with threads alive (BLAS pools); the child only
        # draws and writes to the pipe, which is safe
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(rd)
            data = draw(rng)
            view = memoryview(data)
            while view:
                view = view[os.write(wr, view):]
            code = 0
        finally:
            os._exit(code)
    os.close(wr)
    mine = draw(rng)
    chunks = []
    while chunk := os.read(rd, 65536):
        chunks.append(chunk)
    os.close(rd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return mine, b"".join(chunks)


@needs_fork
@pytest.mark.parametrize("before", [0, 10, 4096 - 64, 5000], ids=["fresh", "buffered", "buffer-end", "past-buffer"])
def test_os_keyed_generator_rekeys_in_a_forked_child(before):
    # Prepare: bytes drawn before the fork leave keystream in the parent's buffer
    rng = SecureRNG()
    rng.random_bytes(before)

    # Execute
    parent, child = _draw_in_child_and_parent(rng, lambda r: r.random_bytes(64))

    # Assert
    assert len(parent) == len(child) == 64
    assert parent != child


@needs_fork
@pytest.mark.parametrize("kind", ["uniform", "laplace", "discrete_gaussian", "discrete_laplace", "bernoulli"])
def test_os_keyed_samplers_differ_in_a_forked_child(kind):
    # Prepare
    rng = SecureRNG()
    DRAWS[kind](rng, 3)

    # Execute
    parent, child = _draw_in_child_and_parent(rng, lambda r: DRAWS[kind](r, 64).tobytes())

    # Assert
    assert len(parent) == len(child) > 0
    assert parent != child


@needs_fork
@pytest.mark.parametrize("kind,n", [("gaussian_f32", 31), ("gaussian_f64", 15),
                                    ("add_gaussian_f32", 31), ("add_gaussian_f64", 15)])
def test_os_keyed_gaussian_spares_differ_in_a_forked_child(kind, n):
    # Prepare: one draw leaves the rest of its block of normals as spares in the state; the
    # child must not hand out the parent's spares (a bug fixed in faf1a42)
    rng = SecureRNG()
    DRAWS[kind](rng, 1)

    # Execute
    parent, child = _draw_in_child_and_parent(rng, lambda r: DRAWS[kind](r, n).tobytes())

    # Assert
    assert len(parent) == len(child) > 0
    assert parent != child


@needs_fork
def test_seeded_generator_continues_its_stream_in_a_forked_child():
    # Prepare: documented (rng.h): a seeded state is not re-keyed; give each process a stream
    rng = SecureRNG(b"fork", stream=1)
    rng.random_bytes(10)

    # Execute
    parent, child = _draw_in_child_and_parent(rng, lambda r: r.random_bytes(64))

    # Assert
    assert parent == child == aes_ctr(reference_key(b"fork", 1), 64, offset=10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+: fork with threads
def test_fork_while_another_thread_draws_does_not_deadlock_the_child():
    # Prepare: a thread keeps drawing (GIL released, generator lock held) while we fork
    import select
    import signal
    import threading
    import time

    rng = SecureRNG()
    stop = threading.Event()

    def spin():  # long draws (~40 ms each): the fork lands inside one
        while not stop.is_set():
            rng.gaussian(20_000_000, 1.0, np.float64)

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        time.sleep(0.02)
        r, w = os.pipe()

        # Execute
        pid = os.fork()
        if pid == 0:  # child: must be able to draw at once
            try:
                os.write(w, rng.random_bytes(16))
            finally:
                os._exit(0)
        os.close(w)
        ready, _, _ = select.select([r], [], [], 20.0)
        data = os.read(r, 16) if ready else b""
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    finally:
        stop.set()
        worker.join()

    # Assert
    assert len(data) == 16, "the child hung on a lock held by a thread of its parent"
