/* benchtime.h — the clocks and the sort the benchmark programs share:
 * wall time, process CPU time (meaningful at one thread on a loaded
 * machine) and a qsort comparison for taking medians of doubles. */
#ifndef Q35_BENCH_BENCHTIME_H
#define Q35_BENCH_BENCHTIME_H

#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double bench_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
