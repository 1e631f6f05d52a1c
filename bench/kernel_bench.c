/* kernel_bench.c — single-thread throughput of the Q3_5-family row dot
 * products, in GB/s of weight bytes, for every kernel set this CPU has,
 * cache-resident (a matrix of about 0.5 MB, swept repeatedly) and
 * DRAM-resident (about 512 MB, swept once per pass). Row contents are
 * random bytes: every bit pattern is a valid code, and the kernels' work
 * does not depend on the values. Median of 5 passes. Sets with R16
 * kernels get a second line, "SET-r16": the same rows repacked
 * (format/q35r16.h) and run by q35_r16_rows.
 *   build/bench/kernel_bench [cache|dram|both]   */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchtime.h"
#include "format/q35r16.h"
#include "kernels/kernels.h"

static double run(const q35_kernels *k, const q35_layout *L, const uint8_t *rows, const q35_qact *a,
                  const float *table, int sweeps) {
    double t[5];
    volatile float sink = 0;
    for (int p = 0; p < 5; p++) {
        const double t0 = bench_now();
        for (int s = 0; s < sweeps; s++)
            for (int64_t r = 0; r < L->m; r++) sink += k->q35_row_dot(L, table, rows + (uint64_t)r * L->row_bytes, a);
        t[p] = bench_now() - t0;
    }
    qsort(t, 5, sizeof t[0], bench_cmp_double);
    (void)sink;
    return (double)L->row_bytes * (double)L->m * sweeps / t[2] / 1e9;
}

/* The same through q35_r16_rows on the repacked rows (GB/s of R16 bytes). */
static double run_r16(const q35_kernels *k, const q35_layout *L, const uint8_t *packed, const q35_qact *a,
                      const float *table, int sweeps, float *out) {
    double t[5];
    for (int p = 0; p < 5; p++) {
        const double t0 = bench_now();
        for (int s = 0; s < sweeps; s++) k->q35_r16_rows(L, table, packed, 0, L->m, a, out);
        t[p] = bench_now() - t0;
    }
    qsort(t, 5, sizeof t[0], bench_cmp_double);
    return (double)q35_r16_bytes(L) * sweeps / t[2] / 1e9;
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "both";
    const int types[] = {Q35_TYPE_Q2_5, Q35_TYPE_Q3_5, Q35_TYPE_Q4_5, Q35_TYPE_Q8_S};
    const char *sets[] = {"scalar", "avx2", "avx512", "neon"};
    const int64_t n = 4096;
    printf("| type | set | cache-resident GB/s | DRAM-resident GB/s |\n|---|---|---:|---:|\n");
    for (int ti = 0; ti < 4; ti++) {
        q35_layout Lc, Ld;
        q35_layout_init(&Lc, types[ti], n, 1); /* rows sized below */
        const int64_t rows_cache = (int64_t)(512e3 / (double)Lc.row_bytes) + 1;
        const int64_t rows_dram = (int64_t)(512e6 / (double)Lc.row_bytes) + 1;
        q35_layout_init(&Lc, types[ti], n, rows_cache);
        q35_layout_init(&Ld, types[ti], n, rows_dram);
        const int want_dram = strcmp(which, "cache") != 0, want_cache = strcmp(which, "dram") != 0;
        uint8_t *big = want_dram ? malloc(Ld.row_bytes * (uint64_t)rows_dram) : NULL;
        uint8_t *small = malloc(Lc.row_bytes * (uint64_t)rows_cache);
        uint64_t s = 88172645463325252ull;
        for (uint64_t i = 0; big && i < Ld.row_bytes * (uint64_t)rows_dram; i += 8) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            memcpy(big + i, &s, Ld.row_bytes * (uint64_t)rows_dram - i < 8 ? Ld.row_bytes * (uint64_t)rows_dram - i : 8);
        }
        for (uint64_t i = 0; i < Lc.row_bytes * (uint64_t)rows_cache; i++) small[i] = (uint8_t)(i * 2654435761u >> 13);
        float *x = malloc((size_t)Lc.np * sizeof *x), table[256];
        for (int64_t i = 0; i < Lc.np; i++) x[i] = (float)((i * 7919) % 201 - 100) / 50.0f;
        q35_scale_table(0.01f, table);
        q35_qact a = {Lc.np, malloc((size_t)Lc.np), malloc((size_t)Lc.n_blocks * 4), malloc((size_t)Lc.n_blocks * 4)};
        q35_quantize_act_ref(x, Lc.np, a.q, a.d, a.sum);
        for (int si = 0; si < 4; si++) {
            q35_kernels k;
            if (q35_kernels_select(&k, sets[si]) != 0) continue;
            const double gc = want_cache ? run(&k, &Lc, small, &a, table, strcmp(sets[si], "scalar") ? 200 : 10) : 0;
            const double gd = want_dram ? run(&k, &Ld, big, &a, table, 1) : 0;
            printf("| %s | %s | %.2f | %.2f |\n", q35_family_name(types[ti]), sets[si], gc, gd);
            if (k.q35_r16_rows && strcmp(sets[si], "scalar") != 0) {
                uint8_t *pc = malloc(q35_r16_bytes(&Lc)), *pd = big ? malloc(q35_r16_bytes(&Ld)) : NULL;
                float *out = malloc((size_t)(rows_dram > rows_cache ? rows_dram : rows_cache) * sizeof *out);
                q35_r16_pack(&Lc, small, 0, (rows_cache + 15) / 16, pc);
                if (pd) q35_r16_pack(&Ld, big, 0, (rows_dram + 15) / 16, pd);
                const double rc = want_cache ? run_r16(&k, &Lc, pc, &a, table, 200, out) : 0;
                const double rd = pd ? run_r16(&k, &Ld, pd, &a, table, 1, out) : 0;
                printf("| %s | %s-r16 | %.2f | %.2f |\n", q35_family_name(types[ti]), sets[si], rc, rd);
                free(pc); free(pd); free(out);
            }
            fflush(stdout);
        }
        free(big); free(small); free(x); free(a.q); free(a.d); free(a.sum);
    }
    return 0;
}
