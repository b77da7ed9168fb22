// Known-answer tests of the C++ core on every AES/SIMD path this CPU has, with no framework:
// NIST AES-256-GCM vectors, answers computed with OpenSSL for a sweep of GCM lengths, the
// AES-256-CTR keystream and the SecAgg masks (nist_gcm_vectors.inc), and seeded noise words,
// distributed discrete Gaussian encodings, Shamir shares and reductions hashed from the x86-64
// build (one constant per check, below). Built natively on x86-64 and for aarch64 (run under
// qemu-aarch64) by run_kat.sh.
//
// A path is the AES level and the vector level it selects, "aes/simd": every cap of the AES
// ladder, then no cap where that reaches a vector level no cap did (neon on an aarch64 CPU
// without the Crypto Extensions: "none/neon").
//
// Usage: kat [--expect-paths "none/portable armv8/neon"]   Exit status 0 only if every check
// passed (and the paths run are the ones expected: a runner that lost its AES instructions or
// its vector units must not pass).
// On aarch64, PRIVCITY_KAT_NO_CRYPTO=1 hides HWCAP_AES/PMULL from the core (the link wraps
// getauxval), standing in for a CPU without the Crypto Extensions where qemu has none.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "aes_internal.h"
#include "privcity/aead.h"
#include "privcity/cpu.h"
#include "privcity/ddg.h"
#include "privcity/mask.h"
#include "privcity/noise.h"
#include "privcity/reduce.h"
#include "privcity/rng.h"
#include "privcity/shamir.h"
#include "shamir_internal.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
extern "C" unsigned long __real_getauxval(unsigned long type);
extern "C" unsigned long __wrap_getauxval(unsigned long type) {
    unsigned long v = __real_getauxval(type);
    // HWCAP_AES, HWCAP_PMULL, HWCAP_SHA1, HWCAP_SHA2: what a CPU without the extensions lacks.
    if (type == AT_HWCAP && std::getenv("PRIVCITY_KAT_NO_CRYPTO")) v &= ~0x78ul;
    return v;
}
#endif

using namespace privcity;

namespace {

struct GcmVector {
    const char* source;
    int fail;
    size_t ptlen, aadlen;
    const char *key, *iv, *pt, *aad, *ct, *tag;
};
#include "nist_gcm_vectors.inc"

// Answers of the x86-64 build (main 3ef4115, AMD Zen 3; every x86 path agrees), for the
// inputs built below. Noise: FNV-1a of the outputs of a stream keyed with byte i = 7i + 1.
constexpr uint64_t kGaussF32 = 0x05269d2efb758636ull, kGaussF64 = 0x605c82fdf880e335ull;
constexpr uint64_t kLaplace = 0x5a72066a6676bc92ull, kUniform = 0xb2d807269bfee71bull;
constexpr uint64_t kClipAdd = 0xa217f1b27a46db20ull, kClipRound = 0xb9a6dca371b4a3b9ull;
constexpr uint64_t kDgauss[][2] = {{1, 0x9aaafb32d4f8cca5ull},
                                   {10000, 0xdd01d5cb35005fb7ull},
                                   {100000000, 0x40d60004035bb989ull},
                                   {9, 0x503fd93638b9e6b6ull},
                                   {2, 0x5bdbeb566f37138cull}};
constexpr uint64_t kNoisePosition = 35707872;
// Shamir and the modular sums also agree with a pure-Python GF(2^128) and numpy; the weighted
// mean (float32 of float64 sums in row order) is the x86 answer.
constexpr uint64_t kGfMulHash = 0x60ce6b478f52af7eull, kShamirHash = 0x4e45360111ca8bf9ull;
constexpr uint64_t kModSumU32 = 0x8079507d6b55283eull, kModSumU64 = 0x7aa4cf8b2760fb9bull;
constexpr uint64_t kWeightedMean = 0x538bcfbd0c436a50ull;
// Added with the neon rung (x86-64 build of main bb0bba6, AMD Zen 3, every x86 path agreeing):
// the remaining kernels of each family. The edge products of GF(2^128) also agree with a
// pure-Python field.
constexpr uint64_t kAddGaussF64 = 0x0281236e369f350cull, kL2Norm = 0x1fc73091da139409ull;
constexpr uint64_t kGfEdgeHash = 0x3e53ca5724be2390ull;
constexpr uint64_t kAccumulate = 0xdfcc90df0f7b6cccull, kL2Norms = 0xf89e50a3044ba3e1ull;
constexpr uint64_t kMedian = 0xc596df44ca3fa001ull, kTrimmedMean = 0x08974eb0d13875c1ull;
constexpr uint64_t kSqDist = 0x2263142cf1c45f2dull;
// Distributed discrete Gaussian: d = 1000 (d' = 1024, Sylvester), 700 (768 = 12 * 64, Paley
// H_12) and 1200 (1280 = 20 * 64, Paley H_20); words, roundings, tries and norm hashed.
constexpr uint64_t kDdgEncode[3] = {0x3cbb7b2a48fc5c6full, 0xf79610aacea2a440ull,
                                    0x1dd7b283bd9a523bull};
constexpr uint64_t kDdgDecode[3] = {0x48fc0f0cc86276adull, 0x190b1bacb7ddd11aull,
                                    0xe2fd08fcb9fd16faull};
constexpr uint64_t kDdgRotate = 0x146d448514352ea4ull, kDdgUnrotate = 0xb1f78036601b81feull;
constexpr uint64_t kDdgPosition = 167688;

int g_checks = 0, g_failures = 0;
const char* g_path = "";

void check(bool ok, const char* what) {
    ++g_checks;
    if (ok) return;
    ++g_failures;
    std::printf("FAIL [%s] %s\n", g_path, what);
}
void check_hash(uint64_t got, uint64_t want, const char* what) {
    ++g_checks;
    if (got == want) return;
    ++g_failures;
    std::printf("FAIL [%s] %s: got %016llx, want %016llx\n", g_path, what,
                (unsigned long long)got, (unsigned long long)want);
}

uint64_t fnv(const void* p, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
const uint8_t* u8(const char* s) { return reinterpret_cast<const uint8_t*>(s); }
bool all_zero(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (p[i]) return false;
    return true;
}

const char* path_name(int level) {
    if (level == AES_ISA_NONE) return "none";
#if defined(__aarch64__)
    return "armv8";
#else
    static const char* names[] = {"none", "aesni", "vaes256", "vaes512"};
    return names[level];
#endif
}

const char* simd_name(int level) {
    if (level == SIMD_PORTABLE) return "portable";
#if defined(__aarch64__)
    return "neon";
#else
    return level == SIMD_AVX2 ? "avx2" : "avx512";
#endif
}

std::vector<uint8_t> test_key() {
    std::vector<uint8_t> k(32);
    for (int i = 0; i < 32; ++i) k[i] = uint8_t(7 * i + 1);
    return k;
}

// --- AES-256-GCM --------------------------------------------------------------------------

// Through the context (the path under test) and through the one-shot dispatched form.
void gcm_nist() {
    for (const GcmVector& v : kNist) {
        std::vector<uint8_t> out(v.ptlen + 1), tag(16);
        aes256gcm_ctx ctx;
        check(aead_aes256gcm_init(&ctx, u8(v.key), -1) == 0, v.source);
        if (!v.fail) {
            check(aead_aes256gcm_encrypt_ctx(out.data(), tag.data(), u8(v.pt), v.ptlen, u8(v.aad),
                                             v.aadlen, u8(v.iv), &ctx) == 0 &&
                      std::memcmp(out.data(), v.ct, v.ptlen) == 0 &&
                      std::memcmp(tag.data(), v.tag, 16) == 0,
                  v.source);
        }
        const int r = aead_aes256gcm_decrypt(out.data(), u8(v.ct), v.ptlen, u8(v.tag), u8(v.aad),
                                             v.aadlen, u8(v.iv), u8(v.key));
        if (v.fail) {
            check(r == -1 && all_zero(out.data(), v.ptlen), v.source);
        } else {
            check(r == 0 && std::memcmp(out.data(), v.pt, v.ptlen) == 0, v.source);
        }
        aead_aes256gcm_wipe(&ctx);
    }
}

constexpr size_t kSweep[] = {511, 512, 513, 1023, 1024, 1025, 4096 + 15, 65536 + 3};
std::vector<size_t> sweep_lengths() {
    std::vector<size_t> n;
    for (size_t i = 0; i < 300; ++i) n.push_back(i);
    for (size_t i : kSweep) n.push_back(i);
    return n;
}
// Message, AAD and nonce for sweep length n (make_kat_vectors.py's sweep_inputs).
void sweep_inputs(size_t n, std::vector<uint8_t>& m, std::vector<uint8_t>& ad, uint8_t nonce[12]) {
    const size_t adlen = n % 3 == 0 ? 0 : (n * 37) % 301;
    m.resize(n);
    ad.resize(adlen);
    for (size_t j = 0; j < n; ++j) m[j] = uint8_t(31 * j + n);
    for (size_t j = 0; j < adlen; ++j) ad[j] = uint8_t(17 * j + 3 + n);
    for (size_t i = 0; i < 12; ++i) nonce[i] = uint8_t(13 * i + n);
}

void gcm_sweep(const aes256gcm_ctx* ctx) {
    const std::vector<size_t> lens = sweep_lengths();
    const size_t n = lens.size();
    std::vector<std::vector<uint8_t>> m(n), ad(n), out(n), back(n);
    std::vector<uint8_t> nonces(12 * n);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) {
        sweep_inputs(lens[i], m[i], ad[i], &nonces[12 * i]);
        out[i].resize(lens[i] + 16);
        back[i].resize(lens[i]);
        check(aead_aes256gcm_encrypt_ctx(out[i].data(), out[i].data() + lens[i], m[i].data(),
                                         lens[i], ad[i].data(), ad[i].size(), &nonces[12 * i],
                                         ctx) == 0,
              "gcm sweep encrypt");
        h = fnv(out[i].data(), out[i].size(), h);
    }
    check_hash(h, kSweepHash, "gcm sweep (lengths 0..299 and long ones) = OpenSSL");
    // In place gives the same bytes.
    std::vector<uint8_t> inplace(m.back());
    uint8_t tag[16];
    check(aead_aes256gcm_encrypt_ctx(inplace.data(), tag, inplace.data(), inplace.size(),
                                     ad.back().data(), ad.back().size(), &nonces[12 * (n - 1)],
                                     ctx) == 0 &&
              std::memcmp(inplace.data(), out.back().data(), inplace.size()) == 0,
          "gcm in place");
    // Batch encryption: the same bytes; batch decryption: every message back.
    std::vector<const uint8_t*> mp(n), adp(n), cp(n);
    std::vector<uint8_t*> op(n), bp(n);
    std::vector<size_t> ml(n), al(n), cl(n);
    std::vector<std::vector<uint8_t>> out2(n);
    for (size_t i = 0; i < n; ++i) {
        out2[i].resize(lens[i] + 16);
        mp[i] = m[i].data(), adp[i] = ad[i].data(), op[i] = out2[i].data();
        ml[i] = lens[i], al[i] = ad[i].size();
        cp[i] = out[i].data(), cl[i] = out[i].size(), bp[i] = back[i].data();
    }
    check(aead_aes256gcm_encrypt_many(op.data(), mp.data(), ml.data(), adp.data(), al.data(),
                                      nonces.data(), n, ctx) == 0,
          "gcm encrypt_many");
    uint64_t h2 = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) h2 = fnv(out2[i].data(), out2[i].size(), h2);
    check_hash(h2, kSweepHash, "gcm encrypt_many sweep = OpenSSL");
    std::vector<uint8_t> status(n);
    size_t bad = aead_aes256gcm_decrypt_many(bp.data(), status.data(), cp.data(), cl.data(),
                                             adp.data(), al.data(), nonces.data(), n, 0, ctx);
    bool same = bad == 0;
    for (size_t i = 0; i < n; ++i) same = same && status[i] == 1 && back[i] == m[i];
    check(same, "gcm decrypt_many round trip");
    // A flipped ciphertext bit fails that message alone, its plaintext wiped.
    const size_t victim = n - 3;
    out[victim][7] ^= 0x10;
    bad = aead_aes256gcm_decrypt_many(bp.data(), status.data(), cp.data(), cl.data(), adp.data(),
                                      al.data(), nonces.data(), n, 0, ctx);
    check(bad == 1 && status[victim] == 0 && all_zero(back[victim].data(), back[victim].size()) &&
              status[0] == 1 && back[n - 1] == m[n - 1],
          "gcm decrypt_many rejects a forged message and wipes it");
    // One-shot decryption of a bad tag wipes the output.
    out[victim][7] ^= 0x10;
    out[victim][lens[victim]] ^= 1;
    std::vector<uint8_t> p(lens[victim], 0xaa);
    check(aead_aes256gcm_decrypt_ctx(p.data(), out[victim].data(), lens[victim],
                                     out[victim].data() + lens[victim], ad[victim].data(),
                                     ad[victim].size(), &nonces[12 * victim], ctx) == -1 &&
              all_zero(p.data(), p.size()),
          "gcm decrypt rejects a bad tag and wipes the output");
}

// Every level, the portable one (none: bitsliced AES, GHASH without tables) included.
void gcm_checks(int level) {
    const std::vector<uint8_t> key = test_key();
    aes256gcm_ctx ctx;
    std::memset(&ctx, 0, sizeof ctx);
    uint8_t c[20], tag[16];
    std::memset(c, 0xaa, sizeof c);
    check(aead_aes256gcm_encrypt_ctx(c, tag, u8("plaintext plaintext!"), 20, nullptr, 0,
                                     u8("nonce-nonce!"), &ctx) == -1 &&
              all_zero(c, sizeof c),
          "gcm refuses a zeroed (never initialised) context");
    check(aead_aes256gcm_init(&ctx, key.data(), level) == 0 && ctx.impl == level, "gcm init");
    gcm_nist();
    gcm_sweep(&ctx);
    aead_aes256gcm_wipe(&ctx);
    check(aead_aes256gcm_encrypt_many(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                      &ctx) == -1,
          "gcm refuses a wiped context");
}

// --- AES-256-CTR keystream (CSPRNG and masks) --------------------------------------------

using Keystream = void (*)(uint8_t*, size_t, uint64_t, const uint8_t*) noexcept;

Keystream keystream_for(int level) {
#if defined(__x86_64__)
    switch (level) {
        case AES_ISA_AESNI: return aes256_ctr_keystream_aesni;
        case AES_ISA_VAES256: return aes256_ctr_keystream_vaes256;
        case AES_ISA_VAES512: return aes256_ctr_keystream_vaes512;
    }
#elif defined(__aarch64__)
    if (level == AES_ISA_ARMV8) return aes256_ctr_keystream_armv8;
#endif
    return aes256_ctr_keystream_portable;
}

void ctr_checks(int level, rng_state* st) {
    const std::vector<uint8_t> key = test_key();
    uint8_t rk[240], rk_portable[240];
    aes256_expand_key_portable(rk_portable, key.data());
#if defined(__x86_64__)
    if (level != AES_ISA_NONE) aes256_expand_key_aesni(rk, key.data());
#elif defined(__aarch64__)
    if (level != AES_ISA_NONE) aes256_expand_key_armv8(rk, key.data());
#endif
    if (level == AES_ISA_NONE) std::memcpy(rk, rk_portable, 240);
    check(std::memcmp(rk, rk_portable, 240) == 0, "aes key expansion = FIPS-197");
    const Keystream ks = keystream_for(level);
    std::vector<uint8_t> out(16 * 1000);
    ks(out.data(), 1000, 0, rk);
    check(std::memcmp(out.data(), kCtrFirst64, 64) == 0, "ctr keystream first 64 bytes = OpenSSL");
    check_hash(fnv(out.data(), out.size()), kCtrHashAt0, "ctr keystream 1000 blocks = OpenSSL");
    std::vector<uint8_t> at(16 * 1000);
    ks(at.data(), 1000, (uint64_t(1) << 32) - 3, rk);
    check_hash(fnv(at.data(), at.size()), kCtrHashAt2p32m3,
               "ctr keystream across 2^32 = OpenSSL");
    // The dispatched CSPRNG hands out the same stream, whatever the chunking.
    rng_init_key(st, key.data());
    std::vector<uint8_t> got(out.size());
    const size_t chunks[] = {1, 15, 16, 100, 4096 + 7, 8, 3000};
    size_t off = 0;
    for (size_t i = 0; off < got.size(); ++i) {
        const size_t c = std::min(chunks[i % 7], got.size() - off);
        rng_fill(st, got.data() + off, c);
        off += c;
    }
    check(got == out && st->impl == level, "seeded csprng = ctr keystream, on this path");
    rng_wipe(st);
}

void rng_unseeded_checks(int level, rng_state* st) {
    // Every level is constant time (no table AES), so an OS-keyed stream runs on every CPU,
    // on the capped level like a seeded one.
    const int r = rng_init_os(st);
    check(r == 0 && st->impl == level, "unseeded csprng keyed from the OS, on this path");
    if (r == 0) {
        uint8_t a[64] = {0};
        rng_fill(st, a, sizeof a);
        check(!all_zero(a, sizeof a), "unseeded csprng gives bytes");
    }
    rng_wipe(st);
}

// The portable path (bitsliced AES, GHASH without tables) against the AES instructions, for
// many keys, counters and lengths: key schedules, CTR keystreams and GCM ciphertexts and tags
// must be the same bytes. Keys from a fixed splitmix64 sequence (reproducible failures).
void portable_matches_hardware() {
    const int hw = aes_isa_supported();
    if (hw == AES_ISA_NONE) return;  // nothing to compare with; the answers above still ran
    g_path = "none vs hardware";
    uint64_t seed = 0x243f6a8885a308d3ull;
    auto next = [&seed] {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    };
    auto fill = [&next](uint8_t* p, size_t n) {
        for (size_t i = 0; i < n; ++i) p[i] = uint8_t(next() >> 56);
    };
    bool keys_same = true, ctr_same = true, gcm_same = true, open_ok = true;
    for (int trial = 0; trial < 200; ++trial) {
        uint8_t key[32], rk_p[240], rk_h[240];
        fill(key, sizeof key);
        aes256_expand_key_portable(rk_p, key);
#if defined(__x86_64__)
        aes256_expand_key_aesni(rk_h, key);
#elif defined(__aarch64__)
        aes256_expand_key_armv8(rk_h, key);
#endif
        keys_same = keys_same && std::memcmp(rk_p, rk_h, 240) == 0;
        const size_t nb = 1 + next() % 37;
        const uint64_t block = trial % 3 == 0 ? next() >> 1 : (uint64_t(1) << 32) - 2 - trial;
        std::vector<uint8_t> a(16 * nb), b(16 * nb);
        aes256_ctr_keystream_portable(a.data(), nb, block, rk_p);
        keystream_for(hw)(b.data(), nb, block, rk_h);
        ctr_same = ctr_same && a == b;
        const size_t len = next() % 300, adlen = next() % 40;
        std::vector<uint8_t> m(len), ad(adlen), cp(len + 16), ch(len + 16), back(len);
        uint8_t nonce[12];
        fill(m.data(), len);
        fill(ad.data(), adlen);
        fill(nonce, 12);
        aes256gcm_ctx p, h;
        check(aead_aes256gcm_init(&p, key, AES_ISA_NONE) == 0 &&
                  aead_aes256gcm_init(&h, key, hw) == 0,
              "gcm init on both paths");
        check(aead_aes256gcm_encrypt_ctx(cp.data(), cp.data() + len, m.data(), len, ad.data(),
                                         adlen, nonce, &p) == 0 &&
                  aead_aes256gcm_encrypt_ctx(ch.data(), ch.data() + len, m.data(), len,
                                             ad.data(), adlen, nonce, &h) == 0,
              "gcm encrypt on both paths");
        gcm_same = gcm_same && cp == ch;
        open_ok = open_ok && aead_aes256gcm_decrypt_ctx(back.data(), ch.data(), len,
                                                        ch.data() + len, ad.data(), adlen,
                                                        nonce, &p) == 0 &&
                  back == m;
        aead_aes256gcm_wipe(&p);
        aead_aes256gcm_wipe(&h);
    }
    check(keys_same, "portable key schedule = AES instructions' (200 keys)");
    check(ctr_same, "portable ctr keystream = AES instructions' (200 keys and counters)");
    check(gcm_same, "portable gcm ciphertext and tag = AES instructions' (200 keys, lengths)");
    check(open_ok, "portable gcm opens what the AES instructions sealed");
}

void mask_checks() {
    uint8_t seeds[96];
    for (int s = 0; s < 3; ++s)
        for (int i = 0; i < 32; ++i) seeds[32 * s + i] = uint8_t(7 * i + 1 + 5 * s);
    const int8_t signs[3] = {1, -1, 1};
    std::vector<uint32_t> a(1001);
    std::vector<uint64_t> b(1003);
    for (size_t j = 0; j < a.size(); ++j) a[j] = uint32_t(j * 2654435761ull);
    for (size_t j = 0; j < b.size(); ++j) b[j] = j * 2654435761ull;
    check(mask_add_u32(a.data(), a.size(), seeds, signs, 3, 2) == 0, "mask u32");
    check(mask_add_u64(b.data(), b.size(), seeds, signs, 3, 2) == 0, "mask u64");
    check_hash(fnv(a.data(), 4 * a.size()), kMaskHashU32, "mask u32 = OpenSSL keystream");
    check_hash(fnv(b.data(), 8 * b.size()), kMaskHashU64, "mask u64 = OpenSSL keystream");
}

// --- seeded noise, Shamir, reductions ---------------------------------------------------

void noise_checks(rng_state* st) {
    const std::vector<uint8_t> key = test_key();
    rng_init_key(st, key.data());
    const size_t n = 100003;
    std::vector<float> f(n), x(n);
    std::vector<double> d(n);
    std::vector<int64_t> q(n);
    for (size_t i = 0; i < n; ++i) x[i] = float(-2.0 + 4.0 * double(i) / double(n - 1));
    noise_gaussian_f32(f.data(), n, 1.7f, st);
    check_hash(fnv(f.data(), 4 * n), kGaussF32, "gaussian f32");
    noise_gaussian_f64(d.data(), n, 1.7, st);
    check_hash(fnv(d.data(), 8 * n), kGaussF64, "gaussian f64");
    noise_laplace_f64(d.data(), n, 0.9, st);
    check_hash(fnv(d.data(), 8 * n), kLaplace, "laplace f64");
    noise_uniform_f64(d.data(), n, st);
    check_hash(fnv(d.data(), 8 * n), kUniform, "uniform f64");
    double norm = noise_clip_add_gaussian_f32(f.data(), x.data(), n, 1.0f, 0.5f, st);
    check_hash(fnv(f.data(), 4 * n), kClipAdd, "clip + gaussian f32");
    check(norm == 365.15750029911163, "clip + gaussian norm");
    for (const auto& dg : kDgauss) {
        char what[64];
        std::snprintf(what, sizeof what, "discrete gaussian sigma^2 = %llu",
                      (unsigned long long)dg[0]);
        check(noise_discrete_gaussian(q.data(), n, dg[0], 1, st) == 0, what);
        check_hash(fnv(q.data(), 8 * n), dg[1], what);
    }
    norm = noise_clip_round_add_dgauss(q.data(), x.data(), n, 3.0, 1000.0, 4, 1, st);
    check_hash(fnv(q.data(), 8 * n), kClipRound, "clip + round + discrete gaussian");
    check(norm == 365.15750029911163, "clip + round norm");
    check(rng_position(st) == kNoisePosition, "noise keystream position");
    rng_wipe(st);
}

// The kernels noise_checks leaves out: a Gaussian added in place (float64) and an L2 norm
// alone, on a length with a tail for every vector width.
void noise_more_checks(rng_state* st) {
    const std::vector<uint8_t> key = test_key();
    rng_init_key(st, key.data());
    const size_t n = 4099;
    std::vector<double> d(n);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) {
        d[i] = 0.001 * double(i) - 2.0;
        x[i] = float(int64_t((i * 2654435761ull) % 2001) - 1000) / 64.0f;
    }
    noise_add_gaussian_f64(d.data(), n, 0.25, st);
    check_hash(fnv(d.data(), 8 * n), kAddGaussF64, "gaussian f64 added in place");
    const double norm = noise_l2_norm_f32(x.data(), n);
    check_hash(fnv(&norm, 8), kL2Norm, "l2 norm f32");
    rng_wipe(st);
}

void shamir_checks() {
    // Products of a chain of elements, then shares of a degree-4 polynomial and its secret back.
    uint8_t a[16], b[16], acc[16];
    for (int i = 0; i < 16; ++i) a[i] = uint8_t(7 * i + 1), b[i] = uint8_t(0xf0 - 11 * i);
    std::memcpy(acc, a, 16);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 200; ++i) {
        gf128_mul(acc, acc, b);
        b[i % 16] ^= acc[(i * 5) % 16];
        h = fnv(acc, 16, h);
    }
    check_hash(h, kGfMulHash, "gf(2^128) products");
    const size_t t = 5, n = 9;
    uint8_t coeffs[16 * t], shares[16 * n], secret[16];
    for (size_t i = 0; i < sizeof coeffs; ++i) coeffs[i] = uint8_t(31 * i + 5);
    uint32_t xs[n];
    for (size_t i = 0; i < n; ++i) xs[i] = uint32_t(i + 1 + (i == 8 ? 1000 : 0));
    shamir_eval(shares, coeffs, t, xs, n);
    check_hash(fnv(shares, sizeof shares), kShamirHash, "shamir shares");
    check(shamir_interpolate0(secret, xs + 3, shares + 16 * 3, t) == 0 &&
              std::memcmp(secret, coeffs + 16 * (t - 1), 16) == 0,
          "shamir secret back from 5 of 9 shares");
    // Every product of elements at the edges of the words and of the reduction (0, 1, x, x^63,
    // x^64, x^127, all ones, ...), where a fold that drops a carry would show.
    static const Gf128 edge[] = {{0, 0},         {0, 1},         {0, 2},
                                 {0, 1ull << 63}, {1, 0},         {1ull << 63, 0},
                                 {~0ull, ~0ull},  {0, 0x87},      {~0ull, 0},
                                 {0, ~0ull},      {1ull << 63, 1},
                                 {0xfedcba9876543210ull, 0x0f1e2d3c4b5a6978ull}};
    h = 0xcbf29ce484222325ull;
    for (const Gf128& x : edge)
        for (const Gf128& y : edge) {
            uint8_t bx[16], by[16], out[16];
            for (int i = 0; i < 8; ++i) {
                bx[i] = uint8_t(x.hi >> (56 - 8 * i)), bx[8 + i] = uint8_t(x.lo >> (56 - 8 * i));
                by[i] = uint8_t(y.hi >> (56 - 8 * i)), by[8 + i] = uint8_t(y.lo >> (56 - 8 * i));
            }
            gf128_mul(out, bx, by);
            h = fnv(out, 16, h);
        }
    check_hash(h, kGfEdgeHash, "gf(2^128) products of edge elements");
}

// k rows of length d as uint32, uint64 and float32, with weights.
struct ReduceRows {
    static constexpr size_t k = 7, d = 1031;
    std::vector<std::vector<uint32_t>> r32{k, std::vector<uint32_t>(d)};
    std::vector<std::vector<uint64_t>> r64{k, std::vector<uint64_t>(d)};
    std::vector<std::vector<float>> rf{k, std::vector<float>(d)};
    std::vector<const uint32_t*> p32 = std::vector<const uint32_t*>(k);
    std::vector<const uint64_t*> p64 = std::vector<const uint64_t*>(k);
    std::vector<const float*> pf = std::vector<const float*>(k);
    std::vector<double> w = std::vector<double>(k);
    ReduceRows() {
        for (size_t i = 0; i < k; ++i) {
            for (size_t j = 0; j < d; ++j) {
                const uint64_t v = (i + 1) * 0x9e3779b97f4a7c15ull * (j + 3);
                r32[i][j] = uint32_t(v >> 17), r64[i][j] = v;
                rf[i][j] = float(int64_t(v >> 40) - (int64_t(1) << 23)) / 1048576.0f;
            }
            p32[i] = r32[i].data(), p64[i] = r64[i].data(), pf[i] = rf[i].data();
            w[i] = 0.25 + 0.5 * double(i);
        }
    }
};

void reduce_checks() {
    const ReduceRows r;
    const size_t k = r.k, d = r.d;
    const auto& p32 = r.p32;
    const auto& p64 = r.p64;
    const auto& pf = r.pf;
    const auto& w = r.w;
    std::vector<uint32_t> s32(d, 5);
    std::vector<uint64_t> s64(d, 5);
    reduce_modular_sum_u32(s32.data(), p32.data(), k, d, 2);
    reduce_modular_sum_u64(s64.data(), p64.data(), k, d, 2);
    check_hash(fnv(s32.data(), 4 * d), kModSumU32, "modular sum u32");
    check_hash(fnv(s64.data(), 8 * d), kModSumU64, "modular sum u64");
    std::vector<float> mean(d);
    std::vector<uint8_t> bad(k);
    const size_t nbad = reduce_weighted_mean_f32(mean.data(), bad.data(), pf.data(), w.data(), k,
                                                 d, 1.0 / 12.25, 2);
    check(nbad == 0, "weighted mean: no bad rows");
    check_hash(fnv(mean.data(), 4 * d), kWeightedMean, "weighted mean f32");
}

// The other reduction kernels: streaming accumulation (in place and double-buffered), scaling,
// norms, the robust aggregators' median, trimmed mean and pairwise distances, and the refusal
// of a row holding a NaN.
void reduce_more_checks() {
    ReduceRows r;
    const size_t k = r.k, d = r.d;
    std::vector<double> acc(d, 0.0), a(d, 0.0), b(d, 0.0);
    bool ok = true;
    for (size_t i = 0; i < k; ++i) {
        ok = ok && reduce_accumulate_f32(acc.data(), acc.data(), r.pf[i], r.w[i], d, 2) == 0;
        ok = ok && reduce_accumulate_f32(b.data(), a.data(), r.pf[i], r.w[i], d, 2) == 0;
        std::swap(a, b);
    }
    check(ok && acc == a, "accumulate in place = double-buffered");
    check_hash(fnv(acc.data(), 8 * d), kAccumulate, "accumulate f32 into f64");
    r.rf[3][d - 2] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<double> before = acc;
    check(reduce_accumulate_f32(acc.data(), acc.data(), r.pf[3], 1.0, d, 2) == -1 &&
              acc == before,
          "accumulate refuses a NaN row and leaves the sum as it was");
    std::vector<uint8_t> bad(k);
    std::vector<float> out(d);
    check(reduce_weighted_mean_f32(out.data(), bad.data(), r.pf.data(), r.w.data(), k, d, 1.0,
                                   2) == 1 &&
              bad[3] == 1 && bad[2] == 0,
          "weighted mean flags the NaN row alone");
    r.rf[3][d - 2] = 0.5f;
    reduce_scale_to_f32(out.data(), acc.data(), 1.0 / 12.25, d, 2);
    // The row sums scaled once: the weighted mean of reduce_checks, bit for bit.
    check_hash(fnv(out.data(), 4 * d), kWeightedMean, "accumulated sums scaled = weighted mean");
    std::vector<double> norms(k);
    reduce_l2_norms_f32(norms.data(), r.pf.data(), k, d, 2);
    check_hash(fnv(norms.data(), 8 * k), kL2Norms, "l2 norms of rows");
    check(reduce_median_f32(out.data(), r.pf.data(), k, d, 2) == 0, "median");
    check_hash(fnv(out.data(), 4 * d), kMedian, "coordinate-wise median");
    check(reduce_trimmed_mean_f32(out.data(), r.pf.data(), k, d, 2, 2) == 0, "trimmed mean");
    check_hash(fnv(out.data(), 4 * d), kTrimmedMean, "coordinate-wise trimmed mean");
    std::vector<double> dist(k * k);
    reduce_pairwise_sqdist_f32(dist.data(), r.pf.data(), k, d, 2);
    check_hash(fnv(dist.data(), 8 * k * k), kSqDist, "pairwise squared distances");
}

// --- distributed discrete Gaussian -----------------------------------------------------------

ddg_config ddg_cfg(size_t d, unsigned bits, int seed) {
    ddg_config cfg{};
    cfg.dim = d;
    cfg.padded_dim = ddg_padded_dim(d);
    cfg.clip = 1.0;
    cfg.gamma = 1e-3;
    cfg.l2_bound_sq = 1300000;
    cfg.sigma2_num = 10000, cfg.sigma2_den = 1;
    cfg.bits = bits;
    for (int i = 0; i < 32; ++i) cfg.rotation_key[i] = uint8_t(11 * i + seed);
    return cfg;
}

// Encodes x under cfg with words W, then decodes the words; hashes of both.
template <class W>
void ddg_round_trip(const float* x, const ddg_config& cfg, rng_state* st, uint64_t& enc,
                    uint64_t& dec) {
    const size_t dp = cfg.padded_dim;
    std::vector<W> words(dp);
    std::vector<int64_t> rounded(dp);
    std::vector<double> back(cfg.dim);
    uint32_t tries = 0;
    double norm;
    int rc;
    if constexpr (sizeof(W) == 4) {
        norm = ddg_encode_u32(words.data(), rounded.data(), nullptr, &tries, x, &cfg, st);
        rc = ddg_decode_u32(back.data(), words.data(), &cfg);
    } else {
        norm = ddg_encode_u64(words.data(), rounded.data(), nullptr, &tries, x, &cfg, st);
        rc = ddg_decode_u64(back.data(), words.data(), &cfg);
    }
    check(norm > 1.0 && rc == DDG_OK, "ddg encodes a clipped vector and decodes its words");
    enc = fnv(words.data(), sizeof(W) * dp);
    enc = fnv(rounded.data(), 8 * dp, enc);
    enc = fnv(&tries, 4, enc);
    enc = fnv(&norm, 8, enc);
    dec = fnv(back.data(), 8 * cfg.dim);
}

// Every kernel of ddg_simd.inc: the three Hadamard shapes (Sylvester, Paley H_12 and H_20
// times Sylvester), words mod 2^20, 2^32 and 2^40 (both word widths), the rotation alone.
void ddg_checks(rng_state* st) {
    const std::vector<uint8_t> key = test_key();
    rng_init_key(st, key.data());
    const size_t dims[3] = {1000, 700, 1200};
    const unsigned bits[3] = {20, 32, 40};
    for (int c = 0; c < 3; ++c) {
        const size_t d = dims[c];
        std::vector<float> x(d);
        for (size_t j = 0; j < d; ++j)
            x[j] = float(int64_t(((j + 1) * 0x9e3779b97f4a7c15ull) >> 40) - (int64_t(1) << 23)) /
                   67108864.0f;
        const ddg_config cfg = ddg_cfg(d, bits[c], c + 3);
        uint64_t enc, dec;
        if (bits[c] <= 32) ddg_round_trip<uint32_t>(x.data(), cfg, st, enc, dec);
        else ddg_round_trip<uint64_t>(x.data(), cfg, st, enc, dec);
        char what[64];
        std::snprintf(what, sizeof what, "ddg encode d = %zu, 2^%u", d, bits[c]);
        check_hash(enc, kDdgEncode[c], what);
        std::snprintf(what, sizeof what, "ddg decode d = %zu, 2^%u", d, bits[c]);
        check_hash(dec, kDdgDecode[c], what);
    }
    check(rng_position(st) == kDdgPosition, "ddg keystream position");
    rng_wipe(st);
    const size_t d = 700, dp = ddg_padded_dim(d);
    std::vector<double> x(d), y(dp), back(d);
    for (size_t j = 0; j < d; ++j) x[j] = double(int64_t(j * 7919 % 1999) - 999) / 256.0;
    const ddg_config cfg = ddg_cfg(d, 32, 9);
    check(ddg_rotate(y.data(), x.data(), d, dp, cfg.rotation_key) == DDG_OK &&
              ddg_unrotate(back.data(), y.data(), d, dp, cfg.rotation_key) == DDG_OK,
          "ddg rotation and back");
    check_hash(fnv(y.data(), 8 * dp), kDdgRotate, "ddg rotation");
    check_hash(fnv(back.data(), 8 * d), kDdgUnrotate, "ddg inverse rotation");
}

}  // namespace

int main(int argc, char** argv) {
    const char* expect = nullptr;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--expect-paths") == 0) expect = argv[i + 1];
    static rng_state st;  // static: 64-byte aligned, and too large for some stacks
    std::string paths, name;
    int simd_done = -1;
    // Every cap of the AES ladder, then no cap if that runs a vector level no cap reached.
    for (int cap = AES_ISA_NONE; cap <= aes_isa_supported() + 1; ++cap) {
        set_aes_isa_cap(cap <= aes_isa_supported() ? cap : AES_ISA_UNCAPPED);
        const int level = aes_isa_selected(), simd = simd_isa_selected();
        if (cap > aes_isa_supported() && simd <= simd_done) break;
        simd_done = simd > simd_done ? simd : simd_done;
        name = std::string(path_name(level)) + "/" + simd_name(simd);
        g_path = name.c_str();
        paths += (paths.empty() ? "" : " ") + name;
        const int before = g_failures;
        gcm_checks(level);
        ctr_checks(level, &st);
        rng_unseeded_checks(level, &st);
        mask_checks();
        noise_checks(&st);
        noise_more_checks(&st);
        ddg_checks(&st);
        shamir_checks();
        reduce_checks();
        reduce_more_checks();
        std::printf("path %-16s %s\n", g_path, g_failures == before ? "ok" : "FAILED");
    }
    set_aes_isa_cap(AES_ISA_UNCAPPED);
    portable_matches_hardware();
    g_path = "paths";
    if (expect) {
        const std::string what = "paths run: \"" + paths + "\", expected \"" + expect + "\"";
        check(paths == expect, what.c_str());
    }
    std::printf("kat: %d checks, %d failures, paths: %s\n", g_checks, g_failures, paths.c_str());
    return g_failures == 0 ? 0 : 1;
}
