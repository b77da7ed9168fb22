"""Run-time choice of kernels: CPU features, the PRIVCITY_ISA cap, and what each primitive uses."""
from __future__ import annotations

import os

from . import _core

__all__ = ["cpu_features", "backend_info", "aes_implementations"]

# Names for the AES levels of the C++ core, best last: each architecture has its own ladder.
if _core.ISA_ARCH == "aarch64":
    _AES_LEVELS = {"none": _core.AES_ISA_NONE, "armv8": _core.AES_ISA_ARMV8}
    # neon names the armv8 rung by its vector level (as avx2 does aesni); a CPU without the
    # Crypto Extensions runs neon under that cap, and no native AES.
    _ALIASES = {"portable": "none", "neon": "armv8"}
    _LADDER_HELP = "armv8 (neon), none (portable)"
    _SIMD_NAMES = {_core.SIMD_PORTABLE: "portable", _core.SIMD_NEON: "neon"}
else:
    _AES_LEVELS = {"none": _core.AES_ISA_NONE, "aesni": _core.AES_ISA_AESNI,
                   "vaes256": _core.AES_ISA_VAES256, "vaes512": _core.AES_ISA_VAES512}
    # Aliases naming rungs of the one ladder by their vector level (avx2: the AES-NI rung, the
    # lowest that runs the 256-bit noise and reduction kernels).
    _ALIASES = {"portable": "none", "avx2": "aesni", "avx512": "vaes512"}
    _LADDER_HELP = "vaes512 (avx512), vaes256, aesni (avx2), none (portable)"
    _SIMD_NAMES = {_core.SIMD_PORTABLE: "portable", _core.SIMD_AVX2: "avx2",
                   _core.SIMD_AVX512: "avx512"}
_AES_NAMES = {v: k for k, v in _AES_LEVELS.items()}


def _apply_env_cap() -> None:
    """Reads PRIVCITY_ISA once, at import, and caps the dispatch of the C++ core."""
    raw = os.environ.get("PRIVCITY_ISA", "").strip().lower()
    if raw in ("", "auto", "native", "best"):
        return
    raw = _ALIASES.get(raw, raw)
    if raw not in _AES_LEVELS:
        raise ValueError(
            f"PRIVCITY_ISA={raw!r} is not understood on {_core.ISA_ARCH}; use one of "
            f"{_LADDER_HELP}, or unset it"
        )
    _core.set_aes_isa_cap(_AES_LEVELS[raw])


def cpu_features() -> dict[str, bool]:
    """The CPU features that privcity's kernels use, as detected by cpuid and xgetbv.

    ``os_avx512`` tells whether the operating system saves 512-bit register state; the AVX-512
    flags are reported False when it does not.
    """
    return dict(_core.cpu_features())


def aes_implementations() -> list[str]:
    """AES-256-GCM implementations usable on this CPU, best first (ignores PRIVCITY_ISA)."""
    best = _core.aes_isa_supported()
    names = [_AES_NAMES[level] for level in range(best, 0, -1)]
    return names + ["cryptography"]


def _selected_aes() -> str:
    level = _core.aes_isa_selected()
    return "cryptography" if level == _core.AES_ISA_NONE else _AES_NAMES[level]


def backend_info() -> dict[str, str]:
    """Which implementation each primitive uses in this process.

    ``aes256gcm`` is ``"vaes512"``, ``"vaes256"``, ``"aesni"`` (x86-64), ``"armv8"`` (aarch64
    Crypto Extensions) or ``"cryptography"`` (OpenSSL, used where the CPU lacks AES
    instructions or PRIVCITY_ISA=none). ``csprng`` is the AES-CTR keystream of seeded noise
    generators and the secure-aggregation masks (the same names, or ``"portable"``: a
    constant-time bitsliced AES, where the CPU has no AES instructions or the cap says none;
    OS-keyed generators run it too, as every path is constant time). ``noise``
    is the vector level of the samplers (``"avx512"``, ``"avx2"``, ``"neon"`` on aarch64,
    ``"portable"``), and ``reduce`` that of the aggregation kernels (the same ladder).
    ``isa_cap`` is the cap the user set with PRIVCITY_ISA (or ``_core.set_aes_isa_cap``),
    ``"unset"`` when there is none; a cap above what the CPU has is reported as set, while the
    other entries name what runs.
    One ladder for every family: none/portable < aesni/avx2 < vaes256 < vaes512/avx512 on
    x86-64, none/portable < armv8/neon on aarch64 (where a CPU without the Crypto Extensions
    still runs neon unless capped to none).
    """
    cap = _core.aes_isa_cap()
    aes = _core.aes_isa_selected()
    return {
        "aes256gcm": _selected_aes(),
        "csprng": "portable" if aes == _core.AES_ISA_NONE else _AES_NAMES[aes],
        "noise": _SIMD_NAMES[_core.simd_isa_selected()],
        "reduce": _SIMD_NAMES[_core.simd_isa_selected()],
        "isa_cap": "unset" if cap == _core.AES_ISA_UNCAPPED else _AES_NAMES[cap],
    }


_apply_env_cap()
