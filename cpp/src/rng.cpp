// CSPRNG state: keystream refills on the dispatched AES kernel, OS keying, fork detection.
#include "privcity/rng.h"

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#include "aes_internal.h"
#include "rng_internal.h"
#include "privcity/cpu.h"
#include "secure.h"

namespace privcity {
namespace {

std::atomic<uint64_t> g_fork_generation{0};

void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

struct AtForkRegistration {
    AtForkRegistration() { pthread_atfork(nullptr, nullptr, on_fork_child); }
};
const AtForkRegistration g_atfork;

bool os_random(uint8_t* out, size_t n) {
#if defined(__linux__)
    while (n) {
        const ssize_t r = getrandom(out, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;  // ENOSYS on very old kernels: fall through to /dev/urandom
        }
        out += r;
        n -= size_t(r);
    }
    if (n == 0) return true;
#else
    while (n) {
        const size_t k = n < 256 ? n : 256;
        if (getentropy(out, k) != 0) break;
        out += k;
        n -= k;
    }
    if (n == 0) return true;
#endif
    const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    while (n) {
        const ssize_t r = read(fd, out, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            close(fd);
            return false;
        }
        out += r;
        n -= size_t(r);
    }
    close(fd);
    return true;
}

void keystream(const rng_state* st, uint8_t* out, size_t nblocks, uint64_t block) {
#if defined(__x86_64__)
    if (st->impl == AES_ISA_VAES512) return aes256_ctr_keystream_vaes512(out, nblocks, block, st->round_keys);
    if (st->impl == AES_ISA_VAES256)
        return aes256_ctr_keystream_vaes256(out, nblocks, block, st->round_keys);
    if (st->impl == AES_ISA_AESNI) return aes256_ctr_keystream_aesni(out, nblocks, block, st->round_keys);
#elif defined(__aarch64__)
    if (st->impl == AES_ISA_ARMV8)
        return aes256_ctr_keystream_armv8(out, nblocks, block, st->round_keys);
#endif
    aes256_ctr_keystream_portable(out, nblocks, block, st->round_keys);
}

// The AES level a state runs on, seeded or OS-keyed: the selected one. Every level is constant
// time (AES instructions, or the bitsliced AES of aes_portable.cpp where there are none), so
// a secret key may run on any of them. privcity has no table AES: its S-box look-ups would
// show the noise key to a cache-timing attacker, and an OS-keyed state would have to refuse it.
int state_impl() { return aes_isa_selected(); }

void set_key(rng_state* st, const uint8_t key[32], int seeded, int impl) {
    std::memset(st, 0, sizeof *st);
    st->impl = impl;
#if defined(__x86_64__)
    if (st->impl >= AES_ISA_AESNI)
        aes256_expand_key_aesni(st->round_keys, key);
    else
#elif defined(__aarch64__)
    if (st->impl == AES_ISA_ARMV8)
        aes256_expand_key_armv8(st->round_keys, key);
    else
#endif
        aes256_expand_key_portable(st->round_keys, key);
    st->seeded = seeded;
    st->fork_generation = g_fork_generation.load(std::memory_order_relaxed);
}

// An OS-keyed state in a forked child must not hand out what its parent may also hand out.
inline void check_fork(rng_state* st) {
    if (st->fork_generation == g_fork_generation.load(std::memory_order_relaxed) || st->seeded) return;
    uint8_t key[32];
    const int impl = state_impl();
    if (os_random(key, sizeof key)) {
        set_key(st, key, 0, impl);
    } else {
        // No OS randomness (practically never on Linux): still never repeat the parent's bytes.
        // Derive the key from the old stream at a position no parent reaches, chosen from the
        // child's pid, the parent's position and the clock, so that two children differ even if
        // a pid is reused.
        struct timespec ts{};
        clock_gettime(CLOCK_MONOTONIC, &ts);
        const uint64_t mix = uint64_t(getpid()) * 0x9e3779b97f4a7c15ull ^ st->next_block * 0xc2b2ae3d27d4eb4full ^
                             uint64_t(ts.tv_nsec) ^ (uint64_t(ts.tv_sec) << 32);
        uint8_t derived[32];
        keystream(st, derived, 2, (uint64_t(1) << 63) | (mix >> 2));
        set_key(st, derived, 0, impl);
        detail::secure_wipe(derived, sizeof derived);
    }
    detail::secure_wipe(key, sizeof key);
}

// Moves the unread bytes to the front and fills the rest of the buffer with keystream.
void refill(rng_state* st) {
    const uint32_t rem = st->avail - st->pos;
    if (rem) std::memmove(st->buf, st->buf + st->pos, rem);
    const size_t nblocks = (RNG_BUFFER_BYTES - rem) / 16;
    keystream(st, st->buf + rem, nblocks, st->next_block);
    st->next_block += nblocks;
    st->pos = 0;
    st->avail = uint32_t(rem + 16 * nblocks);
}

}  // namespace

int rng_init_os(rng_state* st) noexcept {
    uint8_t key[32];
    if (!os_random(key, sizeof key)) return -1;
    set_key(st, key, 0, state_impl());
    detail::secure_wipe(key, sizeof key);
    return 0;
}

void rng_init_key(rng_state* st, const uint8_t key[32]) noexcept {
    set_key(st, key, 1, state_impl());
}

void rng_wipe(rng_state* st) noexcept { detail::secure_wipe(st, sizeof *st); }

void rng_fill(rng_state* st, uint8_t* out, size_t n) noexcept {
    check_fork(st);
    const size_t have = st->avail - st->pos;
    if (n <= have) {
        std::memcpy(out, st->buf + st->pos, n);
        st->pos += uint32_t(n);
        return;
    }
    std::memcpy(out, st->buf + st->pos, have);
    out += have;
    n -= have;
    st->pos = st->avail = 0;
    const size_t direct = n / 16;  // whole blocks straight into the output
    if (direct) {
        keystream(st, out, direct, st->next_block);
        st->next_block += direct;
        out += 16 * direct;
        n -= 16 * direct;
    }
    if (n) {
        refill(st);
        std::memcpy(out, st->buf, n);
        st->pos = uint32_t(n);
    }
}

const uint8_t* rng_take(rng_state* st, size_t n) noexcept {
    check_fork(st);
    if (st->avail - st->pos < n) refill(st);
    const uint8_t* p = st->buf + st->pos;
    st->pos += uint32_t(n);
    return p;
}

void rng_enter(rng_state* st) noexcept { check_fork(st); }

uint64_t rng_next_u64_refill(rng_state* st) noexcept {
    refill(st);
    uint64_t v;
    std::memcpy(&v, st->buf + st->pos, 8);
    st->pos += 8;
    return v;
}

uint64_t rng_u64(rng_state* st) noexcept {
    uint64_t v;
    std::memcpy(&v, rng_take(st, 8), 8);
    return v;
}

uint64_t rng_position(const rng_state* st) noexcept {
    return 16 * st->next_block - (st->avail - st->pos);
}

}  // namespace privcity
