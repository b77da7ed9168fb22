// Continuous samplers compiled for avx512: 64-byte vectors (see noise_simd.inc).
#if defined(__x86_64__)
// Standard headers before the target pragma, so none of their inline functions is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <immintrin.h>

#pragma GCC target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")
#define PC_SIMD_NS simd_avx512
#define PC_SIMD_BYTES 64
#include "noise_simd.inc"
#endif
