// Continuous samplers compiled for avx2: 32-byte vectors (see noise_simd.inc).
#if defined(__x86_64__)
// Standard headers before the target pragma, so none of their inline functions is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <immintrin.h>

// Clang ignores GCC's target pragma: it takes the same flags as an attribute on every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC target("avx2")
#endif
#define PC_SIMD_NS simd_avx2
#define PC_SIMD_BYTES 32
#include "noise_simd.inc"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
