// Constant-time AES-256 for CPUs without AES instructions (and PRIVCITY_ISA=none): bitsliced,
// four blocks at a time in eight 64-bit words (the design of BearSSL's aes_ct64, T. Pornin),
// with the S-box computed by Boyar and Peralta's circuit of 32 AND and 81 XOR/XNOR gates. Bulk
// work runs two such states side by side in 128-bit vectors (eight blocks per call).
//
// There is no table here, and no branch or address that depends on a key, a block or a
// counter: a table AES leaks its key through the cache lines its S-box look-ups touch, and
// this code runs the secret keys of OS-keyed noise and of the SecAgg pairwise masks. Keep it
// that way: tests/test_aes_portable.py fails if an S-box or T-table is compiled back into the
// module, and cpp/tests/ct_check.cpp (valgrind, in run_kat.sh) if any branch or address depends
// on a secret.
#include <cstring>

#include "aes_internal.h"
#include "secure.h"

namespace privcity {
namespace {

// The state of four blocks, bitsliced: word q[b] holds bit b of all 64 bytes. The byte in row
// r and column c of block k (byte 4c + r of the block) sits at bit 16r + 4c + k of each word:
// rows in 16-bit lanes make MixColumns rotations of whole words, columns in nibbles make
// ShiftRows shifts inside a lane, and a round key repeated over the four blocks is a nibble of
// 0000 or 1111. Every function below takes W = uint64_t (one state) or W = V2 (two states,
// one per 64-bit lane: GCC/Clang vector extensions, SSE2 on x86-64 and NEON on aarch64, both
// baseline; other targets get two 64-bit words).
typedef uint64_t V2 __attribute__((vector_size(16)));

template <class W>
inline void swapmove(W& a, W& b, uint64_t mask, int n) {
    const W t = ((a >> n) ^ b) & mask;
    b ^= t;
    a ^= t << n;
}

// Transposes the 8 x 8 bit matrix in each byte lane j of the eight words (bit b of byte j of
// word v <-> bit v of byte j of word b), as three rounds of exchanging off-diagonal blocks.
// Its own inverse.
template <class W>
inline void transpose(W q[8]) {
    for (int v = 0; v < 8; v += 2) swapmove(q[v], q[v + 1], 0x5555555555555555ull, 1);
    for (int v = 0; v < 8; v += (v & 1) ? 3 : 1)  // 0, 1, 4, 5
        swapmove(q[v], q[v + 2], 0x3333333333333333ull, 2);
    for (int v = 0; v < 4; ++v) swapmove(q[v], q[v + 4], 0x0f0f0f0f0f0f0f0full, 4);
}

// Byte of the 64-byte input (block k at offset 16k) that goes to position p = 16r + 4c + k.
constexpr int source_byte(int p) { return 16 * (p & 3) + 4 * ((p >> 2) & 3) + (p >> 4); }

// Four blocks (in[16k .. 16k + 16) is block k) in the order the transposition wants: byte j
// of word v holds the byte of position 8j + v, so that transposing gathers bit b of every
// byte into word b. The addresses depend on loop counters only.
inline void gather(uint64_t w[8], const uint8_t in[64]) {
    for (int v = 0; v < 8; ++v) {
        uint64_t x = 0;
        for (int j = 0; j < 8; ++j) x |= uint64_t(in[source_byte(8 * j + v)]) << (8 * j);
        w[v] = x;
    }
}
// The inverse of gather.
inline void scatter(uint8_t out[64], const uint64_t w[8]) {
    for (int v = 0; v < 8; ++v)
        for (int j = 0; j < 8; ++j) out[source_byte(8 * j + v)] = uint8_t(w[v] >> (8 * j));
}

// SubBytes on every byte at once: Boyar and Peralta's straight-line program (the 113-gate
// forward S-box of their circuit minimization work, "A new combinational logic minimization
// technique with applications to cryptology", SEA 2010, and the circuits of "A depth-16
// circuit for the AES S-box", 2011). Input bits U0..U7 are bits 7..0 of the byte, outputs
// S0..S7 likewise; a top linear layer (T), the shared nonlinear middle (M: inversion in
// GF(2^8) through GF(2^4)) and a bottom linear layer (L) with the affine constant as XNORs.
template <class W>
inline void sbox(W q[8]) {
    const W u0 = q[7], u1 = q[6], u2 = q[5], u3 = q[4];
    const W u4 = q[3], u5 = q[2], u6 = q[1], u7 = q[0];

    const W t1 = u0 ^ u3, t2 = u0 ^ u5, t3 = u0 ^ u6, t4 = u3 ^ u5, t5 = u4 ^ u6;
    const W t6 = t1 ^ t5, t7 = u1 ^ u2, t8 = u7 ^ t6, t9 = u7 ^ t7, t10 = t6 ^ t7;
    const W t11 = u1 ^ u5, t12 = u2 ^ u5, t13 = t3 ^ t4, t14 = t6 ^ t11, t15 = t5 ^ t11;
    const W t16 = t5 ^ t12, t17 = t9 ^ t16, t18 = u3 ^ u7, t19 = t7 ^ t18, t20 = t1 ^ t19;
    const W t21 = u6 ^ u7, t22 = t7 ^ t21, t23 = t2 ^ t22, t24 = t2 ^ t10, t25 = t20 ^ t17;
    const W t26 = t3 ^ t16, t27 = t1 ^ t12;

    const W m1 = t13 & t6, m2 = t23 & t8, m3 = t14 ^ m1, m4 = t19 & u7, m5 = m4 ^ m1;
    const W m6 = t3 & t16, m7 = t22 & t9, m8 = t26 ^ m6, m9 = t20 & t17, m10 = m9 ^ m6;
    const W m11 = t1 & t15, m12 = t4 & t27, m13 = m12 ^ m11, m14 = t2 & t10, m15 = m14 ^ m11;
    const W m16 = m3 ^ m2, m17 = m5 ^ t24, m18 = m8 ^ m7, m19 = m10 ^ m15, m20 = m16 ^ m13;
    const W m21 = m17 ^ m15, m22 = m18 ^ m13, m23 = m19 ^ t25, m24 = m22 ^ m23;
    const W m25 = m22 & m20, m26 = m21 ^ m25, m27 = m20 ^ m21, m28 = m23 ^ m25;
    const W m29 = m28 & m27, m30 = m26 & m24, m31 = m20 & m23, m32 = m27 & m31;
    const W m33 = m27 ^ m25, m34 = m21 & m22, m35 = m24 & m34, m36 = m24 ^ m25;
    const W m37 = m21 ^ m29, m38 = m32 ^ m33, m39 = m23 ^ m30, m40 = m35 ^ m36;
    const W m41 = m38 ^ m40, m42 = m37 ^ m39, m43 = m37 ^ m38, m44 = m39 ^ m40, m45 = m42 ^ m41;
    const W m46 = m44 & t6, m47 = m40 & t8, m48 = m39 & u7, m49 = m43 & t16, m50 = m38 & t9;
    const W m51 = m37 & t17, m52 = m42 & t15, m53 = m45 & t27, m54 = m41 & t10;
    const W m55 = m44 & t13, m56 = m40 & t23, m57 = m39 & t19, m58 = m43 & t3;
    const W m59 = m38 & t22, m60 = m37 & t20, m61 = m42 & t1, m62 = m45 & t4, m63 = m41 & t2;

    const W l0 = m61 ^ m62, l1 = m50 ^ m56, l2 = m46 ^ m48, l3 = m47 ^ m55, l4 = m54 ^ m58;
    const W l5 = m49 ^ m61, l6 = m62 ^ l5, l7 = m46 ^ l3, l8 = m51 ^ m59, l9 = m52 ^ m53;
    const W l10 = m53 ^ l4, l11 = m60 ^ l2, l12 = m48 ^ m51, l13 = m50 ^ l0, l14 = m52 ^ m61;
    const W l15 = m55 ^ l1, l16 = m56 ^ l0, l17 = m57 ^ l1, l18 = m58 ^ l8, l19 = m63 ^ l4;
    const W l20 = l0 ^ l1, l21 = l1 ^ l7, l22 = l3 ^ l12, l23 = l18 ^ l2, l24 = l15 ^ l9;
    const W l25 = l6 ^ l10, l26 = l7 ^ l9, l27 = l8 ^ l10, l28 = l11 ^ l14, l29 = l11 ^ l17;

    q[7] = l6 ^ l24;
    q[6] = ~(l16 ^ l26);
    q[5] = ~(l19 ^ l28);
    q[4] = l6 ^ l21;
    q[3] = l20 ^ l22;
    q[2] = l25 ^ l29;
    q[1] = ~(l13 ^ l27);
    q[0] = ~(l6 ^ l23);
}

// Row r (a 16-bit lane) rotated by r columns (nibbles): column c takes column c + r.
template <class W>
inline W shift_rows_word(W x) {
    return (x & 0x000000000000ffffull) | ((x & 0x00000000fff00000ull) >> 4) |
           ((x & 0x00000000000f0000ull) << 12) | ((x & 0x0000ff0000000000ull) >> 8) |
           ((x & 0x000000ff00000000ull) << 8) | ((x & 0xf000000000000000ull) >> 12) |
           ((x & 0x0fff000000000000ull) << 4);
}

template <class W>
inline W rotr(W x, int n) {
    return (x >> n) | (x << (64 - n));
}

// out[r] = 2 a[r] + 3 a[r+1] + a[r+2] + a[r+3] = 2 t[r] + a[r+1] + t[r+2] with t[r] = a[r] +
// a[r+1]. Rotating a word by 16 moves row r+1 into row r, by 32 row r+2; doubling moves plane
// b to b+1 and adds plane 7 at the bits of 0x1b (planes 0, 1, 3, 4).
template <class W>
inline void mix_columns(W q[8]) {
    W r[8], t[8];
    for (int b = 0; b < 8; ++b) {
        r[b] = rotr(q[b], 16);
        t[b] = q[b] ^ r[b];
    }
    q[0] = t[7] ^ r[0] ^ rotr(t[0], 32);
    q[1] = t[0] ^ t[7] ^ r[1] ^ rotr(t[1], 32);
    q[2] = t[1] ^ r[2] ^ rotr(t[2], 32);
    q[3] = t[2] ^ t[7] ^ r[3] ^ rotr(t[3], 32);
    q[4] = t[3] ^ t[7] ^ r[4] ^ rotr(t[4], 32);
    q[5] = t[4] ^ r[5] ^ rotr(t[5], 32);
    q[6] = t[5] ^ r[6] ^ rotr(t[6], 32);
    q[7] = t[6] ^ r[7] ^ rotr(t[7], 32);
}

// The 14 rounds on a bitsliced state; W is one 64-bit word (four blocks) or a vector of them
// (each lane four more blocks, the same layout).
template <class W>
inline void rounds(W q[8], const aes256_ct_keys* ks) {
    for (int b = 0; b < 8; ++b) q[b] ^= ks->q[0][b];
    for (int round = 1; round < 14; ++round) {
        sbox(q);
        for (int b = 0; b < 8; ++b) q[b] = shift_rows_word(q[b]);
        mix_columns(q);
        for (int b = 0; b < 8; ++b) q[b] ^= ks->q[round][b];
    }
    sbox(q);
    for (int b = 0; b < 8; ++b) q[b] = shift_rows_word(q[b]) ^ ks->q[14][b];
}

// SubWord of the key schedule: the same circuit on a word's four bytes, bit b of byte j at
// bit 8j of plane b.
uint32_t sub_word(uint32_t w) {
    uint32_t q[8];
    for (int b = 0; b < 8; ++b) q[b] = (w >> b) & 0x01010101u;
    sbox(q);
    uint32_t s = 0;
    for (int b = 0; b < 8; ++b) s |= (q[b] & 0x01010101u) << b;
    return s;
}

}  // namespace

void aes256_expand_key_portable(uint8_t round_keys[240], const uint8_t key[32]) noexcept {
    // FIPS-197 5.2 with words as little-endian uint32 (byte 0 lowest): RotWord is a rotation
    // right by 8, and the round constant goes in the low byte.
    uint32_t w[60];
    std::memcpy(w, key, 32);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (int i = 0; i < 8; ++i) w[i] = __builtin_bswap32(w[i]);
#endif
    uint32_t rcon = 1;
    for (int i = 8; i < 60; ++i) {
        uint32_t t = w[i - 1];
        if (i % 8 == 0) {
            t = sub_word((t >> 8) | (t << 24)) ^ rcon;
            rcon <<= 1;  // 0x01 .. 0x40: AES-256 never needs the reduction by 0x11b
        } else if (i % 8 == 4) {
            t = sub_word(t);
        }
        w[i] = w[i - 8] ^ t;
    }
    for (int i = 0; i < 60; ++i)
        for (int j = 0; j < 4; ++j) round_keys[4 * i + j] = uint8_t(w[i] >> (8 * j));
    detail::secure_wipe(w, sizeof w);
}

void aes256_bitslice_keys_portable(aes256_ct_keys* ks, const uint8_t round_keys[240]) noexcept {
    // Four round keys per transposition, one in each block slot; then each slot's bit is
    // spread over its nibble (bits at 4m only, times 15), repeating the key in every block.
    for (int r0 = 0; r0 < 15; r0 += 4) {
        uint8_t in[64] = {0};
        for (int k = 0; k < 4 && r0 + k < 15; ++k)
            std::memcpy(in + 16 * k, round_keys + 16 * (r0 + k), 16);
        uint64_t q[8];
        gather(q, in);
        transpose(q);
        for (int k = 0; k < 4 && r0 + k < 15; ++k)
            for (int b = 0; b < 8; ++b)
                ks->q[r0 + k][b] = ((q[b] >> k) & 0x1111111111111111ull) * 15;
        detail::secure_wipe(in, sizeof in);
        detail::secure_wipe(q, sizeof q);
    }
}

void aes256_encrypt4_portable(uint8_t out[64], const uint8_t in[64],
                              const aes256_ct_keys* ks) noexcept {
    uint64_t q[8];
    gather(q, in);
    transpose(q);
    rounds(q, ks);
    transpose(q);
    scatter(out, q);
    detail::secure_wipe(q, sizeof q);
}

void aes256_encrypt8_portable(uint8_t out[128], const uint8_t in[128],
                              const aes256_ct_keys* ks) noexcept {
    uint64_t a[8], b[8];
    gather(a, in);
    gather(b, in + 64);
    V2 q[8];
    for (int i = 0; i < 8; ++i) q[i] = V2{a[i], b[i]};
    transpose(q);
    rounds(q, ks);
    transpose(q);
    for (int i = 0; i < 8; ++i) a[i] = q[i][0], b[i] = q[i][1];
    scatter(out, a);
    scatter(out + 64, b);
    detail::secure_wipe(q, sizeof q);
    detail::secure_wipe(a, sizeof a);
    detail::secure_wipe(b, sizeof b);
}

void aes256_ctr_keystream_portable(uint8_t* out, size_t nblocks, uint64_t block,
                                   const uint8_t round_keys[240]) noexcept {
    aes256_ct_keys ks;
    aes256_bitslice_keys_portable(&ks, round_keys);
    uint8_t ctr[128] = {0};  // counter blocks 0^64 || BE64(block + j)
    uint8_t tail[64];
    while (nblocks) {
        const size_t width = nblocks >= 8 ? 8 : 4, step = nblocks < width ? nblocks : width;
        for (size_t j = 0; j < width; ++j)
            for (int i = 0; i < 8; ++i) ctr[16 * j + 15 - i] = uint8_t((block + j) >> (8 * i));
        if (width == 8) {
            aes256_encrypt8_portable(out, ctr, &ks);
        } else if (step == 4) {
            aes256_encrypt4_portable(out, ctr, &ks);
        } else {
            aes256_encrypt4_portable(tail, ctr, &ks);
            std::memcpy(out, tail, 16 * step);
            detail::secure_wipe(tail, sizeof tail);
        }
        out += 16 * step;
        nblocks -= step;
        block += step;
    }
    detail::secure_wipe(&ks, sizeof ks);
}

}  // namespace privcity
