// The per-ISA kernels of ddg_simd.inc (internal to cpp/src).
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {
#define PC_DECLARE_DDG(NS)                                                                        \
    namespace NS {                                                                                \
    void fwht_blocks(double* y, size_t m, size_t B);                                              \
    void mix_blocks(double* y, size_t m, size_t B, const int8_t* H, int transpose);               \
    void load_signed_f32(double* y, const float* x, size_t d, size_t dp, const uint8_t* signs);   \
    void load_signed_f64(double* y, const double* x, size_t d, size_t dp, const uint8_t* signs);  \
    void unload_signed(double* x, const double* y, size_t d, const uint8_t* signs, double s);     \
    void scale(double* y, size_t n, double s);                                                    \
    double round_sumsq(const double* y, const uint32_t* u, size_t n);                             \
    void round_store_u32(uint32_t* out, int64_t* rounded, const double* y, const uint32_t* u,     \
                         size_t n, uint32_t mask);                                                \
    void round_store_u64(uint64_t* out, int64_t* rounded, const double* y, const uint32_t* u,     \
                         size_t n, uint64_t mask);                                                \
    void center_u32(double* y, const uint32_t* s, size_t n, unsigned nbits);                      \
    void center_u64(double* y, const uint64_t* s, size_t n, unsigned nbits);                      \
    }
PC_DECLARE_DDG(simd_avx512)
PC_DECLARE_DDG(simd_avx2)
PC_DECLARE_DDG(simd_neon)
PC_DECLARE_DDG(simd_portable)
#undef PC_DECLARE_DDG
}  // namespace privcity
