/* cpu_scaling.c — what a second thread adds on this CPU, with no memory in
 * the way: the rate of vpdpbusd (AVX-512 VNNI, the Q3_5 kernels' int8 dot
 * product) on registers alone, 12 independent accumulators per thread,
 * and the rate of a dependent chain of scalar operations (one per cycle or
 * so, bound by latency, not by execution units), at 1 thread and at T.
 * Two threads on two physical cores give about 2x on both; two threads on
 * one core's two hardware threads (SMT) give about 2x on the chain but
 * share the vector units, so much less on vpdpbusd. Medians of 5 passes,
 * the thread counts interleaved.
 *   build/bench/cpu_scaling [T]    (T defaults to 2) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchtime.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define VNNI_ITERS 40000000L /* per thread: 12 vpdpbusd each */
#define CHAIN_ITERS 400000000L

/* 12 named accumulators (an array would live on the stack) */
#define VNNI_STEP(v) v = _mm512_dpbusd_epi32(v, x, y)
__attribute__((target("avx512f,avx512vnni"))) static long vnni_loop(long iters) {
    __m512i a0 = _mm512_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
            a9 = a0, a10 = a0, a11 = a0;
    const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(5);
    for (long it = 0; it < iters; it++) {
        VNNI_STEP(a0), VNNI_STEP(a1), VNNI_STEP(a2), VNNI_STEP(a3), VNNI_STEP(a4), VNNI_STEP(a5);
        VNNI_STEP(a6), VNNI_STEP(a7), VNNI_STEP(a8), VNNI_STEP(a9), VNNI_STEP(a10), VNNI_STEP(a11);
        /* keeps the chains from being folded into one multiplication */
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                         "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    const __m512i s = _mm512_add_epi32(
        _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                         _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7))),
        _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    return _mm512_reduce_add_epi32(s);
}

static long chain_loop(long iters, unsigned long seed) {
    unsigned long x = seed;
    for (long it = 0; it < iters; it++) {
        x = x * 3 + 1;
        __asm__ volatile("" : "+r"(x));
    }
    return (long)x;
}

/* Operations per second per thread of one pass at nt threads. */
static double pass(int vnni, int nt) {
    long sink = 0;
    const double t0 = bench_now();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
    sink += vnni ? vnni_loop(VNNI_ITERS) : chain_loop(CHAIN_ITERS, (unsigned long)omp_get_thread_num() + 1);
    const double dt = bench_now() - t0;
    if (sink == 42) fputc(' ', stderr); /* uses the results */
    return (vnni ? 12.0 * VNNI_ITERS : (double)CHAIN_ITERS) / dt;
}

int main(int argc, char **argv) {
    const int T = argc > 1 ? atoi(argv[1]) : 2;
    if (T < 2 || T > 256) {
        fprintf(stderr, "cpu_scaling: T must be 2 to 256, not '%s'\n", argv[1]);
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vnni")) {
        fprintf(stderr, "cpu_scaling: this CPU has no AVX-512 VNNI; nothing measured\n");
        return 1;
    }
    const char *what[2] = {"scalar chain (latency-bound)", "vpdpbusd zmm (throughput-bound)"};
    for (int vnni = 1; vnni >= 0; vnni--) {
        double r1[5], rT[5];
        for (int p = 0; p < 5; p++) {
            r1[p] = pass(vnni, 1);
            rT[p] = pass(vnni, T);
        }
        qsort(r1, 5, sizeof r1[0], bench_cmp_double);
        qsort(rT, 5, sizeof rT[0], bench_cmp_double);
        printf("%-32s 1 thread %6.2f G/s; %d threads %6.2f G/s each, %6.2f G/s in all = %.2fx one thread\n", what[vnni],
               r1[2] / 1e9, T, rT[2] / 1e9, rT[2] * T / 1e9, rT[2] * T / r1[2]);
    }
    return 0;
}

#else
int main(void) {
    fprintf(stderr, "cpu_scaling: x86-64 only; nothing measured\n");
    return 1;
}
#endif
