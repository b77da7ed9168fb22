"""Shared fixtures: every AES-256-GCM implementation, skipped where this CPU cannot run it.

Tests that take the ``implementation`` fixture run once per implementation (BLAKE3's way of
checking each ISA variant against a reference); the reference is always ``cryptography``'s
``AESGCM`` (OpenSSL), which shares no code with privcity's C++ kernels.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import settings

import privcity

# In CI (CI=true) hypothesis runs a fixed sequence of examples: a red CI is then reproducible and
# never depends on the day's random draw. Locally it keeps exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

IMPLEMENTATIONS = ("vaes512", "vaes256", "aesni", "cryptography")
NATIVE_IMPLEMENTATIONS = ("vaes512", "vaes256", "aesni")

_NEEDS = {
    "vaes512": "VAES, VPCLMULQDQ, AVX-512F/BW/VL and an OS that saves zmm state",
    "vaes256": "VAES, VPCLMULQDQ, AVX2 and an OS that saves ymm state",
    "aesni": "AES-NI, PCLMULQDQ, SSE4.1 and SSSE3",
    "cryptography": "nothing (always available)",
}


def _param(name: str) -> object:
    lacking = name not in privcity.aes_implementations()
    reason = f"this CPU cannot run {name!r} (it needs {_NEEDS[name]})"
    return pytest.param(name, id=name, marks=pytest.mark.skipif(lacking, reason=reason))


# Session scope so that hypothesis' @given tests may use them (no per-example fixture reset).
@pytest.fixture(scope="session", params=[_param(n) for n in IMPLEMENTATIONS])
def implementation(request: pytest.FixtureRequest) -> str:
    """Each of vaes512, vaes256, aesni and cryptography in turn, skipped where the CPU lacks
    it."""
    return request.param


@pytest.fixture(scope="session", params=[_param(n) for n in NATIVE_IMPLEMENTATIONS])
def native_implementation(request: pytest.FixtureRequest) -> str:
    """The C++ implementations only, skipped where the CPU lacks them."""
    return request.param


@pytest.fixture(scope="session")
def run_python():
    """run_python(code, PRIVCITY_ISA=None, args=()) runs a fresh interpreter (so the import-time
    PRIVCITY_ISA cap can be set) and returns the CompletedProcess; None unsets the variable."""

    def _run(code: str | None, *, isa: str | None = None, args: tuple[str, ...] = ()):
        env = dict(os.environ)
        env.pop("PRIVCITY_ISA", None)
        if isa is not None:
            env["PRIVCITY_ISA"] = isa
        cmd = [sys.executable] + (["-c", code] if code is not None else []) + list(args)
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    return _run
