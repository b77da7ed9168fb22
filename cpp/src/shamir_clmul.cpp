// GF(2^128) multiplication (privcity/shamir.h) on PCLMULQDQ: a 256-bit carry-less product,
// then two folds of the high half by x^128 = x^7 + x^2 + x + 1 (0x87).
#if defined(__x86_64__)
#include <cstdint>

#include "shamir_internal.h"

#pragma GCC target("pclmul,sse4.1")
#include <immintrin.h>

namespace privcity {

Gf128 gf128_mul_clmul(Gf128 a, Gf128 b) noexcept {
    const __m128i va = _mm_set_epi64x(int64_t(a.hi), int64_t(a.lo));
    const __m128i vb = _mm_set_epi64x(int64_t(b.hi), int64_t(b.lo));
    // Karatsuba-free schoolbook: four 64 x 64 products.
    const __m128i ll = _mm_clmulepi64_si128(va, vb, 0x00);
    const __m128i hh = _mm_clmulepi64_si128(va, vb, 0x11);
    const __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(va, vb, 0x01),
                                      _mm_clmulepi64_si128(va, vb, 0x10));
    // 256-bit product p3:p2:p1:p0 (64-bit words, p0 lowest).
    const uint64_t p0 = uint64_t(_mm_cvtsi128_si64(ll));
    const uint64_t p1 = uint64_t(_mm_extract_epi64(ll, 1)) ^ uint64_t(_mm_cvtsi128_si64(mid));
    const uint64_t p2 = uint64_t(_mm_cvtsi128_si64(hh)) ^ uint64_t(_mm_extract_epi64(mid, 1));
    const uint64_t p3 = uint64_t(_mm_extract_epi64(hh, 1));
    // Fold the high 128 bits (p3:p2) by 0x87: up to 135 bits, t2:t1:t0.
    const __m128i poly = _mm_set_epi64x(0, 0x87);
    const __m128i high = _mm_set_epi64x(int64_t(p3), int64_t(p2));
    const __m128i f0 = _mm_clmulepi64_si128(high, poly, 0x00);  // p2 * 0x87
    const __m128i f1 = _mm_clmulepi64_si128(high, poly, 0x01);  // p3 * 0x87
    const uint64_t t0 = uint64_t(_mm_cvtsi128_si64(f0));
    const uint64_t t1 = uint64_t(_mm_extract_epi64(f0, 1)) ^ uint64_t(_mm_cvtsi128_si64(f1));
    const uint64_t t2 = uint64_t(_mm_extract_epi64(f1, 1));  // at most 7 bits
    // Fold t2 (x^128 and up) once more: t2 * 0x87 fits in 14 bits.
    const __m128i g = _mm_clmulepi64_si128(_mm_set_epi64x(0, int64_t(t2)), poly, 0x00);
    const uint64_t u0 = uint64_t(_mm_cvtsi128_si64(g));
    return Gf128{p1 ^ t1, p0 ^ t0 ^ u0};
}

}  // namespace privcity
#endif
