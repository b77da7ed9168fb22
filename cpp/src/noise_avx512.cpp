// Continuous samplers compiled for avx512: 64-byte vectors (see noise_simd.inc).
#if defined(__x86_64__)
// Standard headers before the target pragma, so none of their inline functions is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <immintrin.h>

// Clang ignores GCC's target pragma: it takes the same flags as an attribute on every function.
#if defined(__clang__)
#define PC_CLANG_TARGET "avx2,fma,avx512f,avx512dq,avx512bw,avx512vl"
#pragma clang attribute push(__attribute__((target(PC_CLANG_TARGET))), apply_to = function)
#else
#pragma GCC target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")
#endif
#define PC_SIMD_NS simd_avx512
#define PC_SIMD_BYTES 64
#include "noise_simd.inc"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
