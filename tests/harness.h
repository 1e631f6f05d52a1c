/* harness.h — the smallest test harness that can fail.
 * CHECK records a failure with file:line and goes on; each test program
 * ends with TEST_END, which prints "N passed, N failed" and exits non-zero
 * on any failure. A check counts as one passed or one failed.
 * SKIP records a part that did not run for want of a fixture, oracle or
 * device: the summary line then ends with ", K skipped (reason; ...)". With
 * Q35_REQUIRE_ALL=1 in the environment (CI sets it) a skip is a failure. */
#ifndef Q35_TEST_HARNESS_H
#define Q35_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int h_passed, h_failed, h_skipped;
static char h_skip_why[512];

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

/* A part of the test that did not run, and why (one short phrase). */
#define SKIP(...)                                                            \
    do {                                                                     \
        char h_why_[160];                                                    \
        snprintf(h_why_, sizeof h_why_, __VA_ARGS__);                        \
        printf("skipped: %s\n", h_why_);                                     \
        size_t h_n_ = strlen(h_skip_why);                                    \
        snprintf(h_skip_why + h_n_, sizeof h_skip_why - h_n_, "%s%s",        \
                 h_skipped ? "; " : "", h_why_);                             \
        h_skipped++;                                                         \
        const char *h_req_ = getenv("Q35_REQUIRE_ALL");                      \
        if (h_req_ && strcmp(h_req_, "1") == 0) {                            \
            h_failed++;                                                      \
            fprintf(stderr, "FAIL %s:%d: skipped under Q35_REQUIRE_ALL=1: %s\n", \
                    __FILE__, __LINE__, h_why_);                             \
        }                                                                    \
    } while (0)

#define TEST_END()                                                           \
    do {                                                                     \
        if (h_skipped)                                                       \
            printf("%s: %d passed, %d failed, %d skipped (%s)\n", __FILE__,   \
                   h_passed, h_failed, h_skipped, h_skip_why);               \
        else                                                                 \
            printf("%s: %d passed, %d failed\n", __FILE__, h_passed, h_failed); \
        return h_failed ? 1 : 0;                                             \
    } while (0)

/* Where the oracles live (../shared/oracles/setup.sh): $Q35_ORACLES, else
 * ~/.cache/q35-oracles; NULL when neither holds them. */
static inline const char *oracles_dir(void) {
    static char h_dir_[1024];
    const char *s = getenv("Q35_ORACLES");
    if (s && *s) snprintf(h_dir_, sizeof h_dir_, "%s", s);
    else if (getenv("HOME")) snprintf(h_dir_, sizeof h_dir_, "%s/.cache/q35-oracles", getenv("HOME"));
    else return NULL;
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/node_modules", h_dir_);
    FILE *f = fopen(probe, "r");
    if (!f) return NULL;
    fclose(f);
    return h_dir_;
}

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
