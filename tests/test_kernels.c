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
        q35_matvec_f32_ref(ref, w, x, n, 0, rows);
        k.matvec_f32(got, w, x, n, 2, rows); /* rows 2..12 into got[0..10] */
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

int main(void) {
    q35_kernels k;
    CHECK(q35_kernels_select(&k, "scalar") == 0 && strcmp(k.name, "scalar") == 0);
    CHECK(q35_kernels_select(&k, "no-such-set") == -1 && strcmp(k.name, "scalar") == 0);
    CHECK(q35_kernels_select(&k, NULL) == 0);
    printf("fastest kernel set here: %s\n", k.name);
    check_matvec("scalar");
    check_matvec("avx2");
    check_matvec("avx512");
    TEST_END();
}
