// Continuous samplers compiled for neon: 16-byte vectors (see noise_simd.inc). Advanced SIMD is
// part of the aarch64 baseline, so this file needs no ISA flags.
#if defined(__aarch64__)
#define PC_SIMD_NS simd_neon
#define PC_SIMD_BYTES 16
#include "noise_simd.inc"
#endif
