// Noise samplers: drivers of the per-ISA continuous kernels (keystream in, samples out, spares
// kept so chunked draws equal one draw), the exact integer samplers of Canonne, Kamath and
// Steinke 2020 (integer arithmetic only), and the fused device kernels.
#include "privcity/noise.h"

#include <cmath>
#include <cstring>

#include "noise_internal.h"
#include "rng_internal.h"
#include "privcity/cpu.h"

namespace privcity {
namespace {

struct SimdOps {
    void (*gauss_f32)(float*, const uint32_t*, size_t, float, const float*, float);
    void (*gauss_f64)(double*, const uint64_t*, size_t, double, const double*, double);
    void (*laplace_f64)(double* __restrict, const uint64_t* __restrict, size_t, double);
    void (*uniform_f64)(double* __restrict, const uint64_t* __restrict, size_t);
    double (*sumsq_f32)(const float*, size_t);
    void (*round_add_f32)(int64_t* __restrict, const float* __restrict, const uint64_t* __restrict,
                          size_t, double);
};

#define PC_OPS(NS)                                                                              \
    SimdOps {                                                                                   \
        NS::gauss_f32, NS::gauss_f64, NS::laplace_f64, NS::uniform_f64, NS::sumsq_f32,          \
            NS::round_add_f32                                                                   \
    }
const SimdOps& ops() {
    static const SimdOps portable = PC_OPS(simd_portable);
#if defined(__x86_64__)
    static const SimdOps avx2 = PC_OPS(simd_avx2);
    static const SimdOps avx512 = PC_OPS(simd_avx512);
    switch (simd_isa_selected()) {
        case SIMD_AVX512: return avx512;
        case SIMD_AVX2: return avx2;
        default: break;
    }
#elif defined(__aarch64__)
    static const SimdOps neon = PC_OPS(simd_neon);
    if (simd_isa_selected() == SIMD_NEON) return neon;
#endif
    return portable;
}
#undef PC_OPS

constexpr size_t kChunkBytes = 8192;  // keystream per kernel call: stays in L1

// --- Gaussian drivers ---------------------------------------------------------------------------
// out[i] = base[i] * bscale + sigma * z_i (or sigma * z_i without base). A block is 128 keystream
// bytes giving L samples (32 float, 16 double); the samples of a block not handed out are kept
// in the state (spare, n_spare) and handed out first by the next draw.
template <class T, class W, size_t L, class Kernel>
void gauss_drive(T* out, size_t n, T sigma, const T* base, T bscale, rng_state* st, Kernel kernel,
                 T* spare, uint32_t& n_spare) {
    static_assert(L * sizeof(W) == 128, "one block is 128 keystream bytes");
    rng_enter(st);  // before the spares: a forked child must not hand out its parent's
    size_t i = 0;
    for (; i < n && n_spare; ++i) {
        const T z = spare[L - n_spare--];
        out[i] = base ? base[i] * bscale + sigma * z : sigma * z;
    }
    alignas(64) W words[kChunkBytes / sizeof(W)];
    while (n - i >= L) {
        const size_t nb = (n - i) / L < kChunkBytes / 128 ? (n - i) / L : kChunkBytes / 128;
        rng_fill(st, reinterpret_cast<uint8_t*>(words), nb * 128);
        kernel(out + i, words, nb, sigma, base ? base + i : nullptr, bscale);
        i += L * nb;
    }
    if (i < n) {
        std::memcpy(words, rng_take(st, 128), 128);
        T z[L];
        kernel(z, words, 1, T(1), nullptr, T(0));  // sigma 1: the z themselves
        const size_t rem = n - i;
        for (size_t j = 0; j < rem; ++j)
            out[i + j] = base ? base[i + j] * bscale + sigma * z[j] : sigma * z[j];
        std::memcpy(spare, z, sizeof z);
        n_spare = uint32_t(L - rem);
    }
}

void gauss_f32_drive(float* out, size_t n, float sigma, const float* base, float bscale, rng_state* st) {
    gauss_drive<float, uint32_t, 32>(out, n, sigma, base, bscale, st, ops().gauss_f32, st->spare_f32,
                                     st->n_spare_f32);
}

void gauss_f64_drive(double* out, size_t n, double sigma, const double* base, double bscale, rng_state* st) {
    gauss_drive<double, uint64_t, 16>(out, n, sigma, base, bscale, st, ops().gauss_f64, st->spare_f64,
                                      st->n_spare_f64);
}

// --- exact integer sampling ---------------------------------------------------------------------
using u128 = unsigned __int128;

inline bool random_bit(rng_state* st) {
    if (st->bit_count == 0) {
        st->bit_pool = rng_next_u64(st);
        st->bit_count = 64;
    }
    const bool b = st->bit_pool & 1;
    st->bit_pool >>= 1;
    --st->bit_count;
    return b;
}

// Uniform on [0, m), m >= 1, exactly (Lemire's multiply-and-reject).
inline uint64_t uniform_below(rng_state* st, uint64_t m) {
    u128 p = u128(rng_next_u64(st)) * m;
    uint64_t lo = uint64_t(p);
    if (lo < m) {
        const uint64_t t = (0 - m) % m;
        while (lo < t) {
            p = u128(rng_next_u64(st)) * m;
            lo = uint64_t(p);
        }
    }
    return uint64_t(p >> 64);
}

// uniform_below with the rejection threshold 2^64 mod m computed ahead (for a fixed m).
struct Below {
    uint64_t m, threshold;
    constexpr explicit Below(uint64_t m_) : m(m_), threshold((0 - m_) % m_) {}
};
inline uint64_t uniform_below(rng_state* st, const Below& b) {
    u128 p = u128(rng_next_u64(st)) * b.m;
    while (uint64_t(p) < b.threshold) p = u128(rng_next_u64(st)) * b.m;
    return uint64_t(p >> 64);
}

// Uniform on [0, m), m >= 1, for 128-bit m (mask and reject: under two tries expected).
inline u128 uniform_below128(rng_state* st, u128 m) {
    if ((m >> 64) == 0) return uniform_below(st, uint64_t(m));
    const uint64_t hi = uint64_t((m - 1) >> 64);
    if (hi == 0) return rng_next_u64(st);  // m = 2^64 exactly
    const uint64_t mask = ~uint64_t(0) >> __builtin_clzll(hi);
    for (;;) {
        const uint64_t a = rng_next_u64(st) & mask;
        const uint64_t b = rng_next_u64(st);
        const u128 r = (u128(a) << 64) | b;
        if (r < m) return r;
    }
}

// Bernoulli(exp(-n/d)) for 0 <= n <= d, d < 2^120 (CKS20 Algorithm 1: K <- 1; while
// Bernoulli(n / (d K)): K <- K + 1; return K odd). Once d K would overflow (K > 2^8 at
// d < 2^120, probability below 1/255!) the loop stops as if the draw failed.
//
// The first two steps usually decide: they succeed together with probability n^2 / (2 d^2),
// so for d < 2^31 one uniform u on [0, 2 d^2) settles both (K >= 2 iff u < 2 n d, K >= 3 iff
// u < n^2; nested since n <= 2 d), which halves the draws and the unpredictable branches.
bool bernoulli_exp_le1(rng_state* st, u128 n, u128 d) {
    if (n == 0) return true;
    uint64_t k = 1;
    if (d < (u128(1) << 31)) {
        const uint64_t d64 = uint64_t(d), n64 = uint64_t(n);
        const uint64_t u = uniform_below(st, 2 * d64 * d64);
        if (u >= 2 * n64 * d64) return true;  // K = 1: odd
        if (u >= n64 * n64) return false;     // K = 2: even
        k = 3;
    }
    for (;;) {
        u128 dk;
        if (__builtin_mul_overflow(d, u128(k), &dk)) break;
        if (uniform_below128(st, dk) >= n) break;  // Bernoulli(n / (d k)) failed
        ++k;
    }
    return k & 1;
}

// Bernoulli(exp(-1)): Algorithm 1 with n = d = 1, where step j succeeds with probability 1/j.
// Steps 1..k all succeed with probability 1/k!, so one uniform u on [0, 20!) decides the first
// 20 steps at once (they succeed iff u < 20!/k!); past that (probability 1/20!) the steps go on
// one at a time. One draw instead of about e, with a branch-free count.
bool bernoulli_exp_minus1(rng_state* st) {
    static constexpr Below kFact20(2432902008176640000ull);
    static constexpr uint64_t kThreshold[20] = {  // 20!/k!, k = 1..20
        2432902008176640000ull, 1216451004088320000ull, 405483668029440000ull,
        101370917007360000ull, 20274183401472000ull, 3379030566912000ull, 482718652416000ull,
        60339831552000ull, 6704425728000ull, 670442572800ull, 60949324800ull, 5079110400ull,
        390700800ull, 27907200ull, 1860480ull, 116280ull, 6840ull, 380ull, 20ull, 1ull};
    const uint64_t u = uniform_below(st, kFact20);
    // Step 1 always succeeds (u < 20!); steps 2..4 branch-free; the rest (probability 1/24)
    // one by one.
    uint64_t k = 2 + (u < kThreshold[1]) + (u < kThreshold[2]) + (u < kThreshold[3]);
    for (int j = 4; j < 20 && k == uint64_t(j) + 1 && u < kThreshold[j]; ++j) ++k;
    if (k == 21)
        while (uniform_below(st, k) == 0) ++k;  // step k succeeds with probability 1/k
    return k & 1;
}

// 256-bit unsigned for (|Y| b t - a)^2 when it passes 2^128.
struct U256 {
    u128 hi, lo;
};
inline U256 square(u128 x) {
    const uint64_t x0 = uint64_t(x), x1 = uint64_t(x >> 64);
    const u128 p00 = u128(x0) * x0, p01 = u128(x0) * x1, p11 = u128(x1) * x1;
    // x^2 = p11 2^128 + 2 p01 2^64 + p00
    U256 r{p11, p00};
    const u128 mid_lo = p01 << 65;           // low 63 bits of p01, times 2^65
    const u128 mid_hi = p01 >> 63;           // the rest
    const u128 lo = r.lo + mid_lo;
    r.hi += mid_hi + (lo < r.lo ? 1 : 0);
    r.lo = lo;
    return r;
}

// Bernoulli(exp(-N/D)) for N >= 0 (256-bit), 1 <= D < 2^120: one Bernoulli(exp(-1)) per whole
// unit of N/D (stopping at the first failure), then the fractional part.
bool bernoulli_exp(rng_state* st, U256 N, u128 D) {
    for (;;) {
        if (N.hi == 0 && N.lo < D) return bernoulli_exp_le1(st, N.lo, D);
        if (!bernoulli_exp_minus1(st)) return false;
        const u128 lo = N.lo - D;
        N.hi -= (lo > N.lo) ? 1 : 0;
        N.lo = lo;
    }
}

// Bernoulli(exp(-u/t)) for u uniform on [0, t), as one draw for t < 2^21: r uniform on
// [0, 2 t^3) gives u = r / (2 t^2) and, from w = r mod 2 t^2, the first two steps of
// Algorithm 1 (see bernoulli_exp_le1); only when both succeed do the steps go on.
inline bool uniform_then_bernoulli_exp(rng_state* st, uint64_t t, const Below& cube, uint64_t& u) {
    if (t < (uint64_t(1) << 21)) {
        const uint64_t t2 = 2 * t * t;
        const uint64_t r = uniform_below(st, cube);
        // u = r / t2 without a hardware divide: the double quotient (r < 2^64, u < 2^21) is
        // within one of the truth, and one integer step corrects it.
        u = uint64_t(double(r) / double(t2));
        if (u * t2 > r) --u;
        else if (r - u * t2 >= t2) ++u;
        const uint64_t w = r - u * t2;
        if (w >= 2 * u * t) return true;  // K = 1
        if (w >= u * u) return false;     // K = 2
        uint64_t k = 3;
        while (uniform_below(st, t * k) < u) ++k;  // t k < 2^64 for any k that can occur
        return k & 1;
    }
    u = uniform_below(st, t);
    return bernoulli_exp_le1(st, u, t);
}

// Range of the merged draw of uniform_then_bernoulli_exp (2 t^3; unused for t >= 2^21).
inline Below cube_range(uint64_t t) { return Below(t < (uint64_t(1) << 21) ? 2 * t * t * t : 1); }

// Discrete Laplace with scale t/s (CKS20 Algorithm 2). |result| < 2^62.
int64_t discrete_laplace_one(rng_state* st, uint64_t t, uint64_t s, const Below& cube) {
    for (;;) {
        uint64_t u;
        if (!uniform_then_bernoulli_exp(st, t, cube, u)) continue;
        uint64_t v = 0;
        while (bernoulli_exp_minus1(st)) ++v;
        const u128 x = u128(u) + u128(t) * v;
        const u128 y = s == 1 ? x : (x >> 64) == 0 ? u128(uint64_t(x) / s) : x / s;
        const bool negative = random_bit(st);
        if (negative && y == 0) continue;
        if (y >= (u128(1) << 62)) continue;  // beyond any probability that can be observed
        return negative ? -int64_t(y) : int64_t(y);
    }
}

inline uint64_t isqrt(uint64_t v) {
    uint64_t r = uint64_t(std::sqrt(double(v)));
    while (u128(r) * r > v) --r;
    while (u128(r + 1) * (r + 1) <= v) ++r;
    return r;
}

struct DGauss {
    // sigma^2 = a/b; t = ceil(sigma), the scale of the discrete Laplace proposal. CKS20 take
    // t = floor(sigma) + 1, but Algorithm 3 is exact for any integer t >= 1 (the acceptance
    // exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)) times exp(-|y|/t) is exp(-y^2 / (2 sigma^2)) up to
    // a constant), and t = sigma for an integer sigma needs fewer candidates (1.42 against 1.85
    // per sample at sigma = 1).
    uint64_t a, b, t;
    u128 bt, D;        // b t and 2 a b t^2
    Below cube{1};     // range of the discrete Laplace's merged draw
};

bool dgauss_setup(uint64_t a, uint64_t b, DGauss& g) {
    if (a == 0 || b == 0 || a >= (uint64_t(1) << 63) || b >= (uint64_t(1) << 40)) return false;
    const uint64_t q = a / b;
    if (q > (uint64_t(1) << 62)) return false;
    g.a = a;
    g.b = b;
    g.t = isqrt(q);
    if (u128(g.t) * g.t * b < a) ++g.t;  // ceil(sqrt(a/b)), at least 1
    g.bt = u128(b) * g.t;
    u128 d;
    if (__builtin_mul_overflow(u128(2) * a, u128(b), &d)) return false;
    if (__builtin_mul_overflow(d, u128(g.t) * g.t, &d)) return false;
    if (d >= (u128(1) << 120)) return false;
    g.D = d;
    g.cube = cube_range(g.t);
    return true;
}

// Discrete Gaussian, sigma^2 = a/b (CKS20 Algorithm 3): Y ~ DLap(t) accepted with probability
// exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)) = exp(-(|Y| b t - a)^2 / (2 a b t^2)).
int64_t discrete_gaussian_one(rng_state* st, const DGauss& g) {
    for (;;) {
        const int64_t y = discrete_laplace_one(st, g.t, 1, g.cube);
        const u128 ay = u128(y < 0 ? -(y + 1) + 1 : y);
        u128 ybt;
        if (__builtin_mul_overflow(ay, g.bt, &ybt)) continue;  // exp(-gamma) below any observable value
        const u128 m = ybt >= g.a ? ybt - g.a : g.a - ybt;
        if ((m >> 64) == 0) {  // m^2 fits 128 bits: the common case
            u128 N = u128(uint64_t(m)) * uint64_t(m);
            bool accept = true;
            while (N >= g.D) {
                if (!bernoulli_exp_minus1(st)) {
                    accept = false;
                    break;
                }
                N -= g.D;
            }
            if (accept && bernoulli_exp_le1(st, N, g.D)) return y;
            continue;
        }
        if (bernoulli_exp(st, square(m), g.D)) return y;
    }
}

// --- exact discrete Gaussian in blocks -----------------------------------------------------------
// The same algorithm (CKS20 Algorithms 1-3), reorganised for a superscalar core: candidates go
// through the stages in blocks of kDgBlock, each stage writing the survivors to the front of an
// array (branch-free compaction) instead of jumping back to the start of a rejection loop. The
// draws that decide a stage are merged so that one uniform settles the common cases, and only
// rare continuations branch. Every rejection of a Lemire draw redraws the same value, never the
// candidate (discarding a candidate on a Lemire rejection would bias by path length).

constexpr size_t kDgBlock = 256;

// Bernoulli(exp(-1)) decided by u uniform on [0, 9!): steps 1..k of Algorithm 1 (n = d = 1)
// succeed iff u < 9!/k!. Up to step 5 the outcome is a range check; past step 5 (probability
// 1/120) the thresholds go on one by one, and past step 9 (u = 0) the steps one at a time.
constexpr uint64_t kF9 = 362880;
inline bool bern_e1_digit(rng_state* st, uint64_t u) {
    static constexpr uint64_t T[9] = {362880, 181440, 60480, 15120, 3024, 504, 72, 9, 1};  // 9!/k!
    // K = 1 + (number of steps that succeeded) is odd iff u falls in [T[2], T[1]) (K = 3) or
    // [T[4], T[3]) (K = 5), for u >= T[4]: two unsigned range checks, no branch.
    if (__builtin_expect(u >= T[4], 1))
        return (u - T[2] < T[1] - T[2]) | (u - T[4] < T[3] - T[4]);
    uint64_t k = 6;  // steps 1..5 succeeded (probability 1/120)
    for (int j = 5; j < 9 && u < T[j]; ++j) ++k;
    if (k == 10)
        while (uniform_below(st, k) == 0) ++k;
    return k & 1;
}

// Three independent Bernoulli(exp(-1)) from one draw on [0, (9!)^3), split into base-9! digits.
// The block sampler takes most of its words from arrays filled ahead (one rng_fill per stage
// instead of a buffer check per word); a draw starts from such a word and, should Lemire's
// method reject it, redraws from the state.
inline uint64_t uniform_below(rng_state* st, const Below& b, uint64_t word) {
    u128 p = u128(word) * b.m;
    while (__builtin_expect(uint64_t(p) < b.threshold, 0)) p = u128(rng_next_u64(st)) * b.m;
    return uint64_t(p >> 64);
}

constexpr Below kF9Cubed(kF9 * kF9 * kF9);
inline unsigned bern_e1_x3(rng_state* st, uint64_t word) {
    const uint64_t r = uniform_below(st, kF9Cubed, word);
    const uint64_t r1 = r / kF9, r2 = r1 / kF9;
    const uint64_t d0 = r - r1 * kF9, d1 = r1 - r2 * kF9;
    // The digits in order 0, 1, 2: a digit's rare tail (u = 0) draws from the state.
    const unsigned b0 = bern_e1_digit(st, d0);
    const unsigned b1 = bern_e1_digit(st, d1);
    const unsigned b2 = bern_e1_digit(st, r2);
    return b0 | b1 << 1 | b2 << 2;
}

// What bern_e1_x3(st, word) takes from the state, without its outcome: nothing unless Lemire's
// method rejects the word or a digit is 0 (then the whole draw is made), at a fraction of the
// cost. Where an outcome is not needed, this keeps the keystream where the draw would leave it.
inline void bern_e1_x3_draws(rng_state* st, uint64_t word) {
    const u128 p = u128(word) * kF9Cubed.m;
    const uint64_t r = uint64_t(p >> 64), r1 = r / kF9, r2 = r1 / kF9;
    const bool zero_digit = (r - r1 * kF9 == 0) | (r1 - r2 * kF9 == 0) | (r2 == 0);
    if (__builtin_expect((uint64_t(p) < kF9Cubed.threshold) | zero_digit, 0)) bern_e1_x3(st, word);
}

// Successes of Bernoulli(exp(-1)) before the first failure (the V of Algorithm 2).
inline uint64_t geometric_e1(rng_state* st, uint64_t word) {
    uint64_t v = 0;
    for (;;) {
        const unsigned b = bern_e1_x3(st, word);
        // b = 0bxyz: the run of ones from bit 0, looked up in nibble b of 0x30102010.
        const unsigned run = (0x30102010u >> (4 * b)) & 15;
        v += run;
        if (__builtin_expect(b != 7, 1)) return v;
        word = rng_next_u64(st);  // all three succeeded: three more
    }
}

// 256-bit product x * m: returns the high 128 bits, lo gets the low 128.
inline u128 mul_128x128(u128 x, u128 m, u128& lo) {
    const uint64_t x0 = uint64_t(x), x1 = uint64_t(x >> 64), m0 = uint64_t(m), m1 = uint64_t(m >> 64);
    const u128 p00 = u128(x0) * m0, p01 = u128(x0) * m1, p10 = u128(x1) * m0, p11 = u128(x1) * m1;
    const u128 mid = (p00 >> 64) + uint64_t(p01) + uint64_t(p10);
    lo = (mid << 64) | uint64_t(p00);
    return p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
}

// Uniform on [0, m) for 1 <= m < 2^127, exactly (Lemire's method on 128-bit words).
inline u128 uniform_below_wide(rng_state* st, u128 m, const uint64_t* words) {
    u128 x = (u128(words[0]) << 64) | words[1];
    for (;;) {
        u128 lo;
        const u128 hi = mul_128x128(x, m, lo);
        if (__builtin_expect(lo >= m, 1)) return hi;  // above the threshold 2^128 mod m < m
        if (lo >= (0 - m) % m) return hi;
        x = (u128(rng_next_u64(st)) << 64) | rng_next_u64(st);
    }
}

// Bernoulli(exp(-n/d)) for 0 <= n < d < 2^120 with the first two steps of Algorithm 1 decided
// without a branch: by one draw on [0, 2 d^2) when that range is small (see
// bernoulli_exp_le1), otherwise by one draw on [0, d) and one on [0, 2 d).
struct FracExp {
    u128 d;
    bool merged;  // 2 d^2 < 2^57: one draw, rejected with probability below 2^-7
    bool wide;    // d >= 2^63: 128-bit draws
    Below sq{1};  // 2 d^2 when merged
    Below d1{1}, d2{1};  // d and 2 d when neither merged nor wide
    unsigned words;      // words taken from the array: 1 merged, 2, or 4 wide
};

inline bool frac_exp(rng_state* st, u128 n, const FracExp& f, const uint64_t* w) {
    bool s1, s2;  // step 1 (probability n/d) and step 2 (n/(2d)) succeed
    if (f.merged) {
        const uint64_t n64 = uint64_t(n), d64 = uint64_t(f.d);
        const uint64_t u = uniform_below(st, f.sq, w[0]);
        s1 = u < 2 * n64 * d64;
        s2 = u < n64 * n64;
    } else if (!f.wide) {
        s1 = uniform_below(st, f.d1, w[0]) < uint64_t(n);
        s2 = uniform_below(st, f.d2, w[1]) < uint64_t(n);
    } else {
        s1 = uniform_below_wide(st, f.d, w) < n;
        s2 = uniform_below_wide(st, 2 * f.d, w + 2) < n;
    }
    if (__builtin_expect(!(s1 & s2), 1)) return !s1;  // K = 1 (odd) or K = 2 (even)
    uint64_t k = 3;
    for (;;) {
        u128 dk;
        if (__builtin_mul_overflow(f.d, u128(k), &dk)) break;  // as in bernoulli_exp_le1
        if (uniform_below128(st, dk) >= n) break;
        ++k;
    }
    return k & 1;
}

struct DGaussBlock {
    DGauss g;
    FracExp f;
    double inv_D;         // 1 / D, for the quotient's first guess
    double inv_t2;        // 1 / (2 t^2)
    bool small;           // t < 16
    bool quart;           // 6 t^4 < 2^58: three steps of stage 1 from one draw
    Below quart_range{1};  // 6 t^4
    uint64_t t3_magic;     // floor(r / (6 t^3)) = (r t3_magic / 2^64) >> t3_shift for r < 2^58
    unsigned t3_shift;
    // Stage 3 in 64-bit words when b t < 2^32 and D < 2^62 (narrow): see dgauss_accept_narrow.
    bool narrow;
    uint64_t bt64, a64, D1, D2, D3, D4;  // b t, a, and the multiples 1..4 of D
};

// The block sampler's constants for p.g (already set up by dgauss_setup); false when the
// parameters are outside what it takes (then the samples go one at a time).
bool dgauss_block_setup(DGaussBlock& p) {
    if (p.g.t >= (uint64_t(1) << 21)) return false;  // the merged first draw needs 2 t^3 < 2^64
    const u128 d = p.g.D;
    const uint64_t t = p.g.t;
    p.inv_D = 1.0 / double(d);
    p.inv_t2 = 1.0 / double(2 * t * t);
    p.small = t < 16;
    p.quart = u128(6) * t * t * t * t < (u128(1) << 58);
    if (p.quart) {
        const uint64_t t3 = 6 * t * t * t;  // >= 48
        p.quart_range = Below(6 * t * t * t * t);
        // Granlund and Montgomery (1994), Theorem 4.2, for 58-bit dividends: with l =
        // ceil(log2 t3) and m = ceil(2^(58 + l) / t3) < 2^64, floor(r m / 2^(58 + l)) is
        // floor(r / t3) for every r < 2^58.
        const unsigned l = 64 - __builtin_clzll(t3 - 1);
        p.t3_magic = uint64_t(((u128(1) << (58 + l)) + t3 - 1) / t3);
        p.t3_shift = 58 + l - 64;
    }
    p.narrow = p.g.bt < (u128(1) << 32) && d < (u128(1) << 62);
    if (p.narrow) {
        p.bt64 = uint64_t(p.g.bt);
        p.a64 = p.g.a;
        p.D1 = uint64_t(d), p.D2 = 2 * p.D1, p.D3 = 3 * p.D1, p.D4 = 4 * p.D1;
    }
    p.f.d = d;
    p.f.merged = d < (u128(1) << 28);
    p.f.wide = d >= (u128(1) << 63);
    p.f.words = p.f.merged ? 1 : p.f.wide ? 4 : 2;
    if (p.f.merged) p.f.sq = Below(uint64_t(2 * d * d));
    else if (!p.f.wide) {
        p.f.d1 = Below(uint64_t(d));
        p.f.d2 = Below(uint64_t(2 * d));
    }
    return true;
}

// Acceptance test of Algorithm 3: Bernoulli(exp(-N/D)) for N = m^2, m < 2^64: the whole units
// q = floor(N/D) are Bernoulli(exp(-1)) that must all succeed (the first three from one draw,
// any more one by one once those three did), then the fractional part. w: 1 + p.f.words words.
inline bool dgauss_accept(rng_state* st, uint64_t m, const DGaussBlock& p, const uint64_t* w) {
    const u128 D = p.g.D;
    u128 N = u128(m) * m;
    // N = m^2: the quotient guessed in doubles (a few ulp off), fine below 2^50.
    const double md = double(m);
    const double qd = md * md * p.inv_D;
    if (__builtin_expect(qd >= 0x1p50, 0)) {  // never in practice: the units one at a time
        while (N >= D) {
            if (!bernoulli_exp_minus1(st)) return false;
            N -= D;
        }
        return frac_exp(st, N, p.f, w + 1);
    }
    // q from the double quotient, corrected by one integer step either way.
    uint64_t q = uint64_t(int64_t(qd));  // qd < 2^50
    u128 qD;
    if (__builtin_mul_overflow(u128(q), D, &qD) || qD > N) --q;  // (guess one too high)
    else if (N - qD >= D) ++q;
    bool whole = true;
    // For sigma >= 15, q = 0 is the common case (|Y| < (1 + sqrt 2) sigma roughly) and is
    // skipped; below, q > 0 is frequent and the draw is made every time (no branch to miss).
    if ((q != 0) | p.small) {
        const unsigned b = bern_e1_x3(st, w[0]);
        const unsigned need = (1u << (q < 3 ? q : 3)) - 1;  // the first min(q, 3) must succeed
        whole = (b & need) == need;
        if (__builtin_expect((q > 3) & whole, 0))
            for (uint64_t j = 3; j < q && whole; ++j) whole = bernoulli_exp_minus1(st);
    }
    return frac_exp(st, N - u128(q) * D, p.f, w + 1) & whole;
}

// dgauss_accept for |Y| < 2^32 under p.narrow, the common case of the usual sigmas: |Y| b t
// and m fit 64 bits, and for m < 2^32 with N = m^2 < 4 D (q <= 3, all but a few percent of the
// candidates) q comes from three compares instead of a division. The same draws, in the same
// order, as dgauss_accept: the same samples.
inline bool dgauss_accept_narrow(rng_state* st, uint64_t ay, const DGaussBlock& p, const uint64_t* w) {
    const uint64_t ybt = ay * p.bt64;  // < 2^64
    const uint64_t m = ybt >= p.a64 ? ybt - p.a64 : p.a64 - ybt;
    const uint64_t N = m * m;
    if (__builtin_expect((m >> 32) != 0 || N >= p.D4, 0)) return dgauss_accept(st, m, p, w);
    const uint64_t q = uint64_t(N >= p.D1) + uint64_t(N >= p.D2) + uint64_t(N >= p.D3);
    bool whole = true;
    if (q != 0) {
        const unsigned need = (1u << q) - 1;
        whole = (bern_e1_x3(st, w[0]) & need) == need;
    } else if (p.small) {
        bern_e1_x3_draws(st, w[0]);  // dgauss_accept makes the draw here: its outcome is unused
    }
    return frac_exp(st, N - q * p.D1, p.f, w + 1) & whole;
}

// Stage 3 for one candidate Y, with all its draws (w: 1 + p.f.words words).
inline bool accept_candidate(rng_state* st, int64_t y, const DGaussBlock& p, const uint64_t* w) {
    const DGauss& g = p.g;
    const uint64_t ay64 = y < 0 ? 0 - uint64_t(y) : uint64_t(y);
    if (__builtin_expect(p.narrow & (ay64 < (uint64_t(1) << 32)), 1))
        return dgauss_accept_narrow(st, ay64, p, w);
    u128 ybt;
    if (__builtin_mul_overflow(u128(ay64), g.bt, &ybt) || (ybt >> 127) != 0) {
        // |Y| b t >= 2^127 > 2^63 + a: accepted with probability exp(-(|Y| b t - a)^2 / D)
        // < exp(-2^130), below any observable value (as in discrete_gaussian_one).
        return false;
    }
    // ybt, a < 2^127: the top bit of the difference is the borrow.
    const u128 diff = ybt - g.a, flip = 0 - (diff >> 127);
    const u128 m = (diff ^ flip) - flip;  // |ybt - a|, without a branch
    if (__builtin_expect((m >> 64) == 0, 1)) return dgauss_accept(st, uint64_t(m), p, w);
    return bernoulli_exp(st, square(m), g.D);
}

// One block: kDgBlock discrete Laplace candidates of scale t, of which the accepted discrete
// Gaussian samples are written to out (at most kDgBlock); returns how many.
size_t dgauss_block(rng_state* st, const DGaussBlock& p, int64_t* out) {
    const DGauss& g = p.g;
    const uint64_t t = g.t, t2 = 2 * t * t;
    uint64_t us[kDgBlock];
    int64_t ys[kDgBlock];
    uint64_t w[kDgBlock * 5];  // words filled ahead, for the stage at hand
    // Stage 1: U uniform on [0, t) and Bernoulli(exp(-U/t)), one draw on [0, 2 t^3) (see
    // uniform_then_bernoulli_exp).
    size_t c = 0;
    if (t == 1) {  // U = 0 and Bernoulli(exp(0)) = 1: nothing to draw
        std::memset(us, 0, sizeof us);
        c = kDgBlock;
    }
    if (t > 1) rng_fill(st, reinterpret_cast<uint8_t*>(w), kDgBlock * 8);
    if (t > 1 && p.quart) {
        // Three steps from one draw r on [0, 6 t^4): u = r / (6 t^3), w = r mod 6 t^3; step 2
        // succeeds iff w < 6 u t^2 (probability u/t), step 3 iff w < 3 u^2 t, step 4 iff w < u^3.
        const uint64_t t3 = 6 * t * t * t, t2x6 = 6 * t * t, tx3 = 3 * t;
        for (size_t i = 0; i < kDgBlock; ++i) {
            const uint64_t r = uniform_below(st, p.quart_range, w[i]);  // < 2^58
            const uint64_t u = uint64_t((u128(r) * p.t3_magic) >> 64) >> p.t3_shift;
            const uint64_t x = r - u * t3, uu = u * u, uuu = uu * u;
            bool ok = (x >= u * t2x6) | ((x < uu * tx3) & (x >= uuu));  // K = 1 or 3
            if (__builtin_expect(x < uuu, 0)) {  // steps 2..4 succeeded: on from K = 4
                uint64_t k = 4;
                while (uniform_below(st, t * k) < u) ++k;
                ok = k & 1;
            }
            us[c] = u;
            c += ok;
        }
    }
    for (size_t i = 0; i < kDgBlock && t > 1 && !p.quart; ++i) {
        const uint64_t r = uniform_below(st, g.cube, w[i]);
        uint64_t u = uint64_t(int64_t(double(r) * p.inv_t2));  // u < 2^21
        u -= u * t2 > r;
        u += r - u * t2 >= t2;
        const uint64_t x = r - u * t2;
        bool ok = x >= 2 * u * t;  // K = 1
        if (__builtin_expect(!ok & (x < u * u), 0)) {  // both steps succeeded: on from K = 3
            uint64_t k = 3;
            while (uniform_below(st, t * k) < u) ++k;
            ok = k & 1;
        }
        us[c] = u;
        c += ok;
    }
    // Stage 2: V, the sign, Y = +-(U + t V); -0 and |Y| >= 2^62 rejected (Algorithm 2).
    // Words: one per candidate for V, then the signs, 64 to a word.
    size_t c2 = 0;
    rng_fill(st, reinterpret_cast<uint8_t*>(w), (c + (c + 63) / 64) * 8);
    const uint64_t* signs = w + c;
    for (size_t j = 0; j < c; ++j) {
        const uint64_t v = geometric_e1(st, w[j]);
        const bool neg = (signs[j / 64] >> (j % 64)) & 1;
        uint64_t x;
        bool keep;
        if (__builtin_expect(v < (uint64_t(1) << 32), 1)) {  // x = U + t V < 2^53
            x = us[j] + t * v;
            keep = !(neg & (x == 0));
        } else {  // (probability e^-(2^32))
            const u128 x128 = u128(us[j]) + u128(t) * v;
            x = uint64_t(x128);
            keep = !(neg & (x128 == 0)) & (x128 < (u128(1) << 62));
        }
        const uint64_t sign = 0 - uint64_t(neg);  // all ones when negative
        ys[c2] = int64_t((x ^ sign) - sign);
        c2 += keep;
    }
    // Stage 3: accept Y with probability exp(-(|Y| b t - a)^2 / (2 a b t^2)) (Algorithm 3).
    // Words: 1 + p.f.words per candidate (see dgauss_accept).
    size_t c3 = 0;
    const size_t per = 1 + p.f.words;
    rng_fill(st, reinterpret_cast<uint8_t*>(w), c2 * per * 8);
    for (size_t j = 0; j < c2; ++j) {
        out[c3] = ys[j];
        c3 += accept_candidate(st, ys[j], p, w + j * per);
    }
    return c3;
}

// n discrete Gaussian samples: the spares of the last block for the same parameters first, then
// whole blocks, the unused samples of the last block kept as spares. Parameters the block
// sampler does not take (t >= 2^21) go one sample at a time.
void dgauss_fill(rng_state* st, uint64_t num, uint64_t den, const DGaussBlock* p, const DGauss& g,
                 int64_t* out, size_t n) {
    rng_enter(st);  // before the spares: a forked child must not hand out its parent's
    if (!p) {
        for (size_t i = 0; i < n; ++i) out[i] = discrete_gaussian_one(st, g);
        return;
    }
    size_t i = 0;
    if (st->spare_dg_num == num && st->spare_dg_den == den) {
        while (i < n && st->spare_dg_pos < st->spare_dg_end) out[i++] = st->spare_dg[st->spare_dg_pos++];
    } else {
        st->spare_dg_pos = st->spare_dg_end = 0;
    }
    while (n - i >= kDgBlock) i += dgauss_block(st, *p, out + i);
    while (i < n) {
        const size_t m = dgauss_block(st, *p, st->spare_dg);
        const size_t take = m < n - i ? m : n - i;
        std::memcpy(out + i, st->spare_dg, take * sizeof(int64_t));
        i += take;
        st->spare_dg_pos = uint32_t(take);
        st->spare_dg_end = uint32_t(m);
        st->spare_dg_num = num;
        st->spare_dg_den = den;
    }
}

}  // namespace

// --- public samplers ----------------------------------------------------------------------------

void noise_gaussian_f32(float* out, size_t n, float sigma, rng_state* st) noexcept {
    gauss_f32_drive(out, n, sigma, nullptr, 0.0f, st);
}
void noise_gaussian_f64(double* out, size_t n, double sigma, rng_state* st) noexcept {
    gauss_f64_drive(out, n, sigma, nullptr, 0.0, st);
}
void noise_add_gaussian_f32(float* x, size_t n, float sigma, rng_state* st) noexcept {
    gauss_f32_drive(x, n, sigma, x, 1.0f, st);
}
void noise_add_gaussian_f64(double* x, size_t n, double sigma, rng_state* st) noexcept {
    gauss_f64_drive(x, n, sigma, x, 1.0, st);
}

void noise_laplace_f64(double* out, size_t n, double scale, rng_state* st) noexcept {
    const SimdOps& op = ops();
    alignas(64) uint64_t words[kChunkBytes / 8];
    for (size_t i = 0; i < n;) {
        const size_t k = n - i < kChunkBytes / 8 ? n - i : kChunkBytes / 8;
        rng_fill(st, reinterpret_cast<uint8_t*>(words), 8 * k);
        op.laplace_f64(out + i, words, k, scale);
        i += k;
    }
}

void noise_uniform_f64(double* out, size_t n, rng_state* st) noexcept {
    const SimdOps& op = ops();
    alignas(64) uint64_t words[kChunkBytes / 8];
    for (size_t i = 0; i < n;) {
        const size_t k = n - i < kChunkBytes / 8 ? n - i : kChunkBytes / 8;
        rng_fill(st, reinterpret_cast<uint8_t*>(words), 8 * k);
        op.uniform_f64(out + i, words, k);
        i += k;
    }
}

void noise_bernoulli(uint8_t* out, size_t n, double p, rng_state* st) noexcept {
    const bool always = p >= 1.0;
    const uint64_t threshold = p <= 0.0 || always ? 0 : uint64_t(std::ldexp(p, 64));
    alignas(64) uint64_t words[kChunkBytes / 8];
    for (size_t i = 0; i < n;) {
        const size_t k = n - i < kChunkBytes / 8 ? n - i : kChunkBytes / 8;
        rng_fill(st, reinterpret_cast<uint8_t*>(words), 8 * k);
        for (size_t j = 0; j < k; ++j) out[i + j] = always ? 1 : uint8_t(words[j] < threshold);
        i += k;
    }
}

int noise_discrete_laplace(int64_t* out, size_t n, uint64_t num, uint64_t den, rng_state* st) noexcept {
    if (num == 0 || den == 0 || num >= (uint64_t(1) << 62) || den >= (uint64_t(1) << 62)) return -1;
    // Scale <= 2^56: |x| >= 2^62 (left out by the sampler) then has probability below e^-64.
    if (u128(num) > (u128(den) << 56)) return -1;
    rng_enter(st);
    const Below cube = cube_range(num);
    for (size_t i = 0; i < n; ++i) out[i] = discrete_laplace_one(st, num, den, cube);
    return 0;
}

bool noise_discrete_gaussian_params_ok(uint64_t num, uint64_t den) noexcept {
    DGauss g;
    return dgauss_setup(num, den, g);
}

int noise_discrete_gaussian(int64_t* out, size_t n, uint64_t num, uint64_t den, rng_state* st) noexcept {
    DGaussBlock p;
    if (!dgauss_setup(num, den, p.g)) return -1;
    const bool blocks = dgauss_block_setup(p);
    dgauss_fill(st, num, den, blocks ? &p : nullptr, p.g, out, n);
    return 0;
}

double noise_l2_norm_f32(const float* x, size_t n) noexcept { return std::sqrt(ops().sumsq_f32(x, n)); }

double noise_clip_add_gaussian_f32(float* out, const float* x, size_t n, float clip, float sigma,
                                   rng_state* st) noexcept {
    const double norm = noise_l2_norm_f32(x, n);
    if (!std::isfinite(norm)) return -1.0;
    const float s = norm > double(clip) ? float(double(clip) / norm) : 1.0f;
    gauss_f32_drive(out, n, sigma, x, s, st);
    return norm;
}

double noise_clip_round_add_dgauss(int64_t* out, const float* x, size_t n, double clip,
                                   double scale, uint64_t num, uint64_t den,
                                   rng_state* st) noexcept {
    const double norm = noise_l2_norm_f32(x, n);
    if (!std::isfinite(norm)) return -1.0;
    DGaussBlock p;
    if (!dgauss_setup(num, den, p.g)) return -2.0;
    // After clipping every |x_i| <= clip, so |x_i * s| <= clip * scale: one check up front.
    if (!(clip * scale < 0x1p61)) return -3.0;
    const double s = (norm > clip ? clip / norm : 1.0) * scale;
    // The noise first (in blocks), then the stochastic rounding added to it.
    const bool blocks = dgauss_block_setup(p);
    dgauss_fill(st, num, den, blocks ? &p : nullptr, p.g, out, n);
    // Stochastic rounding: up with probability v - floor(v) (a 52-bit uniform decides), one
    // keystream word per coordinate.
    if (clip * scale < 0x1p49) {  // |x_i s| < 2^50 (s rounded up by a few ulp at most): vectors
        const SimdOps& op = ops();
        alignas(64) uint64_t words[kChunkBytes / 8];
        for (size_t i = 0; i < n;) {
            const size_t k = n - i < kChunkBytes / 8 ? n - i : kChunkBytes / 8;
            rng_fill(st, reinterpret_cast<uint8_t*>(words), 8 * k);
            op.round_add_f32(out + i, x + i, words, k, s);
            i += k;
        }
        return norm;
    }
    for (size_t i = 0; i < n; ++i) {
        const double v = double(x[i]) * s;
        const double fl = std::floor(v);
        const double u = double(rng_next_u64(st) >> 12) * 0x1p-52;
        out[i] += int64_t(fl) + (u < v - fl ? 1 : 0);
    }
    return norm;
}

}  // namespace privcity
