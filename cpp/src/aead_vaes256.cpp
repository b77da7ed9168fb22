// AES-256-GCM on VAES + VPCLMULQDQ with 256-bit registers and AVX2 (AMD Zen 3, Intel client
// CPUs since Alder Lake: VAES without AVX-512). 16 blocks per iteration in 8 ymm vectors, two
// blocks per vector: VAES has a 4-cycle latency and two units, so 8 independent vectors keep
// them busy. The AES rounds of one batch are interleaved, in the source, with the GHASH of the
// previous batch (encrypt) or of the same batch (decrypt). GHASH multiplies the 16 blocks by
// H^16..H^1 with Karatsuba (3 carry-less products per vector instead of 4, the halves of the
// key powers XORed in advance) and reduces once per 16 blocks. On Zen 3 a VPCLMULQDQ, the XORs
// and the shuffles all take issue slots from the AES pipes, so the loop is bound by their sum
// (about 110 cycles per 16 blocks, AES alone 60): fewer products per block is what pays.
// The design follows Linux's aes-gcm-vaes-avx2.S and BoringSSL's aes-gcm-avx2-x86_64 (Eric
// Biggers), written here with intrinsics. AVX2 has no masked byte loads: partial blocks are
// read and written with scalar loads and stores that never touch a byte outside the buffer.
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

#pragma GCC target("aes,pclmul,sse4.1,ssse3,avx,avx2,vaes,vpclmulqdq")
#include <immintrin.h>

namespace privcity {
namespace {

#define PC_INLINE static inline __attribute__((always_inline))

PC_INLINE __m128i bswap_mask() {
    return _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
PC_INLINE __m128i bswap(__m128i x) { return _mm_shuffle_epi8(x, bswap_mask()); }
PC_INLINE __m256i bswap256(__m256i x) {
    return _mm256_shuffle_epi8(x, _mm256_broadcastsi128_si256(bswap_mask()));
}
PC_INLINE __m128i loadu(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
PC_INLINE void storeu(void* p, __m128i x) { _mm_storeu_si128(static_cast<__m128i*>(p), x); }
PC_INLINE __m256i loadu256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
PC_INLINE void storeu256(void* p, __m256i x) { _mm256_storeu_si256(static_cast<__m256i*>(p), x); }
PC_INLINE __m256i x256(__m256i a, __m256i b) { return _mm256_xor_si256(a, b); }
PC_INLINE __m256i lane0(__m128i x) { return _mm256_zextsi128_si256(x); }
PC_INLINE __m128i fold_lanes(__m256i x) {
    return _mm_xor_si128(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
}
PC_INLINE __m128i poly128() {
    return _mm_set_epi64x(static_cast<long long>(0xc200000000000000ULL), 1);
}
#define PC_CLMUL(a, b, imm) _mm256_clmulepi64_epi128((a), (b), (imm))

// --- Partial blocks: bytes p[0..n) only, with loads and stores of whole words that overlap
// inside the range (branches depend on the length alone, which is public). ------------------

// p[0..n) zero-extended to 16 bytes, n < 16.
PC_INLINE __m128i load_partial16(const uint8_t* p, size_t n) {
    uint64_t lo = 0, hi = 0;
    if (n >= 8) {
        std::memcpy(&lo, p, 8);
        if (n > 8) {
            uint64_t t;
            std::memcpy(&t, p + n - 8, 8);  // bytes n-8 .. n-1; the top n-8 of them are 8 .. n-1
            hi = t >> (8 * (16 - n));
        }
    } else if (n >= 4) {
        uint32_t a, b;
        std::memcpy(&a, p, 4);
        std::memcpy(&b, p + n - 4, 4);  // overlaps a where n < 8: the same bytes, OR is harmless
        lo = a | (uint64_t(b) << (8 * (n - 4)));
    } else if (n > 0) {
        lo = p[0];
        if (n > 1) lo |= uint64_t(p[1]) << 8;
        if (n > 2) lo |= uint64_t(p[2]) << 16;
    }
    return _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo));
}

// Writes the first n < 16 bytes of x to p[0..n).
PC_INLINE void store_partial16(uint8_t* p, __m128i x, size_t n) {
    const uint64_t lo = uint64_t(_mm_cvtsi128_si64(x)), hi = uint64_t(_mm_extract_epi64(x, 1));
    if (n >= 8) {
        std::memcpy(p, &lo, 8);
        if (n > 8) {
            const uint64_t t = (lo >> (8 * (n - 8))) | (hi << (8 * (16 - n)));  // bytes n-8 .. n-1
            std::memcpy(p + n - 8, &t, 8);
        }
    } else if (n >= 4) {
        const uint32_t a = uint32_t(lo), b = uint32_t(lo >> (8 * (n - 4)));
        std::memcpy(p, &a, 4);
        std::memcpy(p + n - 4, &b, 4);
    } else if (n > 0) {
        p[0] = uint8_t(lo);
        if (n > 1) p[1] = uint8_t(lo >> 8);
        if (n > 2) p[2] = uint8_t(lo >> 16);
    }
}

// p[0..n) zero-extended to 32 bytes (n may exceed 32: then 32 bytes are read).
PC_INLINE __m256i load_part(const uint8_t* p, size_t n) {
    if (n >= 32) return loadu256(p);
    if (n >= 16)
        return _mm256_inserti128_si256(_mm256_castsi128_si256(loadu(p)),
                                       load_partial16(p + 16, n - 16), 1);
    return lane0(load_partial16(p, n));
}
PC_INLINE void store_part(uint8_t* p, __m256i x, size_t n) {
    if (n >= 32) {
        storeu256(p, x);
    } else if (n >= 16) {
        storeu(p, _mm256_castsi256_si128(x));
        store_partial16(p + 16, _mm256_extracti128_si256(x, 1), n - 16);
    } else {
        store_partial16(p, _mm256_castsi256_si128(x), n);
    }
}
// All-ones in bytes 0..n-1 of a 32-byte vector, zeros above (n may exceed 32).
PC_INLINE __m256i byte_mask(size_t n) {
    const __m256i iota = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                          16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                                          30, 31);
    return _mm256_cmpgt_epi8(_mm256_set1_epi8(char(n < 32 ? n : 32)), iota);
}

// --- GHASH (see aead_aesni.cpp for the representation; each 128-bit lane is one block) -----
// Unreduced sums of 256-bit products, per lane. Every product is a Karatsuba one: lo and hi
// as schoolbook, mi the sum of (x_L ^ x_H)(h_L ^ h_H); kfinish turns mi into the middle term.
struct Acc {
    __m256i lo, mi, hi;
};
PC_INLINE void acc_zero(Acc& a) { a.lo = a.mi = a.hi = _mm256_setzero_si256(); }
// Reduces each lane modulo the GHASH polynomial and sums the two lanes.
PC_INLINE __m128i reduce(const Acc& a) {
    const __m256i poly = _mm256_broadcastsi128_si256(poly128());
    __m256i t = PC_CLMUL(poly, a.lo, 0x01);
    const __m256i mi = x256(x256(a.mi, t), _mm256_shuffle_epi32(a.lo, 0x4e));
    t = PC_CLMUL(poly, mi, 0x01);
    return fold_lanes(x256(x256(a.hi, t), _mm256_shuffle_epi32(mi, 0x4e)));
}
PC_INLINE __m128i gmul128(__m128i x, __m128i h) {
    const __m128i poly = poly128();
    const __m128i lo = _mm_clmulepi64_si128(x, h, 0x00);
    __m128i mi = _mm_xor_si128(_mm_clmulepi64_si128(x, h, 0x01), _mm_clmulepi64_si128(x, h, 0x10));
    const __m128i hi = _mm_clmulepi64_si128(x, h, 0x11);
    __m128i t = _mm_clmulepi64_si128(poly, lo, 0x01);
    mi = _mm_xor_si128(_mm_xor_si128(mi, t), _mm_shuffle_epi32(lo, 0x4e));
    t = _mm_clmulepi64_si128(poly, mi, 0x01);
    return _mm_xor_si128(_mm_xor_si128(hi, t), _mm_shuffle_epi32(mi, 0x4e));
}

// Lane-wise GHASH product of two pairs of field elements (key setup only).
PC_INLINE __m256i gmul256(__m256i x, __m256i h) {
    Acc a;
    a.lo = PC_CLMUL(x, h, 0x00);
    a.mi = x256(PC_CLMUL(x, h, 0x01), PC_CLMUL(x, h, 0x10));
    a.hi = PC_CLMUL(x, h, 0x11);
    const __m256i poly = _mm256_broadcastsi128_si256(poly128());
    __m256i t = PC_CLMUL(poly, a.lo, 0x01);
    const __m256i mi = x256(x256(a.mi, t), _mm256_shuffle_epi32(a.lo, 0x4e));
    t = PC_CLMUL(poly, mi, 0x01);
    return x256(x256(a.hi, t), _mm256_shuffle_epi32(mi, 0x4e));
}

// htable layout of this implementation (528 bytes):
//   bytes 0..255:   H^16, H^15, ..., H^1 (16 bytes each): the 32 bytes at 16 * (16 - n) are
//                   [H^n, H^(n-1)], the powers of the next two blocks when n blocks remain.
//   bytes 256..511: the same powers' Karatsuba halves, H_L ^ H_H in the low qword of each
//                   16-byte entry (high qword zero), so the vector of halves of any pair of
//                   powers lies 256 bytes after the pair.
//   bytes 512..527: zero, read (against zero data) by a pair that starts at H^1.
constexpr size_t kKaratsubaOffset = 256;
PC_INLINE const uint8_t* hpowers(const aes256gcm_ctx* ctx, size_t nblocks) {
    return ctx->htable + 16 * (16 - nblocks);
}

// Adds x (two blocks) times the pair of powers at hp: 3 carry-less products instead of 4.
template <bool FIRST = false>
PC_INLINE void kmul(Acc& a, __m256i x, const uint8_t* hp) {
    const __m256i h = loadu256(hp);
    const __m256i lo = PC_CLMUL(x, h, 0x00), hi = PC_CLMUL(x, h, 0x11);
    const __m256i xx = x256(x, _mm256_unpackhi_epi64(x, x));
    const __m256i mi = PC_CLMUL(xx, loadu256(hp + kKaratsubaOffset), 0x00);
    if constexpr (FIRST) {
        a.lo = lo;
        a.hi = hi;
        a.mi = mi;
    } else {
        a.lo = x256(a.lo, lo);
        a.hi = x256(a.hi, hi);
        a.mi = x256(a.mi, mi);
    }
}
// Karatsuba's middle term: the sum of the (x_L ^ x_H)(h_L ^ h_H) products minus lo and hi.
PC_INLINE void kfinish(Acc& a) { a.mi = x256(a.mi, x256(a.lo, a.hi)); }

// GHASH of 2 * NV full blocks g[0..NV) (raw byte order; NV = 8 or 4), continuing from X.
template <int NV>
PC_INLINE __m128i ghash_n(__m128i X, const __m256i* g, const uint8_t* ht) {
    const uint8_t* hp = ht + 32 * (8 - NV);
    Acc a;
    kmul<true>(a, x256(bswap256(g[0]), lane0(X)), hp);
    for (int v = 1; v < NV; ++v) kmul(a, bswap256(g[v]), hp + 32 * v);
    kfinish(a);
    return reduce(a);
}

// GHASH of len < 128 bytes (the last block zero-padded) continuing from X: one aggregated
// product, one reduction.
PC_INLINE __m128i ghash_tail(__m128i X, const uint8_t* p, size_t len, const aes256gcm_ctx* ctx) {
    const uint8_t* hp = hpowers(ctx, (len + 15) / 16);
    Acc a;
    kmul<true>(a, x256(bswap256(load_part(p, len)), lane0(X)), hp);
    for (size_t off = 32; off < len; off += 32)
        kmul(a, bswap256(load_part(p + off, len - off)), hp + off);
    kfinish(a);
    return reduce(a);
}

__m128i ghash_bytes(__m128i X, const uint8_t* p, size_t len, const aes256gcm_ctx* ctx) {
    __m256i g[8];
    while (len >= 256) {
        for (int v = 0; v < 8; ++v) g[v] = loadu256(p + 32 * v);
        X = ghash_n<8>(X, g, ctx->htable);
        p += 256;
        len -= 256;
    }
    if (len >= 128) {
        for (int v = 0; v < 4; ++v) g[v] = loadu256(p + 32 * v);
        X = ghash_n<4>(X, g, ctx->htable);
        p += 128;
        len -= 128;
    }
    return len ? ghash_tail(X, p, len, ctx) : X;
}

// --- AES ---
struct Keys {
    __m256i k[15];  // round keys, each in both lanes
};
PC_INLINE void load_keys(Keys& ks, const uint8_t round_keys[240]) {
    for (int i = 0; i < 15; ++i) ks.k[i] = _mm256_broadcastsi128_si256(loadu(round_keys + 16 * i));
}
#define PC_ROUND8(b, ks, r)                                                   \
    do {                                                                      \
        for (int v_ = 0; v_ < 8; ++v_) b[v_] = _mm256_aesenc_epi128(b[v_], (ks).k[r]); \
    } while (0)

// Counter vectors: lane 0 holds counter c, lane 1 counter c + 1, byte-reflected (the 32-bit
// block counter in the low dword, stepped as inc32 requires).
PC_INLINE __m256i ctr_add(__m256i ctr, int k) {
    return _mm256_add_epi32(ctr, _mm256_setr_epi32(k, 0, 0, 0, k, 0, 0, 0));
}
PC_INLINE __m256i ctr_pair(__m128i j0) {
    return _mm256_add_epi32(_mm256_broadcastsi128_si256(j0),
                            _mm256_setr_epi32(0, 0, 0, 0, 1, 0, 0, 0));
}

// Keystream for NV vectors of counters ctr, ctr+2, ... XORed with NV input vectors d.
template <int NV>
PC_INLINE void aes_xor(__m256i out[NV], const __m256i d[NV], __m256i ctr, const Keys& ks) {
    __m256i b[NV];
    for (int v = 0; v < NV; ++v) b[v] = x256(bswap256(ctr_add(ctr, 2 * v)), ks.k[0]);
#pragma GCC unroll 13
    for (int r = 1; r < 14; ++r)
        for (int v = 0; v < NV; ++v) b[v] = _mm256_aesenc_epi128(b[v], ks.k[r]);
    for (int v = 0; v < NV; ++v) out[v] = _mm256_aesenclast_epi128(b[v], x256(ks.k[14], d[v]));
}

PC_INLINE __m128i aes_block(__m128i b, const Keys& ks) {
    b = _mm_xor_si128(b, _mm256_castsi256_si128(ks.k[0]));
    for (int r = 1; r < 14; ++r) b = _mm_aesenc_si128(b, _mm256_castsi256_si128(ks.k[r]));
    return _mm_aesenclast_si128(b, _mm256_castsi256_si128(ks.k[14]));
}

// One batch of 16 blocks: AES-CTR of in -> out, its rounds interleaved with GHASH of g (when
// encrypting the previous batch's ciphertext, replaced by this batch's; when decrypting, this
// batch's ciphertext, loaded here once and used for both). Returns the new GHASH state.
template <bool ENCRYPT>
PC_INLINE __m128i crypt16_ghash16(uint8_t* out, const uint8_t* in, __m256i g[8], __m256i ctr,
                                  const Keys& ks, const uint8_t* ht, __m128i X) {
    __m256i b[8];
    for (int v = 0; v < 8; ++v) b[v] = x256(bswap256(ctr_add(ctr, 2 * v)), ks.k[0]);
    if (!ENCRYPT)
        for (int v = 0; v < 8; ++v) g[v] = loadu256(in + 32 * v);
    Acc a;
    PC_ROUND8(b, ks, 1);
    kmul<true>(a, x256(bswap256(g[0]), lane0(X)), ht);
    PC_ROUND8(b, ks, 2);
    kmul(a, bswap256(g[1]), ht + 32);
    PC_ROUND8(b, ks, 3);
    kmul(a, bswap256(g[2]), ht + 64);
    PC_ROUND8(b, ks, 4);
    kmul(a, bswap256(g[3]), ht + 96);
    PC_ROUND8(b, ks, 5);
    kmul(a, bswap256(g[4]), ht + 128);
    PC_ROUND8(b, ks, 6);
    kmul(a, bswap256(g[5]), ht + 160);
    PC_ROUND8(b, ks, 7);
    kmul(a, bswap256(g[6]), ht + 192);
    PC_ROUND8(b, ks, 8);
    kmul(a, bswap256(g[7]), ht + 224);
    PC_ROUND8(b, ks, 9);
    kfinish(a);
    const __m256i poly = _mm256_broadcastsi128_si256(poly128());
    __m256i t = PC_CLMUL(poly, a.lo, 0x01);
    const __m256i mi = x256(x256(a.mi, t), _mm256_shuffle_epi32(a.lo, 0x4e));
    PC_ROUND8(b, ks, 10);
    t = PC_CLMUL(poly, mi, 0x01);
    X = fold_lanes(x256(x256(a.hi, t), _mm256_shuffle_epi32(mi, 0x4e)));
    PC_ROUND8(b, ks, 11);
    PC_ROUND8(b, ks, 12);
    PC_ROUND8(b, ks, 13);
    for (int v = 0; v < 8; ++v) {
        const __m256i d = ENCRYPT ? loadu256(in + 32 * v) : g[v];
        const __m256i o = _mm256_aesenclast_epi128(b[v], x256(ks.k[14], d));
        storeu256(out + 32 * v, o);
        if (ENCRYPT) g[v] = o;
    }
    return X;
}

// CTR over a tail of 0 < len < 128 bytes starting at counter pair ctr; returns the GHASH input
// (ciphertext, zero past len) in g[0..NV). Reads in once.
template <int NV, bool ENCRYPT>
PC_INLINE void crypt_tail(__m256i g[4], uint8_t* out, const uint8_t* in, size_t len,
                          __m256i ctr, const Keys& ks) {
    __m256i d[NV], o[NV];
    for (int v = 0; v < NV; ++v) d[v] = load_part(in + 32 * v, len - 32 * v);
    aes_xor<NV>(o, d, ctr, ks);
    for (int v = 0; v < NV; ++v) {
        o[v] = _mm256_and_si256(o[v], byte_mask(len - 32 * v));
        store_part(out + 32 * v, o[v], len - 32 * v);
        g[v] = ENCRYPT ? o[v] : d[v];
    }
    for (int v = NV; v < 4; ++v) g[v] = _mm256_setzero_si256();
}

// GHASH of the tail's vectors g (len bytes) continuing from X, then of the length block L.
PC_INLINE __m128i ghash_final(__m128i X, const __m256i g[4], size_t len, __m128i L,
                              const aes256gcm_ctx* ctx) {
    const uint8_t* hp = hpowers(ctx, (len + 15) / 16 + 1);
    Acc a;
    kmul<true>(a, x256(bswap256(g[0]), lane0(X)), hp);
    for (size_t v = 1; 32 * v < len; ++v) kmul(a, bswap256(g[v]), hp + 32 * v);
    kmul(a, lane0(L), ctx->htable + 16 * 15);
    kfinish(a);
    return reduce(a);
}

// J0 = nonce || 00000001, byte-reflected (counter in the low 32 bits).
PC_INLINE __m128i j0_le(const uint8_t nonce[12]) {
    uint64_t lo;
    uint32_t hi;
    __builtin_memcpy(&lo, nonce, 8);
    __builtin_memcpy(&hi, nonce + 8, 4);
    return bswap(_mm_set_epi32(0x01000000, int(hi), int(uint32_t(lo >> 32)), int(uint32_t(lo))));
}

// 1 if the computed tag equals tag[0..16): all 16 bytes compared at once, no early exit, so
// the time does not depend on where they differ.
PC_INLINE bool tag_equal(__m128i computed, const uint8_t tag[16]) {
    return _mm_movemask_epi8(_mm_cmpeq_epi8(computed, loadu(tag))) == 0xffff;
}

PC_INLINE __m128i lengths(size_t adlen, size_t mlen) {
    return _mm_set_epi64x(static_cast<long long>(uint64_t(adlen) * 8),
                          static_cast<long long>(uint64_t(mlen) * 8));
}

// One message; ENCRYPT: in = plaintext, out = ciphertext; else the reverse. Returns the tag.
// Decryption reads each ciphertext byte once: what is authenticated is what is decrypted.
template <bool ENCRYPT>
PC_INLINE __m128i gcm(uint8_t* out, const uint8_t* in, size_t len, const uint8_t* ad, size_t adlen,
                      const uint8_t nonce[12], const aes256gcm_ctx* ctx) {
    Keys ks;
    load_keys(ks, ctx->round_keys);
    const __m128i j0 = j0_le(nonce);
    const __m128i ekj0 = aes_block(bswap(j0), ks);
    __m128i X = _mm_setzero_si128();
    if (adlen) X = ghash_bytes(X, ad, adlen, ctx);
    __m256i ctr = ctr_add(ctr_pair(j0), 1);  // counters 2, 3 (counter 1 is J0, for the tag)
    const uint8_t* ht = ctx->htable;
    size_t done = 0;
    __m256i g[8];
    if (len >= 256) {
        if (ENCRYPT) {
            for (int v = 0; v < 8; ++v) g[v] = loadu256(in + 32 * v);
            aes_xor<8>(g, g, ctr, ks);
            for (int v = 0; v < 8; ++v) storeu256(out + 32 * v, g[v]);
            ctr = ctr_add(ctr, 16);
            done = 256;
        }
        while (len - done >= 256) {
            X = crypt16_ghash16<ENCRYPT>(out + done, in + done, g, ctr, ks, ht, X);
            ctr = ctr_add(ctr, 16);
            done += 256;
        }
        if (ENCRYPT) X = ghash_n<8>(X, g, ht);
    }
    if (len - done >= 128) {  // one batch of 8, AES then GHASH
        __m256i d[4], o[4];
        for (int v = 0; v < 4; ++v) d[v] = loadu256(in + done + 32 * v);
        aes_xor<4>(o, d, ctr, ks);
        for (int v = 0; v < 4; ++v) storeu256(out + done + 32 * v, o[v]);
        X = ghash_n<4>(X, ENCRYPT ? o : d, ht);
        ctr = ctr_add(ctr, 8);
        done += 128;
    }
    const size_t rest = len - done;
    const __m128i L = lengths(adlen, len);
    if (rest) {
        __m256i g[4];
        switch ((rest + 31) / 32) {
            case 1: crypt_tail<1, ENCRYPT>(g, out + done, in + done, rest, ctr, ks); break;
            case 2: crypt_tail<2, ENCRYPT>(g, out + done, in + done, rest, ctr, ks); break;
            case 3: crypt_tail<3, ENCRYPT>(g, out + done, in + done, rest, ctr, ks); break;
            default: crypt_tail<4, ENCRYPT>(g, out + done, in + done, rest, ctr, ks); break;
        }
        X = ghash_final(X, g, rest, L, ctx);
    } else {
        X = gmul128(_mm_xor_si128(X, L), loadu(ctx->htable + 16 * 15));
    }
    detail::secure_wipe(&ks, sizeof ks);
    return _mm_xor_si128(bswap(X), ekj0);
}

// --- Small messages: adlen <= 64 and mlen <= 128 ---------------------------------------------
// The whole GHASH (AAD, ciphertext, lengths) is one aggregated product with a single reduction:
// with T blocks in all, AAD block j takes H^(T-j), ciphertext block j takes H^(T-a-j) and the
// length block H^1. G messages of one shape run side by side, which hides the AES latency that
// bounds a lone short message.
constexpr size_t kSmallAd = 64, kSmallMsg = 128;

struct Msg {
    uint8_t* out;
    const uint8_t* in;
    size_t len;
    const uint8_t* ad;
    size_t adlen;
    const uint8_t* nonce;
    uint8_t* tag_out;       // encrypt: where the tag goes
    const uint8_t* tag_in;  // decrypt: the tag to check
};

PC_INLINE bool is_small(size_t len, size_t adlen) { return adlen <= kSmallAd && len <= kSmallMsg; }

// The length block's share of the hash, L * H^1 reduced (GHASH is linear: it is added after
// the reduction of the rest), kept for the last (adlen, len) asked: a batch of messages of one
// length computes it once. It is a multiple of H: its owner wipes it.
struct LenProduct {
    size_t adlen = ~size_t(0), len = 0;
    __m128i value{};
    inline __attribute__((always_inline)) __m128i get(size_t al, size_t l,
                                                      const aes256gcm_ctx* ctx) {
        if (al != adlen || l != len) {
            adlen = al;
            len = l;
            value = gmul128(lengths(al, l), loadu(ctx->htable + 16 * 15));
        }
        return value;
    }
};

// Returns a bitmask: bit i set if message i failed authentication (decrypt only).
template <int G, int NA, int NC, bool ENCRYPT>
PC_INLINE unsigned small_group(const Msg* g, const Keys& ks, LenProduct& lp,
                               const aes256gcm_ctx* ctx) {
    constexpr int NE = (G + 1) / 2;  // vectors of E(J0) blocks, two messages each
    constexpr int NB = NC > 0 ? NC : 1;
    __m128i j0[G];
    __m256i b[G][NB], e[NE];
    for (int i = 0; i < G; ++i) {
        j0[i] = j0_le(g[i].nonce);
        const __m256i ctr = ctr_add(ctr_pair(j0[i]), 1);
        for (int v = 0; v < NC; ++v) b[i][v] = x256(bswap256(ctr_add(ctr, 2 * v)), ks.k[0]);
    }
    for (int k = 0; k < NE; ++k) {
        const __m128i hi = j0[2 * k + 1 < G ? 2 * k + 1 : 2 * k];
        e[k] = x256(bswap256(_mm256_set_m128i(hi, j0[2 * k])), ks.k[0]);
    }
#pragma GCC unroll 13
    for (int r = 1; r < 14; ++r) {
        for (int i = 0; i < G; ++i)
            for (int v = 0; v < NC; ++v) b[i][v] = _mm256_aesenc_epi128(b[i][v], ks.k[r]);
        for (int k = 0; k < NE; ++k) e[k] = _mm256_aesenc_epi128(e[k], ks.k[r]);
    }
    for (int k = 0; k < NE; ++k) e[k] = _mm256_aesenclast_epi128(e[k], ks.k[14]);

    unsigned failed = 0;
    for (int i = 0; i < G; ++i) {
        const size_t len = NC == 0 ? 0 : g[i].len, adlen = NA == 0 ? 0 : g[i].adlen;
        const size_t ab = (adlen + 15) / 16, cb = (len + 15) / 16;
        const uint8_t* hp = hpowers(ctx, ab + cb + 1);  // H^1 is the length block's
        Acc a;
        acc_zero(a);
        for (int v = 0; v < NA; ++v)
            kmul(a, bswap256(load_part(g[i].ad + 32 * v, adlen - 32 * v)), hp + 32 * v);
        const uint8_t* hc = hp + 16 * ab;
        for (int v = 0; v < NC; ++v) {
            const size_t n = len - 32 * v;
            const __m256i d = load_part(g[i].in + 32 * v, n);
            __m256i o = _mm256_aesenclast_epi128(b[i][v], x256(ks.k[14], d));
            o = _mm256_and_si256(o, byte_mask(n));
            store_part(g[i].out + 32 * v, o, n);
            kmul(a, bswap256(ENCRYPT ? o : d), hc + 32 * v);
        }
        __m128i X = lp.get(adlen, len, ctx);
        if constexpr (NA + NC > 0) {
            kfinish(a);
            X = _mm_xor_si128(X, reduce(a));
        }
        const __m128i ek = (i & 1) ? _mm256_extracti128_si256(e[i / 2], 1)
                                   : _mm256_castsi256_si128(e[i / 2]);
        const __m128i tag = _mm_xor_si128(bswap(X), ek);
        if (ENCRYPT) {
            storeu(g[i].tag_out, tag);
        } else {
            if (!tag_equal(tag, g[i].tag_in)) {
                detail::secure_wipe(g[i].out, len);
                failed |= 1u << i;
            }
        }
    }
    return failed;
}

// Shape of a small message, to group messages that can run side by side (-1: not small).
PC_INLINE int small_shape(size_t len, size_t adlen) {
    if (!is_small(len, adlen)) return -1;
    return int((adlen + 31) / 32) * 8 + int((len + 31) / 32);
}

template <int G, bool ENCRYPT>
PC_INLINE unsigned small_dispatch(const Msg* g, const Keys& ks, LenProduct& lp,
                                  const aes256gcm_ctx* ctx) {
#define PC_CASE(A, C) \
    case (A) * 8 + (C): return small_group<G, A, C, ENCRYPT>(g, ks, lp, ctx);
    switch (small_shape(g[0].len, g[0].adlen)) {
        PC_CASE(0, 0) PC_CASE(0, 1) PC_CASE(0, 2) PC_CASE(0, 3) PC_CASE(0, 4)
        PC_CASE(1, 0) PC_CASE(1, 1) PC_CASE(1, 2) PC_CASE(1, 3) PC_CASE(1, 4)
        PC_CASE(2, 0) PC_CASE(2, 1) PC_CASE(2, 2) PC_CASE(2, 3) PC_CASE(2, 4)
        default: __builtin_unreachable();
    }
#undef PC_CASE
}

template <bool ENCRYPT>
PC_INLINE unsigned small_one(const Msg& m, const aes256gcm_ctx* ctx) {
    Keys ks;
    load_keys(ks, ctx->round_keys);
    LenProduct lp;
    const unsigned r = small_dispatch<1, ENCRYPT>(&m, ks, lp, ctx);
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(&lp, sizeof lp);
    return r;
}

}  // namespace

void aead_aes256gcm_init_vaes256(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept {
    aes256_expand_key_aesni(ctx->round_keys, key);
    Keys ks;
    load_keys(ks, ctx->round_keys);
    // H = E_K(0), byte-reflected, times x^-1 in GCM's bit order (see aead_aesni.cpp): a one-bit
    // left shift of the 128-bit value, XOR 0xc2..01 if a bit was carried out.
    const __m128i h = bswap(aes_block(_mm_setzero_si128(), ks));
    const __m128i carry = _mm_shuffle_epi32(_mm_srai_epi32(h, 31), 0xff);  // all ones if bit 127
    const __m128i shifted =
        _mm_or_si128(_mm_slli_epi64(h, 1), _mm_srli_epi64(_mm_slli_si128(h, 8), 63));
    const __m128i h1 = _mm_xor_si128(shifted, _mm_and_si128(carry, poly128()));
    // The powers as pairs [H^(k+1), H^k], in a tree four products deep: per-key setup is on the
    // path of every envelope sealed under its own key.
    const __m128i h2 = gmul128(h1, h1);
    __m256i pw[8];  // pw[j] = [H^(2j+2), H^(2j+1)]
    pw[0] = _mm256_set_m128i(h1, h2);
    pw[1] = gmul256(pw[0], _mm256_broadcastsi128_si256(h2));
    const __m256i h4 = _mm256_permute2x128_si256(pw[1], pw[1], 0x00);
    pw[2] = gmul256(pw[0], h4);
    pw[3] = gmul256(pw[1], h4);
    const __m256i h8 = _mm256_permute2x128_si256(pw[3], pw[3], 0x00);
    for (int j = 0; j < 4; ++j) pw[4 + j] = gmul256(pw[j], h8);
    for (int j = 0; j < 8; ++j) {
        uint8_t* at = ctx->htable + 16 * (14 - 2 * j);  // H^(2j+2) is entry 16 - (2j+2)
        storeu256(at, pw[j]);
        const __m256i halves = x256(pw[j], _mm256_unpackhi_epi64(pw[j], pw[j]));
        storeu256(at + kKaratsubaOffset, _mm256_unpacklo_epi64(halves, _mm256_setzero_si256()));
    }
    for (size_t i = 32; i < sizeof ctx->htable / 16; ++i)
        storeu(ctx->htable + 16 * i, _mm_setzero_si128());
    static_assert(sizeof ctx->htable >= 33 * 16, "16 powers, their halves and a zero entry");
    ctx->impl = AES_ISA_VAES256;
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(pw, sizeof pw);
}

void aead_aes256gcm_encrypt_vaes256(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                    const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                    const aes256gcm_ctx* ctx) noexcept {
    if (is_small(mlen, adlen)) {
        const Msg msg{c, m, mlen, ad, adlen, nonce, tag, nullptr};
        small_one<true>(msg, ctx);
        return;
    }
    storeu(tag, gcm<true>(c, m, mlen, ad, adlen, nonce, ctx));
}

int aead_aes256gcm_decrypt_vaes256(uint8_t* m, const uint8_t* c, size_t clen,
                                   const uint8_t tag[16], const uint8_t* ad, size_t adlen,
                                   const uint8_t nonce[12], const aes256gcm_ctx* ctx) noexcept {
    if (is_small(clen, adlen)) {
        const Msg msg{m, c, clen, ad, adlen, nonce, nullptr, tag};
        return small_one<false>(msg, ctx) ? -1 : 0;
    }
    if (!tag_equal(gcm<false>(m, c, clen, ad, adlen, nonce, ctx), tag)) {
        detail::secure_wipe(m, clen);
        return -1;
    }
    return 0;
}

void aes256_ctr_keystream_vaes256(uint8_t* out, size_t nblocks, uint64_t block,
                                  const uint8_t round_keys[240]) noexcept {
    Keys ks;
    load_keys(ks, round_keys);
    // Lane j holds counter block + j, byte-reflected: the 64-bit counter in the low qword.
    __m256i ctr = _mm256_set_epi64x(0, static_cast<long long>(block + 1), 0,
                                    static_cast<long long>(block));
    const __m256i two = _mm256_set_epi64x(0, 2, 0, 2);
    // 8 vectors (16 blocks) in flight: VAES has a 4-cycle latency and two units.
    while (nblocks >= 16) {
        __m256i b[8];
        for (int v = 0; v < 8; ++v) {
            b[v] = x256(bswap256(ctr), ks.k[0]);
            ctr = _mm256_add_epi64(ctr, two);
        }
#pragma GCC unroll 13
        for (int r = 1; r < 14; ++r)
            for (int v = 0; v < 8; ++v) b[v] = _mm256_aesenc_epi128(b[v], ks.k[r]);
        for (int v = 0; v < 8; ++v)
            storeu256(out + 32 * v, _mm256_aesenclast_epi128(b[v], ks.k[14]));
        out += 256;
        nblocks -= 16;
    }
    while (nblocks >= 2) {
        __m256i b = x256(bswap256(ctr), ks.k[0]);
        ctr = _mm256_add_epi64(ctr, two);
        for (int r = 1; r < 14; ++r) b = _mm256_aesenc_epi128(b, ks.k[r]);
        storeu256(out, _mm256_aesenclast_epi128(b, ks.k[14]));
        out += 32;
        nblocks -= 2;
    }
    if (nblocks) storeu(out, aes_block(bswap(_mm256_castsi256_si128(ctr)), ks));
    detail::secure_wipe(&ks, sizeof ks);
}

void aead_aes256gcm_encrypt_many_vaes256(uint8_t* const* out, const uint8_t* const* m,
                                         const size_t* mlen, const uint8_t* const* ad,
                                         const size_t* adlen, const uint8_t* nonces, size_t n,
                                         const aes256gcm_ctx* ctx) noexcept {
    Keys ks;
    load_keys(ks, ctx->round_keys);
    LenProduct lp;
    auto msg = [&](size_t i) {
        const size_t al = ad ? adlen[i] : 0;
        return Msg{out[i], m[i], mlen[i], al ? ad[i] : nullptr, al, nonces + 12 * i,
                   out[i] + mlen[i], nullptr};
    };
    size_t i = 0;
    while (i < n) {
        const Msg m0 = msg(i);
        const int shape = small_shape(m0.len, m0.adlen);
        if (shape >= 0 && i + 4 <= n) {
            Msg g[4] = {m0, msg(i + 1), msg(i + 2), msg(i + 3)};
            if (small_shape(g[1].len, g[1].adlen) == shape &&
                small_shape(g[2].len, g[2].adlen) == shape &&
                small_shape(g[3].len, g[3].adlen) == shape) {
                small_dispatch<4, true>(g, ks, lp, ctx);
                i += 4;
                continue;
            }
        }
        if (shape >= 0)
            small_dispatch<1, true>(&m0, ks, lp, ctx);
        else
            storeu(m0.tag_out, gcm<true>(m0.out, m0.in, m0.len, m0.ad, m0.adlen, m0.nonce, ctx));
        ++i;
    }
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(&lp, sizeof lp);
}

size_t aead_aes256gcm_decrypt_many_vaes256(uint8_t* const* m, uint8_t* status,
                                           const uint8_t* const* c, const size_t* clen,
                                           const uint8_t* const* ad, const size_t* adlen,
                                           const uint8_t* nonces, size_t n,
                                           const aes256gcm_ctx* ctx) noexcept {
    Keys ks;
    load_keys(ks, ctx->round_keys);
    LenProduct lp;
    // A ciphertext shorter than the tag gets shape -2: never grouped, failed below.
    auto msg = [&](size_t i) {
        const size_t len = clen[i] < AEAD_AES256GCM_ABYTES ? 0 : clen[i] - AEAD_AES256GCM_ABYTES;
        const size_t al = ad ? adlen[i] : 0;
        return Msg{m[i], c[i], len, al ? ad[i] : nullptr, al, nonces + 12 * i, nullptr, c[i] + len};
    };
    auto shape_of = [&](size_t i, const Msg& g) {
        return clen[i] < AEAD_AES256GCM_ABYTES ? -2 : small_shape(g.len, g.adlen);
    };
    size_t failed = 0;
    size_t i = 0;
    while (i < n) {
        const Msg m0 = msg(i);
        const int shape = shape_of(i, m0);
        if (shape == -2) {
            status[i] = 0;
            ++failed;
            ++i;
            continue;
        }
        if (shape >= 0 && i + 4 <= n) {
            Msg g[4] = {m0, msg(i + 1), msg(i + 2), msg(i + 3)};
            if (shape_of(i + 1, g[1]) == shape && shape_of(i + 2, g[2]) == shape &&
                shape_of(i + 3, g[3]) == shape) {
                const unsigned bad = small_dispatch<4, false>(g, ks, lp, ctx);
                for (int j = 0; j < 4; ++j) {
                    status[i + j] = (bad >> j) & 1 ? 0 : 1;
                    failed += (bad >> j) & 1;
                }
                i += 4;
                continue;
            }
        }
        int r;
        if (shape >= 0)
            r = small_dispatch<1, false>(&m0, ks, lp, ctx) ? -1 : 0;
        else
            r = aead_aes256gcm_decrypt_vaes256(m0.out, m0.in, m0.len, m0.tag_in, m0.ad,
                                               m0.adlen, m0.nonce, ctx);
        status[i] = r == 0 ? 1 : 0;
        failed += r != 0;
        ++i;
    }
    detail::secure_wipe(&ks, sizeof ks);
    detail::secure_wipe(&lp, sizeof lp);
    return failed;
}

}  // namespace privcity
#endif  // __x86_64__
