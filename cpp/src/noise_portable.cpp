// Continuous samplers compiled for portable (see noise_simd.inc).
// No ISA flags: the baseline of the build target.
#define PC_SIMD_NS simd_portable
#include "noise_simd.inc"
