/* test_kernels.c — every SIMD kernel against the scalar reference that
 * defines it, over row lengths that exercise each tail path. Float sums in
 * another order differ by rounding only: the bound is a few ulps of the
 * sum of |w x| terms. The fp16 conversion and the int8 rows (the KV
 * cache) are bit-exact.
 * Every set fills every entry. */
#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "format/dtype.h"
#include "kernels/kernels.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static uint32_t rand32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void check_matvec(const char *set) {
    q35_kernels k;
    if (q35_kernels_select(&k, set) != 0) {
        printf("kernel set %s: not on this CPU, skipped\n", set);
        return;
    }
    const int64_t lens[] = {1, 7, 8, 15, 16, 17, 31, 32, 63, 64, 65, 100, 172, 192, 257, 512, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int64_t n = lens[li], rows = 13;
        float *w = malloc((size_t)(n * rows) * sizeof *w), *x = malloc((size_t)n * sizeof *x);
        float ref[13], got[13];
        for (int64_t i = 0; i < n * rows; i++) w[i] = frand();
        for (int64_t i = 0; i < n; i++) x[i] = frand() * 3.0f;
        q35_matvec_f32_ref(ref, w, n, x, n, 0, rows);
        k.matvec_f32(got, w, n, x, n, 2, rows); /* rows 2..12 into got[0..10] */
        /* and with rows further apart than their length (the KV cache) */
        float strided[13];
        k.matvec_f32(strided, w, n, x, n > 1 ? n - 1 : 1, 0, rows);
        float strided_ref[13];
        q35_matvec_f32_ref(strided_ref, w, n, x, n > 1 ? n - 1 : 1, 0, rows);
        for (int64_t r = 0; r < rows; r++)
            CHECKF(fabs((double)strided[r] - strided_ref[r]) <= 1e-4 * (1 + fabs(strided_ref[r])),
                   "strided matvec %s n = %lld", set, (long long)n);
        int ok = 1;
        for (int64_t r = 2; r < rows; r++) {
            double mag = 0;
            for (int64_t c = 0; c < n; c++) mag += fabs((double)w[r * n + c] * x[c]);
            double bound = 4.0 * (double)n * FLT_EPSILON * mag + 1e-30;
            if (fabs((double)got[r - 2] - (double)ref[r]) > bound) ok = 0;
        }
        CHECKF(ok, "matvec_f32 %s, n = %lld: differs from the reference beyond rounding", set,
               (long long)n);
        free(w);
        free(x);
    }
}

/* Attention's weighted sum, softmax and SwiGLU against their references. */
static void check_elementwise(const char *set) {
    q35_kernels k, ref;
    if (q35_kernels_select(&k, set) != 0) return;
    q35_kernels_select(&ref, "scalar");
    const int64_t lens[] = {1, 5, 8, 15, 16, 17, 31, 32, 33, 64, 100, 172, 512, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li], T = 37, ld = n + 3;
        float *a = malloc((size_t)T * sizeof *a), *v = malloc((size_t)(T * ld) * sizeof *v);
        float *o1 = malloc((size_t)n * sizeof *o1), *o2 = malloc((size_t)n * sizeof *o2);
        for (int64_t i = 0; i < T; i++) a[i] = frand();
        for (int64_t i = 0; i < T * ld; i++) v[i] = frand();
        ref.wsum_f32(o1, a, v, ld, n, T);
        k.wsum_f32(o2, a, v, ld, n, T);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) {
            double mag = 0;
            for (int64_t t = 0; t < T; t++) mag += fabs((double)a[t] * v[t * ld + i]);
            ok &= fabs((double)o1[i] - o2[i]) <= 4.0 * T * FLT_EPSILON * mag + 1e-30;
        }
        CHECKF(ok, "wsum_f32 %s, n = %lld: differs beyond rounding", set, (long long)n);

        /* softmax over spreads from tiny to huge, including equal values */
        const float spreads[] = {0.0f, 1.0f, 30.0f, 1000.0f};
        for (size_t si = 0; si < 4; si++) {
            for (int64_t i = 0; i < n; i++) o1[i] = o2[i] = frand() * spreads[si] + 50.0f;
            ref.softmax_f32(o1, n);
            k.softmax_f32(o2, n);
            ok = 1;
            double sum = 0;
            for (int64_t i = 0; i < n; i++) {
                ok &= fabs((double)o1[i] - o2[i]) <= 2e-6 * o1[i] + 1e-37;
                sum += o2[i];
            }
            CHECKF(ok && fabs(sum - 1.0) < 1e-5, "softmax_f32 %s, n = %lld, spread %g", set,
                   (long long)n, (double)spreads[si]);
        }
        /* SwiGLU, ordinary and saturating inputs */
        for (int64_t i = 0; i < n; i++) o1[i] = o2[i] = frand() * (i % 7 == 0 ? 200.0f : 8.0f);
        float *u = malloc((size_t)n * sizeof *u);
        for (int64_t i = 0; i < n; i++) u[i] = frand() * 2.0f;
        ref.swiglu_f32(o1, u, n);
        k.swiglu_f32(o2, u, n);
        ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= fabs((double)o1[i] - o2[i]) <= 2e-6 * fabs(o1[i]) + 1e-30;
        CHECKF(ok, "swiglu_f32 %s, n = %lld", set, (long long)n);
        free(u);
        free(a);
        free(v);
        free(o1);
        free(o2);
    }
}

/* The attention kernels of one KV cache type agree with their reference
 * within rounding (a few ulps of the sum of |terms|: they sum in another
 * order) and give a head the same result alone as in its group: s[0..2]
 * are the reference's, the set's for nq heads and the set's head by head
 * (scores, nq rows lds apart), o[0..2] the same for the weighted sums
 * (nq rows of n); kvf is the cache dequantized (T rows of n, ld apart). */
static void check_scores(const char *name, const char *set, int64_t n, int64_t T, int64_t ld, int64_t lds,
                         int nq, const float *kvf, const float *q, float *const s[3]) {
    int ok = 1, alone = 1;
    for (int j = 0; j < nq; j++)
        for (int64_t t = 0; t < T; t++) {
            double mag = 0;
            for (int64_t c = 0; c < n; c++) mag += fabs((double)kvf[t * ld + c] * q[j * n + c]);
            ok &= fabs((double)s[1][j * lds + t] - s[0][j * lds + t]) <= 4.0 * n * FLT_EPSILON * mag + 1e-30;
            alone &= s[1][j * lds + t] == s[2][j * lds + t];
        }
    CHECKF(ok, "%s %s, n = %lld: differs beyond rounding", name, set, (long long)n);
    CHECKF(alone, "%s %s, n = %lld: a head's scores depend on its group", name, set, (long long)n);
}

static void check_attn(const char *type, const char *set, int64_t n, int64_t T, int64_t ld, int64_t lds, int nq,
                       const float *kvf, const float *q, const float *a, float *const s[3], float *const o[3]) {
    char name[32];
    snprintf(name, sizeof name, "attn_scores_%s", type);
    check_scores(name, set, n, T, ld, lds, nq, kvf, q, s);
    int ok = 1, alone = 1;
    for (int j = 0; j < nq; j++)
        for (int64_t i = 0; i < n; i++) {
            double mag = 0;
            for (int64_t t = 0; t < T; t++) mag += fabs((double)a[j * lds + t] * kvf[t * ld + i]);
            ok &= fabs((double)o[0][j * n + i] - o[1][j * n + i]) <= 4.0 * T * FLT_EPSILON * mag + 1e-30;
            alone &= o[1][j * n + i] == o[2][j * n + i];
        }
    CHECKF(ok, "attn_wsum_%s %s, n = %lld: differs beyond rounding", type, set, (long long)n);
    CHECKF(alone, "attn_wsum_%s %s, n = %lld: a head's sums depend on its group", type, set, (long long)n);
}

/* The fp16 KV cache's kernels: conversion bit for bit (NaN stays NaN),
 * the products over rows of halves within rounding of the reference. */
static void check_f16(const char *set) {
    q35_kernels k;
    if (q35_kernels_select(&k, set) != 0) return;
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x);
    uint16_t *h1 = malloc(N * sizeof *h1), *h2 = malloc(N * sizeof *h2);
    /* every half and the floats halfway between neighbouring halves (the
     * ties), then random bit patterns over the whole float range */
    for (int i = 0; i < N; i++) {
        uint32_t b = (uint32_t)i << 13;
        if (i % 4 == 1) b |= 0x1000u;               /* a tie */
        if (i % 4 == 2) b |= 0x1001u;               /* just above a tie */
        if (i % 4 == 3) b = rand32();
        b = (i & 1) ? b | 0x80000000u : b;
        if (i % 8 == 4) b = ((uint32_t)(i >> 3) << 16) | 0x7FFu; /* near 2^-24 .. 65520 */
        memcpy(&x[i], &b, 4);
    }
    const float edges[] = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 5.9604645e-8f,
                           2.9802322e-8f, 2.98023259e-8f, 6.1035156e-5f, 6.1035153e-5f, INFINITY, -INFINITY, NAN};
    memcpy(x, edges, sizeof edges);
    q35_f32_to_f16_ref(h1, x, N);
    int ok = 1;
    for (int64_t off = 0; off < 5; off++) { /* every tail length of the SIMD loops */
        k.f32_to_f16(h2 + off, x + off, N - off - (off * 7) % 17);
        for (int64_t i = off; i < N - off - (off * 7) % 17; i++)
            ok &= x[i] != x[i] ? (h2[i] & 0x7C00u) == 0x7C00u && (h2[i] & 0x3FFu) != 0 : h1[i] == h2[i];
    }
    CHECKF(ok, "f32_to_f16 %s differs from the reference", set);
    CHECK(h1[2] == 0x7BFF && h1[3] == 0x7BFF && h1[4] == 0x7C00 && h1[5] == 0xFC00 && h1[6] == 1 &&
          h1[7] == 0 && h1[8] == 1 && h1[9] == 0x0400 && h1[10] == 0x0400);

    /* attention for nq heads sharing a KV head: head lengths around each
     * SIMD path, rows ld apart, T not a multiple of 16 */
    const int64_t lens[] = {1, 7, 8, 15, 16, 17, 31, 32, 48, 63, 64, 65, 100, 128, 200, 256, 300};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li], T = 37, ld = n + 5, lds = T + 3;
        const int nq = 11; /* the wide scores take heads by 8: a group of 8 and one of 3 */
        uint16_t *kv = malloc((size_t)(T * ld) * sizeof *kv);
        float *q = malloc((size_t)(nq * n) * sizeof *q), *a = malloc((size_t)(nq * lds) * sizeof *a);
        float *s1 = malloc((size_t)(nq * lds) * sizeof *s1), *s2 = malloc((size_t)(nq * lds) * sizeof *s2);
        float *o1 = malloc((size_t)(nq * n) * sizeof *o1), *o2 = malloc((size_t)(nq * n) * sizeof *o2);
        float *o3 = malloc((size_t)(nq * n) * sizeof *o3), *s3 = malloc((size_t)(nq * lds) * sizeof *s3);
        for (int64_t i = 0; i < T * ld; i++) kv[i] = q35_f32_to_f16(frand() * 4.0f);
        for (int64_t i = 0; i < nq * n; i++) q[i] = frand();
        for (int64_t i = 0; i < nq * lds; i++) a[i] = frand();
        q35_attn_scores_f16_ref(s1, lds, kv, ld, q, nq, n, T);
        k.attn_scores_f16(s2, lds, kv, ld, q, nq, n, T);
        for (int j = 0; j < nq; j++) k.attn_scores_f16(s3 + j * lds, lds, kv, ld, q + j * n, 1, n, T);
        q35_attn_wsum_f16_ref(o1, a, lds, kv, ld, nq, n, T);
        k.attn_wsum_f16(o2, a, lds, kv, ld, nq, n, T);
        for (int j = 0; j < nq; j++) k.attn_wsum_f16(o3 + j * n, a + j * lds, lds, kv, ld, 1, n, T);
        float *kvf = malloc((size_t)(T * ld) * sizeof *kvf);
        for (int64_t i = 0; i < T * ld; i++) kvf[i] = q35_f16_to_f32(kv[i]);
        check_attn("f16", set, n, T, ld, lds, nq, kvf, q, a, (float *const[3]){s1, s2, s3}, (float *const[3]){o1, o2, o3});
        k.attn_scores_f16_wide(s2, lds, kv, ld, q, nq, n, T);
        for (int j = 0; j < nq; j++) k.attn_scores_f16_wide(s3 + j * lds, lds, kv, ld, q + j * n, 1, n, T);
        check_scores("attn_scores_f16_wide", set, n, T, ld, lds, nq, kvf, q, (float *const[3]){s1, s2, s3});
        free(kvf);
        free(kv);
        free(q);
        free(a);
        free(s1);
        free(s2);
        free(s3);
        free(o1);
        free(o2);
        free(o3);
    }
    free(x);
    free(h1);
    free(h2);
}

/* The int8 KV cache's kernels: a row's quantization bit for bit (rows of
 * every tail length, a zero row, infinities and NaNs), its error within
 * half a step, and the products over rows of codes within rounding of the
 * reference (the same bound as fp16's: a few ulps of the sum of |terms|,
 * the sums being taken in another order). */
static void check_q8(const char *set) {
    q35_kernels k;
    if (q35_kernels_select(&k, set) != 0) return;
    enum { MAXN = 300 };
    float x[MAXN];
    int8_t c1[MAXN + 1], c2[MAXN + 1]; /* c2[n]: a guard no set may write */
    int ok = 1, exact = 1, nan_rows = 1;
    for (int64_t n = 1; n <= MAXN; n += n < 70 ? 1 : 23)
        for (int kind = 0; kind < 6; kind++) {
            const float mag = kind == 1 ? 1e-30f : kind == 2 ? 3e4f : 1.0f;
            for (int64_t i = 0; i < n; i++) x[i] = kind == 3 ? 0.0f : frand() * mag;
            if (kind == 4) x[n / 2] = (n & 1) ? INFINITY : -INFINITY;
            if (kind == 5) x[(n * 3) / 4] = NAN;
            if (kind == 0 && n > 4) x[0] = 127.0f, x[1] = 2.5f, x[2] = -0.5f, x[3] = 1.5f; /* scale 1: ties */
            float d1 = -1, d2 = -2;
            q35_kv_quant_q8_ref(c1, &d1, x, n);
            if (kind == 0 && n > 4) ok &= d1 == 1.0f && c1[1] == 2 && c1[2] == 0 && c1[3] == 2; /* to even */
            memset(c2, 0x55, sizeof c2);
            k.kv_quant_q8(c2, &d2, x, n);
            exact &= !memcmp(c1, c2, (size_t)n) && (d1 == d2 || (d1 != d1 && d2 != d2)) && c2[n] == 0x55;
            if (kind >= 4) {
                nan_rows &= d1 != d1;
                for (int64_t i = 0; i < n; i++) nan_rows &= c1[i] == 0;
                continue;
            }
            int top = 0;
            for (int64_t i = 0; i < n; i++) {
                ok &= fabs((double)d1 * c1[i] - x[i]) <= 0.5 * d1 * (1 + 1e-5) && c1[i] != -128;
                top |= c1[i] == 127 || c1[i] == -127;
            }
            ok &= kind == 3 ? d1 == 0.0f : top; /* the largest value takes the largest code */
        }
    CHECKF(exact, "kv_quant_q8 %s differs from the reference", set);
    CHECKF(ok, "kv_quant_q8: an error beyond half a step, or no code at +-127");
    CHECKF(nan_rows, "kv_quant_q8: a row with an infinity or a NaN is not codes 0, scale NaN");

    const int64_t lens[] = {1, 7, 8, 15, 16, 17, 31, 32, 48, 63, 64, 65, 100, 128, 200, 256, 300};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li], T = 37, ld = n + 5, lds = T + 3;
        const int nq = 11;
        int8_t *kv = malloc((size_t)(T * ld));
        float *d = malloc((size_t)T * sizeof *d);
        float *q = malloc((size_t)(nq * n) * sizeof *q), *a = malloc((size_t)(nq * lds) * sizeof *a);
        float *s1 = malloc((size_t)(nq * lds) * sizeof *s1), *s2 = malloc((size_t)(nq * lds) * sizeof *s2);
        float *s3 = malloc((size_t)(nq * lds) * sizeof *s3), *o1 = malloc((size_t)(nq * n) * sizeof *o1);
        float *o2 = malloc((size_t)(nq * n) * sizeof *o2), *o3 = malloc((size_t)(nq * n) * sizeof *o3);
        for (int64_t i = 0; i < T * ld; i++) kv[i] = (int8_t)(rand32() % 255 - 127);
        for (int64_t t = 0; t < T; t++) d[t] = (frand() + 1.5f) * 0.01f;
        for (int64_t i = 0; i < nq * n; i++) q[i] = frand();
        for (int64_t i = 0; i < nq * lds; i++) a[i] = frand();
        q35_attn_scores_q8_ref(s1, lds, kv, d, ld, q, nq, n, T);
        k.attn_scores_q8(s2, lds, kv, d, ld, q, nq, n, T);
        for (int j = 0; j < nq; j++) k.attn_scores_q8(s3 + j * lds, lds, kv, d, ld, q + j * n, 1, n, T);
        q35_attn_wsum_q8_ref(o1, a, lds, kv, d, ld, nq, n, T);
        k.attn_wsum_q8(o2, a, lds, kv, d, ld, nq, n, T);
        for (int j = 0; j < nq; j++) k.attn_wsum_q8(o3 + j * n, a + j * lds, lds, kv, d, ld, 1, n, T);
        float *kvf = malloc((size_t)(T * ld) * sizeof *kvf);
        for (int64_t i = 0; i < T * ld; i++) kvf[i] = (float)kv[i] * d[i / ld];
        check_attn("q8", set, n, T, ld, lds, nq, kvf, q, a, (float *const[3]){s1, s2, s3}, (float *const[3]){o1, o2, o3});
        k.attn_scores_q8_wide(s2, lds, kv, d, ld, q, nq, n, T);
        for (int j = 0; j < nq; j++) k.attn_scores_q8_wide(s3 + j * lds, lds, kv, d, ld, q + j * n, 1, n, T);
        check_scores("attn_scores_q8_wide", set, n, T, ld, lds, nq, kvf, q, (float *const[3]){s1, s2, s3});
        free(kvf);
        free(kv);
        free(d);
        free(q);
        free(a);
        free(s1);
        free(s2);
        free(s3);
        free(o1);
        free(o2);
        free(o3);
    }
}

/* Every entry of every set this CPU has is filled in. */
static void check_complete(const char *set) {
    q35_kernels k;
    if (q35_kernels_select(&k, set) != 0) return;
    void (*const fns[])(void) = {
        (void (*)(void))k.matvec_f32, (void (*)(void))k.wsum_f32, (void (*)(void))k.softmax_f32,
        (void (*)(void))k.swiglu_f32, (void (*)(void))k.f32_to_f16, (void (*)(void))k.attn_scores_f16,
        (void (*)(void))k.attn_wsum_f16, (void (*)(void))k.kv_quant_q8, (void (*)(void))k.attn_scores_q8,
        (void (*)(void))k.attn_wsum_q8, (void (*)(void))k.attn_scores_f16_wide,
        (void (*)(void))k.attn_scores_q8_wide,
        (void (*)(void))k.q35_quantize_act, (void (*)(void))k.q35_permute_act,
        (void (*)(void))k.q35_block_sums, (void (*)(void))k.q35_row_dot, (void (*)(void))k.q35_row_dot_batch, (void (*)(void))k.q35_gemm};
    /* the R16 pair is optional (NULL in sets without it), both or neither,
     * and a set that asks models to repack has it */
    void (*const r16[])(void) = {(void (*)(void))k.q35_r16_rows, (void (*)(void))k.q35_r16_gemm};
    CHECKF(sizeof fns + sizeof r16 == offsetof(q35_kernels, r16_pack) - sizeof k.name,
           "check_complete does not list every kernel");
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) CHECKF(fns[i] != NULL, "%s: entry %zu is empty", set, i);
    CHECKF((r16[0] == NULL) == (r16[1] == NULL), "%s: half of the R16 kernels", set);
    CHECKF(!k.r16_pack || r16[0] != NULL, "%s: asks for R16 without its kernels", set);
}

int main(void) {
    q35_kernels k;
    CHECK(q35_kernels_select(&k, "scalar") == 0 && strcmp(k.name, "scalar") == 0);
    CHECK(q35_kernels_select(&k, "no-such-set") == -1 && strcmp(k.name, "scalar") == 0);
    CHECK(q35_kernels_select(&k, NULL) == 0);
    printf("fastest kernel set here: %s\n", k.name);
    check_matvec("scalar");
    check_matvec("avx2");
    check_matvec("avx512");
    check_elementwise("avx2");
    check_elementwise("avx512");
    check_complete("scalar");
    check_complete("avx2");
    check_complete("avx512");
    check_f16("scalar");
    check_f16("avx2");
    check_f16("avx512");
    check_q8("scalar");
    check_q8("avx2");
    check_q8("avx512");
    TEST_END();
}
