// privcity — noise samplers on the CSPRNG (rng.h), into caller buffers.
//
// SECURITY — what a caller must never do:
//  * Never protect a release with the floating-point samplers (gaussian, laplace): a float
//    sample's low bits reveal which values it can have come from (Mironov 2012). Releases use
//    the exact integer samplers on a grid chosen from the noise scale (privcity.dp does).
//  * Never reuse an rng_state across processes by copying it (see rng.h).
//
// The exact samplers are rejection samplers: how much keystream (and time) a draw takes depends
// on the values drawn. Never publish rng_position (or timings) beside a release.
//
// Every sampler consumes the keystream in a fixed way, so a seeded stream gives the same
// samples on every ISA and whether n samples are drawn at once or in chunks (the continuous
// samplers keep a few spare normals in the state to make chunks line up).
#pragma once
#include <cstddef>
#include <cstdint>

#include "privcity/rng.h"

namespace privcity {

// --- continuous (floating point; for simulations) ---------------------------------------------
// Uniform on [0, 1), 52 random bits each.
void noise_uniform_f64(double* out, size_t n, rng_state* st) noexcept;
// N(0, sigma^2) by Box-Muller; float32 radii come from 32-bit uniforms (tails to 6.6 sigma),
// float64 from 52-bit ones (8.5 sigma).
void noise_gaussian_f32(float* out, size_t n, float sigma, rng_state* st) noexcept;
void noise_gaussian_f64(double* out, size_t n, double sigma, rng_state* st) noexcept;
// x[i] += N(0, sigma^2), in place.
void noise_add_gaussian_f32(float* x, size_t n, float sigma, rng_state* st) noexcept;
void noise_add_gaussian_f64(double* x, size_t n, double sigma, rng_state* st) noexcept;
// Laplace(0, scale): density exp(-|x| / scale) / (2 scale).
void noise_laplace_f64(double* out, size_t n, double scale, rng_state* st) noexcept;
// Bernoulli(p): out[i] = 1 with probability floor(p * 2^64) / 2^64 (p = 1: always 1).
void noise_bernoulli(uint8_t* out, size_t n, double p, rng_state* st) noexcept;

// --- exact integer samplers (Canonne, Kamath, Steinke 2020; integer arithmetic only) --------
// Discrete Laplace with scale num/den: P(x) proportional to exp(-|x| * den / num).
// Requires 1 <= num, den < 2^62 and num/den <= 2^56 (so that the values the sampler cannot
// represent, |x| >= 2^62, have probability below e^-64). Returns 0, or -1 out of range.
[[nodiscard]] int noise_discrete_laplace(int64_t* out, size_t n, uint64_t num, uint64_t den,
                                         rng_state* st) noexcept;
// Discrete Gaussian with sigma^2 = num/den: P(x) proportional to exp(-x^2 * den / (2 num)).
// Requires 1 <= num < 2^63, 1 <= den < 2^40, sigma^2 <= 2^62, and 2 num den t^2 < 2^120 for
// t = ceil(sigma). Returns 0, or -1 for parameters out of range.
[[nodiscard]] int noise_discrete_gaussian(int64_t* out, size_t n, uint64_t num, uint64_t den,
                                          rng_state* st) noexcept;
// Whether noise_discrete_gaussian accepts (num, den).
bool noise_discrete_gaussian_params_ok(uint64_t num, uint64_t den) noexcept;

// --- fused device kernels ---------------------------------------------------------------------
// out = x * min(1, clip / ||x||_2) + N(0, sigma^2) per coordinate, in one call (out may equal
// x). Returns ||x||_2 before clipping (a double), or -1 without writing if x has NaN or Inf.
double noise_clip_add_gaussian_f32(float* out, const float* x, size_t n, float clip, float sigma,
                                   rng_state* st) noexcept;
// out[i] = stochastic_round(x[i] * min(1, clip / ||x||_2) * scale) + discrete Gaussian with
// sigma^2 = num/den (the integer path of distributed DP). Returns ||x||_2, -1 for non-finite
// x, -2 for bad discrete Gaussian parameters, -3 if a scaled value does not fit in int64;
// nothing is written on failure.
double noise_clip_round_add_dgauss(int64_t* out, const float* x, size_t n, double clip,
                                   double scale, uint64_t num, uint64_t den,
                                   rng_state* st) noexcept;

// L2 norm of a float32 vector, summed in double in a fixed order (identical on every ISA).
double noise_l2_norm_f32(const float* x, size_t n) noexcept;

}  // namespace privcity
