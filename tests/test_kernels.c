/* test_kernels.c — every SIMD kernel against the scalar reference that
 * defines it, over row lengths that exercise each tail path. Float sums in
 * another order differ by rounding only: the bound is a few ulps of the
 * sum of |w x| terms. */
#include <float.h>
#include <stdint.h>

#include "harness.h"
#include "kernels/kernels.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
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
    TEST_END();
}
