// Fast keystream access for the samplers (internal to cpp/src). A sampler calls
// rng_enter() once per public call (the fork check), then draws words with rng_next_u64().
#pragma once
#include <cstdint>
#include <cstring>

#include "privcity/rng.h"

namespace privcity {

void rng_enter(rng_state* st) noexcept;           // re-keys an OS-keyed state in a forked child
uint64_t rng_next_u64_refill(rng_state* st) noexcept;  // refills, then takes 8 bytes

static inline uint64_t rng_next_u64(rng_state* st) noexcept {
    if (st->avail - st->pos >= 8) {
        uint64_t v;
        std::memcpy(&v, st->buf + st->pos, 8);
        st->pos += 8;
        return v;
    }
    return rng_next_u64_refill(st);
}

}  // namespace privcity
