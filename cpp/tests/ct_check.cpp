// Constant-time check of the portable path (the ctgrind method, A. Langley 2010): every secret
// (AES keys, mask seeds, plaintexts, Shamir operands) is marked undefined for valgrind's
// memcheck, which then reports any branch or memory address computed from it. A table AES
// fails at once (each S-box look-up is an address made of key bytes); the bitsliced AES and
// the table-free GHASH must give no report. Run by run_kat.sh as
//   valgrind --error-exitcode=1 ct_check
// at the compiler's optimisation level of setup.py.
#include <valgrind/memcheck.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "aes_internal.h"
#include "privcity/aead.h"
#include "privcity/cpu.h"
#include "privcity/mask.h"
#include "privcity/rng.h"
#include "shamir_internal.h"

using namespace privcity;

namespace {

template <class T>
void secret(T* p, size_t n = 1) { VALGRIND_MAKE_MEM_UNDEFINED(p, n * sizeof(T)); }
// Outputs are declared public before they are printed (printing branches on their digits).
template <class T>
void release(T* p, size_t n = 1) { VALGRIND_MAKE_MEM_DEFINED(p, n * sizeof(T)); }

}  // namespace

int main() {
    set_aes_isa_cap(AES_ISA_NONE);  // every dispatched call below takes the portable path
    uint8_t key[32], rk[240];
    for (int i = 0; i < 32; ++i) key[i] = uint8_t(7 * i + 1);
    secret(key, 32);

    // Key schedule and CTR keystream (a whole number of 4-block groups, then a tail).
    aes256_expand_key_portable(rk, key);
    std::vector<uint8_t> ks(16 * 37);
    aes256_ctr_keystream_portable(ks.data(), 37, (uint64_t(1) << 32) - 5, rk);

    // The CSPRNG through its dispatcher, seeded with the secret key.
    static rng_state st;
    rng_init_key(&st, key);
    uint8_t drawn[300];
    rng_fill(&st, drawn, sizeof drawn);
    rng_wipe(&st);

    // SecAgg masks: secret seeds, added into public words.
    uint8_t seeds[64];
    std::memcpy(seeds, key, 32);
    std::memcpy(seeds + 32, rk + 32, 32);
    const int8_t signs[2] = {1, -1};
    std::vector<uint32_t> masked(333, 5);
    const int mask_status = mask_add_u32(masked.data(), masked.size(), seeds, signs, 2, 1);

    // AES-256-GCM: key, plaintext and associated data secret; lengths and nonce public.
    uint8_t m[100], ad[21], c[100], tag[16], nonce[12] = {9};
    for (int i = 0; i < 100; ++i) m[i] = uint8_t(i);
    for (int i = 0; i < 21; ++i) ad[i] = uint8_t(3 * i);
    secret(m, sizeof m);
    secret(ad, sizeof ad);
    aes256gcm_ctx ctx;
    const int init_status = aead_aes256gcm_init(&ctx, key, AES_ISA_NONE);
    const int enc_status =
        aead_aes256gcm_encrypt_ctx(c, tag, m, sizeof m, ad, sizeof ad, nonce, &ctx);
    aead_aes256gcm_wipe(&ctx);

    // Shamir's portable GF(2^128) product on secret operands.
    Gf128 a{0x0123456789abcdefull, 0xfedcba9876543210ull}, b{0x1111, 0x87};
    secret(&a);
    secret(&b);
    Gf128 p = gf128_mul_portable(a, b);

    release(ks.data(), ks.size());
    release(drawn, sizeof drawn);
    release(masked.data(), masked.size());
    release(c, sizeof c);
    release(tag, sizeof tag);
    release(&p);
    std::printf("ct_check: %02x %02x %08x %02x%02x %016llx, statuses %d %d %d\n", ks[0], drawn[0],
                masked[0], c[0], tag[0], (unsigned long long)p.lo, mask_status, init_status,
                enc_status);
    return mask_status == 0 && init_status == 0 && enc_status == 0 ? 0 : 1;
}
