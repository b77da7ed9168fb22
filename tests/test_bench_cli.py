"""privcity bench: every ISA path this CPU has, each kernel beside its anchor, saved as JSON and
compared against an earlier run with the measured noise as tolerance."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from privcity.bench import KERNELS, compare, paths


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "privcity.cli", "bench", *args],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "run.json"
    proc = _bench("--quick", "--repeats", "3", "--kernels", "aead_1k,dgauss_1", "--json",
                  str(path))
    return proc, path


def test_bench_runs_each_kernel_on_every_path_of_this_cpu_and_saves_the_table(saved):
    # Prepare / Execute (the module's run)
    proc, path = saved

    # Assert: one row per kernel and path; a ratio where there is an anchor
    assert proc.returncode == 0, proc.stderr
    report = json.loads(path.read_text())
    rows = {(r["kernel"], r["path"]): r for r in report["results"]}
    assert set(rows) == {(k, p) for k in ("aead_1k", "dgauss_1") for p in paths()}
    for p in paths():
        assert rows[("aead_1k", p)]["ratio"] > 0 and rows[("aead_1k", p)]["anchor"] > 0
        assert rows[("dgauss_1", p)]["ratio"] is None and rows[("dgauss_1", p)]["privcity"] > 0
    assert report["cpu"] and "aead_1k" in proc.stdout and "none" in proc.stdout
    assert paths()[-1] == "none"  # the portable path is always measured


def test_a_cpu_with_vector_units_but_no_aes_instructions_benches_its_vector_path(monkeypatch):
    # Prepare: no native AES (an ARM CPU without the Crypto Extensions), vector units present
    from privcity import _core, _dispatch
    monkeypatch.setattr(_dispatch, "aes_implementations", lambda: ["cryptography"])
    monkeypatch.setattr(_core, "simd_isa_supported", lambda: _core.SIMD_AVX2)  # = SIMD_NEON

    # Execute
    got = paths()

    # Assert: the vector path by its name (neon on aarch64, avx2 on x86-64), then none
    assert got == [_dispatch._SIMD_NAMES[_core.SIMD_AVX2], "none"]
    assert got[0] in _dispatch._ALIASES


def test_compare_flags_a_run_slower_beyond_the_noise_and_exits_1(saved, tmp_path):
    # Prepare: the saved run, as if the earlier one had been 10 times faster
    _, path = saved
    faster = json.loads(path.read_text())
    for r in faster["results"]:
        r["privcity"] *= 10
        if r["ratio"] is not None:
            r["ratio"] *= 10
    old = tmp_path / "old.json"
    old.write_text(json.dumps(faster))

    # Execute
    proc = _bench("--quick", "--repeats", "3", "--kernels", "aead_1k,dgauss_1", "--paths",
                  "none", "--compare", str(old))

    # Assert
    assert proc.returncode == 1, proc.stderr
    assert "REGRESSION aead_1k on none: ratio" in proc.stdout
    assert "REGRESSION dgauss_1 on none: privcity" in proc.stdout


def test_compare_tolerates_what_the_two_runs_own_noise_explains():
    # Prepare
    def run(ratio, spread, rate=None):
        return {"results": [{"kernel": "k", "path": "p", "ratio": ratio, "spread": spread,
                             "privcity": rate if rate is not None else 1.0}]}

    # Execute / Assert: 10% floor; wider when the runs were noisy; throughput without anchor
    assert compare(run(2.0, 0.01), run(1.85, 0.01)) == []
    assert [f["now"] for f in compare(run(2.0, 0.01), run(1.7, 0.01))] == [1.7]
    assert compare(run(2.0, 0.10), run(1.4, 0.10)) == []  # 40% of noise allowed
    assert compare(run(None, 0.01, rate=20.0), run(None, 0.01, rate=15.0))[0]["measure"] == \
        "privcity"
    assert compare(run(2.0, 0.01), {"results": []}) == []  # nothing to compare


def test_bench_refuses_unknown_kernels_and_paths():
    assert "unknown kernel" in _bench("--kernels", "aead_1k,warp_drive").stderr
    assert "cannot run" in _bench("--paths", "quantum").stderr
    assert {k.name for k in KERNELS} >= {"aead_16k", "aead_1m", "aead_batch", "csprng",
                                         "gaussian_f32", "laplace", "dgauss_100"}
