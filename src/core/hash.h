/* hash.h — FNV-1a over bytes, for the string hash tables (tokenizer piece
 * lookup, tokenizer.json vocabulary). */
#ifndef Q35_CORE_HASH_H
#define Q35_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t q35_hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#endif
