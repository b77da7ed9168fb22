"""Every path of the reduction kernels: each ISA level forced with PRIVCITY_ISA in a fresh
interpreter (read at import) is checked against numpy float64 references (stated bounds for the
float32 results, exact modular sums) and gives the same bits as every other; 1 and 2 threads give
identical results. Levels this CPU lacks are skipped (BLAKE3's per-implementation tests)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import privcity
from privcity import _core
from privcity.aggregate import (Accumulator, clip_norms, krum, median, modular_sum, trimmed_mean,
                                weighted_mean)

# The data, shared by the subprocesses and the references. Sizes leave remainders after every
# vector width and cross the kernels' 64 Ki-column tiles.
DATA = r'''
import numpy as np
K, D = 13, 70_001
rng = np.random.default_rng(2024)
x = (rng.standard_normal((K, D)) * rng.uniform(0.1, 10, (K, 1))).astype(np.float32)
w = rng.integers(1, 1000, K).astype(np.float64)
u32 = rng.integers(0, 2**32, (K, D), dtype=np.uint32)
u64 = rng.integers(0, 2**64, (K, 4099), dtype=np.uint64)
'''

# Writes every output to the .npz file OUT_PATH.
OUTPUTS = DATA + r'''
from privcity import _core
from privcity.aggregate import (Accumulator, clip_norms, krum, median, modular_sum, trimmed_mean,
                                weighted_mean)

out = {}
out["weighted_mean"] = weighted_mean(x, w)
acc = Accumulator(D)
for row, wi in zip(x, w):
    acc.add(row, wi)
out["accumulator"] = acc.mean()
bad = x.copy()
bad[[1, 6], [0, D - 1]] = [np.nan, np.inf]
out["weighted_mean_skip"] = weighted_mean(bad, w, on_invalid="skip")
out["median_odd"] = median(x)
out["median_even"] = median(x[:12])
out["trimmed_mean"] = trimmed_mean(x, 0.2)
res = krum(x, 3, m=4, report=True)
out["krum_scores"] = res.scores
out["multi_krum"] = res.value
out["clip_norms"] = clip_norms(x, 50.0)
out["norms"] = _core.l2_norms_f32(x)
out["modular_u32"] = modular_sum(u32)
out["modular_u64"] = modular_sum(u64)
np.savez(OUT_PATH, simd=_core.simd_isa_selected(), **out)
'''

PATHS = ("vaes512", "aesni", "armv8", "none")
# one ladder: none/portable < aesni/avx2 < vaes512/avx512 on x86-64, none/portable < armv8/neon
# on aarch64 (SIMD_NEON = SIMD_AVX2)
RUNG = {"vaes512": 2, "aesni": 1, "armv8": 1, "none": 0}
SIMD_RUNG = {_core.SIMD_PORTABLE: 0, _core.SIMD_AVX2: 1, _core.SIMD_AVX512: 2}
if _core.ISA_ARCH == "aarch64":
    ALIASES = [("neon", "armv8"), ("portable", "none")]
else:
    ALIASES = [("avx512", "vaes512"), ("avx2", "aesni"), ("portable", "none")]


def _path(name: str) -> object:
    lacking = name != "none" and name not in privcity.aes_implementations()
    return pytest.param(name, id=name, marks=pytest.mark.skipif(
        lacking, reason=f"this CPU cannot run the {name!r} path"))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> dict[str, np.ndarray]:
    """The outputs of this process (its own dispatch, PRIVCITY_ISA as pytest was started)."""
    path = tmp_path_factory.mktemp("paths") / "here.npz"
    exec(OUTPUTS, {"OUT_PATH": str(path)})  # noqa: S102 - the code the subprocesses run
    with np.load(path) as z:
        return {name: z[name] for name in z.files}


def check_against_references(out: dict[str, np.ndarray]) -> None:
    """Each output against numpy float64 (stated bounds) or exact integer references."""
    data: dict = {}
    exec(DATA, data)  # noqa: S102
    k, x, w, u32, u64 = data["K"], data["x"], data["w"], data["u32"], data["u64"]
    x64 = x.astype(np.float64)

    # weighted mean: float64 sum (<= (K + 2) 2**-52 sum|w x| / W) rounded once (<= 2**-24 |mean|)
    def within(got, keep):
        ref = (w[keep, None] * x64[keep]).sum(axis=0) / w[keep].sum()
        spread = np.abs(w[keep, None] * x64[keep]).sum(axis=0) / w[keep].sum()
        assert np.all(np.abs(got - ref) <= 2.0**-24 * np.abs(ref) + (k + 2) * 2.0**-52 * spread)

    within(out["weighted_mean"], np.arange(k))
    within(out["accumulator"], np.arange(k))
    within(out["weighted_mean_skip"], np.array([i for i in range(k) if i not in (1, 6)]))
    assert np.array_equal(out["median_odd"], np.median(x64, axis=0).astype(np.float32))
    assert np.array_equal(out["median_even"], np.median(x64[:12], axis=0).astype(np.float32))
    ref = scipy.stats.trim_mean(x64, 0.2, axis=0)
    assert np.all(np.abs(out["trimmed_mean"] - ref)
                  <= 2.0**-24 * np.abs(ref) + (k + 2) * 2.0**-52 * np.abs(x64).max(axis=0))
    norms = np.sqrt((x64 * x64).sum(axis=1))
    np.testing.assert_allclose(out["norms"], norms, rtol=1e-13)
    np.testing.assert_allclose(out["clip_norms"], x64 * np.minimum(1.0, 50.0 / norms)[:, None], rtol=1e-6)
    dist = np.array([[((x64[i] - x64[j]) ** 2).sum() for j in range(k)] for i in range(k)])
    scores = [np.sort(np.delete(dist[i], i))[: k - 3 - 2].sum() for i in range(k)]
    np.testing.assert_allclose(out["krum_scores"], scores, rtol=1e-12)
    best = np.sort(np.argsort(scores, kind="stable")[:4])
    ref_multi = x64[best].mean(axis=0)
    assert np.all(np.abs(out["multi_krum"] - ref_multi)
                  <= 2.0**-24 * np.abs(ref_multi) + 6 * 2.0**-52 * np.abs(x64[best]).mean(axis=0))
    assert np.array_equal(out["modular_u32"], u32.sum(axis=0, dtype=np.uint32))  # numpy wraps
    assert np.array_equal(out["modular_u64"], u64.sum(axis=0, dtype=np.uint64))


@pytest.mark.parametrize("isa", [_path(n) for n in PATHS])
def test_forced_path_matches_references_and_every_other_path(run_python, in_process, tmp_path, isa):
    # Prepare
    path = tmp_path / f"{isa}.npz"
    code = "import sys\nOUT_PATH = sys.argv[1]\n" + OUTPUTS
    rung = min(RUNG[isa], SIMD_RUNG[_core.simd_isa_supported()])

    # Execute
    proc = run_python(code, isa=isa, args=(str(path),))

    # Assert
    assert proc.returncode == 0, proc.stderr
    with np.load(path) as z:
        out = {name: z[name] for name in z.files}
    assert SIMD_RUNG[int(out.pop("simd"))] == rung
    check_against_references(out)
    for name, value in out.items():
        assert np.array_equal(value, in_process[name], equal_nan=True), name


@pytest.mark.parametrize("alias, same", ALIASES)
def test_vector_aliases_pick_the_same_level(run_python, alias, same):
    # Prepare
    code = "from privcity import _core; print(_core.simd_isa_selected())"

    # Execute
    got = run_python(code, isa=alias)
    want = run_python(code, isa=same)

    # Assert
    assert got.returncode == 0 and want.returncode == 0, got.stderr + want.stderr
    assert got.stdout == want.stdout


# --- thread counts --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide() -> tuple[np.ndarray, np.ndarray]:
    """Wide enough that 2 threads really split every kernel (>= 2 tiles of 64 Ki columns)."""
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((11, 200_003)) * 3).astype(np.float32)
    return x, rng.uniform(0.5, 9.0, 11)


@pytest.mark.parametrize("name", ["weighted_mean", "accumulator", "median", "trimmed_mean", "krum",
                                  "multi_krum", "clip_norms", "modular_sum"])
def test_one_and_two_threads_give_identical_results(wide, name):
    # Prepare
    x, w = wide
    ints = x.view(np.uint32)

    def run(threads: int) -> np.ndarray:
        if name == "accumulator":
            acc = Accumulator(x.shape[1], threads=threads)
            for row, wi in zip(x, w):
                acc.add(row, wi)
            return acc.mean()
        return {
            "weighted_mean": lambda: weighted_mean(x, w, threads=threads),
            "median": lambda: median(x, threads=threads),
            "trimmed_mean": lambda: trimmed_mean(x, 0.1, threads=threads),
            "krum": lambda: krum(x, 2, report=True, threads=threads).scores,
            "multi_krum": lambda: krum(x, 2, m=5, threads=threads),
            "clip_norms": lambda: clip_norms(x, 100.0, threads=threads),
            "modular_sum": lambda: modular_sum(ints, threads=threads),
        }[name]()

    # Execute
    one, two = run(1), run(2)

    # Assert
    assert np.array_equal(one, two)
