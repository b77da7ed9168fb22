"""Every CPU path of the noise generator, forced with PRIVCITY_ISA in a fresh interpreter, gives
bit-identical seeded outputs (SHA-256 of each sampler, fused device kernel and the distributed
DP encoder and decoder), and its keystream equals `cryptography`'s AES-256-CTR. Paths this CPU
cannot run are skipped (BLAKE3's per-implementation tests)."""
from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import privcity
from privcity import _core
from privcity.noise.rng import derive_key

# Sizes leave remainders after every vector width (8/16/32 lanes) and cross the 4 KiB keystream
# buffer; chunked draws go through the spare normals of the Gaussian drivers.
OUTPUTS = r'''
import hashlib, json
import numpy as np
import privcity
from privcity.noise import SecureRNG

def h(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

N = 100_003
M = 20_011
x32 = np.linspace(-2, 2, N, dtype=np.float32)
x64 = np.linspace(-2, 2, N, dtype=np.float64)
out = {}
r = SecureRNG(b"isa", stream=1)
out["random_bytes"] = hashlib.sha256(r.random_bytes(N)).hexdigest()
out["uniform"] = h(r.uniform(N))
out["gaussian_f32"] = h(r.gaussian(N, 1.7))
out["gaussian_f32_chunks"] = h(np.concatenate([r.gaussian(k, 0.3) for k in (1, 7, 33, 100, 5000)]))
out["gaussian_f64"] = h(r.gaussian(N, 1.7, dtype=np.float64))
out["gaussian_f64_chunks"] = h(np.concatenate([r.gaussian(k, 0.3, dtype=np.float64) for k in (1, 7, 33, 100, 5000)]))
out["add_gaussian_f32"] = h(r.add_gaussian_(x32.copy(), 0.25))
out["add_gaussian_f64"] = h(r.add_gaussian_(x64.copy(), 0.25))
out["laplace"] = h(r.laplace(N, 0.9))
out["bernoulli"] = h(r.bernoulli(N, 0.37))
for s in (0.5, 3.0, 100.0):
    out[f"discrete_gaussian_{s}"] = h(r.discrete_gaussian(M, s))
for s in (0.3, 2.5, 1000.0):
    out[f"discrete_laplace_{s}"] = h(r.discrete_laplace(M, s))
o32 = np.empty_like(x32)
norms = [r._rng.clip_add_gaussian_f32(o32, x32, 1.0, 0.5)]
out["clip_add_gaussian_f32_clipped"] = h(o32)
norms.append(r._rng.clip_add_gaussian_f32(o32, x32, 1e30, 0.5))
out["clip_add_gaussian_f32_unclipped"] = h(o32)
out["clip_norms"] = h(np.array(norms))
rounded = [r.clip_round_add_discrete_gaussian(x32, c, 1000.0, 2.0) for c in (3.0, 2.0**50)]
out["clip_round_add_discrete_gaussian"] = h(np.concatenate([v for v, _ in rounded]))
key, d = bytes(range(32)), 10_000
cfg = dict(clip=1.0, gamma=1e-3, l2_bound_sq=1_300_000, sigma2=(10_000, 1))
for bits in (20, 40):
    words, norm, tries = r.ddg_encode(x32[:d], rotation_key=key, bits=bits, **cfg)
    out[f"ddg_encode_{bits}"] = h(words) + f" {norm!r} {tries}"
    decode = privcity._core.ddg_decode_u32 if bits <= 32 else privcity._core.ddg_decode_u64
    out[f"ddg_decode_{bits}"] = h(decode(words, d, key, 1.0, 1e-3, 1_300_000, 10_000, 1, bits))
out["position"] = r.position
print(json.dumps({"backend": privcity.backend_info(), "outputs": out}))
'''

PATHS = ("vaes512", "vaes256", "aesni", "armv8", "none")
CSPRNG = {"vaes512": "vaes512", "vaes256": "vaes256", "aesni": "aesni", "armv8": "armv8",
          "none": "portable"}
# one ladder: none < aesni/avx2 < vaes256 (256-bit vectors too) < vaes512/avx512 on x86-64,
# none < armv8/neon on aarch64 (the vector levels share their numbers: neon = avx2 = 1)
RUNG = {"vaes512": 2, "vaes256": 1, "aesni": 1, "armv8": 1, "none": 0}
if _core.ISA_ARCH == "aarch64":
    SIMD_NAMES = {_core.SIMD_PORTABLE: "portable", _core.SIMD_NEON: "neon"}
else:
    SIMD_NAMES = {_core.SIMD_PORTABLE: "portable", _core.SIMD_AVX2: "avx2",
                  _core.SIMD_AVX512: "avx512"}
NEEDS = {"vaes512": "VAES and AVX-512", "vaes256": "VAES and AVX2", "aesni": "AES-NI",
         "armv8": "the ARMv8 Crypto Extensions"}
# The rung named by its vector level, and that level's name (x86-64: avx2, aarch64: neon).
VECTOR_ALIAS = ("neon", "armv8") if _core.ISA_ARCH == "aarch64" else ("avx2", "aesni")


def _path(name: str) -> object:
    lacking = name != "none" and name not in privcity.aes_implementations()
    return pytest.param(name, id=name, marks=pytest.mark.skipif(
        lacking, reason=f"this CPU cannot run the {name!r} path (it needs {NEEDS.get(name)})"))


@pytest.fixture(scope="module")
def in_process() -> dict:
    """The outputs of this process (its own dispatch, PRIVCITY_ISA as pytest was started)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(OUTPUTS, {})  # noqa: S102 - the same code the subprocesses run
    return json.loads(buf.getvalue())


@pytest.mark.parametrize("isa", [_path(n) for n in PATHS])
def test_forced_path_gives_identical_seeded_outputs(run_python, in_process, isa):
    # Prepare
    simd = SIMD_NAMES[min(RUNG[isa], _core.simd_isa_supported())]

    # Execute
    proc = run_python(OUTPUTS, isa=isa)

    # Assert
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"]["csprng"] == CSPRNG[isa]
    assert report["backend"]["noise"] == simd
    assert report["outputs"] == in_process["outputs"]


@pytest.mark.parametrize("isa", [_path(n) for n in PATHS])
def test_forced_path_keystream_equals_aes_ctr(run_python, isa):
    # Prepare
    n = 100_003
    code = ("import hashlib, privcity; from privcity.noise import SecureRNG; "
            "r = SecureRNG(b'ctr', stream=5); "
            "print(privcity.backend_info()['csprng'], "
            "hashlib.sha256(b''.join(r.random_bytes(k) for k in (1, 4096, 15, 4097, %d))).hexdigest())" % n)
    total = 1 + 4096 + 15 + 4097 + n
    enc = Cipher(algorithms.AES(derive_key(b"ctr", 5)), modes.CTR(bytes(16))).encryptor()
    expected = hashlib.sha256(enc.update(bytes(total))).hexdigest()

    # Execute
    proc = run_python(code, isa=isa)

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [CSPRNG[isa], expected]


def test_aliases_select_the_same_noise_paths(run_python):
    # Prepare
    code = "import json, privcity; print(json.dumps(privcity.backend_info()))"

    # Execute
    reports = {alias: json.loads(run_python(code, isa=alias).stdout)
               for alias in ("portable", "none") + VECTOR_ALIAS}

    # Assert
    assert reports["portable"] == reports["none"]
    assert reports["portable"]["csprng"] == "portable" and reports["portable"]["noise"] == "portable"
    assert reports[VECTOR_ALIAS[0]] == reports[VECTOR_ALIAS[1]]


def test_an_unseeded_generator_follows_the_cap_down_to_the_constant_time_portable_aes(run_python):
    # Prepare: every AES path is constant time (AES instructions, or the bitsliced portable
    # AES: no table), so an OS-keyed generator runs the capped path like a seeded one, and on
    # a CPU without AES instructions it runs at all (it used to be refused there)
    code = ("import privcity; from privcity import _core; from privcity.noise import SecureRNG; "
            "print(_core.aes_isa_supported(), SecureRNG()._rng.impl, "
            "SecureRNG(b'seed')._rng.impl, _core.AES_ISA_NONE, "
            "SecureRNG().random_bytes(16).hex(), SecureRNG().random_bytes(16).hex())")

    # Execute
    capped = run_python(code, isa="none")
    uncapped = run_python(code)

    # Assert: the portable path under the cap, with fresh OS keys; the best path without it
    assert capped.returncode == 0 and uncapped.returncode == 0, capped.stderr + uncapped.stderr
    supported, unseeded, seeded, none, a, b = capped.stdout.split()
    assert int(unseeded) == int(seeded) == int(none)
    assert a != b
    supported, unseeded, seeded, none, a, b = uncapped.stdout.split()
    assert int(unseeded) == int(seeded) == int(supported)
