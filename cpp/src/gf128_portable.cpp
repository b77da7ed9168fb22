// Shamir's GF(2^128) product (privcity/shamir.h) without a carry-less multiply instruction:
// Karatsuba over constant-time 64 x 64 carry-less products (clmul_portable.h), then the fold
// of the high half by x^128 = x^7 + x^2 + x + 1 (0x87) with shifts. The same instructions and
// memory accesses whatever the values.
#include <cstdint>

#include "clmul_portable.h"
#include "shamir_internal.h"

namespace privcity {

Gf128 gf128_mul_portable(Gf128 a, Gf128 b) noexcept {
    using detail::clmul_hi;
    using detail::clmul_lo;
    using detail::rev64;
    const uint64_t a2 = a.hi ^ a.lo, b2 = b.hi ^ b.lo;
    const uint64_t ra0 = rev64(a.lo), ra1 = rev64(a.hi), rb0 = rev64(b.lo), rb1 = rev64(b.hi);
    const uint64_t ra2 = ra0 ^ ra1, rb2 = rb0 ^ rb1;
    // Karatsuba: lo * lo, hi * hi and the middle (lo + hi) * (lo + hi) minus both.
    const uint64_t l0 = clmul_lo(a.lo, b.lo), l1 = clmul_hi(ra0, rb0);
    const uint64_t h0 = clmul_lo(a.hi, b.hi), h1 = clmul_hi(ra1, rb1);
    const uint64_t m0 = clmul_lo(a2, b2) ^ l0 ^ h0, m1 = clmul_hi(ra2, rb2) ^ l1 ^ h1;
    // 256-bit product p3:p2:p1:p0.
    const uint64_t p0 = l0, p1 = l1 ^ m0, p2 = h0 ^ m1, p3 = h1;
    // p3:p2 times 0x87 (up to 135 bits), then the bits at x^128 and up once more.
    const uint64_t over = (p3 >> 63) ^ (p3 >> 62) ^ (p3 >> 57);
    const uint64_t f1 =
        p3 ^ (p3 << 1) ^ (p3 << 2) ^ (p3 << 7) ^ (p2 >> 63) ^ (p2 >> 62) ^ (p2 >> 57);
    const uint64_t f0 = p2 ^ (p2 << 1) ^ (p2 << 2) ^ (p2 << 7) ^ over ^ (over << 1) ^ (over << 2) ^
                        (over << 7);
    return Gf128{p1 ^ f1, p0 ^ f0};
}

}  // namespace privcity
