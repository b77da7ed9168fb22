// AES-256-GCM on AES-NI + PCLMULQDQ (128-bit registers, SSE4.1): 8 blocks per iteration,
// GHASH with aggregated reduction over H^1..H^8 (Gueron and Kounavis), AES and GHASH of
// consecutive batches stitched so the two units work side by side.
#if defined(__x86_64__)
// Standard and project headers before the target pragma, so no inline function of theirs is
// compiled with this file's ISA flags (the linker could pick that copy for other files).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "aes_internal.h"
#include "privcity/aead.h"
#include "privcity/cpu.h"
#include "secure.h"

#pragma GCC target("aes,pclmul,sse4.1,ssse3")
#include <immintrin.h>

namespace privcity {
namespace {

#define PC_INLINE static inline __attribute__((always_inline))

PC_INLINE __m128i bswap_mask() {
    return _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
PC_INLINE __m128i bswap(__m128i x) { return _mm_shuffle_epi8(x, bswap_mask()); }
PC_INLINE __m128i loadu(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
PC_INLINE void storeu(void* p, __m128i x) { _mm_storeu_si128(static_cast<__m128i*>(p), x); }

// The GHASH field: blocks are byte-reflected and the hash key is stored as H*x (see init), so
// one 256-bit carry-less product followed by the reduction below gives the GCM product. Products
// are summed unreduced (lo, mi, hi) and reduced once per batch.
struct Acc {
    __m128i lo, mi, hi;
};
PC_INLINE void mul_first(Acc& a, __m128i x, __m128i h) {
    a.lo = _mm_clmulepi64_si128(x, h, 0x00);
    a.mi = _mm_xor_si128(_mm_clmulepi64_si128(x, h, 0x01), _mm_clmulepi64_si128(x, h, 0x10));
    a.hi = _mm_clmulepi64_si128(x, h, 0x11);
}
PC_INLINE void mul_add(Acc& a, __m128i x, __m128i h) {
    a.lo = _mm_xor_si128(a.lo, _mm_clmulepi64_si128(x, h, 0x00));
    a.mi = _mm_xor_si128(a.mi, _mm_clmulepi64_si128(x, h, 0x01));
    a.mi = _mm_xor_si128(a.mi, _mm_clmulepi64_si128(x, h, 0x10));
    a.hi = _mm_xor_si128(a.hi, _mm_clmulepi64_si128(x, h, 0x11));
}
// Reduction modulo x^128 + x^7 + x^2 + x + 1 in the reflected representation: fold lo into mi,
// then mi into hi, each with one multiplication by x^63 + x^62 + x^57.
PC_INLINE __m128i reduce(const Acc& a) {
    const __m128i poly = _mm_set_epi64x(static_cast<long long>(0xc200000000000000ULL), 1);
    __m128i t = _mm_clmulepi64_si128(poly, a.lo, 0x01);
    __m128i mi = _mm_xor_si128(_mm_xor_si128(a.mi, t), _mm_shuffle_epi32(a.lo, 0x4e));
    t = _mm_clmulepi64_si128(poly, mi, 0x01);
    return _mm_xor_si128(_mm_xor_si128(a.hi, t), _mm_shuffle_epi32(mi, 0x4e));
}
PC_INLINE __m128i gmul(__m128i x, __m128i h) {
    Acc a;
    mul_first(a, x, h);
    return reduce(a);
}

struct Keys {
    __m128i k[15];
};
PC_INLINE void load_keys(Keys& ks, const aes256gcm_ctx* ctx) {
    for (int i = 0; i < 15; ++i) ks.k[i] = loadu(ctx->round_keys + 16 * i);
}
PC_INLINE __m128i aes_block(__m128i b, const Keys& ks) {
    b = _mm_xor_si128(b, ks.k[0]);
    for (int r = 1; r < 14; ++r) b = _mm_aesenc_si128(b, ks.k[r]);
    return _mm_aesenclast_si128(b, ks.k[14]);
}

// hp[i] = H^(i+1) (times x, reflected), i = 0..7.
PC_INLINE __m128i hpow(const aes256gcm_ctx* ctx, int i) { return loadu(ctx->htable + 16 * i); }

// GHASH over len bytes (last partial block zero-padded), continuing from X.
__m128i ghash_bytes(__m128i X, const uint8_t* p, size_t len, const aes256gcm_ctx* ctx) {
    __m128i h[8];
    for (int i = 0; i < 8; ++i) h[i] = hpow(ctx, i);
    while (len >= 128) {
        Acc a;
        mul_first(a, _mm_xor_si128(X, bswap(loadu(p))), h[7]);
        for (int j = 1; j < 8; ++j) mul_add(a, bswap(loadu(p + 16 * j)), h[7 - j]);
        X = reduce(a);
        p += 128;
        len -= 128;
    }
    if (len == 0) return X;
    // Up to 8 remaining blocks (the last maybe partial), aggregated with H^n .. H^1.
    const size_t n = (len + 15) / 16;
    alignas(16) uint8_t last[16] = {0};
    const size_t full = len / 16;
    Acc a;
    for (size_t j = 0; j < n; ++j) {
        __m128i b;
        if (j < full) {
            b = bswap(loadu(p + 16 * j));
        } else {
            __builtin_memcpy(last, p + 16 * j, len - 16 * j);
            b = bswap(loadu(last));
        }
        if (j == 0) {
            mul_first(a, _mm_xor_si128(X, b), h[n - 1]);
        } else {
            mul_add(a, b, h[n - 1 - j]);
        }
    }
    return reduce(a);
}

PC_INLINE __m128i ctr_block(__m128i ctr_le, int add) {
    return bswap(_mm_add_epi32(ctr_le, _mm_set_epi32(0, 0, 0, add)));
}

// Encrypts 8 consecutive counter blocks starting at ctr_le and XORs them with in -> out.
PC_INLINE void aes8_xor(__m128i out[8], const __m128i in[8], __m128i ctr_le, const Keys& ks) {
    __m128i b[8];
    for (int j = 0; j < 8; ++j) b[j] = _mm_xor_si128(ctr_block(ctr_le, j), ks.k[0]);
    for (int r = 1; r < 14; ++r)
        for (int j = 0; j < 8; ++j) b[j] = _mm_aesenc_si128(b[j], ks.k[r]);
    for (int j = 0; j < 8; ++j) out[j] = _mm_aesenclast_si128(b[j], _mm_xor_si128(ks.k[14], in[j]));
}
PC_INLINE void load8(__m128i v[8], const uint8_t* p) {
    for (int j = 0; j < 8; ++j) v[j] = loadu(p + 16 * j);
}

PC_INLINE __m128i ghash8(__m128i X, const __m128i c[8], const __m128i h[8]) {
    Acc a;
    mul_first(a, _mm_xor_si128(X, bswap(c[0])), h[7]);
    for (int j = 1; j < 8; ++j) mul_add(a, bswap(c[j]), h[7 - j]);
    return reduce(a);
}

// CTR over the tail (< 128 bytes) starting at counter ctr_le.
PC_INLINE void ctr_tail(uint8_t* out, const uint8_t* in, size_t len, __m128i ctr_le, const Keys& ks) {
    size_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m128i k = aes_block(ctr_block(ctr_le, int(j / 16)), ks);
        storeu(out + j, _mm_xor_si128(k, loadu(in + j)));
    }
    if (j < len) {
        alignas(16) uint8_t buf[16] = {0};
        __builtin_memcpy(buf, in + j, len - j);
        __m128i k = aes_block(ctr_block(ctr_le, int(j / 16)), ks);
        storeu(buf, _mm_xor_si128(k, loadu(buf)));
        __builtin_memcpy(out + j, buf, len - j);
        detail::secure_wipe(buf, sizeof buf);
    }
}

PC_INLINE __m128i final_tag(__m128i X, size_t adlen, size_t mlen, __m128i ctr_le, const Keys& ks,
                            const aes256gcm_ctx* ctx) {
    const __m128i lens = _mm_set_epi64x(static_cast<long long>(uint64_t(adlen) * 8),
                                        static_cast<long long>(uint64_t(mlen) * 8));
    X = gmul(_mm_xor_si128(X, lens), hpow(ctx, 0));
    return _mm_xor_si128(bswap(X), aes_block(bswap(ctr_le), ks));
}

PC_INLINE __m128i j0_le(const uint8_t nonce[12]) {
    alignas(16) uint8_t j0[16];
    __builtin_memcpy(j0, nonce, 12);
    j0[12] = 0;
    j0[13] = 0;
    j0[14] = 0;
    j0[15] = 1;
    return bswap(loadu(j0));
}

}  // namespace

void aes256_expand_key_aesni(uint8_t round_keys[240], const uint8_t key[32]) noexcept {
    __m128i rk[15];
    rk[0] = loadu(key);
    rk[1] = loadu(key + 16);
    auto step_a = [](__m128i a, __m128i kga) {  // even round keys: RotWord/SubWord + rcon
        kga = _mm_shuffle_epi32(kga, 0xff);
        a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        return _mm_xor_si128(a, kga);
    };
    auto step_b = [](__m128i a, __m128i kga) {  // odd round keys: SubWord only
        kga = _mm_shuffle_epi32(kga, 0xaa);
        a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        return _mm_xor_si128(a, kga);
    };
#define PC_EXPAND(i, rcon)                                                  \
    rk[i] = step_a(rk[i - 2], _mm_aeskeygenassist_si128(rk[i - 1], rcon));  \
    if (i + 1 < 15) rk[i + 1] = step_b(rk[i - 1], _mm_aeskeygenassist_si128(rk[i], 0));
    PC_EXPAND(2, 0x01)
    PC_EXPAND(4, 0x02)
    PC_EXPAND(6, 0x04)
    PC_EXPAND(8, 0x08)
    PC_EXPAND(10, 0x10)
    PC_EXPAND(12, 0x20)
    rk[14] = step_a(rk[12], _mm_aeskeygenassist_si128(rk[13], 0x40));
#undef PC_EXPAND
    for (int i = 0; i < 15; ++i) storeu(round_keys + 16 * i, rk[i]);
    detail::secure_wipe(rk, sizeof rk);
}

void aes256_ctr_keystream_aesni(uint8_t* out, size_t nblocks, uint64_t block,
                                const uint8_t round_keys[240]) noexcept {
    Keys ks;
    for (int i = 0; i < 15; ++i) ks.k[i] = loadu(round_keys + 16 * i);
    // Counter block j is 0^64 || BE64(block + j): in byte-reflected form, block + j in the
    // low 64 bits, so a 64-bit add steps it.
    __m128i ctr = _mm_set_epi64x(0, static_cast<long long>(block));
    const __m128i one = _mm_set_epi64x(0, 1);
    while (nblocks >= 8) {
        __m128i b[8];
        for (int j = 0; j < 8; ++j) {
            b[j] = _mm_xor_si128(bswap(ctr), ks.k[0]);
            ctr = _mm_add_epi64(ctr, one);
        }
        for (int r = 1; r < 14; ++r)
            for (int j = 0; j < 8; ++j) b[j] = _mm_aesenc_si128(b[j], ks.k[r]);
        for (int j = 0; j < 8; ++j) storeu(out + 16 * j, _mm_aesenclast_si128(b[j], ks.k[14]));
        out += 128;
        nblocks -= 8;
    }
    for (; nblocks; --nblocks, out += 16) {
        storeu(out, aes_block(bswap(ctr), ks));
        ctr = _mm_add_epi64(ctr, one);
    }
}

void aead_aes256gcm_init_aesni(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept {
    aes256_expand_key_aesni(ctx->round_keys, key);
    Keys ks;
    load_keys(ks, ctx);
    // H = E_K(0), byte-reflected, then multiplied by x^-1 in GCM's bit order: a one-bit left
    // shift of the 128-bit value, XOR 0xc2..01 if a bit was carried out.
    __m128i h = bswap(aes_block(_mm_setzero_si128(), ks));
    uint64_t lo = uint64_t(_mm_cvtsi128_si64(h));
    uint64_t hi = uint64_t(_mm_extract_epi64(h, 1));
    const uint64_t carry = hi >> 63;
    hi = (hi << 1) | (lo >> 63);
    lo <<= 1;
    hi ^= (0 - carry) & 0xc200000000000000ULL;
    lo ^= carry;
    __m128i hp = _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo));
    __m128i cur = hp;
    for (int i = 0; i < 8; ++i) {
        storeu(ctx->htable + 16 * i, cur);
        cur = gmul(cur, hp);
    }
    for (size_t i = 8; i < sizeof ctx->htable / 16; ++i)
        storeu(ctx->htable + 16 * i, _mm_setzero_si128());
    ctx->impl = AES_ISA_AESNI;
    detail::secure_wipe(&ks, sizeof ks);
}

void aead_aes256gcm_encrypt_aesni(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                  const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                  const aes256gcm_ctx* ctx) noexcept {
    Keys ks;
    load_keys(ks, ctx);
    __m128i h[8];
    for (int i = 0; i < 8; ++i) h[i] = hpow(ctx, i);
    __m128i X = _mm_setzero_si128();
    if (adlen) X = ghash_bytes(X, ad, adlen, ctx);
    const __m128i j0 = j0_le(nonce);
    __m128i ctr = _mm_add_epi32(j0, _mm_set_epi32(0, 0, 0, 1));
    const __m128i eight = _mm_set_epi32(0, 0, 0, 8);
    size_t done = 0;
    if (mlen >= 128) {
        // Stitched: AES of batch i runs beside GHASH of batch i-1.
        __m128i prev[8], in[8];
        load8(in, m);
        aes8_xor(prev, in, ctr, ks);
        for (int j = 0; j < 8; ++j) storeu(c + 16 * j, prev[j]);
        ctr = _mm_add_epi32(ctr, eight);
        done = 128;
        while (mlen - done >= 128) {
            __m128i cur[8];
            load8(in, m + done);
            aes8_xor(cur, in, ctr, ks);
            X = ghash8(X, prev, h);
            for (int j = 0; j < 8; ++j) {
                storeu(c + done + 16 * j, cur[j]);
                prev[j] = cur[j];
            }
            ctr = _mm_add_epi32(ctr, eight);
            done += 128;
        }
        X = ghash8(X, prev, h);
    }
    if (done < mlen) {
        ctr_tail(c + done, m + done, mlen - done, ctr, ks);
        X = ghash_bytes(X, c + done, mlen - done, ctx);
    }
    storeu(tag, final_tag(X, adlen, mlen, j0, ks, ctx));
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(h, sizeof h);
}

int aead_aes256gcm_decrypt_aesni(uint8_t* m, const uint8_t* c, size_t clen, const uint8_t tag[16],
                                 const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                 const aes256gcm_ctx* ctx) noexcept {
    Keys ks;
    load_keys(ks, ctx);
    __m128i h[8];
    for (int i = 0; i < 8; ++i) h[i] = hpow(ctx, i);
    __m128i X = _mm_setzero_si128();
    if (adlen) X = ghash_bytes(X, ad, adlen, ctx);
    const __m128i j0 = j0_le(nonce);
    __m128i ctr = _mm_add_epi32(j0, _mm_set_epi32(0, 0, 0, 1));
    const __m128i eight = _mm_set_epi32(0, 0, 0, 8);
    size_t done = 0;
    while (clen - done >= 128) {
        // The ciphertext is read once: what is authenticated is what is decrypted, even if
        // another thread changes the buffer meanwhile.
        __m128i in[8], out[8];
        load8(in, c + done);
        X = ghash8(X, in, h);  // independent of the AES below: the core overlaps them
        aes8_xor(out, in, ctr, ks);
        for (int j = 0; j < 8; ++j) storeu(m + done + 16 * j, out[j]);
        ctr = _mm_add_epi32(ctr, eight);
        done += 128;
    }
    if (done < clen) {
        alignas(16) uint8_t tail[128];  // one read of the tail, as above
        __builtin_memcpy(tail, c + done, clen - done);
        X = ghash_bytes(X, tail, clen - done, ctx);
        ctr_tail(m + done, tail, clen - done, ctr, ks);
        detail::secure_wipe(tail, sizeof tail);
    }
    alignas(16) uint8_t expect[16];
    storeu(expect, final_tag(X, adlen, clen, j0, ks, ctx));
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(h, sizeof h);
    if (!detail::ct_tag_equal(expect, tag)) {
        detail::secure_wipe(m, clen);
        return -1;
    }
    return 0;
}

}  // namespace privcity
#endif  // __x86_64__
