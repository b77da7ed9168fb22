// Continuous samplers compiled for portable (see noise_simd.inc).
// No ISA flags: the baseline of the build target, 16-byte vectors (SSE2 on x86-64, NEON on
// aarch64, split into scalars elsewhere).
#define PC_SIMD_NS simd_portable
#define PC_SIMD_BYTES 16
#include "noise_simd.inc"
