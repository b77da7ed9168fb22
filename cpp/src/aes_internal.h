// Block-level AES-256 shared by the AEAD and the CSPRNG (internal to cpp/src).
// Round keys are the 15 FIPS-197 round keys, 16 bytes each, in byte order; every
// implementation reads and writes the same layout.
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {

void aes256_expand_key_aesni(uint8_t round_keys[240], const uint8_t key[32]) noexcept;
void aes256_expand_key_armv8(uint8_t round_keys[240], const uint8_t key[32]) noexcept;
void aes256_expand_key_portable(uint8_t round_keys[240], const uint8_t key[32]) noexcept;

// Keystream of AES-256-CTR: nblocks blocks E(0^64 || BE64(block + j)), j = 0..nblocks-1,
// written to out (16 * nblocks bytes). The same bytes as a 128-bit big-endian counter mode
// starting at counter `block`, while block + nblocks < 2^64.
void aes256_ctr_keystream_aesni(uint8_t* out, size_t nblocks, uint64_t block,
                                const uint8_t round_keys[240]) noexcept;
void aes256_ctr_keystream_vaes256(uint8_t* out, size_t nblocks, uint64_t block,
                                  const uint8_t round_keys[240]) noexcept;
void aes256_ctr_keystream_vaes512(uint8_t* out, size_t nblocks, uint64_t block,
                                  const uint8_t round_keys[240]) noexcept;
void aes256_ctr_keystream_armv8(uint8_t* out, size_t nblocks, uint64_t block,
                                const uint8_t round_keys[240]) noexcept;
// Table-based AES for CPUs without AES-NI: correct, but its S-box lookups are not constant
// time (cache timing can leak the key to a co-located attacker). Used only where the CPU has
// no AES instructions.
void aes256_ctr_keystream_portable(uint8_t* out, size_t nblocks, uint64_t block,
                                   const uint8_t round_keys[240]) noexcept;

}  // namespace privcity
