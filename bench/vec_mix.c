/* vec_mix.c — which vector instructions share execution units with
 * vpdpbusd on this CPU, on registers alone (no memory in the way, one
 * thread): the rate of 8 independent vpdpbusd zmm per loop pass, alone and
 * with 2 (or 4) more independent instructions of one kind beside them (the
 * operations the R16 batch kernel adds per vector and block: vmulps,
 * vaddps, vcvtdq2ps, vgf2p8affineqb, vpaddd). If the added kind runs on
 * other units, vpdpbusd keeps its rate; if it runs on the same ones, the
 * vpdpbusd rate falls to what the units' total allows. Medians of 5
 * passes.
 *   build/bench/vec_mix */
#include <stdio.h>
#include <stdlib.h>

#include "benchtime.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define ITERS 50000000L
#define TGT __attribute__((target("avx512f,avx512bw,avx512vnni,gfni"), noinline))

enum { NONE, MULPS, ADDPS, CVT, AFFINE, PADDD, N_KINDS };
static const char *kind_name[N_KINDS] = {"nothing", "vmulps", "vaddps", "vcvtdq2ps", "vgf2p8affineqb", "vpaddd"};

/* 8 vpdpbusd chains (one per accumulator, each 1 per pass) and `extra`
 * (0, 2 or 4) independent chains of the kind beside them */
#define DP(v) v = _mm512_dpbusd_epi32(v, x, y)
#define KEEP8 "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7)
#define LOOP(EXTRA_OPS)                                                                        \
    for (long it = 0; it < ITERS; it++) {                                                      \
        DP(a0), DP(a1), DP(a2), DP(a3), DP(a4), DP(a5), DP(a6), DP(a7);                        \
        EXTRA_OPS;                                                                             \
        __asm__ volatile("" : KEEP8);                                                          \
        __asm__ volatile("" : "+v"(f0), "+v"(f1), "+v"(f2), "+v"(f3), "+v"(i0), "+v"(i1), "+v"(i2), \
                         "+v"(i3));                                                            \
    }

TGT static long mix_loop(int kind, int extra) {
    __m512i a0 = _mm512_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(5), m = _mm512_set1_epi64(0x0102040810204080LL);
    __m512 f0 = _mm512_set1_ps(1.0f), f1 = f0, f2 = f0, f3 = f0;
    const __m512 c = _mm512_set1_ps(1.0000001f);
    __m512i i0 = _mm512_set1_epi32(1), i1 = i0, i2 = i0, i3 = i0;
    if (kind == NONE) LOOP((void)0)
    else if (kind == MULPS && extra == 2) LOOP((f0 = _mm512_mul_ps(f0, c), f1 = _mm512_mul_ps(f1, c)))
    else if (kind == MULPS) LOOP((f0 = _mm512_mul_ps(f0, c), f1 = _mm512_mul_ps(f1, c), f2 = _mm512_mul_ps(f2, c),
                                  f3 = _mm512_mul_ps(f3, c)))
    else if (kind == ADDPS && extra == 2) LOOP((f0 = _mm512_add_ps(f0, c), f1 = _mm512_add_ps(f1, c)))
    else if (kind == ADDPS) LOOP((f0 = _mm512_add_ps(f0, c), f1 = _mm512_add_ps(f1, c), f2 = _mm512_add_ps(f2, c),
                                  f3 = _mm512_add_ps(f3, c)))
    else if (kind == CVT && extra == 2) LOOP((f0 = _mm512_cvtepi32_ps(i0), f1 = _mm512_cvtepi32_ps(i1),
                                              i0 = _mm512_castps_si512(f1), i1 = _mm512_castps_si512(f0)))
    else if (kind == CVT) LOOP((f0 = _mm512_cvtepi32_ps(i0), f1 = _mm512_cvtepi32_ps(i1), f2 = _mm512_cvtepi32_ps(i2),
                                f3 = _mm512_cvtepi32_ps(i3), i0 = _mm512_castps_si512(f1),
                                i1 = _mm512_castps_si512(f0), i2 = _mm512_castps_si512(f3),
                                i3 = _mm512_castps_si512(f2)))
    else if (kind == AFFINE && extra == 2) LOOP((i0 = _mm512_gf2p8affine_epi64_epi8(i0, m, 0),
                                                 i1 = _mm512_gf2p8affine_epi64_epi8(i1, m, 0)))
    else if (kind == AFFINE) LOOP((i0 = _mm512_gf2p8affine_epi64_epi8(i0, m, 0),
                                   i1 = _mm512_gf2p8affine_epi64_epi8(i1, m, 0),
                                   i2 = _mm512_gf2p8affine_epi64_epi8(i2, m, 0),
                                   i3 = _mm512_gf2p8affine_epi64_epi8(i3, m, 0)))
    else if (kind == PADDD && extra == 2) LOOP((i0 = _mm512_add_epi32(i0, x), i1 = _mm512_add_epi32(i1, x)))
    else LOOP((i0 = _mm512_add_epi32(i0, x), i1 = _mm512_add_epi32(i1, x), i2 = _mm512_add_epi32(i2, x),
               i3 = _mm512_add_epi32(i3, x)))
    const __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                       _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    const __m512i t = _mm512_add_epi32(_mm512_add_epi32(i0, i1), _mm512_add_epi32(i2, i3));
    const __m512 u = _mm512_add_ps(_mm512_add_ps(f0, f1), _mm512_add_ps(f2, f3));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(s, t)) + (long)_mm512_reduce_add_ps(u);
}

/* vpdpbusd per second (G) of one pass */
static double pass(int kind, int extra, long *sink) {
    const double t0 = bench_now();
    *sink += mix_loop(kind, extra);
    return 8.0 * ITERS / (bench_now() - t0) / 1e9;
}

int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vnni") ||
        !__builtin_cpu_supports("gfni")) {
        fprintf(stderr, "vec_mix: this CPU lacks AVX-512 VNNI or GFNI; nothing measured\n");
        return 1;
    }
    long sink = 0;
    double base[5];
    for (int p = 0; p < 5; p++) base[p] = pass(NONE, 0, &sink);
    qsort(base, 5, sizeof base[0], bench_cmp_double);
    printf("8 vpdpbusd per pass, nothing beside: %.2f G vpdpbusd/s\n", base[2]);
    for (int kind = 1; kind < N_KINDS; kind++)
        for (int extra = 2; extra <= 4; extra += 2) {
            double r[5];
            for (int p = 0; p < 5; p++) r[p] = pass(kind, extra, &sink);
            qsort(r, 5, sizeof r[0], bench_cmp_double);
            printf("8 vpdpbusd + %d %-15s %.2f G vpdpbusd/s (%.2fx alone), %.2f G instructions/s\n", extra,
                   kind_name[kind], r[2], r[2] / base[2], r[2] * (8 + extra) / 8);
        }
    if (sink == 42) fputc(' ', stderr); /* uses the results */
    return 0;
}

#else
int main(void) {
    fprintf(stderr, "vec_mix: x86-64 only; nothing measured\n");
    return 1;
}
#endif
