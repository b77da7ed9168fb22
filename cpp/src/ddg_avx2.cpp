// Distributed discrete Gaussian kernels compiled for avx2 (see ddg_simd.inc).
#if defined(__x86_64__)
// Standard headers before the target pragma, so none of their inline functions is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>

// Clang ignores GCC's target pragma: it takes the same flags as an attribute on every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC target("avx2")
#endif
#define PC_SIMD_NS simd_avx2
#include "ddg_simd.inc"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
