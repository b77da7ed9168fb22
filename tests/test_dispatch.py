"""Run-time dispatch: CPU features, the implementations they allow, the PRIVCITY_ISA cap read at
import (checked in fresh interpreters) and the ``privcity info`` command."""
from __future__ import annotations

import json

import pytest

import privcity
from privcity import _core, _dispatch
from privcity.crypto import AES256GCM, aead

EXPECTED_FEATURES = {"ssse3", "sse4_1", "aesni", "pclmulqdq", "avx", "avx2", "bmi2", "avx512f",
                     "avx512bw", "avx512vl", "vaes", "vpclmulqdq", "os_avx512"}
AESNI_NEEDS = ("aesni", "pclmulqdq", "sse4_1", "ssse3")
VAES256_NEEDS = AESNI_NEEDS + ("vaes", "vpclmulqdq", "avx2")  # avx2: only with OS ymm support
VAES512_NEEDS = VAES256_NEEDS + ("avx512f", "avx512bw", "avx512vl", "os_avx512")

SHOW = "import json, os, privcity; from privcity.crypto import AES256GCM; " \
       "print(json.dumps([privcity.backend_info(), AES256GCM(os.urandom(32)).implementation]))"


def test_cpu_features_are_booleans():
    # Execute
    features = privcity.cpu_features()

    # Assert
    assert EXPECTED_FEATURES <= set(features)
    assert all(type(v) is bool for v in features.values())
    assert features == privcity.cpu_features()  # detected once, stable
    if not features["os_avx512"]:
        assert not (features["avx512f"] or features["avx512bw"] or features["avx512vl"])


def test_implementations_follow_the_cpu_features():
    # Prepare
    f = privcity.cpu_features()

    # Execute
    impls = privcity.aes_implementations()

    # Assert
    assert impls[-1] == "cryptography"
    ladder = ("vaes512", "vaes256", "aesni", "armv8", "cryptography")
    assert impls == [n for n in ladder if n in impls]
    assert ("aesni" in impls) == all(f[n] for n in AESNI_NEEDS)
    assert ("armv8" in impls) == (f.get("arm_aes", False) and f.get("arm_pmull", False))
    assert ("vaes256" in impls) == all(f[n] for n in VAES256_NEEDS)
    assert ("vaes512" in impls) == all(f[n] for n in VAES512_NEEDS)


def test_backend_info_in_this_process():
    # Execute
    info = privcity.backend_info()

    # Assert
    assert set(info) >= {"aes256gcm", "isa_cap"}
    assert info["aes256gcm"] in privcity.aes_implementations()
    assert info["isa_cap"] in ("vaes512", "vaes256", "aesni", "armv8", "none", "unset")


@pytest.fixture(params=["vaes512", "vaes256", "aesni", "armv8"])
def native_implementation_missing(request):
    """The native implementations this CPU lacks (skipped where the CPU has them)."""
    if request.param in privcity.aes_implementations():
        pytest.skip(f"this CPU runs {request.param!r}; the refusal applies only where it cannot")
    return request.param


def test_unavailable_implementation_is_refused(native_implementation_missing):
    # Execute / Assert
    with pytest.raises(ValueError, match="not available"):
        AES256GCM(bytes(32), implementation=native_implementation_missing)


def test_the_ladder_is_the_one_of_this_architecture():
    # Prepare: each architecture has its own rungs over the same numbers (armv8 = aesni = 1)
    rungs = {"x86_64": {"vaes512", "vaes256", "aesni"}, "aarch64": {"armv8"}, "other": set()}

    # Execute
    native = set(privcity.aes_implementations()) - {"cryptography"}

    # Assert
    assert native <= rungs[_core.ISA_ARCH]
    assert _dispatch._AES_NAMES[_core.AES_ISA_AESNI] == (
        "armv8" if _core.ISA_ARCH == "aarch64" else "aesni")


def test_vector_levels_have_the_names_of_this_architecture():
    # Prepare: the vector ladder shares its numbers too (neon = avx2 = 1)
    names = {"aarch64": {"portable", "neon"}}.get(_core.ISA_ARCH, {"portable", "avx2", "avx512"})

    # Execute
    info = privcity.backend_info()

    # Assert
    assert set(_dispatch._SIMD_NAMES.values()) == names
    assert info["noise"] == info["reduce"] == _dispatch._SIMD_NAMES[_core.simd_isa_selected()]
    assert _dispatch._SIMD_NAMES[_core.SIMD_AVX2] == (
        "neon" if _core.ISA_ARCH == "aarch64" else "avx2")


@pytest.mark.parametrize("name", ["vaes512", "vaes256", "aesni", "armv8"])
def test_implementation_missing_from_the_list_is_refused(monkeypatch, name):
    # Prepare: pretend this CPU has no native kernel (the check every CPU would run)
    monkeypatch.setattr(aead, "aes_implementations", lambda: ["cryptography"])

    # Execute / Assert
    with pytest.raises(ValueError, match=f"{name!r} is not available on this CPU"):
        AES256GCM(bytes(32), implementation=name)
    assert AES256GCM(bytes(32), implementation="cryptography").implementation == "cryptography"


def _show(run_python, isa):
    proc = run_python(SHOW, isa=isa)
    assert proc.returncode == 0, proc.stderr
    info, default = json.loads(proc.stdout)
    return info, default


def test_without_privcity_isa_the_best_is_used(run_python):
    # Execute
    info, default = _show(run_python, None)

    # Assert
    assert info["aes256gcm"] == default == privcity.aes_implementations()[0]


def test_without_privcity_isa_no_cap_is_reported(run_python):
    # Execute
    info, _ = _show(run_python, None)

    # Assert: isa_cap names only what the user capped, never a rung the CPU may lack
    assert info["isa_cap"] == "unset"
    assert info["csprng"] == privcity.aes_implementations()[0]


def test_privcity_isa_none_uses_cryptography(run_python):
    # Execute
    info, default = _show(run_python, "none")

    # Assert
    assert info["aes256gcm"] == default == "cryptography"
    assert info["isa_cap"] == "none"


def test_privcity_isa_aesni(run_python):
    # Prepare
    if "aesni" not in privcity.aes_implementations():
        pytest.skip("this CPU cannot run 'aesni' (it needs AES-NI, PCLMULQDQ, SSE4.1 and SSSE3)")

    # Execute
    info, default = _show(run_python, "aesni")

    # Assert
    assert info["aes256gcm"] == default == "aesni"
    assert info["isa_cap"] == "aesni"


def test_privcity_isa_vaes256_runs_vaes256_and_256_bit_vectors(run_python):
    # Prepare
    if "vaes256" not in privcity.aes_implementations():
        pytest.skip("this CPU cannot run 'vaes256' (it needs VAES, VPCLMULQDQ and AVX2)")

    # Execute
    info, default = _show(run_python, "vaes256")

    # Assert: on an AVX-512 CPU too, the cap keeps every family at 256-bit vectors
    assert info == {"aes256gcm": "vaes256", "csprng": "vaes256", "noise": "avx2",
                    "reduce": "avx2", "isa_cap": "vaes256"}
    assert default == "vaes256"


def test_privcity_isa_at_the_top_rung_is_clamped_to_the_cpu(run_python):
    # Prepare: vaes512 on x86-64, armv8 on aarch64
    top = max(_dispatch._AES_LEVELS, key=_dispatch._AES_LEVELS.get)

    # Execute
    info, default = _show(run_python, top)

    # Assert: a cap above what the CPU has selects the best the CPU has, and says it was set
    best = privcity.aes_implementations()[0]
    assert info["aes256gcm"] == default == best
    assert info["csprng"] == ("portable" if best == "cryptography" else best)
    assert info["isa_cap"] == top


def test_a_cap_set_in_process_can_be_removed():
    # Prepare
    from privcity import _core
    before = _core.aes_isa_cap()

    # Execute
    try:
        _core.set_aes_isa_cap(_core.AES_ISA_AESNI)
        capped = privcity.backend_info()
        _core.set_aes_isa_cap(_core.AES_ISA_UNCAPPED)
        uncapped = privcity.backend_info()
    finally:
        _core.set_aes_isa_cap(before)

    # Assert: the first hardware rung, aesni on x86-64 or armv8 on aarch64
    rung = _dispatch._AES_NAMES[_core.AES_ISA_AESNI]
    want = rung if rung in privcity.aes_implementations() else "portable"
    assert capped["isa_cap"] == rung and capped["csprng"] == want
    assert uncapped["isa_cap"] == "unset"
    best = privcity.aes_implementations()[0]
    assert uncapped["csprng"] == ("portable" if best == "cryptography" else best)


RUNG1 = _dispatch._AES_NAMES[_core.AES_ISA_AESNI]  # aesni on x86-64, armv8 on aarch64


@pytest.mark.parametrize("value", [RUNG1.upper(), " none ", "auto", ""])
def test_privcity_isa_is_case_and_space_tolerant(run_python, value):
    # Prepare
    want = {RUNG1.upper(): RUNG1, " none ": "cryptography"}.get(
        value, privcity.aes_implementations()[0])
    if want == RUNG1 and RUNG1 not in privcity.aes_implementations():
        want = "cryptography"

    # Execute
    info, default = _show(run_python, value)

    # Assert
    assert info["aes256gcm"] == default == want


@pytest.mark.parametrize("value", ["bogus", "avx", "sse"])
def test_unknown_privcity_isa_fails_the_import(run_python, value):
    # Execute
    proc = run_python("import privcity", isa=value)

    # Assert
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr
    assert f"PRIVCITY_ISA={value!r}" in proc.stderr
    assert _dispatch._LADDER_HELP in proc.stderr
    if _core.ISA_ARCH == "x86_64":
        assert "vaes512 (avx512), vaes256, aesni (avx2), none (portable)" in proc.stderr


def test_explicit_implementation_ignores_the_cap(run_python):
    # Prepare: PRIVCITY_ISA only caps the default choice
    code = ("import privcity; from privcity.crypto import AES256GCM; "
            "print(' '.join(AES256GCM(bytes(32), implementation=n).implementation "
            "for n in privcity.aes_implementations()))")

    # Execute
    proc = run_python(code, isa="none")

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == privcity.aes_implementations()


def test_info_json(run_python):
    # Execute
    proc = run_python(None, args=("-m", "privcity.cli", "info", "--json"))

    # Assert
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["version"] == privcity.__version__
    assert report["cpu_features"] == privcity.cpu_features()
    assert report["backends"]["aes256gcm"] == privcity.aes_implementations()[0]
    assert report["aes256gcm_available"] == privcity.aes_implementations()
    assert {"python", "machine"} <= set(report)


def test_info_json_reports_the_cap(run_python):
    # Execute
    proc = run_python(None, isa="none", args=("-m", "privcity.cli", "info", "--json"))

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backends"] == {
        "aes256gcm": "cryptography", "csprng": "portable", "noise": "portable", "reduce": "portable",
        "isa_cap": "none"}


@pytest.mark.parametrize("alias,name", sorted(_dispatch._ALIASES.items()))
def test_vector_level_aliases_name_the_same_rungs(run_python, alias, name):
    # Execute
    a = run_python("import json, privcity; print(json.dumps(privcity.backend_info()))", isa=alias)
    b = run_python("import json, privcity; print(json.dumps(privcity.backend_info()))", isa=name)

    # Assert
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert json.loads(a.stdout) == json.loads(b.stdout)


@pytest.mark.parametrize("argv", [["info"], []], ids=["info", "no-command"])
def test_info_text(capsys, argv):
    # Prepare
    from privcity.cli import main

    # Execute
    status = main(argv)
    out = capsys.readouterr().out

    # Assert
    assert status == 0
    assert f"privcity {privcity.__version__}" in out
    assert "CPU features:" in out and "aesni" in out
    assert privcity.backend_info()["aes256gcm"] in out
    assert "AES-256-GCM implementations available: " + ", ".join(privcity.aes_implementations()) in out


def test_version_flag(capsys):
    # Prepare
    from privcity.cli import main

    # Execute
    with pytest.raises(SystemExit) as info:
        main(["--version"])

    # Assert
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"privcity {privcity.__version__}"
