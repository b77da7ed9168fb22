// privcity — reductions of model updates: weighted sums at memory bandwidth, modular sums for
// secure aggregation, and the robust aggregators' kernels.
//
// Updates are float32 rows of length d given as an array of row pointers (the rows of a 2-D
// array, or separate arrays). Sums are accumulated in float64. `threads` = 0 means one thread
// per available core; threads split the d dimension (or independent rows) so that results never
// depend on the thread count. No function keeps a pointer after it returns.
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {

// out[j] = float(scale * sum_k w[k] * rows[k][j]), the sum taken in float64 with rows added in
// order k = 0, 1, ... (as reduce_accumulate_f32 adds them one by one) and rounded to float32
// once: the weighted mean when scale = 1 / sum_k w[k]. The float64 sums live only in a tile of
// each thread (in its L2), so nothing of size d but out is written. bad[r] is set to 1 for
// every row r holding a NaN or Inf (0 otherwise), detected in the same pass; the count is
// returned, and out is then not a mean of anything: call again without those rows (and with
// the scale of the rows left). Rows with weight 0 are still checked. Returns SIZE_MAX if memory
// for the per-thread tiles could not be had (out is then meaningless).
size_t reduce_weighted_mean_f32(float* out, uint8_t* bad, const float* const* rows,
                                const double* w, size_t k, size_t d, double scale,
                                int threads) noexcept;

// Streaming form for one update: out[j] = acc[j] + w * x[j]. Returns 0, or -1 if x holds a NaN
// or Inf; acc is never written unless out == acc. With out != acc (double buffering) this is
// one pass over x; with out == acc, x is checked in a first pass and added in a second, so a
// rejected x still leaves acc exactly as it was.
int reduce_accumulate_f32(double* out, const double* acc, const float* x, double w, size_t d,
                          int threads) noexcept;

// out[j] = float(acc[j] * scale): the mean once scale = 1 / total weight.
void reduce_scale_to_f32(float* out, const double* acc, double scale, size_t d, int threads) noexcept;

// Wrap-around sums (mod 2^32, mod 2^64) of k integer rows into acc (acc[j] += sum_k rows[k][j]).
void reduce_modular_sum_u32(uint32_t* acc, const uint32_t* const* rows, size_t k, size_t d,
                            int threads) noexcept;
void reduce_modular_sum_u64(uint64_t* acc, const uint64_t* const* rows, size_t k, size_t d,
                            int threads) noexcept;

// norms[i] = ||rows[i]||_2 (float64, summed in a fixed order; non-finite if the row is).
void reduce_l2_norms_f32(double* norms, const float* const* rows, size_t k, size_t d, int threads) noexcept;

// Coordinate-wise statistics over k finite rows (k >= 1): out[j] = median of rows[.][j]
// (the mean of the two middle values for even k, as numpy), or the mean of the values left
// after cutting `cut` from each end of the sorted column (cut < k/2; scipy's trim_mean with
// cut = int(beta * k)). Returns 0, or -1 if k is 0 or too large (k > 4096).
int reduce_median_f32(float* out, const float* const* rows, size_t k, size_t d, int threads) noexcept;
int reduce_trimmed_mean_f32(float* out, const float* const* rows, size_t k, size_t d, size_t cut,
                            int threads) noexcept;

// dist[i * k + l] = ||rows[i] - rows[l]||^2 (float64, symmetric, zero diagonal), summed over d
// in fixed chunks combined in a fixed order.
void reduce_pairwise_sqdist_f32(double* dist, const float* const* rows, size_t k, size_t d,
                                int threads) noexcept;

// Threads used when `threads` is 0: the cores this process may run on.
int reduce_default_threads() noexcept;

}  // namespace privcity
