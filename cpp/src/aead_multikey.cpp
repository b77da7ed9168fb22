// AES-256-GCM envelopes under many keys in one call: each message has its own key (a device's
// key for one epoch), so the per-message cost is a key expansion (about 0.3 us) instead of a
// round trip through Python per envelope. The envelope layout is privcity's wire format,
// header || ciphertext || tag with the header as associated data (crypto/envelope.py).
#include <cstring>

#include "privcity/aead.h"
#include "secure.h"

namespace privcity {

int aead_aes256gcm_seal_multikey(uint8_t* const* out, const uint8_t* const* head,
                                 const size_t* headlen, const uint8_t* prefix, size_t prefixlen,
                                 const uint8_t* const* body, const size_t* bodylen,
                                 const uint8_t* nonces, const uint8_t* keys, size_t n,
                                 int impl) noexcept {
    aes256gcm_ctx ctx;
    int status = 0;
    for (size_t i = 0; i < n; ++i) {
        uint8_t* o = out[i];
        const size_t hl = headlen[i], ml = prefixlen + bodylen[i];
        if (status == 0 && aead_aes256gcm_init(&ctx, keys + 32 * i, impl) != 0) status = -1;
        if (status != 0) break;
        std::memcpy(o, head[i], hl);
        uint8_t* c = o + hl;
        if (prefixlen) std::memcpy(c, prefix, prefixlen);
        if (bodylen[i]) std::memcpy(c + prefixlen, body[i], bodylen[i]);
        // In place (c == m), with the header just written as the associated data.
        status = aead_aes256gcm_encrypt_ctx(c, c + ml, c, ml, o, hl, nonces + 12 * i, &ctx);
        aead_aes256gcm_wipe(&ctx);
    }
    if (status != 0) {  // fail closed: no output holds plaintext
        for (size_t i = 0; i < n; ++i)
            detail::secure_wipe(out[i], headlen[i] + prefixlen + bodylen[i] + AEAD_AES256GCM_ABYTES);
    }
    aead_aes256gcm_wipe(&ctx);
    return status;
}

size_t aead_aes256gcm_open_multikey(uint8_t* const* m, uint8_t* status, const uint8_t* const* env,
                                    const size_t* envlen, const size_t* headlen,
                                    const uint8_t* nonces, const uint8_t* keys, size_t n,
                                    int impl) noexcept {
    aes256gcm_ctx ctx;
    size_t failed = 0;
    for (size_t i = 0; i < n; ++i) {
        status[i] = 0;
        if (envlen[i] < headlen[i] + AEAD_AES256GCM_ABYTES) {  // no room for the tag
            ++failed;
            continue;
        }
        const size_t clen = envlen[i] - headlen[i] - AEAD_AES256GCM_ABYTES;
        if (aead_aes256gcm_init(&ctx, keys + 32 * i, impl) != 0) {
            detail::secure_wipe(m[i], clen);
            ++failed;
            continue;
        }
        const uint8_t* c = env[i] + headlen[i];
        const int r = aead_aes256gcm_decrypt_ctx(m[i], c, clen, c + clen, env[i], headlen[i],
                                                 nonces + 12 * i, &ctx);
        aead_aes256gcm_wipe(&ctx);
        status[i] = r == 0 ? 1 : 0;
        failed += r != 0;
    }
    return failed;
}

}  // namespace privcity
