// Internal helpers shared by the AEAD files. static inline on purpose: each translation unit
// (compiled with its own ISA flags) keeps its own copy, so no AVX-512 code leaks into another.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace privcity {
namespace detail {

// Zeroes n bytes; the empty asm keeps the compiler from dropping the memset.
static inline void secure_wipe(void* p, size_t n) noexcept {
    if (n == 0) return;
    std::memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

// Constant-time comparison of two 16-byte tags: 1 if equal, 0 if not.
static inline int ct_tag_equal(const uint8_t a[16], const uint8_t b[16]) noexcept {
    uint32_t d = 0;
    for (int i = 0; i < 16; ++i) d |= uint32_t(a[i] ^ b[i]);
    // (d - 1) >> 8 has its low bit set exactly when d == 0, with no branch on d.
    return int(((d - 1) >> 8) & 1);
}

}  // namespace detail
}  // namespace privcity
