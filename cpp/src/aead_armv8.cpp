// AES-256-GCM on the ARMv8 Crypto Extensions (AESE/AESMC, PMULL/PMULL2, NEON): 8 blocks per
// iteration, GHASH with aggregated reduction over H^1..H^8, AES and GHASH of consecutive
// batches stitched; the AES-256-CTR keystream of the CSPRNG and the SecAgg masks. The same
// algorithm and field representation as aead_aesni.cpp, so the two can be read side by side.
#if defined(__aarch64__)
// Standard and project headers before the target pragma, so no inline function of theirs is
// compiled with this file's ISA flags.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "aes_internal.h"
#include "privcity/aead.h"
#include "privcity/cpu.h"
#include "secure.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("aes"))), apply_to = function)
// Clang before 16 declares the AES and PMULL intrinsics only under these macros (set by
// -march=...+crypto); this file has the target attribute, so it declares them itself.
#if !defined(__ARM_FEATURE_AES)
#define __ARM_FEATURE_AES 1
#define __ARM_FEATURE_CRYPTO 1
#endif
#else
#pragma GCC target("+crypto")
#endif
#include <arm_neon.h>

namespace privcity {
namespace {

#define PC_INLINE static inline __attribute__((always_inline))

using u8x16 = uint8x16_t;
using u64x2 = uint64x2_t;

PC_INLINE u8x16 loadu(const void* p) { return vld1q_u8(static_cast<const uint8_t*>(p)); }
PC_INLINE void storeu(void* p, u8x16 x) { vst1q_u8(static_cast<uint8_t*>(p), x); }
PC_INLINE u64x2 as64(u8x16 x) { return vreinterpretq_u64_u8(x); }
PC_INLINE u8x16 as8(u64x2 x) { return vreinterpretq_u8_u64(x); }
// The 16 bytes in reverse order (GHASH works on byte-reflected blocks, as on x86).
PC_INLINE u8x16 bswap(u8x16 x) {
    const u8x16 r = vrev64q_u8(x);
    return vextq_u8(r, r, 8);
}
PC_INLINE u64x2 swap64(u64x2 x) { return vextq_u64(x, x, 1); }

// Carry-less products of the low (PMULL) or high (PMULL2) 64-bit lanes.
PC_INLINE u64x2 clmul_lo(u64x2 a, u64x2 b) {
    return vreinterpretq_u64_p128(
        vmull_p64(poly64_t(vgetq_lane_u64(a, 0)), poly64_t(vgetq_lane_u64(b, 0))));
}
PC_INLINE u64x2 clmul_hi(u64x2 a, u64x2 b) {
    return vreinterpretq_u64_p128(
        vmull_high_p64(vreinterpretq_p64_u64(a), vreinterpretq_p64_u64(b)));
}

// The GHASH field exactly as in aead_aesni.cpp: blocks byte-reflected, the hash key stored as
// H*x, products summed unreduced (lo, mi, hi) and reduced once per batch of 8.
struct Acc {
    u64x2 lo, mi, hi;
};
PC_INLINE void mul_first(Acc& a, u64x2 x, u64x2 h) {
    const u64x2 hs = swap64(h);
    a.lo = clmul_lo(x, h);
    a.mi = veorq_u64(clmul_lo(x, hs), clmul_hi(x, hs));
    a.hi = clmul_hi(x, h);
}
PC_INLINE void mul_add(Acc& a, u64x2 x, u64x2 h) {
    const u64x2 hs = swap64(h);
    a.lo = veorq_u64(a.lo, clmul_lo(x, h));
    a.mi = veorq_u64(a.mi, veorq_u64(clmul_lo(x, hs), clmul_hi(x, hs)));
    a.hi = veorq_u64(a.hi, clmul_hi(x, h));
}
// Reduction modulo x^128 + x^7 + x^2 + x + 1 in the reflected representation: fold lo into mi,
// then mi into hi, each with one multiplication by x^63 + x^62 + x^57 (0xc2 << 56).
PC_INLINE u64x2 reduce(const Acc& a) {
    const u64x2 poly = vdupq_n_u64(0xc200000000000000ULL);
    u64x2 mi = veorq_u64(veorq_u64(a.mi, clmul_lo(poly, a.lo)), swap64(a.lo));
    return veorq_u64(veorq_u64(a.hi, clmul_lo(poly, mi)), swap64(mi));
}
PC_INLINE u64x2 gmul(u64x2 x, u64x2 h) {
    Acc a;
    mul_first(a, x, h);
    return reduce(a);
}
PC_INLINE u64x2 rblock(const uint8_t* p) { return as64(bswap(loadu(p))); }

struct Keys {
    u8x16 k[15];
};
PC_INLINE void load_keys(Keys& ks, const uint8_t* round_keys) {
    for (int i = 0; i < 15; ++i) ks.k[i] = loadu(round_keys + 16 * i);
}
// AESE is AddRoundKey + SubBytes + ShiftRows, AESMC MixColumns: x86's aesenc with the key
// added one step earlier, so 13 AESE+AESMC pairs, one AESE and a final XOR make AES-256.
PC_INLINE u8x16 aes_block(u8x16 b, const Keys& ks) {
    for (int r = 0; r < 13; ++r) b = vaesmcq_u8(vaeseq_u8(b, ks.k[r]));
    return veorq_u8(vaeseq_u8(b, ks.k[13]), ks.k[14]);
}
// Eight blocks side by side, round by round, so the AES unit's pipeline stays full.
PC_INLINE void aes8(u8x16 b[8], const Keys& ks) {
    for (int r = 0; r < 13; ++r)
        for (int j = 0; j < 8; ++j) b[j] = vaesmcq_u8(vaeseq_u8(b[j], ks.k[r]));
    for (int j = 0; j < 8; ++j) b[j] = veorq_u8(vaeseq_u8(b[j], ks.k[13]), ks.k[14]);
}

// hp[i] = H^(i+1) (times x, reflected), i = 0..7.
PC_INLINE u64x2 hpow(const aes256gcm_ctx* ctx, int i) { return as64(loadu(ctx->htable + 16 * i)); }

// GHASH over len bytes (last partial block zero-padded), continuing from X.
u64x2 ghash_bytes(u64x2 X, const uint8_t* p, size_t len, const aes256gcm_ctx* ctx) {
    u64x2 h[8];
    for (int i = 0; i < 8; ++i) h[i] = hpow(ctx, i);
    while (len >= 128) {
        Acc a;
        mul_first(a, veorq_u64(X, rblock(p)), h[7]);
        for (int j = 1; j < 8; ++j) mul_add(a, rblock(p + 16 * j), h[7 - j]);
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
        u64x2 b;
        if (j < full) {
            b = rblock(p + 16 * j);
        } else {
            std::memcpy(last, p + 16 * j, len - 16 * j);
            b = rblock(last);
        }
        if (j == 0) {
            mul_first(a, veorq_u64(X, b), h[n - 1]);
        } else {
            mul_add(a, b, h[n - 1 - j]);
        }
    }
    return reduce(a);
}

// GCM counter blocks: the nonce in bytes 0..11, a 32-bit big-endian counter in 12..15.
struct Ctr {
    uint32x4_t base;  // nonce, counter word zero
    uint32_t n;       // counter value of the next block
};
PC_INLINE u8x16 ctr_block(const Ctr& c, uint32_t add) {
    return vreinterpretq_u8_u32(vsetq_lane_u32(__builtin_bswap32(c.n + add), c.base, 3));
}
PC_INLINE Ctr ctr_init(const uint8_t nonce[12]) {
    alignas(16) uint8_t j0[16] = {0};
    std::memcpy(j0, nonce, 12);
    return Ctr{vreinterpretq_u32_u8(loadu(j0)), 1};
}

// Encrypts 8 consecutive counter blocks and XORs them with in -> out.
PC_INLINE void aes8_xor(u8x16 out[8], const u8x16 in[8], const Ctr& ctr, const Keys& ks) {
    u8x16 b[8];
    for (int j = 0; j < 8; ++j) b[j] = ctr_block(ctr, uint32_t(j));
    aes8(b, ks);
    for (int j = 0; j < 8; ++j) out[j] = veorq_u8(b[j], in[j]);
}
PC_INLINE void load8(u8x16 v[8], const uint8_t* p) {
    for (int j = 0; j < 8; ++j) v[j] = loadu(p + 16 * j);
}
PC_INLINE u64x2 ghash8(u64x2 X, const u8x16 c[8], const u64x2 h[8]) {
    Acc a;
    mul_first(a, veorq_u64(X, as64(bswap(c[0]))), h[7]);
    for (int j = 1; j < 8; ++j) mul_add(a, as64(bswap(c[j])), h[7 - j]);
    return reduce(a);
}

// CTR over the tail (< 128 bytes) starting at counter ctr.
PC_INLINE void ctr_tail(uint8_t* out, const uint8_t* in, size_t len, const Ctr& ctr,
                        const Keys& ks) {
    size_t j = 0;
    for (; j + 16 <= len; j += 16)
        storeu(out + j, veorq_u8(aes_block(ctr_block(ctr, uint32_t(j / 16)), ks), loadu(in + j)));
    if (j < len) {
        alignas(16) uint8_t buf[16] = {0};
        std::memcpy(buf, in + j, len - j);
        storeu(buf, veorq_u8(aes_block(ctr_block(ctr, uint32_t(j / 16)), ks), loadu(buf)));
        std::memcpy(out + j, buf, len - j);
        detail::secure_wipe(buf, sizeof buf);
    }
}

PC_INLINE u8x16 final_tag(u64x2 X, size_t adlen, size_t mlen, const Ctr& j0, const Keys& ks,
                          const aes256gcm_ctx* ctx) {
    const u64x2 lens =
        vcombine_u64(vcreate_u64(uint64_t(mlen) * 8), vcreate_u64(uint64_t(adlen) * 8));
    X = gmul(veorq_u64(X, lens), hpow(ctx, 0));
    return veorq_u8(bswap(as8(X)), aes_block(ctr_block(j0, 0), ks));
}

// SubWord of FIPS-197 on the AES unit: with the word in all four columns, ShiftRows moves
// nothing, so AESE with a zero round key is SubBytes alone (no table, constant time).
PC_INLINE uint32_t sub_word(uint32_t w) {
    const u8x16 v = vaeseq_u8(vreinterpretq_u8_u32(vdupq_n_u32(w)), vdupq_n_u8(0));
    return vgetq_lane_u32(vreinterpretq_u32_u8(v), 0);
}

// AES and GHASH state of one message; wiped when it goes out of scope.
struct Job {
    Keys ks;
    u64x2 h[8];
    Job(const aes256gcm_ctx* ctx) {
        load_keys(ks, ctx->round_keys);
        for (int i = 0; i < 8; ++i) h[i] = hpow(ctx, i);
    }
    ~Job() {
        detail::secure_wipe(&ks, sizeof ks);
        detail::secure_wipe(h, sizeof h);
    }
};

}  // namespace

void aes256_expand_key_armv8(uint8_t round_keys[240], const uint8_t key[32]) noexcept {
    uint32_t w[60];  // words in memory order: byte 0 of a word is its first byte
    std::memcpy(w, key, 32);
    uint32_t rcon = 1;
    for (int i = 8; i < 60; ++i) {
        uint32_t t = w[i - 1];
        if (i % 8 == 0) {
            t = sub_word((t >> 8) | (t << 24)) ^ rcon;  // RotWord, SubWord, Rcon
            rcon = ((rcon << 1) ^ ((rcon >> 7) * 0x1b)) & 0xff;
        } else if (i % 8 == 4) {
            t = sub_word(t);
        }
        w[i] = w[i - 8] ^ t;
    }
    std::memcpy(round_keys, w, 240);
    detail::secure_wipe(w, sizeof w);
}

void aes256_ctr_keystream_armv8(uint8_t* out, size_t nblocks, uint64_t block,
                                const uint8_t round_keys[240]) noexcept {
    Keys ks;
    load_keys(ks, round_keys);
    // Counter block j is 0^64 || BE64(block + j).
    auto ctr = [](uint64_t v) {
        return as8(vcombine_u64(vcreate_u64(0), vcreate_u64(__builtin_bswap64(v))));
    };
    while (nblocks >= 8) {
        u8x16 b[8];
        for (int j = 0; j < 8; ++j) b[j] = ctr(block + uint64_t(j));
        aes8(b, ks);
        for (int j = 0; j < 8; ++j) storeu(out + 16 * j, b[j]);
        block += 8;
        out += 128;
        nblocks -= 8;
    }
    for (; nblocks; --nblocks, ++block, out += 16) storeu(out, aes_block(ctr(block), ks));
    detail::secure_wipe(&ks, sizeof ks);
}

void aead_aes256gcm_init_armv8(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept {
    aes256_expand_key_armv8(ctx->round_keys, key);
    Keys ks;
    load_keys(ks, ctx->round_keys);
    // H = E_K(0), byte-reflected, then multiplied by x^-1 in GCM's bit order: a one-bit left
    // shift of the 128-bit value, XOR 0xc2..01 if a bit was carried out.
    const u64x2 h = as64(bswap(aes_block(vdupq_n_u8(0), ks)));
    uint64_t lo = vgetq_lane_u64(h, 0), hi = vgetq_lane_u64(h, 1);
    const uint64_t carry = hi >> 63;
    hi = (hi << 1) | (lo >> 63);
    lo <<= 1;
    hi ^= (0 - carry) & 0xc200000000000000ULL;
    lo ^= carry;
    const u64x2 hp = vcombine_u64(vcreate_u64(lo), vcreate_u64(hi));
    u64x2 cur = hp;
    for (int i = 0; i < 8; ++i) {
        storeu(ctx->htable + 16 * i, as8(cur));
        cur = gmul(cur, hp);
    }
    std::memset(ctx->htable + 16 * 8, 0, sizeof ctx->htable - 16 * 8);
    ctx->impl = AES_ISA_ARMV8;
    detail::secure_wipe(&ks, sizeof ks);
}

void aead_aes256gcm_encrypt_armv8(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                  const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                  const aes256gcm_ctx* ctx) noexcept {
    Job job(ctx);
    u64x2 X = vdupq_n_u64(0);
    if (adlen) X = ghash_bytes(X, ad, adlen, ctx);
    const Ctr j0 = ctr_init(nonce);
    Ctr ctr{j0.base, 2};
    size_t done = 0;
    if (mlen >= 128) {
        // Stitched: AES of batch i runs beside GHASH of batch i-1.
        u8x16 prev[8], in[8];
        load8(in, m);
        aes8_xor(prev, in, ctr, job.ks);
        for (int j = 0; j < 8; ++j) storeu(c + 16 * j, prev[j]);
        ctr.n += 8;
        done = 128;
        while (mlen - done >= 128) {
            u8x16 cur[8];
            load8(in, m + done);
            aes8_xor(cur, in, ctr, job.ks);
            X = ghash8(X, prev, job.h);
            for (int j = 0; j < 8; ++j) {
                storeu(c + done + 16 * j, cur[j]);
                prev[j] = cur[j];
            }
            ctr.n += 8;
            done += 128;
        }
        X = ghash8(X, prev, job.h);
    }
    if (done < mlen) {
        ctr_tail(c + done, m + done, mlen - done, ctr, job.ks);
        X = ghash_bytes(X, c + done, mlen - done, ctx);
    }
    storeu(tag, final_tag(X, adlen, mlen, j0, job.ks, ctx));
}

int aead_aes256gcm_decrypt_armv8(uint8_t* m, const uint8_t* c, size_t clen, const uint8_t tag[16],
                                 const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                 const aes256gcm_ctx* ctx) noexcept {
    alignas(16) uint8_t expect[16];
    {
        Job job(ctx);
        u64x2 X = vdupq_n_u64(0);
        if (adlen) X = ghash_bytes(X, ad, adlen, ctx);
        const Ctr j0 = ctr_init(nonce);
        Ctr ctr{j0.base, 2};
        size_t done = 0;
        while (clen - done >= 128) {
            // The ciphertext is read once: what is authenticated is what is decrypted, even
            // if another thread changes the buffer meanwhile.
            u8x16 in[8], out[8];
            load8(in, c + done);
            X = ghash8(X, in, job.h);  // independent of the AES below: the core overlaps them
            aes8_xor(out, in, ctr, job.ks);
            for (int j = 0; j < 8; ++j) storeu(m + done + 16 * j, out[j]);
            ctr.n += 8;
            done += 128;
        }
        if (done < clen) {
            alignas(16) uint8_t tail[128];  // one read of the tail, as above
            std::memcpy(tail, c + done, clen - done);
            X = ghash_bytes(X, tail, clen - done, ctx);
            ctr_tail(m + done, tail, clen - done, ctr, job.ks);
            detail::secure_wipe(tail, sizeof tail);
        }
        storeu(expect, final_tag(X, adlen, clen, j0, job.ks, ctx));
    }
    if (!detail::ct_tag_equal(expect, tag)) {
        detail::secure_wipe(m, clen);
        return -1;
    }
    return 0;
}

}  // namespace privcity

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif  // __aarch64__
