// privcity — AES-256-GCM (NIST SP 800-38D): 96-bit nonces, 128-bit tags.
//
// SECURITY — what a caller must never do:
//  * Never encrypt two messages with the same (key, nonce). A repeated nonce reveals the XOR of
//    the plaintexts and lets an attacker forge tags for that key. Build nonces from a per-key
//    counter (privcity's envelopes do); random 96-bit nonces are safe only for fewer than 2^32
//    messages per key.
//  * Never encrypt more than AEAD_AES256GCM_MAX_MESSAGE bytes in one message, nor use one key
//    beyond about 2^32 messages or 2^50 bytes in total.
//  * Never use plaintext from a failed decryption: on failure the output is wiped to zeros, and
//    a caller must not look at it while decryption is in progress.
//  * Never log, print or persist an aes256gcm_ctx: it holds the expanded key.
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {

constexpr size_t AEAD_AES256GCM_KEYBYTES = 32;
constexpr size_t AEAD_AES256GCM_NPUBBYTES = 12;
constexpr size_t AEAD_AES256GCM_ABYTES = 16;
// GCM's limit for one message with a 96-bit nonce: 2^32 - 2 blocks.
constexpr uint64_t AEAD_AES256GCM_MAX_MESSAGE = (uint64_t(1) << 36) - 32;

// Expanded key and precomputed powers of the hash key, laid out for one implementation.
// Read-only after init: one context may be shared by many threads.
struct alignas(64) aes256gcm_ctx {
    uint8_t round_keys[15 * 16];
    uint8_t htable[33 * 16];  // powers of H, layout private to the implementation
    int impl;                 // aes_isa of the kernels this context was built for
    uint32_t live;            // set by init, zero once wiped (impl 0 is a kernel too: portable)
};

// Builds ctx for implementation `impl` (an aes_isa value; -1 = the dispatched best).
// AES_ISA_NONE is the portable constant-time kernel (bitsliced AES, GHASH without tables),
// which runs on every CPU. Returns 0, or -1 if this CPU cannot run that implementation (ctx
// untouched).
[[nodiscard]] int aead_aes256gcm_init(aes256gcm_ctx* ctx, const uint8_t key[32], int impl) noexcept;
// Overwrites the context with zeros in a way the compiler keeps.
void aead_aes256gcm_wipe(aes256gcm_ctx* ctx) noexcept;

// c[0..mlen) = ciphertext, tag = 16-byte tag. c may equal m (in place) but must not otherwise
// overlap it. mlen <= AEAD_AES256GCM_MAX_MESSAGE (checked by the caller). Returns 0, or -1 with
// c and tag zeroed if ctx is not an initialised context (fails closed, never leaks m).
[[nodiscard]] int aead_aes256gcm_encrypt_ctx(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                const aes256gcm_ctx* ctx) noexcept;
// Returns 0 and the plaintext in m[0..clen), or -1 on a bad tag (or an uninitialised ctx) with
// m wiped to zeros. The tag is compared in constant time. m may equal c.
[[nodiscard]] int aead_aes256gcm_decrypt_ctx(uint8_t* m, const uint8_t* c, size_t clen,
                                             const uint8_t tag[16], const uint8_t* ad,
                                             size_t adlen, const uint8_t nonce[12],
                                             const aes256gcm_ctx* ctx) noexcept;

// One-shot forms (expand the key, run, wipe the expanded key). Same contracts as above; both
// fail closed (-1, outputs zeroed) if the context cannot be built.
[[nodiscard]] int aead_aes256gcm_encrypt(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                            const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                            const uint8_t key[32]) noexcept;
[[nodiscard]] int aead_aes256gcm_decrypt(uint8_t* m, const uint8_t* c, size_t clen,
                                         const uint8_t tag[16], const uint8_t* ad, size_t adlen,
                                         const uint8_t nonce[12], const uint8_t key[32]) noexcept;

// Batch: message i is m[i][0..mlen[i]), associated data ad[i][0..adlen[i]) (ad may be null:
// no associated data for any message), nonce nonces[12*i .. 12*i+12). Output i is written to
// out[i]: mlen[i] ciphertext bytes followed by the 16-byte tag. Outputs must not overlap inputs.
// Returns 0, or -1 with every output zeroed if ctx is not initialised.
[[nodiscard]] int aead_aes256gcm_encrypt_many(uint8_t* const* out, const uint8_t* const* m, const size_t* mlen,
                                 const uint8_t* const* ad, const size_t* adlen,
                                 const uint8_t* nonces, size_t n, const aes256gcm_ctx* ctx) noexcept;
// Input i is c[i][0..clen[i]) = ciphertext || tag; plaintext i goes to m[i][0..clen[i]-16).
// status[i] = 1 if message i authenticated, 0 if not (and m[i] wiped); an input shorter than
// the tag fails (nothing is written for it).
// If wipe_all_on_failure and any message failed, every output is wiped.
// Returns the number of failures.
size_t aead_aes256gcm_decrypt_many(uint8_t* const* m, uint8_t* status, const uint8_t* const* c,
                                   const size_t* clen, const uint8_t* const* ad,
                                   const size_t* adlen, const uint8_t* nonces, size_t n,
                                   int wipe_all_on_failure, const aes256gcm_ctx* ctx) noexcept;

// Envelopes under many keys (privcity's wire format: header || ciphertext || tag, the header
// the associated data). Seal: out[i] (headlen[i] + prefixlen + bodylen[i] + 16 bytes) gets
// head[i], then prefix || body[i] encrypted under keys[32*i..32*i+32) and nonces[12*i..]
// (prefix: a plaintext head shared by every message, may be null with prefixlen 0), then the
// tag. Outputs must not overlap inputs. impl as in aead_aes256gcm_init. Returns 0, or -1 with
// every output zeroed if impl cannot run here. Each expanded key is wiped after its message.
[[nodiscard]] int aead_aes256gcm_seal_multikey(uint8_t* const* out, const uint8_t* const* head,
                                               const size_t* headlen, const uint8_t* prefix,
                                               size_t prefixlen, const uint8_t* const* body,
                                               const size_t* bodylen, const uint8_t* nonces,
                                               const uint8_t* keys, size_t n, int impl) noexcept;
// Open: env[i][0..envlen[i]) with a header of headlen[i] bytes; plaintext i (envlen[i] -
// headlen[i] - 16 bytes) goes to m[i]. status[i] = 1 if it authenticated, else 0 with m[i]
// wiped (an envelope too short for its tag writes nothing). Returns the number of failures.
size_t aead_aes256gcm_open_multikey(uint8_t* const* m, uint8_t* status, const uint8_t* const* env,
                                    const size_t* envlen, const size_t* headlen,
                                    const uint8_t* nonces, const uint8_t* keys, size_t n,
                                    int impl) noexcept;

// Per-ISA kernels (same contracts; callers must check the CPU first). Defined in
// aead_aesni.cpp, aead_vaes256.cpp, aead_vaes512.cpp (x86-64), aead_armv8.cpp (aarch64) and
// aead_portable.cpp (every CPU).
void aead_aes256gcm_init_portable(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept;
void aead_aes256gcm_encrypt_portable(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                     const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                     const aes256gcm_ctx* ctx) noexcept;
int aead_aes256gcm_decrypt_portable(uint8_t* m, const uint8_t* c, size_t clen,
                                    const uint8_t tag[16], const uint8_t* ad, size_t adlen,
                                    const uint8_t nonce[12], const aes256gcm_ctx* ctx) noexcept;
void aead_aes256gcm_init_aesni(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept;
void aead_aes256gcm_encrypt_aesni(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                  const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                  const aes256gcm_ctx* ctx) noexcept;
int aead_aes256gcm_decrypt_aesni(uint8_t* m, const uint8_t* c, size_t clen, const uint8_t tag[16],
                                 const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                 const aes256gcm_ctx* ctx) noexcept;
void aead_aes256gcm_init_vaes256(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept;
void aead_aes256gcm_encrypt_vaes256(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                    const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                    const aes256gcm_ctx* ctx) noexcept;
int aead_aes256gcm_decrypt_vaes256(uint8_t* m, const uint8_t* c, size_t clen,
                                   const uint8_t tag[16], const uint8_t* ad, size_t adlen,
                                   const uint8_t nonce[12], const aes256gcm_ctx* ctx) noexcept;
void aead_aes256gcm_init_vaes512(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept;
void aead_aes256gcm_encrypt_vaes512(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                    const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                    const aes256gcm_ctx* ctx) noexcept;
int aead_aes256gcm_decrypt_vaes512(uint8_t* m, const uint8_t* c, size_t clen,
                                   const uint8_t tag[16], const uint8_t* ad, size_t adlen,
                                   const uint8_t nonce[12], const aes256gcm_ctx* ctx) noexcept;
void aead_aes256gcm_init_armv8(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept;
void aead_aes256gcm_encrypt_armv8(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                  const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                  const aes256gcm_ctx* ctx) noexcept;
int aead_aes256gcm_decrypt_armv8(uint8_t* m, const uint8_t* c, size_t clen, const uint8_t tag[16],
                                 const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                 const aes256gcm_ctx* ctx) noexcept;
// Batch kernels (contracts of the dispatched batch functions, for a valid VAES context of the
// same width; decrypt does not wipe the other outputs).
void aead_aes256gcm_encrypt_many_vaes256(uint8_t* const* out, const uint8_t* const* m,
                                         const size_t* mlen, const uint8_t* const* ad,
                                         const size_t* adlen, const uint8_t* nonces, size_t n,
                                         const aes256gcm_ctx* ctx) noexcept;
size_t aead_aes256gcm_decrypt_many_vaes256(uint8_t* const* m, uint8_t* status,
                                           const uint8_t* const* c, const size_t* clen,
                                           const uint8_t* const* ad, const size_t* adlen,
                                           const uint8_t* nonces, size_t n,
                                           const aes256gcm_ctx* ctx) noexcept;
void aead_aes256gcm_encrypt_many_vaes512(uint8_t* const* out, const uint8_t* const* m,
                                         const size_t* mlen, const uint8_t* const* ad,
                                         const size_t* adlen, const uint8_t* nonces, size_t n,
                                         const aes256gcm_ctx* ctx) noexcept;
size_t aead_aes256gcm_decrypt_many_vaes512(uint8_t* const* m, uint8_t* status,
                                           const uint8_t* const* c, const size_t* clen,
                                           const uint8_t* const* ad, const size_t* adlen,
                                           const uint8_t* nonces, size_t n,
                                           const aes256gcm_ctx* ctx) noexcept;

}  // namespace privcity
