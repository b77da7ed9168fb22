// privcity — the masks of secure aggregation (Bonawitz et al. 2017): each 32-byte seed is
// expanded by a PRG into a vector of words, which is added to or subtracted from a vector,
// wrapping around (mod 2^32 or 2^64).
//
// PRG(seed) = AES-256-CTR keystream under key `seed`, 128-bit big-endian counter starting at 0
// (block j = AES_seed(BE128(j))): the bytes `cryptography`'s AES-256-CTR gives with a zero
// nonce. Word j of the mask is keystream bytes [w*j, w*(j+1)) read little-endian (w = 4 or 8).
// The AES kernel is the one aes_isa_selected() picks (VAES, AES-NI, ARMv8, or the portable table
// code, which is not constant-time: see aes_internal.h). The round keys and keystream buffers
// this code owns are wiped; the AES kernels' own register and stack copies are not.
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {

// out[j] += sum_i sign_i * PRG(seeds[32 i .. 32 i + 32))[j] (mod 2^32), j = 0 .. d-1, for the
// n seeds; sign_i > 0 adds, otherwise subtracts. threads: 0 = one per available core; the
// result does not depend on it. Returns 0, or -1 (out unchanged) if memory for the round keys
// (240 bytes per seed) could not be had.
int mask_add_u32(uint32_t* out, size_t d, const uint8_t* seeds, const int8_t* signs, size_t n,
                 int threads) noexcept;
// The same mod 2^64.
int mask_add_u64(uint64_t* out, size_t d, const uint8_t* seeds, const int8_t* signs, size_t n,
                 int threads) noexcept;

}  // namespace privcity
