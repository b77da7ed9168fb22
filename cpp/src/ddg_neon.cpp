// Distributed discrete Gaussian kernels compiled for neon (see ddg_simd.inc). Advanced SIMD is
// part of the aarch64 baseline, so this file needs no ISA flags.
#if defined(__aarch64__)
#define PC_SIMD_NS simd_neon
#include "ddg_simd.inc"
#endif
