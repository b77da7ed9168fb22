// The per-ISA continuous kernels of noise_simd.inc (internal to cpp/src).
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {
#define PC_DECLARE_SIMD(NS)                                                                      \
    namespace NS {                                                                               \
    void gauss_f32(float* out, const uint32_t* words, size_t nblocks, float sigma,               \
                   const float* base, float base_scale);                                         \
    void gauss_f64(double* out, const uint64_t* words, size_t nblocks, double sigma,             \
                   const double* base, double base_scale);                                       \
    void laplace_f64(double* __restrict out, const uint64_t* __restrict words, size_t n,         \
                     double scale);                                                              \
    void uniform_f64(double* __restrict out, const uint64_t* __restrict words, size_t n);        \
    double sumsq_f32(const float* x, size_t n);                                                  \
    void round_add_f32(int64_t* __restrict out, const float* __restrict x,                       \
                       const uint64_t* __restrict words, size_t n, double s);                    \
    }
PC_DECLARE_SIMD(simd_avx512)
PC_DECLARE_SIMD(simd_avx2)
PC_DECLARE_SIMD(simd_neon)
PC_DECLARE_SIMD(simd_portable)
#undef PC_DECLARE_SIMD
}  // namespace privcity
