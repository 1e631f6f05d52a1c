/* harness.h — the smallest test harness that can fail.
 * CHECK records a failure with file:line and goes on; each test program
 * ends with TEST_END, which prints "N passed, N failed" and exits non-zero
 * on any failure. A check counts as one passed or one failed. */
#ifndef Q35_TEST_HARNESS_H
#define Q35_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int h_passed, h_failed;

#define CHECK(cond) CHECKF(cond, "%s", #cond)
#define CHECKF(cond, ...)                                                   \
    do {                                                                     \
        if (cond) {                                                          \
            h_passed++;                                                      \
        } else {                                                             \
            h_failed++;                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

#define TEST_END()                                                           \
    do {                                                                     \
        printf("%s: %d passed, %d failed\n", __FILE__, h_passed, h_failed); \
        return h_failed ? 1 : 0;                                             \
    } while (0)

/* Where ../shared lives: $Q35_SHARED, else ../shared from the repo root. */
static inline const char *shared_dir(void) {
    const char *s = getenv("Q35_SHARED");
    return s && *s ? s : "../shared";
}

static inline char *shared_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", shared_dir(), rel);
    return buf;
}

#endif
