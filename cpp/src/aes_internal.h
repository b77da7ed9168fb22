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
// Portable AES (aes_portable.cpp) for CPUs without AES instructions: bitsliced, constant time
// (no table, no secret-dependent branch or address), so it may run secret keys. privcity has
// no table AES, and must never get one: see the test named in aes_portable.cpp.
void aes256_ctr_keystream_portable(uint8_t* out, size_t nblocks, uint64_t block,
                                   const uint8_t round_keys[240]) noexcept;

// The portable AES's round keys, bitsliced for four blocks at a time (15 rounds x 8 bit
// planes; see aes_portable.cpp). Secret: wipe after use.
struct aes256_ct_keys {
    uint64_t q[15][8];
};
void aes256_bitslice_keys_portable(aes256_ct_keys* ks, const uint8_t round_keys[240]) noexcept;
// Encrypts four blocks, in[16k .. 16k + 16) -> out[16k .. 16k + 16); out may equal in.
void aes256_encrypt4_portable(uint8_t out[64], const uint8_t in[64],
                              const aes256_ct_keys* ks) noexcept;
void aes256_encrypt8_portable(uint8_t out[128], const uint8_t in[128],
                              const aes256_ct_keys* ks) noexcept;

}  // namespace privcity
