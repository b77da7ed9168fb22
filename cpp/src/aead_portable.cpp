// AES-256-GCM in portable C++ for CPUs without AES instructions: the bitsliced AES of
// aes_portable.cpp in counter mode, eight blocks per call, and GHASH on the constant-time
// carry-less products of clmul_portable.h. Constant time like the hardware paths: no table, no
// branch or address that depends on the key, the hash key or the data (lengths are public).
#include <cstring>

#include "aes_internal.h"
#include "clmul_portable.h"
#include "privcity/aead.h"
#include "privcity/cpu.h"
#include "secure.h"

namespace privcity {
namespace {

inline uint64_t load_be64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return v;
}
inline void store_be64(uint8_t* p, uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8) p[i] = uint8_t(v);
}

// GHASH in GCM's bit order: a block is the 128-bit integer hi:lo of its two big-endian halves,
// whose top bit is the coefficient of x^0 (the field reflected). The carry-less product of two
// reflected operands is the reflected product shifted right by one, so the product is shifted
// back and then reduced with right shifts (the mirror of the usual left-shift fold by 0x87).
struct GhashKey {
    uint64_t h0, h1, h2;     // H's halves (lo, hi) and their XOR, for Karatsuba
    uint64_t rh0, rh1, rh2;  // the same bit-reversed, for the high halves of the products
};
struct Ghash {
    uint64_t lo = 0, hi = 0;
};

void ghash_mul(Ghash& y, const GhashKey& k) {
    using detail::clmul_hi;
    using detail::clmul_lo;
    using detail::rev64;
    const uint64_t y0 = y.lo, y1 = y.hi, y2 = y0 ^ y1;
    const uint64_t ry0 = rev64(y0), ry1 = rev64(y1), ry2 = ry0 ^ ry1;
    const uint64_t l0 = clmul_lo(y0, k.h0), l1 = clmul_hi(ry0, k.rh0);
    const uint64_t g0 = clmul_lo(y1, k.h1), g1 = clmul_hi(ry1, k.rh1);
    const uint64_t m0 = clmul_lo(y2, k.h2) ^ l0 ^ g0, m1 = clmul_hi(ry2, k.rh2) ^ l1 ^ g1;
    // 255-bit product c3:c2:c1:c0, shifted left by one: z3 holds x^0..x^63 of the product.
    const uint64_t c0 = l0, c1 = l1 ^ m0, c2 = g0 ^ m1, c3 = g1;
    const uint64_t z3 = (c3 << 1) | (c2 >> 63), z2 = (c2 << 1) | (c1 >> 63);
    const uint64_t z1 = (c1 << 1) | (c0 >> 63), z0 = c0 << 1;
    // x^128..x^255 (z1, z0) folded in as times x^7 + x^2 + x + 1, twice for what spills over.
    const uint64_t spill = (z0 << 63) ^ (z0 << 62) ^ (z0 << 57);
    y.hi = z3 ^ z1 ^ (z1 >> 1) ^ (z1 >> 2) ^ (z1 >> 7) ^ spill ^ (spill >> 1) ^ (spill >> 2) ^
           (spill >> 7);
    y.lo = z2 ^ z0 ^ (z0 >> 1) ^ (z0 >> 2) ^ (z0 >> 7) ^ (z1 << 63) ^ (z1 << 62) ^ (z1 << 57);
}

// GHASH over len bytes, the last partial block zero-padded.
void ghash_bytes(Ghash& y, const uint8_t* p, size_t len, const GhashKey& k) {
    for (; len >= 16; p += 16, len -= 16) {
        y.hi ^= load_be64(p);
        y.lo ^= load_be64(p + 8);
        ghash_mul(y, k);
    }
    if (len) {
        uint8_t last[16] = {0};
        std::memcpy(last, p, len);
        y.hi ^= load_be64(last);
        y.lo ^= load_be64(last + 8);
        ghash_mul(y, k);
        detail::secure_wipe(last, sizeof last);
    }
}

// The context's htable holds the GhashKey (this implementation's private layout).
GhashKey ghash_key(const aes256gcm_ctx* ctx) {
    GhashKey k;
    std::memcpy(&k, ctx->htable, sizeof k);
    return k;
}

// Counter blocks nonce || BE32(ctr + j) in slots j < n of in[16 * width], and J0 (counter 1)
// in the slots after them.
void counter_blocks(uint8_t* in, int width, const uint8_t nonce[12], uint32_t ctr, int n) {
    for (int j = 0; j < width; ++j) {
        const uint32_t c = j < n ? ctr + uint32_t(j) : 1;
        std::memcpy(in + 16 * j, nonce, 12);
        for (int i = 0; i < 4; ++i) in[16 * j + 12 + i] = uint8_t(c >> (24 - 8 * i));
    }
}

inline void xor_bytes(uint8_t* out, const uint8_t* a, const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = uint8_t(a[i] ^ b[i]);
}

// The counter mode of GCM over len bytes (data counters from 2), eight blocks per call, and
// E_K(J0) in ekj0: the last call computes J0 in a slot the data leaves free (a separate call
// only if the data fills every slot). The ciphertext is GHASHed as it goes, out after
// encryption, in before decryption, each piece read once into a local copy: what is
// authenticated is what is decrypted, even if another thread changes the buffer meanwhile.
void ctr_ghash(uint8_t* out, const uint8_t* in, size_t len, const uint8_t nonce[12],
               bool decrypt, Ghash& y, const GhashKey& hk, const aes256_ct_keys& ks,
               uint8_t ekj0[16]) {
    uint8_t blocks[128], ksm[128], piece[128];
    uint32_t ctr = 2;
    bool have_j0 = false;
    for (size_t done = 0; done < len; ctr += 8) {
        const size_t n = len - done < 128 ? len - done : 128;
        const int nb = int((n + 15) / 16), used = done + n == len && nb < 8 ? nb + 1 : nb;
        if (used <= 4) {
            counter_blocks(blocks, 4, nonce, ctr, nb);
            aes256_encrypt4_portable(ksm, blocks, &ks);
        } else {
            counter_blocks(blocks, 8, nonce, ctr, nb);
            aes256_encrypt8_portable(ksm, blocks, &ks);
        }
        if (used > nb) {
            std::memcpy(ekj0, ksm + 16 * nb, 16);
            have_j0 = true;
        }
        std::memcpy(piece, in + done, n);
        if (decrypt) ghash_bytes(y, piece, n, hk);
        xor_bytes(piece, piece, ksm, n);
        if (!decrypt) ghash_bytes(y, piece, n, hk);
        std::memcpy(out + done, piece, n);
        done += n;
    }
    if (!have_j0) {  // the message filled every slot of its last call (or was empty)
        counter_blocks(blocks, 4, nonce, 1, 0);
        aes256_encrypt4_portable(ksm, blocks, &ks);
        std::memcpy(ekj0, ksm, 16);
    }
    detail::secure_wipe(ksm, sizeof ksm);
    detail::secure_wipe(piece, sizeof piece);
}

void tag_of(uint8_t tag[16], Ghash& y, size_t adlen, size_t mlen, const GhashKey& hk,
            const uint8_t ekj0[16]) {
    y.hi ^= uint64_t(adlen) * 8;
    y.lo ^= uint64_t(mlen) * 8;
    ghash_mul(y, hk);
    store_be64(tag, y.hi);
    store_be64(tag + 8, y.lo);
    for (int i = 0; i < 16; ++i) tag[i] ^= ekj0[i];
}

// Encrypts (decrypt = false) or decrypts m/c into out, and computes the tag.
void gcm(uint8_t* out, uint8_t tag[16], const uint8_t* in, size_t len, const uint8_t* ad,
         size_t adlen, const uint8_t nonce[12], bool decrypt, const aes256gcm_ctx* ctx) {
    aes256_ct_keys ks;
    aes256_bitslice_keys_portable(&ks, ctx->round_keys);
    GhashKey hk = ghash_key(ctx);
    Ghash y;
    if (adlen) ghash_bytes(y, ad, adlen, hk);
    uint8_t ekj0[16];
    ctr_ghash(out, in, len, nonce, decrypt, y, hk, ks, ekj0);
    tag_of(tag, y, adlen, len, hk, ekj0);
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(&hk, sizeof hk);
    detail::secure_wipe(&y, sizeof y);
    detail::secure_wipe(ekj0, sizeof ekj0);
}

}  // namespace

void aead_aes256gcm_init_portable(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept {
    aes256_expand_key_portable(ctx->round_keys, key);
    aes256_ct_keys ks;
    aes256_bitslice_keys_portable(&ks, ctx->round_keys);
    uint8_t h[64] = {0};  // H = E_K(0^128), in the first of four blocks
    aes256_encrypt4_portable(h, h, &ks);
    GhashKey k;
    k.h1 = load_be64(h);
    k.h0 = load_be64(h + 8);
    k.h2 = k.h0 ^ k.h1;
    k.rh0 = detail::rev64(k.h0);
    k.rh1 = detail::rev64(k.h1);
    k.rh2 = k.rh0 ^ k.rh1;
    std::memset(ctx->htable, 0, sizeof ctx->htable);
    std::memcpy(ctx->htable, &k, sizeof k);
    ctx->impl = AES_ISA_NONE;
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(h, sizeof h);
    detail::secure_wipe(&k, sizeof k);
}

void aead_aes256gcm_encrypt_portable(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                     const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                     const aes256gcm_ctx* ctx) noexcept {
    gcm(c, tag, m, mlen, ad, adlen, nonce, false, ctx);
}

int aead_aes256gcm_decrypt_portable(uint8_t* m, const uint8_t* c, size_t clen,
                                    const uint8_t tag[16], const uint8_t* ad, size_t adlen,
                                    const uint8_t nonce[12], const aes256gcm_ctx* ctx) noexcept {
    uint8_t expect[16];
    gcm(m, expect, c, clen, ad, adlen, nonce, true, ctx);
    const int ok = detail::ct_tag_equal(expect, tag);
    detail::secure_wipe(expect, sizeof expect);
    if (!ok) {
        detail::secure_wipe(m, clen);
        return -1;
    }
    return 0;
}

}  // namespace privcity
