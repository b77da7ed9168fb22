// Reduction kernels compiled for neon (see reduce_simd.inc). Advanced SIMD is part of the
// aarch64 baseline, so this file needs no ISA flags.
#if defined(__aarch64__)
#define PC_SIMD_NS simd_neon
#include "reduce_simd.inc"
#endif
