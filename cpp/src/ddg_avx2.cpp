// Distributed discrete Gaussian kernels compiled for avx2 (see ddg_simd.inc).
#if defined(__x86_64__)
// Standard headers before the target pragma, so none of their inline functions is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>

#pragma GCC target("avx2")
#define PC_SIMD_NS simd_avx2
#include "ddg_simd.inc"
#endif
