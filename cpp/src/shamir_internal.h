// The GF(2^128) element of privcity/shamir.h as two 64-bit words (hi: x^127..x^64, lo:
// x^63..x^0), and the multiplications behind the dispatcher in shamir.cpp.
#pragma once
#include <cstdint>

namespace privcity {

struct Gf128 {
    uint64_t hi, lo;
};

Gf128 gf128_mul_portable(Gf128 a, Gf128 b) noexcept;
#if defined(__x86_64__)
Gf128 gf128_mul_clmul(Gf128 a, Gf128 b) noexcept;
#elif defined(__aarch64__)
Gf128 gf128_mul_pmull(Gf128 a, Gf128 b) noexcept;
#endif

}  // namespace privcity
