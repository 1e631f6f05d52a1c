/* checked.h — 64-bit size arithmetic that reports overflow instead of
 * wrapping. Every size computed from numbers read out of a file goes
 * through these. Each returns 0 on success, 1 on overflow. */
#ifndef Q35_CORE_CHECKED_H
#define Q35_CORE_CHECKED_H

#include <stdint.h>

static inline int q35_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int q35_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
/* a*b*c */
static inline int q35_mul3_u64(uint64_t a, uint64_t b, uint64_t c,
                               uint64_t *out) {
    uint64_t t;
    return q35_mul_u64(a, b, &t) || q35_mul_u64(t, c, out);
}

#endif
