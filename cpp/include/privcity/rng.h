// privcity — CSPRNG: AES-256-CTR keystream, buffered, keyed from the OS or from a seed.
//
// SECURITY — what a caller must never do:
//  * Never use a seeded state (rng_init_key with a caller's key) to protect real data: anyone
//    who knows the seed reproduces every sample. Seeded states exist for reproducible
//    simulations; the Python layer says so wherever one is on.
//  * Never copy an rng_state (it would repeat the copy's keystream); share a pointer instead,
//    and never use one state from two threads at once (it is not locked).
//  * Never log, print or persist an rng_state: it holds the expanded key.
//
// The keystream is AES-256 in counter mode with a 128-bit big-endian counter starting at 0
// (block j = AES_K(0^64 || BE64(j))): the bytes `cryptography`'s AES-CTR gives for the same
// key and an all-zero initial counter block. An OS-keyed state re-keys itself in a forked
// child before it hands out another byte; a seeded state continues its stream (give each
// process its own stream instead).
#pragma once
#include <cstddef>
#include <cstdint>

namespace privcity {

constexpr size_t RNG_BUFFER_BYTES = 4096;

struct alignas(64) rng_state {
    uint8_t buf[RNG_BUFFER_BYTES];  // keystream not yet handed out: buf[pos, avail)
    uint8_t round_keys[240];
    uint64_t next_block;  // index of the keystream block the next refill starts at
    uint32_t pos;
    uint32_t avail;
    int impl;    // aes_isa used for refills, fixed at init
    int seeded;  // 1: keyed by the caller (reproducible); 0: keyed from the OS
    uint64_t fork_generation;
    // Standard normals left over from the last vector block of a draw, handed out first by
    // the next draw of the same kind, so that n draws in chunks equal n draws at once.
    float spare_f32[32];
    uint32_t n_spare_f32;
    double spare_f64[16];
    uint32_t n_spare_f64;
    // Single random bits for the exact samplers, taken from the keystream 64 at a time.
    uint64_t bit_pool;
    uint32_t bit_count;
    // Exact discrete Gaussian samples left over from the last block of candidates, for the
    // parameters sigma^2 = spare_dg_num / spare_dg_den, handed out first by the next draw with
    // the same parameters (a draw with other parameters drops them).
    uint32_t spare_dg_pos, spare_dg_end;
    uint64_t spare_dg_num, spare_dg_den;
    int64_t spare_dg[256];
};

// Keys from the operating system (getrandom). Returns 0, or -1 if the OS gave no randomness.
// Runs on every CPU: the keystream of each AES level (the ISA cap applies as to a seeded
// state) is constant time, the portable one included (bitsliced, no table).
[[nodiscard]] int rng_init_os(rng_state* st) noexcept;
// Keys with a caller-chosen 32-byte key: a reproducible stream (seeded mode).
void rng_init_key(rng_state* st, const uint8_t key[32]) noexcept;
void rng_wipe(rng_state* st) noexcept;

// The next n keystream bytes.
void rng_fill(rng_state* st, uint8_t* out, size_t n) noexcept;
// The next 8 keystream bytes as a little-endian integer.
uint64_t rng_u64(rng_state* st) noexcept;
// Pointer to the next n <= 256 keystream bytes, valid until the next call on st.
const uint8_t* rng_take(rng_state* st, size_t n) noexcept;
// Keystream bytes handed out so far (tests and reproducibility checks).
uint64_t rng_position(const rng_state* st) noexcept;

}  // namespace privcity
