// Mask expansion for secure aggregation (see privcity/mask.h): the AES-256-CTR keystream of
// each seed, one tile of columns at a time so the keystream stays in L1/L2, added into out.
#include "privcity/mask.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "aes_internal.h"
#include "privcity/cpu.h"
#include "reduce_internal.h"
#include "secure.h"

namespace privcity {
namespace {

constexpr size_t kTileBlocks = 1024;  // 16 KiB of keystream per seed and step

struct Aes {
    void (*expand)(uint8_t*, const uint8_t*) noexcept;
    void (*keystream)(uint8_t*, size_t, uint64_t, const uint8_t*) noexcept;
};

Aes aes_kernels() {
#if defined(__x86_64__)
    switch (aes_isa_selected()) {
        case AES_ISA_VAES512: return {aes256_expand_key_aesni, aes256_ctr_keystream_vaes512};
        case AES_ISA_VAES256: return {aes256_expand_key_aesni, aes256_ctr_keystream_vaes256};
        case AES_ISA_AESNI: return {aes256_expand_key_aesni, aes256_ctr_keystream_aesni};
        default: break;
    }
#elif defined(__aarch64__)
    if (aes_isa_selected() == AES_ISA_ARMV8)
        return {aes256_expand_key_armv8, aes256_ctr_keystream_armv8};
#endif
    return {aes256_expand_key_portable, aes256_ctr_keystream_portable};
}

template <class W>
inline W load_le(const uint8_t* p) {
    W v;
    std::memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = sizeof(W) == 4 ? W(__builtin_bswap32(uint32_t(v))) : W(__builtin_bswap64(uint64_t(v)));
#endif
    return v;
}

template <class W>
int mask_add(W* out, size_t d, const uint8_t* seeds, const int8_t* signs, size_t n,
             int threads) noexcept {
    if (d == 0 || n == 0) return 0;
    try {
        constexpr size_t per_block = 16 / sizeof(W);
        const Aes aes = aes_kernels();
        std::vector<uint8_t> round_keys(n * 240);  // expanded once, read by every thread
        for (size_t i = 0; i < n; ++i) aes.expand(round_keys.data() + 240 * i, seeds + 32 * i);
        const size_t blocks = (d + per_block - 1) / per_block;
        reduce_parallel_ranges(blocks, kTileBlocks, threads, [&](size_t b0, size_t b1) {
            alignas(64) uint8_t ks[kTileBlocks * 16];
            for (size_t b = b0; b < b1; b += kTileBlocks) {
                const size_t nb = std::min(b1, b + kTileBlocks) - b;
                const size_t j0 = b * per_block, m = std::min(d, (b + nb) * per_block) - j0;
                W* __restrict o = out + j0;
                for (size_t i = 0; i < n; ++i) {
                    aes.keystream(ks, nb, uint64_t(b), round_keys.data() + 240 * i);
                    if (signs[i] > 0) {
                        for (size_t k = 0; k < m; ++k) o[k] += load_le<W>(ks + k * sizeof(W));
                    } else {
                        for (size_t k = 0; k < m; ++k) o[k] -= load_le<W>(ks + k * sizeof(W));
                    }
                }
            }
            detail::secure_wipe(ks, sizeof ks);
        });
        detail::secure_wipe(round_keys.data(), round_keys.size());
    } catch (...) {  // out of memory for the round keys or the threads' bookkeeping, before
        return -1;   // any word of out is changed (a thread that cannot start is not an error)
    }
    return 0;
}

}  // namespace

int mask_add_u32(uint32_t* out, size_t d, const uint8_t* seeds, const int8_t* signs, size_t n,
                 int threads) noexcept {
    return mask_add(out, d, seeds, signs, n, threads);
}

int mask_add_u64(uint64_t* out, size_t d, const uint8_t* seeds, const int8_t* signs, size_t n,
                 int threads) noexcept {
    return mask_add(out, d, seeds, signs, n, threads);
}

}  // namespace privcity
