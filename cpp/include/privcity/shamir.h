// privcity — Shamir's secret sharing over GF(2^128), in the field and share format of
// pycryptodome's Crypto.Protocol.SecretSharing.Shamir (ssss=False), so shares made here are
// recombined there and the other way round.
//
// Field: GF(2)[x] / (x^128 + x^7 + x^2 + x + 1). An element is 16 bytes, a big-endian
// integer whose bit i is the coefficient of x^i. A share index i is the element with value i.
// Multiplication is carry-less multiplication and reduction: PCLMULQDQ when the selected AES
// level has it (aes_isa_selected() >= AES_ISA_AESNI), PMULL on aarch64 CPUs that have it (unless
// the cap is AES_ISA_NONE), else a portable loop whose branches and memory accesses do not
// depend on the values (all constant-time in the secrets).
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {

// out = a * b in the field (out may alias a or b).
void gf128_mul(uint8_t out[16], const uint8_t a[16], const uint8_t b[16]) noexcept;

// shares[16 i .. 16 i + 16) = p(xs[i]) for i < n, where p(x) = sum_j coeffs[j] x^(t - 1 - j):
// coeffs holds t elements, highest degree first, the constant term (the secret) last, as
// pycryptodome orders them. Evaluated by Horner's rule.
void shamir_eval(uint8_t* shares, const uint8_t* coeffs, size_t t, const uint32_t* xs,
                 size_t n) noexcept;

// secret = L(0), the constant term of the polynomial of degree < t through the t points
// (xs[i], ys[16 i .. 16 i + 16)) (Lagrange interpolation). Returns 0; or, with secret
// untouched, -1 if t is 0, an index is 0 or two indexes are equal, -2 if out of memory.
int shamir_interpolate0(uint8_t secret[16], const uint32_t* xs, const uint8_t* ys,
                        size_t t) noexcept;

}  // namespace privcity
