// AES-256-GCM on VAES + VPCLMULQDQ with 512-bit registers (AVX-512F/BW/VL): 16 blocks per
// iteration in 4 zmm vectors, AES of batch i stitched with GHASH of batch i-1, 16 powers of H
// precomputed, the 16 products summed unreduced and reduced once per iteration (the design of
// Linux's aes-gcm-vaes-avx512.S, written here with intrinsics). Tails use masked loads/stores,
// so no message length needs a scalar path.
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

#pragma GCC target("aes,pclmul,sse4.1,ssse3,avx,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq")
// GCC's own broadcast intrinsics pass an "undefined" vector as the merge source, which
// -Wmaybe-uninitialized reports from inside avx512fintrin.h; nothing here is uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

namespace privcity {
namespace {

#define PC_INLINE static inline __attribute__((always_inline))

PC_INLINE __m128i bswap_mask() {
    return _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
PC_INLINE __m128i bswap(__m128i x) { return _mm_shuffle_epi8(x, bswap_mask()); }
PC_INLINE __m512i bswap512(__m512i x) {
    return _mm512_shuffle_epi8(x, _mm512_broadcast_i32x4(bswap_mask()));
}
PC_INLINE __m128i loadu(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
PC_INLINE void storeu(void* p, __m128i x) { _mm_storeu_si128(static_cast<__m128i*>(p), x); }
PC_INLINE __m512i loadu512(const void* p) { return _mm512_loadu_si512(p); }
PC_INLINE void storeu512(void* p, __m512i x) { _mm512_storeu_si512(p, x); }
PC_INLINE __m512i xor3(__m512i a, __m512i b, __m512i c) {
    return _mm512_ternarylogic_epi64(a, b, c, 0x96);
}
// X in lane 0, zeros above (a register move; _mm512_zextsi128_si512 goes through memory on GCC 12).
PC_INLINE __m512i lane0(__m128i x) { return _mm512_maskz_broadcast_i32x4(0x000f, x); }
PC_INLINE __m512i poly512() {
    return _mm512_broadcast_i32x4(
        _mm_set_epi64x(static_cast<long long>(0xc200000000000000ULL), 1));
}
// Byte mask for the first `bytes` bytes of a 64-byte vector (bytes may exceed 64).
PC_INLINE __mmask64 byte_mask(size_t bytes) {
    return bytes >= 64 ? ~__mmask64(0) : ((__mmask64(1) << bytes) - 1);
}

// --- GHASH (see aead_aesni.cpp for the representation; each 128-bit lane is one block) ---
struct Acc {
    __m512i lo, mi, hi;
};
PC_INLINE void mul_first(Acc& a, __m512i x, __m512i h) {
    a.lo = _mm512_clmulepi64_epi128(x, h, 0x00);
    a.mi = _mm512_xor_si512(_mm512_clmulepi64_epi128(x, h, 0x01),
                            _mm512_clmulepi64_epi128(x, h, 0x10));
    a.hi = _mm512_clmulepi64_epi128(x, h, 0x11);
}
PC_INLINE void mul_add(Acc& a, __m512i x, __m512i h) {
    a.lo = _mm512_xor_si512(a.lo, _mm512_clmulepi64_epi128(x, h, 0x00));
    a.mi = xor3(a.mi, _mm512_clmulepi64_epi128(x, h, 0x01), _mm512_clmulepi64_epi128(x, h, 0x10));
    a.hi = _mm512_xor_si512(a.hi, _mm512_clmulepi64_epi128(x, h, 0x11));
}
// Reduces each lane, then sums the four lanes into one field element.
PC_INLINE __m128i reduce_fold(const Acc& a) {
    const __m512i poly = poly512();
    __m512i t = _mm512_clmulepi64_epi128(poly, a.lo, 0x01);
    __m512i mi = xor3(a.mi, t, _mm512_shuffle_epi32(a.lo, _MM_PERM_BADC));
    t = _mm512_clmulepi64_epi128(poly, mi, 0x01);
    __m512i r = xor3(a.hi, t, _mm512_shuffle_epi32(mi, _MM_PERM_BADC));
    __m256i r2 = _mm256_xor_si256(_mm512_castsi512_si256(r), _mm512_extracti64x4_epi64(r, 1));
    return _mm_xor_si128(_mm256_castsi256_si128(r2), _mm256_extracti128_si256(r2, 1));
}
PC_INLINE __m128i gmul128(__m128i x, __m128i h) {
    const __m128i poly = _mm_set_epi64x(static_cast<long long>(0xc200000000000000ULL), 1);
    __m128i lo = _mm_clmulepi64_si128(x, h, 0x00);
    __m128i mi = _mm_xor_si128(_mm_clmulepi64_si128(x, h, 0x01), _mm_clmulepi64_si128(x, h, 0x10));
    __m128i hi = _mm_clmulepi64_si128(x, h, 0x11);
    __m128i t = _mm_clmulepi64_si128(poly, lo, 0x01);
    mi = _mm_ternarylogic_epi64(mi, t, _mm_shuffle_epi32(lo, 0x4e), 0x96);
    t = _mm_clmulepi64_si128(poly, mi, 0x01);
    return _mm_ternarylogic_epi64(hi, t, _mm_shuffle_epi32(mi, 0x4e), 0x96);
}

// htable: entry i (i = 0..15) is H^(16-i); entries 16.. are zero so that tail loads may run
// past H^1.
PC_INLINE const uint8_t* hpowers(const aes256gcm_ctx* ctx, size_t nblocks) {
    return ctx->htable + 16 * (16 - nblocks);
}

// GHASH of 16 full blocks g[0..4) (raw byte order), continuing from X.
PC_INLINE __m128i ghash16(__m128i X, const __m512i g[4], const __m512i H[4]) {
    Acc a;
    mul_first(a, _mm512_xor_si512(bswap512(g[0]), lane0(X)), H[0]);
    mul_add(a, bswap512(g[1]), H[1]);
    mul_add(a, bswap512(g[2]), H[2]);
    mul_add(a, bswap512(g[3]), H[3]);
    return reduce_fold(a);
}
// GHASH of n <= 4*NV blocks held in g[0..NV) (zeros past the data), continuing from X.
template <int NV>
PC_INLINE __m128i ghash_n(__m128i X, const __m512i g[NV], size_t n, const aes256gcm_ctx* ctx) {
    const uint8_t* hp = hpowers(ctx, n);
    Acc a;
    mul_first(a, _mm512_xor_si512(bswap512(g[0]), lane0(X)), loadu512(hp));
    for (int v = 1; v < NV; ++v) mul_add(a, bswap512(g[v]), loadu512(hp + 64 * v));
    return reduce_fold(a);
}
template <int NV>
PC_INLINE __m128i ghash_tail(__m128i X, const uint8_t* p, size_t len, const aes256gcm_ctx* ctx) {
    __m512i g[NV];
    for (int v = 0; v < NV; ++v) g[v] = _mm512_maskz_loadu_epi8(byte_mask(len - 64 * v), p + 64 * v);
    return ghash_n<NV>(X, g, (len + 15) / 16, ctx);
}

__m128i ghash_bytes(__m128i X, const uint8_t* p, size_t len, const aes256gcm_ctx* ctx) {
    if (len >= 256) {
        __m512i H[4];
        for (int v = 0; v < 4; ++v) H[v] = loadu512(ctx->htable + 64 * v);
        while (len >= 256) {
            __m512i g[4];
            for (int v = 0; v < 4; ++v) g[v] = loadu512(p + 64 * v);
            X = ghash16(X, g, H);
            p += 256;
            len -= 256;
        }
    }
    switch ((len + 63) / 64) {
        case 1: return ghash_tail<1>(X, p, len, ctx);
        case 2: return ghash_tail<2>(X, p, len, ctx);
        case 3: return ghash_tail<3>(X, p, len, ctx);
        case 4: return ghash_tail<4>(X, p, len, ctx);
        default: return X;
    }
}

// --- AES ---
struct Keys {
    __m512i k[15];
};
PC_INLINE void load_keys(Keys& ks, const aes256gcm_ctx* ctx) {
    for (int i = 0; i < 15; ++i) ks.k[i] = _mm512_broadcast_i32x4(loadu(ctx->round_keys + 16 * i));
}
PC_INLINE __m128i aes_block(__m128i b, const Keys& ks) {
    b = _mm_xor_si128(b, _mm512_castsi512_si128(ks.k[0]));
    for (int r = 1; r < 14; ++r) b = _mm_aesenc_si128(b, _mm512_castsi512_si128(ks.k[r]));
    return _mm_aesenclast_si128(b, _mm512_castsi512_si128(ks.k[14]));
}
PC_INLINE __m512i lane_inc(int step) { return _mm512_set_epi32(0, 0, 0, 3 * step, 0, 0, 0, 2 * step, 0, 0, 0, step, 0, 0, 0, 0); }
PC_INLINE __m512i add_ctr(__m512i ctr, int k) {
    return _mm512_add_epi32(ctr, _mm512_broadcast_i32x4(_mm_set_epi32(0, 0, 0, k)));
}

// Keystream for NV vectors of counters ctr, ctr+4, ... XORed with NV input vectors d.
template <int NV>
PC_INLINE void aes_xor(__m512i out[NV], const __m512i d[NV], __m512i ctr, const Keys& ks) {
    __m512i b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_xor_si512(bswap512(add_ctr(ctr, 4 * v)), ks.k[0]);
#pragma GCC unroll 13
    for (int r = 1; r < 14; ++r)
        for (int v = 0; v < NV; ++v) b[v] = _mm512_aesenc_epi128(b[v], ks.k[r]);
    for (int v = 0; v < NV; ++v) out[v] = _mm512_aesenclast_epi128(b[v], _mm512_xor_si512(ks.k[14], d[v]));
}

// CTR + GHASH for a tail of len < 256 bytes (NV = ceil(len / 64) vectors).
template <int NV, bool ENCRYPT>
PC_INLINE __m128i crypt_tail(uint8_t* out, const uint8_t* in, size_t len, __m512i ctr,
                             const Keys& ks, __m128i X, const aes256gcm_ctx* ctx) {
    __m512i d[NV], o[NV];
    __mmask64 mk[NV];
    for (int v = 0; v < NV; ++v) {
        mk[v] = byte_mask(len - 64 * v);
        d[v] = _mm512_maskz_loadu_epi8(mk[v], in + 64 * v);
    }
    aes_xor<NV>(o, d, ctr, ks);
    for (int v = 0; v < NV; ++v) {
        o[v] = _mm512_maskz_mov_epi8(mk[v], o[v]);
        _mm512_mask_storeu_epi8(out + 64 * v, mk[v], o[v]);
    }
    return ghash_n<NV>(X, ENCRYPT ? o : d, (len + 15) / 16, ctx);
}

template <bool ENCRYPT>
PC_INLINE __m128i tail(uint8_t* out, const uint8_t* in, size_t len, __m512i ctr, const Keys& ks,
                       __m128i X, const aes256gcm_ctx* ctx) {
    switch ((len + 63) / 64) {
        case 1: return crypt_tail<1, ENCRYPT>(out, in, len, ctr, ks, X, ctx);
        case 2: return crypt_tail<2, ENCRYPT>(out, in, len, ctr, ks, X, ctx);
        case 3: return crypt_tail<3, ENCRYPT>(out, in, len, ctr, ks, X, ctx);
        case 4: return crypt_tail<4, ENCRYPT>(out, in, len, ctr, ks, X, ctx);
        default: return X;
    }
}

// J0 = nonce || 00000001, byte-reflected (counter in the low 32 bits).
PC_INLINE __m128i j0_le(const uint8_t nonce[12]) {
    uint64_t lo;
    uint32_t hi;
    __builtin_memcpy(&lo, nonce, 8);
    __builtin_memcpy(&hi, nonce + 8, 4);
    return bswap(_mm_set_epi32(0x01000000, int(hi), int(uint32_t(lo >> 32)), int(uint32_t(lo))));
}

PC_INLINE __m128i lengths(size_t adlen, size_t mlen) {
    return _mm_set_epi64x(static_cast<long long>(uint64_t(adlen) * 8),
                          static_cast<long long>(uint64_t(mlen) * 8));
}

// One message; ENCRYPT: in = plaintext, out = ciphertext; else the reverse. Returns the tag.
template <bool ENCRYPT>
PC_INLINE __m128i gcm(uint8_t* out, const uint8_t* in, size_t len, const uint8_t* ad, size_t adlen,
                      const uint8_t nonce[12], const aes256gcm_ctx* ctx) {
    Keys ks;
    load_keys(ks, ctx);
    const __m128i j0 = j0_le(nonce);
    const __m128i ekj0 = aes_block(bswap(j0), ks);
    __m128i X = _mm_setzero_si128();
    if (adlen) X = ghash_bytes(X, ad, adlen, ctx);
    // Lanes hold counters 2, 3, 4, 5 (counter 1 is J0, used for the tag).
    __m512i ctr = _mm512_add_epi32(_mm512_broadcast_i32x4(j0), lane_inc(1));
    ctr = add_ctr(ctr, 1);
    size_t done = 0;
    if (len >= 256) {
        __m512i H[4];
        for (int v = 0; v < 4; ++v) H[v] = loadu512(ctx->htable + 64 * v);
        if (ENCRYPT) {
            __m512i prev[4], d[4];
            for (int v = 0; v < 4; ++v) d[v] = loadu512(in + 64 * v);
            aes_xor<4>(prev, d, ctr, ks);
            for (int v = 0; v < 4; ++v) storeu512(out + 64 * v, prev[v]);
            ctr = add_ctr(ctr, 16);
            done = 256;
            while (len - done >= 256) {
                __m512i cur[4];
                for (int v = 0; v < 4; ++v) d[v] = loadu512(in + done + 64 * v);
                aes_xor<4>(cur, d, ctr, ks);
                X = ghash16(X, prev, H);  // previous batch, beside this batch's AES
                for (int v = 0; v < 4; ++v) {
                    storeu512(out + done + 64 * v, cur[v]);
                    prev[v] = cur[v];
                }
                ctr = add_ctr(ctr, 16);
                done += 256;
            }
            X = ghash16(X, prev, H);
        } else {
            while (len - done >= 256) {
                __m512i d[4], o[4];
                for (int v = 0; v < 4; ++v) d[v] = loadu512(in + done + 64 * v);
                X = ghash16(X, d, H);
                aes_xor<4>(o, d, ctr, ks);
                for (int v = 0; v < 4; ++v) storeu512(out + done + 64 * v, o[v]);
                ctr = add_ctr(ctr, 16);
                done += 256;
            }
        }
    }
    if (done < len) X = tail<ENCRYPT>(out + done, in + done, len - done, ctr, ks, X, ctx);
    X = gmul128(_mm_xor_si128(X, lengths(adlen, len)), loadu(ctx->htable + 16 * 15));
    detail::secure_wipe(&ks, sizeof ks);
    return _mm_xor_si128(bswap(X), ekj0);
}


// --- Small messages: adlen <= 64 and AAD blocks + data blocks <= 15 -------------------------
// The whole GHASH (AAD, ciphertext, lengths) is one aggregated product with a single
// reduction: with T blocks in all, AAD block j takes H^(T-j), ciphertext block j takes
// H^(T-a-j) and the length block H^1, so each part only loads its powers from another offset
// of the table. G messages of one shape run side by side, which hides the AES and reduction
// latencies that bound a lone short message.
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

PC_INLINE bool is_small(size_t len, size_t adlen) {
    return adlen <= 64 && (len + 15) / 16 + (adlen + 15) / 16 <= 15;
}

// Returns a bitmask: bit i set if message i failed authentication (decrypt only).
template <int G, int NA, int NC, bool ENCRYPT>
PC_INLINE unsigned small_group(const Msg* g, const Keys& ks, const aes256gcm_ctx* ctx) {
    __m128i j0[G];
    __m512i b[G][NC > 0 ? NC : 1];
    for (int i = 0; i < G; ++i) {
        j0[i] = j0_le(g[i].nonce);
        __m512i ctr = add_ctr(_mm512_add_epi32(_mm512_broadcast_i32x4(j0[i]), lane_inc(1)), 1);
        for (int v = 0; v < NC; ++v) b[i][v] = _mm512_xor_si512(bswap512(add_ctr(ctr, 4 * v)), ks.k[0]);
    }
    // The G tag blocks E(J0) share one vector.
    __m512i e = _mm512_broadcast_i32x4(j0[0]);
    if constexpr (G > 1) e = _mm512_inserti32x4(e, j0[G > 1 ? 1 : 0], 1);
    if constexpr (G > 2) e = _mm512_inserti32x4(e, j0[G > 2 ? 2 : 0], 2);
    if constexpr (G > 3) e = _mm512_inserti32x4(e, j0[G > 3 ? 3 : 0], 3);
    e = _mm512_xor_si512(bswap512(e), ks.k[0]);
#pragma GCC unroll 13
    for (int r = 1; r < 14; ++r) {
        for (int i = 0; i < G; ++i)
            for (int v = 0; v < NC; ++v) b[i][v] = _mm512_aesenc_epi128(b[i][v], ks.k[r]);
        e = _mm512_aesenc_epi128(e, ks.k[r]);
    }
    e = _mm512_aesenclast_epi128(e, ks.k[14]);
    alignas(64) __m128i ekj0[4];
    _mm512_store_si512(ekj0, e);

    unsigned failed = 0;
    const __m128i h1 = loadu(ctx->htable + 16 * 15);
    for (int i = 0; i < G; ++i) {
        const size_t len = NC == 0 ? 0 : g[i].len, adlen = NA == 0 ? 0 : g[i].adlen;
        const size_t ab = (adlen + 15) / 16, cb = (len + 15) / 16;
        const uint8_t* hp = hpowers(ctx, ab + cb + 1);
        Acc a;
        // Length block times H^1 (128-bit), then AAD and ciphertext vectors.
        {
            const __m128i L = lengths(adlen, len);
            a.lo = lane0(_mm_clmulepi64_si128(L, h1, 0x00));
            a.mi = lane0(_mm_xor_si128(_mm_clmulepi64_si128(L, h1, 0x01), _mm_clmulepi64_si128(L, h1, 0x10)));
            a.hi = lane0(_mm_clmulepi64_si128(L, h1, 0x11));
        }
        for (int v = 0; v < NA; ++v) {
            const __m512i x = _mm512_maskz_loadu_epi8(byte_mask(adlen - 64 * v), g[i].ad + 64 * v);
            mul_add(a, bswap512(x), loadu512(hp + 64 * v));
        }
        const uint8_t* hc = hp + 16 * ab;
        for (int v = 0; v < NC; ++v) {
            const __mmask64 mk = byte_mask(len - 64 * v);
            const __m512i d = _mm512_maskz_loadu_epi8(mk, g[i].in + 64 * v);
            __m512i o = _mm512_aesenclast_epi128(b[i][v], _mm512_xor_si512(ks.k[14], d));
            o = _mm512_maskz_mov_epi8(mk, o);
            _mm512_mask_storeu_epi8(g[i].out + 64 * v, mk, o);
            mul_add(a, bswap512(ENCRYPT ? o : d), loadu512(hc + 64 * v));
        }
        const __m128i tag = _mm_xor_si128(bswap(reduce_fold(a)), ekj0[i]);
        if (ENCRYPT) {
            storeu(g[i].tag_out, tag);
        } else {
            alignas(16) uint8_t expect[16];
            storeu(expect, tag);
            if (!detail::ct_tag_equal(expect, g[i].tag_in)) {
                detail::secure_wipe(g[i].out, len);
                failed |= 1u << i;
            }
        }
    }
    return failed;
}

template <int G, bool ENCRYPT>
PC_INLINE unsigned small_dispatch(const Msg* g, const Keys& ks, const aes256gcm_ctx* ctx) {
    const int na = int((g[0].adlen + 63) / 64), nc = int((g[0].len + 63) / 64);
#define PC_CASE(A, C) \
    case (A) * 8 + (C): return small_group<G, A, C, ENCRYPT>(g, ks, ctx);
    switch (na * 8 + nc) {
        PC_CASE(0, 0) PC_CASE(0, 1) PC_CASE(0, 2) PC_CASE(0, 3) PC_CASE(0, 4)
        PC_CASE(1, 0) PC_CASE(1, 1) PC_CASE(1, 2) PC_CASE(1, 3) PC_CASE(1, 4)
        default: __builtin_unreachable();
    }
#undef PC_CASE
}

// Shape of a small message, to group messages that can run side by side (-1: not small).
PC_INLINE int small_shape(size_t len, size_t adlen) {
    if (!is_small(len, adlen)) return -1;
    return int((adlen + 63) / 64) * 8 + int((len + 63) / 64);
}

template <bool ENCRYPT>
PC_INLINE unsigned small_one(const Msg& m, const aes256gcm_ctx* ctx) {
    Keys ks;
    load_keys(ks, ctx);
    const unsigned r = small_dispatch<1, ENCRYPT>(&m, ks, ctx);
    detail::secure_wipe(&ks, sizeof ks);
    return r;
}
}  // namespace

void aead_aes256gcm_init_vaes512(aes256gcm_ctx* ctx, const uint8_t key[32]) noexcept {
    // The key schedule and H are the AES-NI ones; only the table of powers differs.
    aead_aes256gcm_init_aesni(ctx, key);
    const __m128i h1 = loadu(ctx->htable);  // H^1 (times x, reflected) from the AES-NI layout
    __m128i pw[16];
    pw[0] = h1;
    for (int i = 1; i < 16; ++i) pw[i] = gmul128(pw[i - 1], h1);
    for (int i = 0; i < 16; ++i) storeu(ctx->htable + 16 * i, pw[15 - i]);
    for (size_t i = 16; i < sizeof ctx->htable / 16; ++i)
        storeu(ctx->htable + 16 * i, _mm_setzero_si128());
    ctx->impl = AES_ISA_VAES512;
    detail::secure_wipe(pw, sizeof pw);
}

void aead_aes256gcm_encrypt_vaes512(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                                    const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                                    const aes256gcm_ctx* ctx) noexcept {
    if (is_small(mlen, adlen)) {
        const Msg msg{c, m, mlen, ad, adlen, nonce, tag, nullptr};
        small_one<true>(msg, ctx);
        return;
    }
    storeu(tag, gcm<true>(c, m, mlen, ad, adlen, nonce, ctx));
}

int aead_aes256gcm_decrypt_vaes512(uint8_t* m, const uint8_t* c, size_t clen,
                                   const uint8_t tag[16], const uint8_t* ad, size_t adlen,
                                   const uint8_t nonce[12], const aes256gcm_ctx* ctx) noexcept {
    if (is_small(clen, adlen)) {
        const Msg msg{m, c, clen, ad, adlen, nonce, nullptr, tag};
        return small_one<false>(msg, ctx) ? -1 : 0;
    }
    alignas(16) uint8_t expect[16];
    storeu(expect, gcm<false>(m, c, clen, ad, adlen, nonce, ctx));
    if (!detail::ct_tag_equal(expect, tag)) {
        detail::secure_wipe(m, clen);
        return -1;
    }
    return 0;
}

void aes256_ctr_keystream_vaes512(uint8_t* out, size_t nblocks, uint64_t block,
                                  const uint8_t round_keys[240]) noexcept {
    __m512i k[15];
    for (int i = 0; i < 15; ++i) k[i] = _mm512_broadcast_i32x4(loadu(round_keys + 16 * i));
    // Lane j holds counter block + j, byte-reflected: the 64-bit counter in the low qword.
    __m512i ctr = _mm512_add_epi64(_mm512_set1_epi64(0), _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0));
    ctr = _mm512_add_epi64(ctr, _mm512_set_epi64(0, static_cast<long long>(block), 0,
                                                 static_cast<long long>(block), 0,
                                                 static_cast<long long>(block), 0,
                                                 static_cast<long long>(block)));
    const __m512i four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    while (nblocks >= 16) {
        __m512i b[4];
        for (int v = 0; v < 4; ++v) {
            b[v] = _mm512_xor_si512(bswap512(ctr), k[0]);
            ctr = _mm512_add_epi64(ctr, four);
        }
#pragma GCC unroll 13
        for (int r = 1; r < 14; ++r)
            for (int v = 0; v < 4; ++v) b[v] = _mm512_aesenc_epi128(b[v], k[r]);
        for (int v = 0; v < 4; ++v) storeu512(out + 64 * v, _mm512_aesenclast_epi128(b[v], k[14]));
        out += 256;
        nblocks -= 16;
    }
    while (nblocks) {
        const size_t nb = nblocks < 4 ? nblocks : 4;
        __m512i b = _mm512_xor_si512(bswap512(ctr), k[0]);
        ctr = _mm512_add_epi64(ctr, four);
        for (int r = 1; r < 14; ++r) b = _mm512_aesenc_epi128(b, k[r]);
        _mm512_mask_storeu_epi8(out, byte_mask(16 * nb), _mm512_aesenclast_epi128(b, k[14]));
        out += 16 * nb;
        nblocks -= nb;
    }
}

void aead_aes256gcm_encrypt_many_vaes512(uint8_t* const* out, const uint8_t* const* m,
                                         const size_t* mlen, const uint8_t* const* ad,
                                         const size_t* adlen, const uint8_t* nonces, size_t n,
                                         const aes256gcm_ctx* ctx) noexcept {
    Keys ks;
    load_keys(ks, ctx);
    auto msg = [&](size_t i) {
        const size_t al = ad ? adlen[i] : 0;
        return Msg{out[i], m[i], mlen[i], al ? ad[i] : nullptr, al, nonces + 12 * i, out[i] + mlen[i], nullptr};
    };
    size_t i = 0;
    while (i < n) {
        const Msg m0 = msg(i);
        const int shape = small_shape(m0.len, m0.adlen);
        if (shape >= 0 && i + 4 <= n) {
            Msg g[4] = {m0, msg(i + 1), msg(i + 2), msg(i + 3)};
            if (small_shape(g[1].len, g[1].adlen) == shape && small_shape(g[2].len, g[2].adlen) == shape &&
                small_shape(g[3].len, g[3].adlen) == shape) {
                small_dispatch<4, true>(g, ks, ctx);
                i += 4;
                continue;
            }
        }
        aead_aes256gcm_encrypt_vaes512(m0.out, m0.tag_out, m0.in, m0.len, m0.ad, m0.adlen, m0.nonce, ctx);
        ++i;
    }
    detail::secure_wipe(&ks, sizeof ks);
}

size_t aead_aes256gcm_decrypt_many_vaes512(uint8_t* const* m, uint8_t* status,
                                           const uint8_t* const* c, const size_t* clen,
                                           const uint8_t* const* ad, const size_t* adlen,
                                           const uint8_t* nonces, size_t n,
                                           const aes256gcm_ctx* ctx) noexcept {
    Keys ks;
    load_keys(ks, ctx);
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
                const unsigned bad = small_dispatch<4, false>(g, ks, ctx);
                for (int j = 0; j < 4; ++j) {
                    status[i + j] = (bad >> j) & 1 ? 0 : 1;
                    failed += (bad >> j) & 1;
                }
                i += 4;
                continue;
            }
        }
        const int r = aead_aes256gcm_decrypt_vaes512(m0.out, m0.in, m0.len, m0.tag_in, m0.ad, m0.adlen, m0.nonce, ctx);
        status[i] = r == 0 ? 1 : 0;
        failed += r != 0;
        ++i;
    }
    detail::secure_wipe(&ks, sizeof ks);
    return failed;
}

}  // namespace privcity
#endif  // __x86_64__
