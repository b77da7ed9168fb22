// The per-ISA reduction kernels of reduce_simd.inc (internal to cpp/src).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

namespace privcity {

// Runs body(begin, end) over [0, n) split into contiguous ranges, one per thread, whose
// boundaries are multiples of grain (threads: 0 = one per available core), on the reduction
// thread pool; the calling thread takes the first range. Returns when all are done.
void reduce_parallel_ranges(size_t n, size_t grain, int threads,
                            const std::function<void(size_t, size_t)>& body);

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
PC_DECLARE_REDUCE(simd_neon)
PC_DECLARE_REDUCE(simd_portable)
#undef PC_DECLARE_REDUCE
}  // namespace privcity
