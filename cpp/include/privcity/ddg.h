// privcity — the distributed discrete Gaussian mechanism (Kairouz, Liu, Steinke 2021) for
// secure aggregation: the device's fused encoder and the server's decoder.
//
// SECURITY — what a caller must never do:
//  * Never charge a sum with any L2 sensitivity but sqrt(l2_bound_sq): that is what the
//    conditional rounding enforces, exactly, on the integers of each device's vector.
//  * Never sum encodings made under different configs or rotation keys: the server's decoder
//    only inverts one rotation and one grid.
//  * Never publish the number of rounding tries or the rng position beside a release: both
//    depend on the data (tries) and on the noise (the exact sampler is a rejection sampler).
//  * The rotation key is public (the same for every device of a round); the noise comes from
//    the caller's rng_state, which must be keyed from the OS outside simulations (rng.h).
//
// Pipeline (device): x (d float32) -> clip to L2 norm `clip` -> pad to padded_dim d' and rotate
// by U = H D / sqrt(d') (D: random signs from the rotation key; H: a Hadamard matrix of order
// d', Sylvester's for d' = 2^k, Paley's H_12 or H_20 Kronecker Sylvester's for d' = 12 2^k or
// 20 2^k) -> scale by 1/gamma -> stochastic rounding, repeated until ||r||^2 <= l2_bound_sq
// -> + discrete Gaussian noise (sigma^2 = sigma2_num / sigma2_den) -> mod 2^bits.
// Any Hadamard matrix flattens as Sylvester's does: each coordinate of U x is a Rademacher sum
// with squared coefficients summing to ||x||^2 / d', so sub-Gaussian with that variance proxy.
//
// Every ISA path runs the same IEEE operations in the same order, so a seeded rng_state gives
// bit-identical words on every path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "privcity/rng.h"

namespace privcity {

struct ddg_config {
    size_t dim;         // d >= 1, the length of the device's vector
    size_t padded_dim;  // d' = ddg_padded_dim(d)
    double clip;        // L2 clip norm, in the input's units (> 0)
    double gamma;       // grid step: the integer grid is value / gamma (> 0)
    uint64_t l2_bound_sq;  // rounding is redrawn until ||r||^2 <= l2_bound_sq (< 2^52)
    uint64_t sigma2_num, sigma2_den;  // the noise share's sigma^2 = num / den, integer units
    unsigned bits;                    // the ring is Z_{2^bits}: 1..32 for u32 words, 1..64 for u64
    uint8_t rotation_key[32];         // AES-256 key of the sign stream (public)
};

enum ddg_status : int {
    DDG_OK = 0,
    DDG_E_DIM = -1,        // dim = 0, dim > 2^31, or padded_dim != ddg_padded_dim(dim)
    DDG_E_PARAM = -2,      // clip or gamma not finite and > 0, or bits out of range
    DDG_E_RANGE = -3,      // (clip / gamma + sqrt(d') + 1)^2 >= 2^52: integers would be inexact
    DDG_E_BOUND = -4,      // l2_bound_sq < (clip / gamma)^2 (1 + 2^-40) or >= 2^52
    DDG_E_NOISE = -5,      // sigma^2 = num / den outside the exact sampler's range
    DDG_E_NONFINITE = -6,  // x holds NaN or Inf
    DDG_E_MEMORY = -7,     // no memory for the workspace (12 bytes per padded coordinate)
};

// Redraws of the rounding before it falls back to rounding toward zero (which always meets
// the bound, since |trunc(v)| <= |v|). With the paper's bound each draw fails with probability
// at most beta, so the fallback has probability below beta^64.
constexpr uint32_t DDG_MAX_TRIES = 64;

// Smallest d' >= d of the form 2^k, 12 * 2^k or 20 * 2^k (padding at most a third); 0 for
// d = 0 or d > 2^31.
size_t ddg_padded_dim(size_t d) noexcept;

// DDG_OK, or why cfg is refused (the same checks the encoder and decoder make).
int ddg_check(const ddg_config* cfg) noexcept;

// The device's encoder: out[0 .. d') = (r + noise) mod 2^bits, with r the rounded, rotated,
// scaled, clipped x. Returns ||x||_2 before clipping (>= 0), or a negative ddg_status (nothing
// written to out). The optional outputs (each may be null) get r and the noise (int64, d' each)
// and the number of rounding draws (DDG_MAX_TRIES + 1: the fallback was used); asking for them
// changes nothing else, so a seeded state gives the same words with or without them.
double ddg_encode_u32(uint32_t* out, int64_t* rounded, int64_t* noise, uint32_t* tries,
                      const float* x, const ddg_config* cfg, rng_state* st) noexcept;
double ddg_encode_u64(uint64_t* out, int64_t* rounded, int64_t* noise, uint32_t* tries,
                      const float* x, const ddg_config* cfg, rng_state* st) noexcept;

// The server's decoder: sum (d' words, the modular sum of the devices' words) -> centred into
// [-2^(bits-1), 2^(bits-1)) -> times gamma -> inverse rotation -> out[0 .. d). Returns DDG_OK
// or a negative ddg_status.
int ddg_decode_u32(double* out, const uint32_t* sum, const ddg_config* cfg) noexcept;
int ddg_decode_u64(double* out, const uint64_t* sum, const ddg_config* cfg) noexcept;

// The rotation alone (orthonormal): y[0 .. d') = U [x; 0], and x[0 .. d) = the first d
// coordinates of U^T y. d' must be ddg_padded_dim(d). Return DDG_OK, DDG_E_DIM or DDG_E_MEMORY.
int ddg_rotate(double* y, const double* x, size_t d, size_t padded_dim,
               const uint8_t key[32]) noexcept;
int ddg_unrotate(double* x, const double* y, size_t d, size_t padded_dim,
                 const uint8_t key[32]) noexcept;

}  // namespace privcity
