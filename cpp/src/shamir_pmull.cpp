// GF(2^128) multiplication (privcity/shamir.h) on PMULL (ARMv8 Crypto Extensions): the
// algorithm of shamir_clmul.cpp, a 256-bit carry-less product, then two folds of the high half
// by x^128 = x^7 + x^2 + x + 1 (0x87). PMULL takes the same time whatever its operands.
#if defined(__aarch64__)
// Standard and project headers before the target pragma, so no inline function of theirs is
// compiled with this file's ISA flags.
#include <cstdint>

#include "shamir_internal.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("aes"))), apply_to = function)
// Clang before 16 declares the PMULL intrinsics only under these macros (see aead_armv8.cpp).
#if !defined(__ARM_FEATURE_AES)
#define __ARM_FEATURE_AES 1
#define __ARM_FEATURE_CRYPTO 1
#endif
#else
#pragma GCC target("+crypto")
#endif
#include <arm_neon.h>

namespace privcity {
namespace {

// The 128-bit carry-less product of two 64-bit words: (low word, high word).
inline __attribute__((always_inline)) uint64x2_t clmul(uint64_t a, uint64_t b) {
    return vreinterpretq_u64_p128(vmull_p64(poly64_t(a), poly64_t(b)));
}

}  // namespace

Gf128 gf128_mul_pmull(Gf128 a, Gf128 b) noexcept {
    // Karatsuba-free schoolbook: four 64 x 64 products.
    const uint64x2_t ll = clmul(a.lo, b.lo);
    const uint64x2_t hh = clmul(a.hi, b.hi);
    const uint64x2_t mid = veorq_u64(clmul(a.lo, b.hi), clmul(a.hi, b.lo));
    // 256-bit product p3:p2:p1:p0 (64-bit words, p0 lowest).
    const uint64_t p0 = vgetq_lane_u64(ll, 0);
    const uint64_t p1 = vgetq_lane_u64(ll, 1) ^ vgetq_lane_u64(mid, 0);
    const uint64_t p2 = vgetq_lane_u64(hh, 0) ^ vgetq_lane_u64(mid, 1);
    const uint64_t p3 = vgetq_lane_u64(hh, 1);
    // Fold the high 128 bits (p3:p2) by 0x87: up to 135 bits, t2:t1:t0.
    const uint64x2_t f0 = clmul(p2, 0x87);
    const uint64x2_t f1 = clmul(p3, 0x87);
    const uint64_t t0 = vgetq_lane_u64(f0, 0);
    const uint64_t t1 = vgetq_lane_u64(f0, 1) ^ vgetq_lane_u64(f1, 0);
    const uint64_t t2 = vgetq_lane_u64(f1, 1);  // at most 7 bits
    // Fold t2 (x^128 and up) once more: t2 * 0x87 fits in 14 bits.
    const uint64_t u0 = vgetq_lane_u64(clmul(t2, 0x87), 0);
    return Gf128{p1 ^ t1, p0 ^ t0 ^ u0};
}

}  // namespace privcity

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
