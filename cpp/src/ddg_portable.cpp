// Distributed discrete Gaussian kernels compiled for portable (see ddg_simd.inc).
// No ISA flags: the baseline of the build target.
#define PC_SIMD_NS simd_portable
#include "ddg_simd.inc"
