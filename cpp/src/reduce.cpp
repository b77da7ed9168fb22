// Reduction drivers: pick the ISA kernels, split the column range among threads in fixed tiles,
// and handle the rare paths (rows with NaN or Inf, pairwise-distance chunks).
#include "privcity/reduce.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "privcity/cpu.h"
#include "privcity/noise.h"
#include "reduce_internal.h"

namespace privcity {
namespace {

struct ReduceOps {
    decltype(&simd_portable::wsum_range) wsum;
    decltype(&simd_portable::accumulate_range) accumulate;
    decltype(&simd_portable::nonfinite_range) nonfinite;
    decltype(&simd_portable::accumulate_into_range) accumulate_into;
    decltype(&simd_portable::scale_range) scale;
    decltype(&simd_portable::modsum_u32_range) modsum32;
    decltype(&simd_portable::modsum_u64_range) modsum64;
    decltype(&simd_portable::sort_lanes16) sort16;
    decltype(&simd_portable::sqdist_range) sqdist;
};
#define PC_OPS(NS)                                                                              \
    ReduceOps { NS::wsum_range, NS::accumulate_range, NS::nonfinite_range,                      \
                NS::accumulate_into_range, NS::scale_range,                                     \
                NS::modsum_u32_range, NS::modsum_u64_range, NS::sort_lanes16, NS::sqdist_range }
const ReduceOps& ops() {
    static const ReduceOps portable = PC_OPS(simd_portable);
#if defined(__x86_64__)
    static const ReduceOps avx2 = PC_OPS(simd_avx2);
    static const ReduceOps avx512 = PC_OPS(simd_avx512);
    switch (simd_isa_selected()) {
        case SIMD_AVX512: return avx512;
        case SIMD_AVX2: return avx2;
        default: break;
    }
#elif defined(__aarch64__)
    static const ReduceOps neon = PC_OPS(simd_neon);
    if (simd_isa_selected() == SIMD_NEON) return neon;
#endif
    return portable;
}
#undef PC_OPS

constexpr size_t kTile = 65536;  // columns per step: 256 KiB of each row read in one run (prefetch-friendly), the float64 tile stays in L2

constexpr int kMaxThreads = 256;  // more would only cost: each takes a fixed share of columns

int thread_count(int threads, size_t work_items) {
    int t = threads > 0 ? std::min(threads, kMaxThreads) : reduce_default_threads();
    if (size_t(t) > work_items) t = int(work_items ? work_items : 1);
    return t < 1 ? 1 : t;
}

// A persistent pool of worker threads, so that one call on a few MiB does not pay for starting
// threads. Created on first use and never destroyed (threads blocked on a condition variable at
// exit are harmless); a forked child abandons its parent's pool (its threads do not exist there)
// and makes a new one. One job at a time: a caller that finds the pool busy starts threads.
//
// Waking a thread blocked on a condition variable takes tens of microseconds here, which is
// most of the cost of a 1M-column call made in a loop (Accumulator.add). So both sides spin for
// a bounded time (kSpinNs, pausing) before they block: a worker after its job, waiting for the
// next; the caller after its share, waiting for the workers. The spin ends at the deadline, so
// an idle pool costs no CPU once it has been idle that long, and it yields the core every 64
// pauses: on a busy machine a spinning thread must not keep another process (or the
// thread it waits for) off the core. Measured with a CPU hog on one of 2 cores: 64 adds of 1M
// columns took 56 ms spinning without yields, 31 ms with them (26 ms blocking at once).
class Pool {
  public:
    explicit Pool(int workers) {
        for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { loop(i + 1); });
    }
    int workers() const { return int(threads_.size()); }
    std::mutex busy;  // held by the caller for the whole job

    // Runs job(1..n) on the workers and job(0) on the caller; returns when all are done.
    void run(int n, const std::function<void(int)>& job) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            job_ = &job;
            active_ = n;
            pending_.store(n, std::memory_order_relaxed);
            generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
        }
        cv_.notify_all();
        job(0);
        spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
        std::unique_lock<std::mutex> lock(mu_);
        done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
        job_ = nullptr;
    }

  private:
    static constexpr int64_t kSpinNs = 50000;  // 50 us

    static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    // Spins until done() or kSpinNs have passed; returns done().
    template <class Done>
    static bool spin_until(Done&& done) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(kSpinNs);
        for (;;) {
            for (int i = 0; i < 64; ++i) {
                if (done()) return true;
                cpu_relax();
            }
            if (std::chrono::steady_clock::now() >= deadline) return done();
            sched_yield();  // another runnable thread on this core (a busy machine) goes first
        }
    }

    void loop(int index) {
        uint64_t seen = 0;
        for (;;) {
            const std::function<void(int)>* job;
            spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
                seen = generation_.load(std::memory_order_relaxed);
                if (index > active_) continue;
                job = job_;
            }
            (*job)(index);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lock(mu_);  // a caller past its spin is waiting on done_cv_
                done_cv_.notify_one();
            }
        }
    }
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(int)>* job_ = nullptr;
    int active_ = 0;
    std::atomic<int> pending_{0};
    std::atomic<uint64_t> generation_{0};
};

std::atomic<Pool*> g_pool{nullptr};
std::mutex g_pool_create;
void pool_after_fork_child() { g_pool.store(nullptr); }  // the old pool's threads are gone
const int g_pool_atfork = pthread_atfork(nullptr, nullptr, pool_after_fork_child);

Pool& pool() {
    Pool* p = g_pool.load(std::memory_order_acquire);
    if (p) return *p;
    std::lock_guard<std::mutex> lock(g_pool_create);
    p = g_pool.load(std::memory_order_acquire);
    if (!p) {
        p = new Pool(reduce_default_threads() - 1);  // never deleted: see Pool
        g_pool.store(p, std::memory_order_release);
    }
    return *p;
}

// Runs body(index, begin, end) over [0, n) split into `threads` contiguous ranges whose
// boundaries are multiples of `grain` (index: 0 .. threads-1, the calling thread takes 0).
template <class F>
void parallel_ranges_indexed(size_t n, size_t grain, int threads, F&& body) {
    const size_t units = (n + grain - 1) / grain;
    const int t = thread_count(threads, units);
    if (t <= 1 || n < 2 * grain) {
        body(0, size_t(0), n);
        return;
    }
    auto range = [&](int i) {
        const size_t u0 = units * size_t(i) / size_t(t), u1 = units * size_t(i + 1) / size_t(t);
        return std::make_pair(std::min(n, u0 * grain), std::min(n, u1 * grain));
    };
    Pool& p = pool();
    if (t - 1 <= p.workers() && p.busy.try_lock()) {
        std::lock_guard<std::mutex> hold(p.busy, std::adopt_lock);
        const std::function<void(int)> job = [&](int i) {
            const auto r = range(i);
            body(i, r.first, r.second);
        };
        p.run(t - 1, job);
        return;
    }
    std::vector<std::thread> extra;  // pool busy (another caller) or more threads asked for
    extra.reserve(size_t(t - 1));
    int started = 1;
    for (; started < t; ++started) {
        const auto r = range(started);
        const int i = started;
        try {
            extra.emplace_back([&body, r, i] { body(i, r.first, r.second); });
        } catch (...) {  // no thread to be had (limits): this thread runs the ranges left
            break;
        }
    }
    for (int i = started; i < t; ++i) {
        const auto r = range(i);
        body(i, r.first, r.second);
    }
    const auto r0 = range(0);
    body(0, r0.first, r0.second);
    for (auto& th : extra) th.join();
}

template <class F>
void parallel_ranges(size_t n, size_t grain, int threads, F&& body) {
    parallel_ranges_indexed(n, grain, threads, [&](int, size_t b, size_t e) { body(b, e); });
}

// Batcher's odd-even merge sort network for n (a power of two) inputs.
std::vector<uint16_t> merge_network(size_t n) {
    std::vector<uint16_t> pairs;
    for (size_t p = 1; p < n; p <<= 1)
        for (size_t kk = p; kk >= 1; kk >>= 1) {
            for (size_t j = kk % p; j + kk < n; j += 2 * kk)
                for (size_t i = 0; i < std::min(kk, n - j - kk); ++i)
                    if ((i + j) / (2 * p) == (i + j + kk) / (2 * p)) {
                        pairs.push_back(uint16_t(i + j));
                        pairs.push_back(uint16_t(i + j + kk));
                    }
            if (kk == 1) break;
        }
    return pairs;
}

// Sorted columns, 16 at a time; emit(j, sorted column values of column j) for each column.
template <class Emit>
int sorted_columns(const float* const* rows, size_t k, size_t d, int threads, Emit&& emit) {
    if (k == 0 || k > 4096) return -1;
    size_t n = 1;
    while (n < k) n <<= 1;
    const std::vector<uint16_t> pairs = merge_network(n);
    const ReduceOps& op = ops();
    constexpr size_t kChunk = 2048;  // columns copied per run: k rows x 8 KiB, read sequentially
    parallel_ranges(d, kChunk, threads, [&](size_t j0, size_t j1) {
        // Rows k..n-1 are +inf padding (sorted last); set once, never overwritten.
        std::vector<float> v(16 * n, std::numeric_limits<float>::infinity());
        std::vector<float> chunk(k * kChunk);
        for (size_t c0 = j0; c0 < j1; c0 += kChunk) {
            const size_t cw = std::min(kChunk, j1 - c0);
            for (size_t r = 0; r < k; ++r) std::memcpy(&chunk[r * kChunk], rows[r] + c0, cw * sizeof(float));
            for (size_t j = 0; j < cw; j += 16) {
                const size_t w = std::min<size_t>(16, cw - j);
                for (size_t r = 0; r < k; ++r)
                    for (size_t l = 0; l < 16; ++l)
                        v[16 * r + l] = l < w ? chunk[r * kChunk + j + l] : std::numeric_limits<float>::infinity();
                op.sort16(v.data(), pairs.data(), pairs.size() / 2);
                for (size_t l = 0; l < w; ++l) emit(c0 + j + l, v.data() + l);  // stride 16
            }
        }
    });
    return 0;
}

}  // namespace

void reduce_parallel_ranges(size_t n, size_t grain, int threads,
                            const std::function<void(size_t, size_t)>& body) {
    parallel_ranges(n, grain, threads, body);
}

int reduce_default_threads() noexcept {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int c = CPU_COUNT(&set);
        if (c > 0) return c;
    }
    const unsigned h = std::thread::hardware_concurrency();
    return h ? int(h) : 1;
}

size_t reduce_weighted_mean_f32(float* out, uint8_t* bad, const float* const* rows, const double* w,
                                size_t k, size_t d, double scale, int threads) noexcept {
    const ReduceOps& op = ops();
    const int t = thread_count(threads, (d + kTile - 1) / kTile);
    try {
        std::vector<uint8_t> flags(size_t(t) * k, 0);  // one row of flags per thread: no sharing
        std::atomic_bool failed{false};
        parallel_ranges_indexed(d, kTile, t, [&](int i, size_t j0, size_t j1) {
            uint8_t* nf = flags.data() + size_t(i) * k;
            try {  // an exception must not leave a worker thread (std::terminate)
                // The float64 sums of one tile of columns, kept by this thread between calls
                // (the pool's threads live on), so a call allocates and page-faults nothing of
                // size d.
                thread_local std::vector<double> tile;
                if (tile.size() < kTile) tile.assign(kTile, 0.0);
                std::vector<const float*> at(k);  // the rows from column j on
                for (size_t j = j0; j < j1; j += kTile) {
                    const size_t n = std::min(j1, j + kTile) - j;
                    for (size_t r = 0; r < k; ++r) at[r] = rows[r] + j;
                    op.wsum(tile.data(), at.data(), w, nullptr, nf, k, 0, n);
                    op.scale(out + j, tile.data(), scale, 0, n);
                }
            } catch (...) {
                failed.store(true);
            }
        });
        if (failed.load()) return SIZE_MAX;
        size_t nbad = 0;
        for (size_t r = 0; r < k; ++r) {
            uint8_t b = 0;
            for (int i = 0; i < t; ++i) b |= flags[size_t(i) * k + r];
            bad[r] = b;
            nbad += b;
        }
        return nbad;
    } catch (...) {  // out of memory for the flags or a thread's tile: nothing to report
        return SIZE_MAX;
    }
}

int reduce_accumulate_f32(double* out, const double* acc, const float* x, double w, size_t d,
                          int threads) noexcept {
    const ReduceOps& op = ops();
    std::atomic_int any{0};
    if (out != acc) {  // one pass: acc is never written, so a rejection leaves it as it was
        parallel_ranges(d, kTile, threads, [&](size_t j0, size_t j1) {
            if (op.accumulate_into(out, acc, x, w, j0, j1)) any.store(1, std::memory_order_relaxed);
        });
        return any.load() ? -1 : 0;
    }
    // In place: check first, then add.
    parallel_ranges(d, kTile, threads, [&](size_t j0, size_t j1) {
        if (op.nonfinite(x, j0, j1)) any.store(1, std::memory_order_relaxed);
    });
    if (any.load()) return -1;
    parallel_ranges(d, kTile, threads, [&](size_t j0, size_t j1) { op.accumulate(out, x, w, j0, j1); });
    return 0;
}

void reduce_scale_to_f32(float* out, const double* acc, double scale, size_t d, int threads) noexcept {
    const ReduceOps& op = ops();
    parallel_ranges(d, kTile, threads, [&](size_t j0, size_t j1) { op.scale(out, acc, scale, j0, j1); });
}

void reduce_modular_sum_u32(uint32_t* acc, const uint32_t* const* rows, size_t k, size_t d, int threads) noexcept {
    const ReduceOps& op = ops();
    parallel_ranges(d, kTile, threads, [&](size_t j0, size_t j1) {
        for (size_t j = j0; j < j1; j += kTile) op.modsum32(acc, rows, k, j, std::min(j1, j + kTile));
    });
}

void reduce_modular_sum_u64(uint64_t* acc, const uint64_t* const* rows, size_t k, size_t d, int threads) noexcept {
    const ReduceOps& op = ops();
    parallel_ranges(d, kTile, threads, [&](size_t j0, size_t j1) {
        for (size_t j = j0; j < j1; j += kTile) op.modsum64(acc, rows, k, j, std::min(j1, j + kTile));
    });
}

void reduce_l2_norms_f32(double* norms, const float* const* rows, size_t k, size_t d, int threads) noexcept {
    // Rows split among threads, each norm summed by one thread in the fixed order of
    // noise_l2_norm_f32.
    parallel_ranges(k, 1, threads, [&](size_t r0, size_t r1) {
        for (size_t r = r0; r < r1; ++r) norms[r] = noise_l2_norm_f32(rows[r], d);
    });
}

int reduce_median_f32(float* out, const float* const* rows, size_t k, size_t d, int threads) noexcept {
    return sorted_columns(rows, k, d, threads, [&](size_t j, const float* col) {
        out[j] = (k & 1) ? col[16 * (k / 2)] : float((double(col[16 * (k / 2 - 1)]) + double(col[16 * (k / 2)])) * 0.5);
    });
}

int reduce_trimmed_mean_f32(float* out, const float* const* rows, size_t k, size_t d, size_t cut,
                            int threads) noexcept {
    if (2 * cut >= k) return -1;
    return sorted_columns(rows, k, d, threads, [&](size_t j, const float* col) {
        double s = 0;
        for (size_t r = cut; r < k - cut; ++r) s += double(col[16 * r]);
        out[j] = float(s / double(k - 2 * cut));
    });
}

void reduce_pairwise_sqdist_f32(double* dist, const float* const* rows, size_t k, size_t d, int threads) noexcept {
    // d is cut into fixed chunks whose partial matrices are added in chunk order, so the result
    // is the same for any thread count.
    constexpr size_t kChunk = 1 << 16;
    const size_t nchunks = (d + kChunk - 1) / kChunk;
    std::vector<double> part(nchunks * k * k, 0.0);
    const ReduceOps& op = ops();
    parallel_ranges(nchunks, 1, threads, [&](size_t c0, size_t c1) {
        for (size_t c = c0; c < c1; ++c)
            op.sqdist(part.data() + c * k * k, rows, k, c * kChunk, std::min(d, (c + 1) * kChunk));
    });
    for (size_t i = 0; i < k * k; ++i) dist[i] = 0.0;
    for (size_t c = 0; c < nchunks; ++c)
        for (size_t i = 0; i < k; ++i)
            for (size_t l = i + 1; l < k; ++l) dist[i * k + l] += part[c * k * k + i * k + l];
    for (size_t i = 0; i < k; ++i)
        for (size_t l = i + 1; l < k; ++l) dist[l * k + i] = dist[i * k + l];
}

}  // namespace privcity
