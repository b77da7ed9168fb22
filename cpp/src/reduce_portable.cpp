// Reduction kernels compiled for portable (see reduce_simd.inc).
// No vector ISA flags: the baseline of the build target (SSE2 on x86-64). On aarch64, whose
// baseline already is the neon rung, Advanced SIMD is turned off here: the same source split
// into scalars, a reference path the cap none selects.
// Standard headers before the target pragma, so none of their inline functions is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>
#if defined(__aarch64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("no-neon"))), apply_to = function)
#else
#pragma GCC target("+nosimd")
#endif
#endif
#define PC_SIMD_NS simd_portable
#include "reduce_simd.inc"
#if defined(__aarch64__) && defined(__clang__)
#pragma clang attribute pop
#endif
