// AES-256-GCM dispatch: contexts remember the implementation they were built for; the batch
// entry points loop here so each kernel stays a single-message function.
#include "privcity/aead.h"
#include "privcity/cpu.h"
#include "secure.h"

namespace privcity {

namespace {
constexpr uint32_t kLive = 0x67636d21u;  // "gcm!": a context init built and nobody wiped

// Builds ctx for a supported level (0), or refuses it (-1).
int init_kernel(aes256gcm_ctx* ctx, const uint8_t key[32], int impl) {
    if (impl == AES_ISA_NONE) {
        aead_aes256gcm_init_portable(ctx, key);
        return 0;
    }
#if defined(__x86_64__)
    switch (impl) {
        case AES_ISA_VAES512:
            aead_aes256gcm_init_vaes512(ctx, key);
            return 0;
        case AES_ISA_VAES256:
            aead_aes256gcm_init_vaes256(ctx, key);
            return 0;
        case AES_ISA_AESNI:
            aead_aes256gcm_init_aesni(ctx, key);
            return 0;
        default:
            return -1;
    }
#elif defined(__aarch64__)
    if (impl != AES_ISA_ARMV8) return -1;
    aead_aes256gcm_init_armv8(ctx, key);
    return 0;
#else
    return -1;
#endif
}
}  // namespace

int aead_aes256gcm_init(aes256gcm_ctx* ctx, const uint8_t key[32], int impl) noexcept {
    if (impl < 0) impl = aes_isa_selected();
    if (impl > aes_isa_supported()) return -1;
    if (init_kernel(ctx, key, impl) != 0) return -1;
    ctx->live = kLive;
    return 0;
}

void aead_aes256gcm_wipe(aes256gcm_ctx* ctx) noexcept { detail::secure_wipe(ctx, sizeof *ctx); }

namespace {
// A context is usable only if init built it for a kernel this build has (a wiped or
// uninitialised one must never run: all-zero keys would make tags forgeable).
inline bool valid(const aes256gcm_ctx* ctx) {
    if (ctx->live != kLive) return false;
#if defined(__x86_64__)
    return ctx->impl == AES_ISA_NONE || ctx->impl == AES_ISA_AESNI ||
           ctx->impl == AES_ISA_VAES256 || ctx->impl == AES_ISA_VAES512;
#elif defined(__aarch64__)
    return ctx->impl == AES_ISA_NONE || ctx->impl == AES_ISA_ARMV8;
#else
    return ctx->impl == AES_ISA_NONE;
#endif
}
}  // namespace

int aead_aes256gcm_encrypt_ctx(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                               const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                               const aes256gcm_ctx* ctx) noexcept {
    if (!valid(ctx)) {
        detail::secure_wipe(c, mlen);
        detail::secure_wipe(tag, AEAD_AES256GCM_ABYTES);
        return -1;
    }
    if (ctx->impl == AES_ISA_NONE) {
        aead_aes256gcm_encrypt_portable(c, tag, m, mlen, ad, adlen, nonce, ctx);
        return 0;
    }
#if defined(__x86_64__)
    switch (ctx->impl) {
        case AES_ISA_VAES512:
            aead_aes256gcm_encrypt_vaes512(c, tag, m, mlen, ad, adlen, nonce, ctx);
            break;
        case AES_ISA_VAES256:
            aead_aes256gcm_encrypt_vaes256(c, tag, m, mlen, ad, adlen, nonce, ctx);
            break;
        default:
            aead_aes256gcm_encrypt_aesni(c, tag, m, mlen, ad, adlen, nonce, ctx);
    }
#elif defined(__aarch64__)
    aead_aes256gcm_encrypt_armv8(c, tag, m, mlen, ad, adlen, nonce, ctx);
#endif
    return 0;
}

int aead_aes256gcm_decrypt_ctx(uint8_t* m, const uint8_t* c, size_t clen, const uint8_t tag[16],
                               const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                               const aes256gcm_ctx* ctx) noexcept {
    if (!valid(ctx)) {
        detail::secure_wipe(m, clen);
        return -1;
    }
    if (ctx->impl == AES_ISA_NONE)
        return aead_aes256gcm_decrypt_portable(m, c, clen, tag, ad, adlen, nonce, ctx);
#if defined(__x86_64__)
    switch (ctx->impl) {
        case AES_ISA_VAES512:
            return aead_aes256gcm_decrypt_vaes512(m, c, clen, tag, ad, adlen, nonce, ctx);
        case AES_ISA_VAES256:
            return aead_aes256gcm_decrypt_vaes256(m, c, clen, tag, ad, adlen, nonce, ctx);
        default:
            return aead_aes256gcm_decrypt_aesni(m, c, clen, tag, ad, adlen, nonce, ctx);
    }
#elif defined(__aarch64__)
    return aead_aes256gcm_decrypt_armv8(m, c, clen, tag, ad, adlen, nonce, ctx);
#else
    return -1;
#endif
}

int aead_aes256gcm_encrypt(uint8_t* c, uint8_t tag[16], const uint8_t* m, size_t mlen,
                           const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                           const uint8_t key[32]) noexcept {
    aes256gcm_ctx ctx;
    if (aead_aes256gcm_init(&ctx, key, -1) != 0) {
        detail::secure_wipe(c, mlen);
        detail::secure_wipe(tag, AEAD_AES256GCM_ABYTES);
        return -1;
    }
    const int r = aead_aes256gcm_encrypt_ctx(c, tag, m, mlen, ad, adlen, nonce, &ctx);
    aead_aes256gcm_wipe(&ctx);
    return r;
}

int aead_aes256gcm_decrypt(uint8_t* m, const uint8_t* c, size_t clen, const uint8_t tag[16],
                           const uint8_t* ad, size_t adlen, const uint8_t nonce[12],
                           const uint8_t key[32]) noexcept {
    aes256gcm_ctx ctx;
    if (aead_aes256gcm_init(&ctx, key, -1) != 0) {
        detail::secure_wipe(m, clen);
        return -1;
    }
    const int r = aead_aes256gcm_decrypt_ctx(m, c, clen, tag, ad, adlen, nonce, &ctx);
    aead_aes256gcm_wipe(&ctx);
    return r;
}

int aead_aes256gcm_encrypt_many(uint8_t* const* out, const uint8_t* const* m, const size_t* mlen,
                                const uint8_t* const* ad, const size_t* adlen,
                                const uint8_t* nonces, size_t n, const aes256gcm_ctx* ctx) noexcept {
    if (!valid(ctx)) {
        for (size_t i = 0; i < n; ++i) detail::secure_wipe(out[i], mlen[i] + AEAD_AES256GCM_ABYTES);
        return -1;
    }
#if defined(__x86_64__)
    if (ctx->impl == AES_ISA_VAES512) {
        aead_aes256gcm_encrypt_many_vaes512(out, m, mlen, ad, adlen, nonces, n, ctx);
        return 0;
    }
    if (ctx->impl == AES_ISA_VAES256) {
        aead_aes256gcm_encrypt_many_vaes256(out, m, mlen, ad, adlen, nonces, n, ctx);
        return 0;
    }
#endif
    // Paths without a batch kernel: one message at a time through the single-message dispatch.
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* a = ad ? ad[i] : nullptr;
        const size_t al = ad ? adlen[i] : 0;
        uint8_t* o = out[i];
        (void)aead_aes256gcm_encrypt_ctx(o, o + mlen[i], m[i], mlen[i], a, al, nonces + 12 * i,
                                         ctx);  // cannot fail: ctx checked above
    }
    return 0;
}

size_t aead_aes256gcm_decrypt_many(uint8_t* const* m, uint8_t* status, const uint8_t* const* c,
                                   const size_t* clen, const uint8_t* const* ad,
                                   const size_t* adlen, const uint8_t* nonces, size_t n,
                                   int wipe_all_on_failure, const aes256gcm_ctx* ctx) noexcept {
    auto plain_len = [&](size_t i) { return clen[i] < AEAD_AES256GCM_ABYTES ? 0 : clen[i] - AEAD_AES256GCM_ABYTES; };
    size_t failed = 0;
    if (!valid(ctx)) {
        for (size_t i = 0; i < n; ++i) {
            status[i] = 0;
            detail::secure_wipe(m[i], plain_len(i));
        }
        return n;
    }
    bool batched = false;
#if defined(__x86_64__)
    if (ctx->impl == AES_ISA_VAES512) {
        failed = aead_aes256gcm_decrypt_many_vaes512(m, status, c, clen, ad, adlen, nonces, n, ctx);
        batched = true;
    } else if (ctx->impl == AES_ISA_VAES256) {
        failed = aead_aes256gcm_decrypt_many_vaes256(m, status, c, clen, ad, adlen, nonces, n, ctx);
        batched = true;
    }
#endif
    // Paths without a batch kernel: one message at a time through the single-message dispatch.
    for (size_t i = 0; !batched && i < n; ++i) {
        if (clen[i] < AEAD_AES256GCM_ABYTES) {
            status[i] = 0;
            ++failed;
            continue;
        }
        const uint8_t* a = ad ? ad[i] : nullptr;
        const size_t al = ad ? adlen[i] : 0;
        const size_t len = clen[i] - AEAD_AES256GCM_ABYTES;
        const int r = aead_aes256gcm_decrypt_ctx(m[i], c[i], len, c[i] + len, a, al,
                                                 nonces + 12 * i, ctx);
        status[i] = r == 0 ? 1 : 0;
        failed += r != 0;
    }
    if (failed && wipe_all_on_failure)
        for (size_t i = 0; i < n; ++i) detail::secure_wipe(m[i], plain_len(i));
    return failed;
}

}  // namespace privcity
