// The per-ISA reduction kernels of reduce_simd.inc (internal to cpp/src).
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {
#define PC_DECLARE_REDUCE(NS)                                                                     \
    namespace NS {                                                                                \
    void wsum_range(double* __restrict out, const float* const* rows, const double* w,            \
                    const uint8_t* skip, uint8_t* nonfinite, size_t k, size_t j0, size_t j1);     \
    void accumulate_range(double* __restrict acc, const float* __restrict x, double w, size_t j0, \
                          size_t j1);                                                             \
    int nonfinite_range(const float* __restrict x, size_t j0, size_t j1);                         \
    int accumulate_into_range(double* __restrict out, const double* __restrict acc,               \
                              const float* __restrict x, double w, size_t j0, size_t j1);         \
    void scale_range(float* __restrict out, const double* __restrict acc, double scale,           \
                     size_t j0, size_t j1);                                                       \
    void modsum_u32_range(uint32_t* __restrict acc, const uint32_t* const* rows, size_t k,        \
                          size_t j0, size_t j1);                                                  \
    void modsum_u64_range(uint64_t* __restrict acc, const uint64_t* const* rows, size_t k,        \
                          size_t j0, size_t j1);                                                  \
    void sort_lanes16(float* v, const uint16_t* pairs, size_t npairs);                            \
    void sqdist_range(double* part, const float* const* rows, size_t k, size_t j0, size_t j1);    \
    }
PC_DECLARE_REDUCE(simd_avx512)
PC_DECLARE_REDUCE(simd_avx2)
PC_DECLARE_REDUCE(simd_portable)
#undef PC_DECLARE_REDUCE
}  // namespace privcity
