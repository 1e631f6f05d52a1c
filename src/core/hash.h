/* hash.h — FNV-1a over bytes, for the string hash tables (tokenizer piece
 * lookup, tokenizer.json vocabulary) and a model file's fingerprint. */
#ifndef Q35_CORE_HASH_H
#define Q35_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Continues hash h over n more bytes at p. */
static inline uint64_t q35_hash_more(uint64_t h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline uint64_t q35_hash_bytes(const char *s, size_t n) { return q35_hash_more(0xcbf29ce484222325ull, s, n); }

#endif
