// Shamir's secret sharing over GF(2^128) (see privcity/shamir.h): the field multiplication's
// dispatcher, Horner evaluation of shares and Lagrange interpolation at 0.
#include "privcity/shamir.h"

#include <vector>

#include "privcity/cpu.h"
#include "secure.h"
#include "shamir_internal.h"

namespace privcity {

namespace {

using MulFn = Gf128 (*)(Gf128, Gf128) noexcept;

MulFn mul_kernel() noexcept {
#if defined(__x86_64__)
    if (aes_isa_selected() >= AES_ISA_AESNI) return gf128_mul_clmul;  // implies PCLMULQDQ
#elif defined(__aarch64__)
    // PMULL alone suffices (no AESE needed); the cap none still forces the portable loop.
    if ((cpu_features() & CPU_ARM_PMULL) && aes_isa_cap() != AES_ISA_NONE) return gf128_mul_pmull;
#endif
    return gf128_mul_portable;
}

inline Gf128 load(const uint8_t* p) noexcept {
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 8; ++i) hi = (hi << 8) | p[i];
    for (int i = 8; i < 16; ++i) lo = (lo << 8) | p[i];
    return Gf128{hi, lo};
}

inline void store(uint8_t* p, Gf128 v) noexcept {
    for (int i = 7; i >= 0; --i, v.hi >>= 8) p[i] = uint8_t(v.hi);
    for (int i = 15; i >= 8; --i, v.lo >>= 8) p[i] = uint8_t(v.lo);
}

inline Gf128 add(Gf128 a, Gf128 b) noexcept { return Gf128{a.hi ^ b.hi, a.lo ^ b.lo}; }

// a^(2^128 - 2) = a^-1 for a != 0: a^(2 + 4 + ... + 2^127), 127 squarings and 126 products.
Gf128 inverse(Gf128 a, MulFn mul) noexcept {
    Gf128 sq = mul(a, a);  // a^2
    Gf128 r = sq;
    for (int i = 2; i < 128; ++i) {
        sq = mul(sq, sq);  // a^(2^i)
        r = mul(r, sq);
    }
    return r;
}

}  // namespace

void gf128_mul(uint8_t out[16], const uint8_t a[16], const uint8_t b[16]) noexcept {
    store(out, mul_kernel()(load(a), load(b)));
}

void shamir_eval(uint8_t* shares, const uint8_t* coeffs, size_t t, const uint32_t* xs,
                 size_t n) noexcept {
    const MulFn mul = mul_kernel();
    for (size_t i = 0; i < n; ++i) {
        const Gf128 x{0, xs[i]};
        Gf128 y{0, 0};
        for (size_t j = 0; j < t; ++j) y = add(mul(y, x), load(coeffs + 16 * j));
        store(shares + 16 * i, y);
        detail::secure_wipe(&y, sizeof y);
    }
}

int shamir_interpolate0(uint8_t secret[16], const uint32_t* xs, const uint8_t* ys,
                        size_t t) noexcept {
    if (t == 0) return -1;
    for (size_t j = 0; j < t; ++j) {
        if (xs[j] == 0) return -1;
        for (size_t m = 0; m < j; ++m)
            if (xs[m] == xs[j]) return -1;
    }
    const MulFn mul = mul_kernel();
    // L(0) = sum_j y_j * num_j / den_j, num_j = prod_{m != j} x_m, den_j = prod_{m != j}
    // (x_j - x_m); minus is plus in characteristic 2. The indexes are public, so this may
    // branch on them; the shares never steer a branch or an address. The t inversions are
    // one inversion and 3 (t - 1) products (Montgomery's trick on prefix products).
    std::vector<Gf128> num, den, prefix;
    try {
        num.resize(t);
        den.resize(t);
        prefix.resize(t);
    } catch (...) {  // out of memory for 48 bytes per share
        return -2;
    }
    for (size_t j = 0; j < t; ++j) {
        Gf128 a{0, 1}, b{0, 1};
        for (size_t m = 0; m < t; ++m) {
            if (m == j) continue;
            a = mul(a, Gf128{0, xs[m]});
            b = mul(b, Gf128{0, uint64_t(xs[j] ^ xs[m])});
        }
        num[j] = a;
        den[j] = b;
        prefix[j] = j ? mul(prefix[j - 1], b) : b;
    }
    Gf128 inv = inverse(prefix[t - 1], mul);  // 1 / (den_0 ... den_{t-1})
    Gf128 result{0, 0};
    for (size_t j = t; j-- > 0;) {
        const Gf128 inv_j = j ? mul(inv, prefix[j - 1]) : inv;  // 1 / den_j
        inv = mul(inv, den[j]);                                  // 1 / (den_0 ... den_{j-1})
        result = add(result, mul(load(ys + 16 * j), mul(num[j], inv_j)));
    }
    store(secret, result);
    detail::secure_wipe(&result, sizeof result);
    return 0;
}

}  // namespace privcity
