// Distributed discrete Gaussian: drivers of the per-ISA kernels (ddg_simd.inc), the Hadamard
// matrices of order 12 and 20 (Paley), the public sign stream, the device's fused encoder and
// the server's decoder.
#include "privcity/ddg.h"

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <new>

#include "ddg_internal.h"
#include "privcity/cpu.h"
#include "privcity/noise.h"
#include "secure.h"

namespace privcity {
namespace {

struct DdgOps {
    decltype(&simd_portable::fwht_blocks) fwht;
    decltype(&simd_portable::mix_blocks) mix;
    decltype(&simd_portable::load_signed_f32) load_f32;
    decltype(&simd_portable::load_signed_f64) load_f64;
    decltype(&simd_portable::unload_signed) unload;
    decltype(&simd_portable::scale) scale;
    decltype(&simd_portable::round_sumsq) round_sumsq;
    decltype(&simd_portable::round_store_u32) store_u32;
    decltype(&simd_portable::round_store_u64) store_u64;
    decltype(&simd_portable::center_u32) center_u32;
    decltype(&simd_portable::center_u64) center_u64;
};
#define PC_OPS(NS)                                                                              \
    DdgOps { NS::fwht_blocks, NS::mix_blocks, NS::load_signed_f32, NS::load_signed_f64,         \
             NS::unload_signed, NS::scale, NS::round_sumsq, NS::round_store_u32,                \
             NS::round_store_u64, NS::center_u32, NS::center_u64 }
const DdgOps& ops() {
    static const DdgOps portable = PC_OPS(simd_portable);
#if defined(__x86_64__)
    static const DdgOps avx2 = PC_OPS(simd_avx2);
    static const DdgOps avx512 = PC_OPS(simd_avx512);
    switch (simd_isa_selected()) {
        case SIMD_AVX512: return avx512;
        case SIMD_AVX2: return avx2;
        default: break;
    }
#elif defined(__aarch64__)
    static const DdgOps neon = PC_OPS(simd_neon);
    if (simd_isa_selected() == SIMD_NEON) return neon;
#endif
    return portable;
}
#undef PC_OPS

// Paley's construction I: for a prime q = 3 mod 4, H = I + S with S = [[0, 1^T], [-1, Q]] and
// Q[i][j] = chi(j - i) (the Legendre symbol mod q) is a Hadamard matrix of order q + 1.
struct Paley {
    int8_t h[20 * 20];
    explicit Paley(unsigned q) {
        const unsigned m = q + 1;
        int8_t chi[19] = {0};
        for (unsigned i = 1; i < q; ++i) chi[(i * i) % q] = 1;
        for (unsigned a = 1; a < q; ++a)
            if (!chi[a]) chi[a] = -1;
        for (unsigned i = 0; i < m; ++i)
            for (unsigned j = 0; j < m; ++j) {
                int s;
                if (i == 0) s = j == 0 ? 0 : 1;
                else if (j == 0) s = -1;
                else s = chi[(j - i + q) % q];
                h[i * m + j] = int8_t((i == j ? 1 : 0) + s);
            }
    }
};

const int8_t* hadamard_small(size_t m) {
    static const Paley h12(11), h20(19);
    return m == 12 ? h12.h : h20.h;
}

// d' = m B with m in {1, 12, 20} and B a power of two.
struct Shape {
    size_t m, B;
};

Shape shape_of(size_t dp) {
    for (size_t m : {size_t(20), size_t(12)})
        if (dp % m == 0 && ((dp / m) & (dp / m - 1)) == 0) return {m, dp / m};
    return {1, dp};
}

void forward(double* y, const Shape& s) {
    ops().fwht(y, s.m, s.B);
    if (s.m > 1) ops().mix(y, s.m, s.B, hadamard_small(s.m), 0);
}

// (H_m^T kron H_B) y: H_B is symmetric, H_m (Paley) is not.
void inverse(double* y, const Shape& s) {
    ops().fwht(y, s.m, s.B);
    if (s.m > 1) ops().mix(y, s.m, s.B, hadamard_small(s.m), 1);
}

// Bytes of the sign stream for d' coordinates: whole 32-bit words (the kernels read words).
size_t sign_bytes(size_t dp) { return 4 * ((dp + 31) / 32); }

// Bit i of the AES-256-CTR keystream under key (byte i / 8, bit i % 8: the little-endian
// 32-bit words of the stream): the sign of coordinate i (1: negative).
void sign_bits(uint8_t* signs, size_t dp, const uint8_t key[32]) {
    rng_state st;
    rng_init_key(&st, key);
    rng_fill(&st, signs, sign_bytes(dp));
    rng_wipe(&st);
}

// The scratch of one call: y (d' doubles), u (d' 32-bit uniforms) and the signs, in one
// allocation, wiped when released (y holds the device's rotated data).
class Workspace {
  public:
    explicit Workspace(size_t dp) : dp_(dp) {
        bytes_ = dp * (sizeof(double) + sizeof(uint32_t)) + sign_bytes(dp);
        mem_ = static_cast<uint8_t*>(::operator new[](bytes_, std::align_val_t(64), std::nothrow));
    }
    ~Workspace() {
        if (!mem_) return;
        detail::secure_wipe(mem_, bytes_);
        ::operator delete[](mem_, std::align_val_t(64));
    }
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
    bool ok() const { return mem_ != nullptr; }
    double* y() { return reinterpret_cast<double*>(mem_); }
    uint32_t* u() { return reinterpret_cast<uint32_t*>(mem_ + dp_ * sizeof(double)); }
    uint8_t* signs() { return mem_ + dp_ * (sizeof(double) + sizeof(uint32_t)); }

  private:
    size_t dp_, bytes_;
    uint8_t* mem_;
};

template <class W>
W ring_mask(unsigned nbits) {
    return nbits >= 8 * sizeof(W) ? W(~W(0)) : W((W(1) << nbits) - 1);
}

// Rounding toward zero, the fallback once DDG_MAX_TRIES draws missed the bound: |trunc(v)| <=
// |v|, so ||r||^2 <= ||y||^2 <= l2_bound_sq (ddg_check). Checked anyway; false if it failed.
template <class W>
bool truncate_store(W* out, int64_t* rounded, const double* y, size_t dp, W mask, double bound) {
    double sumsq = 0;
    for (size_t i = 0; i < dp; ++i) sumsq += std::trunc(y[i]) * std::trunc(y[i]);
    if (!(sumsq <= bound)) return false;
    for (size_t i = 0; i < dp; ++i) {
        const int64_t r = int64_t(std::trunc(y[i]));
        out[i] = W(out[i] + W(uint64_t(r))) & mask;
        if (rounded) rounded[i] = r;
    }
    return true;
}

template <class W>
double encode(W* out, int64_t* rounded, int64_t* noise, uint32_t* tries, const float* x,
              const ddg_config* cfg, rng_state* st) {
    const int rc = ddg_check(cfg);
    if (rc != DDG_OK) return rc;
    if (cfg->bits > 8 * sizeof(W)) return DDG_E_PARAM;
    const size_t d = cfg->dim, dp = cfg->padded_dim;
    const double norm = noise_l2_norm_f32(x, d);
    if (!std::isfinite(norm)) return DDG_E_NONFINITE;
    Workspace ws(dp);
    if (!ws.ok()) return DDG_E_MEMORY;
    const DdgOps& op = ops();
    const W mask = ring_mask<W>(cfg->bits);
    // Rotate, then clip, normalise and scale with one multiply.
    double* y = ws.y();
    sign_bits(ws.signs(), dp, cfg->rotation_key);
    op.load_f32(y, x, d, dp, ws.signs());
    forward(y, shape_of(dp));
    const double clip_factor = norm > cfg->clip ? cfg->clip / norm : 1.0;
    op.scale(y, dp, clip_factor / (cfg->gamma * std::sqrt(double(dp))));
    // The noise share first, straight into the ring words (drawn in chunks: the sampler keeps
    // its spares in the state, so the chunks equal one draw).
    constexpr size_t kChunk = 1024;
    int64_t buf[kChunk];
    for (size_t i = 0; i < dp; i += kChunk) {
        const size_t k = dp - i < kChunk ? dp - i : kChunk;
        if (noise_discrete_gaussian(buf, k, cfg->sigma2_num, cfg->sigma2_den, st) != 0) {
            std::memset(out, 0, dp * sizeof(W));
            return DDG_E_NOISE;
        }
        for (size_t j = 0; j < k; ++j) out[i + j] = W(uint64_t(buf[j])) & mask;
        if (noise) std::memcpy(noise + i, buf, k * sizeof(int64_t));
    }
    detail::secure_wipe(buf, sizeof buf);
    // Conditional randomized rounding: a fresh draw until ||r||^2 <= l2_bound_sq (exact: the
    // squares are integers below 2^52), then r added to the words.
    const double bound = double(cfg->l2_bound_sq);
    uint32_t* u = ws.u();
    uint32_t t = 0;
    bool met = false;
    while (!met && t < DDG_MAX_TRIES) {
        ++t;
        rng_fill(st, reinterpret_cast<uint8_t*>(u), dp * sizeof(uint32_t));
        met = op.round_sumsq(y, u, dp) <= bound;
    }
    if (met) {
        if constexpr (sizeof(W) == 4) op.store_u32(out, rounded, y, u, dp, mask);
        else op.store_u64(out, rounded, y, u, dp, mask);
    } else {
        t = DDG_MAX_TRIES + 1;
        if (!truncate_store<W>(out, rounded, y, dp, mask, bound)) {
            std::memset(out, 0, dp * sizeof(W));
            return DDG_E_BOUND;
        }
    }
    if (tries) *tries = t;
    return norm;
}

template <class W>
int decode(double* out, const W* sum, const ddg_config* cfg) {
    const int rc = ddg_check(cfg);
    if (rc != DDG_OK) return rc;
    if (cfg->bits > 8 * sizeof(W)) return DDG_E_PARAM;
    const size_t dp = cfg->padded_dim;
    Workspace ws(dp);
    if (!ws.ok()) return DDG_E_MEMORY;
    double* y = ws.y();
    if constexpr (sizeof(W) == 4) ops().center_u32(y, sum, dp, cfg->bits);
    else ops().center_u64(y, sum, dp, cfg->bits);
    inverse(y, shape_of(dp));
    sign_bits(ws.signs(), dp, cfg->rotation_key);
    ops().unload(out, y, cfg->dim, ws.signs(), cfg->gamma / std::sqrt(double(dp)));
    return DDG_OK;
}

}  // namespace

size_t ddg_padded_dim(size_t d) noexcept {
    if (d == 0 || d > (size_t(1) << 31)) return 0;
    size_t best = 0;
    for (size_t m : {size_t(1), size_t(12), size_t(20)}) {
        size_t b = 1;
        while (m * b < d) b *= 2;
        if (best == 0 || m * b < best) best = m * b;
    }
    return best;
}

int ddg_check(const ddg_config* cfg) noexcept {
    if (cfg->dim == 0 || cfg->padded_dim != ddg_padded_dim(cfg->dim)) return DDG_E_DIM;
    const bool clip_ok = cfg->clip > 0 && std::isfinite(cfg->clip);
    if (!clip_ok || !(cfg->gamma > 0 && std::isfinite(cfg->gamma))) return DDG_E_PARAM;
    if (cfg->bits < 1 || cfg->bits > 64) return DDG_E_PARAM;
    // Every |y_i| <= ||y|| <= clip / gamma and ||r|| < ||y|| + sqrt(d'): below 2^26 each, the
    // squares and their sums stay below 2^52, exact in doubles.
    const double scaled = cfg->clip / cfg->gamma;
    const double top = scaled + std::sqrt(double(cfg->padded_dim)) + 1.0;
    if (!(top * top < 0x1p52)) return DDG_E_RANGE;
    if (cfg->l2_bound_sq >= (uint64_t(1) << 52)) return DDG_E_BOUND;
    if (!(double(cfg->l2_bound_sq) >= scaled * scaled * (1.0 + 0x1p-40))) return DDG_E_BOUND;
    if (!noise_discrete_gaussian_params_ok(cfg->sigma2_num, cfg->sigma2_den)) return DDG_E_NOISE;
    return DDG_OK;
}

double ddg_encode_u32(uint32_t* out, int64_t* rounded, int64_t* noise, uint32_t* tries,
                      const float* x, const ddg_config* cfg, rng_state* st) noexcept {
    return encode<uint32_t>(out, rounded, noise, tries, x, cfg, st);
}

double ddg_encode_u64(uint64_t* out, int64_t* rounded, int64_t* noise, uint32_t* tries,
                      const float* x, const ddg_config* cfg, rng_state* st) noexcept {
    return encode<uint64_t>(out, rounded, noise, tries, x, cfg, st);
}

int ddg_decode_u32(double* out, const uint32_t* sum, const ddg_config* cfg) noexcept {
    return decode<uint32_t>(out, sum, cfg);
}

int ddg_decode_u64(double* out, const uint64_t* sum, const ddg_config* cfg) noexcept {
    return decode<uint64_t>(out, sum, cfg);
}

int ddg_rotate(double* y, const double* x, size_t d, size_t padded_dim,
               const uint8_t key[32]) noexcept {
    if (d == 0 || padded_dim != ddg_padded_dim(d)) return DDG_E_DIM;
    Workspace ws(padded_dim);
    if (!ws.ok()) return DDG_E_MEMORY;
    sign_bits(ws.signs(), padded_dim, key);
    ops().load_f64(y, x, d, padded_dim, ws.signs());
    forward(y, shape_of(padded_dim));
    ops().scale(y, padded_dim, 1.0 / std::sqrt(double(padded_dim)));
    return DDG_OK;
}

int ddg_unrotate(double* x, const double* y, size_t d, size_t padded_dim,
                 const uint8_t key[32]) noexcept {
    if (d == 0 || padded_dim != ddg_padded_dim(d)) return DDG_E_DIM;
    Workspace ws(padded_dim);
    if (!ws.ok()) return DDG_E_MEMORY;
    double* t = ws.y();
    std::memcpy(t, y, padded_dim * sizeof(double));
    inverse(t, shape_of(padded_dim));
    sign_bits(ws.signs(), padded_dim, key);
    ops().unload(x, t, d, ws.signs(), 1.0 / std::sqrt(double(padded_dim)));
    return DDG_OK;
}

}  // namespace privcity
