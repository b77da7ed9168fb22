"""The device's step of the distributed discrete Gaussian (privcity.dp.ddg_encode: clip, rotate,
scale, conditional rounding, exact discrete Gaussian noise, wrap) on a 10,000-parameter update,
beside the same steps written in numpy on privcity's existing samplers.

Run: python -m pytest bench/test_distributed_dp.py --benchmark-only -p no:cacheprovider
Target (issue 14): p99 below 1 ms per 10,000-parameter update, on one core. Printed: p50 and
p99 over 3000 calls (OS-keyed SecureRNG: the production path), in wall-clock time and in the
thread's CPU time (which leaves out the time other processes held the core: on a shared
2-core machine the wall clock's p99 swings with their load), the ratio to the numpy anchor,
and the cost of each stage.

The anchor takes the same padded length (10,240 = 20 x 512: the Paley H_20 Kronecker Sylvester
rotation), the same sign stream, the same exact sampler (SecureRNG.discrete_gaussian) and
CSPRNG uniforms for the rounding, the same norm check and wrap: only the fusion into one native
pass differs. Its output is checked equal in distribution, not bit for bit (the rounding draws
come from different positions of the keystream).
"""
from __future__ import annotations

import math
import platform
import statistics
import time

import numpy as np
import pytest

import privcity
from privcity import _core
from privcity.dp import DDGParams, ddg_decode, ddg_encode, ddg_rotation_key
from privcity.noise import SecureRNG

DIM = 10_000
LATENCY_CALLS = 3000
TARGET_P99_S = 1e-3
SEED = bytes(range(32))


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@pytest.fixture(scope="module")
def params() -> DDGParams:
    # A timing case: 10,000 parameters on a 20-bit ring, sigma_local 8,230 integer units (what
    # ddg_params picked for n_min = 80, epsilon 3, q = 0.01, 1,000 rounds before it counted a
    # device's own share leaving the sum; with it, 80 shares in 10,240 dimensions cannot reach
    # epsilon 3, and the noise per share would be the same). The speed depends on sigma only.
    return DDGParams(dim=DIM, clip=1.0, gamma=1.2487375741088414e-05,
                     sigma_local=8229.700024509999, bits=20, n_min=80, sample_rate=0.01)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    v = np.random.default_rng(0).standard_normal(DIM)
    return (v * 3.0 / np.linalg.norm(v)).astype(np.float32)  # norm 3: clipped to 1


# --- the anchor: the same steps in numpy ---------------------------------------------------------

def _paley(q: int) -> np.ndarray:
    residues = {(i * i) % q for i in range(1, q)}
    chi = [0] + [1 if a in residues else -1 for a in range(1, q)]
    s = np.zeros((q + 1, q + 1))
    s[0, 1:], s[1:, 0] = 1, -1
    s[1:, 1:] = [[chi[(j - i) % q] for j in range(q)] for i in range(q)]
    return np.eye(q + 1) + s


class NumpyDevice:
    """ddg_encode's steps in numpy: clip, signs, FWHT on 20 blocks of 512 and H_20 across them,
    scale, exact discrete Gaussian noise, conditional stochastic rounding, wrap."""

    def __init__(self, params: DDGParams, rng: SecureRNG) -> None:
        self.p, self.rng = params, rng
        self.h20 = _paley(19)
        # The sign stream: bit i of AES-256-CTR under the rotation key (as the kernel reads it).
        stream = self._keystream(ddg_rotation_key(SEED), params.padded_dim // 8)
        self.signs = 1.0 - 2.0 * np.unpackbits(stream, bitorder="little").astype(np.float64)

    @staticmethod
    def _keystream(key: bytes, n: int) -> np.ndarray:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        return np.frombuffer(enc.update(bytes(n)), np.uint8)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        x64 = x.astype(np.float64)
        norm = math.sqrt(float(np.einsum("i,i->", x64, x64)))  # no BLAS: see the mixing below
        y = np.zeros(p.padded_dim)
        y[:p.dim] = x * (min(1.0, p.clip / norm) if norm > 0 else 1.0)
        y *= self.signs
        blocks = y.reshape(20, 512)
        h = 1
        while h < 512:  # Walsh-Hadamard along each block
            v = blocks.reshape(20, -1, 2, h)
            blocks = np.concatenate((v[:, :, 0] + v[:, :, 1], v[:, :, 0] - v[:, :, 1]), axis=2)
            blocks = blocks.reshape(20, 512)
            h *= 2
        # einsum without optimize: numpy's own loops, one thread like the device (BLAS calls
        # here, matmul or dot, handed work to OpenBLAS threads and stalled milliseconds on a
        # shared machine)
        mixed = np.einsum("ab,bj->aj", self.h20, blocks, optimize=False)
        y = mixed.reshape(-1) / (p.gamma * math.sqrt(p.padded_dim))
        noise = self.rng.discrete_gaussian(p.padded_dim, p.sigma_local)
        floor = np.floor(y)
        while True:
            r = floor + (self.rng.uniform(p.padded_dim) < y - floor)
            if float(np.einsum("i,i->", r, r)) <= p.l2_bound_sq:
                break
        return (r.astype(np.int64) + noise).astype(np.uint32) & np.uint32(2**p.bits - 1)


# --- benchmarks --------------------------------------------------------------------------------

def test_anchor_decodes_like_privcity(params, x):
    """The anchor does the same thing: its words decode to the clipped x within the noise."""
    words = NumpyDevice(params, SecureRNG(b"anchor"))(x)
    estimate = ddg_decode(words, params, SEED)
    truth = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64))
    err = (estimate - truth) / (params.sigma_local * params.gamma)
    assert abs(float(np.std(err)) - 1.0) < 0.05


@pytest.mark.parametrize("impl", ["privcity"])
def test_device_step_vs_numpy(benchmark, record, interleaved, params, x, impl):
    group = "ddg device step 10k vs numpy"
    benchmark.group = group
    rng = SecureRNG()
    anchor = NumpyDevice(params, SecureRNG())
    out = np.empty(params.padded_dim, params.word_dtype)
    (words, norm), anchor_stats = interleaved(
        benchmark, lambda: ddg_encode(x, params, SEED, rng, out=out), lambda: anchor(x), rounds=400)
    assert words.shape == (params.padded_dim,) and norm == pytest.approx(3.0, rel=1e-6)
    record(anchor_stats, group, "anchor")
    record(benchmark, group, impl)


def test_device_step_latency_p50_p99(benchmark, report_line, params, x):
    """Per-call latency of the whole device step (Python call included): each round one call.
    Wall-clock time, and beside it the thread's CPU time of the same kind of calls: on a shared
    machine the wall clock's tail also holds the time other processes had the core."""
    benchmark.group = "ddg device step 10k latency"
    rng = SecureRNG()
    out = np.empty(params.padded_dim, params.word_dtype)
    words, _ = benchmark.pedantic(lambda: ddg_encode(x, params, SEED, rng, out=out),
                                  rounds=LATENCY_CALLS, iterations=1, warmup_rounds=50)
    assert words.dtype == np.uint32
    if benchmark.stats is None:  # --benchmark-disable
        return
    cpu = []
    for _ in range(LATENCY_CALLS):
        t0 = time.thread_time_ns()
        ddg_encode(x, params, SEED, rng, out=out)
        cpu.append((time.thread_time_ns() - t0) * 1e-9)
    p50, p99 = np.percentile(np.asarray(benchmark.stats.stats.data), [50, 99])
    c50, c99 = np.percentile(cpu, [50, 99])
    verdict = "met" if p99 < TARGET_P99_S else "MISSED"
    kernels = privcity.backend_info()["noise"]
    report_line(f"ddg device step, {DIM:,} params -> {params.padded_dim:,} words, sigma "
                f"{params.sigma_local:.4g}: wall p50 {p50 * 1e3:.3f} ms  p99 {p99 * 1e3:.3f} ms  "
                f"target p99 < 1 ms: {verdict}; thread CPU time p50 {c50 * 1e3:.3f} ms  p99 "
                f"{c99 * 1e3:.3f} ms  (CPU: {_cpu()}; kernels {kernels})")


def _medians(fns: dict, calls: int = 400) -> dict:
    """Median time of each callable, the callables run in turn (a drifting machine shifts
    them all alike)."""
    times: dict = {name: [] for name in fns}
    for i in range(calls + 20):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= 20:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def test_cost_per_stage(report_line, params, x):
    """Medians of the stages: the whole call, the native kernel alone, the exact sampler alone
    (the same 10,240 draws through the same binding), the rotation alone (the native kernel on
    float64); the rest (clip, scale, conditional rounding, wrap) by difference; the server's
    decode."""
    rng = SecureRNG()
    key = ddg_rotation_key(SEED)
    x64 = x.astype(np.float64)
    out = np.empty(params.padded_dim, params.word_dtype)
    draws = np.empty(params.padded_dim, np.int64)
    num, den = params.sigma2
    gen = np.random.default_rng()
    m = _medians({
        "call": lambda: ddg_encode(x, params, SEED, rng, out=out),
        "kernel": lambda: rng.ddg_encode(x, rotation_key=key, clip=params.clip, gamma=params.gamma,
                                         l2_bound_sq=params.l2_bound_sq, sigma2=params.sigma2,
                                         bits=params.bits, out=out),
        "noise": lambda: rng._rng.discrete_gaussian(draws, num, den),
        "rotate": lambda: _core.ddg_rotate(x64, key),
        "decode": lambda: ddg_decode(out, params, SEED),
        "numpy_normal": lambda: gen.standard_normal(params.padded_dim),
    })
    us = {k: v * 1e6 for k, v in m.items()}
    rest = us["kernel"] - us["noise"] - us["rotate"]
    report_line(f"ddg stages (median, us): whole call {us['call']:.0f} = native kernel "
                f"{us['kernel']:.0f} [exact noise {us['noise']:.0f} ({params.padded_dim:,} "
                f"samples, {params.padded_dim / m['noise'] / 1e6:.1f} M/s) + rotation "
                f"{us['rotate']:.0f} + clip/scale/conditional rounding/wrap {rest:.0f} by "
                f"difference] + Python checks {us['call'] - us['kernel']:.0f}; server decode "
                f"{us['decode']:.0f}; numpy standard_normal of the same length "
                f"{us['numpy_normal']:.0f}")
    assert m["noise"] < m["call"] and m["rotate"] < m["call"]
