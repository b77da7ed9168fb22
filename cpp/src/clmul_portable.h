// Constant-time carry-less multiplication in portable C++, for GF(2^128) where the CPU has no
// carry-less multiply instruction (GHASH of the portable AES-GCM, Shamir's portable field):
// integer multiplications on operands with holes, the design of BearSSL's ghash_ctmul64
// (T. Pornin). No table and no branch: a GF(2^128) product indexed by table lookups (4-bit
// Shoup tables, as in many portable GHASHes) leaks the hash key or the shares through the cache.
// Assumes 64 x 64 -> 64-bit integer multiplication takes the same time whatever the operands
// (true of x86-64 and of the ARMv8-A cores; not of some 32-bit microcontrollers).
// static inline: each file keeps its own copy, compiled without ISA flags.
#pragma once
#include <cstdint>

namespace privcity {
namespace detail {

// Low 64 bits of the carry-less product of x and y. Each operand is split into four words
// keeping every fourth bit (x0 has bits 0, 4, 8, ..; x1 bits 1, 5, ..), so an integer product
// of two such words sums at most 16 bit products into each 4-bit field and no carry reaches
// the next used bit: a field below bit 60 receives at most 15, and the 16 of the top field
// carries out of the word. The product's bit in class i + j (mod 4) is then the low bit of
// its field, and XOR combines the four pairs of each class.
static inline uint64_t clmul_lo(uint64_t x, uint64_t y) noexcept {
    constexpr uint64_t m0 = 0x1111111111111111ull, m1 = m0 << 1, m2 = m0 << 2, m3 = m0 << 3;
    const uint64_t x0 = x & m0, x1 = x & m1, x2 = x & m2, x3 = x & m3;
    const uint64_t y0 = y & m0, y1 = y & m1, y2 = y & m2, y3 = y & m3;
    const uint64_t z0 = (x0 * y0) ^ (x1 * y3) ^ (x2 * y2) ^ (x3 * y1);
    const uint64_t z1 = (x0 * y1) ^ (x1 * y0) ^ (x2 * y3) ^ (x3 * y2);
    const uint64_t z2 = (x0 * y2) ^ (x1 * y1) ^ (x2 * y0) ^ (x3 * y3);
    const uint64_t z3 = (x0 * y3) ^ (x1 * y2) ^ (x2 * y1) ^ (x3 * y0);
    return (z0 & m0) | (z1 & m1) | (z2 & m2) | (z3 & m3);
}

// Bit reversal of a 64-bit word.
static inline uint64_t rev64(uint64_t x) noexcept {
    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    x = ((x >> 4) & 0x0f0f0f0f0f0f0f0full) | ((x & 0x0f0f0f0f0f0f0f0full) << 4);
    x = ((x >> 8) & 0x00ff00ff00ff00ffull) | ((x & 0x00ff00ff00ff00ffull) << 8);
    x = ((x >> 16) & 0x0000ffff0000ffffull) | ((x & 0x0000ffff0000ffffull) << 16);
    return (x >> 32) | (x << 32);
}

// High 64 bits of the carry-less product of x and y, given rx = rev64(x) and ry = rev64(y):
// rx * ry is the product reversed over its 127 bits, so its low word reversed is the product
// shifted right by 63.
static inline uint64_t clmul_hi(uint64_t rx, uint64_t ry) noexcept {
    return rev64(clmul_lo(rx, ry)) >> 1;
}

}  // namespace detail
}  // namespace privcity
