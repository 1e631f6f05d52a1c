/* attn_bench.c — one thread's speed of the fp16 attention kernels (scores,
 * softmax, weighted sum) the way decode calls them: one KV head's 8 query
 * heads of 64 dims over T cached positions (or NQ heads of HD dims: 1 of
 * 128 is llama2-7b's), with the scores kernel such a model takes (the
 * _wide one from Q35_ATTN_WIDE_GROUP heads). "hot" repeats one item, its
 * rows in L1/L2; "cold" sweeps ITEMS items of their own rows (about 58 KB
 * each at T = 228), more than the caches hold, as decode meets a cache the
 * weights have just streamed past. Median of 5 passes, GMAC/s of each
 * product and microseconds per item.
 *   build/bench/attn_bench [T (228)] [ITEMS (4000)] [KERNELS (fastest: -)] [NQ (8)] [HD (64)] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchtime.h"
#include "kernels/kernels.h"

enum { LDS = 4096 };

typedef struct shape {
    int nq, hd; /* query heads per item, head dimension */
} shape;

typedef struct pass {
    double scores, softmax, wsum; /* seconds */
} pass;

static pass run(const q35_kernels *k, shape sh, const uint16_t *K, const uint16_t *V, int64_t T, int items,
                int sweeps, const float *q, float *att, float *out) {
    pass p = {0, 0, 0};
    const int HD = sh.hd, NQ = sh.nq;
    const size_t per = (size_t)T * HD;
    /* the kernel a model with NQ query heads per KV head takes (session.c) */
    const q35_attn_scores_f16_fn scores = NQ >= Q35_ATTN_WIDE_GROUP ? k->attn_scores_f16_wide : k->attn_scores_f16;
    for (int s = 0; s < sweeps; s++)
        for (int it = 0; it < items; it++) {
            const double a = bench_now();
            scores(att, LDS, K + (size_t)it * per, HD, q, NQ, HD, T);
            const double b = bench_now();
            for (int j = 0; j < NQ; j++) k->softmax_f32(att + j * LDS, T);
            const double c = bench_now();
            k->attn_wsum_f16(out, att, LDS, V + (size_t)it * per, HD, NQ, HD, T);
            const double d = bench_now();
            p.scores += b - a, p.softmax += c - b, p.wsum += d - c;
        }
    return p;
}

static int cmp_total(const void *x, const void *y) {
    const pass *a = x, *b = y;
    const double s = a->scores + a->softmax + a->wsum, t = b->scores + b->softmax + b->wsum;
    return s < t ? -1 : s > t;
}

static void report(const char *what, const q35_kernels *k, shape sh, const uint16_t *K, const uint16_t *V,
                   int64_t T, int items, int sweeps, const float *q, float *att, float *out) {
    pass p[5];
    const int HD = sh.hd, NQ = sh.nq;
    for (int i = 0; i < 5; i++) p[i] = run(k, sh, K, V, T, items, sweeps, q, att, out);
    qsort(p, 5, sizeof p[0], cmp_total);
    const double n = (double)items * sweeps, mac = n * (double)T * HD * NQ;
    printf("%-4s T=%lld: scores %6.1f GMAC/s, softmax %5.2f us, wsum %6.1f GMAC/s, %6.2f us per item\n", what,
           (long long)T, mac / p[2].scores / 1e9, p[2].softmax / n * 1e6, mac / p[2].wsum / 1e9,
           (p[2].scores + p[2].softmax + p[2].wsum) / n * 1e6);
}

int main(int argc, char **argv) {
    const int64_t T = argc > 1 ? atoll(argv[1]) : 228;
    const int items = argc > 2 ? atoi(argv[2]) : 4000;
    const shape sh = {argc > 4 ? atoi(argv[4]) : 8, argc > 5 ? atoi(argv[5]) : 64};
    const int HD = sh.hd, NQ = sh.nq;
    if (T < 1 || T > LDS || items < 1 || NQ < 1 || NQ > 64 || HD < 1 || HD > 256) {
        fprintf(stderr, "attn_bench: T must be 1..%d, ITEMS at least 1, NQ 1..64 and HD 1..256\n", LDS);
        return 1;
    }
    const char *set = argc > 3 && strcmp(argv[3], "-") != 0 ? argv[3] : NULL;
    q35_kernels k;
    if (q35_kernels_select(&k, set)) {
        fprintf(stderr, "attn_bench: no kernel set '%s' on this CPU\n", argv[3]);
        return 1;
    }
    const size_t per = (size_t)T * HD;
    uint16_t *K = malloc(per * items * sizeof *K), *V = malloc(per * items * sizeof *V);
    float *q = malloc(NQ * HD * sizeof *q), *att = malloc((size_t)NQ * LDS * sizeof *att),
          *out = malloc(NQ * HD * sizeof *out);
    if (!K || !V || !q || !att || !out) {
        fprintf(stderr, "attn_bench: out of memory\n");
        return 1;
    }
    srand(1);
    for (size_t i = 0; i < per * items; i++) { /* halves in [1, 2) and [0.5, 1) */
        K[i] = (uint16_t)(0x3c00 ^ (rand() & 0x3ff));
        V[i] = (uint16_t)(0x3800 ^ (rand() & 0x3ff));
    }
    for (int i = 0; i < NQ * HD; i++) q[i] = (float)rand() / (float)RAND_MAX;
    printf("kernels %s, 1 thread, %d query heads of %d dims per item\n", k.name, NQ, HD);
    report("hot", &k, sh, K, V, T, 1, 2000, q, att, out);
    report("cold", &k, sh, K, V, T, items, 1, q, att, out);
    free(K), free(V), free(q), free(att), free(out);
    return 0;
}
