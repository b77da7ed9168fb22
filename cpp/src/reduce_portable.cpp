// Reduction kernels compiled for portable (see reduce_simd.inc).
// No ISA flags: the baseline of the build target.
#define PC_SIMD_NS simd_portable
#include "reduce_simd.inc"
