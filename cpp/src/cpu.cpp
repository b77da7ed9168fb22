// CPU feature detection and the dispatch cap (no ISA-specific code in this file).
#include "privcity/cpu.h"

#include <atomic>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace privcity {
namespace {

std::atomic<uint32_t> g_features{0};
std::atomic<bool> g_features_ready{false};
std::atomic<int> g_aes_cap{AES_ISA_UNCAPPED};

uint32_t detect() noexcept {
    uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (c & (1u << 9)) f |= CPU_SSSE3;
    if (c & (1u << 19)) f |= CPU_SSE41;
    if (c & (1u << 25)) f |= CPU_AESNI;
    if (c & (1u << 1)) f |= CPU_PCLMULQDQ;
    const bool osxsave = (c & (1u << 27)) != 0;
    const bool avx = (c & (1u << 28)) != 0;
    uint64_t xcr0 = 0;
    if (osxsave) {
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = (uint64_t(hi) << 32) | lo;
    }
    const bool os_ymm = (xcr0 & 0x6) == 0x6;
    const bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;
    if (avx && os_ymm) f |= CPU_AVX | CPU_OS_AVX;
    if ((c & (1u << 12)) && os_ymm) f |= CPU_FMA;
    if (os_zmm) f |= CPU_OS_AVX512;
    if (__get_cpuid_max(0, nullptr) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if ((b & (1u << 5)) && (f & CPU_OS_AVX)) f |= CPU_AVX2;
        if (b & (1u << 8)) f |= CPU_BMI2;
        if (os_zmm) {
            if (b & (1u << 16)) f |= CPU_AVX512F;
            if (b & (1u << 17)) f |= CPU_AVX512DQ;
            if (b & (1u << 30)) f |= CPU_AVX512BW;
            if (b & (1u << 31)) f |= CPU_AVX512VL;
        }
        if (c & (1u << 9)) f |= CPU_VAES;
        if (c & (1u << 10)) f |= CPU_VPCLMULQDQ;
    }
#elif defined(__aarch64__) && defined(__linux__)
    // HWCAP_AES and HWCAP_PMULL of <asm/hwcap.h>, spelled out for older libc headers.
    const unsigned long hw = getauxval(AT_HWCAP);
    if (hw & (1ul << 3)) f |= CPU_ARM_AES;
    if (hw & (1ul << 4)) f |= CPU_ARM_PMULL;
    if (hw & (1ul << 1)) f |= CPU_ARM_NEON;  // HWCAP_ASIMD
#elif defined(__aarch64__) && defined(__APPLE__)
    // Every Apple arm64 CPU has both; ask anyway, as macOS documents it.
    auto has = [](const char* name) {
        int v = 0;
        size_t n = sizeof v;
        return sysctlbyname(name, &v, &n, nullptr, 0) == 0 && v != 0;
    };
    if (has("hw.optional.arm.FEAT_AES")) f |= CPU_ARM_AES;
    if (has("hw.optional.arm.FEAT_PMULL")) f |= CPU_ARM_PMULL;
    f |= CPU_ARM_NEON;  // the arm64 ABI of macOS requires Advanced SIMD
#endif
    return f;
}

}  // namespace

uint32_t cpu_features() noexcept {
    if (!g_features_ready.load(std::memory_order_acquire)) {
        g_features.store(detect(), std::memory_order_relaxed);
        g_features_ready.store(true, std::memory_order_release);
    }
    return g_features.load(std::memory_order_relaxed);
}

int aes_isa_supported() noexcept {
    const uint32_t f = cpu_features();
#if defined(__aarch64__)
    const uint32_t armv8 = CPU_ARM_AES | CPU_ARM_PMULL;
    return (f & armv8) == armv8 ? AES_ISA_ARMV8 : AES_ISA_NONE;
#else
    const uint32_t aesni = CPU_AESNI | CPU_PCLMULQDQ | CPU_SSE41 | CPU_SSSE3;
    if ((f & aesni) != aesni) return AES_ISA_NONE;
    const uint32_t vaes256 = CPU_VAES | CPU_VPCLMULQDQ | CPU_AVX | CPU_AVX2 | CPU_OS_AVX;
    if ((f & vaes256) != vaes256) return AES_ISA_AESNI;
    const uint32_t avx512 = CPU_AVX512F | CPU_AVX512BW | CPU_AVX512VL | CPU_OS_AVX512;
    if ((f & avx512) == avx512) return AES_ISA_VAES512;
    return AES_ISA_VAES256;
#endif
}

void set_aes_isa_cap(int cap) noexcept {
    if (cap < AES_ISA_NONE) cap = AES_ISA_UNCAPPED;
    if (cap > AES_ISA_TOP) cap = AES_ISA_TOP;
    g_aes_cap.store(cap, std::memory_order_relaxed);
}

int aes_isa_cap() noexcept { return g_aes_cap.load(std::memory_order_relaxed); }

int aes_isa_selected() noexcept {
    const int s = aes_isa_supported();
    const int cap = aes_isa_cap();
    return cap == AES_ISA_UNCAPPED || s < cap ? s : cap;
}

int simd_isa_supported() noexcept {
#if defined(__aarch64__)
    // Advanced SIMD is in the aarch64 baseline this build targets: the compiler uses it in
    // every file, so any CPU that runs this code has it (cpu_features() reports HWCAP_ASIMD).
    return SIMD_NEON;
#else
    const uint32_t f = cpu_features();
    const uint32_t avx512 = CPU_AVX512F | CPU_AVX512DQ | CPU_AVX512BW | CPU_AVX512VL | CPU_OS_AVX512 |
                            CPU_AVX2 | CPU_FMA;
    if ((f & avx512) == avx512) return SIMD_AVX512;
    if ((f & (CPU_AVX2 | CPU_OS_AVX)) == (CPU_AVX2 | CPU_OS_AVX)) return SIMD_AVX2;
    return SIMD_PORTABLE;
#endif
}

int simd_isa_selected() noexcept {
    const int s = simd_isa_supported();
    // The ladders line up (see cpu.h): both VAES rungs below AVX-512 run 256-bit vectors; on
    // aarch64 the armv8 cap (= AES_ISA_AESNI) leaves neon (= SIMD_AVX2).
    switch (aes_isa_cap()) {
        case AES_ISA_NONE: return SIMD_PORTABLE;
        case AES_ISA_AESNI:
        case AES_ISA_VAES256: return s < SIMD_AVX2 ? s : SIMD_AVX2;
        default: return s;
    }
}

}  // namespace privcity
