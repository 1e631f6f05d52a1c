/* test_q35_neon.c — the AArch64 NEON kernels (src/kernels/neon.c) against
 * the references that define them: the activation quantizer and the Q3_5
 * family's integer block sums bit for bit, row dot products and the fp32
 * kernels within rounding (a few ulps of the sum of |terms|).
 *
 * Standalone: needs no cJSON and no ../shared files. scripts/neon-test.sh
 * cross-compiles it with src/core, src/format, src/quant and src/kernels'
 * ref.c, q35dot_ref.c and neon.c, and runs it under qemu-aarch64, once for
 * baseline armv8-a and once with the dot-product extension. `make test`
 * leaves it out on other machines. */
#include <float.h>
#include <stdint.h>

#include "harness.h"

#if defined(__aarch64__)
#include "format/q35fmt.h"
#include "kernels/kernels.h"
#include "kernels/neon.h"
#include "kernels/q35dot.h"
#include "format/q35quant.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float frand(void) { /* [-1, 1) */
    return (float)((double)(next() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static const int types[] = {Q35_TYPE_Q2_5, Q35_TYPE_Q3_5, Q35_TYPE_Q4_5, Q35_TYPE_Q8_S};
static const int64_t lens[] = {8, 24, 32, 40, 64, 72, 172, 192, 256, 1000, 4096};
#define N_TYPES ((int)(sizeof types / sizeof types[0]))
#define N_LENS ((int)(sizeof lens / sizeof lens[0]))

/* One quantized activation vector with its storage. */
typedef struct act {
    q35_qact a;
} act;

static void act_alloc(act *A, int64_t np) {
    const int64_t nb = (np + Q35_BLOCK - 1) / Q35_BLOCK;
    A->a.np = np;
    A->a.q = malloc((size_t)np);
    A->a.d = malloc((size_t)nb * sizeof *A->a.d);
    A->a.sum = malloc((size_t)nb * sizeof *A->a.sum);
}
static void act_free(act *A) {
    free(A->a.q);
    free(A->a.d);
    free(A->a.sum);
}

/* Quantizes x (np values) with both quantizers; checks they agree bit for
 * bit; leaves the reference's result in A. Returns 1 if equal. */
static int quantize_both(const float *x, int64_t np, act *A) {
    const int64_t nb = (np + Q35_BLOCK - 1) / Q35_BLOCK;
    act B;
    act_alloc(&B, np);
    q35_quantize_act_ref(x, np, A->a.q, A->a.d, A->a.sum);
    memset(B.a.q, 0x55, (size_t)np);
    q35_quantize_act_neon(x, np, B.a.q, B.a.d, B.a.sum);
    const int ok = memcmp(A->a.q, B.a.q, (size_t)np) == 0 &&
                   memcmp(A->a.d, B.a.d, (size_t)nb * sizeof *A->a.d) == 0 &&
                   memcmp(A->a.sum, B.a.sum, (size_t)nb * sizeof *A->a.sum) == 0;
    act_free(&B);
    return ok;
}

/* Block sums and the row dot of one packed row, NEON against reference.
 * *dot_ok: the dot within 4 n_blocks ulps of the sum of |terms| (+ a
 * denormal floor). Returns 1 if the block sums are identical. */
static int compare_row(const q35_layout *L, const float table[256], const uint8_t *row,
                       const q35_qact *a, int *dot_ok) {
    const int64_t nb = L->n_blocks;
    int32_t *S1 = malloc((size_t)nb * sizeof *S1), *S2 = malloc((size_t)nb * sizeof *S2);
    q35_block_sums_ref(L, row, a->q, S1);
    for (int64_t b = 0; b < nb; b++) S2[b] = (int32_t)0x5A5A5A5A;
    q35_block_sums_neon(L, row, a->q, S2);
    const int same = memcmp(S1, S2, (size_t)nb * sizeof *S1) == 0;
    const float r = q35_row_dot_ref(L, table, row, a);
    const float g = q35_row_dot_neon(L, table, row, a);
    double mag = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        const int32_t top = (1 << q35_col_bits(L, b * Q35_BLOCK)) - 1;
        mag += fabs((double)table[row[b]] * a->d[b] * (double)(2 * S1[b] - top * a->sum[b]));
    }
    const double bound = 4.0 * (double)nb * FLT_EPSILON * mag + 1e-37;
    *dot_ok = fabs((double)r - (double)g) <= bound;
    if (!*dot_ok)
        fprintf(stderr, "  row dot: ref %.9g neon %.9g bound %.3g\n", (double)r, (double)g, bound);
    free(S1);
    free(S2);
    return same;
}

/* Random tensors through the quantizer, random activations. */
static void check_quantized_tensors(void) {
    const int64_t row_counts[] = {1, 3};
    for (int ti = 0; ti < N_TYPES; ti++)
        for (int li = 0; li < N_LENS; li++)
            for (int ri = 0; ri < 2; ri++) {
                const int type = types[ti];
                const int64_t n = lens[li], m = row_counts[ri];
                q35_layout L;
                if (q35_layout_init(&L, type, n, m) != 0) {
                    CHECKF(0, "layout %s n = %lld m = %lld", q35_family_name(type),
                           (long long)n, (long long)m);
                    continue;
                }
                float *W = malloc((size_t)(n * m) * sizeof *W);
                float *imp = malloc((size_t)n * sizeof *imp);
                for (int64_t i = 0; i < n * m; i++)
                    W[i] = frand() * (next() % 17 == 0 ? 8.0f : 1.0f); /* some outliers */
                for (int64_t i = 0; i < n; i++) imp[i] = 0.1f + frand() * frand();
                uint8_t *T = malloc((size_t)L.total_bytes);
                CHECKF(q35_quantize_tensor(&L, W, ri ? imp : NULL, 2, T, NULL) == 0,
                       "quantize %s n = %lld", q35_family_name(type), (long long)n);
                float base, table[256];
                memcpy(&base, T, 4);
                q35_scale_table(base, table);

                float *x = malloc((size_t)L.np * sizeof *x);
                for (int64_t j = 0; j < L.np; j++)
                    x[j] = j < n ? frand() * (next() % 13 == 0 ? 20.0f : 2.0f) : 0.0f;
                act A;
                act_alloc(&A, L.np);
                CHECKF(quantize_both(x, L.np, &A), "quantize_act %s np = %lld",
                       q35_family_name(type), (long long)L.np);
                int sums_ok = 1, dots_ok = 1;
                for (int64_t r = 0; r < m; r++) {
                    int dok;
                    sums_ok &= compare_row(&L, table, T + L.header_bytes + (uint64_t)r * L.row_bytes,
                                           &A.a, &dok);
                    dots_ok &= dok;
                }
                CHECKF(sums_ok, "block sums %s n = %lld m = %lld (n4 = %lld)",
                       q35_family_name(type), (long long)n, (long long)m, (long long)L.n4);
                CHECKF(dots_ok, "row dot %s n = %lld m = %lld (n4 = %lld)",
                       q35_family_name(type), (long long)n, (long long)m, (long long)L.n4);
                act_free(&A);
                free(x);
                free(T);
                free(W);
                free(imp);
            }
}

/* Rows built with q35_pack_row: every code at its maximum 2^c - 1, at 0,
 * or random; scale bytes 0, 255 or random; activations all +127, all -127,
 * all 0, alternating, or random (set directly, not through the quantizer).
 * Also every n4 a layout of this size can have, not only the fitted one. */
static void check_adversarial(void) {
    const char *code_kind[] = {"max", "min", "random", "alternating max/min"};
    const char *act_kind[] = {"+127", "-127", "zero", "alternating", "random"};
    const char *scale_kind[] = {"zero", "255", "random"};
    for (int ti = 0; ti < N_TYPES; ti++)
        for (int li = 0; li < N_LENS; li++) {
            const int type = types[ti];
            const int64_t n = lens[li];
            q35_layout L0;
            CHECK(q35_layout_init(&L0, type, n, 1) == 0);
            /* n4 from 0 up to n (multiples of 32) for types with plus columns */
            const int64_t n4_max = type == Q35_TYPE_Q8_S ? 0 : n / 32 * 32;
            int ok_sums = 1, ok_dots = 1;
            for (int64_t n4 = 0; n4 <= n4_max; n4 += 32) {
                if (n > 512 && n4 != 32 && n4 != 96 && n4 != 128 && n4 != n4_max &&
                    n4 != L0.n4 && n4 % 256 != 0 && n4 + 32 != n4_max)
                    continue; /* every n4 up to 512 columns, a sample beyond */
                q35_layout L = L0;
                /* the layout with this n4: the same arithmetic as q35fmt.c's sizes() */
                L.n4 = n4;
                L.plus_off = L.plane_off + (uint64_t)L.np / 8 * (uint64_t)(L.b - L.low_bits);
                L.row_bytes = L.plus_off + (uint64_t)n4 / 8;
                uint8_t *codes = malloc((size_t)L.np), *scales = malloc((size_t)L.n_blocks);
                uint8_t *row = malloc((size_t)L.row_bytes);
                act A;
                act_alloc(&A, L.np);
                float table[256];
                q35_scale_table(0.01f, table);
                for (int ck = 0; ck < 4; ck++)
                    for (int sk = 0; sk < 3; sk++)
                        for (int ak = 0; ak < 5; ak++) {
                            for (int64_t j = 0; j < L.np; j++) {
                                const int top = (1 << q35_col_bits(&L, j)) - 1;
                                codes[j] = (uint8_t)(ck == 0   ? top
                                                     : ck == 1 ? 0
                                                     : ck == 2 ? (int)(next() % (uint64_t)(top + 1))
                                                               : (j & 1 ? top : 0));
                            }
                            for (int64_t b = 0; b < L.n_blocks; b++)
                                scales[b] = (uint8_t)(sk == 0 ? 0 : sk == 1 ? 255 : next() % 256);
                            for (int64_t j = 0; j < L.np; j++)
                                A.a.q[j] = (int8_t)(ak == 0   ? 127
                                                    : ak == 1 ? -127
                                                    : ak == 2 ? 0
                                                    : ak == 3 ? (j & 1 ? -127 : 127)
                                                              : (int)(next() % 255) - 127);
                            for (int64_t b = 0; b < L.n_blocks; b++) {
                                int32_t s = 0;
                                for (int64_t j = b * Q35_BLOCK; j < L.np && j < (b + 1) * Q35_BLOCK; j++)
                                    s += A.a.q[j];
                                A.a.sum[b] = s;
                                A.a.d[b] = ak == 2 ? 0.0f : 0.5f + frand() * 0.25f;
                            }
                            q35_pack_row(&L, codes, scales, row);
                            /* the row round-trips (the layout used is consistent) */
                            uint8_t *back = malloc((size_t)L.np);
                            q35_unpack_range(&L, row, 0, L.np, back);
                            const int rt = memcmp(back, codes, (size_t)L.np) == 0;
                            free(back);
                            int dok;
                            const int sok = compare_row(&L, table, row, &A.a, &dok);
                            if (!rt || !sok || !dok)
                                fprintf(stderr, "  %s n = %lld n4 = %lld: codes %s, scales %s, act %s%s\n",
                                        q35_family_name(type), (long long)n, (long long)n4,
                                        code_kind[ck], scale_kind[sk], act_kind[ak],
                                        rt ? "" : " (pack round trip failed)");
                            ok_sums &= rt && sok;
                            ok_dots &= dok;
                        }
                act_free(&A);
                free(codes);
                free(scales);
                free(row);
            }
            CHECKF(ok_sums, "adversarial block sums %s n = %lld", q35_family_name(type),
                   (long long)n);
            CHECKF(ok_dots, "adversarial row dots %s n = %lld", q35_family_name(type),
                   (long long)n);
        }
}

/* The activation quantizer on lengths with every tail, and on values that
 * hit its corners: ties (x * 127/amax exactly k + 0.5), the clamp, zeros
 * and negative zeros, tiny and huge magnitudes, constant blocks. */
static void check_quantize_act(void) {
    const int64_t ns[] = {1, 5, 8, 24, 31, 32, 33, 40, 63, 64, 65, 72, 100, 172, 256, 1000, 4096};
    const char *kind[] = {"random", "ties", "zeros", "constant +", "constant -", "tiny",
                          "huge", "mixed", "one spike", "subnormal"};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (int k = 0; k < 10; k++) {
            const int64_t np = ns[ni];
            float *x = malloc((size_t)np * sizeof *x);
            for (int64_t j = 0; j < np; j++) {
                float v = frand();
                switch (k) {
                case 1: /* amax 127 so id = 1: x = k + 0.5 rounds to even */
                    v = j % 32 == 0 ? 127.0f : (float)((int)(next() % 253) - 126) + 0.5f;
                    break;
                case 2: v = j & 1 ? -0.0f : 0.0f; break;
                case 3: v = 3.25f; break;
                case 4: v = -1e-3f; break;
                case 5: v *= 1e-30f; break;
                case 6: v *= 1e30f; break;
                case 7: v = (j / 32) % 3 == 0 ? 0.0f : v * (j % 5 == 0 ? 100.0f : 0.01f); break;
                case 8: v = j % 37 == 3 ? 1e4f : v; break;
                case 9: v = v * 1e-39f + (v < 0 ? -1e-45f : 1e-45f); break; /* subnormal, not 0:
                                        127/amax is inf, so every q is +-127 */
                default: break;
                }
                x[j] = v;
            }
            act A;
            act_alloc(&A, np);
            CHECKF(quantize_both(x, np, &A), "quantize_act np = %lld, %s", (long long)np, kind[k]);
            act_free(&A);
            free(x);
        }
}

/* The fp32 kernels against ref.c, with the bounds of tests/test_kernels.c. */
static void check_fp32(void) {
    const int64_t mlens[] = {1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 63, 64, 65, 100, 172, 192, 257, 512, 1000};
    for (size_t li = 0; li < sizeof mlens / sizeof mlens[0]; li++) {
        const int64_t n = mlens[li], rows = 13;
        float *w = malloc((size_t)(n * rows) * sizeof *w), *x = malloc((size_t)n * sizeof *x);
        float ref[13], got[13];
        for (int64_t i = 0; i < n * rows; i++) w[i] = frand();
        for (int64_t i = 0; i < n; i++) x[i] = frand() * 3.0f;
        q35_matvec_f32_ref(ref, w, n, x, n, 0, rows);
        q35_matvec_f32_neon(got, w, n, x, n, 2, rows);
        int ok = 1;
        for (int64_t r = 2; r < rows; r++) {
            double mag = 0;
            for (int64_t c = 0; c < n; c++) mag += fabs((double)w[r * n + c] * x[c]);
            ok &= fabs((double)got[r - 2] - (double)ref[r]) <= 4.0 * (double)n * FLT_EPSILON * mag + 1e-30;
        }
        /* rows further apart than their length (the KV cache) */
        const int64_t ld = n > 1 ? n - 1 : 1, n2 = n > 1 ? n - 1 : 1;
        q35_matvec_f32_ref(ref, w, ld, x, n2, 0, rows);
        q35_matvec_f32_neon(got, w, ld, x, n2, 0, rows);
        for (int64_t r = 0; r < rows; r++) {
            double mag = 0;
            for (int64_t c = 0; c < n2; c++) mag += fabs((double)w[r * ld + c] * x[c]);
            ok &= fabs((double)got[r] - (double)ref[r]) <= 4.0 * (double)n2 * FLT_EPSILON * mag + 1e-30;
        }
        CHECKF(ok, "matvec_f32 neon, n = %lld", (long long)n);
        free(w);
        free(x);
    }

    const int64_t elens[] = {1, 3, 4, 5, 8, 15, 16, 17, 31, 32, 33, 64, 100, 172, 512, 1000};
    for (size_t li = 0; li < sizeof elens / sizeof elens[0]; li++) {
        const int64_t n = elens[li], T = 37, ld = n + 3;
        float *a = malloc((size_t)T * sizeof *a), *v = malloc((size_t)(T * ld) * sizeof *v);
        float *o1 = malloc((size_t)n * sizeof *o1), *o2 = malloc((size_t)n * sizeof *o2);
        float *u = malloc((size_t)n * sizeof *u);
        for (int64_t i = 0; i < T; i++) a[i] = frand();
        for (int64_t i = 0; i < T * ld; i++) v[i] = frand();
        q35_wsum_f32_ref(o1, a, v, ld, n, T);
        q35_wsum_f32_neon(o2, a, v, ld, n, T);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) {
            double mag = 0;
            for (int64_t t = 0; t < T; t++) mag += fabs((double)a[t] * v[t * ld + i]);
            ok &= fabs((double)o1[i] - o2[i]) <= 4.0 * T * FLT_EPSILON * mag + 1e-30;
        }
        CHECKF(ok, "wsum_f32 neon, n = %lld", (long long)n);

        const float spreads[] = {0.0f, 1.0f, 30.0f, 1000.0f};
        for (size_t si = 0; si < 4; si++) {
            for (int64_t i = 0; i < n; i++) o1[i] = o2[i] = frand() * spreads[si] + 50.0f;
            q35_softmax_f32_ref(o1, n);
            q35_softmax_f32_neon(o2, n);
            ok = 1;
            double sum = 0;
            for (int64_t i = 0; i < n; i++) {
                ok &= fabs((double)o1[i] - o2[i]) <= 2e-6 * o1[i] + 1e-37;
                sum += o2[i];
            }
            CHECKF(ok && fabs(sum - 1.0) < 1e-5, "softmax_f32 neon, n = %lld, spread %g",
                   (long long)n, (double)spreads[si]);
        }
        /* SwiGLU: ordinary, saturating (e^-g overflows or underflows) and exact zeros */
        for (int64_t i = 0; i < n; i++)
            o1[i] = o2[i] = i % 11 == 5 ? 0.0f : frand() * (i % 7 == 0 ? 200.0f : 8.0f);
        for (int64_t i = 0; i < n; i++) u[i] = frand() * 2.0f;
        q35_swiglu_f32_ref(o1, u, n);
        q35_swiglu_f32_neon(o2, u, n);
        ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= fabs((double)o1[i] - o2[i]) <= 2e-6 * fabs(o1[i]) + 1e-30;
        CHECKF(ok, "swiglu_f32 neon, n = %lld", (long long)n);
        free(a);
        free(v);
        free(o1);
        free(o2);
        free(u);
    }
}

int main(void) {
    printf("NEON kernels: %s\n", q35_neon_variant());
    check_quantize_act();
    check_quantized_tensors();
    check_adversarial();
    check_fp32();
    TEST_END();
}

#else /* not AArch64: the NEON kernels are not built here */
int main(void) {
    printf("not an AArch64 build: NEON kernels not tested here (scripts/neon-test.sh)\n");
    TEST_END();
}
#endif
