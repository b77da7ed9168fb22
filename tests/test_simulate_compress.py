"""privcity simulate --compress (issue 16): fewer bytes for about the same model, recorded in
metrics.json, with and without DP and secure aggregation; top-k's error feedback gives the same
model on any number of ranks; the option's errors name the field."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from privcity.sim import load_config, simulate

from test_simulate import _mpiexec_and_env

SMALL = dict(devices=120, rounds=5, sample_rate=0.25, samples_per_device=24, seed=3, lr=0.5,
             local_epochs=2, attacks="none", report=False, risk_people=0, epsilon=8.0)


def run(tmp_path: Path, **kw) -> dict:
    cfg = load_config(None, out=str(tmp_path / "out"), **{**SMALL, **kw})
    return simulate(cfg, progress=False)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("plain"))


@pytest.mark.parametrize("spec", ["q8", "q4", "topk:0.2"])
def test_compressed_updates_send_fewer_bytes_for_about_the_same_model(tmp_path, plain, spec):
    # Execute
    got = run(tmp_path, compress=spec, adaptive_clip=True)

    # Assert: every device's update arrived and was admitted, in fewer bytes, for a model
    # close to the uncompressed one; metrics.json names the codec
    for r in ("fl", "fl_dp"):
        assert got[r]["refused"] == 0
        assert got[r]["device_rounds"] == plain[r]["device_rounds"]
        assert got[r]["bytes_total"] < plain[r]["bytes_total"]
    assert got["fl"]["score"] == pytest.approx(plain["fl"]["score"], abs=0.05)
    assert got["bandwidth"]["compression"]["compress"] == spec
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["config"]["compress"] == spec


def test_eight_bits_send_about_a_quarter_of_the_update_bytes(tmp_path, plain):
    got = run(tmp_path, compress="q8")
    codec = got["bandwidth"]["compression"]
    per_update = plain["fl"]["bytes_total"] / plain["fl"]["device_rounds"]
    assert got["fl"]["bytes_total"] / got["fl"]["device_rounds"] == pytest.approx(
        per_update - codec["dense_payload_bytes"] + codec["payload_bytes"], abs=1)


def test_quantized_integers_are_summed_in_a_32_bit_ring_under_secure_aggregation(tmp_path):
    # Prepare
    secure = dict(secure_aggregation=True, secagg_cohort=30)
    dense = run(tmp_path / "dense", **secure)

    # Execute
    got = run(tmp_path / "q8", compress="q8", **secure)

    # Assert: FedAvg's words are 32 bits, not 64 (fewer bytes, key exchange included); the DP
    # run's distributed-DP words are as they were
    ring = got["bandwidth"]["compression"]["fl_secure"]
    assert ring["word"] == "uint32" and ring["ring_bits"] <= 32
    sent = sum(r["reported"] for r in got["rounds"]["fl"])
    dim, padded = got["n_params"], ring["padded_dim"]
    assert dense["fl"]["bytes_total"] - got["fl"]["bytes_total"] == \
        sent * (8 * (dim + 1) - 4 * (padded + 1))
    assert got["fl_dp"]["bytes_total"] == dense["fl_dp"]["bytes_total"]
    assert got["fl"]["score"] == pytest.approx(dense["fl"]["score"], abs=0.05)
    assert [r["reported"] for r in got["rounds"]["fl"]] == \
        [r["reported"] for r in dense["rounds"]["fl"]]


@pytest.mark.parametrize("kw, message", [
    (dict(compress="q99"), "compress"),
    (dict(compress="zip"), "compress"),
    (dict(compress="topk:0.1", secure_aggregation=True), "top-k"),
])
def test_a_bad_compress_setting_is_refused_naming_the_field(kw, message):
    with pytest.raises(ValueError, match=f"'compress'.*{message}|{message}.*"):
        load_config(None, **kw)


def test_the_toml_file_and_the_flag_set_compress(tmp_path):
    toml = tmp_path / "city.toml"
    toml.write_text('[simulate]\ncompress = "q4"\n')
    assert load_config(str(toml)).compress == "q4"
    assert load_config(str(toml), compress="topk:0.05").compression().fraction == 0.05


def test_mpiexec_3_ranks_give_the_one_process_result_with_top_k_error_feedback(tmp_path):
    # Prepare: residuals live on the gateways, which differ between the two runs
    mpiexec, env = _mpiexec_and_env()
    kw = dict(SMALL, compress="topk:0.1", runs="fl")
    one = run(tmp_path / "one", **kw)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()
             if k not in ("report",)]
    out = tmp_path / "mpi"

    # Execute
    proc = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "privcity.cli", "simulate",
                           *flags, "--no-report", f"--out={out}", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)

    # Assert: bit-identical models and bytes
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads((out / "metrics.json").read_text())
    assert got["ranks"] == 3
    assert got["final_params_sha256"] == one["final_params_sha256"]
    assert [r["bytes_sent"] for r in got["rounds"]["fl"]] == \
        [r["bytes_sent"] for r in one["rounds"]["fl"]]
