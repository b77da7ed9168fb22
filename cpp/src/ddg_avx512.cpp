// Distributed discrete Gaussian kernels compiled for avx512 (see ddg_simd.inc).
#if defined(__x86_64__)
// Standard headers before the target pragma, so none of their inline functions is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>

#pragma GCC target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")
#define PC_SIMD_NS simd_avx512
#include "ddg_simd.inc"
#endif
