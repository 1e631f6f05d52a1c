/* test_q35.c — the Q3_5 family: layout budgets, lossless packing, header
 * validation, the quantizer's error, and every SIMD kernel against the
 * reference (integer block sums bit-identical, row dots within rounding),
 * over random and adversarial rows. */
#include <float.h>
#include <stdint.h>

#include "format/q35fmt.h"
#include "format/q35r16.h"
#include "harness.h"
#include "kernels/kernels.h"
#include "kernels/q35dot.h"
#include "format/q35quant.h"

static const int types[] = {Q35_TYPE_Q2_5, Q35_TYPE_Q3_5, Q35_TYPE_Q4_5, Q35_TYPE_Q8_S};
static const double budget[] = {2.5, 3.5, 4.5, 8.25};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float gauss(void) {
    double u = ((next() >> 11) + 0.5) / 9007199254740992.0, v = ((next() >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void test_layout(void) {
    /* Q2_5/Q3_5/Q4_5 stay within budget for every shape that fits it at
     * all (n4 = 0 and no padding waste); the header is counted */
    int within = 1, aligned = 1;
    for (int t = 0; t < 3; t++)
        for (int64_t n = 8; n <= 600; n += 4)
            for (int64_t m = 16; m <= 1024; m *= 4) {
                q35_layout L;
                CHECK(q35_layout_init(&L, types[t], n, m) == 0);
                aligned &= L.n4 % 32 == 0 && L.np % 8 == 0 && L.np >= n && L.np < n + 8;
                if (L.n4 > 0) within &= L.total_bytes * 8.0 <= budget[t] * (double)(n * m) + 1e-9;
            }
    CHECK(within && aligned);
    /* the shapes of the issue: stories260K's 172-wide rows, 4096 x 4096 */
    q35_layout L;
    q35_layout_init(&L, Q35_TYPE_Q3_5, 172, 64);
    CHECKF(L.total_bytes * 8.0 / (172.0 * 64) <= 3.5, "172 x 64: %.4f bpw", L.total_bytes * 8.0 / (172.0 * 64));
    q35_layout_init(&L, Q35_TYPE_Q3_5, 4096, 4096);
    CHECKF(L.total_bytes * 8.0 / (4096.0 * 4096) <= 3.5 && L.n4 == 992, "4096 x 4096: %.4f bpw n4 %lld",
           L.total_bytes * 8.0 / (4096.0 * 4096), (long long)L.n4);
    CHECK(q35_layout_init(&L, 12345, 64, 64) == -1);
    CHECK(q35_layout_init(&L, Q35_TYPE_Q3_5, 0, 64) == -1);
    CHECK(q35_layout_init(&L, Q35_TYPE_Q3_5, (int64_t)1 << 50, 64) == -1);
}

static void test_pack(void) {
    const int64_t lens[] = {8, 24, 32, 40, 64, 72, 96, 172, 192, 256, 1000};
    for (int t = 0; t < 4; t++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            q35_layout L;
            q35_layout_init(&L, types[t], lens[li], 64);
            uint8_t *codes = malloc((size_t)L.np), *back = malloc((size_t)L.np), *row = malloc(L.row_bytes);
            uint8_t sc[64], sc2[64];
            int same = 1;
            for (int pass = 0; pass < 3; pass++) {
                for (int64_t j = 0; j < L.np; j++) {
                    const int top = (1 << q35_col_bits(&L, j)) - 1;
                    codes[j] = (uint8_t)(pass == 0 ? top : pass == 1 ? 0 : (int)(next() % (uint64_t)(top + 1)));
                }
                for (int64_t b = 0; b < L.n_blocks; b++) sc[b] = (uint8_t)next();
                q35_pack_row(&L, codes, sc, row);
                q35_unpack_row(&L, row, back, sc2);
                same &= memcmp(codes, back, (size_t)L.np) == 0 && memcmp(sc, sc2, (size_t)L.n_blocks) == 0;
            }
            CHECKF(same, "%s n = %lld: pack/unpack is not lossless", q35_family_name(types[t]), (long long)lens[li]);
            free(codes);
            free(back);
            free(row);
        }
}

static void test_header(void) {
    q35_layout L;
    q35_layout_init(&L, Q35_TYPE_Q3_5, 192, 512);
    float *W = malloc(192 * 512 * sizeof *W);
    for (int i = 0; i < 192 * 512; i++) W[i] = gauss();
    uint8_t *data = malloc(L.total_bytes), *h = malloc(L.header_bytes);
    CHECK(q35_quantize_tensor(&L, W, NULL, 2, data, NULL) == 0);
    const char *why = NULL;
    CHECK(q35_header_check(&L, data, &why) == 0);
    memcpy(h, data, L.header_bytes);
    float nan = NAN;
    memcpy(h, &nan, 4);
    CHECK(q35_header_check(&L, h, &why) == -1 && strstr(why, "base"));
    memcpy(h, data, L.header_bytes);
    h[4] ^= 32; /* n4 */
    CHECK(q35_header_check(&L, h, &why) == -1 && strstr(why, "plus-column count"));
    memcpy(h, data, L.header_bytes);
    for (int i = 0; i < 24; i++) h[8 + i] = 0xFF; /* every column marked */
    CHECK(q35_header_check(&L, h, &why) == -1);
    q35_layout L2;
    q35_layout_init(&L2, Q35_TYPE_Q3_5, 180, 512); /* np 184: columns 180..183 are padding */
    uint8_t *h2 = calloc(1, L2.header_bytes);
    uint32_t n4 = (uint32_t)L2.n4;
    memcpy(h2 + 4, &n4, 4);
    for (int c = 0; c < L2.n4 - 1; c++) h2[8 + c / 8] |= (uint8_t)(1 << (c % 8));
    h2[8 + 181 / 8] |= (uint8_t)(1 << (181 % 8));
    CHECK(q35_header_check(&L2, h2, &why) == -1 && strstr(why, "padding"));
    free(h2);
    free(W);
    free(data);
    free(h);
}

/* Relative RMSE on Gaussian weights, per type; and the dequantized tensor
 * equals what the quantizer measured. */
static void test_quantizer(void) {
    const double limit[] = {0.32, 0.17, 0.085, 0.006};
    for (int t = 0; t < 4; t++) {
        const int64_t n = 512, m = 256;
        q35_layout L;
        q35_layout_init(&L, types[t], n, m);
        float *W = malloc((size_t)(n * m) * sizeof *W), *back = malloc((size_t)(n * m) * sizeof *back);
        for (int64_t i = 0; i < n * m; i++) W[i] = gauss();
        uint8_t *data = malloc(L.total_bytes);
        q35_quant_stats st;
        CHECK(q35_quantize_tensor(&L, W, NULL, 2, data, &st) == 0);
        q35_dequantize_tensor(&L, data, back);
        double e2 = 0, r2 = 0;
        for (int64_t i = 0; i < n * m; i++) {
            e2 += (double)(W[i] - back[i]) * (W[i] - back[i]);
            r2 += (double)W[i] * W[i];
        }
        const double rel = sqrt(e2 / r2);
        CHECKF(fabs(rel - sqrt(st.err2 / st.ref2)) < 1e-6, "%s: measured and recomputed error differ",
               q35_family_name(types[t]));
        CHECKF(rel < limit[t], "%s: relative RMSE %.4f >= %.4f", q35_family_name(types[t]), rel, limit[t]);
        printf("%s on N(0,1) %lldx%lld: %.4f bpw, relative RMSE %.2f%%\n", q35_family_name(types[t]),
               (long long)m, (long long)n, L.total_bytes * 8.0 / (double)(n * m), 100 * rel);
        /* importance shifts error away from important columns */
        float *imp = malloc((size_t)n * sizeof *imp);
        for (int64_t c = 0; c < n; c++) imp[c] = c < 64 ? 100.0f : 1.0f;
        CHECK(q35_quantize_tensor(&L, W, imp, 2, data, NULL) == 0);
        q35_dequantize_tensor(&L, data, back);
        double e_imp = 0, e_rest = 0;
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < n; c++) {
                const double e = (double)(W[r * n + c] - back[r * n + c]) * (W[r * n + c] - back[r * n + c]);
                if (c < 64) e_imp += e; else e_rest += e;
            }
        if (t < 3) CHECKF(e_imp / 64 < e_rest / (double)(n - 64), "%s: important columns not favoured",
                          q35_family_name(types[t]));
        free(imp);
        free(W);
        free(back);
        free(data);
    }
}

/* The scale table of a tensor from the base in its header. */
static void tensor_table(const uint8_t *data, float table[256]) {
    float base;
    memcpy(&base, data, 4);
    q35_scale_table(base, table);
}

/* SIMD kernels against the reference on one quantized tensor. */
static void compare_kernels(const q35_layout *L, const uint8_t *data, const float *x, const char *what) {
    float table[256];
    tensor_table(data, table);
    int8_t *q = malloc((size_t)L->np), *q2 = malloc((size_t)L->np);
    float *d = malloc((size_t)L->n_blocks * 4), *d2 = malloc((size_t)L->n_blocks * 4);
    int32_t *sum = malloc((size_t)L->n_blocks * 4), *sum2 = malloc((size_t)L->n_blocks * 4);
    int32_t *S = malloc((size_t)L->n_blocks * 4), *S2 = malloc((size_t)L->n_blocks * 4);
    q35_quantize_act_ref(x, L->np, q, d, sum);
    q35_kernels k;
    const char *sets[] = {"avx2", "avx512"};
    for (int si = 0; si < 2; si++) {
        if (q35_kernels_select(&k, sets[si]) != 0) continue;
        if (k.q35_quantize_act) {
            k.q35_quantize_act(x, L->np, q2, d2, sum2);
            CHECKF(memcmp(q, q2, (size_t)L->np) == 0 && memcmp(d, d2, (size_t)L->n_blocks * 4) == 0 &&
                       memcmp(sum, sum2, (size_t)L->n_blocks * 4) == 0,
                   "%s %s: activation quantization differs from the reference", sets[si], what);
        }
        const q35_qact a = {L->np, q, d, sum};
        int same = 1, close = 1;
        for (int64_t r = 0; r < L->m; r++) {
            const uint8_t *row = data + L->header_bytes + (uint64_t)r * L->row_bytes;
            q35_block_sums_ref(L, row, q, S);
            k.q35_block_sums(L, row, q, S2);
            same &= memcmp(S, S2, (size_t)L->n_blocks * 4) == 0;
            const float ref = q35_row_dot_ref(L, table, row, &a), got = k.q35_row_dot(L, table, row, &a);
            double mag = 0;
            for (int64_t b = 0; b < L->n_blocks; b++)
                mag += fabs((double)table[row[b]] * d[b]) * (2.0 * abs(S[b]) + 255.0 * abs(sum[b]) + 64 * 255 * 127);
            close &= fabs((double)ref - got) <= 8 * FLT_EPSILON * mag + 1e-35;
        }
        CHECKF(same, "%s %s: integer block sums differ from the reference", sets[si], what);
        CHECKF(close, "%s %s: row dots differ beyond rounding", sets[si], what);
    }
    free(q); free(q2); free(d); free(d2); free(sum); free(sum2); free(S); free(S2);
}

/* n activation vectors made from x (scaled, permuted, alternating sign),
 * quantized by the reference. */
static void acts_new(const q35_layout *L, const float *x, q35_qact *a, int n) {
    float *xs = malloc((size_t)L->np * sizeof *xs);
    for (int t = 0; t < n; t++) {
        a[t].np = L->np;
        a[t].q = malloc((size_t)L->np);
        a[t].d = malloc((size_t)L->n_blocks * 4);
        a[t].sum = malloc((size_t)L->n_blocks * 4);
        for (int64_t j = 0; j < L->np; j++) xs[j] = x[(j * (t + 1)) % L->np] * (t % 2 ? -1.0f : 1.0f) * (float)(t + 1);
        q35_quantize_act_ref(xs, L->np, a[t].q, a[t].d, a[t].sum);
    }
    free(xs);
}

static void acts_free(q35_qact *a, int n) {
    for (int t = 0; t < n; t++) {
        free(a[t].q);
        free(a[t].d);
        free(a[t].sum);
    }
}

/* The batch kernel of every set gives, bit for bit, that set's row dot for
 * each of several activation vectors (prefill == token-by-token decode). */
static void compare_batch(const q35_layout *L, const uint8_t *data, const float *x, const char *what) {
    float table[256];
    tensor_table(data, table);
    enum { NA = 5 };
    q35_qact a[NA];
    acts_new(L, x, a, NA);
    const char *sets[] = {"scalar", "avx2", "avx512", "neon"};
    for (int si = 0; si < 4; si++) {
        q35_kernels k;
        if (q35_kernels_select(&k, sets[si]) != 0) continue;
        int same = 1;
        float out[2 * NA];
        for (int64_t r = 0; r < L->m; r++) {
            const uint8_t *row = data + L->header_bytes + (uint64_t)r * L->row_bytes;
            k.q35_row_dot_batch(L, table, row, a, NA, out, 2);
            for (int t = 0; t < NA; t++) {
                const float one = k.q35_row_dot(L, table, row, &a[t]);
                same &= memcmp(&one, &out[2 * t], sizeof one) == 0;
            }
        }
        CHECKF(same, "%s %s: batch dot differs from the row dot", sets[si], what);
    }
    acts_free(a, NA);
}

/* What compare_gemm and compare_r16 share: the tensor's scale table,
 * BED_NA activation vectors, and output, reference and scratch buffers
 * for BED_NA vectors over m + 3 rows (ldo apart). */
enum { BED_NA = 19 }; /* past 16: the R16 GEMM's third group of 8, a partial one */
typedef struct gemm_bed {
    float table[256];
    q35_qact a[BED_NA];
    int64_t ldo;
    float *out, *ref;
    void *scratch;
} gemm_bed;

static void bed_new(gemm_bed *g, const q35_layout *L, const uint8_t *data, const float *x) {
    tensor_table(data, g->table);
    acts_new(L, x, g->a, BED_NA);
    g->ldo = L->m + 3;
    g->out = malloc((size_t)(BED_NA * g->ldo) * sizeof *g->out);
    g->ref = malloc((size_t)(BED_NA * g->ldo) * sizeof *g->ref);
    g->scratch = malloc(Q35_GEMM_SCRATCH(L->np));
}

static void bed_free(gemm_bed *g) {
    free(g->scratch);
    free(g->out);
    free(g->ref);
    acts_free(g->a, BED_NA);
}

/* The prefill GEMM gives, bit for bit, the reference row dot of each row
 * and activation vector in the scalar and AVX-512 sets, and the set's own
 * row dot in the others: over all rows and over rows from 5 on (partial
 * 16-row tiles), with 11 vectors (a full group of 8 and a remainder); the
 * output's padding between rows is left alone. */
static void compare_gemm(const q35_layout *L, const uint8_t *data, const float *x, const char *what) {
    gemm_bed g;
    bed_new(&g, L, data, x);
    const char *sets[] = {"scalar", "avx2", "avx512", "neon"};
    for (int si = 0; si < 4; si++) {
        q35_kernels k;
        if (q35_kernels_select(&k, sets[si]) != 0) continue;
        const int to_ref = si == 0 || si == 2;
        for (int64_t i = 0; i < BED_NA * g.ldo; i++) g.ref[i] = -1.5f;
        for (int64_t r = 0; r < L->m; r++)
            for (int t = 0; t < BED_NA; t++) {
                const uint8_t *row = data + L->header_bytes + (uint64_t)r * L->row_bytes;
                g.ref[t * g.ldo + r] = to_ref ? q35_row_dot_ref(L, g.table, row, &g.a[t]) : k.q35_row_dot(L, g.table, row, &g.a[t]);
            }
        for (int64_t i = 0; i < BED_NA * g.ldo; i++) g.out[i] = -1.5f;
        k.q35_gemm(L, g.table, data + L->header_bytes, L->m, g.a, BED_NA, g.out, g.ldo, g.scratch);
        CHECKF(memcmp(g.out, g.ref, (size_t)(BED_NA * g.ldo) * sizeof *g.out) == 0, "%s %s: GEMM differs from the reference row dots",
               sets[si], what);
        if (L->m > 5) {
            for (int64_t i = 0; i < BED_NA * g.ldo; i++) g.out[i] = -1.5f;
            k.q35_gemm(L, g.table, data + L->header_bytes + 5 * L->row_bytes, L->m - 5, g.a, BED_NA, g.out + 5, g.ldo, g.scratch);
            int same = 1;
            for (int t = 0; t < BED_NA; t++)
                for (int64_t r = 0; r < g.ldo; r++)
                    same &= memcmp(&g.out[t * g.ldo + r], r < 5 ? &(float){-1.5f} : &g.ref[t * g.ldo + r], 4) == 0;
            CHECKF(same, "%s %s: GEMM from row 5 differs", sets[si], what);
        }
    }
    bed_free(&g);
}

/* R16 (format/q35r16.h): the repacked tiles decode to the rows' codes and
 * scales, packing in two calls gives the bytes of one, and in every set
 * that has the R16 kernels their products equal q35_row_dot_ref bit for
 * bit, over all rows and from row 16 on (a later tile), for one vector
 * and for 1 to 11 through the GEMM; rows and vectors outside the range
 * are left alone. */
static void compare_r16(const q35_layout *L, const uint8_t *data, const float *x, const char *what) {
    const uint8_t *rows = data + L->header_bytes;
    const uint64_t tb = q35_r16_tile_bytes(L), bytes = q35_r16_bytes(L);
    const int64_t tiles = (L->m + 15) / 16;
    uint8_t *pk = malloc(bytes), *pk2 = malloc(bytes), *codes = malloc((size_t)L->np);
    q35_r16_pack(L, rows, 0, tiles, pk);
    q35_r16_pack(L, rows, 0, 1, pk2);
    q35_r16_pack(L, rows, 1, tiles, pk2);
    CHECKF(memcmp(pk, pk2, bytes) == 0, "R16 %s: packing in two calls differs", what);
    CHECKF(tb % 64 == 0, "R16 %s: tiles of %llu bytes are not 64-byte multiples", what, (unsigned long long)tb);
    int same = 1;
    for (int64_t r = 0; r < tiles * 16; r++) {
        const uint8_t *tile = pk + (uint64_t)(r / 16) * tb, *row = rows + (uint64_t)r * L->row_bytes;
        if (r < L->m) q35_unpack_range(L, row, 0, L->np, codes);
        for (int64_t j = 0; j < L->np; j++) same &= q35_r16_code(L, tile, (int)(r % 16), j) == (r < L->m ? codes[j] : 0);
        for (int64_t b = 0; b < L->n_blocks; b++) same &= q35_r16_scale(tile, (int)(r % 16), b) == (r < L->m ? row[b] : 0);
    }
    CHECKF(same, "R16 %s: the tiles do not hold the rows' codes and scales", what);
    gemm_bed g;
    bed_new(&g, L, data, x);
    for (int t = 0; t < BED_NA; t++)
        for (int64_t r = 0; r < g.ldo; r++)
            g.ref[t * g.ldo + r] = r < L->m ? q35_row_dot_ref(L, g.table, rows + (uint64_t)r * L->row_bytes, &g.a[t]) : -1.5f;
    const char *sets[] = {"scalar", "avx512"};
    for (int si = 0; si < 2; si++) {
        q35_kernels k;
        if (q35_kernels_select(&k, sets[si]) != 0 || !k.q35_r16_rows) continue;
        for (int64_t r0 = 0; r0 < L->m; r0 += 16) {
            for (int64_t i = 0; i < BED_NA * g.ldo; i++) g.out[i] = -1.5f;
            k.q35_r16_rows(L, g.table, pk, r0, L->m, &g.a[3], g.out + 3 * g.ldo + r0);
            int ok = 1;
            for (int64_t r = 0; r < g.ldo; r++)
                ok &= memcmp(&g.out[3 * g.ldo + r], r < r0 ? &(float){-1.5f} : &g.ref[3 * g.ldo + r], 4) == 0;
            CHECKF(ok, "R16 %s %s: rows from %lld differ from the reference row dots", sets[si], what, (long long)r0);
            for (int64_t i = 0; i < BED_NA * g.ldo; i++) g.out[i] = -1.5f;
            k.q35_r16_gemm(L, g.table, pk, r0, L->m, g.a, BED_NA, g.out + r0, g.ldo, g.scratch);
            ok = 1;
            for (int t = 0; t < BED_NA; t++)
                for (int64_t r = 0; r < g.ldo; r++)
                    ok &= memcmp(&g.out[t * g.ldo + r], r < r0 ? &(float){-1.5f} : &g.ref[t * g.ldo + r], 4) == 0;
            CHECKF(ok, "R16 %s %s: GEMM from row %lld differs from the reference row dots", sets[si], what, (long long)r0);
            for (int na = 1; na < BED_NA; na++) { /* every batch size: small ones take their own path */
                for (int64_t i = 0; i < BED_NA * g.ldo; i++) g.out[i] = -1.5f;
                k.q35_r16_gemm(L, g.table, pk, r0, L->m, g.a, na, g.out + r0, g.ldo, g.scratch);
                ok = 1;
                for (int t = 0; t < BED_NA; t++)
                    for (int64_t r = 0; r < g.ldo; r++)
                        ok &= memcmp(&g.out[t * g.ldo + r], r < r0 || t >= na ? &(float){-1.5f} : &g.ref[t * g.ldo + r], 4) == 0;
                CHECKF(ok, "R16 %s %s: GEMM of %d vectors from row %lld differs from the reference row dots", sets[si],
                       what, na, (long long)r0);
            }
            if (r0 >= 16) break;
        }
        /* a batch larger than the scratch's -top sums hold at once (at
         * least 128 vectors a pass): 300 vectors, the bed's repeated */
        enum { BIG = 300 };
        q35_qact big[BIG];
        float *out = malloc((size_t)BIG * (size_t)g.ldo * sizeof *out);
        for (int t = 0; t < BIG; t++) big[t] = g.a[t % BED_NA];
        k.q35_r16_gemm(L, g.table, pk, 0, L->m, big, BIG, out, g.ldo, g.scratch);
        int ok = 1;
        for (int t = 0; t < BIG; t++)
            for (int64_t r = 0; r < L->m; r++)
                ok &= memcmp(&out[t * g.ldo + r], &g.ref[(t % BED_NA) * g.ldo + r], 4) == 0;
        CHECKF(ok, "R16 %s %s: GEMM of %d vectors differs from the reference row dots", sets[si], what, BIG);
        free(out);
    }
    bed_free(&g);
    free(pk);
    free(pk2);
    free(codes);
}

static void test_kernels(void) {
    const int64_t lens[] = {8, 24, 32, 40, 64, 72, 128, 172, 192, 256, 1000, 4096};
    for (int t = 0; t < 4; t++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li], m = li % 2 ? 8 : 37;
            q35_layout L;
            q35_layout_init(&L, types[t], n, m);
            float *W = malloc((size_t)(n * m) * sizeof *W), *x = malloc((size_t)L.np * sizeof *x);
            for (int64_t i = 0; i < n * m; i++) W[i] = gauss() * (i % 97 == 0 ? 8.0f : 1.0f);
            for (int64_t i = 0; i < L.np; i++) x[i] = gauss();
            uint8_t *data = malloc(L.total_bytes);
            q35_quantize_tensor(&L, W, NULL, 1, data, NULL);
            char what[64];
            snprintf(what, sizeof what, "%s n=%lld random", q35_family_name(types[t]), (long long)n);
            compare_kernels(&L, data, x, what);
            compare_batch(&L, data, x, what);
            compare_gemm(&L, data, x, what);
            compare_r16(&L, data, x, what);

            /* adversarial rows: all-max codes, all-min codes, zero scales,
             * max scale bytes with a huge or denormal base; activations at
             * +-127 and all zero. Patterns 4 to 6: every scale byte, with
             * the smallest base the R16 kernels' cheaper scale decode takes
             * (x86_tile.h scales16_exp_ok), a zero base and a base whose
             * small scales are denormal (both scalef's) */
            uint8_t *codes = malloc((size_t)L.np), *sc = malloc((size_t)L.n_blocks);
            float edge = 0x1p-111f / exp2f(-15.0f / 16.0f), t240[256]; /* table[240] = 2^-111 */
            q35_scale_table(edge, t240);
            while (t240[240] < 0x1p-111f) q35_scale_table(edge = nextafterf(edge, 1.0f), t240);
            for (int pattern = 0; pattern < 7; pattern++) {
                for (int64_t r = 0; r < m; r++) {
                    for (int64_t j = 0; j < L.np; j++)
                        codes[j] = (uint8_t)(pattern == 1 ? 0 : (1 << q35_col_bits(&L, j)) - 1);
                    for (int64_t b = 0; b < L.n_blocks; b++)
                        sc[b] = (uint8_t)(pattern == 2 ? 0 : pattern >= 4 ? (r * 7 + b * 37) % 256 : 255);
                    q35_pack_row(&L, codes, sc, data + L.header_bytes + (uint64_t)r * L.row_bytes);
                }
                const float bases[7] = {1e-40f, 1e-40f, 1e-40f, 1e30f, edge, 0.0f, 1e-36f};
                float base = bases[pattern];
                memcpy(data, &base, 4);
                for (int64_t i = 0; i < L.np; i++) x[i] = pattern == 2 ? 0.0f : (i % 2 ? 1.0f : -1.0f);
                snprintf(what, sizeof what, "%s n=%lld pattern %d", q35_family_name(types[t]), (long long)n, pattern);
                compare_kernels(&L, data, x, what);
                compare_gemm(&L, data, x, what);
                compare_r16(&L, data, x, what);
            }
            free(codes);
            free(sc);
            free(W);
            free(x);
            free(data);
        }
}

/* q35_permute_act: the reference gives q35_header_perm's order (with 0
 * for padding), and every set's version gives the reference's values,
 * writing nothing past np; masks random, all plus, none plus, over
 * lengths that end inside a 16-column step and inside a mask byte. */
static void test_permute(void) {
    const int64_t nps[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 2048, 5632};
    for (size_t i = 0; i < sizeof nps / sizeof nps[0]; i++)
        for (int kind = 0; kind < 4; kind++) {
            const int64_t np = nps[i], n = kind == 3 ? np - np / 3 : np, nbytes = (np + 7) / 8;
            uint8_t *hdr = calloc((size_t)(8 + nbytes), 1), *mask = hdr + 8;
            for (int64_t c = 0; c < n; c++) /* padding columns are never plus (q35_header_check) */
                if (kind == 1 || ((kind == 0 || kind == 3) && next() % 3 == 0)) mask[c / 8] |= (uint8_t)(1u << c % 8);
            int64_t n4 = 0;
            for (int64_t c = 0; c < np; c++) n4 += mask[c / 8] >> (c % 8) & 1;
            float *x = malloc((size_t)np * sizeof *x), *want = malloc((size_t)np * sizeof *want);
            float *got = malloc((size_t)(np + 16) * sizeof *got);
            int32_t *perm = malloc((size_t)np * sizeof *perm);
            for (int64_t c = 0; c < np; c++) x[c] = c < n ? gauss() : NAN; /* past n: never read */
            q35_layout L = {.n = n, .np = np, .n4 = n4};
            q35_header_perm(&L, hdr, perm);
            q35_permute_act_ref(&L, mask, x, want);
            int ok = 1;
            for (int64_t j = 0; j < np; j++) ok &= want[j] == (perm[j] < n ? x[perm[j]] : 0.0f);
            CHECKF(ok, "q35_permute_act_ref np=%lld kind %d: not q35_header_perm's order", (long long)np, kind);
            q35_kernels k;
            const char *sets[] = {"scalar", "avx2", "avx512", "neon"};
            for (int si = 0; si < 4; si++) {
                if (q35_kernels_select(&k, sets[si]) != 0) continue;
                for (int64_t j = 0; j < np + 16; j++) got[j] = -1.0f;
                k.q35_permute_act(&L, mask, x, got);
                int past = 1;
                for (int64_t j = np; j < np + 16; j++) past &= got[j] == -1.0f;
                CHECKF(memcmp(got, want, (size_t)np * sizeof *got) == 0 && past,
                       "%s q35_permute_act np=%lld kind %d: differs from the reference", sets[si], (long long)np,
                       kind);
            }
            free(hdr);
            free(x);
            free(want);
            free(got);
            free(perm);
        }
}

int main(void) {
    test_layout();
    test_permute();
    test_pack();
    test_header();
    test_quantizer();
    test_kernels();
    TEST_END();
}
