// privcity — CPU feature detection and the ISA cap used by every dispatcher.
#pragma once
#include <cstdint>

namespace privcity {

// Feature bits, detected once (cpuid + xgetbv on x86, HWCAP or sysctl on aarch64) and cached.
enum cpu_feature : uint32_t {
    CPU_SSSE3 = 1u << 0,
    CPU_SSE41 = 1u << 1,
    CPU_AESNI = 1u << 2,
    CPU_PCLMULQDQ = 1u << 3,
    CPU_AVX = 1u << 4,
    CPU_AVX2 = 1u << 5,
    CPU_AVX512F = 1u << 6,
    CPU_AVX512BW = 1u << 7,
    CPU_AVX512VL = 1u << 8,
    CPU_VAES = 1u << 9,
    CPU_VPCLMULQDQ = 1u << 10,
    CPU_OS_AVX = 1u << 11,     // OS saves ymm state (XCR0)
    CPU_OS_AVX512 = 1u << 12,  // OS saves zmm/opmask state (XCR0)
    CPU_BMI2 = 1u << 13,
    CPU_AVX512DQ = 1u << 14,
    CPU_FMA = 1u << 15,
    CPU_ARM_AES = 1u << 16,    // aarch64: AESE/AESD/AESMC/AESIMC (Crypto Extensions)
    CPU_ARM_PMULL = 1u << 17,  // aarch64: PMULL/PMULL2 on 64-bit lanes
    CPU_ARM_NEON = 1u << 18,   // aarch64: Advanced SIMD (HWCAP_ASIMD; every Apple arm64 CPU)
};

// Bitmask of cpu_feature; never changes after the first call. Thread-safe.
uint32_t cpu_features() noexcept;

// AES implementation levels, best last. Each architecture has its own ladder over the same
// numbers: x86-64 none < aesni < vaes256 < vaes512; aarch64 none < armv8 (so AES_ISA_ARMV8
// shares the value of AES_ISA_AESNI, the first hardware rung; a build only ever has one ladder).
enum aes_isa : int {
    AES_ISA_NONE = 0,     // portable constant-time kernels (bitsliced AES, GHASH by integer mul)
    AES_ISA_AESNI = 1,    // AES-NI + PCLMULQDQ + SSE4.1, 128-bit registers
    AES_ISA_VAES256 = 2,  // VAES + VPCLMULQDQ + AVX2, 256-bit registers (no AVX-512 needed)
    AES_ISA_VAES512 = 3,  // VAES + VPCLMULQDQ + AVX-512F/BW/VL, 512-bit registers
    AES_ISA_ARMV8 = 1,    // aarch64: AES + PMULL Crypto Extensions, NEON
};
// The best rung this build's architecture can have (VAES512 on x86-64, ARMV8 on aarch64).
#if defined(__aarch64__)
constexpr int AES_ISA_TOP = AES_ISA_ARMV8;
#else
constexpr int AES_ISA_TOP = AES_ISA_VAES512;
#endif
// aes_isa_cap() when no cap was set: every family runs the best this CPU has.
constexpr int AES_ISA_UNCAPPED = -1;

// Highest AES level this CPU supports, ignoring the cap.
int aes_isa_supported() noexcept;
// Cap for dispatch (tests and benches force slower paths). A negative cap removes it; values
// above the supported level are clamped by aes_isa_selected(). Thread-safe.
void set_aes_isa_cap(int cap) noexcept;
// The cap set, or AES_ISA_UNCAPPED.
int aes_isa_cap() noexcept;
// min(supported, cap): what the dispatched entry points use.
int aes_isa_selected() noexcept;

// Vector levels of the other kernels (noise, reductions), best last. The same cap applies:
// cap AES_ISA_NONE -> SIMD_PORTABLE, AES_ISA_AESNI and AES_ISA_VAES256 -> SIMD_AVX2,
// AES_ISA_VAES512 -> SIMD_AVX512, so one setting (PRIVCITY_ISA) forces every family of kernels
// down the same ladder. aarch64 has its own ladder over the same numbers, portable < neon
// (cap AES_ISA_NONE -> SIMD_PORTABLE, AES_ISA_ARMV8 or no cap -> SIMD_NEON): NEON does not
// need the Crypto Extensions, so a CPU without them still runs neon when uncapped.
enum simd_isa : int {
    SIMD_PORTABLE = 0,  // no vector flags: SSE2 on x86-64; scalar on aarch64 (Advanced SIMD off)
    SIMD_AVX2 = 1,      // AVX2 with OS support for ymm state
    SIMD_AVX512 = 2,    // AVX-512F/DQ/BW/VL with OS support for zmm state
    SIMD_NEON = 1,      // aarch64: Advanced SIMD, 128-bit registers
};
int simd_isa_supported() noexcept;
int simd_isa_selected() noexcept;

}  // namespace privcity
